// Package testserve starts real stepflash servers on loopback for tests:
// the HTTP server with local backends over the shared test models (or a
// scripted engine for the parsing paths a random tiny model never takes),
// and the official openai-go client pointed at it. Tests of the server, the
// upstream gateway and the advisor share it.
package testserve

import (
	"context"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/stepflash/stepflash/backend"
	"github.com/stepflash/stepflash/billing"
	"github.com/stepflash/stepflash/chat"
	"github.com/stepflash/stepflash/engine"
	"github.com/stepflash/stepflash/gguf"
	"github.com/stepflash/stepflash/internal/testmodels"
	"github.com/stepflash/stepflash/local"
	"github.com/stepflash/stepflash/model"
	"github.com/stepflash/stepflash/server"
	"github.com/stepflash/stepflash/tokenizer"
)

// Loaded is a real model and its tokenizer, shared by the tests of one
// binary (loading is cheap, but not free).
type Loaded struct {
	Model model.Model
	File  *gguf.File
	Tok   *tokenizer.Tokenizer
}

var (
	loadMu sync.Mutex
	loaded = map[string]*Loaded{}
)

// Load loads a shared test model by file name (skipping the test when the
// shared models are absent).
func Load(t testing.TB, name string) *Loaded {
	t.Helper()
	return LoadPath(t, testmodels.Path(t, name))
}

// LoadPath loads the model at path once per test binary.
func LoadPath(t testing.TB, path string) *Loaded {
	t.Helper()
	loadMu.Lock()
	defer loadMu.Unlock()
	if l, ok := loaded[path]; ok {
		return l
	}
	m, f, err := model.Open(path, model.Options{Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := tokenizer.FromGGUF(f)
	if err != nil {
		t.Fatal(err)
	}
	l := &Loaded{Model: m, File: f, Tok: tok}
	loaded[path] = l
	return l
}

// Served is a server on loopback with its SDK client.
type Served struct {
	Srv *server.Server
	// URL is the base URL without /v1.
	URL    string
	Client openai.Client
}

// Real names a shared test model to serve with a fresh engine.
type Real struct {
	File    string
	Name    string
	Aliases []string
	Opts    engine.Options // Context defaults to 512
}

// Start serves the real models and any further models on loopback until
// the test ends.
func Start(t testing.TB, cfg server.Config, models []Real, extra ...*server.Model) *Served {
	t.Helper()
	srv := server.New(cfg)
	for _, rm := range models {
		if err := srv.AddModel(RealModel(t, rm)); err != nil {
			t.Fatal(err)
		}
	}
	for _, m := range extra {
		if err := srv.AddModel(m); err != nil {
			t.Fatal(err)
		}
	}
	hs := httptest.NewServer(srv)
	t.Cleanup(hs.Close)
	return &Served{Srv: srv, URL: hs.URL, Client: NewClient(hs.URL)}
}

// NewClient is the official SDK client for a server's base URL (without
// /v1): no retries, a generous timeout.
func NewClient(base string) openai.Client {
	return openai.NewClient(option.WithBaseURL(base+"/v1"), option.WithAPIKey("sk-test"), option.WithMaxRetries(0),
		option.WithRequestTimeout(2*time.Minute))
}

// RealModel is a shared test model with a fresh engine (closed when the
// test ends), served as the binary serves it.
func RealModel(t testing.TB, rm Real) *server.Model {
	t.Helper()
	l := Load(t, rm.File)
	opts := rm.Opts
	if opts.Context == 0 {
		opts.Context = 512
	}
	e := engine.New(l.Model, l.Tok, opts)
	t.Cleanup(e.Close)
	return LocalModel(t, rm.Name, rm.Aliases, local.Model{Engine: e, Tok: l.Tok, Config: l.Model.Config()})
}

// LocalModel serves a local model as the binary does: its backend behind
// the default price table.
func LocalModel(t testing.TB, name string, aliases []string, m local.Model) *server.Model {
	t.Helper()
	b, err := local.New(m)
	if err != nil {
		t.Fatal(err)
	}
	return &server.Model{Name: name, Aliases: aliases, Backend: backend.Chain(b, billing.Pricing(billing.Default))}
}

// Scripted is a local engine (a local.Generator) that writes canned
// replies, to drive the parsing paths (tool calls, reasoning) that random
// tiny models never take. A reply is chosen by the first key found in the
// decoded prompt.
type Scripted struct {
	Tok     *tokenizer.Tokenizer
	Ctx     int
	Scripts []Script
	Err     error // returned by Generate when set
	// Delay is slept before each token.
	Delay time.Duration

	mu   sync.Mutex
	last engine.Request
	seen []string // decoded prompts
}

// Script is one canned reply.
type Script struct {
	Key       string
	Pieces    []string
	Reasoning int // the first pieces that count as reasoning tokens
	Finish    string
}

// Generate writes the reply of the first script whose key the prompt holds
// ("ok" when none does).
func (s *Scripted) Generate(ctx context.Context, req engine.Request, onToken func(engine.Token) bool) (*engine.Result, error) {
	if s.Err != nil {
		return nil, s.Err
	}
	prompt := s.Tok.Decode(req.Prompt)
	s.mu.Lock()
	s.last = req
	s.seen = append(s.seen, prompt)
	s.mu.Unlock()
	sc := Script{Pieces: []string{"ok"}, Finish: "stop"}
	for _, c := range s.Scripts {
		if strings.Contains(prompt, c.Key) {
			sc = c
			break
		}
	}
	if sc.Finish == "" {
		sc.Finish = "stop"
	}
	res := &engine.Result{FinishReason: sc.Finish}
	for i, p := range sc.Pieces {
		if s.Delay > 0 {
			select {
			case <-ctx.Done():
			case <-time.After(s.Delay):
			}
		}
		if ctx.Err() != nil {
			res.FinishReason = "cancelled"
			break
		}
		t := engine.Token{ID: int32(100 + i), Text: p, Logprob: -0.5, Reasoning: i < sc.Reasoning}
		if t.Reasoning {
			res.ReasoningTokens++
		}
		res.Tokens = append(res.Tokens, t)
		if onToken != nil && !onToken(t) {
			res.FinishReason = "cancelled"
			break
		}
	}
	return res, nil
}

// QueueDepth is always 0.
func (s *Scripted) QueueDepth() int { return 0 }

// Context is the configured context length.
func (s *Scripted) Context() int { return s.Ctx }

// LastRequest is the last engine request.
func (s *Scripted) LastRequest() engine.Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.last
}

// LastPrompt is the last prompt, decoded.
func (s *Scripted) LastPrompt() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.seen) == 0 {
		return ""
	}
	return s.seen[len(s.seen)-1]
}

// ScriptedModel serves a scripted engine with the tiny-qwen3 tokenizer and
// config and the given chat template (nil: ChatML).
func ScriptedModel(t testing.TB, name string, sc *Scripted, tmpl *chat.Template) *server.Model {
	t.Helper()
	l := Load(t, "tiny-qwen3-F32.gguf")
	sc.Tok = l.Tok
	if sc.Ctx == 0 {
		sc.Ctx = 4096
	}
	return LocalModel(t, name, nil, local.Model{Engine: sc, Tok: l.Tok, Config: l.Model.Config(), Template: tmpl})
}

// Buffer is a goroutine-safe buffer for a server's log.
type Buffer struct {
	mu sync.Mutex
	b  strings.Builder
}

// Write appends p.
func (s *Buffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns what was written.
func (s *Buffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
