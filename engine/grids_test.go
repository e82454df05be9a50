package engine

import (
	"fmt"
	"math"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stepflash/stepflash/internal/synthmodels"
	"github.com/stepflash/stepflash/internal/testmodels"
)

// TestRopePos: the M-RoPE positions of a sequence's cache positions around
// image grids, as libmtmd lays them out (temporal, height, width, extra),
// worked out by hand.
func TestRopePos(t *testing.T) {
	s := &sequence{req: Request{Grids: []Grid{{Start: 3, Rows: 2, Cols: 3}, {Start: 11, Rows: 4, Cols: 1}}}}
	cases := []struct {
		p    int
		want [4]int
	}{
		{0, [4]int{0, 0, 0, 0}},
		{2, [4]int{2, 2, 2, 0}},
		{3, [4]int{3, 3, 3, 0}}, // first grid, row 0 col 0
		{5, [4]int{3, 3, 5, 0}}, // row 0 col 2
		{7, [4]int{3, 4, 4, 0}}, // row 1 col 1
		{8, [4]int{3, 4, 5, 0}}, // last of the grid
		{9, [4]int{6, 6, 6, 0}}, // after it: 3 + max(2, 3)
		{10, [4]int{7, 7, 7, 0}},
		{11, [4]int{8, 8, 8, 0}},  // second grid (4x1) from temporal 8
		{14, [4]int{8, 11, 8, 0}}, // its row 3
		{15, [4]int{12, 12, 12, 0}},
		{40, [4]int{37, 37, 37, 0}}, // shifted by (6-3) + (4-4)
	}
	for _, c := range cases {
		if got := s.ropePos(c.p); got != c.want {
			t.Errorf("position %d: %v, want %v", c.p, got, c.want)
		}
	}
}

// TestGrids: a prompt with a 3x4 grid of image embeddings on the synthetic
// qwen2vl model gives the same answer in passes of 5 tokens (the grid
// split across passes, the generated tokens after it) as in one pass, a
// different one from reading the grid with 1-D positions (also when the
// prefix cache holds the grid request's blocks), and malformed or unkeyed
// grids, or a grid for a model without M-RoPE, are errors.
func TestGrids(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tiny-qwen2vl-F32.gguf")
	synthmodels.Qwen2VL(t, path)
	m, tok := openModel(t, path, 2)
	d := m.Config().NEmbd
	head := tok.Encode("User: look at this", false, true)
	tail := tok.Encode(" and describe it.", false, true)
	r := rand.New(rand.NewPCG(8, 8))
	img := make([][]float32, 12)
	for i := range img {
		img[i] = make([]float32, d)
		for j := range img[i] {
			img[i][j] = float32(r.NormFloat64())
		}
	}
	grid := Grid{Start: len(head), Rows: 3, Cols: 4}
	req := func(grids ...Grid) Request {
		return Request{Prompt: slices.Concat(head, make([]int32, len(img)), tail), Embeds: slices.Concat(make([][]float32, len(head)), img),
			MaxTokens: 6, IgnoreEOS: true, TopLogprobs: 5, CacheKeys: []CacheKey{{Start: grid.Start, End: grid.end(), Key: "img"}}, Grids: grids}
	}
	one := New(m, tok, Options{Context: 256, CacheBytes: -1})
	defer one.Close()
	small := New(m, tok, Options{Context: 256, BatchSize: 5, CacheBytes: -1})
	defer small.Close()
	want := mustGenerate(t, one, req(grid))
	got := mustGenerate(t, small, req(grid))
	worst := 0.0
	for i := range want.Tokens {
		if i >= len(got.Tokens) || got.Tokens[i].ID != want.Tokens[i].ID {
			t.Fatalf("in passes of 5: %v; in one pass: %v", ids(got), ids(want))
		}
		for j, tl := range want.Tokens[i].Top {
			worst = max(worst, math.Abs(float64(tl.Logprob-got.Tokens[i].Top[j].Logprob)))
		}
	}
	if worst > 1e-5 {
		t.Errorf("log-probs in passes of 5 differ from one pass by %.3g", worst)
	}
	flat := mustGenerate(t, one, req())
	diff := 0.0
	for j, tl := range want.Tokens[0].Top {
		diff = max(diff, math.Abs(float64(tl.Logprob-flat.Tokens[0].Top[j].Logprob)))
	}
	if diff < 1e-3 {
		t.Errorf("reading the grid with 1-D positions changes the first log-probs by %.3g: the grid has no effect", diff)
	}
	// With the prefix cache on, the same prompt read without the grid
	// reuses nothing computed with it (the grid is in the image's key).
	cached := New(m, tok, Options{Context: 256})
	defer cached.Close()
	mustGenerate(t, cached, req(grid))
	if again := mustGenerate(t, cached, req()); fmt.Sprint(ids(again)) != fmt.Sprint(ids(flat)) {
		t.Errorf("after the grid request, the same prompt without the grid gives %v; fresh, %v", ids(again), ids(flat))
	}
	if again := mustGenerate(t, cached, req(grid)); fmt.Sprint(ids(again)) != fmt.Sprint(ids(want)) {
		t.Errorf("the grid request again, from the cache: %v; fresh, %v", ids(again), ids(want))
	}
	unkeyed := req(grid)
	unkeyed.CacheKeys = nil
	unkeyed.Embeds = nil
	if _, err := one.Generate(t.Context(), unkeyed, nil); err == nil || !strings.Contains(err.Error(), "no cache key") {
		t.Errorf("a grid with no cache key: err %v, want one saying so", err)
	}
	for _, tc := range []struct {
		name  string
		grids []Grid
	}{
		{"empty", []Grid{{3, 0, 4}}},
		{"past the prompt", []Grid{{grid.Start, 30, 30}}},
		{"overlapping", []Grid{{2, 2, 2}, {5, 1, 2}}},
		{"negative", []Grid{{-1, 1, 1}}},
		{"huge", []Grid{{0, 1 << 40, 1 << 40}}},
	} {
		if _, err := one.Generate(t.Context(), req(tc.grids...), nil); err == nil || !strings.Contains(err.Error(), "image grid") {
			t.Errorf("%s: err %v, want one naming the image grid", tc.name, err)
		}
	}
	lm, ltok := openModel(t, testmodels.Path(t, "tiny-llama-F32.gguf"), 1)
	le := New(lm, ltok, Options{Context: 64, CacheBytes: -1})
	defer le.Close()
	q := Request{Prompt: make([]int32, 8), MaxTokens: 1, Grids: []Grid{{Start: 2, Rows: 2, Cols: 2}}}
	if _, err := le.Generate(t.Context(), q, nil); err == nil || !strings.Contains(err.Error(), "no M-RoPE") {
		t.Errorf("a grid for llama: err %v, want one saying the model has no M-RoPE", err)
	}
}
