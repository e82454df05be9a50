// Package eval runs the experiments a user should run before trusting an OpenAI-compatible endpoint (effort, head-to-head, advisor, vision) and writes results.json and an offline report.html.
//
// Every call is streamed with stream_options.include_usage (so the time to
// first token is real and the usage comes back), recorded as it finishes in
// a JSONL journal in the output folder, and skipped when a later run with
// the same output folder and configuration finds it recorded: a run that is
// stopped resumes where it was. See docs/eval.md.
package eval

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/stepflash/stepflash/api"
)

// The suites, in the order the issue lists them.
const (
	SuiteEffort    = "effort"
	SuiteHead2Head = "head2head"
	SuiteAdvisor   = "advisor"
	SuiteVision    = "vision"
)

// Suites are the suites Run knows.
var Suites = []string{SuiteEffort, SuiteHead2Head, SuiteAdvisor, SuiteVision}

// Prices are USD per million tokens.
type Prices struct {
	InputMiss float64 `json:"input_miss"`
	InputHit  float64 `json:"input_hit"`
	Output    float64 `json:"output"`
}

// DefaultPrices are Step 3.7 Flash's list prices (../shared/DESIGN.md
// section 8); reasoning tokens bill as output.
var DefaultPrices = Prices{InputMiss: 0.20, InputHit: 0.04, Output: 1.15}

// Config is one run.
type Config struct {
	Suite string `json:"suite"`
	// Endpoints: one for effort, advisor and vision; two for head2head.
	Endpoints []Endpoint `json:"endpoints"`
	Passes    int        `json:"passes"`
	// Out is the output folder (results.json, report.html, calls.jsonl).
	Out string `json:"-"`
	// Tasks replace the suite's embedded set; TasksSource names them.
	Tasks       []Task `json:"-"`
	TasksSource string `json:"tasks"`
	// Limit keeps the first Limit tasks (0: all).
	Limit       int `json:"limit,omitempty"`
	Concurrency int `json:"concurrency"`
	// Temperature is sent with every request; nil: not sent (the
	// endpoint's default).
	Temperature *float64 `json:"temperature"`
	// Seed, when set, is sent as seed+pass-1 on pass pass.
	Seed *int64 `json:"seed"`
	// MaxTokens is sent when positive.
	MaxTokens int `json:"max_tokens,omitempty"`
	// Effort is the reasoning_effort of suites other than effort (empty:
	// not sent).
	Effort string `json:"effort,omitempty"`
	// Tiers are the effort suite's tiers (default low, medium, high).
	Tiers []string `json:"tiers,omitempty"`
	// Prices compute a call's cost when the endpoint reports none.
	Prices       Prices `json:"prices"`
	PricesSource string `json:"prices_source"`
	// Timeout bounds each call.
	Timeout time.Duration `json:"-"`
	// Advisor suite: the baseline arm's model (empty: the first endpoint's
	// model) and its effort (default high).
	BaselineModel  string `json:"baseline_model,omitempty"`
	BaselineEffort string `json:"baseline_effort,omitempty"`
	// Steps is the advisor loop's length (default 12).
	Steps int `json:"steps,omitempty"`
	// Vision suite: the captioning model of the tool-chained arm (empty:
	// the first endpoint's model) and the prompt it is asked.
	CaptionModel  string `json:"caption_model,omitempty"`
	CaptionPrompt string `json:"caption_prompt,omitempty"`
	// Kinds are the vision task kinds asked (default all, VisionKinds);
	// Limit keeps the first Limit tasks of each.
	Kinds []string `json:"kinds,omitempty"`
	// Arms are the vision arms the endpoint can run (set by Run from its
	// /models input_modalities).
	Arms []string `json:"arms,omitempty"`

	// Progress receives progress lines (nil: none); Terminal draws a
	// one-line bar instead of plain lines.
	Progress io.Writer `json:"-"`
	Terminal bool      `json:"-"`
	// Client sends the requests (nil: one with Timeout as its limits).
	Client *http.Client `json:"-"`
	// OnCall is called after each call is recorded (tests stop a run with it).
	OnCall func(Call) `json:"-"`
}

// Tokens are a call's token counts from its usage.
type Tokens struct {
	Prompt     int `json:"prompt"`
	Cached     int `json:"cached"`
	Completion int `json:"completion"`
	Reasoning  int `json:"reasoning"`
	// Image is usage.prompt_tokens_details.image_tokens where the endpoint
	// reports it: the prompt tokens that stand for images.
	Image int `json:"image,omitempty"`
}

// Request summarises what a call sent.
type Request struct {
	Effort      string   `json:"reasoning_effort,omitempty"`
	Advisor     string   `json:"advisor,omitempty"`
	Temperature *float64 `json:"temperature,omitempty"`
	Seed        *int64   `json:"seed,omitempty"`
	MaxTokens   int      `json:"max_tokens,omitempty"`
	Messages    int      `json:"messages"`
	Images      int      `json:"images,omitempty"`
	// Last is the last message's text (the question, or a tool result).
	Last string `json:"last"`
}

// Call is one recorded request and what came of it.
type Call struct {
	Key string `json:"key"`
	// Config is the fingerprint of the configuration the call belongs to.
	Config   string  `json:"config"`
	Suite    string  `json:"suite"`
	Arm      string  `json:"arm"`
	Pass     int     `json:"pass"`
	Task     string  `json:"task"`
	Step     int     `json:"step,omitempty"`
	Attempt  int     `json:"attempt,omitempty"`
	Endpoint string  `json:"endpoint"`
	Model    string  `json:"model"`
	Request  Request `json:"request"`
	// Answer is the scored part of the reply (FinalAnswer of the content).
	Answer   string `json:"answer"`
	Expected string `json:"expected,omitempty"`
	Correct  bool   `json:"correct"`
	// ReasoningChars is the length of the reasoning text received.
	ReasoningChars int     `json:"reasoning_chars"`
	Finish         string  `json:"finish_reason,omitempty"`
	TTFTMs         float64 `json:"ttft_ms"`
	TotalMs        float64 `json:"total_ms"`
	// Usage is the usage object exactly as the endpoint sent it.
	Usage  json.RawMessage `json:"usage,omitempty"`
	Tokens Tokens          `json:"tokens"`
	Cost   float64         `json:"cost"`
	// CostSource is "usage" (the endpoint's usage.cost), "prices" (computed
	// from the token counts) or "" (no usage came back).
	CostSource string            `json:"cost_source"`
	Advisor    *api.AdvisorUsage `json:"advisor,omitempty"`
	Applied    *api.EffortEcho   `json:"effort_applied,omitempty"`
	Status     int               `json:"status"`
	Error      string            `json:"error,omitempty"`
	Time       time.Time         `json:"time"`
}

// Results is what results.json holds.
type Results struct {
	Config      Config    `json:"config"`
	Fingerprint string    `json:"fingerprint"`
	Started     time.Time `json:"started"`
	Finished    time.Time `json:"finished"`
	// Complete is false when the run was stopped before every call was made.
	Complete bool     `json:"complete"`
	Notes    []string `json:"notes,omitempty"`
	Summary  *Summary `json:"summary"`
	Calls    []Call   `json:"calls"`
	// Skipped counts calls found in the journal and not made again.
	Skipped int `json:"skipped_recorded"`
	// Made counts the calls this run sent.
	Made int `json:"made"`
}

// runner is one run's state.
type runner struct {
	cfg     Config
	clients []*client
	fp      string

	mu       sync.Mutex
	recorded map[string]Call // by key, from the journal and this run
	order    []string
	journal  *os.File
	notes    []string
	skipped  int
	made     int

	total, done int
	lastShown   time.Time
	lastPct     int
}

// Run runs cfg's suite. It returns the results so far together with the
// error when the run stops early (a cancelled ctx, an unreachable endpoint).
func Run(ctx context.Context, cfg Config) (*Results, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	r := &runner{cfg: cfg, recorded: map[string]Call{}}
	for _, ep := range cfg.Endpoints {
		c := newClient(ep, cfg.Client, cfg.Timeout)
		if err := c.check(ctx); err != nil {
			return nil, err
		}
		r.clients = append(r.clients, c)
	}
	for i, c := range r.clients {
		r.cfg.Endpoints[i].Model = c.ep.Model
	}
	if cfg.Suite == SuiteVision {
		if err := r.visionArms(); err != nil {
			return nil, err
		}
	}
	r.fp = r.fingerprint()
	if err := os.MkdirAll(cfg.Out, 0o755); err != nil {
		return nil, err
	}
	if err := r.openJournal(); err != nil {
		return nil, err
	}
	defer r.journal.Close()
	res := &Results{Config: r.cfg, Fingerprint: r.fp, Started: time.Now()}
	var runErr error
	switch cfg.Suite {
	case SuiteEffort:
		runErr = r.effort(ctx)
	case SuiteHead2Head:
		runErr = r.head2head(ctx)
	case SuiteAdvisor:
		runErr = r.advisorSuite(ctx)
	case SuiteVision:
		runErr = r.vision(ctx)
	}
	if r.cfg.Terminal && r.cfg.Progress != nil {
		fmt.Fprintln(r.cfg.Progress)
	}
	res.Finished = time.Now()
	res.Complete = runErr == nil
	res.Notes, res.Skipped, res.Made = r.notes, r.skipped, r.made
	for _, k := range r.order {
		res.Calls = append(res.Calls, r.recorded[k])
	}
	res.Summary = summarize(&r.cfg, res.Calls)
	if err := res.write(cfg.Out); err != nil && runErr == nil {
		runErr = err
	}
	return res, runErr
}

func (c *Config) defaults() error {
	known := false
	for _, s := range Suites {
		known = known || s == c.Suite
	}
	if !known {
		return fmt.Errorf("unknown suite %q: want one of effort, head2head, advisor, vision", c.Suite)
	}
	want := 1
	if c.Suite == SuiteHead2Head {
		want = 2
	}
	if len(c.Endpoints) != want {
		return fmt.Errorf("suite %s compares %d endpoint(s), got %d", c.Suite, want, len(c.Endpoints))
	}
	if c.Passes <= 0 {
		return fmt.Errorf("--passes must be at least 1, got %d", c.Passes)
	}
	if c.Concurrency <= 0 {
		c.Concurrency = 1
	}
	if c.Out == "" {
		return errors.New("no output folder")
	}
	if c.Timeout <= 0 {
		c.Timeout = 10 * time.Minute
	}
	if len(c.Tiers) == 0 {
		c.Tiers = []string{"low", "medium", "high"}
	}
	if c.Prices == (Prices{}) {
		c.Prices = DefaultPrices
		if c.PricesSource == "" {
			c.PricesSource = "Step 3.7 Flash list prices (DESIGN.md)"
		}
	}
	if c.Steps <= 0 {
		c.Steps = 12
	}
	if c.BaselineEffort == "" {
		c.BaselineEffort = "high"
	}
	if c.Suite == SuiteAdvisor {
		return nil // its tasks are its own
	}
	if c.Suite == SuiteVision {
		if c.CaptionPrompt == "" {
			c.CaptionPrompt = DefaultCaptionPrompt
		}
		if len(c.Kinds) == 0 {
			c.Kinds = VisionKinds
		}
		ts, err := VisionTasks(c.Kinds, c.Limit, DefaultSeed)
		if err != nil {
			return err
		}
		c.Tasks = ts
		c.TasksSource = fmt.Sprintf("embedded: generated images (%s), %d tasks, seed %d", strings.Join(c.Kinds, ", "), len(ts), DefaultSeed)
		return nil
	}
	if c.Tasks == nil {
		c.Tasks = AdditionTasks(200, DefaultSeed)
		c.TasksSource = fmt.Sprintf("embedded: 200 addition problems, seed %d", DefaultSeed)
	}
	if c.Limit > 0 && c.Limit < len(c.Tasks) {
		c.Tasks = c.Tasks[:c.Limit]
	}
	return nil
}

// fingerprint identifies the configuration: a recorded call counts for a
// later run only when this matches.
func (r *runner) fingerprint() string {
	c := r.cfg
	v := map[string]any{"suite": c.Suite, "temperature": c.Temperature, "seed": c.Seed, "max_tokens": c.MaxTokens,
		"effort": c.Effort, "tasks": c.Tasks, "baseline": []string{c.BaselineModel, c.BaselineEffort}, "steps": c.Steps,
		"caption": []string{c.CaptionModel, c.CaptionPrompt}, "kinds": c.Kinds}
	var eps []string
	for _, e := range c.Endpoints {
		eps = append(eps, e.BaseURL+"#"+e.Model)
	}
	v["endpoints"] = eps
	b, _ := json.Marshal(v)
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:8])
}

const journalName = "calls.jsonl"

// openJournal reads the calls an earlier run recorded under this
// configuration and opens the journal for appending. A call that failed
// (no answer came back) is not kept: it is made again.
func (r *runner) openJournal() error {
	path := filepath.Join(r.cfg.Out, journalName)
	if b, err := os.ReadFile(path); err == nil {
		for i, line := range splitLines(b) {
			var c Call
			if err := json.Unmarshal(line, &c); err != nil {
				// A line cut by a crash is the last one; anything else is damage.
				if i == len(splitLines(b))-1 {
					continue
				}
				return fmt.Errorf("%s line %d: %v (move the file away to start afresh)", path, i+1, err)
			}
			if c.Config != r.fp || c.Status == 0 && c.Error != "" {
				continue
			}
			if _, ok := r.recorded[c.Key]; !ok {
				r.order = append(r.order, c.Key)
			}
			r.recorded[c.Key] = c
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return err
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	r.journal = f
	return nil
}

func splitLines(b []byte) [][]byte {
	var out [][]byte
	for len(b) > 0 {
		i := 0
		for i < len(b) && b[i] != '\n' {
			i++
		}
		if i > 0 {
			out = append(out, b[:i])
		}
		if i < len(b) {
			i++
		}
		b = b[i:]
	}
	return out
}

// lookup returns a recorded call.
func (r *runner) lookup(key string) (Call, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	c, ok := r.recorded[key]
	return c, ok
}

// record appends c to the journal and the results.
func (r *runner) record(c Call) error {
	c.Config = r.fp
	b, err := json.Marshal(c)
	if err != nil {
		return err
	}
	r.mu.Lock()
	if _, ok := r.recorded[c.Key]; !ok {
		r.order = append(r.order, c.Key)
	}
	r.recorded[c.Key] = c
	r.made++
	_, err = r.journal.Write(append(b, '\n'))
	r.mu.Unlock()
	if r.cfg.OnCall != nil {
		r.cfg.OnCall(c)
	}
	return err
}

// note adds a line to the report's notes (once).
func (r *runner) note(format string, args ...any) {
	s := fmt.Sprintf(format, args...)
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, n := range r.notes {
		if n == s {
			return
		}
	}
	r.notes = append(r.notes, s)
	if r.cfg.Progress != nil {
		if r.cfg.Terminal {
			fmt.Fprintln(r.cfg.Progress)
		}
		fmt.Fprintf(r.cfg.Progress, "eval %s: %s\n", r.cfg.Suite, s)
	}
}

// callSpec is one request to make.
type callSpec struct {
	key                 string
	arm                 string
	pass, step, attempt int
	task                Task
	client              *client
	model               string // overrides the client's model when set
	effort, advisor     string
	messages            []map[string]any
	images              int
	tools               []map[string]any
}

func callKey(suite, arm string, pass int, task string, step, attempt int) string {
	return fmt.Sprintf("%s|%s|%d|%s|%d|%d", suite, arm, pass, task, step, attempt)
}

// do makes the call of s, or returns the recorded one.
func (r *runner) do(ctx context.Context, s callSpec) (Call, error) {
	if s.key == "" {
		s.key = callKey(r.cfg.Suite, s.arm, s.pass, s.task.ID, s.step, s.attempt)
	}
	if c, ok := r.lookup(s.key); ok {
		r.mu.Lock()
		r.skipped++
		r.mu.Unlock()
		return c, nil
	}
	return r.makeCall(ctx, s, nil)
}

// makeCall sends s and records the call; score, when set, scores it
// instead of s.task.
func (r *runner) makeCall(ctx context.Context, s callSpec, score func(*Call, chatResult)) (Call, error) {
	if err := ctx.Err(); err != nil {
		return Call{}, err
	}
	body := map[string]any{"messages": s.messages}
	req := Request{Effort: s.effort, Advisor: s.advisor, Temperature: r.cfg.Temperature, MaxTokens: r.cfg.MaxTokens, Messages: len(s.messages), Images: s.images}
	if r.cfg.Temperature != nil {
		body["temperature"] = *r.cfg.Temperature
	}
	if r.cfg.Seed != nil {
		seed := *r.cfg.Seed + int64(s.pass) - 1
		body["seed"] = seed
		req.Seed = &seed
	}
	if r.cfg.MaxTokens > 0 {
		body["max_tokens"] = r.cfg.MaxTokens
	}
	if s.effort != "" {
		body["reasoning_effort"] = s.effort
	}
	if s.advisor != "" {
		body["advisor"] = s.advisor
	}
	if len(s.tools) > 0 {
		body["tools"] = s.tools
	}
	if n := len(s.messages); n > 0 {
		req.Last = messageText(s.messages[n-1])
	}
	cl := s.client
	if s.model != "" && s.model != cl.ep.Model {
		c2 := *cl
		c2.ep.Model = s.model
		cl = &c2
	}
	res := cl.chat(ctx, body)
	if ctx.Err() != nil {
		return Call{}, ctx.Err() // cut short: not recorded, made again on resume
	}
	c := Call{Key: s.key, Suite: r.cfg.Suite, Arm: s.arm, Pass: s.pass, Task: s.task.ID, Step: s.step, Attempt: s.attempt,
		Endpoint: cl.base, Model: cl.ep.Model, Request: req, Expected: s.task.Answer, Status: res.Status,
		Finish: res.Finish, ReasoningChars: len(res.Reasoning), TTFTMs: ms(res.TTFT), TotalMs: ms(res.Total),
		Usage: res.Usage, Time: time.Now().UTC()}
	if res.Err != nil {
		c.Error = res.Err.Error()
	}
	if res.Ext != nil {
		e := res.Ext.Effort
		c.Applied = &e
	}
	c.Answer = FinalAnswer(res.Content)
	if s.task.Answer != "" {
		c.Correct = res.Err == nil && s.task.Score(c.Answer)
	}
	if score != nil {
		score(&c, res)
	}
	r.usage(&c)
	return c, r.record(c)
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// messageText is a message's text content (the text parts of a list).
func messageText(m map[string]any) string {
	switch v := m["content"].(type) {
	case string:
		return v
	case []map[string]any:
		s := ""
		for _, p := range v {
			if t, ok := p["text"].(string); ok {
				s += t
			}
		}
		return s
	}
	return ""
}

// usage reads the token counts, cost and usage.advisor of c.Usage.
func (r *runner) usage(c *Call) {
	if len(c.Usage) == 0 {
		return
	}
	var u struct {
		Prompt     int `json:"prompt_tokens"`
		Completion int `json:"completion_tokens"`
		Details    struct {
			Cached *int `json:"cached_tokens"`
			Image  int  `json:"image_tokens"`
		} `json:"prompt_tokens_details"`
		CDetails struct {
			Reasoning int `json:"reasoning_tokens"`
		} `json:"completion_tokens_details"`
		Cached  *int              `json:"cached_tokens"`
		Cost    *float64          `json:"cost"`
		Advisor *api.AdvisorUsage `json:"advisor"`
	}
	if json.Unmarshal(c.Usage, &u) != nil {
		return
	}
	c.Tokens = Tokens{Prompt: u.Prompt, Completion: u.Completion, Reasoning: u.CDetails.Reasoning, Image: u.Details.Image}
	switch {
	case u.Details.Cached != nil:
		c.Tokens.Cached = *u.Details.Cached
	case u.Cached != nil:
		c.Tokens.Cached = *u.Cached
	}
	c.Advisor = u.Advisor
	if u.Cost != nil {
		c.Cost, c.CostSource = *u.Cost, "usage"
		return
	}
	p := r.cfg.Prices
	miss := max(0, c.Tokens.Prompt-c.Tokens.Cached)
	c.Cost = (float64(miss)*p.InputMiss + float64(c.Tokens.Cached)*p.InputHit + float64(c.Tokens.Completion)*p.Output) / 1e6
	c.CostSource = "prices"
}

// runJobs runs jobs with at most cfg.Concurrency at a time, counting each
// finished job for the progress display. The first error stops the run.
func (r *runner) runJobs(ctx context.Context, what string, jobs []func(context.Context) error) error {
	r.total, r.done, r.lastPct = len(jobs), 0, -1
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	next := make(chan func(context.Context) error)
	var wg sync.WaitGroup
	for range min(r.cfg.Concurrency, len(jobs)) {
		wg.Go(func() {
			for j := range next {
				if err := j(ctx); err != nil {
					cancel(err)
					continue
				}
				r.progress(what)
			}
		})
	}
	r.progress(what)
feed:
	for _, j := range jobs {
		select {
		case next <- j:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	if err := context.Cause(ctx); err != nil {
		return err
	}
	return nil
}

// progress counts a finished job (the first call only draws) and shows it.
func (r *runner) progress(what string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.lastPct >= 0 {
		r.done++
	}
	w := r.cfg.Progress
	if w == nil || r.total == 0 {
		r.lastPct = 0
		return
	}
	pct := 100 * r.done / r.total
	if r.cfg.Terminal {
		if r.done != r.total && time.Since(r.lastShown) < 100*time.Millisecond && r.lastPct >= 0 {
			return
		}
		r.lastShown = time.Now()
		const width = 30
		fill := width * r.done / r.total
		bar := make([]byte, width)
		for i := range bar {
			bar[i] = ' '
			if i < fill {
				bar[i] = '='
			}
		}
		fmt.Fprintf(w, "\r%s [%s] %d/%d %s %3d%%", r.cfg.Suite, bar, r.done, r.total, what, pct)
		r.lastPct = pct
		return
	}
	if pct/10 != r.lastPct/10 || r.done == r.total || r.lastPct < 0 {
		fmt.Fprintf(w, "eval %s: %d/%d %s (%d%%), %d recorded earlier\n", r.cfg.Suite, r.done, r.total, what, pct, r.skipped)
		r.lastPct = pct
	}
}

// write writes results.json and report.html into dir.
func (res *Results) write(dir string) error {
	b, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return err
	}
	if err := writeFileAtomic(filepath.Join(dir, "results.json"), b); err != nil {
		return err
	}
	html, err := res.HTML()
	if err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(dir, "report.html"), html)
}

func writeFileAtomic(path string, b []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
