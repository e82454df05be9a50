package eval

import (
	"fmt"
	"net/url"
	"slices"
)

// Summary is what the report shows, computed from the calls.
type Summary struct {
	Arms []ArmSummary `json:"arms"`
	// Paired is head2head's comparison of arm a with arm b.
	Paired *Paired `json:"paired,omitempty"`
	// Steps is the advisor suite's cost per loop step, per arm.
	Steps []StepCost `json:"steps,omitempty"`
	// CostSource says where the costs come from: "usage" (the endpoint's
	// usage.cost), "prices" (computed from tokens), "mixed" or "none".
	CostSource string `json:"cost_source"`
}

// ArmSummary is one tier, endpoint or setting over every pass.
type ArmSummary struct {
	Arm   string `json:"arm"`
	Label string `json:"label"`
	Calls int    `json:"calls"`
	// Errors counts calls that got no answer (scored wrong).
	Errors int `json:"errors"`
	// PassScores is the share right on each pass (1-based pass i at i-1).
	PassScores []float64 `json:"pass_scores"`
	Mean       float64   `json:"mean"`
	Min        float64   `json:"min"`
	Max        float64   `json:"max"`
	// Items is how many tasks (or loops) each pass scored.
	Items int `json:"items"`
	// Mean latency per call, milliseconds.
	TTFTMs  float64 `json:"ttft_ms"`
	TotalMs float64 `json:"total_ms"`
	// Mean tokens per call.
	Prompt     float64 `json:"prompt_tokens"`
	Cached     float64 `json:"cached_tokens"`
	Completion float64 `json:"completion_tokens"`
	Reasoning  float64 `json:"reasoning_tokens"`
	// CostPerItem is the mean cost of one task (or loop); CostTotal is the
	// whole arm's.
	CostPerItem float64 `json:"cost_per_item"`
	CostTotal   float64 `json:"cost_total"`
	// Escalations counts calls usage.advisor says were escalated.
	Escalations int `json:"escalations,omitempty"`
	// Image is the mean of usage.prompt_tokens_details.image_tokens.
	Image float64 `json:"image_tokens,omitempty"`
	// Kinds is the vision suite's score by task kind (over every pass).
	Kinds []KindScore `json:"kinds,omitempty"`
}

// KindScore is one arm's score on one kind of task.
type KindScore struct {
	Kind  string  `json:"kind"`
	Score float64 `json:"score"`
	Right int     `json:"right"`
	Asked int     `json:"asked"`
}

// Paired is a head-to-head comparison: a minus b.
type Paired struct {
	A, B string
	// PassDiffs is a's score minus b's on each pass.
	PassDiffs []float64 `json:"pass_diffs"`
	MeanDiff  float64   `json:"mean_diff"`
	CILow     float64   `json:"ci_low"`
	CIHigh    float64   `json:"ci_high"`
	// Significant is true when the interval excludes 0.
	Significant bool   `json:"significant"`
	Method      string `json:"method"`
	Tasks       int    `json:"tasks"`
	// AWins / BWins count tasks right more often for a / for b.
	AWins int `json:"a_wins"`
	BWins int `json:"b_wins"`
}

// StepCost is one advisor loop step's mean cost and escalation rate in one arm.
type StepCost struct {
	Arm         string  `json:"arm"`
	Step        int     `json:"step"`
	Cost        float64 `json:"cost"`
	Calls       float64 `json:"calls"`
	Escalations float64 `json:"escalations"`
	Success     float64 `json:"success"`
}

// armOrder is the order arms are reported in, with their labels.
func armOrder(cfg *Config) (arms, labels []string) {
	switch cfg.Suite {
	case SuiteEffort:
		return cfg.Tiers, cfg.Tiers
	case SuiteHead2Head:
		a, b := cfg.Endpoints[0], cfg.Endpoints[1]
		la, lb := a.Model, b.Model
		if la == lb {
			la, lb = a.Model+" @ "+host(a.BaseURL), b.Model+" @ "+host(b.BaseURL)
		}
		return []string{ArmA, ArmB}, []string{la, lb}
	case SuiteAdvisor:
		return advisorArms(cfg)
	case SuiteVision:
		model, capModel := "", cfg.CaptionModel
		if len(cfg.Endpoints) > 0 {
			model = cfg.Endpoints[0].Model
		}
		arms = cfg.Arms
		if arms == nil {
			arms = []string{ArmNative, ArmChained}
		}
		for _, a := range arms {
			if a == ArmNative {
				labels = append(labels, "native image ("+model+")")
			} else {
				labels = append(labels, "caption ("+capModel+") → text ("+model+")")
			}
		}
		return arms, labels
	}
	return nil, nil
}

func host(u string) string {
	if p, err := url.Parse(u); err == nil && p.Host != "" {
		return p.Host
	}
	return u
}

// summarize computes the summary of calls.
func summarize(cfg *Config, calls []Call) *Summary {
	s := &Summary{}
	arms, labels := armOrder(cfg)
	sources := map[string]bool{}
	for _, c := range calls {
		if c.CostSource != "" {
			sources[c.CostSource] = true
		}
	}
	switch len(sources) {
	case 0:
		s.CostSource = "none"
	case 1:
		for k := range sources {
			s.CostSource = k
		}
	default:
		s.CostSource = "mixed"
	}
	for i, arm := range arms {
		var cs []Call
		for _, c := range calls {
			if c.Arm == arm {
				cs = append(cs, c)
			}
		}
		s.Arms = append(s.Arms, armSummary(cfg, arm, labels[i], cs))
	}
	if cfg.Suite == SuiteHead2Head {
		s.Paired = paired(cfg, calls, labels)
	}
	if cfg.Suite == SuiteAdvisor {
		s.Steps = stepCosts(cfg, calls, arms)
	}
	return s
}

// itemOf names what a call is scored as part of: its task, or for the
// advisor suite its loop.
func itemOf(c Call) string { return c.Task }

// scored reports whether c is scored: every call but the vision suite's
// captioning calls (step 1 of the tool-chained arm).
func scored(cfg *Config, c Call) bool { return !(cfg.Suite == SuiteVision && c.Step == 1) }

func armSummary(cfg *Config, arm, label string, cs []Call) ArmSummary {
	a := ArmSummary{Arm: arm, Label: label, Calls: len(cs)}
	a.PassScores = make([]float64, cfg.Passes)
	items := map[string]bool{}
	for pass := 1; pass <= cfg.Passes; pass++ {
		right, n := itemScores(cfg, cs, pass)
		if n > 0 {
			a.PassScores[pass-1] = float64(right) / float64(n)
		}
		a.Items = max(a.Items, n)
	}
	var ttft, total []float64
	for _, c := range cs {
		items[itemOf(c)] = true
		if c.Error != "" {
			a.Errors++
		}
		ttft, total = append(ttft, c.TTFTMs), append(total, c.TotalMs)
		a.Prompt += float64(c.Tokens.Prompt)
		a.Cached += float64(c.Tokens.Cached)
		a.Completion += float64(c.Tokens.Completion)
		a.Reasoning += float64(c.Tokens.Reasoning)
		a.CostTotal += c.Cost
		if c.Advisor != nil && c.Advisor.Escalated {
			a.Escalations++
		}
	}
	for _, c := range cs {
		a.Image += float64(c.Tokens.Image)
	}
	n := float64(len(cs))
	if cfg.Suite == SuiteVision {
		// Per task: the tool-chained arm's two calls add up, and its time
		// to first token is the caption's whole time plus the answer's.
		ttft, total = visionLatency(cs)
		n = float64(len(ttft))
		a.Kinds = kindScores(cfg, cs)
	}
	if n > 0 {
		a.Prompt, a.Cached, a.Completion, a.Reasoning, a.Image = a.Prompt/n, a.Cached/n, a.Completion/n, a.Reasoning/n, a.Image/n
	}
	if n := a.Items * cfg.Passes; n > 0 {
		a.CostPerItem = a.CostTotal / float64(n)
	}
	a.TTFTMs, a.TotalMs = mean(ttft), mean(total)
	a.Mean = mean(a.PassScores)
	a.Min, a.Max = minMax(a.PassScores)
	return a
}

// itemScores counts the items of one pass that are right, and the items.
func itemScores(cfg *Config, cs []Call, pass int) (right, n int) {
	if cfg.Suite == SuiteAdvisor {
		return loopScores(cs, pass)
	}
	for _, c := range cs {
		if c.Pass != pass || !scored(cfg, c) {
			continue
		}
		n++
		if c.Correct {
			right++
		}
	}
	return right, n
}

// paired compares arm a with arm b task by task: a task's difference is
// a's share right over the passes minus b's; the interval is the paired
// bootstrap over tasks (PairedBootstrap).
func paired(cfg *Config, calls []Call, labels []string) *Paired {
	p := &Paired{A: labels[0], B: labels[1], Method: fmt.Sprintf("paired bootstrap over tasks, %d resamples, 95%% percentile interval", BootstrapResamples)}
	type key struct {
		task string
		pass int
	}
	score := map[string]map[key]float64{ArmA: {}, ArmB: {}}
	for _, c := range calls {
		if m := score[c.Arm]; m != nil {
			v := 0.0
			if c.Correct {
				v = 1
			}
			m[key{c.Task, c.Pass}] = v
		}
	}
	var tasks []string
	for _, t := range cfg.Tasks {
		tasks = append(tasks, t.ID)
	}
	var perTask []float64
	passSum := make([]float64, cfg.Passes)
	passN := make([]int, cfg.Passes)
	for _, t := range tasks {
		d, n := 0.0, 0
		for pass := 1; pass <= cfg.Passes; pass++ {
			k := key{t, pass}
			a, okA := score[ArmA][k]
			b, okB := score[ArmB][k]
			if !okA || !okB {
				continue // an unfinished pair is left out
			}
			d += a - b
			n++
			passSum[pass-1] += a - b
			passN[pass-1]++
		}
		if n == 0 {
			continue
		}
		d /= float64(n)
		perTask = append(perTask, d)
		if d > 0 {
			p.AWins++
		} else if d < 0 {
			p.BWins++
		}
	}
	for i := range passSum {
		if passN[i] > 0 {
			p.PassDiffs = append(p.PassDiffs, passSum[i]/float64(passN[i]))
		}
	}
	p.Tasks = len(perTask)
	p.MeanDiff = mean(perTask)
	p.CILow, p.CIHigh = PairedBootstrap(perTask)
	p.Significant = len(perTask) > 0 && (p.CILow > 0 || p.CIHigh < 0)
	return p
}

// visionLatency is each task's (and pass's) time to the first token of
// the answer and its total time, the calls of the tool-chained arm added.
func visionLatency(cs []Call) (ttft, total []float64) {
	type item struct {
		task string
		pass int
	}
	caption := map[item]float64{}
	for _, c := range cs {
		if c.Step == 1 {
			caption[item{c.Task, c.Pass}] = c.TotalMs
		}
	}
	for _, c := range cs {
		if c.Step == 1 {
			continue
		}
		before := caption[item{c.Task, c.Pass}]
		ttft, total = append(ttft, before+c.TTFTMs), append(total, before+c.TotalMs)
	}
	return ttft, total
}

// kindScores is the share right of each task kind over every pass.
func kindScores(cfg *Config, cs []Call) []KindScore {
	var out []KindScore
	for _, k := range cfg.Kinds {
		ks := KindScore{Kind: k}
		for _, c := range cs {
			if scored(cfg, c) && kindOf(c.Task) == k {
				ks.Asked++
				if c.Correct {
					ks.Right++
				}
			}
		}
		if ks.Asked > 0 {
			ks.Score = float64(ks.Right) / float64(ks.Asked)
		}
		out = append(out, ks)
	}
	return out
}

func stepCosts(cfg *Config, calls []Call, arms []string) []StepCost {
	var out []StepCost
	for _, arm := range arms {
		for step := 1; step <= cfg.Steps; step++ {
			sc := StepCost{Arm: arm, Step: step}
			loops := map[string]bool{}
			okLoops := map[string]bool{}
			for _, c := range calls {
				if c.Arm != arm || c.Step != step {
					continue
				}
				lk := fmt.Sprintf("%d|%s", c.Pass, c.Task)
				loops[lk] = true
				sc.Cost += c.Cost
				sc.Calls++
				if c.Advisor != nil && c.Advisor.Escalated {
					sc.Escalations++
				}
				if c.Correct {
					okLoops[lk] = true
				}
			}
			if n := float64(len(loops)); n > 0 {
				sc.Cost /= n
				sc.Calls /= n
				sc.Escalations /= n
				sc.Success = float64(len(okLoops)) / n
			}
			out = append(out, sc)
		}
	}
	slices.SortStableFunc(out, func(a, b StepCost) int { return a.Step - b.Step })
	return out
}
