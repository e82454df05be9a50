// Package advisor is Advisor Mode: backend middleware that hands a served
// model's failure-prone turns to a larger advisor model, decided per request
// from the conversation and the model's own draft, and shown only in
// usage.advisor, the X-Advisor header, the ledger and /metrics.
package advisor

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"time"

	"github.com/stepflash/stepflash/api"
	"github.com/stepflash/stepflash/backend"
)

// Modes.
const (
	// Handoff: the advisor writes the turn.
	Handoff = "handoff"
	// Advise: the advisor writes a short plan that the served model
	// follows when it writes the turn.
	Advise = "advise"
)

// Reasons, as usage.advisor.reason and the X-Advisor header give them.
const (
	ReasonRepeatedErrors = "repeated_errors"
	ReasonLowConfidence  = "low_confidence"
	// ReasonAlways: the request (or the model's default) said "always".
	ReasonAlways = "always"
)

// Defaults of Config's zero fields.
const (
	DefaultRepeatedErrors = 2
	// DefaultDraftTokens scores the whole draft and the default quantile
	// is its minimum: on the trained flash model's 200 test problems the
	// minimum log-probability of the whole draft told its wrong answers
	// from its right ones best (docs/advisor.md).
	DefaultDraftTokens = -1
	DefaultTimeout     = 60 * time.Second
	DefaultPlanTokens  = 256
	DefaultKeyWindow   = time.Hour
)

// Config is one served model's Advisor Mode.
type Config struct {
	// Advisor answers escalated turns: a local model or an upstream, with
	// its own pricing middleware (its usage arrives priced).
	Advisor backend.Backend
	// Model is the advisor's name in usage.advisor.model.
	Model string
	// Mode is Handoff (default) or Advise.
	Mode string
	// Default is the setting for requests that do not send "advisor":
	// "auto" (default), "off" or "always".
	Default string
	// RepeatedErrors is how many failing tool results in a row, at the end
	// of the conversation, escalate a turn (0: DefaultRepeatedErrors; -1:
	// never).
	RepeatedErrors int
	// LowConfidence, when set, turns the low_confidence signal on: the
	// served model drafts the turn with log-probabilities, and when the
	// Quantile of its first DraftTokens tokens' log-probabilities is below
	// LowConfidence the draft is thrown away and the turn escalated.
	// Until the draft is scored nothing reaches the client. DraftTokens -1
	// scores the whole draft (the best predictor, at the cost of streaming:
	// the answer is held until it is complete). Quantile 0 is the minimum.
	LowConfidence *float64
	DraftTokens   int
	Quantile      float64
	// Timeout bounds the advisor's part of a turn (default 60 s): past it
	// the served model answers.
	Timeout time.Duration
	// PlanTokens caps an Advise plan (default 256).
	PlanTokens int
	// KeyCap, when positive, is how many turns of one API key may be
	// escalated per KeyWindow (default an hour); past it the served model
	// answers and usage.advisor.error says why.
	KeyCap    int
	KeyWindow time.Duration
	// Observe, when set, is called once per request with what Advisor Mode
	// did (for metrics and logs).
	Observe func(ctx context.Context, u api.AdvisorUsage)
}

// Check fills in the defaults of the settings and refuses what cannot
// work (the Advisor backend aside).
func (c *Config) Check() error {
	switch c.Mode {
	case "":
		c.Mode = Handoff
	case Handoff, Advise:
	default:
		return fmt.Errorf("advisor: mode %q: want %s or %s", c.Mode, Handoff, Advise)
	}
	switch c.Default {
	case "":
		c.Default = "auto"
	case "auto", "off", "always":
	default:
		return fmt.Errorf("advisor: default %q: want auto, off or always", c.Default)
	}
	if c.RepeatedErrors == 0 {
		c.RepeatedErrors = DefaultRepeatedErrors
	}
	if c.RepeatedErrors < -1 {
		return fmt.Errorf("advisor: repeated_errors %d: want a count of 1 or more, or -1 for off", c.RepeatedErrors)
	}
	if c.DraftTokens == 0 {
		c.DraftTokens = DefaultDraftTokens
	}
	if c.DraftTokens < -1 || c.Quantile < 0 || c.Quantile > 1 {
		return fmt.Errorf("advisor: draft_tokens %d and quantile %g: want 1 or more (-1: the whole draft), and a quantile in [0, 1]", c.DraftTokens, c.Quantile)
	}
	if c.LowConfidence != nil && (math.IsNaN(*c.LowConfidence) || *c.LowConfidence > 0) {
		return fmt.Errorf("advisor: low_confidence %g: want a log-probability (0 or below)", *c.LowConfidence)
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.PlanTokens == 0 {
		c.PlanTokens = DefaultPlanTokens
	}
	if c.KeyWindow == 0 {
		c.KeyWindow = DefaultKeyWindow
	}
	if c.Timeout < 0 || c.PlanTokens < 1 || c.KeyCap < 0 || c.KeyWindow < 0 {
		return errors.New("advisor: timeout, plan_tokens, key_cap and key_window must not be negative")
	}
	return nil
}

// New returns the middleware that gives a served model's backend Advisor
// Mode with c. It goes outside the served model's pricing (it adds the
// advisor's priced cost to the usage) and inside the ledger's recording
// (which then records the advisor's share).
func New(c Config) (backend.Middleware, error) {
	if c.Advisor == nil {
		return nil, errors.New("advisor: no advisor backend")
	}
	if err := c.Check(); err != nil {
		return nil, err
	}
	caps := &capper{uses: map[string][]time.Time{}}
	return func(next backend.Backend) backend.Backend {
		return &mw{c: c, next: next, caps: caps, now: time.Now}
	}, nil
}

type mw struct {
	c    Config
	next backend.Backend
	caps *capper
	now  func() time.Time
}

// Info is the served model's, naming its advisor.
func (m *mw) Info() backend.Info {
	i := m.next.Info()
	i.Advisor = m.c.Model
	return i
}

// Embed is the served model's: Advisor Mode concerns turns, not embeddings.
func (m *mw) Embed(ctx context.Context, req *api.EmbeddingRequest) (*api.EmbeddingResponse, error) {
	return backend.Embed(ctx, m.next, req)
}

// Tokenize is the served model's.
func (m *mw) Tokenize(ctx context.Context, req *api.TokenizeRequest) (*api.TokenizeResponse, error) {
	t, err := backend.AsTokenizer(m.next)
	if err != nil {
		return nil, err
	}
	return t.Tokenize(ctx, req)
}

// Detokenize is the served model's.
func (m *mw) Detokenize(ctx context.Context, req *api.DetokenizeRequest) (*api.DetokenizeResponse, error) {
	t, err := backend.AsTokenizer(m.next)
	if err != nil {
		return nil, err
	}
	return t.Detokenize(ctx, req)
}

// CountChat is the served model's (what the turn costs before any
// escalation).
func (m *mw) CountChat(ctx context.Context, req *api.ChatCompletionRequest) (int, error) {
	t, err := backend.AsTokenizer(m.next)
	if err != nil {
		return 0, err
	}
	return t.CountChat(ctx, req)
}

// QueueDepth is the served model's.
func (m *mw) QueueDepth() int {
	if q, ok := m.next.(backend.Queuer); ok {
		return q.QueueDepth()
	}
	return 0
}

func (m *mw) setting(v *string) string {
	if v != nil {
		return *v
	}
	return m.c.Default
}

func (m *mw) observe(ctx context.Context, au *api.AdvisorUsage) {
	if m.c.Observe != nil {
		m.c.Observe(ctx, *au)
	}
}

// Chat decides, answers and reports.
func (m *mw) Chat(ctx context.Context, req *api.ChatCompletionRequest, emit func(*api.ChatCompletionChunk) error) error {
	au := &api.AdvisorUsage{}
	defer m.observe(ctx, au)
	r := *req
	r.Advisor = nil // decided here: nothing further down escalates again
	reason := ""
	switch m.setting(req.Advisor) {
	case "off":
		return m.served(ctx, &r, emit, au, "")
	case "always":
		reason = ReasonAlways
	default:
		if m.c.RepeatedErrors > 0 && TrailingFailures(req.Messages) >= m.c.RepeatedErrors {
			reason = ReasonRepeatedErrors
		}
	}
	if reason == "" && m.c.LowConfidence != nil && (r.N == nil || *r.N == 1) {
		return m.drafted(ctx, &r, emit, au)
	}
	if reason == "" {
		return m.served(ctx, &r, emit, au, "")
	}
	return m.escalate(ctx, &r, emit, au, reason, nil)
}

// served lets the served model answer, with au as usage.advisor and, when
// the turn was escalated (Advise), reason in the X-Advisor header.
func (m *mw) served(ctx context.Context, req *api.ChatCompletionRequest, emit func(*api.ChatCompletionChunk) error, au *api.AdvisorUsage, header string) error {
	return m.next.Chat(ctx, req, func(ch *api.ChatCompletionChunk) error {
		if ch.Stepflash != nil && header != "" {
			ch.Stepflash.Advisor = header
		}
		if u := ch.FinalUsage(); u != nil {
			addAdvisor(u, au)
		}
		return emit(ch)
	})
}

// addAdvisor puts au into u: usage.advisor, and its cost into the cost.
func addAdvisor(u *api.Usage, au *api.AdvisorUsage) {
	a := *au
	u.Advisor = &a
	u.CostDetails.Advisor += au.Cost
	u.Cost += au.Cost
}

// errDraftRejected stops a draft that scored under the threshold.
var errDraftRejected = errors.New("advisor: draft rejected")

// drafted runs the served model with log-probabilities and holds its
// chunks back until DraftTokens tokens (or the whole answer) are in; then
// it scores them and either lets the answer through or throws it away and
// escalates.
func (m *mw) drafted(ctx context.Context, req *api.ChatCompletionRequest, emit func(*api.ChatCompletionChunk) error, au *api.AdvisorUsage) error {
	wantLP := req.Logprobs
	r := *req
	r.Logprobs = true
	var held []*api.ChatCompletionChunk
	var lps []float64
	decided := false
	pass := func(ch *api.ChatCompletionChunk) error {
		if !wantLP {
			for i := range ch.Choices {
				ch.Choices[i].Logprobs = nil
			}
		}
		if u := ch.FinalUsage(); u != nil {
			addAdvisor(u, au)
		}
		return emit(ch)
	}
	dctx, cancel := context.WithCancel(ctx)
	defer cancel()
	err := m.next.Chat(dctx, &r, func(ch *api.ChatCompletionChunk) error {
		if decided {
			return pass(ch)
		}
		held = append(held, ch)
		for _, c := range ch.Choices {
			if c.Logprobs != nil {
				for _, t := range c.Logprobs.Content {
					lps = append(lps, t.Logprob)
				}
			}
		}
		if (m.c.DraftTokens < 0 || len(lps) < m.c.DraftTokens) && ch.FinalUsage() == nil {
			return nil
		}
		scored := lps
		if m.c.DraftTokens > 0 {
			scored = lps[:min(len(lps), m.c.DraftTokens)]
		}
		conf := Quantile(scored, m.c.Quantile)
		au.DraftTokens = len(scored)
		if !math.IsNaN(conf) {
			au.Confidence = &conf
			if conf < *m.c.LowConfidence {
				return errDraftRejected
			}
		}
		decided = true
		for _, h := range held {
			if err := pass(h); err != nil {
				return err
			}
		}
		held = nil
		return nil
	})
	if errors.Is(err, errDraftRejected) {
		cancel()
		var fallback func() error
		if last := held[len(held)-1]; last.FinalUsage() != nil {
			// The whole draft is here: should the escalation not land,
			// it is the answer (not run a second time).
			fallback = func() error {
				for _, h := range held {
					if err := pass(h); err != nil {
						return err
					}
				}
				return nil
			}
		}
		return m.escalate(ctx, req, emit, au, ReasonLowConfidence, fallback)
	}
	if err == nil && !decided {
		// A backend that ended without a usage chunk: let out what it gave.
		for _, h := range held {
			if err := pass(h); err != nil {
				return err
			}
		}
	}
	return err
}

// escalate hands the turn to the advisor (Handoff) or has it plan the turn
// (Advise). When the advisor fails, times out or the key's cap is reached,
// the served model answers and au.Error says why.
func (m *mw) escalate(ctx context.Context, req *api.ChatCompletionRequest, emit func(*api.ChatCompletionChunk) error, au *api.AdvisorUsage, reason string, fallback func() error) error {
	au.Reason = reason
	if fallback == nil {
		fallback = func() error { return m.served(ctx, req, emit, au, "") }
	}
	start := m.now()
	if !m.admit(ctx, au, start) {
		return fallback()
	}
	au.Mode, au.Model = m.c.Mode, m.c.Model
	actx, cancel := context.WithTimeout(ctx, m.c.Timeout)
	defer cancel()
	areq := *req
	if m.c.Mode == Advise {
		areq = planRequest(req, m.c.PlanTokens)
	}
	chunks, u, err := collect(func(emit func(*api.ChatCompletionChunk) error) error { return m.c.Advisor.Chat(actx, &areq, emit) })
	if !m.landed(ctx, au, start, u, err) {
		if ctx.Err() != nil {
			return ctx.Err() // the client went away
		}
		return fallback()
	}
	if m.c.Mode == Advise {
		return m.served(ctx, withPlan(req, planText(chunks)), emit, au, reason)
	}
	return handOver(chunks, m.next.Info().Label, reason, au, func(ch *api.ChatCompletionChunk) **api.Extension { return &ch.Stepflash }, emit)
}

// handOver emits an advisor's collected chunks as the turn: its reason on
// their extension (the X-Advisor header), and a final usage that is the
// advisor's alone (the served model wrote nothing of this turn; a draft
// thrown away is not billed).
func handOver[C interface{ FinalUsage() *api.Usage }](chunks []C, label, reason string, au *api.AdvisorUsage, ext func(C) **api.Extension, emit func(C) error) error {
	for i, ch := range chunks {
		e := ext(ch)
		if i == 0 && *e == nil {
			*e = &api.Extension{Backend: label}
		}
		if *e != nil {
			(*e).Advisor = reason
		}
		if fu := ch.FinalUsage(); fu != nil {
			*fu = api.Usage{}
			addAdvisor(fu, au)
		}
		if err := emit(ch); err != nil {
			return err
		}
	}
	return nil
}

// collect runs a whole request (chat or completions) and returns its
// chunks and final usage, so that nothing of a failing advisor reaches the
// client; an answer without known usage is errNoUsage.
func collect[C interface{ FinalUsage() *api.Usage }](run func(emit func(C) error) error) ([]C, *api.Usage, error) {
	var chunks []C
	var u *api.Usage
	err := run(func(ch C) error {
		chunks = append(chunks, ch)
		if fu := ch.FinalUsage(); fu != nil {
			u = fu
		}
		return nil
	})
	if err == nil && (u == nil || u.Unknown) {
		u, err = nil, errNoUsage
	}
	return chunks, u, err
}

// planInstruction asks the advisor for a plan rather than the answer.
const planInstruction = "Do not answer yet. Write a short plan (a few sentences at most) for how the assistant should " +
	"answer the conversation above: what to do next, what to avoid, and why the previous attempts failed if they did."

// planRequest is req for the advisor in Advise mode: the conversation and
// the instruction, no tools to call, at most planTokens tokens, one choice.
func planRequest(req *api.ChatCompletionRequest, planTokens int) api.ChatCompletionRequest {
	r := *req
	r.Messages = append(append([]api.Message(nil), req.Messages...), api.Message{Role: "user", Content: api.MessageContent{Text: planInstruction}})
	r.MaxTokens, r.MaxCompletionTokens = &planTokens, nil
	r.N, r.Stream, r.StreamOptions, r.Logprobs, r.TopLogprobs = nil, false, nil, false, nil
	r.ToolChoice = &api.ToolChoice{Mode: "none"}
	if len(r.Tools) == 0 {
		r.ToolChoice = nil
	}
	r.ResponseFormat = nil
	return r
}

// planText is the content of a plan's chunks.
func planText(chunks []*api.ChatCompletionChunk) string {
	var b strings.Builder
	for _, ch := range chunks {
		for _, c := range ch.Choices {
			if c.Index == 0 && c.Delta.Content != nil {
				b.WriteString(*c.Delta.Content)
			}
		}
	}
	return strings.TrimSpace(b.String())
}

// withPlan is req with the advisor's plan in its system message (merged
// into the first one, or a new one first: chat templates take a system
// message only there).
func withPlan(req *api.ChatCompletionRequest, plan string) *api.ChatCompletionRequest {
	r := *req
	note := "A more capable model reviewed this conversation and advises:\n" + plan
	msgs := append([]api.Message(nil), req.Messages...)
	if len(msgs) > 0 && (msgs[0].Role == "system" || msgs[0].Role == "developer") && !msgs[0].Content.IsParts {
		msgs[0].Content = api.MessageContent{Text: strings.TrimRight(msgs[0].Content.Text, "\n") + "\n\n" + note}
	} else {
		msgs = append([]api.Message{{Role: "system", Content: api.MessageContent{Text: note}}}, msgs...)
	}
	r.Messages = msgs
	return &r
}

// Complete: the legacy completions API has no conversation to read, so
// only "always" escalates (Handoff; Advise has no place for a plan in a
// raw prompt and hands off too); otherwise the served model answers.
func (m *mw) Complete(ctx context.Context, req *api.CompletionRequest, emit func(*api.Completion) error) error {
	au := &api.AdvisorUsage{}
	defer m.observe(ctx, au)
	r := *req
	r.Advisor = nil
	served := func() error {
		return m.next.Complete(ctx, &r, func(ch *api.Completion) error {
			if u := ch.FinalUsage(); u != nil {
				addAdvisor(u, au)
			}
			return emit(ch)
		})
	}
	if m.setting(req.Advisor) != "always" {
		return served()
	}
	au.Reason = ReasonAlways
	start := m.now()
	if !m.admit(ctx, au, start) {
		return served()
	}
	au.Mode, au.Model = Handoff, m.c.Model
	actx, cancel := context.WithTimeout(ctx, m.c.Timeout)
	defer cancel()
	chunks, u, err := collect(func(emit func(*api.Completion) error) error { return m.c.Advisor.Complete(actx, &r, emit) })
	if !m.landed(ctx, au, start, u, err) {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return served()
	}
	return handOver(chunks, m.next.Info().Label, ReasonAlways, au, func(ch *api.Completion) **api.Extension { return &ch.Stepflash }, emit)
}

// errNoUsage: an advisor's answer without usage (no usage chunk, or an
// upstream that reported none) is not used: its cost would be unknown.
var errNoUsage = errors.New("it did not report its usage, so its cost is unknown")

// admit counts an escalation against the caller's key cap, or says in au
// why the cap refused it.
func (m *mw) admit(ctx context.Context, au *api.AdvisorUsage, now time.Time) bool {
	if m.caps.take(backend.CallerFrom(ctx).KeyID, m.c.KeyCap, m.c.KeyWindow, now) {
		return true
	}
	au.Error = fmt.Sprintf("this key's cap of %d escalations per %s was reached", m.c.KeyCap, m.c.KeyWindow)
	return false
}

// landed records the advisor's part in au (its usage, latency, and the
// error that kept the turn with the served model) and reports whether the
// escalation landed.
func (m *mw) landed(ctx context.Context, au *api.AdvisorUsage, start time.Time, u *api.Usage, err error) bool {
	if err != nil {
		// A failed escalation does not count against the key's cap.
		m.caps.give(backend.CallerFrom(ctx).KeyID, m.c.KeyCap, start)
	}
	au.LatencyMS = m.now().Sub(start).Milliseconds()
	if u != nil {
		au.PromptTokens, au.CompletionTokens, au.Cost = u.PromptTokens, u.CompletionTokens, u.Cost
		if sp := backend.SpendFrom(ctx); sp != nil {
			// Spent whatever happens next: the ledger bills it even if
			// the request then fails before its usage.
			sp.AddAdvisor(u.PromptTokens, u.CompletionTokens, u.Cost)
		}
	}
	switch {
	case err == nil:
		au.Escalated = true
	case ctx.Err() != nil:
		// the client went away: nothing more to say
	case errors.Is(err, context.DeadlineExceeded):
		au.Error = fmt.Sprintf("the advisor did not answer within %s", m.c.Timeout)
	default:
		au.Error = "the advisor failed: " + err.Error()
	}
	return err == nil
}

// give takes back the use that key took at at (an escalation that did not
// land).
func (c *capper) give(key string, limit int, at time.Time) {
	if limit <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	u := c.uses[key]
	for i := len(u) - 1; i >= 0; i-- {
		if u[i].Equal(at) {
			c.uses[key] = append(u[:i], u[i+1:]...)
			return
		}
	}
}

// capper counts escalations per key in a sliding window.
type capper struct {
	mu   sync.Mutex
	uses map[string][]time.Time
}

// take reports whether key may escalate now (and counts it): always with
// no cap.
func (c *capper) take(key string, limit int, window time.Duration, now time.Time) bool {
	if limit <= 0 {
		return true
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	u := c.uses[key]
	i := 0
	for i < len(u) && now.Sub(u[i]) >= window {
		i++
	}
	u = u[i:]
	if len(u) >= limit {
		c.uses[key] = u
		return false
	}
	c.uses[key] = append(u, now)
	return true
}
