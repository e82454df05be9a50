package billing_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stepflash/stepflash/api"
	"github.com/stepflash/stepflash/backend"
	"github.com/stepflash/stepflash/billing"
	"github.com/stepflash/stepflash/internal/testserve"
	"github.com/stepflash/stepflash/server"
	"github.com/stepflash/stepflash/sse"
	"github.com/stepflash/stepflash/store"
)

// recorded serves m with its backend behind Recording into a fresh SQLite
// ledger, as the binary does, with every request made by key "sk-global-test0001".
func recorded(t *testing.T, st billing.Ledger, models ...*server.Model) *testserve.Served {
	t.Helper()
	for _, m := range models {
		m.Backend = billing.Recording(st, m.Name)(m.Backend)
	}
	caller := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			next.ServeHTTP(w, r.WithContext(backend.WithCaller(r.Context(), backend.Caller{KeyID: "sk-global-test0001", Region: "global"})))
		})
	}
	return testserve.Start(t, server.Config{Middleware: []server.Middleware{caller}}, nil, models...)
}

func openStore(t *testing.T) *store.Store {
	t.Helper()
	st, err := store.Open(context.Background(), filepath.Join(t.TempDir(), "ledger.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// reply is what a client saw of one request.
type reply struct {
	status    int
	requestID string
	usage     *api.Usage // the usage it received, if any
	errCode   string     // the error object's code, if any
	events    []string   // a stream's data lines
	done      bool       // a stream ended with [DONE]
}

// post sends body to path; for a stream, after each event, onEvent (if
// set) may stop reading (the client leaves).
func post(t *testing.T, url, path, body string, onEvent func(n int) bool) reply {
	t.Helper()
	resp, err := http.Post(url+path, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	r := reply{status: resp.StatusCode, requestID: resp.Header.Get("X-Request-Id")}
	if !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		var v struct {
			Usage *api.Usage `json:"usage"`
			Error *api.Error `json:"error"`
		}
		b, _ := io.ReadAll(resp.Body)
		if err := json.Unmarshal(b, &v); err != nil {
			t.Fatalf("%s: %v", b, err)
		}
		r.usage = v.Usage
		if v.Error != nil {
			r.errCode = v.Error.CodeString()
		}
		return r
	}
	rd := sse.NewReader(resp.Body, 0)
	for {
		ev, err := rd.Next()
		if err != nil {
			return r
		}
		if ev.Data == "[DONE]" {
			r.done = true
			return r
		}
		r.events = append(r.events, ev.Data)
		var v struct {
			Choices []json.RawMessage `json:"choices"`
			Usage   *api.Usage        `json:"usage"`
			Error   *api.Error        `json:"error"`
		}
		json.Unmarshal([]byte(ev.Data), &v)
		if v.Usage != nil {
			r.usage = v.Usage
		}
		if v.Error != nil {
			r.errCode = v.Error.CodeString()
		}
		if onEvent != nil && !onEvent(len(r.events)) {
			return r
		}
	}
}

// slowLedger is a real ledger whose commits take a while longer, so that a
// usage sent before its row is durable would be seen.
type slowLedger struct{ *store.Store }

func (l slowLedger) Append(ctx context.Context, r billing.Record) error {
	time.Sleep(50 * time.Millisecond)
	return l.Store.Append(ctx, r)
}

// TestRecording: every request through a real local backend has its row,
// written before the client got its usage: streamed or not, chat and
// completions, with what the usage said.
func TestRecording(t *testing.T) {
	st := openStore(t)
	m := testserve.RealModel(t, testserve.Real{File: "stories260K.gguf", Name: "story"})
	srv := recorded(t, slowLedger{st}, m)
	for _, tc := range []struct {
		name, path, body string
		stream           bool
		endpoint, effort string
	}{
		{"chat", "/v1/chat/completions", `{"model":"story","messages":[{"role":"user","content":"Once upon a time"}],"max_tokens":8,"temperature":0}`, false, "chat", "medium"},
		{"chat stream", "/v1/chat/completions", `{"model":"story","messages":[{"role":"user","content":"Once upon a time"}],"max_tokens":8,"temperature":0,"stream":true,"stream_options":{"include_usage":true},"reasoning_effort":"high"}`, true, "chat", "high"},
		{"completion", "/v1/completions", `{"model":"story","prompt":"Once upon a time","max_tokens":8,"temperature":0,"reasoning_effort":"low"}`, false, "completions", "low"},
		{"completion stream", "/v1/completions", `{"model":"story","prompt":"Once upon a time","max_tokens":8,"temperature":0,"stream":true,"stream_options":{"include_usage":true}}`, true, "completions", "medium"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := post(t, srv.URL, tc.path, tc.body, nil)
			if r.status != 200 || r.usage == nil || r.requestID == "" || (tc.stream && !r.done) {
				t.Fatalf("reply %+v", r)
			}
			// No waiting: the row was durable before the usage was sent.
			recs, err := st.Records(context.Background(), r.requestID)
			if err != nil || len(recs) != 1 {
				t.Fatalf("records of %s: %+v, %v", r.requestID, recs, err)
			}
			got := recs[0]
			u := r.usage
			want := billing.Record{RequestID: r.requestID, Time: got.Time, KeyID: "sk-global-test0001", Region: "global",
				Model: "story", Backend: "local", Endpoint: tc.endpoint, Effort: tc.effort, Stream: tc.stream,
				PromptTokens: u.PromptTokens, CachedTokens: u.PromptTokensDetails.CachedTokens, CompletionTokens: u.CompletionTokens,
				ReasoningTokens: u.CompletionTokensDetails.ReasoningTokens, CostUSD: u.Cost, Latency: got.Latency, Status: 200}
			if got != want {
				t.Errorf("row %+v\nwant %+v", got, want)
			}
			if u.PromptTokens == 0 || u.CompletionTokens != 8 || u.Cost <= 0 || got.Latency <= 0 || time.Since(got.Time) > time.Minute {
				t.Errorf("usage %+v, row %+v", u, got)
			}
		})
	}
	// An embeddings request is a row too: its prompt tokens at the
	// cache-miss price, durable before the response.
	r := post(t, srv.URL, "/v1/embeddings", `{"model":"story","input":["Once upon a time","There was"]}`, nil)
	if r.status != 200 || r.usage == nil || r.usage.PromptTokens == 0 || r.usage.Cost <= 0 {
		t.Fatalf("embeddings reply %+v", r)
	}
	recs, err := st.Records(context.Background(), r.requestID)
	if err != nil || len(recs) != 1 {
		t.Fatalf("records of %s: %+v, %v", r.requestID, recs, err)
	}
	if got := recs[0]; got.Endpoint != "embeddings" || got.PromptTokens != r.usage.PromptTokens || got.CompletionTokens != 0 ||
		got.CostUSD != r.usage.Cost || got.CostUSD != float64(r.usage.PromptTokens)*billing.Default.InputMiss/1e6 || got.Status != 200 || got.Backend != "local" {
		t.Errorf("embeddings row %+v, usage %+v", got, r.usage)
	}
	// Without include_usage the client gets no usage, and the row is there
	// by [DONE] all the same.
	r = post(t, srv.URL, "/v1/completions", `{"model":"story","prompt":"Once","max_tokens":4,"stream":true}`, nil)
	if recs, _ := st.Records(context.Background(), r.requestID); !r.done || r.usage != nil || len(recs) != 1 || recs[0].CompletionTokens != 4 {
		t.Errorf("stream without usage: reply %+v, rows %+v", r, recs)
	}
}

// TestRecordingFailures: requests that fail before their first chunk, or
// are cut mid-stream, are recorded with their status and error code once
// the backend returns.
func TestRecordingFailures(t *testing.T) {
	st := openStore(t)
	slow := &testserve.Scripted{Delay: 30 * time.Millisecond, Scripts: []testserve.Script{{Key: "count", Pieces: strings.Split(strings.Repeat("x ", 100), " ")[:100]}}}
	broken := &testserve.Scripted{Err: errors.New("the engine broke")}
	real := testserve.RealModel(t, testserve.Real{File: "stories260K.gguf", Name: "story"})
	srv := recorded(t, st, testserve.ScriptedModel(t, "slow", slow, nil), testserve.ScriptedModel(t, "broken", broken, nil), real)

	wait := func(id string) billing.Record {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			recs, err := st.Records(context.Background(), id)
			if err != nil {
				t.Fatal(err)
			}
			if len(recs) == 1 {
				return recs[0]
			}
			if time.Now().After(deadline) {
				t.Fatalf("no record of %s", id)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	for _, tc := range []struct {
		name, path, body string
		leaveAfter       int // stream events read before the client leaves (0: read all)
		status           int // the client's
		wantStatus       int // the row's
		wantCode         string
		stream           bool
		minTokens        int
	}{
		{"too long", "/v1/completions", `{"model":"story","prompt":"Once upon a time","max_tokens":100000}`, 0, 400, 400, api.CodeContextLengthExceeded, false, 0},
		{"too long streamed", "/v1/completions", `{"model":"story","prompt":"Once upon a time","max_tokens":100000,"stream":true}`, 0, 400, 400, api.CodeContextLengthExceeded, true, 0},
		{"engine error", "/v1/chat/completions", `{"model":"broken","messages":[{"role":"user","content":"hi"}]}`, 0, 500, 500, api.CodeInternal, false, 0},
		{"client leaves mid-stream", "/v1/chat/completions", `{"model":"slow","messages":[{"role":"user","content":"count"}],"stream":true}`, 4, 200, 200, billing.CodeClientClosed, true, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stop func(int) bool
			if tc.leaveAfter > 0 {
				stop = func(n int) bool { return n < tc.leaveAfter }
			}
			r := post(t, srv.URL, tc.path, tc.body, stop)
			if r.status != tc.status || r.usage != nil {
				t.Fatalf("reply %+v", r)
			}
			got := wait(r.requestID)
			if got.Status != tc.wantStatus || got.ErrorCode != tc.wantCode || got.Stream != tc.stream || got.CostUSD != 0 ||
				got.CompletionTokens < tc.minTokens || got.CompletionTokens > 5 || got.KeyID != "sk-global-test0001" || got.Backend != "local" {
				t.Errorf("row %+v", got)
			}
		})
	}
	rows, err := st.Usage(context.Background(), store.UsageQuery{})
	if err != nil || len(rows) != 1 || rows[0].Requests != 4 || rows[0].Errors != 4 {
		t.Errorf("usage report %+v, %v", rows, err)
	}
}

// TestRecordingFailsClosed: when the ledger cannot take the record, the
// client does not get the usage: a 500 ledger_unavailable, or an error
// event after the chunks it had.
func TestRecordingFailsClosed(t *testing.T) {
	st := openStore(t)
	m := testserve.RealModel(t, testserve.Real{File: "stories260K.gguf", Name: "story"})
	srv := recorded(t, st, m)
	st.Close() // a real ledger that fails every Append
	r := post(t, srv.URL, "/v1/chat/completions", `{"model":"story","messages":[{"role":"user","content":"Once"}],"max_tokens":4}`, nil)
	if r.status != 500 || r.errCode != billing.CodeLedgerUnavailable || r.usage != nil {
		t.Errorf("non-streamed: %+v", r)
	}
	r = post(t, srv.URL, "/v1/completions", `{"model":"story","prompt":"Once","max_tokens":4,"stream":true,"stream_options":{"include_usage":true}}`, nil)
	if r.status != 200 || r.errCode != billing.CodeLedgerUnavailable || r.usage != nil || !r.done || len(r.events) < 2 {
		t.Errorf("streamed: %+v", r)
	}
	if last := r.events[len(r.events)-1]; !strings.Contains(last, "could not be recorded") || bytes.Contains([]byte(last), []byte(`"usage"`)) {
		t.Errorf("last event %s", last)
	}
	r = post(t, srv.URL, "/v1/embeddings", `{"model":"story","input":"Once"}`, nil)
	if r.status != 500 || r.errCode != billing.CodeLedgerUnavailable || r.usage != nil {
		t.Errorf("embeddings: %+v", r)
	}
}

// TestRecordingEndpoints: a /v1/responses and a /v1/messages request are
// Chat calls to the backend, recorded under their own API's name (not
// "chat"), streamed or not, with the tokens and cost their usage said in
// that API's shape.
func TestRecordingEndpoints(t *testing.T) {
	st := openStore(t)
	m := testserve.RealModel(t, testserve.Real{File: "stories260K.gguf", Name: "story"})
	srv := recorded(t, st, m)
	// usage is either API's usage object (and the Responses one nested in
	// a stream's response.completed).
	type usage struct {
		InputTokens          int     `json:"input_tokens"`
		OutputTokens         int     `json:"output_tokens"`
		CacheReadInputTokens int     `json:"cache_read_input_tokens"`
		Cost                 float64 `json:"cost"`
		InputTokensDetails   struct {
			CachedTokens int `json:"cached_tokens"`
		} `json:"input_tokens_details"`
	}
	type body struct {
		Usage    *usage `json:"usage"`
		Response *struct {
			Usage *usage `json:"usage"`
		} `json:"response"`
	}
	for _, tc := range []struct {
		name, path, body string
		stream           bool
		endpoint         string
	}{
		{"responses", "/v1/responses", `{"model":"story","input":"Once upon a time","max_output_tokens":8,"temperature":0}`, false, "responses"},
		{"responses stream", "/v1/responses", `{"model":"story","input":"Once upon a time","max_output_tokens":8,"temperature":0,"stream":true}`, true, "responses"},
		{"messages", "/v1/messages", `{"model":"story","messages":[{"role":"user","content":"Once upon a time"}],"max_tokens":8,"temperature":0}`, false, "messages"},
		{"messages stream", "/v1/messages", `{"model":"story","messages":[{"role":"user","content":"Once upon a time"}],"max_tokens":8,"temperature":0,"stream":true}`, true, "messages"},
		{"chat", "/v1/chat/completions", `{"model":"story","messages":[{"role":"user","content":"Once upon a time"}],"max_tokens":8,"temperature":0}`, false, "chat"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := http.Post(srv.URL+tc.path, "application/json", strings.NewReader(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			raw, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != 200 {
				t.Fatalf("%d %s", resp.StatusCode, raw)
			}
			// The last usage the client saw.
			var u *usage
			docs := [][]byte{raw}
			if tc.stream {
				docs = nil
				for line := range strings.SplitSeq(string(raw), "\n") {
					if d, ok := strings.CutPrefix(line, "data: "); ok {
						docs = append(docs, []byte(d))
					}
				}
			}
			for _, d := range docs {
				var b body
				json.Unmarshal(d, &b)
				switch {
				case b.Usage != nil:
					u = b.Usage
				case b.Response != nil && b.Response.Usage != nil:
					u = b.Response.Usage
				}
			}
			if u == nil {
				t.Fatalf("no usage in %s", raw)
			}
			id := resp.Header.Get("X-Request-Id")
			recs, err := st.Records(context.Background(), id)
			if err != nil || len(recs) != 1 {
				t.Fatalf("records of %q: %+v, %v", id, recs, err)
			}
			got := recs[0]
			prompt, cached := u.InputTokens, u.InputTokensDetails.CachedTokens
			if tc.endpoint == "messages" {
				// Anthropic's input_tokens leave the cache reads out.
				prompt, cached = u.InputTokens+u.CacheReadInputTokens, u.CacheReadInputTokens
			}
			if tc.endpoint == "chat" {
				var c struct{ Usage api.Usage }
				json.Unmarshal(raw, &c)
				prompt, cached = c.Usage.PromptTokens, c.Usage.PromptTokensDetails.CachedTokens
				u.OutputTokens, u.Cost = c.Usage.CompletionTokens, c.Usage.Cost
			}
			if got.Endpoint != tc.endpoint || got.Stream != tc.stream || got.Status != 200 || got.ErrorCode != "" ||
				got.Model != "story" || got.KeyID != "sk-global-test0001" || got.Backend != "local" ||
				got.PromptTokens != prompt || got.CachedTokens != cached || got.CompletionTokens != u.OutputTokens || got.CostUSD != u.Cost ||
				prompt == 0 || u.OutputTokens != 8 || u.Cost <= 0 {
				t.Errorf("row %+v\nusage %+v (prompt %d, cached %d)", got, u, prompt, cached)
			}
		})
	}
}
