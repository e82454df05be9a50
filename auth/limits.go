package auth

import (
	"context"
	"math"
	"net/http"
	"sync"
	"time"

	"github.com/stepflash/stepflash/api"
	"github.com/stepflash/stepflash/backend"
)

// Error codes of refused requests.
const (
	CodeRateLimit = "rate_limit_exceeded"
	CodeQuota     = "insufficient_quota"
)

// Spender reports what a key has spent (USD) since a time: the usage
// ledger (billing.Ledger).
type Spender interface {
	Spent(ctx context.Context, keyID string, since time.Time) (float64, error)
}

// Limiter enforces the per-key limits of Key: requests and tokens per
// minute (a sliding 60-second window, in this process) and the USD budget
// per period (from the ledger, so shared by every replica on one database,
// refreshed every SpentTTL and raised locally by every request that ends
// here in between).
//
// Limits are checked when a request arrives, before any work; what it uses
// is counted when it ends. So requests running at once can go past a
// limit together (by at most what they use), as with OpenAI's limits.
type Limiter struct {
	spender Spender
	now     func() time.Time

	mu   sync.Mutex
	keys map[string]*usageWindow
}

// SpentTTL is how long a key's spending read from the ledger is trusted
// before it is read again (other replicas' requests show up within it).
const SpentTTL = 5 * time.Second

type usageWindow struct {
	reqs []time.Time
	toks []tokens

	spent       float64
	spentPeriod time.Time // the period start the spending is for
	spentAt     time.Time // when it was read from the ledger (zero: never)
}

type tokens struct {
	at time.Time
	n  int
}

// NewLimiter makes a Limiter; spender may be nil when no key has a budget.
func NewLimiter(spender Spender) *Limiter {
	return &Limiter{spender: spender, now: time.Now, keys: map[string]*usageWindow{}}
}

// PeriodStart is the start of the budget period containing t: UTC midnight
// for "day", the first of the month for "month", the zero time for "total".
func PeriodStart(period string, t time.Time) time.Time {
	t = t.UTC()
	switch period {
	case "day":
		return time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
	case "month":
		return time.Date(t.Year(), t.Month(), 1, 0, 0, 0, 0, time.UTC)
	}
	return time.Time{}
}

// periodEnd is the end of the period starting at start (zero for "total").
func periodEnd(period string, start time.Time) time.Time {
	switch period {
	case "day":
		return start.AddDate(0, 0, 1)
	case "month":
		return start.AddDate(0, 1, 0)
	}
	return time.Time{}
}

const minute = time.Minute

// Admit checks k's limits for a new request and counts it; the error is a
// 429 with Retry-After (or, for a spent "total" budget, without: waiting
// does not help).
func (l *Limiter) Admit(ctx context.Context, k *Key) *api.Error {
	if k.RPM <= 0 && k.TPM <= 0 && k.BudgetUSD <= 0 {
		return nil
	}
	now := l.now()
	if k.BudgetUSD > 0 {
		if e := l.refreshSpent(ctx, k, now); e != nil {
			return e
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	w := l.window(k.ID)
	w.expire(now)
	if k.RPM > 0 && len(w.reqs) >= k.RPM {
		wait := w.reqs[len(w.reqs)-k.RPM].Add(minute).Sub(now)
		return limitError(CodeRateLimit, wait,
			"Rate limit reached for key %s…: %d requests per minute. Retry after %s.", k.ID, k.RPM, seconds(wait))
	}
	if k.TPM > 0 {
		used := 0
		for _, t := range w.toks {
			used += t.n
		}
		if used >= k.TPM {
			// Wait until enough of the window's tokens expire to go under.
			var wait time.Duration
			left := used
			for _, t := range w.toks {
				left -= t.n
				if left < k.TPM {
					wait = t.at.Add(minute).Sub(now)
					break
				}
			}
			return limitError(CodeRateLimit, wait,
				"Rate limit reached for key %s…: %d tokens per minute (%d used in the last minute). Retry after %s.",
				k.ID, k.TPM, used, seconds(wait))
		}
	}
	if k.BudgetUSD > 0 {
		if e := l.checkBudget(ctx, k, w, now); e != nil {
			return e
		}
	}
	if k.RPM > 0 {
		w.reqs = append(w.reqs, now)
	}
	return nil
}

// window is key id's usage window (made when missing); l.mu held.
func (l *Limiter) window(id string) *usageWindow {
	w := l.keys[id]
	if w == nil {
		w = &usageWindow{}
		l.keys[id] = w
	}
	return w
}

// spentTimeout bounds a budget's ledger read.
const spentTimeout = 2 * time.Second

// refreshSpent reads k's spending this period from the ledger when the
// count kept is older than SpentTTL (or of another period). The read runs
// without l.mu held, so that a slow database delays only the requests of
// keys whose count is due, and for at most spentTimeout.
func (l *Limiter) refreshSpent(ctx context.Context, k *Key, now time.Time) *api.Error {
	start := PeriodStart(k.BudgetPeriod, now)
	l.mu.Lock()
	w := l.window(k.ID)
	due := !w.spentPeriod.Equal(start) || now.Sub(w.spentAt) >= SpentTTL || w.spentAt.IsZero()
	l.mu.Unlock()
	if !due {
		return nil
	}
	if l.spender == nil {
		return api.Internal("key %s… has a budget but the server has no ledger to count its spending", k.ID)
	}
	rctx, cancel := context.WithTimeout(ctx, spentTimeout)
	spent, err := l.spender.Spent(rctx, k.ID, start)
	cancel()
	if err != nil {
		e := api.NewError(http.StatusServiceUnavailable, api.TypeServer, "ledger_unavailable", "",
			"The usage ledger could not be read to check key %s…'s budget (%v). Retry after 1 second(s).", k.ID, err)
		e.RetryAfter = 1
		return e
	}
	l.mu.Lock()
	if w.spentAt.Before(now) || !w.spentPeriod.Equal(start) {
		w.spent, w.spentPeriod, w.spentAt = spent, start, now
	}
	l.mu.Unlock()
	return nil
}

// checkBudget refuses the request if k's budget for this period is spent
// (as refreshSpent last read it, plus what was used since). Called with
// l.mu held.
func (l *Limiter) checkBudget(_ context.Context, k *Key, w *usageWindow, now time.Time) *api.Error {
	start := PeriodStart(k.BudgetPeriod, now)
	if w.spent < k.BudgetUSD {
		return nil
	}
	end := periodEnd(k.BudgetPeriod, start)
	if end.IsZero() {
		return limitError(CodeQuota, 0,
			"Key %s… has used its budget of $%.4f (spent $%.4f in all). Ask the operator to raise it (stepflash keys) or use another key.",
			k.ID, k.BudgetUSD, w.spent)
	}
	return limitError(CodeQuota, end.Sub(now),
		"Key %s… has used its budget of $%.4f per %s (spent $%.4f since %s). It renews at %s.",
		k.ID, k.BudgetUSD, k.BudgetPeriod, w.spent, start.Format(time.DateOnly), end.Format(time.RFC3339))
}

// Used counts what a finished request of key k used: its tokens (for TPM)
// and cost (for the budget).
func (l *Limiter) Used(k *Key, totalTokens int, cost float64) {
	if k.TPM <= 0 && k.BudgetUSD <= 0 {
		return
	}
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	w := l.keys[k.ID]
	if w == nil {
		w = &usageWindow{}
		l.keys[k.ID] = w
	}
	if k.TPM > 0 && totalTokens > 0 {
		w.toks = append(w.toks, tokens{now, totalTokens})
	}
	if w.spentPeriod.Equal(PeriodStart(k.BudgetPeriod, now)) {
		w.spent += cost
	}
}

// expire drops what left the 60-second window.
func (w *usageWindow) expire(now time.Time) {
	i := 0
	for i < len(w.reqs) && now.Sub(w.reqs[i]) >= minute {
		i++
	}
	w.reqs = w.reqs[i:]
	i = 0
	for i < len(w.toks) && now.Sub(w.toks[i].at) >= minute {
		i++
	}
	w.toks = w.toks[i:]
}

func limitError(code string, wait time.Duration, format string, args ...any) *api.Error {
	e := api.NewError(http.StatusTooManyRequests, api.TypeRateLimit, code, "", format, args...)
	if wait > 0 {
		e.RetryAfter = int(math.Ceil(wait.Seconds()))
	}
	return e
}

func seconds(d time.Duration) string {
	return time.Duration(math.Ceil(d.Seconds()) * float64(time.Second)).String()
}

const keyCtx ctxKey = 1

// withKey returns ctx carrying the authenticated key.
func withKey(ctx context.Context, k *Key) context.Context {
	return context.WithValue(ctx, keyCtx, k)
}

// KeyFrom returns the authenticated key of the request, or nil.
func KeyFrom(ctx context.Context) *Key {
	k, _ := ctx.Value(keyCtx).(*Key)
	return k
}

// Limits is the middleware that admits a request against its key's limits
// before the backend starts (a refusal is the request's answer) and counts
// what it used from its final usage. It belongs outside billing's Pricing
// (it reads the priced cost).
func Limits(l *Limiter) backend.Middleware {
	return func(next backend.Backend) backend.Backend {
		return &backend.Funcs{
			Next: next,
			ChatFunc: func(ctx context.Context, req *api.ChatCompletionRequest, emit func(*api.ChatCompletionChunk) error) error {
				k := KeyFrom(ctx)
				if k == nil {
					return next.Chat(ctx, req, emit)
				}
				if e := l.Admit(ctx, k); e != nil {
					return e
				}
				return next.Chat(ctx, req, func(ch *api.ChatCompletionChunk) error {
					if ch.Usage != nil {
						l.Used(k, usedTokens(ch.Usage), ch.Usage.Cost)
					}
					return emit(ch)
				})
			},
			CompleteFunc: func(ctx context.Context, req *api.CompletionRequest, emit func(*api.Completion) error) error {
				k := KeyFrom(ctx)
				if k == nil {
					return next.Complete(ctx, req, emit)
				}
				if e := l.Admit(ctx, k); e != nil {
					return e
				}
				return next.Complete(ctx, req, func(ch *api.Completion) error {
					if ch.Usage != nil {
						l.Used(k, usedTokens(ch.Usage), ch.Usage.Cost)
					}
					return emit(ch)
				})
			},
			EmbedFunc: func(ctx context.Context, req *api.EmbeddingRequest) (*api.EmbeddingResponse, error) {
				k := KeyFrom(ctx)
				if k == nil {
					return backend.Embed(ctx, next, req)
				}
				if e := l.Admit(ctx, k); e != nil {
					return nil, e
				}
				resp, err := backend.Embed(ctx, next, req)
				if err == nil && resp.Usage != nil {
					l.Used(k, usedTokens(resp.Usage), resp.Usage.Cost)
				}
				return resp, err
			},
		}
	}
}

// usedTokens is what a request counts against a key's tokens per minute:
// its own and its advisor's.
func usedTokens(u *api.Usage) int {
	n := u.TotalTokens
	if a := u.Advisor; a != nil {
		n += a.PromptTokens + a.CompletionTokens
	}
	return n
}
