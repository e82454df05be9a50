package server_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anthropics/anthropic-sdk-go/v2"
	"github.com/anthropics/anthropic-sdk-go/v2/option"
	"github.com/openai/openai-go/v3"
	"github.com/stepflash/stepflash/api"
	"github.com/stepflash/stepflash/backend"
	"github.com/stepflash/stepflash/internal/testserve"
	"github.com/stepflash/stepflash/server"
)

// fakeChat is a backend that records the chat request it gets and emits
// canned chunks (an error after errAfter of them when err is set).
type fakeChat struct {
	mu       sync.Mutex
	last     *api.ChatCompletionRequest
	chunks   []*api.ChatCompletionChunk
	err      error
	errAfter int
}

func (f *fakeChat) model(name string) *server.Model {
	return &server.Model{Name: name, Backend: &backend.Funcs{
		ChatFunc: func(_ context.Context, req *api.ChatCompletionRequest, emit func(*api.ChatCompletionChunk) error) error {
			f.mu.Lock()
			f.last = req
			chunks, err, errAfter := f.chunks, f.err, f.errAfter
			f.mu.Unlock()
			for i, ch := range chunks {
				if err != nil && i == errAfter {
					return err
				}
				c := *ch // the server stamps the chunk
				if err := emit(&c); err != nil {
					return err
				}
			}
			return err
		},
		InfoFunc: func() backend.Info { return backend.Info{Label: "fake", Context: 4096} },
	}}
}

func (f *fakeChat) request() *api.ChatCompletionRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.last
}

func str(s string) *string { return &s }

func textChunk(s string) *api.ChatCompletionChunk {
	return &api.ChatCompletionChunk{Choices: []api.ChunkChoice{{Delta: api.ChunkDelta{Content: &s}}}}
}

func reasoningChunk(s string) *api.ChatCompletionChunk {
	return &api.ChatCompletionChunk{Choices: []api.ChunkChoice{{Delta: api.ChunkDelta{ReasoningContent: &s, Reasoning: &s}}}}
}

func toolChunk(i int, id, name, args string) *api.ChatCompletionChunk {
	return &api.ChatCompletionChunk{Choices: []api.ChunkChoice{{Delta: api.ChunkDelta{ToolCalls: []api.ToolCall{{Index: &i, ID: id,
		Type: "function", Function: api.FunctionCall{Name: name, Arguments: args}}}}}}}
}

func finishChunk(reason string) *api.ChatCompletionChunk {
	return &api.ChatCompletionChunk{Choices: []api.ChunkChoice{{Delta: api.ChunkDelta{}, FinishReason: &reason}}}
}

func usageChunk(prompt, cached, completion int) *api.ChatCompletionChunk {
	return &api.ChatCompletionChunk{Choices: []api.ChunkChoice{}, Usage: api.NewUsage(prompt, cached, completion, 0)}
}

func firstChunk() *api.ChatCompletionChunk {
	e := "medium"
	return &api.ChatCompletionChunk{Choices: []api.ChunkChoice{{Delta: api.ChunkDelta{Role: "assistant", Content: str("")}}},
		Stepflash: &api.Extension{Effort: api.EffortEcho{Requested: &e, Applied: "medium"}, Backend: "fake"}}
}

func postMessages(t *testing.T, base, body string) (*http.Response, []byte) {
	t.Helper()
	req, _ := http.NewRequest("POST", base+"/v1/messages", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("x-api-key", "sk-test")
	req.Header.Set("anthropic-version", "2023-06-01")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, b
}

// jsonOf is v as generic JSON, to compare.
func jsonOf(t *testing.T, v any) any {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var out any
	json.Unmarshal(b, &out)
	return out
}

func parseJSON(t *testing.T, s string) any {
	t.Helper()
	var out any
	if err := json.Unmarshal([]byte(s), &out); err != nil {
		t.Fatalf("%v: %s", err, s)
	}
	return out
}

// TestMessagesRequestTranslation checks the chat request each Messages
// request becomes.
func TestMessagesRequestTranslation(t *testing.T) {
	f := &fakeChat{chunks: []*api.ChatCompletionChunk{firstChunk(), textChunk("hi"), finishChunk("stop"), usageChunk(5, 0, 1)}}
	s := startServer(t, server.Config{}, nil, f.model("m"))
	head := `{"model":"m","max_tokens":64,`
	for _, c := range []struct {
		name, body string
		// want are fields of the chat request, as JSON.
		want map[string]string
	}{
		{"strings", head + `"system":"Be brief.","messages":[{"role":"user","content":"Hi"}],"stop_sequences":["END"],"temperature":0.5,"top_p":0.9,"top_k":20,"metadata":{"user_id":"u1"}}`,
			map[string]string{
				"messages":    `[{"role":"system","content":"Be brief."},{"role":"user","content":"Hi"}]`,
				"max_tokens":  `64`,
				"stop":        `["END"]`,
				"temperature": `0.5`, "top_p": `0.9`, "top_k": `20`,
				"stream": `false`, "reasoning_effort": `null`, "tools": `null`, "tool_choice": `null`,
			}},
		{"system blocks", head + `"system":[{"type":"text","text":"One.","cache_control":{"type":"ephemeral"}},{"type":"text","text":"Two."}],"messages":[{"role":"user","content":[{"type":"text","text":"Hi"}]}]}`,
			map[string]string{"messages": `[{"role":"system","content":"One.\nTwo."},{"role":"user","content":[{"type":"text","text":"Hi"}]}]`}},
		{"images", head + `"messages":[{"role":"user","content":[{"type":"image","source":{"type":"base64","media_type":"image/png","data":"iVBORw0K"}},{"type":"image","source":{"type":"url","url":"https://example.com/a.jpg"}},{"type":"text","text":"What?"}]}]}`,
			map[string]string{"messages": `[{"role":"user","content":[{"type":"image_url","text":"","image_url":{"url":"data:image/png;base64,iVBORw0K"}},{"type":"image_url","text":"","image_url":{"url":"https://example.com/a.jpg"}},{"type":"text","text":"What?"}]}]`}},
		{"tool round trip", head + `"messages":[{"role":"user","content":"Weather?"},
			{"role":"assistant","content":[{"type":"thinking","thinking":"Need a tool.","signature":""},{"type":"text","text":"Checking."},{"type":"tool_use","id":"toolu_1","name":"get_weather","input":{"city":"Paris"}},{"type":"tool_use","id":"toolu_2","name":"get_weather","input":{}}]},
			{"role":"user","content":[{"type":"tool_result","tool_use_id":"toolu_1","content":"sunny"},{"type":"tool_result","tool_use_id":"toolu_2","content":[{"type":"text","text":"no"},{"type":"text","text":"city"}],"is_error":true},{"type":"text","text":"And now?"}]},
			{"role":"assistant","content":[{"type":"tool_use","id":"toolu_3","name":"get_weather","input":{"city":"Rome"}}]},
			{"role":"user","content":[{"type":"tool_result","tool_use_id":"toolu_3"}]}]}`,
			map[string]string{"messages": `[{"role":"user","content":"Weather?"},
			{"role":"assistant","content":"Checking.","reasoning_content":"Need a tool.","tool_calls":[{"id":"toolu_1","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}},{"id":"toolu_2","type":"function","function":{"name":"get_weather","arguments":"{}"}}]},
			{"role":"tool","content":"sunny","tool_call_id":"toolu_1"},
			{"role":"tool","content":"Error: no\ncity","tool_call_id":"toolu_2"},
			{"role":"user","content":[{"type":"text","text":"And now?"}]},
			{"role":"assistant","content":null,"tool_calls":[{"id":"toolu_3","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Rome\"}"}}]},
			{"role":"tool","content":"","tool_call_id":"toolu_3"}]`}},
		{"tools auto", head + `"messages":[{"role":"user","content":"Hi"}],"tools":[{"name":"get_weather","description":"Weather","input_schema":{"type":"object","properties":{"city":{"type":"string"}}}}],"tool_choice":{"type":"auto"}}`,
			map[string]string{
				"tools":       `[{"type":"function","function":{"name":"get_weather","description":"Weather","parameters":{"type":"object","properties":{"city":{"type":"string"}}}}}]`,
				"tool_choice": `{"Mode":"auto","Function":""}`, "parallel_tool_calls": `null`,
			}},
		{"tool choice any", head + `"messages":[{"role":"user","content":"Hi"}],"tools":[{"type":"custom","name":"a","input_schema":{"type":"object"}}],"tool_choice":{"type":"any","disable_parallel_tool_use":true}}`,
			map[string]string{"tool_choice": `{"Mode":"required","Function":""}`, "parallel_tool_calls": `false`}},
		{"tool choice tool", head + `"messages":[{"role":"user","content":"Hi"}],"tools":[{"name":"a","input_schema":{"type":"object"}}],"tool_choice":{"type":"tool","name":"a"}}`,
			map[string]string{"tool_choice": `{"Mode":"function","Function":"a"}`}},
		{"tool choice none", head + `"messages":[{"role":"user","content":"Hi"}],"tools":[{"name":"a","input_schema":{"type":"object"}}],"tool_choice":{"type":"none"}}`,
			map[string]string{"tool_choice": `{"Mode":"none","Function":""}`}},
		{"thinking 1024", head + `"messages":[{"role":"user","content":"Hi"}],"thinking":{"type":"enabled","budget_tokens":1024}}`,
			map[string]string{"reasoning_effort": `"medium"`}},
		{"thinking 300", head + `"messages":[{"role":"user","content":"Hi"}],"thinking":{"type":"enabled","budget_tokens":300}}`,
			map[string]string{"reasoning_effort": `"low"`}},
		{"thinking 4607", head + `"messages":[{"role":"user","content":"Hi"}],"thinking":{"type":"enabled","budget_tokens":4607}}`,
			map[string]string{"reasoning_effort": `"medium"`}},
		{"thinking 4608", head + `"messages":[{"role":"user","content":"Hi"}],"thinking":{"type":"enabled","budget_tokens":4608}}`,
			map[string]string{"reasoning_effort": `"high"`}},
		{"thinking disabled", head + `"messages":[{"role":"user","content":"Hi"}],"thinking":{"type":"disabled"}}`,
			map[string]string{"reasoning_effort": `"low"`}},
		{"thinking adaptive", head + `"messages":[{"role":"user","content":"Hi"}],"thinking":{"type":"adaptive"}}`,
			map[string]string{"reasoning_effort": `null`}},
		{"effort max", head + `"messages":[{"role":"user","content":"Hi"}],"output_config":{"effort":"max"}}`,
			map[string]string{"reasoning_effort": `"high"`}},
		{"effort wins", head + `"messages":[{"role":"user","content":"Hi"}],"thinking":{"type":"enabled","budget_tokens":10000},"output_config":{"effort":"low"}}`,
			map[string]string{"reasoning_effort": `"low"`}},
	} {
		resp, body := postMessages(t, s.URL, c.body)
		if resp.StatusCode != 200 {
			t.Errorf("%s: %d %s", c.name, resp.StatusCode, body)
			continue
		}
		got := jsonOf(t, f.request()).(map[string]any)
		for k, w := range c.want {
			if g := got[k]; !reflect.DeepEqual(g, parseJSON(t, w)) {
				gb, _ := json.Marshal(g)
				t.Errorf("%s: %s = %s, want %s", c.name, k, gb, w)
			}
		}
	}
}

// TestMessagesResponses checks the Message, and the stream events, each
// backend stream becomes.
func TestMessagesResponses(t *testing.T) {
	f := &fakeChat{}
	s := startServer(t, server.Config{}, nil, f.model("m"))
	for _, c := range []struct {
		name   string
		chunks []*api.ChatCompletionChunk
		// content and the rest of the Message, as JSON.
		content, stop, usage string
		events               []string
	}{
		{"text", []*api.ChatCompletionChunk{firstChunk(), textChunk("4"), textChunk("6"), finishChunk("stop"), usageChunk(20, 16, 2)},
			`[{"type":"text","text":"46"}]`, `"end_turn"`,
			`{"input_tokens":4,"output_tokens":2,"cache_creation_input_tokens":0,"cache_read_input_tokens":16}`,
			[]string{"message_start", "content_block_start text", "content_block_delta text_delta", "content_block_delta text_delta", "content_block_stop", "message_delta", "message_stop"}},
		{"thinking and text", []*api.ChatCompletionChunk{firstChunk(), reasoningChunk("12+34"), reasoningChunk("=46"), textChunk("46"), finishChunk("stop"), usageChunk(10, 0, 5)},
			`[{"type":"thinking","thinking":"12+34=46","signature":""},{"type":"text","text":"46"}]`, `"end_turn"`,
			`{"input_tokens":10,"output_tokens":5,"cache_creation_input_tokens":0,"cache_read_input_tokens":0}`,
			[]string{"message_start", "content_block_start thinking", "content_block_delta thinking_delta", "content_block_delta thinking_delta", "content_block_stop",
				"content_block_start text", "content_block_delta text_delta", "content_block_stop", "message_delta", "message_stop"}},
		{"tool calls", []*api.ChatCompletionChunk{firstChunk(), textChunk("Let me check."), toolChunk(0, "call_1", "get_weather", ""), toolChunk(0, "", "", `{"city": `), toolChunk(0, "", "", `"Paris"}`),
			toolChunk(1, "call_2", "get_weather", `{"city": "Rome"}`), finishChunk("tool_calls"), usageChunk(30, 0, 20)},
			`[{"type":"text","text":"Let me check."},{"type":"tool_use","id":"call_1","name":"get_weather","input":{"city":"Paris"}},{"type":"tool_use","id":"call_2","name":"get_weather","input":{"city":"Rome"}}]`,
			`"tool_use"`, `{"input_tokens":30,"output_tokens":20,"cache_creation_input_tokens":0,"cache_read_input_tokens":0}`,
			[]string{"message_start", "content_block_start text", "content_block_delta text_delta", "content_block_stop",
				"content_block_start tool_use", "content_block_delta input_json_delta", "content_block_delta input_json_delta", "content_block_stop",
				"content_block_start tool_use", "content_block_delta input_json_delta", "content_block_stop", "message_delta", "message_stop"}},
		{"cut tool call", []*api.ChatCompletionChunk{firstChunk(), toolChunk(0, "call_1", "f", `{"a": [1,`), finishChunk("length"), usageChunk(3, 0, 8)},
			`[{"type":"tool_use","id":"call_1","name":"f","input":{}}]`, `"max_tokens"`,
			`{"input_tokens":3,"output_tokens":8,"cache_creation_input_tokens":0,"cache_read_input_tokens":0}`,
			[]string{"message_start", "content_block_start tool_use", "content_block_delta input_json_delta", "content_block_stop", "message_delta", "message_stop"}},
		{"empty", []*api.ChatCompletionChunk{firstChunk(), finishChunk("length"), usageChunk(3, 0, 0)},
			`[]`, `"max_tokens"`, `{"input_tokens":3,"output_tokens":0,"cache_creation_input_tokens":0,"cache_read_input_tokens":0}`,
			[]string{"message_start", "message_delta", "message_stop"}},
	} {
		f.mu.Lock()
		f.chunks = c.chunks
		f.mu.Unlock()
		resp, body := postMessages(t, s.URL, `{"model":"m","max_tokens":64,"messages":[{"role":"user","content":"Hi"}]}`)
		if resp.StatusCode != 200 {
			t.Fatalf("%s: %d %s", c.name, resp.StatusCode, body)
		}
		var msg map[string]any
		json.Unmarshal(body, &msg)
		id, _ := msg["id"].(string)
		if !strings.HasPrefix(id, "msg_") || msg["type"] != "message" || msg["role"] != "assistant" || msg["model"] != "m" || msg["stop_sequence"] != nil {
			t.Errorf("%s: head %s", c.name, body)
		}
		for k, w := range map[string]string{"content": c.content, "stop_reason": c.stop, "usage": c.usage} {
			if !reflect.DeepEqual(msg[k], parseJSON(t, w)) {
				gb, _ := json.Marshal(msg[k])
				t.Errorf("%s: %s = %s, want %s", c.name, k, gb, w)
			}
		}
		if ext, _ := msg["stepflash"].(map[string]any); ext == nil || ext["backend"] != "fake" || ext["region"] != "global" {
			t.Errorf("%s: stepflash %v", c.name, msg["stepflash"])
		}
		if resp.Header.Get("Request-Id") == "" || resp.Header.Get("Request-Id") != resp.Header.Get("X-Request-Id") {
			t.Errorf("%s: request-id %q", c.name, resp.Header.Get("Request-Id"))
		}

		// Streamed: the same message, as events.
		resp, body = postMessages(t, s.URL, `{"model":"m","max_tokens":64,"stream":true,"messages":[{"role":"user","content":"Hi"}]}`)
		if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
			t.Fatalf("%s: stream %d %s", c.name, resp.StatusCode, body)
		}
		events := readEvents(t, string(body))
		var names []string
		joined := map[string]any{}
		var content []any
		for _, ev := range events {
			d := ev.data
			n := ev.name
			if d["type"] != ev.name {
				t.Errorf("%s: event %s has type %v", c.name, ev.name, d["type"])
			}
			switch ev.name {
			case "message_start":
				joined = d["message"].(map[string]any)
				if joined["id"] == nil || joined["id"] == id || !reflect.DeepEqual(joined["content"], []any{}) {
					t.Errorf("%s: message_start %v", c.name, joined)
				}
			case "content_block_start":
				cb := d["content_block"].(map[string]any)
				n += " " + cb["type"].(string)
				if int(d["index"].(float64)) != len(content) {
					t.Errorf("%s: block index %v, want %d", c.name, d["index"], len(content))
				}
				if cb["type"] == "tool_use" {
					cb["input"] = ""
				}
				content = append(content, cb)
			case "content_block_delta":
				delta := d["delta"].(map[string]any)
				n += " " + delta["type"].(string)
				cb := content[int(d["index"].(float64))].(map[string]any)
				switch delta["type"] {
				case "text_delta":
					cb["text"] = cb["text"].(string) + delta["text"].(string)
				case "thinking_delta":
					cb["thinking"] = cb["thinking"].(string) + delta["thinking"].(string)
				case "input_json_delta":
					cb["input"] = cb["input"].(string) + delta["partial_json"].(string)
				}
			case "message_delta":
				joined["stop_reason"] = d["delta"].(map[string]any)["stop_reason"]
				joined["usage"] = d["usage"]
			}
			names = append(names, n)
		}
		for _, cb := range content {
			cb := cb.(map[string]any)
			if in, ok := cb["input"].(string); ok {
				var v any = map[string]any{}
				json.Unmarshal([]byte(in), &v)
				cb["input"] = v
			}
		}
		if !reflect.DeepEqual(names, c.events) {
			t.Errorf("%s: events\n%q\nwant\n%q", c.name, names, c.events)
		}
		joined["content"] = content
		if content == nil {
			joined["content"] = []any{}
		}
		for k, w := range map[string]string{"content": c.content, "stop_reason": c.stop, "usage": c.usage} {
			if !reflect.DeepEqual(joined[k], parseJSON(t, w)) {
				gb, _ := json.Marshal(joined[k])
				t.Errorf("%s: streamed %s = %s, want %s", c.name, k, gb, w)
			}
		}
	}
}

type sseEvent struct {
	name string
	data map[string]any
}

func readEvents(t *testing.T, body string) []sseEvent {
	t.Helper()
	var out []sseEvent
	var ev sseEvent
	sc := bufio.NewScanner(strings.NewReader(body))
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "event: "):
			ev.name = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			if err := json.Unmarshal([]byte(strings.TrimPrefix(line, "data: ")), &ev.data); err != nil {
				t.Fatalf("data %q: %v", line, err)
			}
		case line == "":
			if ev.name != "" || ev.data != nil {
				out = append(out, ev)
			}
			ev = sseEvent{}
		}
	}
	return out
}

// TestMessagesErrors checks the status and Anthropic error object of bad
// requests and of backend failures.
func TestMessagesErrors(t *testing.T) {
	f := &fakeChat{}
	s := startServer(t, server.Config{}, nil, f.model("m"))
	msgs := `"messages":[{"role":"user","content":"Hi"}]`
	head := `{"model":"m","max_tokens":16,`
	for _, c := range []struct {
		name, body string
		status     int
		typ, msg   string
	}{
		{"invalid json", `{"model":`, 400, "invalid_request_error", "could not parse"},
		{"no max_tokens", `{"model":"m",` + msgs + `}`, 400, "invalid_request_error", "max_tokens: Field required"},
		{"no messages", `{"model":"m","max_tokens":16}`, 400, "invalid_request_error", "messages: Field required"},
		{"empty messages", head + `"messages":[]}`, 400, "invalid_request_error", "at least one message"},
		{"unknown field", head + msgs + `,"frobnicate":1}`, 400, "invalid_request_error", "frobnicate"},
		{"unknown block field", head + `"messages":[{"role":"user","content":[{"type":"text","text":"a","frob":1}]}]}`, 400, "invalid_request_error", "messages[0].content[0].frob: Extra inputs"},
		{"unknown tool field", head + msgs + `,"tools":[{"name":"a","input_schema":{"type":"object"},"frob":1}]}`, 400, "invalid_request_error", "tools[0].frob"},
		{"unknown nested tool result field", head + `"messages":[{"role":"user","content":[{"type":"tool_result","tool_use_id":"x","content":[{"type":"text","text":"a","frob":2}]}]}]}`, 400, "invalid_request_error", "messages[0].content[0].content[0].frob"},
		{"wrong type", head + `"messages":[{"role":"user","content":5}]}`, 400, "invalid_request_error", "content must be a string or an array of content blocks, but got number"},
		{"max_tokens type", `{"model":"m","max_tokens":"x",` + msgs + `}`, 400, "invalid_request_error", "max_tokens"},
		{"max_tokens zero", `{"model":"m","max_tokens":0,` + msgs + `}`, 400, "invalid_request_error", "max_tokens"},
		{"bad role", head + `"messages":[{"role":"system","content":"Hi"}]}`, 400, "invalid_request_error", "messages[0].role"},
		{"prefill", head + `"messages":[{"role":"user","content":"Hi"},{"role":"assistant","content":"The"}]}`, 400, "invalid_request_error", "final assistant message"},
		{"document block", head + `"messages":[{"role":"user","content":[{"type":"document","source":{"type":"text","data":"x"}}]}]}`, 400, "invalid_request_error", `"document"`},
		{"bad media type", head + `"messages":[{"role":"user","content":[{"type":"image","source":{"type":"base64","media_type":"image/bmp","data":"x"}}]}]}`, 400, "invalid_request_error", "media_type"},
		{"file source", head + `"messages":[{"role":"user","content":[{"type":"image","source":{"type":"file","file_id":"f"}}]}]}`, 400, "invalid_request_error", `"file"`},
		{"tool_use input not object", head + `"messages":[{"role":"user","content":"a"},{"role":"assistant","content":[{"type":"tool_use","id":"t","name":"a","input":[1]}]},{"role":"user","content":"b"}]}`, 400, "invalid_request_error", "messages[1].content[0].input"},
		{"server tool", head + msgs + `,"tools":[{"type":"web_search_20250305","name":"web_search"}]}`, 400, "invalid_request_error", "server tools"},
		{"no input_schema", head + msgs + `,"tools":[{"name":"a"}]}`, 400, "invalid_request_error", "tools[0].input_schema: Field required"},
		{"tool choice unknown", head + msgs + `,"tools":[{"name":"a","input_schema":{"type":"object"}}],"tool_choice":{"type":"tool","name":"b"}}`, 400, "invalid_request_error", `"b" is not among`},
		{"tool choice no tools", head + msgs + `,"tool_choice":{"type":"any"}}`, 400, "invalid_request_error", "at least one tool"},
		{"tool choice bad", head + msgs + `,"tool_choice":{"type":"some"}}`, 400, "invalid_request_error", "tool_choice.type"},
		{"thinking bad", head + msgs + `,"thinking":{"type":"on"}}`, 400, "invalid_request_error", "thinking.type"},
		{"thinking no budget", head + msgs + `,"thinking":{"type":"enabled"}}`, 400, "invalid_request_error", "budget_tokens: Field required"},
		{"effort bad", head + msgs + `,"output_config":{"effort":"extreme"}}`, 400, "invalid_request_error", "output_config.effort"},
		{"structured outputs", head + msgs + `,"output_config":{"format":{"type":"json_schema","schema":{}}}}`, 400, "invalid_request_error", "output_config.format"},
		{"too many stops", head + msgs + `,"stop_sequences":["a","b","c","d","e"]}`, 400, "invalid_request_error", "'stop_sequences'"},
		{"temperature", head + msgs + `,"temperature":3}`, 400, "invalid_request_error", "temperature"},
		{"tool_result without user text after assistant", head + `"messages":[{"role":"user","content":[{"type":"tool_result","tool_use_id":""}]}]}`, 400, "invalid_request_error", "messages[0].content[0].tool_use_id"},
		{"unknown model", `{"model":"claude-x","max_tokens":16,` + msgs + `}`, 404, "not_found_error", "claude-x"},
	} {
		resp, body := postMessages(t, s.URL, c.body)
		var e api.MessagesError
		if err := json.Unmarshal(body, &e); err != nil {
			t.Errorf("%s: %v: %s", c.name, err, body)
			continue
		}
		if resp.StatusCode != c.status || e.Type != "error" || e.Error.Type != c.typ || !strings.Contains(e.Error.Message, c.msg) ||
			e.RequestID == "" || e.RequestID != resp.Header.Get("X-Request-Id") {
			t.Errorf("%s: %d %s", c.name, resp.StatusCode, body)
		}
	}

	// Backend failures before the first chunk are HTTP errors.
	f.chunks = []*api.ChatCompletionChunk{firstChunk(), textChunk("a"), finishChunk("stop"), usageChunk(1, 0, 1)}
	rl := api.NewError(429, api.TypeRateLimit, "rate_limit_exceeded", "", "slow down")
	rl.RetryAfter = 7
	for _, c := range []struct {
		err    error
		status int
		typ    string
	}{
		{api.Overloaded(3), 503, "overloaded_error"},
		{api.ModelLoading(5), 503, "overloaded_error"},
		{rl, 429, "rate_limit_error"},
		{api.NewError(401, api.TypeAuthentication, "upstream_unauthorized", "", "the upstream refused the key"), 401, "authentication_error"},
		{api.NewError(502, api.TypeServer, "upstream_error", "", "every upstream failed"), 502, "api_error"},
		{api.NewError(504, api.TypeServer, "upstream_timeout", "", "timed out"), 504, "timeout_error"},
		{api.ContextLengthExceeded("messages", 4096, 5000, 0), 400, "invalid_request_error"},
		{errors.New("boom"), 500, "api_error"},
	} {
		f.mu.Lock()
		f.err, f.errAfter = c.err, 0
		f.mu.Unlock()
		for _, stream := range []bool{false, true} {
			body := head + msgs + `}`
			if stream {
				body = head + msgs + `,"stream":true}`
			}
			resp, b := postMessages(t, s.URL, body)
			var e api.MessagesError
			json.Unmarshal(b, &e)
			if resp.StatusCode != c.status || e.Type != "error" || e.Error.Type != c.typ || e.Error.Message == "" {
				t.Errorf("%v (stream %v): %d %s", c.err, stream, resp.StatusCode, b)
			}
			var ae *api.Error
			if errors.As(c.err, &ae) && ae.RetryAfter > 0 && resp.Header.Get("Retry-After") == "" {
				t.Errorf("%v: no Retry-After", c.err)
			}
		}
	}

	// After the first chunk: an error event ends the stream.
	f.mu.Lock()
	f.err, f.errAfter = api.NewError(502, api.TypeServer, "upstream_error", "", "the upstream died"), 2
	f.mu.Unlock()
	resp, b := postMessages(t, s.URL, head+msgs+`,"stream":true}`)
	events := readEvents(t, string(b))
	last := events[len(events)-1]
	if resp.StatusCode != 200 || last.name != "error" || last.data["type"] != "error" {
		t.Fatalf("mid-stream error: %d %s", resp.StatusCode, b)
	}
	if d := last.data["error"].(map[string]any); d["type"] != "api_error" || !strings.Contains(d["message"].(string), "the upstream died") {
		t.Errorf("error event %v", last.data)
	}

	// A wrong method is still a 405.
	req, _ := http.NewRequest("GET", s.URL+"/v1/messages", nil)
	r2, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	r2.Body.Close()
	if r2.StatusCode != 405 || r2.Header.Get("Allow") != "POST" {
		t.Errorf("GET: %d %q", r2.StatusCode, r2.Header.Get("Allow"))
	}
}

func anthropicClient(base string) anthropic.Client {
	return anthropic.NewClient(option.WithBaseURL(base), option.WithAPIKey("sk-test"), option.WithMaxRetries(0),
		option.WithRequestTimeout(2*time.Minute))
}

var weatherParam = anthropic.ToolUnionParam{OfTool: &anthropic.ToolParam{Name: "get_weather", Description: anthropic.String("Weather of a city"),
	InputSchema: anthropic.ToolInputSchemaParam{Properties: map[string]any{"city": map[string]any{"type": "string"}}}}}

// TestMessagesSDKTools runs the official Anthropic SDK against the local
// backend's tool-call parsing (a scripted engine writing Hermes tool
// calls): the tool_use block, the tool_result sent back, streaming.
func TestMessagesSDKTools(t *testing.T) {
	sc := &testserve.Scripted{Scripts: toolScripts()}
	s := startServer(t, server.Config{}, nil, scriptedModel(t, "m", sc))
	client := anthropicClient(s.URL)
	ctx := context.Background()
	params := anthropic.MessageNewParams{Model: "m", MaxTokens: 256,
		Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("Weather in Paris?"))},
		Tools:    []anthropic.ToolUnionParam{weatherParam}}
	msg, err := client.Messages.New(ctx, params)
	if err != nil {
		t.Fatal(err)
	}
	if msg.StopReason != anthropic.StopReasonToolUse || len(msg.Content) != 2 {
		t.Fatalf("stop %q, content %s", msg.StopReason, msg.RawJSON())
	}
	if th := msg.Content[0].AsThinking(); msg.Content[0].Type != "thinking" || th.Thinking != "The user wants weather." {
		t.Errorf("thinking block %s", msg.Content[0].RawJSON())
	}
	tu := msg.Content[1].AsToolUse()
	if tu.Name != "get_weather" || string(tu.Input) != `{"city":"Paris"}` || tu.ID == "" {
		t.Errorf("tool_use %s", msg.Content[1].RawJSON())
	}
	if !strings.Contains(sc.LastPrompt(), "get_weather") {
		t.Errorf("tools not in the prompt: %q", sc.LastPrompt())
	}
	// The result goes back as a tool_result block.
	params.Messages = append(params.Messages, msg.ToParam(), anthropic.NewUserMessage(anthropic.NewToolResultBlock(tu.ID, `{"sky": "clear"}`, false)))
	msg2, err := client.Messages.New(ctx, params)
	if err != nil {
		t.Fatal(err)
	}
	if len(msg2.Content) != 1 || msg2.Content[0].Text != "It is sunny in Paris." || msg2.StopReason != anthropic.StopReasonEndTurn {
		t.Errorf("after the tool result: %s", msg2.RawJSON())
	}
	p := sc.LastPrompt()
	if !strings.Contains(p, "<tool_response>\n{\"sky\": \"clear\"}\n</tool_response>") || !strings.Contains(p, `{"name": "get_weather", "arguments": {"city": "Paris"}}`) {
		t.Errorf("round trip prompt: %q", p)
	}

	// Streamed, joined by the SDK's accumulator: the same message.
	stream := client.Messages.NewStreaming(ctx, anthropic.MessageNewParams{Model: "m", MaxTokens: 256,
		Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("Two cities, please"))},
		Tools:    []anthropic.ToolUnionParam{weatherParam}})
	var acc anthropic.Message
	for stream.Next() {
		if err := acc.Accumulate(stream.Current()); err != nil {
			t.Fatal(err)
		}
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	if acc.StopReason != anthropic.StopReasonToolUse || len(acc.Content) != 2 {
		t.Fatalf("streamed: %s", acc.RawJSON())
	}
	for i, city := range []string{"Paris", "Rome"} {
		tu := acc.Content[i].AsToolUse()
		var in struct{ City string }
		if err := json.Unmarshal(tu.Input, &in); err != nil || tu.Name != "get_weather" || in.City != city {
			t.Errorf("streamed call %d: %s (%v)", i, acc.Content[i].RawJSON(), err)
		}
	}
	if acc.Usage.InputTokens == 0 || acc.Usage.OutputTokens != 2 {
		t.Errorf("streamed usage %s", acc.Usage.RawJSON())
	}

	// A forced tool: tool_choice {type: tool}.
	msg3, err := client.Messages.New(ctx, anthropic.MessageNewParams{Model: "m", MaxTokens: 256,
		Messages:   []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("Forced"))},
		Tools:      []anthropic.ToolUnionParam{weatherParam},
		ToolChoice: anthropic.ToolChoiceParamOfTool("get_weather")})
	if err != nil {
		t.Fatal(err)
	}
	if len(msg3.Content) != 1 || msg3.Content[0].AsToolUse().Name != "get_weather" || string(msg3.Content[0].AsToolUse().Input) != `{"city":"Oslo"}` || msg3.StopReason != anthropic.StopReasonToolUse {
		t.Errorf("forced: %s", msg3.RawJSON())
	}

	// Thinking blocks, and the SDK's error for a bad request.
	msg4, err := client.Messages.New(ctx, anthropic.MessageNewParams{Model: "m", MaxTokens: 256,
		Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("Think"))},
		Thinking: anthropic.ThinkingConfigParamOfEnabled(2048)})
	if err != nil {
		t.Fatal(err)
	}
	if len(msg4.Content) != 2 || msg4.Content[0].Thinking != "2+2 is 4" || msg4.Content[1].Text != "The answer is 4." {
		t.Errorf("thinking: %s", msg4.RawJSON())
	}
	_, err = client.Messages.New(ctx, anthropic.MessageNewParams{Model: "nope", MaxTokens: 16,
		Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("x"))}})
	var ae *anthropic.Error
	if !errors.As(err, &ae) || ae.StatusCode != 404 || ae.Type() != "not_found_error" || !strings.Contains(ae.Message, "nope") || ae.RequestID == "" {
		t.Errorf("unknown model: %v", err)
	}
}

// TestMessagesErrorsBeforeHandler: the errors of the layers in front of the
// handler (a key check here; the guard) come back as Anthropic's error
// object on /v1/messages paths, and untouched elsewhere.
func TestMessagesErrorsBeforeHandler(t *testing.T) {
	f := &fakeChat{chunks: []*api.ChatCompletionChunk{firstChunk(), textChunk("a"), finishChunk("stop"), usageChunk(1, 0, 1)}}
	keyCheck := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Header.Get("X-Api-Key") != "sk-test" {
				w.Header().Set("WWW-Authenticate", `Bearer realm="stepflash"`)
				w.Header().Set("Retry-After", "1")
				b, _ := json.Marshal(api.ErrorResponse{Error: api.NewError(401, api.TypeAuthentication, "invalid_api_key", "", "Incorrect API key provided.")})
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(401)
				w.Write(b)
				return
			}
			next.ServeHTTP(w, r)
		})
	}
	s := startServer(t, server.Config{Middleware: []server.Middleware{keyCheck}}, nil, f.model("m"))
	do := func(method, path, key, body string) (*http.Response, []byte) {
		req, _ := http.NewRequest(method, s.URL+path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		if key != "" {
			req.Header.Set("X-Api-Key", key)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp, b
	}
	body := `{"model":"m","max_tokens":8,"messages":[{"role":"user","content":"Hi"}]}`
	for _, c := range []struct {
		method, path, key string
		status            int
		typ, msg          string
	}{
		{"POST", "/v1/messages", "sk-wrong", 401, "authentication_error", "Incorrect API key"},
		{"POST", "/v1/messages/batches", "sk-test", 404, "not_found_error", "/v1/messages/batches"},
		{"POST", "/v1/messages/count_tokens", "sk-test", 400, "invalid_request_error", "does not serve tokenization"},
		{"GET", "/v1/messages", "sk-test", 405, "invalid_request_error", "not allowed"},
	} {
		resp, b := do(c.method, c.path, c.key, body)
		var e api.MessagesError
		if json.Unmarshal(b, &e) != nil || resp.StatusCode != c.status || e.Type != "error" || e.Error.Type != c.typ ||
			!strings.Contains(e.Error.Message, c.msg) || e.RequestID != resp.Header.Get("X-Request-Id") || e.RequestID == "" {
			t.Errorf("%s %s: %d %s", c.method, c.path, resp.StatusCode, b)
		}
		if c.status == 401 && (resp.Header.Get("WWW-Authenticate") == "" || resp.Header.Get("Retry-After") != "1") {
			t.Errorf("401 headers %v", resp.Header)
		}
		if cl := resp.Header.Get("Content-Length"); cl != "" && cl != strconv.Itoa(len(b)) {
			t.Errorf("%s %s: Content-Length %s for %d bytes", c.method, c.path, cl, len(b))
		}
	}
	// The key accepted: the message; the stream passes through.
	if resp, b := do("POST", "/v1/messages", "sk-test", body); resp.StatusCode != 200 || !strings.Contains(string(b), `"type":"message"`) {
		t.Errorf("with the key: %d %s", resp.StatusCode, b)
	}
	if resp, b := do("POST", "/v1/messages", "sk-test", strings.TrimSuffix(body, "}")+`,"stream":true}`); resp.StatusCode != 200 || !strings.Contains(string(b), "event: message_stop") {
		t.Errorf("stream with the key: %d %s", resp.StatusCode, b)
	}
	// Other paths keep the OpenAI error object.
	resp, b := do("POST", "/v1/chat/completions", "sk-wrong", `{}`)
	var oe api.ErrorResponse
	if json.Unmarshal(b, &oe) != nil || resp.StatusCode != 401 || oe.Error == nil || oe.Error.Type != "authentication_error" || strings.Contains(string(b), `"type":"error"`) {
		t.Errorf("chat completions: %d %s", resp.StatusCode, b)
	}
}

// TestStopSequenceReported: a stop string of the request that ends the
// reply is named — vLLM's stop_reason on chat completions (and legacy
// completions), Anthropic's stop_reason "stop_sequence" with stop_sequence
// on Messages, streamed and not; the template's own end-of-turn strings
// and a reply that ends otherwise name none.
func TestStopSequenceReported(t *testing.T) {
	sc := &testserve.Scripted{Scripts: []testserve.Script{{Key: "Count", Pieces: []string{"one, ", "two, ", "three, ", "four"}}}}
	s := startServer(t, server.Config{}, nil, scriptedModel(t, "m", sc))
	ctx := context.Background()
	comp, err := s.Client.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "m", Stop: openai.ChatCompletionNewParamsStopUnion{OfStringArray: []string{"nine", "three"}},
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Count")}})
	if err != nil {
		t.Fatal(err)
	}
	if c := comp.Choices[0]; c.Message.Content != "one, two," || c.FinishReason != "stop" || c.JSON.ExtraFields["stop_reason"].Raw() != `"three"` {
		t.Errorf("chat: %s", comp.RawJSON())
	}
	comp, err = s.Client.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "m", Stop: openai.ChatCompletionNewParamsStopUnion{OfString: openai.String("nine")},
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Count")}})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(comp.RawJSON(), "stop_reason") {
		t.Errorf("no stop string matched, yet: %s", comp.RawJSON())
	}
	tc, err := s.Client.Completions.New(ctx, openai.CompletionNewParams{Model: "m", Prompt: openai.CompletionNewParamsPromptUnion{OfString: openai.String("Count")},
		Stop: openai.CompletionNewParamsStopUnion{OfString: openai.String("two")}})
	if err != nil {
		t.Fatal(err)
	}
	if c := tc.Choices[0]; c.Text != "one, " || c.JSON.ExtraFields["stop_reason"].Raw() != `"two"` {
		t.Errorf("completion: %s", tc.RawJSON())
	}

	client := anthropicClient(s.URL)
	params := anthropic.MessageNewParams{Model: "m", MaxTokens: 64, StopSequences: []string{"three"},
		Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("Count"))}}
	msg, err := client.Messages.New(ctx, params)
	if err != nil {
		t.Fatal(err)
	}
	if msg.StopReason != anthropic.StopReasonStopSequence || msg.StopSequence != "three" || len(msg.Content) != 1 || msg.Content[0].Text != "one, two," {
		t.Errorf("message: %s", msg.RawJSON())
	}
	stream := client.Messages.NewStreaming(ctx, params)
	var acc anthropic.Message
	for stream.Next() {
		if err := acc.Accumulate(stream.Current()); err != nil {
			t.Fatal(err)
		}
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	if acc.StopReason != anthropic.StopReasonStopSequence || acc.StopSequence != "three" {
		t.Errorf("streamed: stop_reason %q, stop_sequence %q", acc.StopReason, acc.StopSequence)
	}
	params.StopSequences = nil
	msg, err = client.Messages.New(ctx, params)
	if err != nil {
		t.Fatal(err)
	}
	if msg.StopReason != anthropic.StopReasonEndTurn || msg.StopSequence != "" {
		t.Errorf("without stop sequences: %s", msg.RawJSON())
	}
}
