package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/stepflash/stepflash/api"
)

// The causes a call's context is cancelled with when the server shuts down.
var (
	// errNotStarted: shutdown began before the backend sent anything.
	errNotStarted = errors.New("server: shutting down before the request started")
	// errShutdownTimeout: the shutdown timeout ran out.
	errShutdownTimeout = errors.New("server: shutdown timeout")
)

// shutdownRetryAfter is the Retry-After of requests ended by a shutdown:
// soon, as another replica (or this one, restarted) can take them.
const shutdownRetryAfter = 1

// shutdownGrace is how long the handlers of the requests ended at the
// shutdown timeout get to write their last event; connections still open
// after it are closed.
const shutdownGrace = 2 * time.Second

// calls tracks the completion requests in progress, for Shutdown.
type calls struct {
	mu       sync.Mutex
	draining bool
	live     map[*call]struct{}
}

// track registers c and gives it its context; a call that arrives while
// the server drains is ended at once.
func (s *Server) track(c *call) {
	c.ctx, c.cancel = context.WithCancelCause(c.r.Context())
	s.calls.mu.Lock()
	defer s.calls.mu.Unlock()
	if s.calls.live == nil {
		s.calls.live = map[*call]struct{}{}
	}
	s.calls.live[c] = struct{}{}
	if s.calls.draining {
		c.cancel(errNotStarted)
	}
}

// untrack forgets c.
func (s *Server) untrack(c *call) {
	s.calls.mu.Lock()
	delete(s.calls.live, c)
	s.calls.mu.Unlock()
	c.cancel(context.Canceled)
}

// markStarted records that the backend sent c's first chunk: from then on
// shutdown lets it finish until the timeout.
func (s *Server) markStarted(c *call) {
	s.calls.mu.Lock()
	c.started = true
	s.calls.mu.Unlock()
}

// Draining reports whether shutdown has begun.
func (s *Server) Draining() bool {
	s.calls.mu.Lock()
	defer s.calls.mu.Unlock()
	return s.calls.draining
}

// beginShutdown ends the requests whose backend has sent nothing yet
// (waiting in a queue, or still in the prompt pass) with a 503 overloaded
// and Retry-After, and every later one the same way: their clients can
// retry at once where they will be served, rather than wait here only to be
// cut at the timeout. It returns how many were ended.
func (s *Server) beginShutdown() int {
	s.calls.mu.Lock()
	defer s.calls.mu.Unlock()
	s.calls.draining = true
	n := 0
	for c := range s.calls.live {
		if !c.started {
			c.cancel(errNotStarted)
			n++
		}
	}
	return n
}

// endAll ends every request still running: a stream with an error event
// and [DONE], a non-streamed request with a 503. It returns how many.
func (s *Server) endAll() int {
	s.calls.mu.Lock()
	defer s.calls.mu.Unlock()
	for c := range s.calls.live {
		c.cancel(errShutdownTimeout)
	}
	return len(s.calls.live)
}

// Shutdown stops the http.Servers serving s gracefully. At once: they stop
// listening and close idle connections, /health/ready answers 503, and
// the requests that have not started are answered 503 overloaded with
// Retry-After. Running requests may finish until ctx ends; then streams end
// with an error event and data: [DONE], non-streamed requests get a 503, and
// after a short grace for those last writes the connections are closed. It
// returns nil when everything finished in time.
func (s *Server) Shutdown(ctx context.Context, servers ...*http.Server) error {
	s.beginShutdown()
	if shutdownAll(ctx, servers) == nil {
		return nil
	}
	n := s.endAll()
	gctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	shutdownAll(gctx, servers)
	for _, hs := range servers {
		hs.Close()
	}
	return fmt.Errorf("the shutdown timeout ran out: %d request(s) were ended", n)
}

// shutdownAll shuts the servers down together and returns the first error.
func shutdownAll(ctx context.Context, servers []*http.Server) error {
	errs := make([]error, len(servers))
	var wg sync.WaitGroup
	for i, hs := range servers {
		wg.Go(func() { errs[i] = hs.Shutdown(ctx) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// shutdownError is the error object of a call ended by shutdown, or nil
// when it was not.
func (c *call) shutdownError() *api.Error {
	if c.ctx.Err() == nil {
		return nil
	}
	var msg string
	switch cause := context.Cause(c.ctx); {
	case errors.Is(cause, errNotStarted):
		msg = "The server is shutting down and this request had not started. Retry after %d second(s): another replica, or this one restarted, will take it."
	case errors.Is(cause, errShutdownTimeout):
		msg = "The server is shutting down and its shutdown timeout ran out before this request finished. Retry after %d second(s)."
	default:
		return nil
	}
	e := api.NewError(http.StatusServiceUnavailable, api.TypeServer, api.CodeOverloaded, "", msg, shutdownRetryAfter)
	e.RetryAfter = shutdownRetryAfter
	return e
}
