package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/stepflash/stepflash/internal/synthmodels"
	"github.com/stepflash/stepflash/internal/testmodels"
)

// TestRunGemma3Vision: `stepflash run --mmproj --image` on a synthetic
// Gemma 3 pair (synthmodels.Gemma3 and Gemma3Projector) reproduces
// llama.cpp's greedy tokens and top-5 log-probs
// (testdata/tiny-gemma3-vlm-ref.json, recorded with llama-server and the
// same files, see model/testdata/gen_synthetic_ref.py): the square test
// image resized and a 48x20 one letterboxed, pooled, normed and
// projected, laid out between <start_of_image> and <end_of_image>, and
// read by the text model with attention both ways among the image's
// positions, as llama.cpp decodes them.
func TestRunGemma3Vision(t *testing.T) {
	dir := t.TempDir()
	text, proj := filepath.Join(dir, "tiny-gemma3-F32.gguf"), filepath.Join(dir, "tiny-gemma3-mmproj-F32.gguf")
	if d := os.Getenv("STEPFLASH_WRITE_GEMMA3_VLM"); d != "" {
		text, proj = filepath.Join(d, "tiny-gemma3-F32.gguf"), filepath.Join(d, "tiny-gemma3-mmproj-F32.gguf")
	}
	synthmodels.Gemma3(t, text)
	synthmodels.Gemma3Projector(t, proj)
	raw, err := os.ReadFile("testdata/tiny-gemma3-vlm-ref.json")
	if err != nil {
		t.Fatal(err)
	}
	var ref struct {
		ModelSHA  string `json:"model_sha256"`
		MMProjSHA string `json:"mmproj_sha256"`
		Cases     []struct {
			Name      string  `json:"name"`
			Prompt    string  `json:"prompt"`
			Image     string  `json:"image"`
			Positions int     `json:"prompt_positions"`
			Generated []int32 `json:"generated_token_ids"`
			Steps     []struct {
				Top []struct {
					ID      int32   `json:"id"`
					Logprob float64 `json:"logprob"`
				} `json:"top"`
			} `json:"steps"`
		} `json:"cases"`
	}
	if err := json.Unmarshal(raw, &ref); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]string{text: ref.ModelSHA, proj: ref.MMProjSHA} {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if sum := sha256.Sum256(b); hex.EncodeToString(sum[:]) != want {
			t.Fatalf("%s: sha256 %x, the reference was made on %s: regenerate it", filepath.Base(path), sum, want)
		}
	}
	images := map[string]string{"test-image-quadrants-64.png": testmodels.Path(t, "test-image-quadrants-64.png"), "bands-48x20.png": "testdata/bands-48x20.png"}
	worst := 0.0
	for _, c := range ref.Cases {
		rc, out, errs := run(t, "run", "-m", text, "--mmproj", proj, "--image", images[c.Image], "--temp", "0", "--json", "-t", "2",
			"-n", fmt.Sprint(len(c.Generated)), "--ignore-eos", "--top-logprobs", "20", "--", c.Prompt)
		var o runOutput
		if rc != 0 || json.Unmarshal([]byte(out), &o) != nil {
			t.Fatalf("%s: rc %d: %s", c.Name, rc, errs)
		}
		if len(o.PromptTokens) != c.Positions || fmt.Sprint(o.Tokens) != fmt.Sprint(c.Generated) {
			t.Errorf("%s: %d prompt positions, tokens %v; llama.cpp %d, %v", c.Name, len(o.PromptTokens), o.Tokens, c.Positions, c.Generated)
			continue
		}
		for i, st := range c.Steps {
			got := map[int32]float64{}
			for _, tl := range o.TopLogprobs[i] {
				got[tl.ID] = float64(tl.Logprob)
			}
			for _, top := range st.Top {
				lp, ok := got[top.ID]
				d := math.Abs(lp - top.Logprob)
				if !ok || d > 2e-4 {
					t.Errorf("%s: step %d token %d log-prob %.6f (in our top 20: %v), llama.cpp %.6f", c.Name, i, top.ID, lp, ok, top.Logprob)
				}
				worst = max(worst, d)
			}
		}
	}
	t.Logf("max |Δ log-prob| %.2g", worst)
}
