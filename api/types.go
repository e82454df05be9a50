package api

import (
	"bytes"
	"encoding/json"
	"reflect"
)

// Message is one chat message of a request.
type Message struct {
	Role    string         `json:"role"`
	Content MessageContent `json:"content"`
	Name    string         `json:"name,omitempty"`
	// ToolCalls are the calls an assistant message made.
	ToolCalls []ToolCall `json:"tool_calls,omitempty"`
	// ToolCallID is the call a tool message answers.
	ToolCallID string `json:"tool_call_id,omitempty"`
	// ReasoningContent and Reasoning carry an assistant message's reasoning
	// back into the conversation (either name is accepted).
	ReasoningContent *string `json:"reasoning_content,omitempty"`
	Reasoning        *string `json:"reasoning,omitempty"`
	// Refusal is accepted on assistant messages (and ignored when null).
	Refusal *string `json:"refusal,omitempty"`
}

// ContentPart is one element of list-form message content.
type ContentPart struct {
	Type string `json:"type"`
	Text string `json:"text"`
	// ImageURL is set for "image_url" parts (not supported yet).
	ImageURL json.RawMessage `json:"image_url,omitempty"`
}

// MessageContent is a message's content: a string, a list of content parts,
// or null.
type MessageContent struct {
	Text  string
	Parts []ContentPart
	// IsParts says the content was a list; IsNull that it was null or absent.
	IsParts bool
	IsNull  bool
}

// UnmarshalJSON accepts a string, an array of parts, or null.
func (c *MessageContent) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	switch {
	case string(b) == "null":
		*c = MessageContent{IsNull: true}
		return nil
	case len(b) > 0 && b[0] == '"':
		*c = MessageContent{}
		return json.Unmarshal(b, &c.Text)
	case len(b) > 0 && b[0] == '[':
		*c = MessageContent{IsParts: true}
		return json.Unmarshal(b, &c.Parts)
	}
	return &json.UnmarshalTypeError{Value: jsonKind(b), Type: reflect.TypeFor[MessageContent]()}
}

// MarshalJSON writes the string or list form.
func (c MessageContent) MarshalJSON() ([]byte, error) {
	switch {
	case c.IsParts:
		return json.Marshal(c.Parts)
	case c.IsNull:
		return []byte("null"), nil
	}
	return json.Marshal(c.Text)
}

// Stop is the stop field: a string or a list of strings.
type Stop []string

// UnmarshalJSON accepts a string, an array of strings, or null.
func (s *Stop) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	switch {
	case string(b) == "null":
		*s = nil
		return nil
	case len(b) > 0 && b[0] == '"':
		var one string
		if err := json.Unmarshal(b, &one); err != nil {
			return err
		}
		*s = Stop{one}
		return nil
	case len(b) > 0 && b[0] == '[':
		var many []string
		if err := json.Unmarshal(b, &many); err != nil {
			return &json.UnmarshalTypeError{Value: "array", Type: reflect.TypeFor[Stop]()}
		}
		*s = many
		return nil
	}
	return &json.UnmarshalTypeError{Value: jsonKind(b), Type: reflect.TypeFor[Stop]()}
}

// ToolCall is a function call in an assistant message or a response.
type ToolCall struct {
	// Index is set only in streaming deltas.
	Index    *int         `json:"index,omitempty"`
	ID       string       `json:"id,omitempty"`
	Type     string       `json:"type,omitempty"`
	Function FunctionCall `json:"function"`
}

// FunctionCall is the function part of a ToolCall.
type FunctionCall struct {
	Name      string `json:"name,omitempty"`
	Arguments string `json:"arguments"`
}

// Tool is a tool definition of a request.
type Tool struct {
	Type     string       `json:"type"`
	Function ToolFunction `json:"function"`
}

// ToolFunction describes a function tool.
type ToolFunction struct {
	Name        string          `json:"name"`
	Description string          `json:"description,omitempty"`
	Parameters  json.RawMessage `json:"parameters,omitempty"`
	Strict      *bool           `json:"strict,omitempty"`
}

// ToolChoice is "none", "auto", "required", or a named function.
type ToolChoice struct {
	// Mode is "none", "auto" or "required"; "function" for a named choice.
	Mode string
	// Function is the named function when Mode is "function".
	Function string
}

// UnmarshalJSON accepts a mode string or {"type":"function","function":{"name":...}}.
func (t *ToolChoice) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	switch {
	case string(b) == "null":
		*t = ToolChoice{}
		return nil
	case len(b) > 0 && b[0] == '"':
		*t = ToolChoice{}
		return json.Unmarshal(b, &t.Mode)
	case len(b) > 0 && b[0] == '{':
		var o struct {
			Type     string `json:"type"`
			Function struct {
				Name string `json:"name"`
			} `json:"function"`
		}
		if err := json.Unmarshal(b, &o); err != nil {
			return err
		}
		*t = ToolChoice{Mode: o.Type, Function: o.Function.Name}
		return nil
	}
	return &json.UnmarshalTypeError{Value: jsonKind(b), Type: reflect.TypeFor[ToolChoice]()}
}

// StreamOptions are the stream_options of a request.
type StreamOptions struct {
	IncludeUsage bool `json:"include_usage"`
	// ContinuousUsageStats is a vLLM extension (not supported).
	ContinuousUsageStats *bool `json:"continuous_usage_stats,omitempty"`
	// IncludeObfuscation asks for random padding on chunks (not supported;
	// false is accepted).
	IncludeObfuscation *bool `json:"include_obfuscation,omitempty"`
}

// ResponseFormat is the response_format of a request.
type ResponseFormat struct {
	Type       string          `json:"type"`
	JSONSchema json.RawMessage `json:"json_schema,omitempty"`
}

// ChatCompletionRequest is the body of POST /v1/chat/completions.
type ChatCompletionRequest struct {
	Model               string             `json:"model"`
	Messages            []Message          `json:"messages"`
	MaxTokens           *int               `json:"max_tokens"`
	MaxCompletionTokens *int               `json:"max_completion_tokens"`
	Temperature         *float64           `json:"temperature"`
	TopP                *float64           `json:"top_p"`
	TopK                *int               `json:"top_k"`
	MinP                *float64           `json:"min_p"`
	Seed                *int64             `json:"seed"`
	Stop                Stop               `json:"stop"`
	N                   *int               `json:"n"`
	Stream              bool               `json:"stream"`
	StreamOptions       *StreamOptions     `json:"stream_options"`
	Logprobs            bool               `json:"logprobs"`
	TopLogprobs         *int               `json:"top_logprobs"`
	PresencePenalty     *float64           `json:"presence_penalty"`
	FrequencyPenalty    *float64           `json:"frequency_penalty"`
	LogitBias           map[string]float64 `json:"logit_bias"`
	User                string             `json:"user"`
	ResponseFormat      *ResponseFormat    `json:"response_format"`
	Tools               []Tool             `json:"tools"`
	ToolChoice          *ToolChoice        `json:"tool_choice"`
	ParallelToolCalls   *bool              `json:"parallel_tool_calls"`
	ReasoningEffort     *string            `json:"reasoning_effort"`
	// Reasoning is OpenRouter's form of the effort: {"effort": "high"}.
	Reasoning *ReasoningParam `json:"reasoning"`
	// Extensions and accepted no-ops.
	ChatTemplateKwargs map[string]any    `json:"chat_template_kwargs"`
	Advisor            *string           `json:"advisor"`
	Store              *bool             `json:"store"`
	Metadata           map[string]string `json:"metadata"`
	ServiceTier        *string           `json:"service_tier"`
	PromptCacheKey     string            `json:"prompt_cache_key"`
	SafetyIdentifier   string            `json:"safety_identifier"`
	Modalities         []string          `json:"modalities"`
	IgnoreEOS          bool              `json:"ignore_eos"`
}

// Prompt is the prompt of a legacy completion: a string, a list of strings,
// a list of token ids, or a list of token id lists.
type Prompt struct {
	Texts  []string
	Tokens [][]int32
}

// UnmarshalJSON accepts the four prompt forms.
func (p *Prompt) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	bad := &json.UnmarshalTypeError{Value: jsonKind(b), Type: reflect.TypeFor[Prompt]()}
	*p = Prompt{}
	switch {
	case len(b) > 0 && b[0] == '"':
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		p.Texts = []string{s}
		return nil
	case len(b) > 0 && b[0] == '[':
		var raw []json.RawMessage
		if err := json.Unmarshal(b, &raw); err != nil {
			return err
		}
		if len(raw) == 0 {
			return nil
		}
		var ss []string
		if json.Unmarshal(b, &ss) == nil {
			p.Texts = ss
			return nil
		}
		var ids []int32
		if json.Unmarshal(b, &ids) == nil {
			p.Tokens = [][]int32{ids}
			return nil
		}
		var idss [][]int32
		if json.Unmarshal(b, &idss) == nil {
			p.Tokens = idss
			return nil
		}
		bad.Value = "array"
	}
	return bad
}

// MarshalJSON writes the form the prompt was given in (one string or token
// list is written bare).
func (p Prompt) MarshalJSON() ([]byte, error) {
	switch {
	case len(p.Texts) == 1:
		return json.Marshal(p.Texts[0])
	case len(p.Texts) > 1:
		return json.Marshal(p.Texts)
	case len(p.Tokens) == 1:
		return json.Marshal(p.Tokens[0])
	case len(p.Tokens) > 1:
		return json.Marshal(p.Tokens)
	}
	return []byte("[]"), nil
}

// CompletionRequest is the body of POST /v1/completions.
type CompletionRequest struct {
	Model            string             `json:"model"`
	Prompt           *Prompt            `json:"prompt"`
	MaxTokens        *int               `json:"max_tokens"`
	Temperature      *float64           `json:"temperature"`
	TopP             *float64           `json:"top_p"`
	TopK             *int               `json:"top_k"`
	MinP             *float64           `json:"min_p"`
	Seed             *int64             `json:"seed"`
	Stop             Stop               `json:"stop"`
	N                *int               `json:"n"`
	BestOf           *int               `json:"best_of"`
	Stream           bool               `json:"stream"`
	StreamOptions    *StreamOptions     `json:"stream_options"`
	Logprobs         *int               `json:"logprobs"`
	Echo             bool               `json:"echo"`
	Suffix           *string            `json:"suffix"`
	PresencePenalty  *float64           `json:"presence_penalty"`
	FrequencyPenalty *float64           `json:"frequency_penalty"`
	LogitBias        map[string]float64 `json:"logit_bias"`
	User             string             `json:"user"`
	ReasoningEffort  *string            `json:"reasoning_effort"`
	Advisor          *string            `json:"advisor"`
	IgnoreEOS        bool               `json:"ignore_eos"`
}

// jsonKind names the JSON type of a raw value, for error messages.
func jsonKind(b []byte) string {
	if len(b) == 0 {
		return "nothing"
	}
	switch b[0] {
	case '"':
		return "string"
	case '[':
		return "array"
	case '{':
		return "object"
	case 't', 'f':
		return "boolean"
	case 'n':
		return "null"
	}
	return "number"
}

// JSONKind names the JSON type of a raw value ("string", "number", ...).
func JSONKind(b []byte) string { return jsonKind(bytes.TrimSpace(b)) }

// TypeName describes the JSON a Go type accepts, for error messages.
func TypeName(t reflect.Type) string {
	switch t {
	case reflect.TypeFor[MessageContent]():
		return "a string or an array of content parts"
	case reflect.TypeFor[Stop]():
		return "a string or an array of strings"
	case reflect.TypeFor[ToolChoice]():
		return `"none", "auto", "required" or {"type": "function", "function": {"name": ...}}`
	case reflect.TypeFor[Prompt]():
		return "a string, an array of strings, an array of token ids or an array of token id arrays"
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "a boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.Map, reflect.Struct:
		return "an object"
	}
	return t.String()
}

// ReasoningParam is OpenRouter's reasoning object on chat completions.
type ReasoningParam struct {
	Effort *string `json:"effort"`
	// Enabled false turns reasoning off ("none": the lowest tier, no
	// thinking).
	Enabled *bool `json:"enabled"`
	// Exclude (leave the reasoning out of the response) and MaxTokens (a
	// thinking budget in tokens) are not supported: a 400 says so.
	Exclude   bool `json:"exclude"`
	MaxTokens *int `json:"max_tokens"`
}
