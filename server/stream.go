package server

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"github.com/stepflash/stepflash/api"
	"github.com/stepflash/stepflash/backend"
	"github.com/stepflash/stepflash/sse"
)

// call is one completion request on its way through a backend: the response
// envelope, and what the metrics need.
type call struct {
	s        *Server
	w        http.ResponseWriter
	r        *http.Request
	m        *Model
	id       string
	created  int64
	model    string // the name the client asked for
	start    time.Time
	first    bool // a chunk with choices was seen
	finishes []string

	// ctx is the backend's context: the request's, which Shutdown also
	// ends (shutdown.go); started (guarded by s.calls.mu) is set at the
	// backend's first chunk.
	ctx     context.Context
	cancel  context.CancelCauseFunc
	started bool
	any     bool // a chunk was seen (any chunk, unlike first)
}

func (s *Server) newCall(w http.ResponseWriter, r *http.Request, m *Model, model string, effort *string, idPrefix string) *call {
	// The tier is set before the backend runs, so that its errors carry it.
	w.Header().Set("X-Reasoning-Effort", string(backend.EffortLevel(effort)))
	c := &call{s: s, w: w, r: r, m: m, id: randomID(idPrefix, 24), created: time.Now().Unix(), model: model, start: time.Now()}
	s.track(c)
	return c
}

// end is called when the handler is done with the call.
func (c *call) end() { c.s.untrack(c) }

// seen is called with each chunk from the backend, before anything is
// done with it; an error (shutdown ended the call) is emit's answer.
func (c *call) seen() error {
	if e := c.shutdownError(); e != nil {
		return e
	}
	if !c.any {
		c.any = true
		c.s.markStarted(c)
	}
	return nil
}

// chunk is a streamed chunk of either endpoint.
type chunk interface {
	Head() *api.Envelope
	Ext() *api.Extension
	FinalUsage() *api.Usage
	FinishReasons() []string
}

// observeChunk records time to first token and finish reasons.
func (c *call) observeChunk(ch chunk) {
	if !c.first && ch.FinalUsage() == nil {
		c.first = true
		c.s.metrics.ttft.Observe(time.Since(c.start).Seconds(), c.m.Name)
	}
	c.finishes = append(c.finishes, ch.FinishReasons()...)
}

// stamp sets what the server owns in a chunk or response: the id, the
// creation time, the model name the client used and the region.
func (c *call) stamp(h *api.Envelope, ext *api.Extension) {
	h.ID, h.Created, h.Model = c.id, c.created, c.model
	if ext != nil {
		ext.Region = cmp.Or(backend.CallerFrom(c.r.Context()).Region, c.s.cfg.Region)
		if ext.Advisor != "" {
			c.w.Header().Set("X-Advisor", ext.Advisor)
		}
	}
}

// finish stamps a whole response and records its usage.
func (c *call) finish(h *api.Envelope, ext *api.Extension, u *api.Usage) {
	c.stamp(h, ext)
	c.observeUsage(u)
}

func (c *call) observeUsage(u *api.Usage) {
	mt, name := c.s.metrics, c.m.Name
	if u != nil {
		mt.promptTokens.Add(float64(u.PromptTokens), name)
		mt.completionTokens.Add(float64(u.CompletionTokens), name)
		mt.cachedTokens.Add(float64(u.PromptTokensDetails.CachedTokens), name)
		mt.reasoningTokens.Add(float64(u.CompletionTokensDetails.ReasoningTokens), name)
	}
	for _, f := range c.finishes {
		mt.generations.Add(1, name, f)
	}
}

// fail maps a backend's error to the error object of the response.
func (c *call) fail(err error) *api.Error {
	if e := c.shutdownError(); e != nil {
		return e
	}
	return asAPIError(err, "generation")
}

// serveStream runs a backend and writes its chunks as server-sent events.
// The headers wait for the first chunk, so an error before it is still an
// HTTP error response; an error after it ends the stream with an error
// event and [DONE]. With stream_options.include_usage every chunk carries
// "usage": null but the last, which carries the usage; without it the last
// chunk is not sent.
func serveStream[C chunk](c *call, opts *api.StreamOptions, run func(emit func(C) error) error) *api.Error {
	out := sse.NewWriter(c.w)
	includeUsage := opts != nil && opts.IncludeUsage
	err := run(func(ch C) error {
		if err := c.seen(); err != nil {
			return err
		}
		c.observeChunk(ch)
		c.stamp(ch.Head(), ch.Ext())
		if u := ch.FinalUsage(); u != nil {
			c.observeUsage(u)
			if !includeUsage {
				return nil
			}
			return out.JSON(ch)
		}
		if includeUsage {
			return out.Data(withNullUsage(ch))
		}
		return out.JSON(ch)
	})
	switch {
	case err == nil:
		out.Done()
		return nil
	case out.Err() != nil || c.r.Context().Err() != nil:
		return nil // the client went away
	case !out.Started():
		return c.fail(err)
	}
	out.JSON(api.ErrorResponse{Error: c.fail(err)})
	out.Done()
	return nil
}

// withNullUsage renders a chunk with "usage": null, as OpenAI does on every
// chunk but the last when include_usage is set.
func withNullUsage(v any) []byte {
	b, _ := json.Marshal(v)
	return append(b[:len(b)-1], []byte(`,"usage":null}`)...)
}

// asAPIError is err as an error object; a plain error is a 500 saying
// what failed.
func asAPIError(err error, what string) *api.Error {
	var e *api.Error
	switch {
	case errors.As(err, &e):
		return e
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return api.NewError(499, api.TypeInvalidRequest, "", "", "request cancelled")
	}
	return api.Internal("%s failed: %v", what, err)
}
