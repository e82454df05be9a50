package local

import (
	"math/rand/v2"
	"strconv"
	"sync"

	"github.com/stepflash/stepflash/api"
	"github.com/stepflash/stepflash/effort"
	"github.com/stepflash/stepflash/engine"
)

// sampling holds the request fields shared by both endpoints, in the
// engine's terms.
type sampling struct {
	params      engine.SamplerParams
	seed        *int64
	maxTokens   int // 0: until the context is full
	n           int
	stops       []string // the request's, then the template's end-of-turn strings
	userStops   int      // how many of stops are the request's
	topLogprobs int
	logprobs    bool
	ignoreEOS   bool
}

type common struct {
	MaxTokens        *int
	Temperature      *float64
	TopP             *float64
	TopK             *int
	MinP             *float64
	Seed             *int64
	Stop             api.Stop
	N                *int
	PresencePenalty  *float64
	FrequencyPenalty *float64
	LogitBias        map[string]float64
	IgnoreEOS        bool
}

// sampling converts checked request fields; what depends on the model (a
// logit_bias key outside the vocabulary) is an error here.
func (b *Backend) sampling(c common) (sampling, *api.Error) {
	sp := sampling{n: 1, ignoreEOS: c.IgnoreEOS, seed: c.Seed}
	sp.params = engine.SamplerParams{Temperature: 1, TopP: 1}
	if c.MaxTokens != nil {
		sp.maxTokens = *c.MaxTokens
	}
	if v := c.Temperature; v != nil {
		sp.params.Temperature = float32(*v)
	}
	if v := c.TopP; v != nil {
		sp.params.TopP = float32(*v)
	}
	if v := c.TopK; v != nil {
		sp.params.TopK = max(*v, 0)
	}
	if v := c.MinP; v != nil {
		sp.params.MinP = float32(*v)
	}
	if c.N != nil {
		sp.n = *c.N
	}
	for _, st := range c.Stop {
		if st != "" {
			sp.stops = append(sp.stops, st)
		}
	}
	sp.userStops = len(sp.stops)
	if v := c.PresencePenalty; v != nil {
		sp.params.PresencePenalty = float32(*v)
	}
	if v := c.FrequencyPenalty; v != nil {
		sp.params.FrequencyPenalty = float32(*v)
	}
	if len(c.LogitBias) > 0 {
		vocab := b.m.Tok.VocabSize()
		sp.params.LogitBias = make(map[int32]float32, len(c.LogitBias))
		for k, v := range c.LogitBias {
			id, err := strconv.ParseInt(k, 10, 32)
			if err != nil || id < 0 || int(id) >= vocab {
				return sp, api.InvalidRequest(api.CodeInvalidValue, "logit_bias", "Invalid 'logit_bias': key %q is not a token id of this model's vocabulary (0..%d).", k, vocab-1)
			}
			sp.params.LogitBias[int32(id)] = float32(v)
		}
	}
	return sp, nil
}

// seedFor returns the sampling seed of choice c.
func (sp *sampling) seedFor(c int) uint64 {
	if sp.seed == nil {
		return rand.Uint64()
	}
	return uint64(*sp.seed) + uint64(c)
}

// applyEffort applies the model's policy to a checked reasoning_effort.
func (b *Backend) applyEffort(requested *string) (effort.Applied, *api.Error) {
	r := ""
	if requested != nil {
		r = *requested
	}
	a, err := b.m.Effort.Apply(r, b.shape)
	if err != nil {
		return a, api.InvalidRequest(api.CodeInvalidReasoning, "reasoning_effort", "%v", err)
	}
	return a, nil
}

// thinkingFor is the model's thinking block with a budget, its tokens
// encoded once.
func (b *Backend) thinkingFor(budget int) *engine.Thinking {
	b.thinkOnce.Do(func() { b.think = Thinking(b.m.Tok, b.thinking, 0) })
	if b.think == nil {
		return nil
	}
	t := *b.think
	t.Budget = budget
	return &t
}

// thinkCache holds the encoded thinking block.
type thinkCache struct {
	thinkOnce sync.Once
	think     *engine.Thinking
}

// checkChoices rejects a request with more choices (n per prompt) than the
// engine can ever hold at once.
func (b *Backend) checkChoices(n, prompts int) *api.Error {
	limit := b.m.QueueLimit
	if limit <= 0 || n*prompts <= limit {
		return nil
	}
	const why = "this model queues at most %d choices at once (all choices of a request wait together), so the request could never be admitted"
	if n > limit || prompts == 1 {
		return api.InvalidRequest(api.CodeInvalidValue, "n", "Invalid 'n': %d choices asked for, but "+why+". Ask for at most n=%d.", n, limit, limit)
	}
	return api.InvalidRequest(api.CodeInvalidValue, "prompt",
		"Invalid 'prompt': %d prompts with n=%d ask for %d choices, but "+why+". Send at most %d prompts with this n.", prompts, n, n*prompts, limit, limit/n)
}
