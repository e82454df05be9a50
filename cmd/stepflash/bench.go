package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"runtime/pprof"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/stepflash/stepflash/effort"
	"github.com/stepflash/stepflash/engine"
	"github.com/stepflash/stepflash/gguf"
	"github.com/stepflash/stepflash/loadgen"
	"github.com/stepflash/stepflash/local"
	"github.com/stepflash/stepflash/model"
	"github.com/stepflash/stepflash/tensor"
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
	s.Min, s.Max, s.Median = slices.Min(s.Runs), slices.Max(s.Runs), median(s.Runs)
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
	depth := fs.Int("d", 0, "depth: positions already in the KV cache (random tokens, filled untimed before each run) when the prefill and decode tests start, as llama-bench's -d")
	warmup := fs.Bool("warmup", true, "before timing, read every weight once (so mapped pages are resident, as in a long-running server) and do one untimed run of each test")
	asJSON := fs.Bool("json", false, "print the results as JSON")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the timed runs (and the probes) to this file (go tool pprof)")
	effortFlag := fs.String("effort", "", "reasoning effort tier: low, medium (default) or high (MoE: experts per token)")
	prefixHit := fs.Float64("prefix-hit", 0, "instead of the prefill and decode tests, time to first token of a -p token prompt whose first share "+
		"(e.g. 0.9) is in the prefix cache, against the same length cold: -r rounds of the pair")
	specPrompt := fs.String("spec-prompt", "", "with --spec ngram or --draft FILE: instead of the prefill and decode tests, greedy decode of -n tokens after this prompt (@FILE reads a file; \"\": a built-in repetitive code snippet) with speculation and without, -r alternating rounds, and the drafts' acceptance")
	probe := fs.Bool("probe", true, "after each decode run, time one read of the weights (up to 1 GiB) with the same threads: "+
		"the memory speed that caps decode, reported with each run's share of that ceiling")
	lc := loadgen.Config{APIKey: os.Getenv("STEP_API_KEY")}
	fs.Func("base-url", "load mode: an OpenAI-compatible API base URL, e.g. http://127.0.0.1:8000/v1 (repeat to compare servers side by side)", func(s string) error {
		u, err := url.Parse(s)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("not an http(s) URL: %q", s)
		}
		lc.BaseURLs = append(lc.BaseURLs, strings.TrimRight(s, "/"))
		return nil
	})
	fs.IntVar(&lc.Clients, "clients", 16, "load mode: concurrent streaming clients")
	fs.DurationVar(&lc.Duration, "duration", 60*time.Second, "load mode: how long clients start new requests (per server and round); "+
		"in the chat mode a limit only when given (no turn starts after it)")
	fs.IntVar(&lc.MaxTokens, "max-tokens", 128, "load mode: max_tokens of every request")
	fs.StringVar(&lc.Prompt, "prompt", "Once upon a time", "load mode: the prompt of every request (chat mode: the start of each conversation's first user message)")
	fs.BoolVar(&lc.IgnoreEOS, "ignore-eos", true, "load mode: send \"ignore_eos\": true so every request generates max_tokens (stepflash, llama-server and vLLM accept it)")
	fs.IntVar(&lc.MaxRequests, "requests", 0, "load mode: stop after this many requests per server and round (0: no limit; not in the chat mode)")
	fs.DurationVar(&lc.Timeout, "request-timeout", 5*time.Minute, "load mode: limit on one request")
	fs.IntVar(&lc.Rounds, "rounds", 1, "load mode: rounds; each runs every --base-url once, alternating")
	fs.StringVar(&lc.APIKey, "api-key", lc.APIKey, "load mode: bearer token ($STEP_API_KEY)")
	fs.IntVar(&lc.LongPrompt, "long-prompt", 0, "load mode: beside the --clients, one client streams prompts of this many random token ids (1 token each) one after another; "+
		"the others' inter-token latency shows how a long prefill stalls them")
	fs.IntVar(&lc.Conversations, "conversations", 0, "load mode: run this many multi-turn chat conversations per server and round (the chat mode; needs --turns)")
	fs.IntVar(&lc.Turns, "turns", 0, "chat mode: requests per conversation, each resending the conversation so far (needs --conversations)")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: stepflash bench -m MODEL [flags]\n"+
			"       stepflash bench --base-url URL [--base-url URL2] [--model NAME] [--clients 16] [--duration 60s] [flags]\n"+
			"       stepflash bench --base-url URL [--base-url URL2] --conversations N --turns T [--clients 16] [flags]\n"+
			"       stepflash bench --base-url URL --long-prompt 32000 [--clients 4] [flags]\n\n"+
			"With -m: prefill (random prompt of -p tokens) and decode (-n single-token passes) speed\n"+
			"on an empty cache, like llama-bench's pp and tg tests; min/median/max tok/s over -r runs.\n"+
			"With --prefix-hit F: time to first token (through the scheduler, as a request sees it)\n"+
			"of a random -p token prompt cold, then of one sharing its first F×p tokens, which the\n"+
			"cold one left in the prefix cache; -r rounds of the pair; median and range of each.\n\n"+
			"With --base-url (load mode): --clients concurrent greedy streaming /completions\n"+
			"requests of --max-tokens each against any OpenAI-compatible server (stepflash serve,\n"+
			"llama-server, vLLM) for --duration; reports requests ok/failed, aggregate completion\n"+
			"tok/s, time to first token p50/p95/p99, the median per-stream decode tok/s and the\n"+
			"inter-token latency (ITL: the time between consecutive streamed chunks with text of a\n"+
			"request) p50/p99 over every stream, and each round's p99. --model\n"+
			"is the served model name (default: the first of the server's /models). Requests in\n"+
			"flight when the duration ends run to their end and count. Several --base-url run one\n"+
			"after another (alternating over --rounds) and are printed side by side, with each\n"+
			"one's aggregate tok/s as a ratio to the last one's.\n\n"+
			"With --long-prompt N as well, one more client streams, one after another while the\n"+
			"round lasts, requests whose prompt is N token ids drawn at random from 100..355 (fresh\n"+
			"ones each time, so no prefix cache serves them) with max_tokens 1, and the --clients go\n"+
			"on starting requests until its last one has ended. The ITL of the --clients is then the\n"+
			"figure: how long a long prefill stalls the streams decoding beside it (the server needs\n"+
			"a context above N). The long requests count only in their own rows (requests ok/failed,\n"+
			"their median time to first token: the prefill as the client sees it).\n\n"+
			"With --conversations N --turns T as well (chat mode), bench measures prefix-cache\n"+
			"reuse, e.g. of a gateway's prefix-affine routing against round-robin over replicas.\n"+
			"Per server and round, each client takes the next of conversations 1..N until all\n"+
			"have run. A conversation is T greedy streaming /chat/completions requests in a row:\n"+
			"turn 1 sends a fixed system prompt and the user message \"<--prompt> (conversation i,\n"+
			"run L)\"; L labels the round and server (and this invocation, at random), so no run\n"+
			"finds another's turns in a server's prefix cache;\n"+
			"turn k resends the messages of turn k-1, the content of its streamed reply and the\n"+
			"user message \"Go on. (turn k)\", so its prompt starts with the prompt and reply of\n"+
			"turn k-1. A failed turn ends its conversation; its later turns count as not sent.\n"+
			"Every round against every server runs the same conversations but for L. --duration is\n"+
			"a limit only when given: no turn starts after it, and the conversations it stops\n"+
			"count as cut short. --requests does not apply. Besides the above, the report gives\n"+
			"conversations ok/failed/cut short, requests not sent, the prompt tokens, and the\n"+
			"share of them the server reported as cached (usage.prompt_tokens_details.cached_tokens,\n"+
			"usage.cached_tokens or usage.prompt_cache_hit_tokens) over all turns and over turns\n"+
			"2 and later, the share that routing can change; a share is \"unknown\" where the\n"+
			"usage gave no count of cached tokens. With --json, results[].turns gives the same\n"+
			"per turn.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if pos, err := parseInterleaved(fs, args); err != nil {
		return err
	} else if len(pos) > 0 {
		return fmt.Errorf("unexpected argument %q", pos[0])
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	loadOnly := []string{"clients", "duration", "max-tokens", "prompt", "ignore-eos", "requests", "request-timeout", "rounds", "api-key",
		"conversations", "turns", "long-prompt"}
	modelOnly := []string{"p", "n", "r", "d", "effort", "cpuprofile", "t", "threads", "c", "ctx", "load", "probe", "prefix-hit",
		"cache-type-k", "ctk", "cache-type-v", "ctv", "kv-memory", "rope-scaling", "rope-scale", "yarn-orig-ctx",
		"spec", "spec-k", "spec-ngram-min", "spec-ngram-max", "draft", "spec-prompt"}
	if len(lc.BaseURLs) > 0 {
		for _, f := range modelOnly {
			if set[f] {
				return fmt.Errorf("-%s is a flag of bench -m (the local engine), not of the load mode (--base-url)", f)
			}
		}
		if set["conversations"] != set["turns"] {
			return fmt.Errorf("--conversations and --turns go together: give both for the chat mode")
		}
		if set["conversations"] {
			if lc.Conversations < 1 || lc.Turns < 1 {
				return fmt.Errorf("--conversations and --turns must be at least 1, got %d and %d", lc.Conversations, lc.Turns)
			}
			if !set["duration"] {
				lc.Duration = 0 // no time limit
			}
		}
		lc.Model, lc.Warmup = mf.model, *warmup
		return runLoad(context.Background(), lc, *asJSON, stdout, stderr)
	}
	for _, f := range loadOnly {
		if set[f] {
			return fmt.Errorf("--%s needs --base-url (the load mode)", f)
		}
	}
	if *runs < 1 {
		return fmt.Errorf("-r must be at least 1")
	}
	if *nPrompt < 0 || *nGen < 0 || *depth < 0 {
		return fmt.Errorf("-p, -n and -d must not be negative")
	}
	if _, err := effort.Parse(*effortFlag); err != nil {
		return err
	}
	if set["prefix-hit"] {
		if *prefixHit <= 0 || *prefixHit >= 1 || *nPrompt < 2 {
			return fmt.Errorf("--prefix-hit must be between 0 and 1 (exclusive) and -p at least 2, got %g and %d", *prefixHit, *nPrompt)
		}
		if set["n"] || set["probe"] || set["d"] {
			return fmt.Errorf("--prefix-hit replaces the decode test: -n, -d and --probe do not apply")
		}
		*nGen = 0
	}
	if mf.ctx == 0 && !set["spec-prompt"] {
		mf.ctx = *depth + max(*nPrompt, *nGen) + 1
	}
	fmt.Fprintln(stderr, tensor.KernelNotice())
	l, err := mf.load()
	if err != nil {
		return err
	}
	defer l.Close()
	e := l.engine
	cfg := l.model.Config()
	applied, err := effort.DefaultPolicy(local.Shape(cfg)).Apply(*effortFlag, local.Shape(cfg))
	if err != nil {
		return err
	}
	experts := 0
	if applied.ExpertsPerToken != nil {
		experts = *applied.ExpertsPerToken
	}
	weightBytes := model.WeightBytesPerToken(l.file, cfg, experts)
	if *warmup {
		// A fresh mapping faults each page on first use: an MoE's experts
		// are first touched over many tokens, and that cost belongs to
		// loading, not to steady-state decode.
		all, _ := weightSample(l.file, 1<<62)
		p := tensor.NewPool(mf.threads)
		tensor.StreamRead(p, all)
		p.Close()
	}
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
	if set["spec-prompt"] {
		return benchSpec(l, mf, *specPrompt, *nGen, *runs, *asJSON, stdout, stderr)
	}
	if set["prefix-hit"] {
		return benchPrefixHit(e, mf, *nPrompt, *prefixHit, *runs, *warmup, experts, applied, *asJSON, stdout)
	}
	if *nPrompt > 0 {
		if *warmup {
			if _, err := e.BenchPrefillAt(*depth, *nPrompt, experts, 0); err != nil {
				return err
			}
		}
		var durs []time.Duration
		for i := 0; i < *runs; i++ {
			d, err := e.BenchPrefillAt(*depth, *nPrompt, experts, uint64(i+1))
			if err != nil {
				return err
			}
			durs = append(durs, d)
		}
		results = append(results, newBenchStat(fmt.Sprintf("pp%d", *nPrompt)+atDepth(*depth), *nPrompt, durs))
	}
	var probeBufs [][]byte
	var probeBytes int64
	var probePool *tensor.Pool
	if *nGen > 0 && *probe {
		probeBufs, probeBytes = weightSample(l.file, 1<<30)
		probePool = tensor.NewPool(mf.threads)
		defer probePool.Close()
	}
	var ceiling *decodeCeiling
	if *nGen > 0 {
		if *warmup {
			if _, err := e.BenchDecodeAt(*depth, min(*nGen, 16), experts, 0); err != nil {
				return err
			}
		}
		var durs []time.Duration
		var speeds, shares []float64
		for i := 0; i < *runs; i++ {
			d, err := e.BenchDecodeAt(*depth, *nGen, experts, uint64(i+1))
			if err != nil {
				return err
			}
			durs = append(durs, d)
			if probePool != nil {
				t0 := time.Now()
				tensor.StreamRead(probePool, probeBufs)
				bw := float64(probeBytes) / time.Since(t0).Seconds()
				speeds = append(speeds, bw)
				shares = append(shares, float64(*nGen)/d.Seconds()*float64(weightBytes)/bw)
			}
		}
		results = append(results, newBenchStat(fmt.Sprintf("tg%d", *nGen)+atDepth(*depth), *nGen, durs))
		if probePool != nil {
			bw := median(speeds)
			ceiling = &decodeCeiling{ProbeBytes: probeBytes, GBps: bw / 1e9, CeilingTPS: bw / float64(weightBytes), Share: median(shares)}
		}
	}
	if *asJSON {
		return json.NewEncoder(stdout).Encode(struct {
			Model   string         `json:"model"`
			Threads int            `json:"threads"`
			Effort  effort.Applied `json:"effort"`
			// WeightBytesPerToken is what one decoded token reads: decode
			// cannot beat memory bandwidth divided by it.
			WeightBytesPerToken int64  `json:"weight_bytes_per_token"`
			Weights             string `json:"weights"`
			// Kernels is tensor.KernelName(): avx512-gfni, avx512, avx2
			// or purego (the pure-Go kernels, many times slower).
			Kernels string         `json:"kernels"`
			Ceiling *decodeCeiling `json:"decode_ceiling,omitempty"`
			Results []benchStat    `json:"results"`
		}{mf.model, mf.threads, applied, weightBytes, l.file.Loaded().String(), tensor.KernelName(), ceiling, results})
	}
	fmt.Fprintf(stdout, "model: %s  threads: %d  runs: %d  effort: %s\n", mf.model, mf.threads, *runs, describeEffort(applied))
	fmt.Fprintf(stdout, "weights: %s; read per decoded token: %.1f MiB\n", l.file.Loaded(), float64(weightBytes)/(1<<20))
	if ceiling != nil {
		fmt.Fprintf(stdout, "memory read speed (%.1f MiB of the weights, after each decode run, median): %.1f GB/s -> decode ceiling %.1f t/s\n",
			float64(ceiling.ProbeBytes)/(1<<20), ceiling.GBps, ceiling.CeilingTPS)
		if ceiling.ProbeBytes < 256<<20 {
			fmt.Fprintf(stdout, "(the weights are only %.1f MiB, so caches serve much of them: the ceiling overstates memory speed)\n", float64(ceiling.ProbeBytes)/(1<<20))
		}
	}
	fmt.Fprintf(stdout, "%-8s %12s %12s %12s\n", "test", "min t/s", "median t/s", "max t/s")
	for _, r := range results {
		fmt.Fprintf(stdout, "%-8s %12.2f %12.2f %12.2f", r.Test, r.Min, r.Median, r.Max)
		if ceiling != nil && strings.HasPrefix(r.Test, "tg") {
			fmt.Fprintf(stdout, "   %.0f%% of the ceiling (median of runs)", 100*ceiling.Share)
		}
		fmt.Fprintln(stdout)
	}
	return nil
}

// prefixHitReport is the result of bench --prefix-hit.
type prefixHitReport struct {
	Model   string         `json:"model"`
	Threads int            `json:"threads"`
	Effort  effort.Applied `json:"effort"`
	Prompt  int            `json:"prompt_tokens"`
	// Cached is the cached request's reused tokens (Result.CachedTokens).
	Cached int `json:"cached_tokens"`
	// ColdMS and HitMS are the rounds' times to first token, cold and
	// with the prefix cached; Ratio is median hit ÷ median cold.
	ColdMS    []float64 `json:"cold_ttft_ms"`
	HitMS     []float64 `json:"hit_ttft_ms"`
	ColdMedMS float64   `json:"cold_ttft_median_ms"`
	HitMedMS  float64   `json:"hit_ttft_median_ms"`
	Ratio     float64   `json:"ratio"`
}

// benchPrefixHit runs bench --prefix-hit: rounds of a cold request and a
// cached one, alternating, after one untimed round (with --warmup).
func benchPrefixHit(e *engine.Engine, mf modelFlags, n int, hit float64, runs int, warmup bool, experts int, applied effort.Applied, asJSON bool, stdout io.Writer) error {
	rep := prefixHitReport{Model: mf.model, Threads: mf.threads, Effort: applied, Prompt: n}
	if warmup {
		if _, err := e.BenchPrefixHit(n, hit, experts, 0); err != nil {
			return err
		}
	}
	for i := 0; i < runs; i++ {
		r, err := e.BenchPrefixHit(n, hit, experts, uint64(i+1))
		if err != nil {
			return err
		}
		if r.ColdCached != 0 {
			return fmt.Errorf("round %d: the cold prompt reused %d cached tokens (random tokens met a cached prefix: try again)", i+1, r.ColdCached)
		}
		rep.Cached = r.HitCached
		rep.ColdMS = append(rep.ColdMS, float64(r.Cold.Microseconds())/1e3)
		rep.HitMS = append(rep.HitMS, float64(r.Hit.Microseconds())/1e3)
	}
	rep.ColdMedMS, rep.HitMedMS = median(rep.ColdMS), median(rep.HitMS)
	rep.Ratio = rep.HitMedMS / rep.ColdMedMS
	if asJSON {
		return json.NewEncoder(stdout).Encode(rep)
	}
	fmt.Fprintf(stdout, "model: %s  threads: %d  rounds: %d  effort: %s\n", mf.model, mf.threads, runs, describeEffort(applied))
	fmt.Fprintf(stdout, "time to first token, %d-token prompt (median, min..max of %d rounds):\n", n, runs)
	fmt.Fprintf(stdout, "  %-18s %10.1f ms (%.1f..%.1f)\n", "cold", rep.ColdMedMS, slices.Min(rep.ColdMS), slices.Max(rep.ColdMS))
	fmt.Fprintf(stdout, "  %-18s %10.1f ms (%.1f..%.1f)\n", fmt.Sprintf("%d tokens cached", rep.Cached), rep.HitMedMS, slices.Min(rep.HitMS), slices.Max(rep.HitMS))
	fmt.Fprintf(stdout, "  cached ÷ cold: %.3f\n", rep.Ratio)
	return nil
}

// decodeCeiling is the bandwidth bound on decode: tok/s cannot exceed the
// memory read speed over the bytes of weights one token reads.
type decodeCeiling struct {
	// ProbeBytes is how many bytes of the weights each probe read.
	ProbeBytes int64 `json:"probe_bytes"`
	// GBps is the median read speed of the probes (1e9 bytes/s).
	GBps float64 `json:"memory_gbps"`
	// CeilingTPS is GBps*1e9 / weight_bytes_per_token.
	CeilingTPS float64 `json:"ceiling_tps"`
	// Share is the median over runs of run tok/s ÷ the ceiling measured
	// right after that run (1 = decode at memory speed).
	Share float64 `json:"share_of_ceiling"`
}

// weightSample returns the tensor data of f in file order, up to limit
// bytes (the last piece cut short), and its total size.
func weightSample(f *gguf.File, limit int64) ([][]byte, int64) {
	var bufs [][]byte
	var n int64
	for i := range f.Tensors {
		b := f.TensorData(&f.Tensors[i])
		if left := limit - n; int64(len(b)) > left {
			b = b[:left]
		}
		if len(b) > 0 {
			bufs = append(bufs, b)
			n += int64(len(b))
		}
		if n >= limit {
			break
		}
	}
	return bufs, n
}

// median returns the median of xs (the mean of the middle two for an even
// count); xs must not be empty.
func median(xs []float64) float64 {
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// runLoad runs the load mode (--base-url) and prints the report, as text
// or as JSON; it fails if a server answered no request.
func runLoad(ctx context.Context, c loadgen.Config, asJSON bool, stdout, stderr io.Writer) error {
	results, err := loadgen.Run(ctx, c, &prefixWriter{w: stderr, prefix: "bench: "})
	if err != nil {
		return err
	}
	if asJSON {
		if err := loadgen.WriteJSON(stdout, c, results); err != nil {
			return err
		}
	} else {
		loadgen.Print(stdout, c, results)
	}
	for _, r := range results {
		if r.RequestsOK == 0 {
			return fmt.Errorf("%s: no request succeeded", r.BaseURL)
		}
	}
	return nil
}

// prefixWriter writes prefix at the start of every line.
type prefixWriter struct {
	w      io.Writer
	prefix string
	mid    bool // within a line
}

func (p *prefixWriter) Write(b []byte) (int, error) {
	var out []byte
	for _, c := range b {
		if !p.mid {
			out = append(out, p.prefix...)
		}
		out = append(out, c)
		p.mid = c != '\n'
	}
	if _, err := p.w.Write(out); err != nil {
		return 0, err
	}
	return len(b), nil
}

// atDepth is llama-bench's test-name suffix for a depth (" @ d4096").
func atDepth(d int) string {
	if d == 0 {
		return ""
	}
	return fmt.Sprintf(" @ d%d", d)
}
