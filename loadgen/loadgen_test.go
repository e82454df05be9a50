package loadgen

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestStreamCompletion: how one streamed response is counted, for the
// shapes servers send (llama-server puts usage on the last choice chunk;
// some send none) and for failures.
func TestStreamCompletion(t *testing.T) {
	chunk := func(text string) string {
		return `data: {"choices":[{"text":` + strconv.Quote(text) + `,"finish_reason":null}]}` + "\n\n"
	}
	finish := `data: {"choices":[{"text":"","finish_reason":"length"}]}` + "\n\n"
	cases := []struct {
		name      string
		status    int
		body      string
		tokens    int
		fromUsage bool
		err       string // substring; "" for success
	}{
		{"usage chunk (stepflash, OpenAI)", 200, chunk("a") + chunk("b") + chunk("c") + finish +
			`data: {"choices":[],"usage":{"completion_tokens":4}}` + "\n\ndata: [DONE]\n\n", 4, true, ""},
		{"usage on the final choice (llama-server)", 200, chunk("a") + chunk("b") +
			`data: {"choices":[{"text":"","finish_reason":"length"}],"usage":{"completion_tokens":2},"timings":{}}` + "\n\ndata: [DONE]\n\n", 2, true, ""},
		{"no usage: chunks with text", 200, chunk("a") + chunk("") + chunk("b") + chunk("c") + finish + "data: [DONE]\n\n", 3, false, ""},
		{"no [DONE] after a finish", 200, chunk("a") + finish, 1, false, ""},
		{"CRLF lines, comments, no space after data:", 200, ": ping\r\n\r\ndata:" + `{"choices":[{"text":"x","finish_reason":"stop"}]}` + "\r\n\r\ndata: [DONE]\r\n\r\n", 1, false, ""},
		{"error object", 404, `{"error":{"message":"The model \"m\" does not exist","type":"not_found_error","code":"model_not_found"}}`, 0, false,
			`HTTP 404: The model "m" does not exist (model_not_found)`},
		{"plain-text error", 503, "overloaded", 0, false, "HTTP 503: overloaded"},
		{"error in the stream", 200, chunk("a") + `data: {"error":{"message":"boom"}}` + "\n\n", 0, false, "error in the stream: boom"},
		{"cut short", 200, chunk("a") + chunk("b"), 0, false, "without a finish_reason or [DONE]"},
		{"bad JSON", 200, "data: {nope\n\n", 0, false, "bad stream chunk"},
		{"line too long", 200, "data: " + strings.Repeat("x", maxSSELine+1) + "\n\n", 0, false, "sse: line too long: over 4194304 bytes"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var got map[string]any
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path != "/v1/completions" || json.NewDecoder(r.Body).Decode(&got) != nil {
					http.Error(w, "bad request", 400)
					return
				}
				if tc.status != 200 {
					w.WriteHeader(tc.status)
				}
				io.WriteString(w, tc.body)
			}))
			defer srv.Close()
			c := Config{Prompt: "Hi", MaxTokens: 7, IgnoreEOS: true}
			s := streamCompletion(context.Background(), http.DefaultClient, srv.URL+"/v1", "", completionBody(c, "m"))
			if tc.err != "" {
				if !strings.Contains(s.err, tc.err) {
					t.Fatalf("error %q, want %q", s.err, tc.err)
				}
				return
			}
			if s.err != "" || s.tokens != tc.tokens || s.fromUsage != tc.fromUsage || s.ttft <= 0 {
				t.Fatalf("sample %+v, want %d tokens (usage %v)", s, tc.tokens, tc.fromUsage)
			}
			if got["model"] != "m" || got["max_tokens"] != float64(7) || got["stream"] != true || got["temperature"] != float64(0) ||
				got["ignore_eos"] != true || fmt.Sprint(got["stream_options"]) != "map[include_usage:true]" {
				t.Errorf("request body %v", got)
			}
		})
	}
}

func TestCompletionBodyNoIgnoreEOS(t *testing.T) {
	var got map[string]any
	if err := json.Unmarshal(completionBody(Config{Prompt: "Hi", MaxTokens: 3}, "m"), &got); err != nil {
		t.Fatal(err)
	}
	if _, ok := got["ignore_eos"]; ok || got["prompt"] != "Hi" {
		t.Errorf("request body %v", got)
	}
}

func TestCheck(t *testing.T) {
	ok := Config{BaseURLs: []string{"http://x/v1"}, Clients: 1, Duration: time.Second, MaxTokens: 1, Prompt: "p", Timeout: time.Second, Rounds: 1}
	if err := ok.Check(); err != nil {
		t.Fatal(err)
	}
	chat := ok
	chat.Conversations, chat.Turns, chat.Duration = 1, 1, 0 // the chat mode needs no duration
	if err := chat.Check(); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		edit func(c *Config)
		want string
	}{
		{func(c *Config) { c.BaseURLs = nil }, "no --base-url given"},
		{func(c *Config) { c.Clients = 0 }, "--clients must be in 1..1024, got 0"},
		{func(c *Config) { c.Clients = 1025 }, "--clients must be in 1..1024, got 1025"},
		{func(c *Config) { c.Duration = 0 }, "--duration must be positive and at most 24h0m0s, got 0s"},
		{func(c *Config) { c.Duration = 25 * time.Hour }, "--duration must be positive and at most 24h0m0s, got 25h0m0s"},
		{func(c *Config) { c.MaxTokens = 0 }, "--max-tokens must be at least 1, got 0"},
		{func(c *Config) { c.MaxRequests = -1 }, "--requests must not be negative"},
		{func(c *Config) { c.Timeout = 0 }, "--request-timeout must be positive"},
		{func(c *Config) { c.Rounds = 0 }, "--rounds must be at least 1"},
		{func(c *Config) { c.Prompt = "" }, "--prompt must not be empty"},
		{func(c *Config) { c.LongPrompt = -1 }, "--long-prompt must be in 0..1048576 tokens, got -1"},
		{func(c *Config) { c.LongPrompt = 1<<20 + 1 }, "--long-prompt must be in 0..1048576 tokens, got 1048577"},
		{func(c *Config) { c.Conversations, c.Turns, c.LongPrompt = 2, 2, 100 }, "--long-prompt does not apply to the chat mode"},
		{func(c *Config) { c.Conversations = 2 }, "--turns must be in 1..1000, got 0"},
		{func(c *Config) { c.Turns = 2 }, "--conversations must be in 1..100000, got 0"},
		{func(c *Config) { c.Conversations, c.Turns = 100001, 2 }, "--conversations must be in 1..100000, got 100001"},
		{func(c *Config) { c.Conversations, c.Turns = 2, 1001 }, "--turns must be in 1..1000, got 1001"},
		{func(c *Config) { c.Conversations, c.Turns, c.MaxRequests = 2, 2, 5 }, "--requests does not apply to the chat mode: --conversations and --turns set the requests"},
		{func(c *Config) { c.Conversations, c.Turns, c.Duration = 2, 2, -time.Second }, "--duration must be in 0..24h0m0s in the chat mode (0: no time limit), got -1s"},
		{func(c *Config) { c.Conversations, c.Turns, c.Duration = 2, 2, 25*time.Hour }, "--duration must be in 0..24h0m0s in the chat mode (0: no time limit), got 25h0m0s"},
	}
	for _, tc := range cases {
		c := ok
		tc.edit(&c)
		if err := c.Check(); err == nil || err.Error() != tc.want {
			t.Errorf("error %v, want %q", err, tc.want)
		}
		if _, err := Run(context.Background(), c, nil); err == nil || err.Error() != tc.want {
			t.Errorf("Run: error %v, want %q", err, tc.want)
		}
	}
}

// cannedServer streams three chunks of text to requests for model
// "first" (then usage, if usage), lists the models "first" and "second",
// and counts the completions it answered.
func cannedServer(t *testing.T, usage bool, n *atomic.Int64) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
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
		n.Add(1)
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
	t.Cleanup(srv.Close)
	return srv
}

// TestRun: two servers, alternating rounds, a request cap, a warm-up; the
// model from /models; each result says where its token counts came from,
// and ratios are to the last server.
func TestRun(t *testing.T) {
	var na, nb atomic.Int64
	a, b := cannedServer(t, true, &na), cannedServer(t, false, &nb)
	c := Config{BaseURLs: []string{a.URL + "/v1", b.URL + "/v1"}, Clients: 2, Duration: 10 * time.Second, MaxTokens: 3, Prompt: "Hi",
		IgnoreEOS: true, MaxRequests: 5, Timeout: 10 * time.Second, Rounds: 2, Warmup: true}
	var progress bytes.Buffer
	results, err := Run(context.Background(), c, &progress)
	if err != nil {
		t.Fatal(err)
	}
	if len(results) != 2 || na.Load() != 11 || nb.Load() != 11 {
		t.Fatalf("%d results; servers answered %d and %d completions, want 2 × 5 + 1 warm-up each", len(results), na.Load(), nb.Load())
	}
	for i, from := range []string{"usage", "chunks"} {
		r := results[i]
		if r.BaseURL != c.BaseURLs[i] || r.Model != "first" || r.RequestsOK != 10 || r.RequestsFailed != 0 || r.CompletionTokens != 30 ||
			r.TokensFrom != from || len(r.RoundsTPS) != 2 || r.AggregateRatio == nil || r.Seconds <= 0 || r.Seconds > 10 ||
			!(r.TTFTP50MS > 0 && r.TTFTP50MS <= r.TTFTP95MS && r.TTFTP95MS <= r.TTFTP99MS) || !(r.DecodeTPSMedian > 0) {
			t.Errorf("server %d: %+v", i, *r)
		}
	}
	if *results[1].AggregateRatio != 1 || math.Abs(*results[0].AggregateRatio-results[0].AggregateTPS/results[1].AggregateTPS) > 1e-9 {
		t.Errorf("ratios %v %v", *results[0].AggregateRatio, *results[1].AggregateRatio)
	}
	var want strings.Builder
	for round := 1; round <= 2; round++ {
		for _, base := range c.BaseURLs {
			fmt.Fprintf(&want, "round %d/2: 2 clients for 10s against %s (model \"first\")\n", round, base)
		}
	}
	if progress.String() != want.String() {
		t.Errorf("progress\n%s\nwant\n%s", progress.String(), want.String())
	}

	// A model no server has: the warm-up fails the run; without a warm-up
	// every request fails and the run does not.
	c = Config{BaseURLs: []string{a.URL + "/v1"}, Model: "nope", Clients: 1, Duration: time.Second, MaxTokens: 3, Prompt: "Hi",
		MaxRequests: 2, Timeout: 10 * time.Second, Rounds: 1, Warmup: true}
	if _, err := Run(context.Background(), c, nil); err == nil || !strings.Contains(err.Error(), `warm-up request for model "nope" failed: HTTP 404: unknown model`) {
		t.Errorf("warm-up: error %v", err)
	}
	c.Warmup = false
	results, err = Run(context.Background(), c, nil)
	if err != nil || len(results) != 1 {
		t.Fatalf("%v, %v", results, err)
	}
	if r := results[0]; r.RequestsOK != 0 || r.RequestsFailed != 2 || len(r.Errors) != 1 || r.Errors[0] != "HTTP 404: unknown model" ||
		r.TokensFrom != "" || r.AggregateTPS != 0 || r.AggregateRatio != nil {
		t.Errorf("failing server: %+v", *r)
	}

	// No model given and no model list.
	c.Model = ""
	c.BaseURLs = []string{a.URL + "/nothing"}
	if _, err := Run(context.Background(), c, nil); err == nil || !strings.Contains(err.Error(), "no --model given, and listing the served models failed") {
		t.Errorf("no models: error %v", err)
	}
}

// results is a fixed report of two servers over two rounds.
func results(t *testing.T) []*Result {
	t.Helper()
	ms := func(v ...int) []time.Duration {
		var d []time.Duration
		for _, x := range v {
			d = append(d, time.Duration(x)*time.Millisecond)
		}
		return d
	}
	mk := func(base string, fromUsage, fail bool) *Result {
		r := &Result{BaseURL: base, Model: "m", Long: &LongPrompt{Tokens: 4000, TTFTMS: []float64{}}}
		long := sample{long: true, tokens: 1, ttft: 2500 * time.Millisecond}
		if fail {
			long = sample{long: true, err: "HTTP 400: too long"}
		}
		r.add([]sample{{tokens: 17, fromUsage: fromUsage, ttft: 12345 * time.Microsecond, decodeTPS: 33.3, gaps: ms(10, 20, 30)},
			{tokens: 5, fromUsage: !fromUsage, ttft: 7 * time.Millisecond, decodeTPS: 12.5, gaps: ms(5)}, {err: "boom"}, long}, 1234*time.Millisecond)
		if !fail {
			r.add([]sample{{tokens: 9, fromUsage: fromUsage, ttft: 3 * time.Millisecond, decodeTPS: 99, gaps: ms(40)}, {err: "boom"}, {err: "bang"},
				{long: true, tokens: 1, ttft: 3500 * time.Millisecond}}, 999*time.Millisecond)
		} else {
			r.add(nil, time.Second)
		}
		r.finish()
		return r
	}
	res := []*Result{mk("http://a/v1", true, false), mk("http://b/v1", false, true)}
	ratio, one := res[0].AggregateTPS/res[1].AggregateTPS, 1.0
	res[0].AggregateRatio, res[1].AggregateRatio = &ratio, &one
	return res
}

var reportConfig = Config{Clients: 3, Duration: 1500 * time.Millisecond, MaxTokens: 17, Prompt: "Hi \"x\" ü", IgnoreEOS: true, Rounds: 2, LongPrompt: 4000}

func TestPrint(t *testing.T) {
	var b strings.Builder
	Print(&b, reportConfig, results(t))
	c := reportConfig
	c.IgnoreEOS, c.LongPrompt, c.Rounds = false, 0, 1
	Print(&b, c, []*Result{{BaseURL: "x", Model: "y"}})
	want := `load: 3 streaming clients × 1.5s per server and round, 2 round(s); greedy /completions, max_tokens 17, ignore_eos, prompt "Hi \"x\" ü"; beside them one client streaming 4000-token prompts (random token ids, 1 token each)
server                             http://a/v1         http://b/v1         
model                              m                   m                   
requests ok / failed               3 / 3               2 / 1               
completion tokens (from)           31 (usage+chunks)   22 (usage+chunks)   
aggregate tok/s                    13.4                8.9                 
  tok/s by round                   17.8 9.0            17.8 0.0            
  ratio to the last                1.51x               1.00x               
TTFT p50 / p95 / p99 ms            7.0 / 12.3 / 12.3   7.0 / 12.3 / 12.3   
per-stream decode tok/s (median)   33.3                22.9                
ITL p50 / p99 ms                   20.0 / 40.0         10.0 / 30.0         
  ITL p99 ms by round              30.0 40.0           30.0 0.0            
4000-token prompts ok / failed     2 / 0               0 / 1               
  their TTFT ms (median)           3000                -                   
error (http://a/v1): boom
error (http://a/v1): bang
error (http://b/v1): boom
error (http://b/v1): long prompt: HTTP 400: too long
load: 3 streaming clients × 1.5s per server and round, 1 round(s); greedy /completions, max_tokens 17, prompt "Hi \"x\" ü"
server                             x                 
model                              y                 
requests ok / failed               0 / 0             
completion tokens (from)           0 (none)          
aggregate tok/s                    0.0               
TTFT p50 / p95 / p99 ms            0.0 / 0.0 / 0.0   
per-stream decode tok/s (median)   0.0               
ITL p50 / p99 ms                   0.0 / 0.0         
`
	if b.String() != want {
		t.Errorf("report\n%s\nwant\n%s", b.String(), want)
	}
}

func TestWriteJSON(t *testing.T) {
	var b strings.Builder
	if err := WriteJSON(&b, reportConfig, results(t)); err != nil {
		t.Fatal(err)
	}
	want := `{"clients":3,"duration_s":1.5,"max_tokens":17,"ignore_eos":true,"prompt":"Hi \"x\" ü","long_prompt_tokens":4000,"rounds":2,"results":[` +
		`{"base_url":"http://a/v1","model":"m","requests_ok":3,"requests_failed":3,"errors":["boom","bang"],"completion_tokens":31,` +
		`"tokens_from":"usage+chunks","seconds":2.233,"aggregate_tps":13.418604990728168,"rounds_tps":[17.828200972447327,9.00900900900901],` +
		`"aggregate_ratio":1.5053235053235052,"ttft_p50_ms":7,"ttft_p95_ms":12.345,"ttft_p99_ms":12.345,"decode_tps_median":33.3,` +
		`"itl_p50_ms":20,"itl_p99_ms":40,"rounds_itl_p99_ms":[30,40],"long_prompt":{"tokens":4000,"requests_ok":2,"requests_failed":0,"ttft_ms":[2500,3500]}},` +
		`{"base_url":"http://b/v1","model":"m","requests_ok":2,"requests_failed":1,"errors":["boom","long prompt: HTTP 400: too long"],"completion_tokens":22,` +
		`"tokens_from":"usage+chunks","seconds":2.234,"aggregate_tps":8.914100486223663,"rounds_tps":[17.828200972447327,0],` +
		`"aggregate_ratio":1,"ttft_p50_ms":7,"ttft_p95_ms":12.345,"ttft_p99_ms":12.345,"decode_tps_median":22.9,` +
		`"itl_p50_ms":10,"itl_p99_ms":30,"rounds_itl_p99_ms":[30,0],"long_prompt":{"tokens":4000,"requests_ok":0,"requests_failed":1,"ttft_ms":[]}}]}` + "\n"
	if b.String() != want {
		t.Errorf("JSON\n%s\nwant\n%s", b.String(), want)
	}
}

func TestPercentileMedian(t *testing.T) {
	v := []float64{5, 1, 4, 2, 3}
	for _, tc := range []struct{ p, want float64 }{{0, 1}, {20, 1}, {21, 2}, {50, 3}, {95, 5}, {99, 5}, {100, 5}} {
		if got := percentile(v, tc.p); got != tc.want {
			t.Errorf("p%v = %v, want %v", tc.p, got, tc.want)
		}
	}
	if percentile(nil, 50) != 0 || median(nil) != 0 || median(v) != 3 || median([]float64{4, 1, 2, 3}) != 2.5 {
		t.Error("median")
	}
	if v[0] != 5 {
		t.Error("the input was sorted")
	}
}

// TestLongPrompt: the background client sends prompts of LongPrompt
// random token ids (fresh ones each time, one token to generate) while
// the round lasts, the other clients go on until its last request has
// ended, and each stream's inter-token gaps are measured (a canned server
// paces its chunks 20 ms apart and takes 300 ms over a long prompt).
func TestLongPrompt(t *testing.T) {
	var mu sync.Mutex
	var longs [][]int
	var longEnd time.Time
	var shortStarts []time.Time
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/models" {
			io.WriteString(w, `{"object":"list","data":[{"id":"m"}]}`)
			return
		}
		var req struct {
			Prompt    json.RawMessage `json:"prompt"`
			MaxTokens int             `json:"max_tokens"`
		}
		json.NewDecoder(r.Body).Decode(&req)
		var ids []int
		if json.Unmarshal(req.Prompt, &ids) == nil {
			mu.Lock()
			longs = append(longs, ids)
			mu.Unlock()
			if req.MaxTokens != 1 {
				w.WriteHeader(400)
				io.WriteString(w, `{"error":{"message":"want max_tokens 1"}}`)
				return
			}
			time.Sleep(300 * time.Millisecond)
			io.WriteString(w, `data: {"choices":[{"text":"x","finish_reason":"length"}]}`+"\n\ndata: [DONE]\n\n")
			mu.Lock()
			longEnd = time.Now()
			mu.Unlock()
			return
		}
		mu.Lock()
		shortStarts = append(shortStarts, time.Now())
		mu.Unlock()
		for i := range 3 {
			if i > 0 {
				time.Sleep(20 * time.Millisecond)
			}
			io.WriteString(w, `data: {"choices":[{"text":"tok","finish_reason":null}]}`+"\n\n")
			w.(http.Flusher).Flush()
		}
		io.WriteString(w, `data: {"choices":[{"text":"","finish_reason":"length"}]}`+"\n\ndata: [DONE]\n\n")
	}))
	defer srv.Close()
	c := Config{BaseURLs: []string{srv.URL + "/v1"}, Clients: 2, Duration: 100 * time.Millisecond, MaxTokens: 3, Prompt: "Hi",
		Timeout: 10 * time.Second, Rounds: 2, LongPrompt: 50}
	var progress bytes.Buffer
	start := time.Now()
	results, err := Run(context.Background(), c, &progress)
	if err != nil {
		t.Fatal(err)
	}
	r := results[0]
	mu.Lock()
	defer mu.Unlock()
	if len(longs) != 2 || r.Long == nil || r.Long.Tokens != 50 || r.Long.RequestsOK != 2 || r.Long.RequestsFailed != 0 || len(r.Long.TTFTMS) != 2 {
		t.Fatalf("%d long prompts sent; result %+v", len(longs), r.Long)
	}
	for _, ids := range longs {
		if len(ids) != 50 || slices.ContainsFunc(ids, func(id int) bool { return id < 100 || id > 355 }) {
			t.Errorf("long prompt %v: want 50 ids in 100..355", ids)
		}
	}
	if slices.Equal(longs[0], longs[1]) {
		t.Error("both rounds sent the same long prompt: a prefix cache would serve the second")
	}
	for _, ms := range r.Long.TTFTMS {
		if ms < 300 {
			t.Errorf("long prompt TTFT %.1f ms, the server took 300", ms)
		}
	}
	// The short clients went on after the 100 ms until the long prompt had
	// ended: a request started within 40 ms of its end.
	last := slices.MaxFunc(shortStarts, func(a, b time.Time) int { return a.Compare(b) })
	if last.Before(longEnd.Add(-40*time.Millisecond)) || r.Seconds < 0.6 || time.Since(start) < 600*time.Millisecond {
		t.Errorf("the last short request started %v before the long one ended; rounds took %.3fs", longEnd.Sub(last), r.Seconds)
	}
	if r.RequestsOK < 4 || r.CompletionTokens != 3*r.RequestsOK {
		t.Errorf("%d short requests, %d tokens: the long prompt's must not count", r.RequestsOK, r.CompletionTokens)
	}
	// 2 gaps of 20 ms per short request.
	if !(r.ITLP50MS >= 20 && r.ITLP50MS < 200 && r.ITLP99MS >= r.ITLP50MS) || len(r.RoundsITLP99MS) != 2 {
		t.Errorf("ITL p50 %.1f ms, p99 %.1f ms, by round %v", r.ITLP50MS, r.ITLP99MS, r.RoundsITLP99MS)
	}
	if want := "round 1/2: 2 clients for 100ms and 50-token prompts in the background against " + srv.URL + "/v1 (model \"m\")\n"; !strings.HasPrefix(progress.String(), want) {
		t.Errorf("progress %q, want it to start %q", progress.String(), want)
	}
}
