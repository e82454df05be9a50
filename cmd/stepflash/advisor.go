package main

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/stepflash/stepflash/advisor"
	"github.com/stepflash/stepflash/api"
	"github.com/stepflash/stepflash/backend"
	"github.com/stepflash/stepflash/billing"
	"github.com/stepflash/stepflash/server"
	"github.com/stepflash/stepflash/upstream"
)

// advisorSpec is a model's "advisor" in the config: the advisor model (a
// local GGUF "model", or "upstreams", as for a served model) and Advisor
// Mode's settings (docs/advisor.md).
type advisorSpec struct {
	// The advisor model, as a served model is given ("model" with "ctx",
	// "parallel", "effort"; or "upstreams" with "routing"; "name",
	// "prices"); what only a served model takes (aliases, an advisor of
	// its own, a projector, a template file) is refused by check.
	modelSpec

	Mode           string   `json:"mode,omitempty"`
	Default        string   `json:"default,omitempty"`
	RepeatedErrors int      `json:"repeated_errors,omitempty"`
	LowConfidence  *float64 `json:"low_confidence,omitempty"`
	DraftTokens    int      `json:"draft_tokens,omitempty"`
	Quantile       float64  `json:"quantile,omitempty"`
	Timeout        duration `json:"timeout,omitempty"`
	PlanTokens     int      `json:"plan_tokens,omitempty"`
	KeyCap         int      `json:"key_cap,omitempty"`
	KeyWindow      duration `json:"key_window,omitempty"`
}

// target is the advisor model as a model spec.
func (a *advisorSpec) target() modelSpec {
	t := a.modelSpec
	if len(t.Upstreams) > 0 && t.Name == "" {
		t.Name = "advisor"
	}
	return t
}

// config is Advisor Mode's settings (no backend yet), defaults filled in.
func (a *advisorSpec) config() (advisor.Config, error) {
	c := advisor.Config{Mode: a.Mode, Default: a.Default, RepeatedErrors: a.RepeatedErrors, LowConfidence: a.LowConfidence,
		DraftTokens: a.DraftTokens, Quantile: a.Quantile, Timeout: time.Duration(a.Timeout), PlanTokens: a.PlanTokens,
		KeyCap: a.KeyCap, KeyWindow: time.Duration(a.KeyWindow)}
	return c, c.Check()
}

// check validates what an advisor spec says on its own.
func (a *advisorSpec) check(served modelSpec) error {
	t := a.target()
	if len(t.Aliases) > 0 || t.Advisor != nil || t.MMProj != "" || t.ChatTemplateFile != "" || t.Pooling != "" {
		return fmt.Errorf("advisor: \"aliases\", \"advisor\", \"mmproj\", \"chat_template_file\" and \"pooling\" apply to served models, not to an advisor")
	}
	if err := t.checkTarget(); err != nil {
		return fmt.Errorf("advisor: %w", err)
	}
	if len(served.Upstreams) > 0 && len(t.Upstreams) == 0 {
		return fmt.Errorf("advisor: a model served by upstreams takes an advisor served by upstreams too (a local advisor would load before the gateway listens)")
	}
	_, err := a.config()
	return err
}

// flagAdvisor is --advisor FILE_OR_URL: a local GGUF (or hub reference), or
// an OpenAI-compatible server's URL[#MODEL], whose key is the known
// service's variable (keyEnv ""), never --upstream-key-env's: that key
// belongs to the served model's upstream, not to another host.
func flagAdvisor(s, keyEnv string) (*advisorSpec, error) {
	if strings.HasPrefix(s, "http://") || strings.HasPrefix(s, "https://") {
		c, err := upstream.ParseFlag(s)
		if err != nil {
			return nil, fmt.Errorf("--advisor %s", err)
		}
		return &advisorSpec{modelSpec: modelSpec{Name: cmp.Or(c.Model, "advisor"), Upstreams: []upstreamSpec{{BaseURL: c.BaseURL, Model: c.Model, APIKeyEnv: keyEnv}}}}, nil
	}
	return &advisorSpec{modelSpec: modelSpec{Model: s}}, nil
}

// advisorMetrics registers Advisor Mode's counter and returns what
// observes each request (counting it, and logging escalations unless
// quiet).
func advisorMetrics(srv *server.Server, logger *slog.Logger) func(model string) func(context.Context, api.AdvisorUsage) {
	count := srv.Counter("stepflash_advisor_requests_total",
		"Requests to models with an advisor, by model, reason (none, repeated_errors, low_confidence, always) and outcome (escalated; served: the served model answered, with the error that kept it, if any).",
		"model", "reason", "outcome")
	cost := srv.Counter("stepflash_advisor_cost_usd_total", "The advisors' cost in USD, by served model.", "model")
	return func(model string) func(context.Context, api.AdvisorUsage) {
		return func(ctx context.Context, u api.AdvisorUsage) {
			outcome := "served"
			switch {
			case u.Escalated:
				outcome = "escalated"
			case u.Error != "":
				outcome = "failed"
			}
			count(1, model, cmp.Or(u.Reason, "none"), outcome)
			cost(u.Cost, model)
			if logger != nil && u.Reason != "" {
				logger.Info("advisor", "request_id", backend.RequestID(ctx), "model", model, "reason", u.Reason, "mode", u.Mode,
					"escalated", u.Escalated, "advisor", u.Model, "prompt_tokens", u.PromptTokens, "completion_tokens", u.CompletionTokens,
					"cost_usd", u.Cost, "latency_ms", u.LatencyMS, "error", u.Error)
			}
		}
	}
}

// advisorMiddleware builds the advisor of spec (loading a local one, or
// starting its upstream pool) and returns the served model's Advisor Mode
// middleware; nil when spec has no advisor. onClose is handed what to
// close at shutdown.
func advisorMiddleware(ctx context.Context, spec modelSpec, served string, o *serveOptions, stderr io.Writer, onClose func(func())) (backend.Middleware, error) {
	a := spec.Advisor
	if a == nil {
		return nil, nil
	}
	c, err := a.config()
	if err != nil {
		return nil, err
	}
	t := a.target()
	var b backend.Backend
	var name string
	if len(t.Upstreams) > 0 {
		pc, warnings, err := t.poolConfig(o.getenv)
		if err != nil {
			return nil, fmt.Errorf("advisor of %q: %w", served, err)
		}
		for _, w := range warnings {
			fmt.Fprintf(stderr, "stepflash serve: warning: advisor of %q: %s\n", served, w)
		}
		pc.Logger = slog.New(slog.NewTextHandler(stderr, nil))
		p, err := upstream.NewPool(pc)
		if err != nil {
			return nil, fmt.Errorf("advisor of %q: %w", served, err)
		}
		onClose(p.Close)
		p.Start()
		b, name = p, t.Name
	} else {
		path, err := resolveModel(ctx, o, t.Model, stderr)
		if err != nil {
			return nil, fmt.Errorf("advisor of %q: %w", served, err)
		}
		lm, err := loadLocal(path, t, o, stderr)
		if err != nil {
			return nil, fmt.Errorf("advisor of %q: %w", served, err)
		}
		onClose(lm.close)
		b, name = lm.backend, cmp.Or(t.Name, modelNameOf(path))
		fmt.Fprintf(stderr, "stepflash serve: loaded %s as the advisor of %q (weights: %s; context %d; template: %s; effort %s)\n",
			path, served, lm.weights, lm.context, lm.template, lm.policy)
	}
	prices := billing.Default
	if t.Prices != nil {
		prices = *t.Prices
	}
	c.Advisor, c.Model = backend.Chain(b, billing.Pricing(prices)), name
	if o.advisorObserve != nil {
		c.Observe = o.advisorObserve(served)
	}
	return advisor.New(c)
}
