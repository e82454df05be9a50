package effort

import (
	"encoding/json"
	"maps"
	"strings"
	"testing"
)

var (
	moe   = Shape{Arch: "qwen3moe", Experts: 8, ExpertsUsed: 4}
	dense = Shape{Arch: "qwen3"}
)

func TestConfigPolicy(t *testing.T) {
	type tiers = [3][2]int // {experts per token, thinking budget} of low, medium, high
	cases := []struct {
		name    string
		shape   Shape
		json    string
		want    tiers
		wantErr string // a substring of the error; "" for none
	}{
		{"empty keeps the defaults", moe, `{}`, tiers{{2, 0}, {4, 1024}, {4, 8192}}, ""},
		{"null tier keeps the default", moe, `{"low":null}`, tiers{{2, 0}, {4, 1024}, {4, 8192}}, ""},
		{"one field of one tier", moe, `{"medium":{"thinking_budget":5}}`, tiers{{2, 0}, {4, 5}, {4, 8192}}, ""},
		{"every tier", moe, `{"low":{"experts_per_token":1,"thinking_budget":16},"medium":{"experts_per_token":3},"high":{"thinking_budget":-1}}`,
			tiers{{1, 16}, {3, 1024}, {4, -1}}, ""},
		{"experts up to the trained count", moe, `{"low":{"experts_per_token":4}}`, tiers{{4, 0}, {4, 1024}, {4, 8192}}, ""},
		{"dense budgets", dense, `{"low":{"thinking_budget":2},"high":{"thinking_budget":-1}}`, tiers{{0, 2}, {0, 1024}, {0, -1}}, ""},
		{"experts above the trained count", moe, `{"high":{"experts_per_token":5}}`, tiers{}, "effort.high.experts_per_token: 5 is more than the 4 experts per token this model (qwen3moe) was trained with; allowed 1..4"},
		{"zero experts", moe, `{"low":{"experts_per_token":0}}`, tiers{}, "effort.low.experts_per_token: 0 is not allowed"},
		{"experts on a dense model", dense, `{"low":{"experts_per_token":1}}`, tiers{}, "effort.low.experts_per_token: this is a dense model (qwen3, no experts)"},
		{"budget below -1", moe, `{"medium":{"thinking_budget":-2}}`, tiers{}, "effort.medium.thinking_budget: -2 is not allowed: use a number of tokens ≥ 0, or -1 for unlimited"},
		{"unknown tier", moe, `{"extreme":{}}`, tiers{}, `unknown tier "extreme": allowed tiers are low, medium, high`},
		{"unknown field", moe, `{"low":{"experts":2}}`, tiers{}, `effort.low: json: unknown field "experts"`},
		{"fractional experts", moe, `{"low":{"experts_per_token":1.5}}`, tiers{}, "effort.low:"},
		{"not an object", moe, `[1]`, tiers{}, "expected an object of tiers"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var c Config
			err := json.Unmarshal([]byte(tc.json), &c)
			var p Policy
			if err == nil {
				p, err = c.Policy(tc.shape)
			}
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got tiers
			for i, l := range Levels {
				got[i] = [2]int{p[l].ExpertsPerToken, p[l].ThinkingBudget}
			}
			if got != tc.want {
				t.Fatalf("policy %v, want %v", got, tc.want)
			}
			if err := p.Check(tc.shape); err != nil {
				t.Fatalf("the resolved policy fails its own check: %v", err)
			}
		})
	}
	var nilCfg *Config
	if p, err := nilCfg.Policy(moe); err != nil || p[Low] != (Tier{ExpertsPerToken: 2}) {
		t.Errorf("nil config: %v %v", p, err)
	}
}

func TestPolicyCheck(t *testing.T) {
	ok := Policy{Low: {ExpertsPerToken: 0}, Medium: {}, High: {ThinkingBudget: Unlimited}}
	cases := []struct {
		name    string
		shape   Shape
		edit    func(Policy)
		wantErr string
	}{
		{"valid", moe, func(Policy) {}, ""},
		{"missing tier", moe, func(p Policy) { delete(p, High) }, `no "high" tier`},
		{"too many experts", moe, func(p Policy) { p[Low] = Tier{ExpertsPerToken: 5} }, "allowed 1..4"},
		{"negative experts", moe, func(p Policy) { p[Low] = Tier{ExpertsPerToken: -1} }, "allowed 1..4"},
		{"experts on dense", dense, func(p Policy) { p[Low] = Tier{ExpertsPerToken: 1} }, "dense model"},
		{"budget -2", moe, func(p Policy) { p[Medium] = Tier{ThinkingBudget: -2} }, "thinking budget -2"},
	}
	for _, tc := range cases {
		p := maps.Clone(ok)
		tc.edit(p)
		err := p.Check(tc.shape)
		if (tc.wantErr == "") != (err == nil) || err != nil && !strings.Contains(err.Error(), tc.wantErr) {
			t.Errorf("%s: error %v, want %q", tc.name, err, tc.wantErr)
		}
	}
}

func TestDescribe(t *testing.T) {
	p := Policy{Low: {ExpertsPerToken: 2}, Medium: {ThinkingBudget: 5}, High: {ExpertsPerToken: 4, ThinkingBudget: Unlimited}}
	want := "low: 2 experts, no thinking; medium: 4 experts, 5 thinking tokens; high: 4 experts, unlimited thinking"
	if got := p.Describe(moe); got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	if got := p.Describe(Shape{}); !strings.HasPrefix(got, "low: no thinking; medium: 5 thinking") {
		t.Errorf("dense: %q", got)
	}
}

func TestApply(t *testing.T) {
	big := Shape{Experts: 128, ExpertsUsed: 8}
	cases := []struct {
		shape      Shape
		req        string
		applied    Level
		experts    int // -1: null
		budget     int
		wantErr    string
		requestNil bool
	}{
		{big, "", Medium, 8, 1024, "", true},
		{big, "low", Low, 4, 0, "", false},
		{big, "high", High, 8, 8192, "", false},
		{Shape{Experts: 8, ExpertsUsed: 1}, "low", Low, 1, 0, "", false},
		{dense, "low", Low, -1, 0, "", false},
		{dense, "hgih", "", 0, 0, `invalid reasoning_effort "hgih": allowed values are low, medium, high (and none, minimal, xhigh, which map to low, low without thinking, and high)`, false},
		{big, "minimal", Low, 4, 0, "", false},
		{big, "none", Low, 4, 0, "", false},
		{big, "xhigh", High, 8, 8192, "", false},
	}
	for _, tc := range cases {
		a, err := DefaultPolicy(tc.shape).Apply(tc.req, tc.shape)
		if tc.wantErr != "" {
			if err == nil || err.Error() != tc.wantErr {
				t.Errorf("%q: error %v, want %q", tc.req, err, tc.wantErr)
			}
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if a.Level != tc.applied || a.ThinkingBudget != tc.budget || (a.Requested == nil) != tc.requestNil {
			t.Errorf("%q: %+v", tc.req, a)
		}
		if tc.experts < 0 && a.ExpertsPerToken != nil || tc.experts >= 0 && (a.ExpertsPerToken == nil || *a.ExpertsPerToken != tc.experts) {
			t.Errorf("%q: experts %v, want %d", tc.req, a.ExpertsPerToken, tc.experts)
		}
		if want := (Tier{ExpertsPerToken: max(tc.experts, 0), ThinkingBudget: tc.budget}); a.Tier() != want {
			t.Errorf("%q: tier %+v, want %+v", tc.req, a.Tier(), want)
		}
	}
}
