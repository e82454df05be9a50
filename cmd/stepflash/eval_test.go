package main

import (
	"bufio"
	"context"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	cdplog "github.com/chromedp/cdproto/log"
	cdpruntime "github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/stepflash/stepflash/eval"
	"github.com/stepflash/stepflash/internal/testmodels"
)

// evalEnv clears the variables eval reads its defaults from.
func evalEnv(t *testing.T) {
	for _, v := range []string{"STEP_BASE_URL", "STEP_API_KEY", "OPENAI_BASE_URL", "OPENAI_API_KEY"} {
		t.Setenv(v, "")
	}
}

// runEvalCmd runs `stepflash eval` and reads the results.json it wrote.
func runEvalCmd(t *testing.T, out string, args ...string) (*eval.Results, string) {
	t.Helper()
	evalEnv(t)
	stdout, stderr, code := runMain(t, append([]string{"eval", "--out", out}, args...)...)
	if code != 0 {
		t.Fatalf("eval %v: exit %d\n%s\n%s", args, code, stdout, stderr)
	}
	return readResults(t, out), stdout
}

func readResults(t *testing.T, dir string) *eval.Results {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "results.json"))
	if err != nil {
		t.Fatal(err)
	}
	var res eval.Results
	if err := json.Unmarshal(b, &res); err != nil {
		t.Fatal(err)
	}
	return &res
}

// serverMetrics reads a stepflash's /metrics counters: the chat requests
// answered 200 and, per model, the prompt, cached and completion tokens.
type serverMetrics struct {
	chat                                  int
	prompt, cached, completion, reasoning map[string]int
}

var metricLine = regexp.MustCompile(`^(stepflash_\w+)\{([^}]*)\} ([0-9.e+]+)$`)

// readMetrics reads the counters once they have settled: the request
// counter moves when a handler has returned, just after its client read
// the whole response, so a read right after a run may miss the last one.
func readMetrics(t *testing.T, base string) serverMetrics {
	t.Helper()
	m := readMetricsOnce(t, base)
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); {
		time.Sleep(100 * time.Millisecond)
		next := readMetricsOnce(t, base)
		if next.chat == m.chat {
			return next
		}
		m = next
	}
	return m
}

func readMetricsOnce(t *testing.T, base string) serverMetrics {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	m := serverMetrics{prompt: map[string]int{}, cached: map[string]int{}, completion: map[string]int{}, reasoning: map[string]int{}}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		g := metricLine.FindStringSubmatch(sc.Text())
		if g == nil {
			continue
		}
		v, _ := strconv.ParseFloat(g[3], 64)
		model := ""
		if i := strings.Index(g[2], `model="`); i >= 0 {
			model = g[2][i+7:]
			model = model[:strings.IndexByte(model, '"')]
		}
		switch g[1] {
		case "stepflash_http_requests_total":
			if strings.Contains(g[2], `route="POST /v1/chat/completions",code="200"`) {
				m.chat += int(v)
			}
		case "stepflash_prompt_tokens_total":
			m.prompt[model] += int(v)
		case "stepflash_cached_prompt_tokens_total":
			m.cached[model] += int(v)
		case "stepflash_completion_tokens_total":
			m.completion[model] += int(v)
		case "stepflash_reasoning_tokens_total":
			m.reasoning[model] += int(v)
		}
	}
	return m
}

// checkAgainstServer compares the calls recorded for model with what the
// server counted between before and after: requests and every token count.
func checkAgainstServer(t *testing.T, res *eval.Results, model string, before, after serverMetrics, wantCalls int) {
	t.Helper()
	var n int
	var tok eval.Tokens
	for _, c := range res.Calls {
		if c.Model != model {
			continue
		}
		n++
		if c.Error != "" || c.Status != 200 || len(c.Usage) == 0 || c.CostSource != "usage" {
			t.Errorf("call %s: status %d, error %q, usage %s, cost source %q", c.Key, c.Status, c.Error, c.Usage, c.CostSource)
		}
		tok.Prompt += c.Tokens.Prompt
		tok.Cached += c.Tokens.Cached
		tok.Completion += c.Tokens.Completion
		tok.Reasoning += c.Tokens.Reasoning
	}
	if n != wantCalls {
		t.Errorf("%s: %d calls recorded, want %d", model, n, wantCalls)
	}
	server := eval.Tokens{Prompt: after.prompt[model] - before.prompt[model], Cached: after.cached[model] - before.cached[model],
		Completion: after.completion[model] - before.completion[model], Reasoning: after.reasoning[model] - before.reasoning[model]}
	if tok != server {
		t.Errorf("%s: tokens recorded %+v, the server counted %+v", model, tok, server)
	}
}

// svgPoints parses report.html as XML (it must be well-formed) and counts
// the data points of each plot by id.
func svgPoints(t *testing.T, dir string) map[string]int {
	t.Helper()
	f, err := os.Open(filepath.Join(dir, "report.html"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dec := xml.NewDecoder(f)
	points := map[string]int{}
	plot := ""
	depth := 0
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("report.html is not well-formed: %v", err)
		}
		switch el := tok.(type) {
		case xml.StartElement:
			depth++
			attr := map[string]string{}
			for _, a := range el.Attr {
				attr[a.Name.Local] = a.Value
			}
			if el.Name.Local == "svg" && attr["class"] == "plot" {
				plot = attr["id"]
				points[plot] = 0
			}
			if el.Name.Local == "circle" && attr["class"] == "point" {
				if plot == "" {
					t.Errorf("a data point outside a plot")
				}
				points[plot]++
			}
		case xml.EndElement:
			depth--
			if el.Name.Local == "svg" {
				plot = ""
			}
		}
	}
	if depth != 0 {
		t.Errorf("report.html: %d elements left open", depth)
	}
	return points
}

func armByName(t *testing.T, res *eval.Results, arm string) eval.ArmSummary {
	t.Helper()
	for _, a := range res.Summary.Arms {
		if a.Arm == arm {
			return a
		}
	}
	t.Fatalf("no arm %q in %+v", arm, res.Summary.Arms)
	return eval.ArmSummary{}
}

// TestEvalEffort: `stepflash eval effort`, 5 passes, on real servers of the
// trained flash and flash-moe models (the embedded addition set, then the
// shared test set with --tasks): low (thinking off; one expert of two on the
// MoE) scores 0 and medium far above it, as the models really do; every
// call is in results.json with the usage and tokens the server counted, the
// applied tier echoed, and report.html's plots hold one point per tier (and
// per tier and pass).
func TestEvalEffort(t *testing.T) {
	dir := filepath.Join(testmodels.Models(t), "trained")
	cfg := writeConfig(t, map[string]any{"models": []any{
		map[string]any{"model": filepath.Join(dir, "flash-Q8_0.gguf"), "name": "flash"},
		map[string]any{"model": filepath.Join(dir, "flash-moe-Q8_0.gguf"), "name": "flash-moe"},
	}})
	base, _, _ := startServe(t, "--config", cfg, "--quiet", "--parallel", "4")
	for _, tc := range []struct {
		model, tasks string
		limit        int
		minMedium    float64
	}{
		{"flash", "", 10, 0.6},
		{"flash-moe", filepath.Join(dir, "test-set.jsonl"), 10, 0.6},
	} {
		t.Run(tc.model, func(t *testing.T) {
			out := t.TempDir()
			args := []string{"effort", "--base-url", base + "/v1", "--model", tc.model, "--passes", "5", "--limit", strconv.Itoa(tc.limit), "--max-tokens", "400"}
			if tc.tasks != "" {
				args = append(args, "--tasks", tc.tasks)
			}
			before := readMetrics(t, base)
			res, stdout := runEvalCmd(t, out, args...)
			after := readMetrics(t, base)
			want := 5 * 3 * tc.limit
			if got := after.chat - before.chat; got != want || len(res.Calls) != want || res.Made != want {
				t.Errorf("server answered %d chat requests, results.json has %d calls (%d made), want %d", got, len(res.Calls), res.Made, want)
			}
			checkAgainstServer(t, res, tc.model, before, after, want)
			low, medium, high := armByName(t, res, "low"), armByName(t, res, "medium"), armByName(t, res, "high")
			if low.Mean != 0 || medium.Mean < tc.minMedium || high.Mean < tc.minMedium {
				t.Errorf("scores low %.2f medium %.2f high %.2f: want low 0 and medium, high >= %.2f", low.Mean, medium.Mean, high.Mean, tc.minMedium)
			}
			if low.Reasoning != 0 || medium.Reasoning < 50 || medium.Completion <= low.Completion || medium.CostPerItem <= low.CostPerItem {
				t.Errorf("tokens: low %+v, medium %+v", low, medium)
			}
			if medium.Min != medium.Max || len(medium.PassScores) != 5 {
				t.Errorf("greedy passes differ: %v", medium.PassScores)
			}
			for _, c := range res.Calls {
				if c.Applied == nil || c.Applied.Applied != c.Arm || c.Request.Effort != c.Arm || c.TTFTMs <= 0 || c.TotalMs < c.TTFTMs {
					t.Errorf("call %s: applied %+v, request %+v, ttft %g total %g", c.Key, c.Applied, c.Request, c.TTFTMs, c.TotalMs)
				}
				if tc.model == "flash-moe" && c.Applied != nil && c.Applied.ExpertsPerToken != nil && (*c.Applied.ExpertsPerToken == 1) != (c.Arm == "low") {
					t.Errorf("call %s: %d experts per token", c.Key, *c.Applied.ExpertsPerToken)
				}
			}
			checkInBrowser(t, out, map[string]int{"score-latency": 3, "score-cost": 3, "pass-scores": 15})
			for _, w := range []string{"low", "medium", "high", "costs: the endpoint's usage.cost", strconv.Itoa(want) + " calls recorded"} {
				if !strings.Contains(stdout, w) {
					t.Errorf("summary lacks %q:\n%s", w, stdout)
				}
			}
		})
	}
}

// TestEvalHead2Head: advisor against flash on two servers (two
// --base-url), 5 passes over the first 40 embedded problems: 8 of them are
// right for the advisor only and 1 for flash only on these Q8_0 files
// served with one thread, so the interval excludes 0 (about [+5, +30]
// points; with 30 problems it would not reliably). Then two models on one
// server (two --model), 4 problems: the same pairing by task and pass.
func TestEvalHead2Head(t *testing.T) {
	dir := filepath.Join(testmodels.Models(t), "trained")
	adv, _, _ := startServe(t, "-m", filepath.Join(dir, "advisor-Q8_0.gguf"), "--quiet", "--parallel", "4")
	flash, _, _ := startServe(t, "-m", filepath.Join(dir, "flash-Q8_0.gguf"), "--quiet", "--parallel", "4")
	out := t.TempDir()
	ba, bf := readMetrics(t, adv), readMetrics(t, flash)
	res, stdout := runEvalCmd(t, out, "head2head", "--base-url", adv+"/v1", "--base-url", flash+"/v1", "--model", "advisor-Q8_0", "--model", "flash-Q8_0", "--passes", "5", "--limit", "40",
		"--max-tokens", "400", "--concurrency", "4")
	aa, af := readMetrics(t, adv), readMetrics(t, flash)
	if aa.chat-ba.chat != 200 || af.chat-bf.chat != 200 {
		t.Errorf("servers answered %d and %d chat requests, want 200 each", aa.chat-ba.chat, af.chat-bf.chat)
	}
	checkAgainstServer(t, res, "advisor-Q8_0", ba, aa, 200)
	checkAgainstServer(t, res, "flash-Q8_0", bf, af, 200)
	p := res.Summary.Paired
	if p == nil || !p.Significant || p.CILow <= 0 || p.MeanDiff <= 0 || len(p.PassDiffs) != 5 || p.Tasks != 40 || p.AWins < 6 {
		t.Fatalf("paired: %+v", p)
	}
	a, b := armByName(t, res, eval.ArmA), armByName(t, res, eval.ArmB)
	if a.Mean <= b.Mean || a.Label != "advisor-Q8_0" || b.Label != "flash-Q8_0" {
		t.Errorf("advisor %+v, flash %+v", a, b)
	}
	if !strings.Contains(stdout, "the interval excludes 0: advisor-Q8_0 is better") {
		t.Errorf("summary:\n%s", stdout)
	}
	// paired-diffs: the 5 passes and the mean.
	checkInBrowser(t, out, map[string]int{"score-latency": 2, "score-cost": 2, "pass-scores": 10, "paired-diffs": 6})

	// Two models on one server.
	cfg := writeConfig(t, map[string]any{"models": []any{
		map[string]any{"model": filepath.Join(dir, "flash-Q8_0.gguf"), "name": "flash"},
		map[string]any{"model": filepath.Join(dir, "advisor-Q8_0.gguf"), "name": "advisor"},
	}})
	one, _, _ := startServe(t, "--config", cfg, "--quiet", "--parallel", "4")
	before := readMetrics(t, one)
	res2, _ := runEvalCmd(t, t.TempDir(), "head2head", "--base-url", one+"/v1", "--model", "advisor", "--model", "flash", "--passes", "5", "--limit", "4", "--max-tokens", "400")
	after := readMetrics(t, one)
	checkAgainstServer(t, res2, "advisor", before, after, 20)
	checkAgainstServer(t, res2, "flash", before, after, 20)
	// The same models answer the same problems alike.
	right := map[string]bool{}
	for _, c := range res.Calls {
		right[c.Arm+c.Task+strconv.Itoa(c.Pass)] = c.Correct
	}
	for _, c := range res2.Calls {
		if right[c.Arm+c.Task+strconv.Itoa(c.Pass)] != c.Correct {
			t.Errorf("%s: right %v on one server, %v on two", c.Key, c.Correct, !c.Correct)
		}
	}
	if p2 := res2.Summary.Paired; p2 == nil || p2.A != "advisor" || p2.B != "flash" || p2.Tasks != 4 || len(p2.PassDiffs) != 5 {
		t.Errorf("two models on one server: %+v", p2)
	}
}

// TestEvalResume: a run stopped after 20 calls and run again makes only
// the calls it lacks (the server sees each recorded call once), and the
// journal holds each call once.
func TestEvalResume(t *testing.T) {
	dir := filepath.Join(testmodels.Models(t), "trained")
	base, _, _ := startServe(t, "-m", filepath.Join(dir, "flash-Q8_0.gguf"), "--quiet", "--parallel", "2")
	evalEnv(t)
	out := t.TempDir()
	args := []string{"effort", "--base-url", base + "/v1", "--passes", "5", "--limit", "6", "--max-tokens", "400", "--out", out, "--concurrency", "2"}
	o, err := parseEval(args, os.Getenv, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var n atomic.Int32
	o.cfg.OnCall = func(eval.Call) {
		if n.Add(1) == 20 {
			cancel()
		}
	}
	before := readMetrics(t, base)
	err = runEval(ctx, o, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "rerun the same command") {
		t.Fatalf("stopped run: %v", err)
	}
	first := readResults(t, out)
	mid := readMetrics(t, base)
	if first.Complete || len(first.Calls) < 20 || len(first.Calls) >= 90 {
		t.Fatalf("stopped run: complete %v, %d calls", first.Complete, len(first.Calls))
	}
	res, _ := runEvalCmd(t, out, args[:len(args)-4]...)
	after := readMetrics(t, base)
	if !res.Complete || len(res.Calls) != 90 || res.Skipped != len(first.Calls) || res.Made != 90-len(first.Calls) {
		t.Errorf("resumed: complete %v, %d calls, %d skipped, %d made; the first run recorded %d", res.Complete, len(res.Calls), res.Skipped, res.Made, len(first.Calls))
	}
	// The server saw every call once, and the first run's calls in flight
	// when it stopped (at most 2: they were cut and not recorded) once more.
	_ = mid
	if got := after.chat - before.chat; got < 90 || got > 92 {
		t.Errorf("the server answered %d requests for 90 calls (the first run recorded %d)", got, len(first.Calls))
	}
	b, err := os.ReadFile(filepath.Join(out, "calls.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	keys := map[string]bool{}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var c eval.Call
		if err := json.Unmarshal([]byte(line), &c); err != nil {
			t.Fatal(err)
		}
		if keys[c.Key] {
			t.Errorf("call %s journalled twice", c.Key)
		}
		keys[c.Key] = true
	}
	if len(keys) != 90 {
		t.Errorf("%d calls journalled, want 90", len(keys))
	}
}

// TestEvalErrors: what goes wrong before any call says what to fix.
func TestEvalErrors(t *testing.T) {
	dir := filepath.Join(testmodels.Models(t), "trained")
	base, _, _ := startServe(t, "-m", filepath.Join(dir, "flash-Q8_0.gguf"), "--quiet")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + l.Addr().String() + "/v1"
	l.Close()
	tasks := filepath.Join(t.TempDir(), "bad.jsonl")
	os.WriteFile(tasks, []byte(`{"question":"q"}`+"\n"), 0o644)
	evalEnv(t)
	for _, tc := range []struct {
		name string
		args []string
		code int
		want []string
	}{
		{"unreachable", []string{"effort", "--base-url", closed}, 1, []string{"cannot reach", closed, "stepflash doctor"}},
		{"wrong model", []string{"effort", "--base-url", base + "/v1", "--model", "flsh"}, 1, []string{`model "flsh" is not served`, "flash-Q8_0", "step-3.7-flash"}},
		{"unknown suite", []string{"speed", "--base-url", base + "/v1"}, 2, []string{`unknown suite "speed"`}},
		{"no suite", []string{"--base-url", base + "/v1"}, 2, []string{"want one suite"}},
		{"head2head with one", []string{"head2head", "--base-url", base + "/v1"}, 2, []string{"two endpoints"}},
		{"two for effort", []string{"effort", "--model", "a", "--model", "b"}, 2, []string{"one --base-url and one --model"}},
		{"bad tasks", []string{"effort", "--tasks", tasks}, 2, []string{"bad.jsonl:1", `no "answer"`}},
		{"zero passes", []string{"effort", "--passes", "0"}, 2, []string{"--passes"}},
		{"unknown kind", []string{"vision", "--kinds", "quadrant,pie"}, 2, []string{`--kinds: unknown kind "pie"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			stdout, stderr, code := runMain(t, append([]string{"eval", "--out", t.TempDir()}, tc.args...)...)
			if code != tc.code {
				t.Errorf("exit %d, want %d\n%s\n%s", code, tc.code, stdout, stderr)
			}
			for _, w := range tc.want {
				if !strings.Contains(stderr, w) {
					t.Errorf("%q not in %q", w, stderr)
				}
			}
		})
	}
	// --help names every suite and flag, exit 0.
	_, stderr, code := runMain(t, "eval", "--help")
	if code != 0 {
		t.Errorf("--help: exit %d", code)
	}
	for _, w := range []string{"effort", "head2head", "advisor", "vision", "--base-url", "--passes", "--out", "--tasks", "--concurrency", "--limit",
		"-temperature", "-seed", "--api-key", "--model", "results.json", "report.html", "STEP_BASE_URL"} {
		if !strings.Contains(stderr, w) {
			t.Errorf("--help lacks %q", w)
		}
	}
}

// agentTemplate renders an agent conversation for the tiny trained
// addition models, which only know one Qwen3 user turn "What is A + B?":
// the first user message as that turn, everything else (the system
// message, the submit calls and the tool results) left out, since the
// models have never seen it. The advisor signal reads the messages, not
// the rendering, so it still sees the failing tool results.
const agentTemplate = `{%- set ns = namespace(q="") %}{%- for m in messages %}{%- if m.role == "user" and ns.q == "" %}{%- set ns.q = m.content %}{%- endif %}{%- endfor %}<|im_start|>user
{{ ns.q }}<|im_end|>
<|im_start|>assistant
{% if enable_thinking is defined and enable_thinking is false %}<think>

</think>

{% endif %}`

// TestEvalAdvisor: the advisor suite's 10-step loop, 5 passes, against a
// served flash whose advisor is a second server with the advisor model
// (both with agentTemplate, at the advisor's 10x prices): flash alone
// (advisor off) fails the steps it gets wrong; auto escalates after two
// failed submits and solves every step for a fraction of what the advisor
// model alone costs. Every call is one request to the flash server, and
// every escalation one to the advisor's.
func TestEvalAdvisor(t *testing.T) {
	dir := filepath.Join(testmodels.Models(t), "trained")
	tmpl := filepath.Join(t.TempDir(), "agent.jinja")
	if err := os.WriteFile(tmpl, []byte(agentTemplate), 0o644); err != nil {
		t.Fatal(err)
	}
	prices := map[string]any{"input_miss": 2.0, "input_hit": 0.4, "output": 11.5}
	adv, _, _ := startServe(t, "-m", filepath.Join(dir, "advisor-Q8_0.gguf"), "--alias", "advisor", "--chat-template-file", tmpl, "--quiet", "--parallel", "4")
	cfg := writeConfig(t, map[string]any{"models": []any{
		map[string]any{"model": filepath.Join(dir, "flash-Q8_0.gguf"), "name": "flash", "chat_template_file": tmpl,
			"advisor": map[string]any{"upstreams": []any{map[string]any{"base_url": adv + "/v1", "model": "advisor"}}, "name": "advisor", "prices": prices}},
		map[string]any{"model": filepath.Join(dir, "advisor-Q8_0.gguf"), "name": "advisor", "chat_template_file": tmpl, "prices": prices},
	}})
	base, _, _ := startServe(t, "--config", cfg, "--quiet", "--parallel", "4")
	out := t.TempDir()
	b0, a0 := readMetrics(t, base), readMetrics(t, adv)
	res, stdout := runEvalCmd(t, out, "advisor", "--base-url", base+"/v1", "--model", "flash", "--baseline-model", "advisor", "--steps", "10",
		"--passes", "5", "--max-tokens", "400", "--concurrency", "3")
	b1, a1 := readMetrics(t, base), readMetrics(t, adv)
	if got := b1.chat - b0.chat; got != len(res.Calls) || res.Made != len(res.Calls) {
		t.Errorf("the server answered %d requests, results.json has %d calls (%d made)", got, len(res.Calls), res.Made)
	}
	auto, off, alone := armByName(t, res, eval.ArmAuto), armByName(t, res, eval.ArmOff), armByName(t, res, eval.ArmBaseline)
	if got := a1.chat - a0.chat; got != auto.Escalations {
		t.Errorf("the advisor server answered %d requests, usage.advisor reports %d escalations", got, auto.Escalations)
	}
	if off.Mean >= 1 || auto.Mean != 1 || alone.Mean != 1 || off.Escalations != 0 || alone.Escalations != 0 {
		t.Errorf("scores auto %.2f off %.2f alone %.2f; escalations %d %d %d", auto.Mean, off.Mean, alone.Mean, auto.Escalations, off.Escalations, alone.Escalations)
	}
	if !(off.CostTotal < auto.CostTotal && auto.CostTotal < alone.CostTotal) {
		t.Errorf("costs off %g auto %g alone %g: want off < auto < alone", off.CostTotal, auto.CostTotal, alone.CostTotal)
	}
	for _, c := range res.Calls {
		want := c.Arm == eval.ArmAuto && c.Attempt == 3
		if esc := c.Advisor != nil && c.Advisor.Escalated; esc != want || (esc && c.Advisor.Reason != "repeated_errors") {
			t.Errorf("call %s: advisor %+v", c.Key, c.Advisor)
		}
		if c.Step < 1 || c.Step > 10 || c.Attempt < 1 || c.Attempt > 3 {
			t.Errorf("call %s: step %d attempt %d", c.Key, c.Step, c.Attempt)
		}
	}
	if n := len(res.Summary.Steps); n != 30 {
		t.Errorf("%d step costs, want 30", n)
	}
	checkInBrowser(t, out, map[string]int{"score-latency": 3, "score-cost": 3, "pass-scores": 15, "cost-per-step": 30})
	if !strings.Contains(stdout, "cost per step") {
		t.Errorf("summary:\n%s", stdout)
	}
}

// chromiumPath is a Chromium or Chrome binary on this machine, "" when
// there is none.
func chromiumPath() string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "headless-shell"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// browserPoints opens dir/report.html in headless Chromium (browserReport)
// and fails the test on every error it logged.
func browserPoints(t *testing.T, dir string) map[string]int {
	t.Helper()
	counts, problems := browserReport(t, dir)
	for _, p := range problems {
		t.Errorf("report.html in chromium: %s", p)
	}
	return counts
}

// browserReport opens dir/report.html (file://) in headless Chromium,
// waits for the load event and counts, per plot (svg.plot by id), the data
// points Chromium rendered: circle.point elements with a box of non-zero
// size inside their plot's box. problems are the console messages of level
// error or assert, uncaught exceptions and log entries of level error. It
// skips the test only when no Chromium binary exists.
func browserReport(t *testing.T, dir string) (counts map[string]int, problems []string) {
	t.Helper()
	bin := chromiumPath()
	if bin == "" {
		t.Skip("no chromium binary on PATH (chromium, chromium-browser, google-chrome, headless-shell): report.html not checked in a browser; `apt-get install chromium` (.ci/run does)")
	}
	abs, err := filepath.Abs(filepath.Join(dir, "report.html"))
	if err != nil {
		t.Fatal(err)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(bin), chromedp.Headless,
		chromedp.NoSandbox, // as root (CI containers) Chromium refuses to start with its sandbox
		chromedp.UserDataDir(t.TempDir()), chromedp.Flag("disable-gpu", true))
	bctx, cancelB := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancelB()
	actx, cancelA := chromedp.NewExecAllocator(bctx, opts...)
	defer cancelA()
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	if err := chromedp.Do(ctx); err != nil { // starts the browser and opens the tab
		t.Fatalf("starting chromium (%s): %v", bin, err)
	}
	var mu sync.Mutex
	listen := func(ev any) {
		mu.Lock()
		defer mu.Unlock()
		switch e := ev.(type) {
		case *cdpruntime.EventConsoleAPICalled:
			if e.Type == cdpruntime.ConsoleAPICalledTypeError || e.Type == cdpruntime.ConsoleAPICalledTypeAssert {
				var args []string
				for _, a := range e.Args {
					args = append(args, string(a.Value)+a.Description)
				}
				problems = append(problems, "console."+string(e.Type)+": "+strings.Join(args, " "))
			}
		case *cdpruntime.EventExceptionThrown:
			problems = append(problems, fmt.Sprintf("uncaught exception: %s (%s:%d)", e.ExceptionDetails.Text, e.ExceptionDetails.URL, e.ExceptionDetails.LineNumber+1))
		case *cdplog.EventEntryAdded:
			if e.Entry.Level == cdplog.EntryLevelError {
				problems = append(problems, "log ("+string(e.Entry.Source)+"): "+e.Entry.Text+" "+e.Entry.URL)
			}
		}
	}
	if err := chromedp.Listen(ctx, listen); err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Call(ctx, cdplog.Enable, cdp.Empty{}); err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(ctx, chromedp.Navigate("file://"+abs)); err != nil { // returns after the load event
		t.Fatalf("chromium (%s) opening %s: %v", bin, abs, err)
	}
	ready, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.readyState`))
	if err != nil {
		t.Fatal(err)
	}
	counts, err = chromedp.Run(ctx, chromedp.Evaluate[map[string]int](`(() => {
		const out = {};
		for (const svg of document.querySelectorAll('svg.plot')) {
			const box = svg.getBoundingClientRect();
			out[svg.id] = [...svg.querySelectorAll('circle.point')].filter(c => {
				const r = c.getBoundingClientRect();
				return r.width > 0 && r.height > 0 && r.left >= box.left - 0.5 && r.right <= box.right + 0.5 &&
					r.top >= box.top - 0.5 && r.bottom <= box.bottom + 0.5 && getComputedStyle(c).visibility !== 'hidden';
			}).length;
		}
		return out;
	})()`))
	if err != nil {
		t.Fatalf("counting the rendered points: %v", err)
	}
	if ready != "complete" {
		t.Errorf("report.html: document.readyState %q after load", ready)
	}
	mu.Lock()
	defer mu.Unlock()
	return counts, slices.Clone(problems)
}

// TestBrowserReport: the browser check itself sees what it must: points
// drawn outside their plot or not drawn at all are not counted, and a
// console error, an uncaught exception and a missing resource are reported.
func TestBrowserReport(t *testing.T) {
	dir := t.TempDir()
	page := `<!DOCTYPE html><html><head><title>t</title></head><body>
<svg xmlns="http://www.w3.org/2000/svg" class="plot" id="a" width="100" height="100">
<circle class="point" cx="50" cy="50" r="5"/><circle class="point" cx="10" cy="90" r="5"/>
<circle class="point" cx="500" cy="50" r="5"/><circle class="point" cx="50" cy="50" r="0"/>
<circle class="point" cx="50" cy="50" r="5" style="display:none"/></svg>
<svg xmlns="http://www.w3.org/2000/svg" class="plot" id="b" width="100" height="100"></svg>
<img src="missing.png" alt=""/>
<script>console.error("boom"); null.x;</script></body></html>`
	if err := os.WriteFile(filepath.Join(dir, "report.html"), []byte(page), 0o644); err != nil {
		t.Fatal(err)
	}
	counts, problems := browserReport(t, dir)
	if !maps.Equal(counts, map[string]int{"a": 2, "b": 0}) {
		t.Errorf("rendered points %v, want a: 2 (one outside, one of radius 0, one hidden), b: 0", counts)
	}
	all := strings.Join(problems, "\n")
	for _, w := range []string{"console.error: \"boom\"", "uncaught exception", "missing.png"} {
		if !strings.Contains(all, w) {
			t.Errorf("problems lack %q:\n%s", w, all)
		}
	}
}

// checkInBrowser checks, in a subtest skipped only when there is no
// Chromium, that every plot of dir/report.html renders the points want
// gives it (the XML count of the file too).
func checkInBrowser(t *testing.T, dir string, want map[string]int) {
	t.Helper()
	if got := svgPoints(t, dir); !maps.Equal(got, want) {
		t.Errorf("report.html's plots hold %v points, want %v", got, want)
	}
	t.Run("chromium", func(t *testing.T) {
		if got := browserPoints(t, dir); !maps.Equal(got, want) {
			t.Errorf("chromium rendered %v points, want %v", got, want)
		}
	})
}

// TestEvalVision: the vision suite, 5 passes, against a real serve of the
// trained VLM pair (../shared/models/trained/vision) with its raw prompt
// format as a chat template (vlmTemplate): natively it names every
// quadrant colour right, as it does on its own test set (200/200 there);
// tool-chained, its own caption (the colour word it says for any
// question) handed back as text loses the layout, and the arm scores what
// it scores, below native. Every call is one request the server answered,
// with the tokens it counted and 80 image tokens per image; report.html's
// plots hold a point per arm (and pass, and kind), in the XML and as
// Chromium renders them.
func TestEvalVision(t *testing.T) {
	dir := filepath.Join(testmodels.Models(t), "trained", "vision")
	tmpl := filepath.Join(t.TempDir(), "vlm.jinja")
	if err := os.WriteFile(tmpl, []byte(vlmTemplate), 0o644); err != nil {
		t.Fatal(err)
	}
	base, _, _ := startServe(t, "-m", filepath.Join(dir, "vlm-text-F32.gguf"), "--mmproj", filepath.Join(dir, "vlm-mmproj-F32.gguf"),
		"--chat-template-file", tmpl, "--quiet", "--parallel", "4")
	const model, limit = "vlm-text-F32", 4
	out := t.TempDir()
	before := readMetrics(t, base)
	res, stdout := runEvalCmd(t, out, "vision", "--base-url", base+"/v1", "--model", model, "--passes", "5", "--limit", strconv.Itoa(limit),
		"--max-tokens", "40", "--concurrency", "4")
	after := readMetrics(t, base)
	tasks := limit * len(eval.VisionKinds)
	want := 5 * tasks * 3 // native: one call a task; chained: a caption and an answer
	if got := after.chat - before.chat; got != want || len(res.Calls) != want || res.Made != want {
		t.Errorf("server answered %d chat requests, results.json has %d calls (%d made), want %d", got, len(res.Calls), res.Made, want)
	}
	checkAgainstServer(t, res, model, before, after, want)
	native, chained := armByName(t, res, eval.ArmNative), armByName(t, res, eval.ArmChained)
	if native.Items != tasks || chained.Items != tasks || native.Min != native.Max || chained.Min != chained.Max {
		t.Errorf("native %+v, chained %+v: want %d tasks a pass, every pass alike (greedy)", native, chained, tasks)
	}
	quad := func(a eval.ArmSummary) eval.KindScore {
		for _, k := range a.Kinds {
			if k.Kind == eval.KindQuadrant {
				return k
			}
		}
		t.Fatalf("%s: no quadrant score in %+v", a.Label, a.Kinds)
		return eval.KindScore{}
	}
	if q := quad(native); q.Right != 5*limit || q.Asked != 5*limit {
		t.Errorf("native quadrant colours: %d of %d right; the trained VLM names all of its test set's", q.Right, q.Asked)
	}
	if q := quad(chained); q.Score >= quad(native).Score || chained.Mean >= native.Mean {
		t.Errorf("chained quadrant %.2f, native %.2f; chained %.2f, native %.2f overall: a caption of one colour word cannot carry four quadrants", q.Score, quad(native).Score, chained.Mean, native.Mean)
	}
	if native.Image != 80 || chained.Image != 80 {
		t.Errorf("image tokens per task: native %g, chained %g; want 80 (one image each, 4 slices and the overview)", native.Image, chained.Image)
	}
	captions := map[string]string{}
	for _, c := range res.Calls {
		if c.Arm == eval.ArmChained && c.Step == 1 {
			captions[c.Task+"/"+strconv.Itoa(c.Pass)] = c.Answer
		}
	}
	for _, c := range res.Calls {
		images := c.Arm == eval.ArmNative || c.Step == 1
		if img := c.Tokens.Image; (img == 80) != images || (c.Request.Images == 1) != images {
			t.Errorf("call %s: %d image tokens, %d images sent", c.Key, img, c.Request.Images)
		}
		switch {
		case c.Arm == eval.ArmChained && c.Step == 2:
			if caption := captions[c.Task+"/"+strconv.Itoa(c.Pass)]; caption == "" || !strings.Contains(c.Request.Last, "description of an image:\n"+caption+"\n") {
				t.Errorf("call %s: asked %q, the caption was %q", c.Key, c.Request.Last, caption)
			}
		case c.Arm == eval.ArmChained && c.Step == 1:
			if c.Correct || c.Request.Last != eval.DefaultCaptionPrompt {
				t.Errorf("caption call %s: correct %v, asked %q", c.Key, c.Correct, c.Request.Last)
			}
		}
	}
	for _, w := range []string{"native image (vlm-text-F32)", "caption (vlm-text-F32) → text (vlm-text-F32)", "quadrant 100.0% (20/20)", "image"} {
		if !strings.Contains(stdout, w) {
			t.Errorf("summary lacks %q:\n%s", w, stdout)
		}
	}
	checkInBrowser(t, out, map[string]int{"score-latency": 2, "score-cost": 2, "pass-scores": 10, "score-kinds": 6})
}

// TestEvalVisionTextOnly: an endpoint whose model takes no images says so
// before any call; with a captioner that does (the VLM beside a text-only
// model on one server), only the tool-chained arm runs, and the notes say
// why; a text-only captioner leaves only the native arm.
func TestEvalVisionTextOnly(t *testing.T) {
	models := filepath.Join(testmodels.Models(t), "trained")
	dir := filepath.Join(models, "vision")
	tmpl := filepath.Join(t.TempDir(), "vlm.jinja")
	if err := os.WriteFile(tmpl, []byte(vlmTemplate), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := writeConfig(t, map[string]any{"models": []any{
		map[string]any{"model": filepath.Join(dir, "vlm-text-F32.gguf"), "mmproj": filepath.Join(dir, "vlm-mmproj-F32.gguf"), "chat_template_file": tmpl, "name": "vlm"},
		map[string]any{"model": filepath.Join(models, "flash-Q8_0.gguf"), "name": "flash"},
	}})
	base, _, _ := startServe(t, "--config", cfg, "--quiet", "--parallel", "2")
	evalEnv(t)
	stdout, stderr, code := runMain(t, "eval", "vision", "--out", t.TempDir(), "--base-url", base+"/v1", "--model", "flash")
	if code != 1 || !strings.Contains(stderr, `model "flash"`) || !strings.Contains(stderr, "takes no image input") || !strings.Contains(stderr, "models there that take images: vlm") {
		t.Errorf("text-only model: exit %d\n%s\n%s", code, stdout, stderr)
	}
	before := readMetrics(t, base)
	for _, tc := range []struct {
		model, captioner, arm, note string
		calls                       int
	}{
		{"flash", "vlm", eval.ArmChained, "flash takes no image input (its /models input_modalities: text only): the native arm is not run", 10},
		{"vlm", "flash", eval.ArmNative, "the caption model flash takes no image input", 5},
	} {
		res, stdout := runEvalCmd(t, t.TempDir(), "vision", "--base-url", base+"/v1", "--model", tc.model, "--caption-model", tc.captioner,
			"--passes", "5", "--limit", "1", "--kinds", "quadrant", "--max-tokens", "40")
		if len(res.Summary.Arms) != 1 || res.Summary.Arms[0].Arm != tc.arm || len(res.Calls) != tc.calls || !strings.Contains(stdout, "note: "+tc.note) {
			t.Errorf("--model %s --caption-model %s: arms %+v, %d calls, want only %s (%d calls) and the note %q\n%s", tc.model, tc.captioner, res.Summary.Arms, len(res.Calls), tc.arm, tc.calls, tc.note, stdout)
		}
		for _, c := range res.Calls {
			if c.Error != "" || (c.Request.Images == 1) != (c.Model == "vlm") {
				t.Errorf("call %s to %s: %d images, error %q", c.Key, c.Model, c.Request.Images, c.Error)
			}
		}
	}
	if got := readMetrics(t, base).chat - before.chat; got != 15 {
		t.Errorf("the server answered %d requests, want 15", got)
	}
}
