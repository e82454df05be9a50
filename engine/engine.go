// Package engine runs generation on a loaded model: the paged KV cache,
// batched prefill and decode, sampling, log-probabilities and timings.
package engine

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/stepflash/stepflash/model"
	"github.com/stepflash/stepflash/tokenizer"
)

// Options configure an Engine.
type Options struct {
	// Context is the most positions one sequence may hold (prompt plus
	// generated tokens); 0 means min(the model's training context, 4096).
	Context int
	// BatchSize is the most prompt tokens run in one forward pass (default 512).
	BatchSize int
}

// Engine generates text from one model. Generate calls are serialised.
type Engine struct {
	Model model.Model
	Tok   *tokenizer.Tokenizer
	ctx   int
	batch int
	cache *KVCache
	sem   chan struct{}
}

// New makes an engine for a model and its tokenizer.
func New(m model.Model, tok *tokenizer.Tokenizer, opts Options) *Engine {
	cfg := m.Config()
	n := opts.Context
	if n <= 0 {
		n = min(cfg.NCtxTrain, 4096)
		if n <= 0 {
			n = 4096
		}
	}
	b := opts.BatchSize
	if b <= 0 {
		b = 512
	}
	return &Engine{Model: m, Tok: tok, ctx: n, batch: b, cache: NewKVCache(cfg, n, DefaultBlockSize), sem: make(chan struct{}, 1)}
}

// Context is the most positions one sequence may hold.
func (e *Engine) Context() int { return e.ctx }

// Request is one generation.
type Request struct {
	Prompt      []int32
	MaxTokens   int // generated tokens at most; <= 0 means until the context is full
	Sampling    SamplerParams
	TopLogprobs int // alternatives reported per generated token (0: none)
	ExpertsUsed int // MoE experts per token; 0 = the model's trained count
	IgnoreEOS   bool
	// LimitThinking caps the tokens spent inside a <think>…</think> block at
	// ThinkingBudget (0: close it at once). When the budget is spent the
	// engine writes HandOver and the closing tag itself and lets the model
	// answer. StartsInThinking says the prompt already opened the block.
	LimitThinking    bool
	ThinkingBudget   int
	StartsInThinking bool
}

// HandOver is the text the engine writes to close a thinking block whose
// budget is spent (Qwen3's recommended wording), ending with the closing tag.
const HandOver = "\n\nConsidering the limited time, I have to give the solution based on the thinking directly now.\n</think>\n\n"

// Token is one generated token.
type Token struct {
	ID      int32
	Text    string // newly completed UTF-8 text (may be empty mid-character)
	Logprob float32
	Top     []TokenLogprob
	// Reasoning marks a token inside a thinking block (tags included).
	Reasoning bool
	// Forced marks a token the engine wrote (closing a thinking block) rather than sampled.
	Forced bool
}

// Result summarises a finished generation.
type Result struct {
	Tokens       []Token
	FinishReason string // "stop" (end of generation token), "length", or "cancelled"
	PromptTime   time.Duration
	DecodeTime   time.Duration
	// Decoded is the number of forward passes of one token (generated tokens
	// after the first, which comes from the prompt pass).
	Decoded int
	// ReasoningTokens counts the generated tokens inside thinking blocks.
	ReasoningTokens int
}

// PrefillTPS is prompt tokens per second.
func (r *Result) PrefillTPS(promptLen int) float64 {
	if r.PromptTime <= 0 {
		return 0
	}
	return float64(promptLen) / r.PromptTime.Seconds()
}

// DecodeTPS is generated tokens per second over the decode passes.
func (r *Result) DecodeTPS() float64 {
	if r.DecodeTime <= 0 || r.Decoded == 0 {
		return 0
	}
	return float64(r.Decoded) / r.DecodeTime.Seconds()
}

// ErrContextLength reports a prompt that does not fit the context.
var ErrContextLength = errors.New("engine: prompt exceeds the context length")

// Generate runs the prompt and samples tokens until an end-of-generation
// token, MaxTokens, the context limit, ctx cancellation, or onToken returning
// false. onToken may be nil.
func (e *Engine) Generate(ctx context.Context, req Request, onToken func(Token) bool) (*Result, error) {
	select {
	case e.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { <-e.sem }()
	const seq = 0
	defer e.cache.Free(seq)

	n := len(req.Prompt)
	if n == 0 {
		return nil, fmt.Errorf("engine: empty prompt")
	}
	if n >= e.ctx {
		return nil, fmt.Errorf("%w: %d prompt tokens, context %d", ErrContextLength, n, e.ctx)
	}
	maxNew := e.ctx - n
	if req.MaxTokens > 0 && req.MaxTokens < maxNew {
		maxNew = req.MaxTokens
	}
	vocab := e.Model.Config().NVocab
	logits := make([]float32, vocab)
	res := &Result{FinishReason: "length"}
	if err := e.cache.Reserve(seq, n+maxNew); err != nil {
		return nil, err
	}

	start := time.Now()
	for lo := 0; lo < n; lo += e.batch {
		hi := min(lo+e.batch, n)
		b := &model.Batch{Tokens: req.Prompt[lo:hi], Pos: make([]int, hi-lo), Seq: make([]int, hi-lo)}
		for i := range b.Pos {
			b.Pos[i] = lo + i
		}
		if req.ExpertsUsed > 0 {
			b.ExpertsUsed = make([]int, hi-lo)
			for i := range b.ExpertsUsed {
				b.ExpertsUsed[i] = req.ExpertsUsed
			}
		}
		if err := e.Model.Forward(b, e.cache, logits); err != nil {
			return nil, err
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
	}
	res.PromptTime = time.Since(start)

	sampler := NewSampler(req.Sampling)
	dec := e.Tok.NewStreamDecoder()
	one := &model.Batch{Tokens: make([]int32, 1), Pos: make([]int, 1), Seq: make([]int, 1)}
	if req.ExpertsUsed > 0 {
		one.ExpertsUsed = []int{req.ExpertsUsed}
	}
	think := newThinkState(e.Tok, req)
	decStart := time.Now()
	for i := 0; i < maxNew; i++ {
		if i > 0 {
			one.Pos[0] = n + i - 1
			if err := e.Model.Forward(one, e.cache, logits); err != nil {
				return nil, err
			}
			res.Decoded++
		}
		id, forced := think.next()
		if !forced {
			id = sampler.Sample(logits)
		}
		lp, top := LogSoftmaxTop(logits, id, req.TopLogprobs)
		tok := Token{ID: id, Logprob: lp, Top: top, Forced: forced}
		tok.Reasoning = think.observe(id)
		if tok.Reasoning {
			res.ReasoningTokens++
		}
		eog := !req.IgnoreEOS && e.Tok.IsEOG(id)
		if !eog {
			tok.Text = dec.Push(id)
		}
		res.Tokens = append(res.Tokens, tok)
		if eog {
			res.FinishReason = "stop"
			break
		}
		if onToken != nil && !onToken(tok) {
			res.FinishReason = "cancelled"
			break
		}
		if ctx.Err() != nil {
			res.FinishReason = "cancelled"
			break
		}
		one.Tokens[0] = id
	}
	res.DecodeTime = time.Since(decStart)
	if rest := dec.Flush(); rest != "" && len(res.Tokens) > 0 {
		last := &res.Tokens[len(res.Tokens)-1]
		last.Text += rest
		if onToken != nil {
			onToken(Token{ID: -1, Text: rest})
		}
	}
	return res, nil
}
