package server_test

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/stepflash/stepflash/engine"
	"github.com/stepflash/stepflash/internal/testserve"
	"github.com/stepflash/stepflash/server"
)

var updateGolden = flag.Bool("update", false, "rewrite the wire golden files in testdata/wire")

// wireCase is one request whose raw response bytes are pinned.
type wireCase struct {
	name, method, path, body string
}

// normalizers replace what changes from run to run (ids, timestamps, the
// timings' milliseconds and rates) with fixed text; everything else in a response must match byte for byte.
var normalizers = []struct {
	re   *regexp.Regexp
	with string
}{
	{regexp.MustCompile(`"id":"(chatcmpl|cmpl)-[A-Za-z0-9]{24}"`), `"id":"${1}-ID"`},
	{regexp.MustCompile(`"created":\d+`), `"created":0`},
	{regexp.MustCompile(`"call_[A-Za-z0-9]{24}"`), `"call_ID"`},
	{regexp.MustCompile(`"(prompt_ms|prompt_per_token_ms|prompt_per_second|predicted_ms|predicted_per_token_ms|predicted_per_second)":[-+.0-9eE]+`), `"${1}":0`},
}

// pinnedHeaders are the response headers the golden files record.
var pinnedHeaders = []string{"Content-Type", "Cache-Control", "X-Reasoning-Effort", "X-Advisor", "Retry-After", "Allow"}

func normalize(b []byte) []byte {
	for _, n := range normalizers {
		b = n.re.ReplaceAll(b, []byte(n.with))
	}
	return b
}

// TestWireGolden pins the raw bytes of responses (status, headers, body;
// SSE streams whole) of the chat and legacy completion endpoints, so that
// changes behind the HTTP layer are checked to keep the wire format byte for
// byte. Each case runs on a fresh server, so prefix-cache reuse from other
// cases cannot change cached_tokens. Regenerate with -update after an
// intended change and review the diff.
func TestWireGolden(t *testing.T) {
	const chat, cmpl = "/v1/chat/completions", "/v1/completions"
	hi := `"messages":[{"role":"user","content":"Hello there"}]`
	cases := []wireCase{
		// Real models, greedy, one sequence each (deterministic).
		{"chat_stories", "POST", chat, `{"model":"stories",` + hi + `,"max_tokens":8,"temperature":0}`},
		{"chat_stories_alias", "POST", chat, `{"model":"step-3.7-flash",` + hi + `,"max_tokens":8,"temperature":0}`},
		{"chat_stories_stream", "POST", chat, `{"model":"stories",` + hi + `,"max_tokens":6,"temperature":0,"stream":true}`},
		{"chat_stories_stream_usage", "POST", chat, `{"model":"stories",` + hi + `,"max_tokens":6,"temperature":0,"stream":true,"stream_options":{"include_usage":true}}`},
		{"chat_qwen_logprobs", "POST", chat, `{"model":"qwen",` + hi + `,"max_tokens":5,"temperature":0,"logprobs":true,"top_logprobs":2}`},
		{"chat_qwen_logprobs_stream", "POST", chat, `{"model":"qwen",` + hi + `,"max_tokens":4,"temperature":0,"logprobs":true,"top_logprobs":2,"stream":true,"stream_options":{"include_usage":true}}`},
		{"chat_qwen_low", "POST", chat, `{"model":"qwen",` + hi + `,"max_tokens":5,"temperature":0,"reasoning_effort":"low"}`},
		{"chat_qwen_high_stream", "POST", chat, `{"model":"qwen",` + hi + `,"max_tokens":5,"temperature":0,"reasoning_effort":"high","stream":true}`},
		{"chat_stories_stop", "POST", chat, `{"model":"stories",` + hi + `,"max_tokens":30,"temperature":0,"stop":["the"]}`},
		{"chat_stories_seed", "POST", chat, `{"model":"stories",` + hi + `,"max_tokens":8,"temperature":1,"seed":7}`},
		{"cmpl_stories", "POST", cmpl, `{"model":"stories","prompt":"Once upon a time","max_tokens":8,"temperature":0}`},
		{"cmpl_stories_default_max", "POST", cmpl, `{"model":"stories","prompt":"Once upon a time","temperature":0}`},
		{"cmpl_stories_logprobs", "POST", cmpl, `{"model":"stories","prompt":"Once upon a time","max_tokens":6,"temperature":0,"logprobs":3}`},
		{"cmpl_stories_logprobs_stream", "POST", cmpl, `{"model":"stories","prompt":"Once upon a time","max_tokens":6,"temperature":0,"logprobs":2,"stream":true,"stream_options":{"include_usage":true}}`},
		{"cmpl_stories_logprobs_zero", "POST", cmpl, `{"model":"stories","prompt":"Once upon a time","max_tokens":4,"temperature":0,"logprobs":0}`},
		{"cmpl_stories_echo", "POST", cmpl, `{"model":"stories","prompt":"Once upon a time","max_tokens":6,"temperature":0,"echo":true}`},
		{"cmpl_stories_echo_stream", "POST", cmpl, `{"model":"stories","prompt":"Once upon a time","max_tokens":6,"temperature":0,"echo":true,"stream":true}`},
		{"cmpl_stories_tokens", "POST", cmpl, `{"model":"stories","prompt":[1,403,407],"max_tokens":6,"temperature":0,"echo":true}`},
		{"cmpl_stories_stop_stream", "POST", cmpl, `{"model":"stories","prompt":"Once upon a time","max_tokens":30,"temperature":0,"stop":"the","stream":true,"stream_options":{"include_usage":true}}`},
		{"cmpl_stories_ignore_eos", "POST", cmpl, `{"model":"stories","prompt":"Once upon a time","max_tokens":5,"temperature":0,"ignore_eos":true,"reasoning_effort":"high"}`},
		// Scripted replies: tools, reasoning, several choices.
		{"tools", "POST", chat, `{"model":"m","messages":[{"role":"user","content":"Weather in Paris?"}],"tools":[` + weatherJSON + `]}`},
		{"tools_stream", "POST", chat, `{"model":"m","messages":[{"role":"user","content":"Weather in Paris?"}],"tools":[` + weatherJSON + `],"stream":true,"stream_options":{"include_usage":true}}`},
		{"tools_parallel", "POST", chat, `{"model":"m","messages":[{"role":"user","content":"Two cities"}],"tools":[` + weatherJSON + `]}`},
		{"tools_parallel_stream", "POST", chat, `{"model":"m","messages":[{"role":"user","content":"Two cities"}],"tools":[` + weatherJSON + `],"stream":true}`},
		{"tools_single", "POST", chat, `{"model":"m","messages":[{"role":"user","content":"Two cities"}],"tools":[` + weatherJSON + `],"parallel_tool_calls":false}`},
		{"tools_forced", "POST", chat, `{"model":"m","messages":[{"role":"user","content":"Forced"}],"tools":[` + weatherJSON + `],"tool_choice":{"type":"function","function":{"name":"get_weather"}}}`},
		{"reasoning", "POST", chat, `{"model":"m","messages":[{"role":"user","content":"Think"}]}`},
		{"reasoning_stream", "POST", chat, `{"model":"m","messages":[{"role":"user","content":"Think"}],"stream":true,"stream_options":{"include_usage":true}}`},
		{"n2", "POST", chat, `{"model":"m","messages":[{"role":"user","content":"Think"}],"n":2}`},
		{"n2_stream", "POST", chat, `{"model":"m","messages":[{"role":"user","content":"Think"}],"n":2,"stream":true,"stream_options":{"include_usage":true}}`},
		{"cmpl_n2_prompts", "POST", cmpl, `{"model":"m","prompt":["Think","Other"],"n":2,"max_tokens":9}`},
		{"cmpl_scripted_logprobs_stream", "POST", cmpl, `{"model":"m","prompt":"Think","logprobs":1,"stream":true}`},
		// Errors and the other routes.
		{"err_model", "POST", chat, `{"model":"nope",` + hi + `}`},
		{"err_effort", "POST", chat, `{"model":"stories",` + hi + `,"reasoning_effort":"extreme"}`},
		{"err_json", "POST", chat, `{"model":`},
		{"err_field", "POST", cmpl, `{"model":"stories","prompt":"x","frobnicate":1}`},
		{"err_context", "POST", cmpl, `{"model":"stories","prompt":"Once upon a time","max_tokens":600}`},
		{"err_overloaded", "POST", chat, `{"model":"busy",` + hi + `}`},
		{"err_overloaded_stream", "POST", chat, `{"model":"busy",` + hi + `,"stream":true}`},
		{"err_method", "GET", chat, ``},
		{"err_route", "GET", "/v1/nothing", ``},
		{"models", "GET", "/v1/models", ``},
		{"model", "GET", "/v1/models/qwen", ``},
		{"health", "GET", "/health", ``},
		{"ready", "GET", "/health/ready", ``},
	}
	dir := filepath.Join("testdata", "wire")
	if *updateGolden {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := wireServer(t)
			got := wireResponse(t, s.URL, tc)
			path := filepath.Join(dir, tc.name+".txt")
			if *updateGolden {
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("response differs from %s\n--- got\n%s\n--- want\n%s", path, got, want)
			}
		})
	}
}

const weatherJSON = `{"type":"function","function":{"name":"get_weather","description":"Weather of a city","parameters":{"type":"object","properties":{"city":{"type":"string"}}}}}`

// wireServer serves stories260K (also as step-3.7-flash), tiny-qwen3, a
// scripted model and an always-overloaded one, with fresh engines.
func wireServer(t *testing.T) *served {
	sc := &testserve.Scripted{Scripts: append(toolScripts(), testserve.Script{Key: "Other", Pieces: []string{"A", " B", " C"}, Finish: "length"})}
	return startServer(t, server.Config{}, []realModel{
		{File: "stories260K.gguf", Name: "stories", Aliases: []string{server.DefaultModelName}, Opts: engine.Options{Context: 512}},
		{File: "tiny-qwen3-F32.gguf", Name: "qwen", Opts: engine.Options{Context: 512}},
	}, scriptedModel(t, "m", sc), scriptedModel(t, "busy", &testserve.Scripted{Err: engine.ErrOverloaded}))
}

// wireResponse sends one request and renders the response as text: the
// status line, the pinned headers, a blank line and the normalized body.
func wireResponse(t *testing.T, base string, tc wireCase) []byte {
	t.Helper()
	var body io.Reader
	if tc.body != "" {
		body = strings.NewReader(tc.body)
	}
	req, err := http.NewRequest(tc.method, base+tc.path, body)
	if err != nil {
		t.Fatal(err)
	}
	if tc.body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	fmt.Fprintf(&out, "HTTP %d\n", resp.StatusCode)
	for _, h := range pinnedHeaders {
		if v := resp.Header.Get(h); v != "" {
			fmt.Fprintf(&out, "%s: %s\n", h, v)
		}
	}
	if resp.Header.Get("X-Request-Id") == "" {
		t.Error("no X-Request-Id header")
	}
	out.WriteString("\n")
	out.Write(canonicalStream(normalize(b)))
	return out.Bytes()
}

var choiceIndex = regexp.MustCompile(`"choices":\[\{(?:"text":"(?:[^"\\]|\\.)*",)?"index":(\d+)`)

// canonicalStream orders the events of an SSE body with several choices by
// choice index (stably), since choices run concurrently and interleave in
// any order; events without a choice (the usage chunk, [DONE]) keep their
// place at the end. A body that is not SSE is returned as it is.
func canonicalStream(b []byte) []byte {
	if !bytes.HasPrefix(b, []byte("data: ")) {
		return b
	}
	events := bytes.SplitAfter(b, []byte("\n\n"))
	n := 0
	for n < len(events) && choiceIndex.Match(events[n]) {
		n++
	}
	index := func(e []byte) int {
		var i int
		fmt.Sscan(string(choiceIndex.FindSubmatch(e)[1]), &i)
		return i
	}
	head := events[:n]
	slices.SortStableFunc(head, func(a, b []byte) int { return index(a) - index(b) })
	return bytes.Join(events, nil)
}
