package server

import (
	"context"
	"errors"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/stepflash/stepflash/api"
	"github.com/stepflash/stepflash/auth"
	"github.com/stepflash/stepflash/billing"
)

// UsageSource is what GET /v1/usage reads: the ledger's rows of a time
// range (store.Store implements it). The server totals them itself, so a
// source needs one range query and nothing else.
type UsageSource interface {
	// LedgerRows calls each with the rows of [since, until) in time order
	// and stops at the first error each returns.
	LedgerRows(ctx context.Context, since, until time.Time, each func(*billing.Record) error) error
}

// Usage report groupings (the group_by parameter) and intervals.
var (
	usageDimensions = []string{"key", "model", "region"}
	usageIntervals  = map[string]time.Duration{"minute": time.Minute, "hour": time.Hour, "day": 24 * time.Hour}
)

// MaxUsageBuckets bounds a report's time buckets (range / interval).
const MaxUsageBuckets = 2000

// CodeOperatorKeyRequired is the 403 of GET /v1/usage for a key that is
// not an operator's.
const CodeOperatorKeyRequired = "operator_key_required"

// UsageReport is the body of GET /v1/usage (docs/dashboard.md).
type UsageReport struct {
	Object string `json:"object"` // "usage.report"
	// Since (inclusive) and Until (exclusive) bound the rows' times.
	Since time.Time `json:"since"`
	Until time.Time `json:"until"`
	// GroupBy is "key", "model", "region" or "" (no groups).
	GroupBy string `json:"group_by"`
	// Interval is the series' bucket: "minute", "hour" or "day" (UTC).
	Interval string `json:"interval"`
	// Buckets are the start times of every bucket of the range, oldest
	// first, whether or not it has rows.
	Buckets []time.Time  `json:"buckets"`
	Total   UsageStats   `json:"total"`
	Groups  []UsageGroup `json:"groups"`
	// Series has one point per bucket and group that has rows, in time
	// and then group order.
	Series []UsagePoint `json:"series"`
}

// UsageGroup is the totals of one key, model or region.
type UsageGroup struct {
	Group string `json:"group"`
	UsageStats
}

// UsagePoint is the totals of one group in one bucket.
type UsagePoint struct {
	Time  time.Time `json:"time"`
	Group string    `json:"group"`
	UsageStats
}

// UsageStats totals ledger rows.
type UsageStats struct {
	Requests int64 `json:"requests"`
	// Errors counts requests that failed or were cut (an error status or
	// an error code), as `stepflash usage` does.
	Errors           int64   `json:"errors"`
	PromptTokens     int64   `json:"prompt_tokens"`
	CachedTokens     int64   `json:"cached_tokens"`
	CompletionTokens int64   `json:"completion_tokens"`
	ReasoningTokens  int64   `json:"reasoning_tokens"`
	CostUSD          float64 `json:"cost_usd"`
	// CacheHitShare is cached / prompt tokens (0 without prompt tokens).
	CacheHitShare float64 `json:"cache_hit_share"`
	// Effort counts requests by applied reasoning_effort tier ("none"
	// for rows without one).
	Effort map[string]int64 `json:"effort"`
	// AdvisorEscalations counts requests the advisor took part in (rows
	// with advisor tokens or cost); the advisor's tokens and cost
	// (included in CostUSD) follow.
	AdvisorEscalations      int64   `json:"advisor_escalations"`
	AdvisorPromptTokens     int64   `json:"advisor_prompt_tokens"`
	AdvisorCompletionTokens int64   `json:"advisor_completion_tokens"`
	AdvisorCostUSD          float64 `json:"advisor_cost_usd"`
	// LatencyMS are the nearest-rank percentiles of the successful
	// requests' latency (reaching the backend to the final usage).
	LatencyMS Percentiles `json:"latency_ms"`

	latencies []float64
}

// Percentiles of a latency, in milliseconds (0 without samples).
type Percentiles struct {
	P50 float64 `json:"p50"`
	P95 float64 `json:"p95"`
	P99 float64 `json:"p99"`
}

func (u *UsageStats) add(r *billing.Record) {
	u.Requests++
	failed := r.Status >= 400 || r.ErrorCode != ""
	if failed {
		u.Errors++
	}
	u.PromptTokens += int64(r.PromptTokens)
	u.CachedTokens += int64(r.CachedTokens)
	u.CompletionTokens += int64(r.CompletionTokens)
	u.ReasoningTokens += int64(r.ReasoningTokens)
	u.CostUSD += r.CostUSD
	if u.Effort == nil {
		u.Effort = map[string]int64{}
	}
	e := r.Effort
	if e == "" {
		e = "none"
	}
	u.Effort[e]++
	if r.AdvisorPromptTokens > 0 || r.AdvisorCompletionTokens > 0 || r.AdvisorCostUSD > 0 {
		u.AdvisorEscalations++
	}
	u.AdvisorPromptTokens += int64(r.AdvisorPromptTokens)
	u.AdvisorCompletionTokens += int64(r.AdvisorCompletionTokens)
	u.AdvisorCostUSD += r.AdvisorCostUSD
	if !failed {
		u.latencies = append(u.latencies, float64(r.Latency.Microseconds())/1000)
	}
}

// finish computes the shares and percentiles.
func (u *UsageStats) finish() {
	if u.Effort == nil {
		u.Effort = map[string]int64{}
	}
	if u.PromptTokens > 0 {
		u.CacheHitShare = float64(u.CachedTokens) / float64(u.PromptTokens)
	}
	slices.Sort(u.latencies)
	rank := func(p float64) float64 {
		if len(u.latencies) == 0 {
			return 0
		}
		return u.latencies[max(0, int(math.Ceil(p*float64(len(u.latencies))))-1)]
	}
	u.LatencyMS = Percentiles{P50: rank(0.50), P95: rank(0.95), P99: rank(0.99)}
	u.latencies = nil
}

// ServeUsage serves GET /v1/usage from src: usage totals and series over
// a time range, for operators (docs/dashboard.md). With keys enforced the
// auth middleware has already refused requests without a valid key; this
// refuses keys that are not operators' with 403. Call it before the
// server takes requests.
func (s *Server) ServeUsage(src UsageSource) {
	s.route("GET", "/v1/usage", func(w http.ResponseWriter, r *http.Request) *api.Error {
		return s.handleUsage(w, r, src, time.Now())
	})
}

func (s *Server) handleUsage(w http.ResponseWriter, r *http.Request, src UsageSource, now time.Time) *api.Error {
	if k := auth.KeyFrom(r.Context()); k != nil && !k.Operator {
		return api.NewError(http.StatusForbidden, "permission_error", CodeOperatorKeyRequired, "",
			"The API key %s… may not read usage: only operator keys may (create one with \"stepflash keys create --operator\").", k.ID)
	}
	q := r.URL.Query()
	for name := range q {
		switch name {
		case "since", "until", "group_by", "interval":
		default:
			return api.InvalidRequest("unknown_parameter", name,
				"Unknown parameter %q: GET /v1/usage takes since, until, group_by and interval.", name)
		}
	}
	until := now.UTC()
	if v := q.Get("until"); v != "" {
		t, err := parseUsageTime(v, now)
		if err != nil {
			return api.InvalidRequest("invalid_value", "until", "until=%q: %v.", v, err)
		}
		until = t
	}
	since := until.Add(-24 * time.Hour)
	if v := q.Get("since"); v != "" {
		t, err := parseUsageTime(v, now)
		if err != nil {
			return api.InvalidRequest("invalid_value", "since", "since=%q: %v.", v, err)
		}
		since = t
	}
	if !since.Before(until) {
		return api.InvalidRequest("invalid_value", "since", "since (%s) must be before until (%s).",
			since.Format(time.RFC3339), until.Format(time.RFC3339))
	}
	rep := &UsageReport{Object: "usage.report", Since: since, Until: until, Groups: []UsageGroup{}, Series: []UsagePoint{}}
	switch g := q.Get("group_by"); {
	case g == "" || g == "none":
	case slices.Contains(usageDimensions, g):
		rep.GroupBy = g
	case usageIntervals[g] != 0:
		rep.Interval = g // a time grouping: the series alone
	default:
		return api.InvalidRequest("invalid_value", "group_by", "group_by=%q: want key, model, region, minute, hour or day.", g)
	}
	if v := q.Get("interval"); v != "" {
		if usageIntervals[v] == 0 {
			return api.InvalidRequest("invalid_value", "interval", "interval=%q: want minute, hour or day.", v)
		}
		if rep.Interval != "" && rep.Interval != v {
			return api.InvalidRequest("invalid_value", "interval", "interval=%q contradicts group_by=%q.", v, rep.Interval)
		}
		rep.Interval = v
	}
	if rep.Interval == "" {
		switch span := until.Sub(since); {
		case span <= 3*time.Hour:
			rep.Interval = "minute"
		case span <= 7*24*time.Hour:
			rep.Interval = "hour"
		default:
			rep.Interval = "day"
		}
	}
	step := usageIntervals[rep.Interval]
	first := since.Truncate(step) // UTC: Truncate works on absolute time
	if n := until.Sub(first) / step; n >= MaxUsageBuckets {
		return api.InvalidRequest("invalid_value", "interval",
			"%s to %s by %s is %d buckets, more than %d: choose a longer interval or a shorter range.",
			since.Format(time.RFC3339), until.Format(time.RFC3339), rep.Interval, n+1, MaxUsageBuckets)
	}
	for t := first; t.Before(until); t = t.Add(step) {
		rep.Buckets = append(rep.Buckets, t)
	}

	groups := map[string]*UsageStats{}
	type pointKey struct {
		t     time.Time
		group string
	}
	points := map[pointKey]*UsageStats{}
	err := src.LedgerRows(r.Context(), since, until, func(rec *billing.Record) error {
		rep.Total.add(rec)
		g := ""
		switch rep.GroupBy {
		case "key":
			g = rec.KeyID
		case "model":
			g = rec.Model
		case "region":
			g = rec.Region
		}
		if rep.GroupBy != "" {
			if groups[g] == nil {
				groups[g] = &UsageStats{}
			}
			groups[g].add(rec)
		}
		pk := pointKey{rec.Time.Truncate(step).UTC(), g}
		if points[pk] == nil {
			points[pk] = &UsageStats{}
		}
		points[pk].add(rec)
		return nil
	})
	if err != nil {
		if errors.Is(err, context.Canceled) {
			return nil // the client left
		}
		e := api.NewError(http.StatusServiceUnavailable, api.TypeServer, "ledger_unavailable", "",
			"The usage ledger could not be read (%v). Retry after 1 second(s).", err)
		e.RetryAfter = 1
		return e
	}
	rep.Total.finish()
	for g, st := range groups {
		st.finish()
		rep.Groups = append(rep.Groups, UsageGroup{Group: g, UsageStats: *st})
	}
	slices.SortFunc(rep.Groups, func(a, b UsageGroup) int { return strings.Compare(a.Group, b.Group) })
	for pk, st := range points {
		st.finish()
		rep.Series = append(rep.Series, UsagePoint{Time: pk.t, Group: pk.group, UsageStats: *st})
	}
	slices.SortFunc(rep.Series, func(a, b UsagePoint) int {
		if c := a.Time.Compare(b.Time); c != 0 {
			return c
		}
		return strings.Compare(a.Group, b.Group)
	})
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, rep)
	return nil
}

// parseUsageTime reads an RFC 3339 time, a date (midnight UTC) or a
// duration ago ("90m", "24h", "7d"), as `stepflash usage` does.
func parseUsageTime(v string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
		return t.UTC(), nil
	}
	if t, err := time.Parse(time.DateOnly, v); err == nil {
		return t, nil
	}
	if n, ok := strings.CutSuffix(v, "d"); ok {
		if d, err := strconv.Atoi(n); err == nil && d >= 0 && d <= 100000 {
			return now.UTC().Add(-time.Duration(d) * 24 * time.Hour), nil
		}
	}
	if d, err := time.ParseDuration(v); err == nil && d >= 0 {
		return now.UTC().Add(-d), nil
	}
	return time.Time{}, errors.New("want an RFC 3339 time (2025-01-02T15:04:05Z), a date (2025-01-02) or a duration ago (90m, 24h, 7d)")
}
