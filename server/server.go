// Package server is stepflash's OpenAI-compatible HTTP API: chat
// completions (with SSE streaming, tools, reasoning and logprobs), legacy
// completions, the model list, health and readiness probes, and Prometheus
// metrics, served from local engines (see engine.Engine). Every error is an
// OpenAI error object (package api) with the status and code of DESIGN.md
// section 4.
package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/stepflash/stepflash/api"
	"github.com/stepflash/stepflash/chat"
	"github.com/stepflash/stepflash/engine"
	"github.com/stepflash/stepflash/model"
	"github.com/stepflash/stepflash/tokenizer"
)

// DefaultModelName is the name the first served model is also known by.
const DefaultModelName = "step-3.7-flash"

// DefaultMaxBodyBytes is the default request body limit.
const DefaultMaxBodyBytes = 8 << 20

// Generator is what the server needs from an engine; *engine.Engine
// implements it.
type Generator interface {
	Generate(ctx context.Context, req engine.Request, onToken func(engine.Token) bool) (*engine.Result, error)
	QueueDepth() int
	Context() int
}

// Model is one served model.
type Model struct {
	// Name is the model's own name; Aliases are further names it answers to.
	// Names match exactly.
	Name    string
	Aliases []string
	Engine  Generator
	Tok     *tokenizer.Tokenizer
	Config  *model.Config
	// Template renders chat requests; nil means chat.FallbackTemplate().
	Template *chat.Template
	// Effort maps reasoning_effort tiers to compute; nil means
	// engine.DefaultEffortPolicy(Config). EffortConfig.Policy builds one
	// from a configuration; a thinking budget of UnlimitedThinking sets no
	// limit.
	Effort engine.EffortPolicy
	// Prices bill usage; the zero value means DefaultPrices.
	Prices Prices
	// Fingerprint is the system_fingerprint of responses.
	Fingerprint string
	// Created is the model list's "created" time (Unix seconds).
	Created int64
}

func (m *Model) template() *chat.Template {
	if m.Template == nil {
		return chat.FallbackTemplate()
	}
	return m.Template
}

// Config configures a Server.
type Config struct {
	// MaxBodyBytes limits request bodies (0: DefaultMaxBodyBytes).
	MaxBodyBytes int64
	// MaxN is the largest n (choices per request) accepted (0: 16).
	MaxN int
	// Region is echoed in the stepflash extension object (default "global").
	Region string
	// RetryAfter is the Retry-After, in seconds, of 503 responses (0: 1 for
	// overloaded, 5 while loading).
	RetryAfter int
	// Logger logs one line per request; nil logs nothing.
	Logger *slog.Logger
}

// Server is the HTTP API. It is an http.Handler.
type Server struct {
	cfg     Config
	mux     *http.ServeMux
	paths   *http.ServeMux // the same paths without methods, to tell 405 from 404
	metrics *serverMetrics

	mu      sync.RWMutex
	byName  map[string]*Model
	names   []string
	models  []*Model
	loading bool

	inFlight atomic.Int64
}

// New makes a server with no models. It is ready (see Ready) until
// SetLoading(true) is called.
func New(cfg Config) *Server {
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if cfg.MaxN <= 0 {
		cfg.MaxN = 16
	}
	if cfg.Region == "" {
		cfg.Region = "global"
	}
	s := &Server{cfg: cfg, byName: map[string]*Model{}, mux: http.NewServeMux(), paths: http.NewServeMux()}
	s.metrics = newServerMetrics(s)
	s.route("GET", "/health", s.handleHealth)
	s.route("GET", "/health/ready", s.handleReady)
	s.route("GET", "/metrics", s.handleMetrics)
	s.route("GET", "/v1/models", s.handleModels)
	s.route("GET", "/v1/models/{model...}", s.handleModel)
	s.route("POST", "/v1/chat/completions", s.handleChat)
	s.route("POST", "/v1/completions", s.handleCompletions)
	s.mux.HandleFunc("/", s.handleNoRoute)
	return s
}

func (s *Server) route(method, path string, h func(http.ResponseWriter, *http.Request) *api.Error) {
	s.mux.HandleFunc(method+" "+path, func(w http.ResponseWriter, r *http.Request) {
		if err := h(w, r); err != nil {
			writeError(w, err)
		}
	})
	allow := method
	if method == "GET" {
		allow = "GET, HEAD"
	}
	s.paths.HandleFunc(path, func(w http.ResponseWriter, _ *http.Request) { w.Header().Set("Allow", allow) })
}

// AddModel serves a model under its name and aliases. A name already served
// is an error.
func (s *Server) AddModel(m *Model) error {
	if m.Name == "" || m.Engine == nil || m.Tok == nil || m.Config == nil {
		return fmt.Errorf("server: model needs a name, an engine, a tokenizer and a config")
	}
	if m.Effort == nil {
		m.Effort = engine.DefaultEffortPolicy(m.Config)
	}
	if err := checkPolicy(m.Effort, m.Config); err != nil {
		return fmt.Errorf("server: model %q: %w", m.Name, err)
	}
	if m.Prices == (Prices{}) {
		m.Prices = DefaultPrices
	}
	if m.Created == 0 {
		m.Created = time.Now().Unix()
	}
	if m.Fingerprint == "" {
		m.Fingerprint = "fp_stepflash"
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	names := append([]string{m.Name}, m.Aliases...)
	for _, n := range names {
		if _, dup := s.byName[n]; dup {
			return fmt.Errorf("server: model name %q is served twice", n)
		}
	}
	for _, n := range names {
		s.byName[n] = m
		s.names = append(s.names, n)
	}
	s.models = append(s.models, m)
	return nil
}

// SetLoading marks the server as loading models: /health/ready answers 503
// and requests for names not served yet answer 503 model_loading.
func (s *Server) SetLoading(loading bool) {
	s.mu.Lock()
	s.loading = loading
	s.mu.Unlock()
}

// Ready reports whether loading is over.
func (s *Server) Ready() bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return !s.loading
}

// Names returns the served model names in order.
func (s *Server) Names() []string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return slices.Clone(s.names)
}

func (s *Server) modelList() []*Model {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return slices.Clone(s.models)
}

// lookup finds a served model by exact name.
func (s *Server) lookup(name string) (*Model, *api.Error) {
	if name == "" {
		return nil, api.InvalidRequest(api.CodeMissingParameter, "model", "you must provide a model parameter")
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if m, ok := s.byName[name]; ok {
		return m, nil
	}
	if s.loading {
		return nil, api.ModelLoading(s.retryAfter(5))
	}
	return nil, api.ModelNotFound(name, s.names)
}

func (s *Server) retryAfter(def int) int {
	if s.cfg.RetryAfter > 0 {
		return s.cfg.RetryAfter
	}
	return def
}

// statusWriter records the status for metrics and logs; Unwrap lets
// http.ResponseController reach the Flusher underneath.
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

type ctxKey int

const requestIDKey ctxKey = 0

// ServeHTTP serves the API: it sets X-Request-Id and X-Advisor on every
// response, records metrics, and turns panics into 500 error objects.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	s.inFlight.Add(1)
	defer s.inFlight.Add(-1)
	id := "req_" + randomHex(12)
	w.Header().Set("X-Request-Id", id)
	w.Header().Set("X-Advisor", "none")
	sw := &statusWriter{ResponseWriter: w}
	r = r.WithContext(context.WithValue(r.Context(), requestIDKey, id))
	_, pattern := s.mux.Handler(r)
	route := pattern
	if route == "/" {
		route = "other"
	}
	defer func() {
		if p := recover(); p != nil {
			if p == http.ErrAbortHandler {
				panic(p)
			}
			if s.cfg.Logger != nil {
				s.cfg.Logger.Error("panic", "request_id", id, "panic", p, "stack", string(debug.Stack()))
			}
			if sw.status == 0 {
				writeError(sw, api.Internal("internal error (request %s)", id))
			}
		}
		code := sw.status
		if code == 0 {
			code = http.StatusOK
		}
		d := time.Since(start)
		s.metrics.requests.Add(1, route, strconv.Itoa(code))
		s.metrics.requestDuration.Observe(d.Seconds(), route)
		if s.cfg.Logger != nil {
			s.cfg.Logger.Info("request", "id", id, "method", r.Method, "path", r.URL.Path, "status", code, "bytes", sw.bytes, "duration", d)
		}
	}()
	s.mux.ServeHTTP(sw, r)
}

func (s *Server) handleNoRoute(w http.ResponseWriter, r *http.Request) {
	if _, pattern := s.paths.Handler(r); pattern != "" {
		h, _ := s.paths.Handler(r)
		h.ServeHTTP(w, r) // sets Allow
		writeError(w, api.NewError(http.StatusMethodNotAllowed, api.TypeInvalidRequest, api.CodeMethodNotAllowed, "",
			"Method %s is not allowed for %s; allowed: %s.", r.Method, r.URL.Path, w.Header().Get("Allow")))
		return
	}
	writeError(w, api.NewError(http.StatusNotFound, api.TypeInvalidRequest, api.CodeNotFound, "",
		"Unknown request URL: %s %s. See the API reference for the available endpoints (/v1/chat/completions, /v1/completions, /v1/models).", r.Method, r.URL.Path))
}

func (s *Server) handleHealth(w http.ResponseWriter, _ *http.Request) *api.Error {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	return nil
}

func (s *Server) handleReady(w http.ResponseWriter, _ *http.Request) *api.Error {
	if !s.Ready() {
		return api.ModelLoading(s.retryAfter(5))
	}
	writeJSON(w, http.StatusOK, map[string]any{"status": "ready", "models": s.Names()})
	return nil
}

func (s *Server) handleMetrics(w http.ResponseWriter, _ *http.Request) *api.Error {
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	s.metrics.reg.write(w)
	return nil
}

func (s *Server) modelEntry(name string, m *Model) api.Model {
	return api.Model{ID: name, Object: "model", Created: m.Created, OwnedBy: "stepflash", MaxModelLen: m.Engine.Context()}
}

func (s *Server) handleModels(w http.ResponseWriter, _ *http.Request) *api.Error {
	list := api.ModelList{Object: "list", Data: []api.Model{}}
	s.mu.RLock()
	for _, n := range s.names {
		list.Data = append(list.Data, s.modelEntry(n, s.byName[n]))
	}
	s.mu.RUnlock()
	writeJSON(w, http.StatusOK, list)
	return nil
}

func (s *Server) handleModel(w http.ResponseWriter, r *http.Request) *api.Error {
	name := r.PathValue("model")
	m, err := s.lookup(name)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, s.modelEntry(name, m))
	return nil
}

// writeJSON writes v as a JSON response.
func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		b, _ = json.Marshal(api.ErrorResponse{Error: api.Internal("encoding the response: %v", err)})
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)+1))
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}

// writeError writes an OpenAI error object with its status (and Retry-After).
func writeError(w http.ResponseWriter, e *api.Error) {
	status := e.Status
	if status == 0 {
		status = http.StatusInternalServerError
	}
	if e.RetryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(e.RetryAfter))
	}
	writeJSON(w, status, api.ErrorResponse{Error: e})
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

const idChars = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"

func randomID(prefix string, n int) string {
	b := make([]byte, n)
	rand.Read(b)
	for i := range b {
		b[i] = idChars[int(b[i])%len(idChars)]
	}
	return prefix + string(b)
}

// engineError maps an engine error to an error object.
func (s *Server) engineError(err error, ctxLen, promptLen int) *api.Error {
	switch {
	case errors.Is(err, engine.ErrOverloaded):
		return api.Overloaded(s.retryAfter(1))
	case errors.Is(err, engine.ErrContextLength):
		return api.ContextLengthExceeded("messages", ctxLen, promptLen, 0)
	case errors.Is(err, engine.ErrClosed):
		e := api.NewError(http.StatusServiceUnavailable, api.TypeServer, api.CodeOverloaded, "", "The server is shutting down. Retry after %d second(s).", s.retryAfter(1))
		e.RetryAfter = s.retryAfter(1)
		return e
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return api.NewError(499, api.TypeInvalidRequest, "", "", "request cancelled")
	}
	return api.Internal("generation failed: %v", err)
}
