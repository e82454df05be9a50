package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/shared"
	"github.com/stepflash/stepflash/chat"
	"github.com/stepflash/stepflash/gguf"
	"github.com/stepflash/stepflash/internal/thinkmodel"
	"github.com/stepflash/stepflash/tokenizer"
)

// thinkingTemplate is the real Qwen3.6 chat template (chat's test data):
// Qwen3's thinking switch, and with enable_thinking unset or true its
// generation prompt opens the thinking block ("<think>\n"), so a request
// starts inside it whatever a random model would write. (Qwen3's own
// template leaves the opening to the model.)
const thinkingTemplate = "../../chat/testdata/templates/qwen3.6.jinja"

// thinkingModelFile writes a copy of tiny-qwen3-F32 whose tokens 1000 and
// 1001 are <think> and </think> (user-defined, as in Qwen3) and whose
// tokenizer.chat_template is thinkingTemplate. The tiny GPT-2 vocabulary
// has no <|im_start|> tokens, so the template's markers are plain text.
func thinkingModelFile(t *testing.T) (path, template string) {
	t.Helper()
	src, err := os.ReadFile(thinkingTemplate)
	if err != nil {
		t.Fatal(err)
	}
	return thinkmodel.Write(t, "tiny-qwen3-F32.gguf", string(src)), string(src)
}

// TestServeThinkingBudget is the issue's check, end to end through `stepflash
// serve --config` and the official SDK: a thinking model with a tiny budget
// stops thinking at the budget and still answers. The configured policy
// (medium 5 tokens, high 12) is what the echo, the header and the engine
// apply; low renders the template with enable_thinking=false.
func TestServeThinkingBudget(t *testing.T) {
	path, src := thinkingModelFile(t)
	const medium, high = 5, 12
	cfg := filepath.Join(t.TempDir(), "serve.json")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`{"models":[{"model":%q,"name":"thinker","effort":{"medium":{"thinking_budget":%d},"high":{"thinking_budget":%d}}}]}`,
		path, medium, high)), 0o644)
	base, _, _ := startServe(t, "--config", cfg, "--quiet")
	client := openai.NewClient(option.WithBaseURL(base+"/v1"), option.WithAPIKey("sk-test"), option.WithMaxRetries(0),
		option.WithRequestTimeout(2*time.Minute))

	f, err := gguf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tok, err := tokenizer.FromGGUF(f)
	if err != nil {
		t.Fatal(err)
	}
	tmpl, err := chat.NewTemplate(src)
	if err != nil {
		t.Fatal(err)
	}
	openID, _ := tok.Lookup("<think>")
	closeID, _ := tok.Lookup("</think>")
	// The hand-over the engine writes, up to its closing tag, as the
	// pieces logprobs report; and the text reasoning_content ends with.
	var handOver []string
	for _, id := range tok.Encode(chat.DefaultThinking.HandOver, false, true) {
		handOver = append(handOver, string(tok.PieceSpecial(id)))
		if id == closeID {
			break
		}
	}
	handOverText := strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(chat.DefaultThinking.HandOver), "</think>"))
	// With a budget of 0 there is nothing to hand over from: just the close.
	var closeNow []string
	for _, id := range tok.Encode(chat.DefaultThinking.CloseEmpty, false, true) {
		closeNow = append(closeNow, string(tok.PieceSpecial(id)))
		if id == closeID {
			break
		}
	}
	question := "Why is the sky blue?"
	promptTokens := func(thinking *bool) int64 {
		text, err := tmpl.Render([]chat.Message{{Role: "user", Content: question}}, chat.RenderOptions{AddGenerationPrompt: true,
			EnableThinking: thinking, BOS: tok.TokenText(tok.BOS()), EOS: tok.TokenText(tok.EOS())})
		if err != nil {
			t.Fatal(err)
		}
		return int64(len(tok.Encode(text, false, true)))
	}
	off := false
	thinkingOn, thinkingOff := promptTokens(nil), promptTokens(&off)
	if thinkingOn == thinkingOff {
		t.Fatalf("the template renders the same prompt with and without thinking")
	}
	noTags := map[string]int64{fmt.Sprint(openID): -100, fmt.Sprint(closeID): -100}
	cases := []struct {
		name      string
		effort    string
		bias      map[string]int64 // logit_bias: keeps the model from writing the tags itself, or makes it
		maxTokens int64
		budget    int   // echoed
		prompt    int64 // prompt tokens: which way the template rendered
		// thinking is the tokens the model writes in the block before the
		// hand-over; -1: no block unless the model opens one itself.
		thinking int
		content  bool // an answer follows
	}{
		{"default is medium", "", noTags, 64, medium, thinkingOn, medium, true},
		{"medium", "medium", noTags, 64, medium, thinkingOn, medium, true},
		{"high", "high", noTags, 64, high, thinkingOn, high, true},
		{"low: thinking off", "low", nil, 32, 0, thinkingOff, -1, true},
		{"low: a block the model opens is closed at once", "low", map[string]int64{fmt.Sprint(openID): 100}, int64(1 + len(closeNow)), 0, thinkingOff, 1, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			params := openai.ChatCompletionNewParams{Model: "thinker", Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage(question)},
				MaxTokens: openai.Int(tc.maxTokens), Temperature: openai.Float(0), Logprobs: openai.Bool(true), LogitBias: tc.bias}
			if tc.effort != "" {
				params.ReasoningEffort = shared.ReasoningEffort(tc.effort)
			}
			var hr *http.Response
			resp, err := client.Chat.Completions.New(context.Background(), params, option.WithResponseInto(&hr))
			if err != nil {
				t.Fatal(err)
			}
			c := resp.Choices[0]
			var reasoning string
			if f, ok := c.Message.JSON.ExtraFields["reasoning_content"]; ok {
				json.Unmarshal([]byte(f.Raw()), &reasoning)
			}
			var pieces []string
			for _, lp := range c.Logprobs.Content {
				pieces = append(pieces, lp.Token)
			}
			u := resp.Usage
			t.Logf("usage %d+%d (reasoning %d), finish %s\nreasoning %q\ncontent %q", u.PromptTokens, u.CompletionTokens,
				u.CompletionTokensDetails.ReasoningTokens, c.FinishReason, reasoning, c.Message.Content)
			applied := cmp.Or(tc.effort, "medium")
			var ext struct {
				Effort struct {
					Requested      *string `json:"requested"`
					Applied        string  `json:"applied"`
					ThinkingBudget *int    `json:"thinking_budget"`
				} `json:"effort"`
			}
			json.Unmarshal([]byte(resp.JSON.ExtraFields["stepflash"].Raw()), &ext)
			if hr.Header.Get("X-Reasoning-Effort") != applied || ext.Effort.Applied != applied || ext.Effort.ThinkingBudget == nil ||
				*ext.Effort.ThinkingBudget != tc.budget || (ext.Effort.Requested == nil) != (tc.effort == "") {
				t.Errorf("effort: header %q, echo %s; want %s with budget %d", hr.Header.Get("X-Reasoning-Effort"), resp.JSON.ExtraFields["stepflash"].Raw(), applied, tc.budget)
			}
			if u.PromptTokens != tc.prompt {
				t.Errorf("%d prompt tokens, want %d (thinking on: %d, off: %d)", u.PromptTokens, tc.prompt, thinkingOn, thinkingOff)
			}
			if c.FinishReason != "length" && c.FinishReason != "stop" {
				t.Errorf("finish_reason %q", c.FinishReason)
			}
			if tc.content && strings.TrimSpace(c.Message.Content) == "" {
				t.Errorf("no answer after the thinking block: content %q", c.Message.Content)
			}
			// The reasoning tokens are those up to the first </think>.
			end := slices.Index(pieces, "</think>")
			if tc.thinking < 0 && end < 0 {
				if u.CompletionTokensDetails.ReasoningTokens != 0 || reasoning != "" {
					t.Errorf("no thinking block, yet %d reasoning tokens, reasoning_content %q", u.CompletionTokensDetails.ReasoningTokens, reasoning)
				}
				return
			}
			thinking := tc.thinking
			if tc.thinking < 0 { // the model opened a block itself: closed at once
				thinking = slices.Index(pieces, "<think>") + 1
			}
			if end < 0 || u.CompletionTokensDetails.ReasoningTokens != int64(end+1) {
				t.Fatalf("%d reasoning tokens; </think> at %d in %q", u.CompletionTokensDetails.ReasoningTokens, end, pieces)
			}
			forced, forcedText := handOver, handOverText
			if tc.budget == 0 {
				forced, forcedText = closeNow, ""
			}
			if end+1 != thinking+len(forced) || !slices.Equal(pieces[thinking:end+1], forced) {
				t.Errorf("the block is not %d tokens then the forced close %q: %q", thinking, forced, pieces[:end+1])
			}
			if !strings.HasSuffix(reasoning, forcedText) || (tc.thinking <= 1 && reasoning != forcedText) {
				t.Errorf("reasoning_content %q does not end with %q", reasoning, forcedText)
			}
		})
	}

	// A forced tool call renders the template with thinking off, so the
	// echo says the budget applied is 0 whatever the tier grants.
	t.Run("forced tool call: thinking off", func(t *testing.T) {
		tool := openai.ChatCompletionFunctionTool(shared.FunctionDefinitionParam{Name: "get_weather",
			Parameters: shared.FunctionParameters{"type": "object", "properties": map[string]any{"city": map[string]any{"type": "string"}}}})
		resp, err := client.Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{Model: "thinker",
			Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage(question)}, MaxTokens: openai.Int(8),
			ReasoningEffort: shared.ReasoningEffort("high"), Tools: []openai.ChatCompletionToolUnionParam{tool},
			ToolChoice: openai.ChatCompletionToolChoiceOptionUnionParam{OfAuto: openai.String("required")}})
		if err != nil {
			t.Fatal(err)
		}
		var ext struct {
			Effort struct {
				Applied        string `json:"applied"`
				ThinkingBudget *int   `json:"thinking_budget"`
			} `json:"effort"`
		}
		json.Unmarshal([]byte(resp.JSON.ExtraFields["stepflash"].Raw()), &ext)
		if ext.Effort.Applied != "high" || ext.Effort.ThinkingBudget == nil || *ext.Effort.ThinkingBudget != 0 {
			t.Errorf("echo %s, want high with thinking_budget 0", resp.JSON.ExtraFields["stepflash"].Raw())
		}
	})

	t.Run("stream", func(t *testing.T) {
		st := client.Chat.Completions.NewStreaming(context.Background(), openai.ChatCompletionNewParams{Model: "thinker",
			Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage(question)}, MaxTokens: openai.Int(64),
			Temperature: openai.Float(0), LogitBias: noTags, StreamOptions: openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}})
		var reasoning, content strings.Builder
		var usage openai.CompletionUsage
		for st.Next() {
			ch := st.Current()
			for _, c := range ch.Choices {
				var r string
				if f, ok := c.Delta.JSON.ExtraFields["reasoning_content"]; ok {
					json.Unmarshal([]byte(f.Raw()), &r)
				}
				reasoning.WriteString(r)
				content.WriteString(c.Delta.Content)
			}
			if ch.Usage.CompletionTokens > 0 {
				usage = ch.Usage
			}
		}
		if err := st.Err(); err != nil {
			t.Fatal(err)
		}
		if !strings.HasSuffix(reasoning.String(), handOverText) || strings.TrimSpace(content.String()) == "" ||
			usage.CompletionTokensDetails.ReasoningTokens != int64(medium+len(handOver)) {
			t.Errorf("stream: reasoning %q, content %q, usage %+v", reasoning.String(), content.String(), usage)
		}
	})

	_, err = client.Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{Model: "thinker",
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage(question)}, ReasoningEffort: "max"})
	var apiErr *openai.Error
	if !errors.As(err, &apiErr) || apiErr.StatusCode != 400 || apiErr.Code != "invalid_reasoning_effort" || apiErr.Param != "reasoning_effort" ||
		!strings.Contains(apiErr.Message, "low, medium, high") {
		t.Errorf("reasoning_effort max: %v", err)
	}
}
