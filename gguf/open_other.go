//go:build !unix

package gguf

import (
	"fmt"
	"os"
)

// canMap says OpenWith maps files here: it does not.
const canMap = false

// OpenWith reads the GGUF file at path into memory and parses it. This
// platform has no memory mapping here, so every mode reads the file into
// the Go heap (Loaded reports LoadCopy).
func OpenWith(path string, how Loading) (*File, error) {
	if how < LoadAuto || how > LoadCopy {
		return nil, fmt.Errorf("gguf: %s: unknown weight loading %v", path, how)
	}
	fh, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("gguf: %w", err)
	}
	defer fh.Close()
	return readAll(path, fh)
}
