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
	json      *jsonState // response_format json_object, else nil
	dec       *tokenizer.StreamDecoder
	generated int
	started   time.Time // admitted
	firstTok  time.Time
	res       Result

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

// parkedSeq is a finished sequence whose KV cache is kept for a follow-up.
type parkedSeq struct {
	id      int
	tokens  []int32 // the tokens whose keys and values are in the cache
	experts int     // experts per token they were computed with (0: trained count)
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
// reusing a parked sequence's cache when the prompt starts with its tokens.
// Called with e.mu held.
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
		if s.cancelled.Load() {
			e.pending = e.pending[1:]
			s.res.FinishReason = "cancelled"
			s.finish(nil)
			continue
		}
		need := len(s.req.Prompt) + s.maxNew
		if need > e.cache.Capacity() {
			e.pending = e.pending[1:]
			s.finish(fmt.Errorf("engine: KV cache holds %d positions, request needs %d", e.cache.Capacity(), need))
			continue
		}
		reuse, common := e.bestPrefix(s.req.Prompt, s.req.ExpertsUsed)
		if reuse != nil {
			e.cache.Move(reuse.id, s.id)
			e.unpark(reuse)
			e.cache.Truncate(s.id, common)
			s.past = common
		}
		for e.cache.Reserve(s.id, need) != nil {
			if len(e.parked) == 0 {
				break
			}
			e.cache.Free(e.parked[0].id)
			e.parked = e.parked[1:]
		}
		if e.cache.Len(s.id) < need {
			if len(e.running) == 0 {
				// Nothing will free memory: the request cannot fit at all.
				e.cache.Free(s.id)
				e.pending = e.pending[1:]
				s.finish(fmt.Errorf("engine: KV cache holds %d positions, request needs %d", e.cache.Capacity(), need))
				continue
			}
			if reuse != nil {
				e.cache.Free(s.id)
				s.past = 0
			}
			return // wait for a running sequence to finish
		}
		e.pending = e.pending[1:]
		s.tokens = append([]int32(nil), s.req.Prompt...)
		s.sampler = NewSampler(s.req.Sampling)
		s.think = newThinkState(e.Tok, s.req)
		if s.req.JSONObject {
			s.json = &jsonState{}
		}
		s.dec = e.Tok.NewStreamDecoder()
		s.started = time.Now()
		s.res.CachedTokens = s.past
		s.res.QueueTime = s.started.Sub(s.submitted)
		s.res.FinishReason = "length"
		e.running = append(e.running, s)
	}
}

// bestPrefix finds the parked sequence sharing the longest prefix with
// prompt. The reusable length stops one short of the prompt so that its last
// token is run again to give the next token's logits.
func (e *Engine) bestPrefix(prompt []int32, experts int) (*parkedSeq, int) {
	var best *parkedSeq
	bestN := 0
	for _, p := range e.parked {
		if e.expertsOf(p.experts) != e.expertsOf(experts) {
			continue // keys and values past an MoE layer depend on the expert count
		}
		n := 0
		for n < len(p.tokens) && n < len(prompt)-1 && p.tokens[n] == prompt[n] {
			n++
		}
		if n > bestN {
			best, bestN = p, n
		}
	}
	return best, bestN
}

// expertsOf resolves an experts-per-token request (0: the trained count).
func (e *Engine) expertsOf(n int) int {
	if n <= 0 {
		return e.Model.Config().NExpertUse
	}
	return n
}

func (e *Engine) unpark(p *parkedSeq) {
	for i, q := range e.parked {
		if q == p {
			e.parked = append(e.parked[:i], e.parked[i+1:]...)
			return
		}
	}
}

// retire removes s from the running set, parking its cache for reuse.
// Called with e.mu held.
func (e *Engine) retire(s *sequence) {
	for i, r := range e.running {
		if r == s {
			e.running = append(e.running[:i], e.running[i+1:]...)
			break
		}
	}
	if e.opts.KeepPrefixes < 0 || s.past == 0 {
		e.cache.Free(s.id)
		return
	}
	e.cache.Truncate(s.id, s.past)
	e.parked = append(e.parked, &parkedSeq{id: s.id, tokens: s.tokens[:s.past], experts: s.req.ExpertsUsed})
	for len(e.parked) > e.opts.KeepPrefixes {
		e.cache.Free(e.parked[0].id)
		e.parked = e.parked[1:]
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
		s   *sequence
		n   int // tokens of s in the batch
		row int // logits row, -1 if none
	}
	var slots []slot
	var live []*sequence
	budget := e.opts.BatchSize
	rows := 0
	add := func(s *sequence, from, to int, output bool) {
		for p := from; p < to; p++ {
			b.Tokens = append(b.Tokens, s.tokens[p])
			b.Pos = append(b.Pos, p)
			b.Seq = append(b.Seq, s.id)
			b.Output = append(b.Output, output && p == to-1)
			b.ExpertsUsed = append(b.ExpertsUsed, s.req.ExpertsUsed)
		}
		budget -= to - from
		row := -1
		if output {
			row = rows
			rows++
		}
		slots = append(slots, slot{s, to - from, row})
	}
	for _, s := range running {
		if s.cancelled.Load() {
			e.mu.Lock()
			e.retire(s)
			e.mu.Unlock()
			s.res.FinishReason = "cancelled"
			s.finish(nil)
			continue
		}
		live = append(live, s)
	}
	// Decoding sequences first: each needs one token, and they must not starve.
	for _, s := range live {
		if s.past == len(s.tokens)-1 && s.generated > 0 {
			add(s, s.past, s.past+1, true)
		}
	}
	for _, s := range live {
		if s.generated == 0 && budget > 0 {
			to := min(len(s.tokens), s.past+budget)
			add(s, s.past, to, to == len(s.tokens))
		}
	}
	if len(b.Tokens) == 0 {
		return
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
			e.retire(s)
			e.mu.Unlock()
			s.finish(err)
			continue
		}
		// Positions advance for every token the pass stored.
		if sl.row < 0 {
			s.past += sl.n
			continue
		}
		s.past = len(s.tokens)
		if s.generated == 0 {
			s.res.PromptTime = now.Sub(s.started)
			s.firstTok = now
		} else {
			s.res.Decoded++
		}
		if e.emit(s, e.logits[sl.row*vocab:(sl.row+1)*vocab]) {
			s.res.DecodeTime = now.Sub(s.firstTok)
			e.mu.Lock()
			e.retire(s)
			e.mu.Unlock()
			if rest := s.dec.Flush(); rest != "" {
				s.push(Token{ID: -1, Text: rest})
			}
			s.finish(nil)
		}
	}
}

// emit samples the next token of s from its logits and reports whether s is finished.
func (e *Engine) emit(s *sequence, logits []float32) bool {
	id, forced := s.think.next()
	switch {
	case forced:
	case s.json != nil && !s.think.in:
		// A complete object ends the answer (IgnoreEOS or not); so does a
		// state where no token can continue it.
		if s.json.done {
			s.push(Token{ID: -1})
			s.res.FinishReason = "stop"
			return true
		}
		if id = e.sampleJSON(s, logits); id < 0 {
			s.push(Token{ID: -1})
			s.res.FinishReason = "stop"
			return true
		}
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
		return true
	}
	tok.Text = s.dec.Push(id)
	if s.json != nil && !tok.Reasoning && !forced { // the hand-over's trailing newlines are not the answer
		s.json.advance(e.Tok.Piece(id))
	}
	s.tokens = append(s.tokens, id)
	s.push(tok)
	if s.cancelled.Load() {
		s.res.FinishReason = "cancelled"
		return true
	}
	return s.generated >= s.maxNew
}

// sampleJSON picks a token that keeps the answer a valid JSON object
// prefix. Before the object starts, a model may still open a thinking block
// if its budget allows one.
func (e *Engine) sampleJSON(s *sequence, logits []float32) int32 {
	canThink := s.think.open >= 0 && s.json.mode == jmStart && (!s.think.limit || s.think.spent < s.think.budget)
	return s.sampler.SampleAllowed(logits, func(id int32) bool {
		if canThink && id == s.think.open {
			return true
		}
		return !e.Tok.IsControl(id) && s.json.accepts(e.Tok.Piece(id))
	})
}
