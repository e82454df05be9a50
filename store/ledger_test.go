package store

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stepflash/stepflash/billing"
	"github.com/stepflash/stepflash/internal/pgtest"
)

// record makes a ledger record with every field set.
func record(id string, at time.Time, key, model string, cost float64) billing.Record {
	return billing.Record{RequestID: id, Time: at, KeyID: key, Region: "global", Model: model, Backend: "local",
		Endpoint: "chat", Effort: "high", Stream: true, PromptTokens: 1200, CachedTokens: 1024, CompletionTokens: 300,
		ReasoningTokens: 120, AdvisorPromptTokens: 7, AdvisorCompletionTokens: 8, AdvisorCostUSD: 0.25, CostUSD: cost,
		Latency: 1234 * time.Microsecond, Status: 200}
}

// TestLedgerGroupCommit: 64 goroutines append 20 records each; every one
// is there once, as written, and they took far fewer commits than records.
func TestLedgerGroupCommit(t *testing.T) {
	each(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		s := open(t, dsn, Options{Window: 2 * time.Millisecond})
		const workers, per = 64, 20
		base := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
		var wg sync.WaitGroup
		errs := make(chan error, workers*per)
		for w := range workers {
			wg.Go(func() {
				for i := range per {
					r := record(fmt.Sprintf("req_%02d_%02d", w, i), base.Add(time.Duration(w*per+i)*time.Second), "k", "m", float64(w))
					errs <- s.Append(ctx, r)
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
		recs, err := s.Records(ctx, "")
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) != workers*per {
			t.Fatalf("%d records, want %d", len(recs), workers*per)
		}
		seen := map[string]bool{}
		for _, r := range recs {
			if seen[r.RequestID] {
				t.Errorf("%s twice", r.RequestID)
			}
			seen[r.RequestID] = true
			var w, i int
			fmt.Sscanf(r.RequestID, "req_%d_%d", &w, &i)
			want := record(r.RequestID, base.Add(time.Duration(w*per+i)*time.Second), "k", "m", float64(w))
			if r != want {
				t.Errorf("read back %+v\nwant       %+v", r, want)
			}
		}
		if b := s.batches.Load(); b > workers*per/4 {
			t.Errorf("%d records took %d commits: not grouped", workers*per, b)
		} else {
			t.Logf("%d records in %d commits", workers*per, b)
		}
	})
}

// TestLedgerDuplicate: a record whose request id is already there fails
// alone; the records committed in the same batch are kept.
func TestLedgerDuplicate(t *testing.T) {
	each(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		s := open(t, dsn, Options{Window: 50 * time.Millisecond})
		now := time.Now()
		if err := s.Append(ctx, record("dup", now, "k", "m", 1)); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		errs := map[string]error{}
		var mu sync.Mutex
		for _, id := range []string{"a", "dup", "b", "c"} {
			wg.Go(func() {
				err := s.Append(ctx, record(id, now, "k", "m", 2))
				mu.Lock()
				errs[id] = err
				mu.Unlock()
			})
		}
		wg.Wait()
		for id, err := range errs {
			if (err != nil) != (id == "dup") || (err != nil && !strings.Contains(err.Error(), "ledger record dup")) {
				t.Errorf("Append(%s) = %v", id, err)
			}
		}
		recs, _ := s.Records(ctx, "")
		var got []string
		for _, r := range recs {
			got = append(got, r.RequestID)
		}
		slices.Sort(got)
		if !slices.Equal(got, []string{"a", "b", "c", "dup"}) {
			t.Errorf("ledger holds %v", got)
		}
		if r, _ := s.Records(ctx, "dup"); len(r) != 1 || r[0].CostUSD != 1 {
			t.Errorf("the first dup record changed: %+v", r)
		}
		for _, bad := range []billing.Record{{Model: "m", Endpoint: "chat"}, {RequestID: "x", Endpoint: "chat"}, {RequestID: "x", Model: "m"}} {
			if err := s.Append(ctx, bad); err == nil {
				t.Errorf("Append(%+v) worked", bad)
			}
		}
	})
}

// TestLedgerClose: Close commits what was handed to the writer; an
// Append that returned nil is there, one that failed with ErrClosed is
// not, and Appends after Close fail.
func TestLedgerClose(t *testing.T) {
	each(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		s, err := OpenOptions(ctx, dsn, Options{Window: time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		var mu sync.Mutex
		ok := map[string]bool{}
		for w := range 16 {
			wg.Go(func() {
				for i := 0; ; i++ {
					id := fmt.Sprintf("r%d_%d", w, i)
					err := s.Append(ctx, record(id, time.Now(), "k", "m", 1))
					if errors.Is(err, ErrClosed) {
						return
					}
					if err != nil {
						t.Error(err)
						return
					}
					mu.Lock()
					ok[id] = true
					mu.Unlock()
				}
			})
		}
		time.Sleep(50 * time.Millisecond)
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		wg.Wait()
		if err := s.Append(ctx, record("late", time.Now(), "k", "m", 1)); !errors.Is(err, ErrClosed) {
			t.Errorf("Append after Close = %v", err)
		}
		s2 := open(t, dsn, Options{})
		recs, err := s2.Records(ctx, "")
		if err != nil {
			t.Fatal(err)
		}
		if len(ok) == 0 {
			t.Fatal("no Append succeeded before Close")
		}
		for _, r := range recs {
			delete(ok, r.RequestID)
		}
		if len(ok) > 0 {
			t.Errorf("%d acknowledged records missing after Close", len(ok))
		}
	})
}

// TestLedgerCancel: an Append whose context ends while it waits returns
// the context's error (the record may still commit: never the other way).
func TestLedgerCancel(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "c.db"), Options{Window: time.Second})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := s.Append(ctx, record("c", time.Now(), "k", "m", 1)); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Append = %v, want the deadline", err)
	}
}

func TestSpentAndUsage(t *testing.T) {
	each(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		s := open(t, dsn, Options{})
		d1 := time.Date(2026, 6, 1, 23, 59, 59, 0, time.UTC)
		d2 := time.Date(2026, 6, 2, 0, 0, 0, 0, time.UTC)
		rows := []billing.Record{
			record("1", d1, "sk-a", "flash", 0.5),
			record("2", d1.Add(-time.Hour), "sk-b", "flash", 0.25),
			record("3", d2, "sk-a", "big", 1),
			record("4", d2.Add(time.Hour), "sk-a", "flash", 2),
		}
		rows[3].Status, rows[3].ErrorCode, rows[3].PromptTokens = 200, billing.CodeClientClosed, 0 // cut mid-stream
		rows[2].Status, rows[2].ErrorCode = 400, "invalid_value"
		for _, r := range rows {
			if err := s.Append(ctx, r); err != nil {
				t.Fatal(err)
			}
		}
		for _, tc := range []struct {
			key   string
			since time.Time
			want  float64
		}{{"sk-a", time.Time{}, 3.5}, {"sk-a", d2, 3}, {"sk-a", d2.Add(time.Second), 2}, {"sk-b", d1, 0}, {"sk-c", time.Time{}, 0}} {
			if got, err := s.Spent(ctx, tc.key, tc.since); err != nil || got != tc.want {
				t.Errorf("Spent(%s, %v) = %v, %v; want %v", tc.key, tc.since, got, err, tc.want)
			}
		}
		row := func(g string, n, errs, prompt int64, cost float64) UsageRow {
			return UsageRow{Group: g, Requests: n, Errors: errs, PromptTokens: prompt, CachedTokens: 1024 * n,
				CompletionTokens: 300 * n, ReasoningTokens: 120 * n, CostUSD: cost}
		}
		for _, tc := range []struct {
			q    UsageQuery
			want []UsageRow
		}{
			{UsageQuery{}, []UsageRow{row("", 4, 2, 3600, 3.75)}},
			{UsageQuery{By: ByKey}, []UsageRow{row("sk-a", 3, 2, 2400, 3.5), row("sk-b", 1, 0, 1200, 0.25)}},
			{UsageQuery{By: ByModel}, []UsageRow{row("big", 1, 1, 1200, 1), row("flash", 3, 1, 2400, 2.75)}},
			{UsageQuery{By: ByDay}, []UsageRow{row("2026-06-01", 2, 0, 2400, 0.75), row("2026-06-02", 2, 2, 1200, 3)}},
			{UsageQuery{By: ByDay, KeyID: "sk-a", Model: "flash"}, []UsageRow{row("2026-06-01", 1, 0, 1200, 0.5), row("2026-06-02", 1, 1, 0, 2)}},
			{UsageQuery{Since: d1, Until: d2.Add(time.Hour)}, []UsageRow{row("", 2, 1, 2400, 1.5)}},
			{UsageQuery{Since: d2.Add(2 * time.Hour)}, nil},
		} {
			got, err := s.Usage(ctx, tc.q)
			if err != nil || !slices.Equal(got, tc.want) {
				t.Errorf("Usage(%+v) =\n%+v, %v; want\n%+v", tc.q, got, err, tc.want)
			}
		}
		if _, err := s.Usage(ctx, UsageQuery{By: "week"}); err == nil {
			t.Error("Usage by week worked")
		}
	})
}

// BenchmarkLedger measures what the ledger adds to a request: the time an
// Append waits for its commit, with 64 streams ending at random times
// (each stream pauses a random 0–100 ms, 50 ms on average, between its
// ends: about 1,300 requests/s) or back to back (saturated).
//
//	go test -run '^$' -bench Ledger -benchtime 4000x ./store
func BenchmarkLedger(b *testing.B) {
	type target struct {
		name string
		dsn  func(b *testing.B) string
	}
	targets := []target{
		{"sqlite-normal", func(b *testing.B) string { return filepath.Join(b.TempDir(), "l.db") }},
		{"sqlite-full", func(b *testing.B) string { return "sqlite:" + filepath.Join(b.TempDir(), "l.db") + "?synchronous=full" }},
		{"postgres", func(b *testing.B) string { return pgtest.DSN(b) }},
	}
	for _, tg := range targets {
		for _, window := range []time.Duration{0, time.Millisecond} {
			for _, pause := range []time.Duration{50 * time.Millisecond, 0} {
				mode := "paced"
				if pause == 0 {
					mode = "saturated"
				}
				b.Run(fmt.Sprintf("%s/window=%v/%s", tg.name, window, mode), func(b *testing.B) {
					s, err := OpenOptions(context.Background(), tg.dsn(b), Options{Window: window})
					if err != nil {
						b.Fatal(err)
					}
					defer s.Close()
					const streams = 64
					lat := make([][]time.Duration, streams)
					var wg sync.WaitGroup
					next := make(chan int, b.N)
					for i := range b.N {
						next <- i
					}
					close(next)
					b.ResetTimer()
					start := time.Now()
					for w := range streams {
						wg.Go(func() {
							for i := range next {
								if pause > 0 {
									time.Sleep(time.Duration(rand.Int64N(int64(2 * pause))))
								}
								t0 := time.Now()
								if err := s.Append(context.Background(), record(fmt.Sprintf("r%d", i), t0, "k", "m", 1)); err != nil {
									b.Error(err)
									return
								}
								lat[w] = append(lat[w], time.Since(t0))
							}
						})
					}
					wg.Wait()
					elapsed := time.Since(start)
					b.StopTimer()
					all := slices.Concat(lat...)
					slices.Sort(all)
					if len(all) == 0 {
						return
					}
					q := func(p float64) float64 { return float64(all[int(p*float64(len(all)-1))].Microseconds()) }
					b.ReportMetric(q(0.50), "p50-µs")
					b.ReportMetric(q(0.99), "p99-µs")
					b.ReportMetric(float64(len(all))/float64(s.batches.Load()), "records/commit")
					b.ReportMetric(float64(len(all))/elapsed.Seconds(), "records/s")
				})
			}
		}
	}
}
