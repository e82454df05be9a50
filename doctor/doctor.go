// Package doctor checks an OpenAI-compatible endpoint for the traps that fail without a descriptive error and says what to fix.
//
// The traps (issue 13, ../shared/DESIGN.md sections 3 to 7b): a key of the
// other StepFun region, which gets a 401 with an empty body; a model string
// that is not exactly a served name; a reasoning_effort that is accepted and
// ignored; a stream that never sends its usage chunk or its [DONE]; cached
// tokens in a place the client does not read; reasoning text under a field
// name the client does not read; and error responses with no body to read.
//
// The doctor talks HTTP only: it never loads a model, so it checks a remote
// endpoint and a local stepflash alike, through exactly what a client sees.
package doctor

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/stepflash/stepflash/api"
	"github.com/stepflash/stepflash/internal/httpclient"
)

// Config says which endpoint to check and how.
type Config struct {
	// BaseURL is the API's base URL, ending in /v1 as OpenAI's SDKs take it.
	BaseURL string
	// APIKey is sent as "Authorization: Bearer KEY" when not empty.
	APIKey string
	// KeySource names where the key came from ("--api-key", "$STEP_API_KEY"),
	// for messages; empty when there is no key.
	KeySource string
	// Model is the model string to check; empty: the endpoint's first served
	// name (step-3.7-flash when it serves one by that name).
	Model string
	// Timeout bounds each request (0: 60s).
	Timeout time.Duration
	// Client sends the requests; nil: an httpclient client with Timeout as
	// its first-byte and idle limits.
	Client *http.Client
}

// Status is the outcome of one check.
type Status string

// The outcomes. Only Fail makes the report fail.
const (
	Pass Status = "pass"
	Fail Status = "fail"
	Warn Status = "warn"
	Skip Status = "skip"
)

// Result is one check's outcome.
type Result struct {
	// Check is the check's name: reachability, region, model, effort,
	// streaming, reasoning_fields, error_bodies, stepflash.
	Check   string `json:"check"`
	Status  Status `json:"status"`
	Message string `json:"message"`
	// Fix says what to change; empty when nothing needs to.
	Fix string `json:"fix,omitempty"`
	// Data holds the check's observations, for --json.
	Data map[string]any `json:"data,omitempty"`
}

// Report is the outcome of every check.
type Report struct {
	BaseURL string   `json:"base_url"`
	Model   string   `json:"model"`
	Results []Result `json:"checks"`
	Passed  int      `json:"passed"`
	Failed  int      `json:"failed"`
	Warned  int      `json:"warnings"`
	Skipped int      `json:"skipped"`
	// OK is true when no check failed.
	OK bool `json:"ok"`
}

// check is one check: it reads what the earlier ones saw in p and may add to it.
type check struct {
	name string
	run  func(ctx context.Context, p *probe) Result
}

// checks run in this order; later ones use what earlier ones found.
var checks = []check{
	{"reachability", checkReach},
	{"region", checkRegion},
	{"model", checkModel},
	{"effort", checkEffort},
	{"streaming", checkStreaming},
	{"reasoning_fields", checkReasoningFields},
	{"error_bodies", checkErrorBodies},
	{"stepflash", checkStepflash},
}

// Run runs every check against cfg's endpoint.
func Run(ctx context.Context, cfg Config) *Report {
	p := newProbe(cfg)
	rep := &Report{BaseURL: p.base}
	for _, c := range checks {
		r := c.run(ctx, p)
		r.Check = c.name
		rep.add(r)
	}
	rep.Model = p.model
	return rep
}

func (rep *Report) add(r Result) {
	rep.Results = append(rep.Results, r)
	switch r.Status {
	case Pass:
		rep.Passed++
	case Fail:
		rep.Failed++
	case Warn:
		rep.Warned++
	default:
		rep.Skipped++
	}
	rep.OK = rep.Failed == 0
}

// Mark is the sign a status is printed with.
func (s Status) Mark() string {
	switch s {
	case Pass:
		return "✓"
	case Fail:
		return "✗"
	case Warn:
		return "!"
	}
	return "-"
}

// WriteText prints one line per check (and its fix, indented), then a summary.
func (rep *Report) WriteText(w io.Writer) {
	fmt.Fprintf(w, "stepflash doctor: %s", rep.BaseURL)
	if rep.Model != "" {
		fmt.Fprintf(w, ", model %s", rep.Model)
	}
	fmt.Fprintln(w)
	width := 0
	for _, r := range rep.Results {
		width = max(width, len(r.Check))
	}
	for _, r := range rep.Results {
		fmt.Fprintf(w, "%s %-*s  %s\n", r.Status.Mark(), width, r.Check, r.Message)
		if r.Fix != "" {
			fmt.Fprintf(w, "  %*s  fix: %s\n", width, "", r.Fix)
		}
	}
	fmt.Fprintf(w, "\n%d passed, %d failed, %d warnings, %d skipped\n", rep.Passed, rep.Failed, rep.Warned, rep.Skipped)
}

// probe is what the checks share: the endpoint, and what earlier checks saw.
type probe struct {
	cfg    Config
	base   string // BaseURL without a trailing slash
	client *http.Client

	// Set by checkReach.
	models    []string  // served names, in the endpoint's order; nil: unknown
	modelList *exchange // GET /models
	// blocked, when set, is why the checks that need a working chat request
	// are skipped (the endpoint is down, refuses the key, ...).
	blocked string
	// Set by checkModel: the model string the later requests use.
	model string

	// Chat exchanges, by what they were (effort tier, "stream", ...).
	effort map[string]*exchange
	// Reasoning observed in streams: field name → seen.
	streamReasoningFields map[string]bool
	streamReasoningTokens int
	// ext is the last stepflash extension object seen.
	ext *api.Extension
}

func newProbe(cfg Config) *probe {
	if cfg.Timeout <= 0 {
		cfg.Timeout = 60 * time.Second
	}
	c := cfg.Client
	if c == nil {
		c = httpclient.NewClient(httpclient.Timeouts{Connect: min(cfg.Timeout, 10*time.Second), FirstByte: cfg.Timeout, Idle: cfg.Timeout})
	}
	return &probe{cfg: cfg, base: strings.TrimRight(cfg.BaseURL, "/"), client: c, effort: map[string]*exchange{},
		streamReasoningFields: map[string]bool{}}
}

// exchange is one request and what came back.
type exchange struct {
	Method, Path string
	Status       int
	Header       http.Header
	Body         []byte
	Latency      time.Duration
	// Err is a failure to get a response at all (connect, timeout).
	Err error
}

// do sends one request with a JSON body (nil: none) and reads the whole answer.
func (p *probe) do(ctx context.Context, method, path string, body any) *exchange {
	ex := &exchange{Method: method, Path: path}
	var rd io.Reader
	if raw, ok := body.(json.RawMessage); ok {
		rd = strings.NewReader(string(raw)) // sent as is, even when not valid JSON
	} else if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			ex.Err = err
			return ex
		}
		rd = strings.NewReader(string(b))
	}
	ctx, cancel := context.WithTimeout(ctx, p.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, p.base+path, rd)
	if err != nil {
		ex.Err = err
		return ex
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	p.authorize(req)
	start := time.Now()
	resp, err := p.client.Do(req)
	if err != nil {
		ex.Err = err
		ex.Latency = time.Since(start)
		return ex
	}
	defer resp.Body.Close()
	ex.Status, ex.Header = resp.StatusCode, resp.Header
	ex.Body, ex.Err = io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	ex.Latency = time.Since(start)
	return ex
}

func (p *probe) authorize(req *http.Request) {
	req.Header.Set("Accept", "application/json")
	if p.cfg.APIKey != "" {
		req.Header.Set("Authorization", "Bearer "+p.cfg.APIKey)
	}
}

// errorObject reads an OpenAI error object from a body; nil when it is not one.
func errorObject(body []byte) *api.Error {
	var er struct {
		Error *api.Error `json:"error"`
	}
	if json.Unmarshal(body, &er) != nil || er.Error == nil || er.Error.Message == "" {
		return nil
	}
	return er.Error
}

// describe says in a few words what came back for ex: the error object's
// code and message, or what is wrong with the body.
func describe(ex *exchange) string {
	if ex.Err != nil && ex.Status == 0 {
		return errText(ex.Err)
	}
	body := strings.TrimSpace(string(ex.Body))
	if e := errorObject(ex.Body); e != nil {
		code := e.CodeString()
		if code == "" {
			code = e.Type
		}
		if code != "" {
			return fmt.Sprintf("%d %s: %s", ex.Status, code, e.Message)
		}
		return fmt.Sprintf("%d: %s", ex.Status, e.Message)
	}
	if body == "" {
		return fmt.Sprintf("%d with an empty body", ex.Status)
	}
	return fmt.Sprintf("%d: %s", ex.Status, clip(body, 200))
}

// clip shortens s to about n bytes for a message.
func clip(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// ok reports whether ex got a 2xx answer.
func (ex *exchange) ok() bool { return ex.Err == nil && ex.Status >= 200 && ex.Status < 300 }

// extension reads the top-level stepflash object of a response body; nil
// when it has none.
func extension(body []byte) *api.Extension {
	var v struct {
		Stepflash *api.Extension `json:"stepflash"`
	}
	if json.Unmarshal(body, &v) != nil {
		return nil
	}
	return v.Stepflash
}

func pass(msg string, args ...any) Result {
	return Result{Status: Pass, Message: fmt.Sprintf(msg, args...)}
}
func skip(msg string, args ...any) Result {
	return Result{Status: Skip, Message: fmt.Sprintf(msg, args...)}
}
func warn(fix, msg string, args ...any) Result {
	return Result{Status: Warn, Message: fmt.Sprintf(msg, args...), Fix: fix}
}
func fail(fix, msg string, args ...any) Result {
	return Result{Status: Fail, Message: fmt.Sprintf(msg, args...), Fix: fix}
}

// with sets r's data.
func (r Result) with(k string, v any) Result {
	if r.Data == nil {
		r.Data = map[string]any{}
	}
	r.Data[k] = v
	return r
}
