package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/stepflash/stepflash/eval"
)

// stringList is a flag that may be repeated.
type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

// optFloat is a float flag that remembers whether it was set.
type optFloat struct {
	v   float64
	set bool
}

func (o *optFloat) String() string {
	if !o.set {
		return ""
	}
	return strconv.FormatFloat(o.v, 'g', -1, 64)
}
func (o *optFloat) Set(s string) error {
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return errors.New("not a number")
	}
	o.v, o.set = v, true
	return nil
}

const evalUsage = `Usage: stepflash eval SUITE --base-url URL [--base-url URL2] [--api-key K] [--model M [--model M2]]
                      [--passes 5] [--out DIR] [--tasks FILE.jsonl] [--limit N] [--concurrency N] [flags]

Run one of the experiments to make before trusting an OpenAI-compatible
endpoint (a stepflash, StepFun's APIs, OpenRouter, vLLM, ...), several passes
each, since one run is noise:

  effort     each task at reasoning_effort low, medium and high: score (mean,
             min–max over passes), time to first token and total, tokens
             (prompt, cached, completion, reasoning) and cost per tier
  head2head  two endpoints (two --base-url) or two models (two --model) on the
             same tasks, paired by task and pass: per-pass scores, the mean
             paired difference with a 95% confidence interval (paired
             bootstrap over tasks) and whether it excludes 0
  advisor    a multi-step agent loop with scripted tools, some failing, with
             the advisor auto and off and a single model at --baseline-effort:
             cost per step, escalations, success
  vision     generated images with known answers (quadrant colours, a 3x3
             grid's cells, counts of squares) asked natively (an image_url
             part with a data: URL) and tool-chained (a captioning call whose
             text is handed to the model): score by kind, latency, tokens
             (image tokens where the usage gives them) and cost per task; an
             endpoint whose model takes no images (/v1/models
             input_modalities) runs only the arm it can

Every call is streamed with stream_options.include_usage. Costs are the
endpoint's usage.cost where it reports one, else computed from the tokens
and --price-* (default: Step 3.7 Flash's list prices). The embedded task set
is 200 addition problems ("What is A + B?", 2–5 digits); --tasks FILE reads
JSONL lines {"question","answer"[,"id","check":"exact|numeric|json","tolerance"]}.

Sampling: --temperature 0 by default (greedy), so that a score measures the
model rather than the sampler and runs are comparable across endpoints whose
default temperatures differ; passes then differ only where the endpoint is
not deterministic. To measure sampling spread, pass e.g. --temperature 0.7
--seed 1 (pass p sends seed 1+p-1).

Writes DIR/results.json (every call), DIR/report.html (self-contained, with
plots) and DIR/calls.jsonl (the journal, appended as calls finish); a rerun
with the same --out and settings skips the calls already recorded. Prints a
summary table; progress goes to stderr. Ctrl-C stops and keeps what is done.

Flags:
`

// evalOptions are the parsed flags of `stepflash eval`.
type evalOptions struct {
	cfg   eval.Config
	tasks string
}

func parseEval(args []string, getenv func(string) string, stderr io.Writer) (*evalOptions, error) {
	o := &evalOptions{}
	fs := flag.NewFlagSet("eval", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var baseURLs, models stringList
	fs.Var(&baseURLs, "base-url", "the endpoint's base URL, ending in /v1; twice for head2head (default $STEP_BASE_URL, $OPENAI_BASE_URL, else "+defaultDoctorBaseURL+")")
	apiKey := fs.String("api-key", "", "API key, sent as a Bearer token to every endpoint (default $STEP_API_KEY, else $OPENAI_API_KEY)")
	fs.Var(&models, "model", "model to ask; twice for head2head on one endpoint (default: step-3.7-flash when served, else the first served name)")
	fs.IntVar(&o.cfg.Passes, "passes", 5, "passes over the tasks (at least 5 to see the spread)")
	fs.StringVar(&o.cfg.Out, "out", "", "output folder (default eval-SUITE)")
	fs.StringVar(&o.tasks, "tasks", "", "JSONL task file instead of the embedded set (effort, head2head)")
	fs.IntVar(&o.cfg.Limit, "limit", 0, "use only the first N tasks (0: all)")
	fs.IntVar(&o.cfg.Concurrency, "concurrency", 4, "calls in flight at once")
	temp := &optFloat{v: 0, set: true}
	fs.Var(temp, "temperature", "sampling temperature sent with every call; a negative value sends none (the endpoint's default)")
	seed := &optFloat{}
	fs.Var(seed, "seed", "send seed S+pass-1 on each pass (default: no seed)")
	fs.IntVar(&o.cfg.MaxTokens, "max-tokens", 0, "max_tokens of every call (0: not sent)")
	fs.StringVar(&o.cfg.Effort, "effort", "", "reasoning_effort for head2head, advisor and vision calls (default: not sent)")
	tiers := fs.String("tiers", "low,medium,high", "the effort suite's tiers, comma-separated")
	fs.Float64Var(&o.cfg.Prices.InputMiss, "price-input", eval.DefaultPrices.InputMiss, "USD per 1M uncached prompt tokens, for endpoints that report no usage.cost")
	fs.Float64Var(&o.cfg.Prices.InputHit, "price-cached", eval.DefaultPrices.InputHit, "USD per 1M cached prompt tokens")
	fs.Float64Var(&o.cfg.Prices.Output, "price-output", eval.DefaultPrices.Output, "USD per 1M completion tokens, reasoning included")
	fs.DurationVar(&o.cfg.Timeout, "timeout", 10*time.Minute, "limit on each call")
	fs.StringVar(&o.cfg.BaselineModel, "baseline-model", "", "advisor: the single-model baseline's model (default: the --model, advisor off)")
	fs.StringVar(&o.cfg.BaselineEffort, "baseline-effort", "high", "advisor: the baseline's reasoning_effort")
	fs.IntVar(&o.cfg.Steps, "steps", 12, "advisor: steps per agent loop")
	fs.StringVar(&o.cfg.CaptionModel, "caption-model", "", "vision: the model that captions the image in the tool-chained arm (default: the --model)")
	fs.StringVar(&o.cfg.CaptionPrompt, "caption-prompt", eval.DefaultCaptionPrompt, "vision: what the captioning call asks")
	kinds := fs.String("kinds", strings.Join(eval.VisionKinds, ","), "vision: the task kinds, comma-separated (--limit N keeps the first N of each)")
	fs.Usage = func() {
		fmt.Fprint(stderr, evalUsage)
		fs.PrintDefaults()
	}
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return nil, err
	}
	bad := func(format string, a ...any) (*evalOptions, error) {
		fmt.Fprintf(stderr, "stepflash eval: "+format+"\n", a...)
		return nil, errUsage
	}
	if len(pos) != 1 {
		return bad("want one suite (effort, head2head, advisor or vision), got %d arguments; see stepflash eval -h", len(pos))
	}
	o.cfg.Suite = pos[0]
	known := false
	for _, s := range eval.Suites {
		known = known || s == o.cfg.Suite
	}
	if !known {
		return bad("unknown suite %q: want effort, head2head, advisor or vision", o.cfg.Suite)
	}
	if len(baseURLs) > 2 || len(models) > 2 {
		return bad("at most two --base-url and two --model")
	}
	if len(baseURLs) == 0 {
		baseURLs = append(baseURLs, cmp.Or(getenv("STEP_BASE_URL"), getenv("OPENAI_BASE_URL"), defaultDoctorBaseURL))
	}
	key := cmp.Or(*apiKey, getenv("STEP_API_KEY"), getenv("OPENAI_API_KEY"))
	n := max(len(baseURLs), len(models))
	if o.cfg.Suite == eval.SuiteHead2Head {
		if n != 2 {
			return bad("head2head compares two endpoints (--base-url twice) or two models (--model twice)")
		}
	} else if n != 1 {
		return bad("suite %s takes one --base-url and one --model", o.cfg.Suite)
	}
	for i := range n {
		ep := eval.Endpoint{BaseURL: baseURLs[min(i, len(baseURLs)-1)], APIKey: key}
		if len(models) > 0 {
			ep.Model = models[min(i, len(models)-1)]
		}
		o.cfg.Endpoints = append(o.cfg.Endpoints, ep)
	}
	if o.cfg.Passes < 1 {
		return bad("--passes must be at least 1")
	}
	if o.cfg.Concurrency < 1 {
		return bad("--concurrency must be at least 1")
	}
	if o.cfg.Limit < 0 || o.cfg.MaxTokens < 0 || o.cfg.Steps < 1 || o.cfg.Timeout <= 0 {
		return bad("--limit and --max-tokens must not be negative, --steps and --timeout must be positive")
	}
	if temp.v >= 0 {
		t := temp.v
		o.cfg.Temperature = &t
	}
	if seed.set {
		if seed.v != float64(int64(seed.v)) {
			return bad("--seed must be an integer")
		}
		s := int64(seed.v)
		o.cfg.Seed = &s
	}
	for _, k := range strings.Split(*kinds, ",") {
		if k = strings.TrimSpace(k); k == "" {
			continue
		}
		if !slices.Contains(eval.VisionKinds, k) {
			return bad("--kinds: unknown kind %q: want %s", k, strings.Join(eval.VisionKinds, ", "))
		}
		o.cfg.Kinds = append(o.cfg.Kinds, k)
	}
	if len(o.cfg.Kinds) == 0 {
		return bad("--kinds names no kind: want some of %s", strings.Join(eval.VisionKinds, ", "))
	}
	if strings.TrimSpace(o.cfg.CaptionPrompt) == "" {
		return bad("--caption-prompt is empty")
	}
	if o.cfg.Suite != eval.SuiteVision {
		o.cfg.Kinds, o.cfg.CaptionPrompt = nil, "" // not part of other suites' configuration
	}
	for _, t := range strings.Split(*tiers, ",") {
		if t = strings.TrimSpace(t); t != "" {
			o.cfg.Tiers = append(o.cfg.Tiers, t)
		}
	}
	p := o.cfg.Prices
	if p.InputMiss < 0 || p.InputHit < 0 || p.Output < 0 {
		return bad("prices must not be negative")
	}
	fs.Visit(func(f *flag.Flag) {
		if strings.HasPrefix(f.Name, "price-") {
			o.cfg.PricesSource = "the --price-* flags"
		}
	})
	if o.cfg.Out == "" {
		o.cfg.Out = "eval-" + o.cfg.Suite
	}
	if o.tasks != "" {
		if o.cfg.Suite != eval.SuiteEffort && o.cfg.Suite != eval.SuiteHead2Head {
			return bad("--tasks applies to effort and head2head; suite %s has its own tasks", o.cfg.Suite)
		}
		ts, err := eval.ReadTasksFile(o.tasks)
		if err != nil {
			return bad("--tasks: %v", err)
		}
		o.cfg.Tasks, o.cfg.TasksSource = ts, o.tasks
	}
	return o, nil
}

// isTerminal reports whether f is a character device (a terminal).
func isTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

func cmdEval(args []string, stdout, stderr io.Writer) error {
	o, err := parseEval(args, os.Getenv, stderr)
	if err != nil {
		return err
	}
	o.cfg.Progress = stderr
	if f, ok := stderr.(*os.File); ok {
		o.cfg.Terminal = isTerminal(f)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	return runEval(ctx, o, stdout)
}

// runEval runs the suite and prints the summary (also of a run stopped
// early, whose results are written too).
func runEval(ctx context.Context, o *evalOptions, stdout io.Writer) error {
	res, err := eval.Run(ctx, o.cfg)
	if res != nil {
		res.WriteText(stdout)
		fmt.Fprintf(stdout, "wrote %s/results.json and %s/report.html\n", o.cfg.Out, o.cfg.Out)
	}
	if err != nil && errors.Is(err, context.Canceled) {
		return fmt.Errorf("stopped; rerun the same command to finish (calls already recorded are skipped)")
	}
	return err
}
