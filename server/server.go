// Package server is stepflash's OpenAI-compatible HTTP API: it decodes and
// checks requests, finds the served model's Backend (package backend: the
// local engine or an upstream), and writes what the backend streams as
// server-sent events or as one JSON response; plus the model list, health
// and readiness probes and Prometheus metrics. It speaks HTTP and the wire
// formats only. Every error is an OpenAI error object (package api) with the
// status and code of DESIGN.md section 4.
package server

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/stepflash/stepflash/api"
	"github.com/stepflash/stepflash/backend"
)

// DefaultModelName is the name the first served model is also known by.
const DefaultModelName = "step-3.7-flash"

// DefaultMaxBodyBytes is the default request body limit.
const DefaultMaxBodyBytes = 8 << 20

// Model is one served model: names and the backend that answers them.
type Model struct {
	// Name is the model's own name; Aliases are further names it answers to.
	// Names match exactly.
	Name    string
	Aliases []string
	Backend backend.Backend
	// Created is the model list's "created" time (Unix seconds; default now).
	Created int64
}

// Middleware wraps an http.Handler.
type Middleware func(http.Handler) http.Handler

// Config configures a Server.
type Config struct {
	// MaxBodyBytes limits request bodies (0: DefaultMaxBodyBytes).
	MaxBodyBytes int64
	// MaxN is the largest n (choices per request) accepted (0: 16).
	MaxN int
	// Region is echoed in the stepflash extension object where the request
	// carries no caller region (backend.CallerFrom; default "global").
	Region string
	// RetryAfter is the Retry-After, in seconds, of 503 model_loading
	// answers (0: 5).
	RetryAfter int
	// Logger logs one line per request; nil logs nothing.
	Logger *slog.Logger
	// Middleware wraps the API inside the built-in request id, metrics,
	// logging, recovery and guard middleware, first outermost (auth and
	// limits go here).
	Middleware []Middleware
	// Guard is the HTTP layer's protection: timeouts, the connection cap,
	// the Host allow-list and CORS (guard.go).
	Guard Guard
	// Responses keeps the responses of /v1/responses (previous_response_id,
	// GET and DELETE /v1/responses/{id}); nil: stateless, nothing is kept.
	Responses ResponseStore
}

// Server is the HTTP API. It is an http.Handler.
type Server struct {
	cfg     Config
	mux     *http.ServeMux
	paths   *http.ServeMux // the same paths without methods, to tell 405 from 404
	handler http.Handler
	metrics *serverMetrics

	mu      sync.RWMutex
	byName  map[string]*Model
	names   []string
	models  []*Model
	loading bool

	inFlight atomic.Int64
	guard    *guard
	calls    calls
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
	if cfg.RetryAfter <= 0 {
		cfg.RetryAfter = 5
	}
	s := &Server{cfg: cfg, byName: map[string]*Model{}, mux: http.NewServeMux(), paths: http.NewServeMux(), guard: newGuard(cfg.Guard)}
	s.metrics = newServerMetrics(s)
	s.Gauge("stepflash_http_open_connections", "Open client connections of the server's listeners (capped by --max-conns).", func() []GaugeSample {
		return []GaugeSample{{Value: float64(s.OpenConns())}}
	})
	s.route("GET", "/health", s.handleHealth)
	s.route("GET", "/health/ready", s.handleReady)
	s.route("GET", "/metrics", s.handleMetrics)
	s.route("GET", "/v1/models", s.handleModels)
	s.route("GET", "/v1/models/{model...}", s.handleModel)
	s.route("POST", "/v1/chat/completions", s.handleChat)
	s.route("POST", "/v1/completions", s.handleCompletions)
	s.route("POST", "/v1/messages", s.handleMessages)
	s.route("POST", "/v1/messages/count_tokens", s.handleCountTokens)
	s.route("POST", "/v1/embeddings", s.handleEmbeddings)
	s.route("POST", "/tokenize", s.handleTokenize)
	s.route("POST", "/detokenize", s.handleDetokenize)
	s.route("POST", "/v1/responses", s.handleResponses)
	s.routeStoredResponses()
	s.mux.HandleFunc("/", s.handleNoRoute)
	mws := append([]Middleware{RequestID, s.Metrics, s.Logging, s.Recovery, messagesErrors, s.Guard}, cfg.Middleware...)
	s.handler = Chain(s.mux, mws...)
	return s
}

// Chain wraps h in mws; the first is the outermost.
func Chain(h http.Handler, mws ...Middleware) http.Handler {
	for i := len(mws) - 1; i >= 0; i-- {
		h = mws[i](h)
	}
	return h
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
	if m.Name == "" || m.Backend == nil {
		return fmt.Errorf("server: a model needs a name and a backend")
	}
	if m.Created == 0 {
		m.Created = time.Now().Unix()
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
		return nil, api.ModelLoading(s.cfg.RetryAfter)
	}
	return nil, api.ModelNotFound(name, s.names)
}

// ServeHTTP serves the API through its middleware.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.handler.ServeHTTP(w, r)
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
		"Unknown request URL: %s %s. See the API reference for the available endpoints (/v1/chat/completions, /v1/completions, /v1/responses, /v1/messages, /v1/embeddings, /v1/models).", r.Method, r.URL.Path))
}

func (s *Server) handleHealth(w http.ResponseWriter, _ *http.Request) *api.Error {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	return nil
}

func (s *Server) handleReady(w http.ResponseWriter, _ *http.Request) *api.Error {
	if !s.Ready() {
		return api.ModelLoading(s.cfg.RetryAfter)
	}
	if s.Draining() {
		e := api.NewError(http.StatusServiceUnavailable, api.TypeServer, api.CodeOverloaded, "", "The server is shutting down.")
		e.RetryAfter = shutdownRetryAfter
		return e
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
	info := m.Backend.Info()
	owner := info.OwnedBy
	if owner == "" {
		owner = "stepflash"
	}
	return api.Model{ID: name, Object: "model", Created: m.Created, OwnedBy: owner, MaxModelLen: info.Context, InputModalities: info.InputModalities}
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
	writeErrorBody(w, e, api.ErrorResponse{Error: e})
}

// writeErrorBody writes body, the error object of e in some API's shape,
// with e's status, Retry-After and (on 401) WWW-Authenticate.
func writeErrorBody(w http.ResponseWriter, e *api.Error, body any) {
	status := e.Status
	if status == 0 {
		status = http.StatusInternalServerError
	}
	if e.RetryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(e.RetryAfter))
	}
	if status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="stepflash"`)
	}
	writeJSON(w, status, body)
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
