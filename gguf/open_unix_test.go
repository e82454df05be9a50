//go:build unix

package gguf

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/stepflash/stepflash/internal/testmodels"
)

// TestOpenFIFO: a file that cannot be mapped (a named pipe) is read instead.
func TestOpenFIFO(t *testing.T) {
	w := NewWriter()
	mustAddKV(t, w, "general.architecture", "llama")
	data := pattern(16, 9)
	mustAddTensor(t, w, "t", TypeF32, []uint64{4}, data)
	raw := encode(t, w)
	path := filepath.Join(t.TempDir(), "pipe.gguf")
	if err := syscall.Mkfifo(path, 0o600); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	done := make(chan error, 1)
	go func() {
		fh, err := os.OpenFile(path, os.O_WRONLY, 0)
		if err == nil {
			_, err = fh.Write(raw)
			fh.Close()
		}
		done <- err
	}()
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if f.unmap != nil {
		t.Error("a FIFO was mapped")
	}
	ti, _ := f.Tensor("t")
	if !bytes.Equal(f.TensorData(ti), data) {
		t.Error("tensor data mismatch")
	}
}

// TestCopyWithoutMemory: when the copy cannot get its memory, auto maps the
// file and an explicit copy is an error that says so.
func TestCopyWithoutMemory(t *testing.T) {
	path := testmodels.Path(t, "tiny-qwen3moe-Q4_K_M.gguf")
	defer func(f func(int) ([]byte, error)) { anonMap = f }(anonMap)
	tries := 0
	anonMap = func(int) ([]byte, error) { tries++; return nil, syscall.ENOMEM }
	f, err := OpenWith(path, LoadAuto)
	if err != nil {
		t.Fatalf("auto: %v", err)
	}
	if f.Loaded() != LoadMap {
		t.Errorf("auto: loaded %v, want mmap", f.Loaded())
	}
	f.Close()
	if _, ok := availableMemory(); ok && tries != 1 {
		t.Errorf("auto tried the copy %d times, want once (this small file fits)", tries)
	}
	if _, err := OpenWith(path, LoadCopy); err == nil || !strings.Contains(err.Error(), "no memory for the copy") {
		t.Errorf("copy: %v", err)
	}
}
