package backend

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/stepflash/stepflash/api"
)

func sp(s string) *string { return &s }
func ip(i int) *int       { return &i }

func TestChatAccumulator(t *testing.T) {
	var a ChatAccumulator
	u := api.NewUsage(10, 2, 5, 1)
	for _, ch := range []api.ChatCompletionChunk{
		{Envelope: api.Envelope{SystemFingerprint: "fp_x"}, Stepflash: &api.Extension{Backend: "local"},
			Choices: []api.ChunkChoice{{Index: 0, Delta: api.ChunkDelta{Role: "assistant", Content: sp("")}, Logprobs: &api.ChatLogprobs{}}}},
		{Choices: []api.ChunkChoice{{Index: 1, Delta: api.ChunkDelta{Role: "assistant", Content: sp("")}}}},
		{Choices: []api.ChunkChoice{{Index: 0, Delta: api.ChunkDelta{ReasoningContent: sp("think"), Reasoning: sp("think")},
			Logprobs: &api.ChatLogprobs{Content: []api.TokenLogprob{{Token: "a"}}}}}},
		{Choices: []api.ChunkChoice{{Index: 1, Delta: api.ChunkDelta{Reasoning: sp("only reasoning field")}}}},
		{Choices: []api.ChunkChoice{{Index: 0, Delta: api.ChunkDelta{ToolCalls: []api.ToolCall{{Index: ip(0), ID: "call_1", Type: "function", Function: api.FunctionCall{Name: "f"}}}}}}},
		{Choices: []api.ChunkChoice{{Index: 0, Delta: api.ChunkDelta{ToolCalls: []api.ToolCall{{Index: ip(0), Function: api.FunctionCall{Arguments: `{"x":`}}}}}}},
		{Choices: []api.ChunkChoice{{Index: 0, Delta: api.ChunkDelta{ToolCalls: []api.ToolCall{{Function: api.FunctionCall{Arguments: `1}`}}}},
			Logprobs: &api.ChatLogprobs{Content: []api.TokenLogprob{{Token: "b"}}}}}},
		{Choices: []api.ChunkChoice{{Index: 1, Delta: api.ChunkDelta{Content: sp("hi")}}}},
		{Choices: []api.ChunkChoice{{Index: 0, FinishReason: sp("tool_calls")}, {Index: 1, FinishReason: sp("stop")}}},
		{Choices: []api.ChunkChoice{}, Usage: u, Stepflash: &api.Extension{Backend: "local", Region: "r"}},
	} {
		a.Add(&ch)
	}
	r := a.Response()
	b, _ := json.Marshal(r)
	want := `{"id":"","object":"chat.completion","created":0,"model":"","system_fingerprint":"fp_x","choices":[` +
		`{"index":0,"message":{"role":"assistant","content":null,"refusal":null,"reasoning_content":"think","reasoning":"think","tool_calls":[{"id":"call_1","type":"function","function":{"name":"f","arguments":"{\"x\":1}"}}]},"logprobs":{"content":[{"token":"a","logprob":0,"bytes":null,"top_logprobs":null},{"token":"b","logprob":0,"bytes":null,"top_logprobs":null}],"refusal":null},"finish_reason":"tool_calls"},` +
		`{"index":1,"message":{"role":"assistant","content":"hi","refusal":null,"reasoning_content":"only reasoning field","reasoning":"only reasoning field"},"logprobs":null,"finish_reason":"stop"}],` +
		`"usage":{"prompt_tokens":10,"completion_tokens":5,"total_tokens":15,"prompt_tokens_details":{"cached_tokens":2},"completion_tokens_details":{"reasoning_tokens":1},"cached_tokens":2,"cost":0,"cost_details":{"input_miss":0,"input_hit":0,"output":0,"advisor":0}},` +
		`"stepflash":{"effort":{"requested":null,"applied":"","experts_per_token":null,"thinking_budget":null},"backend":"local","region":"r"}}`
	if string(b) != want {
		t.Errorf("response\n%s\nwant\n%s", b, want)
	}
	if a.Usage() != u {
		t.Error("Usage is not the stream's usage")
	}
	var empty ChatAccumulator
	if r := empty.Response(); len(r.Choices) != 0 || r.Choices == nil {
		t.Errorf("empty stream: %+v", r)
	}
}

func TestCompletionAccumulator(t *testing.T) {
	var a CompletionAccumulator
	fin := "length"
	for _, ch := range []api.Completion{
		{Choices: []api.CompletionChoice{{Index: 0, Text: "Once", Logprobs: &api.CompletionLogprobs{Tokens: []string{}, TextOffset: []int{}}}}},
		{Choices: []api.CompletionChoice{{Index: 0, Text: " upon", Logprobs: &api.CompletionLogprobs{Tokens: []string{" upon"}, TokenLogprobs: []float64{-1},
			TopLogprobs: []map[string]float64{{" upon": -1}}, TextOffset: []int{4}}}}},
		{Choices: []api.CompletionChoice{{Index: 0, FinishReason: &fin, Logprobs: &api.CompletionLogprobs{}}}},
	} {
		a.Add(&ch)
	}
	r := a.Response()
	c := r.Choices[0]
	if c.Text != "Once upon" || *c.FinishReason != "length" || len(c.Logprobs.Tokens) != 1 || c.Logprobs.TextOffset[0] != 4 || r.Object != "text_completion" {
		t.Errorf("%+v %+v", r, c.Logprobs)
	}
}

func TestChain(t *testing.T) {
	var order []string
	mw := func(name string) Middleware {
		return func(next Backend) Backend {
			return &Funcs{Next: next, InfoFunc: func() Info {
				order = append(order, name)
				return next.Info()
			}}
		}
	}
	base := &Funcs{InfoFunc: func() Info { order = append(order, "base"); return Info{Label: "x"} }}
	if got := Chain(base, mw("outer"), mw("inner")).Info(); got.Label != "x" || strings.Join(order, ",") != "outer,inner,base" {
		t.Errorf("info %+v, order %v", got, order)
	}
	// Funcs passes what it does not override through.
	called := false
	next := &Funcs{ChatFunc: func(context.Context, *api.ChatCompletionRequest, func(*api.ChatCompletionChunk) error) error {
		called = true
		return nil
	}}
	if err := (&Funcs{Next: next}).Chat(context.Background(), nil, nil); err != nil || !called {
		t.Errorf("pass-through: %v %v", err, called)
	}
}

func TestCheck(t *testing.T) {
	msgs := `"messages":[{"role":"user","content":"hi"}]`
	chatCases := []struct{ body, code, param string }{
		{`{` + msgs + `}`, "", ""},
		{`{` + msgs + `,"reasoning_effort":"high"}`, "", ""},
		{`{` + msgs + `,"reasoning_effort":"extreme"}`, "invalid_reasoning_effort", "reasoning_effort"},
		{`{` + msgs + `,"reasoning_effort":""}`, "invalid_reasoning_effort", "reasoning_effort"},
		{`{` + msgs + `,"n":17}`, "invalid_value", "n"},
		{`{` + msgs + `,"logit_bias":{"x":1}}`, "invalid_value", "logit_bias"},
		{`{` + msgs + `,"logit_bias":{"99999999":1}}`, "", ""}, // the vocabulary is the backend's to check
		{`{"messages":[{"role":"tool","content":"x"}]}`, "missing_required_parameter", "messages[0].tool_call_id"},
		{`{"messages":[{"role":"user","content":null}]}`, "missing_required_parameter", "messages[0].content"},
		{`{"messages":[{"role":"user","content":[{"text":"x"}]}]}`, "missing_required_parameter", "messages[0].content[0].type"},
		{`{` + msgs + `,"tools":[{"type":"function","function":{"name":"a","parameters":[1]}}]}`, "invalid_type", "tools[0].function.parameters"},
		{`{` + msgs + `,"tool_choice":"maybe"}`, "invalid_value", "tool_choice"},
		{`{` + msgs + `,"chat_template_kwargs":{"messages":[]}}`, "invalid_value", "chat_template_kwargs"},
		{`{` + msgs + `,"advisor":"sometimes"}`, "invalid_advisor", "advisor"},
	}
	for _, tc := range chatCases {
		var req api.ChatCompletionRequest
		if err := json.Unmarshal([]byte(tc.body), &req); err != nil {
			t.Fatal(err)
		}
		e := CheckChat(&req, Limits{MaxN: 16})
		if got := codeParam(e); got != tc.code+"|"+tc.param {
			t.Errorf("%s: %s (%v), want %s|%s", tc.body, got, e, tc.code, tc.param)
		}
	}
	cmplCases := []struct{ body, code, param string }{
		{`{"prompt":"x"}`, "", ""},
		{`{}`, "missing_required_parameter", "prompt"},
		{`{"prompt":[]}`, "invalid_value", "prompt"},
		{`{"prompt":[[]]}`, "invalid_value", "prompt"},
		{`{"prompt":[-1]}`, "invalid_value", "prompt"},
		{`{"prompt":["a","b","c"],"n":6}`, "invalid_value", "prompt"},
		{`{"prompt":"x","logprobs":21}`, "invalid_value", "logprobs"},
		{`{"prompt":"x","echo":true,"logprobs":1}`, "unsupported_parameter", "echo"},
		{`{"prompt":"x","best_of":3}`, "unsupported_parameter", "best_of"},
	}
	for _, tc := range cmplCases {
		var req api.CompletionRequest
		if err := json.Unmarshal([]byte(tc.body), &req); err != nil {
			t.Fatal(err)
		}
		e := CheckCompletion(&req, Limits{MaxN: 16})
		if got := codeParam(e); got != tc.code+"|"+tc.param {
			t.Errorf("%s: %s (%v), want %s|%s", tc.body, got, e, tc.code, tc.param)
		}
	}
	if EffortLevel(nil) != "medium" || EffortLevel(sp("low")) != "low" {
		t.Error("EffortLevel")
	}
}

func codeParam(e *api.Error) string {
	if e == nil {
		return "|"
	}
	return e.CodeString() + "|" + e.ParamString()
}
