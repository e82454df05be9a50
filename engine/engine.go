// Package engine runs generation on a loaded model: a scheduler that batches
// many sequences into each forward pass (continuous batching), the paged KV
// cache with a prefix cache that shares the blocks of common prompt prefixes
// between all sequences, sampling, log-probabilities, reasoning-effort tiers
// and timings.
package engine

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/stepflash/stepflash/gguf"
	"github.com/stepflash/stepflash/model"
	"github.com/stepflash/stepflash/tokenizer"
)

// Options configure an Engine.
type Options struct {
	// Context is the most positions one sequence may hold (prompt plus
	// generated tokens); 0 means min(the model's training context, 4096).
	Context int
	// BatchSize is the most tokens run in one forward pass (default 512).
	// It also bounds a pass's work: prompt chunks fill a pass only up to
	// what BatchSize prompt tokens from position 0 cost, so chunks deep in
	// a long prompt are shorter (see promptChunk).
	BatchSize int
	// Parallel is the most sequences decoded together (default 1).
	Parallel int
	// QueueLimit is the most requests waiting for a slot; more fail with
	// ErrOverloaded (default 64).
	QueueLimit int
	// KVTokens is the KV cache size in positions for running sequences
	// (default Context × Parallel).
	KVTokens int
	// CacheBytes is KV memory added to the cache for the prefix cache:
	// blocks of finished sequences kept for requests that start with the
	// same tokens. Kept blocks fill whatever part of the KV cache running
	// sequences do not hold and are evicted, least recently used first,
	// when they need it; CacheBytes (rounded down to whole positions of
	// KVBytesPerToken) keeps room for them beyond KVTokens. 0 adds none;
	// negative turns the prefix cache off (no reuse at all).
	CacheBytes int64
	// CacheTypeK and CacheTypeV are the KV cache's element types: F32
	// (the zero value's default), F16 or Q8_0, as llama.cpp's
	// --cache-type-k/-v (CheckCacheTypes says what a model takes).
	CacheTypeK, CacheTypeV gguf.Type
	// Spec turns on speculative decoding (speculative.go); CheckSpec says
	// what it takes.
	Spec SpecOptions
}

// WithDefaults is opts with the defaults New applies for a model of cfg.
func WithDefaults(cfg *model.Config, opts Options) Options {
	if opts.Context <= 0 {
		opts.Context = min(cfg.NCtxTrain, 4096)
		if opts.Context <= 0 {
			opts.Context = 4096
		}
	}
	if opts.BatchSize <= 0 {
		opts.BatchSize = 512
	}
	if opts.Parallel <= 0 {
		opts.Parallel = 1
	}
	if opts.QueueLimit <= 0 {
		opts.QueueLimit = 64
	}
	if opts.KVTokens <= 0 {
		opts.KVTokens = opts.Context * opts.Parallel
	}
	return opts
}

// Engine generates text from one model. Requests from many goroutines are
// scheduled together: each forward pass carries one new token of every
// decoding sequence plus a chunk of waiting prompts.
type Engine struct {
	Model model.Model
	Tok   *tokenizer.Tokenizer
	opts  Options

	mu      sync.Mutex // guards the fields below
	pending []*sequence
	running []*sequence
	nextID  int
	closed  bool
	wake    chan struct{}
	done    chan struct{}

	// stepBudget is the most FLOPs of prompt work a step fills up to: what
	// BatchSize prompt tokens from position 0 cost (see promptChunk).
	stepBudget float64
	// onStep, if set (by a test, before the first request), sees what each
	// step put in its forward pass.
	onStep func(stepRecord)

	forward sync.Mutex // held while the model runs (the loop or a benchmark)
	cache   *KVCache
	logits  []float32
	hidden  []float32 // hidden-state rows of the batch's embedding tokens
	spec    specState // speculative decoding
}

// New makes an engine for a model and its tokenizer and starts its
// scheduler. The cache types must pass CheckCacheTypes.
func New(m model.Model, tok *tokenizer.Tokenizer, opts Options) *Engine {
	cfg := m.Config()
	opts = WithDefaults(cfg, opts)
	if err := CheckCacheTypes(cfg, opts.CacheTypeK, opts.CacheTypeV); err != nil {
		panic(err) // callers check first: a configuration error, not a request's
	}
	if err := CheckSpec(cfg, opts.Spec); err != nil {
		panic(err)
	}
	kv := opts.KVTokens
	if opts.CacheBytes > 0 {
		kv += int(opts.CacheBytes / KVBytesPerTokenOf(cfg, opts.CacheTypeK, opts.CacheTypeV))
	}
	e := &Engine{
		Model: m, Tok: tok, opts: opts,
		cache:      newKVCache(cfg, kv, DefaultBlockSize, opts.CacheBytes >= 0, opts.CacheTypeK, opts.CacheTypeV),
		stepBudget: cfg.SpanCost(0, opts.BatchSize),
		wake:       make(chan struct{}, 1), done: make(chan struct{}),
	}
	e.spec.SpecOptions = opts.Spec.withDefaults()
	if opts.Spec.Mode == SpecDraft {
		e.spec.draft = newDrafter(opts.Spec.Draft, opts.KVTokens)
	}
	go e.loop()
	return e
}

// Close stops the scheduler; running requests end with ErrClosed.
func (e *Engine) Close() {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return
	}
	e.closed = true
	e.mu.Unlock()
	e.signal()
	<-e.done
}

// Context is the most positions one sequence may hold.
func (e *Engine) Context() int { return e.opts.Context }

// KVInfo describes an engine's KV cache.
type KVInfo struct {
	K, V             gguf.Type // the keys' and values' types
	BytesPerPosition int64     // one cached position, every layer
	Positions        int       // the most positions it holds (made on first use)
}

// KVInfo returns the KV cache's types and size.
func (e *Engine) KVInfo() KVInfo {
	kt, vt := e.cache.Types()
	return KVInfo{K: kt, V: vt, BytesPerPosition: KVBytesPerTokenOf(e.Model.Config(), kt, vt), Positions: e.cache.Capacity()}
}

// PrefixCacheStats returns the prefix cache's hit, miss and eviction
// counters and what it holds now (all zero with the cache off).
func (e *Engine) PrefixCacheStats() PrefixCacheStats {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.cache.Stats()
}

// QueueDepth is the number of requests waiting for a slot.
func (e *Engine) QueueDepth() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.pending)
}

// Request is one generation.
type Request struct {
	Prompt    []int32
	MaxTokens int // generated tokens at most; <= 0 means until the context is full
	Sampling  SamplerParams
	// Logprobs asks for each token's log-probability (Token.Logprob); it is
	// implied by TopLogprobs > 0. Without it the engine skips the softmax
	// over the vocabulary, which costs as much as a small layer per token.
	Logprobs    bool
	TopLogprobs int // alternatives reported per generated token (0: none)
	ExpertsUsed int // MoE experts per token; 0 = the model's trained count
	IgnoreEOS   bool
	// Thinking, when set, follows the model's reasoning blocks (marking
	// their tokens Reasoning) and caps the tokens spent inside one at its
	// Budget: when the budget is spent the engine writes HandOver and lets
	// the model answer; a budget of 0 closes the block at once with
	// CloseEmpty. A prompt whose last token (but whitespace) is the open
	// tag starts inside the block. Nil: the model has no reasoning block.
	Thinking *Thinking
	// CacheKeys mark prompt positions whose keys and values depend on more
	// than their token ids (image embeddings), for the prefix cache: blocks
	// are shared only between prompts with the same tokens and keys.
	CacheKeys []CacheKey
	// Embeds gives prompt positions their input embedding directly (an
	// image's, from a vision encoder): where Embeds[i] is not nil, position
	// i's token is a placeholder and Embeds[i] (the model's width) is its
	// input. Every such position must lie in a CacheKeys range naming the
	// image, so that the prefix cache never mistakes one image for another.
	Embeds [][]float32
	// Bidirectional marks prompt ranges whose positions attend to each
	// other in both directions (and to everything before them): Gemma 3
	// reads an image's embeddings so, as llama.cpp decodes them with
	// causal attention off. A range is never split between forward passes.
	// Sorted, not overlapping, inside the prompt.
	Bidirectional []Span
	// Grids mark prompt ranges of image embeddings that the model reads
	// with 2-D rotary positions (M-RoPE: Qwen2-VL's images), as llama.cpp's
	// libmtmd lays them out: the Rows x Cols embeddings from Start
	// (row-major) all take the temporal position p of their first place,
	// height p+row and width p+col; the positions after the range go on
	// from p + max(Rows, Cols), not from its end (the cache positions do
	// not change). Sorted, not overlapping, inside the prompt; only for
	// models with M-RoPE. Each must lie in a CacheKeys range naming the
	// image; the engine adds the grid's shape to that key.
	Grids []Grid
	// JSONObject constrains the answer (after any thinking block) to one
	// JSON object (OpenAI response_format json_object); generation ends
	// with an end-of-generation token when the object is complete.
	JSONObject bool
	// JSONSchema, when set, constrains the answer (after any thinking
	// block) to an instance of the schema (response_format json_schema),
	// ending it as JSONObject does; it takes precedence over JSONObject.
	JSONSchema *Schema
	// Pooling, when not PoolNone, makes the request an embedding: the
	// prompt is run and nothing is generated (MaxTokens, Sampling and the
	// generation options are ignored), and Result.Embedding holds the
	// prompt's final hidden states pooled this way (not normalised).
	Pooling Pooling
}

// Span is a range [Start, End) of prompt positions.
type Span struct{ Start, End int }

// Grid is a Rows x Cols grid of image embeddings at prompt positions
// Start.. (row-major), read with 2-D rotary positions (Request.Grids).
type Grid struct{ Start, Rows, Cols int }

// end is the position after the grid.
func (g Grid) end() int { return g.Start + g.Rows*g.Cols }

// Pooling is how an embedding request reduces its prompt's final hidden
// states (one per position) to one vector, as llama.cpp's pooling types.
type Pooling int

const (
	PoolNone Pooling = iota // not an embedding request
	PoolMean                // the mean over every position
	PoolCLS                 // the first position's
	PoolLast                // the last position's
)

// String is the pooling's name as llama.cpp's --pooling flag spells it.
func (p Pooling) String() string {
	switch p {
	case PoolMean:
		return "mean"
	case PoolCLS:
		return "cls"
	case PoolLast:
		return "last"
	}
	return "none"
}

// ParsePooling reads a pooling name (mean, cls, last).
func ParsePooling(s string) (Pooling, error) {
	for _, p := range []Pooling{PoolMean, PoolCLS, PoolLast} {
		if s == p.String() {
			return p, nil
		}
	}
	return PoolNone, fmt.Errorf("unknown pooling %q (want mean, cls or last)", s)
}

// Token is one generated token.
type Token struct {
	ID      int32
	Text    string  // newly completed UTF-8 text (may be empty mid-character)
	Logprob float32 // only with Request.Logprobs or TopLogprobs
	Top     []TokenLogprob
	// Reasoning marks a token inside a thinking block (tags included).
	Reasoning bool
	// Forced marks a token the engine wrote (closing a thinking block) rather than sampled.
	Forced bool
}

// Result summarises a finished generation.
type Result struct {
	Tokens       []Token
	FinishReason string // "stop" (end-of-generation token), "length", or "cancelled"
	// CachedTokens is how many prompt tokens were reused from the prefix
	// cache (not computed); at most the prompt length minus one, since the
	// last prompt token is always run for the first token's logits.
	CachedTokens int
	QueueTime    time.Duration
	PromptTime   time.Duration
	DecodeTime   time.Duration
	// Decoded is the number of generated tokens after the first (which
	// comes from the prompt pass): one per decode pass, or up to one more
	// per accepted draft token with speculative decoding.
	Decoded int
	// ReasoningTokens counts the generated tokens inside thinking blocks.
	ReasoningTokens int
	// DraftTokens is how many draft tokens speculative decoding proposed
	// (and verified) for the request; AcceptedTokens how many of them
	// were accepted. Both 0 without speculation.
	DraftTokens, AcceptedTokens int
	// Embedding is an embedding request's pooled hidden state (Request.Pooling).
	Embedding []float32
}

// PrefillTPS is prompt tokens computed (not reused) per second.
func (r *Result) PrefillTPS(promptLen int) float64 {
	if r.PromptTime <= 0 {
		return 0
	}
	return float64(promptLen-r.CachedTokens) / r.PromptTime.Seconds()
}

// DecodeTPS is generated tokens per second over the decode passes.
func (r *Result) DecodeTPS() float64 {
	if r.DecodeTime <= 0 || r.Decoded == 0 {
		return 0
	}
	return float64(r.Decoded) / r.DecodeTime.Seconds()
}

// Errors a request can end with.
var (
	ErrContextLength = errors.New("engine: prompt exceeds the context length")
	ErrOverloaded    = errors.New("engine: request queue is full")
	ErrClosed        = errors.New("engine: closed")
)

// Generate runs the prompt and samples tokens until an end-of-generation
// token, MaxTokens, the context limit, ctx cancellation, or onToken
// returning false. onToken (may be nil) runs on the caller's goroutine, so a
// slow consumer never stalls other requests.
func (e *Engine) Generate(ctx context.Context, req Request, onToken func(Token) bool) (*Result, error) {
	n := len(req.Prompt)
	if n == 0 {
		return nil, fmt.Errorf("engine: empty prompt")
	}
	if n >= e.opts.Context && (req.Pooling == PoolNone || n > e.opts.Context) {
		// A generation needs room for one new token; an embedding does not.
		return nil, fmt.Errorf("%w: %d prompt tokens, context %d", ErrContextLength, n, e.opts.Context)
	}
	vocab := e.Model.Config().NVocab
	for i, id := range req.Prompt {
		if id < 0 || int(id) >= vocab {
			return nil, fmt.Errorf("engine: prompt token %d at index %d is outside the vocabulary of %d", id, i, vocab)
		}
	}
	for _, k := range req.CacheKeys {
		if k.Start < 0 || k.End <= k.Start || k.End > n {
			return nil, fmt.Errorf("engine: cache key positions [%d, %d) are not a range inside the prompt of %d tokens", k.Start, k.End, n)
		}
	}
	for i, g := range req.Grids {
		if g.Start < 0 || g.Rows <= 0 || g.Cols <= 0 || g.Rows > n || g.Cols > n || g.Start+g.Rows*g.Cols > n || i > 0 && g.Start < req.Grids[i-1].end() {
			return nil, fmt.Errorf("engine: image grid of %dx%d at %d is not a range inside the prompt of %d tokens after the one before it", g.Rows, g.Cols, g.Start, n)
		}
	}
	if len(req.Grids) > 0 && e.Model.Config().RopeSections == [4]int{} {
		return nil, fmt.Errorf("engine: the request has images read with 2-D positions (M-RoPE) but the %s model has no M-RoPE sections", e.Model.Config().Arch)
	}
	if len(req.Grids) > 0 {
		// A grid changes the keys and values of its positions and of every
		// one after it: its shape goes into the key of the range holding
		// it, so the prefix cache never shares blocks between requests
		// that read the same image with other positions.
		keys := slices.Clone(req.CacheKeys)
		for _, g := range req.Grids {
			i := slices.IndexFunc(keys, func(k CacheKey) bool { return k.Start <= g.Start && g.end() <= k.End && k.Key != "" })
			if i < 0 {
				return nil, fmt.Errorf("engine: the image grid of %dx%d at %d has no cache key naming it", g.Rows, g.Cols, g.Start)
			}
			keys[i].Key += fmt.Sprintf("|grid %d:%dx%d", g.Start-keys[i].Start, g.Rows, g.Cols)
		}
		req.CacheKeys = keys
	}
	for i, sp := range req.Bidirectional {
		if sp.Start < 0 || sp.End <= sp.Start || sp.End > n || i > 0 && sp.Start < req.Bidirectional[i-1].End {
			return nil, fmt.Errorf("engine: bidirectional range [%d, %d) is not a range inside the prompt of %d tokens after the one before it", sp.Start, sp.End, n)
		}
	}
	if len(req.Embeds) > n {
		return nil, fmt.Errorf("engine: %d input embeddings for a prompt of %d tokens", len(req.Embeds), n)
	}
	for i, em := range req.Embeds {
		if em == nil {
			continue
		}
		if d := e.Model.Config().NEmbd; len(em) != d {
			return nil, fmt.Errorf("engine: the input embedding at prompt position %d has %d values; the model's width is %d", i, len(em), d)
		}
		if !slices.ContainsFunc(req.CacheKeys, func(k CacheKey) bool { return k.Start <= i && i < k.End && k.Key != "" }) {
			return nil, fmt.Errorf("engine: the input embedding at prompt position %d has no cache key naming it", i)
		}
	}
	maxNew := e.opts.Context - n
	if req.MaxTokens > 0 && req.MaxTokens < maxNew {
		maxNew = req.MaxTokens
	}
	if req.Pooling != PoolNone {
		maxNew = 0
	}
	s := &sequence{req: req, maxNew: maxNew, notify: make(chan struct{}, 1), submitted: time.Now()}
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return nil, ErrClosed
	}
	if len(e.pending) >= e.opts.QueueLimit {
		e.mu.Unlock()
		return nil, ErrOverloaded
	}
	s.id = e.nextID
	e.nextID++
	e.pending = append(e.pending, s)
	e.mu.Unlock()
	e.signal()

	delivered := 0
	stopped := false // the consumer or ctx ended the request
	ctxDone := ctx.Done()
	for {
		select {
		case <-s.notify:
		case <-ctxDone:
			s.cancel()
			stopped, ctxDone = true, nil // the scheduler drops the sequence at its next step and notifies
		}
		s.mu.Lock()
		toks := s.out[delivered:]
		fin, err := s.isDone, s.err
		s.mu.Unlock()
		for _, t := range toks {
			if stopped {
				break
			}
			delivered++
			if onToken != nil && !onToken(t) {
				s.cancel()
				stopped = true
			}
		}
		if fin {
			if err != nil {
				return nil, err
			}
			s.res.Tokens = s.out[:delivered]
			// Count reasoning over what was delivered: a stop string, a
			// cancelled consumer or a disconnect may end it early.
			s.res.ReasoningTokens = 0
			for _, t := range s.res.Tokens {
				if t.Reasoning {
					s.res.ReasoningTokens++
				}
			}
			if stopped {
				s.res.FinishReason = "cancelled"
			}
			return &s.res, nil
		}
	}
}

func (e *Engine) signal() {
	select {
	case e.wake <- struct{}{}:
	default:
	}
}
