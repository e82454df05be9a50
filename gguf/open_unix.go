//go:build unix

package gguf

import (
	"fmt"
	"os"
	"syscall"
)

// Open maps the GGUF file at path read-only into memory and parses it. The
// tensor data is not copied: TensorData returns slices of the mapping, valid
// until Close. Files that cannot be mapped (pipes, devices, empty files) are
// read into memory instead.
func Open(path string) (*File, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("gguf: %w", err)
	}
	defer fh.Close()
	st, err := fh.Stat()
	if err != nil {
		return nil, fmt.Errorf("gguf: %w", err)
	}
	if !st.Mode().IsRegular() || st.Size() == 0 {
		return readAll(path, fh)
	}
	if st.Size() > int64(int(^uint(0)>>1)) {
		return nil, fmt.Errorf("gguf: %s: file of %d bytes is too large to map", path, st.Size())
	}
	data, err := syscall.Mmap(int(fh.Fd()), 0, int(st.Size()), syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		return readAll(path, fh)
	}
	f, err := Read(data)
	if err != nil {
		syscall.Munmap(data)
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	f.unmap = func() error { return syscall.Munmap(data) }
	return f, nil
}
