package api

import (
	"encoding/json"
)

// This file holds the wire types of OpenAI's Responses API (POST
// /v1/responses), which the server translates to and from the chat types:
// the request as the SDKs send it, the response object, its output items
// and the typed stream events.
//
// The union-valued request fields (input, its items' content, tools,
// tool_choice, text, reasoning) stay raw here: the server reads them item
// by item, so that an error names the exact field (input[2].content[0]).

// ResponsesRequest is the body of POST /v1/responses.
type ResponsesRequest struct {
	Model string `json:"model"`
	// Input is a string (one user message) or an array of input items
	// (ResponsesInputItem).
	Input        json.RawMessage `json:"input"`
	Instructions *string         `json:"instructions"`
	// Tools are ResponsesTool objects; ToolChoice is "auto", "none",
	// "required" or {"type": "function", "name": ...}.
	Tools             []json.RawMessage `json:"tools"`
	ToolChoice        json.RawMessage   `json:"tool_choice"`
	ParallelToolCalls *bool             `json:"parallel_tool_calls"`
	MaxOutputTokens   *int              `json:"max_output_tokens"`
	Temperature       *float64          `json:"temperature"`
	TopP              *float64          `json:"top_p"`
	// Reasoning is a ResponsesReasoning; Text a ResponsesText.
	Reasoning     json.RawMessage   `json:"reasoning"`
	Text          json.RawMessage   `json:"text"`
	Stream        bool              `json:"stream"`
	StreamOptions json.RawMessage   `json:"stream_options"`
	Metadata      map[string]string `json:"metadata"`
	User          *string           `json:"user"`
	// Store is accepted either way; without a response store the server
	// keeps nothing and says so (store: false in the response).
	Store              *bool   `json:"store"`
	PreviousResponseID *string `json:"previous_response_id"`
	// Truncation is "disabled" or "auto" (accepted; nothing is dropped:
	// an input too long for the context is a 400).
	Truncation *string  `json:"truncation"`
	Include    []string `json:"include"`
	// Known fields that are refused unless absent or off (background
	// mode, stored conversations and prompts, logprobs, a tool call cap).
	Background   *bool           `json:"background"`
	Conversation json.RawMessage `json:"conversation"`
	Prompt       json.RawMessage `json:"prompt"`
	TopLogprobs  *int            `json:"top_logprobs"`
	MaxToolCalls *int            `json:"max_tool_calls"`
	// Accepted no-ops, as on chat completions.
	PromptCacheKey       string  `json:"prompt_cache_key"`
	PromptCacheRetention *string `json:"prompt_cache_retention"`
	SafetyIdentifier     string  `json:"safety_identifier"`
	ServiceTier          *string `json:"service_tier"`
	// stepflash's extensions, as on chat completions.
	Seed    *int64   `json:"seed"`
	TopK    *int     `json:"top_k"`
	MinP    *float64 `json:"min_p"`
	Advisor *string  `json:"advisor"`
}

// ResponsesInputItem is one item of a request's input; which fields apply
// depends on Type: "message" (Role, Content; the type may be left out),
// "function_call" (CallID, Name, Arguments), "function_call_output"
// (CallID, Output), "reasoning" (Summary, Content, EncryptedContent),
// "item_reference" (ID). Content and Output are a string or an array of
// ResponsesContentPart.
type ResponsesInputItem struct {
	Type             string          `json:"type"`
	ID               string          `json:"id"`
	Role             string          `json:"role"`
	Content          json.RawMessage `json:"content"`
	Status           string          `json:"status"`
	Phase            *string         `json:"phase"`
	CallID           string          `json:"call_id"`
	Name             string          `json:"name"`
	Arguments        *string         `json:"arguments"`
	Output           json.RawMessage `json:"output"`
	Summary          json.RawMessage `json:"summary"`
	EncryptedContent *string         `json:"encrypted_content"`
}

// ResponsesContentPart is one part of an input item's content: "input_text"
// (Text), "input_image" (ImageURL or FileID, Detail), "input_file"
// (FileData, FileURL, FileID, Filename), "output_text" (Text; Annotations
// and Logprobs of a response sent back are accepted), "refusal"
// (Refusal), and in a reasoning item "reasoning_text" / "summary_text"
// (Text).
type ResponsesContentPart struct {
	Type        string          `json:"type"`
	Text        *string         `json:"text"`
	ImageURL    *string         `json:"image_url"`
	FileID      *string         `json:"file_id"`
	Detail      *string         `json:"detail"`
	FileData    *string         `json:"file_data"`
	FileURL     *string         `json:"file_url"`
	Filename    *string         `json:"filename"`
	Annotations json.RawMessage `json:"annotations"`
	Logprobs    json.RawMessage `json:"logprobs"`
	Refusal     *string         `json:"refusal"`
}

// ResponsesTool is a tool definition. Responses tools are flat: a function
// tool is {"type": "function", "name", "description", "parameters",
// "strict"}.
type ResponsesTool struct {
	Type        string          `json:"type"`
	Name        string          `json:"name"`
	Description *string         `json:"description,omitempty"`
	Parameters  json.RawMessage `json:"parameters,omitempty"`
	Strict      *bool           `json:"strict,omitempty"`
}

// ResponsesReasoning is a request's reasoning object.
type ResponsesReasoning struct {
	Effort *string `json:"effort"`
	// Summary ("auto", "concise", "detailed") is accepted: no summary is
	// written (the reasoning itself comes back as reasoning_text).
	Summary         *string `json:"summary"`
	GenerateSummary *string `json:"generate_summary"`
}

// ResponsesText is a request's text object.
type ResponsesText struct {
	Format    json.RawMessage `json:"format"`
	Verbosity *string         `json:"verbosity"`
}

// ResponsesTextFormat is text.format: {"type": "text"}, {"type":
// "json_object"} or {"type": "json_schema", "name", "schema", "strict",
// "description"}.
type ResponsesTextFormat struct {
	Type        string          `json:"type"`
	Name        string          `json:"name,omitempty"`
	Description string          `json:"description,omitempty"`
	Schema      json.RawMessage `json:"schema,omitempty"`
	Strict      *bool           `json:"strict,omitempty"`
}

// ResponsesStreamOptions is a request's stream_options.
type ResponsesStreamOptions struct {
	IncludeObfuscation *bool `json:"include_obfuscation"`
}

// ResponsesObject is a Response: the answer of a non-streamed request, and
// the response in a stream's response.* lifecycle events.
type ResponsesObject struct {
	ID                 string                `json:"id"`
	Object             string                `json:"object"` // "response"
	CreatedAt          int64                 `json:"created_at"`
	Status             string                `json:"status"`
	CompletedAt        *int64                `json:"completed_at"`
	Background         bool                  `json:"background"`
	Error              *ResponsesError       `json:"error"`
	IncompleteDetails  *IncompleteDetails    `json:"incomplete_details"`
	Instructions       *string               `json:"instructions"`
	MaxOutputTokens    *int                  `json:"max_output_tokens"`
	Model              string                `json:"model"`
	Output             []ResponsesOutputItem `json:"output"`
	ParallelToolCalls  bool                  `json:"parallel_tool_calls"`
	PreviousResponseID *string               `json:"previous_response_id"`
	Reasoning          ResponsesReasoningOut `json:"reasoning"`
	Store              bool                  `json:"store"`
	Temperature        *float64              `json:"temperature"`
	Text               ResponsesTextOut      `json:"text"`
	ToolChoice         json.RawMessage       `json:"tool_choice"`
	Tools              []ResponsesTool       `json:"tools"`
	TopP               *float64              `json:"top_p"`
	Truncation         string                `json:"truncation"`
	Usage              *ResponsesUsage       `json:"usage"`
	User               *string               `json:"user"`
	Metadata           map[string]string     `json:"metadata"`
	// Stepflash is stepflash's extension object (the applied effort, the
	// backend, the region), as on chat completions.
	Stepflash *Extension `json:"stepflash,omitempty"`
}

// ResponsesError is a failed response's error.
type ResponsesError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// IncompleteDetails says why a response is incomplete: "max_output_tokens"
// or "content_filter".
type IncompleteDetails struct {
	Reason string `json:"reason"`
}

// ResponsesReasoningOut is the echo of the reasoning settings: the applied
// effort tier, and the summary setting that applies (always null: no
// summaries are written).
type ResponsesReasoningOut struct {
	Effort  *string `json:"effort"`
	Summary *string `json:"summary"`
}

// ResponsesTextOut is the echo of the text settings.
type ResponsesTextOut struct {
	Format    ResponsesTextFormat `json:"format"`
	Verbosity string              `json:"verbosity"`
}

// ResponsesUsage is a response's usage: OpenAI's fields (InputTokens
// include the cached ones) plus stepflash's, as on chat completions
// (cached_tokens at the top level too, cost in USD, the advisor).
type ResponsesUsage struct {
	InputTokens         int                    `json:"input_tokens"`
	InputTokensDetails  ResponsesInputDetails  `json:"input_tokens_details"`
	OutputTokens        int                    `json:"output_tokens"`
	OutputTokensDetails ResponsesOutputDetails `json:"output_tokens_details"`
	TotalTokens         int                    `json:"total_tokens"`
	CachedTokens        int                    `json:"cached_tokens"`
	Cost                float64                `json:"cost"`
	CostDetails         CostDetails            `json:"cost_details"`
	Advisor             *AdvisorUsage          `json:"advisor,omitempty"`
}

// ResponsesInputDetails break down the input tokens.
type ResponsesInputDetails struct {
	CachedTokens int `json:"cached_tokens"`
	ImageTokens  int `json:"image_tokens,omitempty"`
}

// ResponsesOutputDetails break down the output tokens.
type ResponsesOutputDetails struct {
	ReasoningTokens int `json:"reasoning_tokens"`
}

// NewResponsesUsage is the Responses form of a chat usage (nil for nil).
func NewResponsesUsage(u *Usage) *ResponsesUsage {
	if u == nil {
		return nil
	}
	return &ResponsesUsage{
		InputTokens:         u.PromptTokens,
		InputTokensDetails:  ResponsesInputDetails{CachedTokens: u.PromptTokensDetails.CachedTokens, ImageTokens: u.PromptTokensDetails.ImageTokens},
		OutputTokens:        u.CompletionTokens,
		OutputTokensDetails: ResponsesOutputDetails{ReasoningTokens: u.CompletionTokensDetails.ReasoningTokens},
		TotalTokens:         u.TotalTokens,
		CachedTokens:        u.CachedTokens,
		Cost:                u.Cost,
		CostDetails:         u.CostDetails,
		Advisor:             u.Advisor,
	}
}

// Output item types.
const (
	ItemMessage      = "message"
	ItemReasoning    = "reasoning"
	ItemFunctionCall = "function_call"
)

// ResponsesOutputItem is one item of a response's output: a "reasoning"
// item (Content: reasoning_text parts; Summary), a "message" (Role,
// Content: output_text parts) or a "function_call" (CallID, Name,
// Arguments). Each type is written with exactly its own fields.
type ResponsesOutputItem struct {
	Type      string
	ID        string
	Status    string // "in_progress", "completed" or "incomplete"
	Role      string
	Content   []ResponsesOutputContent
	Summary   []ResponsesOutputContent
	CallID    string
	Name      string
	Arguments string
}

// MarshalJSON writes the fields of the item's type.
func (it ResponsesOutputItem) MarshalJSON() ([]byte, error) {
	content := it.Content
	if content == nil {
		content = []ResponsesOutputContent{}
	}
	switch it.Type {
	case ItemReasoning:
		summary := it.Summary
		if summary == nil {
			summary = []ResponsesOutputContent{}
		}
		return json.Marshal(struct {
			ID               string                   `json:"id"`
			Type             string                   `json:"type"`
			Status           string                   `json:"status"`
			Summary          []ResponsesOutputContent `json:"summary"`
			Content          []ResponsesOutputContent `json:"content"`
			EncryptedContent *string                  `json:"encrypted_content"`
		}{it.ID, it.Type, it.Status, summary, content, nil})
	case ItemFunctionCall:
		return json.Marshal(struct {
			ID        string `json:"id"`
			Type      string `json:"type"`
			Status    string `json:"status"`
			CallID    string `json:"call_id"`
			Name      string `json:"name"`
			Arguments string `json:"arguments"`
		}{it.ID, it.Type, it.Status, it.CallID, it.Name, it.Arguments})
	}
	return json.Marshal(struct {
		ID      string                   `json:"id"`
		Type    string                   `json:"type"`
		Status  string                   `json:"status"`
		Role    string                   `json:"role"`
		Content []ResponsesOutputContent `json:"content"`
	}{it.ID, it.Type, it.Status, it.Role, content})
}

// ResponsesOutputContent is one content part of an output item:
// "output_text" (written with empty annotations and logprobs),
// "reasoning_text" or "summary_text".
type ResponsesOutputContent struct {
	Type string
	Text string
}

// MarshalJSON writes the fields of the part's type.
func (c ResponsesOutputContent) MarshalJSON() ([]byte, error) {
	if c.Type == "output_text" {
		return json.Marshal(struct {
			Type        string `json:"type"`
			Text        string `json:"text"`
			Annotations []any  `json:"annotations"`
			Logprobs    []any  `json:"logprobs"`
		}{c.Type, c.Text, []any{}, []any{}})
	}
	return json.Marshal(struct {
		Type string `json:"type"`
		Text string `json:"text"`
	}{c.Type, c.Text})
}

// Stream events of a streamed response, each an SSE event whose name is
// its type, numbered by sequence_number from 0: response.created,
// response.in_progress; for each output item response.output_item.added,
// its content (response.content_part.added, the deltas, the .done events,
// response.content_part.done; or response.function_call_arguments.delta
// and .done) and response.output_item.done; then response.completed,
// response.incomplete or response.failed. No [DONE] line follows.

// ResponsesLifecycleEvent carries the whole response: response.created,
// response.in_progress, response.completed, response.incomplete,
// response.failed.
type ResponsesLifecycleEvent struct {
	Type           string           `json:"type"`
	SequenceNumber int              `json:"sequence_number"`
	Response       *ResponsesObject `json:"response"`
}

// ResponsesItemEvent is response.output_item.added or .done.
type ResponsesItemEvent struct {
	Type           string              `json:"type"`
	SequenceNumber int                 `json:"sequence_number"`
	OutputIndex    int                 `json:"output_index"`
	Item           ResponsesOutputItem `json:"item"`
}

// ResponsesPartEvent is response.content_part.added or .done.
type ResponsesPartEvent struct {
	Type           string                 `json:"type"`
	SequenceNumber int                    `json:"sequence_number"`
	ItemID         string                 `json:"item_id"`
	OutputIndex    int                    `json:"output_index"`
	ContentIndex   int                    `json:"content_index"`
	Part           ResponsesOutputContent `json:"part"`
}

// ResponsesTextEvent is response.output_text.delta / .done or
// response.reasoning_text.delta / .done: Delta on a delta, Text on a done
// event; Logprobs (empty) on the output_text ones.
type ResponsesTextEvent struct {
	Type           string  `json:"type"`
	SequenceNumber int     `json:"sequence_number"`
	ItemID         string  `json:"item_id"`
	OutputIndex    int     `json:"output_index"`
	ContentIndex   int     `json:"content_index"`
	Delta          *string `json:"delta,omitempty"`
	Text           *string `json:"text,omitempty"`
	Logprobs       *[]any  `json:"logprobs,omitempty"`
}

// ResponsesArgumentsEvent is response.function_call_arguments.delta
// (Delta) or .done (Arguments, Name).
type ResponsesArgumentsEvent struct {
	Type           string  `json:"type"`
	SequenceNumber int     `json:"sequence_number"`
	ItemID         string  `json:"item_id"`
	OutputIndex    int     `json:"output_index"`
	Delta          *string `json:"delta,omitempty"`
	Arguments      *string `json:"arguments,omitempty"`
	Name           string  `json:"name,omitempty"`
}

// ResponsesErrorEvent is the "error" event.
type ResponsesErrorEvent struct {
	Type           string  `json:"type"` // "error"
	SequenceNumber int     `json:"sequence_number"`
	Code           *string `json:"code"`
	Message        string  `json:"message"`
	Param          *string `json:"param"`
}
