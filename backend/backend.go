// Package backend is the seam between the HTTP API and whatever answers a
// request — the in-process engine (package local) or a remote
// OpenAI-compatible server (package upstream): the Backend interface at the
// OpenAI level, what flows through it, the checks every request passes
// before it reaches one, and middleware that wraps one.
//
// A Backend streams. It gets a validated request and calls emit with each
// chunk in order: the HTTP layer writes chunks as server-sent events, or
// joins them (Accumulate*) into one response for a non-streaming client. The
// same stream serves both, so a streamed and a non-streamed answer cannot
// drift apart.
package backend

import (
	"context"
	"sync"

	"github.com/stepflash/stepflash/api"
)

// Backend answers chat and legacy completion requests.
//
// The contract, for both methods:
//   - req has passed CheckChat / CheckCompletion; a Backend must not modify
//     it (copy what it changes).
//   - emit is called with each chunk in order, from the calling goroutine.
//     The first chunk carries the Stepflash extension (the applied effort
//     and the backend's label). The last chunk has no choices and carries
//     the usage of the whole request (always, whether or not the client
//     asked for it; the caller decides what to send). ID, Created and Model
//     are left empty: the caller sets them.
//   - If emit returns an error (the client went away), the Backend stops
//     and returns it.
//   - An error returned before the first emit is the request's answer (an
//     *api.Error carries its HTTP status); after it, the stream is cut and
//     the caller ends it with an error event.
//   - Cancelling ctx stops the work (and any upstream request) promptly.
type Backend interface {
	Chat(ctx context.Context, req *api.ChatCompletionRequest, emit func(*api.ChatCompletionChunk) error) error
	Complete(ctx context.Context, req *api.CompletionRequest, emit func(*api.Completion) error) error
	Info() Info
}

// Info describes what a Backend serves, for the model list.
type Info struct {
	// Context is the context length in tokens; 0 when unknown.
	Context int
	// OwnedBy is the model list's owned_by.
	OwnedBy string
	// Label names the backend in logs and in the stepflash extension:
	// "local" or "upstream:NAME".
	Label string
	// Advisor names the advisor model of a served model with Advisor Mode
	// ("" without): a request may then ask for "advisor": "always".
	Advisor string
	// InputModalities is what the model takes ("text", "image"); nil when
	// unknown (an upstream's).
	InputModalities []string
}

// Embedder is a Backend that computes embeddings (POST /v1/embeddings).
// The response's Model is left empty (the caller sets it); its Usage has
// the prompt tokens.
type Embedder interface {
	Embed(ctx context.Context, req *api.EmbeddingRequest) (*api.EmbeddingResponse, error)
}

// Tokenizer is a Backend that exposes its tokenizer: /tokenize and
// /detokenize, and CountChat, the prompt tokens a chat request would use
// (Anthropic's /v1/messages/count_tokens).
type Tokenizer interface {
	Tokenize(ctx context.Context, req *api.TokenizeRequest) (*api.TokenizeResponse, error)
	Detokenize(ctx context.Context, req *api.DetokenizeRequest) (*api.DetokenizeResponse, error)
	CountChat(ctx context.Context, req *api.ChatCompletionRequest) (int, error)
}

// Embed asks b for embeddings: a Backend that is no Embedder (an upstream
// without them) is a 400 saying so.
func Embed(ctx context.Context, b Backend, req *api.EmbeddingRequest) (*api.EmbeddingResponse, error) {
	if e, ok := b.(Embedder); ok {
		return e.Embed(ctx, req)
	}
	return nil, unsupported(b, "embeddings")
}

// AsTokenizer returns b's Tokenizer, or a 400 saying that b has none.
func AsTokenizer(b Backend) (Tokenizer, error) {
	if t, ok := b.(Tokenizer); ok {
		return t, nil
	}
	return nil, unsupported(b, "tokenization")
}

func unsupported(b Backend, what string) *api.Error {
	label := "none"
	if f, ok := b.(*Funcs); b != nil && (!ok || f.InfoFunc != nil || f.Next != nil) {
		label = b.Info().Label
	}
	return api.NewError(400, api.TypeInvalidRequest, api.CodeUnsupportedParameter, "model",
		"This model's backend (%s) does not serve %s.", label, what)
}

// Queuer is implemented by backends that queue work, for the queue-depth
// metric.
type Queuer interface {
	QueueDepth() int
}

// Middleware wraps a Backend with more behaviour (pricing, accounting, the
// advisor) and returns a Backend.
type Middleware func(Backend) Backend

// Chain wraps b in mws; the first middleware is the outermost.
func Chain(b Backend, mws ...Middleware) Backend {
	for i := len(mws) - 1; i >= 0; i-- {
		b = mws[i](b)
	}
	return b
}

// Funcs is a Backend made of functions, for middleware that changes one
// method and passes the others through.
type Funcs struct {
	ChatFunc     func(ctx context.Context, req *api.ChatCompletionRequest, emit func(*api.ChatCompletionChunk) error) error
	CompleteFunc func(ctx context.Context, req *api.CompletionRequest, emit func(*api.Completion) error) error
	InfoFunc     func() Info
	EmbedFunc    func(ctx context.Context, req *api.EmbeddingRequest) (*api.EmbeddingResponse, error)
	// Next is the wrapped backend: a nil function above calls it.
	Next Backend
}

// Embed calls EmbedFunc, or Next's Embed (see the Embed function).
func (f *Funcs) Embed(ctx context.Context, req *api.EmbeddingRequest) (*api.EmbeddingResponse, error) {
	if f.EmbedFunc != nil {
		return f.EmbedFunc(ctx, req)
	}
	if f.Next == nil {
		return nil, unsupported(f, "embeddings")
	}
	return Embed(ctx, f.Next, req)
}

func (f *Funcs) tokenizer() (Tokenizer, error) {
	if f.Next == nil {
		return nil, unsupported(f, "tokenization")
	}
	return AsTokenizer(f.Next)
}

// Tokenize is Next's (a wrapper does not change tokens).
func (f *Funcs) Tokenize(ctx context.Context, req *api.TokenizeRequest) (*api.TokenizeResponse, error) {
	t, err := f.tokenizer()
	if err != nil {
		return nil, err
	}
	return t.Tokenize(ctx, req)
}

// Detokenize is Next's.
func (f *Funcs) Detokenize(ctx context.Context, req *api.DetokenizeRequest) (*api.DetokenizeResponse, error) {
	t, err := f.tokenizer()
	if err != nil {
		return nil, err
	}
	return t.Detokenize(ctx, req)
}

// CountChat is Next's.
func (f *Funcs) CountChat(ctx context.Context, req *api.ChatCompletionRequest) (int, error) {
	t, err := f.tokenizer()
	if err != nil {
		return 0, err
	}
	return t.CountChat(ctx, req)
}

// Chat calls ChatFunc, or Next.Chat.
func (f *Funcs) Chat(ctx context.Context, req *api.ChatCompletionRequest, emit func(*api.ChatCompletionChunk) error) error {
	if f.ChatFunc != nil {
		return f.ChatFunc(ctx, req, emit)
	}
	return f.Next.Chat(ctx, req, emit)
}

// Complete calls CompleteFunc, or Next.Complete.
func (f *Funcs) Complete(ctx context.Context, req *api.CompletionRequest, emit func(*api.Completion) error) error {
	if f.CompleteFunc != nil {
		return f.CompleteFunc(ctx, req, emit)
	}
	return f.Next.Complete(ctx, req, emit)
}

// Info calls InfoFunc, or Next.Info.
func (f *Funcs) Info() Info {
	if f.InfoFunc != nil {
		return f.InfoFunc()
	}
	return f.Next.Info()
}

// QueueDepth is Next's, when it queues.
func (f *Funcs) QueueDepth() int {
	if q, ok := f.Next.(Queuer); ok {
		return q.QueueDepth()
	}
	return 0
}

type ctxKey int

const requestIDKey ctxKey = 0

// WithRequestID returns ctx carrying the request's id (X-Request-Id), which
// backends pass on (an upstream gets it as its X-Request-Id).
func WithRequestID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, requestIDKey, id)
}

// RequestID returns the request id ctx carries, or "".
func RequestID(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey).(string)
	return id
}

// Caller is who sent a request, as the auth middleware established it.
type Caller struct {
	// KeyID is the API key's id (its display prefix); "" when keys are
	// not enforced.
	KeyID string
	// Region is the region whose listener took the request ("" when the
	// server has no regions).
	Region string
}

const callerKey ctxKey = 1

// WithCaller returns ctx carrying the request's caller.
func WithCaller(ctx context.Context, c Caller) context.Context {
	return context.WithValue(ctx, callerKey, c)
}

// CallerFrom returns the caller ctx carries (the zero Caller if none).
func CallerFrom(ctx context.Context) Caller {
	c, _ := ctx.Value(callerKey).(Caller)
	return c
}

// The APIs a Chat call can come in by, besides chat completions
// (WithEndpoint).
const (
	EndpointResponses = "responses" // POST /v1/responses
	EndpointMessages  = "messages"  // POST /v1/messages
)

const endpointKey ctxKey = 3

// WithEndpoint returns ctx carrying the name of the API a request came in
// by when it is translated to a Chat call (EndpointResponses,
// EndpointMessages), so that the ledger records it as such.
func WithEndpoint(ctx context.Context, name string) context.Context {
	return context.WithValue(ctx, endpointKey, name)
}

// EndpointFrom returns the API name ctx carries, or "".
func EndpointFrom(ctx context.Context) string {
	e, _ := ctx.Value(endpointKey).(string)
	return e
}

// Spend collects what a request spent on its way besides the usage its
// backend finally reports (an advisor's turn), so that a request that ends
// without usage (an error, a client gone) is still billed for it: the
// ledger's middleware puts one into the context, Advisor Mode adds to it.
type Spend struct {
	mu                               sync.Mutex
	advisorPrompt, advisorCompletion int
	advisorCost                      float64
}

// AddAdvisor adds an advisor's tokens and cost.
func (s *Spend) AddAdvisor(prompt, completion int, cost float64) {
	s.mu.Lock()
	s.advisorPrompt += prompt
	s.advisorCompletion += completion
	s.advisorCost += cost
	s.mu.Unlock()
}

// Advisor returns the advisor's tokens and cost added so far.
func (s *Spend) Advisor() (prompt, completion int, cost float64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.advisorPrompt, s.advisorCompletion, s.advisorCost
}

const spendKey ctxKey = 2

// WithSpend returns ctx carrying a new Spend, and the Spend.
func WithSpend(ctx context.Context) (context.Context, *Spend) {
	s := &Spend{}
	return context.WithValue(ctx, spendKey, s), s
}

// SpendFrom returns the Spend ctx carries, or nil.
func SpendFrom(ctx context.Context) *Spend {
	s, _ := ctx.Value(spendKey).(*Spend)
	return s
}
