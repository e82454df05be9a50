package engine

import (
	"runtime"
	"testing"
	"time"
	"unsafe"

	"github.com/stepflash/stepflash/gguf"
	"github.com/stepflash/stepflash/model"
)

// TestKVArenaOffHeap: the cache's blocks come zeroed, aligned and writable
// from memory outside the Go heap (reserving 64 MiB of blocks grows the
// heap by almost nothing), and their chunks are unmapped once the cache is
// unreachable.
func TestKVArenaOffHeap(t *testing.T) {
	cfg := &model.Config{NLayer: 4, NHeadKV: 8, HeadDim: 128, HeadDimV: 128}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	c := newKVCache(cfg, 4096, DefaultBlockSize, false, gguf.TypeF16, gguf.TypeF16)
	if err := c.Reserve(0, 4096); err != nil {
		t.Fatal(err)
	}
	cacheBytes := int64(4096) * KVBytesPerTokenOf(cfg, gguf.TypeF16, gguf.TypeF16) // 64 MiB
	for l := 0; l < cfg.NLayer; l++ {
		for pos := 0; pos < 4096; pos += DefaultBlockSize {
			k, v := c.Block(l, 0, pos)
			if len(k) != c.kBlock || len(v) != c.vBlock || uintptr(unsafe.Pointer(&k[0]))%64 != 0 {
				t.Fatalf("layer %d position %d: blocks of %d and %d bytes at %p, want %d and %d, 64-byte aligned", l, pos, len(k), len(v), &k[0], c.kBlock, c.vBlock)
			}
			for _, b := range [][]byte{k, v} {
				for i := range b {
					if b[i] != 0 {
						t.Fatalf("layer %d position %d: a new block is not zeroed", l, pos)
					}
					b[i] = byte(l + pos)
				}
			}
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	if grew := int64(after.HeapAlloc) - int64(before.HeapAlloc); grew > cacheBytes/16 {
		t.Errorf("a %d-byte cache grew the Go heap by %d bytes", cacheBytes, grew)
	}
	a := c.arena // not the owner: holding it keeps nothing else alive
	if mapped := a.mapped.Load(); mapped < cacheBytes {
		t.Errorf("%d bytes mapped for a %d-byte cache", mapped, cacheBytes)
	}
	k, _ := c.Block(3, 0, 4064)
	if want := 3 + 4064; k[0] != byte(want) {
		t.Errorf("a block lost what was written to it")
	}
	runtime.KeepAlive(c)
	c = nil
	for deadline := time.Now().Add(10 * time.Second); a.mapped.Load() != 0; {
		if time.Now().After(deadline) {
			t.Fatalf("an unreachable cache's chunks are still mapped: %d bytes", a.mapped.Load())
		}
		runtime.GC()
		time.Sleep(10 * time.Millisecond)
	}
}
