package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/shared"

	"github.com/stepflash/stepflash/advisor"
	"github.com/stepflash/stepflash/auth"
	"github.com/stepflash/stepflash/backend"
	"github.com/stepflash/stepflash/billing"
	"github.com/stepflash/stepflash/internal/testserve"
	"github.com/stepflash/stepflash/server"
	"github.com/stepflash/stepflash/store"
)

// usageFixture is a server on loopback whose models record into a real
// SQLite ledger, with keys on: an operator key and an ordinary one.
type usageFixture struct {
	s              *testserve.Served
	st             *store.Store
	operator, user string
	userID         string
	start          time.Time
}

func newKey(t *testing.T, st *store.Store, name string, operator bool) (string, string) {
	t.Helper()
	key, err := auth.Generate("global")
	if err != nil {
		t.Fatal(err)
	}
	p, _ := auth.Parse(key)
	if err := st.CreateKey(context.Background(), auth.Key{ID: p.Prefix, Hash: p.Hash, Region: "global", Name: name, Operator: operator}); err != nil {
		t.Fatal(err)
	}
	return key, p.Prefix
}

func startUsage(t *testing.T) *usageFixture {
	t.Helper()
	st, err := store.Open(context.Background(), filepath.Join(t.TempDir(), "stepflash.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	f := &usageFixture{st: st, start: time.Now().UTC().Add(-time.Second)}
	f.operator, _ = newKey(t, st, "ops", true)
	f.user, f.userID = newKey(t, st, "app", false)
	record := func(m *server.Model) *server.Model {
		m.Backend = backend.Chain(m.Backend, billing.Recording(st, m.Name))
		return m
	}
	big := testserve.ScriptedModel(t, "big", &testserve.Scripted{Scripts: []testserve.Script{{Key: "", Pieces: []string{"The advisor's answer."}}}}, nil)
	advised := scriptedModel(t, "advised", &testserve.Scripted{})
	mw, err := advisor.New(advisor.Config{Advisor: big.Backend, Model: "big"})
	if err != nil {
		t.Fatal(err)
	}
	advised.Backend = mw(advised.Backend)
	authn := auth.New(auth.Options{Store: st})
	f.s = startServer(t, server.Config{Middleware: []server.Middleware{authn.Middleware}}, nil,
		record(scriptedModel(t, "scripted", &testserve.Scripted{Scripts: []testserve.Script{{Key: "", Pieces: []string{"Hello ", "there."}}}})),
		record(advised))
	f.s.Srv.ServeUsage(st)
	f.s.Srv.ServeDashboard()
	return f
}

// got is what clients were told about the requests they made.
type got struct {
	requests, prompt, cached, completion int64
	cost                                 float64
	byModel                              map[string]int64
	effort                               map[string]int64
}

// traffic makes requests as the ordinary key with the official SDK,
// streamed and not, at several efforts and with the advisor, and totals
// the usage each client received.
func traffic(t *testing.T, f *usageFixture) got {
	t.Helper()
	c := openai.NewClient(option.WithBaseURL(f.s.URL+"/v1"), option.WithAPIKey(f.user), option.WithMaxRetries(0))
	g := got{byModel: map[string]int64{}, effort: map[string]int64{}}
	add := func(model string, u openai.CompletionUsage, effort string) {
		g.requests++
		g.byModel[model]++
		g.effort[effort]++
		g.prompt += u.PromptTokens
		g.cached += u.PromptTokensDetails.CachedTokens
		g.completion += u.CompletionTokens
		cost, err := strconv.ParseFloat(u.JSON.ExtraFields["cost"].Raw(), 64)
		if err != nil {
			t.Fatalf("usage.cost %q: %v", u.JSON.ExtraFields["cost"].Raw(), err)
		}
		g.cost += cost
	}
	ctx := context.Background()
	for i, eff := range []shared.ReasoningEffort{"low", "medium", "high", "medium"} {
		p := openai.ChatCompletionNewParams{Model: "scripted", ReasoningEffort: eff,
			Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Say hello number " + strconv.Itoa(i))}}
		if i%2 == 1 {
			p.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}
			st := c.Chat.Completions.NewStreaming(ctx, p)
			var u openai.CompletionUsage
			for st.Next() {
				if ch := st.Current(); ch.JSON.Usage.Valid() && ch.Usage.TotalTokens > 0 {
					u = ch.Usage
				}
			}
			if err := st.Err(); err != nil {
				t.Fatal(err)
			}
			add("scripted", u, string(eff))
			continue
		}
		resp, err := c.Chat.Completions.New(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		add("scripted", resp.Usage, string(eff))
	}
	resp, err := c.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "advised", ReasoningEffort: "medium",
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Ask the advisor")}}, option.WithJSONSet("advisor", "always"))
	if err != nil {
		t.Fatal(err)
	}
	add("advised", resp.Usage, "medium")
	return g
}

func getUsage(t *testing.T, base, key string, q url.Values) (int, server.UsageReport, []byte) {
	t.Helper()
	req, _ := http.NewRequest("GET", base+"/v1/usage?"+q.Encode(), nil)
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var rep server.UsageReport
	if resp.StatusCode == 200 {
		if err := json.Unmarshal(b, &rep); err != nil {
			t.Fatalf("GET /v1/usage: %v in %s", err, b)
		}
	}
	return resp.StatusCode, rep, b
}

func near(a, b float64) bool { return math.Abs(a-b) <= 1e-9*math.Max(1, math.Abs(b)) }

// TestUsageEndpoint: requests made through a real server with keys on
// are read back from GET /v1/usage with the operator key, totals equal to
// the usage the clients were told; only an operator key may read it.
func TestUsageEndpoint(t *testing.T) {
	f := startUsage(t)
	g := traffic(t, f)
	since := url.Values{"since": {f.start.Format(time.RFC3339Nano)}}

	t.Run("auth", func(t *testing.T) {
		for _, tc := range []struct {
			name, key string
			status    int
			code      string
		}{
			{"no key", "", 401, "missing_api_key"},
			{"ordinary key", f.user, 403, server.CodeOperatorKeyRequired},
			{"operator key", f.operator, 200, ""},
		} {
			status, _, body := getUsage(t, f.s.URL, tc.key, since)
			if status != tc.status {
				t.Errorf("%s: %d, want %d: %s", tc.name, status, tc.status, body)
				continue
			}
			if tc.code != "" {
				if e := errorOf(t, body); e.CodeString() != tc.code {
					t.Errorf("%s: code %q, want %q (%s)", tc.name, e.CodeString(), tc.code, e.Message)
				}
			}
		}
	})

	t.Run("totals", func(t *testing.T) {
		q := url.Values{"since": since["since"], "group_by": {"model"}}
		status, rep, body := getUsage(t, f.s.URL, f.operator, q)
		if status != 200 {
			t.Fatalf("%d %s", status, body)
		}
		tot := rep.Total
		if tot.Requests != g.requests || tot.PromptTokens != g.prompt || tot.CachedTokens != g.cached ||
			tot.CompletionTokens != g.completion || !near(tot.CostUSD, g.cost) || tot.Errors != 0 {
			t.Errorf("total %+v, clients were told %+v", tot, g)
		}
		if g.cost <= 0 || g.prompt <= 0 {
			t.Errorf("the clients got no cost or prompt tokens: %+v", g)
		}
		if len(rep.Groups) != len(g.byModel) {
			t.Errorf("groups %+v, want %v", rep.Groups, g.byModel)
		}
		for _, gr := range rep.Groups {
			if gr.Requests != g.byModel[gr.Group] {
				t.Errorf("model %q: %d requests, clients made %d", gr.Group, gr.Requests, g.byModel[gr.Group])
			}
		}
		for _, tier := range []string{"low", "medium", "high"} {
			if tot.Effort[tier] != g.effort[tier] {
				t.Errorf("effort %s: %d requests, clients asked %d (mix %v)", tier, tot.Effort[tier], g.effort[tier], tot.Effort)
			}
		}
		if tot.AdvisorEscalations != 1 || tot.AdvisorCostUSD <= 0 || tot.AdvisorCompletionTokens <= 0 {
			t.Errorf("advisor: %d escalations, $%g, %d completion tokens; want the one escalated request", tot.AdvisorEscalations, tot.AdvisorCostUSD, tot.AdvisorCompletionTokens)
		}
		if tot.LatencyMS.P50 <= 0 || tot.LatencyMS.P50 > tot.LatencyMS.P95 || tot.LatencyMS.P95 > tot.LatencyMS.P99 {
			t.Errorf("latency %+v", tot.LatencyMS)
		}
		var sum int64
		for _, p := range rep.Series {
			sum += p.Requests
		}
		if sum != g.requests || rep.Interval != "minute" || len(rep.Buckets) == 0 {
			t.Errorf("series: %d requests in %d points by %s over %d buckets, want %d", sum, len(rep.Series), rep.Interval, len(rep.Buckets), g.requests)
		}
	})

	t.Run("keyless", func(t *testing.T) {
		// A server without keys serves usage to anyone, as the rest of its API.
		open := startServer(t, server.Config{}, nil, echoModel("m"))
		open.Srv.ServeUsage(f.st)
		status, rep, body := getUsage(t, open.URL, "", since)
		if status != 200 || rep.Total.Requests != g.requests {
			t.Errorf("keyless: %d, %d requests, want 200 with %d: %s", status, rep.Total.Requests, g.requests, body)
		}
	})
}

// TestUsageStats: known ledger rows give known totals, shares, effort mix,
// escalations and nearest-rank percentiles, grouped and bucketed; bad
// parameters are 400 error objects naming the parameter.
func TestUsageStats(t *testing.T) {
	st, err := store.Open(context.Background(), filepath.Join(t.TempDir(), "stepflash.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	t0 := time.Date(2025, 3, 4, 10, 0, 0, 0, time.UTC)
	rows := []billing.Record{
		{RequestID: "a", Time: t0.Add(5 * time.Minute), KeyID: "k1", Region: "global", Model: "m", Endpoint: "chat", Effort: "low", PromptTokens: 100, CachedTokens: 50, CompletionTokens: 10, CostUSD: 0.5, Latency: 10 * time.Millisecond, Status: 200},
		{RequestID: "b", Time: t0.Add(10 * time.Minute), KeyID: "k1", Region: "cn", Model: "m", Endpoint: "chat", Effort: "high", PromptTokens: 100, CompletionTokens: 20, CostUSD: 1.5, AdvisorPromptTokens: 30, AdvisorCompletionTokens: 5, AdvisorCostUSD: 1, Latency: 30 * time.Millisecond, Status: 200},
		{RequestID: "c", Time: t0.Add(70 * time.Minute), KeyID: "k2", Region: "cn", Model: "n", Endpoint: "chat", Effort: "high", PromptTokens: 200, CachedTokens: 150, CompletionTokens: 5, CostUSD: 0.25, Latency: 20 * time.Millisecond, Status: 200},
		{RequestID: "d", Time: t0.Add(80 * time.Minute), KeyID: "k2", Region: "cn", Model: "n", Endpoint: "chat", Status: 503, ErrorCode: "overloaded", Latency: time.Second},
		{RequestID: "e", Time: t0.Add(26 * time.Hour), KeyID: "k2", Model: "n", Endpoint: "chat", PromptTokens: 7, Status: 200}, // outside the range
	}
	for _, r := range rows {
		if err := st.Append(context.Background(), r); err != nil {
			t.Fatal(err)
		}
	}
	s := startServer(t, server.Config{}, nil, echoModel("m"))
	s.Srv.ServeUsage(st)
	day := url.Values{"since": {"2025-03-04"}, "until": {"2025-03-05"}}
	with := func(kv ...string) url.Values {
		q := url.Values{}
		for k, v := range day {
			q[k] = v
		}
		for i := 0; i+1 < len(kv); i += 2 {
			q.Set(kv[i], kv[i+1])
		}
		return q
	}
	status, rep, body := getUsage(t, s.URL, "", with("group_by", "region"))
	if status != 200 {
		t.Fatalf("%d %s", status, body)
	}
	tot := rep.Total
	want := server.UsageStats{Requests: 4, Errors: 1, PromptTokens: 400, CachedTokens: 200, CompletionTokens: 35, CostUSD: 2.25,
		CacheHitShare: 0.5, AdvisorEscalations: 1, AdvisorPromptTokens: 30, AdvisorCompletionTokens: 5, AdvisorCostUSD: 1,
		LatencyMS: server.Percentiles{P50: 20, P95: 30, P99: 30}}
	eff := tot.Effort
	tot.Effort = nil
	if a, b := fmt.Sprintf("%+v", tot), fmt.Sprintf("%+v", want); a != b {
		t.Errorf("total\n %+v, want\n %+v", tot, want)
	}
	if eff["low"] != 1 || eff["high"] != 2 || eff["none"] != 1 {
		t.Errorf("effort mix %v", eff)
	}
	if rep.Interval != "hour" || len(rep.Buckets) != 24 || !rep.Buckets[0].Equal(t0.Add(-10*time.Hour)) {
		t.Errorf("interval %s, %d buckets from %v", rep.Interval, len(rep.Buckets), rep.Buckets)
	}
	for _, tc := range []struct {
		group       string
		requests    int64
		cost, share float64
	}{{"cn", 3, 1.75, 0.5}, {"global", 1, 0.5, 0.5}} {
		var gr *server.UsageGroup
		for i := range rep.Groups {
			if rep.Groups[i].Group == tc.group {
				gr = &rep.Groups[i]
			}
		}
		if gr == nil || gr.Requests != tc.requests || !near(gr.CostUSD, tc.cost) || !near(gr.CacheHitShare, tc.share) {
			t.Errorf("region %s: %+v, want %d requests, $%g, share %g", tc.group, gr, tc.requests, tc.cost, tc.share)
		}
	}
	// Series: cn at 10:00 (b) and 11:00 (c, d), global at 10:00 (a).
	type pt struct {
		hour     int
		group    string
		requests int64
	}
	var pts []pt
	for _, p := range rep.Series {
		pts = append(pts, pt{p.Time.Hour(), p.Group, p.Requests})
	}
	if wantPts := []pt{{10, "cn", 1}, {10, "global", 1}, {11, "cn", 2}}; len(pts) != 3 || pts[0] != wantPts[0] || pts[1] != wantPts[1] || pts[2] != wantPts[2] {
		t.Errorf("series %v, want %v", pts, wantPts)
	}

	for _, tc := range []struct {
		name  string
		q     url.Values
		param string
	}{
		{"bad since", url.Values{"since": {"yesterday"}}, "since"},
		{"bad until", url.Values{"until": {"2025-13-01"}}, "until"},
		{"since after until", url.Values{"since": {"2025-03-05"}, "until": {"2025-03-04"}}, "since"},
		{"bad group_by", with("group_by", "colour"), "group_by"},
		{"bad interval", with("interval", "week"), "interval"},
		{"too many buckets", url.Values{"since": {"2020-01-01"}, "until": {"2025-01-01"}, "interval": {"hour"}}, "interval"},
		{"unknown parameter", with("key", "k1"), "key"},
		{"contradiction", with("group_by", "day", "interval", "hour"), "interval"},
	} {
		status, _, body := getUsage(t, s.URL, "", tc.q)
		if status != 400 {
			t.Errorf("%s: %d, want 400: %s", tc.name, status, body)
			continue
		}
		if e := errorOf(t, body); e.Param == nil || *e.Param != tc.param {
			t.Errorf("%s: param %v, want %s (%s)", tc.name, e.Param, tc.param, e.Message)
		}
	}
	if status, rep, body := getUsage(t, s.URL, "", with("group_by", "day")); status != 200 || rep.Interval != "day" || rep.GroupBy != "" || len(rep.Series) != 1 || rep.Series[0].Requests != 4 {
		t.Errorf("group_by=day: %d %+v %s", status, rep.Series, body)
	}
}
