package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/responses"
	"github.com/stepflash/stepflash/api"
	"github.com/stepflash/stepflash/backend"
	"github.com/stepflash/stepflash/engine"
	"github.com/stepflash/stepflash/internal/testserve"
	"github.com/stepflash/stepflash/server"
)

func postResponses(t *testing.T, base, body string) (*http.Response, []byte) {
	t.Helper()
	req, _ := http.NewRequest("POST", base+"/v1/responses", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, b
}

// TestResponsesRequestTranslation checks the chat request each Responses
// request becomes.
func TestResponsesRequestTranslation(t *testing.T) {
	f := &fakeChat{chunks: []*api.ChatCompletionChunk{firstChunk(), textChunk("hi"), finishChunk("stop"), usageChunk(5, 0, 1)}}
	s := startServer(t, server.Config{}, nil, f.model("m"))
	head := `{"model":"m",`
	for _, c := range []struct {
		name, body string
		// want are fields of the chat request, as JSON.
		want map[string]string
	}{
		{"string input", head + `"input":"Hi","max_output_tokens":64,"temperature":0.5,"top_p":0.9,"user":"u1","metadata":{"k":"v"},"store":true,"truncation":"auto","include":["reasoning.encrypted_content"],"prompt_cache_key":"pk","safety_identifier":"sid","service_tier":"auto"}`,
			map[string]string{
				"messages":              `[{"role":"user","content":"Hi"}]`,
				"max_completion_tokens": `64`, "max_tokens": `null`,
				"temperature": `0.5`, "top_p": `0.9`, "user": `"u1"`, "metadata": `{"k":"v"}`,
				"store": `null`, "stream": `false`, "reasoning_effort": `null`, "tools": `null`, "tool_choice": `null`, "response_format": `null`,
				"prompt_cache_key": `"pk"`, "safety_identifier": `"sid"`, "service_tier": `"auto"`,
			}},
		{"instructions and items", head + `"instructions":"Be brief.","input":[
			{"role":"developer","content":"Answer in French."},
			{"type":"message","role":"user","content":[{"type":"input_text","text":"What is"},{"type":"input_text","text":"this?"},{"type":"input_image","image_url":"data:image/png;base64,iVBORw0K","detail":"low"},{"type":"input_image","image_url":"https://example.com/a.jpg"},{"type":"input_file","file_data":"data:image/png;base64,AAAA"}]},
			{"role":"system","content":[{"type":"input_text","text":"Sys"}]}]}`,
			map[string]string{"messages": `[{"role":"system","content":"Be brief."},{"role":"developer","content":"Answer in French."},
				{"role":"user","content":[{"type":"text","text":"What is"},{"type":"text","text":"this?"},{"type":"image_url","text":"","image_url":{"detail":"low","url":"data:image/png;base64,iVBORw0K"}},{"type":"image_url","text":"","image_url":{"url":"https://example.com/a.jpg"}},{"type":"image_url","text":"","image_url":{"url":"data:image/png;base64,AAAA"}}]},
				{"role":"system","content":[{"type":"text","text":"Sys"}]}]`}},
		{"tool round trip", head + `"input":[{"role":"user","content":"Weather?"},
			{"type":"reasoning","id":"rs_1","summary":[],"content":[{"type":"reasoning_text","text":"Need a tool."}],"encrypted_content":null,"status":"completed"},
			{"type":"message","id":"msg_1","role":"assistant","status":"completed","content":[{"type":"output_text","text":"Checking.","annotations":[],"logprobs":[]}]},
			{"type":"function_call","id":"fc_1","call_id":"call_1","name":"get_weather","arguments":"{\"city\":\"Paris\"}","status":"completed"},
			{"type":"function_call","call_id":"call_2","name":"get_weather","arguments":"{}"},
			{"type":"function_call_output","call_id":"call_1","output":"sunny"},
			{"type":"function_call_output","call_id":"call_2","output":[{"type":"input_text","text":"no"},{"type":"input_text","text":"city"}]},
			{"type":"item_reference","id":"rs_2"},
			{"type":"function_call","call_id":"call_3","name":"get_weather","arguments":"{\"city\":\"Rome\"}"},
			{"type":"function_call_output","call_id":"call_3","output":""},
			{"role":"assistant","content":"Done."},
			{"role":"user","content":"Thanks"}]}`,
			map[string]string{"messages": `[{"role":"user","content":"Weather?"},
			{"role":"assistant","content":"Checking.","reasoning_content":"Need a tool.","tool_calls":[{"id":"call_1","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}},{"id":"call_2","type":"function","function":{"name":"get_weather","arguments":"{}"}}]},
			{"role":"tool","content":"sunny","tool_call_id":"call_1"},
			{"role":"tool","content":"no\ncity","tool_call_id":"call_2"},
			{"role":"assistant","content":null,"tool_calls":[{"id":"call_3","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Rome\"}"}}]},
			{"role":"tool","content":"","tool_call_id":"call_3"},
			{"role":"assistant","content":"Done."},
			{"role":"user","content":"Thanks"}]`}},
		{"tools", head + `"input":"Hi","tools":[{"type":"function","name":"get_weather","description":"Weather","parameters":{"type":"object","properties":{"city":{"type":"string"}}},"strict":true},{"type":"function","name":"noop"}],"tool_choice":"required","parallel_tool_calls":false}`,
			map[string]string{
				"tools":       `[{"type":"function","function":{"name":"get_weather","description":"Weather","parameters":{"type":"object","properties":{"city":{"type":"string"}}},"strict":true}},{"type":"function","function":{"name":"noop"}}]`,
				"tool_choice": `{"Mode":"required","Function":""}`, "parallel_tool_calls": `false`,
			}},
		{"named tool", head + `"input":"Hi","tools":[{"type":"function","name":"a","parameters":{"type":"object"}}],"tool_choice":{"type":"function","name":"a"}}`,
			map[string]string{"tool_choice": `{"Mode":"function","Function":"a"}`}},
		{"tool choice none", head + `"input":"Hi","tools":[{"type":"function","name":"a"}],"tool_choice":"none"}`,
			map[string]string{"tool_choice": `{"Mode":"none","Function":""}`}},
		{"effort", head + `"input":"Hi","reasoning":{"effort":"minimal","summary":"auto"}}`,
			map[string]string{"reasoning_effort": `"minimal"`}},
		{"effort null", head + `"input":"Hi","reasoning":{"effort":null}}`,
			map[string]string{"reasoning_effort": `null`}},
		{"json schema", head + `"input":"Hi","text":{"format":{"type":"json_schema","name":"w","schema":{"type":"object","properties":{"a":{"type":"integer"}}},"strict":true},"verbosity":"medium"}}`,
			map[string]string{"response_format": `{"type":"json_schema","json_schema":{"name":"w","schema":{"type":"object","properties":{"a":{"type":"integer"}}},"strict":true}}`}},
		{"json object", head + `"input":"Hi","text":{"format":{"type":"json_object"}}}`,
			map[string]string{"response_format": `{"type":"json_object"}`}},
		{"text format", head + `"input":"Hi","text":{"format":{"type":"text"}}}`,
			map[string]string{"response_format": `null`}},
		{"extensions", head + `"input":"Hi","seed":7,"top_k":5,"min_p":0.1,"advisor":"off","stream":true,"stream_options":{"include_obfuscation":false}}`,
			map[string]string{"seed": `7`, "top_k": `5`, "min_p": `0.1`, "advisor": `"off"`, "stream": `true`, "stream_options": `{"include_usage":false,"include_obfuscation":false}`}},
	} {
		resp, body := postResponses(t, s.URL, c.body)
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

// joinedResponse is a response rebuilt from its stream events, checked on
// the way: event names equal their data's type, sequence numbers count
// from 0, indices agree, deltas add up to the done events' text.
func joinedResponse(t *testing.T, name string, body []byte) (names []string, final map[string]any) {
	t.Helper()
	if bytes.Contains(body, []byte("[DONE]")) {
		t.Errorf("%s: the stream has a [DONE] line", name)
	}
	events := readEvents(t, string(body))
	output := []map[string]any{}
	for i, ev := range events {
		d := ev.data
		if d["type"] != ev.name {
			t.Errorf("%s: event %s has type %v", name, ev.name, d["type"])
		}
		if seq, _ := d["sequence_number"].(float64); int(seq) != i {
			t.Errorf("%s: event %d (%s) has sequence_number %v", name, i, ev.name, d["sequence_number"])
		}
		n := ev.name
		idx := -1
		if oi, ok := d["output_index"].(float64); ok {
			idx = int(oi)
		}
		switch ev.name {
		case "response.created", "response.in_progress":
			r := d["response"].(map[string]any)
			if r["status"] != "in_progress" || len(r["output"].([]any)) != 0 {
				t.Errorf("%s: %s %v", name, ev.name, r)
			}
		case "response.completed", "response.incomplete", "response.failed":
			final = d["response"].(map[string]any)
		case "response.output_item.added":
			item := d["item"].(map[string]any)
			n += " " + item["type"].(string)
			if idx != len(output) || item["status"] != "in_progress" {
				t.Errorf("%s: item added at %d, status %v, want index %d", name, idx, item["status"], len(output))
			}
			output = append(output, item)
		case "response.content_part.added":
			part := d["part"].(map[string]any)
			n += " " + part["type"].(string)
			output[idx]["content"] = append(output[idx]["content"].([]any), part)
		case "response.output_text.delta", "response.reasoning_text.delta":
			part := output[idx]["content"].([]any)[int(d["content_index"].(float64))].(map[string]any)
			part["text"] = part["text"].(string) + d["delta"].(string)
			if d["item_id"] != output[idx]["id"] {
				t.Errorf("%s: %s item_id %v", name, ev.name, d["item_id"])
			}
		case "response.output_text.done", "response.reasoning_text.done":
			part := output[idx]["content"].([]any)[int(d["content_index"].(float64))].(map[string]any)
			if d["text"] != part["text"] {
				t.Errorf("%s: %s text %q, the deltas made %q", name, ev.name, d["text"], part["text"])
			}
		case "response.function_call_arguments.delta":
			output[idx]["arguments"] = output[idx]["arguments"].(string) + d["delta"].(string)
		case "response.function_call_arguments.done":
			if d["arguments"] != output[idx]["arguments"] {
				t.Errorf("%s: arguments %q, the deltas made %q", name, d["arguments"], output[idx]["arguments"])
			}
		case "response.output_item.done":
			item := d["item"].(map[string]any)
			// The done item is the added one with its deltas applied.
			output[idx]["status"] = item["status"]
			if !reflect.DeepEqual(jsonOf(t, output[idx]), jsonOf(t, item)) {
				t.Errorf("%s: item done %v, the events made %v", name, item, output[idx])
			}
		}
		names = append(names, n)
	}
	if final != nil && !reflect.DeepEqual(jsonOf(t, final["output"]), jsonOf(t, output)) && final["status"] != "failed" {
		t.Errorf("%s: final output %v, the events made %v", name, final["output"], output)
	}
	return names, final
}

// TestResponsesOutput checks the Response, and the stream events, each
// backend stream becomes.
func TestResponsesOutput(t *testing.T) {
	f := &fakeChat{}
	s := startServer(t, server.Config{}, nil, f.model("m"))
	for _, c := range []struct {
		name   string
		chunks []*api.ChatCompletionChunk
		// output and the rest of the response, as JSON.
		output, status, incomplete, usage string
		events                            []string
	}{
		{"text", []*api.ChatCompletionChunk{firstChunk(), textChunk("4"), textChunk("6"), finishChunk("stop"), usageChunk(20, 16, 2)},
			`[{"type":"message","status":"completed","role":"assistant","content":[{"type":"output_text","text":"46","annotations":[],"logprobs":[]}]}]`,
			`"completed"`, `null`,
			`{"input_tokens":20,"input_tokens_details":{"cached_tokens":16},"output_tokens":2,"output_tokens_details":{"reasoning_tokens":0},"total_tokens":22,"cached_tokens":16,"cost":0,"cost_details":{"input_miss":0,"input_hit":0,"output":0,"advisor":0}}`,
			[]string{"response.created", "response.in_progress", "response.output_item.added message", "response.content_part.added output_text",
				"response.output_text.delta", "response.output_text.delta", "response.output_text.done", "response.content_part.done", "response.output_item.done", "response.completed"}},
		{"reasoning and text", []*api.ChatCompletionChunk{firstChunk(), reasoningChunk("12+34"), reasoningChunk("=46"), textChunk("46"), finishChunk("stop"), usageChunk(10, 0, 5)},
			`[{"type":"reasoning","status":"completed","summary":[],"content":[{"type":"reasoning_text","text":"12+34=46"}],"encrypted_content":null},
			  {"type":"message","status":"completed","role":"assistant","content":[{"type":"output_text","text":"46","annotations":[],"logprobs":[]}]}]`,
			`"completed"`, `null`, "",
			[]string{"response.created", "response.in_progress", "response.output_item.added reasoning", "response.content_part.added reasoning_text",
				"response.reasoning_text.delta", "response.reasoning_text.delta", "response.reasoning_text.done", "response.content_part.done", "response.output_item.done",
				"response.output_item.added message", "response.content_part.added output_text", "response.output_text.delta", "response.output_text.done",
				"response.content_part.done", "response.output_item.done", "response.completed"}},
		{"tool calls", []*api.ChatCompletionChunk{firstChunk(), textChunk("Let me check."), toolChunk(0, "call_1", "get_weather", ""), toolChunk(0, "", "", `{"city": `), toolChunk(0, "", "", `"Paris"}`),
			toolChunk(1, "call_2", "get_weather", `{"city": "Rome"}`), finishChunk("tool_calls"), usageChunk(30, 0, 20)},
			`[{"type":"message","status":"completed","role":"assistant","content":[{"type":"output_text","text":"Let me check.","annotations":[],"logprobs":[]}]},
			  {"type":"function_call","status":"completed","call_id":"call_1","name":"get_weather","arguments":"{\"city\": \"Paris\"}"},
			  {"type":"function_call","status":"completed","call_id":"call_2","name":"get_weather","arguments":"{\"city\": \"Rome\"}"}]`,
			`"completed"`, `null`, "",
			[]string{"response.created", "response.in_progress", "response.output_item.added message", "response.content_part.added output_text",
				"response.output_text.delta", "response.output_text.done", "response.content_part.done", "response.output_item.done",
				"response.output_item.added function_call", "response.function_call_arguments.delta", "response.function_call_arguments.delta",
				"response.function_call_arguments.done", "response.output_item.done",
				"response.output_item.added function_call", "response.function_call_arguments.delta", "response.function_call_arguments.done", "response.output_item.done",
				"response.completed"}},
		{"cut", []*api.ChatCompletionChunk{firstChunk(), textChunk("The answer"), finishChunk("length"), usageChunk(3, 0, 8)},
			`[{"type":"message","status":"incomplete","role":"assistant","content":[{"type":"output_text","text":"The answer","annotations":[],"logprobs":[]}]}]`,
			`"incomplete"`, `{"reason":"max_output_tokens"}`, "",
			[]string{"response.created", "response.in_progress", "response.output_item.added message", "response.content_part.added output_text",
				"response.output_text.delta", "response.output_text.done", "response.content_part.done", "response.output_item.done", "response.incomplete"}},
		{"cut tool call", []*api.ChatCompletionChunk{firstChunk(), toolChunk(0, "call_1", "f", `{"a": [1,`), finishChunk("length"), usageChunk(3, 0, 8)},
			`[{"type":"function_call","status":"incomplete","call_id":"call_1","name":"f","arguments":"{\"a\": [1,"}]`,
			`"incomplete"`, `{"reason":"max_output_tokens"}`, "",
			[]string{"response.created", "response.in_progress", "response.output_item.added function_call", "response.function_call_arguments.delta",
				"response.function_call_arguments.done", "response.output_item.done", "response.incomplete"}},
		{"empty", []*api.ChatCompletionChunk{firstChunk(), finishChunk("stop"), usageChunk(3, 0, 0)},
			`[]`, `"completed"`, `null`, "",
			[]string{"response.created", "response.in_progress", "response.completed"}},
	} {
		f.mu.Lock()
		f.chunks = c.chunks
		f.mu.Unlock()
		body := `{"model":"m","input":"Hi","instructions":"Be brief.","max_output_tokens":64,"temperature":0.2,"metadata":{"k":"v"},"text":{"format":{"type":"json_object"}}}`
		resp, b := postResponses(t, s.URL, body)
		if resp.StatusCode != 200 {
			t.Fatalf("%s: %d %s", c.name, resp.StatusCode, b)
		}
		var r map[string]any
		json.Unmarshal(b, &r)
		check := func(how string, r map[string]any) {
			id, _ := r["id"].(string)
			if !strings.HasPrefix(id, "resp_") || r["object"] != "response" || r["model"] != "m" || r["store"] != false || r["error"] != nil ||
				r["instructions"] != "Be brief." || r["max_output_tokens"] != 64.0 || r["temperature"] != 0.2 || r["truncation"] != "disabled" ||
				r["tool_choice"] != "auto" || r["parallel_tool_calls"] != true || r["previous_response_id"] != nil {
				t.Errorf("%s %s: head %v", c.name, how, r)
			}
			if ca, _ := r["created_at"].(float64); ca == 0 {
				t.Errorf("%s %s: created_at %v", c.name, how, r["created_at"])
			}
			if (r["completed_at"] != nil) != (r["status"] == "completed") {
				t.Errorf("%s %s: completed_at %v with status %v", c.name, how, r["completed_at"], r["status"])
			}
			for k, w := range map[string]string{"status": c.status, "incomplete_details": c.incomplete, "usage": c.usage,
				"metadata": `{"k":"v"}`, "text": `{"format":{"type":"json_object"},"verbosity":"medium"}`, "reasoning": `{"effort":"medium","summary":null}`, "tools": `[]`} {
				if w == "" {
					continue
				}
				if !reflect.DeepEqual(r[k], parseJSON(t, w)) {
					gb, _ := json.Marshal(r[k])
					t.Errorf("%s %s: %s = %s, want %s", c.name, how, k, gb, w)
				}
			}
			// The output without its ids, which are checked apart.
			out, _ := r["output"].([]any)
			prefix := map[string]string{"message": "msg_", "reasoning": "rs_", "function_call": "fc_"}
			for _, it := range out {
				it := it.(map[string]any)
				if id, _ := it["id"].(string); !strings.HasPrefix(id, prefix[it["type"].(string)]) || len(id) < 10 {
					t.Errorf("%s %s: item id %q", c.name, how, id)
				}
				delete(it, "id")
			}
			if !reflect.DeepEqual(jsonOf(t, out), parseJSON(t, c.output)) {
				gb, _ := json.Marshal(out)
				t.Errorf("%s %s: output\n%s\nwant\n%s", c.name, how, gb, c.output)
			}
			if ext, _ := r["stepflash"].(map[string]any); ext == nil || ext["backend"] != "fake" || ext["region"] != "global" {
				t.Errorf("%s %s: stepflash %v", c.name, how, r["stepflash"])
			}
		}
		check("plain", r)

		// Streamed: the same response, as events.
		resp, b = postResponses(t, s.URL, strings.TrimSuffix(body, "}")+`,"stream":true}`)
		if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
			t.Fatalf("%s: stream %d %s", c.name, resp.StatusCode, b)
		}
		names, final := joinedResponse(t, c.name, b)
		if !reflect.DeepEqual(names, c.events) {
			t.Errorf("%s: events\n%q\nwant\n%q", c.name, names, c.events)
		}
		if final == nil {
			t.Fatalf("%s: no final event", c.name)
		}
		check("streamed", final)
	}
}

// TestResponsesErrors checks the status, param and message of bad
// requests, and of backend failures before and after the stream began.
func TestResponsesErrors(t *testing.T) {
	f := &fakeChat{chunks: []*api.ChatCompletionChunk{firstChunk(), textChunk("a"), finishChunk("stop"), usageChunk(1, 0, 1)}}
	s := startServer(t, server.Config{}, nil, f.model("m"))
	head := `{"model":"m",`
	in := `"input":"Hi"`
	for _, c := range []struct {
		name, body  string
		status      int
		code, param string
		msg         string
	}{
		{"invalid json", `{"model":`, 400, "invalid_json", "", "parse"},
		{"no input", `{"model":"m"}`, 400, "missing_required_parameter", "input", "'input'"},
		{"input number", head + `"input":5}`, 400, "invalid_type", "input", "a string or an array of input items, but got a number"},
		{"empty input", head + `"input":[]}`, 400, "invalid_value", "input", "empty"},
		{"unknown field", head + in + `,"frobnicate":1}`, 400, "unsupported_parameter", "frobnicate", "frobnicate"},
		{"unknown item field", head + `"input":[{"role":"user","content":"a","frob":1}]}`, 400, "unsupported_parameter", "input[0].frob", "input[0].frob"},
		{"unknown part field", head + `"input":[{"role":"user","content":[{"type":"input_text","text":"a","frob":1}]}]}`, 400, "unsupported_parameter", "input[0].content[0].frob", "input[0].content[0].frob"},
		{"item not object", head + `"input":["hi"]}`, 400, "invalid_type", "input[0]", "expected an object, but got a string"},
		{"item type", head + `"input":[{"type":"web_search_call","id":"x"}]}`, 400, "unsupported_parameter", "input[0].type", `"web_search_call"`},
		{"no type or role", head + `"input":[{"content":"x"}]}`, 400, "missing_required_parameter", "input[0].type", "input[0].type"},
		{"bad role", head + `"input":[{"role":"tool","content":"x"}]}`, 400, "invalid_value", "input[0].role", `"tool"`},
		{"content type", head + `"input":[{"role":"user","content":5}]}`, 400, "invalid_type", "input[0].content", "got a number"},
		{"no content", head + `"input":[{"role":"user"}]}`, 400, "missing_required_parameter", "input[0].content", "input[0].content"},
		{"text type", head + `"input":[{"role":"user","content":[{"type":"input_text","text":5}]}]}`, 400, "invalid_type", "input[0].content[0].text", "a string"},
		{"no text", head + `"input":[{"role":"user","content":[{"type":"input_text"}]}]}`, 400, "missing_required_parameter", "input[0].content[0].text", "text"},
		{"part type", head + `"input":[{"role":"user","content":[{"type":"input_audio"}]}]}`, 400, "unsupported_parameter", "input[0].content[0].type", `"input_audio"`},
		{"image file id", head + `"input":[{"role":"user","content":"a"},{"role":"user","content":[{"type":"input_image","file_id":"file-1"}]}]}`, 400, "unsupported_parameter", "input[1].content[0].file_id", "Files API"},
		{"image no url", head + `"input":[{"role":"user","content":[{"type":"input_image"}]}]}`, 400, "missing_required_parameter", "input[0].content[0].image_url", "image_url"},
		{"image detail", head + `"input":[{"role":"user","content":[{"type":"input_image","image_url":"https://x/a.png","detail":"max"}]}]}`, 400, "invalid_value", "input[0].content[0].detail", `"max"`},
		{"pdf", head + `"input":[{"role":"user","content":[{"type":"input_file","file_data":"data:application/pdf;base64,AAAA"}]}]}`, 400, "unsupported_parameter", "input[0].content[0]", "input_file"},
		{"assistant part", head + `"input":[{"role":"assistant","content":[{"type":"input_image","image_url":"x"}]},{"role":"user","content":"a"}]}`, 400, "unsupported_parameter", "input[0].content[0].type", "assistant"},
		{"call no call_id", head + `"input":[{"type":"function_call","name":"f","arguments":"{}"}]}`, 400, "missing_required_parameter", "input[0].call_id", "call_id"},
		{"call no arguments", head + `"input":[{"type":"function_call","call_id":"c","name":"f"}]}`, 400, "missing_required_parameter", "input[0].arguments", "arguments"},
		{"output no call_id", head + `"input":[{"type":"function_call_output","output":"x"}]}`, 400, "missing_required_parameter", "input[0].call_id", "call_id"},
		{"output image", head + `"input":[{"type":"function_call_output","call_id":"c","output":[{"type":"input_image","image_url":"x"}]}]}`, 400, "unsupported_parameter", "input[0].output[0].type", "input_image"},
		{"item reference", head + `"input":[{"type":"item_reference","id":"msg_1"}]}`, 400, "unsupported_parameter", "input[0]", "not store"},
		{"reasoning part", head + `"input":[{"type":"reasoning","id":"rs_1","summary":[{"type":"output_text","text":"x"}]},{"role":"user","content":"a"}]}`, 400, "invalid_value", "input[0].summary[0].type", "summary_text"},
		{"previous_response_id", head + in + `,"previous_response_id":"resp_123"}`, 400, "unsupported_parameter", "previous_response_id", "does not store responses"},
		{"background", head + in + `,"background":true}`, 400, "unsupported_parameter", "background", "background"},
		{"conversation", head + in + `,"conversation":"conv_1"}`, 400, "unsupported_parameter", "conversation", "conversation"},
		{"prompt", head + in + `,"prompt":{"id":"p"}}`, 400, "unsupported_parameter", "prompt", "prompt"},
		{"top_logprobs", head + in + `,"top_logprobs":3}`, 400, "unsupported_parameter", "top_logprobs", "top_logprobs"},
		{"max_tool_calls", head + in + `,"max_tool_calls":3}`, 400, "unsupported_parameter", "max_tool_calls", "max_tool_calls"},
		{"include", head + in + `,"include":["reasoning.encrypted_content","message.output_text.logprobs"]}`, 400, "unsupported_parameter", "include[1]", "message.output_text.logprobs"},
		{"truncation", head + in + `,"truncation":"middle"}`, 400, "invalid_value", "truncation", `"middle"`},
		{"verbosity", head + in + `,"text":{"verbosity":"low"}}`, 400, "unsupported_parameter", "text.verbosity", `"low"`},
		{"format type", head + in + `,"text":{"format":{"type":"yaml"}}}`, 400, "invalid_value", "text.format.type", `"yaml"`},
		{"format key", head + in + `,"text":{"format":{"type":"json_schema","name":"x","schema":{},"frob":1}}}`, 400, "unsupported_parameter", "text.format.frob", "text.format.frob"},
		{"schema name", head + in + `,"text":{"format":{"type":"json_schema","schema":{"type":"object"}}}}`, 400, "missing_required_parameter", "text.format.name", "text.format.name"},
		{"schema not object", head + in + `,"text":{"format":{"type":"json_schema","name":"x","schema":[1]}}}`, 400, "invalid_value", "text.format.schema", "text.format.schema"},
		{"reasoning key", head + in + `,"reasoning":{"effort":"low","budget":5}}`, 400, "unsupported_parameter", "reasoning.budget", "reasoning.budget"},
		{"effort", head + in + `,"reasoning":{"effort":"extreme"}}`, 400, "invalid_reasoning_effort", "reasoning.effort", "extreme"},
		{"summary", head + in + `,"reasoning":{"summary":"long"}}`, 400, "invalid_value", "reasoning.summary", `"long"`},
		{"hosted tool", head + in + `,"tools":[{"type":"web_search"}]}`, 400, "unsupported_parameter", "tools[0].type", `"web_search"`},
		{"tool no name", head + in + `,"tools":[{"type":"function","parameters":{}}]}`, 400, "missing_required_parameter", "tools[0].name", "tools[0].name"},
		{"nested tool", head + in + `,"tools":[{"type":"function","function":{"name":"a"}}]}`, 400, "unsupported_parameter", "tools[0].function", "tools[0].function"},
		{"tool parameters", head + in + `,"tools":[{"type":"function","name":"a","parameters":[1]}]}`, 400, "invalid_type", "tools[0].parameters", "tools[0].parameters"},
		{"tool choice unknown", head + in + `,"tools":[{"type":"function","name":"a"}],"tool_choice":{"type":"function","name":"b"}}`, 400, "invalid_value", "tool_choice", `"b"`},
		{"tool choice no tools", head + in + `,"tool_choice":"required"}`, 400, "invalid_value", "tool_choice", "at least one tool"},
		{"tool choice mode", head + in + `,"tool_choice":"any"}`, 400, "invalid_value", "tool_choice", `"any"`},
		{"tool choice hosted", head + in + `,"tool_choice":{"type":"file_search"}}`, 400, "unsupported_parameter", "tool_choice.type", `"file_search"`},
		{"tool choice no name", head + in + `,"tools":[{"type":"function","name":"a"}],"tool_choice":{"type":"function"}}`, 400, "missing_required_parameter", "tool_choice.name", "tool_choice.name"},
		{"max_output_tokens", head + in + `,"max_output_tokens":0}`, 400, "invalid_value", "max_output_tokens", "'max_output_tokens'"},
		{"temperature", head + in + `,"temperature":3}`, 400, "invalid_value", "temperature", "temperature"},
		{"stream_options without stream", head + in + `,"stream_options":{"include_obfuscation":false}}`, 400, "invalid_value", "stream_options", "stream"},
		{"unknown model", `{"model":"gpt-x",` + in + `}`, 404, "model_not_found", "model", "gpt-x"},
	} {
		resp, body := postResponses(t, s.URL, c.body)
		var e api.ErrorResponse
		if err := json.Unmarshal(body, &e); err != nil || e.Error == nil {
			t.Errorf("%s: %v: %s", c.name, err, body)
			continue
		}
		if resp.StatusCode != c.status || e.Error.CodeString() != c.code || e.Error.ParamString() != c.param || !strings.Contains(e.Error.Message, c.msg) {
			t.Errorf("%s: %d %s", c.name, resp.StatusCode, body)
		}
		if strings.Contains(e.Error.Message, "messages[") || strings.Contains(e.Error.Message, "response_format") || strings.Contains(e.Error.Message, "max_completion_tokens") {
			t.Errorf("%s: the message names a chat field: %s", c.name, e.Error.Message)
		}
	}

	// Backend failures before the first chunk are HTTP errors.
	for _, c := range []struct {
		err    error
		status int
		code   string
	}{
		{api.Overloaded(3), 503, "overloaded"},
		{api.ContextLengthExceeded("messages", 4096, 5000, 0), 400, "context_length_exceeded"},
		{errors.New("boom"), 500, "internal_error"},
	} {
		f.mu.Lock()
		f.err, f.errAfter = c.err, 0
		f.mu.Unlock()
		for _, stream := range []bool{false, true} {
			resp, b := postResponses(t, s.URL, fmt.Sprintf(`{"model":"m","input":"Hi","stream":%v}`, stream))
			var e api.ErrorResponse
			json.Unmarshal(b, &e)
			if resp.StatusCode != c.status || e.Error == nil || e.Error.CodeString() != c.code {
				t.Errorf("%v (stream %v): %d %s", c.err, stream, resp.StatusCode, b)
			}
			if c.status == 400 && e.Error.ParamString() != "input" {
				t.Errorf("%v: param %q, want input", c.err, e.Error.ParamString())
			}
		}
	}

	// After the first chunk: response.failed ends the stream.
	f.mu.Lock()
	f.err, f.errAfter = api.NewError(502, api.TypeServer, "upstream_error", "", "the upstream died"), 2
	f.mu.Unlock()
	resp, b := postResponses(t, s.URL, `{"model":"m","input":"Hi","stream":true}`)
	names, final := joinedResponse(t, "mid-stream error", b)
	if resp.StatusCode != 200 || len(names) == 0 || names[len(names)-1] != "response.failed" || final == nil {
		t.Fatalf("mid-stream error: %d %s", resp.StatusCode, b)
	}
	if final["status"] != "failed" || !reflect.DeepEqual(final["error"], parseJSON(t, `{"code":"upstream_error","message":"the upstream died"}`)) {
		t.Errorf("failed response %v", final)
	}

	// A wrong method is a 405.
	req, _ := http.NewRequest("GET", s.URL+"/v1/responses", nil)
	r2, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	r2.Body.Close()
	if r2.StatusCode != 405 || r2.Header.Get("Allow") != "POST" {
		t.Errorf("GET: %d %q", r2.StatusCode, r2.Header.Get("Allow"))
	}
}

// fcOutput is a function_call_output input item.
func fcOutput(callID, output string) responses.ResponseInputItemUnionParam {
	it := responses.ResponseInputItemParamOfFunctionCallOutput(output)
	it.OfFunctionCallOutput.CallID = openai.String(callID)
	return it
}

var weatherFunction = responses.ToolUnionParam{OfFunction: &responses.FunctionToolParam{Name: "get_weather", Strict: openai.Bool(false),
	Description: openai.String("Weather of a city"),
	Parameters:  map[string]any{"type": "object", "properties": map[string]any{"city": map[string]any{"type": "string"}}, "required": []string{"city"}}}}

// TestResponsesSDKScripted runs openai-go's Responses client against the
// local backend's parsing (a scripted engine writing Hermes tool calls and
// thinking): reasoning and function_call items, the round trip of the
// output items as input, the stream.
func TestResponsesSDKScripted(t *testing.T) {
	sc := &testserve.Scripted{Scripts: toolScripts()}
	s := startServer(t, server.Config{}, nil, scriptedModel(t, "m", sc))
	ctx := context.Background()
	params := responses.ResponseNewParams{Model: "m", Instructions: openai.String("You are a weather bot."),
		Input: responses.ResponseNewParamsInputUnion{OfInputItemList: responses.ResponseInputParam{
			responses.ResponseInputItemParamOfMessage("Weather in Paris?", responses.EasyInputMessageRoleUser)}},
		Tools: []responses.ToolUnionParam{weatherFunction}}
	r, err := s.Client.Responses.New(ctx, params)
	if err != nil {
		t.Fatal(err)
	}
	if r.Status != responses.ResponseStatusCompleted || len(r.Output) != 2 {
		t.Fatalf("status %q: %s", r.Status, r.RawJSON())
	}
	if rs := r.Output[0].AsReasoning(); r.Output[0].Type != "reasoning" || len(rs.Content) != 1 || rs.Content[0].Text != "The user wants weather." {
		t.Errorf("reasoning item %s", r.Output[0].RawJSON())
	}
	fc := r.Output[1].AsFunctionCall()
	if r.Output[1].Type != "function_call" || fc.Name != "get_weather" || fc.Arguments != `{"city": "Paris"}` || fc.CallID == "" || fc.Status != "completed" {
		t.Errorf("function_call %s", r.Output[1].RawJSON())
	}
	if r.Usage.OutputTokensDetails.ReasoningTokens != 2 || r.Usage.InputTokens == 0 || r.Usage.TotalTokens != r.Usage.InputTokens+r.Usage.OutputTokens {
		t.Errorf("usage %s", r.Usage.RawJSON())
	}
	if p := sc.LastPrompt(); !strings.HasPrefix(p, "<|im_start|>system\nYou are a weather bot.") || !strings.Contains(p, "get_weather") {
		t.Errorf("prompt %q", p)
	}
	// The output items go back as input, with the function's result.
	var items responses.ResponseInputParam
	items = append(items, params.Input.OfInputItemList...)
	items = append(items, responses.ResponseInputItemUnionParam{OfReasoning: &responses.ResponseReasoningItemParam{ID: r.Output[0].ID,
		Content: []responses.ResponseReasoningItemContentParam{{Text: r.Output[0].AsReasoning().Content[0].Text}}}})
	fcp := fc.ToParam()
	items = append(items, responses.ResponseInputItemUnionParam{OfFunctionCall: &fcp},
		fcOutput(fc.CallID, `{"sky": "clear"}`))
	params.Input = responses.ResponseNewParamsInputUnion{OfInputItemList: items}
	r2, err := s.Client.Responses.New(ctx, params)
	if err != nil {
		t.Fatal(err)
	}
	if r2.OutputText() != "It is sunny in Paris." || len(r2.Output) != 1 || r2.Output[0].Type != "message" {
		t.Errorf("after the function output: %s", r2.RawJSON())
	}
	p := sc.LastPrompt()
	if !strings.Contains(p, "<tool_response>\n{\"sky\": \"clear\"}\n</tool_response>") || !strings.Contains(p, `{"name": "get_weather", "arguments": {"city": "Paris"}}`) {
		t.Errorf("round trip prompt: %q", p)
	}

	// Streamed: two calls, the SDK's events in order.
	stream := s.Client.Responses.NewStreaming(ctx, responses.ResponseNewParams{Model: "m",
		Input: responses.ResponseNewParamsInputUnion{OfString: openai.String("Two cities, please")}, Tools: []responses.ToolUnionParam{weatherFunction}})
	var calls []responses.ResponseFunctionToolCall
	var done *responses.Response
	seq := int64(-1)
	for stream.Next() {
		ev := stream.Current()
		if ev.SequenceNumber != seq+1 {
			t.Errorf("sequence %d after %d", ev.SequenceNumber, seq)
		}
		seq = ev.SequenceNumber
		switch ev.Type {
		case "response.output_item.done":
			if ev.Item.Type == "function_call" {
				calls = append(calls, ev.Item.AsFunctionCall())
			}
		case "response.completed":
			r := ev.AsResponseCompleted().Response
			done = &r
		}
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	if done == nil || len(calls) != 2 || len(done.Output) != 2 {
		t.Fatalf("streamed: %d calls, final %v", len(calls), done)
	}
	for i, city := range []string{"Paris", "Rome"} {
		var in struct{ City string }
		if err := json.Unmarshal([]byte(calls[i].Arguments), &in); err != nil || calls[i].Name != "get_weather" || in.City != city ||
			done.Output[i].AsFunctionCall().Arguments != calls[i].Arguments {
			t.Errorf("streamed call %d: %+v (%v)", i, calls[i], err)
		}
	}

	// The backend's errors name the Responses fields.
	for _, c := range []struct{ body, param, msg string }{
		{`{"model":"m","instructions":"x","input":[{"role":"user","content":"a"},{"role":"user","content":[{"type":"input_text","text":"b"},{"type":"input_image","image_url":"data:image/png;base64,AAAA"}]}]}`,
			"input[1].content[1].image_url", "'input[1].content[1].image_url'"},
		{`{"model":"m","input":"x","truncation":"auto","max_output_tokens":100000}`, "input", `truncation: "auto"`},
	} {
		resp, b := postResponses(t, s.URL, c.body)
		var e api.ErrorResponse
		if json.Unmarshal(b, &e) != nil || resp.StatusCode != 400 || e.Error == nil || e.Error.ParamString() != c.param || !strings.Contains(e.Error.Message, c.msg) {
			t.Errorf("%s: %d %s", c.body, resp.StatusCode, b)
		}
	}

	// The SDK's error for a previous_response_id.
	_, err = s.Client.Responses.New(ctx, responses.ResponseNewParams{Model: "m", PreviousResponseID: openai.String(r.ID),
		Input: responses.ResponseNewParamsInputUnion{OfString: openai.String("And now?")}})
	var ae *openai.Error
	if !errors.As(err, &ae) || ae.StatusCode != 400 || ae.Param != "previous_response_id" || !strings.Contains(ae.Message, "does not store responses") {
		t.Errorf("previous_response_id: %v", err)
	}
}

// TestResponsesSDK runs openai-go's Responses client as a user does against
// real models: the trained addition model (real reasoning, real answers)
// and a random-weight model under a JSON Schema.
func TestResponsesSDK(t *testing.T) {
	s := startServer(t, server.Config{}, []realModel{
		{File: "trained/flash-Q8_0.gguf", Name: "flash", Opts: engine.Options{Context: 2048}},
		{File: "tiny-llama-F32.gguf", Name: "tl"},
	})
	ctx := context.Background()
	text := func(s string) responses.ResponseNewParamsInputUnion {
		return responses.ResponseNewParamsInputUnion{OfString: openai.String(s)}
	}

	// Text input, each effort: the same reasoning and answer as chat
	// completions give (greedy), as a reasoning item and a message, and
	// the echo.
	answers := map[string]string{}
	for _, c := range []struct {
		effort    string
		reasoning bool
	}{{"", true}, {"low", false}, {"high", true}} {
		p := responses.ResponseNewParams{Model: "flash", Input: text("What is 12 + 34?"), MaxOutputTokens: openai.Int(300), Temperature: openai.Float(0)}
		cp := openai.ChatCompletionNewParams{Model: "flash", Messages: userMsg("What is 12 + 34?"), MaxCompletionTokens: openai.Int(300), Temperature: openai.Float(0)}
		if c.effort != "" {
			p.Reasoning.Effort = openai.ReasoningEffort(c.effort)
			cp.ReasoningEffort = openai.ReasoningEffort(c.effort)
		}
		r, err := s.Client.Responses.New(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		cc, err := s.Client.Chat.Completions.New(ctx, cp)
		if err != nil {
			t.Fatal(err)
		}
		applied := c.effort
		if applied == "" {
			applied = "medium"
		}
		var ext struct {
			Effort struct {
				Requested *string `json:"requested"`
				Applied   string  `json:"applied"`
			} `json:"effort"`
		}
		json.Unmarshal([]byte(r.JSON.ExtraFields["stepflash"].Raw()), &ext)
		if ext.Effort.Applied != applied || (c.effort == "") != (ext.Effort.Requested == nil) || string(r.Reasoning.Effort) != applied {
			t.Errorf("effort %q: echo %s, reasoning %s", c.effort, r.JSON.ExtraFields["stepflash"].Raw(), r.Reasoning.RawJSON())
		}
		if r.Status != "completed" || r.JSON.ExtraFields["store"].Raw() != "false" || r.OutputText() == "" || r.OutputText() != cc.Choices[0].Message.Content {
			t.Errorf("effort %q: %s\nchat completions: %s", c.effort, r.RawJSON(), cc.RawJSON())
		}
		answers[c.effort] = r.OutputText()
		reasoning := ""
		if r.Output[0].Type == "reasoning" && len(r.Output[0].AsReasoning().Content) == 1 {
			reasoning = r.Output[0].AsReasoning().Content[0].Text
		}
		var want string
		json.Unmarshal([]byte(cc.Choices[0].Message.JSON.ExtraFields["reasoning_content"].Raw()), &want)
		if reasoning != want || (reasoning != "") != c.reasoning {
			t.Errorf("effort %q: reasoning %q, chat completions %q", c.effort, reasoning, want)
		}
		if r.Usage.InputTokens != cc.Usage.PromptTokens || r.Usage.OutputTokens != cc.Usage.CompletionTokens ||
			r.Usage.OutputTokensDetails.ReasoningTokens != cc.Usage.CompletionTokensDetails.ReasoningTokens || (c.effort != "" && r.Usage.InputTokensDetails.CachedTokens == 0) {
			t.Errorf("effort %q: usage %s, chat completions %s", c.effort, r.Usage.RawJSON(), cc.Usage.RawJSON())
		}
	}

	// Item input, streamed: the deltas make the final text, the same as
	// the plain answer; the events come in order.
	stream := s.Client.Responses.NewStreaming(ctx, responses.ResponseNewParams{Model: "flash",
		Input: responses.ResponseNewParamsInputUnion{OfInputItemList: responses.ResponseInputParam{
			responses.ResponseInputItemParamOfMessage(responses.ResponseInputMessageContentListParam{
				{OfInputText: &responses.ResponseInputTextParam{Text: "What is 12 + 34?"}}}, responses.EasyInputMessageRoleUser)}},
		MaxOutputTokens: openai.Int(300), Temperature: openai.Float(0)})
	var types []string
	var deltas, reasoningDeltas strings.Builder
	var final *responses.Response
	seq := int64(-1)
	for stream.Next() {
		ev := stream.Current()
		if ev.SequenceNumber != seq+1 {
			t.Errorf("sequence %d after %d", ev.SequenceNumber, seq)
		}
		seq = ev.SequenceNumber
		if len(types) == 0 || types[len(types)-1] != ev.Type {
			types = append(types, ev.Type)
		}
		switch ev.Type {
		case "response.output_text.delta":
			deltas.WriteString(ev.Delta)
		case "response.reasoning_text.delta":
			reasoningDeltas.WriteString(ev.Delta)
		case "response.completed":
			r := ev.AsResponseCompleted().Response
			final = &r
		}
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	want := []string{"response.created", "response.in_progress", "response.output_item.added", "response.content_part.added", "response.reasoning_text.delta",
		"response.reasoning_text.done", "response.content_part.done", "response.output_item.done", "response.output_item.added", "response.content_part.added",
		"response.output_text.delta", "response.output_text.done", "response.content_part.done", "response.output_item.done", "response.completed"}
	if !slices.Equal(types, want) {
		t.Errorf("events\n%q\nwant\n%q", types, want)
	}
	if final == nil || final.OutputText() != deltas.String() || deltas.String() != answers[""] ||
		final.Output[0].AsReasoning().Content[0].Text != reasoningDeltas.String() || final.Usage.OutputTokens == 0 {
		t.Errorf("streamed text %q (plain %q), reasoning %q, final %v", deltas.String(), answers[""], reasoningDeltas.String(), final)
	}

	// A forced function call: a function_call item whose arguments hold to
	// the parameters; then the call and its output sent back.
	add := responses.ToolUnionParam{OfFunction: &responses.FunctionToolParam{Name: "add", Strict: openai.Bool(true),
		Parameters: map[string]any{"type": "object", "properties": map[string]any{"a": map[string]any{"type": "integer"}, "b": map[string]any{"type": "integer"}},
			"required": []string{"a", "b"}, "additionalProperties": false}}}
	for seed := range 3 {
		p := responses.ResponseNewParams{Model: "flash", Input: text("What is 12 + 34?"), Tools: []responses.ToolUnionParam{add},
			ToolChoice:      responses.ResponseNewParamsToolChoiceUnion{OfToolChoiceMode: openai.Opt(responses.ToolChoiceOptionsRequired)},
			MaxOutputTokens: openai.Int(300), Temperature: openai.Float(1.2)}
		r, err := s.Client.Responses.New(ctx, p, option.WithJSONSet("seed", seed))
		if err != nil {
			t.Fatal(err)
		}
		var calls []responses.ResponseFunctionToolCall
		for _, it := range r.Output {
			if it.Type == "function_call" {
				calls = append(calls, it.AsFunctionCall())
			}
		}
		if r.Status != "completed" || len(calls) != 1 || calls[0].Name != "add" {
			t.Fatalf("seed %d: %s", seed, r.RawJSON())
		}
		var args struct{ A, B *int64 }
		d := json.NewDecoder(strings.NewReader(calls[0].Arguments))
		d.DisallowUnknownFields()
		if err := d.Decode(&args); err != nil || args.A == nil || args.B == nil {
			t.Fatalf("seed %d: add(%s): %v", seed, calls[0].Arguments, err)
		}
		fcp := calls[0].ToParam()
		p.Input = responses.ResponseNewParamsInputUnion{OfInputItemList: responses.ResponseInputParam{
			responses.ResponseInputItemParamOfMessage("What is 12 + 34?", responses.EasyInputMessageRoleUser),
			{OfFunctionCall: &fcp},
			fcOutput(calls[0].CallID, fmt.Sprint(*args.A+*args.B))}}
		p.ToolChoice = responses.ResponseNewParamsToolChoiceUnion{OfToolChoiceMode: openai.Opt(responses.ToolChoiceOptionsNone)}
		r2, err := s.Client.Responses.New(ctx, p, option.WithJSONSet("seed", seed))
		if err != nil {
			t.Fatal(err)
		}
		if r2.Status == "failed" || len(r2.Output) == 0 || slices.ContainsFunc(r2.Output, func(it responses.ResponseOutputItemUnion) bool { return it.Type == "function_call" }) {
			t.Errorf("seed %d, second turn: %s", seed, r2.RawJSON())
		}
	}

	// max_output_tokens cuts: incomplete, with the reason.
	r, err := s.Client.Responses.New(ctx, responses.ResponseNewParams{Model: "flash", Input: text("What is 12 + 34?"), MaxOutputTokens: openai.Int(3)})
	if err != nil {
		t.Fatal(err)
	}
	if r.Status != "incomplete" || r.IncompleteDetails.Reason != "max_output_tokens" || r.Usage.OutputTokens != 3 || r.Output[len(r.Output)-1].Status != "incomplete" {
		t.Errorf("cut: %s", r.RawJSON())
	}

	// text.format json_schema on a random-weight model: the grammar alone
	// makes every answer valid.
	schema := map[string]any{"type": "object", "properties": map[string]any{
		"city":  map[string]any{"type": "string", "enum": []string{"Paris", "Oslo", "Lima"}},
		"temps": map[string]any{"type": "array", "items": map[string]any{"type": "integer"}, "minItems": 1, "maxItems": 3},
		"ok":    map[string]any{"type": "boolean"}},
		"required": []string{"city", "temps", "ok"}, "additionalProperties": false}
	for seed := range 4 {
		r, err := s.Client.Responses.New(ctx, responses.ResponseNewParams{Model: "tl", Input: text("The weather, as JSON."),
			MaxOutputTokens: openai.Int(300), Temperature: openai.Float(1.0),
			Text: responses.ResponseTextConfigParam{Format: responses.ResponseFormatTextConfigUnionParam{OfJSONSchema: &responses.ResponseFormatTextJSONSchemaConfigParam{
				Name: "weather", Schema: schema, Strict: openai.Bool(true)}}}}, option.WithJSONSet("seed", seed))
		if err != nil {
			t.Fatal(err)
		}
		if r.Status != "completed" || r.Text.Format.Type != "json_schema" || r.Text.Format.Name != "weather" {
			t.Fatalf("seed %d: %s", seed, r.RawJSON())
		}
		var out struct {
			City  string  `json:"city"`
			Temps []int64 `json:"temps"`
			OK    *bool   `json:"ok"`
		}
		d := json.NewDecoder(strings.NewReader(r.OutputText()))
		d.DisallowUnknownFields()
		if err := d.Decode(&out); err != nil || d.More() || !slices.Contains([]string{"Paris", "Oslo", "Lima"}, out.City) ||
			len(out.Temps) < 1 || len(out.Temps) > 3 || out.OK == nil {
			t.Fatalf("seed %d: %q does not hold to the schema (%v)", seed, r.OutputText(), err)
		}
	}
}

// memResponses is an in-memory ResponseStore, for the tests only (the
// binary's is the ledger's store).
type memResponses struct {
	mu sync.Mutex
	m  map[string]server.StoredResponse
}

func (s *memResponses) Put(_ context.Context, r server.StoredResponse) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.m[r.ID] = r
	return nil
}

func (s *memResponses) Get(_ context.Context, id string) (*server.StoredResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.m[id]
	if !ok {
		return nil, server.ErrResponseNotFound
	}
	return &r, nil
}

func (s *memResponses) Delete(_ context.Context, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.m[id]; !ok {
		return server.ErrResponseNotFound
	}
	delete(s.m, id)
	return nil
}

// TestResponsesStore: with a ResponseStore, responses are kept (store
// true, unless the request says false), previous_response_id continues
// one (its input and output before the new input, its instructions not),
// GET and DELETE find them, and only for the key that made them.
func TestResponsesStore(t *testing.T) {
	f := &fakeChat{}
	st := &memResponses{m: map[string]server.StoredResponse{}}
	asKey := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			next.ServeHTTP(w, r.WithContext(backend.WithCaller(r.Context(), backend.Caller{KeyID: r.Header.Get("X-Test-Key")})))
		})
	}
	s := startServer(t, server.Config{Responses: st, Middleware: []server.Middleware{asKey}}, nil, f.model("m"))
	do := func(method, path, key, body string) (int, map[string]any) {
		t.Helper()
		req, _ := http.NewRequest(method, s.URL+path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-Test-Key", key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var v map[string]any
		if strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
			_, v = joinedResponse(t, path, b)
		} else if err := json.Unmarshal(b, &v); err != nil {
			t.Fatalf("%s %s: %v: %s", method, path, err, b)
		}
		return resp.StatusCode, v
	}
	setChunks := func(chunks ...*api.ChatCompletionChunk) {
		f.mu.Lock()
		f.chunks = chunks
		f.mu.Unlock()
	}
	messages := func() string {
		b, _ := json.Marshal(f.request().Messages)
		return string(b)
	}

	setChunks(firstChunk(), reasoningChunk("hmm"), textChunk("Hello!"), toolChunk(0, "call_1", "f", `{"a":1}`), finishChunk("tool_calls"), usageChunk(5, 0, 3))
	code, r1 := do("POST", "/v1/responses", "k1", `{"model":"m","instructions":"Be A.","input":"Hi"}`)
	if code != 200 || r1["store"] != true {
		t.Fatalf("first: %d %v", code, r1)
	}
	id1 := r1["id"].(string)
	code, got := do("GET", "/v1/responses/"+id1, "k1", "")
	if code != 200 || !reflect.DeepEqual(got, r1) {
		t.Errorf("GET: %d %v, want %v", code, got, r1)
	}
	if code, got := do("GET", "/v1/responses/"+id1, "k2", ""); code != 404 || got["error"] == nil {
		t.Errorf("GET with another key: %d %v", code, got)
	}

	// Continued, streamed: the earlier turn comes first, the new
	// instructions replace the old.
	setChunks(firstChunk(), textChunk("Bye."), finishChunk("stop"), usageChunk(9, 5, 2))
	code, r2 := do("POST", "/v1/responses", "k1", `{"model":"m","instructions":"Be B.","previous_response_id":"`+id1+`","stream":true,
		"input":[{"type":"function_call_output","call_id":"call_1","output":"2"},{"role":"user","content":"Thanks"}]}`)
	want := `[{"role":"system","content":"Be B."},{"role":"user","content":"Hi"},` +
		`{"role":"assistant","content":"Hello!","tool_calls":[{"id":"call_1","type":"function","function":{"name":"f","arguments":"{\"a\":1}"}}],"reasoning_content":"hmm"},` +
		`{"role":"tool","content":"2","tool_call_id":"call_1"},{"role":"user","content":"Thanks"}]`
	if code != 200 || r2["previous_response_id"] != id1 || r2["store"] != true || !reflect.DeepEqual(parseJSON(t, messages()), parseJSON(t, want)) {
		t.Errorf("continued: %d %v\nmessages %s\nwant %s", code, r2, messages(), want)
	}
	id2 := r2["id"].(string)

	// A third turn continues the second: the whole chain, once.
	code, _ = do("POST", "/v1/responses", "k1", `{"model":"m","previous_response_id":"`+id2+`","input":"More?","store":false}`)
	want = `[{"role":"user","content":"Hi"},` +
		`{"role":"assistant","content":"Hello!","tool_calls":[{"id":"call_1","type":"function","function":{"name":"f","arguments":"{\"a\":1}"}}],"reasoning_content":"hmm"},` +
		`{"role":"tool","content":"2","tool_call_id":"call_1"},{"role":"user","content":"Thanks"},{"role":"assistant","content":"Bye."},{"role":"user","content":"More?"}]`
	if code != 200 || !reflect.DeepEqual(parseJSON(t, messages()), parseJSON(t, want)) {
		t.Errorf("third: %d\nmessages %s\nwant %s", code, messages(), want)
	}
	if len(st.m) != 2 {
		t.Errorf("store: false kept a response: %d stored", len(st.m))
	}

	// Not found: another key's, an unknown id; deleted ones.
	for _, c := range []struct{ key, id string }{{"k2", id1}, {"k1", "resp_nope"}} {
		code, e := do("POST", "/v1/responses", c.key, `{"model":"m","previous_response_id":"`+c.id+`","input":"x"}`)
		ed, _ := e["error"].(map[string]any)
		if code != 400 || ed == nil || ed["param"] != "previous_response_id" || ed["code"] != "previous_response_not_found" || !strings.Contains(ed["message"].(string), c.id) {
			t.Errorf("previous %s with key %s: %d %v", c.id, c.key, code, e)
		}
	}
	if code, e := do("DELETE", "/v1/responses/"+id1, "k2", ""); code != 404 || e["error"] == nil {
		t.Errorf("DELETE with another key: %d %v", code, e)
	}
	if code, e := do("DELETE", "/v1/responses/"+id1, "k1", ""); code != 200 || e["deleted"] != true || e["id"] != id1 {
		t.Errorf("DELETE: %d %v", code, e)
	}
	if code, _ := do("GET", "/v1/responses/"+id1, "k1", ""); code != 404 {
		t.Errorf("GET after DELETE: %d", code)
	}
	if code, e := do("PUT", "/v1/responses/"+id2, "k1", ""); code != 405 || e["error"] == nil {
		t.Errorf("PUT: %d %v", code, e)
	}

	// Stateless (no store): GET is a 404 that says why.
	s2 := startServer(t, server.Config{}, nil, f.model("m"))
	resp, b := func() (*http.Response, []byte) {
		r, err := http.Get(s2.URL + "/v1/responses/" + id2)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(r.Body)
		r.Body.Close()
		return r, b
	}()
	if resp.StatusCode != 404 || !strings.Contains(string(b), "does not store responses") {
		t.Errorf("stateless GET: %d %s", resp.StatusCode, b)
	}
}
