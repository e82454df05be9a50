package engine

import (
	"context"
	"fmt"
	"math"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/stepflash/stepflash/internal/testmodels"
)

// drawnDraft is drawn (sampler_exact_test.go) for SampleDraft with draft d:
// the exact probability of each token it returns, read over its uniform.
func drawnDraft(s *Sampler, logits []float32, d int32) map[int32]float64 {
	return drawnBy(s, func() int32 { return s.SampleDraft(logits, d) })
}

// TestSampleDraftExact checks the speculative sampling rule exactly: for
// every draft token (likely, unlikely, filtered out, outside the
// vocabulary) and every sampler pipeline, the token SampleDraft returns is
// distributed as Sample's, to 1e-9. Accepting a draft more often than p
// (say, on a rejection drawing from p with the draft left in) fails it.
func TestSampleDraftExact(t *testing.T) {
	ln := func(x float64) float32 { return float32(math.Log(x)) }
	p := []float32{ln(0.1), ln(0.4), ln(0.2), ln(0.3), ln(0.05)}
	cases := []struct {
		name    string
		params  SamplerParams
		history []int32
	}{
		{"temperature 1", SamplerParams{Temperature: 1}, nil},
		{"temperature 0.7", SamplerParams{Temperature: 0.7}, nil},
		{"top-k 3", SamplerParams{Temperature: 1, TopK: 3}, nil},
		{"top-p 0.8", SamplerParams{Temperature: 1.3, TopP: 0.8}, nil},
		{"min-p 0.3", SamplerParams{Temperature: 1, MinP: 0.3}, nil},
		{"penalties and bias", SamplerParams{Temperature: 1, PresencePenalty: 0.5, FrequencyPenalty: 0.3, LogitBias: map[int32]float32{4: 1.5}}, []int32{1, 1, 3}},
	}
	for _, tc := range cases {
		for _, d := range []int32{0, 1, 2, 3, 4, 99} {
			t.Run(fmt.Sprintf("%s/draft %d", tc.name, d), func(t *testing.T) {
				plain := NewSampler(tc.params)
				spec := NewSampler(tc.params)
				for _, h := range tc.history {
					plain.Accept(h)
					spec.Accept(h)
				}
				want := drawn(plain, p)
				got := drawnDraft(spec, p, d)
				for id := int32(0); id < 100; id++ {
					if math.Abs(got[id]-want[id]) > 1e-9 {
						t.Fatalf("SampleDraft draws %s, Sample %s", fmtDist(got), fmtDist(want))
					}
				}
			})
		}
	}
}

func TestNgramDraft(t *testing.T) {
	cases := []struct {
		toks       []int32
		nMin, nMax int
		k          int
		want       []int32
	}{
		{[]int32{1, 2, 3, 9, 1, 2}, 1, 3, 3, []int32{3, 9, 1}},          // 2-gram "1 2" seen before
		{[]int32{5, 1, 2, 7, 4, 1, 2}, 1, 3, 2, []int32{7, 4}},          // the latest occurrence
		{[]int32{1, 2, 1, 2, 1, 2}, 1, 3, 5, []int32{1, 2, 1, 2, 1}},    // runs into its own proposal
		{[]int32{7, 7}, 1, 3, 4, []int32{7, 7, 7, 7}},                   // one token repeated
		{[]int32{1, 2, 3, 4}, 1, 3, 4, nil},                             // nothing repeats
		{[]int32{1, 2, 9, 3, 2}, 2, 3, 4, nil},                          // only a 1-gram repeats, min 2
		{[]int32{1, 2, 3, 8, 2, 3, 9, 1, 2, 3}, 1, 3, 2, []int32{8, 2}}, // the 3-gram wins over the later 2-gram
		{[]int32{4}, 1, 3, 4, nil},
		{[]int32{4, 4, 4}, 1, 3, 0, nil},
	}
	for _, tc := range cases {
		if got := ngramDraft(tc.toks, tc.nMin, tc.nMax, tc.k); !slices.Equal(got, tc.want) {
			t.Errorf("ngramDraft(%v, %d, %d, %d) = %v, want %v", tc.toks, tc.nMin, tc.nMax, tc.k, got, tc.want)
		}
	}
}

// sharedModels lists every shared text model: the tiny ones, the trained
// ones and the vision pairs' text halves (projectors are not text models).
func sharedModels(t *testing.T) []string {
	dir := testmodels.Models(t)
	var out []string
	for _, pat := range []string{"*.gguf", "trained/*.gguf", "trained/vision/*.gguf"} {
		names, err := filepath.Glob(filepath.Join(dir, pat))
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range names {
			if !strings.Contains(filepath.Base(n), "mmproj") {
				out = append(out, n)
			}
		}
	}
	if len(out) < 20 {
		t.Fatalf("found %d shared models in %s", len(out), dir)
	}
	return out
}

// specRequests are the requests the greedy-exactness test runs: a
// repeating prompt (n-gram drafts are proposed at once), plain text, and
// greedy with penalties, with log-probabilities to compare too; and one
// sampled request that only shares the batch.
func specRequests(enc func(string) []int32) []Request {
	rep := enc("one two three four five, one two three four five, one two three four five, one two")
	return []Request{
		{Prompt: rep, MaxTokens: 40, IgnoreEOS: true, TopLogprobs: 2},
		{Prompt: enc("Once upon a time there was a little"), MaxTokens: 33, IgnoreEOS: true, Logprobs: true},
		{Prompt: enc("The numbers: 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12,"), MaxTokens: 29, IgnoreEOS: true,
			Sampling: SamplerParams{PresencePenalty: 0.3, FrequencyPenalty: 0.2}},
		{Prompt: rep, MaxTokens: 24, IgnoreEOS: true, Sampling: SamplerParams{Temperature: 0.9, Seed: 7}},
	}
}

// generateAll runs reqs on e together (one goroutine each) or one after
// another.
func generateAll(t *testing.T, e *Engine, reqs []Request, together bool) []*Result {
	t.Helper()
	out := make([]*Result, len(reqs))
	errs := make([]error, len(reqs))
	var wg sync.WaitGroup
	for i, r := range reqs {
		run := func() { out[i], errs[i] = e.Generate(context.Background(), r, nil) }
		if together {
			wg.Go(run)
		} else {
			run()
		}
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
	}
	return out
}

// sameTokens reports where two results' tokens (ids and log-probabilities)
// first differ, or "" when they are the same.
func sameTokens(a, b *Result) string {
	if len(a.Tokens) != len(b.Tokens) {
		return fmt.Sprintf("%d tokens, want %d: %v vs %v", len(a.Tokens), len(b.Tokens), ids(a), ids(b))
	}
	for i := range a.Tokens {
		x, y := a.Tokens[i], b.Tokens[i]
		if x.ID != y.ID || x.Logprob != y.Logprob || !slices.Equal(x.Top, y.Top) {
			return fmt.Sprintf("token %d is %d (logprob %g), want %d (%g): %v vs %v", i, x.ID, x.Logprob, y.ID, y.Logprob, ids(a), ids(b))
		}
	}
	return ""
}

// TestSpeculativeGreedyExact: on every shared model, greedy decoding with
// n-gram speculation emits exactly plain greedy's tokens and
// log-probabilities, alone and in a batch beside other sequences (one of
// them sampled); and the engine's counters are the sum of what the
// responses report.
func TestSpeculativeGreedyExact(t *testing.T) {
	var drafted, accepted int
	for _, path := range sharedModels(t) {
		name, _ := filepath.Rel(testmodels.Models(t), path)
		t.Run(name, func(t *testing.T) {
			m, tok := openModel(t, path, 2)
			reqs := specRequests(func(s string) []int32 { return tok.Encode(s, true, false) })
			plain := New(m, tok, Options{Context: 256, Parallel: 4})
			defer plain.Close()
			want := generateAll(t, plain, reqs, false)
			for _, together := range []bool{false, true} {
				spec := New(m, tok, Options{Context: 256, Parallel: 4, Spec: SpecOptions{Mode: SpecNgram, K: 4}})
				got := generateAll(t, spec, reqs, together)
				spec.Close()
				var d, a int
				for i, r := range got {
					d += r.DraftTokens
					a += r.AcceptedTokens
					if reqs[i].Sampling.Temperature > 0 {
						continue
					}
					if diff := sameTokens(r, want[i]); diff != "" {
						t.Fatalf("together %v, request %d: %s", together, i, diff)
					}
					if r.Decoded != len(r.Tokens)-1 {
						t.Errorf("request %d: Decoded %d for %d tokens", i, r.Decoded, len(r.Tokens))
					}
				}
				if st := spec.SpecStats(); st.Drafted != int64(d) || st.Accepted != int64(a) {
					t.Errorf("engine counters %d drafted, %d accepted; the results report %d, %d", st.Drafted, st.Accepted, d, a)
				}
				if d == 0 || a > d {
					t.Errorf("%d draft tokens, %d accepted", d, a)
				}
				drafted += d
				accepted += a
			}
		})
	}
	t.Logf("all models: %d draft tokens, %d accepted (%.0f%%)", drafted, accepted, 100*float64(accepted)/float64(max(drafted, 1)))
	if accepted == 0 || accepted == drafted {
		t.Errorf("%d of %d drafts accepted: the test must see both outcomes", accepted, drafted)
	}
}

// chiSquare2 is the two-sample chi-square statistic of two count tables
// over the same categories, categories with fewer than 50 in all pooled,
// and its degrees of freedom.
func chiSquare2(a, b map[string]int) (float64, int) {
	na, nb := 0, 0
	for _, v := range a {
		na += v
	}
	for _, v := range b {
		nb += v
	}
	keys := map[string]bool{}
	for k := range a {
		keys[k] = true
	}
	for k := range b {
		keys[k] = true
	}
	var cats [][2]int
	var rest [2]int
	for k := range keys {
		if a[k]+b[k] < 50 {
			rest[0] += a[k]
			rest[1] += b[k]
			continue
		}
		cats = append(cats, [2]int{a[k], b[k]})
	}
	if rest[0]+rest[1] > 0 {
		cats = append(cats, rest)
	}
	chi := 0.0
	for _, c := range cats {
		tot := float64(c[0] + c[1])
		ea := tot * float64(na) / float64(na+nb)
		eb := tot * float64(nb) / float64(na+nb)
		chi += (float64(c[0])-ea)*(float64(c[0])-ea)/ea + (float64(c[1])-eb)*(float64(c[1])-eb)/eb
	}
	return chi, len(cats) - 1
}

// TestSpeculativeSamplingDistribution samples the first tokens after a
// repeating prompt on stories260K (a real model) with many seeds, with and
// without n-gram speculation, and compares the joint distribution of the
// 2nd generated token (drawn from a verified draft row when the first
// token repeats an n-gram of the prompt) with a two-sample chi-square test
// at p < 1e-4. The drafts are accepted about 60% of the time here; a rule
// that accepts them more often than p says (always: chi-square 448 on 43
// degrees of freedom, bound 87; p(x) and then a resample from all of p:
// 185 on 44, bound 88) moves the distribution far past the bound.
func TestSpeculativeSamplingDistribution(t *testing.T) {
	if testing.Short() {
		t.Skip("many generations")
	}
	m, tok := openStories(t)
	prompt := tok.Encode("The dog ran. The dog ran. The dog ran. The dog ran. The dog ran.", true, false)
	const n = 6000
	run := func(spec SpecOptions) (map[string]int, SpecStats) {
		e := New(m, tok, Options{Context: 128, Parallel: 16, Spec: spec})
		defer e.Close()
		counts := map[string]int{}
		var mu sync.Mutex
		var wg sync.WaitGroup
		sem := make(chan struct{}, 16)
		for seed := range n {
			sem <- struct{}{}
			wg.Go(func() {
				defer func() { <-sem }()
				r, err := e.Generate(context.Background(), Request{Prompt: prompt, MaxTokens: 3, IgnoreEOS: true,
					Sampling: SamplerParams{Temperature: 1.5, TopK: 40, Seed: uint64(seed) + 1000*uint64(spec.Mode)}}, nil)
				if err != nil {
					t.Error(err)
					return
				}
				g := ids(r)
				mu.Lock()
				counts[fmt.Sprint(g[1])]++
				mu.Unlock()
			})
		}
		wg.Wait()
		return counts, e.SpecStats()
	}
	plain, _ := run(SpecOptions{})
	spec, st := run(SpecOptions{Mode: SpecNgram, K: 4})
	chi, df := chiSquare2(plain, spec)
	// The chi-square quantile at 1 - 1e-4 (Wilson-Hilferty).
	z := 3.719
	crit := float64(df) * math.Pow(1-2/(9*float64(df))+z*math.Sqrt(2/(9*float64(df))), 3)
	top := func(c map[string]int) string {
		var ks []string
		for k := range c {
			ks = append(ks, k)
		}
		sort.Slice(ks, func(i, j int) bool { return c[ks[i]] > c[ks[j]] })
		var b strings.Builder
		for _, k := range ks[:min(5, len(ks))] {
			fmt.Fprintf(&b, "%s:%d ", k, c[k])
		}
		return b.String()
	}
	t.Logf("drafted %d, accepted %d (%.0f%%); chi-square %.1f on %d df, bound %.1f; plain %s; spec %s",
		st.Drafted, st.Accepted, 100*float64(st.Accepted)/float64(max(st.Drafted, 1)), chi, df, crit, top(plain), top(spec))
	if chi > crit {
		t.Fatalf("the sampled distribution moved under speculation: chi-square %.1f on %d degrees of freedom > %.1f", chi, df, crit)
	}
	if st.Accepted < n/20 || st.Accepted == st.Drafted {
		t.Fatalf("%d of %d drafts accepted: the test needs many drafts, both accepted and rejected", st.Accepted, st.Drafted)
	}
}

// TestSpeculativeDraftModel: a draft model (another quantisation of the
// same model, and the trained flash model drafting for advisor) leaves
// greedy output exactly as plain greedy's, alone and in a batch; a draft
// model with another vocabulary is refused.
func TestSpeculativeDraftModel(t *testing.T) {
	dir := testmodels.Models(t)
	pairs := []struct{ target, draft string }{
		{"tiny-llama-F32.gguf", "tiny-llama-Q4_0.gguf"},
		{"tiny-qwen3-F32.gguf", "tiny-qwen3-Q4_K_M.gguf"},
		{"tiny-qwen3moe-Q8_0.gguf", "tiny-qwen3moe-Q4_K_M.gguf"},
		{"trained/advisor-F32.gguf", "trained/flash-Q8_0.gguf"},
	}
	for _, p := range pairs {
		t.Run(p.target+"+"+p.draft, func(t *testing.T) {
			m, tok := openModel(t, filepath.Join(dir, p.target), 2)
			dm, dtok := openModel(t, filepath.Join(dir, p.draft), 2)
			if err := CheckDraftVocab(tok, dtok); err != nil {
				t.Fatal(err)
			}
			reqs := specRequests(func(s string) []int32 { return tok.Encode(s, true, false) })
			plain := New(m, tok, Options{Context: 256, Parallel: 4})
			defer plain.Close()
			want := generateAll(t, plain, reqs, false)
			for _, together := range []bool{false, true} {
				spec := New(m, tok, Options{Context: 256, Parallel: 4, Spec: SpecOptions{Mode: SpecDraft, K: 4, Draft: dm}})
				got := generateAll(t, spec, reqs, together)
				spec.Close()
				d, a := 0, 0
				for i, r := range got {
					d += r.DraftTokens
					a += r.AcceptedTokens
					if reqs[i].Sampling.Temperature > 0 {
						continue
					}
					if diff := sameTokens(r, want[i]); diff != "" {
						t.Fatalf("together %v, request %d: %s", together, i, diff)
					}
				}
				if st := spec.SpecStats(); st.Drafted != int64(d) || st.Accepted != int64(a) {
					t.Errorf("engine counters %d/%d, results %d/%d", st.Drafted, st.Accepted, d, a)
				}
				t.Logf("together %v: %d drafted, %d accepted", together, d, a)
				if a == 0 {
					t.Errorf("no draft accepted (%d drafted)", d)
				}
			}
		})
	}
	_, stories := openStories(t)
	_, llama := openModel(t, filepath.Join(dir, "tiny-llama-F32.gguf"), 1)
	if err := CheckDraftVocab(llama, stories); err == nil || !strings.Contains(err.Error(), "vocabulary") {
		t.Errorf("stories260K drafting for tiny-llama: %v, want a vocabulary mismatch", err)
	}
}

// TestSpeculativeEdges: with n-gram speculation, thinking budgets (the
// forced hand-over lands between verified rows), every max_tokens near a
// step's draft count, and a JSON-constrained request (which does not
// speculate) all emit plain greedy's tokens and finish reasons; and a
// request that reuses, through the prefix cache, blocks a speculating
// sequence committed (its generated positions included) gets plain's
// tokens too, so no rejected draft's keys and values were committed.
func TestSpeculativeEdges(t *testing.T) {
	m, tok := openModel(t, thinkingModel(t), 2)
	rep := "one two three four five, one two three four five, one two three four five, one two"
	var reqs []Request
	for _, budget := range []int{0, 3, 7, 12} {
		reqs = append(reqs, Request{Prompt: tok.Encode(rep+"<think>", false, true), MaxTokens: 30, IgnoreEOS: true, Thinking: thinkingFor(tok, budget)})
	}
	for n := 1; n <= 7; n++ {
		reqs = append(reqs, Request{Prompt: tok.Encode(rep, true, false), MaxTokens: n, IgnoreEOS: true, Logprobs: true})
	}
	reqs = append(reqs, Request{Prompt: tok.Encode(rep, true, false), MaxTokens: 20, JSONObject: true})
	plain := New(m, tok, Options{Context: 256, Parallel: 4})
	defer plain.Close()
	spec := New(m, tok, Options{Context: 256, Parallel: 4, Spec: SpecOptions{Mode: SpecNgram, K: 5}})
	defer spec.Close()
	want := generateAll(t, plain, reqs, false)
	for _, together := range []bool{false, true} {
		got := generateAll(t, spec, reqs, together)
		for i, r := range got {
			if diff := sameTokens(r, want[i]); diff != "" || r.FinishReason != want[i].FinishReason || r.ReasoningTokens != want[i].ReasoningTokens {
				t.Fatalf("together %v, request %d: %s; finish %q (want %q), reasoning %d (want %d)", together, i, diff, r.FinishReason, want[i].FinishReason, r.ReasoningTokens, want[i].ReasoningTokens)
			}
			if reqs[i].JSONObject && r.DraftTokens != 0 {
				t.Errorf("a JSON-constrained request speculated %d tokens", r.DraftTokens)
			}
		}
		if st := spec.SpecStats(); st.Accepted == 0 {
			t.Fatalf("no draft accepted: %+v", st)
		}
	}
	// The longest run's prompt and generated tokens, as a new prompt: its
	// blocks come from the prefix cache.
	long := Request{Prompt: tok.Encode(rep, true, false), MaxTokens: 70, IgnoreEOS: true}
	first, err := spec.Generate(context.Background(), long, nil)
	if err != nil {
		t.Fatal(err)
	}
	if first.AcceptedTokens == 0 {
		t.Fatalf("no draft accepted: %d drafted", first.DraftTokens)
	}
	again := Request{Prompt: append(slices.Clone(long.Prompt), ids(first)...), MaxTokens: 16, IgnoreEOS: true, Logprobs: true}
	a, err := spec.Generate(context.Background(), again, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := plain.Generate(context.Background(), again, nil)
	if err != nil {
		t.Fatal(err)
	}
	if a.CachedTokens <= len(long.Prompt)+DefaultBlockSize {
		t.Fatalf("%d positions reused of %d prompt and %d generated", a.CachedTokens, len(long.Prompt), len(first.Tokens))
	}
	if diff := sameTokens(a, b); diff != "" {
		t.Fatalf("after reusing a speculating sequence's blocks: %s", diff)
	}
}
