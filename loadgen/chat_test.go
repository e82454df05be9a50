package loadgen

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stepflash/stepflash/engine"
	"github.com/stepflash/stepflash/internal/testserve"
	"github.com/stepflash/stepflash/server"
)

// chatRequest is what a fake server reads of a chat completion request.
type chatRequest struct {
	Model         string        `json:"model"`
	Messages      []chatMessage `json:"messages"`
	MaxTokens     int           `json:"max_tokens"`
	Temperature   *float64      `json:"temperature"`
	Stream        bool          `json:"stream"`
	StreamOptions struct {
		IncludeUsage bool `json:"include_usage"`
	} `json:"stream_options"`
	IgnoreEOS bool `json:"ignore_eos"`
}

// fakeReply is the content a fake chat server streams for messages.
func fakeReply(messages []chatMessage) string {
	return fmt.Sprintf("Reply %d to %q.", len(messages), messages[len(messages)-1].Content)
}

// fakeChat is an OpenAI-compatible chat server on loopback. It streams a
// reasoning chunk, then fakeReply in three content chunks, a finish, the
// usage chunk that usage returns (none for ""), and [DONE]; or, where
// fail returns true, an HTTP 500 error. It records the requests.
type fakeChat struct {
	usage func(req chatRequest) string
	fail  func(req chatRequest) bool

	mu   sync.Mutex
	reqs []chatRequest
	URL  string
}

func newFakeChat(t *testing.T, usage func(chatRequest) string, fail func(chatRequest) bool) *fakeChat {
	f := &fakeChat{usage: usage, fail: fail}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req chatRequest
		if r.URL.Path != "/v1/chat/completions" || json.NewDecoder(r.Body).Decode(&req) != nil || len(req.Messages) == 0 {
			http.Error(w, "bad request", 400)
			return
		}
		f.mu.Lock()
		f.reqs = append(f.reqs, req)
		f.mu.Unlock()
		if f.fail != nil && f.fail(req) {
			w.WriteHeader(500)
			io.WriteString(w, `{"error":{"message":"boom"}}`)
			return
		}
		chunk := func(delta map[string]any, finish any) {
			b, _ := json.Marshal(map[string]any{"choices": []any{map[string]any{"index": 0, "delta": delta, "finish_reason": finish}}, "usage": nil})
			fmt.Fprintf(w, "data: %s\n\n", b)
			w.(http.Flusher).Flush()
		}
		chunk(map[string]any{"role": "assistant", "reasoning_content": "Hmm."}, nil)
		reply := fakeReply(req.Messages)
		third := len(reply) / 3
		for _, piece := range []string{reply[:third], reply[third : 2*third], reply[2*third:]} {
			chunk(map[string]any{"content": piece}, nil)
		}
		chunk(map[string]any{}, "length")
		if u := f.usage(req); u != "" {
			fmt.Fprintf(w, "data: {\"choices\":[],\"usage\":%s}\n\n", u)
		}
		io.WriteString(w, "data: [DONE]\n\n")
	}))
	t.Cleanup(srv.Close)
	f.URL = srv.URL + "/v1"
	return f
}

// requests returns the recorded requests.
func (f *fakeChat) requests() []chatRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.reqs)
}

// tenPerMessage is a usage of 10 prompt tokens per message, all but the
// last two (the new assistant and user messages) cached, and 4 completion
// tokens.
func tenPerMessage(req chatRequest) string {
	n := len(req.Messages)
	return fmt.Sprintf(`{"prompt_tokens":%d,"completion_tokens":4,"prompt_tokens_details":{"cached_tokens":%d}}`, 10*n, 10*max(n-2, 0))
}

func chatConfig(bases ...string) Config {
	return Config{BaseURLs: bases, Model: "m", Clients: 2, MaxTokens: 5, Prompt: "Tell me", IgnoreEOS: true,
		Timeout: 10 * time.Second, Rounds: 1, Conversations: 3, Turns: 3}
}

// TestChatPrompts: what a server receives. Every turn resends the history
// (the previous turn's messages, its streamed content without the
// reasoning, and a new user message); every round against every server
// runs the same conversations under its own run label.
func TestChatPrompts(t *testing.T) {
	a, b := newFakeChat(t, tenPerMessage, nil), newFakeChat(t, tenPerMessage, nil)
	c := chatConfig(a.URL, b.URL)
	c.Rounds = 2
	c.Salt = "s"
	var progress bytes.Buffer
	results, err := Run(context.Background(), c, &progress)
	if err != nil {
		t.Fatal(err)
	}
	var want strings.Builder
	for round := 1; round <= 2; round++ {
		for _, base := range c.BaseURLs {
			fmt.Fprintf(&want, "round %d/2: 2 clients, 3 conversations of 3 turns against %s (model \"m\")\n", round, base)
		}
	}
	if progress.String() != want.String() {
		t.Errorf("progress\n%s\nwant\n%s", progress.String(), want.String())
	}

	// Turn 2 of conversation 1 in round 2 against b, spelled out.
	turn2 := []chatMessage{{"system", systemPrompt}, {"user", "Tell me (conversation 1, run s.2.2)"},
		{"assistant", `Reply 2 to "Tell me (conversation 1, run s.2.2)".`}, {"user", "Go on. (turn 2)"}}
	// Every turn of a run, encoded, sorted.
	runTurns := func(run string) []string {
		var turns []string
		for i := 1; i <= 3; i++ {
			msgs := firstMessages(c, run, i)
			for k := 1; k <= 3; k++ {
				if run == "s.2.2" && i == 1 && k == 2 && !slices.Equal(msgs, turn2) {
					t.Errorf("turn 2 of conversation 1: %q, want %q", msgs, turn2)
				}
				enc, _ := json.Marshal(msgs)
				turns = append(turns, string(enc))
				msgs = append(msgs, chatMessage{"assistant", fakeReply(msgs)}, nextUser(k+1))
			}
		}
		slices.Sort(turns)
		return turns
	}
	for si, f := range []*fakeChat{a, b} {
		reqs := f.requests()
		if len(reqs) != 18 {
			t.Fatalf("%s got %d requests, want 2 rounds × 3 conversations × 3 turns", f.URL, len(reqs))
		}
		for r := range 2 {
			var got []string
			for _, req := range reqs[9*r : 9*r+9] {
				if req.Model != "m" || req.MaxTokens != 5 || req.Temperature == nil || *req.Temperature != 0 || !req.Stream ||
					!req.StreamOptions.IncludeUsage || !req.IgnoreEOS {
					t.Errorf("request %+v", req)
				}
				enc, _ := json.Marshal(req.Messages)
				got = append(got, string(enc))
			}
			slices.Sort(got)
			if round := runTurns(fmt.Sprintf("s.%d.%d", r+1, si+1)); !slices.Equal(got, round) {
				t.Errorf("%s, round %d: messages\n%s\nwant\n%s", f.URL, r+1, strings.Join(got, "\n"), strings.Join(round, "\n"))
			}
		}
	}

	// Per conversation and round: prompts 20+40+60, cached 0+20+40.
	for i, r := range results {
		ch := r.Chat
		if ch == nil || r.RequestsOK != 18 || r.RequestsFailed != 0 || r.CompletionTokens != 18*4 || r.TokensFrom != "usage" ||
			ch.ConversationsOK != 6 || ch.ConversationsFailed != 0 || ch.ConversationsCut != 0 || ch.RequestsNotSent != 0 ||
			ch.PromptTokens != 720 || ch.CachedTokens != 360 || ch.CachedUnreported != 0 ||
			ch.CachedShare == nil || *ch.CachedShare != 0.5 || ch.CachedShareFollowups == nil || *ch.CachedShareFollowups != 0.6 ||
			len(ch.Turns) != 3 || r.AggregateRatio == nil || !(r.TTFTP50MS > 0 && r.TTFTP95MS <= r.TTFTP99MS) {
			t.Fatalf("server %d: %+v %+v", i, *r, ch)
		}
		for k, ts := range ch.Turns {
			share := float64(k) / float64(k+1) // 2k of 2k+2 messages cached
			if ts.Turn != k+1 || ts.RequestsOK != 6 || ts.RequestsFailed != 0 || ts.PromptTokens != 6*20*(k+1) || ts.CachedTokens != 6*20*k ||
				ts.CachedShare == nil || *ts.CachedShare != share || !(ts.TTFTP50MS > 0) {
				t.Errorf("server %d, turn %d: %+v", i, k+1, ts)
			}
		}
	}
}

// TestChatUsage: where the cached tokens are read from, and a share that
// is unknown (not 0) when the usage does not give them.
func TestChatUsage(t *testing.T) {
	cases := []struct {
		name       string
		usage      string // of every request; "" for none
		share      float64
		unreported int    // of the 2 requests
		tokensFrom string // of the completion tokens
	}{
		{"OpenAI: prompt_tokens_details", `{"prompt_tokens":10,"completion_tokens":3,"prompt_tokens_details":{"cached_tokens":4}}`, 0.4, 0, "usage"},
		{"top level (stepflash, StepFun)", `{"prompt_tokens":10,"completion_tokens":3,"cached_tokens":7}`, 0.7, 0, "usage"},
		{"DeepSeek", `{"prompt_tokens":10,"completion_tokens":3,"prompt_cache_hit_tokens":2}`, 0.2, 0, "usage"},
		{"details first", `{"prompt_tokens":10,"completion_tokens":3,"prompt_tokens_details":{"cached_tokens":4},"cached_tokens":9}`, 0.4, 0, "usage"},
		{"zero cached", `{"prompt_tokens":10,"completion_tokens":3,"prompt_tokens_details":{"cached_tokens":0}}`, 0, 0, "usage"},
		{"details null (vLLM)", `{"prompt_tokens":10,"completion_tokens":3,"prompt_tokens_details":null}`, 0, 2, "usage"},
		{"no usage", "", 0, 2, "chunks"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeChat(t, func(chatRequest) string { return tc.usage }, nil)
			c := chatConfig(f.URL)
			c.Clients, c.Conversations, c.Turns = 1, 1, 2
			results, err := Run(context.Background(), c, nil)
			if err != nil {
				t.Fatal(err)
			}
			r := results[0]
			if r.RequestsOK != 2 || r.TokensFrom != tc.tokensFrom || r.CachedUnreported != tc.unreported {
				t.Fatalf("%+v %+v", *r, *r.Chat)
			}
			var b strings.Builder
			Print(&b, c, results)
			if tc.unreported > 0 {
				if r.CachedShare != nil || r.CachedShareFollowups != nil ||
					!strings.Contains(b.String(), "cached share, all turns                 unknown: 2 requests had no cached tokens in their usage") ||
					!strings.Contains(b.String(), "cached share, turns 2 and later         unknown: 1 request had no cached tokens in its usage") {
					t.Errorf("shares %v %v\n%s", r.CachedShare, r.CachedShareFollowups, b.String())
				}
				return
			}
			if r.CachedShare == nil || *r.CachedShare != tc.share || r.CachedShareFollowups == nil || *r.CachedShareFollowups != tc.share ||
				!strings.Contains(b.String(), fmt.Sprintf("cached share, all turns                 %.1f%%", 100*tc.share)) {
				t.Errorf("shares %v %v\n%s", r.CachedShare, r.CachedShareFollowups, b.String())
			}
		})
	}
}

// TestChatFailedTurn: a failed turn ends its conversation; its later turns
// are not sent, and the other conversations go on.
func TestChatFailedTurn(t *testing.T) {
	conv2 := func(req chatRequest) bool {
		return strings.HasPrefix(req.Messages[1].Content, "Tell me (conversation 2, run ")
	}
	f := newFakeChat(t, tenPerMessage, func(req chatRequest) bool { return conv2(req) && len(req.Messages) == 4 })
	results, err := Run(context.Background(), chatConfig(f.URL), nil)
	if err != nil {
		t.Fatal(err)
	}
	r := results[0]
	if r.RequestsOK != 7 || r.RequestsFailed != 1 || r.RequestsNotSent != 1 || !slices.Equal(r.Errors, []string{"HTTP 500: boom"}) ||
		r.ConversationsOK != 2 || r.ConversationsFailed != 1 || r.ConversationsCut != 0 {
		t.Fatalf("%+v %+v", *r, *r.Chat)
	}
	if got := len(f.requests()); got != 8 {
		t.Errorf("the server got %d requests, want 3 + 2 + 3", got)
	}
	for k, want := range [][2]int{{3, 0}, {2, 1}, {2, 0}} {
		if ts := r.Turns[k]; ts.RequestsOK != want[0] || ts.RequestsFailed != want[1] {
			t.Errorf("turn %d: %+v, want %d ok, %d failed", k+1, ts, want[0], want[1])
		}
	}
	// Conversation 2's turn 2 failed: it is the only one whose turn 3 the
	// server did not get.
	for _, req := range f.requests() {
		if len(req.Messages) == 6 && conv2(req) {
			t.Errorf("turn 3 of conversation 2 was sent")
		}
	}
	var b strings.Builder
	Print(&b, chatConfig(f.URL), results)
	for _, line := range []string{"conversations ok / failed / cut short   2 / 1 / 0 ", "requests ok / failed / not sent         7 / 1 / 1 ",
		"error (" + f.URL + "): HTTP 500: boom\n"} {
		if !strings.Contains(b.String(), line) {
			t.Errorf("report lacks %q:\n%s", line, b.String())
		}
	}
}

// TestChatDuration: in the chat mode a duration stops new turns; the
// conversations it stops count as cut short and their turns as not sent.
func TestChatDuration(t *testing.T) {
	f := newFakeChat(t, func(chatRequest) string {
		time.Sleep(300 * time.Millisecond) // longer than the duration
		return ""
	}, nil)
	c := chatConfig(f.URL)
	c.Clients, c.Turns, c.Duration = 1, 2, 100*time.Millisecond
	var progress bytes.Buffer
	results, err := Run(context.Background(), c, &progress)
	if err != nil {
		t.Fatal(err)
	}
	r := results[0]
	if r.RequestsOK != 1 || r.RequestsFailed != 0 || r.RequestsNotSent != 5 || r.ConversationsOK != 0 || r.ConversationsFailed != 0 || r.ConversationsCut != 3 {
		t.Errorf("%+v %+v", *r, *r.Chat)
	}
	if want := "round 1/1: 1 clients, 3 conversations of 2 turns (at most 100ms) against " + f.URL + " (model \"m\")\n"; progress.String() != want {
		t.Errorf("progress %q, want %q", progress.String(), want)
	}
}

// together holds the first n requests to h until all n have arrived, so
// that they reach the engine together and none finds another's prefix in
// its cache.
func together(n int, h http.Handler) http.Handler {
	var mu sync.Mutex
	arrived := 0
	all := make(chan struct{})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		arrived++
		if arrived == n {
			close(all)
		}
		wait := arrived < n
		mu.Unlock()
		if wait {
			select {
			case <-all:
			case <-r.Context().Done():
			case <-time.After(10 * time.Second):
			}
		}
		h.ServeHTTP(w, r)
	})
}

// TestChatStepflash: 2 conversations × 3 turns against a real stepflash
// server. With the prefix cache, each later turn reuses at least the whole
// prompt of the turn before, and turns 2 and later have most of their
// prompts cached; of the first turns (sent together), one may reuse at most
// the start the two share (the system prompt), never a whole prompt.
// Without it, nothing is cached.
func TestChatStepflash(t *testing.T) {
	cases := []struct {
		name string
		keep int64 // engine.Options.CacheBytes (negative: no prefix cache)
	}{{"prefix cache", 0}, {"no prefix cache", -1}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := testserve.Start(t, server.Config{}, []testserve.Real{{File: "stories260K.gguf", Name: "stories",
				Opts: engine.Options{Context: 1024, Parallel: 4, CacheBytes: tc.keep}}})
			hs := httptest.NewServer(together(2, s.Srv))
			defer hs.Close()
			c := Config{BaseURLs: []string{hs.URL + "/v1"}, Model: "stories", Clients: 2, MaxTokens: 16, Prompt: "Once upon a time",
				IgnoreEOS: true, Timeout: time.Minute, Rounds: 1, Conversations: 2, Turns: 3}
			results, err := Run(context.Background(), c, nil)
			if err != nil {
				t.Fatal(err)
			}
			r := results[0]
			var b strings.Builder
			Print(&b, c, results)
			t.Logf("\n%s", b.String())
			if r.RequestsOK != 6 || r.RequestsFailed != 0 || r.ConversationsOK != 2 || r.CompletionTokens != 6*16 || r.TokensFrom != "usage" ||
				r.CachedUnreported != 0 || r.CachedShare == nil || r.CachedShareFollowups == nil {
				t.Fatalf("%+v %+v", *r, *r.Chat)
			}
			if first := r.Turns[0]; first.PromptTokens == 0 || 2*first.CachedTokens >= first.PromptTokens || tc.keep < 0 && first.CachedTokens != 0 {
				t.Errorf("turn 1: %+v, want prompt tokens and at most the shared start of one cached", first)
			}
			for k := 1; k < 3; k++ {
				prev, ts := r.Turns[k-1], r.Turns[k]
				if ts.PromptTokens <= prev.PromptTokens+2*16 {
					t.Errorf("turn %d: %d prompt tokens, turn %d had %d (and replies of 16 tokens)", k+1, ts.PromptTokens, k, prev.PromptTokens)
				}
				switch {
				case tc.keep >= 0 && (ts.CachedTokens < prev.PromptTokens || *ts.CachedShare <= 0.5):
					t.Errorf("turn %d: %d of %d prompt tokens cached, want all %d of turn %d and over half", k+1, ts.CachedTokens, ts.PromptTokens, prev.PromptTokens, k)
				case tc.keep < 0 && ts.CachedTokens != 0:
					t.Errorf("turn %d: %d tokens cached without a prefix cache", k+1, ts.CachedTokens)
				}
			}
			if tc.keep >= 0 && *r.CachedShareFollowups <= 0.5 {
				t.Errorf("cached share of turns 2 and later %.3f", *r.CachedShareFollowups)
			}
		})
	}
}

// chatResults is a fixed chat-mode report of two servers, the second of
// which sent no cached tokens, over one round of 3 conversations of 2
// turns: one answered, one failed at turn 2, one cut short.
func chatResults() []*Result {
	mk := func(base string, known bool) *Result {
		r := &Result{BaseURL: base, Model: "m", Chat: &Chat{Turns: []TurnStats{{Turn: 1}, {Turn: 2}}}}
		s := func(turn, prompt, cached int, ttft time.Duration) sample {
			return sample{turn: turn, tokens: 4, fromUsage: known, ttft: ttft, decodeTPS: 50, promptTokens: prompt, cachedTokens: cached, cachedKnown: known}
		}
		r.addChat([]conversation{
			{[]sample{s(1, 100, 0, 10*time.Millisecond), s(2, 150, 120, 5*time.Millisecond)}, convOK},
			{[]sample{s(1, 100, 0, 8*time.Millisecond), {turn: 2, err: "boom"}}, convFailed},
			{nil, convCut},
		}, 2, 1500*time.Millisecond)
		r.finish()
		return r
	}
	res := []*Result{mk("http://a/v1", true), mk("http://b/v1", false)}
	one := 1.0
	res[0].AggregateRatio, res[1].AggregateRatio = &one, &one
	return res
}

var chatReportConfig = Config{Clients: 2, Conversations: 3, Turns: 2, MaxTokens: 4, Prompt: "Hi", IgnoreEOS: true, Rounds: 1}

func TestPrintChat(t *testing.T) {
	var b strings.Builder
	Print(&b, chatReportConfig, chatResults())
	c := chatReportConfig
	c.Duration, c.Turns = 90*time.Second, 1
	r := &Result{BaseURL: "x", Model: "y", Chat: &Chat{Turns: []TurnStats{{Turn: 1}}}}
	r.finish()
	Print(&b, c, []*Result{r})
	want := `load: 2 streaming clients, 3 conversations of 2 turns per server and round, 1 round(s); greedy /chat/completions, max_tokens 4, ignore_eos, prompt "Hi"
server                                  http://a/v1         http://b/v1                                               
model                                   m                   m                                                         
conversations ok / failed / cut short   1 / 1 / 1           1 / 1 / 1                                                 
requests ok / failed / not sent         3 / 1 / 2           3 / 1 / 2                                                 
completion tokens (from)                12 (usage)          12 (chunks)                                               
aggregate tok/s                         8.0                 8.0                                                       
  ratio to the last                     1.00x               1.00x                                                     
TTFT p50 / p95 / p99 ms                 8.0 / 10.0 / 10.0   8.0 / 10.0 / 10.0                                         
per-stream decode tok/s (median)        50.0                50.0                                                      
ITL p50 / p99 ms                        0.0 / 0.0           0.0 / 0.0                                                 
prompt tokens (cached)                  350 (120)           350 (0)                                                   
cached share, all turns                 34.3%               unknown: 3 requests had no cached tokens in their usage   
cached share, turns 2 and later         80.0%               unknown: 1 request had no cached tokens in its usage      
error (http://a/v1): boom
error (http://b/v1): boom
load: 2 streaming clients, 3 conversations of 1 turns per server and round (at most 1m30s), 1 round(s); greedy /chat/completions, max_tokens 4, ignore_eos, prompt "Hi"
server                                  x                 
model                                   y                 
conversations ok / failed / cut short   0 / 0 / 0         
requests ok / failed / not sent         0 / 0 / 0         
completion tokens (from)                0 (none)          
aggregate tok/s                         0.0               
TTFT p50 / p95 / p99 ms                 0.0 / 0.0 / 0.0   
per-stream decode tok/s (median)        0.0               
ITL p50 / p99 ms                        0.0 / 0.0         
prompt tokens (cached)                  0 (0)             
cached share, all turns                 -                 
cached share, turns 2 and later         -                 
`
	if b.String() != want {
		t.Errorf("report\n%s\nwant\n%s", b.String(), want)
	}
}

func TestWriteJSONChat(t *testing.T) {
	var b strings.Builder
	if err := WriteJSON(&b, chatReportConfig, chatResults()); err != nil {
		t.Fatal(err)
	}
	want := `{"clients":2,"conversations":3,"turns":2,"duration_s":0,"max_tokens":4,"ignore_eos":true,"prompt":"Hi","rounds":1,"results":[` +
		`{"base_url":"http://a/v1","model":"m","requests_ok":3,"requests_failed":1,"errors":["boom"],"completion_tokens":12,"tokens_from":"usage","seconds":1.5,"aggregate_tps":8,"rounds_tps":[8],"aggregate_ratio":1,"ttft_p50_ms":8,"ttft_p95_ms":10,"ttft_p99_ms":10,"decode_tps_median":50,"itl_p50_ms":0,"itl_p99_ms":0,"rounds_itl_p99_ms":[0]` +
		`,"conversations_ok":1,"conversations_failed":1,"conversations_cut":1,"requests_not_sent":2,"prompt_tokens":350,"cached_tokens":120,"cached_unreported":0,"cached_share":0.34285714285714286,"cached_share_followups":0.8` +
		`,"turns":[{"turn":1,"requests_ok":2,"requests_failed":0,"prompt_tokens":200,"cached_tokens":0,"cached_unreported":0,"cached_share":0,"ttft_p50_ms":8},` +
		`{"turn":2,"requests_ok":1,"requests_failed":1,"prompt_tokens":150,"cached_tokens":120,"cached_unreported":0,"cached_share":0.8,"ttft_p50_ms":5}]},` +
		`{"base_url":"http://b/v1","model":"m","requests_ok":3,"requests_failed":1,"errors":["boom"],"completion_tokens":12,"tokens_from":"chunks","seconds":1.5,"aggregate_tps":8,"rounds_tps":[8],"aggregate_ratio":1,"ttft_p50_ms":8,"ttft_p95_ms":10,"ttft_p99_ms":10,"decode_tps_median":50,"itl_p50_ms":0,"itl_p99_ms":0,"rounds_itl_p99_ms":[0]` +
		`,"conversations_ok":1,"conversations_failed":1,"conversations_cut":1,"requests_not_sent":2,"prompt_tokens":350,"cached_tokens":0,"cached_unreported":3,"cached_share":null,"cached_share_followups":null` +
		`,"turns":[{"turn":1,"requests_ok":2,"requests_failed":0,"prompt_tokens":200,"cached_tokens":0,"cached_unreported":2,"cached_share":null,"ttft_p50_ms":8},` +
		`{"turn":2,"requests_ok":1,"requests_failed":1,"prompt_tokens":150,"cached_tokens":0,"cached_unreported":1,"cached_share":null,"ttft_p50_ms":5}]}]}` + "\n"
	if b.String() != want {
		t.Errorf("JSON\n%s\nwant\n%s", b.String(), want)
	}
}
