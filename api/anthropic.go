package api

import (
	"bytes"
	"encoding/json"
	"fmt"
)

// This file holds the wire types of Anthropic's Messages API (POST
// /v1/messages), which the server translates to and from the chat types
// above: requests as Anthropic's SDKs send them, responses, stream events
// and the error object.

// MessagesRequest is the body of POST /v1/messages.
type MessagesRequest struct {
	Model         string              `json:"model"`
	MaxTokens     *int                `json:"max_tokens"`
	Messages      []InputMessage      `json:"messages"`
	System        *BlockContent       `json:"system"`
	StopSequences []string            `json:"stop_sequences"`
	Temperature   *float64            `json:"temperature"`
	TopP          *float64            `json:"top_p"`
	TopK          *int                `json:"top_k"`
	Stream        bool                `json:"stream"`
	Metadata      *MessagesMetadata   `json:"metadata"`
	Tools         []MessagesTool      `json:"tools"`
	ToolChoice    *MessagesToolChoice `json:"tool_choice"`
	Thinking      *ThinkingConfig     `json:"thinking"`
	OutputConfig  *OutputConfig       `json:"output_config"`
	// CacheControl (automatic prompt caching) is accepted and ignored: the
	// prefix cache needs no breakpoints.
	CacheControl json.RawMessage `json:"cache_control"`
	// ServiceTier is accepted ("auto", "standard_only") and ignored.
	ServiceTier *string `json:"service_tier"`
}

// InputMessage is one message of a Messages request: role "user" or
// "assistant", content a string or a list of content blocks.
type InputMessage struct {
	Role    string       `json:"role"`
	Content BlockContent `json:"content"`
}

// BlockContent is a string or a list of content blocks (a message's
// content, the system prompt, a tool result's content).
type BlockContent struct {
	Text   string
	Blocks []ContentBlock
	// IsBlocks says the content was a list.
	IsBlocks bool
}

// BlockContentError is the error of a BlockContent that is neither a string
// nor a list.
type BlockContentError struct{ Kind string }

func (e *BlockContentError) Error() string {
	return fmt.Sprintf("content must be a string or an array of content blocks, but got %s", e.Kind)
}

// UnmarshalJSON accepts a string or an array of content blocks.
func (c *BlockContent) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	switch {
	case len(b) > 0 && b[0] == '"':
		*c = BlockContent{}
		return json.Unmarshal(b, &c.Text)
	case len(b) > 0 && b[0] == '[':
		*c = BlockContent{IsBlocks: true}
		return json.Unmarshal(b, &c.Blocks)
	}
	return &BlockContentError{Kind: jsonKind(b)}
}

// MarshalJSON writes the string or list form.
func (c BlockContent) MarshalJSON() ([]byte, error) {
	if c.IsBlocks {
		if c.Blocks == nil {
			return []byte("[]"), nil
		}
		return json.Marshal(c.Blocks)
	}
	return json.Marshal(c.Text)
}

// ContentBlock is one block of request content; which fields apply depends
// on Type: "text" (Text), "image" (Source), "tool_use" (ID, Name, Input),
// "tool_result" (ToolUseID, Content, IsError), "thinking" (Thinking,
// Signature), "redacted_thinking" (Data).
type ContentBlock struct {
	Type      string          `json:"type"`
	Text      *string         `json:"text,omitempty"`
	Source    *ImageSource    `json:"source,omitempty"`
	ID        string          `json:"id,omitempty"`
	Name      string          `json:"name,omitempty"`
	Input     json.RawMessage `json:"input,omitempty"`
	ToolUseID string          `json:"tool_use_id,omitempty"`
	Content   *BlockContent   `json:"content,omitempty"`
	IsError   *bool           `json:"is_error,omitempty"`
	Thinking  *string         `json:"thinking,omitempty"`
	Signature *string         `json:"signature,omitempty"`
	Data      string          `json:"data,omitempty"`
	// CacheControl (prompt caching breakpoints) is accepted and ignored:
	// the prefix cache needs no breakpoints. Citations are accepted on
	// text blocks sent back and ignored.
	CacheControl json.RawMessage `json:"cache_control,omitempty"`
	Citations    json.RawMessage `json:"citations,omitempty"`
}

// ImageSource is the source of an image block: "base64" (MediaType, Data)
// or "url" (URL).
type ImageSource struct {
	Type      string `json:"type"`
	MediaType string `json:"media_type,omitempty"`
	Data      string `json:"data,omitempty"`
	URL       string `json:"url,omitempty"`
	FileID    string `json:"file_id,omitempty"`
}

// MessagesMetadata is a request's metadata (accepted and ignored).
type MessagesMetadata struct {
	UserID *string `json:"user_id"`
}

// MessagesTool is a client tool definition.
type MessagesTool struct {
	Type         string          `json:"type,omitempty"`
	Name         string          `json:"name"`
	Description  string          `json:"description,omitempty"`
	InputSchema  json.RawMessage `json:"input_schema,omitempty"`
	Strict       *bool           `json:"strict,omitempty"`
	CacheControl json.RawMessage `json:"cache_control,omitempty"`
}

// MessagesToolChoice is {"type": "auto"|"any"|"tool"|"none"}, with the
// tool's name for "tool".
type MessagesToolChoice struct {
	Type                   string `json:"type"`
	Name                   string `json:"name,omitempty"`
	DisableParallelToolUse *bool  `json:"disable_parallel_tool_use,omitempty"`
}

// ThinkingConfig is {"type": "enabled", "budget_tokens": N}, {"type":
// "disabled"} or {"type": "adaptive"}.
type ThinkingConfig struct {
	Type         string `json:"type"`
	BudgetTokens *int   `json:"budget_tokens,omitempty"`
	// Display is "summarized" (the default here) or "omitted" (thinking
	// blocks come back with empty text).
	Display string `json:"display,omitempty"`
}

// OutputConfig is a request's output_config.
type OutputConfig struct {
	Effort *string `json:"effort,omitempty"`
	// Format (structured outputs) is not supported yet.
	Format json.RawMessage `json:"format,omitempty"`
}

// MessagesResponse is a Message: the response of a non-streamed request,
// and (empty) the message of a stream's message_start event.
type MessagesResponse struct {
	ID           string          `json:"id"`
	Type         string          `json:"type"` // "message"
	Role         string          `json:"role"` // "assistant"
	Model        string          `json:"model"`
	Content      []ResponseBlock `json:"content"`
	StopReason   *string         `json:"stop_reason"`
	StopSequence *string         `json:"stop_sequence"`
	Usage        MessagesUsage   `json:"usage"`
	// Stepflash is stepflash's extension object (the applied effort, the
	// backend, the region), as on chat completions.
	Stepflash *Extension `json:"stepflash,omitempty"`
}

// Stop reasons of a Message.
const (
	StopEndTurn   = "end_turn"
	StopMaxTokens = "max_tokens"
	StopSequence  = "stop_sequence"
	StopToolUse   = "tool_use"
	StopRefusal   = "refusal"
	StopPauseTurn = "pause_turn"
)

// MessagesUsage is a Message's usage. InputTokens are the prompt tokens
// that were not read from the cache (Anthropic's sense: the prompt is
// InputTokens + CacheReadInputTokens + CacheCreationInputTokens).
type MessagesUsage struct {
	InputTokens              int `json:"input_tokens"`
	OutputTokens             int `json:"output_tokens"`
	CacheCreationInputTokens int `json:"cache_creation_input_tokens"`
	CacheReadInputTokens     int `json:"cache_read_input_tokens"`
	// Advisor is stepflash's usage.advisor (Advisor Mode), as on chat
	// completions; absent when the model has no advisor.
	Advisor *AdvisorUsage `json:"advisor,omitempty"`
	// Cost is the request's cost in USD (stepflash's extension, as
	// usage.cost on chat completions).
	Cost float64 `json:"cost,omitempty"`
}

// ResponseBlock is one content block of a Message: "text" (Text),
// "thinking" (Thinking, Signature) or "tool_use" (ID, Name, Input). Each
// type is written with exactly its own fields.
type ResponseBlock struct {
	Type      string
	Text      string
	Thinking  string
	Signature string
	ID        string
	Name      string
	Input     json.RawMessage
}

// MarshalJSON writes the fields of the block's type.
func (b ResponseBlock) MarshalJSON() ([]byte, error) {
	switch b.Type {
	case "thinking":
		return json.Marshal(struct {
			Type      string `json:"type"`
			Thinking  string `json:"thinking"`
			Signature string `json:"signature"`
		}{b.Type, b.Thinking, b.Signature})
	case "tool_use":
		input := b.Input
		if len(input) == 0 {
			input = json.RawMessage("{}")
		}
		return json.Marshal(struct {
			Type  string          `json:"type"`
			ID    string          `json:"id"`
			Name  string          `json:"name"`
			Input json.RawMessage `json:"input"`
		}{b.Type, b.ID, b.Name, input})
	}
	return json.Marshal(struct {
		Type string `json:"type"`
		Text string `json:"text"`
	}{b.Type, b.Text})
}

// UnmarshalJSON reads any of the three block types.
func (b *ResponseBlock) UnmarshalJSON(data []byte) error {
	var v struct {
		Type      string          `json:"type"`
		Text      string          `json:"text"`
		Thinking  string          `json:"thinking"`
		Signature string          `json:"signature"`
		ID        string          `json:"id"`
		Name      string          `json:"name"`
		Input     json.RawMessage `json:"input"`
	}
	if err := json.Unmarshal(data, &v); err != nil {
		return err
	}
	*b = ResponseBlock{Type: v.Type, Text: v.Text, Thinking: v.Thinking, Signature: v.Signature, ID: v.ID, Name: v.Name, Input: v.Input}
	return nil
}

// Stream events of a streamed Message, in order: message_start; for each
// content block content_block_start, content_block_delta..., and
// content_block_stop; message_delta (the stop reason and the usage);
// message_stop. An error after the stream began is an "error" event.

// MessageStartEvent is the first event of a stream.
type MessageStartEvent struct {
	Type    string            `json:"type"` // "message_start"
	Message *MessagesResponse `json:"message"`
}

// ContentBlockStartEvent opens content block Index.
type ContentBlockStartEvent struct {
	Type         string        `json:"type"` // "content_block_start"
	Index        int           `json:"index"`
	ContentBlock ResponseBlock `json:"content_block"`
}

// ContentBlockDeltaEvent adds to content block Index.
type ContentBlockDeltaEvent struct {
	Type  string     `json:"type"` // "content_block_delta"
	Index int        `json:"index"`
	Delta BlockDelta `json:"delta"`
}

// BlockDelta is "text_delta" (Text), "thinking_delta" (Thinking),
// "signature_delta" (Signature) or "input_json_delta" (PartialJSON).
type BlockDelta struct {
	Type        string  `json:"type"`
	Text        *string `json:"text,omitempty"`
	Thinking    *string `json:"thinking,omitempty"`
	Signature   *string `json:"signature,omitempty"`
	PartialJSON *string `json:"partial_json,omitempty"`
}

// ContentBlockStopEvent closes content block Index.
type ContentBlockStopEvent struct {
	Type  string `json:"type"` // "content_block_stop"
	Index int    `json:"index"`
}

// MessageDeltaEvent carries the stop reason and the usage of the whole
// message.
type MessageDeltaEvent struct {
	Type  string        `json:"type"` // "message_delta"
	Delta MessageDelta  `json:"delta"`
	Usage MessagesUsage `json:"usage"`
}

// MessageDelta is the top-level change of a message_delta event.
type MessageDelta struct {
	StopReason   *string `json:"stop_reason"`
	StopSequence *string `json:"stop_sequence"`
}

// MessageStopEvent ends a stream.
type MessageStopEvent struct {
	Type string `json:"type"` // "message_stop"
}

// Anthropic error types (the error object's "type").
const (
	AnthropicInvalidRequest  = "invalid_request_error"
	AnthropicAuthentication  = "authentication_error"
	AnthropicBilling         = "billing_error"
	AnthropicPermission      = "permission_error"
	AnthropicNotFound        = "not_found_error"
	AnthropicRequestTooLarge = "request_too_large"
	AnthropicRateLimit       = "rate_limit_error"
	AnthropicAPIError        = "api_error"
	AnthropicTimeout         = "timeout_error"
	AnthropicOverloaded      = "overloaded_error"
)

// MessagesError is the body of every error on the Messages path, and the
// data of a stream's "error" event: {"type": "error", "error": {"type",
// "message"}, "request_id"}.
type MessagesError struct {
	Type      string              `json:"type"` // "error"
	Error     MessagesErrorDetail `json:"error"`
	RequestID string              `json:"request_id,omitempty"`
}

// MessagesErrorDetail is the error object inside a MessagesError.
type MessagesErrorDetail struct {
	Type    string `json:"type"`
	Message string `json:"message"`
}
