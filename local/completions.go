package local

import (
	"context"

	"github.com/stepflash/stepflash/api"
)

// defaultCompletionTokens is the legacy endpoint's max_tokens default (as OpenAI's).
const defaultCompletionTokens = 16

// Complete answers a legacy completion request (checked by
// backend.CheckCompletion).
func (b *Backend) Complete(ctx context.Context, req *api.CompletionRequest, emit func(*api.Completion) error) error {
	m := &b.m
	maxTok := req.MaxTokens
	if maxTok == nil {
		d := defaultCompletionTokens
		maxTok = &d
	}
	sp, e := b.sampling(common{MaxTokens: maxTok, Temperature: req.Temperature, TopP: req.TopP, TopK: req.TopK, MinP: req.MinP,
		Seed: req.Seed, Stop: req.Stop, N: req.N, PresencePenalty: req.PresencePenalty, FrequencyPenalty: req.FrequencyPenalty,
		LogitBias: req.LogitBias, IgnoreEOS: req.IgnoreEOS})
	if e != nil {
		return e
	}
	if req.Logprobs != nil {
		sp.logprobs, sp.topLogprobs = true, *req.Logprobs
	}
	applied, e := b.applyEffort(req.ReasoningEffort)
	if e != nil {
		return e
	}
	var prompts [][]int32
	var echo []string
	vocab := m.Tok.VocabSize()
	switch {
	case len(req.Prompt.Texts) > 0:
		for _, t := range req.Prompt.Texts {
			prompts = append(prompts, m.Tok.Encode(t, true, true))
			echo = append(echo, t)
		}
	default:
		for i, ids := range req.Prompt.Tokens {
			for k, id := range ids {
				if id < 0 || int(id) >= vocab {
					return api.InvalidRequest(api.CodeInvalidValue, "prompt", "Invalid 'prompt': token id %d at [%d][%d] is outside the vocabulary of %d tokens.", id, i, k, vocab)
				}
			}
			prompts = append(prompts, ids)
			echo = append(echo, m.Tok.Decode(ids))
		}
	}
	for i, p := range prompts {
		if len(p) == 0 {
			return api.InvalidRequest(api.CodeInvalidValue, "prompt", "Invalid 'prompt': prompt %d is empty.", i)
		}
		if e := b.checkContext(p, sp.maxTokens, "prompt"); e != nil {
			return e
		}
	}
	if e := b.checkChoices(sp.n, len(prompts)); e != nil {
		return e
	}
	if !req.Echo {
		echo = nil
	}
	j := &job{b: b, prompts: prompts, echo: echo, sp: sp, effort: applied}
	j.base = b.engineRequest(sp, applied)
	return j.stream(ctx, nil, emit)
}
