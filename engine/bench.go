package engine

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/stepflash/stepflash/model"
)

// benchSeq is the KV cache sequence the benchmarks use (requests use ids >= 0).
const benchSeq = -1

// BenchPrefill times one prompt pass of n random tokens on an empty cache,
// as llama-bench's pp test does, in batches of the engine's batch size.
func (e *Engine) BenchPrefill(n, expertsUsed int, seed uint64) (time.Duration, error) {
	return e.BenchPrefillAt(0, n, expertsUsed, seed)
}

// BenchPrefillAt is BenchPrefill after depth positions already in the cache
// (filled untimed, as llama-bench's -d does).
func (e *Engine) BenchPrefillAt(depth, n, expertsUsed int, seed uint64) (time.Duration, error) {
	return e.benchRun(depth, n, expertsUsed, seed, func(toks []int32, logits []float32) error {
		return e.benchPrefill(toks, depth, expertsUsed, logits)
	})
}

// benchPrefill runs toks at positions from..from+len(toks)-1 in batches.
func (e *Engine) benchPrefill(toks []int32, from, expertsUsed int, logits []float32) error {
	n := len(toks)
	for lo := 0; lo < n; lo += e.opts.BatchSize {
		hi := min(lo+e.opts.BatchSize, n)
		b := &model.Batch{Tokens: toks[lo:hi], Pos: make([]int, hi-lo), Seq: make([]int, hi-lo), ExpertsUsed: make([]int, hi-lo)}
		for i := range b.Pos {
			b.Pos[i], b.Seq[i], b.ExpertsUsed[i] = from+lo+i, benchSeq, expertsUsed
		}
		if err := e.Model.Forward(b, e.cache, logits); err != nil {
			return err
		}
	}
	return nil
}

// BenchDecode times n single-token passes on an empty cache, as llama-bench's
// tg test does (each pass appends one token; no sampling).
func (e *Engine) BenchDecode(n, expertsUsed int, seed uint64) (time.Duration, error) {
	return e.BenchDecodeAt(0, n, expertsUsed, seed)
}

// BenchDecodeAt is BenchDecode after depth positions already in the cache.
func (e *Engine) BenchDecodeAt(depth, n, expertsUsed int, seed uint64) (time.Duration, error) {
	return e.benchRun(depth, n, expertsUsed, seed, func(toks []int32, logits []float32) error {
		b := &model.Batch{Tokens: make([]int32, 1), Pos: make([]int, 1), Seq: []int{benchSeq}, ExpertsUsed: []int{expertsUsed}}
		for i, t := range toks {
			b.Tokens[0], b.Pos[0] = t, depth+i
			if err := e.Model.Forward(b, e.cache, logits); err != nil {
				return err
			}
		}
		return nil
	})
}

// benchRun gives run exclusive use of the model (the scheduler waits) with
// depth+n cache positions, the first depth of them filled with random
// tokens untimed, and n random tokens to run, and times run.
func (e *Engine) benchRun(depth, n, expertsUsed int, seed uint64, run func(toks []int32, logits []float32) error) (time.Duration, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.forward.Lock()
	defer e.forward.Unlock()
	defer e.cache.Free(benchSeq)
	if err := e.cache.Reserve(benchSeq, depth+n); err != nil {
		return 0, err
	}
	vocab := e.Model.Config().NVocab
	rng := rand.New(rand.NewPCG(seed, seed+1))
	toks := make([]int32, depth+n)
	for i := range toks {
		toks[i] = int32(rng.IntN(vocab))
	}
	logits := make([]float32, vocab)
	if depth > 0 {
		if err := e.benchPrefill(toks[:depth], 0, expertsUsed, logits); err != nil {
			return 0, err
		}
	}
	start := time.Now()
	err := run(toks[depth:], logits)
	return time.Since(start), err
}

// PrefixHitRound is one round of BenchPrefixHit: the time to first token of
// a prompt with nothing cached and of one whose prefix is cached, and how
// many tokens each reused.
type PrefixHitRound struct {
	Cold, Hit             time.Duration
	ColdCached, HitCached int
}

// BenchPrefixHit times the first token of two random n-token prompts
// through the scheduler, as a request sees it: one cold, then one that
// shares its first hit×n tokens, which the cold one has just left in the
// prefix cache, and differs after them. Each call draws new tokens from
// seed.
func (e *Engine) BenchPrefixHit(n int, hit float64, experts int, seed uint64) (PrefixHitRound, error) {
	var r PrefixHitRound
	shared := int(hit * float64(n))
	if n < 2 || shared < 1 || shared > n-1 {
		return r, fmt.Errorf("engine: a %d-token prompt with a cached share of %g has no cached prefix short of its last token", n, hit)
	}
	vocab := e.Model.Config().NVocab
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	random := func(k int) []int32 {
		out := make([]int32, k)
		for i := range out {
			out[i] = int32(rng.IntN(vocab))
		}
		return out
	}
	ttft := func(prompt []int32) (time.Duration, int, error) {
		start := time.Now()
		var first time.Duration
		res, err := e.Generate(context.Background(), Request{Prompt: prompt, MaxTokens: 1, IgnoreEOS: true, ExpertsUsed: experts}, func(Token) bool {
			if first == 0 {
				first = time.Since(start)
			}
			return true
		})
		if err != nil {
			return 0, 0, err
		}
		return first, res.CachedTokens, nil
	}
	prefix, rest, other := random(shared), random(n-shared), random(n-shared)
	for other[0] == rest[0] {
		other[0] = int32(rng.IntN(vocab))
	}
	var err error
	if r.Cold, r.ColdCached, err = ttft(append(slices.Clone(prefix), rest...)); err != nil {
		return r, err
	}
	r.Hit, r.HitCached, err = ttft(append(prefix, other...))
	return r, err
}
