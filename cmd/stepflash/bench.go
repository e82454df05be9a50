package main

import (
	"encoding/json"

	"flag"
	"fmt"
	"github.com/stepflash/stepflash/engine"
	"github.com/stepflash/stepflash/model"
	"io"
	"os"
	"runtime/pprof"
	"sort"
	"time"
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
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: stepflash bench -m MODEL [flags]\n\nPrefill (random prompt of -p tokens) and decode (-n single-token passes) speed on an\nempty cache, like llama-bench's pp and tg tests; min/median/max tok/s over -r runs.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if pos, err := parseInterleaved(fs, args); err != nil {
		return err
	} else if len(pos) > 0 {
		return fmt.Errorf("unexpected argument %q", pos[0])
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
