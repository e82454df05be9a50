//go:build !unix

package engine

// mapChunk makes n zeroed bytes on the heap: off unix systems the cache
// stays on the heap.
func mapChunk(n int) []byte { return make([]byte, n) }

func unmapChunk([]byte) {}
