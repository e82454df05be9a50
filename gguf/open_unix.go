//go:build unix

package gguf

import (
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
)

// canMap says OpenWith maps files here (tests expect LoadMap to map).
const canMap = true

// OpenWith opens the GGUF file at path and parses it, bringing its bytes
// into memory as how says. Tensor data is never copied again: TensorData
// returns slices of the mapping or the copy, valid until Close. Files that
// cannot be mapped (pipes, devices, empty files) are read into the Go heap
// whatever how says.
func OpenWith(path string, how Loading) (*File, error) {
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
	size := st.Size()
	if size > int64(int(^uint(0)>>1)) {
		return nil, fmt.Errorf("gguf: %s: file of %d bytes is too large to map", path, size)
	}
	auto := how == LoadAuto
	if auto {
		how = LoadMap
		if avail, ok := availableMemory(); ok && size <= avail/2 {
			how = LoadCopy
		}
	}
	var data []byte
	switch how {
	case LoadCopy:
		data, err = copyIn(fh, int(size))
		if err == nil {
			break
		}
		if !auto || !errors.Is(err, errCopyMemory) {
			return nil, fmt.Errorf("gguf: %s: copying %d bytes into memory: %w", path, size, err)
		}
		// auto: memory the estimate promised was not there; map instead.
		how = LoadMap
		fallthrough
	case LoadMap:
		data, err = syscall.Mmap(int(fh.Fd()), 0, int(size), syscall.PROT_READ, syscall.MAP_SHARED)
		if err != nil {
			return readAll(path, fh)
		}
	default:
		return nil, fmt.Errorf("gguf: %s: unknown weight loading %v", path, how)
	}
	f, err := Read(data)
	if err != nil {
		syscall.Munmap(data)
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	f.loaded = how
	f.unmap = func() error { return syscall.Munmap(data) }
	return f, nil
}

// copyIn reads size bytes of fh into a fresh anonymous mapping (outside the
// Go heap, so the collector never scans it), advised for huge pages before
// the first touch so the kernel backs it with 2 MiB pages where it can.
// Most of the time goes to the kernel zeroing those pages as the reads
// touch them, so pieces of copyChunk bytes are read by up to one goroutine
// per CPU (at most copyReaders).
func copyIn(fh *os.File, size int) ([]byte, error) {
	data, err := anonMap(size)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errCopyMemory, err)
	}
	adviseHugePages(data)
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make([]error, min(runtime.NumCPU(), copyReaders, (size+copyChunk-1)/copyChunk))
	for w := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				off := int(next.Add(int64(copyChunk))) - copyChunk
				if off >= size {
					return
				}
				if _, err := fh.ReadAt(data[off:min(off+copyChunk, size)], int64(off)); err != nil {
					if err == io.EOF {
						err = fmt.Errorf("the file shrank while it was read")
					}
					errs[w] = err
					next.Store(int64(size)) // stop the others
					return
				}
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		syscall.Munmap(data)
		return nil, err
	}
	return data, nil
}

const copyReaders = 8

// anonMap maps size bytes of private anonymous memory (a variable for the
// tests).
var anonMap = func(size int) ([]byte, error) {
	return syscall.Mmap(-1, 0, size, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
}

// errCopyMemory is a copy that could not get its memory (LoadAuto then
// maps the file instead); read errors are not retried that way.
var errCopyMemory = errors.New("no memory for the copy")
