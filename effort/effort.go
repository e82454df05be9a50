// Package effort is the reasoning_effort policy: the tiers a request may ask
// for, what each tier grants a model (experts per token, thinking budget),
// how an operator configures that per model, and the echo that tells a
// client what it got (../shared/DESIGN.md sections 3 and 6, and
// docs/effort.md in this repository).
//
// It is the one place that knows these rules: the HTTP layer validates
// request values with Parse, a backend applies its model's Policy, and the
// engine enforces the resulting Tier. A thinking budget of Unlimited is the
// only way to say "no limit".
package effort

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
)

// Level is a reasoning_effort tier.
type Level string

// The tiers, from least to most compute.
const (
	Low    Level = "low"
	Medium Level = "medium"
	High   Level = "high"
)

// Levels lists the tiers in order.
var Levels = []Level{Low, Medium, High}

// Default applies when a request names no tier.
const Default = Medium

// Unlimited is the thinking budget that sets no limit: a thinking block
// runs until the model closes it (or max_tokens ends the reply).
const Unlimited = -1

// Aliases are the reasoning_effort values other APIs send, mapped to the
// nearest tier (../shared/DESIGN.md section 3): OpenAI's "none" and
// "minimal" are low with thinking off (ThinkingOff), its "xhigh" is high.
var Aliases = map[string]Level{"none": Low, "minimal": Low, "xhigh": High}

// ThinkingOff reports whether a requested value turns thinking off
// whatever its tier's budget ("none", "minimal").
func ThinkingOff(requested string) bool { return requested == "none" || requested == "minimal" }

// Parse validates a tier name, or an alias of one. The empty string means
// Default.
func Parse(s string) (Level, error) {
	if s == "" {
		return Default, nil
	}
	for _, l := range Levels {
		if string(l) == s {
			return l, nil
		}
	}
	if l, ok := Aliases[s]; ok {
		return l, nil
	}
	return "", fmt.Errorf("invalid reasoning_effort %q: allowed values are %s", s, Allowed())
}

// Allowed lists the values a request may send for error messages: "low,
// medium, high (and none, minimal, xhigh)".
func Allowed() string {
	s := make([]string, len(Levels))
	for i, l := range Levels {
		s[i] = string(l)
	}
	return strings.Join(s, ", ") + " (and none, minimal, xhigh, which map to low, low without thinking, and high)"
}

// Tier is what one tier grants a model.
type Tier struct {
	// ExpertsPerToken is the MoE experts used per token; 0 means the
	// model's trained count (and is the only value for a dense model).
	ExpertsPerToken int `json:"experts_per_token,omitempty"`
	// ThinkingBudget is the most tokens a thinking block may take: 0 turns
	// thinking off (where the chat template has a switch, and closes a block
	// the model opens at once); Unlimited sets no limit.
	ThinkingBudget int `json:"thinking_budget"`
}

// Shape is what a policy needs to know of a model: its architecture (for
// messages) and its experts (both 0 for a dense model).
type Shape struct {
	Arch        string
	Experts     int // experts in each MoE layer
	ExpertsUsed int // experts per token the model was trained with
}

// Dense reports whether the model has no experts.
func (s Shape) Dense() bool { return s.Experts == 0 }

// Policy maps each tier to its compute for one model.
type Policy map[Level]Tier

// DefaultPolicy is ../shared/DESIGN.md section 6 for a model of the given
// shape: low uses max(1, k/2) of its k trained experts per token and no
// thinking; medium k experts and 1,024 thinking tokens; high k experts and
// 8,192. A dense model varies only the budget.
func DefaultPolicy(s Shape) Policy {
	k := s.ExpertsUsed
	low := 0
	if !s.Dense() && k > 0 {
		low = max(1, k/2)
	}
	if s.Dense() {
		k = 0
	}
	return Policy{
		Low:    {ExpertsPerToken: low, ThinkingBudget: 0},
		Medium: {ExpertsPerToken: k, ThinkingBudget: 1024},
		High:   {ExpertsPerToken: k, ThinkingBudget: 8192},
	}
}

// Check validates a policy for a model: every tier present, experts per
// token 0 (the trained count) or 1..k for a MoE model and 0 for a dense one,
// thinking budgets ≥ 0 or Unlimited.
func (p Policy) Check(s Shape) error {
	for _, l := range Levels {
		t, ok := p[l]
		if !ok {
			return fmt.Errorf("effort policy has no %q tier", l)
		}
		switch {
		case s.Dense() && t.ExpertsPerToken != 0:
			return fmt.Errorf("effort policy tier %q: %d experts per token for a dense model", l, t.ExpertsPerToken)
		case t.ExpertsPerToken < 0 || t.ExpertsPerToken > s.ExpertsUsed:
			return fmt.Errorf("effort policy tier %q: %d experts per token, allowed 1..%d", l, t.ExpertsPerToken, s.ExpertsUsed)
		case t.ThinkingBudget < Unlimited:
			return fmt.Errorf("effort policy tier %q: thinking budget %d (use ≥ 0, or %d for unlimited)", l, t.ThinkingBudget, Unlimited)
		}
	}
	return nil
}

// Applied is what a request got: the echo that keeps an effort from ever
// being silently ignored, and the tier to run with.
type Applied struct {
	// Requested is the request's value, nil when it named none.
	Requested *string `json:"requested"`
	Level     Level   `json:"applied"`
	// ExpertsPerToken is nil for a model that cannot vary it (dense).
	ExpertsPerToken *int `json:"experts_per_token"`
	ThinkingBudget  int  `json:"thinking_budget"`
}

// Tier is the compute the applied effort grants (ExpertsPerToken 0 for a
// dense model).
func (a Applied) Tier() Tier {
	t := Tier{ThinkingBudget: a.ThinkingBudget}
	if a.ExpertsPerToken != nil {
		t.ExpertsPerToken = *a.ExpertsPerToken
	}
	return t
}

// Apply resolves a requested tier (empty: Default) for a model of shape s.
func (p Policy) Apply(requested string, s Shape) (Applied, error) {
	l, err := Parse(requested)
	if err != nil {
		return Applied{}, err
	}
	t, ok := p[l]
	if !ok {
		return Applied{}, fmt.Errorf("effort policy has no %q tier", l)
	}
	a := Applied{Level: l, ThinkingBudget: t.ThinkingBudget}
	if ThinkingOff(requested) {
		a.ThinkingBudget = 0
	}
	if requested != "" {
		r := requested
		a.Requested = &r
	}
	if !s.Dense() {
		k := t.ExpertsPerToken
		if k <= 0 || k > s.ExpertsUsed {
			k = s.ExpertsUsed
		}
		a.ExpertsPerToken = &k
	}
	return a, nil
}

// Describe is a one-line summary of a policy for logs, e.g.
// "low: 4 experts, no thinking; medium: 8 experts, 1024 thinking tokens; …".
func (p Policy) Describe(s Shape) string {
	var parts []string
	for _, l := range Levels {
		t := p[l]
		d := string(l) + ": "
		if !s.Dense() {
			k := t.ExpertsPerToken
			if k <= 0 {
				k = s.ExpertsUsed
			}
			d += fmt.Sprintf("%d experts, ", k)
		}
		switch {
		case t.ThinkingBudget == Unlimited:
			d += "unlimited thinking"
		case t.ThinkingBudget == 0:
			d += "no thinking"
		default:
			d += fmt.Sprintf("%d thinking tokens", t.ThinkingBudget)
		}
		parts = append(parts, d)
	}
	return strings.Join(parts, "; ")
}

// TierConfig overrides one tier of a model's policy. A nil field keeps the
// tier's default.
type TierConfig struct {
	// ExpertsPerToken is 1..the trained count; it cannot be set for a dense
	// model.
	ExpertsPerToken *int `json:"experts_per_token,omitempty"`
	// ThinkingBudget is tokens (0: thinking off) or Unlimited (-1).
	ThinkingBudget *int `json:"thinking_budget,omitempty"`
}

// Config is a model's configured policy, the per-model "effort" object of
// `stepflash serve --config`:
//
//	{"low": {"experts_per_token": 2, "thinking_budget": 0},
//	 "medium": {"thinking_budget": 2048}, "high": {"thinking_budget": -1}}
//
// A tier left out keeps its default.
type Config struct {
	Low    *TierConfig `json:"low,omitempty"`
	Medium *TierConfig `json:"medium,omitempty"`
	High   *TierConfig `json:"high,omitempty"`
}

// UnmarshalJSON decodes an effort object strictly: an unknown tier or field,
// or a value of the wrong type, is an error that names it.
func (c *Config) UnmarshalJSON(b []byte) error {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		return fmt.Errorf("effort: expected an object of tiers (%s): %w", Allowed(), err)
	}
	keys := make([]string, 0, len(raw))
	for k := range raw {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	*c = Config{}
	for _, k := range keys {
		dst := c.tier(Level(k))
		if dst == nil {
			return fmt.Errorf("effort: unknown tier %q: allowed tiers are %s", k, Allowed())
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

// tier returns the field of tier l, or nil for an unknown tier.
func (c *Config) tier(l Level) **TierConfig {
	switch l {
	case Low:
		return &c.Low
	case Medium:
		return &c.Medium
	case High:
		return &c.High
	}
	return nil
}

// Check validates what does not depend on the model: experts_per_token ≥ 1
// and thinking_budget ≥ 0 or Unlimited.
func (c *Config) Check() error {
	if c == nil {
		return nil
	}
	for _, l := range Levels {
		t := *c.tier(l)
		if t == nil {
			continue
		}
		if k := t.ExpertsPerToken; k != nil && *k < 1 {
			return fmt.Errorf("effort.%s.experts_per_token: %d is not allowed: use 1 up to the model's trained experts per token", l, *k)
		}
		if b := t.ThinkingBudget; b != nil && *b < 0 && *b != Unlimited {
			return fmt.Errorf("effort.%s.thinking_budget: %d is not allowed: use a number of tokens ≥ 0, or %d for unlimited", l, *b, Unlimited)
		}
	}
	return nil
}

// Policy is DefaultPolicy(s) with the configured tiers applied. It is an
// error to set experts_per_token above the trained count of a MoE model, or
// at all for a dense one. A nil config gives the default policy.
func (c *Config) Policy(s Shape) (Policy, error) {
	p := DefaultPolicy(s)
	if c == nil {
		return p, nil
	}
	if err := c.Check(); err != nil {
		return nil, err
	}
	for _, l := range Levels {
		t := *c.tier(l)
		if t == nil {
			continue
		}
		tier := p[l]
		if k := t.ExpertsPerToken; k != nil {
			if s.Dense() {
				return nil, fmt.Errorf("effort.%s.experts_per_token: this is a dense model (%s, no experts), so only thinking_budget can be configured", l, s.Arch)
			}
			if *k > s.ExpertsUsed {
				return nil, fmt.Errorf("effort.%s.experts_per_token: %d is more than the %d experts per token this model (%s) was trained with; allowed 1..%d", l, *k, s.ExpertsUsed, s.Arch, s.ExpertsUsed)
			}
			tier.ExpertsPerToken = *k
		}
		if b := t.ThinkingBudget; b != nil {
			tier.ThinkingBudget = *b
		}
		p[l] = tier
	}
	return p, nil
}
