package main

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/stepflash/stepflash/internal/testmodels"
)

// specPrompt repeats itself, so n-gram lookup proposes drafts at once.
const specPrompt = "one two three four five, one two three four five, one two three four five, one two"

// TestServeSpeculative: serve --spec ngram answers a greedy completion
// with plain run's text, reports the drafts in usage
// (completion_tokens_details accepted/rejected_prediction_tokens), and
// /metrics counts the same drafts; --draft serves with a draft model.
func TestServeSpeculative(t *testing.T) {
	path := testmodels.Path(t, "tiny-llama-F32.gguf")
	out, errOut, code := runMain(t, "run", "-m", path, "-t", "1", "--temp", "0", "-n", "40", "--ignore-eos", "--json", "--", specPrompt)
	if code != 0 {
		t.Fatalf("run: %d %s", code, errOut)
	}
	var want runOutput
	if err := json.Unmarshal([]byte(out), &want); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"--spec", "ngram", "--spec-k", "4"},
		{"--draft", testmodels.Path(t, "tiny-llama-Q4_0.gguf")},
	} {
		t.Run(args[0], func(t *testing.T) {
			base, log, _ := startServe(t, append([]string{"-m", path, "--alias", "tiny"}, args...)...)
			if !strings.Contains(log.String(), "speculative decoding") {
				t.Errorf("the load line does not say it speculates:\n%s", log.String())
			}
			accepted, rejected := 0, 0
			for range 2 {
				resp, err := http.Post(base+"/v1/completions", "application/json",
					strings.NewReader(`{"model":"tiny","prompt":"`+specPrompt+`","max_tokens":40,"temperature":0,"ignore_eos":true}`))
				if err != nil {
					t.Fatal(err)
				}
				var got struct {
					Choices []struct {
						Text string `json:"text"`
					} `json:"choices"`
					Usage struct {
						Details struct {
							Accepted int `json:"accepted_prediction_tokens"`
							Rejected int `json:"rejected_prediction_tokens"`
						} `json:"completion_tokens_details"`
					} `json:"usage"`
				}
				json.NewDecoder(resp.Body).Decode(&got)
				resp.Body.Close()
				if resp.StatusCode != 200 || len(got.Choices) != 1 || got.Choices[0].Text != want.Text {
					t.Fatalf("%d %+v, want %q", resp.StatusCode, got, want.Text)
				}
				accepted += got.Usage.Details.Accepted
				rejected += got.Usage.Details.Rejected
			}
			if accepted == 0 {
				t.Fatalf("usage reports no accepted draft tokens (%d rejected)", rejected)
			}
			resp, err := http.Get(base + "/metrics")
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			metric := func(name string) int {
				m := regexp.MustCompile(`(?m)^` + name + `\{model="tiny-llama-F32",mode="[a-z]+"\} (\d+)$`).FindSubmatch(body)
				if m == nil {
					t.Fatalf("no %s for model tiny-llama-F32 on /metrics:\n%s", name, body)
				}
				v, _ := strconv.Atoi(string(m[1]))
				return v
			}
			if d, a := metric("stepflash_spec_draft_tokens_total"), metric("stepflash_spec_accepted_tokens_total"); a != accepted || d != accepted+rejected {
				t.Errorf("/metrics: %d drafted, %d accepted; the responses: %d drafted, %d accepted", d, a, accepted+rejected, accepted)
			}
			if !strings.Contains(string(body), "# TYPE stepflash_spec_accepted_tokens_total counter") {
				t.Error("stepflash_spec_accepted_tokens_total is not typed a counter")
			}
		})
	}
}

// TestRunSpeculative: run --json with --spec ngram prints plain greedy's
// tokens, and its timings carry the draft counts; bench --spec-prompt
// compares decode with and without speculation.
func TestRunSpeculative(t *testing.T) {
	path := testmodels.Path(t, "tiny-llama-F32.gguf")
	var outs [2]runOutput
	for i, extra := range [][]string{nil, {"--spec", "ngram"}} {
		args := append([]string{"run", "-m", path, "-t", "1", "--temp", "0", "-n", "40", "--ignore-eos", "--json"}, extra...)
		out, errOut, code := runMain(t, append(args, "--", specPrompt)...)
		if code != 0 {
			t.Fatalf("run %v: %d %s", extra, code, errOut)
		}
		if err := json.Unmarshal([]byte(out), &outs[i]); err != nil {
			t.Fatal(err)
		}
	}
	if outs[0].Text != outs[1].Text || len(outs[1].Tokens) != 40 {
		t.Fatalf("--spec ngram: %q, plain %q", outs[1].Text, outs[0].Text)
	}
	if outs[0].Timings.DraftTokens != nil {
		t.Error("timings has draft_tokens without --spec")
	}
	if d, a := outs[1].Timings.DraftTokens, outs[1].Timings.AcceptedTokens; d == nil || a == nil || *a == 0 || *a > *d {
		t.Errorf("timings: draft_tokens %v, accepted_tokens %v", d, a)
	}
	out, errOut, code := runMain(t, "bench", "-m", path, "-t", "1", "--spec", "ngram", "--spec-prompt", specPrompt, "-n", "24", "-r", "2", "--json")
	if code != 0 {
		t.Fatalf("bench --spec-prompt: %d %s", code, errOut)
	}
	var rep specBenchReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatal(err)
	}
	if !rep.Identical || len(rep.PlainTPS) != 2 || len(rep.SpecTPS) != 2 || rep.Drafted == 0 || rep.Spec != "ngram" {
		t.Errorf("bench --spec-prompt: %+v", rep)
	}
}

// TestSpecRefused: bad speculative settings and a draft model with another
// vocabulary are refused at start with a message that says what is wrong.
func TestSpecRefused(t *testing.T) {
	path := testmodels.Path(t, "tiny-llama-F32.gguf")
	stories := testmodels.Path(t, "stories260K.gguf")
	cfg := filepath.Join(t.TempDir(), "serve.json")
	os.WriteFile(cfg, []byte(`{"models":[{"model":"`+path+`","spec":"sometimes"}]}`), 0o600)
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"run", "-m", path, "--draft", stories, "hi"}, "must share the model's vocabulary"},
		{[]string{"run", "-m", path, "--spec", "draft", "hi"}, "--spec draft needs a draft model"},
		{[]string{"run", "-m", path, "--spec", "ngram", "--draft", stories, "hi"}, "--draft is a draft model for --spec draft"},
		{[]string{"run", "-m", path, "--spec", "maybe", "hi"}, `unknown speculative mode "maybe"`},
		{[]string{"run", "-m", path, "--spec", "ngram", "--spec-ngram-min", "3", "--spec-ngram-max", "2", "hi"}, "--spec-ngram-min 3 is more than --spec-ngram-max 2"},
		{[]string{"bench", "-m", path, "--spec-prompt", "x"}, "give --spec ngram or --draft FILE"},
		{[]string{"serve", "--config", cfg}, `unknown speculative mode "sometimes"`},
	}
	for _, c := range cases {
		_, errOut, code := runMain(t, c.args...)
		if code == 0 || !strings.Contains(errOut, c.want) {
			t.Errorf("%v: exit %d, %q; want an error saying %q", c.args, code, errOut, c.want)
		}
	}
}
