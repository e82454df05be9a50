package server_test

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

// loadedModel is a real model with its engine, shared by the tests of one
// binary (loading is cheap, but the engines' goroutines are not free).
type loadedModel struct {
	m   model.Model
	f   *gguf.File
	tok *tokenizer.Tokenizer
}

var (
	loadMu sync.Mutex
	loaded = map[string]*loadedModel{}
)

func loadModel(t *testing.T, name string) *loadedModel {
	t.Helper()
	return loadPath(t, testmodels.Path(t, name))
}

// loadPath loads the model at path once per test binary.
func loadPath(t *testing.T, path string) *loadedModel {
	t.Helper()
	name := path
	loadMu.Lock()
	defer loadMu.Unlock()
	if l, ok := loaded[name]; ok {
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
	l := &loadedModel{m: m, f: f, tok: tok}
	loaded[name] = l
	return l
}

// served is a server on loopback with its SDK client.
type served struct {
	srv    *server.Server
	url    string // base URL, without /v1
	client openai.Client
}

// realModel serves a test model file under name (plus aliases).
type realModel struct {
	file    string
	name    string
	aliases []string
	opts    engine.Options
}

func startServer(t *testing.T, cfg server.Config, models []realModel, extra ...*server.Model) *served {
	t.Helper()
	srv := server.New(cfg)
	for _, rm := range models {
		l := loadModel(t, rm.file)
		opts := rm.opts
		if opts.Context == 0 {
			opts.Context = 512
		}
		e := engine.New(l.m, l.tok, opts)
		t.Cleanup(e.Close)
		if err := srv.AddModel(localModel(t, rm.name, rm.aliases, local.Model{Engine: e, Tok: l.tok, Config: l.m.Config()})); err != nil {
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
	client := openai.NewClient(option.WithBaseURL(hs.URL+"/v1"), option.WithAPIKey("sk-test"), option.WithMaxRetries(0),
		option.WithRequestTimeout(2*time.Minute))
	return &served{srv: srv, url: hs.URL, client: client}
}

// scripted is a Generator that writes canned replies, to drive the
// parsing paths (tool calls, reasoning) that random tiny models never take.
// A reply is chosen by the first key found in the decoded prompt.
type scripted struct {
	tok     *tokenizer.Tokenizer
	ctx     int
	scripts []script
	err     error // returned by Generate when set

	mu   sync.Mutex
	last engine.Request
	seen []string // decoded prompts
}

type script struct {
	key       string
	pieces    []string
	reasoning int // the first pieces that count as reasoning tokens
	finish    string
}

func (s *scripted) Generate(ctx context.Context, req engine.Request, onToken func(engine.Token) bool) (*engine.Result, error) {
	if s.err != nil {
		return nil, s.err
	}
	prompt := s.tok.Decode(req.Prompt)
	s.mu.Lock()
	s.last = req
	s.seen = append(s.seen, prompt)
	s.mu.Unlock()
	sc := script{pieces: []string{"ok"}, finish: "stop"}
	for _, c := range s.scripts {
		if strings.Contains(prompt, c.key) {
			sc = c
			break
		}
	}
	if sc.finish == "" {
		sc.finish = "stop"
	}
	res := &engine.Result{FinishReason: sc.finish}
	for i, p := range sc.pieces {
		if ctx.Err() != nil {
			res.FinishReason = "cancelled"
			break
		}
		t := engine.Token{ID: int32(100 + i), Text: p, Logprob: -0.5, Reasoning: i < sc.reasoning}
		if t.Reasoning {
			res.ReasoningTokens++
		}
		res.Tokens = append(res.Tokens, t)
		if !onToken(t) {
			res.FinishReason = "cancelled"
			break
		}
	}
	return res, nil
}

func (s *scripted) QueueDepth() int { return 0 }
func (s *scripted) Context() int    { return s.ctx }

func (s *scripted) lastRequest() engine.Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.last
}

func (s *scripted) lastPrompt() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.seen) == 0 {
		return ""
	}
	return s.seen[len(s.seen)-1]
}

// scriptedModel wraps a scripted engine as a served model, with the
// tiny-qwen3 tokenizer and config.
func scriptedModel(t *testing.T, name string, sc *scripted) *server.Model {
	return scriptedModelWith(t, name, sc, nil)
}

// scriptedModelWith is scriptedModel with a chat template (nil: ChatML).
func scriptedModelWith(t *testing.T, name string, sc *scripted, tmpl *chat.Template) *server.Model {
	l := loadModel(t, "tiny-qwen3-F32.gguf")
	sc.tok = l.tok
	if sc.ctx == 0 {
		sc.ctx = 4096
	}
	return localModel(t, name, nil, local.Model{Engine: sc, Tok: l.tok, Config: l.m.Config(), Template: tmpl})
}

// localModel serves a local model as the binary does: its backend behind
// the default price table.
func localModel(t *testing.T, name string, aliases []string, m local.Model) *server.Model {
	t.Helper()
	b, err := local.New(m)
	if err != nil {
		t.Fatal(err)
	}
	return &server.Model{Name: name, Aliases: aliases, Backend: backend.Chain(b, billing.Pricing(billing.Default))}
}
