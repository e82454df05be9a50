package server_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stepflash/stepflash/api"
	"github.com/stepflash/stepflash/backend"
	"github.com/stepflash/stepflash/server"
)

// funcModel serves a backend made of a chat function, for the server's own
// behaviour (what it does with panics and errors at each point of a stream).
func funcModel(name string, chat func(emit func(*api.ChatCompletionChunk) error) error) *server.Model {
	return &server.Model{Name: name, Backend: &backend.Funcs{
		ChatFunc: func(_ context.Context, _ *api.ChatCompletionRequest, emit func(*api.ChatCompletionChunk) error) error {
			return chat(emit)
		},
		InfoFunc: func() backend.Info { return backend.Info{Label: "test"} },
	}}
}

func content(s string) *api.ChatCompletionChunk {
	return &api.ChatCompletionChunk{Choices: []api.ChunkChoice{{Delta: api.ChunkDelta{Content: &s}}}}
}

func TestServerMiddlewareAndStreamErrors(t *testing.T) {
	tagged := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("X-Test-Middleware", server.RequestIDFrom(r.Context()))
			next.ServeHTTP(w, r)
		})
	}
	srv := server.New(server.Config{Middleware: []server.Middleware{tagged}})
	for _, m := range []*server.Model{
		funcModel("panics", func(func(*api.ChatCompletionChunk) error) error { panic("boom") }),
		funcModel("fails-first", func(func(*api.ChatCompletionChunk) error) error {
			return api.NewError(http.StatusBadGateway, api.TypeServer, "upstream_error", "", "upstream x failed")
		}),
		funcModel("fails-later", func(emit func(*api.ChatCompletionChunk) error) error {
			if err := emit(content("partial")); err != nil {
				return err
			}
			return api.NewError(http.StatusBadGateway, api.TypeServer, "upstream_error", "", "upstream x failed mid-stream")
		}),
		funcModel("plain-error", func(func(*api.ChatCompletionChunk) error) error { return errors.New("disk on fire") }),
	} {
		if err := srv.AddModel(m); err != nil {
			t.Fatal(err)
		}
	}
	hs := httptest.NewServer(srv)
	defer hs.Close()
	cases := []struct {
		model  string
		stream bool
		status int
		body   []string // substrings, in order
	}{
		{"panics", false, 500, []string{"internal error (request req_", `"code":"internal_error"`}},
		{"fails-first", true, 502, []string{`"message":"upstream x failed"`, `"code":"upstream_error"`}},
		{"fails-first", false, 502, []string{`"code":"upstream_error"`}},
		{"fails-later", true, 200, []string{`"content":"partial"`, `data: {"error":{"message":"upstream x failed mid-stream"`, "data: [DONE]\n\n"}},
		{"fails-later", false, 502, []string{"upstream x failed mid-stream"}},
		{"plain-error", false, 500, []string{"generation failed: disk on fire"}},
	}
	for _, tc := range cases {
		body := `{"model":"` + tc.model + `","messages":[{"role":"user","content":"x"}]`
		if tc.stream {
			body += `,"stream":true`
		}
		resp, err := http.Post(hs.URL+"/v1/chat/completions", "application/json", strings.NewReader(body+"}"))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.status {
			t.Errorf("%s stream=%v: status %d, want %d: %s", tc.model, tc.stream, resp.StatusCode, tc.status, b)
		}
		rest := string(b)
		for _, want := range tc.body {
			i := strings.Index(rest, want)
			if i < 0 {
				t.Errorf("%s stream=%v: body lacks %q (in order): %s", tc.model, tc.stream, want, b)
				break
			}
			rest = rest[i+len(want):]
		}
		if id := resp.Header.Get("X-Request-Id"); id == "" || resp.Header.Get("X-Test-Middleware") != id {
			t.Errorf("%s: request id %q, middleware saw %q", tc.model, id, resp.Header.Get("X-Test-Middleware"))
		}
	}
	resp, err := http.Get(hs.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`stepflash_http_requests_total{route="POST /v1/chat/completions",code="500"} 2`, `code="502"} 3`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}
