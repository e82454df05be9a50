package server_test

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/shared"
	"github.com/stepflash/stepflash/chat"
	"github.com/stepflash/stepflash/effort"
	"github.com/stepflash/stepflash/engine"
	"github.com/stepflash/stepflash/internal/testserve"
	"github.com/stepflash/stepflash/internal/thinkmodel"
	"github.com/stepflash/stepflash/local"
	"github.com/stepflash/stepflash/model"
	"github.com/stepflash/stepflash/server"
)

const storyPrompt = "Once upon a time"

// realServer serves stories260K (first: also step-3.7-flash) and tiny-qwen3.
func realServer(t *testing.T) *served {
	return startServer(t, server.Config{}, []realModel{
		{File: "stories260K.gguf", Name: "stories", Aliases: []string{server.DefaultModelName}, Opts: engine.Options{Parallel: 4}},
		{File: "tiny-qwen3-F32.gguf", Name: "qwen", Aliases: []string{"qwen-alias"}, Opts: engine.Options{Parallel: 4}},
	})
}

func userMsg(s string) []openai.ChatCompletionMessageParamUnion {
	return []openai.ChatCompletionMessageParamUnion{openai.UserMessage(s)}
}

func TestChatPlainAndStreamAgree(t *testing.T) {
	s := realServer(t)
	ctx := context.Background()
	for _, modelName := range []string{"qwen", "qwen-alias", "stories"} {
		t.Run(modelName, func(t *testing.T) {
			params := openai.ChatCompletionNewParams{Model: modelName, Messages: userMsg("Hello there"),
				MaxTokens: openai.Int(12), Temperature: openai.Float(0)}
			var httpResp *http.Response
			resp, err := s.Client.Chat.Completions.New(ctx, params, option.WithResponseInto(&httpResp))
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(resp.ID, "chatcmpl-") || resp.Object != "chat.completion" || resp.Created == 0 || resp.Model != modelName || !strings.HasPrefix(resp.JSON.SystemFingerprint.Raw(), `"fp_`) {
				t.Errorf("envelope: id %q object %q created %d model %q fp %s", resp.ID, resp.Object, resp.Created, resp.Model, resp.JSON.SystemFingerprint.Raw())
			}
			if len(resp.Choices) != 1 || resp.Choices[0].Message.Role != "assistant" {
				t.Fatalf("choices: %+v", resp.Choices)
			}
			c := resp.Choices[0]
			if c.FinishReason != "length" && c.FinishReason != "stop" {
				t.Errorf("finish_reason %q", c.FinishReason)
			}
			u := resp.Usage
			if u.PromptTokens == 0 || u.CompletionTokens == 0 || u.CompletionTokens > 12 || u.TotalTokens != u.PromptTokens+u.CompletionTokens {
				t.Errorf("usage %+v", u)
			}
			if c.FinishReason == "length" && u.CompletionTokens != 12 {
				t.Errorf("finish length after %d tokens, want 12", u.CompletionTokens)
			}
			for _, h := range []string{"X-Request-Id", "X-Reasoning-Effort", "X-Advisor"} {
				if httpResp.Header.Get(h) == "" {
					t.Errorf("header %s missing", h)
				}
			}
			var raw map[string]json.RawMessage
			json.Unmarshal([]byte(resp.RawJSON()), &raw)
			var usage map[string]any
			json.Unmarshal(raw["usage"], &usage)
			cost, _ := usage["cost"].(float64)
			want := (float64(u.PromptTokens-u.PromptTokensDetails.CachedTokens)*0.20 + float64(u.PromptTokensDetails.CachedTokens)*0.04 + float64(u.CompletionTokens)*1.15) / 1e6
			if math.Abs(cost-want) > 1e-12 || usage["cached_tokens"] == nil {
				t.Errorf("usage cost %v (want %v), cached_tokens %v", usage["cost"], want, usage["cached_tokens"])
			}
			if !bytes.Contains(raw["stepflash"], []byte(`"applied":"medium"`)) {
				t.Errorf("stepflash extension %s", raw["stepflash"])
			}

			params.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}
			stream := s.Client.Chat.Completions.NewStreaming(ctx, params)
			acc := openai.ChatCompletionAccumulator{}
			chunks := 0
			var last openai.ChatCompletionChunk
			for stream.Next() {
				ch := stream.Current()
				acc.AddChunk(ch)
				last = ch
				chunks++
				if ch.ID != stream.Current().ID || ch.Object != "chat.completion.chunk" {
					t.Errorf("chunk envelope %q %q", ch.ID, ch.Object)
				}
			}
			if err := stream.Err(); err != nil {
				t.Fatal(err)
			}
			if len(last.Choices) != 0 || last.Usage.CompletionTokens != u.CompletionTokens || last.Usage.PromptTokens != u.PromptTokens {
				t.Errorf("last chunk: choices %d usage %+v, want usage %+v", len(last.Choices), last.Usage, u)
			}
			if got := acc.Choices[0].Message.Content; got != c.Message.Content {
				t.Errorf("streamed %q, non-streamed %q", got, c.Message.Content)
			}
			if acc.Choices[0].FinishReason != c.FinishReason {
				t.Errorf("streamed finish %q, want %q", acc.Choices[0].FinishReason, c.FinishReason)
			}
			if chunks < 3 {
				t.Errorf("only %d chunks", chunks)
			}
		})
	}
}

// TestCompletionsGreedyMatchesEngine: a greedy legacy completion over HTTP
// is what the engine gives directly (what `stepflash run` prints).
func TestCompletionsGreedyMatchesEngine(t *testing.T) {
	s := realServer(t)
	l := loadModel(t, "stories260K.gguf")
	e := engine.New(l.Model, l.Tok, engine.Options{Context: 512})
	defer e.Close()
	res, err := e.Generate(context.Background(), engine.Request{Prompt: l.Tok.Encode(storyPrompt, true, true), MaxTokens: 40, Thinking: local.Thinking(l.Tok, chat.DefaultThinking, 1024)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := ""
	for _, tk := range res.Tokens {
		want += tk.Text
	}
	for _, stream := range []bool{false, true} {
		params := openai.CompletionNewParams{Model: "step-3.7-flash", Prompt: openai.CompletionNewParamsPromptUnion{OfString: openai.String(storyPrompt)},
			MaxTokens: openai.Int(40), Temperature: openai.Float(0)}
		got := ""
		if stream {
			st := s.Client.Completions.NewStreaming(context.Background(), params)
			for st.Next() {
				for _, c := range st.Current().Choices {
					got += c.Text
				}
			}
			if err := st.Err(); err != nil {
				t.Fatal(err)
			}
		} else {
			resp, err := s.Client.Completions.New(context.Background(), params)
			if err != nil {
				t.Fatal(err)
			}
			if resp.Object != "text_completion" || !strings.HasPrefix(resp.ID, "cmpl-") || resp.Usage.CompletionTokens != 40 {
				t.Errorf("envelope %q %q usage %+v", resp.Object, resp.ID, resp.Usage)
			}
			got = resp.Choices[0].Text
		}
		if got != want {
			t.Errorf("stream=%v: got %q, want %q", stream, got, want)
		}
	}
	// Token-id prompt and echo.
	ids := l.Tok.Encode(storyPrompt, true, true)
	ids64 := make([]int64, len(ids))
	for i, id := range ids {
		ids64[i] = int64(id)
	}
	resp, err := s.Client.Completions.New(context.Background(), openai.CompletionNewParams{Model: "stories",
		Prompt: openai.CompletionNewParamsPromptUnion{OfArrayOfTokens: ids64}, MaxTokens: openai.Int(40), Temperature: openai.Float(0), Echo: openai.Bool(true)})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(resp.Choices[0].Text, want) || !strings.Contains(resp.Choices[0].Text, "Once upon a time") {
		t.Errorf("token prompt with echo: %q", resp.Choices[0].Text)
	}
}

func TestLogprobs(t *testing.T) {
	s := realServer(t)
	ctx := context.Background()
	for _, stream := range []bool{false, true} {
		params := openai.ChatCompletionNewParams{Model: "qwen", Messages: userMsg("Count"), MaxTokens: openai.Int(8),
			Temperature: openai.Float(0), Logprobs: openai.Bool(true), TopLogprobs: openai.Int(3)}
		var content []openai.ChatCompletionTokenLogprob
		text := ""
		if stream {
			st := s.Client.Chat.Completions.NewStreaming(ctx, params)
			for st.Next() {
				for _, c := range st.Current().Choices {
					content = append(content, c.Logprobs.Content...)
					text += c.Delta.Content
				}
			}
			if err := st.Err(); err != nil {
				t.Fatal(err)
			}
		} else {
			resp, err := s.Client.Chat.Completions.New(ctx, params)
			if err != nil {
				t.Fatal(err)
			}
			content = resp.Choices[0].Logprobs.Content
			text = resp.Choices[0].Message.Content
		}
		if len(content) == 0 || len(content) > 8 {
			t.Fatalf("stream=%v: %d logprob entries", stream, len(content))
		}
		joined := ""
		for i, lp := range content {
			joined += lp.Token
			if lp.Logprob > 0 || len(lp.TopLogprobs) != 3 {
				t.Errorf("entry %d: logprob %v, %d alternatives", i, lp.Logprob, len(lp.TopLogprobs))
				continue
			}
			// Greedy: the chosen token is the most likely one.
			if lp.TopLogprobs[0].Token != lp.Token || lp.TopLogprobs[0].Logprob < lp.TopLogprobs[1].Logprob || math.Abs(lp.TopLogprobs[0].Logprob-lp.Logprob) > 1e-6 {
				t.Errorf("entry %d: token %q %v, top %+v", i, lp.Token, lp.Logprob, lp.TopLogprobs[0])
			}
			if string(int64sToBytes(lp.Bytes)) != lp.Token {
				t.Errorf("entry %d: bytes %v for %q", i, lp.Bytes, lp.Token)
			}
		}
		if !strings.HasPrefix(joined, text) {
			t.Errorf("stream=%v: tokens %q do not spell the content %q", stream, joined, text)
		}
	}
}

func int64sToBytes(v []int64) []byte {
	b := make([]byte, len(v))
	for i, x := range v {
		b[i] = byte(x)
	}
	return b
}

func TestNAndSeed(t *testing.T) {
	s := realServer(t)
	ctx := context.Background()
	run := func(seed int64, n int) []string {
		resp, err := s.Client.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "qwen", Messages: userMsg("Tell me"),
			MaxTokens: openai.Int(16), Temperature: openai.Float(1.5), N: openai.Int(int64(n)), Seed: openai.Int(seed)},
			option.WithJSONSet("top_k", 0))
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.Choices) != n {
			t.Fatalf("%d choices, want %d", len(resp.Choices), n)
		}
		var out []string
		for i, c := range resp.Choices {
			if int(c.Index) != i {
				t.Errorf("choice %d has index %d", i, c.Index)
			}
			out = append(out, c.Message.Content)
		}
		return out
	}
	a, b, c := run(42, 2), run(42, 2), run(7, 2)
	if a[0] != b[0] || a[1] != b[1] {
		t.Errorf("same seed gave %q and %q", a, b)
	}
	if a[0] == a[1] && a[0] == c[0] {
		t.Errorf("n=2 and another seed all gave the same text %q", a[0])
	}
	// Streaming n=2: both choices are delivered, each with its own finish.
	st := s.Client.Chat.Completions.NewStreaming(ctx, openai.ChatCompletionNewParams{Model: "qwen", Messages: userMsg("Tell me"),
		MaxTokens: openai.Int(16), Temperature: openai.Float(1.5), N: openai.Int(2), Seed: openai.Int(42)}, option.WithJSONSet("top_k", 0))
	acc := openai.ChatCompletionAccumulator{}
	for st.Next() {
		acc.AddChunk(st.Current())
	}
	if err := st.Err(); err != nil {
		t.Fatal(err)
	}
	if len(acc.Choices) != 2 || acc.Choices[0].Message.Content != a[0] || acc.Choices[1].Message.Content != a[1] {
		t.Errorf("streamed n=2 %+v, want %q", acc.Choices, a)
	}
}

func TestStopStrings(t *testing.T) {
	s := realServer(t)
	ctx := context.Background()
	params := openai.CompletionNewParams{Model: "stories", Prompt: openai.CompletionNewParamsPromptUnion{OfString: openai.String(storyPrompt)},
		MaxTokens: openai.Int(40), Temperature: openai.Float(0)}
	full, err := s.Client.Completions.New(ctx, params)
	if err != nil {
		t.Fatal(err)
	}
	text := full.Choices[0].Text
	cases := []struct {
		name string
		stop []string
	}{
		{"one word", []string{" girl"}},
		{"earliest of several", []string{"zzz", " play", " named"}},
		{"not found", []string{"qqq"}},
	}
	for _, tc := range cases {
		want, wantFinish := text, string(full.Choices[0].FinishReason)
		best := -1
		for _, st := range tc.stop {
			if i := strings.Index(text, st); i >= 0 && (best < 0 || i < best) {
				best = i
			}
		}
		if best >= 0 {
			want, wantFinish = text[:best], "stop"
		}
		for _, stream := range []bool{false, true} {
			p := params
			p.Stop = openai.CompletionNewParamsStopUnion{OfStringArray: tc.stop}
			got, finish := "", ""
			if stream {
				st := s.Client.Completions.NewStreaming(ctx, p)
				for st.Next() {
					for _, c := range st.Current().Choices {
						got += c.Text
						if c.FinishReason != "" {
							finish = string(c.FinishReason)
						}
					}
				}
				if err := st.Err(); err != nil {
					t.Fatal(err)
				}
			} else {
				resp, err := s.Client.Completions.New(ctx, p)
				if err != nil {
					t.Fatal(err)
				}
				got, finish = resp.Choices[0].Text, string(resp.Choices[0].FinishReason)
			}
			if got != want || finish != wantFinish {
				t.Errorf("%s stream=%v: %q (%s), want %q (%s)", tc.name, stream, got, finish, want, wantFinish)
			}
		}
	}
	// Chat stop as a single string.
	resp, err := s.Client.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "stories", Messages: userMsg("x"),
		MaxTokens: openai.Int(30), Temperature: openai.Float(0), Stop: openai.ChatCompletionNewParamsStopUnion{OfString: openai.String("e")}})
	if err != nil {
		t.Fatal(err)
	}
	if c := resp.Choices[0]; strings.Contains(c.Message.Content, "e") || (c.FinishReason != "stop" && len(c.Message.Content) > 0) {
		t.Errorf("chat stop: %q %s", c.Message.Content, c.FinishReason)
	}
}

type wantErr struct {
	status int
	typ    string
	code   string
	param  string
	msg    string // substring of the message
}

func postRaw(t *testing.T, url, path, body string) (*http.Response, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url+path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var v map[string]any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("%s: body is not JSON: %q", path, b)
	}
	return resp, v
}

func checkErr(t *testing.T, name string, resp *http.Response, v map[string]any, w wantErr) {
	t.Helper()
	e, _ := v["error"].(map[string]any)
	if e == nil {
		t.Errorf("%s: no error object in %v", name, v)
		return
	}
	str := func(k string) string { s, _ := e[k].(string); return s }
	if resp.StatusCode != w.status || str("type") != w.typ || str("code") != w.code || str("param") != w.param || !strings.Contains(str("message"), w.msg) {
		t.Errorf("%s: %d %v, want %d %s/%s param %q message ~%q", name, resp.StatusCode, e, w.status, w.typ, w.code, w.param, w.msg)
	}
	if resp.Header.Get("Content-Type") != "application/json" || resp.Header.Get("X-Request-Id") == "" {
		t.Errorf("%s: headers %v", name, resp.Header)
	}
	if (w.status == 503) != (resp.Header.Get("Retry-After") != "") {
		t.Errorf("%s: Retry-After %q with status %d", name, resp.Header.Get("Retry-After"), resp.StatusCode)
	}
}

func TestErrors(t *testing.T) {
	over := &testserve.Scripted{Err: engine.ErrOverloaded}
	s := startServer(t, server.Config{MaxBodyBytes: 4096}, []realModel{{File: "stories260K.gguf", Name: "stories", Opts: engine.Options{Context: 64}}},
		scriptedModel(t, "busy", over))
	const chat, cmpl = "/v1/chat/completions", "/v1/completions"
	msgs := `"messages":[{"role":"user","content":"hi"}]`
	long := strings.Repeat("word ", 200)
	invalid := func(code, param, msg string) wantErr { return wantErr{400, "invalid_request_error", code, param, msg} }
	cases := []struct {
		name, path, body string
		want             wantErr
	}{
		{"malformed json", chat, `{"model":"stories",`, invalid("invalid_json", "", "parse")},
		{"not an object", chat, `[1,2]`, invalid("invalid_type", "", "JSON object")},
		{"empty body", chat, ``, invalid("invalid_json", "", "empty")},
		{"wrong type", chat, `{"model":"stories","messages":"hi"}`, invalid("invalid_type", "messages", "expected an array")},
		{"wrong type nested", chat, `{"model":"stories",` + msgs + `,"temperature":"hot"}`, invalid("invalid_type", "temperature", "number")},
		{"wrong content type", chat, `{"model":"stories","messages":[{"role":"user","content":5}]}`, invalid("invalid_type", "messages.content", "string or an array")},
		{"missing model", chat, `{` + msgs + `}`, invalid("missing_required_parameter", "model", "model")},
		{"empty messages", chat, `{"model":"stories","messages":[]}`, invalid("invalid_value", "messages", "empty")},
		{"missing messages", chat, `{"model":"stories"}`, invalid("missing_required_parameter", "messages", "messages")},
		{"bad role", chat, `{"model":"stories","messages":[{"role":"robot","content":"x"}]}`, invalid("invalid_value", "messages[0].role", "robot")},
		{"unknown field", chat, `{"model":"stories",` + msgs + `,"frobnicate":1}`, invalid("unsupported_parameter", "frobnicate", "frobnicate")},
		{"unknown message field", chat, `{"model":"stories","messages":[{"role":"user","content":"x","audio":{}}]}`, invalid("unsupported_parameter", "messages[0].audio", "audio")},
		{"image to a text-only model", chat, `{"model":"stories","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"x"}}]}]}`, invalid("invalid_value", "messages[0].content[0].image_url", "does not take images")},
		{"image in an assistant message", chat, `{"model":"stories","messages":[{"role":"assistant","content":[{"type":"image_url","image_url":{"url":"x"}}]}]}`, invalid("invalid_value", "messages[0].content[0].image_url", "only allowed in user messages")},
		{"image part without a url", chat, `{"model":"stories","messages":[{"role":"user","content":[{"type":"image_url","image_url":{}}]}]}`, invalid("missing_required_parameter", "messages[0].content[0].image_url.url", "Missing")},
		{"audio part", chat, `{"model":"stories","messages":[{"role":"user","content":[{"type":"input_audio"}]}]}`, invalid("unsupported_parameter", "messages[0].content[0].type", "input_audio")},
		{"unknown model", chat, `{"model":"gpt-4o",` + msgs + `}`, wantErr{404, "not_found_error", "model_not_found", "model", `"stories", "busy"`}},
		{"effort", chat, `{"model":"stories",` + msgs + `,"reasoning_effort":"extreme"}`, invalid("invalid_reasoning_effort", "reasoning_effort", "low, medium, high")},
		{"empty effort", chat, `{"model":"stories",` + msgs + `,"reasoning_effort":""}`, invalid("invalid_reasoning_effort", "reasoning_effort", "low, medium, high")},
		{"effort not a string", chat, `{"model":"stories",` + msgs + `,"reasoning_effort":5}`, invalid("invalid_reasoning_effort", "reasoning_effort", "got a number; allowed values are low, medium, high")},
		{"context", chat, `{"model":"stories","messages":[{"role":"user","content":"` + long + `"}]}`, invalid("context_length_exceeded", "messages", "maximum context length is 64 tokens")},
		{"context with max_tokens", cmpl, `{"model":"stories","prompt":"Once upon a time","max_tokens":60}`, invalid("context_length_exceeded", "prompt", "(5 in the messages, 60 in the completion)")},
		{"too large", chat, `{"model":"stories","messages":[{"role":"user","content":"` + strings.Repeat("x", 5000) + `"}]}`, wantErr{413, "invalid_request_error", "request_too_large", "", "4096 bytes"}},
		{"top_logprobs", chat, `{"model":"stories",` + msgs + `,"logprobs":true,"top_logprobs":21}`, invalid("invalid_value", "top_logprobs", "[0, 20]")},
		{"top_logprobs without logprobs", chat, `{"model":"stories",` + msgs + `,"top_logprobs":2}`, invalid("invalid_value", "top_logprobs", "logprobs")},
		{"n", chat, `{"model":"stories",` + msgs + `,"n":0}`, invalid("invalid_value", "n", "n")},
		{"temperature", chat, `{"model":"stories",` + msgs + `,"temperature":3}`, invalid("invalid_value", "temperature", "[0, 2]")},
		{"max_tokens", chat, `{"model":"stories",` + msgs + `,"max_tokens":0}`, invalid("invalid_value", "max_tokens", ">= 1")},
		{"five stops", chat, `{"model":"stories",` + msgs + `,"stop":["a","b","c","d","e"]}`, invalid("invalid_value", "stop", "at most 4")},
		{"stop type", chat, `{"model":"stories",` + msgs + `,"stop":3}`, invalid("invalid_type", "stop", "string or an array")},
		{"json_schema without a name", chat, `{"model":"stories",` + msgs + `,"response_format":{"type":"json_schema","json_schema":{"schema":{"type":"object"}}}}`, invalid("missing_required_parameter", "response_format.json_schema.name", "name")},
		{"json_schema keyword under strict", chat, `{"model":"stories",` + msgs + `,"response_format":{"type":"json_schema","json_schema":{"name":"x","strict":true,"schema":{"type":"object","properties":{"a":{"type":"string","pattern":"^a"}}}}}}`, invalid("invalid_value", "response_format.json_schema.schema", "pattern")},
		{"response_format type", chat, `{"model":"stories",` + msgs + `,"response_format":{"type":"yaml"}}`, invalid("invalid_value", "response_format.type", "yaml")},
		{"presence_penalty", chat, `{"model":"stories",` + msgs + `,"presence_penalty":2.5}`, invalid("invalid_value", "presence_penalty", "[-2, 2]")},
		{"logit_bias key", chat, `{"model":"stories",` + msgs + `,"logit_bias":{"abc":1}}`, invalid("invalid_value", "logit_bias", "abc")},
		{"logit_bias range", chat, `{"model":"stories",` + msgs + `,"logit_bias":{"5":101}}`, invalid("invalid_value", "logit_bias", "[-100, 100]")},
		{"obfuscation", chat, `{"model":"stories",` + msgs + `,"stream":true,"stream_options":{"include_obfuscation":true}}`, invalid("unsupported_parameter", "stream_options.include_obfuscation", "obfuscation")},
		{"stream_options without stream", chat, `{"model":"stories",` + msgs + `,"stream_options":{"include_usage":true}}`, invalid("invalid_value", "stream_options", "stream")},
		{"required without tools", chat, `{"model":"stories",` + msgs + `,"tool_choice":"required"}`, invalid("invalid_value", "tool_choice", "required")},
		{"named tool missing", chat, `{"model":"stories",` + msgs + `,"tools":[{"type":"function","function":{"name":"a"}}],"tool_choice":{"type":"function","function":{"name":"b"}}}`, invalid("invalid_value", "tool_choice", `"b"`)},
		{"advisor always without an advisor", chat, `{"model":"stories",` + msgs + `,"advisor":"always"}`, invalid("invalid_advisor", "advisor", "needs an advisor model")},
		{"reasoning.exclude", chat, `{"model":"stories",` + msgs + `,"reasoning":{"exclude":true}}`, invalid("unsupported_parameter", "reasoning.exclude", "exclude")},
		{"reasoning.max_tokens", chat, `{"model":"stories",` + msgs + `,"reasoning":{"max_tokens":100}}`, invalid("unsupported_parameter", "reasoning.max_tokens", "effort")},
		{"reasoning disagrees", chat, `{"model":"stories",` + msgs + `,"reasoning":{"effort":"low"},"reasoning_effort":"high"}`, invalid("invalid_value", "reasoning.effort", "disagree")},
		{"reasoning.effort mistyped", chat, `{"model":"stories",` + msgs + `,"reasoning":{"effort":"hgih"}}`, invalid("invalid_reasoning_effort", "reasoning_effort", "allowed values")},
		{"advisor value", chat, `{"model":"stories",` + msgs + `,"advisor":"sometimes"}`, invalid("invalid_advisor", "advisor", "auto, off, always")},
		{"suffix", cmpl, `{"model":"stories","prompt":"a","suffix":"b"}`, invalid("unsupported_parameter", "suffix", "suffix")},
		{"prompt type", cmpl, `{"model":"stories","prompt":{"a":1}}`, invalid("invalid_type", "prompt", "array of token ids")},
		{"prompt token range", cmpl, `{"model":"stories","prompt":[1,2,999999]}`, invalid("invalid_value", "prompt", "outside the vocabulary")},
		{"missing prompt", cmpl, `{"model":"stories"}`, invalid("missing_required_parameter", "prompt", "prompt")},
		{"overloaded", chat, `{"model":"busy",` + msgs + `}`, wantErr{503, "server_error", "overloaded", "", "queue is full"}},
		{"overloaded stream", chat, `{"model":"busy",` + msgs + `,"stream":true}`, wantErr{503, "server_error", "overloaded", "", "queue is full"}},
	}
	for _, tc := range cases {
		resp, v := postRaw(t, s.URL, tc.path, tc.body)
		checkErr(t, tc.name, resp, v, tc.want)
	}
	// Routes and methods.
	for _, rc := range []struct {
		method, path string
		want         wantErr
		allow        string
	}{
		{"GET", "/v1/chat/completions", wantErr{405, "invalid_request_error", "method_not_allowed", "", "GET"}, "POST"},
		{"DELETE", "/v1/models", wantErr{405, "invalid_request_error", "method_not_allowed", "", "DELETE"}, "GET, HEAD"},
		{"GET", "/v1/nothing", wantErr{404, "invalid_request_error", "not_found", "", "/v1/nothing"}, ""},
		{"POST", "/", wantErr{404, "invalid_request_error", "not_found", "", "POST /"}, ""},
		{"GET", "/v1/models/nope", wantErr{404, "not_found_error", "model_not_found", "model", "nope"}, ""},
	} {
		req, _ := http.NewRequest(rc.method, s.URL+rc.path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var v map[string]any
		json.NewDecoder(resp.Body).Decode(&v)
		resp.Body.Close()
		checkErr(t, rc.method+" "+rc.path, resp, v, rc.want)
		if resp.Header.Get("Allow") != rc.allow {
			t.Errorf("%s %s: Allow %q, want %q", rc.method, rc.path, resp.Header.Get("Allow"), rc.allow)
		}
	}
	// The SDK surfaces the error object.
	_, err := s.Client.Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{Model: "nope", Messages: userMsg("x")})
	var apiErr *openai.Error
	if !errors.As(err, &apiErr) || apiErr.StatusCode != 404 || apiErr.Code != "model_not_found" || apiErr.Param != "model" {
		t.Errorf("SDK error: %v", err)
	}
	_, err = s.Client.Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{Model: "stories", Messages: userMsg("x"), ReasoningEffort: "extreme"})
	if !errors.As(err, &apiErr) || apiErr.StatusCode != 400 || apiErr.Code != "invalid_reasoning_effort" {
		t.Errorf("SDK error: %v", err)
	}
	// OpenRouter's reasoning object sets the tier.
	c, err := s.Client.Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{Model: "stories", Messages: userMsg("x"), MaxTokens: openai.Int(2)},
		option.WithJSONSet("reasoning", map[string]any{"effort": "high"}))
	if err != nil || !strings.Contains(c.RawJSON(), `"requested":"high","applied":"high"`) {
		t.Errorf("reasoning.effort: %v", err)
	}
	// OpenAI's minimal maps to low, and the echo says both.
	c, err = s.Client.Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{Model: "stories", Messages: userMsg("x"), MaxTokens: openai.Int(2), ReasoningEffort: shared.ReasoningEffortMinimal})
	if err != nil || !strings.Contains(c.RawJSON(), `"requested":"minimal","applied":"low"`) {
		t.Errorf("minimal: %v", err)
	}
}

func TestHealthReadyMetrics(t *testing.T) {
	s := startServer(t, server.Config{}, []realModel{{File: "stories260K.gguf", Name: "stories"}})
	get := func(path string) (*http.Response, string) {
		resp, err := http.Get(s.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	s.Srv.SetLoading(true)
	if resp, body := get("/health/ready"); resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" || !strings.Contains(body, "model_loading") {
		t.Errorf("ready while loading: %d %q", resp.StatusCode, body)
	}
	resp, v := postRaw(t, s.URL, "/v1/chat/completions", `{"model":"later","messages":[{"role":"user","content":"x"}]}`)
	checkErr(t, "loading", resp, v, wantErr{503, "server_error", "model_loading", "", "loading"})
	if resp, _ := get("/health"); resp.StatusCode != 200 {
		t.Errorf("health while loading: %d", resp.StatusCode)
	}
	s.Srv.SetLoading(false)
	if resp, body := get("/health/ready"); resp.StatusCode != 200 || !strings.Contains(body, "stories") {
		t.Errorf("ready: %d %q", resp.StatusCode, body)
	}
	if _, err := s.Client.Completions.New(context.Background(), openai.CompletionNewParams{Model: "stories",
		Prompt: openai.CompletionNewParamsPromptUnion{OfString: openai.String(storyPrompt)}, MaxTokens: openai.Int(5)}); err != nil {
		t.Fatal(err)
	}
	models, err := s.Client.Models.List(context.Background())
	if err != nil || len(models.Data) != 1 || models.Data[0].ID != "stories" || models.Data[0].Object != "model" {
		t.Errorf("models: %+v %v", models, err)
	}
	resp2, body := get("/metrics")
	for _, want := range []string{
		`stepflash_http_requests_total{route="POST /v1/completions",code="200"} 1`,
		`stepflash_completion_tokens_total{model="stories"} 5`,
		`stepflash_time_to_first_token_seconds_count{model="stories"} 1`,
		`stepflash_queue_depth{model="stories"} 0`,
		`stepflash_http_request_duration_seconds_bucket{route="POST /v1/completions",le="+Inf"} 1`,
		"# TYPE stepflash_prompt_tokens_total counter",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	if !strings.HasPrefix(resp2.Header.Get("Content-Type"), "text/plain; version=0.0.4") {
		t.Errorf("metrics content type %q", resp2.Header.Get("Content-Type"))
	}
}

// TestDisconnectFreesSlot: with one slot, a client that goes away mid-stream
// must not keep it busy.
func TestDisconnectFreesSlot(t *testing.T) {
	s := startServer(t, server.Config{}, []realModel{{File: "stories260K.gguf", Name: "stories", Opts: engine.Options{Parallel: 1, Context: 2048}}})
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, s.URL+"/v1/completions",
		strings.NewReader(`{"model":"stories","prompt":"Once","max_tokens":2000,"ignore_eos":true,"stream":true}`))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(resp.Body)
	if _, err := r.ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	cancel()
	resp.Body.Close()
	start := time.Now()
	done, err := s.Client.Completions.New(context.Background(), openai.CompletionNewParams{Model: "stories",
		Prompt: openai.CompletionNewParamsPromptUnion{OfString: openai.String(storyPrompt)}, MaxTokens: openai.Int(5)})
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 5*time.Second || done.Usage.CompletionTokens != 5 {
		t.Errorf("second request took %v (%d tokens): the slot was not freed", d, done.Usage.CompletionTokens)
	}
}

// TestConcurrentStreams: streams that run together each get exactly the
// text they would get alone (no lost or interleaved tokens).
func TestConcurrentStreams(t *testing.T) {
	s := realServer(t)
	soak(t, s, 8, 0)
}

// soak runs clients concurrent greedy streams (for d, or once each when
// d is 0) and checks each against the non-streamed answer.
func soak(t *testing.T, s *served, clients int, d time.Duration) {
	ctx := context.Background()
	prompts := []string{"Once upon a time", "The little dog", "Lily and Ben", "One day"}
	want := map[string]string{}
	for _, p := range prompts {
		resp, err := s.Client.Completions.New(ctx, openai.CompletionNewParams{Model: "stories",
			Prompt: openai.CompletionNewParamsPromptUnion{OfString: openai.String(p)}, MaxTokens: openai.Int(48), Temperature: openai.Float(0)})
		if err != nil {
			t.Fatal(err)
		}
		want[p] = resp.Choices[0].Text
	}
	deadline := time.Now().Add(d)
	var wg sync.WaitGroup
	var mu sync.Mutex
	count, failures := 0, 0
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				p := prompts[(c+i)%len(prompts)]
				st := s.Client.Completions.NewStreaming(ctx, openai.CompletionNewParams{Model: "stories",
					Prompt: openai.CompletionNewParamsPromptUnion{OfString: openai.String(p)}, MaxTokens: openai.Int(48), Temperature: openai.Float(0),
					StreamOptions: openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}})
				got := ""
				for st.Next() {
					for _, ch := range st.Current().Choices {
						got += ch.Text
					}
				}
				mu.Lock()
				count++
				if err := st.Err(); err != nil || got != want[p] {
					failures++
					if failures < 5 {
						t.Errorf("client %d request %d: err %v, got %q, want %q", c, i, err, got, want[p])
					}
				}
				mu.Unlock()
				if time.Now().After(deadline) {
					return
				}
			}
		}()
	}
	wg.Wait()
	t.Logf("%d streams, %d failures", count, failures)
}

func TestEffortEcho(t *testing.T) {
	l := loadPath(t, thinkmodel.Write(t, "tiny-qwen3-F32.gguf", ""))
	sc := &testserve.Scripted{Tok: l.Tok, Ctx: 4096}
	s := startServer(t, server.Config{}, nil, localModel(t, "m", nil, local.Model{Engine: sc, Tok: l.Tok, Config: l.Model.Config()}))
	for _, tc := range []struct {
		effort string
		budget int
	}{{"", 1024}, {"low", 0}, {"medium", 1024}, {"high", 8192}} {
		body := `{"model":"m","messages":[{"role":"user","content":"x"}]`
		if tc.effort != "" {
			body += `,"reasoning_effort":"` + tc.effort + `"`
		}
		resp, v := postRaw(t, s.URL, "/v1/chat/completions", body+"}")
		applied := tc.effort
		if applied == "" {
			applied = "medium"
		}
		ext, _ := v["stepflash"].(map[string]any)
		eff, _ := ext["effort"].(map[string]any)
		if resp.StatusCode != 200 || resp.Header.Get("X-Reasoning-Effort") != applied || eff["applied"] != applied || eff["thinking_budget"] != float64(tc.budget) {
			t.Errorf("effort %q: %d header %q echo %v", tc.effort, resp.StatusCode, resp.Header.Get("X-Reasoning-Effort"), eff)
		}
		if (tc.effort == "") != (eff["requested"] == nil) {
			t.Errorf("effort %q: requested echo %v", tc.effort, eff["requested"])
		}
		if r := sc.LastRequest(); r.Thinking == nil || r.Thinking.Budget != tc.budget {
			t.Errorf("effort %q: engine got thinking %+v, want budget %d", tc.effort, r.Thinking, tc.budget)
		}
	}
}

// TestEffortEchoStream: a stream says what effort it got on its first chunk,
// without stream_options.include_usage, on both endpoints; later chunks do
// not repeat it.
func TestEffortEchoStream(t *testing.T) {
	sc := &testserve.Scripted{}
	s := startServer(t, server.Config{}, nil, scriptedModel(t, "m", sc))
	for _, c := range []struct{ path, body string }{
		{"/v1/chat/completions", `{"model":"m","messages":[{"role":"user","content":"x"}],"reasoning_effort":"low","stream":true}`},
		{"/v1/completions", `{"model":"m","prompt":"x","reasoning_effort":"low","stream":true}`},
	} {
		resp, err := http.Post(s.URL+c.path, "application/json", strings.NewReader(c.body))
		if err != nil {
			t.Fatal(err)
		}
		var echoes []map[string]any
		chunks := 0
		lines := bufio.NewScanner(resp.Body)
		for lines.Scan() {
			data, ok := strings.CutPrefix(lines.Text(), "data: ")
			if !ok || data == "[DONE]" {
				continue
			}
			var ch struct {
				Stepflash *struct {
					Effort map[string]any `json:"effort"`
				} `json:"stepflash"`
			}
			if err := json.Unmarshal([]byte(data), &ch); err != nil {
				t.Fatal(err)
			}
			chunks++
			if ch.Stepflash != nil {
				if chunks != 1 {
					t.Errorf("%s: stepflash object on chunk %d", c.path, chunks)
				}
				echoes = append(echoes, ch.Stepflash.Effort)
			}
		}
		resp.Body.Close()
		if len(echoes) != 1 || echoes[0]["applied"] != "low" || echoes[0]["thinking_budget"] != float64(0) || chunks < 2 {
			t.Errorf("%s: %d chunks, effort echoes %v", c.path, chunks, echoes)
		}
	}
}

var weatherTool = openai.ChatCompletionFunctionTool(shared.FunctionDefinitionParam{Name: "get_weather",
	Description: openai.String("Weather of a city"),
	Parameters:  shared.FunctionParameters{"type": "object", "properties": map[string]any{"city": map[string]any{"type": "string"}}}})

func toolScripts() []testserve.Script {
	return []testserve.Script{
		{Key: "<tool_response>", Pieces: []string{"It is ", "sunny in Paris."}},
		{Key: "Weather in Paris", Pieces: []string{"<think>\nThe user", " wants weather.\n</think>\n\n", "<tool_", "call>\n{\"name\": \"get_weather\", ",
			"\"arguments\": {\"city\": \"Paris\"}}\n</tool_call>"}, Reasoning: 2},
		{Key: "Two cities", Pieces: []string{"<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>\n",
			"<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Rome\"}}\n</tool_call>"}},
		{Key: "Forced", Pieces: []string{"{\"name\": \"get_weather\", ", "\"arguments\": {\"city\": \"Oslo\"}}"}},
		{Key: "Think", Pieces: []string{"<think>", "2+2 is 4", "</think>", "The answer", " is 4."}, Reasoning: 3},
	}
}

func TestToolsRoundTrip(t *testing.T) {
	sc := &testserve.Scripted{Scripts: toolScripts()}
	s := startServer(t, server.Config{}, nil, scriptedModel(t, "m", sc))
	ctx := context.Background()
	params := openai.ChatCompletionNewParams{Model: "m", Messages: userMsg("Weather in Paris?"), Tools: []openai.ChatCompletionToolUnionParam{weatherTool}}
	resp, err := s.Client.Chat.Completions.New(ctx, params)
	if err != nil {
		t.Fatal(err)
	}
	c := resp.Choices[0]
	if c.FinishReason != "tool_calls" || len(c.Message.ToolCalls) != 1 {
		t.Fatalf("finish %q, calls %+v", c.FinishReason, c.Message.ToolCalls)
	}
	call := c.Message.ToolCalls[0]
	if call.Type != "function" || call.Function.Name != "get_weather" || call.Function.Arguments != `{"city": "Paris"}` || !strings.HasPrefix(call.ID, "call_") {
		t.Errorf("call %+v", call)
	}
	if c.Message.Content != "" || c.Message.JSON.Content.Raw() != "null" {
		t.Errorf("content %q (raw %s), want null", c.Message.Content, c.Message.JSON.Content.Raw())
	}
	if rc := c.Message.JSON.ExtraFields["reasoning_content"].Raw(); rc != `"The user wants weather."` || c.Message.JSON.ExtraFields["reasoning"].Raw() != rc {
		t.Errorf("reasoning %s / %s", rc, c.Message.JSON.ExtraFields["reasoning"].Raw())
	}
	if resp.Usage.CompletionTokensDetails.ReasoningTokens != 2 {
		t.Errorf("reasoning tokens %d", resp.Usage.CompletionTokensDetails.ReasoningTokens)
	}
	if !strings.Contains(sc.LastPrompt(), "get_weather") || !strings.Contains(sc.LastPrompt(), "<tools>") {
		t.Errorf("tools not rendered into the prompt: %q", sc.LastPrompt())
	}
	// Send the result back.
	params.Messages = append(params.Messages, c.Message.ToParam(), openai.ToolMessage(`{"sky": "clear"}`, call.ID))
	resp2, err := s.Client.Chat.Completions.New(ctx, params)
	if err != nil {
		t.Fatal(err)
	}
	if got := resp2.Choices[0].Message.Content; got != "It is sunny in Paris." || resp2.Choices[0].FinishReason != "stop" {
		t.Errorf("after tool result: %q %s", got, resp2.Choices[0].FinishReason)
	}
	p := sc.LastPrompt()
	if !strings.Contains(p, "<tool_response>\n{\"sky\": \"clear\"}\n</tool_response>") || !strings.Contains(p, `{"name": "get_weather", "arguments": {"city": "Paris"}}`) {
		t.Errorf("history not rendered: %q", p)
	}

	// Streaming: tool_calls deltas the SDK accumulates.
	st := s.Client.Chat.Completions.NewStreaming(ctx, openai.ChatCompletionNewParams{Model: "m", Messages: userMsg("Weather in Paris?"),
		Tools: []openai.ChatCompletionToolUnionParam{weatherTool}})
	acc := openai.ChatCompletionAccumulator{}
	var finished []openai.FinishedChatCompletionToolCall
	reasoning := ""
	for st.Next() {
		ch := st.Current()
		acc.AddChunk(ch)
		if tc, ok := acc.JustFinishedToolCall(); ok {
			finished = append(finished, tc)
		}
		for _, cc := range ch.Choices {
			if f, ok := cc.Delta.JSON.ExtraFields["reasoning_content"]; ok {
				var s string
				json.Unmarshal([]byte(f.Raw()), &s)
				reasoning += s
			}
		}
	}
	if err := st.Err(); err != nil {
		t.Fatal(err)
	}
	if len(acc.Choices) != 1 || acc.Choices[0].FinishReason != "tool_calls" || len(acc.Choices[0].Message.ToolCalls) != 1 ||
		acc.Choices[0].Message.ToolCalls[0].Function.Arguments != `{"city": "Paris"}` || acc.Choices[0].Message.ToolCalls[0].Function.Name != "get_weather" {
		t.Errorf("streamed tool call: %+v", acc.Choices)
	}
	if len(finished) != 1 || finished[0].Name != "get_weather" {
		t.Errorf("JustFinishedToolCall: %+v", finished)
	}
	if reasoning != "The user wants weather." {
		t.Errorf("streamed reasoning %q", reasoning)
	}

	// Parallel calls, and parallel_tool_calls=false keeping only the first.
	for _, parallel := range []bool{true, false} {
		resp, err := s.Client.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "m", Messages: userMsg("Two cities"),
			Tools: []openai.ChatCompletionToolUnionParam{weatherTool}, ParallelToolCalls: openai.Bool(parallel)})
		if err != nil {
			t.Fatal(err)
		}
		want := 2
		if !parallel {
			want = 1
		}
		if calls := resp.Choices[0].Message.ToolCalls; len(calls) != want || calls[0].Function.Arguments != `{"city": "Paris"}` || resp.Choices[0].FinishReason != "tool_calls" {
			t.Errorf("parallel=%v: %+v", parallel, calls)
		}
	}

	// tool_choice none: no tools offered, the text is content.
	resp, err = s.Client.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "m", Messages: userMsg("Two cities"),
		Tools: []openai.ChatCompletionToolUnionParam{weatherTool}, ToolChoice: openai.ChatCompletionToolChoiceOptionUnionParam{OfAuto: openai.String("none")}})
	if err != nil {
		t.Fatal(err)
	}
	if c := resp.Choices[0]; len(c.Message.ToolCalls) != 0 || !strings.Contains(c.Message.Content, "<tool_call>") || c.FinishReason != "stop" || strings.Contains(sc.LastPrompt(), "<tools>") {
		t.Errorf("tool_choice none: %+v", c)
	}

	// A named tool_choice forces the call: the prompt holds its opening tag,
	// the call object is written under the tool's schema, and the server
	// closes the call when the object is complete.
	resp, err = s.Client.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "m", Messages: userMsg("Forced"),
		Tools:      []openai.ChatCompletionToolUnionParam{weatherTool},
		ToolChoice: openai.ToolChoiceOptionFunctionToolChoice(openai.ChatCompletionNamedToolChoiceFunctionParam{Name: "get_weather"})})
	if err != nil {
		t.Fatal(err)
	}
	if calls := resp.Choices[0].Message.ToolCalls; len(calls) != 1 || calls[0].Function.Name != "get_weather" || calls[0].Function.Arguments != `{"city": "Oslo"}` {
		t.Errorf("forced call: %+v (prompt %q)", resp.Choices[0].Message, sc.LastPrompt())
	}
	if !strings.HasSuffix(sc.LastPrompt(), "<|im_start|>assistant\n<tool_call>\n") {
		t.Errorf("forced prompt ends %q", sc.LastPrompt()[max(0, len(sc.LastPrompt())-80):])
	}
}

func TestReasoningStream(t *testing.T) {
	sc := &testserve.Scripted{Scripts: toolScripts()}
	s := startServer(t, server.Config{}, nil, scriptedModel(t, "m", sc))
	resp, err := http.Post(s.URL+"/v1/chat/completions", "application/json",
		strings.NewReader(`{"model":"m","messages":[{"role":"user","content":"Think"}],"stream":true,"stream_options":{"include_usage":true}}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("content type %q", resp.Header.Get("Content-Type"))
	}
	var reasoning, reasoning2, content string
	var usage map[string]any
	lines := 0
	sc2 := bufio.NewScanner(resp.Body)
	sawDone := false
	for sc2.Scan() {
		line := sc2.Text()
		if line == "" {
			continue
		}
		lines++
		data, ok := strings.CutPrefix(line, "data: ")
		if !ok {
			t.Fatalf("not an SSE data line: %q", line)
		}
		if data == "[DONE]" {
			sawDone = true
			continue
		}
		var ch struct {
			Choices []struct {
				Delta map[string]any `json:"delta"`
			} `json:"choices"`
			Usage map[string]any `json:"usage"`
		}
		if err := json.Unmarshal([]byte(data), &ch); err != nil {
			t.Fatal(err)
		}
		if ch.Usage != nil {
			usage = ch.Usage
		}
		for _, c := range ch.Choices {
			if s, ok := c.Delta["reasoning_content"].(string); ok {
				reasoning += s
			}
			if s, ok := c.Delta["reasoning"].(string); ok {
				reasoning2 += s
			}
			if s, ok := c.Delta["content"].(string); ok {
				content += s
			}
		}
	}
	if !sawDone || reasoning != "2+2 is 4" || reasoning2 != reasoning || content != "The answer is 4." {
		t.Errorf("done %v reasoning %q/%q content %q", sawDone, reasoning, reasoning2, content)
	}
	det, _ := usage["completion_tokens_details"].(map[string]any)
	if det["reasoning_tokens"] != float64(3) {
		t.Errorf("usage %v", usage)
	}
}

func TestUnsupportedFieldsNeverIgnored(t *testing.T) {
	s := startServer(t, server.Config{}, []realModel{{File: "stories260K.gguf", Name: "stories"}})
	// Every top-level field the SDK can send that stepflash does not
	// implement is refused by name.
	for _, field := range []string{"audio", "functions", "function_call", "prediction", "web_search_options", "verbosity", "prompt_cache_retention"} {
		resp, v := postRaw(t, s.URL, "/v1/chat/completions", fmt.Sprintf(`{"model":"stories","messages":[{"role":"user","content":"x"}],%q:{}}`, field))
		checkErr(t, field, resp, v, wantErr{400, "invalid_request_error", "unsupported_parameter", field, field})
	}
}

// TestSamplerFields: penalties, logit_bias and json_object reach the engine
// and change what it writes.
func TestSamplerFields(t *testing.T) {
	s := realServer(t)
	ctx := context.Background()
	l := loadModel(t, "stories260K.gguf")
	complete := func(opts ...option.RequestOption) (string, []openai.ChatCompletionTokenLogprob) {
		t.Helper()
		resp, err := s.Client.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "stories", Messages: userMsg("Once upon a time"),
			MaxTokens: openai.Int(40), Temperature: openai.Float(0), Logprobs: openai.Bool(true)}, opts...)
		if err != nil {
			t.Fatal(err)
		}
		return resp.Choices[0].Message.Content, resp.Choices[0].Logprobs.Content
	}
	plain, lps := complete()
	if len(lps) == 0 {
		t.Fatal("no tokens")
	}
	first, ok := l.Tok.Lookup(lps[0].Token)
	if !ok {
		t.Fatalf("first token %q not in the vocabulary", lps[0].Token)
	}
	banned, lps2 := complete(option.WithJSONSet("logit_bias", map[string]int{fmt.Sprint(first): -100}))
	if banned == plain || (len(lps2) > 0 && lps2[0].Token == lps[0].Token) {
		t.Errorf("logit_bias -100 on %q changed nothing: %q", lps[0].Token, banned)
	}
	if pen, _ := complete(option.WithJSONSet("frequency_penalty", 2)); pen == plain {
		t.Errorf("frequency_penalty changed nothing: %q", pen)
	}
	if pen, _ := complete(option.WithJSONSet("presence_penalty", 2)); pen == plain {
		t.Errorf("presence_penalty changed nothing: %q", pen)
	}
	resp, err := s.Client.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "qwen", Messages: userMsg("JSON please"),
		MaxTokens: openai.Int(200), Temperature: openai.Float(0),
		ResponseFormat: openai.ChatCompletionNewParamsResponseFormatUnion{OfJSONObject: &shared.ResponseFormatJSONObjectParam{}}})
	if err != nil {
		t.Fatal(err)
	}
	c := resp.Choices[0]
	t.Logf("json_object: %q (%s)", c.Message.Content, c.FinishReason)
	var obj map[string]any
	if c.FinishReason == "stop" && json.Unmarshal([]byte(c.Message.Content), &obj) != nil {
		t.Errorf("json_object reply is not a JSON object: %q", c.Message.Content)
	}
	if !strings.HasPrefix(strings.TrimSpace(c.Message.Content), "{") {
		t.Errorf("json_object reply does not start an object: %q (%s)", c.Message.Content, c.FinishReason)
	}
}

// TestSoak is the long concurrency run: STEPFLASH_SOAK=60s go test -run
// TestSoak ./server runs 16 streaming clients for that long.
func TestSoak(t *testing.T) {
	d, err := time.ParseDuration(os.Getenv("STEPFLASH_SOAK"))
	if err != nil || d <= 0 {
		t.Skip("set STEPFLASH_SOAK=60s to run the 16-client soak test")
	}
	s := realServer(t)
	soak(t, s, 16, d)
}

// TestConfiguredEffortPolicy: a model's configured policy is what requests
// get, what the stepflash.effort echo and X-Reasoning-Effort report, and
// what reaches the engine (-1: no thinking limit); AddModel refuses an
// invalid one.
func TestConfiguredEffortPolicy(t *testing.T) {
	policyOf := func(cfg *model.Config, js string) effort.Policy {
		var ec effort.Config
		if err := json.Unmarshal([]byte(js), &ec); err != nil {
			t.Fatal(err)
		}
		p, err := ec.Policy(local.Shape(cfg))
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	ql := loadPath(t, thinkmodel.Write(t, "tiny-qwen3-F32.gguf", ""))
	dense := &testserve.Scripted{Tok: ql.Tok, Ctx: 4096}
	dm := localModel(t, "dense", nil, local.Model{Engine: dense, Tok: ql.Tok, Config: ql.Model.Config(),
		Effort: policyOf(ql.Model.Config(), `{"low":{"thinking_budget":3},"high":{"thinking_budget":-1}}`)})
	moeL := loadPath(t, thinkmodel.Write(t, "tiny-qwen3moe-F32.gguf", ""))
	moe := &testserve.Scripted{Tok: moeL.Tok, Ctx: 4096}
	moeCfg := moeL.Model.Config()
	k := moeCfg.NExpertUse
	if moeCfg.NExpert == 0 || k < 2 {
		t.Fatalf("tiny-qwen3moe: %d experts, %d per token", moeCfg.NExpert, k)
	}
	mm := localModel(t, "moe", nil, local.Model{Engine: moe, Tok: moeL.Tok, Config: moeCfg,
		Effort: policyOf(moeCfg, fmt.Sprintf(`{"low":{"experts_per_token":1},"medium":{"experts_per_token":%d,"thinking_budget":7}}`, k-1))})
	s := startServer(t, server.Config{}, nil, dm, mm)
	cases := []struct {
		model, effort string
		sc            *testserve.Scripted
		experts       int // -1: null (dense)
		budget        int // echoed and given to the engine (-1: no limit)
	}{
		{"dense", "low", dense, -1, 3},
		{"dense", "", dense, -1, 1024},
		{"dense", "high", dense, -1, -1},
		{"moe", "low", moe, 1, 0},
		{"moe", "medium", moe, k - 1, 7},
		{"moe", "high", moe, k, 8192},
	}
	for _, tc := range cases {
		for _, path := range []string{"/v1/chat/completions", "/v1/completions"} {
			body := `{"model":"` + tc.model + `","messages":[{"role":"user","content":"x"}]`
			if path == "/v1/completions" {
				body = `{"model":"` + tc.model + `","prompt":"x"`
			}
			if tc.effort != "" {
				body += `,"reasoning_effort":"` + tc.effort + `"`
			}
			resp, v := postRaw(t, s.URL, path, body+"}")
			applied := cmp.Or(tc.effort, "medium")
			ext, _ := v["stepflash"].(map[string]any)
			eff, _ := ext["effort"].(map[string]any)
			wantExperts := any(nil)
			if tc.experts >= 0 {
				wantExperts = float64(tc.experts)
			}
			if resp.StatusCode != 200 || resp.Header.Get("X-Reasoning-Effort") != applied || eff["applied"] != applied ||
				eff["thinking_budget"] != float64(tc.budget) || eff["experts_per_token"] != wantExperts {
				t.Errorf("%s %s %q: %d header %q echo %v", path, tc.model, tc.effort, resp.StatusCode, resp.Header.Get("X-Reasoning-Effort"), eff)
			}
			r := tc.sc.LastRequest()
			if r.Thinking == nil || r.Thinking.Budget != tc.budget || r.ExpertsUsed != max(tc.experts, 0) {
				t.Errorf("%s %s %q: engine got thinking %+v experts %d", path, tc.model, tc.effort, r.Thinking, r.ExpertsUsed)
			}
		}
	}
	for _, bad := range []effort.Policy{
		{effort.Low: {}, effort.Medium: {}},
		{effort.Low: {ExpertsPerToken: k + 1}, effort.Medium: {}, effort.High: {}},
		{effort.Low: {ThinkingBudget: -3}, effort.Medium: {}, effort.High: {}},
	} {
		_, err := local.New(local.Model{Engine: moe, Tok: moeL.Tok, Config: moeCfg, Effort: bad})
		if err == nil || !strings.Contains(err.Error(), "effort policy") {
			t.Errorf("local.New with policy %v: %v", bad, err)
		}
	}
}

// TestEndOfTurnStops: the template's end-of-turn marker, written as plain
// text (a vocabulary without the special token), ends the reply; another
// template's marker is just text.
func TestEndOfTurnStops(t *testing.T) {
	pieces := []string{"Hello", " world", "<|im", "_end|>", "<end_of_turn>", "<|eot_id|>", "more"}
	cases := []struct {
		template string // in ../chat/testdata/templates; "" = the ChatML fallback
		content  string
		finish   string
	}{
		{"", "Hello world", "stop"},
		{"qwen3.jinja", "Hello world", "stop"},
		{"gemma3.jinja", "Hello world<|im_end|>", "stop"},
		{"llama3.2.jinja", "Hello world<|im_end|><end_of_turn>", "stop"},
		{"ministral3.jinja", "Hello world<|im_end|><end_of_turn><|eot_id|>more", "length"}, // ends turns with eos_token
	}
	var models []*server.Model
	for i, tc := range cases {
		var tmpl *chat.Template
		if tc.template != "" {
			src, err := os.ReadFile("../chat/testdata/templates/" + tc.template)
			if err != nil {
				t.Fatal(err)
			}
			if tmpl, err = chat.NewTemplate(string(src)); err != nil {
				t.Fatal(err)
			}
		}
		models = append(models, scriptedModelWith(t, fmt.Sprint("m", i), &testserve.Scripted{Scripts: []testserve.Script{{Key: "", Pieces: pieces, Finish: "length"}}}, tmpl))
	}
	s := startServer(t, server.Config{}, nil, models...)
	for i, tc := range cases {
		for _, stream := range []bool{false, true} {
			params := openai.ChatCompletionNewParams{Model: fmt.Sprint("m", i), Messages: userMsg("Hi")}
			content, finish := "", ""
			if stream {
				st := s.Client.Chat.Completions.NewStreaming(context.Background(), params)
				acc := openai.ChatCompletionAccumulator{}
				for st.Next() {
					acc.AddChunk(st.Current())
				}
				if err := st.Err(); err != nil {
					t.Fatal(err)
				}
				content, finish = acc.Choices[0].Message.Content, acc.Choices[0].FinishReason
			} else {
				resp, err := s.Client.Chat.Completions.New(context.Background(), params)
				if err != nil {
					t.Fatal(err)
				}
				content, finish = resp.Choices[0].Message.Content, resp.Choices[0].FinishReason
			}
			if content != tc.content || finish != tc.finish {
				t.Errorf("%q (stream %v): content %q finish %s, want %q %s", cmp.Or(tc.template, "fallback"), stream, content, finish, tc.content, tc.finish)
			}
		}
	}
}
