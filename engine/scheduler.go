package engine

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/stepflash/stepflash/model"
	"github.com/stepflash/stepflash/tokenizer"
)

// sequence is one request inside the scheduler.
type sequence struct {
	id        int
	req       Request
	maxNew    int
	submitted time.Time

	// Owned by the scheduler goroutine.
	past      int     // positions already in the KV cache
	tokens    []int32 // prompt followed by generated tokens
	sampler   *Sampler
	think     *thinkState
	json      constraint // response_format json_object or json_schema, else nil
	dec       *tokenizer.StreamDecoder
	generated int
	started   time.Time // admitted
	firstTok  time.Time
	res       Result
	pooled    []float32 // an embedding's row (cls, last)
	sum       []float64 // an embedding's sum of rows (mean)
	pooledN   int       // hidden rows pooled
	draft     []int32   // draft tokens proposed for this step (speculative.go)
	dpast     int       // positions in the draft model's cache
	noDraft   bool      // the draft model's cache had no room for s
	specIdle  int       // decode steps left without drafts (a back-off after misses)
	specMiss  int       // the current back-off, in steps

	cancelled atomic.Bool

	mu     sync.Mutex // guards out, isDone, err
	out    []Token
	isDone bool
	err    error
	notify chan struct{}
}

func (s *sequence) cancel() { s.cancelled.Store(true) }

func (s *sequence) push(t Token) {
	s.mu.Lock()
	s.out = append(s.out, t)
	s.mu.Unlock()
	s.wakeWaiter()
}

func (s *sequence) finish(err error) {
	s.mu.Lock()
	s.isDone, s.err = true, err
	s.mu.Unlock()
	s.wakeWaiter()
}

func (s *sequence) wakeWaiter() {
	select {
	case s.notify <- struct{}{}:
	default:
	}
}

// loop is the scheduler goroutine.
func (e *Engine) loop() {
	defer close(e.done)
	for {
		e.mu.Lock()
		if e.closed {
			all := append(e.pending, e.running...)
			e.pending, e.running = nil, nil
			e.mu.Unlock()
			for _, s := range all {
				s.finish(ErrClosed)
			}
			return
		}
		e.admit()
		idle := len(e.running) == 0
		e.mu.Unlock()
		if idle {
			<-e.wake
			continue
		}
		e.step()
	}
}

// admit moves waiting requests into free slots while the KV cache has room,
// sharing the cached blocks of the longest prefix of each prompt that is in
// the prefix cache. Called with e.mu held.
func (e *Engine) admit() {
	// Cancelled requests leave the queue at once, wherever they wait.
	kept := e.pending[:0]
	for _, s := range e.pending {
		if s.cancelled.Load() {
			s.res.FinishReason = "cancelled"
			s.finish(nil)
			continue
		}
		kept = append(kept, s)
	}
	clear(e.pending[len(kept):])
	e.pending = kept
	for len(e.pending) > 0 && len(e.running) < e.opts.Parallel {
		s := e.pending[0]
		need := len(s.req.Prompt) + s.maxNew
		if need > e.cache.Capacity() {
			e.pending = e.pending[1:]
			s.finish(fmt.Errorf("engine: KV cache holds %d positions, request needs %d", e.cache.Capacity(), need))
			continue
		}
		// The reusable length stops one short of the prompt so that its
		// last token is run to give the next token's logits (or, for an
		// embedding, its hidden state); mean and cls pooling read every
		// position's (the first's), so they reuse nothing.
		reusable := len(s.req.Prompt) - 1
		if s.req.Pooling == PoolMean || s.req.Pooling == PoolCLS {
			reusable = 0
		}
		past, err := e.cache.Admit(s.id, need, s.req.Prompt, reusable, e.prefixRoot(s.req.ExpertsUsed), s.req.CacheKeys)
		if err != nil {
			if len(e.running) == 0 {
				// Nothing will free memory: the request cannot fit at all.
				e.pending = e.pending[1:]
				s.finish(fmt.Errorf("engine: KV cache holds %d positions, request needs %d", e.cache.Capacity(), need))
				continue
			}
			return // wait for a running sequence to finish
		}
		e.pending = e.pending[1:]
		s.past = past
		s.tokens = append([]int32(nil), s.req.Prompt...)
		s.sampler = NewSampler(s.req.Sampling)
		s.think = newThinkState(e.Tok, s.req)
		switch {
		case s.req.JSONSchema != nil:
			s.json = newSchemaState(s.req.JSONSchema)
		case s.req.JSONObject:
			s.json = &jsonState{}
		}
		s.dec = e.Tok.NewStreamDecoder()
		s.started = time.Now()
		s.res.CachedTokens = s.past
		s.res.QueueTime = s.started.Sub(s.submitted)
		s.res.FinishReason = "length"
		if e.spec.draft != nil {
			e.spec.draft.admit(s, need)
		}
		e.running = append(e.running, s)
	}
}

// prefixRoot is the prefix-cache root of a request: keys and values past
// an MoE layer depend on the experts-per-token count, so sequences run with
// different counts share nothing.
func (e *Engine) prefixRoot(expertsUsed int) blockHash {
	cfg := e.Model.Config()
	if cfg.NExpert == 0 {
		return prefixRoot(0) // dense: the count is ignored
	}
	if expertsUsed <= 0 {
		expertsUsed = cfg.NExpertUse
	}
	return prefixRoot(expertsUsed)
}

// retire removes s from the running set and frees its blocks; with keep,
// its computed positions stay in the prefix cache. Called with e.mu held.
func (e *Engine) retire(s *sequence, keep bool) {
	for i, r := range e.running {
		if r == s {
			e.running = append(e.running[:i], e.running[i+1:]...)
			break
		}
	}
	e.cache.Retire(s.id, s.tokens, s.past, keep)
	if e.spec.draft != nil {
		e.spec.draft.free(s)
	}
}

// step runs one forward pass over every running sequence: one token for
// each decoding sequence, then prompt chunks up to the batch size.
func (e *Engine) step() {
	e.mu.Lock()
	running := append([]*sequence(nil), e.running...)
	e.mu.Unlock()

	b := &model.Batch{}
	type slot struct {
		s      *sequence
		n      int // tokens of s in the batch
		row    int // logits row, -1 if none
		hrow   int // first hidden-state row (embeddings)
		hidden int // hidden-state rows of s
	}
	var slots []slot
	var live []*sequence
	budget := e.opts.BatchSize
	rows, hrows := 0, 0
	var embeds [][]float32 // per batch token; set in b only when one is given
	var keyEnd []int       // per batch token; set in b only when a sequence has bidirectional ranges
	var hidden []bool      // per batch token; set in b only when one is wanted
	var ropePos [][4]int   // per batch token; set in b only when a sequence has image grids
	// Only when a live sequence has such ranges are keyEnd and ropePos
	// filled at all (add runs after live is known).
	var anyBidi, anyGrids bool
	// add puts positions from..to-1 of s in the batch, the last outs of
	// them with a logits row each; positions past s.tokens are its drafts.
	add := func(s *sequence, from, to, outs int) {
		sl := slot{s: s, n: to - from, row: -1, hrow: hrows}
		for p := from; p < to; p++ {
			h := s.wantsHidden(p)
			hidden = append(hidden, h)
			if h {
				b.Hidden = hidden
				sl.hidden++
				hrows++
			}
			var em []float32
			if p < len(s.req.Embeds) {
				em = s.req.Embeds[p]
			}
			embeds = append(embeds, em)
			if em != nil {
				b.Embeds = embeds
			}
			if p < len(s.tokens) {
				b.Tokens = append(b.Tokens, s.tokens[p])
			} else {
				b.Tokens = append(b.Tokens, s.draft[p-len(s.tokens)])
			}
			if anyBidi {
				end := p
				sp, bidi := s.bidirectionalAt(p)
				if bidi {
					end = sp.End - 1
					b.KeyEnd = keyEnd
				}
				keyEnd = append(keyEnd, end)
			}
			if anyGrids {
				ropePos = append(ropePos, s.ropePos(p))
				if len(s.req.Grids) > 0 {
					b.RopePos = ropePos
				}
			}
			b.Pos = append(b.Pos, p)
			b.Seq = append(b.Seq, s.id)
			b.Output = append(b.Output, p >= to-outs)
			b.ExpertsUsed = append(b.ExpertsUsed, s.req.ExpertsUsed)
		}
		budget -= to - from
		if outs > 0 {
			sl.row = rows
			rows += outs
		}
		slots = append(slots, sl)
	}
	for _, s := range running {
		if s.cancelled.Load() {
			e.mu.Lock()
			e.retire(s, true)
			e.mu.Unlock()
			s.res.FinishReason = "cancelled"
			s.finish(nil)
			continue
		}
		live = append(live, s)
		anyBidi = anyBidi || len(s.req.Bidirectional) > 0
		anyGrids = anyGrids || len(s.req.Grids) > 0
	}
	// Decoding sequences first: each needs one token, and they must not
	// starve. Then prompt chunks, as many positions as fit in what is left
	// of both the token budget and the compute budget (see promptChunk).
	cfg := e.Model.Config()
	rec := stepRecord{Budget: e.stepBudget}
	var decoding []*sequence
	for _, s := range live {
		if s.past == len(s.tokens)-1 && s.generated > 0 {
			decoding = append(decoding, s)
		}
	}
	e.proposeDrafts(decoding, budget) // speculative decoding: sets s.draft
	for _, s := range decoding {
		n := 1 + len(s.draft) // the next token's position, then one per draft
		add(s, s.past, s.past+n, n)
		for p := s.past; p < s.past+n; p++ {
			rec.Cost += cfg.TokenCost(p)
		}
		rec.Decode = append(rec.Decode, s.id)
	}
	for _, s := range live {
		if s.generated != 0 {
			continue
		}
		n := promptChunk(cfg, s.past, len(s.tokens), budget, e.stepBudget-rec.Cost, len(rec.Chunks) == 0)
		if n == 0 {
			// Not one more position of this prompt fits, but a later one
			// may be shallower (a short prompt beside a deep one): it
			// takes what is left rather than waiting for the long one.
			continue
		}
		to := s.chunkEnd(s.past + n)
		n = to - s.past
		rec.Chunks = append(rec.Chunks, chunkRecord{Seq: s.id, From: s.past, N: n})
		rec.Cost += cfg.SpanCost(s.past, to)
		add(s, s.past, to, boolInt(to == len(s.tokens) && s.req.Pooling == PoolNone))
	}
	if len(b.Tokens) == 0 {
		return
	}
	if e.onStep != nil {
		e.onStep(rec)
	}
	if b.Embeds != nil {
		b.Embeds = embeds // the whole batch's, not the prefix seen when the first was set
	}
	if b.KeyEnd != nil {
		b.KeyEnd = keyEnd
	}
	if b.RopePos != nil {
		b.RopePos = ropePos
	}
	d := e.Model.Config().NEmbd
	if b.Hidden != nil {
		b.Hidden = hidden
		if cap(e.hidden) < hrows*d {
			e.hidden = make([]float32, hrows*d)
		}
		b.HiddenOut = e.hidden[:hrows*d]
	}
	vocab := e.Model.Config().NVocab
	if cap(e.logits) < rows*vocab {
		e.logits = make([]float32, rows*vocab)
	}
	e.forward.Lock()
	err := e.Model.Forward(b, e.cache, e.logits[:rows*vocab])
	e.forward.Unlock()
	now := time.Now()
	for _, sl := range slots {
		s := sl.s
		if err != nil {
			e.mu.Lock()
			e.retire(s, false) // the pass may have stored part of its keys and values
			e.mu.Unlock()
			s.finish(err)
			continue
		}
		// Positions advance for every token the pass stored, and the
		// blocks they complete join the prefix cache.
		if sl.row < 0 {
			s.past += sl.n
			e.mu.Lock()
			e.cache.Commit(s.id, s.tokens, s.past)
			e.mu.Unlock()
			if s.req.Pooling != PoolNone {
				s.pool(b.HiddenOut[sl.hrow*d:(sl.hrow+sl.hidden)*d], d)
				if s.past == len(s.tokens) {
					s.res.PromptTime = now.Sub(s.started)
					s.res.FinishReason = "stop"
					s.res.Embedding = s.pooledResult()
					e.mu.Lock()
					e.retire(s, true)
					e.mu.Unlock()
					s.finish(nil)
				}
			}
			continue
		}
		if s.generated == 0 {
			s.res.PromptTime = now.Sub(s.started)
			s.firstTok = now
		}
		// One row, or one per draft and one more (speculative.go).
		done := e.emitRows(s, e.logits[sl.row*vocab:(sl.row+1+len(s.draft))*vocab], vocab)
		e.mu.Lock()
		e.cache.Commit(s.id, s.tokens, s.past)
		e.mu.Unlock()
		if done {
			s.res.DecodeTime = now.Sub(s.firstTok)
			e.mu.Lock()
			e.retire(s, true)
			e.mu.Unlock()
			if rest := s.dec.Flush(); rest != "" {
				s.push(Token{ID: -1, Text: rest})
			}
			s.finish(nil)
		}
	}
}

// emit samples the next token of s from its logits, given the token drafted
// there (-1: none), and returns it and whether s is finished.
func (e *Engine) emit(s *sequence, logits []float32, draft int32) (int32, bool) {
	id, forced := s.think.next()
	switch {
	case forced:
	case s.json != nil && !s.think.in:
		// A complete object ends the answer (IgnoreEOS or not); so does a
		// state where no token can continue it.
		if s.json.finished() {
			s.push(Token{ID: -1})
			s.res.FinishReason = "stop"
			return -1, true
		}
		if id = e.sampleJSON(s, logits); id < 0 {
			s.push(Token{ID: -1})
			s.res.FinishReason = "stop"
			return -1, true
		}
	case draft >= 0:
		id = s.sampler.SampleDraft(logits, draft)
	default:
		id = s.sampler.Sample(logits)
	}
	s.sampler.Accept(id)
	tok := Token{ID: id, Forced: forced}
	if s.req.Logprobs || s.req.TopLogprobs > 0 {
		tok.Logprob, tok.Top = LogSoftmaxTop(logits, id, s.req.TopLogprobs)
	}
	tok.Reasoning = s.think.observe(id)
	s.generated++
	eog := !s.req.IgnoreEOS && e.Tok.IsEOG(id)
	if eog {
		s.res.FinishReason = "stop"
		s.push(tok)
		return id, true
	}
	tok.Text = s.dec.Push(id)
	if s.json != nil && !tok.Reasoning && !forced { // the hand-over's trailing newlines are not the answer
		s.json.advance(e.Tok.Piece(id))
	}
	s.tokens = append(s.tokens, id)
	s.push(tok)
	if s.cancelled.Load() {
		s.res.FinishReason = "cancelled"
		return id, true
	}
	return id, s.generated >= s.maxNew
}

// sampleJSON picks a token that keeps the answer a valid prefix of a JSON
// object (or of an instance of the request's schema). Before the value
// starts, a model may still open a thinking block if its budget allows one.
func (e *Engine) sampleJSON(s *sequence, logits []float32) int32 {
	canThink := s.think.open >= 0 && !s.json.begun() && (!s.think.limit || s.think.spent < s.think.budget)
	return s.sampler.SampleAllowed(logits, func(id int32) bool {
		if canThink && id == s.think.open {
			return true
		}
		return !e.Tok.IsControl(id) && s.json.accepts(e.Tok.Piece(id))
	})
}

// wantsHidden reports whether s (an embedding) reads the hidden state of
// prompt position p.
func (s *sequence) wantsHidden(p int) bool {
	switch s.req.Pooling {
	case PoolMean:
		return true
	case PoolCLS:
		return p == 0
	case PoolLast:
		return p == len(s.tokens)-1
	}
	return false
}

// pool adds hidden-state rows (d floats each, in position order) to an
// embedding's pooled state. The mean sums in float64 and divides once.
func (s *sequence) pool(rows []float32, d int) {
	if len(rows) == 0 {
		return
	}
	if s.req.Pooling != PoolMean {
		s.pooled = append(s.pooled[:0], rows...)
		s.pooledN = 1
		return
	}
	if s.sum == nil {
		s.sum = make([]float64, d)
	}
	for r := 0; r+d <= len(rows); r += d {
		for i, v := range rows[r : r+d] {
			s.sum[i] += float64(v)
		}
		s.pooledN++
	}
}

// pooledResult is the finished embedding.
func (s *sequence) pooledResult() []float32 {
	if s.req.Pooling != PoolMean {
		return s.pooled
	}
	out := make([]float32, len(s.sum))
	for i, v := range s.sum {
		out[i] = float32(v / float64(s.pooledN))
	}
	return out
}

// A step's compute budget. A forward pass carries every decoding
// sequence's next token and chunks of waiting prompts, and every decoding
// sequence waits for the whole pass: its inter-token latency is the step's
// time. Counting tokens (BatchSize) bounds that time only near the start of
// a context: a prompt token at position p attends over p+1 positions, so
// deep in a long prompt a chunk of BatchSize tokens costs many times what
// it costs at depth 0 (on tiny-llama 28 times at depth 30,000), and the
// decoders beside it stall for as long. So the scheduler also counts
// FLOPs (model.Config.TokenCost: the weights, and attention over the
// positions a token sees) and fills a step with prompt positions only up to
// what BatchSize tokens of a prompt starting at position 0 cost: at shallow
// depth the token count binds as before (a BatchSize-token prompt at depth 0
// is one chunk), at depth the chunks shrink so that a step takes about as
// long as it does at depth 0. Decoding tokens are never dropped, and the
// first waiting prompt always gets at least one position, so it advances
// even when the decoders alone spend the budget. What a deep prompt's
// chunk leaves of the budget (less than one of its positions) goes to the
// prompts after it, which are usually shallower: a short request that
// arrives during a long prefill starts within a few steps instead of
// waiting for the whole prefill, as it would behind a full token budget.
//
// How others do it: vLLM's scheduler (chunked prefill) spends
// max_num_batched_tokens per step, decodes first and then prompt chunks
// up to the tokens left, and llama.cpp's server fills a batch of n_batch
// tokens (processed in n_ubatch micro-batches, all before the decoders
// get their next token) the same way after one token per generating slot.
// Both count tokens, not work, so their step time grows with the depth of
// the prompt being chunked. On a GPU that is a smaller error: a step is
// dominated by reading the weights until the batch is large, and attention
// at depth is fast; on a CPU a step is compute-bound and attention at 32k
// positions is most of it, so a token count would let one long prompt
// stretch every decoder's inter-token latency by the depth.

// stepRecord is what one step put in its forward pass, for tests: the
// decoding sequences (one token each), the prompt chunks, and the step's
// cost and budget in FLOPs.
type stepRecord struct {
	Decode       []int
	Chunks       []chunkRecord
	Cost, Budget float64
}

// chunkRecord is one prompt chunk of a step: positions From..From+N-1 of
// sequence Seq.
type chunkRecord struct{ Seq, From, N int }

// ropePos is the rotary position of s's cache position p in each M-RoPE
// section (temporal, height, width, extra): p in the first three (and 0
// in the extra one, as llama.cpp sets it for text) before the first image
// grid; in a grid starting at cache position g, with
// temporal position t, t for all its places, t+row and t+col for height and
// width (extra 0); after a grid, the positions go on from t + max(Rows,
// Cols). See Request.Grids.
func (s *sequence) ropePos(p int) [4]int {
	shift := 0 // cache positions minus rotary positions so far
	for _, g := range s.req.Grids {
		if p < g.Start {
			break
		}
		if p < g.end() {
			t, i := g.Start-shift, p-g.Start
			return [4]int{t, t + i/g.Cols, t + i%g.Cols, 0}
		}
		shift += g.Rows*g.Cols - max(g.Rows, g.Cols)
	}
	r := p - shift
	return [4]int{r, r, r, 0} // llama.cpp gives text tokens extra position 0
}

// bidirectionalAt returns the request's bidirectional range holding
// prompt position p, if any.
func (s *sequence) bidirectionalAt(p int) (Span, bool) {
	for _, sp := range s.req.Bidirectional {
		if sp.Start <= p && p < sp.End {
			return sp, true
		}
	}
	return Span{}, false
}

// chunkEnd moves the end of a prompt chunk out of a bidirectional range,
// whose positions must be computed together: back to its start when the
// chunk begins before it, else (the chunk begins in it) on to its end,
// past the token budget if need be.
func (s *sequence) chunkEnd(to int) int {
	if sp, ok := s.bidirectionalAt(to); ok && sp.Start < to {
		if sp.Start > s.past {
			return sp.Start
		}
		return sp.End
	}
	return to
}

// promptChunk is how many of positions from..end-1 of a prompt go into the
// step: at most tokens (the step's token budget left) and as many as cost
// at most the compute left (FLOPs); with first (no prompt has a chunk in
// the step yet) at least one, so that a prompt always advances.
func promptChunk(cfg *model.Config, from, end, tokens int, left float64, first bool) int {
	n := min(end-from, tokens)
	if n <= 0 {
		if first && end > from {
			return 1
		}
		return 0
	}
	// The cost grows with n: the largest n that fits, by bisection.
	lo, hi := 0, n
	for lo < hi {
		mid := (lo + hi + 1) / 2
		if cfg.SpanCost(from, from+mid) <= left {
			lo = mid
		} else {
			hi = mid - 1
		}
	}
	if lo == 0 && first {
		return 1
	}
	return lo
}
