package engine

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stepflash/stepflash/internal/testmodels"
)

// The KV cache under pressure, through the scheduler: tiny-llama-F32 with a
// cache of a few 32-position blocks, so that admission must evict parked
// prefixes, refuse what can never fit, hold back what does not fit yet, and
// drop cancelled requests from the head of the queue. Every output is
// compared with the same request on an empty engine without a prefix cache.

// pressureTimeout bounds every wait: a scheduler bug here is a hang, and a
// hang must fail the test with a message rather than stall the run.
const pressureTimeout = 30 * time.Second

// pressureEngine is New whose Close at the end of the test is bounded: a
// hung scheduler fails the test instead of blocking it.
func pressureEngine(t *testing.T, opts Options) *Engine {
	t.Helper()
	m, tok := openModel(t, testmodels.Path(t, "tiny-llama-F32.gguf"), 1)
	e := New(m, tok, opts)
	t.Cleanup(func() {
		done := make(chan struct{})
		go func() { e.Close(); close(done) }()
		select {
		case <-done:
		case <-time.After(pressureTimeout):
			t.Error("Engine.Close hung: the scheduler is stuck")
		}
	})
	return e
}

// call is one Generate running on its own goroutine.
type call struct {
	req    Request
	cancel context.CancelFunc
	done   chan struct{}
	res    *Result
	err    error
}

func start(e *Engine, req Request) *call {
	ctx, cancel := context.WithCancel(context.Background())
	c := &call{req: req, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(c.done)
		c.res, c.err = e.Generate(ctx, req, nil)
	}()
	return c
}

// wait returns the call's result, failing the test if it does not end.
func (c *call) wait(t *testing.T, what string) (*Result, error) {
	t.Helper()
	select {
	case <-c.done:
		return c.res, c.err
	case <-time.After(pressureTimeout):
		t.Fatalf("%s: Generate did not return within %v", what, pressureTimeout)
		return nil, nil
	}
}

// find returns the scheduler's sequence for prompt among running or
// pending ones (nil if none), and whether it is running. Called with e.mu
// held.
func (e *Engine) find(prompt []int32) (s *sequence, running bool) {
	for _, s := range e.running {
		if slices.Equal(s.req.Prompt, prompt) {
			return s, true
		}
	}
	for _, s := range e.pending {
		if slices.Equal(s.req.Prompt, prompt) {
			return s, false
		}
	}
	return nil, false
}

// held is a request whose sequence lock the test holds. The scheduler
// needs that lock to hand the sequence each token, so while the test holds
// it the request (and the batch it is in) stands still, however the
// machine is loaded; gate lets it advance a token or so at a time.
type held struct {
	s      *sequence
	locked bool
}

// startHeld submits req, which must be the only request with its prompt,
// and takes its sequence's lock before it is handed its first token: no
// forward pass runs until then.
func startHeld(t *testing.T, e *Engine, req Request) (*call, *held) {
	t.Helper()
	e.forward.Lock()
	c := start(e, req)
	deadline := time.Now().Add(pressureTimeout)
	var s *sequence
	for s == nil {
		if time.Now().After(deadline) {
			e.forward.Unlock()
			t.Fatal("the request never reached the scheduler")
		}
		e.mu.Lock()
		s, _ = e.find(req.Prompt)
		e.mu.Unlock()
		time.Sleep(20 * time.Microsecond)
	}
	s.mu.Lock()
	e.forward.Unlock()
	h := &held{s: s, locked: true}
	t.Cleanup(h.release) // before the engine's Close, which needs the lock
	return c, h
}

// release lets the held request run freely.
func (h *held) release() {
	if h.locked {
		h.locked = false
		h.s.mu.Unlock()
	}
}

// gate lets the held request advance a token or so at a time until done
// (called with its lock held) holds. It fails if the request ends first:
// what done waits for did not happen while it ran.
func gate(t *testing.T, h *held, what string, done func(r *sequence) bool) {
	t.Helper()
	deadline := time.Now().Add(pressureTimeout)
	for {
		// The runner's end first: what it allows (a freed slot, freed
		// blocks) may have made done hold since.
		if h.s.isDone {
			t.Fatalf("%s: not seen before the running request ended", what)
		}
		if done(h.s) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not seen within %v", what, pressureTimeout)
		}
		// With the batch standing still, give the other goroutines
		// (a cancelled request's Generate, which must run twice before it
		// returns) the CPU before the next token: on a loaded 2-core
		// machine a spin here let the running request end first.
		time.Sleep(100 * time.Microsecond)
		h.s.mu.Unlock()
		h.s.mu.Lock()
	}
}

// ended reports whether the call has returned.
func (c *call) ended() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// heldBack checks that the request with prompt waiting, just submitted,
// is passed over by admission while the held runner decodes:
// once waiting is in the queue, runner gains two tokens (so a whole
// scheduler iteration, admit included, ran between them) and waiting is
// still queued.
func heldBack(t *testing.T, e *Engine, runner *held, waiting []int32, what string) {
	t.Helper()
	base := -1
	gate(t, runner, what+" held back", func(r *sequence) bool {
		e.mu.Lock()
		w, running := e.find(waiting)
		e.mu.Unlock()
		switch {
		case running || w == nil && base >= 0:
			t.Fatalf("%s left the queue (running: %v) while the running request still held its blocks", what, running)
		case w == nil:
			return false // not submitted yet
		case base < 0:
			base = len(r.out)
		}
		return len(r.out) >= base+2
	})
}

// pressurePrompts are prompts of tiny-llama with no common first token (no
// BOS), so that the prefix cache shares nothing between them unless a
// prompt is repeated.
func pressurePrompts(t *testing.T, e *Engine) (story, other []int32) {
	t.Helper()
	story = e.Tok.Encode(strings.Repeat(storyText+" ", 2), false, true)
	other = e.Tok.Encode(strings.Repeat(otherText+" ", 4), false, true)
	if len(story) < 300 || len(other) < 300 || story[0] == other[0] {
		t.Fatalf("prompts of %d and %d tokens starting %d and %d: want 300+ each and different first tokens", len(story), len(other), story[0], other[0])
	}
	return story, other
}

// reference memoizes greedy outputs on an empty engine without a prefix cache.
type reference struct {
	t    *testing.T
	e    *Engine
	memo map[string][]int32
}

func newReference(t *testing.T) *reference {
	return &reference{t: t, e: pressureEngine(t, Options{Context: 1024, CacheBytes: -1}), memo: map[string][]int32{}}
}

func (r *reference) want(req Request) []int32 {
	r.t.Helper()
	key := fmt.Sprint(req.Prompt, req.MaxTokens)
	if w, ok := r.memo[key]; ok {
		return w
	}
	res, err := r.e.Generate(context.Background(), req, nil)
	if err != nil {
		r.t.Fatal(err)
	}
	if len(res.Tokens) != req.MaxTokens {
		r.t.Fatalf("reference: %d tokens, want %d", len(res.Tokens), req.MaxTokens)
	}
	r.memo[key] = ids(res)
	return r.memo[key]
}

// check compares a finished call with the reference.
func (r *reference) check(what string, res *Result, err error, req Request, cached int) {
	r.t.Helper()
	if err != nil {
		r.t.Fatalf("%s: %v", what, err)
	}
	if w := r.want(req); !slices.Equal(ids(res), w) || res.CachedTokens != cached || res.FinishReason != "length" {
		r.t.Errorf("%s: %v (finish %q, %d cached tokens)\nwant %v (finish \"length\", %d cached)", what, ids(res), res.FinishReason, res.CachedTokens, w, cached)
	}
}

// TestPressureEvictParked: the blocks a finished request leaves parked in
// the prefix cache are evicted when new requests need the room, while
// another request runs; the new requests decode exactly as on an empty
// engine, and the evicted prompt, run again, reuses nothing stale.
func TestPressureEvictParked(t *testing.T) {
	ref := newReference(t)
	e := pressureEngine(t, Options{Context: 256, Parallel: 2, KVTokens: 160}) // 5 blocks
	story, other := pressurePrompts(t, e)
	p := Request{Prompt: story[:70], MaxTokens: 8, IgnoreEOS: true}      // 77 positions: 2 full blocks, 13 in a third
	r := Request{Prompt: other[:20], MaxTokens: 40, IgnoreEOS: true}     // 60: 2 blocks
	q := Request{Prompt: story[100:140], MaxTokens: 40, IgnoreEOS: true} // 80: 3 blocks
	for _, req := range []Request{p, r, q} {
		ref.want(req)
	}

	c := start(e, p)
	res, err := c.wait(t, "parked request")
	ref.check("parked request", res, err, p, 0)
	if st := e.PrefixCacheStats(); st.Blocks != 3 || st.IdleBlocks != 3 || st.Evictions != 0 || st.CapacityBlocks != 5 {
		t.Fatalf("after the first request: %+v, want its 3 blocks parked (idle) of 5 and no eviction", st)
	}

	// r runs on the 2 blocks never used; q, admitted while r decodes,
	// needs 3 more: all of p's parked blocks.
	cr, hr := startHeld(t, e, r)
	cq := start(e, q)
	gate(t, hr, "q admitted while r runs", func(*sequence) bool {
		e.mu.Lock()
		defer e.mu.Unlock()
		_, running := e.find(q.Prompt)
		return running || cq.ended()
	})
	hr.release()
	resQ, errQ := cq.wait(t, "evicting request")
	resR, errR := cr.wait(t, "running request")
	ref.check("evicting request", resQ, errQ, q, 0)
	ref.check("request running beside the eviction", resR, errR, r, 0)
	if st := e.PrefixCacheStats(); st.Evictions != 3 {
		t.Fatalf("after the second wave: %+v, want p's 3 parked blocks evicted", st)
	}

	// p again: its blocks are gone and now hold r's and q's positions; it
	// reuses nothing, evicting 3 of theirs, and decodes as before.
	c = start(e, p)
	res, err = c.wait(t, "evicted request again")
	ref.check("evicted request again", res, err, p, 0)
	if st := e.PrefixCacheStats(); st.Evictions != 6 || st.Lookups != 4 || st.Hits != 0 {
		t.Fatalf("after p again: %+v, want 6 evictions, 4 lookups, no hit", st)
	}
	// p took r's blocks and q's partial last one (r retired first, and a
	// sequence's blocks join the LRU list last first): q's two full blocks
	// are left, so q again reuses its whole prompt but the last token.
	cq = start(e, q)
	resQ, errQ = cq.wait(t, "q again")
	ref.check("q again", resQ, errQ, q, len(q.Prompt)-1)
}

// TestPressureTooLarge: a request that needs more positions than the whole
// KV cache fails at once with an error naming both numbers, whether the
// engine is idle or busy (it must not wait for running requests to finish
// first), and one that needs exactly the whole cache runs.
func TestPressureTooLarge(t *testing.T) {
	ref := newReference(t)
	e := pressureEngine(t, Options{Context: 1024, Parallel: 2, KVTokens: 512}) // 16 blocks
	story, other := pressurePrompts(t, e)
	long := Request{Prompt: other[:10], MaxTokens: 190, IgnoreEOS: true}  // 200 positions
	big := Request{Prompt: story[:200], MaxTokens: 400, IgnoreEOS: true}  // 600 > 512
	exact := Request{Prompt: story[:56], MaxTokens: 456, IgnoreEOS: true} // 512: the whole cache
	small := Request{Prompt: story[:10], MaxTokens: 5, IgnoreEOS: true}
	const wantErr = "engine: KV cache holds 512 positions, request needs 600"

	// Idle.
	if _, err := start(e, big).wait(t, "too large, idle"); err == nil || err.Error() != wantErr {
		t.Fatalf("too large on an idle engine: %v, want %q", err, wantErr)
	}
	// Busy: the error comes while long still decodes, and a request queued
	// behind the refused one is not held up by it.
	cl, hl := startHeld(t, e, long)
	cb := start(e, big)
	// Refused while long runs, not after it: it must not wait for room
	// that can never be.
	gate(t, hl, "too large refused", func(*sequence) bool { return cb.ended() })
	hl.release()
	if _, err := cb.wait(t, "too large, busy"); err == nil || err.Error() != wantErr {
		t.Fatalf("too large beside a running request: %v, want %q", err, wantErr)
	}
	cs := start(e, small)
	res, err := cs.wait(t, "small request behind")
	ref.check("small request behind the refused one", res, err, small, 0)
	res, err = cl.wait(t, "long request")
	ref.check("long request", res, err, long, 0)

	// Exactly the whole cache fits once nothing else holds blocks.
	res, err = start(e, exact).wait(t, "whole-cache request")
	ref.check("request of exactly the cache's size", res, err, exact, 10)
	if st := e.PrefixCacheStats(); st.Evictions == 0 {
		t.Fatalf("%+v: the whole-cache request should have evicted parked blocks", st)
	}
}

// TestPressureWaitForRoom: with a free slot but not enough KV blocks, a
// request waits in the queue while another runs and is admitted when that
// one retires; both decode exactly as on an empty engine.
func TestPressureWaitForRoom(t *testing.T) {
	ref := newReference(t)
	e := pressureEngine(t, Options{Context: 512, Parallel: 2, KVTokens: 192}) // 6 blocks
	story, other := pressurePrompts(t, e)
	a := Request{Prompt: story[:40], MaxTokens: 150, IgnoreEOS: true} // 190 positions: 6 blocks
	b := Request{Prompt: other[:10], MaxTokens: 10, IgnoreEOS: true}  // 20: 1 block
	ref.want(a)
	ref.want(b)

	ca, ha := startHeld(t, e, a)
	cb := start(e, b)
	heldBack(t, e, ha, b.Prompt, "b")
	ha.release()
	resB, errB := cb.wait(t, "b")
	resA, errA := ca.wait(t, "a")
	ref.check("a", resA, errA, a, 0)
	ref.check("b, which waited for a", resB, errB, b, 0)
	if st := e.PrefixCacheStats(); st.Evictions != 1 {
		t.Errorf("%+v: want one eviction (b takes one of a's parked blocks)", st)
	}
}

// TestPressureCancelHead: the request at the head of the queue, waiting for
// KV room, is cancelled: it returns at once with finish reason cancelled,
// and the request behind it, which fits, runs while the long one still
// decodes.
func TestPressureCancelHead(t *testing.T) {
	ref := newReference(t)
	e := pressureEngine(t, Options{Context: 512, Parallel: 3, KVTokens: 256}) // 8 blocks
	story, other := pressurePrompts(t, e)
	r := Request{Prompt: story[:40], MaxTokens: 180, IgnoreEOS: true}    // 220 positions: 7 blocks
	h := Request{Prompt: other[:60], MaxTokens: 30, IgnoreEOS: true}     // 90: 3 blocks, 10 > 8
	n := Request{Prompt: story[300:310], MaxTokens: 10, IgnoreEOS: true} // 20: 1 block, 8 <= 8
	ref.want(r)
	ref.want(n)

	cr, hr := startHeld(t, e, r)
	ch := start(e, h)
	heldBack(t, e, hr, h.Prompt, "the head of the queue")
	cn := start(e, n)
	heldBack(t, e, hr, n.Prompt, "the request behind it") // FIFO: behind h, although it fits
	ch.cancel()
	// Both return while r still runs: the cancelled one at once, the
	// other after its own 10 tokens.
	gate(t, hr, "the cancelled head returned", func(*sequence) bool { return ch.ended() })
	gate(t, hr, "the request behind the cancelled head finished", func(*sequence) bool { return cn.ended() })
	hr.release()
	resH, errH := ch.wait(t, "cancelled head")
	if errH != nil || resH.FinishReason != "cancelled" || len(resH.Tokens) != 0 {
		t.Fatalf("cancelled head of the queue: %+v, %v; want finish cancelled and no tokens", resH, errH)
	}
	resN, errN := cn.wait(t, "request behind the cancelled one")
	ref.check("request behind the cancelled one", resN, errN, n, 0)
	resR, errR := cr.wait(t, "running request")
	ref.check("running request", resR, errR, r, 0)
	if d := e.QueueDepth(); d != 0 {
		t.Errorf("queue depth %d after all returned", d)
	}
	if st := e.PrefixCacheStats(); st.Lookups != 2 {
		t.Errorf("%+v: want 2 lookups (the cancelled request was never admitted)", st)
	}
}
