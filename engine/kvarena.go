package engine

import (
	"runtime"
	"sync/atomic"
)

// kvArena hands out the KV cache's blocks from large chunks of memory
// mapped outside the Go heap (mapChunk), never freeing one alone: a block
// lives as long as its cache, which reuses it. Off the heap, the garbage
// collector neither scans the cache nor counts it in its heap target. On
// the heap, a collection waited until as much garbage had piled up as the
// cache was large (GOGC=100), and a bench-dense context filled to 32k held
// 6.2 GB of memory for 4.0 GB of weights and cache (BENCHMARKS.md, "Issue
// 14, session 10").
type kvArena struct {
	chunks [][]byte
	rest   []byte // the unused end of the last chunk
	// mapped is the bytes of the chunks, 0 once released (atomic: the
	// release runs on the runtime's cleanup goroutine; for the tests).
	mapped atomic.Int64
}

// kvChunkBytes is the size of a chunk (larger for a larger block). Mapped
// memory takes no physical pages until written, so a small model's cache
// costs only the blocks it fills.
const kvChunkBytes = 64 << 20

// newKVArena returns an arena whose chunks are unmapped once the cache
// that owns it is unreachable.
func newKVArena(owner *KVCache) *kvArena {
	a := &kvArena{}
	runtime.AddCleanup(owner, (*kvArena).release, a)
	return a
}

// alloc returns n zeroed bytes, 64-byte aligned.
func (a *kvArena) alloc(n int) []byte {
	step := (n + 63) &^ 63
	if len(a.rest) < step {
		c := mapChunk(max(kvChunkBytes, step))
		a.mapped.Add(int64(len(c)))
		a.chunks = append(a.chunks, c)
		a.rest = c
	}
	b := a.rest[:n:n]
	a.rest = a.rest[step:]
	return b
}

func (a *kvArena) release() {
	for _, c := range a.chunks {
		a.mapped.Add(-int64(len(c)))
		unmapChunk(c)
	}
	a.chunks, a.rest = nil, nil
}
