package model_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stepflash/stepflash/internal/synthmodels"
	"github.com/stepflash/stepflash/model"
)

// TestGemma3Refs checks the gemma3 architecture against llama.cpp on a
// synthetic Gemma 3 (synthmodels.Gemma3): sliding-window and global
// layers with their two RoPEs, the post-norms, GeGLU, the embedding scale
// and the logit softcap, over prompts of up to 73 tokens and 24 greedy
// steps, where the window is 8.
func TestGemma3Refs(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tiny-gemma3-F32.gguf")
	if p := os.Getenv("STEPFLASH_WRITE_GEMMA3"); p != "" {
		path = p // to regenerate the reference, see testdata/gen_synthetic_ref.py
	}
	synthmodels.Gemma3(t, path)
	checkSyntheticRef(t, path, "testdata/tiny-gemma3-ref.json", func(m model.Model) bool {
		g, ok := m.(*model.Gemma3)
		return ok && g.Window == 8 && g.Local[0] && !g.Local[1]
	})
}
