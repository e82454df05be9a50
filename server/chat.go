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
	m, e := s.lookup(req.Model)
	if e != nil {
		return e
	}
	if e := backend.CheckChat(&req, s.limits()); e != nil {
		return e
	}
	c := s.newCall(w, r, m, req.Model, req.ReasoningEffort, "chatcmpl-")
	if req.Stream {
		return serveStream(c, req.StreamOptions, func(emit func(*api.ChatCompletionChunk) error) error {
			return m.Backend.Chat(r.Context(), &req, emit)
		})
	}
	var acc backend.ChatAccumulator
	if err := m.Backend.Chat(r.Context(), &req, func(ch *api.ChatCompletionChunk) error {
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

func (s *Server) handleCompletions(w http.ResponseWriter, r *http.Request) *api.Error {
	var req api.CompletionRequest
	if e := s.decodeBody(w, r, &req); e != nil {
		return e
	}
	m, e := s.lookup(req.Model)
	if e != nil {
		return e
	}
	if e := backend.CheckCompletion(&req, s.limits()); e != nil {
		return e
	}
	c := s.newCall(w, r, m, req.Model, req.ReasoningEffort, "cmpl-")
	if req.Stream {
		return serveStream(c, req.StreamOptions, func(emit func(*api.Completion) error) error {
			return m.Backend.Complete(r.Context(), &req, emit)
		})
	}
	var acc backend.CompletionAccumulator
	if err := m.Backend.Complete(r.Context(), &req, func(ch *api.Completion) error {
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

func (s *Server) limits() backend.Limits { return backend.Limits{MaxN: s.cfg.MaxN} }
