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
	"strings"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/stepflash/stepflash/internal/synthmodels"
	"github.com/stepflash/stepflash/internal/testmodels"
)

// visionRef is a synthetic vision pair's reference (testdata/*-ref.json):
// llama-server's greedy steps on the pair with an image.
type visionRef struct {
	ModelSHA  string `json:"model_sha256"`
	MMProjSHA string `json:"mmproj_sha256"`
	Cases     []struct {
		Name      string   `json:"name"`
		Prompt    string   `json:"prompt"`
		Image     string   `json:"image"`
		Images    []string `json:"images"` // several images in one prompt, in order
		Positions int      `json:"prompt_positions"`
		Generated []int32  `json:"generated_token_ids"`
		Steps     []struct {
			ID  int32 `json:"id"`
			Top []struct {
				ID      int32   `json:"id"`
				Logprob float64 `json:"logprob"`
			} `json:"top"`
		} `json:"steps"`
	} `json:"cases"`
}

// visionPair is a synthetic text model and projector written by
// internal/synthmodels, with llama.cpp's reference on them (recorded with
// llama-server and the same files, see model/testdata/gen_synthetic_ref.py).
type visionPair struct {
	name       string
	text, proj string // file names
	writeText  func(testing.TB, string)
	writeProj  func(testing.TB, string)
	ref        string // under testdata
	env        string // a directory to write the files to instead of a temporary one
	// imageTokens is the positions the bands-48x20.png image takes.
	imageTokens int
	// tol bounds |Δ log-prob| against llama.cpp. The Qwen pairs' text
	// weights are tiny-vlm-text's, whose text-only cases already differ by
	// 3e-5, and whose image cases the shared refs hold to 2e-3
	// (../shared/models/README.md): ggml looks GELU and quick GELU up in
	// fp16 tables, so an input a hair off rounds the other way now and
	// then, 1e-4 in an embedding. Measured: qwen2.5vl 6.9e-4 (its only
	// table is the merger's GELU; where no input flips, 2e-5), qwen2vl
	// 2.6e-3 with one image and 4.4e-3 with two (quick GELU in every
	// encoder layer); the results are deterministic (the same bits on
	// every thread count and kernel path), and wrong positions give 0.25
	// and more.
	tol float64
}

// visionPairs are the projector families checked end to end against
// llama.cpp:
//   - gemma3 (synthmodels.Gemma3, Gemma3Projector): the square test image
//     resized and a 48x20 one letterboxed, pooled, normed and projected,
//     laid out between <start_of_image> and <end_of_image>, read by the text
//     model with attention both ways among the image's positions;
//   - qwen2.5vl (synthmodels.Qwen2VL, Qwen25VLProjector) and qwen2vl
//     (Qwen2VLProjector: LayerNorm, quick-GELU, no windows): both images
//     smart-resized (to 84x84 and, letterboxed, 140x56: 3x3 and 5x2 merged
//     tokens), the 2-D RoPE ViT (for 2.5, a window layer, where the 140x56
//     image spans two 4x4-token windows, and a global one), the 2x2 merger, laid out
//     between <|vision_start|> and <|vision_end|> and read by the text model
//     with M-RoPE positions (the text after an image goes on from its
//     start + max(rows, cols)); their refs add a case with both images in
//     one prompt, text between them.
var visionPairs = []visionPair{
	{"gemma3", "tiny-gemma3-F32.gguf", "tiny-gemma3-mmproj-F32.gguf", synthmodels.Gemma3, synthmodels.Gemma3Projector,
		"tiny-gemma3-vlm-ref.json", "STEPFLASH_WRITE_GEMMA3_VLM", 16, 2e-4},
	{"qwen2.5vl", "tiny-qwen2vl-F32.gguf", "tiny-qwen25vl-mmproj-F32.gguf", synthmodels.Qwen2VL, synthmodels.Qwen25VLProjector,
		"tiny-qwen25vl-ref.json", "STEPFLASH_WRITE_QWEN25VL", 10, 2e-3},
	{"qwen2vl", "tiny-qwen2vl-F32.gguf", "tiny-qwen2vl-mmproj-F32.gguf", synthmodels.Qwen2VL, synthmodels.Qwen2VLProjector,
		"tiny-qwen2vl-vlm-ref.json", "STEPFLASH_WRITE_QWEN2VL", 10, 5e-3},
}

// write writes the pair's files (into $env when set) and reads its
// reference, failing when a file is not the one the reference was made on.
func (vp visionPair) write(t *testing.T) (text, proj string, ref *visionRef) {
	t.Helper()
	dir := t.TempDir()
	if d := os.Getenv(vp.env); d != "" {
		dir = d
	}
	text, proj = filepath.Join(dir, vp.text), filepath.Join(dir, vp.proj)
	vp.writeText(t, text)
	vp.writeProj(t, proj)
	raw, err := os.ReadFile(filepath.Join("testdata", vp.ref))
	if err != nil {
		t.Fatal(err)
	}
	ref = &visionRef{}
	if err := json.Unmarshal(raw, ref); err != nil {
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
	return text, proj, ref
}

// TestRunVisionRefs: `stepflash run --mmproj --image` on each synthetic
// pair of visionPairs reproduces llama.cpp's greedy tokens and top-5
// log-probs with both test images.
func TestRunVisionRefs(t *testing.T) {
	for _, vp := range visionPairs {
		t.Run(vp.name, func(t *testing.T) {
			text, proj, ref := vp.write(t)
			images := map[string]string{"test-image-quadrants-64.png": testmodels.Path(t, "test-image-quadrants-64.png"), "bands-48x20.png": "testdata/bands-48x20.png"}
			worst := 0.0
			for _, c := range ref.Cases {
				args := []string{"run", "-m", text, "--mmproj", proj, "--temp", "0", "--json", "-t", "2",
					"-n", fmt.Sprint(len(c.Generated)), "--ignore-eos", "--top-logprobs", "20"}
				for _, im := range append(c.Images, c.Image) {
					if im != "" {
						args = append(args, "--image", images[im])
					}
				}
				rc, out, errs := run(t, append(args, "--", c.Prompt)...)
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
						if !ok || d > vp.tol {
							t.Errorf("%s: step %d token %d log-prob %.6f (in our top 20: %v), llama.cpp %.6f", c.Name, i, top.ID, lp, ok, top.Logprob)
						}
						worst = max(worst, d)
					}
				}
			}
			t.Logf("max |Δ log-prob| %.2g", worst)
		})
	}
}

// TestServeVisionRefs: each pair served, a chat with the 48x20 image as a
// data URL through the official SDK (a template rendering the ref's raw
// prompt) gives llama.cpp's greedy answer and the log-prob of each of its
// tokens, and counts the image's positions in usage.
func TestServeVisionRefs(t *testing.T) {
	for _, vp := range visionPairs {
		t.Run(vp.name, func(t *testing.T) {
			text, proj, ref := vp.write(t)
			dir := t.TempDir()
			tmpl := filepath.Join(dir, "raw.jinja")
			src := `{%- for m in messages %}User: {% for p in m.content %}{{ p.text }}{% endfor %}{% endfor %}`
			if err := os.WriteFile(tmpl, []byte(src), 0o644); err != nil {
				t.Fatal(err)
			}
			c := ref.Cases[2] // bands-48x20.png with "User: <__media__> Describe the image."
			if c.Image != "bands-48x20.png" || c.Prompt != "User: <__media__> Describe the image." {
				t.Fatalf("reference case 2 is %s %q", c.Image, c.Prompt)
			}
			png, err := os.ReadFile("testdata/bands-48x20.png")
			if err != nil {
				t.Fatal(err)
			}
			base, _, _ := startServe(t, "-m", text, "--mmproj", proj, "--chat-template-file", tmpl, "--alias", "vlm", "--quiet", "-t", "2", "--data", t.TempDir())
			client := openai.NewClient(option.WithBaseURL(base+"/v1"), option.WithAPIKey("none"), option.WithMaxRetries(0))
			n := 6
			resp, err := client.Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{Model: "vlm", MaxTokens: openai.Int(int64(n)),
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
			if len(lp) != n || int(resp.Usage.PromptTokens) != c.Positions || details.ImageTokens != vp.imageTokens {
				t.Fatalf("%d tokens, %d prompt tokens (%s), usage details %s; want %d, %d and %d image tokens", len(lp), resp.Usage.PromptTokens,
					resp.Choices[0].Message.Content, resp.Usage.PromptTokensDetails.RawJSON(), n, c.Positions, vp.imageTokens)
			}
			for i := range lp {
				if d := math.Abs(lp[i].Logprob - c.Steps[i].Top[0].Logprob); d > vp.tol {
					t.Errorf("token %d %q: log-prob %.6f, llama.cpp's greedy token %d %.6f", i, lp[i].Token, lp[i].Logprob, c.Steps[i].ID, c.Steps[i].Top[0].Logprob)
				}
			}
		})
	}
}

// TestQwenProjectorNeedsMRoPE: a Qwen-VL projector with a text model of
// its width but without M-RoPE (tiny-vlm-text, llama) is refused at start,
// not at the first image.
func TestQwenProjectorNeedsMRoPE(t *testing.T) {
	proj := filepath.Join(t.TempDir(), "tiny-qwen25vl-mmproj-F32.gguf")
	synthmodels.Qwen25VLProjector(t, proj)
	rc, _, errs := run(t, "run", "-m", testmodels.Path(t, "tiny-vlm-text-F32.gguf"), "--mmproj", proj, "-n", "1", "--", "hi")
	if rc == 0 || !strings.Contains(errs, "M-RoPE") || !strings.Contains(errs, "not this model's projector") {
		t.Errorf("rc %d, %q; want an error saying the llama model has no M-RoPE", rc, errs)
	}
}
