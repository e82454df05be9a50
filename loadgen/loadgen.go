// Package loadgen drives OpenAI-compatible endpoints with concurrent
// streaming completions and measures throughput and latency, for
// side-by-side comparisons of servers. Its chat mode replays multi-turn
// conversations and measures how much of their prompts the servers served
// from their prefix caches.
package loadgen

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Config is one load run: Clients concurrent greedy streaming /completions
// requests against each of BaseURLs in turn, for Duration per server and
// round; or, with Conversations, Clients concurrent conversations of
// streaming /chat/completions requests (the chat mode).
type Config struct {
	// BaseURLs are the API base URLs of the servers compared, e.g.
	// http://127.0.0.1:8000/v1, without a trailing slash. The report gives
	// each one's aggregate tok/s as a ratio to the last one's.
	BaseURLs []string
	// Model is the served model name; "" asks each server's /models and
	// takes the first.
	Model string
	// Clients is the number of concurrent streaming clients, 1..1024.
	Clients int
	// Duration is how long clients start new requests, per server and
	// round; at most 24h. Requests in flight when it ends run to their end
	// and count. In the chat mode it is optional (0: no limit): no turn
	// starts after it, and the conversations it stops count as cut short.
	Duration time.Duration
	// MaxTokens is the max_tokens of every request.
	MaxTokens int
	// Prompt is the prompt of every request.
	Prompt string
	// IgnoreEOS sends "ignore_eos": true so every request generates
	// MaxTokens (stepflash, llama-server and vLLM accept it).
	IgnoreEOS bool
	// MaxRequests stops a server's round after this many requests have
	// started (0: no limit). Not in the chat mode.
	MaxRequests int
	// Conversations, if not 0, selects the chat mode: per server and round,
	// the clients run conversations 1..Conversations, each client taking
	// the next one when its last has ended. Every round against every
	// server runs the same conversations but for a run label in their first
	// message, so no run finds another run's (or invocation's) turns in a
	// server's prefix cache.
	Conversations int
	// Turns is the number of requests of a conversation (chat mode). Turn 1
	// sends a fixed system prompt and the user message "<Prompt>
	// (conversation i, run <Salt>.<round>.<server>)"; turn k ≥ 2 sends the
	// messages of turn k-1, the
	// content of its streamed reply as the assistant's message and the user
	// message "Go on. (turn k)". A failed turn ends its conversation.
	Turns int
	// Salt starts the run labels of the chat mode ("": a random one, so
	// that a second invocation against the same servers finds nothing
	// cached from the first).
	Salt string
	// Timeout limits one request.
	Timeout time.Duration
	// Rounds is the number of rounds; each runs every server once, in the
	// order of BaseURLs.
	Rounds int
	// APIKey, if not "", is sent as a bearer token.
	APIKey string
	// LongPrompt, if not 0, adds one background client to every round of
	// the completions mode: it streams requests whose prompt is LongPrompt
	// token ids (random, so no prefix cache serves them; one token to
	// generate) one after another while the round lasts, and the round's
	// clients go on starting requests until the last of them has ended.
	// Their inter-token latency (Result.ITLP99MS) then shows how much a long
	// prefill stalls the streams beside it; the background requests count
	// only in Result.Long.
	LongPrompt int
	// Warmup sends one untimed request of at most 8 tokens to each server
	// before the first round (in the chat mode, a chat completion of one
	// user message that shares no text with the conversations); Run fails
	// if it fails.
	Warmup bool
}

// Limits of a run, and of what a run keeps.
const (
	maxClients       = 1024
	maxConversations = 100000
	maxTurns         = 1000
	maxDuration      = 24 * time.Hour
	maxLongPrompt    = 1 << 20
	maxErrors        = 5                     // distinct error messages reported per server
	maxSSELine       = 4 << 20               // longest SSE line accepted
	failurePause     = 50 * time.Millisecond // a client's pause after a failed request (or conversation)
)

// chat reports whether c selects the chat mode.
func (c *Config) chat() bool { return c.Conversations != 0 || c.Turns != 0 }

// Check reports the first setting of c that is out of range. Its messages
// name the settings by the flags of stepflash bench (--clients, --duration,
// …).
func (c *Config) Check() error {
	switch {
	case len(c.BaseURLs) == 0:
		return fmt.Errorf("no --base-url given")
	case c.Clients < 1 || c.Clients > maxClients:
		return fmt.Errorf("--clients must be in 1..%d, got %d", maxClients, c.Clients)
	case c.chat() && (c.Conversations < 1 || c.Conversations > maxConversations):
		return fmt.Errorf("--conversations must be in 1..%d, got %d", maxConversations, c.Conversations)
	case c.chat() && (c.Turns < 1 || c.Turns > maxTurns):
		return fmt.Errorf("--turns must be in 1..%d, got %d", maxTurns, c.Turns)
	case c.chat() && c.MaxRequests != 0:
		return fmt.Errorf("--requests does not apply to the chat mode: --conversations and --turns set the requests")
	case c.chat() && (c.Duration < 0 || c.Duration > maxDuration):
		return fmt.Errorf("--duration must be in 0..%s in the chat mode (0: no time limit), got %s", maxDuration, c.Duration)
	case !c.chat() && (c.Duration <= 0 || c.Duration > maxDuration):
		return fmt.Errorf("--duration must be positive and at most %s, got %s", maxDuration, c.Duration)
	case c.MaxTokens < 1:
		return fmt.Errorf("--max-tokens must be at least 1, got %d", c.MaxTokens)
	case c.MaxRequests < 0:
		return fmt.Errorf("--requests must not be negative")
	case c.Timeout <= 0:
		return fmt.Errorf("--request-timeout must be positive")
	case c.Rounds < 1:
		return fmt.Errorf("--rounds must be at least 1")
	case c.Prompt == "":
		return fmt.Errorf("--prompt must not be empty")
	case c.LongPrompt < 0 || c.LongPrompt > maxLongPrompt:
		return fmt.Errorf("--long-prompt must be in 0..%d tokens, got %d", maxLongPrompt, c.LongPrompt)
	case c.chat() && c.LongPrompt != 0:
		return fmt.Errorf("--long-prompt does not apply to the chat mode")
	}
	return nil
}

// Run checks c, finds each server's model (c.Model, or the first of its
// /models), sends the warm-up requests if c.Warmup, and then runs c.Rounds
// rounds, each of which loads every server in turn. It writes one line per
// server and round to progress (which may be nil), in one Write call each.
//
// The results are in the order of c.BaseURLs. A server that failed every
// request is not an error of Run: its result has RequestsOK 0 and the
// reasons in Errors. In the chat mode each result has a Chat part.
func Run(ctx context.Context, c Config, progress io.Writer) ([]*Result, error) {
	if err := c.Check(); err != nil {
		return nil, err
	}
	if progress == nil {
		progress = io.Discard
	}
	hc := &http.Client{Transport: &http.Transport{Proxy: http.ProxyFromEnvironment, MaxIdleConns: 2 * c.Clients,
		MaxIdleConnsPerHost: c.Clients, IdleConnTimeout: 90 * time.Second, DisableCompression: true}}
	defer hc.CloseIdleConnections()
	results := make([]*Result, len(c.BaseURLs))
	for i, base := range c.BaseURLs {
		r := &Result{BaseURL: base, Model: c.Model}
		if c.LongPrompt > 0 && !c.chat() {
			r.Long = &LongPrompt{Tokens: c.LongPrompt, TTFTMS: []float64{}}
		}
		if c.chat() {
			r.Chat = &Chat{Turns: make([]TurnStats, c.Turns)}
			for k := range r.Turns {
				r.Turns[k].Turn = k + 1
			}
		}
		if r.Model == "" {
			m, err := firstModel(ctx, hc, base, c.APIKey)
			if err != nil {
				return nil, fmt.Errorf("%s: no --model given, and listing the served models failed: %w", base, err)
			}
			r.Model = m
		}
		if c.Warmup {
			w := c
			w.MaxTokens = min(c.MaxTokens, 8)
			wctx, cancel := context.WithTimeout(ctx, c.Timeout)
			var s sample
			if c.chat() {
				s, _ = streamChat(wctx, hc, base, c.APIKey, chatBody(w, r.Model, []chatMessage{{"user", warmupMessage}}))
			} else {
				s = streamCompletion(wctx, hc, base, c.APIKey, completionBody(w, r.Model))
			}
			cancel()
			if s.err != "" {
				return nil, fmt.Errorf("%s: warm-up request for model %q failed: %s", base, r.Model, s.err)
			}
		}
		results[i] = r
	}
	if c.chat() && c.Salt == "" {
		c.Salt = fmt.Sprintf("%06x", rand.Uint32()>>8)
	}
	for round := range c.Rounds {
		for si, r := range results {
			hc.CloseIdleConnections() // none left idle (and perhaps timed out) by the last round
			if c.chat() {
				limit := ""
				if c.Duration > 0 {
					limit = fmt.Sprintf(" (at most %s)", c.Duration)
				}
				fmt.Fprintf(progress, "round %d/%d: %d clients, %d conversations of %d turns%s against %s (model %q)\n",
					round+1, c.Rounds, c.Clients, c.Conversations, c.Turns, limit, r.BaseURL, r.Model)
				run := fmt.Sprintf("%s.%d.%d", c.Salt, round+1, si+1)
				convs, wall := chatRound(ctx, hc, c, run, r.BaseURL, r.Model)
				r.addChat(convs, c.Turns, wall)
				continue
			}
			long := ""
			if c.LongPrompt > 0 {
				long = fmt.Sprintf(" and %d-token prompts in the background", c.LongPrompt)
			}
			fmt.Fprintf(progress, "round %d/%d: %d clients for %s%s against %s (model %q)\n", round+1, c.Rounds, c.Clients, c.Duration, long, r.BaseURL, r.Model)
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
	return results, nil
}

// loadRound runs the clients against one server for the duration (or until
// MaxRequests have started; with LongPrompt, also until the background
// client's last request has ended) and returns the samples and the wall
// time until the last request ended.
func loadRound(ctx context.Context, hc *http.Client, c Config, base, model string) ([]sample, time.Duration) {
	body := completionBody(c, model)
	start := time.Now()
	deadline := start.Add(c.Duration)
	var started atomic.Int64
	var mu sync.Mutex
	var samples []sample
	var wg sync.WaitGroup
	// The background long-prompt client: while one of its requests is in
	// flight, the other clients go on past the deadline.
	var longBusy atomic.Bool
	if c.LongPrompt > 0 {
		longBusy.Store(true)
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer longBusy.Store(false)
			rng := rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
			for time.Now().Before(deadline) && ctx.Err() == nil {
				rctx, cancel := context.WithTimeout(ctx, c.Timeout)
				s := streamCompletion(rctx, hc, base, c.APIKey, longPromptBody(c, model, rng))
				cancel()
				s.long = true
				mu.Lock()
				samples = append(samples, s)
				mu.Unlock()
				if s.err != "" {
					time.Sleep(min(failurePause, time.Until(deadline)))
				}
			}
		}()
	}
	for range c.Clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for (time.Now().Before(deadline) || longBusy.Load()) && ctx.Err() == nil {
				if c.MaxRequests > 0 && started.Add(1) > int64(c.MaxRequests) {
					return
				}
				rctx, cancel := context.WithTimeout(ctx, c.Timeout)
				s := streamCompletion(rctx, hc, base, c.APIKey, body)
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
