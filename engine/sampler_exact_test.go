package engine

import (
	"fmt"
	"math"
	"math/rand/v2"
	"sort"
	"testing"
)

// The sampler's filters pinned to the distributions llama.cpp's samplers
// define (src/llama-sampling.cpp, in the order of its default chain:
// penalties, top-k, top-p, min-p, temperature, then the draw), on small
// logit vectors whose expected distributions are worked out by hand.
//
// The distribution a sampler draws from is read exactly, without
// statistics: its random source is replaced by one that returns a chosen
// uniform number u, and the tokens Sample returns over u in [0, 1) are
// mapped, boundaries located by bisection to 1e-14. Each token's share of
// [0, 1) is its probability.

// fixedUniform is a random source whose Float64 is always u.
type fixedUniform uint64

func (f fixedUniform) Uint64() uint64 { return uint64(f) }

// drawn returns the probability of each token s can return for logits.
func drawn(s *Sampler, logits []float32) map[int32]float64 {
	return drawnBy(s, func() int32 { return s.Sample(logits) })
}

// drawnBy is the exact distribution of draw's token over the sampler's
// uniform number u in [0, 1): draw runs with s's generator fixed to give
// u, on a grid refined by bisection where the token changes.
func drawnBy(s *Sampler, draw func() int32) map[int32]float64 {
	at := func(u float64) int32 {
		s.rng = rand.New(fixedUniform(uint64(u * (1 << 53))))
		return draw()
	}
	out := map[int32]float64{}
	// split adds [a, b) where at(a) = ta and at(b) = tb, assuming a
	// grid cell holds no token whose whole share lies strictly inside it.
	var split func(a, b float64, ta, tb int32)
	split = func(a, b float64, ta, tb int32) {
		if ta == tb || b-a < 1e-14 {
			out[ta] += b - a
			return
		}
		m := (a + b) / 2
		tm := at(m)
		split(a, m, ta, tm)
		split(m, b, tm, tb)
	}
	const grid = 4096
	last := math.Nextafter(1, 0)
	ta := at(0)
	for i := 0; i < grid; i++ {
		a, b := float64(i)/grid, float64(i+1)/grid
		tb := at(min(b, last))
		split(a, b, ta, tb)
		ta = tb
	}
	return out
}

// norm scales weights (id → unnormalised probability) to sum to 1.
func norm(w map[int32]float64) map[int32]float64 {
	sum := 0.0
	for _, v := range w {
		sum += v
	}
	out := map[int32]float64{}
	for id, v := range w {
		out[id] = v / sum
	}
	return out
}

func fmtDist(d map[int32]float64) string {
	var idsOf []int32
	for id, p := range d {
		if p > 1e-12 {
			idsOf = append(idsOf, id)
		}
	}
	sort.Slice(idsOf, func(i, j int) bool { return idsOf[i] < idsOf[j] })
	s := "{"
	for i, id := range idsOf {
		if i > 0 {
			s += " "
		}
		s += fmt.Sprintf("%d:%.6f", id, d[id])
	}
	return s + "}"
}

func TestSamplerExactDistributions(t *testing.T) {
	ln := func(x float64) float32 { return float32(math.Log(x)) }
	// p is the softmax of the logits at temperature 1: token 0 has 0.1,
	// 1 has 0.4, 2 has 0.2, 3 has 0.3 (the ids out of order on purpose).
	p := []float32{ln(0.1), ln(0.4), ln(0.2), ln(0.3)}
	full := map[int32]float64{1: 0.4, 3: 0.3, 2: 0.2, 0: 0.1}
	top2 := map[int32]float64{1: 4.0 / 7, 3: 3.0 / 7}
	top3 := map[int32]float64{1: 4.0 / 9, 3: 3.0 / 9, 2: 2.0 / 9}
	only1 := map[int32]float64{1: 1}
	// eq has four equal logits: each has exactly 0.25, and sums of those
	// are exact, for the boundaries of top-p and min-p.
	eq := []float32{2, 2, 2, 2}
	cases := []struct {
		name    string
		params  SamplerParams
		history []int32 // tokens accepted before the draw (penalties)
		logits  []float32
		want    map[int32]float64
	}{
		{"temperature 1 is the softmax", SamplerParams{Temperature: 1}, nil, p, full},
		{"temperature 0.5 squares the probabilities", SamplerParams{Temperature: 0.5}, nil, p,
			norm(map[int32]float64{1: 0.16, 3: 0.09, 2: 0.04, 0: 0.01})},
		{"temperature 2 takes their square roots", SamplerParams{Temperature: 2}, nil, p,
			norm(map[int32]float64{1: math.Sqrt(0.4), 3: math.Sqrt(0.3), 2: math.Sqrt(0.2), 0: math.Sqrt(0.1)})},
		{"temperature 0 is greedy", SamplerParams{}, nil, p, only1},
		{"a negative temperature is greedy", SamplerParams{Temperature: -1, TopK: 3}, nil, p, only1},

		{"top-k 2", SamplerParams{Temperature: 1, TopK: 2}, nil, p, top2},
		{"top-k 3", SamplerParams{Temperature: 1, TopK: 3}, nil, p, top3},
		{"top-k 1 is greedy", SamplerParams{Temperature: 1, TopK: 1}, nil, p, only1},
		{"top-k above the vocabulary is off", SamplerParams{Temperature: 1, TopK: 10}, nil, p, full},
		{"top-k on ties keeps the lower ids", SamplerParams{Temperature: 1, TopK: 2}, nil, eq, map[int32]float64{0: 0.5, 1: 0.5}},

		// top-p keeps the smallest set, most likely first, whose
		// cumulative probability reaches p: the token that crosses p is in.
		{"top-p 0.39: the top token", SamplerParams{Temperature: 1, TopP: 0.39}, nil, p, only1},
		{"top-p 0.41: the token crossing p is kept", SamplerParams{Temperature: 1, TopP: 0.41}, nil, p, top2},
		{"top-p 0.69", SamplerParams{Temperature: 1, TopP: 0.69}, nil, p, top2},
		{"top-p 0.71", SamplerParams{Temperature: 1, TopP: 0.71}, nil, p, top3},
		{"top-p reached exactly stops there (inclusive)", SamplerParams{Temperature: 1, TopP: 0.5}, nil, eq,
			map[int32]float64{0: 0.5, 1: 0.5}}, // 0.25 + 0.25 >= 0.5
		{"top-p 1 is off", SamplerParams{Temperature: 1, TopP: 1}, nil, p, full},
		{"top-p 0 is off", SamplerParams{Temperature: 1, TopP: 0}, nil, p, full},
		{"top-p over the top-k, renormalised", SamplerParams{Temperature: 1, TopK: 3, TopP: 0.75}, nil, p, top2}, // 4/9 + 3/9 >= 0.75; 0.4 + 0.3 < 0.75

		// min-p keeps the tokens whose probability is at least min_p
		// times the top token's (relative, not absolute).
		{"min-p 0.49 keeps p >= 0.196", SamplerParams{Temperature: 1, MinP: 0.49}, nil, p, top3},
		{"min-p 0.51 keeps p >= 0.204", SamplerParams{Temperature: 1, MinP: 0.51}, nil, p, top2},
		{"min-p 0.26 keeps p >= 0.104", SamplerParams{Temperature: 1, MinP: 0.26}, nil, p, top3},
		{"min-p 0.74 keeps p >= 0.296", SamplerParams{Temperature: 1, MinP: 0.74}, nil, p, top2},
		{"min-p 0.76 keeps p >= 0.304", SamplerParams{Temperature: 1, MinP: 0.76}, nil, p, only1},
		{"min-p 0.2 keeps p >= 0.08", SamplerParams{Temperature: 1, MinP: 0.2}, nil, p, full},
		{"min-p 1 keeps the ties of the top (inclusive)", SamplerParams{Temperature: 1, MinP: 1}, nil, eq,
			map[int32]float64{0: 0.25, 1: 0.25, 2: 0.25, 3: 0.25}},
		{"min-p after top-p, relative to the top token", SamplerParams{Temperature: 1, TopP: 0.71, MinP: 0.6}, nil, p, top2},

		// The filters see the temperature-1 probabilities; the
		// temperature shapes only the draw among the survivors.
		{"top-p, then temperature", SamplerParams{Temperature: 0.5, TopP: 0.5}, nil, p,
			map[int32]float64{1: 16.0 / 25, 3: 9.0 / 25}}, // at 0.5 first, 16/30 alone would reach 0.5
		{"min-p, then temperature", SamplerParams{Temperature: 0.5, MinP: 0.3}, nil, p,
			map[int32]float64{1: 16.0 / 29, 3: 9.0 / 29, 2: 4.0 / 29}}, // at 0.5 first, 4/30 < 0.3 × 16/30
		{"top-k, then temperature", SamplerParams{Temperature: 2, TopK: 2}, nil, p,
			norm(map[int32]float64{1: math.Sqrt(0.4), 3: math.Sqrt(0.3)})},

		// Penalties (OpenAI's, as llama.cpp's penalty_present and
		// penalty_freq): logit -= presence once if seen + frequency × count.
		{"presence and frequency", SamplerParams{Temperature: 1, PresencePenalty: 0.5, FrequencyPenalty: 0.25}, []int32{1, 3, 1}, p,
			norm(map[int32]float64{1: 0.4 * math.Exp(-(0.5 + 2*0.25)), 3: 0.3 * math.Exp(-(0.5 + 0.25)), 2: 0.2, 0: 0.1})},
		{"a negative presence penalty raises", SamplerParams{Temperature: 1, PresencePenalty: -math.Ln2}, []int32{0, 0}, p,
			norm(map[int32]float64{1: 0.4, 3: 0.3, 2: 0.2, 0: 0.2})},
		{"penalties before top-k", SamplerParams{Temperature: 1, TopK: 2, FrequencyPenalty: 0.5}, []int32{1, 1}, p, // 0.4/e < 0.2
			map[int32]float64{3: 0.6, 2: 0.4}},
		{"greedy with a presence penalty", SamplerParams{PresencePenalty: 0.5}, []int32{1}, p, map[int32]float64{3: 1}}, // ln .4 - .5 < ln .3
		{"greedy with a frequency penalty per occurrence", SamplerParams{FrequencyPenalty: 0.2}, []int32{1, 1, 1}, p,
			map[int32]float64{3: 1}}, // ln .4 - .6 < ln .3 < ln .4 - .2
		{"no penalty, history ignored", SamplerParams{Temperature: 1}, []int32{1, 1, 1}, p, full},

		// Logit bias: added to the logit before everything else.
		{"logit bias ×8", SamplerParams{Temperature: 1, LogitBias: map[int32]float32{0: ln(8)}}, nil, p,
			norm(map[int32]float64{1: 0.4, 3: 0.3, 2: 0.2, 0: 0.8})},
		{"logit bias -100 bans", SamplerParams{Temperature: 1, LogitBias: map[int32]float32{1: -100}}, nil, p,
			map[int32]float64{3: 0.5, 2: 1.0 / 3, 0: 1.0 / 6}},
		{"logit bias before top-k", SamplerParams{Temperature: 1, TopK: 2, LogitBias: map[int32]float32{0: ln(8)}}, nil, p,
			map[int32]float64{0: 2.0 / 3, 1: 1.0 / 3}},
		{"logit bias for ids outside the vocabulary is ignored", SamplerParams{Temperature: 1, LogitBias: map[int32]float32{-1: 5, 4: 5, 1 << 30: 5}}, nil, p, full},
		{"greedy with a logit bias", SamplerParams{LogitBias: map[int32]float32{2: ln(2.5)}}, nil, p, map[int32]float64{2: 1}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := NewSampler(tc.params)
			for _, id := range tc.history {
				s.Accept(id)
			}
			got := drawn(s, tc.logits)
			bad := false
			for id := range len(tc.logits) + 1 {
				if math.Abs(got[int32(id)]-tc.want[int32(id)]) > 1e-6 {
					bad = true
				}
			}
			for id := range got {
				if id < 0 || int(id) >= len(tc.logits) {
					bad = true
				}
			}
			if bad {
				t.Errorf("draws from %s\nwant        %s", fmtDist(got), fmtDist(tc.want))
			}
		})
	}
}
