package gguf

import (
	"fmt"
	"io"
	"strings"
)

// Loading says how OpenWith brings a file's bytes into memory. Decode reads
// every weight once per token, so this choice sets how fast memory can feed
// the kernels: a private copy in transparent huge pages streams about 10%
// faster than the page cache's 4 KiB pages (fewer TLB misses, and hardware
// prefetchers run across 2 MiB instead of stopping at every 4 KiB page).
type Loading int

const (
	// LoadAuto copies files smaller than half of the memory available
	// (LoadCopy) and maps the rest (LoadMap). Available memory is Linux's
	// MemAvailable, lowered to what the process's memory cgroup has left;
	// elsewhere, or when the copy cannot get its memory, it maps.
	LoadAuto Loading = iota
	// LoadMap maps the file read-only: pages are shared with the page cache,
	// nothing is copied, and a file larger than memory still runs.
	LoadMap
	// LoadCopy reads the file into anonymous memory advised for
	// transparent huge pages (Linux). The copy is private to the process.
	// Platforms without memory mapping here (Windows) read every file into
	// the Go heap, whatever the mode.
	LoadCopy
)

var loadingNames = []string{"auto", "mmap", "copy"}

// String returns the mode's name as ParseLoading accepts it.
func (l Loading) String() string {
	if l >= 0 && int(l) < len(loadingNames) {
		return loadingNames[l]
	}
	return fmt.Sprintf("Loading(%d)", int(l))
}

// ParseLoading parses "auto", "mmap" or "copy".
func ParseLoading(s string) (Loading, error) {
	for i, n := range loadingNames {
		if strings.EqualFold(s, n) {
			return Loading(i), nil
		}
	}
	return 0, fmt.Errorf("unknown weight loading %q (want %s)", s, strings.Join(loadingNames, ", "))
}

// copyChunk is the piece of a file one reader takes in LoadCopy (a variable
// for the tests).
var copyChunk = 32 << 20

// Open maps the GGUF file at path and parses it: OpenWith(path, LoadMap).
func Open(path string) (*File, error) { return OpenWith(path, LoadMap) }

// Loaded reports how the file's bytes are held: LoadMap for a mapping,
// LoadCopy for a private copy (huge pages, or a plain read where the file
// could not be mapped), LoadAuto for a File parsed by Read from the caller's
// buffer.
func (f *File) Loaded() Loading { return f.loaded }

// readAll reads r fully and parses it, for files that are not mapped.
func readAll(path string, r io.Reader) (*File, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("gguf: %s: %w", path, err)
	}
	f, err := Read(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	f.loaded = LoadCopy
	return f, nil
}
