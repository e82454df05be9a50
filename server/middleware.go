package server

import (
	"context"
	"net/http"
	"runtime/debug"
	"strconv"
	"time"

	"github.com/stepflash/stepflash/api"
	"github.com/stepflash/stepflash/backend"
)

// RequestIDFrom returns the request's id (as sent in X-Request-Id), or "".
func RequestIDFrom(ctx context.Context) string { return backend.RequestID(ctx) }

// RequestID gives every request an id, sent back as X-Request-Id and kept in
// the request's context (RequestIDFrom), and sets the X-Advisor header every
// response carries (DESIGN.md section 3).
func RequestID(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := "req_" + randomHex(12)
		w.Header().Set("X-Request-Id", id)
		w.Header().Set("X-Advisor", "none")
		next.ServeHTTP(w, r.WithContext(backend.WithRequestID(r.Context(), id)))
	})
}

// statusWriter records the status and size of a response for the metrics
// and the log; Unwrap lets http.ResponseController reach the Flusher
// underneath.
type statusWriter struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += int64(n)
	return n, err
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *statusWriter) code() int {
	if w.status == 0 {
		return http.StatusOK
	}
	return w.status
}

// recorder returns w as a *statusWriter, wrapping it if it is not one.
func recorder(w http.ResponseWriter) *statusWriter {
	if sw, ok := w.(*statusWriter); ok {
		return sw
	}
	return &statusWriter{ResponseWriter: w}
}

// route is the pattern a request matches, for metric labels.
func (s *Server) routeOf(r *http.Request) string {
	_, pattern := s.mux.Handler(r)
	if pattern == "/" || pattern == "" {
		return "other"
	}
	return pattern
}

// Metrics counts requests by route and status, times them and tracks those
// in flight.
func (s *Server) Metrics(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		s.inFlight.Add(1)
		defer s.inFlight.Add(-1)
		sw := recorder(w)
		route := s.routeOf(r)
		defer func() {
			s.metrics.requests.Add(1, route, strconv.Itoa(sw.code()))
			s.metrics.requestDuration.Observe(time.Since(start).Seconds(), route)
		}()
		next.ServeHTTP(sw, r)
	})
}

// Logging logs one line per request (when the server has a Logger).
func (s *Server) Logging(next http.Handler) http.Handler {
	if s.cfg.Logger == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := recorder(w)
		defer func() {
			s.cfg.Logger.Info("request", "id", RequestIDFrom(r.Context()), "method", r.Method, "path", r.URL.Path,
				"status", sw.code(), "bytes", sw.bytes, "duration", time.Since(start))
		}()
		next.ServeHTTP(sw, r)
	})
}

// Recovery turns a panic into a 500 error object (when nothing was written
// yet) and logs it with its stack.
func (s *Server) Recovery(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sw := recorder(w)
		defer func() {
			p := recover()
			if p == nil {
				return
			}
			if p == http.ErrAbortHandler {
				panic(p)
			}
			id := RequestIDFrom(r.Context())
			if s.cfg.Logger != nil {
				s.cfg.Logger.Error("panic", "request_id", id, "panic", p, "stack", string(debug.Stack()))
			}
			if sw.status == 0 {
				writeError(sw, api.Internal("internal error (request %s)", id))
			}
		}()
		next.ServeHTTP(sw, r)
	})
}
