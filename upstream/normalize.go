package upstream

import (
	"encoding/json"

	"github.com/stepflash/stepflash/api"
)

// upChunk is a streamed chunk as the servers stepflash fronts send it,
// read leniently: fields stepflash does not use are ignored (OpenRouter's
// provider and native_finish_reason, reasoning_details, refusal deltas).
type upChunk struct {
	SystemFingerprint *string         `json:"system_fingerprint"`
	Choices           []upChoice      `json:"choices"`
	Usage             *upUsage        `json:"usage"`
	Timings           *api.Timings    `json:"timings"`
	Error             json.RawMessage `json:"error"`
}

type upChoice struct {
	Index        int             `json:"index"`
	Delta        upDelta         `json:"delta"`
	Text         string          `json:"text"` // legacy completions
	Logprobs     json.RawMessage `json:"logprobs"`
	FinishReason *string         `json:"finish_reason"`
	// StopReason is vLLM's: the stop string that matched (a string), or
	// the stop token's id (a number, not passed on), or null.
	StopReason json.RawMessage `json:"stop_reason"`
}

// stopString is the matched stop string an upstream reported, if any.
func (c *upChoice) stopString() *string {
	var s string
	if len(c.StopReason) == 0 || json.Unmarshal(c.StopReason, &s) != nil || s == "" {
		return nil
	}
	return &s
}

type upDelta struct {
	Role    string  `json:"role"`
	Content *string `json:"content"`
	// Servers put reasoning in reasoning_content (vLLM's older parsers,
	// DeepSeek, StepFun) or reasoning (OpenRouter, newer vLLM).
	ReasoningContent *string        `json:"reasoning_content"`
	Reasoning        *string        `json:"reasoning"`
	ToolCalls        []api.ToolCall `json:"tool_calls"`
}

// chat normalises a chat choice: reasoning in both fields, whichever the
// upstream used.
func (c *upChoice) chat() (api.ChunkChoice, error) {
	out := api.ChunkChoice{Index: c.Index, FinishReason: c.FinishReason, StopReason: c.stopString()}
	d := c.Delta
	out.Delta = api.ChunkDelta{Role: d.Role, Content: d.Content, ToolCalls: d.ToolCalls}
	r := d.ReasoningContent
	if r == nil || *r == "" {
		r = d.Reasoning
	}
	if r != nil && *r != "" {
		out.Delta.ReasoningContent, out.Delta.Reasoning = r, r
	}
	if len(c.Logprobs) > 0 && string(c.Logprobs) != "null" {
		var lp api.ChatLogprobs
		if err := json.Unmarshal(c.Logprobs, &lp); err != nil {
			return out, err
		}
		if lp.Content == nil {
			lp.Content = []api.TokenLogprob{}
		}
		out.Logprobs = &lp
	}
	return out, nil
}

// text normalises a legacy completion choice.
func (c *upChoice) text() (api.CompletionChoice, error) {
	out := api.CompletionChoice{Index: c.Index, Text: c.Text, FinishReason: c.FinishReason, StopReason: c.stopString()}
	if len(c.Logprobs) > 0 && string(c.Logprobs) != "null" {
		var lp api.CompletionLogprobs
		if err := json.Unmarshal(c.Logprobs, &lp); err != nil {
			return out, err
		}
		out.Logprobs = &lp
	}
	return out, nil
}

// upUsage is usage as upstreams report it. Cached prompt tokens come in
// OpenAI's prompt_tokens_details.cached_tokens, at the top level as
// StepFun's cached_tokens, or as DeepSeek's prompt_cache_hit_tokens.
type upUsage struct {
	PromptTokens        int  `json:"prompt_tokens"`
	CompletionTokens    int  `json:"completion_tokens"`
	CachedTokens        *int `json:"cached_tokens"`
	PromptCacheHit      *int `json:"prompt_cache_hit_tokens"`
	PromptTokensDetails *struct {
		CachedTokens *int `json:"cached_tokens"`
	} `json:"prompt_tokens_details"`
	CompletionTokensDetails *struct {
		ReasoningTokens int `json:"reasoning_tokens"`
	} `json:"completion_tokens_details"`
}

// normalize is stepflash's usage: cached tokens in both placements, cost
// left for the price table.
func (u *upUsage) normalize() *api.Usage {
	cached := 0
	switch {
	case u.PromptTokensDetails != nil && u.PromptTokensDetails.CachedTokens != nil:
		cached = *u.PromptTokensDetails.CachedTokens
	case u.CachedTokens != nil:
		cached = *u.CachedTokens
	case u.PromptCacheHit != nil:
		cached = *u.PromptCacheHit
	}
	reasoning := 0
	if u.CompletionTokensDetails != nil {
		reasoning = u.CompletionTokensDetails.ReasoningTokens
	}
	return api.NewUsage(u.PromptTokens, min(cached, u.PromptTokens), u.CompletionTokens, reasoning)
}
