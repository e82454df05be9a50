package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/stepflash/stepflash/internal/testmodels"
)

// Tests of bench's chat mode (--conversations, --turns) through Main;
// package loadgen has the tests of the conversations themselves.

// benchChatOutput is `bench --base-url … --conversations … --json`.
type benchChatOutput struct {
	benchLoadOutput
	Conversations int     `json:"conversations"`
	Turns         int     `json:"turns"`
	DurationS     float64 `json:"duration_s"`
}

// TestBenchConversations drives a real `stepflash serve` with 2
// conversations of 3 turns and checks the prompt accounting against the
// server's own metrics.
func TestBenchConversations(t *testing.T) {
	path := testmodels.Path(t, "stories260K.gguf")
	base, _, _ := startServe(t, "-m", path, "--parallel", "2", "--quiet")
	stdout, stderr, code := runMain(t, "bench", "--base-url", base+"/v1", "--model", "stories260K", "--clients", "2",
		"--conversations", "2", "--turns", "3", "--max-tokens", "16", "--warmup=false", "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if want := "bench: round 1/1: 2 clients, 2 conversations of 3 turns against " + base + "/v1 (model \"stories260K\")\n"; stderr != want {
		t.Errorf("progress %q, want %q", stderr, want)
	}
	var out benchChatOutput
	if err := json.Unmarshal([]byte(stdout), &out); err != nil {
		t.Fatalf("bad JSON %q: %v", stdout, err)
	}
	if len(out.Results) != 1 || out.Clients != 2 || out.Conversations != 2 || out.Turns != 3 || out.DurationS != 0 || out.MaxTokens != 16 {
		t.Fatalf("output %s", stdout)
	}
	r := out.Results[0]
	if r.Chat == nil || r.RequestsOK != 6 || r.RequestsFailed != 0 || r.ConversationsOK != 2 || r.RequestsNotSent != 0 ||
		r.CompletionTokens != 6*16 || r.TokensFrom != "usage" || len(r.Turns) != 3 || r.CachedUnreported != 0 ||
		r.CachedShare == nil || r.CachedShareFollowups == nil || *r.CachedShareFollowups <= 0.5 ||
		!(r.TTFTP50MS > 0 && r.TTFTP50MS <= r.TTFTP95MS && r.TTFTP95MS <= r.TTFTP99MS) {
		t.Fatalf("result %s", stdout)
	}
	// The server counted the same prompt and cached tokens.
	for _, m := range []struct {
		sample string
		want   int
	}{{`stepflash_prompt_tokens_total{model="stories260K"}`, r.PromptTokens}, {`stepflash_cached_prompt_tokens_total{model="stories260K"}`, r.CachedTokens}} {
		if got := metricValue(t, base, m.sample); got != float64(m.want) {
			t.Errorf("%s = %v, bench counted %d", m.sample, got, m.want)
		}
	}

	// The text report, with a warm-up and a time limit that does not stop
	// it.
	stdout, stderr, code = runMain(t, "bench", "--base-url", base+"/v1", "--clients", "2", "--conversations", "2", "--turns", "2",
		"--max-tokens", "8", "--duration", "10m")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, s := range []string{"2 conversations of 2 turns per server and round (at most 10m0s)", "/chat/completions, max_tokens 8, ignore_eos",
		"conversations ok / failed / cut short   2 / 0 / 0 ", "requests ok / failed / not sent         4 / 0 / 0 ",
		"TTFT p50 / p95 / p99 ms", "cached share, all turns ", "cached share, turns 2 and later "} {
		if !strings.Contains(stdout, s) {
			t.Errorf("report lacks %q:\n%s", s, stdout)
		}
	}
	if !strings.Contains(stderr, "(at most 10m0s) against") {
		t.Errorf("progress %q", stderr)
	}
}

func TestBenchConversationsFlags(t *testing.T) {
	url := "http://127.0.0.1:1/v1"
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"--base-url", url, "--turns", "3"}, "--conversations and --turns go together: give both for the chat mode"},
		{[]string{"--base-url", url, "--conversations", "3"}, "--conversations and --turns go together"},
		{[]string{"--base-url", url, "--conversations", "0", "--turns", "0"}, "--conversations and --turns must be at least 1, got 0 and 0"},
		{[]string{"--base-url", url, "--conversations", "2", "--turns", "-1"}, "--conversations and --turns must be at least 1, got 2 and -1"},
		{[]string{"--base-url", url, "--conversations", "100001", "--turns", "2"}, "--conversations must be in 1..100000, got 100001"},
		{[]string{"--base-url", url, "--conversations", "2", "--turns", "2", "--requests", "3"}, "--requests does not apply to the chat mode"},
		{[]string{"--base-url", url, "--conversations", "2", "--turns", "2", "--duration", "-1s"}, "--duration must be in 0..24h0m0s in the chat mode"},
		{[]string{"-m", "x.gguf", "--conversations", "2"}, "--conversations needs --base-url"},
		{[]string{"-m", "x.gguf", "--turns", "2"}, "--turns needs --base-url"},
		{[]string{"--base-url", url, "--conversations", "2", "--turns", "2", "--clients", "1"}, "listing the served models failed"},
	}
	for _, tc := range cases {
		_, stderr, code := runMain(t, append([]string{"bench"}, tc.args...)...)
		if code == 0 || !strings.Contains(stderr, tc.want) {
			t.Errorf("%q: exit %d, %q, want %q", tc.args, code, stderr, tc.want)
		}
	}
}
