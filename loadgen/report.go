package loadgen

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"
	"time"
)

// Result is one server's report. Its fields are the JSON that WriteJSON
// writes.
type Result struct {
	// BaseURL is the server's API base URL, as in Config.BaseURLs.
	BaseURL string `json:"base_url"`
	// Model is the model name the requests sent.
	Model string `json:"model"`
	// RequestsOK and RequestsFailed count the requests over all rounds.
	RequestsOK     int `json:"requests_ok"`
	RequestsFailed int `json:"requests_failed"`
	// Errors are the first distinct messages of failed requests (at most 5).
	Errors []string `json:"errors,omitempty"`
	// CompletionTokens of the successful requests, counted as TokensFrom
	// says: "usage" (the server's usage.completion_tokens), "chunks"
	// (streamed chunks carrying text: no usage was sent), or "usage+chunks".
	CompletionTokens int    `json:"completion_tokens"`
	TokensFrom       string `json:"tokens_from"`
	// Seconds is the wall time of all rounds, each until its last request
	// ended.
	Seconds float64 `json:"seconds"`
	// AggregateTPS is completion tokens over wall time (median over rounds).
	AggregateTPS float64 `json:"aggregate_tps"`
	// RoundsTPS is the aggregate tok/s of each round.
	RoundsTPS []float64 `json:"rounds_tps"`
	// AggregateRatio is AggregateTPS over the last server's (several
	// servers whose last one generated tokens; else nil).
	AggregateRatio *float64 `json:"aggregate_ratio,omitempty"`
	// TTFTP50MS and TTFTP95MS are the nearest-rank percentiles of the time
	// to the first chunk with text, in milliseconds.
	TTFTP50MS float64 `json:"ttft_p50_ms"`
	TTFTP95MS float64 `json:"ttft_p95_ms"`
	// DecodeTPSMedian is the median over requests of one stream's tok/s
	// after its first token.
	DecodeTPSMedian float64 `json:"decode_tps_median"`

	samples []sample
	usage   [2]bool // some tokens from usage, some from chunks
}

// add records one round.
func (r *Result) add(samples []sample, wall time.Duration) {
	tokens := 0
	for _, s := range samples {
		if s.err != "" {
			r.RequestsFailed++
			if len(r.Errors) < maxErrors && !slices.Contains(r.Errors, s.err) {
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
func (r *Result) finish() {
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

// median is the median (0 for no values).
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

// WriteJSON writes c's settings and the results as one line of JSON: an
// object with clients, duration_s, max_tokens, ignore_eos, prompt, rounds
// and results.
func WriteJSON(w io.Writer, c Config, results []*Result) error {
	return json.NewEncoder(w).Encode(struct {
		Clients   int       `json:"clients"`
		DurationS float64   `json:"duration_s"`
		MaxTokens int       `json:"max_tokens"`
		IgnoreEOS bool      `json:"ignore_eos"`
		Prompt    string    `json:"prompt"`
		Rounds    int       `json:"rounds"`
		Results   []*Result `json:"results"`
	}{c.Clients, c.Duration.Seconds(), c.MaxTokens, c.IgnoreEOS, c.Prompt, c.Rounds, results})
}

// Print writes a text report: a line on c's settings, then the results side
// by side, one column per server, then the error messages of each.
func Print(w io.Writer, c Config, results []*Result) {
	eos := ""
	if c.IgnoreEOS {
		eos = ", ignore_eos"
	}
	fmt.Fprintf(w, "load: %d streaming clients × %s per server and round, %d round(s); greedy /completions, max_tokens %d%s, prompt %q\n",
		c.Clients, c.Duration, c.Rounds, c.MaxTokens, eos, c.Prompt)
	tw := tabwriter.NewWriter(w, 0, 0, 3, ' ', 0)
	row := func(name string, f func(r *Result) string) {
		cells := []string{name}
		for _, r := range results {
			cells = append(cells, f(r))
		}
		fmt.Fprintln(tw, strings.Join(cells, "\t")+"\t")
	}
	row("server", func(r *Result) string { return r.BaseURL })
	row("model", func(r *Result) string { return r.Model })
	row("requests ok / failed", func(r *Result) string { return fmt.Sprintf("%d / %d", r.RequestsOK, r.RequestsFailed) })
	row("completion tokens (from)", func(r *Result) string {
		return fmt.Sprintf("%d (%s)", r.CompletionTokens, cmp.Or(r.TokensFrom, "none"))
	})
	row("aggregate tok/s", func(r *Result) string { return fmt.Sprintf("%.1f", r.AggregateTPS) })
	if len(results) > 1 {
		row("  ratio to the last", func(r *Result) string {
			if r.AggregateRatio == nil {
				return "-"
			}
			return fmt.Sprintf("%.2fx", *r.AggregateRatio)
		})
	}
	row("TTFT p50 / p95 ms", func(r *Result) string { return fmt.Sprintf("%.1f / %.1f", r.TTFTP50MS, r.TTFTP95MS) })
	row("per-stream decode tok/s (median)", func(r *Result) string { return fmt.Sprintf("%.1f", r.DecodeTPSMedian) })
	tw.Flush()
	for _, r := range results {
		for _, e := range r.Errors {
			fmt.Fprintf(w, "error (%s): %s\n", r.BaseURL, e)
		}
	}
}
