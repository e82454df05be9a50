package server

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/stepflash/stepflash/engine"
	"github.com/stepflash/stepflash/model"
)

func TestEffortConfigPolicy(t *testing.T) {
	moe := &model.Config{Arch: "qwen3moe", NExpert: 8, NExpertUse: 4}
	dense := &model.Config{Arch: "qwen3"}
	type tiers = [3][2]int // {experts per token, thinking budget} of low, medium, high
	cases := []struct {
		name    string
		cfg     *model.Config
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
			var c EffortConfig
			err := json.Unmarshal([]byte(tc.json), &c)
			var p engine.EffortPolicy
			if err == nil {
				p, err = c.Policy(tc.cfg)
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
			for i, e := range engine.Efforts {
				got[i] = [2]int{p[e].ExpertsPerToken, p[e].ThinkingBudget}
			}
			if got != tc.want {
				t.Fatalf("policy %v, want %v", got, tc.want)
			}
			if err := checkPolicy(p, tc.cfg); err != nil {
				t.Fatalf("the resolved policy fails its own check: %v", err)
			}
		})
	}
	var nilCfg *EffortConfig
	if p, err := nilCfg.Policy(moe); err != nil || p[engine.EffortLow] != (engine.Tier{ExpertsPerToken: 2}) {
		t.Errorf("nil config: %v %v", p, err)
	}
}

func TestCheckPolicy(t *testing.T) {
	moe := &model.Config{NExpert: 8, NExpertUse: 4}
	ok := engine.EffortPolicy{engine.EffortLow: {ExpertsPerToken: 0}, engine.EffortMedium: {}, engine.EffortHigh: {ThinkingBudget: -1}}
	cases := []struct {
		name    string
		cfg     *model.Config
		edit    func(engine.EffortPolicy)
		wantErr string
	}{
		{"valid", moe, func(engine.EffortPolicy) {}, ""},
		{"missing tier", moe, func(p engine.EffortPolicy) { delete(p, engine.EffortHigh) }, `no "high" tier`},
		{"too many experts", moe, func(p engine.EffortPolicy) { p[engine.EffortLow] = engine.Tier{ExpertsPerToken: 5} }, "allowed 1..4"},
		{"negative experts", moe, func(p engine.EffortPolicy) { p[engine.EffortLow] = engine.Tier{ExpertsPerToken: -1} }, "allowed 1..4"},
		{"experts on dense", &model.Config{}, func(p engine.EffortPolicy) { p[engine.EffortLow] = engine.Tier{ExpertsPerToken: 1} }, "dense model"},
		{"budget -2", moe, func(p engine.EffortPolicy) { p[engine.EffortMedium] = engine.Tier{ThinkingBudget: -2} }, "thinking budget -2"},
	}
	for _, tc := range cases {
		p := engine.EffortPolicy{}
		for k, v := range ok {
			p[k] = v
		}
		tc.edit(p)
		err := checkPolicy(p, tc.cfg)
		if (tc.wantErr == "") != (err == nil) || err != nil && !strings.Contains(err.Error(), tc.wantErr) {
			t.Errorf("%s: error %v, want %q", tc.name, err, tc.wantErr)
		}
	}
}

func TestDescribePolicy(t *testing.T) {
	moe := &model.Config{NExpert: 8, NExpertUse: 4}
	p := engine.EffortPolicy{engine.EffortLow: {ExpertsPerToken: 2}, engine.EffortMedium: {ThinkingBudget: 5}, engine.EffortHigh: {ExpertsPerToken: 4, ThinkingBudget: -1}}
	want := "low: 2 experts, no thinking; medium: 4 experts, 5 thinking tokens; high: 4 experts, unlimited thinking"
	if got := DescribePolicy(p, moe); got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	if got := DescribePolicy(p, &model.Config{}); !strings.HasPrefix(got, "low: no thinking; medium: 5 thinking") {
		t.Errorf("dense: %q", got)
	}
}
