package server

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	"github.com/stepflash/stepflash/engine"
	"github.com/stepflash/stepflash/model"
)

// UnlimitedThinking is the thinking budget that sets no limit: a thinking
// block runs until the model closes it (or max_tokens ends the reply).
const UnlimitedThinking = -1

// TierConfig overrides one effort tier of a model's policy. A nil field keeps
// the tier's default (engine.DefaultEffortPolicy).
type TierConfig struct {
	// ExpertsPerToken is the MoE experts used per token, 1..the trained
	// count; it cannot be set for a dense model.
	ExpertsPerToken *int `json:"experts_per_token,omitempty"`
	// ThinkingBudget is the most tokens a thinking block may take before
	// the engine closes it: 0 turns thinking off where the chat template
	// has a switch (and closes a block the model opens at once);
	// UnlimitedThinking (-1) sets no limit.
	ThinkingBudget *int `json:"thinking_budget,omitempty"`
}

// EffortConfig is a model's configured effort policy, the per-model
// "effort" object of `stepflash serve --config`:
//
//	{"low": {"experts_per_token": 2, "thinking_budget": 0},
//	 "medium": {"thinking_budget": 2048}, "high": {"thinking_budget": -1}}
//
// A tier left out keeps its default (../shared/DESIGN.md section 6).
type EffortConfig struct {
	Low    *TierConfig `json:"low,omitempty"`
	Medium *TierConfig `json:"medium,omitempty"`
	High   *TierConfig `json:"high,omitempty"`
}

// UnmarshalJSON decodes an effort object strictly: an unknown tier or field,
// or a value of the wrong type, is an error that names it.
func (c *EffortConfig) UnmarshalJSON(b []byte) error {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		return fmt.Errorf("effort: expected an object of tiers (%s): %w", tierNames(), err)
	}
	keys := make([]string, 0, len(raw))
	for k := range raw {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	*c = EffortConfig{}
	for _, k := range keys {
		dst := c.tier(engine.Effort(k))
		if dst == nil {
			return fmt.Errorf("effort: unknown tier %q: allowed tiers are %s", k, tierNames())
		}
		if string(bytes.TrimSpace(raw[k])) == "null" {
			continue
		}
		dec := json.NewDecoder(bytes.NewReader(raw[k]))
		dec.DisallowUnknownFields()
		t := &TierConfig{}
		if err := dec.Decode(t); err != nil {
			return fmt.Errorf("effort.%s: %w (fields: experts_per_token, thinking_budget)", k, err)
		}
		*dst = t
	}
	return nil
}

// tier returns the field of tier e, or nil for an unknown tier.
func (c *EffortConfig) tier(e engine.Effort) **TierConfig {
	switch e {
	case engine.EffortLow:
		return &c.Low
	case engine.EffortMedium:
		return &c.Medium
	case engine.EffortHigh:
		return &c.High
	}
	return nil
}

func tierNames() string {
	s := make([]string, len(engine.Efforts))
	for i, e := range engine.Efforts {
		s[i] = string(e)
	}
	return strings.Join(s, ", ")
}

// Check validates what does not depend on the model: experts_per_token ≥ 1
// and thinking_budget ≥ 0 or UnlimitedThinking.
func (c *EffortConfig) Check() error {
	for _, e := range engine.Efforts {
		t := *c.tier(e)
		if t == nil {
			continue
		}
		if k := t.ExpertsPerToken; k != nil && *k < 1 {
			return fmt.Errorf("effort.%s.experts_per_token: %d is not allowed: use 1 up to the model's trained experts per token", e, *k)
		}
		if b := t.ThinkingBudget; b != nil && *b < 0 && *b != UnlimitedThinking {
			return fmt.Errorf("effort.%s.thinking_budget: %d is not allowed: use a number of tokens ≥ 0, or %d for unlimited", e, *b, UnlimitedThinking)
		}
	}
	return nil
}

// Policy is the model's effort policy: engine.DefaultEffortPolicy(cfg) with
// the configured tiers applied. It is an error to set experts_per_token
// outside 1..the trained count of a MoE model, or at all for a dense one.
// A nil config gives the default policy.
func (c *EffortConfig) Policy(cfg *model.Config) (engine.EffortPolicy, error) {
	p := engine.DefaultEffortPolicy(cfg)
	if c == nil {
		return p, nil
	}
	if err := c.Check(); err != nil {
		return nil, err
	}
	for _, e := range engine.Efforts {
		t := *c.tier(e)
		if t == nil {
			continue
		}
		tier := p[e]
		if k := t.ExpertsPerToken; k != nil {
			if cfg.NExpert == 0 {
				return nil, fmt.Errorf("effort.%s.experts_per_token: this is a dense model (%s, no experts), so only thinking_budget can be configured", e, cfg.Arch)
			}
			if *k > cfg.NExpertUse {
				return nil, fmt.Errorf("effort.%s.experts_per_token: %d is more than the %d experts per token this model (%s) was trained with; allowed 1..%d", e, *k, cfg.NExpertUse, cfg.Arch, cfg.NExpertUse)
			}
			tier.ExpertsPerToken = *k
		}
		if b := t.ThinkingBudget; b != nil {
			tier.ThinkingBudget = *b
		}
		p[e] = tier
	}
	return p, nil
}

// checkPolicy validates a model's effort policy: every tier present, experts
// per token 0 (the trained count) or 1..k for a MoE model and 0 for a dense
// one, thinking budgets ≥ 0 or UnlimitedThinking.
func checkPolicy(p engine.EffortPolicy, cfg *model.Config) error {
	for _, e := range engine.Efforts {
		t, ok := p[e]
		if !ok {
			return fmt.Errorf("effort policy has no %q tier", e)
		}
		switch {
		case cfg.NExpert == 0 && t.ExpertsPerToken != 0:
			return fmt.Errorf("effort policy tier %q: %d experts per token for a dense model", e, t.ExpertsPerToken)
		case t.ExpertsPerToken < 0 || t.ExpertsPerToken > cfg.NExpertUse:
			return fmt.Errorf("effort policy tier %q: %d experts per token, allowed 1..%d", e, t.ExpertsPerToken, cfg.NExpertUse)
		case t.ThinkingBudget < UnlimitedThinking:
			return fmt.Errorf("effort policy tier %q: thinking budget %d (use ≥ 0, or %d for unlimited)", e, t.ThinkingBudget, UnlimitedThinking)
		}
	}
	return nil
}

// thinkingLimit maps an applied thinking budget to the engine's request
// fields: UnlimitedThinking means no limit.
func thinkingLimit(budget int) (limit bool, tokens int) {
	if budget < 0 {
		return false, 0
	}
	return true, budget
}

// DescribePolicy is a one-line summary of a policy for logs, e.g.
// "low: 4 experts, no thinking; medium: 8 experts, 1024 thinking tokens; …".
func DescribePolicy(p engine.EffortPolicy, cfg *model.Config) string {
	var parts []string
	for _, e := range engine.Efforts {
		t := p[e]
		s := string(e) + ": "
		if cfg.NExpert > 0 {
			k := t.ExpertsPerToken
			if k <= 0 {
				k = cfg.NExpertUse
			}
			s += fmt.Sprintf("%d experts, ", k)
		}
		switch {
		case t.ThinkingBudget < 0:
			s += "unlimited thinking"
		case t.ThinkingBudget == 0:
			s += "no thinking"
		default:
			s += fmt.Sprintf("%d thinking tokens", t.ThinkingBudget)
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, "; ")
}
