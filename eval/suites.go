package eval

import (
	"context"
)

// userMessage is a one-message conversation.
func userMessage(q string) []map[string]any {
	return []map[string]any{{"role": "user", "content": q}}
}

// effort asks every task at each tier, pass after pass (tiers interleaved
// task by task, so that a load change on the endpoint hits them alike).
func (r *runner) effort(ctx context.Context) error {
	var jobs []func(context.Context) error
	for pass := 1; pass <= r.cfg.Passes; pass++ {
		for _, t := range r.cfg.Tasks {
			for _, tier := range r.cfg.Tiers {
				s := callSpec{arm: tier, pass: pass, task: t, client: r.clients[0], effort: tier, messages: userMessage(t.Question)}
				jobs = append(jobs, func(ctx context.Context) error {
					c, err := r.do(ctx, s)
					if err != nil {
						return err
					}
					r.checkApplied(c, tier)
					return nil
				})
			}
		}
	}
	return r.runJobs(ctx, "calls", jobs)
}

// checkApplied notes an endpoint that answers a tier with another one, or
// that echoes no tier (its compute cannot be told apart here).
func (r *runner) checkApplied(c Call, tier string) {
	switch {
	case c.Error != "":
		r.note("%s at %s failed: %s", c.Model, tier, c.Error)
	case c.Applied == nil:
		r.note("%s does not echo the applied effort (no stepflash extension): whether it honours reasoning_effort shows only in the tokens and scores below", c.Model)
	case c.Applied.Applied != tier:
		r.note("%s applied %q when asked for %q", c.Model, c.Applied.Applied, tier)
	case c.Applied.Upstream != nil:
		r.note("%s passed the tier to an upstream, which does not verify that it is honoured", c.Model)
	}
}

// Head-to-head arms.
const (
	ArmA = "a"
	ArmB = "b"
)

// head2head asks both endpoints every task, pass after pass; the calls of
// one task and pass are the pair compared.
func (r *runner) head2head(ctx context.Context) error {
	var jobs []func(context.Context) error
	for pass := 1; pass <= r.cfg.Passes; pass++ {
		for _, t := range r.cfg.Tasks {
			for i, arm := range []string{ArmA, ArmB} {
				s := callSpec{arm: arm, pass: pass, task: t, client: r.clients[i], effort: r.cfg.Effort, messages: userMessage(t.Question)}
				jobs = append(jobs, func(ctx context.Context) error {
					c, err := r.do(ctx, s)
					if err == nil && c.Error != "" {
						r.note("%s: %s", c.Model, c.Error)
					}
					return err
				})
			}
		}
	}
	return r.runJobs(ctx, "calls", jobs)
}

// Vision arms.
const (
	ArmNative  = "native"
	ArmChained = "chained"
)

// Advisor arms.
const (
	ArmAuto     = "auto"
	ArmOff      = "off"
	ArmBaseline = "baseline"
)
