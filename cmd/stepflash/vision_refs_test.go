package main

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/stepflash/stepflash/internal/synthmodels"
	"github.com/stepflash/stepflash/internal/testmodels"
)

// gemma3VLMRef is testdata/tiny-gemma3-vlm-ref.json: llama-server's greedy
// steps on the synthetic Gemma 3 pair with an image.
type gemma3VLMRef struct {
	ModelSHA  string `json:"model_sha256"`
	MMProjSHA string `json:"mmproj_sha256"`
	Cases     []struct {
		Name      string  `json:"name"`
		Prompt    string  `json:"prompt"`
		Image     string  `json:"image"`
		Positions int     `json:"prompt_positions"`
		Generated []int32 `json:"generated_token_ids"`
		Steps     []struct {
			ID  int32 `json:"id"`
			Top []struct {
				ID      int32   `json:"id"`
				Logprob float64 `json:"logprob"`
			} `json:"top"`
		} `json:"steps"`
	} `json:"cases"`
}

func loadGemma3VLMRef(t *testing.T) *gemma3VLMRef {
	t.Helper()
	raw, err := os.ReadFile("testdata/tiny-gemma3-vlm-ref.json")
	if err != nil {
		t.Fatal(err)
	}
	var ref gemma3VLMRef
	if err := json.Unmarshal(raw, &ref); err != nil {
		t.Fatal(err)
	}
	return &ref
}

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
	ref := loadGemma3VLMRef(t)
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

// TestServeGemma3Vision: the same pair served, a chat with the image as a
// data URL through the official SDK (a template rendering the ref's raw
// prompt) gives llama.cpp's greedy answer and the log-prob of each of its
// tokens, and counts the image's 16 positions in usage.
func TestServeGemma3Vision(t *testing.T) {
	dir := t.TempDir()
	text, proj := filepath.Join(dir, "tiny-gemma3-F32.gguf"), filepath.Join(dir, "tiny-gemma3-mmproj-F32.gguf")
	synthmodels.Gemma3(t, text)
	synthmodels.Gemma3Projector(t, proj)
	tmpl := filepath.Join(dir, "raw.jinja")
	src := `{%- for m in messages %}User: {% for p in m.content %}{{ p.text }}{% endfor %}{% endfor %}`
	if err := os.WriteFile(tmpl, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	ref := loadGemma3VLMRef(t)
	c := ref.Cases[2] // bands-48x20.png with "User: <__media__> Describe the image."
	if c.Image != "bands-48x20.png" || c.Prompt != "User: <__media__> Describe the image." {
		t.Fatalf("reference case 2 is %s %q", c.Image, c.Prompt)
	}
	png, err := os.ReadFile("testdata/bands-48x20.png")
	if err != nil {
		t.Fatal(err)
	}
	base, _, _ := startServe(t, "-m", text, "--mmproj", proj, "--chat-template-file", tmpl, "--alias", "g3", "--quiet", "-t", "2", "--data", t.TempDir())
	client := openai.NewClient(option.WithBaseURL(base+"/v1"), option.WithAPIKey("none"), option.WithMaxRetries(0))
	n := 6
	resp, err := client.Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{Model: "g3", MaxTokens: openai.Int(int64(n)),
		Temperature: openai.Float(0), Logprobs: openai.Bool(true),
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage([]openai.ChatCompletionContentPartUnionParam{
			openai.ImageContentPart(openai.ChatCompletionContentPartImageImageURLParam{URL: "data:image/png;base64," + base64.StdEncoding.EncodeToString(png)}),
			openai.TextContentPart(" Describe the image."),
		})}})
	if err != nil {
		t.Fatal(err)
	}
	lp := resp.Choices[0].Logprobs.Content
	var details struct {
		ImageTokens int `json:"image_tokens"`
	}
	json.Unmarshal([]byte(resp.Usage.PromptTokensDetails.RawJSON()), &details)
	if len(lp) != n || int(resp.Usage.PromptTokens) != c.Positions || details.ImageTokens != 16 {
		t.Fatalf("%d tokens, %d prompt tokens (%s), usage details %s; want %d, %d and 16 image tokens", len(lp), resp.Usage.PromptTokens,
			resp.Choices[0].Message.Content, resp.Usage.PromptTokensDetails.RawJSON(), n, c.Positions)
	}
	for i := range lp {
		if d := math.Abs(lp[i].Logprob - c.Steps[i].Top[0].Logprob); d > 2e-4 {
			t.Errorf("token %d %q: log-prob %.6f, llama.cpp's greedy token %d %.6f", i, lp[i].Token, lp[i].Logprob, c.Steps[i].ID, c.Steps[i].Top[0].Logprob)
		}
	}
}
