package gguf

import (
	"bytes"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"unsafe"

	"github.com/stepflash/stepflash/internal/testmodels"
)

func TestParseLoading(t *testing.T) {
	for _, c := range []struct {
		in   string
		want Loading
		err  string
	}{
		{"auto", LoadAuto, ""},
		{"mmap", LoadMap, ""},
		{"COPY", LoadCopy, ""},
		{"", 0, `unknown weight loading "" (want auto, mmap, copy)`},
		{"huge", 0, `unknown weight loading "huge"`},
	} {
		got, err := ParseLoading(c.in)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("ParseLoading(%q): %v, want error %q", c.in, err, c.err)
			}
			continue
		}
		if err != nil || got != c.want || got.String() != strings.ToLower(c.in) {
			t.Errorf("ParseLoading(%q) = %v, %v; want %v", c.in, got, err, c.want)
		}
	}
	if s := Loading(7).String(); s != "Loading(7)" {
		t.Errorf("Loading(7).String() = %q", s)
	}
}

// TestOpenWith opens one real file in every mode and checks that each holds
// the same bytes, that a copy lives outside the Go heap (the collector never
// scans gigabytes of weights) and reports how it was loaded.
func TestOpenWith(t *testing.T) {
	path := testmodels.Path(t, "tiny-qwen3moe-Q4_K_M.gguf")
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, how := range []Loading{LoadMap, LoadCopy, LoadAuto} {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		f, err := OpenWith(path, how)
		runtime.ReadMemStats(&after)
		if err != nil {
			t.Fatalf("%v: %v", how, err)
		}
		want := how
		if how == LoadAuto {
			want = LoadMap
			if avail, ok := availableMemory(); ok && int64(len(raw)) <= avail/2 {
				want = LoadCopy
			}
		}
		if !canMap {
			want = LoadCopy // every mode reads the file into the heap
		}
		if f.Loaded() != want {
			t.Errorf("%v: Loaded() = %v, want %v", how, f.Loaded(), want)
		}
		if alloc := after.TotalAlloc - before.TotalAlloc; canMap && alloc > uint64(len(raw))/8 {
			t.Errorf("%v: OpenWith allocated %d heap bytes for a %d-byte file", how, alloc, len(raw))
		}
		if !bytes.Equal(f.data, raw) {
			t.Errorf("%v: bytes differ from the file", how)
		}
		for i := range f.Tensors {
			ti := &f.Tensors[i]
			off := f.DataOffset + int64(ti.Offset)
			if !bytes.Equal(f.TensorData(ti), raw[off:off+int64(ti.Size)]) {
				t.Errorf("%v: tensor %s differs", how, ti.Name)
			}
		}
		if p := uintptr(unsafe.Pointer(unsafe.SliceData(f.data))); canMap && p%4096 != 0 {
			t.Errorf("%v: data at %#x is not page aligned", how, p)
		}
		if err := f.Close(); err != nil {
			t.Errorf("%v: Close: %v", how, err)
		}
	}
	if _, err := OpenWith(path, Loading(9)); err == nil || !strings.Contains(err.Error(), "unknown weight loading") {
		t.Errorf("OpenWith(Loading(9)): %v", err)
	}
}

// TestOpenWithErrors: a copy of a file that is not GGUF fails as Open does,
// and a missing file names itself.
func TestOpenWithErrors(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.gguf")
	if err := os.WriteFile(bad, []byte("GGUF\x01\x00\x00\x00"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, how := range []Loading{LoadMap, LoadCopy, LoadAuto} {
		if _, err := OpenWith(bad, how); err == nil || !strings.Contains(err.Error(), "bad.gguf: gguf: GGUF version 1 is not supported") {
			t.Errorf("%v: %v", how, err)
		}
		if _, err := OpenWith(filepath.Join(dir, "missing.gguf"), how); err == nil || !strings.Contains(err.Error(), "no such file") {
			t.Errorf("%v missing: %v", how, err)
		}
	}
}

// TestCopyInPieces: a copy read in many small pieces by several readers
// holds exactly the file's bytes.
func TestCopyInPieces(t *testing.T) {
	if !canMap {
		t.Skip("no copy mode on this platform")
	}
	path := testmodels.Path(t, "tiny-qwen3moe-Q4_K_M.gguf")
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	defer func(c int) { copyChunk = c }(copyChunk)
	copyChunk = 4096 + 13 // pieces that straddle pages
	f, err := OpenWith(path, LoadCopy)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if len(raw) < 8*copyChunk {
		t.Fatalf("file of %d bytes is too small for several pieces", len(raw))
	}
	if !bytes.Equal(f.data, raw) {
		t.Fatal("the pieced copy differs from the file")
	}
}
