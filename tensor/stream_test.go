package tensor

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// TestStreamRead checks StreamRead's sum against a word-by-word reference,
// over buffers that span several 1 MiB segments and end mid-word, with one
// and three threads.
func TestStreamRead(t *testing.T) {
	rng := rand.New(rand.NewPCG(41, 42))
	var bufs [][]byte
	for _, n := range []int{0, 5, 4096, streamSegment - 1, 2*streamSegment + 7, 3} {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		bufs = append(bufs, b)
	}
	var want uint32
	for _, b := range bufs {
		for i := 0; i < len(b); i += 4 {
			var w uint32
			for k := 0; k < 4 && i+k < len(b); k++ {
				w |= uint32(b[i+k]) << (8 * k)
			}
			want += w
		}
	}
	for _, threads := range []int{1, 3} {
		p := NewPool(threads)
		if got := StreamRead(p, bufs); got != want {
			t.Errorf("%d threads: %#x, want %#x", threads, got, want)
		}
		p.Close()
	}
	if got := StreamRead(nil, nil); got != 0 {
		t.Errorf("no buffers: %#x", got)
	}
}

// BenchmarkStreamRead is the memory read speed StreamRead reaches on 512 MiB
// (MB/s column), the ceiling a decode step's weight reads run against.
func BenchmarkStreamRead(b *testing.B) {
	buf := make([]byte, 512<<20)
	for i := range buf {
		buf[i] = byte(i)
	}
	for _, threads := range []int{1, 2} {
		b.Run(fmt.Sprintf("t%d", threads), func(b *testing.B) {
			p := NewPool(threads)
			defer p.Close()
			b.SetBytes(int64(len(buf)))
			for b.Loop() {
				StreamRead(p, [][]byte{buf})
			}
		})
	}
}
