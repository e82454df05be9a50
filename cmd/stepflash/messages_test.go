package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/anthropics/anthropic-sdk-go/v2"
	"github.com/anthropics/anthropic-sdk-go/v2/option"
	"github.com/stepflash/stepflash/internal/testmodels"
)

// TestMessagesSDK runs the official Anthropic SDK, as its users run it,
// against `stepflash serve` on the trained flash model (Qwen3's template,
// with thinking): POST /v1/messages with an API key in x-api-key, a
// thinking block and the answer, the streamed message joined by the SDK's
// accumulator, a forced tool, and Anthropic's error objects.
func TestMessagesSDK(t *testing.T) {
	flash := testmodels.Path(t, "trained/flash-Q8_0.gguf")
	data := t.TempDir()
	rc, out, errs := run(t, "keys", "create", "--data", data, "--region", "global", "--name", "sdk", "--json")
	var k keyJSON
	if rc != 0 || json.Unmarshal([]byte(out), &k) != nil {
		t.Fatalf("keys create: %d %s %s", rc, out, errs)
	}
	base, _, _ := startServe(t, "-m", flash, "--alias", "flash", "--quiet", "--data", data)
	// Greedy: this SDK has no temperature field any more; the API still
	// takes one.
	greedy := option.WithJSONSet("temperature", 0)
	client := anthropic.NewClient(option.WithBaseURL(base), option.WithAPIKey(k.Key), option.WithMaxRetries(0),
		option.WithRequestTimeout(2*time.Minute), greedy)
	ctx := context.Background()
	question := []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("What is 12 + 34?"))}
	params := anthropic.MessageNewParams{Model: "flash", MaxTokens: 300, Messages: question}

	msg, err := client.Messages.New(ctx, params)
	if err != nil {
		t.Fatal(err)
	}
	if len(msg.Content) != 2 || msg.Content[0].Type != "thinking" || msg.Content[1].Type != "text" {
		t.Fatalf("content %s", msg.RawJSON())
	}
	if th := msg.Content[0].AsThinking(); !strings.Contains(th.Thinking, "12+") || strings.Contains(th.Thinking, "<think>") {
		t.Errorf("thinking %q", th.Thinking)
	}
	if got := strings.TrimSpace(msg.Content[1].Text); got != "46" {
		t.Errorf("answer %q, want 46", got)
	}
	if !strings.HasPrefix(msg.ID, "msg_") || msg.Model != "flash" || msg.StopReason != anthropic.StopReasonEndTurn || msg.Role != "assistant" {
		t.Errorf("message %s", msg.RawJSON())
	}
	u := msg.Usage
	prompt := u.InputTokens + u.CacheReadInputTokens
	if prompt < 10 || u.OutputTokens < 10 || u.CacheCreationInputTokens != 0 || !u.JSON.CacheReadInputTokens.Valid() {
		t.Errorf("usage %s", u.RawJSON())
	}

	// The same question again: the prefix cache serves the prompt, which
	// Anthropic's usage counts as cache reads, not input tokens.
	again, err := client.Messages.New(ctx, params)
	if err != nil {
		t.Fatal(err)
	}
	if u2 := again.Usage; u2.CacheReadInputTokens == 0 || u2.InputTokens+u2.CacheReadInputTokens != prompt {
		t.Errorf("usage again %s (first %s)", u2.RawJSON(), u.RawJSON())
	}

	// Streamed, joined by the SDK's accumulator: the same message.
	stream := client.Messages.NewStreaming(ctx, params)
	var acc anthropic.Message
	deltas := map[string]int{}
	for stream.Next() {
		ev := stream.Current()
		if err := acc.Accumulate(ev); err != nil {
			t.Fatal(err)
		}
		if ev.Type == "content_block_delta" {
			deltas[ev.Delta.Type]++
		}
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	if len(acc.Content) != 2 || acc.Content[0].Thinking != msg.Content[0].Thinking || acc.Content[1].Text != msg.Content[1].Text ||
		acc.StopReason != anthropic.StopReasonEndTurn || deltas["thinking_delta"] < 2 || deltas["text_delta"] < 1 {
		t.Errorf("streamed %s, deltas %v", acc.RawJSON(), deltas)
	}
	if acc.Usage.OutputTokens != u.OutputTokens || acc.Usage.InputTokens+acc.Usage.CacheReadInputTokens != prompt {
		t.Errorf("streamed usage %s, want %d output, %d prompt", acc.Usage.RawJSON(), u.OutputTokens, prompt)
	}

	// thinking disabled is the low tier: the template's empty think block,
	// no thinking block back.
	noThink := params
	noThink.Thinking = anthropic.ThinkingConfigParamUnion{OfDisabled: &anthropic.ThinkingConfigDisabledParam{}}
	var hr *http.Response
	msg, err = client.Messages.New(ctx, noThink, option.WithResponseInto(&hr))
	if err != nil {
		t.Fatal(err)
	}
	if len(msg.Content) != 1 || msg.Content[0].Type != "text" || hr.Header.Get("X-Reasoning-Effort") != "low" {
		t.Errorf("thinking disabled: %s, X-Reasoning-Effort %q", msg.RawJSON(), hr.Header.Get("X-Reasoning-Effort"))
	}
	// A large budget is the high tier.
	high := params
	high.Thinking = anthropic.ThinkingConfigParamOfEnabled(16000)
	if _, err = client.Messages.New(ctx, high, option.WithResponseInto(&hr)); err != nil || hr.Header.Get("X-Reasoning-Effort") != "high" {
		t.Errorf("budget 16000: %v, X-Reasoning-Effort %q", err, hr.Header.Get("X-Reasoning-Effort"))
	}

	// A forced tool. The template renders the tool and the server writes
	// the start of the call into the prompt; this model was trained on
	// addition only, so what follows is not always a well-formed call:
	// when it is, it is a tool_use block of the named tool.
	tool := anthropic.ToolUnionParam{OfTool: &anthropic.ToolParam{Name: "add", Description: anthropic.String("Add two numbers"),
		InputSchema: anthropic.ToolInputSchemaParam{Properties: map[string]any{"a": map[string]any{"type": "integer"}, "b": map[string]any{"type": "integer"}}}}}
	forced := params
	forced.MaxTokens = 40
	forced.Tools = []anthropic.ToolUnionParam{tool}
	forced.ToolChoice = anthropic.ToolChoiceParamOfTool("add")
	msg, err = client.Messages.New(ctx, forced)
	if err != nil {
		t.Fatal(err)
	}
	switch msg.StopReason {
	case anthropic.StopReasonToolUse:
		if tu := msg.Content[len(msg.Content)-1].AsToolUse(); tu.Name != "add" || !json.Valid(tu.Input) {
			t.Errorf("forced tool: %s", msg.RawJSON())
		}
	case anthropic.StopReasonMaxTokens, anthropic.StopReasonEndTurn:
		t.Logf("forced tool: the model wrote no well-formed call: %s", msg.RawJSON())
	default:
		t.Errorf("forced tool: %s", msg.RawJSON())
	}
	if msg.Usage.InputTokens+msg.Usage.CacheReadInputTokens <= prompt {
		t.Errorf("forced tool: the tool is not in the prompt (usage %s)", msg.Usage.RawJSON())
	}

	// Errors are Anthropic's error objects, which the SDK reads.
	bad := params
	bad.Model = "claude-nope"
	_, err = client.Messages.New(ctx, bad)
	var ae *anthropic.Error
	if !errors.As(err, &ae) || ae.StatusCode != 404 || ae.Type() != "not_found_error" || !strings.Contains(ae.Message, "claude-nope") || ae.RequestID == "" {
		t.Errorf("unknown model: %v", err)
	}
	for _, c := range []struct {
		body, typ, msg string
		status         int
	}{
		{`{"model":"flash","messages":[{"role":"user","content":"hi"}]}`, "invalid_request_error", "max_tokens: Field required", 400},
		{`{"model":"flash","max_tokens":5,"messages":[{"role":"user","content":[{"type":"text","text":"hi","colour":"red"}]}]}`, "invalid_request_error", "messages[0].content[0].colour", 400},
		{`{"model":"flash","max_tokens":5,`, "invalid_request_error", "JSON", 400},
	} {
		req, _ := http.NewRequest("POST", base+"/v1/messages", strings.NewReader(c.body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("x-api-key", k.Key)
		req.Header.Set("anthropic-version", "2023-06-01")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var e struct {
			Type  string
			Error struct{ Type, Message string }
		}
		if json.Unmarshal(b, &e) != nil || resp.StatusCode != c.status || e.Type != "error" || e.Error.Type != c.typ || !strings.Contains(e.Error.Message, c.msg) {
			t.Errorf("%s: %d %s", c.body, resp.StatusCode, b)
		}
	}
	// A wrong key: 401 authentication_error, as the SDK reads it.
	wrong := anthropic.NewClient(option.WithBaseURL(base), option.WithAPIKey("sk-global-wrong"), option.WithMaxRetries(0))
	_, err = wrong.Messages.New(ctx, params)
	if !errors.As(err, &ae) || ae.StatusCode != 401 || ae.Type() != "authentication_error" || !strings.HasPrefix(ae.RawJSON(), `{"type":"error"`) {
		t.Errorf("wrong key: %v", err)
	}
}
