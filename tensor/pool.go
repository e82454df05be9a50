package tensor

import (
	"runtime"
	"sync"
	"sync/atomic"
)

// Pool runs data-parallel work on a fixed set of goroutines (threads-1
// workers plus the caller). Calls to For from several goroutines are
// serialized; fn must not call For on the same Pool.
type Pool struct {
	threads int
	mu      sync.Mutex

	// The current job, published before the workers are woken.
	fn     func(lo, hi int)
	n      int
	chunk  int
	next   atomic.Int64
	active atomic.Int32 // workers still running the current job
	wake   []chan struct{}
	done   chan struct{}
	closed bool
}

// NewPool starts a pool of threads goroutines (the caller counts as one);
// threads <= 0 means runtime.GOMAXPROCS(0).
func NewPool(threads int) *Pool {
	if threads <= 0 {
		threads = runtime.GOMAXPROCS(0)
	}
	p := &Pool{threads: threads, done: make(chan struct{}, 1)}
	p.wake = make([]chan struct{}, threads-1)
	for i := range p.wake {
		p.wake[i] = make(chan struct{}, 1)
		go p.worker(p.wake[i])
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

func (p *Pool) worker(wake chan struct{}) {
	for range wake {
		p.run()
		if p.active.Add(-1) == 0 {
			p.done <- struct{}{}
		}
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
	if p.closed {
		panic("tensor: Pool used after Close")
	}
	p.fn, p.n, p.chunk = fn, n, chunk
	p.next.Store(0)
	workers := min(len(p.wake), (n+chunk-1)/chunk-1)
	p.active.Store(int32(workers))
	for i := 0; i < workers; i++ {
		p.wake[i] <- struct{}{}
	}
	p.run()
	if workers > 0 {
		<-p.done
	}
	p.fn = nil
}

// Close stops the worker goroutines. The Pool must not be used afterwards.
func (p *Pool) Close() {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return
	}
	p.closed = true
	for _, c := range p.wake {
		close(c)
	}
}
