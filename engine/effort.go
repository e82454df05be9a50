package engine

import (
	"fmt"
	"strings"

	"github.com/stepflash/stepflash/model"
)

// Effort is a reasoning_effort tier.
type Effort string

// The effort tiers, from least to most compute.
const (
	EffortLow    Effort = "low"
	EffortMedium Effort = "medium"
	EffortHigh   Effort = "high"
)

// Efforts lists the valid tiers in order.
var Efforts = []Effort{EffortLow, EffortMedium, EffortHigh}

// DefaultEffort applies when a request names none.
const DefaultEffort = EffortMedium

// ParseEffort validates a tier name. The empty string means DefaultEffort.
func ParseEffort(s string) (Effort, error) {
	if s == "" {
		return DefaultEffort, nil
	}
	for _, e := range Efforts {
		if string(e) == s {
			return e, nil
		}
	}
	return "", fmt.Errorf("invalid reasoning_effort %q: allowed values are %s", s, AllowedEfforts())
}

// AllowedEfforts lists the valid tiers for error messages: "low, medium, high".
func AllowedEfforts() string {
	var s []string
	for _, e := range Efforts {
		s = append(s, string(e))
	}
	return strings.Join(s, ", ")
}

// Tier is what one effort tier grants: experts per token (MoE models; 0 means
// the trained count) and a thinking budget in tokens (0: no thinking;
// negative: unlimited).
type Tier struct {
	ExpertsPerToken int `json:"experts_per_token,omitempty"`
	ThinkingBudget  int `json:"thinking_budget"`
}

// EffortPolicy maps each tier to its compute for one model.
type EffortPolicy map[Effort]Tier

// DefaultEffortPolicy is ../shared/DESIGN.md section 6 for a model with k
// trained experts per token (k = 0 for dense models): low uses max(1, k/2)
// experts and no thinking; medium k experts and 1,024 thinking tokens; high k
// experts and 8,192.
func DefaultEffortPolicy(cfg *model.Config) EffortPolicy {
	k := cfg.NExpertUse
	low := 0
	if k > 0 {
		low = max(1, k/2)
	}
	return EffortPolicy{
		EffortLow:    {ExpertsPerToken: low, ThinkingBudget: 0},
		EffortMedium: {ExpertsPerToken: k, ThinkingBudget: 1024},
		EffortHigh:   {ExpertsPerToken: k, ThinkingBudget: 8192},
	}
}

// AppliedEffort is the echo of what a request got, so that an effort is never
// silently ignored. ExpertsPerToken is nil for a model that cannot vary it.
type AppliedEffort struct {
	Requested       *string `json:"requested"`
	Applied         Effort  `json:"applied"`
	ExpertsPerToken *int    `json:"experts_per_token"`
	ThinkingBudget  int     `json:"thinking_budget"`
}

// Apply resolves a requested tier (empty: default) for a model. It returns
// the echo and the experts-per-token and thinking budget to run with.
func (p EffortPolicy) Apply(requested string, cfg *model.Config) (AppliedEffort, error) {
	e, err := ParseEffort(requested)
	if err != nil {
		return AppliedEffort{}, err
	}
	t, ok := p[e]
	if !ok {
		return AppliedEffort{}, fmt.Errorf("effort policy has no %q tier", e)
	}
	a := AppliedEffort{Applied: e, ThinkingBudget: t.ThinkingBudget}
	if requested != "" {
		r := requested
		a.Requested = &r
	}
	if cfg.NExpert > 0 {
		k := t.ExpertsPerToken
		if k <= 0 || k > cfg.NExpertUse {
			k = cfg.NExpertUse
		}
		a.ExpertsPerToken = &k
	}
	return a, nil
}
