package api

import (
	"encoding/json"
	"errors"
	"reflect"
	"testing"
)

func TestFlexibleFields(t *testing.T) {
	cases := []struct {
		name    string
		body    string
		check   func(r *ChatCompletionRequest) bool
		badType string // param of the expected type error
	}{
		{"string content", `{"messages":[{"role":"user","content":"hi"}]}`, func(r *ChatCompletionRequest) bool {
			c := r.Messages[0].Content
			return c.Text == "hi" && !c.IsParts && !c.IsNull
		}, ""},
		{"parts content", `{"messages":[{"role":"user","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]}]}`, func(r *ChatCompletionRequest) bool {
			c := r.Messages[0].Content
			return c.IsParts && len(c.Parts) == 2 && c.Parts[1].Text == "b"
		}, ""},
		{"null content", `{"messages":[{"role":"assistant","content":null}]}`, func(r *ChatCompletionRequest) bool { return r.Messages[0].Content.IsNull }, ""},
		{"number content", `{"messages":[{"role":"user","content":1}]}`, nil, "messages.content"},
		{"stop string", `{"stop":"x"}`, func(r *ChatCompletionRequest) bool { return reflect.DeepEqual(r.Stop, Stop{"x"}) }, ""},
		{"stop list", `{"stop":["x","y"]}`, func(r *ChatCompletionRequest) bool { return reflect.DeepEqual(r.Stop, Stop{"x", "y"}) }, ""},
		{"stop null", `{"stop":null}`, func(r *ChatCompletionRequest) bool { return r.Stop == nil }, ""},
		{"stop numbers", `{"stop":[1]}`, nil, "stop"},
		{"tool_choice mode", `{"tool_choice":"required"}`, func(r *ChatCompletionRequest) bool { return r.ToolChoice.Mode == "required" }, ""},
		{"tool_choice named", `{"tool_choice":{"type":"function","function":{"name":"f"}}}`, func(r *ChatCompletionRequest) bool {
			return r.ToolChoice.Mode == "function" && r.ToolChoice.Function == "f"
		}, ""},
		{"tool_choice number", `{"tool_choice":3}`, nil, "tool_choice"},
		{"temperature string", `{"temperature":"x"}`, nil, "temperature"},
	}
	for _, tc := range cases {
		var r ChatCompletionRequest
		err := json.Unmarshal([]byte(tc.body), &r)
		if tc.badType != "" {
			var te *json.UnmarshalTypeError
			if !errors.As(err, &te) || te.Field != tc.badType {
				t.Errorf("%s: error %v, want a type error on %s", tc.name, err, tc.badType)
			}
			continue
		}
		if err != nil || !tc.check(&r) {
			t.Errorf("%s: err %v, got %+v", tc.name, err, r)
		}
	}
}

func TestPrompt(t *testing.T) {
	cases := []struct {
		body   string
		texts  []string
		tokens [][]int32
		bad    bool
	}{
		{`"a"`, []string{"a"}, nil, false},
		{`["a","b"]`, []string{"a", "b"}, nil, false},
		{`[1,2]`, nil, [][]int32{{1, 2}}, false},
		{`[[1],[2,3]]`, nil, [][]int32{{1}, {2, 3}}, false},
		{`[]`, nil, nil, false},
		{`{"a":1}`, nil, nil, true},
		{`[1,"a"]`, nil, nil, true},
	}
	for _, tc := range cases {
		var p Prompt
		err := json.Unmarshal([]byte(tc.body), &p)
		if (err != nil) != tc.bad || !reflect.DeepEqual(p.Texts, tc.texts) || !reflect.DeepEqual(p.Tokens, tc.tokens) {
			t.Errorf("%s: %+v, %v", tc.body, p, err)
		}
	}
}

func TestErrorJSON(t *testing.T) {
	b, _ := json.Marshal(ErrorResponse{Error: ModelNotFound("x", []string{"a", "b"})})
	want := `{"error":{"message":"The model \"x\" does not exist or is not served here. Served models: \"a\", \"b\".","type":"not_found_error","param":"model","code":"model_not_found"}}`
	if string(b) != want {
		t.Errorf("got  %s\nwant %s", b, want)
	}
	b, _ = json.Marshal(ErrorResponse{Error: Internal("boom")})
	if string(b) != `{"error":{"message":"boom","type":"server_error","param":null,"code":"internal_error"}}` {
		t.Errorf("null param: %s", b)
	}
	if e := Overloaded(2); e.Status != 503 || e.RetryAfter != 2 || e.CodeString() != CodeOverloaded {
		t.Errorf("overloaded %+v", e)
	}
	if e := ContextLengthExceeded("messages", 10, 8, 5); e.ParamString() != "messages" || e.Status != 400 {
		t.Errorf("context %+v", e)
	}
}
