package gguf

import (
	"path/filepath"
	"testing"

	"github.com/stepflash/stepflash/internal/testmodels"
)

// TestRealFilesOpen opens every shared model and vocab file.
func TestRealFilesOpen(t *testing.T) {
	dir := testmodels.Models(t)
	files, _ := filepath.Glob(filepath.Join(dir, "*.gguf"))
	vocab, _ := filepath.Glob(filepath.Join(dir, "vocab", "*.gguf"))
	if len(files) == 0 || len(vocab) == 0 {
		t.Fatalf("no model files under %s", dir)
	}
	for _, p := range append(files, vocab...) {
		f, err := Open(p)
		if err != nil {
			t.Errorf("%v", err)
			continue
		}
		if f.Architecture() == "" {
			t.Errorf("%s: no general.architecture", p)
		}
		for i := range f.Tensors {
			ti := &f.Tensors[i]
			if got := f.TensorData(ti); uint64(len(got)) != ti.Size {
				t.Errorf("%s: %s: TensorData len %d, want %d", p, ti.Name, len(got), ti.Size)
			}
		}
		if err := f.Close(); err != nil {
			t.Errorf("%s: Close: %v", p, err)
		}
	}
}
