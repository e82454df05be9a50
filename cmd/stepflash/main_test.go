package main

import (
	"bytes"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stepflash/stepflash/effort"
	"github.com/stepflash/stepflash/gguf"
	"github.com/stepflash/stepflash/internal/testmodels"
)

func runMain(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	var out, errb bytes.Buffer
	code := Main(args, &out, &errb)
	return out.String(), errb.String(), code
}

// TestRunJSONMatchesReferences runs `stepflash run --json` greedily on every
// text model with a llama.cpp reference and compares the generated ids.
func TestRunJSONMatchesReferences(t *testing.T) {
	dir := testmodels.Models(t)
	cases := []struct {
		model   string
		variant string
		args    []string
		exact   bool
	}{
		{"stories260K.gguf", "default", nil, true},
		{"tiny-llama-F32.gguf", "default", nil, true},
		{"tiny-llama-F16.gguf", "default", nil, true},
		{"tiny-qwen3-F32.gguf", "default", nil, true},
		{"tiny-qwen3moe-F32.gguf", "default", nil, true},
		{"tiny-qwen3moe-F32.gguf", "default", []string{"--effort", "medium"}, true},
		{"tiny-qwen3moe-F32.gguf", "n_expert_used_1", []string{"--effort", "low"}, true},
		{"tiny-qwen3moe-Q8_0.gguf", "n_expert_used_1", []string{"--effort", "low"}, false},
		{"tiny-qwen3moe-Q4_K_M.gguf", "default", []string{"--effort", "high"}, false},
		{"tiny-llama-Q4_K_M.gguf", "default", nil, false},
		{"tiny-qwen3-Q8_0.gguf", "default", nil, false},
	}
	for _, tc := range cases {
		t.Run(tc.model+"/"+tc.variant+strings.Join(tc.args, ""), func(t *testing.T) {
			raw, err := os.ReadFile(filepath.Join(dir, "refs", strings.TrimSuffix(tc.model, ".gguf")+".json"))
			if err != nil {
				t.Fatal(err)
			}
			var ref struct {
				Runs []struct {
					Variant string `json:"variant"`
					Cases   []struct {
						Prompt    string    `json:"prompt"`
						PromptIDs []int32   `json:"prompt_token_ids"`
						Generated []int32   `json:"generated_token_ids"`
						Margins   []float64 `json:"margins"`
						Steps     []struct {
							Top []struct {
								ID      int32   `json:"id"`
								Logprob float64 `json:"logprob"`
							} `json:"top"`
						} `json:"steps"`
					} `json:"cases"`
				} `json:"runs"`
			}
			if err := json.Unmarshal(raw, &ref); err != nil {
				t.Fatal(err)
			}
			for _, run := range ref.Runs {
				if run.Variant != tc.variant {
					continue
				}
				for _, c := range run.Cases {
					args := append([]string{"run", "-m", filepath.Join(dir, tc.model), "--temp", "0", "-n", "48", "--top-logprobs", "5", "--json", "-t", "2", "--ignore-eos"}, tc.args...)
					args = append(args, "--", c.Prompt)
					stdout, stderr, code := runMain(t, args...)
					if code != 0 {
						t.Fatalf("exit %d: %s", code, stderr)
					}
					var got runOutput
					if err := json.Unmarshal([]byte(stdout), &got); err != nil {
						t.Fatalf("bad JSON %q: %v", stdout, err)
					}
					if !equalIDs(got.PromptTokens, c.PromptIDs) {
						t.Errorf("prompt tokens %v, reference %v", got.PromptTokens, c.PromptIDs)
					}
					n := len(c.Generated)
					if !tc.exact { // compare up to the first near-tie (README rule for quantized files)
						for i, m := range c.Margins {
							if m < 1.5 {
								n = i // a near-tie may legitimately flip
								break
							}
						}
					}
					if len(got.Tokens) < n || !equalIDs(got.Tokens[:n], c.Generated[:n]) {
						t.Errorf("generated %v, reference %v (first %d must match)", got.Tokens, c.Generated, n)
					}
					if len(got.TopLogprobs) != len(got.Tokens) || len(got.TopLogprobs[0]) != 5 {
						t.Fatalf("top_logprobs has %d rows (want %d) of %d", len(got.TopLogprobs), len(got.Tokens), len(got.TopLogprobs[0]))
					}
					if tc.exact {
						// Each reference alternative is among ours with a close
						// log-prob, unless it sits at the cut-off next to another.
						const tol = 0.05
						for i, st := range c.Steps {
							mine := got.TopLogprobs[i]
							for _, top := range st.Top {
								found := false
								for _, g := range mine {
									if g.ID == top.ID {
										found = true
										if abs(float64(g.Logprob)-top.Logprob) > tol {
											t.Fatalf("position %d token %d: logprob %.5f, reference %.5f", i, top.ID, g.Logprob, top.Logprob)
										}
									}
								}
								if !found && abs(float64(mine[len(mine)-1].Logprob)-top.Logprob) > tol {
									t.Fatalf("position %d: reference alternative %d (%.5f) missing from %+v", i, top.ID, top.Logprob, mine)
								}
							}
						}
					}
					wantTier, wantExperts := "medium", 2
					if len(tc.args) == 2 {
						wantTier = tc.args[1]
					}
					if wantTier == "low" {
						wantExperts = 1
					}
					if got.Effort.Level != effort.Level(wantTier) {
						t.Errorf("effort applied %q, want %q", got.Effort.Level, wantTier)
					}
					if strings.Contains(tc.model, "moe") {
						if got.Effort.ExpertsPerToken == nil || *got.Effort.ExpertsPerToken != wantExperts {
							t.Errorf("experts_per_token %v, want %d", got.Effort.ExpertsPerToken, wantExperts)
						}
					} else if got.Effort.ExpertsPerToken != nil {
						t.Errorf("dense model echoes experts_per_token %d, want null", *got.Effort.ExpertsPerToken)
					}
					if got.Timings.PrefillTPS <= 0 || got.Timings.DecodeTPS <= 0 {
						t.Errorf("timings not reported: %+v", got.Timings)
					}
				}
			}
		})
	}
}

func equalIDs(a, b []int32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func abs(x float64) float64 {
	if x < 0 {
		return -x
	}
	return x
}

func TestTokenizeCommand(t *testing.T) {
	dir := testmodels.Models(t)
	m := filepath.Join(dir, "stories260K.gguf")
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"tokenize", "-m", m, "--json", "Once upon a time"}, `{"tokens":[403,407,261,378]}`},
		{[]string{"tokenize", "-m", m, "--json", "--bos", "Once upon a time"}, `{"tokens":[1,403,407,261,378]}`},
	}
	for _, tc := range cases {
		stdout, stderr, code := runMain(t, tc.args...)
		if code != 0 {
			t.Fatalf("%v: exit %d: %s", tc.args, code, stderr)
		}
		if strings.TrimSpace(stdout) != tc.want {
			t.Errorf("%v: got %s, want %s", tc.args, stdout, tc.want)
		}
	}
}

func TestCommandErrors(t *testing.T) {
	cases := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"nosuch"}, 2, "unknown command"},
		{[]string{"run", "hello"}, 1, "no model"},
		{[]string{"run", "-m", "/nonexistent.gguf", "hi"}, 1, "nonexistent"},
		{[]string{"run", "--bogus"}, 2, "flag provided but not defined"},
		{[]string{"tokenize", "-m", "x.gguf"}, 1, "no text"},
		{[]string{"run", "-m", "x", "--top-logprobs", "21", "hi"}, 1, "0..20"},
		{[]string{"run", "-m", "x", "--effort", "max", "hi"}, 1, `invalid reasoning_effort "max": allowed values are low, medium, high`},
		{[]string{"bench", "-m", "x", "--effort", "Low"}, 1, `invalid reasoning_effort "Low"`},
		{[]string{"bench", "-m", "x", "--load", "huge"}, 2, `unknown weight loading "huge" (want auto, mmap, copy)`},
		{[]string{"bench", "--base-url", "http://127.0.0.1:1/v1", "--load", "copy"}, 1, "-load is a flag of bench -m"},
		{[]string{"run", "-m", "x", "--load", "nope", "hi"}, 2, `unknown weight loading "nope"`},
	}
	for _, tc := range cases {
		_, stderr, code := runMain(t, tc.args...)
		if code != tc.code || !strings.Contains(stderr, tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want exit %d containing %q", tc.args, code, stderr, tc.code, tc.want)
		}
	}
}

func TestBenchCommand(t *testing.T) {
	dir := testmodels.Models(t)
	path := filepath.Join(dir, "tiny-qwen3moe-Q8_0.gguf")
	f, err := gguf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	var tensorBytes int64
	for _, ti := range f.Tensors {
		tensorBytes += int64(ti.Size)
	}
	f.Close()
	weights := map[string]int64{}
	for _, c := range []struct{ effort, load string }{{"low", "mmap"}, {"medium", "copy"}, {"high", "copy"}} {
		tier := c.effort
		stdout, stderr, code := runMain(t, "bench", "-m", path, "-p", "32", "-n", "8", "-r", "3", "--json", "--effort", tier, "--load", c.load)
		if code != 0 {
			t.Fatalf("exit %d: %s", code, stderr)
		}
		var got struct {
			Effort              effort.Applied `json:"effort"`
			WeightBytesPerToken int64          `json:"weight_bytes_per_token"`
			Weights             string         `json:"weights"`
			Ceiling             *decodeCeiling `json:"decode_ceiling"`
			Results             []benchStat    `json:"results"`
		}
		if err := json.Unmarshal([]byte(stdout), &got); err != nil {
			t.Fatalf("bad JSON %q: %v", stdout, err)
		}
		if string(got.Effort.Level) != tier || len(got.Results) != 2 || got.Weights != c.load {
			t.Fatalf("%s: %+v", tier, got)
		}
		// The probe reads all the weights of this small file, once after
		// each run; the ceiling is its speed over the bytes a token reads.
		cl := got.Ceiling
		if cl == nil || cl.ProbeBytes != tensorBytes || !(cl.GBps > 0) || !(cl.Share > 0) ||
			math.Abs(cl.CeilingTPS-cl.GBps*1e9/float64(got.WeightBytesPerToken)) > 1e-6*cl.CeilingTPS {
			t.Fatalf("%s: decode ceiling %+v (tensor bytes %d, weight bytes per token %d)", tier, cl, tensorBytes, got.WeightBytesPerToken)
		}
		for _, r := range got.Results {
			if len(r.Runs) != 3 || !(r.Min <= r.Median && r.Median <= r.Max) || r.Min <= 0 {
				t.Fatalf("%s: bad stats %+v", tier, r)
			}
		}
		weights[tier] = got.WeightBytesPerToken
	}
	if !(weights["low"] < weights["medium"] && weights["medium"] == weights["high"]) {
		t.Fatalf("weight bytes per token by tier: %v (low must read fewer expert weights)", weights)
	}
	stdout, stderr, code := runMain(t, "bench", "-m", path, "-p", "0", "-n", "4", "-r", "1", "--probe=false")
	if code != 0 || strings.Contains(stdout, "ceiling") || !strings.Contains(stdout, "tg4 ") {
		t.Fatalf("--probe=false: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	stdout, _, code = runMain(t, "bench", "-m", path, "-p", "0", "-n", "4", "-r", "1")
	if code != 0 || !strings.Contains(stdout, "of the ceiling") || !strings.Contains(stdout, "caches serve much of them") {
		t.Fatalf("text output: exit %d, %q", code, stdout)
	}
}

// TestStoriesMatchesLlamaCpp: stories260K, greedy, "Once upon a time", 64
// tokens prints what llama.cpp prints. Reference: llama.cpp 1fd6dfe9f3d4,
// `llama-completion -m stories260K.gguf -p "Once upon a time" -n 64 --temp 0
// --seed 42 -t 2 -no-cnv`, which echoed the prompt (detokenized, with its SPM
// leading space) followed by exactly this text.
func TestStoriesMatchesLlamaCpp(t *testing.T) {
	const want = ", there was a little girl named Lily. She loved to play outside in the park. One day, she saw a big, red ball. She wanted to play with it, but it was too high.\nLily's mom said"
	m := testmodels.Path(t, "stories260K.gguf")
	stdout, stderr, code := runMain(t, "run", "-m", m, "--temp", "0", "-n", "64", "--", "Once upon a time")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if got := strings.TrimSuffix(stdout, "\n"); got != "Once upon a time"+want {
		t.Fatalf("streamed text:\n%q\nllama.cpp:\n%q", got, "Once upon a time"+want)
	}
	stdout, _, _ = runMain(t, "run", "-m", m, "--temp", "0", "-n", "64", "--json", "--", "Once upon a time")
	var got runOutput
	if err := json.Unmarshal([]byte(stdout), &got); err != nil {
		t.Fatal(err)
	}
	if got.Text != want || len(got.Tokens) != 64 {
		t.Fatalf("--json text (%d tokens):\n%q\nllama.cpp:\n%q", len(got.Tokens), got.Text, want)
	}
}
