package tensor

import (
	"sync/atomic"
	"testing"
	"time"
)

// TestPoolJobsDoNotOverlap runs many short jobs, some long enough for the
// publisher to block on done, on more goroutines than the machine has
// cores (so workers are descheduled at any point): every job must be whole
// when For returns, and nothing of it may run afterwards. It guards the
// done handshake: a worker of an earlier job must never wake the publisher
// of a later one (a hang, or a job returned unfinished, seen once under
// load before the handshake carried the generation).
func TestPoolJobsDoNotOverlap(t *testing.T) {
	p := NewPool(8)
	defer p.Close()
	const n = 16
	deadline := time.Now().Add(time.Second)
	for job := 0; time.Now().Before(deadline); job++ {
		var hits [n]atomic.Int32
		var after atomic.Bool
		slow := job%7 == 0
		p.For(n, func(lo, hi int) {
			if slow && lo == 0 {
				time.Sleep(time.Duration(600+job%5*100) * time.Microsecond) // past spinTime: the publisher blocks
			}
			for i := lo; i < hi; i++ {
				if after.Load() {
					t.Errorf("job %d: index %d ran after For returned", job, i)
				}
				hits[i].Add(1)
			}
		})
		after.Store(true)
		for i := range hits {
			if h := hits[i].Load(); h != 1 {
				t.Fatalf("job %d: index %d ran %d times by the time For returned", job, i, h)
			}
		}
	}
}
