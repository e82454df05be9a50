package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"math"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/stepflash/stepflash/auth"
	"github.com/stepflash/stepflash/internal/testmodels"
)

// createKey runs `stepflash keys create` on dir and returns the key.
func createKey(t *testing.T, dir string, args ...string) string {
	t.Helper()
	rc, out, errs := run(t, append([]string{"keys", "create", "--data", dir, "--json"}, args...)...)
	var k struct {
		Key string `json:"key"`
	}
	if err := json.Unmarshal([]byte(out), &k); rc != 0 || err != nil || k.Key == "" {
		t.Fatalf("keys create %v: %d %q %q %v", args, rc, out, errs, err)
	}
	return k.Key
}

// TestServeRegions: one process serving two regions, each on its own
// listener, with keys made by `stepflash keys create`: through the official
// OpenAI SDK a key works in its own region only, every refusal is a 401
// with an error object that says what is wrong (a key of the other region
// is told that region's base URL), a key's rpm limit and its budget give
// 429s with Retry-After, the ledger holds a row per request that reached
// the model, under the key that made it, and /metrics counts the same.
func TestServeRegions(t *testing.T) {
	dir := t.TempDir()
	global := createKey(t, dir, "--region", "global", "--name", "app", "--rpm", "3")
	cn := createKey(t, dir, "--region", "cn", "--name", "app-cn")
	revoked := createKey(t, dir, "--region", "global", "--name", "old")
	tight := createKey(t, dir, "--region", "global", "--name", "tight", "--budget", "0.000001", "--budget-period", "day")
	if rc, out, errs := run(t, "keys", "revoke", "--data", dir, "old"); rc != 0 {
		t.Fatalf("revoke: %d %s %s", rc, out, errs)
	}

	base, log, stop := startServe(t, "-m", testmodels.Path(t, "stories260K.gguf"), "--quiet", "--data", dir,
		"--region", "global=127.0.0.1:0", "--region", "cn=127.0.0.1:0")
	m := regexp.MustCompile(`region cn listening on (http://\S+)`).FindStringSubmatch(log.String())
	if m == nil || !strings.Contains(log.String(), "region global listening on "+base) {
		t.Fatalf("start-up lines:\n%s", log.String())
	}
	cnBase := m[1]

	chat := func(base, key string) (*openai.ChatCompletion, error) {
		c := openai.NewClient(option.WithBaseURL(base+"/v1"), option.WithAPIKey(key), option.WithMaxRetries(0))
		return c.Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{
			Model:     "stories260K",
			Messages:  []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Once upon a time")},
			MaxTokens: openai.Int(4),
		})
	}
	region := func(c *openai.ChatCompletion) string {
		var ext struct {
			Stepflash struct {
				Region string `json:"region"`
			} `json:"stepflash"`
		}
		json.Unmarshal([]byte(c.RawJSON()), &ext)
		return ext.Stepflash.Region
	}

	for _, tc := range []struct {
		name, base, key string
		region          string // on success
		code            string // on a 401
		say             []string
	}{
		{"global key at global", base, global, "global", "", nil},
		{"cn key at cn", cnBase, cn, "cn", "", nil},
		{"global key at cn", cnBase, global, "", "region_mismatch", []string{`region "global"`, base + "/v1"}},
		{"cn key at global", base, cn, "", "region_mismatch", []string{`region "cn"`, cnBase + "/v1"}},
		{"revoked key", base, revoked, "", "invalid_api_key", []string{"revoked"}},
		{"bad checksum", base, global[:len(global)-1] + flip(global[len(global)-1]), "", "invalid_api_key", []string{"checksum"}},
		{"not a key", base, "hello", "", "invalid_api_key", []string{"not a stepflash key"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := chat(tc.base, tc.key)
			if tc.code == "" {
				if err != nil {
					t.Fatal(err)
				}
				if got := region(c); got != tc.region {
					t.Errorf("stepflash.region %q, want %q", got, tc.region)
				}
				return
			}
			var apiErr *openai.Error
			if !errors.As(err, &apiErr) || apiErr.StatusCode != 401 || apiErr.Code != tc.code {
				t.Fatalf("got %v, want a 401 %s", err, tc.code)
			}
			for _, s := range tc.say {
				if !strings.Contains(apiErr.Message, s) {
					t.Errorf("message %q does not say %q", apiErr.Message, s)
				}
			}
		})
	}

	// No key at all: a JSON body, and the WWW-Authenticate of RFC 6750.
	resp, err := http.Post(cnBase+"/v1/chat/completions", "application/json", strings.NewReader(`{"model":"stories260K","messages":[{"role":"user","content":"hi"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var e struct {
		Error struct{ Code, Message, Type string }
	}
	if json.Unmarshal(body, &e); resp.StatusCode != 401 || e.Error.Code != "missing_api_key" || e.Error.Message == "" ||
		!strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer") {
		t.Errorf("no key: %d %s %q", resp.StatusCode, body, resp.Header.Get("WWW-Authenticate"))
	}

	// The global key has 3 requests a minute and used one: two more pass,
	// the fourth is refused with Retry-After.
	for i := 0; i < 2; i++ {
		if _, err := chat(base, global); err != nil {
			t.Fatalf("request %d within the limit: %v", i+2, err)
		}
	}
	_, err = chat(base, global)
	var apiErr *openai.Error
	if !errors.As(err, &apiErr) || apiErr.StatusCode != 429 || apiErr.Code != "rate_limit_exceeded" || apiErr.Response.Header.Get("Retry-After") == "" {
		t.Fatalf("fourth request in a minute: %v", err)
	}

	// A budget of $0.000001 a day: the first request (about $0.000007)
	// spends it, the second is refused until midnight UTC.
	if _, err := chat(base, tight); err != nil {
		t.Fatalf("first request within the budget: %v", err)
	}
	_, err = chat(base, tight)
	if !errors.As(err, &apiErr) || apiErr.StatusCode != 429 || apiErr.Code != "insufficient_quota" || apiErr.Response.Header.Get("Retry-After") == "" {
		t.Fatalf("request past the budget: %v", err)
	}

	// /metrics counts what the ledger holds, per key.
	resp, err = http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	metric := func(name string, labels ...string) float64 {
		t.Helper()
		sum := 0.0
	lines:
		for _, line := range strings.Split(string(metrics), "\n") {
			if !strings.HasPrefix(line, name+"{") {
				continue
			}
			for _, l := range labels {
				if !strings.Contains(line, l) {
					continue lines
				}
			}
			v, err := strconv.ParseFloat(line[strings.LastIndex(line, " ")+1:], 64)
			if err != nil {
				t.Fatalf("%q: %v", line, err)
			}
			sum += v
		}
		return sum
	}
	gp, cp := keyPrefix(t, global), keyPrefix(t, cn)
	if n, n429 := metric("stepflash_billed_requests_total", `key="`+gp+`"`), metric("stepflash_billed_requests_total", `key="`+gp+`"`, `code="429"`); n != 4 || n429 != 1 {
		t.Errorf("metrics: key %s has %g requests, %g refused; want 4, 1", gp, n, n429)
	}

	if err := stop(); err != nil {
		t.Fatal(err)
	}
	// The ledger: the global key's three answered requests and its 429, the
	// cn key's one; nothing for the requests refused before a model.
	rc, out, errs := run(t, "usage", "--data", dir, "--json", "--by", "key")
	if rc != 0 {
		t.Fatalf("usage: %d %s", rc, errs)
	}
	var rep usageReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("usage --json: %v: %s", err, out)
	}
	got := map[string][2]int64{}
	for _, g := range rep.Groups {
		got[g.Group] = [2]int64{g.Requests, g.Errors}
		key := `key="` + g.Group + `"`
		if c := metric("stepflash_cost_usd_total", key); math.Abs(c-g.CostUSD) > 1e-12 || g.CostUSD <= 0 {
			t.Errorf("key %s: metrics cost %g, ledger %g", g.Group, c, g.CostUSD)
		}
		if n := metric("stepflash_billed_tokens_total", key, `type="cached"`); int64(n) != g.CachedTokens {
			t.Errorf("key %s: metrics cached tokens %g, ledger %d", g.Group, n, g.CachedTokens)
		}
	}
	tp := keyPrefix(t, tight)
	if got[gp] != [2]int64{4, 1} || got[cp] != [2]int64{1, 0} || got[tp] != [2]int64{2, 1} || len(got) != 3 {
		t.Errorf("ledger (requests, errors) by key %v, want %s: {4 1}, %s: {1 0}, %s: {2 1}", got, gp, cp, tp)
	}
}

func flip(c byte) string {
	if c == 'a' {
		return "b"
	}
	return "a"
}

func keyPrefix(t *testing.T, key string) string {
	t.Helper()
	p, err := auth.Parse(key)
	if err != nil {
		t.Fatal(err)
	}
	return p.Prefix
}
