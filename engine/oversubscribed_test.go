package engine

import (
	"context"
	"testing"
	"time"

	"github.com/stepflash/stepflash/internal/testmodels"
)

// TestOversubscribedThreads: a model with more threads than the machine
// has cores (workers descheduled at any point of the pool's handshakes)
// decodes without hanging. Before the pool's workers re-checked for a new
// job after every wake-up, this deadlocked within seconds on 2 cores
// (every worker parked, the caller waiting on a job the pool counted as
// running at -1 workers).
func TestOversubscribedThreads(t *testing.T) {
	m, tok := openModel(t, testmodels.Path(t, "tiny-llama-F32.gguf"), 4)
	e := New(m, tok, Options{Context: 512, Parallel: 1, CacheBytes: -1})
	defer e.Close()
	done := make(chan error, 1)
	go func() {
		for i := range 25 {
			if _, err := e.Generate(context.Background(), Request{Prompt: tok.Encode("Once upon a time", true, true), MaxTokens: 256, IgnoreEOS: true,
				Sampling: SamplerParams{Temperature: 0.8, TopK: 40, TopP: 0.95, Seed: uint64(i)}}, nil); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(90 * time.Second):
		t.Fatal("decoding with 4 threads did not finish within 90 s: the thread pool hangs")
	}
}
