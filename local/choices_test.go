package local_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/stepflash/stepflash/api"
	"github.com/stepflash/stepflash/engine"
	"github.com/stepflash/stepflash/internal/testserve"
	"github.com/stepflash/stepflash/local"
	"github.com/stepflash/stepflash/server"
)

// TestChoicesBeyondTheQueue: a request with more choices than the engine's
// queue holds could never be admitted (its choices wait together), so it
// is a 400 naming the limit rather than a 503 to retry forever; up to the
// limit it is answered, choices beyond the parallel slots waiting their
// turn.
func TestChoicesBeyondTheQueue(t *testing.T) {
	l := testserve.Load(t, "stories260K.gguf")
	e := engine.New(l.Model, l.Tok, engine.Options{Context: 256, Parallel: 1, QueueLimit: 3})
	t.Cleanup(e.Close)
	m := testserve.LocalModel(t, "stories", nil, local.Model{Engine: e, Tok: l.Tok, Config: l.Model.Config(), QueueLimit: 3})
	s := testserve.Start(t, server.Config{}, nil, m)
	cases := []struct {
		path, body string
		status     int
		param      string
		choices    int
	}{
		{"/v1/completions", `{"model":"stories","prompt":"Once","max_tokens":4,"n":3}`, 200, "", 3},
		{"/v1/completions", `{"model":"stories","prompt":"Once","max_tokens":4,"n":4}`, 400, "n", 0},
		{"/v1/completions", `{"model":"stories","prompt":["Once","Upon"],"max_tokens":4}`, 200, "", 2},
		{"/v1/completions", `{"model":"stories","prompt":["Once","Upon"],"max_tokens":4,"n":2}`, 400, "prompt", 0},
		{"/v1/completions", `{"model":"stories","prompt":["a","b","c","d"],"max_tokens":4}`, 400, "prompt", 0},
		{"/v1/chat/completions", `{"model":"stories","messages":[{"role":"user","content":"hi"}],"max_tokens":4,"n":3}`, 200, "", 3},
		{"/v1/chat/completions", `{"model":"stories","messages":[{"role":"user","content":"hi"}],"max_tokens":4,"n":5,"stream":true}`, 400, "n", 0},
	}
	for _, tc := range cases {
		resp, err := http.Post(s.URL+tc.path, "application/json", strings.NewReader(tc.body))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.status {
			t.Errorf("%s: %d, want %d: %s", tc.body, resp.StatusCode, tc.status, b)
			continue
		}
		if tc.status != 200 {
			var er api.ErrorResponse
			if err := json.Unmarshal(b, &er); err != nil || er.Error == nil {
				t.Fatalf("%s: %s", tc.body, b)
			}
			e := er.Error
			if e.CodeString() != api.CodeInvalidValue || e.ParamString() != tc.param || !strings.Contains(e.Message, "at most 3 choices at once") {
				t.Errorf("%s: %+v", tc.body, e)
			}
			continue
		}
		var out struct {
			Choices []json.RawMessage `json:"choices"`
		}
		if err := json.Unmarshal(b, &out); err != nil || len(out.Choices) != tc.choices {
			t.Errorf("%s: %d choices (%v), want %d", tc.body, len(out.Choices), err, tc.choices)
		}
	}
}
