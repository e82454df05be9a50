package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/responses"

	"github.com/stepflash/stepflash/auth"
	"github.com/stepflash/stepflash/internal/pgtest"
	"github.com/stepflash/stepflash/internal/testmodels"
	"github.com/stepflash/stepflash/server"
	"github.com/stepflash/stepflash/sse"
	"github.com/stepflash/stepflash/store"
)

// apiError is err's OpenAI error object, failing the test when it is none
// or not of this status.
func apiError(t *testing.T, err error, status int, what string) *openai.Error {
	t.Helper()
	var e *openai.Error
	if !errors.As(err, &e) || e.StatusCode != status {
		t.Fatalf("%s: %v, want a %d error object", what, err, status)
	}
	return e
}

// kept is what a response says of itself in "store" (the SDK's Response
// has no field for it).
func kept(t *testing.T, r *responses.Response) bool {
	t.Helper()
	var v struct {
		Store *bool `json:"store"`
	}
	if json.Unmarshal([]byte(r.RawJSON()), &v) != nil || v.Store == nil {
		t.Fatalf("a response without store: %s", r.RawJSON())
	}
	return *v.Store
}

// TestServeResponsesStore runs the official OpenAI SDK's Responses API
// against `stepflash serve` with keys, as the binary wires it: a response
// is kept in the data dir's store (store: true), a second turn continues it
// by previous_response_id, GET and DELETE find it for its own key only,
// and after a restart on the same store the kept response is still there
// and still continues. --responses-days expires it, --responses-store=false
// makes the server stateless again, and the ledger labels the rows
// "responses". On a data dir's SQLite file and on Postgres (--db).
func TestServeResponsesStore(t *testing.T) {
	for _, db := range []struct {
		name  string
		where func(t *testing.T) (flags []string, dsn string)
	}{
		{"data dir", func(t *testing.T) ([]string, string) {
			dir := t.TempDir()
			return []string{"--data", dir}, store.DSNFor(dir)
		}},
		{"postgres", func(t *testing.T) ([]string, string) {
			dsn := pgtest.DSN(t)
			return []string{"--db", dsn}, dsn
		}},
	} {
		t.Run(db.name, func(t *testing.T) {
			where, dsn := db.where(t)
			testResponsesStore(t, where, dsn)
		})
	}
}

// testResponsesStore is TestServeResponsesStore on the store that the
// flags where name, whose DSN is dsn.
func testResponsesStore(t *testing.T, where []string, dsn string) {
	newKey := func(name string) string {
		t.Helper()
		rc, out, errs := run(t, append([]string{"keys", "create", "--json", "--region", "global", "--name", name}, where...)...)
		var k keyJSON
		if err := json.Unmarshal([]byte(out), &k); rc != 0 || err != nil || k.Key == "" {
			t.Fatalf("keys create: %d %q %q %v", rc, out, errs, err)
		}
		return k.Key
	}
	keyA, keyB := newKey("a"), newKey("b")
	pa, err := auth.Parse(keyA)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	model := testmodels.Path(t, "stories260K.gguf")
	serve := func(args ...string) (a, b openai.Client, stop func() error) {
		t.Helper()
		base, _, stop := startServe(t, append(append([]string{"-m", model, "--alias", "tiny", "--quiet"}, where...), args...)...)
		client := func(key string) openai.Client {
			return openai.NewClient(option.WithBaseURL(base+"/v1"), option.WithAPIKey(key), option.WithMaxRetries(0),
				option.WithRequestTimeout(time.Minute))
		}
		return client(keyA), client(keyB), stop
	}
	text := func(s string) responses.ResponseNewParamsInputUnion {
		return responses.ResponseNewParamsInputUnion{OfString: openai.String(s)}
	}
	params := func(input string, prev string) responses.ResponseNewParams {
		p := responses.ResponseNewParams{Model: "tiny", Input: text(input), MaxOutputTokens: openai.Int(8), Temperature: openai.Float(0)}
		if prev != "" {
			p.PreviousResponseID = openai.String(prev)
		}
		return p
	}
	var requestIDs []string
	newResponse := func(c openai.Client, p responses.ResponseNewParams) *responses.Response {
		t.Helper()
		var hr *http.Response
		r, err := c.Responses.New(ctx, p, option.WithResponseInto(&hr))
		if err != nil {
			t.Fatal(err)
		}
		if r.Status != responses.ResponseStatusIncomplete || r.Usage.OutputTokens != 8 || !strings.HasPrefix(r.ID, "resp_") {
			t.Fatalf("response %s", r.RawJSON())
		}
		requestIDs = append(requestIDs, hr.Header.Get("X-Request-Id"))
		return r
	}

	a, b, stop := serve()
	// Turn 1, kept (store is true unless a request says false).
	p1 := params("Once upon a time", "")
	p1.Store = openai.Bool(true)
	r1 := newResponse(a, p1)
	if !kept(t, r1) {
		t.Fatalf("turn 1 says store: false: %s", r1.RawJSON())
	}
	// Turn 2 continues it: its prompt is turn 1's conversation and the new
	// input, exactly as if the client had sent them all.
	r2 := newResponse(a, params("Then", r1.ID))
	if !kept(t, r2) || r2.PreviousResponseID != r1.ID {
		t.Errorf("turn 2: %s", r2.RawJSON())
	}
	whole := newResponse(a, responses.ResponseNewParams{Model: "tiny", MaxOutputTokens: openai.Int(8), Temperature: openai.Float(0), Store: openai.Bool(false),
		Input: responses.ResponseNewParamsInputUnion{OfInputItemList: responses.ResponseInputParam{
			responses.ResponseInputItemParamOfMessage("Once upon a time", responses.EasyInputMessageRoleUser),
			responses.ResponseInputItemParamOfMessage(r1.OutputText(), responses.EasyInputMessageRoleAssistant),
			responses.ResponseInputItemParamOfMessage("Then", responses.EasyInputMessageRoleUser),
		}}})
	if kept(t, whole) || r2.Usage.InputTokens != whole.Usage.InputTokens || r2.Usage.InputTokens <= r1.Usage.InputTokens+4 || r2.OutputText() != whole.OutputText() {
		t.Errorf("turn 2 by previous_response_id: %d input tokens, %q; the whole conversation sent: %d, %q (turn 1: %d)",
			r2.Usage.InputTokens, r2.OutputText(), whole.Usage.InputTokens, whole.OutputText(), r1.Usage.InputTokens)
	}
	// store: false is not kept.
	if _, err := a.Responses.Get(ctx, whole.ID, responses.ResponseGetParams{}); err == nil {
		t.Error("a store: false response was kept")
	} else {
		apiError(t, err, 404, "GET of a store: false response")
	}

	// GET: the response as it was sent, for its own key only.
	got, err := a.Responses.Get(ctx, r2.ID, responses.ResponseGetParams{})
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != r2.ID || got.OutputText() != r2.OutputText() || got.Usage.InputTokens != r2.Usage.InputTokens || !kept(t, got) || got.PreviousResponseID != r1.ID {
		t.Errorf("GET %s\nwant %s", got.RawJSON(), r2.RawJSON())
	}
	_, err = b.Responses.Get(ctx, r2.ID, responses.ResponseGetParams{})
	apiError(t, err, 404, "another key's GET")
	_, err = b.Responses.New(ctx, params("Then", r2.ID))
	if e := apiError(t, err, 400, "another key's previous_response_id"); e.Code != "previous_response_not_found" || e.Param != "previous_response_id" {
		t.Errorf("another key's previous_response_id: %s", e.RawJSON())
	}
	apiError(t, b.Responses.Delete(ctx, r1.ID), 404, "another key's DELETE")

	// DELETE, then it is gone; turn 2 still continues (its stored
	// conversation holds turn 1's).
	if err := a.Responses.Delete(ctx, r1.ID); err != nil {
		t.Fatal(err)
	}
	_, err = a.Responses.Get(ctx, r1.ID, responses.ResponseGetParams{})
	apiError(t, err, 404, "GET after DELETE")
	apiError(t, a.Responses.Delete(ctx, r1.ID), 404, "a second DELETE")
	_, err = a.Responses.New(ctx, params("Then", r1.ID))
	apiError(t, err, 400, "previous_response_id of a deleted response")
	before := newResponse(a, params("And", r2.ID))
	if err := stop(); err != nil {
		t.Fatal(err)
	}

	// A response kept 2 days ago, written straight into the store.
	st, err := store.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	rs, err := st.Responses(0)
	if err != nil {
		t.Fatal(err)
	}
	if err := rs.Put(ctx, server.StoredResponse{ID: "resp_twodaysold", KeyID: pa.Prefix, CreatedAt: time.Now().Add(-48 * time.Hour),
		Response: []byte(`{"id":"resp_twodaysold","object":"response","created_at":1,"status":"completed","model":"tiny","output":[]}`), Conversation: []byte(`[]`)}); err != nil {
		t.Fatal(err)
	}
	st.Close()

	// Restarted on the same store: still there, and still continued.
	a, _, stop = serve()
	got, err = a.Responses.Get(ctx, r2.ID, responses.ResponseGetParams{})
	if err != nil || got.RawJSON() == "" || got.OutputText() != r2.OutputText() || got.Usage.InputTokens != r2.Usage.InputTokens {
		t.Fatalf("GET after the restart: %v %v", got, err)
	}
	after := newResponse(a, params("And", r2.ID))
	if after.Usage.InputTokens != before.Usage.InputTokens || after.OutputText() != before.OutputText() {
		t.Errorf("continued after the restart: %d input tokens, %q; before: %d, %q", after.Usage.InputTokens, after.OutputText(), before.Usage.InputTokens, before.OutputText())
	}
	if _, err := a.Responses.Get(ctx, "resp_twodaysold", responses.ResponseGetParams{}); err != nil {
		t.Errorf("a 2-day-old response with the default retention: %v", err)
	}
	stop()

	// --responses-days 1: the 2-day-old response has expired, r2 not.
	a, _, stop = serve("--responses-days", "1")
	_, err = a.Responses.Get(ctx, "resp_twodaysold", responses.ResponseGetParams{})
	apiError(t, err, 404, "a 2-day-old response with --responses-days 1")
	if _, err := a.Responses.Get(ctx, r2.ID, responses.ResponseGetParams{}); err != nil {
		t.Errorf("a new response with --responses-days 1: %v", err)
	}
	stop()

	// --responses-store=false: stateless, as without a store.
	a, _, stop = serve("--responses-store=false")
	_, err = a.Responses.Get(ctx, r2.ID, responses.ResponseGetParams{})
	if e := apiError(t, err, 404, "GET on a stateless server"); !strings.Contains(e.Message, "does not store responses") {
		t.Errorf("GET on a stateless server: %s", e.RawJSON())
	}
	_, err = a.Responses.New(ctx, params("Then", r2.ID))
	if e := apiError(t, err, 400, "previous_response_id on a stateless server"); e.Code != "unsupported_parameter" {
		t.Errorf("previous_response_id on a stateless server: %s", e.RawJSON())
	}
	if r := newResponse(a, p1); kept(t, r) {
		t.Errorf("a stateless server says store: true: %s", r.RawJSON())
	}
	stop()

	// The ledger: one row per response, labelled responses.
	st, err = store.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for _, id := range requestIDs {
		recs, err := st.Records(ctx, id)
		if err != nil || len(recs) != 1 || recs[0].Endpoint != "responses" || recs[0].KeyID != pa.Prefix || recs[0].CompletionTokens != 8 {
			t.Errorf("ledger rows of %q: %+v, %v", id, recs, err)
		}
	}
}

// TestServeResponsesFlags: --responses-store and --responses-days take
// what they say and refuse the rest.
func TestServeResponsesFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		off  bool
		days int
		err  string
	}{
		{nil, false, 30, ""},
		{[]string{"--responses-store=false"}, true, 30, ""},
		{[]string{"--responses-store"}, false, 30, ""},
		{[]string{"--responses-store=true", "--responses-days", "90"}, false, 90, ""},
		{[]string{"--responses-days", "36500"}, false, 36500, ""},
		{[]string{"--responses-store=maybe"}, false, 0, "want true or false"},
		{[]string{"--responses-days", "0"}, false, 0, "from 1 to 36500"},
		{[]string{"--responses-days", "36501"}, false, 0, "from 1 to 36500"},
		{[]string{"--responses-days", "7d"}, false, 0, "from 1 to 36500"},
	} {
		var log syncBuffer
		o, err := parseServe(tc.args, &log)
		switch {
		case tc.err != "":
			if err == nil || !strings.Contains(log.String()+err.Error(), tc.err) {
				t.Errorf("%v: %v (%s), want an error saying %q", tc.args, err, log.String(), tc.err)
			}
		case err != nil:
			t.Errorf("%v: %v", tc.args, err)
		case o.responsesOff != tc.off || o.responsesDays != tc.days:
			t.Errorf("%v: off %v, days %d; want %v, %d", tc.args, o.responsesOff, o.responsesDays, tc.off, tc.days)
		}
	}
}

// TestResponsesCrash: /v1/responses requests (streamed and not) under load
// against a real `stepflash serve` process, kill -9 while they run, and a
// restart on the same database: every response whose client was told
// "store": true is there, as the client received it. SQLite (the data
// dir) and Postgres.
func TestResponsesCrash(t *testing.T) {
	model := testmodels.Path(t, "stories260K.gguf")
	for _, db := range []struct {
		name  string
		where func(t *testing.T) []string
	}{
		{"sqlite", func(t *testing.T) []string { return []string{"--data", t.TempDir()} }},
		{"postgres", func(t *testing.T) []string { return []string{"--db", pgtest.DSN(t)} }},
	} {
		t.Run(db.name, func(t *testing.T) {
			serve := append([]string{"serve", "-m", model, "--alias", "tiny", "--addr", "127.0.0.1:0", "--quiet", "-t", "1", "--parallel", "8", "-c", "256"}, db.where(t)...)
			p := startProcess(t, serve...)
			const total, clients, killAfter = 200, 32, 100
			var (
				mu     sync.Mutex
				kept   = map[string]keptReply{} // id: the response the client was told was kept
				n      atomic.Int32
				next   atomic.Int32
				killed = make(chan struct{})
				once   sync.Once
			)
			kill := func() {
				once.Do(func() {
					p.cmd.Process.Kill() // SIGKILL
					close(killed)
				})
			}
			hc := &http.Client{Timeout: 30 * time.Second}
			var wg sync.WaitGroup
			for c := range clients {
				wg.Go(func() {
					for i := next.Add(1); i <= total; i = next.Add(1) {
						id, resp := crashResponse(hc, p.base, fmt.Sprintf("Once upon a time %d", c), i%2 == 0)
						if id == "" {
							continue
						}
						mu.Lock()
						kept[id] = keptReply{resp, i%2 == 0}
						mu.Unlock()
						if n.Add(1) == killAfter {
							kill()
						}
					}
				})
			}
			wg.Wait()
			kill()
			<-killed
			p.cmd.Wait()

			p2 := startProcess(t, serve...)
			streamed := 0
			for id, want := range kept {
				resp, err := hc.Get(p2.base + "/v1/responses/" + id)
				if err != nil {
					t.Fatal(err)
				}
				var got any
				err = json.NewDecoder(resp.Body).Decode(&got)
				resp.Body.Close()
				if resp.StatusCode != 200 || err != nil || !reflect.DeepEqual(got, want.resp) {
					t.Errorf("response %s was said to be kept; after kill -9: %d %v\ngot  %v\nwant %v", id, resp.StatusCode, err, got, want)
				}
				if want.stream {
					streamed++
				}
			}
			t.Logf("%d responses said store: true before the kill (%d streamed)", len(kept), streamed)
			if len(kept) < killAfter || len(kept) == total || streamed == 0 || streamed == len(kept) {
				t.Errorf("%d responses kept of %d: the test did not run as meant (a kill after %d)", len(kept), total, killAfter)
			}
		})
	}
}

// keptReply is a response its client was told was kept.
type keptReply struct {
	resp   any // the Response object, as JSON values
	stream bool
}

// crashResponse makes one /v1/responses request, streamed or not, and
// returns the id and the response (as JSON values) when the client was
// told it was kept (store: true), else "".
func crashResponse(hc *http.Client, base, input string, stream bool) (string, any) {
	body, _ := json.Marshal(map[string]any{"model": "tiny", "input": input, "max_output_tokens": 16, "stream": stream})
	resp, err := hc.Post(base+"/v1/responses", "application/json", bytes.NewReader(body))
	if err != nil {
		return "", nil
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return "", nil
	}
	var final []byte
	if !stream {
		if final, err = io.ReadAll(resp.Body); err != nil {
			return "", nil
		}
	} else {
		rd := sse.NewReader(resp.Body, 0)
		for {
			ev, err := rd.Next()
			if err != nil {
				break
			}
			var e struct {
				Type     string          `json:"type"`
				Response json.RawMessage `json:"response"`
			}
			if json.Unmarshal([]byte(ev.Data), &e) == nil && (e.Type == "response.completed" || e.Type == "response.incomplete") {
				final = e.Response
			}
		}
	}
	var v map[string]any
	if json.Unmarshal(final, &v) != nil || v["store"] != true {
		return "", nil
	}
	id, _ := v["id"].(string)
	return id, v
}
