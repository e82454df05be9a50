package server

import (
	"net/http"

	"github.com/stepflash/stepflash/api"
	"github.com/stepflash/stepflash/backend"
)

func (s *Server) handleChat(w http.ResponseWriter, r *http.Request) *api.Error {
	var req api.ChatCompletionRequest
	if e := s.decodeBody(w, r, &req); e != nil {
		return e
	}
	if e := reasoningObject(&req); e != nil {
		return e
	}
	m, e := s.lookup(req.Model)
	if e != nil {
		return e
	}
	if e := backend.CheckChat(&req, s.limitsFor(m)); e != nil {
		return e
	}
	c := s.newCall(w, r, m, req.Model, req.ReasoningEffort, "chatcmpl-")
	defer c.end()
	if req.Stream {
		return serveStream(c, req.StreamOptions, func(emit func(*api.ChatCompletionChunk) error) error {
			return m.Backend.Chat(c.ctx, &req, emit)
		})
	}
	resp, e := c.chat(&req)
	if e != nil {
		return e
	}
	writeJSON(w, http.StatusOK, resp)
	return nil
}

// chat runs a non-streamed chat request through the call's backend and
// returns the whole response, stamped and counted.
func (c *call) chat(req *api.ChatCompletionRequest) (*api.ChatCompletion, *api.Error) {
	var acc backend.ChatAccumulator
	if err := c.m.Backend.Chat(c.ctx, req, func(ch *api.ChatCompletionChunk) error {
		if err := c.seen(); err != nil {
			return err
		}
		c.observeChunk(ch)
		acc.Add(ch)
		return nil
	}); err != nil {
		return nil, c.fail(err)
	}
	resp := acc.Response()
	c.finish(resp.Head(), resp.Stepflash, resp.Usage)
	return resp, nil
}

func (s *Server) handleCompletions(w http.ResponseWriter, r *http.Request) *api.Error {
	var req api.CompletionRequest
	if e := s.decodeBody(w, r, &req); e != nil {
		return e
	}
	m, e := s.lookup(req.Model)
	if e != nil {
		return e
	}
	if e := backend.CheckCompletion(&req, s.limitsFor(m)); e != nil {
		return e
	}
	c := s.newCall(w, r, m, req.Model, req.ReasoningEffort, "cmpl-")
	defer c.end()
	if req.Stream {
		return serveStream(c, req.StreamOptions, func(emit func(*api.Completion) error) error {
			return m.Backend.Complete(c.ctx, &req, emit)
		})
	}
	var acc backend.CompletionAccumulator
	if err := m.Backend.Complete(c.ctx, &req, func(ch *api.Completion) error {
		if err := c.seen(); err != nil {
			return err
		}
		c.observeChunk(ch)
		acc.Add(ch)
		return nil
	}); err != nil {
		return c.fail(err)
	}
	resp := acc.Response()
	c.finish(resp.Head(), resp.Stepflash, resp.Usage)
	writeJSON(w, http.StatusOK, resp)
	return nil
}

func (s *Server) limitsFor(m *Model) backend.Limits {
	return backend.Limits{MaxN: s.cfg.MaxN, Advisor: m.Backend.Info().Advisor != ""}
}

// reasoningObject folds OpenRouter's {"reasoning": {"effort": ...}} into
// reasoning_effort (which wins when both are given and differ: a 400).
func reasoningObject(req *api.ChatCompletionRequest) *api.Error {
	r := req.Reasoning
	if r == nil {
		return nil
	}
	if r.Exclude {
		return api.Unsupported("reasoning.exclude", "'reasoning.exclude' is not supported: the reasoning comes back in reasoning_content and reasoning.")
	}
	if r.MaxTokens != nil {
		return api.Unsupported("reasoning.max_tokens", "'reasoning.max_tokens' is not supported: use reasoning.effort or reasoning_effort (low, medium, high), whose thinking budgets the server's effort policy sets.")
	}
	effort := r.Effort
	if r.Enabled != nil && !*r.Enabled {
		if effort != nil {
			return api.InvalidRequest(api.CodeInvalidValue, "reasoning", "Invalid 'reasoning': enabled false and an effort (%q) contradict each other.", *effort)
		}
		none := "none"
		effort = &none
	}
	if effort == nil {
		return nil
	}
	if req.ReasoningEffort != nil && *req.ReasoningEffort != *effort {
		return api.InvalidRequest(api.CodeInvalidValue, "reasoning.effort", "'reasoning.effort' (%q) and 'reasoning_effort' (%q) disagree: send one.", *effort, *req.ReasoningEffort)
	}
	req.ReasoningEffort = effort
	return nil
}
