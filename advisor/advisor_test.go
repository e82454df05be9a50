package advisor

import (
	"math"
	"testing"
	"time"

	"github.com/stepflash/stepflash/api"
)

func TestFailing(t *testing.T) {
	for _, tc := range []struct {
		text string
		want bool
	}{
		{"Traceback (most recent call last):\n  File \"x.py\", line 1", true},
		{"exit code 1", true},
		{"process exited with status 2", true},
		{`{"exit_code": 127, "stdout": ""}`, true},
		{`{"returncode": 1}`, true},
		{`{"status_code": 500, "body": ""}`, true},
		{`{"status_code": 404}`, true},
		{`{"status_code": 200, "body": "ok"}`, false},
		{`{"statusCode": 201}`, false},
		{"error: cannot find module 'foo'", true},
		{"Error: ENOENT: no such file", true},
		{"panic: runtime error: index out of range", true},
		{"ValueError: invalid literal", true},
		{"bash: foo: command not found", true},
		{"FAIL\tgithub.com/x/y\t0.01s", true},
		{`{"error": "timeout"}`, true},
		{`{"is_error": true}`, true},
		{"exit code 0", false},
		{`{"exit_code": 0}`, false},
		{"ok: 12 tests passed, 0 errors", false},
		{"no error found", false},
		{"the error handling section describes retries", false},
		{`{"error": null}`, false},
		{"PASS\nok  \tgithub.com/x/y\t0.01s", false},
		{"", false},
	} {
		if got := Failing(tc.text); got != tc.want {
			t.Errorf("Failing(%q) = %v, want %v", tc.text, got, tc.want)
		}
	}
}

func TestTrailingFailures(t *testing.T) {
	msg := func(role, text string) api.Message {
		return api.Message{Role: role, Content: api.MessageContent{Text: text}}
	}
	fail, ok := msg("tool", "exit code 1"), msg("tool", "done")
	call := msg("assistant", "")
	parts := api.Message{Role: "tool", Content: api.MessageContent{IsParts: true, Parts: []api.ContentPart{{Type: "text", Text: "Traceback (most recent call last):"}}}}
	for _, tc := range []struct {
		name string
		msgs []api.Message
		want int
	}{
		{"none", []api.Message{msg("user", "hi")}, 0},
		{"one", []api.Message{msg("user", "go"), call, ok, call, fail}, 1},
		{"two in a row", []api.Message{msg("user", "go"), call, fail, call, fail}, 2},
		{"a success ends the run", []api.Message{msg("user", "go"), call, fail, call, fail, call, ok}, 0},
		{"parallel calls", []api.Message{msg("user", "go"), call, fail, fail, fail}, 3},
		{"a user message resets", []api.Message{msg("user", "go"), call, fail, msg("user", "try again"), call, fail}, 1},
		{"list content", []api.Message{msg("user", "go"), call, parts, call, fail}, 2},
		{"assistant text does not count", []api.Message{msg("user", "go"), call, fail, msg("assistant", "error: I failed"), call, fail}, 2},
	} {
		if got := TrailingFailures(tc.msgs); got != tc.want {
			t.Errorf("%s: %d, want %d", tc.name, got, tc.want)
		}
	}
}

func TestQuantile(t *testing.T) {
	xs := []float64{-0.1, -3, -0.5, -2, -0.01}
	for _, tc := range []struct{ q, want float64 }{{0, -3}, {0.1, -3}, {0.2, -3}, {0.4, -2}, {0.5, -0.5}, {1, -0.01}} {
		if got := Quantile(xs, tc.q); got != tc.want {
			t.Errorf("Quantile(%g) = %g, want %g", tc.q, got, tc.want)
		}
	}
	if !math.IsNaN(Quantile(nil, 0.1)) {
		t.Error("Quantile of nothing is not NaN")
	}
	if xs[0] != -0.1 {
		t.Error("Quantile sorted its input")
	}
}

func TestConfigCheck(t *testing.T) {
	f := func(v float64) *float64 { return &v }
	for _, tc := range []struct {
		name string
		c    Config
		ok   bool
	}{
		{"defaults", Config{}, true},
		{"advise", Config{Mode: Advise, Default: "off"}, true},
		{"bad mode", Config{Mode: "relay"}, false},
		{"bad default", Config{Default: "sometimes"}, false},
		{"repeated errors off", Config{RepeatedErrors: -1}, true},
		{"repeated errors below -1", Config{RepeatedErrors: -2}, false},
		{"threshold", Config{LowConfidence: f(-0.5), DraftTokens: 32, Quantile: 0.1}, true},
		{"positive threshold", Config{LowConfidence: f(0.5)}, false},
		{"NaN threshold", Config{LowConfidence: f(math.NaN())}, false},
		{"quantile above 1", Config{Quantile: 1.5}, false},
		{"draft tokens below -1", Config{DraftTokens: -2}, false},
		{"negative cap", Config{KeyCap: -1}, false},
	} {
		c := tc.c
		err := c.Check()
		if (err == nil) != tc.ok {
			t.Errorf("%s: %v", tc.name, err)
		}
		if err == nil && (c.Mode == "" || c.Default == "" || c.Timeout <= 0 || c.PlanTokens <= 0 || c.DraftTokens == 0 || c.RepeatedErrors == 0) {
			t.Errorf("%s: defaults not filled in: %+v", tc.name, c)
		}
	}
}

func TestCapper(t *testing.T) {
	c := &capper{uses: map[string][]time.Time{}}
	t0 := time.Unix(1000, 0)
	for i, tc := range []struct {
		key  string
		at   time.Duration
		want bool
	}{
		{"a", 0, true}, {"a", time.Second, true}, {"a", 2 * time.Second, false}, // 2 per minute
		{"b", 2 * time.Second, true},  // another key
		{"a", 61 * time.Second, true}, // the first left the window
		{"a", 62 * time.Second, true}, // so did the second
		{"a", 63 * time.Second, false},
	} {
		if got := c.take(tc.key, 2, time.Minute, t0.Add(tc.at)); got != tc.want {
			t.Errorf("%d: take(%s, +%s) = %v, want %v", i, tc.key, tc.at, got, tc.want)
		}
	}
	if !c.take("a", 0, time.Minute, t0) {
		t.Error("no cap refused")
	}
	// An escalation that did not land gives its use back.
	t1 := t0.Add(time.Hour)
	if !c.take("c", 1, time.Minute, t1) || c.take("c", 1, time.Minute, t1.Add(time.Second)) {
		t.Fatal("a cap of 1")
	}
	c.give("c", 1, t1)
	if !c.take("c", 1, time.Minute, t1.Add(2*time.Second)) {
		t.Error("the use given back was not free again")
	}
}
