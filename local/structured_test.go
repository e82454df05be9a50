package local_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/shared"
	"github.com/stepflash/stepflash/internal/testserve"
	"github.com/stepflash/stepflash/server"
)

// TestStructuredOutputs asks a random-weight model for structured output
// through the official SDK, as .parse()-style clients do: every answer must
// finish on its own (finish_reason stop) and hold to the schema.
func TestStructuredOutputs(t *testing.T) {
	s := testserve.Start(t, server.Config{}, []testserve.Real{{File: "tiny-llama-F32.gguf", Name: "tl"}})
	schema := map[string]any{
		"type": "object",
		"properties": map[string]any{
			"city":  map[string]any{"type": "string", "enum": []string{"Paris", "Oslo", "Lima"}},
			"temps": map[string]any{"type": "array", "items": map[string]any{"type": "integer"}, "minItems": 1, "maxItems": 3},
			"note":  map[string]any{"anyOf": []any{map[string]any{"type": "null"}, map[string]any{"type": "string", "maxLength": 5}}},
		},
		"required":             []string{"city", "temps", "note"},
		"additionalProperties": false,
	}
	for seed := range 8 {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			res, err := s.Client.Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{
				Model:       "tl",
				Messages:    []openai.ChatCompletionMessageParamUnion{openai.UserMessage("The weather, as JSON.")},
				MaxTokens:   openai.Int(300),
				Temperature: openai.Float(1.0),
				Seed:        openai.Int(int64(seed)),
				ResponseFormat: openai.ChatCompletionNewParamsResponseFormatUnion{OfJSONSchema: &shared.ResponseFormatJSONSchemaParam{
					JSONSchema: shared.ResponseFormatJSONSchemaJSONSchemaParam{Name: "weather", Schema: schema, Strict: openai.Bool(true)},
				}},
			})
			if err != nil {
				t.Fatal(err)
			}
			c := res.Choices[0]
			if c.FinishReason != "stop" {
				t.Fatalf("finish_reason %q: %q", c.FinishReason, c.Message.Content)
			}
			var out struct {
				City  string  `json:"city"`
				Temps []int64 `json:"temps"`
				Note  *string `json:"note"`
			}
			d := json.NewDecoder(bytes.NewReader([]byte(c.Message.Content)))
			d.DisallowUnknownFields()
			if err := d.Decode(&out); err != nil || d.More() {
				t.Fatalf("%q: %v", c.Message.Content, err)
			}
			var raw map[string]json.RawMessage
			_ = json.Unmarshal([]byte(c.Message.Content), &raw)
			_, hasNote := raw["note"]
			if !slices.Contains([]string{"Paris", "Oslo", "Lima"}, out.City) || len(out.Temps) < 1 || len(out.Temps) > 3 ||
				!hasNote || out.Note != nil && len([]rune(*out.Note)) > 5 {
				t.Fatalf("%q does not hold to the schema", c.Message.Content)
			}
		})
	}
	// Schemas the engine cannot enforce are a 400 naming what is wrong;
	// without strict, unsupported keywords are not enforced.
	for _, tc := range []struct {
		format string
		status int
		param  string
	}{
		{`{"type":"json_schema","json_schema":{"name":"x","strict":true,"schema":{"type":"object","properties":{"a":{"type":"string","pattern":"^a"}}}}}`, 400, "response_format.json_schema.schema"},
		{`{"type":"json_schema","json_schema":{"name":"x","schema":{"type":"object","properties":{"a":{"type":"string","pattern":"^a"}},"additionalProperties":false}}}`, 200, ""},
		{`{"type":"json_schema","json_schema":{"schema":{"type":"object"}}}`, 400, "response_format.json_schema.name"},
		{`{"type":"json_schema","json_schema":{"name":"x","strict":true,"schema":{"type":"integer"}}}`, 400, "response_format.json_schema.schema"},
		{`{"type":"json_schema"}`, 400, "response_format.json_schema"},
	} {
		var format openai.ChatCompletionNewParamsResponseFormatUnion
		if err := json.Unmarshal([]byte(tc.format), &format); err != nil {
			t.Fatal(err)
		}
		_, err := s.Client.Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{
			Model: "tl", Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hi")},
			MaxTokens: openai.Int(30), ResponseFormat: format,
		})
		var apiErr *openai.Error
		switch {
		case tc.status == 200 && err != nil:
			t.Errorf("%s: %v", tc.format, err)
		case tc.status != 200 && (!errors.As(err, &apiErr) || apiErr.StatusCode != tc.status || apiErr.Param != tc.param):
			t.Errorf("%s: got %v, want %d naming %s", tc.format, err, tc.status, tc.param)
		}
	}
}
