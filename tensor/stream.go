package tensor

import (
	"encoding/binary"
	"sync/atomic"
)

// streamSegment is the largest piece of a buffer one thread reads at a time.
const streamSegment = 1 << 20

// sumWordsImpl is the kernel of StreamRead; SIMD builds replace it at init.
var sumWordsImpl = sumWordsGeneric

// StreamRead reads every byte of bufs once, over p's threads (contiguous
// pieces of up to 1 MiB handed out dynamically, as a mat-vec hands out its
// rows), and returns the sum of all their little-endian 32-bit words modulo
// 2^32 (a buffer's trailing bytes form a zero-padded word), so the reads
// cannot be optimised away. Timed over more data than the caches hold, it
// measures how fast memory can feed the kernels: decode reads each weight
// once per token, so tok/s cannot exceed that speed divided by the bytes of
// weights a token reads.
func StreamRead(p *Pool, bufs [][]byte) uint32 {
	type seg struct{ buf, off int }
	var segs []seg
	for i, b := range bufs {
		for off := 0; off < len(b); off += streamSegment {
			segs = append(segs, seg{i, off})
		}
	}
	var total atomic.Uint32
	p.For(len(segs), func(lo, hi int) {
		var s uint32
		for _, g := range segs[lo:hi] {
			b := bufs[g.buf]
			s += sumWordsImpl(b[g.off:min(g.off+streamSegment, len(b))])
		}
		total.Add(s)
	})
	return total.Load()
}

// sumWordsGeneric returns the sum of b's little-endian 32-bit words modulo
// 2^32, the last one zero-padded.
func sumWordsGeneric(b []byte) uint32 {
	// Halves of 64-bit words, so no carry crosses words; two pairs of
	// accumulators keep two loads in flight.
	var lo0, hi0, lo1, hi1 uint64
	i := 0
	for ; i+16 <= len(b); i += 16 {
		w0 := binary.LittleEndian.Uint64(b[i:])
		w1 := binary.LittleEndian.Uint64(b[i+8:])
		lo0 += w0 & 0xffffffff
		hi0 += w0 >> 32
		lo1 += w1 & 0xffffffff
		hi1 += w1 >> 32
	}
	s := uint32(lo0 + hi0 + lo1 + hi1)
	for ; i+4 <= len(b); i += 4 {
		s += binary.LittleEndian.Uint32(b[i:])
	}
	if i < len(b) {
		var w [4]byte
		copy(w[:], b[i:])
		s += binary.LittleEndian.Uint32(w[:])
	}
	return s
}
