package engine

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stepflash/stepflash/internal/testmodels"
	"github.com/stepflash/stepflash/model"
)

// tinyLlamaShape is tiny-llama's configuration (2 layers, n_embd 256, 8
// heads of 32, 2 KV heads, n_ff 256, 512 tokens): 851,968 weights per
// token, 2,048 FLOPs of attention per position seen.
var tinyLlamaShape = &model.Config{NLayer: 2, NEmbd: 256, NHead: 8, NHeadKV: 2, HeadDim: 32, HeadDimV: 32, NFF: 256, NVocab: 512}

// TestPromptChunk pins the chunking arithmetic on tiny-llama's shape. The
// expected lengths were computed separately (a Python sum of per-token
// costs, 2 × 851,968 + 2,048 × (pos+1), over growing chunks).
func TestPromptChunk(t *testing.T) {
	cfg := tinyLlamaShape
	b512, b64 := cfg.SpanCost(0, 512), cfg.SpanCost(0, 64)
	if b512 != 1141374976 || b64 != 113311744 {
		t.Fatalf("budgets %v and %v, want 1141374976 and 113311744", b512, b64)
	}
	cases := []struct {
		name            string
		from, end, toks int
		left            float64
		first           bool
		want            int
	}{
		{"a 512-token prompt at depth 0 is one chunk", 0, 512, 512, b512, true, 512},
		{"4 shallow decoders: the token count binds", 0, 2000, 508, b512 - 4*cfg.TokenCost(20), true, 508},
		{"at depth 30,000 the cost binds", 30000, 32768, 512, b512, true, 18},
		{"at depth 30,000 beside 4 decoders", 30000, 32768, 508, b512 - 4*cfg.TokenCost(100), true, 17},
		{"batch 64 at depth 8,000", 8000, 9000, 64, b64, true, 6},
		{"batch 64 at depth 1,400 beside 4 decoders", 1400, 1500, 60, b64 - 4*cfg.TokenCost(50), true, 23},
		{"the rest of a prompt shorter than the budget", 100, 103, 512, b512, false, 3},
		{"not one position fits: the first prompt still advances", 30000, 32768, 512, cfg.TokenCost(30000) - 1, true, 1},
		{"not one position fits: a later prompt waits", 30000, 32768, 512, cfg.TokenCost(30000) - 1, false, 0},
		{"exactly one position fits", 30000, 32768, 512, cfg.TokenCost(30000), false, 1},
		{"decoders spent the budget: the first prompt still advances", 10, 20, 512, -1, true, 1},
		{"decoders took every token: the first prompt still advances", 10, 20, 0, b512, true, 1},
		{"decoders took every token: a later prompt waits", 10, 20, 0, b512, false, 0},
		{"nothing left of the prompt", 20, 20, 512, b512, true, 0},
	}
	for _, tc := range cases {
		if got := promptChunk(cfg, tc.from, tc.end, tc.toks, tc.left, tc.first); got != tc.want {
			t.Errorf("%s: promptChunk(%d, %d, %d, %.0f, %v) = %d, want %d", tc.name, tc.from, tc.end, tc.toks, tc.left, tc.first, got, tc.want)
		}
	}
}

// TestLongPromptBesideDecoders: four requests decode while a long prompt
// (1,500 tokens, deep enough on tiny-llama that a 60-token chunk costs
// twice the budget at its end) is prefilled beside them. From the
// scheduler's own step records: every step while the long prompt is in
// flight carries one token of each decoder, no step exceeds the compute
// budget, the long prompt's chunks cover it exactly and in order (and
// shrink with depth), and its output is what it produces alone.
func TestLongPromptBesideDecoders(t *testing.T) {
	m, tok := openModel(t, testmodels.Path(t, "tiny-llama-F32.gguf"), 1)
	long := make([]int32, 1500)
	x := uint32(12345)
	for i := range long {
		x = x*1664525 + 1013904223
		long[i] = 3 + int32(x>>16)%256 // byte tokens: any are valid input
	}
	longReq := Request{Prompt: long, MaxTokens: 4, IgnoreEOS: true}

	solo := New(m, tok, Options{Context: 2048, CacheBytes: -1})
	alone, err := solo.Generate(context.Background(), longReq, nil)
	solo.Close()
	if err != nil {
		t.Fatal(err)
	}

	e := New(m, tok, Options{Context: 2048, Parallel: 6, BatchSize: 64, CacheBytes: -1})
	defer e.Close()
	var mu sync.Mutex
	var steps []stepRecord
	e.onStep = func(r stepRecord) {
		mu.Lock()
		steps = append(steps, r)
		mu.Unlock()
	}
	// The decoders are sequences 0..3 (ids follow Generate's calls, and
	// each has a token before the long prompt is sent, which is 4).
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var started, ended sync.WaitGroup
	decErrs := make([]error, 4)
	for i := range 4 {
		started.Add(1)
		ended.Add(1)
		var once sync.Once
		go func() {
			defer ended.Done()
			req := Request{Prompt: tok.Encode(fmt.Sprintf("Story %d:", i), true, true), MaxTokens: 1900, IgnoreEOS: true}
			_, decErrs[i] = e.Generate(ctx, req, func(Token) bool { once.Do(started.Done); return true })
			once.Do(started.Done)
		}()
		waitGroup(t, &started, "decoder's first token")
	}
	type outcome struct {
		res *Result
		err error
	}
	done := make(chan outcome, 1)
	go func() {
		res, err := e.Generate(context.Background(), longReq, nil)
		done <- outcome{res, err}
	}()
	// A short request that arrives during the long prefill (sequence 5).
	for e.QueueDepth() > 0 || func() bool { e.mu.Lock(); defer e.mu.Unlock(); return len(e.running) < 5 }() {
		time.Sleep(time.Millisecond)
	}
	late := make(chan outcome, 1)
	go func() {
		res, err := e.Generate(context.Background(), Request{Prompt: tok.Encode("Late", true, true), MaxTokens: 2, IgnoreEOS: true}, nil)
		late <- outcome{res, err}
	}()
	var got, gotLate outcome
	for range 2 {
		select {
		case got = <-done:
		case gotLate = <-late:
		case <-time.After(2 * time.Minute):
			t.Fatal("the long prompt or the late short one did not finish within 2 minutes")
		}
	}
	if gotLate.err != nil {
		t.Fatal(gotLate.err)
	}
	cancel()
	waitGroup(t, &ended, "decoders' end after cancel")
	if got.err != nil {
		t.Fatal(got.err)
	}
	for i, err := range decErrs {
		if err != nil {
			t.Fatalf("decoder %d: %v", i, err)
		}
	}
	if fmt.Sprint(ids(got.res)) != fmt.Sprint(ids(alone)) {
		t.Errorf("the long prompt beside decoders gave %v, alone %v", ids(got.res), ids(alone))
	}

	mu.Lock()
	defer mu.Unlock()
	const longID, lateID = 4, 5
	next, chunks, minChunk := 0, 0, len(long)
	lateDone := -1 // the step that ran the late request's last prompt position
	for i, st := range steps {
		for _, c := range st.Chunks {
			if c.Seq == lateID && c.From+c.N == len(tok.Encode("Late", true, true)) {
				lateDone = i
			}
		}
		if st.Budget != e.stepBudget || st.Budget != m.Config().SpanCost(0, 64) {
			t.Fatalf("step %d: budget %v, want the cost of 64 prompt tokens from position 0", i, st.Budget)
		}
		var c *chunkRecord
		for j := range st.Chunks {
			if st.Chunks[j].Seq == longID {
				c = &st.Chunks[j]
			}
		}
		if c == nil {
			continue
		}
		chunks++
		if c.From != next {
			t.Fatalf("step %d: the long prompt's chunk starts at %d, want %d", i, c.From, next)
		}
		next += c.N
		if next < len(long) { // not the last (the remainder)
			minChunk = min(minChunk, c.N)
		}
		dec := slices.DeleteFunc(slices.Clone(st.Decode), func(id int) bool { return id == lateID })
		slices.Sort(dec)
		if !slices.Equal(dec, []int{0, 1, 2, 3}) {
			t.Errorf("step %d (long prompt at %d..%d): decoders %v, want one token of each of 0..3 (and of 5 once it decodes)", i, c.From, c.From+c.N-1, st.Decode)
		}
		if st.Cost > st.Budget && c.N > 1 {
			t.Errorf("step %d (long prompt at %d..%d): cost %.4g exceeds the budget %.4g", i, c.From, c.From+c.N-1, st.Cost, st.Budget)
		}
		// The chunk is the longest that fits: one more position would not.
		if next < len(long) && st.Cost+m.Config().TokenCost(next) <= st.Budget && len(st.Decode)+c.N < 64 && len(st.Chunks) == 1 {
			t.Errorf("step %d: the long prompt's chunk of %d at %d leaves room for more", i, c.N, c.From)
		}
	}
	if next != len(long) {
		t.Fatalf("the long prompt's chunks cover %d of its %d positions", next, len(long))
	}
	// The late short request did not wait for the whole long prefill: the
	// budget the deep chunks leave took its prompt.
	lastLong := slices.IndexFunc(steps, func(st stepRecord) bool {
		return slices.ContainsFunc(st.Chunks, func(c chunkRecord) bool { return c.Seq == longID && c.From+c.N == len(long) })
	})
	if lateDone < 0 || lateDone >= lastLong {
		t.Errorf("the late request's prompt ended in step %d, the long prompt in step %d: it waited for the long prefill", lateDone, lastLong)
	}
	// 60 tokens (64 less the 4 decoders) at first; at depth ~1,400 about
	// 23 fit.
	if minChunk > 30 || chunks < 25 {
		t.Errorf("chunks did not shrink with depth: %d chunks, the shortest (but the last) %d", chunks, minChunk)
	}
}

func waitGroup(t *testing.T, wg *sync.WaitGroup, what string) {
	t.Helper()
	c := make(chan struct{})
	go func() { wg.Wait(); close(c) }()
	select {
	case <-c:
	case <-time.After(2 * time.Minute):
		t.Fatalf("waiting for %s: nothing within 2 minutes", what)
	}
}
