package engine

import (
	"math"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/stepflash/stepflash/internal/synthmodels"
)

// TestBidirectionalSpans: a prompt range read with attention both ways
// (Gemma 3's image embeddings) is never split between forward passes: with
// a batch of 16 tokens, the chunk before it stops at its start and the
// range goes in one pass of its 40 positions; the answer equals the one
// computed in a single pass, and differs from reading the range causally.
// Malformed ranges are errors.
func TestBidirectionalSpans(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tiny-gemma3-F32.gguf")
	synthmodels.Gemma3(t, path)
	m, tok := openModel(t, path, 2)
	d := m.Config().NEmbd
	head := tok.Encode("User: look at this", false, true)
	tail := tok.Encode(" and describe it.", false, true)
	r := rand.New(rand.NewPCG(7, 7))
	img := make([][]float32, 40)
	for i := range img {
		img[i] = make([]float32, d)
		for j := range img[i] {
			img[i][j] = float32(r.NormFloat64())
		}
	}
	span := Span{Start: len(head), End: len(head) + len(img)}
	req := func(bidi bool) Request {
		q := Request{Prompt: slices.Concat(head, make([]int32, len(img)), tail), Embeds: slices.Concat(make([][]float32, len(head)), img),
			MaxTokens: 6, IgnoreEOS: true, TopLogprobs: 5, CacheKeys: []CacheKey{{Start: span.Start, End: span.End, Key: "img"}}}
		if bidi {
			q.Bidirectional = []Span{span}
		}
		return q
	}
	one := New(m, tok, Options{Context: 256, CacheBytes: -1})
	defer one.Close()
	small := New(m, tok, Options{Context: 256, BatchSize: 16, CacheBytes: -1})
	defer small.Close()
	var mu sync.Mutex
	var chunks []chunkRecord
	small.onStep = func(r stepRecord) {
		mu.Lock()
		chunks = append(chunks, r.Chunks...)
		mu.Unlock()
	}
	want := mustGenerate(t, one, req(true))
	got := mustGenerate(t, small, req(true))
	for _, c := range chunks {
		if c.From < span.End && c.From+c.N > span.Start && (c.From > span.Start || c.From+c.N < span.End) {
			t.Errorf("chunk [%d, %d) splits the bidirectional range [%d, %d)", c.From, c.From+c.N, span.Start, span.End)
		}
	}
	if len(chunks) < 3 {
		t.Errorf("chunks %v: want the prompt of %d in at least 3 passes of at most 16 (but the range)", chunks, len(head)+len(img)+len(tail))
	}
	worst := 0.0
	for i := range want.Tokens {
		if i >= len(got.Tokens) || got.Tokens[i].ID != want.Tokens[i].ID {
			t.Fatalf("in passes of 16: %v; in one pass: %v", ids(got), ids(want))
		}
		for j, tl := range want.Tokens[i].Top {
			worst = max(worst, math.Abs(float64(tl.Logprob-got.Tokens[i].Top[j].Logprob)))
		}
	}
	if worst > 1e-5 {
		t.Errorf("log-probs in passes of 16 differ from one pass by %.3g", worst)
	}
	causal := mustGenerate(t, one, req(false))
	diff := 0.0
	for j, tl := range want.Tokens[0].Top {
		diff = max(diff, math.Abs(float64(tl.Logprob-causal.Tokens[0].Top[j].Logprob)))
	}
	if diff < 1e-4 {
		t.Errorf("reading the range causally changes the first log-probs by %.3g: the range has no effect", diff)
	}
	for _, tc := range []struct {
		name  string
		spans []Span
	}{
		{"empty", []Span{{3, 3}}},
		{"past the prompt", []Span{{span.Start, 500}}},
		{"overlapping", []Span{{2, 10}, {9, 12}}},
		{"negative", []Span{{-1, 4}}},
	} {
		q := req(true)
		q.Bidirectional = tc.spans
		if _, err := one.Generate(t.Context(), q, nil); err == nil || !strings.Contains(err.Error(), "bidirectional range") {
			t.Errorf("%s: err %v, want one naming the bidirectional range", tc.name, err)
		}
	}
}
