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
	// TTFTP50MS, TTFTP95MS and TTFTP99MS are the nearest-rank percentiles
	// of the time to the first chunk with text, in milliseconds.
	TTFTP50MS float64 `json:"ttft_p50_ms"`
	TTFTP95MS float64 `json:"ttft_p95_ms"`
	TTFTP99MS float64 `json:"ttft_p99_ms"`
	// DecodeTPSMedian is the median over requests of one stream's tok/s
	// after its first token.
	DecodeTPSMedian float64 `json:"decode_tps_median"`
	// ITLP50MS and ITLP99MS are the nearest-rank percentiles of the
	// inter-token latency, in milliseconds: the times between consecutive
	// chunks with text of a stream, over every stream of every round (not
	// the long-prompt client's). RoundsITLP99MS is each round's p99.
	ITLP50MS       float64   `json:"itl_p50_ms"`
	ITLP99MS       float64   `json:"itl_p99_ms"`
	RoundsITLP99MS []float64 `json:"rounds_itl_p99_ms"`
	// Long is the background long-prompt client's part (Config.LongPrompt;
	// nil without it).
	Long *LongPrompt `json:"long_prompt,omitempty"`
	// Chat is the chat mode's part (nil in the completions mode); its
	// fields are inlined in the JSON.
	*Chat

	samples []sample
	usage   [2]bool // some tokens from usage, some from chunks
}

// LongPrompt is what the background long-prompt client's requests did,
// over all rounds.
type LongPrompt struct {
	// Tokens is the prompt length (Config.LongPrompt).
	Tokens int `json:"tokens"`
	// RequestsOK and RequestsFailed count its requests; their failures are
	// in Result.Errors, marked "long prompt: ".
	RequestsOK     int `json:"requests_ok"`
	RequestsFailed int `json:"requests_failed"`
	// TTFTMS is each successful request's time to its first token (its
	// prefill, as the client sees it), in milliseconds.
	TTFTMS []float64 `json:"ttft_ms"`
}

// Chat is the chat mode's part of a Result, over all rounds.
type Chat struct {
	// ConversationsOK got every turn answered; ConversationsFailed ended
	// at a failed turn; ConversationsCut were stopped by the time limit
	// (--duration) before their last turn, or before their first.
	ConversationsOK     int `json:"conversations_ok"`
	ConversationsFailed int `json:"conversations_failed"`
	ConversationsCut    int `json:"conversations_cut"`
	// RequestsNotSent are the turns that followed a failed turn, or that
	// the time limit stopped.
	RequestsNotSent int `json:"requests_not_sent"`
	// PromptTokens and CachedTokens are the sums of the usage's prompt
	// tokens and cached prompt tokens over the successful requests.
	// CachedUnreported counts the successful requests whose usage had no
	// count of cached tokens (or that sent no usage).
	PromptTokens     int `json:"prompt_tokens"`
	CachedTokens     int `json:"cached_tokens"`
	CachedUnreported int `json:"cached_unreported"`
	// CachedShare is CachedTokens / PromptTokens over all turns, and
	// CachedShareFollowups the same over turns 2 and later: the share that
	// a gateway's routing can affect. Each is null (unknown, not 0) when a
	// successful request it covers did not report cached tokens, or when
	// it covers no prompt tokens (no successful request; one turn).
	CachedShare          *float64 `json:"cached_share"`
	CachedShareFollowups *float64 `json:"cached_share_followups"`
	// Turns are the statistics of each turn, the first first.
	Turns []TurnStats `json:"turns"`
}

// TurnStats are the chat mode's statistics of one turn, over all
// conversations and rounds.
type TurnStats struct {
	// Turn is the turn's number, from 1.
	Turn           int `json:"turn"`
	RequestsOK     int `json:"requests_ok"`
	RequestsFailed int `json:"requests_failed"`
	// PromptTokens, CachedTokens, CachedUnreported and CachedShare are as
	// in Chat, over this turn's successful requests.
	PromptTokens     int      `json:"prompt_tokens"`
	CachedTokens     int      `json:"cached_tokens"`
	CachedUnreported int      `json:"cached_unreported"`
	CachedShare      *float64 `json:"cached_share"`
	// TTFTP50MS is the median time to the first token of this turn.
	TTFTP50MS float64 `json:"ttft_p50_ms"`
}

// cachedShare is cached/prompt, or nil if some request did not report
// its cached tokens or there are no prompt tokens.
func cachedShare(prompt, cached, unreported int) *float64 {
	if unreported > 0 || prompt == 0 {
		return nil
	}
	v := float64(cached) / float64(prompt)
	return &v
}

// addChat records one round of the chat mode, of conversations of turns
// turns.
func (r *Result) addChat(convs []conversation, turns int, wall time.Duration) {
	var samples []sample
	for _, cv := range convs {
		switch cv.end {
		case convOK:
			r.ConversationsOK++
		case convFailed:
			r.ConversationsFailed++
		case convCut:
			r.ConversationsCut++
		}
		r.RequestsNotSent += turns - len(cv.samples)
		for _, s := range cv.samples {
			t := &r.Turns[s.turn-1]
			if s.err != "" {
				t.RequestsFailed++
				continue
			}
			t.RequestsOK++
			t.PromptTokens += s.promptTokens
			if s.cachedKnown {
				t.CachedTokens += s.cachedTokens
			} else {
				t.CachedUnreported++
			}
		}
		samples = append(samples, cv.samples...)
	}
	r.add(samples, wall)
}

// add records one round.
func (r *Result) add(samples []sample, wall time.Duration) {
	tokens := 0
	var gaps []float64
	for _, s := range samples {
		if s.long {
			r.addLong(s)
			continue
		}
		if s.err != "" {
			r.RequestsFailed++
			if len(r.Errors) < maxErrors && !slices.Contains(r.Errors, s.err) {
				r.Errors = append(r.Errors, s.err)
			}
			continue
		}
		r.RequestsOK++
		tokens += s.tokens
		for _, g := range s.gaps {
			gaps = append(gaps, ms(g))
		}
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
	r.RoundsITLP99MS = append(r.RoundsITLP99MS, percentile(gaps, 99))
}

// addLong records one request of the background long-prompt client.
func (r *Result) addLong(s sample) {
	if r.Long == nil {
		r.Long = &LongPrompt{}
	}
	if s.err != "" {
		r.Long.RequestsFailed++
		if e := "long prompt: " + s.err; len(r.Errors) < maxErrors && !slices.Contains(r.Errors, e) {
			r.Errors = append(r.Errors, e)
		}
		return
	}
	r.Long.RequestsOK++
	r.Long.TTFTMS = append(r.Long.TTFTMS, ms(s.ttft))
}

// ms is d in milliseconds.
func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

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
	var ttft, decode, gaps []float64
	for _, s := range r.samples {
		if s.ttft > 0 {
			ttft = append(ttft, float64(s.ttft)/float64(time.Millisecond))
		}
		for _, g := range s.gaps {
			gaps = append(gaps, ms(g))
		}
		if s.decodeTPS > 0 {
			decode = append(decode, s.decodeTPS)
		}
	}
	r.TTFTP50MS, r.TTFTP95MS, r.TTFTP99MS = percentile(ttft, 50), percentile(ttft, 95), percentile(ttft, 99)
	r.DecodeTPSMedian = median(decode)
	r.ITLP50MS, r.ITLP99MS = percentile(gaps, 50), percentile(gaps, 99)
	if r.Chat != nil {
		r.finishChat()
	}
}

// finishChat computes the chat mode's sums and shares.
func (r *Result) finishChat() {
	ttft := make([][]float64, len(r.Turns))
	for _, s := range r.samples {
		if s.ttft > 0 && s.turn > 0 {
			ttft[s.turn-1] = append(ttft[s.turn-1], float64(s.ttft)/float64(time.Millisecond))
		}
	}
	r.PromptTokens, r.CachedTokens, r.CachedUnreported = 0, 0, 0
	var prompt, cached, unreported int // turns 2 and later
	for k := range r.Turns {
		t := &r.Turns[k]
		t.CachedShare = cachedShare(t.PromptTokens, t.CachedTokens, t.CachedUnreported)
		t.TTFTP50MS = percentile(ttft[k], 50)
		r.PromptTokens += t.PromptTokens
		r.CachedTokens += t.CachedTokens
		r.CachedUnreported += t.CachedUnreported
		if k > 0 {
			prompt, cached, unreported = prompt+t.PromptTokens, cached+t.CachedTokens, unreported+t.CachedUnreported
		}
	}
	r.CachedShare = cachedShare(r.PromptTokens, r.CachedTokens, r.CachedUnreported)
	r.CachedShareFollowups = cachedShare(prompt, cached, unreported)
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
// and results, with --long-prompt long_prompt_tokens, and in the chat mode
// conversations and turns (duration_s is 0 there when the rounds had no
// time limit).
func WriteJSON(w io.Writer, c Config, results []*Result) error {
	return json.NewEncoder(w).Encode(struct {
		Clients       int       `json:"clients"`
		Conversations int       `json:"conversations,omitempty"`
		Turns         int       `json:"turns,omitempty"`
		DurationS     float64   `json:"duration_s"`
		MaxTokens     int       `json:"max_tokens"`
		IgnoreEOS     bool      `json:"ignore_eos"`
		Prompt        string    `json:"prompt"`
		LongPrompt    int       `json:"long_prompt_tokens,omitempty"`
		Rounds        int       `json:"rounds"`
		Results       []*Result `json:"results"`
	}{c.Clients, c.Conversations, c.Turns, c.Duration.Seconds(), c.MaxTokens, c.IgnoreEOS, c.Prompt, c.LongPrompt, c.Rounds, results})
}

// shareText is a cached share as a percentage, or why it is unknown.
func shareText(share *float64, unreported int) string {
	switch {
	case share != nil:
		return fmt.Sprintf("%.1f%%", 100*(*share))
	case unreported == 1:
		return "unknown: 1 request had no cached tokens in its usage"
	case unreported > 1:
		return fmt.Sprintf("unknown: %d requests had no cached tokens in their usage", unreported)
	}
	return "-"
}

// Print writes a text report: a line on c's settings, then the results side
// by side, one column per server, then the error messages of each.
func Print(w io.Writer, c Config, results []*Result) {
	eos := ""
	if c.IgnoreEOS {
		eos = ", ignore_eos"
	}
	if c.chat() {
		limit := ""
		if c.Duration > 0 {
			limit = fmt.Sprintf(" (at most %s)", c.Duration)
		}
		fmt.Fprintf(w, "load: %d streaming clients, %d conversations of %d turns per server and round%s, %d round(s); greedy /chat/completions, max_tokens %d%s, prompt %q\n",
			c.Clients, c.Conversations, c.Turns, limit, c.Rounds, c.MaxTokens, eos, c.Prompt)
	} else {
		long := ""
		if c.LongPrompt > 0 {
			long = fmt.Sprintf("; beside them one client streaming %d-token prompts (random token ids, 1 token each)", c.LongPrompt)
		}
		fmt.Fprintf(w, "load: %d streaming clients × %s per server and round, %d round(s); greedy /completions, max_tokens %d%s, prompt %q%s\n",
			c.Clients, c.Duration, c.Rounds, c.MaxTokens, eos, c.Prompt, long)
	}
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
	if c.chat() {
		row("conversations ok / failed / cut short", func(r *Result) string {
			if r.Chat == nil {
				return "-"
			}
			return fmt.Sprintf("%d / %d / %d", r.ConversationsOK, r.ConversationsFailed, r.ConversationsCut)
		})
		row("requests ok / failed / not sent", func(r *Result) string {
			if r.Chat == nil {
				return fmt.Sprintf("%d / %d / -", r.RequestsOK, r.RequestsFailed)
			}
			return fmt.Sprintf("%d / %d / %d", r.RequestsOK, r.RequestsFailed, r.RequestsNotSent)
		})
	} else {
		row("requests ok / failed", func(r *Result) string { return fmt.Sprintf("%d / %d", r.RequestsOK, r.RequestsFailed) })
	}
	row("completion tokens (from)", func(r *Result) string {
		return fmt.Sprintf("%d (%s)", r.CompletionTokens, cmp.Or(r.TokensFrom, "none"))
	})
	row("aggregate tok/s", func(r *Result) string { return fmt.Sprintf("%.1f", r.AggregateTPS) })
	if c.Rounds > 1 {
		row("  tok/s by round", func(r *Result) string { return byRound(r.RoundsTPS) })
	}
	if len(results) > 1 {
		row("  ratio to the last", func(r *Result) string {
			if r.AggregateRatio == nil {
				return "-"
			}
			return fmt.Sprintf("%.2fx", *r.AggregateRatio)
		})
	}
	row("TTFT p50 / p95 / p99 ms", func(r *Result) string {
		return fmt.Sprintf("%.1f / %.1f / %.1f", r.TTFTP50MS, r.TTFTP95MS, r.TTFTP99MS)
	})
	row("per-stream decode tok/s (median)", func(r *Result) string { return fmt.Sprintf("%.1f", r.DecodeTPSMedian) })
	row("ITL p50 / p99 ms", func(r *Result) string { return fmt.Sprintf("%.1f / %.1f", r.ITLP50MS, r.ITLP99MS) })
	if c.Rounds > 1 {
		row("  ITL p99 ms by round", func(r *Result) string { return byRound(r.RoundsITLP99MS) })
	}
	if c.LongPrompt > 0 {
		row(fmt.Sprintf("%d-token prompts ok / failed", c.LongPrompt), func(r *Result) string {
			if r.Long == nil {
				return "0 / 0"
			}
			return fmt.Sprintf("%d / %d", r.Long.RequestsOK, r.Long.RequestsFailed)
		})
		row("  their TTFT ms (median)", func(r *Result) string {
			if r.Long == nil || len(r.Long.TTFTMS) == 0 {
				return "-"
			}
			return fmt.Sprintf("%.0f", median(r.Long.TTFTMS))
		})
	}
	if c.chat() {
		row("prompt tokens (cached)", func(r *Result) string {
			if r.Chat == nil {
				return "-"
			}
			return fmt.Sprintf("%d (%d)", r.PromptTokens, r.CachedTokens)
		})
		row("cached share, all turns", func(r *Result) string {
			if r.Chat == nil {
				return "-"
			}
			return shareText(r.CachedShare, r.CachedUnreported)
		})
		row("cached share, turns 2 and later", func(r *Result) string {
			if r.Chat == nil || len(r.Turns) < 2 {
				return "-"
			}
			unreported := 0
			for _, t := range r.Turns[1:] {
				unreported += t.CachedUnreported
			}
			return shareText(r.CachedShareFollowups, unreported)
		})
	}
	tw.Flush()
	for _, r := range results {
		for _, e := range r.Errors {
			fmt.Fprintf(w, "error (%s): %s\n", r.BaseURL, e)
		}
	}
}

// byRound formats one figure per round, space-separated.
func byRound(vs []float64) string {
	parts := make([]string, len(vs))
	for i, v := range vs {
		parts[i] = fmt.Sprintf("%.1f", v)
	}
	return strings.Join(parts, " ")
}
