package server_test

import (
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/stepflash/stepflash/billing"
	"github.com/stepflash/stepflash/server"
)

// TestDashboardHTTP: the dashboard's files are served under the strict CSP
// without a key; other paths under /dashboard/ are 404 error objects.
func TestDashboardHTTP(t *testing.T) {
	f := startUsage(t)
	for _, tc := range []struct {
		path, ctype, inner string
		status             int
	}{
		{"/dashboard", "text/html", `<script src="/dashboard/app.js" defer></script>`, 200},
		{"/dashboard/app.js", "text/javascript", "/v1/usage", 200},
		{"/dashboard/charts.js", "text/javascript", "createElementNS", 200},
		{"/dashboard/style.css", "text/css", ".chart", 200},
		{"/dashboard/icon.svg", "image/svg+xml", "<svg", 200},
		{"/dashboard/index.html", "application/json", `"code":"not_found"`, 404},
		{"/dashboard/x.js", "application/json", `"code":"not_found"`, 404},
	} {
		resp, err := http.Get(f.s.URL + tc.path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.status || !strings.HasPrefix(resp.Header.Get("Content-Type"), tc.ctype) || !strings.Contains(string(b), tc.inner) {
			t.Errorf("%s: %d %s, want %d %s holding %q", tc.path, resp.StatusCode, resp.Header.Get("Content-Type"), tc.status, tc.ctype, tc.inner)
		}
		csp := resp.Header.Get("Content-Security-Policy")
		if tc.status == 200 && (!strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe") || resp.Header.Get("X-Content-Type-Options") != "nosniff") {
			t.Errorf("%s: CSP %q", tc.path, csp)
		}
		if tc.status == 200 && tc.ctype == "text/html" && (strings.Contains(string(b), "http://") || strings.Contains(string(b), "<script>") || strings.Contains(string(b), "style=")) {
			t.Errorf("%s loads from elsewhere or has inline script or style", tc.path)
		}
	}
}

// chartPoint is one data mark of a chart on the page.
type chartPoint struct {
	Series, Time string
	Value        float64
}

// TestDashboardBrowser opens the dashboard in headless Chromium after
// requests were made through the server: without a key it shows the
// server's 401; with the operator key its charts' data points are the
// endpoint's numbers for the same range (requests per model, key and
// region, cost per key, effort mix, advisor escalations and cost, latency
// percentiles, cache-hit share), with no page exception, console error or
// CSP violation. Screenshots go to $STEPFLASH_SCREENSHOTS (docs/img).
func TestDashboardBrowser(t *testing.T) {
	bin := chromium()
	if bin == "" {
		t.Skip("no chromium binary (apt-get install chromium): the dashboard's browser test needs one")
	}
	if testing.Short() {
		t.Skip("browser test in -short mode")
	}
	shots := os.Getenv("STEPFLASH_SCREENSHOTS")
	if shots == "" {
		shots = t.TempDir()
	}
	f := startUsage(t)
	traffic(t, f)
	// Some history: earlier hours of another region and key, with an error.
	now := time.Now().UTC()
	for i := range 12 {
		r := billing.Record{RequestID: fmt.Sprintf("hist-%d", i), Time: now.Add(-time.Duration(2+i) * time.Hour), KeyID: f.userID, Region: []string{"cn", "global"}[i%2],
			Model: []string{"scripted", "advised"}[i%3/2], Endpoint: "chat", Effort: []string{"low", "medium", "high"}[i%3], PromptTokens: 100 + 40*i, CachedTokens: 20 * (i % 4),
			CompletionTokens: 30 + i, CostUSD: 0.001 * float64(1+i), Latency: time.Duration(20+7*i) * time.Millisecond, Status: 200}
		if i%5 == 4 {
			r.Status, r.ErrorCode = 503, "overloaded"
		}
		if i%4 == 1 {
			r.AdvisorPromptTokens, r.AdvisorCompletionTokens, r.AdvisorCostUSD = 50, 10, 0.002
			r.CostUSD += 0.002
		}
		if err := f.st.Append(context.Background(), r); err != nil {
			t.Fatal(err)
		}
	}

	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(bin), chromedp.NoSandbox, chromedp.Flag("disable-gpu", true), chromedp.WindowSize(1200, 900))...)
	defer cancelAlloc()
	ctx, cancel := chromedp.NewContext(actx, chromedp.WithLogf(t.Logf))
	defer cancel()
	ctx, cancelTimeout := context.WithTimeout(ctx, 2*time.Minute)
	defer cancelTimeout()

	var mu sync.Mutex
	var problems []string
	note := func(s string) {
		mu.Lock()
		problems = append(problems, s)
		mu.Unlock()
	}
	do := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(ctx, steps...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	do("starting the browser", chromedp.Navigate(f.s.URL+"/health"))
	go func() {
		for ev, err := range chromedp.Events(ctx, runtime.ExceptionThrown) {
			if err != nil {
				return
			}
			note("exception: " + ev.ExceptionDetails.Text + " " + fmt.Sprint(ev.ExceptionDetails.Exception))
		}
	}()
	go func() {
		for ev, err := range chromedp.Events(ctx, runtime.ConsoleAPICalled) {
			if err != nil {
				return
			}
			if ev.Type == runtime.ConsoleAPICalledTypeError || ev.Type == runtime.ConsoleAPICalledTypeWarning {
				note(fmt.Sprintf("console.%s: %v", ev.Type, ev.Args))
			}
		}
	}()
	if _, err := chromedp.Call(ctx, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{
		Source: `window.__csp = []; document.addEventListener("securitypolicyviolation", (e) => window.__csp.push(e.violatedDirective + " " + e.blockedURI));`}); err != nil {
		t.Fatal(err)
	}
	waitState := func(want string) {
		t.Helper()
		if _, err := chromedp.Run(ctx, chromedp.Poll[bool](`(() => { const s = document.getElementById("dashboard").dataset.state; return s === "ready" || s === "error"; })()`,
			chromedp.WithPollingInterval(20*time.Millisecond), chromedp.WithPollingTimeout(30*time.Second))); err != nil {
			t.Fatalf("waiting for the dashboard: %v", err)
		}
		st, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.getElementById("dashboard").dataset.state + " " + document.getElementById("error").textContent`))
		if !strings.HasPrefix(st, want) {
			t.Fatalf("dashboard state %q, want %s", st, want)
		}
	}
	shot := func(name string) {
		t.Helper()
		png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatalf("screenshot %s: %v", name, err)
		}
		if err := os.WriteFile(filepath.Join(shots, name), png, 0o644); err != nil {
			t.Fatal(err)
		}
	}

	do("loading the page", chromedp.Navigate(f.s.URL+"/dashboard"))
	waitState("error")
	if e, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.getElementById("error").textContent`)); !strings.Contains(e, "No API key was given") {
		t.Errorf("without a key the page shows %q, want the server's 401 message", e)
	}
	do("typing the ordinary key", chromedp.SetValue(chromedp.ID("api-key"), f.user),
		chromedp.Evaluate[chromedp.Void](`document.getElementById("api-key").dispatchEvent(new Event("change"))`))
	waitState("error")
	if e, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.getElementById("error").textContent`)); !strings.Contains(e, "only operator keys") {
		t.Errorf("with an ordinary key the page shows %q, want the 403 message", e)
	}
	do("typing the operator key", chromedp.SetValue(chromedp.ID("api-key"), f.operator),
		chromedp.Evaluate[chromedp.Void](`document.getElementById("api-key").dispatchEvent(new Event("change"))`))
	waitState("ready")
	shot("dashboard-overview.png")

	// The same range from the endpoint, to compare the charts with.
	rng, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`[document.getElementById("dashboard").dataset.since, document.getElementById("dashboard").dataset.until]`))
	if err != nil || len(rng) != 2 {
		t.Fatalf("the page's range: %v %v", rng, err)
	}
	report := func(groupBy string) server.UsageReport {
		status, rep, body := getUsage(t, f.s.URL, f.operator, url.Values{"since": {rng[0]}, "until": {rng[1]}, "group_by": {groupBy}})
		if status != 200 {
			t.Fatalf("%d %s", status, body)
		}
		return rep
	}
	all, byModel, byKey, byRegion := report(""), report("model"), report("key"), report("region")
	if all.Total.Requests < 17 {
		t.Fatalf("the endpoint reports %d requests, want the 5 made and 12 of history", all.Total.Requests)
	}
	points := func(chart string) []chartPoint {
		t.Helper()
		pts, err := chromedp.Run(ctx, chromedp.Evaluate[[]chartPoint](`[...document.querySelectorAll("#`+chart+` .pt")].map((e) =>
			({Series: e.dataset.series, Time: e.dataset.time, Value: Number(e.dataset.value)}))`))
		if err != nil {
			t.Fatalf("reading %s: %v", chart, err)
		}
		return pts
	}
	label := func(g string) string {
		if g == "" {
			return "(none)"
		}
		return g
	}
	key := func(tm time.Time, series string) string { return tm.UTC().Format(time.RFC3339) + " " + series }
	// seriesOf is what a chart must show: one value per bucket and series
	// where the endpoint has a non-zero (or, for ratios, any) value.
	seriesOf := func(rep server.UsageReport, pick func(server.UsagePoint) (string, float64, bool)) map[string]float64 {
		m := map[string]float64{}
		for _, p := range rep.Series {
			if s, v, ok := pick(p); ok {
				m[key(p.Time, s)] = v
			}
		}
		return m
	}
	compare := func(chart string, want map[string]float64, tol float64) {
		t.Helper()
		got := map[string]float64{}
		for _, p := range points(chart) {
			tm, err := time.Parse(time.RFC3339Nano, p.Time)
			if err != nil {
				t.Fatalf("%s: point time %q: %v", chart, p.Time, err)
			}
			if p.Value != 0 {
				got[key(tm, p.Series)] = p.Value
			}
		}
		for k, v := range want {
			if v == 0 {
				delete(want, k)
			}
		}
		if len(got) != len(want) {
			t.Errorf("%s: %d points, the endpoint has %d: %v vs %v", chart, len(got), len(want), got, want)
		}
		for k, v := range want {
			if g, ok := got[k]; !ok || math.Abs(g-v) > tol*math.Max(1, math.Abs(v)) {
				t.Errorf("%s: %s is %v on the page, %v from the endpoint", chart, k, g, v)
			}
		}
	}
	grouped := func(pick func(server.UsagePoint) float64) func(server.UsagePoint) (string, float64, bool) {
		return func(p server.UsagePoint) (string, float64, bool) { return label(p.Group), pick(p), true }
	}
	compare("chart-requests-model", seriesOf(byModel, grouped(func(p server.UsagePoint) float64 { return float64(p.Requests) })), 0)
	compare("chart-requests-key", seriesOf(byKey, grouped(func(p server.UsagePoint) float64 { return float64(p.Requests) })), 0)
	compare("chart-requests-region", seriesOf(byRegion, grouped(func(p server.UsagePoint) float64 { return float64(p.Requests) })), 0)
	compare("chart-cost-key", seriesOf(byKey, grouped(func(p server.UsagePoint) float64 { return p.CostUSD })), 1e-12)
	compare("chart-advisor", seriesOf(all, func(p server.UsagePoint) (string, float64, bool) {
		return "escalations", float64(p.AdvisorEscalations), true
	}), 0)
	compare("chart-advisor-cost", seriesOf(all, func(p server.UsagePoint) (string, float64, bool) { return "advisor cost", p.AdvisorCostUSD, true }), 1e-12)
	compare("chart-cache", seriesOf(all, func(p server.UsagePoint) (string, float64, bool) { return "", p.CacheHitShare, p.PromptTokens > 0 }), 1e-12)
	effort := map[string]float64{}
	latency := map[string]float64{}
	for _, p := range all.Series {
		for tier, n := range p.Effort {
			effort[key(p.Time, tier)] = float64(n)
		}
		if p.Requests > p.Errors {
			latency[key(p.Time, "p50")], latency[key(p.Time, "p95")], latency[key(p.Time, "p99")] = p.LatencyMS.P50, p.LatencyMS.P95, p.LatencyMS.P99
		}
	}
	compare("chart-effort", effort, 0)
	compare("chart-latency", latency, 1e-12)
	// The totals the page shows are the endpoint's.
	if v, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.querySelector('#totals [data-field="requests"] .v').textContent`)); v != fmt.Sprint(all.Total.Requests) {
		t.Errorf("the requests card shows %q, the endpoint %d", v, all.Total.Requests)
	}
	// The tables list the groups.
	if n, _ := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll("#table-region tr[data-group]").length`)); n != len(byRegion.Groups) {
		t.Errorf("the region table has %d rows, the endpoint %d groups", n, len(byRegion.Groups))
	}
	// The key survives a reload (localStorage).
	do("reloading", chromedp.Reload())
	waitState("ready")

	do("a phone", chromedp.EmulateViewport(390, 844))
	waitState("ready")
	shot("dashboard-phone.png")

	csp, _ := chromedp.Run(ctx, chromedp.Evaluate[[]string](`window.__csp`))
	mu.Lock()
	defer mu.Unlock()
	if len(csp) > 0 || len(problems) > 0 {
		t.Errorf("CSP violations %v; page problems %v", csp, problems)
	}
}
