// Package local answers requests from the in-process engine: it renders chat
// requests with the model's template, tokenizes, applies the model's effort
// policy, runs the choices on the engine, cuts replies at stop strings,
// parses reasoning and tool calls out of the text, and streams the result as
// OpenAI chunks. It is the Backend (package backend) of a loaded GGUF model.
package local

import (
	"context"
	"fmt"
	"runtime"

	"github.com/stepflash/stepflash/backend"
	"github.com/stepflash/stepflash/chat"
	"github.com/stepflash/stepflash/effort"
	"github.com/stepflash/stepflash/engine"
	"github.com/stepflash/stepflash/model"
	"github.com/stepflash/stepflash/tokenizer"
)

// Generator is what a local backend needs from an engine; *engine.Engine
// implements it.
type Generator interface {
	Generate(ctx context.Context, req engine.Request, onToken func(engine.Token) bool) (*engine.Result, error)
	QueueDepth() int
	Context() int
}

// Model is a loaded model to serve.
type Model struct {
	Engine Generator
	Tok    *tokenizer.Tokenizer
	Config *model.Config
	// Template renders chat requests; nil means chat.FallbackTemplate().
	Template *chat.Template
	// Effort maps reasoning_effort tiers to compute; nil means
	// effort.DefaultPolicy for the model.
	Effort effort.Policy
	// Fingerprint is the system_fingerprint of responses (default
	// "fp_stepflash").
	Fingerprint string
	// QueueLimit is the engine's queue limit (engine.Options.QueueLimit;
	// 0: unknown, not checked). Every choice of a request (n, times the
	// prompts of a legacy completion) enters the queue at once, so a
	// request with more choices than it holds could never be admitted: it
	// is a 400 naming the limit, not a 503 to retry forever.
	QueueLimit int
	// Vision encodes the images of chat requests (a vision projector);
	// nil: the model takes no images, and a request with one is a 400.
	// Images fetches and decodes them; it must be set with Vision.
	Vision Vision
	Images ImageLoader
	// Pooling is how /v1/embeddings pools the final hidden states;
	// PoolNone: PoolingFor(Config), the GGUF's choice or mean.
	Pooling engine.Pooling
}

// Backend is a backend.Backend for one loaded model.
type Backend struct {
	m        Model
	shape    effort.Shape
	tmpl     *chat.Template
	thinking chat.Thinking
	thinkCache
	// imageSlots bounds the images fetched, decoded and encoded at once
	// (a decoded 50-megapixel image holds some 200 MB).
	imageSlots chan struct{}
	pooling    engine.Pooling // PoolNone: the model has no embeddings (a reranker)
}

// New checks m and returns its backend.
func New(m Model) (*Backend, error) {
	if m.Engine == nil || m.Tok == nil || m.Config == nil {
		return nil, fmt.Errorf("local: a model needs an engine, a tokenizer and a config")
	}
	if m.Vision != nil && m.Images == nil {
		return nil, fmt.Errorf("local: a model with a vision encoder needs an image loader")
	}
	b := &Backend{m: m, shape: Shape(m.Config), tmpl: m.Template, imageSlots: make(chan struct{}, max(2, runtime.GOMAXPROCS(0)))}
	if b.tmpl == nil {
		b.tmpl = chat.FallbackTemplate()
	}
	b.thinking = b.tmpl.Thinking()
	b.pooling = m.Pooling
	if b.pooling == engine.PoolNone {
		b.pooling = PoolingFor(m.Config)
	}
	if b.m.Effort == nil {
		b.m.Effort = effort.DefaultPolicy(b.shape)
	}
	if err := b.m.Effort.Check(b.shape); err != nil {
		return nil, err
	}
	if b.m.Fingerprint == "" {
		b.m.Fingerprint = "fp_stepflash"
	}
	return b, nil
}

// Shape is what the effort policy needs to know of a model.
func Shape(cfg *model.Config) effort.Shape {
	return effort.Shape{Arch: cfg.Arch, Experts: cfg.NExpert, ExpertsUsed: cfg.NExpertUse}
}

// Info describes the model for the model list.
func (b *Backend) Info() backend.Info {
	mod := []string{"text"}
	if b.m.Vision != nil {
		mod = append(mod, "image")
	}
	return backend.Info{Context: b.m.Engine.Context(), OwnedBy: "stepflash", Label: "local", InputModalities: mod}
}

// QueueDepth is the number of requests waiting for a decode slot.
func (b *Backend) QueueDepth() int { return b.m.Engine.QueueDepth() }

// Effort is the model's effort policy.
func (b *Backend) Effort() effort.Policy { return b.m.Effort }

// Thinking turns a model family's reasoning block into the engine's terms
// for tok's vocabulary, with a budget (effort.Unlimited for none). It is nil
// when the vocabulary lacks either tag as a single token: such a model has
// no reasoning block the engine can follow.
func Thinking(tok *tokenizer.Tokenizer, th chat.Thinking, budget int) *engine.Thinking {
	open, ok1 := tok.Lookup(th.Open)
	closeID, ok2 := tok.Lookup(th.Close)
	if !ok1 || !ok2 {
		return nil
	}
	return &engine.Thinking{Open: open, Close: closeID, Budget: budget,
		HandOver:   tok.Encode(th.HandOver, false, true),
		CloseEmpty: tok.Encode(th.CloseEmpty, false, true)}
}
