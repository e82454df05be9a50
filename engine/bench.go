package engine

import (
	"math/rand/v2"
	"time"

	"github.com/stepflash/stepflash/model"
)

// BenchPrefill times one prompt pass of n random tokens on an empty cache,
// as llama-bench's pp test does, in batches of the engine's batch size.
func (e *Engine) BenchPrefill(n, expertsUsed int, seed uint64) (time.Duration, error) {
	e.mu.Lock() // exclusive: the scheduler waits
	defer e.mu.Unlock()
	e.forward.Lock()
	defer e.forward.Unlock()
	const seq = -1
	defer e.cache.Free(seq)
	if err := e.cache.Reserve(seq, n); err != nil {
		return 0, err
	}
	vocab := e.Model.Config().NVocab
	rng := rand.New(rand.NewPCG(seed, seed+1))
	toks := make([]int32, n)
	for i := range toks {
		toks[i] = int32(rng.IntN(vocab))
	}
	logits := make([]float32, vocab)
	start := time.Now()
	for lo := 0; lo < n; lo += e.opts.BatchSize {
		hi := min(lo+e.opts.BatchSize, n)
		b := &model.Batch{Tokens: toks[lo:hi], Pos: make([]int, hi-lo), Seq: make([]int, hi-lo)}
		for i := range b.Pos {
			b.Pos[i], b.Seq[i] = lo+i, seq
		}
		if expertsUsed > 0 {
			b.ExpertsUsed = make([]int, hi-lo)
			for i := range b.ExpertsUsed {
				b.ExpertsUsed[i] = expertsUsed
			}
		}
		if err := e.Model.Forward(b, e.cache, logits); err != nil {
			return 0, err
		}
	}
	return time.Since(start), nil
}

// BenchDecode times n single-token passes on an empty cache, as llama-bench's
// tg test does (each pass appends one token; no sampling).
func (e *Engine) BenchDecode(n, expertsUsed int, seed uint64) (time.Duration, error) {
	e.mu.Lock() // exclusive: the scheduler waits
	defer e.mu.Unlock()
	e.forward.Lock()
	defer e.forward.Unlock()
	const seq = -1
	defer e.cache.Free(seq)
	if err := e.cache.Reserve(seq, n); err != nil {
		return 0, err
	}
	vocab := e.Model.Config().NVocab
	rng := rand.New(rand.NewPCG(seed, seed+1))
	logits := make([]float32, vocab)
	b := &model.Batch{Tokens: make([]int32, 1), Pos: make([]int, 1), Seq: []int{seq}}
	if expertsUsed > 0 {
		b.ExpertsUsed = []int{expertsUsed}
	}
	start := time.Now()
	for i := 0; i < n; i++ {
		b.Tokens[0] = int32(rng.IntN(vocab))
		b.Pos[0] = i
		if err := e.Model.Forward(b, e.cache, logits); err != nil {
			return 0, err
		}
	}
	return time.Since(start), nil
}
