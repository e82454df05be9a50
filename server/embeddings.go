package server

import (
	"cmp"
	"net/http"

	"github.com/stepflash/stepflash/api"
	"github.com/stepflash/stepflash/backend"
)

// handleEmbeddings serves POST /v1/embeddings (OpenAI's shape).
func (s *Server) handleEmbeddings(w http.ResponseWriter, r *http.Request) *api.Error {
	var req api.EmbeddingRequest
	if e := s.decodeBody(w, r, &req); e != nil {
		return e
	}
	m, e := s.lookup(req.Model)
	if e != nil {
		return e
	}
	if e := backend.CheckEmbedding(&req); e != nil {
		return e
	}
	c := s.newCall(w, r, m, req.Model, nil, "")
	w.Header().Del("X-Reasoning-Effort") // no effort applies to an embedding
	defer c.end()
	resp, err := backend.Embed(c.ctx, m.Backend, &req)
	if err != nil {
		return c.fail(err)
	}
	resp.Model = req.Model
	if resp.Stepflash != nil {
		resp.Stepflash.Region = cmp.Or(backend.CallerFrom(r.Context()).Region, s.cfg.Region)
	}
	c.observeUsage(resp.Usage)
	writeJSON(w, http.StatusOK, resp)
	return nil
}

// tokenizerOf is the backend's tokenizer of the named model, or of the
// first served model when the request names none (llama-server's
// /tokenize takes no model).
func (s *Server) tokenizerOf(name string) (backend.Tokenizer, *api.Error) {
	var m *Model
	if name == "" {
		if list := s.modelList(); len(list) > 0 {
			m = list[0]
		} else {
			return nil, api.ModelLoading(s.cfg.RetryAfter)
		}
	} else {
		var e *api.Error
		if m, e = s.lookup(name); e != nil {
			return nil, e
		}
	}
	t, err := backend.AsTokenizer(m.Backend)
	if err != nil {
		return nil, asAPIError(err, "tokenization")
	}
	return t, nil
}

// handleTokenize serves POST /tokenize (llama-server's and vLLM's shapes).
func (s *Server) handleTokenize(w http.ResponseWriter, r *http.Request) *api.Error {
	var req api.TokenizeRequest
	if e := s.decodeBody(w, r, &req); e != nil {
		return e
	}
	t, e := s.tokenizerOf(req.Model)
	if e != nil {
		return e
	}
	resp, err := t.Tokenize(r.Context(), &req)
	if err != nil {
		return asAPIError(err, "tokenization")
	}
	writeJSON(w, http.StatusOK, resp)
	return nil
}

// handleDetokenize serves POST /detokenize.
func (s *Server) handleDetokenize(w http.ResponseWriter, r *http.Request) *api.Error {
	var req api.DetokenizeRequest
	if e := s.decodeBody(w, r, &req); e != nil {
		return e
	}
	if req.Tokens == nil {
		return api.InvalidRequest(api.CodeMissingParameter, "tokens", "you must provide a tokens parameter (an array of token ids)")
	}
	t, e := s.tokenizerOf(req.Model)
	if e != nil {
		return e
	}
	resp, err := t.Detokenize(r.Context(), &req)
	if err != nil {
		return asAPIError(err, "tokenization")
	}
	writeJSON(w, http.StatusOK, resp)
	return nil
}

// handleCountTokens serves Anthropic's POST /v1/messages/count_tokens: the
// input tokens the same body would use on /v1/messages (the conversation
// as the chat template renders it, with tools and images), in Anthropic's
// shapes for the answer and for errors.
func (s *Server) handleCountTokens(w http.ResponseWriter, r *http.Request) *api.Error {
	if e := s.countTokens(w, r); e != nil {
		writeMessagesError(w, e)
	}
	return nil
}

func (s *Server) countTokens(w http.ResponseWriter, r *http.Request) *api.Error {
	req, e := s.decodeMessages(w, r)
	if e != nil {
		return e
	}
	if req.MaxTokens == nil {
		one := 1 // count_tokens takes no max_tokens; the translation needs one
		req.MaxTokens = &one
	}
	creq, paths, e := translateMessagesRequest(req)
	if e != nil {
		return e
	}
	m, e := s.lookup(req.Model)
	if e != nil {
		return e
	}
	if e := backend.CheckChat(creq, s.limitsFor(m)); e != nil {
		return paths.remap(e)
	}
	t, err := backend.AsTokenizer(m.Backend)
	if err != nil {
		return asAPIError(err, "tokenization")
	}
	n, err := t.CountChat(r.Context(), creq)
	if err != nil {
		return paths.remap(asAPIError(err, "tokenization"))
	}
	writeJSON(w, http.StatusOK, map[string]int{"input_tokens": n})
	return nil
}
