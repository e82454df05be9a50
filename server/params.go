package server

import (
	"math/rand/v2"
	"strconv"

	"github.com/stepflash/stepflash/api"
	"github.com/stepflash/stepflash/engine"
)

// sampling holds the validated request fields shared by both endpoints.
type sampling struct {
	params      engine.SamplerParams
	seed        *int64
	maxTokens   int // 0: until the context is full
	n           int
	stops       []string
	topLogprobs int
	logprobs    bool
	ignoreEOS   bool
}

type commonFields struct {
	MaxTokens        *int
	MaxTokensParam   string
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
	Stream           bool
	StreamOptions    *api.StreamOptions
	Advisor          *string
	IgnoreEOS        bool
}

func (s *Server) validateCommon(c commonFields, vocab int) (sampling, *api.Error) {
	sp := sampling{n: 1, ignoreEOS: c.IgnoreEOS}
	sp.params = engine.SamplerParams{Temperature: 1, TopP: 1}
	if c.MaxTokens != nil {
		if *c.MaxTokens < 1 {
			return sp, api.InvalidRequest(api.CodeInvalidValue, c.MaxTokensParam, "Invalid '%s': integer below minimum value. Expected a value >= 1, but got %d instead.", c.MaxTokensParam, *c.MaxTokens)
		}
		sp.maxTokens = *c.MaxTokens
	}
	if v := c.Temperature; v != nil {
		if *v < 0 || *v > 2 {
			return sp, api.InvalidRequest(api.CodeInvalidValue, "temperature", "Invalid 'temperature': expected a value in [0, 2], but got %g instead.", *v)
		}
		sp.params.Temperature = float32(*v)
	}
	if v := c.TopP; v != nil {
		if *v < 0 || *v > 1 {
			return sp, api.InvalidRequest(api.CodeInvalidValue, "top_p", "Invalid 'top_p': expected a value in [0, 1], but got %g instead.", *v)
		}
		sp.params.TopP = float32(*v)
	}
	if v := c.TopK; v != nil {
		if *v < -1 {
			return sp, api.InvalidRequest(api.CodeInvalidValue, "top_k", "Invalid 'top_k': expected -1 or 0 (off) or a positive integer, but got %d instead.", *v)
		}
		sp.params.TopK = max(*v, 0)
	}
	if v := c.MinP; v != nil {
		if *v < 0 || *v > 1 {
			return sp, api.InvalidRequest(api.CodeInvalidValue, "min_p", "Invalid 'min_p': expected a value in [0, 1], but got %g instead.", *v)
		}
		sp.params.MinP = float32(*v)
	}
	sp.seed = c.Seed
	if c.N != nil {
		if *c.N < 1 || *c.N > s.cfg.MaxN {
			return sp, api.InvalidRequest(api.CodeInvalidValue, "n", "Invalid 'n': expected a value in [1, %d], but got %d instead.", s.cfg.MaxN, *c.N)
		}
		sp.n = *c.N
	}
	if len(c.Stop) > 4 {
		return sp, api.InvalidRequest(api.CodeInvalidValue, "stop", "Invalid 'stop': at most 4 stop sequences are allowed, but got %d.", len(c.Stop))
	}
	for _, st := range c.Stop {
		if st != "" {
			sp.stops = append(sp.stops, st)
		}
	}
	for _, p := range []struct {
		name string
		v    *float64
		dst  *float32
	}{{"presence_penalty", c.PresencePenalty, &sp.params.PresencePenalty}, {"frequency_penalty", c.FrequencyPenalty, &sp.params.FrequencyPenalty}} {
		if p.v == nil {
			continue
		}
		if *p.v < -2 || *p.v > 2 {
			return sp, api.InvalidRequest(api.CodeInvalidValue, p.name, "Invalid '%s': expected a value in [-2, 2], but got %g instead.", p.name, *p.v)
		}
		*p.dst = float32(*p.v)
	}
	if len(c.LogitBias) > 0 {
		sp.params.LogitBias = make(map[int32]float32, len(c.LogitBias))
		for k, v := range c.LogitBias {
			id, err := strconv.ParseInt(k, 10, 32)
			if err != nil || id < 0 || int(id) >= vocab {
				return sp, api.InvalidRequest(api.CodeInvalidValue, "logit_bias", "Invalid 'logit_bias': key %q is not a token id of this model's vocabulary (0..%d).", k, vocab-1)
			}
			if v < -100 || v > 100 {
				return sp, api.InvalidRequest(api.CodeInvalidValue, "logit_bias", "Invalid 'logit_bias': the bias of token %s is %g; expected a value in [-100, 100].", k, v)
			}
			sp.params.LogitBias[int32(id)] = float32(v)
		}
	}
	if c.StreamOptions != nil {
		if !c.Stream {
			return sp, api.InvalidRequest(api.CodeInvalidValue, "stream_options", "Invalid 'stream_options': only allowed when 'stream' is true.")
		}
		if c.StreamOptions.ContinuousUsageStats != nil && *c.StreamOptions.ContinuousUsageStats {
			return sp, api.Unsupported("stream_options.continuous_usage_stats", "'stream_options.continuous_usage_stats' is not supported.")
		}
		if c.StreamOptions.IncludeObfuscation != nil && *c.StreamOptions.IncludeObfuscation {
			return sp, api.Unsupported("stream_options.include_obfuscation", "'stream_options.include_obfuscation' is not supported.")
		}
	}
	if c.Advisor != nil {
		switch *c.Advisor {
		case "auto", "off":
		case "always":
			return sp, api.Unsupported("advisor", "'advisor': \"always\" needs an advisor model, and this server has none configured.")
		default:
			return sp, api.InvalidRequest(api.CodeInvalidValue, "advisor", "Invalid 'advisor' %q: allowed values are auto, off, always.", *c.Advisor)
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

// resolveEffort validates reasoning_effort and applies the model's policy.
func resolveEffort(m *Model, requested *string) (engine.AppliedEffort, *api.Error) {
	r := ""
	if requested != nil {
		r = *requested
		if r == "" {
			return engine.AppliedEffort{}, api.InvalidRequest(api.CodeInvalidReasoning, "reasoning_effort", `invalid reasoning_effort "": allowed values are %s`, engine.AllowedEfforts())
		}
	}
	a, err := m.Effort.Apply(r, m.Config)
	if err != nil {
		return a, api.InvalidRequest(api.CodeInvalidReasoning, "reasoning_effort", "%v", err)
	}
	return a, nil
}

func effortEcho(a engine.AppliedEffort) api.EffortEcho {
	return api.EffortEcho{Requested: a.Requested, Applied: string(a.Applied), ExpertsPerToken: a.ExpertsPerToken, ThinkingBudget: a.ThinkingBudget}
}
