package upstream_test

import (
	"bytes"
	"context"
	"encoding/json"
	"github.com/stepflash/stepflash/api"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/stepflash/stepflash/backend"
	"github.com/stepflash/stepflash/billing"
	"github.com/stepflash/stepflash/engine"
	"github.com/stepflash/stepflash/internal/testserve"
	"github.com/stepflash/stepflash/server"
	"github.com/stepflash/stepflash/upstream"
)

// replica is a real stepflash server on loopback: stories260K, tiny-qwen3
// and a scripted model "m" (tool calls, reasoning).
func replica(t *testing.T) *testserve.Served {
	t.Helper()
	sc := &testserve.Scripted{Scripts: scripts()}
	return testserve.Start(t, server.Config{}, []testserve.Real{
		{File: "stories260K.gguf", Name: "stories", Opts: engine.Options{Context: 512}},
		{File: "tiny-qwen3-F32.gguf", Name: "qwen", Opts: engine.Options{Context: 512}},
	}, testserve.ScriptedModel(t, "m", sc, nil))
}

func scripts() []testserve.Script {
	return []testserve.Script{
		{Key: "Weather in Paris", Pieces: []string{"<think>\nThe user", " wants weather.\n</think>\n\n", "<tool_", "call>\n{\"name\": \"get_weather\", ",
			"\"arguments\": {\"city\": \"Paris\"}}\n</tool_call>"}, Reasoning: 2},
		{Key: "Think", Pieces: []string{"<think>", "2+2 is 4", "</think>", "The answer", " is 4."}, Reasoning: 3},
	}
}

// gateway serves each model as a pool over the given upstream base URLs
// (without /v1), the way `stepflash serve --config` does.
func gateway(t *testing.T, models map[string][]string, tune func(*upstream.PoolConfig)) *testserve.Served {
	t.Helper()
	var extra []*server.Model
	for name, urls := range models {
		pc := upstream.PoolConfig{Name: name, HealthInterval: -1}
		for _, u := range urls {
			pc.Upstreams = append(pc.Upstreams, upstream.Config{BaseURL: u + "/v1"})
		}
		if tune != nil {
			tune(&pc)
		}
		p, err := upstream.NewPool(pc)
		if err != nil {
			t.Fatal(err)
		}
		p.Start()
		t.Cleanup(p.Close)
		extra = append(extra, &server.Model{Name: name, Backend: backend.Chain(p, billing.Pricing(billing.Default))})
	}
	return testserve.Start(t, server.Config{}, nil, extra...)
}

var (
	idRE      = regexp.MustCompile(`"id":"(chatcmpl|cmpl)-[A-Za-z0-9]{24}"`)
	createdRE = regexp.MustCompile(`"created":\d+`)
	callRE    = regexp.MustCompile(`"call_[A-Za-z0-9]{24}"`)
	// timeRE matches the timings' milliseconds and rates (their counts stay).
	timeRE = regexp.MustCompile(`"(prompt_ms|prompt_per_token_ms|prompt_per_second|predicted_ms|predicted_per_token_ms|predicted_per_second)":[-+.0-9eE]+`)
)

// canonical renders a response for comparison: the status, the effort
// header, and each JSON document of the body (the whole body, or each SSE
// event) with ids, times and the timings' durations normalised and the stepflash object (which
// names the backend) removed.
func canonical(t *testing.T, resp *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	b = idRE.ReplaceAll(b, []byte(`"id":"ID"`))
	b = createdRE.ReplaceAll(b, []byte(`"created":0`))
	b = callRE.ReplaceAll(b, []byte(`"call_ID"`))
	b = timeRE.ReplaceAll(b, []byte(`"${1}":0`))
	var out strings.Builder
	out.WriteString(resp.Status + " " + resp.Header.Get("X-Reasoning-Effort") + " " + resp.Header.Get("Content-Type") + "\n")
	docs := [][]byte{b}
	if bytes.HasPrefix(b, []byte("data: ")) {
		docs = nil
		for _, ev := range bytes.Split(b, []byte("\n\n")) {
			if d, ok := bytes.CutPrefix(ev, []byte("data: ")); ok {
				docs = append(docs, d)
			}
		}
	}
	for _, d := range docs {
		var v map[string]any
		if json.Unmarshal(d, &v) != nil {
			out.Write(d) // [DONE]
			out.WriteString("\n")
			continue
		}
		delete(v, "stepflash")
		n, _ := json.Marshal(v)
		out.Write(n)
		out.WriteString("\n")
	}
	return out.String()
}

func post(t *testing.T, base, path, body string) *http.Response {
	t.Helper()
	resp, err := http.Post(base+path, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// TestGatewayEqualsDirect: a request through the gateway to one replica
// gets what the same request gets directly from an identical replica:
// every chunk, in order, byte for byte as JSON, but for the stepflash
// object that names the backend.
func TestGatewayEqualsDirect(t *testing.T) {
	behind, direct := replica(t), replica(t)
	gw := gateway(t, map[string][]string{"stories": {behind.URL}, "qwen": {behind.URL}, "m": {behind.URL}}, nil)
	const chat, cmpl = "/v1/chat/completions", "/v1/completions"
	hi := `"messages":[{"role":"user","content":"Hello there"}]`
	weather := `{"type":"function","function":{"name":"get_weather","parameters":{"type":"object","properties":{"city":{"type":"string"}}}}}`
	cases := []struct{ path, body string }{
		{chat, `{"model":"stories",` + hi + `,"max_tokens":8,"temperature":0}`},
		{chat, `{"model":"stories",` + hi + `,"max_tokens":6,"temperature":0,"stream":true}`},
		{chat, `{"model":"stories",` + hi + `,"max_tokens":6,"temperature":0,"stream":true,"stream_options":{"include_usage":true}}`},
		{chat, `{"model":"qwen",` + hi + `,"max_tokens":5,"temperature":0,"logprobs":true,"top_logprobs":2}`},
		{chat, `{"model":"qwen",` + hi + `,"max_tokens":4,"temperature":0,"logprobs":true,"top_logprobs":2,"stream":true,"stream_options":{"include_usage":true}}`},
		{chat, `{"model":"qwen",` + hi + `,"max_tokens":5,"temperature":0,"reasoning_effort":"low"}`},
		{chat, `{"model":"stories",` + hi + `,"max_tokens":30,"temperature":0,"stop":["the"]}`},
		{chat, `{"model":"stories",` + hi + `,"max_tokens":8,"temperature":1,"seed":7}`},
		{cmpl, `{"model":"stories","prompt":"Once upon a time","max_tokens":8,"temperature":0}`},
		{cmpl, `{"model":"stories","prompt":"Once upon a time","max_tokens":6,"temperature":0,"logprobs":3}`},
		{cmpl, `{"model":"stories","prompt":"Once upon a time","max_tokens":6,"temperature":0,"logprobs":2,"stream":true,"stream_options":{"include_usage":true}}`},
		{cmpl, `{"model":"stories","prompt":"Once upon a time","max_tokens":6,"temperature":0,"echo":true,"stream":true}`},
		{cmpl, `{"model":"stories","prompt":[1,403,407],"max_tokens":6,"temperature":0}`},
		{chat, `{"model":"m","messages":[{"role":"user","content":"Weather in Paris?"}],"tools":[` + weather + `]}`},
		{chat, `{"model":"m","messages":[{"role":"user","content":"Weather in Paris?"}],"tools":[` + weather + `],"stream":true,"stream_options":{"include_usage":true}}`},
		{chat, `{"model":"m","messages":[{"role":"user","content":"Think"}],"stream":true}`},
		{chat, `{"model":"m","messages":[{"role":"user","content":"Think"}],"n":2}`},
		// The replica's own errors come back with their status.
		{cmpl, `{"model":"stories","prompt":"Once upon a time","max_tokens":600}`},
	}
	for _, tc := range cases {
		got := canonical(t, post(t, gw.URL, tc.path, tc.body))
		want := canonical(t, post(t, direct.URL, tc.path, tc.body))
		if strings.Contains(tc.body, `"max_tokens":600`) {
			// The gateway names the upstream that refused the request.
			if !strings.HasPrefix(got, "400 Bad Request") || !strings.Contains(got, "context_length_exceeded") || !strings.Contains(got, "maximum context length is 512 tokens") {
				t.Errorf("%s: the replica's error did not come through:\n%s", tc.body, got)
			}
			continue
		}
		if got != want {
			t.Errorf("%s %s\nthrough the gateway:\n%s\ndirect:\n%s", tc.path, tc.body, got, want)
		}
	}
}

// TestGatewaySDK: the official client gets the same answers through the
// gateway as directly, streamed and not, and the stepflash object says an
// upstream answered and what effort it was sent.
func TestGatewaySDK(t *testing.T) {
	behind, direct := replica(t), replica(t)
	gw := gateway(t, map[string][]string{"stories": {behind.URL}}, nil)
	ctx := context.Background()
	params := openai.ChatCompletionNewParams{Model: "stories", Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Hello")},
		MaxTokens: openai.Int(10), Temperature: openai.Float(0), ReasoningEffort: "high"}
	g, err := gw.Client.Chat.Completions.New(ctx, params)
	if err != nil {
		t.Fatal(err)
	}
	d, err := direct.Client.Chat.Completions.New(ctx, params)
	if err != nil {
		t.Fatal(err)
	}
	if g.Choices[0].Message.Content != d.Choices[0].Message.Content || g.Usage.CompletionTokens != d.Usage.CompletionTokens || g.Usage.PromptTokens != d.Usage.PromptTokens {
		t.Errorf("gateway %q %+v, direct %q %+v", g.Choices[0].Message.Content, g.Usage, d.Choices[0].Message.Content, d.Usage)
	}
	var ext struct {
		Effort struct {
			Requested, Applied string
			Experts            *int `json:"experts_per_token"`
			Budget             *int `json:"thinking_budget"`
			Upstream           struct {
				Param, Sent string
				Verified    *bool
			}
		}
		Backend, Region string
	}
	if err := json.Unmarshal([]byte(g.JSON.ExtraFields["stepflash"].Raw()), &ext); err != nil {
		t.Fatal(err)
	}
	e := ext.Effort
	if ext.Backend != "upstream:"+strings.TrimPrefix(behind.URL, "http://") || e.Requested != "high" || e.Applied != "high" || e.Experts != nil || e.Budget != nil ||
		e.Upstream.Param != "reasoning_effort" || e.Upstream.Sent != "high" || e.Upstream.Verified == nil || *e.Upstream.Verified || ext.Region != "global" {
		t.Errorf("stepflash object %s", g.JSON.ExtraFields["stepflash"].Raw())
	}
	st := gw.Client.Chat.Completions.NewStreaming(ctx, params)
	acc := openai.ChatCompletionAccumulator{}
	for st.Next() {
		acc.AddChunk(st.Current())
	}
	if err := st.Err(); err != nil {
		t.Fatal(err)
	}
	if acc.Choices[0].Message.Content != d.Choices[0].Message.Content {
		t.Errorf("streamed through the gateway %q, direct %q", acc.Choices[0].Message.Content, d.Choices[0].Message.Content)
	}
	// The model list.
	list, err := gw.Client.Models.List(ctx)
	if err != nil || len(list.Data) != 1 || list.Data[0].ID != "stories" {
		t.Fatalf("models %+v %v", list, err)
	}
	if raw := list.Data[0].JSON.ExtraFields["max_model_len"].Raw(); raw != "512" {
		t.Errorf("max_model_len %s, want the replica's 512", raw)
	}
}

// upstreamOf returns a test server that answers every POST with h and
// records the last request body; anything else is a 404.
func upstreamOf(t *testing.T, h func(w http.ResponseWriter, r *http.Request, body []byte)) (*httptest.Server, *[]byte) {
	t.Helper()
	var last []byte
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			http.NotFound(w, r)
			return
		}
		b, _ := io.ReadAll(r.Body)
		last = b
		h(w, r, b)
	}))
	t.Cleanup(srv.Close)
	return srv, &last
}

// TestGatewayEmbeddings: embeddings through a gateway are the replica's
// (same vectors, same token usage, priced here), the upstream label says
// who computed them, and a model whose upstream has no embeddings says so.
func TestGatewayEmbeddings(t *testing.T) {
	rep := replica(t)
	gw := gateway(t, map[string][]string{"stories": {rep.URL}}, nil)
	body := `{"model":"stories","input":["Once upon a time","Lily"]}`
	var direct, via struct {
		Data []struct {
			Embedding []float64 `json:"embedding"`
		} `json:"data"`
		Usage     api.Usage     `json:"usage"`
		Stepflash api.Extension `json:"stepflash"`
	}
	for _, r := range []struct {
		base string
		out  any
	}{{rep.URL, &direct}, {gw.URL, &via}} {
		resp := post(t, r.base, "/v1/embeddings", body)
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("%s: %d %s", r.base, resp.StatusCode, b)
		}
		if err := json.Unmarshal(b, r.out); err != nil {
			t.Fatal(err)
		}
	}
	if len(via.Data) != 2 || !reflect.DeepEqual(via.Data, direct.Data) {
		t.Fatalf("the gateway's embeddings differ from the replica's")
	}
	if via.Usage.PromptTokens != direct.Usage.PromptTokens || via.Usage.PromptTokens == 0 || via.Usage.Cost != direct.Usage.Cost {
		t.Errorf("usage via the gateway %+v, direct %+v", via.Usage, direct.Usage)
	}
	if !strings.HasPrefix(via.Stepflash.Backend, "upstream:") || direct.Stepflash.Backend != "local" {
		t.Errorf("backends: via %q, direct %q", via.Stepflash.Backend, direct.Stepflash.Backend)
	}
}
