package backend

import (
	"slices"
	"strings"

	"github.com/stepflash/stepflash/api"
)

// ChatAccumulator joins the chunks of a chat completion stream into the
// non-streamed response: content, reasoning and tool-call fragments
// concatenated per choice, log-probabilities in order, the last finish
// reason, usage, timings and the stepflash extension.
type ChatAccumulator struct {
	head
	choices map[int]*chatChoice
}

// head is what an accumulator keeps of a stream besides its choices.
type head struct {
	fingerprint string
	ext         *api.Extension
	usage       *api.Usage
	timings     *api.Timings
}

// take records a chunk's fingerprint, extension, usage and timings (the
// last of each).
func (h *head) take(fp string, ext *api.Extension, u *api.Usage, t *api.Timings) {
	if fp != "" {
		h.fingerprint = fp
	}
	if ext != nil {
		h.ext = ext
	}
	if u != nil {
		h.usage = u
	}
	if t != nil {
		h.timings = t
	}
}

// Usage is the usage the stream reported, or nil.
func (h *head) Usage() *api.Usage { return h.usage }

type chatChoice struct {
	content    strings.Builder
	reasoning  strings.Builder
	calls      []api.ToolCall
	logprobs   *api.ChatLogprobs
	finish     string
	stopReason *string
}

// Add takes the next chunk.
func (a *ChatAccumulator) Add(ch *api.ChatCompletionChunk) {
	if a.choices == nil {
		a.choices = map[int]*chatChoice{}
	}
	a.take(ch.SystemFingerprint, ch.Stepflash, ch.Usage, ch.Timings)
	for i := range ch.Choices {
		c := &ch.Choices[i]
		acc := a.choices[c.Index]
		if acc == nil {
			acc = &chatChoice{}
			a.choices[c.Index] = acc
		}
		d := &c.Delta
		if d.Content != nil {
			acc.content.WriteString(*d.Content)
		}
		switch {
		case d.ReasoningContent != nil:
			acc.reasoning.WriteString(*d.ReasoningContent)
		case d.Reasoning != nil:
			acc.reasoning.WriteString(*d.Reasoning)
		}
		for _, tc := range d.ToolCalls {
			k := len(acc.calls) - 1 // a delta without an index continues the last call
			if tc.Index != nil {
				k = *tc.Index
			}
			if k < 0 {
				k = 0
			}
			for len(acc.calls) <= k {
				acc.calls = append(acc.calls, api.ToolCall{})
			}
			call := &acc.calls[k]
			if tc.ID != "" {
				call.ID = tc.ID
			}
			call.Function.Name += tc.Function.Name
			call.Function.Arguments += tc.Function.Arguments
		}
		if c.Logprobs != nil {
			if acc.logprobs == nil {
				acc.logprobs = &api.ChatLogprobs{Content: []api.TokenLogprob{}}
			}
			acc.logprobs.Content = append(acc.logprobs.Content, c.Logprobs.Content...)
		}
		if c.FinishReason != nil {
			acc.finish = *c.FinishReason
		}
		if c.StopReason != nil {
			acc.stopReason = c.StopReason
		}
	}
}

// Response is the non-streamed response. Content is null only when a
// choice made tool calls and wrote no text; ID, Created and Model are left
// for the caller.
func (a *ChatAccumulator) Response() *api.ChatCompletion {
	resp := &api.ChatCompletion{Envelope: api.Envelope{Object: "chat.completion", SystemFingerprint: a.fingerprint}, Usage: a.usage, Timings: a.timings, Stepflash: a.ext,
		Choices: []api.ChatChoice{}}
	for _, i := range sortedKeys(a.choices) {
		c := a.choices[i]
		m := api.ResponseMessage{Role: "assistant"}
		if content := c.content.String(); content != "" || len(c.calls) == 0 {
			m.Content = &content
		}
		if r := c.reasoning.String(); r != "" {
			m.ReasoningContent, m.Reasoning = &r, &r
		}
		for _, tc := range c.calls {
			m.ToolCalls = append(m.ToolCalls, api.ToolCall{ID: tc.ID, Type: "function", Function: tc.Function})
		}
		resp.Choices = append(resp.Choices, api.ChatChoice{Index: i, Message: m, Logprobs: c.logprobs, FinishReason: c.finish, StopReason: c.stopReason})
	}
	return resp
}

// CompletionAccumulator joins the chunks of a legacy completion stream into
// the non-streamed response.
type CompletionAccumulator struct {
	head
	choices map[int]*textChoice
}

type textChoice struct {
	text       strings.Builder
	logprobs   *api.CompletionLogprobs
	finish     string
	stopReason *string
}

// Add takes the next chunk.
func (a *CompletionAccumulator) Add(ch *api.Completion) {
	if a.choices == nil {
		a.choices = map[int]*textChoice{}
	}
	a.take(ch.SystemFingerprint, ch.Stepflash, ch.Usage, ch.Timings)
	for i := range ch.Choices {
		c := &ch.Choices[i]
		acc := a.choices[c.Index]
		if acc == nil {
			acc = &textChoice{}
			a.choices[c.Index] = acc
		}
		acc.text.WriteString(c.Text)
		if lp := c.Logprobs; lp != nil {
			if acc.logprobs == nil {
				acc.logprobs = &api.CompletionLogprobs{Tokens: []string{}, TokenLogprobs: []float64{}, TopLogprobs: []map[string]float64{}, TextOffset: []int{}}
			}
			acc.logprobs.Tokens = append(acc.logprobs.Tokens, lp.Tokens...)
			acc.logprobs.TokenLogprobs = append(acc.logprobs.TokenLogprobs, lp.TokenLogprobs...)
			acc.logprobs.TopLogprobs = append(acc.logprobs.TopLogprobs, lp.TopLogprobs...)
			acc.logprobs.TextOffset = append(acc.logprobs.TextOffset, lp.TextOffset...)
		}
		if c.FinishReason != nil {
			acc.finish = *c.FinishReason
		}
		if c.StopReason != nil {
			acc.stopReason = c.StopReason
		}
	}
}

// Response is the non-streamed response; ID, Created and Model are left for
// the caller.
func (a *CompletionAccumulator) Response() *api.Completion {
	resp := &api.Completion{Envelope: api.Envelope{Object: "text_completion", SystemFingerprint: a.fingerprint}, Usage: a.usage, Timings: a.timings, Stepflash: a.ext,
		Choices: []api.CompletionChoice{}}
	for _, i := range sortedKeys(a.choices) {
		c := a.choices[i]
		fin := c.finish
		resp.Choices = append(resp.Choices, api.CompletionChoice{Text: c.text.String(), Index: i, Logprobs: c.logprobs, FinishReason: &fin, StopReason: c.stopReason})
	}
	return resp
}

func sortedKeys[V any](m map[int]V) []int {
	keys := make([]int, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
