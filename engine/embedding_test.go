package engine

import (
	"context"
	"math"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/stepflash/stepflash/internal/testmodels"
)

// TestEmbeddingPooling checks the pooled hidden states against each other
// through causality: a position's final hidden state depends only on the
// tokens up to it, so the mean over a prompt equals the mean of the last
// position's state of each of its prefixes, and cls pooling is the state
// of the one-token prefix. It also checks that pooling is unchanged when
// the prompt's blocks sit in the prefix cache (mean and cls must not reuse
// them: they read every position), when embeddings share batches with each
// other and with a generation, and that the generation's tokens are the
// same as alone.
func TestEmbeddingPooling(t *testing.T) {
	for _, file := range []string{"tiny-llama-F32.gguf", "tiny-qwen3moe-F32.gguf"} {
		t.Run(file, func(t *testing.T) {
			m, tok := openModel(t, testmodels.Path(t, file), 1)
			vocab := m.Config().NVocab
			r := rand.New(rand.NewPCG(7, 7))
			prompt := make([]int32, 70) // past two cache blocks
			for i := range prompt {
				prompt[i] = int32(r.IntN(vocab))
			}
			e := New(m, tok, Options{Context: 256, Parallel: 4})
			defer e.Close()
			embed := func(p []int32, pool Pooling) []float32 {
				t.Helper()
				res, err := e.Generate(context.Background(), Request{Prompt: p, Pooling: pool, MaxTokens: 5}, nil)
				if err != nil {
					t.Fatal(err)
				}
				if len(res.Tokens) != 0 || len(res.Embedding) != m.Config().NEmbd {
					t.Fatalf("an embedding request gave %d tokens and an embedding of %d values", len(res.Tokens), len(res.Embedding))
				}
				return res.Embedding
			}
			lasts := make([][]float32, len(prompt))
			for p := range prompt {
				lasts[p] = embed(prompt[:p+1], PoolLast)
			}
			wantMean := make([]float32, len(lasts[0]))
			for i := range wantMean {
				s := 0.0
				for _, l := range lasts {
					s += float64(l[i])
				}
				wantMean[i] = float32(s / float64(len(lasts)))
			}
			const tol = 2e-4
			closeTo(t, "mean", embed(prompt, PoolMean), wantMean, tol)
			closeTo(t, "cls", embed(prompt, PoolCLS), lasts[0], tol)
			closeTo(t, "last", embed(prompt, PoolLast), lasts[len(prompt)-1], tol)

			// The prompt is now in the prefix cache (every request above
			// left its blocks there): pooling must read the same states.
			gen := Request{Prompt: prompt[:40], MaxTokens: 12, IgnoreEOS: true}
			alone, err := e.Generate(context.Background(), gen, nil)
			if err != nil {
				t.Fatal(err)
			}
			if e.PrefixCacheStats().Hits == 0 {
				t.Fatal("the prefix cache was never hit: the reuse case is not exercised")
			}
			closeTo(t, "mean with the prompt cached", embed(prompt, PoolMean), wantMean, tol)

			// Several embeddings and a generation at once, batched together.
			var wg sync.WaitGroup
			got := make([][]float32, 6)
			var together *Result
			var genErr error
			wg.Add(1)
			go func() {
				defer wg.Done()
				together, genErr = e.Generate(context.Background(), gen, nil)
			}()
			for i := range got {
				wg.Add(1)
				go func() {
					defer wg.Done()
					pool := []Pooling{PoolMean, PoolCLS, PoolLast}[i%3]
					res, err := e.Generate(context.Background(), Request{Prompt: prompt, Pooling: pool}, nil)
					if err == nil {
						got[i] = res.Embedding
					}
				}()
			}
			wg.Wait()
			if genErr != nil {
				t.Fatal(genErr)
			}
			for i, g := range got {
				want := [][]float32{wantMean, lasts[0], lasts[len(prompt)-1]}[i%3]
				closeTo(t, "batched", g, want, tol)
			}
			if len(together.Tokens) != len(alone.Tokens) {
				t.Fatalf("the generation beside embeddings made %d tokens, alone %d", len(together.Tokens), len(alone.Tokens))
			}
			for i := range alone.Tokens {
				if together.Tokens[i].ID != alone.Tokens[i].ID {
					t.Fatalf("the generation beside embeddings differs at token %d: %d vs %d alone", i, together.Tokens[i].ID, alone.Tokens[i].ID)
				}
			}
		})
	}
}

// TestEmbeddingContext: an embedding may fill the whole context (it
// generates nothing), but not more.
func TestEmbeddingContext(t *testing.T) {
	m, tok := openModel(t, testmodels.Path(t, "tiny-llama-F32.gguf"), 1)
	e := New(m, tok, Options{Context: 64})
	defer e.Close()
	full := make([]int32, 64)
	if _, err := e.Generate(context.Background(), Request{Prompt: full, Pooling: PoolMean}, nil); err != nil {
		t.Fatalf("a prompt of the whole context: %v", err)
	}
	if _, err := e.Generate(context.Background(), Request{Prompt: make([]int32, 65), Pooling: PoolMean}, nil); err == nil {
		t.Fatal("a prompt past the context was embedded")
	}
	if _, err := e.Generate(context.Background(), Request{Prompt: full}, nil); err == nil {
		t.Fatal("a generation with no room for a token was accepted")
	}
}

func TestParsePooling(t *testing.T) {
	for _, p := range []Pooling{PoolMean, PoolCLS, PoolLast} {
		got, err := ParsePooling(p.String())
		if err != nil || got != p {
			t.Errorf("ParsePooling(%q) = %v, %v", p.String(), got, err)
		}
	}
	for _, bad := range []string{"", "none", "rank", "MEAN"} {
		if _, err := ParsePooling(bad); err == nil {
			t.Errorf("ParsePooling(%q) accepted", bad)
		}
	}
}

func closeTo(t *testing.T, what string, got, want []float32, tol float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d values, want %d", what, len(got), len(want))
	}
	worst := 0.0
	for i := range got {
		worst = max(worst, math.Abs(float64(got[i])-float64(want[i])))
	}
	if worst > tol {
		t.Fatalf("%s: max difference %.3g > %.3g", what, worst, tol)
	}
}
