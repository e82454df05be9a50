package main

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"os"
	"runtime/pprof"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/stepflash/stepflash/engine"
	"github.com/stepflash/stepflash/model"
)

// benchStat is min/median/max tok/s over runs.
type benchStat struct {
	Test   string    `json:"test"`
	Tokens int       `json:"tokens"`
	Runs   []float64 `json:"runs_tps"`
	Min    float64   `json:"min_tps"`
	Median float64   `json:"median_tps"`
	Max    float64   `json:"max_tps"`
}

func newBenchStat(test string, tokens int, durs []time.Duration) benchStat {
	s := benchStat{Test: test, Tokens: tokens}
	for _, d := range durs {
		s.Runs = append(s.Runs, float64(tokens)/d.Seconds())
	}
	sorted := append([]float64(nil), s.Runs...)
	sort.Float64s(sorted)
	s.Min, s.Max = sorted[0], sorted[len(sorted)-1]
	if n := len(sorted); n%2 == 1 {
		s.Median = sorted[n/2]
	} else {
		s.Median = (sorted[n/2-1] + sorted[n/2]) / 2
	}
	return s
}

func cmdBench(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var mf modelFlags
	mf.register(fs)
	nPrompt := fs.Int("p", 512, "prompt tokens for the prefill test (0: skip)")
	nGen := fs.Int("n", 128, "tokens for the decode test (0: skip)")
	runs := fs.Int("r", 5, "runs per test")
	warmup := fs.Bool("warmup", true, "do one untimed run of each test first")
	asJSON := fs.Bool("json", false, "print the results as JSON")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the timed runs to this file (go tool pprof)")
	effort := fs.String("effort", "", "reasoning effort tier: low, medium (default) or high (MoE: experts per token)")
	lc := loadConfig{apiKey: os.Getenv("STEP_API_KEY")}
	fs.Func("base-url", "load mode: an OpenAI-compatible API base URL, e.g. http://127.0.0.1:8000/v1 (repeat to compare servers side by side)", func(s string) error {
		u, err := url.Parse(s)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("not an http(s) URL: %q", s)
		}
		lc.baseURLs = append(lc.baseURLs, strings.TrimRight(s, "/"))
		return nil
	})
	fs.IntVar(&lc.clients, "clients", 16, "load mode: concurrent streaming clients")
	fs.DurationVar(&lc.duration, "duration", 60*time.Second, "load mode: how long clients start new requests (per server and round)")
	fs.IntVar(&lc.maxTokens, "max-tokens", 128, "load mode: max_tokens of every request")
	fs.StringVar(&lc.prompt, "prompt", "Once upon a time", "load mode: the prompt of every request")
	fs.BoolVar(&lc.ignoreEOS, "ignore-eos", true, "load mode: send \"ignore_eos\": true so every request generates max_tokens (stepflash, llama-server and vLLM accept it)")
	fs.IntVar(&lc.maxRequests, "requests", 0, "load mode: stop after this many requests per server and round (0: no limit)")
	fs.DurationVar(&lc.timeout, "request-timeout", 5*time.Minute, "load mode: limit on one request")
	fs.IntVar(&lc.rounds, "rounds", 1, "load mode: rounds; each runs every --base-url once, alternating")
	fs.StringVar(&lc.apiKey, "api-key", lc.apiKey, "load mode: bearer token ($STEP_API_KEY)")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: stepflash bench -m MODEL [flags]\n"+
			"       stepflash bench --base-url URL [--base-url URL2] [--model NAME] [--clients 16] [--duration 60s] [flags]\n\n"+
			"With -m: prefill (random prompt of -p tokens) and decode (-n single-token passes) speed\n"+
			"on an empty cache, like llama-bench's pp and tg tests; min/median/max tok/s over -r runs.\n\n"+
			"With --base-url (load mode): --clients concurrent greedy streaming /completions\n"+
			"requests of --max-tokens each against any OpenAI-compatible server (stepflash serve,\n"+
			"llama-server, vLLM) for --duration; reports requests ok/failed, aggregate completion\n"+
			"tok/s, time to first token p50/p95 and the median per-stream decode tok/s. --model\n"+
			"is the served model name (default: the first of the server's /models). Requests in\n"+
			"flight when the duration ends run to their end and count. Several --base-url run one\n"+
			"after another (alternating over --rounds) and are printed side by side, with each\n"+
			"one's aggregate tok/s as a ratio to the last one's.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if pos, err := parseInterleaved(fs, args); err != nil {
		return err
	} else if len(pos) > 0 {
		return fmt.Errorf("unexpected argument %q", pos[0])
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	loadOnly := []string{"clients", "duration", "max-tokens", "prompt", "ignore-eos", "requests", "request-timeout", "rounds", "api-key"}
	modelOnly := []string{"p", "n", "r", "effort", "cpuprofile", "t", "threads", "c", "ctx"}
	if len(lc.baseURLs) > 0 {
		for _, f := range modelOnly {
			if set[f] {
				return fmt.Errorf("-%s is a flag of bench -m (the local engine), not of the load mode (--base-url)", f)
			}
		}
		lc.model, lc.warmup, lc.json = mf.model, *warmup, *asJSON
		return runLoad(context.Background(), lc, stdout, stderr)
	}
	for _, f := range loadOnly {
		if set[f] {
			return fmt.Errorf("--%s needs --base-url (the load mode)", f)
		}
	}
	if *runs < 1 {
		return fmt.Errorf("-r must be at least 1")
	}
	if *nPrompt < 0 || *nGen < 0 {
		return fmt.Errorf("-p and -n must not be negative")
	}
	if _, err := engine.ParseEffort(*effort); err != nil {
		return err
	}
	if mf.ctx == 0 {
		mf.ctx = max(*nPrompt, *nGen) + 1
	}
	l, err := mf.load()
	if err != nil {
		return err
	}
	defer l.Close()
	e := l.engine
	cfg := l.model.Config()
	applied, err := engine.DefaultEffortPolicy(cfg).Apply(*effort, cfg)
	if err != nil {
		return err
	}
	experts := 0
	if applied.ExpertsPerToken != nil {
		experts = *applied.ExpertsPerToken
	}
	weightBytes := model.WeightBytesPerToken(l.file, cfg, experts)
	var results []benchStat
	if *cpuProfile != "" {
		pf, err := os.Create(*cpuProfile)
		if err != nil {
			return err
		}
		defer pf.Close()
		if err := pprof.StartCPUProfile(pf); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	if *nPrompt > 0 {
		if *warmup {
			if _, err := e.BenchPrefill(*nPrompt, experts, 0); err != nil {
				return err
			}
		}
		var durs []time.Duration
		for i := 0; i < *runs; i++ {
			d, err := e.BenchPrefill(*nPrompt, experts, uint64(i+1))
			if err != nil {
				return err
			}
			durs = append(durs, d)
		}
		results = append(results, newBenchStat(fmt.Sprintf("pp%d", *nPrompt), *nPrompt, durs))
	}
	if *nGen > 0 {
		if *warmup {
			if _, err := e.BenchDecode(min(*nGen, 16), experts, 0); err != nil {
				return err
			}
		}
		var durs []time.Duration
		for i := 0; i < *runs; i++ {
			d, err := e.BenchDecode(*nGen, experts, uint64(i+1))
			if err != nil {
				return err
			}
			durs = append(durs, d)
		}
		results = append(results, newBenchStat(fmt.Sprintf("tg%d", *nGen), *nGen, durs))
	}
	if *asJSON {
		return json.NewEncoder(stdout).Encode(struct {
			Model   string               `json:"model"`
			Threads int                  `json:"threads"`
			Effort  engine.AppliedEffort `json:"effort"`
			// WeightBytesPerToken is what one decoded token reads: decode
			// cannot beat memory bandwidth divided by it.
			WeightBytesPerToken int64       `json:"weight_bytes_per_token"`
			Results             []benchStat `json:"results"`
		}{mf.model, mf.threads, applied, weightBytes, results})
	}
	fmt.Fprintf(stdout, "model: %s  threads: %d  runs: %d  effort: %s\n", mf.model, mf.threads, *runs, describeEffort(applied))
	fmt.Fprintf(stdout, "weights read per decoded token: %.1f MiB\n", float64(weightBytes)/(1<<20))
	fmt.Fprintf(stdout, "%-8s %12s %12s %12s\n", "test", "min t/s", "median t/s", "max t/s")
	for _, r := range results {
		fmt.Fprintf(stdout, "%-8s %12.2f %12.2f %12.2f\n", r.Test, r.Min, r.Median, r.Max)
	}
	return nil
}

// loadConfig is bench's load mode (--base-url): concurrent streaming
// completions against OpenAI-compatible servers.
type loadConfig struct {
	baseURLs    []string
	model       string // "" asks each server's /models
	apiKey      string
	clients     int
	duration    time.Duration
	maxTokens   int
	prompt      string
	ignoreEOS   bool
	maxRequests int
	timeout     time.Duration
	rounds      int
	warmup      bool
	json        bool
}

// Load mode limits: a run is bounded in clients, time and error messages kept.
const (
	maxLoadClients  = 1024
	maxLoadDuration = 24 * time.Hour
	maxLoadErrors   = 5                     // distinct error messages reported per server
	maxSSELine      = 4 << 20               // longest SSE line accepted
	failurePause    = 50 * time.Millisecond // a client's pause after a failed request
)

// loadSample is one request of a load run.
type loadSample struct {
	err       string
	tokens    int           // completion tokens
	fromUsage bool          // tokens came from the server's usage (else: streamed chunks with text)
	ttft      time.Duration // time to the first chunk with text; 0 if none
	decodeTPS float64       // (tokens-1) / (last text chunk - first); 0 under 2 tokens
}

// loadResult is one server's report.
type loadResult struct {
	BaseURL        string   `json:"base_url"`
	Model          string   `json:"model"`
	RequestsOK     int      `json:"requests_ok"`
	RequestsFailed int      `json:"requests_failed"`
	Errors         []string `json:"errors,omitempty"`
	// CompletionTokens of the successful requests, counted as TokensFrom
	// says: "usage" (the server's usage.completion_tokens), "chunks"
	// (streamed chunks carrying text: no usage was sent), or "usage+chunks".
	CompletionTokens int     `json:"completion_tokens"`
	TokensFrom       string  `json:"tokens_from"`
	Seconds          float64 `json:"seconds"`
	// AggregateTPS is completion tokens over wall time (median over rounds).
	AggregateTPS float64   `json:"aggregate_tps"`
	RoundsTPS    []float64 `json:"rounds_tps"`
	// AggregateRatio is AggregateTPS over the last server's (several --base-url).
	AggregateRatio *float64 `json:"aggregate_ratio,omitempty"`
	TTFTP50MS      float64  `json:"ttft_p50_ms"`
	TTFTP95MS      float64  `json:"ttft_p95_ms"`
	// DecodeTPSMedian is the median over requests of one stream's tok/s
	// after its first token.
	DecodeTPSMedian float64 `json:"decode_tps_median"`

	samples []loadSample
	usage   [2]bool // some tokens from usage, some from chunks
}

func (c *loadConfig) check() error {
	switch {
	case c.clients < 1 || c.clients > maxLoadClients:
		return fmt.Errorf("--clients must be in 1..%d, got %d", maxLoadClients, c.clients)
	case c.duration <= 0 || c.duration > maxLoadDuration:
		return fmt.Errorf("--duration must be positive and at most %s, got %s", maxLoadDuration, c.duration)
	case c.maxTokens < 1:
		return fmt.Errorf("--max-tokens must be at least 1, got %d", c.maxTokens)
	case c.maxRequests < 0:
		return fmt.Errorf("--requests must not be negative")
	case c.timeout <= 0:
		return fmt.Errorf("--request-timeout must be positive")
	case c.rounds < 1:
		return fmt.Errorf("--rounds must be at least 1")
	case c.prompt == "":
		return fmt.Errorf("--prompt must not be empty")
	}
	return nil
}

// runLoad runs the load mode and prints the report.
func runLoad(ctx context.Context, c loadConfig, stdout, stderr io.Writer) error {
	if err := c.check(); err != nil {
		return err
	}
	hc := &http.Client{Transport: &http.Transport{Proxy: http.ProxyFromEnvironment, MaxIdleConns: 2 * c.clients,
		MaxIdleConnsPerHost: c.clients, IdleConnTimeout: 90 * time.Second, DisableCompression: true}}
	defer hc.CloseIdleConnections()
	results := make([]*loadResult, len(c.baseURLs))
	for i, base := range c.baseURLs {
		r := &loadResult{BaseURL: base, Model: c.model}
		if r.Model == "" {
			m, err := firstModel(ctx, hc, base, c.apiKey)
			if err != nil {
				return fmt.Errorf("%s: no --model given, and listing the served models failed: %w", base, err)
			}
			r.Model = m
		}
		if c.warmup {
			w := c
			w.maxTokens = min(c.maxTokens, 8)
			wctx, cancel := context.WithTimeout(ctx, c.timeout)
			s := streamCompletion(wctx, hc, base, c.apiKey, completionBody(w, r.Model))
			cancel()
			if s.err != "" {
				return fmt.Errorf("%s: warm-up request for model %q failed: %s", base, r.Model, s.err)
			}
		}
		results[i] = r
	}
	for round := range c.rounds {
		for _, r := range results {
			fmt.Fprintf(stderr, "bench: round %d/%d: %d clients for %s against %s (model %q)\n", round+1, c.rounds, c.clients, c.duration, r.BaseURL, r.Model)
			hc.CloseIdleConnections() // none left idle (and perhaps timed out) by the last round
			samples, wall := loadRound(ctx, hc, c, r.BaseURL, r.Model)
			r.add(samples, wall)
		}
	}
	for _, r := range results {
		r.finish()
	}
	last := results[len(results)-1]
	for _, r := range results {
		if len(results) > 1 && last.AggregateTPS > 0 {
			ratio := r.AggregateTPS / last.AggregateTPS
			r.AggregateRatio = &ratio
		}
	}
	if c.json {
		err := json.NewEncoder(stdout).Encode(struct {
			Clients   int           `json:"clients"`
			DurationS float64       `json:"duration_s"`
			MaxTokens int           `json:"max_tokens"`
			IgnoreEOS bool          `json:"ignore_eos"`
			Prompt    string        `json:"prompt"`
			Rounds    int           `json:"rounds"`
			Results   []*loadResult `json:"results"`
		}{c.clients, c.duration.Seconds(), c.maxTokens, c.ignoreEOS, c.prompt, c.rounds, results})
		if err != nil {
			return err
		}
	} else {
		printLoad(stdout, c, results)
	}
	for _, r := range results {
		if r.RequestsOK == 0 {
			return fmt.Errorf("%s: no request succeeded", r.BaseURL)
		}
	}
	return nil
}

// completionBody is the request every client sends.
func completionBody(c loadConfig, model string) []byte {
	body := map[string]any{"model": model, "prompt": c.prompt, "max_tokens": c.maxTokens, "temperature": 0,
		"stream": true, "stream_options": map[string]any{"include_usage": true}}
	if c.ignoreEOS {
		body["ignore_eos"] = true
	}
	b, _ := json.Marshal(body)
	return b
}

// loadRound runs the clients against one server for the duration (or until
// maxRequests have started) and returns the samples and the wall time until
// the last request ended.
func loadRound(ctx context.Context, hc *http.Client, c loadConfig, base, model string) ([]loadSample, time.Duration) {
	body := completionBody(c, model)
	start := time.Now()
	deadline := start.Add(c.duration)
	var started atomic.Int64
	var mu sync.Mutex
	var samples []loadSample
	var wg sync.WaitGroup
	for range c.clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) && ctx.Err() == nil {
				if c.maxRequests > 0 && started.Add(1) > int64(c.maxRequests) {
					return
				}
				rctx, cancel := context.WithTimeout(ctx, c.timeout)
				s := streamCompletion(rctx, hc, base, c.apiKey, body)
				cancel()
				mu.Lock()
				samples = append(samples, s)
				mu.Unlock()
				if s.err != "" { // do not hammer a failing server
					time.Sleep(min(failurePause, time.Until(deadline)))
				}
			}
		}()
	}
	wg.Wait()
	return samples, time.Since(start)
}

// streamCompletion sends one streaming completion and times its chunks.
func streamCompletion(ctx context.Context, hc *http.Client, base, apiKey string, body []byte) (s loadSample) {
	start := time.Now()
	var resp *http.Response
	for attempt := 0; ; attempt++ {
		reused := false
		trace := &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) { reused = i.Reused }}
		req, err := http.NewRequestWithContext(httptrace.WithClientTrace(ctx, trace), http.MethodPost, base+"/completions", bytes.NewReader(body))
		if err != nil {
			s.err = err.Error()
			return s
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "text/event-stream")
		if apiKey != "" {
			req.Header.Set("Authorization", "Bearer "+apiKey)
		}
		resp, err = hc.Do(req)
		if err == nil {
			break
		}
		// A kept-alive connection the server had just closed: once more
		// on a new one (Go retries only idempotent requests itself).
		if !reused || attempt > 0 || ctx.Err() != nil {
			s.err = err.Error()
			return s
		}
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		s.err = fmt.Sprintf("HTTP %d: %s", resp.StatusCode, errorText(b))
		return s
	}
	br := bufio.NewReaderSize(resp.Body, 64<<10)
	var first, last time.Time
	chunks, usageTokens := 0, 0
	done, finished := false, false
	for !done {
		line, err := readLine(br)
		if data, ok := strings.CutPrefix(line, "data:"); ok {
			data = strings.TrimSpace(data)
			if data == "[DONE]" {
				done = true
				continue
			}
			var ch struct {
				Choices []struct {
					Text         string  `json:"text"`
					FinishReason *string `json:"finish_reason"`
				} `json:"choices"`
				Usage *struct {
					CompletionTokens int `json:"completion_tokens"`
				} `json:"usage"`
				Error json.RawMessage `json:"error"`
			}
			if jerr := json.Unmarshal([]byte(data), &ch); jerr != nil {
				s.err = fmt.Sprintf("bad stream chunk %.80q: %v", data, jerr)
				return s
			}
			if len(ch.Error) > 0 && string(ch.Error) != "null" {
				s.err = "error in the stream: " + errorText([]byte(data))
				return s
			}
			for _, c := range ch.Choices {
				if c.Text != "" {
					now := time.Now()
					if chunks == 0 {
						first = now
					}
					last = now
					chunks++
				}
				if c.FinishReason != nil && *c.FinishReason != "" {
					finished = true
				}
			}
			if ch.Usage != nil && ch.Usage.CompletionTokens > 0 {
				usageTokens = ch.Usage.CompletionTokens
			}
		}
		if err != nil {
			if err == io.EOF {
				break
			}
			s.err = "reading the stream: " + err.Error()
			return s
		}
	}
	if !done && !finished {
		s.err = "the stream ended without a finish_reason or [DONE]"
		return s
	}
	s.tokens, s.fromUsage = chunks, false
	if usageTokens > 0 {
		s.tokens, s.fromUsage = usageTokens, true
	}
	if chunks > 0 {
		s.ttft = first.Sub(start)
		if s.tokens >= 2 && last.After(first) {
			s.decodeTPS = float64(s.tokens-1) / last.Sub(first).Seconds()
		}
	}
	return s
}

// readLine reads one line (without its end), refusing lines over maxSSELine.
func readLine(br *bufio.Reader) (string, error) {
	var b []byte
	for {
		part, isPrefix, err := br.ReadLine()
		b = append(b, part...)
		if len(b) > maxSSELine {
			return "", fmt.Errorf("an SSE line is longer than %d bytes", maxSSELine)
		}
		if err != nil || !isPrefix {
			return string(b), err
		}
	}
}

// errorText is the message of an OpenAI error object, or the body itself.
func errorText(b []byte) string {
	var e struct {
		Error json.RawMessage `json:"error"`
	}
	if json.Unmarshal(b, &e) == nil && len(e.Error) > 0 {
		var obj struct {
			Message string `json:"message"`
			Code    any    `json:"code"`
		}
		if json.Unmarshal(e.Error, &obj) == nil && obj.Message != "" {
			if obj.Code != nil {
				return fmt.Sprintf("%s (%v)", obj.Message, obj.Code)
			}
			return obj.Message
		}
		var str string
		if json.Unmarshal(e.Error, &str) == nil {
			return str
		}
	}
	t := strings.TrimSpace(string(b))
	if len(t) > 300 {
		t = t[:300] + "…"
	}
	return t
}

// firstModel returns the first id of a server's model list.
func firstModel(ctx context.Context, hc *http.Client, base, apiKey string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/models", nil)
	if err != nil {
		return "", err
	}
	if apiKey != "" {
		req.Header.Set("Authorization", "Bearer "+apiKey)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("HTTP %d: %s", resp.StatusCode, errorText(b))
	}
	var list struct {
		Data []struct {
			ID string `json:"id"`
		} `json:"data"`
	}
	if err := json.Unmarshal(b, &list); err != nil || len(list.Data) == 0 || list.Data[0].ID == "" {
		return "", errors.New("the model list has no models")
	}
	return list.Data[0].ID, nil
}

// add records one round.
func (r *loadResult) add(samples []loadSample, wall time.Duration) {
	tokens := 0
	for _, s := range samples {
		if s.err != "" {
			r.RequestsFailed++
			if len(r.Errors) < maxLoadErrors && !contains(r.Errors, s.err) {
				r.Errors = append(r.Errors, s.err)
			}
			continue
		}
		r.RequestsOK++
		tokens += s.tokens
		if s.fromUsage {
			r.usage[0] = true
		} else {
			r.usage[1] = true
		}
		r.samples = append(r.samples, s)
	}
	r.CompletionTokens += tokens
	r.Seconds += wall.Seconds()
	r.RoundsTPS = append(r.RoundsTPS, float64(tokens)/wall.Seconds())
}

// finish computes the summary statistics.
func (r *loadResult) finish() {
	switch r.usage {
	case [2]bool{true, false}:
		r.TokensFrom = "usage"
	case [2]bool{false, true}:
		r.TokensFrom = "chunks"
	case [2]bool{true, true}:
		r.TokensFrom = "usage+chunks"
	}
	r.AggregateTPS = median(r.RoundsTPS)
	var ttft, decode []float64
	for _, s := range r.samples {
		if s.ttft > 0 {
			ttft = append(ttft, float64(s.ttft)/float64(time.Millisecond))
		}
		if s.decodeTPS > 0 {
			decode = append(decode, s.decodeTPS)
		}
	}
	r.TTFTP50MS, r.TTFTP95MS = percentile(ttft, 50), percentile(ttft, 95)
	r.DecodeTPSMedian = median(decode)
}

// percentile is the nearest-rank p-th percentile (0 for no values).
func percentile(v []float64, p float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	i := int(math.Ceil(p/100*float64(len(s)))) - 1
	return s[min(max(i, 0), len(s)-1)]
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	if n := len(s); n%2 == 0 {
		return (s[n/2-1] + s[n/2]) / 2
	}
	return s[len(s)/2]
}

// printLoad prints the results side by side, one column per server.
func printLoad(w io.Writer, c loadConfig, results []*loadResult) {
	eos := ""
	if c.ignoreEOS {
		eos = ", ignore_eos"
	}
	fmt.Fprintf(w, "load: %d streaming clients × %s per server and round, %d round(s); greedy /completions, max_tokens %d%s, prompt %q\n",
		c.clients, c.duration, c.rounds, c.maxTokens, eos, c.prompt)
	tw := tabwriter.NewWriter(w, 0, 0, 3, ' ', 0)
	row := func(name string, f func(r *loadResult) string) {
		cells := []string{name}
		for _, r := range results {
			cells = append(cells, f(r))
		}
		fmt.Fprintln(tw, strings.Join(cells, "\t")+"\t")
	}
	row("server", func(r *loadResult) string { return r.BaseURL })
	row("model", func(r *loadResult) string { return r.Model })
	row("requests ok / failed", func(r *loadResult) string { return fmt.Sprintf("%d / %d", r.RequestsOK, r.RequestsFailed) })
	row("completion tokens (from)", func(r *loadResult) string {
		return fmt.Sprintf("%d (%s)", r.CompletionTokens, cmp.Or(r.TokensFrom, "none"))
	})
	row("aggregate tok/s", func(r *loadResult) string { return fmt.Sprintf("%.1f", r.AggregateTPS) })
	if len(results) > 1 {
		row("  ratio to the last", func(r *loadResult) string {
			if r.AggregateRatio == nil {
				return "-"
			}
			return fmt.Sprintf("%.2fx", *r.AggregateRatio)
		})
	}
	row("TTFT p50 / p95 ms", func(r *loadResult) string { return fmt.Sprintf("%.1f / %.1f", r.TTFTP50MS, r.TTFTP95MS) })
	row("per-stream decode tok/s (median)", func(r *loadResult) string { return fmt.Sprintf("%.1f", r.DecodeTPSMedian) })
	tw.Flush()
	for _, r := range results {
		for _, e := range r.Errors {
			fmt.Fprintf(w, "error (%s): %s\n", r.BaseURL, e)
		}
	}
}
