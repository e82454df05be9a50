package engine

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/stepflash/stepflash/internal/testmodels"
	"github.com/stepflash/stepflash/model"
	"github.com/stepflash/stepflash/tokenizer"
)

func openStories(t *testing.T) (model.Model, *tokenizer.Tokenizer) {
	t.Helper()
	return openModel(t, testmodels.Path(t, "stories260K.gguf"), 2)
}

// openModel loads a GGUF model and its tokenizer, closed when the test ends.
func openModel(t *testing.T, path string, threads int) (model.Model, *tokenizer.Tokenizer) {
	t.Helper()
	m, f, err := model.Open(path, model.Options{Threads: threads})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close(); f.Close() })
	tok, err := tokenizer.FromGGUF(f)
	if err != nil {
		t.Fatal(err)
	}
	return m, tok
}

func ids(r *Result) []int32 {
	var out []int32
	for _, t := range r.Tokens {
		if t.ID >= 0 {
			out = append(out, t.ID)
		}
	}
	return out
}

// TestContinuousBatching checks that requests decoded together in one batch
// produce exactly what each produces alone, including sampled ones.
func TestContinuousBatching(t *testing.T) {
	m, tok := openStories(t)
	prompts := []string{"Once upon a time", "The little dog", "Lily wanted to play with her ball in the park, but", "One day"}
	reqs := make([]Request, len(prompts))
	for i, p := range prompts {
		reqs[i] = Request{Prompt: tok.Encode(p, true, true), MaxTokens: 24 + 8*i, IgnoreEOS: true, TopLogprobs: 2}
		if i%2 == 1 {
			reqs[i].Sampling = SamplerParams{Temperature: 0.9, TopK: 40, TopP: 0.95, Seed: uint64(i)}
		}
	}
	solo := New(m, tok, Options{Context: 256, Parallel: 1, CacheBytes: -1})
	want := make([][]int32, len(reqs))
	for i, r := range reqs {
		res, err := solo.Generate(context.Background(), r, nil)
		if err != nil {
			t.Fatal(err)
		}
		want[i] = ids(res)
	}
	solo.Close()

	e := New(m, tok, Options{Context: 256, Parallel: 4, BatchSize: 16, CacheBytes: -1})
	defer e.Close()
	var wg sync.WaitGroup
	got := make([][]int32, len(reqs))
	streamed := make([][]int32, len(reqs))
	errs := make([]error, len(reqs))
	for i := range reqs {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			res, err := e.Generate(context.Background(), reqs[i], func(tk Token) bool {
				if tk.ID >= 0 {
					streamed[i] = append(streamed[i], tk.ID)
				}
				return true
			})
			if err != nil {
				errs[i] = err
				return
			}
			got[i] = ids(res)
		}(i)
	}
	wg.Wait()
	for i := range reqs {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		if fmt.Sprint(got[i]) != fmt.Sprint(want[i]) || fmt.Sprint(streamed[i]) != fmt.Sprint(want[i]) {
			t.Errorf("request %d batched: %v\nstreamed %v\nalone: %v", i, got[i], streamed[i], want[i])
		}
	}
}

// TestPrefixReuse checks that a follow-up turn reuses the cached prefix and
// generates the same tokens as without reuse.
func TestPrefixReuse(t *testing.T) {
	m, tok := openStories(t)
	e := New(m, tok, Options{Context: 512, Parallel: 1})
	defer e.Close()
	first := Request{Prompt: tok.Encode("Once upon a time", true, true), MaxTokens: 40, IgnoreEOS: true}
	r1, err := e.Generate(context.Background(), first, nil)
	if err != nil {
		t.Fatal(err)
	}
	if r1.CachedTokens != 0 {
		t.Fatalf("first request reports %d cached tokens", r1.CachedTokens)
	}
	follow := append(append(append([]int32{}, first.Prompt...), ids(r1)...), tok.Encode(" Then", false, false)...)
	second := Request{Prompt: follow, MaxTokens: 20, IgnoreEOS: true}
	r2, err := e.Generate(context.Background(), second, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Every token with a KV entry is reused: the prompt and all generated tokens but the last.
	if want := len(first.Prompt) + len(r1.Tokens) - 1; r2.CachedTokens != want {
		t.Fatalf("cached tokens %d, want %d", r2.CachedTokens, want)
	}
	fresh := New(m, tok, Options{Context: 512, Parallel: 1, CacheBytes: -1})
	defer fresh.Close()
	r3, err := fresh.Generate(context.Background(), second, nil)
	if err != nil {
		t.Fatal(err)
	}
	if r3.CachedTokens != 0 || fmt.Sprint(ids(r2)) != fmt.Sprint(ids(r3)) {
		t.Fatalf("with reuse %v (cached %d)\nwithout %v (cached %d)", ids(r2), r2.CachedTokens, ids(r3), r3.CachedTokens)
	}
}

func TestCancelAndOverload(t *testing.T) {
	m, tok := openStories(t)
	e := New(m, tok, Options{Context: 512, Parallel: 1, QueueLimit: 1})
	defer e.Close()
	prompt := tok.Encode("Once upon a time", true, true)

	// A consumer that stops after 3 tokens ends the request.
	n := 0
	res, err := e.Generate(context.Background(), Request{Prompt: prompt, MaxTokens: 200, IgnoreEOS: true}, func(Token) bool { n++; return n < 3 })
	if err != nil {
		t.Fatal(err)
	}
	if res.FinishReason != "cancelled" || len(res.Tokens) > 5 {
		t.Fatalf("finish %q after %d tokens", res.FinishReason, len(res.Tokens))
	}

	// Context cancellation frees the slot for the next request.
	ctx, cancel := context.WithCancel(context.Background())
	started := make(chan struct{})
	var once sync.Once
	done := make(chan error)
	go func() {
		_, err := e.Generate(ctx, Request{Prompt: prompt, MaxTokens: 400, IgnoreEOS: true}, func(Token) bool {
			once.Do(func() { close(started) })
			return true
		})
		done <- err
	}()
	<-started
	// While it runs, one request may wait; a second waiting one is refused.
	waitErr := make(chan error)
	go func() {
		_, err := e.Generate(context.Background(), Request{Prompt: prompt, MaxTokens: 5, IgnoreEOS: true}, nil)
		waitErr <- err
	}()
	for e.QueueDepth() == 0 {
	}
	if _, err := e.Generate(context.Background(), Request{Prompt: prompt, MaxTokens: 5}, nil); !errors.Is(err, ErrOverloaded) {
		t.Fatalf("third request: %v, want ErrOverloaded", err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("cancelled request: %v", err)
	}
	if err := <-waitErr; err != nil {
		t.Fatalf("queued request after cancel: %v", err)
	}

	if _, err := e.Generate(context.Background(), Request{Prompt: make([]int32, 600)}, nil); !errors.Is(err, ErrContextLength) {
		t.Fatalf("long prompt: %v", err)
	}
}

// TestLogprobsOnRequest: log-probabilities are computed only when asked for.
func TestLogprobsOnRequest(t *testing.T) {
	m, tok := openStories(t)
	e := New(m, tok, Options{Context: 128})
	defer e.Close()
	prompt := tok.Encode("Once upon a time", true, true)
	for _, want := range []bool{false, true} {
		res, err := e.Generate(context.Background(), Request{Prompt: prompt, MaxTokens: 8, IgnoreEOS: true, Logprobs: want}, nil)
		if err != nil {
			t.Fatal(err)
		}
		for i, tk := range res.Tokens {
			if got := tk.Logprob != 0; got != want || tk.Logprob > 0 {
				t.Fatalf("Logprobs=%v: token %d has logprob %v", want, i, tk.Logprob)
			}
		}
	}
}
