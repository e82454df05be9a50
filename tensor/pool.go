package tensor

import (
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// spinTime is how long an idle worker keeps polling for the next job before
// it parks. Decoding issues parallel loops every few microseconds; waking a
// parked goroutine takes that long or longer, so workers spin across the
// short gaps (as llama.cpp's threads do) and sleep through long ones.
const spinTime = 500 * time.Microsecond

// Pool runs data-parallel work on a fixed set of goroutines (threads-1
// workers plus the caller). Calls to For from several goroutines are
// serialized; fn must not call For on the same Pool.
type Pool struct {
	threads int
	mu      sync.Mutex

	// The current job, published before gen is bumped.
	fn      func(lo, hi int)
	n       int
	chunk   int
	next    atomic.Int64
	active  atomic.Int32  // workers still running the current job
	waiting atomic.Uint64 // the generation whose end the publisher is blocked on (0: none)
	gen     atomic.Uint64 // job generation; odd values never occur (closing uses gen|1<<63)
	done    chan struct{}
	closed  atomic.Bool
	ws      []*poolWorker
}

type poolWorker struct {
	parked atomic.Bool // blocked on wake (the job publisher must send)
	wake   chan struct{}
}

// NewPool starts a pool of threads goroutines (the caller counts as one);
// threads <= 0 means runtime.GOMAXPROCS(0).
func NewPool(threads int) *Pool {
	if threads <= 0 {
		threads = runtime.GOMAXPROCS(0)
	}
	p := &Pool{threads: threads, done: make(chan struct{}, 1)}
	for i := 0; i < threads-1; i++ {
		w := &poolWorker{wake: make(chan struct{}, 1)}
		p.ws = append(p.ws, w)
		go p.worker(w, p.gen.Load())
	}
	return p
}

// Threads returns the number of goroutines that share the work of For.
func (p *Pool) Threads() int {
	if p == nil {
		return 1
	}
	return p.threads
}

// worker runs jobs published after generation seen.
func (p *Pool) worker(w *poolWorker, seen uint64) {
	for {
		g := p.waitJob(w, seen)
		if p.closed.Load() {
			return
		}
		seen = g
		p.run()
		// Only the job of generation g may be signalled done: a worker
		// descheduled between these two steps must not, when it resumes,
		// wake a publisher that is waiting on a later job.
		if p.active.Add(-1) == 0 && p.waiting.CompareAndSwap(g, 0) {
			p.done <- struct{}{}
		}
	}
}

// waitJob spins for a while, then parks, until gen moves past seen.
func (p *Pool) waitJob(w *poolWorker, seen uint64) uint64 {
	start := time.Now()
	for i := 0; ; i++ {
		if g := p.gen.Load(); g != seen {
			return g
		}
		if i&255 == 255 {
			if time.Since(start) > spinTime {
				break
			}
			runtime.Gosched()
		}
	}
	for {
		w.parked.Store(true)
		if g := p.gen.Load(); g != seen {
			if !w.parked.Swap(false) {
				<-w.wake // the publisher saw us parked and sends; consume it
			}
			return g
		}
		<-w.wake
		if g := p.gen.Load(); g != seen {
			return g
		}
		// Woken with no new job: park again rather than run (and count
		// down) a job already done.
	}
}

// run takes chunks of the current job until none is left.
func (p *Pool) run() {
	fn, n, chunk := p.fn, p.n, p.chunk
	for {
		lo := int(p.next.Add(int64(chunk))) - chunk
		if lo >= n {
			return
		}
		fn(lo, min(lo+chunk, n))
	}
}

// For splits [0,n) into chunks, runs fn on them over the pool's goroutines
// and returns when all are done. Chunks are handed out dynamically, about four
// per thread, so a thread slowed by other load takes fewer. A nil Pool or a
// Pool of one thread runs fn(0, n) on the caller.
func (p *Pool) For(n int, fn func(lo, hi int)) {
	if n <= 0 {
		return
	}
	if p == nil || p.threads == 1 || n == 1 {
		fn(0, n)
		return
	}
	chunk := (n + 4*p.threads - 1) / (4 * p.threads)
	p.forChunks(n, chunk, fn)
}

// forChunks is For with an explicit chunk size.
func (p *Pool) forChunks(n, chunk int, fn func(lo, hi int)) {
	if p == nil || p.threads == 1 || chunk >= n {
		fn(0, n)
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed.Load() {
		panic("tensor: Pool used after Close")
	}
	p.fn, p.n, p.chunk = fn, n, chunk
	p.next.Store(0)
	// Every worker takes part in every job (a worker that finds no chunk
	// left just reports done), so the generation handshake stays simple.
	p.active.Store(int32(len(p.ws)))
	g := p.gen.Add(2)
	for _, w := range p.ws {
		if w.parked.Swap(false) {
			w.wake <- struct{}{}
		}
	}
	p.run()
	p.waitDone(g)
	p.fn = nil
}

// waitDone waits until every worker has finished job g: spinning
// first (the workers usually finish within microseconds of the caller, and
// a blocked caller takes as long again to be woken), then blocking.
func (p *Pool) waitDone(g uint64) {
	start := time.Now()
	for i := 0; p.active.Load() != 0; i++ {
		if i&255 == 255 {
			if time.Since(start) > spinTime {
				p.waiting.Store(g)
				if p.active.Load() == 0 && p.waiting.CompareAndSwap(g, 0) {
					return
				}
				<-p.done
				return
			}
			runtime.Gosched()
		}
	}
}

// Close stops the worker goroutines. The Pool must not be used afterwards.
func (p *Pool) Close() {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed.Swap(true) {
		return
	}
	p.gen.Add(1)
	for _, w := range p.ws {
		if w.parked.Swap(false) {
			w.wake <- struct{}{}
		}
	}
}
