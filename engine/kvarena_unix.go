//go:build unix

package engine

import "syscall"

// mapChunk maps n bytes of private anonymous memory (zeroed, page
// aligned), or makes them on the heap if the mapping fails.
func mapChunk(n int) []byte {
	b, err := syscall.Mmap(-1, 0, n, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		return make([]byte, n)
	}
	return b
}

// unmapChunk returns a chunk of mapChunk (one made on the heap is left to
// the collector).
func unmapChunk(b []byte) { _ = syscall.Munmap(b) }
