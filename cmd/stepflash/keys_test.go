package main

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stepflash/stepflash/auth"
	"github.com/stepflash/stepflash/billing"
	"github.com/stepflash/stepflash/internal/pgtest"
	"github.com/stepflash/stepflash/store"
)

// run runs stepflash with args and returns its exit status and output.
func run(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	rc := Main(args, &out, &errb)
	return rc, out.String(), errb.String()
}

// TestKeysCommands: keys create, list and revoke end to end, on a data dir
// and on Postgres.
func TestKeysCommands(t *testing.T) {
	for _, db := range []struct {
		name string
		flag func(t *testing.T) []string
	}{
		{"data dir", func(t *testing.T) []string { return []string{"--data", t.TempDir()} }},
		{"postgres", func(t *testing.T) []string { return []string{"--db", pgtest.DSN(t)} }},
	} {
		t.Run(db.name, func(t *testing.T) {
			where := db.flag(t)
			rc, out, errs := run(t, append([]string{"keys", "create", "--region", "global", "--name", "ci", "--budget", "2.5", "--rpm", "60", "--tpm", "5000"}, where...)...)
			if rc != 0 || !strings.Contains(errs, "not shown again") {
				t.Fatalf("create: %d %s %s", rc, out, errs)
			}
			fields := map[string]string{}
			for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
				k, v, _ := strings.Cut(line, " ")
				fields[k] = strings.TrimSpace(v)
			}
			key := fields["key"]
			p, err := auth.Parse(key)
			if err != nil || fields["id"] != p.Prefix || fields["region"] != "global" || p.Region != "global" || fields["name"] != "ci" ||
				fields["limits"] != "$2.5/month, 60 rpm, 5000 tpm" {
				t.Fatalf("create printed %q (%v)", out, err)
			}
			rc, out, _ = run(t, append([]string{"keys", "create", "--json", "--region", "cn", "--name", "ci", "--budget", "1", "--budget-period", "total"}, where...)...)
			var cn keyJSON
			if err := json.Unmarshal([]byte(out), &cn); rc != 0 || err != nil || cn.Region != "cn" || cn.BudgetPeriod != "total" || cn.Revoked != nil {
				t.Fatalf("create --json: %d %q %v", rc, out, err)
			}
			if cp, err := auth.Parse(cn.Key); err != nil || cp.Prefix != cn.ID {
				t.Errorf("create --json key %q: %v", cn.Key, err)
			}

			rc, out, _ = run(t, append([]string{"keys", "list"}, where...)...)
			if rc != 0 || !strings.Contains(out, p.Prefix) || !strings.Contains(out, cn.ID) || strings.Contains(out, key[len(p.Prefix):]) || strings.Contains(out, cn.Key) {
				t.Errorf("list: %d\n%s", rc, out)
			}
			rc, out, _ = run(t, append([]string{"keys", "list", "--region", "cn", "--json"}, where...)...)
			var listed []map[string]any
			if err := json.Unmarshal([]byte(out), &listed); rc != 0 || err != nil || len(listed) != 1 || listed[0]["id"] != cn.ID {
				t.Errorf("list --region cn --json: %d %s %v", rc, out, err)
			}
			if _, ok := listed[0]["key"]; ok {
				t.Errorf("list --json prints a key field: %s", out)
			}

			// Revoking: an ambiguous name, an id, a name, again.
			rc, _, errs = run(t, append([]string{"keys", "revoke", "ci"}, where...)...)
			if rc != 1 || !strings.Contains(errs, p.Prefix) || !strings.Contains(errs, cn.ID) {
				t.Errorf("revoke of an ambiguous name: %d %s", rc, errs)
			}
			rc, out, _ = run(t, append([]string{"keys", "revoke", cn.ID}, where...)...)
			if rc != 0 || !strings.Contains(out, "revoked "+cn.ID) {
				t.Errorf("revoke by id: %d %s", rc, out)
			}
			rc, out, _ = run(t, append([]string{"keys", "revoke", "ci"}, where...)...)
			if rc != 0 || !strings.Contains(out, "revoked "+p.Prefix) {
				t.Errorf("revoke by the name of the one live key: %d %s", rc, out)
			}
			rc, out, _ = run(t, append([]string{"keys", "revoke", cn.ID}, where...)...)
			if rc != 0 || !strings.Contains(out, "already revoked") {
				t.Errorf("revoke again: %d %s", rc, out)
			}
			rc, _, errs = run(t, append([]string{"keys", "revoke", "nobody"}, where...)...)
			if rc != 1 || !strings.Contains(errs, `no key has the id or name "nobody"`) {
				t.Errorf("revoke unknown: %d %s", rc, errs)
			}
			rc, out, _ = run(t, append([]string{"keys", "list", "--json"}, where...)...)
			if err := json.Unmarshal([]byte(out), &listed); rc != 0 || err != nil || len(listed) != 2 || listed[0]["revoked"] == nil || listed[1]["revoked"] == nil {
				t.Errorf("list after revoking: %s", out)
			}
		})
	}
}

// TestKeysNotInClear: the data dir never holds a key the command printed.
func TestKeysNotInClear(t *testing.T) {
	dir := t.TempDir()
	var keys []string
	for _, r := range []string{"global", "cn"} {
		rc, out, _ := run(t, "keys", "create", "--data", dir, "--region", r, "--name", "n", "--json")
		var k keyJSON
		if rc != 0 || json.Unmarshal([]byte(out), &k) != nil {
			t.Fatal(out)
		}
		keys = append(keys, k.Key)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*"))
	var all []byte
	for _, f := range files {
		b, _ := os.ReadFile(f)
		all = append(all, b...)
	}
	for _, k := range keys {
		p, _ := auth.Parse(k)
		if !bytes.Contains(all, []byte(p.Prefix)) {
			t.Fatalf("%v do not hold the id %s: the check proves nothing", files, p.Prefix)
		}
		if bytes.Contains(all, []byte(k)) || bytes.Contains(all, []byte(k[len(p.Prefix):len(p.Prefix)+16])) {
			t.Errorf("the data dir holds key %s… in clear", p.Prefix)
		}
	}
}

func TestKeysErrors(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		args []string
		rc   int
		want string
	}{
		{[]string{"keys"}, 2, "Usage:"},
		{[]string{"keys", "rotate"}, 2, `unknown subcommand "rotate"`},
		{[]string{"keys", "create", "--name", "x"}, 1, "--region is required"},
		{[]string{"keys", "create", "--region", "Global", "--name", "x"}, 1, `--region "Global"`},
		{[]string{"keys", "create", "--region", "global"}, 1, "--name is required"},
		{[]string{"keys", "create", "--region", "global", "--name", "x", "--budget", "-1"}, 1, "cannot be negative"},
		{[]string{"keys", "create", "--region", "global", "--name", "x", "--budget-period", "day"}, 1, "--budget-period needs --budget"},
		{[]string{"keys", "create", "--region", "global", "--name", "x", "--budget", "1", "--budget-period", "week"}, 1, `--budget-period "week"`},
		{[]string{"keys", "create", "--region", "global", "--name", "x", "extra"}, 1, `unexpected argument "extra"`},
		{[]string{"keys", "create", "--region", "global", "--name", "x", "--rpm", "many"}, 2, "invalid value"},
		{[]string{"keys", "list", "--region", "CN"}, 1, `--region "CN"`},
		{[]string{"keys", "list", "--db", "sqlite:" + dir + "/x.db"}, 1, "give --data or --db, not both"},
		{[]string{"keys", "revoke"}, 2, "Usage: stepflash keys revoke"},
		{[]string{"keys", "list", "--db", "sqlite:" + dir + "/x.db?synchronous=sometimes", "--data", ""}, 2, "empty directory"},
		{[]string{"keys", "list", "--db", "sqlite:" + dir + "/x.db?synchronous=sometimes"}, 1, "synchronous must be"},
	} {
		args := tc.args
		if len(args) > 1 && !strings.Contains(strings.Join(args, " "), "--db") {
			args = append(args, "--data", dir)
		} else if strings.Contains(tc.want, "not both") {
			args = append(args, "--data", dir)
		}
		rc, _, errs := run(t, args...)
		if rc != tc.rc || !strings.Contains(errs, tc.want) {
			t.Errorf("%v: %d %q, want %d and %q", args, rc, errs, tc.rc, tc.want)
		}
	}
	if rc, _, errs := run(t, "help", "keys"); rc != 0 || !strings.Contains(errs, "keys revoke ID|NAME") {
		t.Errorf("help keys: %d %s", rc, errs)
	}
	if rc, _, errs := run(t, "help", "usage"); rc != 0 || !strings.Contains(errs, "--by") || !strings.Contains(errs, "7d") {
		t.Errorf("help usage: %d %s", rc, errs)
	}
	if rc, out, _ := run(t, "help"); rc != 0 || !strings.Contains(out, "keys ") || !strings.Contains(out, "usage ") {
		t.Errorf("help does not list keys and usage:\n%s", out)
	}
}

// TestUsageCommand: usage reports the ledger's rows, filtered and grouped,
// as a table, JSON and CSV.
func TestUsageCommand(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	st, err := store.Open(ctx, store.DSNFor(dir))
	if err != nil {
		t.Fatal(err)
	}
	rc, out, _ := run(t, "keys", "create", "--data", dir, "--region", "global", "--name", "alice", "--json")
	var alice keyJSON
	if rc != 0 || json.Unmarshal([]byte(out), &alice) != nil {
		t.Fatal(out)
	}
	now := time.Now().UTC()
	day := now.Add(-48 * time.Hour)
	rec := func(id string, at time.Time, key, model string, prompt, cached, completion, reasoning int, cost float64, status int, code string) billing.Record {
		return billing.Record{RequestID: id, Time: at, KeyID: key, Model: model, Endpoint: "chat", PromptTokens: prompt, CachedTokens: cached,
			CompletionTokens: completion, ReasoningTokens: reasoning, CostUSD: cost, Status: status, ErrorCode: code}
	}
	for _, r := range []billing.Record{
		rec("1", day, alice.ID, "flash", 100, 50, 10, 5, 0.25, 200, ""),
		rec("2", now.Add(-time.Hour), alice.ID, "flash", 200, 0, 20, 0, 0.5, 200, ""),
		rec("3", now.Add(-time.Minute), "", "big", 300, 100, 0, 0, 0, 429, "rate_limit_exceeded"),
		rec("4", now.Add(-30*time.Second), alice.ID, "big", 10, 0, 3, 0, 1, 200, billing.CodeClientClosed),
	} {
		if err := st.Append(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	st.Close()

	rc, out, errs := run(t, "usage", "--data", dir)
	if rc != 0 || !strings.Contains(out, "REQUESTS") || !regexpLine(out, `^total\s+4\s+2\s+610\s+150\s+33\s+5\s+1\.750000$`) {
		t.Errorf("usage: %d %s %s", rc, out, errs)
	}
	rc, out, _ = run(t, "usage", "--data", dir, "--by", "key")
	if rc != 0 || !regexpLine(out, `^\(no key\)\s+1\s+1\s+300\s+100\s+0\s+0\s+0\.000000$`) || !regexpLine(out, `^`+alice.ID+`\s+3\s+1\s+310\s+50\s+33\s+5\s+1\.750000$`) {
		t.Errorf("usage --by key:\n%s", out)
	}
	rc, out, _ = run(t, "usage", "--data", dir, "--by", "day", "--json", "--key", "alice", "--since", "24h")
	var rep usageReport
	// Alice's two requests of the last 24 hours were an hour and 30 s ago:
	// one day, or two just after midnight UTC.
	days := []string{now.Add(-time.Hour).Format(time.DateOnly)}
	if d := now.Add(-30 * time.Second).Format(time.DateOnly); d != days[0] {
		days = append(days, d)
	}
	var got []string
	if json.Unmarshal([]byte(out), &rep) == nil {
		for _, g := range rep.Groups {
			got = append(got, g.Group)
		}
	}
	if err := json.Unmarshal([]byte(out), &rep); rc != 0 || err != nil || rep.Key != alice.ID || !slices.Equal(got, days) ||
		rep.Total.Requests != 2 || rep.Total.CostUSD != 1.5 || rep.Since == nil || rep.Until != nil {
		t.Errorf("usage --by day --json --key alice --since 24h: %d %s %v", rc, out, err)
	}
	rc, out, _ = run(t, "usage", "--data", dir, "--by", "model", "--csv", "--until", now.Add(-10*time.Minute).Format(time.RFC3339))
	lines, err := csv.NewReader(strings.NewReader(out)).ReadAll()
	if rc != 0 || err != nil || len(lines) != 2 || strings.Join(lines[0], ",") != "model,requests,errors,prompt_tokens,cached_tokens,completion_tokens,reasoning_tokens,cost_usd" ||
		strings.Join(lines[1], ",") != "flash,2,0,300,50,30,5,0.75" {
		t.Errorf("usage --by model --csv --until: %d %q %v", rc, out, err)
	}
	rc, out, _ = run(t, "usage", "--data", dir, "--model", "big", "--since", day.Format(time.DateOnly), "--csv")
	if rc != 0 || !strings.Contains(out, "\ntotal,2,2,310,100,3,0,1\n") {
		t.Errorf("usage --model big --csv: %d %q", rc, out)
	}
	rc, out, _ = run(t, "usage", "--data", dir, "--since", "1d", "--json")
	if err := json.Unmarshal([]byte(out), &rep); rc != 0 || err != nil || rep.Total.Requests != 3 || len(rep.Groups) != 0 {
		t.Errorf("usage --since 1d --json: %s", out)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--by", "week"}, `--by "week"`},
		{[]string{"--json", "--csv"}, "not both"},
		{[]string{"--since", "yesterday"}, "--since: \"yesterday\""},
		{[]string{"--until", "-5h"}, "--until"},
		{[]string{"--since", "1h", "--until", "2h"}, "is not before"},
		{[]string{"extra"}, `unexpected argument "extra"`},
	} {
		if rc, _, errs := run(t, append([]string{"usage", "--data", dir}, tc.args...)...); rc != 1 || !strings.Contains(errs, tc.want) {
			t.Errorf("usage %v: %d %s, want %q", tc.args, rc, errs, tc.want)
		}
	}
}

func TestParseWhen(t *testing.T) {
	now := time.Date(2026, 6, 10, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		in   string
		want time.Time
	}{
		{"", time.Time{}},
		{"2026-06-01T08:30:00+02:00", time.Date(2026, 6, 1, 6, 30, 0, 0, time.UTC)},
		{"2026-06-01", time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)},
		{"90m", now.Add(-90 * time.Minute)},
		{"7d", now.Add(-7 * 24 * time.Hour)},
		{"0s", now},
	} {
		got, err := parseWhen(tc.in, now)
		if err != nil || !got.Equal(tc.want) {
			t.Errorf("parseWhen(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []string{"soon", "-1h", "-2d", "7days", "2026-13-01", "d"} {
		if _, err := parseWhen(bad, now); err == nil {
			t.Errorf("parseWhen(%q) worked", bad)
		}
	}
}

// regexpLine reports whether some line of s matches the expression.
func regexpLine(s, expr string) bool {
	return regexp.MustCompile(`(?m)` + expr).MatchString(s)
}
