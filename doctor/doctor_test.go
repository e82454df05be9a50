package doctor

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stepflash/stepflash/auth"
)

var served = []string{"stepfun/step-3.7-flash", "step-3.7-flash", "qwen3-0.6b"}

// runTo runs the checks in order up to and including name on a probe of
// base, and returns name's result (each check needs what the earlier ones
// found, as in Run).
func runTo(t *testing.T, cfg Config, name string) Result {
	t.Helper()
	cfg.Timeout = 10 * time.Second
	p := newProbe(cfg)
	for _, c := range checks {
		r := c.run(context.Background(), p)
		if c.name == name {
			return r
		}
	}
	t.Fatalf("no check %q", name)
	return Result{}
}

type checkCase struct {
	name   string
	f      fake
	cfg    Config // BaseURL is the fake's
	check  string
	status Status
	want   []string // substrings of Message (or Fix)
}

func runCases(t *testing.T, cases []checkCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := tc.f
			if f.models == nil {
				f.models = served
			}
			cfg := tc.cfg
			if cfg.BaseURL == "" {
				cfg.BaseURL = f.start(t)
			}
			r := runTo(t, cfg, tc.check)
			if r.Status != tc.status {
				t.Errorf("status %s, want %s: %s (fix: %s)", r.Status, tc.status, r.Message, r.Fix)
			}
			for _, w := range tc.want {
				if !strings.Contains(r.Message+" fix: "+r.Fix, w) {
					t.Errorf("%q not in %q (fix %q)", w, r.Message, r.Fix)
				}
			}
		})
	}
}

// emptyUnauthorized is StepFun's answer to a key of the other region: a
// 401 with no body at all (DESIGN.md section 7b; docs/api.md, Errors).
func emptyUnauthorized(w http.ResponseWriter) { w.WriteHeader(http.StatusUnauthorized) }

// regionMismatch is stepflash's own answer to a key of another region
// (auth/middleware.go, docs/keys.md): a 401 JSON error object naming the
// key's region and its base URL.
func regionMismatch(w http.ResponseWriter) {
	w.Header().Set("WWW-Authenticate", `Bearer realm="stepflash"`)
	apiError(w, 401, "authentication_error", "region_mismatch", "",
		`This API key belongs to region "cn", but this is region "global"'s endpoint, and keys work only in the region that issued them. Use it at http://127.0.0.1:8001/v1 (region "cn"'s base URL), or use a key issued for region "global".`)
}

func mustKey(t *testing.T, region string) string {
	t.Helper()
	k, err := auth.Generate(region)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestDoctorReachability(t *testing.T) {
	runCases(t, []checkCase{
		{name: "lists the served names", check: "reachability", status: Pass,
			want: []string{"3 served", "stepfun/step-3.7-flash, step-3.7-flash, qwen3-0.6b"}},
		{name: "nothing listening", cfg: Config{BaseURL: "http://127.0.0.1:1/v1"}, check: "reachability", status: Fail,
			want: []string{"cannot connect", "stepflash serve"}},
		{name: "not a URL", cfg: Config{BaseURL: "localhost:8000"}, check: "reachability", status: Fail,
			want: []string{"not an http(s) URL"}},
		{name: "refused key still reachable", f: fake{unauthorized: emptyUnauthorized}, check: "reachability", status: Pass,
			want: []string{"401", "see region"}},
	})
}

// TestDoctorMissingV1: a base URL without /v1 is found and corrected, and
// the later checks run on the corrected one.
func TestDoctorMissingV1(t *testing.T) {
	f := &fake{models: served}
	base := strings.TrimSuffix(f.start(t), "/v1")
	rep := Run(context.Background(), Config{BaseURL: base, Timeout: 10 * time.Second})
	if r := rep.Results[0]; r.Status != Fail || !strings.Contains(r.Fix, base+"/v1") {
		t.Fatalf("reachability: %+v", r)
	}
	if rep.Failed != 1 {
		t.Fatalf("want only reachability to fail: %+v", rep.Results)
	}
}

func TestDoctorRegion(t *testing.T) {
	cnKey := mustKey(t, "cn")
	globalKey := mustKey(t, "global")
	runCases(t, []checkCase{
		{name: "wrong-region empty 401 with a cn key", f: fake{unauthorized: emptyUnauthorized}, cfg: Config{APIKey: cnKey, KeySource: "$STEP_API_KEY"},
			check: "region", status: Fail,
			want: []string{"401 with an empty body: the region trap", "key's region cn does not match", "--base-url https://api.stepfun.com/v1"}},
		{name: "wrong-region empty 401 with a global key", f: fake{unauthorized: emptyUnauthorized}, cfg: Config{APIKey: globalKey},
			check: "region", status: Fail, want: []string{"region trap", "https://api.stepfun.ai/v1"}},
		{name: "empty 401 with an untagged key", f: fake{unauthorized: emptyUnauthorized}, cfg: Config{APIKey: "sk-0123456789abcdef", KeySource: "$STEP_API_KEY"},
			check: "region", status: Fail, want: []string{"region trap", "https://api.stepfun.ai/v1", "https://api.stepfun.com/v1", "$STEP_API_KEY"}},
		{name: "empty 401 and no key", f: fake{unauthorized: emptyUnauthorized},
			check: "region", status: Fail, want: []string{"no key was sent", "STEP_API_KEY"}},
		{name: "stepflash region_mismatch reported with its message", f: fake{unauthorized: regionMismatch}, cfg: Config{APIKey: cnKey},
			check: "region", status: Fail, want: []string{"401 region_mismatch", `belongs to region "cn"`, "http://127.0.0.1:8001/v1"}},
		{name: "key of the other StepFun domain, before any request", cfg: Config{BaseURL: "https://api.stepfun.ai/v1", APIKey: cnKey, Timeout: time.Millisecond},
			check: "region", status: Fail, want: []string{"region cn does not match", "api.stepfun.ai is StepFun's global", "--base-url https://api.stepfun.com/v1"}},
		{name: "accepted key", cfg: Config{APIKey: globalKey}, check: "region", status: Pass,
			want: []string{"key of region global accepted", "stepflash region global"}},
		{name: "no key needed", check: "region", status: Pass, want: []string{"no key sent, none needed"}},
	})
}

// TestDoctorRegionSkipsTheRest: once the key is refused, the checks that need
// a chat request are skipped with the reason, not failed each on its own.
func TestDoctorRegionSkipsTheRest(t *testing.T) {
	f := &fake{unauthorized: emptyUnauthorized}
	rep := Run(context.Background(), Config{BaseURL: f.start(t), APIKey: mustKey(t, "cn"), Timeout: 10 * time.Second})
	if rep.OK || rep.Failed != 1 {
		t.Fatalf("want exactly the region check to fail: %+v", rep.Results)
	}
	for _, r := range rep.Results[2:] {
		if r.Status != Skip || !strings.Contains(r.Message, "refuses the key") {
			t.Errorf("%s: %s %s", r.Check, r.Status, r.Message)
		}
	}
}

func TestParseKey(t *testing.T) {
	cn := mustKey(t, "cn")
	// The last checksum character changed to another one.
	swap := "x"
	if cn[len(cn)-1] == 'x' {
		swap = "y"
	}
	for _, tc := range []struct {
		key  string
		want keyInfo
	}{
		{cn, keyInfo{Region: "cn", Checked: true}},
		{cn[:len(cn)-1] + swap, keyInfo{Region: "cn", Mistyped: true}},
		{"sk-cn-short", keyInfo{Region: "cn"}},
		{"sk-global-abc", keyInfo{Region: "global"}},
		{"sk-proj-abcdef", keyInfo{}}, // an OpenAI project key: no region
		{"sk-or-v1-abcdef", keyInfo{}},
		{"", keyInfo{}},
	} {
		if got := parseKey(tc.key); got != tc.want {
			t.Errorf("parseKey(%q) = %+v, want %+v", tc.key, got, tc.want)
		}
	}
}

func TestClosest(t *testing.T) {
	names := []string{"stepfun/step-3.7-flash", "qwen3-0.6b", "flash-Q8_0", "Step-3.7-Flash-Advisor"}
	for _, tc := range []struct{ in, want string }{
		{"STEPFUN/STEP-3.7-FLASH", "stepfun/step-3.7-flash"}, // case
		{"step-3.7-flash", "stepfun/step-3.7-flash"},         // the vendor prefix missing
		{"openrouter/qwen3-0.6b", "qwen3-0.6b"},              // a vendor prefix added
		{"stepfun/step-3.7-flsh", "stepfun/step-3.7-flash"},  // a typo
		{"qwen3", "qwen3-0.6b"},                              // a prefix
		{"flash-q8", "flash-Q8_0"},
		{"llama-3-70b-instruct", ""}, // nothing close
	} {
		if got := closest(tc.in, names); got != tc.want {
			t.Errorf("closest(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestDoctorModel(t *testing.T) {
	runCases(t, []checkCase{
		{name: "exact", cfg: Config{Model: "step-3.7-flash"}, check: "model", status: Pass, want: []string{`"step-3.7-flash" is served`}},
		{name: "default", check: "model", status: Pass, want: []string{`no --model given: checking "step-3.7-flash"`}},
		{name: "misspelled", cfg: Config{Model: "step-3.7-flsh"}, check: "model", status: Fail,
			want: []string{`did you mean "step-3.7-flash"`, "--model step-3.7-flash"}},
		{name: "vendor prefix missing", f: fake{models: []string{"stepfun/step-3.7-flash"}}, cfg: Config{Model: "step-3.7-flash"},
			check: "model", status: Fail, want: []string{`did you mean "stepfun/step-3.7-flash"`}},
		{name: "nothing close", cfg: Config{Model: "gpt-4o"}, check: "model", status: Fail,
			want: []string{"nor anything close", "qwen3-0.6b"}},
	})
}

func TestDoctorEffort(t *testing.T) {
	runCases(t, []checkCase{
		{name: "honoured", check: "effort", status: Pass,
			want: []string{"echo low→high", "X-Reasoning-Effort low→high", "reasoning tokens 0→12"}},
		{name: "honoured, no stepflash echo: tokens", f: fake{noStepflash: true}, check: "effort", status: Pass,
			want: []string{"reasoning tokens 0→12"}},
		{name: "ignored by a plain server", f: fake{effort: "ignore", noStepflash: true}, check: "effort", status: Fail,
			want: []string{"accepted but ignored", "reasoning tokens 6"}},
		{name: "dropped before a stepflash", f: fake{effort: "ignore"}, check: "effort", status: Fail,
			want: []string{"accepted but ignored", "requested null", "pass reasoning_effort through"}},
		{name: "ignored, only slower by chance", f: fake{effort: "ignore_slow_high", noStepflash: true}, check: "effort", status: Warn,
			want: []string{"only in latency"}},
		{name: "rejected", f: fake{effort: "reject"}, check: "effort", status: Warn,
			want: []string{"rejects reasoning_effort", "unsupported_parameter"}},
		{name: "an upstream that applies it: its tokens count", f: fake{upstream: true}, check: "effort", status: Pass,
			want: []string{"reasoning tokens 0→12", "not counted"}},
		{name: "an upstream that ignores it: the gateway's echo is no evidence", f: fake{upstream: true, effort: "echo_only"}, check: "effort", status: Fail,
			want: []string{"accepted but ignored", "gateway passed the tier on"}},
	})
}

func TestDoctorStreaming(t *testing.T) {
	runCases(t, []checkCase{
		{name: "healthy", check: "streaming", status: Pass,
			want: []string{"usage chunk and [DONE] arrived", "prompt_tokens_details.cached_tokens and cached_tokens", "128 of 150 prompt tokens cached"}},
		{name: "include_usage ignored", f: fake{stream: "no_usage"}, check: "streaming", status: Fail,
			want: []string{"no usage chunk"}},
		{name: "no [DONE]", f: fake{stream: "no_done"}, check: "streaming", status: Fail,
			want: []string{"without data: [DONE]"}},
		{name: "error event", f: fake{stream: "error_event"}, check: "streaming", status: Fail,
			want: []string{"error event: upstream died"}},
		{name: "StepFun's placement only", f: fake{cached: "top"}, check: "streaming", status: Pass,
			want: []string{"cached tokens in cached_tokens only"}},
		{name: "no cached_tokens anywhere", f: fake{cached: "none"}, check: "streaming", status: Warn,
			want: []string{"cached_tokens in no placement"}},
	})
}

func TestDoctorReasoningFields(t *testing.T) {
	runCases(t, []checkCase{
		{name: "both", check: "reasoning_fields", status: Pass, want: []string{"12 reasoning tokens, text in both"}},
		{name: "reasoning_content only", f: fake{reasoning: "reasoning_content", noStepflash: true}, check: "reasoning_fields", status: Pass,
			want: []string{"reasoning_content only", "reads reasoning sees none"}},
		{name: "one field from a stepflash", f: fake{reasoning: "reasoning"}, check: "reasoning_fields", status: Warn,
			want: []string{"reasoning only", "stepflash sends both"}},
		{name: "inline think tags", f: fake{reasoning: "inline", noStepflash: true}, check: "reasoning_fields", status: Fail,
			want: []string{"inline in content", "--reasoning-parser"}},
		{name: "hidden", f: fake{reasoning: "hidden", noStepflash: true}, check: "reasoning_fields", status: Warn,
			want: []string{"no reasoning text"}},
		{name: "no thinking at all", f: fake{noThinking: true}, check: "reasoning_fields", status: Skip},
	})
}

func TestDoctorErrorBodies(t *testing.T) {
	runCases(t, []checkCase{
		{name: "JSON error object", check: "error_bodies", status: Pass, want: []string{"temperature 5 → 400 invalid_value: Invalid 'temperature'"}},
		{name: "empty body", f: fake{errorBody: "empty"}, check: "error_bodies", status: Fail, want: []string{"400 with an empty body"}},
		{name: "plain text", f: fake{errorBody: "text"}, check: "error_bodies", status: Fail, want: []string{"without a JSON error object: Bad Request"}},
	})
}

func TestDoctorStepflash(t *testing.T) {
	runCases(t, []checkCase{
		{name: "local", check: "stepflash", status: Pass,
			want: []string{"version not exposed", "backend local, region global", "model step-3.7-flash (context 4096)",
				"low→low thinking budget 0", "high→high thinking budget 8192", "not visible over HTTP"}},
		{name: "upstream", f: fake{upstream: true}, check: "stepflash", status: Pass,
			want: []string{"backend upstream:stepfun-global", "not verified"}},
		{name: "not a stepflash", f: fake{noStepflash: true}, check: "stepflash", status: Skip, want: []string{"not a stepflash"}},
	})
}

// TestDoctorReport: a healthy endpoint passes every check; the text has one
// line per check and the summary; the JSON has every check.
func TestDoctorReport(t *testing.T) {
	f := &fake{models: served}
	rep := Run(context.Background(), Config{BaseURL: f.start(t), Timeout: 10 * time.Second})
	if !rep.OK || rep.Passed != len(checks) {
		t.Fatalf("not all passed: %+v", rep.Results)
	}
	var buf bytes.Buffer
	rep.WriteText(&buf)
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != len(checks)+3 || !strings.HasPrefix(lines[1], "✓ reachability") || lines[len(lines)-1] != "8 passed, 0 failed, 0 warnings, 0 skipped" {
		t.Fatalf("text:\n%s", buf.String())
	}
	b, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	var back struct {
		OK     bool `json:"ok"`
		Checks []struct {
			Check, Status string
		} `json:"checks"`
	}
	if err := json.Unmarshal(b, &back); err != nil || !back.OK || len(back.Checks) != len(checks) || back.Checks[3].Check != "effort" {
		t.Fatalf("json: %s", b)
	}
}
