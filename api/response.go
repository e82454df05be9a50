package api

// Envelope is the head every response and chunk of the completion APIs
// starts with.
type Envelope struct {
	ID                string `json:"id"`
	Object            string `json:"object"`
	Created           int64  `json:"created"`
	Model             string `json:"model"`
	SystemFingerprint string `json:"system_fingerprint"`
}

// Head returns the envelope, to set its fields.
func (e *Envelope) Head() *Envelope { return e }

// ChatCompletion is the response of a non-streaming chat completion
// (Object "chat.completion").
type ChatCompletion struct {
	Envelope
	Choices   []ChatChoice `json:"choices"`
	Usage     *Usage       `json:"usage"`
	Timings   *Timings     `json:"timings,omitempty"`
	Stepflash *Extension   `json:"stepflash,omitempty"`
}

// ChatChoice is one choice of a chat completion.
type ChatChoice struct {
	Index        int             `json:"index"`
	Message      ResponseMessage `json:"message"`
	Logprobs     *ChatLogprobs   `json:"logprobs"`
	FinishReason string          `json:"finish_reason"`
	// StopReason is the stop string that ended the choice (vLLM's field);
	// absent when none did.
	StopReason *string `json:"stop_reason,omitempty"`
}

// ResponseMessage is the assistant message of a choice. Content is null
// when the reply is only tool calls.
type ResponseMessage struct {
	Role             string     `json:"role"`
	Content          *string    `json:"content"`
	Refusal          *string    `json:"refusal"`
	ReasoningContent *string    `json:"reasoning_content,omitempty"`
	Reasoning        *string    `json:"reasoning,omitempty"`
	ToolCalls        []ToolCall `json:"tool_calls,omitempty"`
}

// ChatLogprobs are the log-probabilities of a chat choice.
type ChatLogprobs struct {
	Content []TokenLogprob `json:"content"`
	Refusal []TokenLogprob `json:"refusal"`
}

// TokenLogprob is one generated token with its log-probability and the
// most likely alternatives.
type TokenLogprob struct {
	Token       string       `json:"token"`
	Logprob     float64      `json:"logprob"`
	Bytes       []int        `json:"bytes"`
	TopLogprobs []TopLogprob `json:"top_logprobs"`
}

// TopLogprob is one alternative token.
type TopLogprob struct {
	Token   string  `json:"token"`
	Logprob float64 `json:"logprob"`
	Bytes   []int   `json:"bytes"`
}

// ChatCompletionChunk is one server-sent event of a streaming chat
// completion (Object "chat.completion.chunk").
type ChatCompletionChunk struct {
	Envelope
	Choices []ChunkChoice `json:"choices"`
	// Usage is null on every chunk but the last when the client asked for
	// usage (stream_options.include_usage); absent otherwise.
	Usage *Usage `json:"usage,omitempty"`
	// Timings rides on the last chunk, beside the usage.
	Timings   *Timings   `json:"timings,omitempty"`
	Stepflash *Extension `json:"stepflash,omitempty"`
}

// ChunkChoice is one choice of a streaming chunk.
type ChunkChoice struct {
	Index        int           `json:"index"`
	Delta        ChunkDelta    `json:"delta"`
	Logprobs     *ChatLogprobs `json:"logprobs"`
	FinishReason *string       `json:"finish_reason"`
	// StopReason is the stop string that ended the choice, on its last
	// chunk (vLLM's field); absent when none did.
	StopReason *string `json:"stop_reason,omitempty"`
}

// ReasoningText is the delta's reasoning, from whichever of the two
// fields carries it ("" when neither does).
func (d *ChunkDelta) ReasoningText() string {
	if d.ReasoningContent != nil {
		return *d.ReasoningContent
	}
	if d.Reasoning != nil {
		return *d.Reasoning
	}
	return ""
}

// ChunkDelta is the change a chunk carries.
type ChunkDelta struct {
	Role             string     `json:"role,omitempty"`
	Content          *string    `json:"content,omitempty"`
	ReasoningContent *string    `json:"reasoning_content,omitempty"`
	Reasoning        *string    `json:"reasoning,omitempty"`
	ToolCalls        []ToolCall `json:"tool_calls,omitempty"`
}

// Usage is the token usage of a response with stepflash's extensions
// (DESIGN.md section 3): cached tokens at the top level too, and cost in USD.
type Usage struct {
	PromptTokens            int                     `json:"prompt_tokens"`
	CompletionTokens        int                     `json:"completion_tokens"`
	TotalTokens             int                     `json:"total_tokens"`
	PromptTokensDetails     PromptTokensDetails     `json:"prompt_tokens_details"`
	CompletionTokensDetails CompletionTokensDetails `json:"completion_tokens_details"`
	CachedTokens            int                     `json:"cached_tokens"`
	Cost                    float64                 `json:"cost"`
	CostDetails             CostDetails             `json:"cost_details"`
	// Advisor is what Advisor Mode did for the request; absent when the
	// served model has no advisor. Its cost is part of Cost.
	Advisor *AdvisorUsage `json:"advisor,omitempty"`
	// Unknown marks usage an upstream did not report (zeros stand in):
	// what it cost is not known. Not part of the wire format.
	Unknown bool `json:"-"`
}

// AdvisorUsage is usage.advisor: whether the turn was escalated to the
// advisor model, why, and what the advisor used. Fields that do not apply
// are absent.
type AdvisorUsage struct {
	Escalated bool `json:"escalated"`
	// Reason is the signal that fired ("repeated_errors", "low_confidence",
	// "always"), also when a cap or the advisor's failure kept the turn
	// with the served model.
	Reason string `json:"reason,omitempty"`
	// Mode is "handoff" (the advisor wrote the turn) or "advise" (it wrote
	// a plan that the served model followed).
	Mode  string `json:"mode,omitempty"`
	Model string `json:"model,omitempty"`
	// The advisor's own tokens and cost (at its prices).
	PromptTokens     int     `json:"prompt_tokens,omitempty"`
	CompletionTokens int     `json:"completion_tokens,omitempty"`
	Cost             float64 `json:"cost,omitempty"`
	LatencyMS        int64   `json:"latency_ms,omitempty"`
	// Confidence is the low quantile of the served model's draft
	// log-probabilities that the low_confidence signal compared with its
	// threshold; DraftTokens the draft tokens it scored (a draft that was
	// thrown away is not billed).
	Confidence  *float64 `json:"confidence,omitempty"`
	DraftTokens int      `json:"draft_tokens,omitempty"`
	// Error says why an escalation did not happen or did not land (the
	// advisor failed or timed out, or a cap was reached); the served
	// model's answer stands.
	Error string `json:"error,omitempty"`
}

// PromptTokensDetails break down the prompt tokens.
type PromptTokensDetails struct {
	CachedTokens int `json:"cached_tokens"`
	ImageTokens  int `json:"image_tokens,omitempty"`
}

// CompletionTokensDetails break down the completion tokens.
type CompletionTokensDetails struct {
	ReasoningTokens int `json:"reasoning_tokens"`
	// AcceptedPredictionTokens and RejectedPredictionTokens are OpenAI's
	// names for predicted tokens that did and did not appear in the
	// answer: here speculative decoding's draft tokens (docs/speculative.md),
	// absent when the model does not speculate.
	AcceptedPredictionTokens int `json:"accepted_prediction_tokens,omitempty"`
	RejectedPredictionTokens int `json:"rejected_prediction_tokens,omitempty"`
}

// CostDetails split the cost (USD) by price line.
type CostDetails struct {
	InputMiss float64 `json:"input_miss"`
	InputHit  float64 `json:"input_hit"`
	Output    float64 `json:"output"`
	Advisor   float64 `json:"advisor"`
}

// Extension is the top-level "stepflash" object of a response.
type Extension struct {
	Effort  EffortEcho `json:"effort"`
	Backend string     `json:"backend"`
	Region  string     `json:"region"`
	// Advisor is the X-Advisor header's value ("none" or the reason the
	// turn was escalated), set by Advisor Mode; not part of the body.
	Advisor string `json:"-"`
}

// EffortEcho is the applied reasoning effort (DESIGN.md section 3), from the
// served model's effort policy.
type EffortEcho struct {
	Requested *string `json:"requested"`
	Applied   string  `json:"applied"`
	// ExpertsPerToken is null for a dense model, and for an upstream (whose
	// compute this server cannot see).
	ExpertsPerToken *int `json:"experts_per_token"`
	// ThinkingBudget is in tokens; -1 means unlimited; null for an upstream.
	ThinkingBudget *int `json:"thinking_budget"`
	// Upstream is set when an upstream answered: what was sent to it, and
	// that its compute is not verified here.
	Upstream *UpstreamEffort `json:"upstream,omitempty"`
}

// UpstreamEffort says how an effort tier was passed to an upstream.
type UpstreamEffort struct {
	// Param is the request field it was sent in: "reasoning_effort", or
	// "reasoning.effort" (OpenRouter's form).
	Param string `json:"param"`
	// Sent is the value sent.
	Sent string `json:"sent"`
	// Verified is always false: nothing here can check what compute an
	// upstream spent.
	Verified bool `json:"verified"`
}

// Completion is the response of a non-streaming legacy completion, and (with
// Object "text_completion") each chunk of a streaming one.
type Completion struct {
	Envelope
	Choices   []CompletionChoice `json:"choices"`
	Usage     *Usage             `json:"usage,omitempty"`
	Timings   *Timings           `json:"timings,omitempty"`
	Stepflash *Extension         `json:"stepflash,omitempty"`
}

// CompletionChoice is one choice of a legacy completion.
type CompletionChoice struct {
	Text         string              `json:"text"`
	Index        int                 `json:"index"`
	Logprobs     *CompletionLogprobs `json:"logprobs"`
	FinishReason *string             `json:"finish_reason"`
	// StopReason is the stop string that ended the choice (vLLM's field);
	// absent when none did.
	StopReason *string `json:"stop_reason,omitempty"`
}

// CompletionLogprobs are the legacy log-probabilities: parallel arrays.
type CompletionLogprobs struct {
	Tokens        []string             `json:"tokens"`
	TokenLogprobs []float64            `json:"token_logprobs"`
	TopLogprobs   []map[string]float64 `json:"top_logprobs"`
	TextOffset    []int                `json:"text_offset"`
}

// Model is one entry of GET /v1/models.
type Model struct {
	ID      string `json:"id"`
	Object  string `json:"object"` // "model"
	Created int64  `json:"created"`
	OwnedBy string `json:"owned_by"`
	// MaxModelLen is the served context length (an extension, as vLLM's).
	MaxModelLen int `json:"max_model_len,omitempty"`
	// InputModalities says what the model takes: ["text"] or ["text",
	// "image"] (an extension, as OpenRouter's architecture.input_modalities).
	InputModalities []string `json:"input_modalities,omitempty"`
}

// ModelList is the response of GET /v1/models.
type ModelList struct {
	Object string  `json:"object"` // "list"
	Data   []Model `json:"data"`
}

// NewUsage builds a usage object from token counts, with cached tokens in
// both placements (OpenAI's prompt_tokens_details and StepFun's top level).
// Cost is left at zero for the price table to fill.
func NewUsage(prompt, cached, completion, reasoning int) *Usage {
	return &Usage{
		PromptTokens:            prompt,
		CompletionTokens:        completion,
		TotalTokens:             prompt + completion,
		PromptTokensDetails:     PromptTokensDetails{CachedTokens: cached},
		CompletionTokensDetails: CompletionTokensDetails{ReasoningTokens: reasoning},
		CachedTokens:            cached,
	}
}

// Ext returns the stepflash extension object, or nil.
func (c *ChatCompletionChunk) Ext() *Extension { return c.Stepflash }

// FinalUsage returns the usage when this is the last chunk of a stream (no
// choices, usage set).
func (c *ChatCompletionChunk) FinalUsage() *Usage {
	if len(c.Choices) == 0 {
		return c.Usage
	}
	return nil
}

// FinishReasons lists the finish reasons this chunk reports.
func (c *ChatCompletionChunk) FinishReasons() []string {
	var out []string
	for _, ch := range c.Choices {
		if ch.FinishReason != nil {
			out = append(out, *ch.FinishReason)
		}
	}
	return out
}

// Ext returns the stepflash extension object, or nil.
func (c *Completion) Ext() *Extension { return c.Stepflash }

// FinalUsage returns the usage when this is the last chunk of a stream (no
// choices, usage set).
func (c *Completion) FinalUsage() *Usage {
	if len(c.Choices) == 0 {
		return c.Usage
	}
	return nil
}

// FinishReasons lists the finish reasons this chunk reports.
func (c *Completion) FinishReasons() []string {
	var out []string
	for _, ch := range c.Choices {
		if ch.FinishReason != nil {
			out = append(out, *ch.FinishReason)
		}
	}
	return out
}

// Timings is llama-server's "timings" object: how long a request's prompt
// pass and its generation took. The local engine reports it on every chat
// and legacy completion (a stream: on its last chunk, beside the usage);
// an upstream's is passed through when it sends one (llama-server does).
// The fields mean what llama-server's do: PromptN prompt tokens computed
// (CacheN more were reused from the prefix cache) in PromptMS, up to the
// first token; PredictedN tokens generated, the first included, with
// PredictedMS the time from the first token to the last (so PredictedN-1
// decode steps). Several choices or prompts add up their token counts and
// take the longest time, since they run side by side in one batch.
type Timings struct {
	CacheN              int     `json:"cache_n"`
	PromptN             int     `json:"prompt_n"`
	PromptMS            float64 `json:"prompt_ms"`
	PromptPerTokenMS    float64 `json:"prompt_per_token_ms"`
	PromptPerSecond     float64 `json:"prompt_per_second"`
	PredictedN          int     `json:"predicted_n"`
	PredictedMS         float64 `json:"predicted_ms"`
	PredictedPerTokenMS float64 `json:"predicted_per_token_ms"`
	PredictedPerSecond  float64 `json:"predicted_per_second"`
	// DraftN is how many draft tokens speculative decoding proposed and
	// DraftNAccepted how many were accepted; absent without speculation.
	DraftN         int `json:"draft_n,omitempty"`
	DraftNAccepted int `json:"draft_n_accepted,omitempty"`
}

// NewTimings fills the per-token and per-second fields from the counts and
// times (in milliseconds); a zero count or time leaves its rates 0.
func NewTimings(cached, promptN int, promptMS float64, predictedN int, predictedMS float64) *Timings {
	t := &Timings{CacheN: cached, PromptN: promptN, PromptMS: promptMS, PredictedN: predictedN, PredictedMS: predictedMS}
	t.PromptPerTokenMS, t.PromptPerSecond = rates(promptN, promptMS)
	t.PredictedPerTokenMS, t.PredictedPerSecond = rates(predictedN, predictedMS)
	return t
}

func rates(n int, ms float64) (perToken, perSecond float64) {
	if n <= 0 || ms <= 0 {
		return 0, 0
	}
	return ms / float64(n), 1e3 * float64(n) / ms
}
