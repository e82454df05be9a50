package server

import (
	"net/http"
	"time"

	"github.com/stepflash/stepflash/api"
	"github.com/stepflash/stepflash/engine"
)

// defaultCompletionTokens is the legacy endpoint's max_tokens default (as OpenAI's).
const defaultCompletionTokens = 16

func (s *Server) handleCompletions(w http.ResponseWriter, r *http.Request) *api.Error {
	start := time.Now()
	var req api.CompletionRequest
	if e := s.decodeBody(w, r, &req); e != nil {
		return e
	}
	m, e := s.lookup(req.Model)
	if e != nil {
		return e
	}
	if req.MaxTokens == nil {
		d := defaultCompletionTokens
		req.MaxTokens = &d
	}
	sp, e := s.validateCommon(commonFields{
		MaxTokens: req.MaxTokens, MaxTokensParam: "max_tokens", Temperature: req.Temperature, TopP: req.TopP, TopK: req.TopK, MinP: req.MinP,
		Seed: req.Seed, Stop: req.Stop, N: req.N, PresencePenalty: req.PresencePenalty, FrequencyPenalty: req.FrequencyPenalty,
		LogitBias: req.LogitBias, Stream: req.Stream, StreamOptions: req.StreamOptions, Advisor: req.Advisor, IgnoreEOS: req.IgnoreEOS,
	}, m.Tok.VocabSize())
	if e != nil {
		return e
	}
	if req.Logprobs != nil {
		if *req.Logprobs < 0 || *req.Logprobs > 20 {
			return api.InvalidRequest(api.CodeInvalidValue, "logprobs", "Invalid 'logprobs': expected a value in [0, 20], but got %d instead.", *req.Logprobs)
		}
		sp.logprobs, sp.topLogprobs = true, *req.Logprobs
	}
	if req.Suffix != nil && *req.Suffix != "" {
		return api.Unsupported("suffix", "'suffix' (fill-in-the-middle) is not supported.")
	}
	if req.BestOf != nil && *req.BestOf != 1 && *req.BestOf != sp.n {
		return api.Unsupported("best_of", "'best_of' other than 1 or n is not supported.")
	}
	if req.Echo && sp.logprobs {
		return api.Unsupported("echo", "'echo' together with 'logprobs' (prompt log-probabilities) is not supported.")
	}
	effort, e := resolveEffort(m, req.ReasoningEffort)
	if e != nil {
		return e
	}
	w.Header().Set("X-Reasoning-Effort", string(effort.Applied))
	if req.Prompt == nil {
		return api.InvalidRequest(api.CodeMissingParameter, "prompt", "Missing required parameter: 'prompt'.")
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
	case len(req.Prompt.Tokens) > 0:
		for i, ids := range req.Prompt.Tokens {
			for k, id := range ids {
				if id < 0 || int(id) >= vocab {
					return api.InvalidRequest(api.CodeInvalidValue, "prompt", "Invalid 'prompt': token id %d at [%d][%d] is outside the vocabulary of %d tokens.", id, i, k, vocab)
				}
			}
			prompts = append(prompts, ids)
			echo = append(echo, m.Tok.Decode(ids))
		}
	default:
		return api.InvalidRequest(api.CodeInvalidValue, "prompt", "Invalid 'prompt': it must not be empty.")
	}
	if len(prompts)*sp.n > s.cfg.MaxN {
		return api.InvalidRequest(api.CodeInvalidValue, "prompt", "Invalid 'prompt': %d prompts × n=%d is more than %d choices.", len(prompts), sp.n, s.cfg.MaxN)
	}
	for i, p := range prompts {
		if len(p) == 0 {
			return api.InvalidRequest(api.CodeInvalidValue, "prompt", "Invalid 'prompt': prompt %d is empty.", i)
		}
		if e := checkContext(m, p, sp.maxTokens, "prompt"); e != nil {
			return e
		}
	}
	if !req.Echo {
		echo = nil
	}
	j := &job{s: s, m: m, id: randomID("cmpl-", 24), created: time.Now().Unix(), model: req.Model, prompts: prompts, echo: echo,
		sp: sp, effort: effort, stream: req.Stream, usage: req.StreamOptions != nil && req.StreamOptions.IncludeUsage, start: start}
	limit, budget := thinkingLimit(effort.ThinkingBudget)
	j.base = engine.Request{MaxTokens: sp.maxTokens, Sampling: sp.params, Logprobs: sp.logprobs, TopLogprobs: sp.topLogprobs, IgnoreEOS: sp.ignoreEOS,
		LimitThinking: limit, ThinkingBudget: budget}
	if effort.ExpertsPerToken != nil {
		j.base.ExpertsUsed = *effort.ExpertsPerToken
	}
	return j.serve(w, r)
}
