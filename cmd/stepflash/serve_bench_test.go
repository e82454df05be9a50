package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stepflash/stepflash/internal/testmodels"
	"github.com/stepflash/stepflash/loadgen"
)

// Tests of bench's load mode (--base-url) through Main, driving `stepflash
// serve` and canned servers on loopback; package loadgen has the tests of
// the load generator itself.

// benchLoadOutput is `bench --base-url … --json`.
type benchLoadOutput struct {
	Clients   int               `json:"clients"`
	MaxTokens int               `json:"max_tokens"`
	Rounds    int               `json:"rounds"`
	Results   []*loadgen.Result `json:"results"`
}

// metricValue reads one sample of a Prometheus exposition.
func metricValue(t *testing.T, base, sample string) float64 {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, sample+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatal(err)
			}
			return f
		}
	}
	t.Fatalf("no sample %s in /metrics", sample)
	return 0
}

// TestBenchLoad drives a real `stepflash serve` on loopback with the load
// mode (2 clients, 2 s) and checks the report against the server's own
// metrics.
func TestBenchLoad(t *testing.T) {
	path := testmodels.Path(t, "stories260K.gguf")
	base, _, _ := startServe(t, "-m", path, "--parallel", "2", "--quiet")
	start := time.Now()
	stdout, stderr, code := runMain(t, "bench", "--base-url", base+"/v1", "--model", "stories260K", "--clients", "2", "--duration", "2s",
		"--max-tokens", "16", "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var out benchLoadOutput
	if err := json.Unmarshal([]byte(stdout), &out); err != nil {
		t.Fatalf("bad JSON %q: %v", stdout, err)
	}
	if len(out.Results) != 1 || out.Clients != 2 || out.MaxTokens != 16 || out.Rounds != 1 {
		t.Fatalf("output %s", stdout)
	}
	r := out.Results[0]
	t.Logf("%+v", *r)
	switch {
	case r.RequestsOK < 2 || r.RequestsFailed != 0 || len(r.Errors) != 0:
		t.Errorf("requests %d ok, %d failed %q", r.RequestsOK, r.RequestsFailed, r.Errors)
	case r.CompletionTokens != 16*r.RequestsOK || r.TokensFrom != "usage":
		t.Errorf("%d tokens (from %s) for %d requests of 16 (ignore_eos)", r.CompletionTokens, r.TokensFrom, r.RequestsOK)
	case r.Seconds < 2 || r.Seconds > time.Since(start).Seconds():
		t.Errorf("wall time %.3fs for a 2s run", r.Seconds)
	case math.Abs(r.AggregateTPS-float64(r.CompletionTokens)/r.Seconds) > 1e-6*r.AggregateTPS || r.AggregateRatio != nil:
		t.Errorf("aggregate %.3f tok/s, want %d tokens / %.3fs; ratio %v", r.AggregateTPS, r.CompletionTokens, r.Seconds, r.AggregateRatio)
	case !(r.TTFTP50MS > 0 && r.TTFTP50MS <= r.TTFTP95MS && r.TTFTP95MS < 1000*r.Seconds):
		t.Errorf("TTFT p50 %.3f ms, p95 %.3f ms", r.TTFTP50MS, r.TTFTP95MS)
	case !(r.DecodeTPSMedian > 0):
		t.Errorf("per-stream decode %.3f tok/s", r.DecodeTPSMedian)
	}
	// The server saw the same: the timed requests plus one warm-up of 8 tokens.
	if got := metricValue(t, base, `stepflash_completion_tokens_total{model="stories260K"}`); got != float64(r.CompletionTokens+8) {
		t.Errorf("server generated %v tokens, bench counted %d + 8 warm-up", got, r.CompletionTokens)
	}
	// (The server counts a request after its handler returns, which may be
	// just after the client has read [DONE].)
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		got := metricValue(t, base, `stepflash_http_requests_total{route="POST /v1/completions",code="200"}`)
		if got == float64(r.RequestsOK+1) {
			break
		}
		if got > float64(r.RequestsOK+1) || time.Now().After(deadline) {
			t.Errorf("server answered %v completions, bench counted %d + 1 warm-up", got, r.RequestsOK)
			break
		}
	}
	// The warm-up stops a run whose model does not exist.
	if _, stderr, code := runMain(t, "bench", "--base-url", base+"/v1", "--model", "nope", "--clients", "1", "--duration", "1s"); code != 1 ||
		!strings.Contains(stderr, "warm-up request") || !strings.Contains(stderr, "model_not_found") {
		t.Errorf("unknown model: exit %d, %q", code, stderr)
	}
}

// TestBenchLoadLongPrompt: --long-prompt against a real `stepflash serve`:
// the background client's prompts of random token ids are accepted and
// prefilled (each adds its one token to the server's count), the short
// streams' inter-token latency is reported, and the long requests stay out
// of the short ones' counts.
func TestBenchLoadLongPrompt(t *testing.T) {
	path := testmodels.Path(t, "stories260K.gguf")
	base, _, _ := startServe(t, "-m", path, "--parallel", "3", "--quiet")
	stdout, stderr, code := runMain(t, "bench", "--base-url", base+"/v1", "--clients", "2", "--duration", "1s",
		"--max-tokens", "16", "--long-prompt", "600", "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var out struct {
		LongPrompt int               `json:"long_prompt_tokens"`
		Results    []*loadgen.Result `json:"results"`
	}
	if err := json.Unmarshal([]byte(stdout), &out); err != nil || len(out.Results) != 1 {
		t.Fatalf("bad JSON %q: %v", stdout, err)
	}
	r := out.Results[0]
	if out.LongPrompt != 600 || r.Long == nil || r.Long.Tokens != 600 || r.Long.RequestsOK < 1 || r.Long.RequestsFailed != 0 || len(r.Errors) != 0 {
		t.Fatalf("long prompt %d: %+v, errors %q", out.LongPrompt, r.Long, r.Errors)
	}
	if r.RequestsOK < 2 || r.CompletionTokens != 16*r.RequestsOK || !(r.ITLP50MS > 0 && r.ITLP50MS <= r.ITLP99MS) || len(r.RoundsITLP99MS) != 1 {
		t.Errorf("short streams: %d requests, %d tokens, ITL p50 %.3f p99 %.3f ms", r.RequestsOK, r.CompletionTokens, r.ITLP50MS, r.ITLP99MS)
	}
	// The server prefilled every long prompt: 600 prompt tokens each, one
	// completion token each beside the short requests' and the warm-up's.
	if got, want := metricValue(t, base, `stepflash_completion_tokens_total{model="stories260K"}`), float64(r.CompletionTokens+8+r.Long.RequestsOK); got != want {
		t.Errorf("server generated %v tokens, want %v", got, want)
	}
	stdout, _, code = runMain(t, "bench", "--base-url", base+"/v1", "--clients", "1", "--duration", "1s", "--max-tokens", "4", "--long-prompt", "300")
	if code != 0 || !strings.Contains(stdout, "300-token prompts ok / failed") || !strings.Contains(stdout, "ITL p50 / p99 ms") {
		t.Errorf("text report: exit %d\n%s", code, stdout)
	}
}

// TestBenchLoadSideBySide: two servers, alternating rounds, a request cap;
// each column says where its token counts came from, and ratios are to the
// last server.
func TestBenchLoadSideBySide(t *testing.T) {
	serve := func(usage bool) *httptest.Server {
		return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/v1/models" {
				io.WriteString(w, `{"object":"list","data":[{"id":"first"},{"id":"second"}]}`)
				return
			}
			var req struct {
				Model string `json:"model"`
			}
			json.NewDecoder(r.Body).Decode(&req)
			if req.Model != "first" {
				w.WriteHeader(404)
				io.WriteString(w, `{"error":{"message":"unknown model"}}`)
				return
			}
			for range 3 {
				io.WriteString(w, `data: {"choices":[{"text":"tok","finish_reason":null}]}`+"\n\n")
				w.(http.Flusher).Flush()
				time.Sleep(time.Millisecond)
			}
			io.WriteString(w, `data: {"choices":[{"text":"","finish_reason":"length"}]}`+"\n\n")
			if usage {
				io.WriteString(w, `data: {"choices":[],"usage":{"completion_tokens":3}}`+"\n\n")
			}
			io.WriteString(w, "data: [DONE]\n\n")
		}))
	}
	a, b := serve(true), serve(false)
	defer a.Close()
	defer b.Close()
	stdout, stderr, code := runMain(t, "bench", "--base-url", a.URL+"/v1", "--base-url", b.URL+"/v1/", "--clients", "2", "--duration", "1s",
		"--requests", "5", "--rounds", "2", "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	want := ""
	for round := 1; round <= 2; round++ {
		for _, base := range []string{a.URL, b.URL} {
			want += fmt.Sprintf("bench: round %d/2: 2 clients for 1s against %s/v1 (model \"first\")\n", round, base)
		}
	}
	if stderr != want {
		t.Errorf("progress\n%s\nwant\n%s", stderr, want)
	}
	var out benchLoadOutput
	if err := json.Unmarshal([]byte(stdout), &out); err != nil {
		t.Fatal(err)
	}
	if len(out.Results) != 2 {
		t.Fatalf("output %s", stdout)
	}
	for i, from := range []string{"usage", "chunks"} {
		r := out.Results[i]
		if r.Model != "first" || r.RequestsOK != 10 || r.CompletionTokens != 30 || r.TokensFrom != from || len(r.RoundsTPS) != 2 || r.AggregateRatio == nil {
			t.Errorf("server %d: %+v", i, *r)
		}
	}
	if r := out.Results; *r[1].AggregateRatio != 1 || math.Abs(*r[0].AggregateRatio-r[0].AggregateTPS/r[1].AggregateTPS) > 1e-9 {
		t.Errorf("ratios %v %v", *r[0].AggregateRatio, *r[1].AggregateRatio)
	}
	stdout, _, code = runMain(t, "bench", "--base-url", a.URL+"/v1", "--base-url", b.URL+"/v1", "--clients", "1", "--duration", "1s", "--requests", "1")
	if code != 0 || !strings.Contains(stdout, "ratio to the last") || !strings.Contains(stdout, "3 (usage)") || !strings.Contains(stdout, "3 (chunks)") {
		t.Errorf("text report: exit %d\n%s", code, stdout)
	}
}

func TestBenchLoadFlags(t *testing.T) {
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"--base-url", "http://127.0.0.1:1/v1", "-p", "16"}, "-p is a flag of bench -m"},
		{[]string{"--base-url", "http://127.0.0.1:1/v1", "--effort", "low"}, "-effort is a flag of bench -m"},
		{[]string{"-m", "x.gguf", "--clients", "2"}, "--clients needs --base-url"},
		{[]string{"-m", "x.gguf", "--long-prompt", "100"}, "--long-prompt needs --base-url"},
		{[]string{"--base-url", "http://127.0.0.1:1/v1", "--long-prompt", "-5"}, "--long-prompt must be in 0..1048576 tokens, got -5"},
		{[]string{"--base-url", "http://127.0.0.1:1/v1", "--long-prompt", "5", "--conversations", "1", "--turns", "1"}, "--long-prompt does not apply to the chat mode"},
		{[]string{"--base-url", "http://127.0.0.1:1/v1", "--clients", "0"}, "--clients must be in 1..1024"},
		{[]string{"--base-url", "http://127.0.0.1:1/v1", "--duration", "0s"}, "--duration must be positive"},
		{[]string{"--base-url", "http://127.0.0.1:1/v1", "--max-tokens", "0"}, "--max-tokens must be at least 1"},
		{[]string{"--base-url", "localhost:8000"}, "not an http(s) URL"},
		{[]string{"--base-url", "http://127.0.0.1:1/v1", "--clients", "1", "--duration", "1s"}, "listing the served models failed"},
	}
	for _, tc := range cases {
		_, stderr, code := runMain(t, append([]string{"bench"}, tc.args...)...)
		if code == 0 || !strings.Contains(stderr, tc.want) {
			t.Errorf("%q: exit %d, %q, want %q", tc.args, code, stderr, tc.want)
		}
	}
}
