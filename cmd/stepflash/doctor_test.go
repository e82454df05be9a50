package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/stepflash/stepflash/auth"
	"github.com/stepflash/stepflash/internal/testmodels"
)

// doctorJSON is the part of `stepflash doctor --json` the tests read.
type doctorJSON struct {
	OK     bool `json:"ok"`
	Failed int  `json:"failed"`
	Checks []struct {
		Check   string `json:"check"`
		Status  string `json:"status"`
		Message string `json:"message"`
		Fix     string `json:"fix"`
	} `json:"checks"`
}

// runDoctor runs `stepflash doctor --json` with args and no key or base
// URL from the environment, and returns the parsed report and exit status.
func runDoctor(t *testing.T, args ...string) (doctorJSON, int, string) {
	t.Helper()
	for _, v := range []string{"STEP_BASE_URL", "STEP_API_KEY", "OPENAI_BASE_URL", "OPENAI_API_KEY"} {
		t.Setenv(v, "")
	}
	out, errOut, code := runMain(t, append([]string{"doctor", "--json", "--timeout", "2m"}, args...)...)
	var rep doctorJSON
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("doctor --json: %v\n%s\n%s", err, out, errOut)
	}
	return rep, code, out
}

// status returns the named check's result.
func (r doctorJSON) status(t *testing.T, check string) (status, text string) {
	t.Helper()
	for _, c := range r.Checks {
		if c.Check == check {
			return c.Status, c.Message + " fix: " + c.Fix
		}
	}
	t.Fatalf("no check %q in %+v", check, r)
	return "", ""
}

// flashModel is the trained flash model: it thinks (a real scratchpad) at
// medium and high and answers directly at low, so the effort, streaming and
// reasoning-field checks all see real behaviour.
func flashModel(t *testing.T) string { return testmodels.Path(t, "trained/flash-Q8_0.gguf") }

// TestDoctorHealthyServe: against a real `stepflash serve` on the trained
// flash model every check passes and the exit status is 0; the text output
// has one ✓ line per check and the summary.
func TestDoctorHealthyServe(t *testing.T) {
	base, _, _ := startServe(t, "-m", flashModel(t), "--quiet")
	rep, code, out := runDoctor(t, "--base-url", base+"/v1")
	if code != 0 || !rep.OK {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	for _, c := range rep.Checks {
		if c.Status != "pass" {
			t.Errorf("%s: %s %s (fix: %s)", c.Check, c.Status, c.Message, c.Fix)
		}
	}
	for check, want := range map[string][]string{
		"reachability":     {"flash-Q8_0", "step-3.7-flash"},
		"effort":           {"echo low→high", "X-Reasoning-Effort low→high", "reasoning tokens 0→"},
		"streaming":        {"prompt_tokens_details.cached_tokens and cached_tokens", "prompt tokens cached"},
		"reasoning_fields": {"both reasoning_content and reasoning"},
		"error_bodies":     {"400 invalid_value"},
		"stepflash":        {"backend local, region global", "model step-3.7-flash (context 4096)", "high→high thinking budget 8192", "not visible over HTTP"},
	} {
		_, text := rep.status(t, check)
		for _, w := range want {
			if !strings.Contains(text, w) {
				t.Errorf("%s: %q not in %q", check, w, text)
			}
		}
	}
	// The second identical stream reused the prefix cache.
	_, text := rep.status(t, "streaming")
	if m := regexp.MustCompile(`(\d+) of (\d+) prompt tokens cached`).FindStringSubmatch(text); m == nil || m[1] == "0" {
		t.Errorf("no cache hit on the second stream: %s", text)
	}

	// The text form: ✓ per check, then the summary, exit 0.
	t.Setenv("STEP_BASE_URL", base+"/v1")
	txt, errOut, code := runMain(t, "doctor")
	if code != 0 || strings.Count(txt, "✓ ") != 8 || !strings.Contains(txt, "8 passed, 0 failed, 0 warnings, 0 skipped") {
		t.Fatalf("text, exit %d:\n%s\n%s", code, txt, errOut)
	}
}

// TestDoctorWrongRegion copies StepFun's answer to a key of the other
// region, a 401 with an empty body (../shared/DESIGN.md section 7b; the
// issue: "a 401 with an empty body diagnosed as the region trap"), with a
// test server; the doctor names the trap and the key's region's base URL,
// and exits non-zero.
func TestDoctorWrongRegion(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusUnauthorized)
	}))
	defer srv.Close()
	key, err := auth.Generate("cn")
	if err != nil {
		t.Fatal(err)
	}
	rep, code, out := runDoctor(t, "--base-url", srv.URL+"/v1", "--api-key", key)
	if code == 0 || rep.OK {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	st, text := rep.status(t, "region")
	for _, w := range []string{"401 with an empty body: the region trap", "key's region cn does not match", "https://api.stepfun.com/v1"} {
		if st != "fail" || !strings.Contains(text, w) {
			t.Errorf("region %s: %q not in %q", st, w, text)
		}
	}
	if st, _ := rep.status(t, "effort"); st != "skip" {
		t.Errorf("effort %s: the checks after a refused key should be skipped", st)
	}
}

// TestDoctorRegionMismatchServe: a real stepflash serving regions global
// and cn (keys from `stepflash keys create`) refuses a cn key at global with
// its region_mismatch error object; the doctor reports that message (which
// names the cn base URL) and exits non-zero. The global key passes.
func TestDoctorRegionMismatchServe(t *testing.T) {
	dir := t.TempDir()
	global := createKey(t, dir, "--region", "global", "--name", "g")
	cn := createKey(t, dir, "--region", "cn", "--name", "c")
	base, log, _ := startServe(t, "-m", flashModel(t), "--quiet", "--data", dir,
		"--region", "global=127.0.0.1:0", "--region", "cn=127.0.0.1:0")
	m := regexp.MustCompile(`region cn listening on (http://\S+)`).FindStringSubmatch(log.String())
	if m == nil {
		t.Fatalf("start-up lines:\n%s", log.String())
	}
	rep, code, out := runDoctor(t, "--base-url", base+"/v1", "--api-key", cn)
	st, text := rep.status(t, "region")
	if code == 0 || st != "fail" || !strings.Contains(text, "region_mismatch") || !strings.Contains(text, m[1]+"/v1") {
		t.Fatalf("exit %d, region %s %q:\n%s", code, st, text, out)
	}
	rep, code, out = runDoctor(t, "--base-url", base+"/v1", "--api-key", global)
	if st, text := rep.status(t, "region"); code != 0 || st != "pass" || !strings.Contains(text, "key of region global accepted") {
		t.Fatalf("global key: exit %d, region %s %q:\n%s", code, st, text, out)
	}
}

// TestDoctorMisspelledModel: a real stepflash, a model string with a typo:
// the closest served name is suggested, and the other checks run on it.
func TestDoctorMisspelledModel(t *testing.T) {
	base, _, _ := startServe(t, "-m", flashModel(t), "--quiet")
	rep, code, out := runDoctor(t, "--base-url", base+"/v1", "--model", "step-3.7-flsh")
	st, text := rep.status(t, "model")
	if code == 0 || st != "fail" || !strings.Contains(text, `did you mean "step-3.7-flash"`) || !strings.Contains(text, "--model step-3.7-flash") {
		t.Fatalf("exit %d, model %s %q:\n%s", code, st, text, out)
	}
	if rep.Failed != 1 {
		t.Errorf("only the model check should fail:\n%s", out)
	}
}

// TestDoctorEffortIgnored: a proxy in front of a real stepflash strips
// reasoning_effort from every request body, as a gateway or SDK layer that
// drops the parameters it does not know does (the issue: "accepted but
// ignored"; LiteLLM's drop_params is one such layer). stepflash's echo
// then says nothing was requested, at either tier: the doctor fails the
// effort check and says something in between drops the field.
func TestDoctorEffortIgnored(t *testing.T) {
	base, _, _ := startServe(t, "-m", flashModel(t), "--quiet")
	target, _ := url.Parse(base)
	proxy := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(target)
			if r.In.Body == nil || r.In.Method != http.MethodPost {
				return
			}
			b, _ := io.ReadAll(r.In.Body)
			var v map[string]any
			if json.Unmarshal(b, &v) == nil {
				delete(v, "reasoning_effort")
				b, _ = json.Marshal(v)
			}
			r.Out.Body = io.NopCloser(bytes.NewReader(b))
			r.Out.ContentLength = int64(len(b))
			r.Out.Header.Set("Content-Length", strconv.Itoa(len(b)))
		},
	}
	srv := httptest.NewServer(proxy)
	defer srv.Close()
	rep, code, out := runDoctor(t, "--base-url", srv.URL+"/v1")
	st, text := rep.status(t, "effort")
	if code == 0 || st != "fail" || !strings.Contains(text, "accepted but ignored") || !strings.Contains(text, "requested null") {
		t.Fatalf("exit %d, effort %s %q:\n%s", code, st, text, out)
	}
	if st, text := rep.status(t, "streaming"); st != "pass" {
		t.Errorf("streaming through the proxy: %s %s", st, text)
	}
}

// TestDoctorFlags: the base URL and key come from the flags, else
// $STEP_BASE_URL / $STEP_API_KEY, else $OPENAI_BASE_URL / $OPENAI_API_KEY,
// else the local default.
func TestDoctorFlags(t *testing.T) {
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	for _, tc := range []struct {
		args           []string
		env            map[string]string
		base, key, src string
	}{
		{nil, nil, defaultDoctorBaseURL, "", ""},
		{nil, map[string]string{"OPENAI_BASE_URL": "http://o/v1", "OPENAI_API_KEY": "ko"}, "http://o/v1", "ko", "$OPENAI_API_KEY"},
		{nil, map[string]string{"STEP_BASE_URL": "http://s/v1", "OPENAI_BASE_URL": "http://o/v1", "STEP_API_KEY": "ks", "OPENAI_API_KEY": "ko"},
			"http://s/v1", "ks", "$STEP_API_KEY"},
		{[]string{"--base-url", "http://f/v1", "--api-key", "kf"}, map[string]string{"STEP_BASE_URL": "http://s/v1", "STEP_API_KEY": "ks"},
			"http://f/v1", "kf", "--api-key"},
	} {
		o, err := parseDoctor(tc.args, env(tc.env), io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		if o.cfg.BaseURL != tc.base || o.cfg.APIKey != tc.key || o.cfg.KeySource != tc.src {
			t.Errorf("%v %v: got %q %q %q", tc.args, tc.env, o.cfg.BaseURL, o.cfg.APIKey, o.cfg.KeySource)
		}
	}
	if _, err := parseDoctor([]string{"extra"}, env(nil), io.Discard); err != errUsage {
		t.Errorf("a positional argument: %v", err)
	}
}
