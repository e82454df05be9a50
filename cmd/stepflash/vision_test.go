package main

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/stepflash/stepflash/internal/testmodels"
)

// vlmTemplate renders the trained VLM's raw prompt format from a chat: the
// model file has no template (../shared/models/trained/vision/README.md).
const vlmTemplate = `{%- for m in messages %}<|im_start|>User:{% if m.content is string %}{{ m.content }}{% else %}{% for p in m.content %}{{ p.text }}{% endfor %}{% endif %}<end_of_utterance>
{% endfor %}Assistant:`

// vlmCase is a row of the trained VLM's test set.
type vlmCase struct {
	Image    string `json:"image"`
	Question string `json:"question"`
	Answer   string `json:"answer"`
}

func vlmCases(t *testing.T) (dir string, cases []vlmCase) {
	t.Helper()
	dir = filepath.Join(testmodels.Models(t), "trained", "vision")
	f, err := os.Open(filepath.Join(dir, "testset.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var c vlmCase
		if err := json.Unmarshal(sc.Bytes(), &c); err != nil {
			t.Fatal(err)
		}
		cases = append(cases, c)
	}
	return dir, cases
}

// TestServeVision: the trained VLM served with its projector answers all
// 200 cases of its test set through the official SDK with the image as a
// data URL, and the same from an explicitly allowed loopback HTTPS server;
// image URLs to private and link-local addresses (also via a redirect),
// broken images and a wrong media type get 400s naming the image, and the
// server stays healthy; /v1/models says the model takes images.
func TestServeVision(t *testing.T) {
	dir, cases := vlmCases(t)
	tmpl := filepath.Join(t.TempDir(), "vlm.jinja")
	if err := os.WriteFile(tmpl, []byte(vlmTemplate), 0o644); err != nil {
		t.Fatal(err)
	}
	images := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/redirect":
			http.Redirect(w, r, "https://10.1.2.3/img.png", http.StatusFound)
		case r.URL.Path == "/page":
			w.Header().Set("Content-Type", "text/html")
			fmt.Fprint(w, "<html>not an image</html>")
		default:
			http.ServeFile(w, r, filepath.Join(dir, "testset", filepath.Base(r.URL.Path)))
		}
	}))
	defer images.Close()
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: images.Certificate().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	base, _, _ := startServe(t, "-m", filepath.Join(dir, "vlm-text-F32.gguf"), "--mmproj", filepath.Join(dir, "vlm-mmproj-F32.gguf"),
		"--chat-template-file", tmpl, "--alias", "vlm", "--image-allow", "127.0.0.1/32", "--image-ca", ca, "--quiet", "-t", "2", "--data", t.TempDir())
	client := openai.NewClient(option.WithBaseURL(base+"/v1"), option.WithAPIKey("none"), option.WithMaxRetries(0))
	ask := func(url, question string) (string, int, error) {
		c, err := client.Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{Model: "vlm", MaxTokens: openai.Int(5), Temperature: openai.Float(0),
			Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage([]openai.ChatCompletionContentPartUnionParam{
				openai.ImageContentPart(openai.ChatCompletionContentPartImageImageURLParam{URL: url}),
				openai.TextContentPart("What colour is the " + question + " quadrant?"),
			})}})
		if err != nil {
			return "", 0, err
		}
		var u struct {
			Usage struct {
				Details struct {
					ImageTokens int `json:"image_tokens"`
				} `json:"prompt_tokens_details"`
			} `json:"usage"`
		}
		json.Unmarshal([]byte(c.RawJSON()), &u)
		return c.Choices[0].Message.Content, u.Usage.Details.ImageTokens, nil
	}
	right := 0
	for i, c := range cases {
		png, err := os.ReadFile(filepath.Join(dir, c.Image))
		if err != nil {
			t.Fatal(err)
		}
		got, imageTokens, err := ask("data:image/png;base64,"+base64.StdEncoding.EncodeToString(png), c.Question)
		if err != nil {
			t.Fatalf("case %d: %v", i, err)
		}
		if imageTokens != 80 {
			t.Errorf("case %d: usage.prompt_tokens_details.image_tokens %d, want 80 (4 slices and the overview of 16)", i, imageTokens)
		}
		if strings.TrimSpace(got) == strings.TrimSpace(c.Answer) {
			right++
		} else {
			t.Logf("case %d (%s, %s): %q, want %q", i, c.Image, c.Question, got, c.Answer)
		}
		if i%20 == 0 { // the same image over HTTPS gives the same answer
			if fetched, _, err := ask(images.URL+"/"+filepath.Base(c.Image), c.Question); err != nil || fetched != got {
				t.Errorf("case %d over HTTPS: %q, %v; as a data URL %q", i, fetched, err, got)
			}
		}
	}
	if right != len(cases) {
		t.Errorf("%d of %d right (llama.cpp: all)", right, len(cases))
	}

	png, _ := os.ReadFile(filepath.Join(dir, cases[0].Image))
	for _, tc := range []struct {
		name, url, code string
	}{
		{"private address", "https://10.0.0.7/img.png", "image_url_forbidden"},
		{"link-local metadata address", "https://169.254.169.254/latest/meta-data", "image_url_forbidden"},
		{"loopback IPv6, not allowed", "https://[::1]/img.png", "image_url_forbidden"},
		{"redirect to a private address", images.URL + "/redirect", "image_url_forbidden"},
		{"plain http", "http://example.com/img.png", "image_url_forbidden"},
		{"a web page", images.URL + "/page", "invalid_image"},
		{"truncated PNG", "data:image/png;base64," + base64.StdEncoding.EncodeToString(png[:len(png)/2]), "invalid_image"},
		{"wrong media type", "data:text/plain;base64," + base64.StdEncoding.EncodeToString(png), "invalid_image"},
	} {
		_, _, err := ask(tc.url, "top left")
		var apiErr *openai.Error
		if !errors.As(err, &apiErr) || apiErr.StatusCode != 400 || apiErr.Code != tc.code || apiErr.Param != "messages[0].content[0].image_url" {
			t.Errorf("%s: %v, want a 400 %s naming messages[0].content[0].image_url", tc.name, err, tc.code)
		}
	}
	if got, _, err := ask("data:image/png;base64,"+base64.StdEncoding.EncodeToString(png), cases[0].Question); err != nil || strings.TrimSpace(got) != strings.TrimSpace(cases[0].Answer) {
		t.Errorf("after the refusals: %q, %v", got, err)
	}

	resp, err := http.Get(base + "/v1/models")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var list struct {
		Data []struct {
			ID              string   `json:"id"`
			InputModalities []string `json:"input_modalities"`
		}
	}
	json.NewDecoder(resp.Body).Decode(&list)
	for _, m := range list.Data {
		if strings.Join(m.InputModalities, ",") != "text,image" {
			t.Errorf("model %s: input_modalities %v", m.ID, m.InputModalities)
		}
	}
}

// TestRunVision: `stepflash run --mmproj --image` reproduces llama.cpp's
// greedy tokens for the shared VLM refs' image cases, and answers trained
// VLM test cases right; --image without --mmproj, or markers that do not
// match the images, are errors.
func TestRunVision(t *testing.T) {
	models := testmodels.Models(t)
	raw, err := os.ReadFile(filepath.Join(models, "refs", "tiny-vlm-text-F32.json"))
	if err != nil {
		t.Fatal(err)
	}
	var ref struct {
		Runs []struct {
			Cases []struct {
				Name      string  `json:"name"`
				Prompt    string  `json:"prompt"`
				Image     string  `json:"image"`
				Generated []int32 `json:"generated_token_ids"`
			} `json:"cases"`
		} `json:"runs"`
	}
	if err := json.Unmarshal(raw, &ref); err != nil {
		t.Fatal(err)
	}
	runJSON := func(args ...string) (runOutput, string) {
		t.Helper()
		rc, out, errs := run(t, append([]string{"run", "--temp", "0", "--json", "-t", "2"}, args...)...)
		var o runOutput
		if rc != 0 || json.Unmarshal([]byte(out), &o) != nil {
			return o, fmt.Sprintf("rc %d: %s", rc, errs)
		}
		return o, ""
	}
	for _, c := range ref.Runs[0].Cases {
		if c.Image == "" {
			continue
		}
		args := []string{"-m", filepath.Join(models, "tiny-vlm-text-F32.gguf"), "--image", filepath.Join(models, filepath.Base(c.Image)),
			"-n", fmt.Sprint(len(c.Generated)), "--ignore-eos"}
		if c.Name != "image_long" { // image_long: the projector found beside the model
			args = append(args, "--mmproj", filepath.Join(models, "tiny-vlm-mmproj-F32.gguf"))
		}
		o, fail := runJSON(append(args, "--", c.Prompt)...)
		if fail != "" || fmt.Sprint(o.Tokens) != fmt.Sprint(c.Generated) {
			t.Errorf("%s: %s tokens %v, llama.cpp %v", c.Name, fail, o.Tokens, c.Generated)
		}
	}
	dir, cases := vlmCases(t)
	for _, c := range cases[:10] {
		prompt := "<|im_start|>User:<__media__>What colour is the " + c.Question + " quadrant?<end_of_utterance>\nAssistant:"
		o, fail := runJSON("-m", filepath.Join(dir, "vlm-text-F32.gguf"), "--mmproj", filepath.Join(dir, "vlm-mmproj-F32.gguf"),
			"--image", filepath.Join(dir, c.Image), "-n", "5", "--", prompt)
		if fail != "" || o.Text != c.Answer {
			t.Errorf("%s %s: %s %q, want %q", c.Image, c.Question, fail, o.Text, c.Answer)
		}
	}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"image without mmproj", []string{"--image", filepath.Join(models, "test-image-quadrants-64.png"), "--", "hi"}, "--image needs --mmproj"},
		{"two markers, one image", []string{"--mmproj", filepath.Join(models, "tiny-vlm-mmproj-F32.gguf"), "--image", filepath.Join(models, "test-image-quadrants-64.png"), "--", "<__media__><__media__>"}, "2 <__media__> markers for 1"},
		{"not an image", []string{"--mmproj", filepath.Join(models, "tiny-vlm-mmproj-F32.gguf"), "--image", filepath.Join(models, "refs", "tolerances.json"), "--", "hi"}, "not a PNG, JPEG, WebP or GIF"},
		{"another model's projector", []string{"--mmproj", filepath.Join(models, "tiny-vlm-mmproj-F32.gguf"), "--", "hi"}, "not this model's projector"},
	} {
		m := filepath.Join(models, "tiny-vlm-text-F32.gguf")
		if tc.name == "another model's projector" || tc.name == "image without mmproj" {
			m = filepath.Join(models, "stories260K.gguf") // no projector beside it has its name
		}
		rc, _, errs := run(t, append([]string{"run", "-m", m, "-n", "2"}, tc.args...)...)
		if rc == 0 || !strings.Contains(errs, tc.want) {
			t.Errorf("%s: rc %d, %q; want an error saying %q", tc.name, rc, errs, tc.want)
		}
	}
}

// TestFindProjector: a projector beside the model is found by the names
// llama.cpp's converters and Hugging Face repositories give it, and never
// one of another model's.
func TestFindProjector(t *testing.T) {
	for _, tc := range []struct {
		name  string
		files []string
		model string
		want  string
	}{
		{"ggml-org naming", []string{"SmolVLM-256M-Instruct-Q8_0.gguf", "mmproj-SmolVLM-256M-Instruct-f16.gguf"}, "SmolVLM-256M-Instruct-Q8_0.gguf", "mmproj-SmolVLM-256M-Instruct-f16.gguf"},
		{"suffix naming", []string{"gemma-3-4b-it-Q4_K_M.gguf", "gemma-3-4b-it-mmproj-F16.gguf"}, "gemma-3-4b-it-Q4_K_M.gguf", "gemma-3-4b-it-mmproj-F16.gguf"},
		{"prefix at a separator", []string{"vlm-text-F32.gguf", "vlm-mmproj-F32.gguf"}, "vlm-text-F32.gguf", "vlm-mmproj-F32.gguf"},
		{"another model's projector", []string{"tiny-llama-F32.gguf", "tiny-vlm-text-F32.gguf", "tiny-vlm-mmproj-F32.gguf"}, "tiny-llama-F32.gguf", ""},
		{"its own among others", []string{"tiny-llama-F32.gguf", "tiny-vlm-text-F32.gguf", "tiny-vlm-mmproj-F32.gguf"}, "tiny-vlm-text-F32.gguf", "tiny-vlm-mmproj-F32.gguf"},
		{"no word boundary", []string{"vlmx-text.gguf", "vlm-mmproj.gguf"}, "vlmx-text.gguf", ""},
		{"ambiguous", []string{"m-Q8_0.gguf", "mmproj-m-f16.gguf", "mmproj-m-f32.gguf"}, "m-Q8_0.gguf", ""},
		{"none", []string{"m.gguf"}, "m.gguf", ""},
	} {
		dir := t.TempDir()
		for _, f := range tc.files {
			os.WriteFile(filepath.Join(dir, f), nil, 0o644)
		}
		got := findProjector(filepath.Join(dir, tc.model))
		if want := map[bool]string{true: filepath.Join(dir, tc.want), false: ""}[tc.want != ""]; got != want {
			t.Errorf("%s: %q, want %q", tc.name, got, want)
		}
	}
}
