package engine

import (
	"math"
	"math/rand/v2"
	"sort"
)

// SamplerParams selects how the next token is drawn, with llama.cpp's meanings.
// The filters apply in llama.cpp's order: top-k, top-p, min-p, then temperature.
type SamplerParams struct {
	Temperature float32 // <= 0: greedy (argmax of the raw logits)
	TopK        int     // <= 0: no limit
	TopP        float32 // >= 1 or <= 0: off
	MinP        float32 // <= 0: off
	Seed        uint64
}

// Greedy reports whether the parameters pick the argmax.
func (p SamplerParams) Greedy() bool { return p.Temperature <= 0 || p.TopK == 1 }

// Sampler draws tokens from logits. It is not safe for concurrent use.
type Sampler struct {
	p    SamplerParams
	rng  *rand.Rand
	cand []candidate
}

type candidate struct {
	id    int32
	logit float32
	p     float64
}

// NewSampler returns a sampler whose random draws are reproducible for a seed.
func NewSampler(p SamplerParams) *Sampler {
	return &Sampler{p: p, rng: rand.New(rand.NewPCG(p.Seed, p.Seed^0x9e3779b97f4a7c15))}
}

// Sample picks the next token from one row of logits.
func (s *Sampler) Sample(logits []float32) int32 {
	if s.p.Greedy() {
		return Argmax(logits)
	}
	c := s.cand[:0]
	for i, l := range logits {
		c = append(c, candidate{id: int32(i), logit: l})
	}
	s.cand = c
	byLogit := func(a, b int) bool {
		if c[a].logit != c[b].logit {
			return c[a].logit > c[b].logit
		}
		return c[a].id < c[b].id
	}
	if k := s.p.TopK; k > 0 && k < len(c) {
		partialTop(c, k)
		c = c[:k]
	}
	sort.Slice(c, byLogit)
	softmaxCand(c, 1)
	if tp := s.p.TopP; tp > 0 && tp < 1 {
		cum := 0.0
		for i := range c {
			cum += c[i].p
			if cum >= float64(tp) {
				c = c[:i+1]
				break
			}
		}
	}
	if mp := s.p.MinP; mp > 0 {
		limit := c[0].p * float64(mp)
		n := 1
		for n < len(c) && c[n].p >= limit {
			n++
		}
		c = c[:n]
	}
	softmaxCand(c, s.p.Temperature)
	r := s.rng.Float64()
	cum := 0.0
	for i := range c {
		cum += c[i].p
		if r < cum {
			return c[i].id
		}
	}
	return c[len(c)-1].id
}

// softmaxCand sets p of each candidate from logit/temp (c sorted, largest first).
func softmaxCand(c []candidate, temp float32) {
	mx := float64(c[0].logit) / float64(temp)
	sum := 0.0
	for i := range c {
		c[i].p = math.Exp(float64(c[i].logit)/float64(temp) - mx)
		sum += c[i].p
	}
	for i := range c {
		c[i].p /= sum
	}
}

// partialTop moves the k largest logits (ties: lower id) to c[:k], unordered.
func partialTop(c []candidate, k int) {
	less := func(a, b candidate) bool { // a ranks before b
		if a.logit != b.logit {
			return a.logit > b.logit
		}
		return a.id < b.id
	}
	lo, hi := 0, len(c)-1
	for lo < hi {
		pivot := c[(lo+hi)/2]
		i, j := lo, hi
		for i <= j {
			for less(c[i], pivot) {
				i++
			}
			for less(pivot, c[j]) {
				j--
			}
			if i <= j {
				c[i], c[j] = c[j], c[i]
				i++
				j--
			}
		}
		if k-1 <= j {
			hi = j
		} else if k-1 >= i {
			lo = i
		} else {
			return
		}
	}
}

// Argmax returns the index of the largest logit (the lowest index on ties).
func Argmax(logits []float32) int32 {
	best := 0
	for i, l := range logits {
		if l > logits[best] {
			best = i
		}
	}
	return int32(best)
}

// TokenLogprob is a token with its log-probability.
type TokenLogprob struct {
	ID      int32
	Logprob float32
}

// LogSoftmaxTop returns log_softmax(logits)[id] and the n most likely tokens
// with their log-probabilities (largest first), over the full vocabulary of
// raw logits — before any sampler, as OpenAI and llama.cpp report them.
func LogSoftmaxTop(logits []float32, id int32, n int) (float32, []TokenLogprob) {
	mx := logits[Argmax(logits)]
	sum := 0.0
	for _, l := range logits {
		sum += math.Exp(float64(l - mx))
	}
	lse := float64(mx) + math.Log(sum)
	lp := func(i int32) float32 { return float32(float64(logits[i]) - lse) }
	if n <= 0 {
		return lp(id), nil
	}
	n = min(n, len(logits))
	top := make([]TokenLogprob, 0, n+1)
	for i, l := range logits {
		if len(top) == n && l <= logits[top[n-1].ID] {
			continue
		}
		j := len(top)
		if j < n {
			top = append(top, TokenLogprob{})
		} else {
			j = n - 1
		}
		for j > 0 && logits[top[j-1].ID] < l {
			top[j] = top[j-1]
			j--
		}
		top[j] = TokenLogprob{ID: int32(i)}
	}
	for i := range top {
		top[i].Logprob = lp(top[i].ID)
	}
	return lp(id), top
}
