package main

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/stepflash/stepflash/store"
)

const usageUsage = `Usage: stepflash usage [--key ID] [--model M] [--since T] [--until T] [--by key|model|day] [--json|--csv]

Reports the usage ledger (docs/ledger.md): requests, errors, tokens (prompt,
cached, completion, reasoning) and cost in USD, in total or grouped by key,
served model or day (UTC). Every request that reached a served model has
one row, written before its usage reached the client; errors count the
requests that failed (429s included) or were cut mid-stream.

--key takes a key's id (or its name, when one key has it); --model a served
model name. T is an RFC 3339 time (2026-06-01T12:00:00Z), a date (2026-06-01,
midnight UTC) or a duration ago (90m, 24h, 7d); --since is inclusive,
--until exclusive.

` + storeFlagsHelp + `
Flags:
`

// usageReport is what usage --json prints.
type usageReport struct {
	By     string           `json:"by,omitempty"`
	Key    string           `json:"key,omitempty"`
	Model  string           `json:"model,omitempty"`
	Since  *time.Time       `json:"since"`
	Until  *time.Time       `json:"until"`
	Groups []store.UsageRow `json:"groups"`
	Total  store.UsageRow   `json:"total"`
}

func cmdUsage(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("usage", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var so storeOptions
	registerStoreFlags(fs, &so)
	key := fs.String("key", "", "only this key's requests (id or name)")
	model := fs.String("model", "", "only this served model's requests")
	sinceS := fs.String("since", "", "from this time on (RFC 3339, date, or duration ago such as 24h or 7d)")
	untilS := fs.String("until", "", "before this time (same forms)")
	by := fs.String("by", "", "group by key, model or day (default: one total)")
	asJSON := fs.Bool("json", false, "print JSON")
	asCSV := fs.Bool("csv", false, "print CSV, one line per group")
	fs.Usage = func() {
		fmt.Fprint(stderr, usageUsage)
		fs.PrintDefaults()
	}
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return fmt.Errorf("unexpected argument %q", pos[0])
	}
	if *asJSON && *asCSV {
		return errors.New("give --json or --csv, not both")
	}
	switch *by {
	case store.ByNone, store.ByKey, store.ByModel, store.ByDay:
	default:
		return fmt.Errorf("--by %q: want key, model or day", *by)
	}
	now := time.Now()
	q := store.UsageQuery{Model: *model, By: *by}
	if q.Since, err = parseWhen(*sinceS, now); err != nil {
		return fmt.Errorf("--since: %v", err)
	}
	if q.Until, err = parseWhen(*untilS, now); err != nil {
		return fmt.Errorf("--until: %v", err)
	}
	if !q.Since.IsZero() && !q.Until.IsZero() && !q.Since.Before(q.Until) {
		return fmt.Errorf("--since %s is not before --until %s", q.Since.Format(time.RFC3339), q.Until.Format(time.RFC3339))
	}
	ctx := context.Background()
	st, err := so.openStore(ctx)
	if err != nil {
		return err
	}
	defer st.Close()
	if q.KeyID, err = resolveKey(ctx, st, *key); err != nil {
		return err
	}
	rows, err := st.Usage(ctx, q)
	if err != nil {
		return err
	}
	total := store.UsageRow{Group: "total"}
	for _, r := range rows {
		total.Requests += r.Requests
		total.Errors += r.Errors
		total.PromptTokens += r.PromptTokens
		total.CachedTokens += r.CachedTokens
		total.CompletionTokens += r.CompletionTokens
		total.ReasoningTokens += r.ReasoningTokens
		total.CostUSD += r.CostUSD
	}
	if *by == store.ByNone {
		rows = nil // the total says it all
	}
	switch {
	case *asJSON:
		rep := usageReport{By: *by, Key: q.KeyID, Model: q.Model, Groups: rows, Total: total}
		if rep.Groups == nil {
			rep.Groups = []store.UsageRow{}
		}
		if !q.Since.IsZero() {
			rep.Since = &q.Since
		}
		if !q.Until.IsZero() {
			rep.Until = &q.Until
		}
		b, _ := json.MarshalIndent(rep, "", "  ")
		fmt.Fprintf(stdout, "%s\n", b)
		return nil
	case *asCSV:
		w := csv.NewWriter(stdout)
		w.Write([]string{groupTitle(*by), "requests", "errors", "prompt_tokens", "cached_tokens", "completion_tokens", "reasoning_tokens", "cost_usd"})
		if *by == store.ByNone {
			rows = []store.UsageRow{total}
		}
		for _, r := range rows {
			w.Write([]string{r.Group, itoa(r.Requests), itoa(r.Errors), itoa(r.PromptTokens), itoa(r.CachedTokens),
				itoa(r.CompletionTokens), itoa(r.ReasoningTokens), strconv.FormatFloat(r.CostUSD, 'f', -1, 64)})
		}
		w.Flush()
		return w.Error()
	}
	table := [][]string{{strings.ToUpper(groupTitle(*by)), "REQUESTS", "ERRORS", "PROMPT", "CACHED", "COMPLETION", "REASONING", "COST (USD)"}}
	for _, r := range append(rows, total) {
		g := r.Group
		if g == "" {
			g = "(no key)"
		}
		table = append(table, []string{g, itoa(r.Requests), itoa(r.Errors), itoa(r.PromptTokens), itoa(r.CachedTokens),
			itoa(r.CompletionTokens), itoa(r.ReasoningTokens), strconv.FormatFloat(r.CostUSD, 'f', 6, 64)})
	}
	printTable(stdout, table)
	return nil
}

// printTable prints rows in columns: the first left-aligned, the numbers
// right-aligned.
func printTable(w io.Writer, rows [][]string) {
	width := make([]int, len(rows[0]))
	for _, r := range rows {
		for i, c := range r {
			width[i] = max(width[i], len(c))
		}
	}
	for _, r := range rows {
		var b strings.Builder
		for i, c := range r {
			if i == 0 {
				b.WriteString(c + strings.Repeat(" ", width[0]-len(c)))
				continue
			}
			b.WriteString("  " + strings.Repeat(" ", width[i]-len(c)) + c)
		}
		fmt.Fprintln(w, b.String())
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func groupTitle(by string) string {
	if by == store.ByNone {
		return "group"
	}
	return by
}

// resolveKey turns --key into a key id: an id as given, or the id of the
// one key with that name. An unknown value is kept (the ledger may hold
// rows of keys deleted from another store).
func resolveKey(ctx context.Context, st *store.Store, s string) (string, error) {
	if s == "" {
		return "", nil
	}
	keys, err := st.Keys(ctx, "")
	if err != nil {
		return "", err
	}
	var named []string
	for _, k := range keys {
		if k.ID == s {
			return s, nil
		}
		if k.Name == s {
			named = append(named, k.ID)
		}
	}
	switch len(named) {
	case 0:
		return s, nil
	case 1:
		return named[0], nil
	}
	return "", fmt.Errorf("--key %q names %d keys (%s): give an id", s, len(named), strings.Join(named, ", "))
}

// parseWhen reads a time: RFC 3339, a date (midnight UTC), or a duration
// before now (Go's forms, plus N d for days). "" is the zero time.
func parseWhen(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t, nil
	}
	var d time.Duration
	var err error
	if days, ok := strings.CutSuffix(s, "d"); ok {
		var n int
		if n, err = strconv.Atoi(days); err == nil {
			d = time.Duration(n) * 24 * time.Hour
		}
	} else {
		d, err = time.ParseDuration(s)
	}
	if err != nil || d < 0 {
		return time.Time{}, fmt.Errorf("%q: want an RFC 3339 time (2026-06-01T12:00:00Z), a date (2026-06-01) or a duration ago (90m, 24h, 7d)", s)
	}
	return now.Add(-d), nil
}
