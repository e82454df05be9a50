package local_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/shared"

	"github.com/stepflash/stepflash/engine"
	"github.com/stepflash/stepflash/internal/testserve"
	"github.com/stepflash/stepflash/server"
)

// TestForcedToolCallsValidate: a forced tool call (tool_choice required or
// a named function) is written under the tools' schema, so even a model
// that never learned to call tools (the trained addition model, sampled
// hot) returns a declared tool with arguments that hold to its parameters,
// as tool_calls with finish_reason tool_calls.
func TestForcedToolCallsValidate(t *testing.T) {
	s := testserve.Start(t, server.Config{}, []testserve.Real{{File: "trained/flash-Q8_0.gguf", Name: "flash", Opts: engine.Options{Context: 2048}}})
	add := openai.ChatCompletionFunctionTool(shared.FunctionDefinitionParam{Name: "add", Parameters: shared.FunctionParameters{
		"type": "object", "properties": map[string]any{"a": map[string]any{"type": "integer"}, "b": map[string]any{"type": "integer"}},
		"required": []string{"a", "b"}}})
	lookup := openai.ChatCompletionFunctionTool(shared.FunctionDefinitionParam{Name: "lookup", Parameters: shared.FunctionParameters{
		"type": "object", "properties": map[string]any{"q": map[string]any{"type": "string", "maxLength": 8},
			"unit": map[string]any{"enum": []string{"km", "mi"}}}, "required": []string{"q"}}})
	for _, choice := range []struct {
		name string
		tc   openai.ChatCompletionToolChoiceOptionUnionParam
		want string // the tool that must be called; "" for either
	}{
		{"required", openai.ChatCompletionToolChoiceOptionUnionParam{OfAuto: openai.String("required")}, ""},
		{"named", openai.ToolChoiceOptionFunctionToolChoice(openai.ChatCompletionNamedToolChoiceFunctionParam{Name: "lookup"}), "lookup"},
	} {
		for seed := range 6 {
			t.Run(fmt.Sprintf("%s/seed%d", choice.name, seed), func(t *testing.T) {
				res, err := s.Client.Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{Model: "flash",
					Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("What is 12 + 34?")},
					Tools:    []openai.ChatCompletionToolUnionParam{add, lookup}, ToolChoice: choice.tc,
					MaxTokens: openai.Int(300), Temperature: openai.Float(1.2), Seed: openai.Int(int64(seed))})
				if err != nil {
					t.Fatal(err)
				}
				c := res.Choices[0]
				if c.FinishReason != "tool_calls" || len(c.Message.ToolCalls) != 1 {
					t.Fatalf("finish_reason %q, tool calls %+v, content %q", c.FinishReason, c.Message.ToolCalls, c.Message.Content)
				}
				call := c.Message.ToolCalls[0].Function
				d := json.NewDecoder(bytes.NewReader([]byte(call.Arguments)))
				d.DisallowUnknownFields()
				switch {
				case choice.want != "" && call.Name != choice.want:
					t.Fatalf("called %q, want %q", call.Name, choice.want)
				case call.Name == "add":
					var a struct{ A, B *int64 }
					if err := d.Decode(&a); err != nil || a.A == nil || a.B == nil {
						t.Fatalf("add(%s): %v", call.Arguments, err)
					}
				case call.Name == "lookup":
					var a struct {
						Q    *string
						Unit *string
					}
					if err := d.Decode(&a); err != nil || a.Q == nil || len([]rune(*a.Q)) > 8 || (a.Unit != nil && *a.Unit != "km" && *a.Unit != "mi") {
						t.Fatalf("lookup(%s): %v", call.Arguments, err)
					}
				default:
					t.Fatalf("called an undeclared tool %q", call.Name)
				}
			})
		}
	}
}
