//go:build !unix

package gguf

import (
	"fmt"
	"os"
)

// OpenWith reads the GGUF file at path into memory and parses it. This
// platform has no memory mapping here, so every mode reads the file.
func OpenWith(path string, how Loading) (*File, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("gguf: %w", err)
	}
	defer fh.Close()
	return readAll(path, fh)
}
