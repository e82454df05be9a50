package effort

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

// TestLowTierOddExperts pins the low tier's experts per token, max(1, k/2)
// of the k trained (docs/effort.md), for odd and small k: k/2 rounds down
// (8 experts with 3 used → 1, not 2), and it is never 0, which would mean
// the trained count. Medium and high keep k. The count is what the policy
// holds, what Apply hands the engine, what the echo shows and what Describe
// logs, with and without a configuration that leaves low alone.
func TestLowTierOddExperts(t *testing.T) {
	cases := []struct {
		experts, used int
		low           int // worked out by hand
	}{
		{8, 1, 1}, // 1/2 rounds to 0: raised to 1
		{8, 2, 1},
		{8, 3, 1}, // 1.5 rounds down
		{8, 5, 2},
		{16, 7, 3},
		{8, 8, 4},
		{64, 9, 4},
		{128, 15, 7},
	}
	for _, tc := range cases {
		s := Shape{Arch: "qwen3moe", Experts: tc.experts, ExpertsUsed: tc.used}
		t.Run(fmt.Sprintf("%d of %d", tc.used, tc.experts), func(t *testing.T) {
			var cfg Config
			if err := json.Unmarshal([]byte(`{"medium":{"thinking_budget":64}}`), &cfg); err != nil {
				t.Fatal(err)
			}
			configured, err := cfg.Policy(s)
			if err != nil {
				t.Fatal(err)
			}
			for name, p := range map[string]Policy{"default": DefaultPolicy(s), "configured": configured} {
				if err := p.Check(s); err != nil {
					t.Fatalf("%s policy fails its check: %v", name, err)
				}
				if got := p[Low].ExpertsPerToken; got != tc.low {
					t.Errorf("%s policy: low tier has %d experts per token, want %d", name, got, tc.low)
				}
				for _, l := range []Level{Medium, High} {
					if got := p[l].ExpertsPerToken; got != tc.used {
						t.Errorf("%s policy: %s tier has %d experts per token, want the trained %d", name, l, got, tc.used)
					}
				}
				for _, req := range []string{"low", "none", "minimal"} {
					a, err := p.Apply(req, s)
					if err != nil {
						t.Fatal(err)
					}
					if a.ExpertsPerToken == nil || *a.ExpertsPerToken != tc.low || a.Tier().ExpertsPerToken != tc.low || a.ThinkingBudget != 0 {
						t.Errorf("%s policy, %q: applied %s with %v experts (tier %d) and thinking budget %d, want %d experts and no thinking",
							name, req, a.Level, deref(a.ExpertsPerToken), a.Tier().ExpertsPerToken, a.ThinkingBudget, tc.low)
					}
					echo, err := json.Marshal(a)
					if err != nil {
						t.Fatal(err)
					}
					if want := fmt.Sprintf(`"applied":"low","experts_per_token":%d,`, tc.low); !strings.Contains(string(echo), want) {
						t.Errorf("%s policy, %q: echo %s, want it to contain %s", name, req, echo, want)
					}
				}
				if d, want := p.Describe(s), fmt.Sprintf("low: %d experts, no thinking; medium: %d experts", tc.low, tc.used); !strings.HasPrefix(d, want) {
					t.Errorf("%s policy: Describe %q, want it to start %q", name, d, want)
				}
			}
		})
	}
}

func deref(p *int) any {
	if p == nil {
		return nil
	}
	return *p
}
