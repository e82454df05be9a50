package store

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stepflash/stepflash/server"
)

func responses(t *testing.T, s *Store, retention time.Duration) *Responses {
	t.Helper()
	r, err := s.Responses(retention)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// countResponses is the rows in the responses table, expired ones
// included.
func countResponses(t *testing.T, s *Store) int {
	t.Helper()
	var n int
	if err := s.db.QueryRow(`SELECT COUNT(*) FROM responses`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func stored(id, key string, created time.Time, text string) server.StoredResponse {
	return server.StoredResponse{ID: id, KeyID: key, CreatedAt: created,
		Response:     []byte(`{"id":"` + id + `","object":"response","output":[{"type":"message","content":[{"type":"output_text","text":"` + text + `"}]}]}`),
		Conversation: []byte(`[{"role":"user","content":"hi"},{"role":"assistant","content":"` + text + `"}]`)}
}

func sameStored(a, b *server.StoredResponse) bool {
	return a.ID == b.ID && a.KeyID == b.KeyID && a.CreatedAt.Equal(b.CreatedAt) &&
		bytes.Equal(a.Response, b.Response) && bytes.Equal(a.Conversation, b.Conversation)
}

// TestResponses: what is Put is what Get returns (after a restart too),
// until it is deleted or expires; an unknown id is ErrResponseNotFound.
func TestResponses(t *testing.T) {
	each(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		s := open(t, dsn, Options{})
		r := responses(t, s, 0)
		now := time.Now().UTC().Truncate(time.Second)
		big := stored("resp_big", "sk-global-aaaaaaaa", now, strings.Repeat("naïve 日本 \\\"quoted\\\" ", 50000))
		kept := []server.StoredResponse{
			stored("resp_a", "sk-global-aaaaaaaa", now, "first"),
			stored("resp_b", "sk-cn-bbbbbbbb", now.Add(-29*24*time.Hour), "29 days old: still kept"),
			stored("resp_nokey", "", now.Add(time.Second), "made without keys"),
			big,
		}
		for _, sr := range kept {
			if err := r.Put(ctx, sr); err != nil {
				t.Fatal(err)
			}
		}
		// Another Put under an id replaces what it holds.
		replaced := stored("resp_r", "sk-global-aaaaaaaa", now, "old")
		if err := r.Put(ctx, replaced); err != nil {
			t.Fatal(err)
		}
		replaced = stored("resp_r", "sk-global-cccccccc", now.Add(time.Minute), "new")
		if err := r.Put(ctx, replaced); err != nil {
			t.Fatal(err)
		}
		kept = append(kept, replaced)
		// A zero CreatedAt is now.
		if err := r.Put(ctx, server.StoredResponse{ID: "resp_now", Response: []byte(`{}`), Conversation: []byte(`[]`)}); err != nil {
			t.Fatal(err)
		}
		if got, err := r.Get(ctx, "resp_now"); err != nil || time.Since(got.CreatedAt) > time.Minute || got.CreatedAt.Location() != time.UTC {
			t.Errorf("Get(resp_now) = %+v, %v", got, err)
		}
		if err := r.Put(ctx, server.StoredResponse{Response: []byte(`{}`)}); err == nil || !strings.Contains(err.Error(), "needs an ID") {
			t.Errorf("Put without an id: %v", err)
		}
		expired := stored("resp_old", "sk-global-aaaaaaaa", now.Add(-31*24*time.Hour), "31 days old: expired")
		if err := r.Put(ctx, expired); err != nil {
			t.Fatal(err)
		}

		check := func(r *Responses, when string) {
			t.Helper()
			for _, want := range kept {
				got, err := r.Get(ctx, want.ID)
				if err != nil || !sameStored(got, &want) {
					t.Errorf("%s: Get(%s) = %.200v, %v; want %.200v", when, want.ID, got, err, want)
				}
			}
			for _, id := range []string{"resp_old", "resp_unknown", "", "resp_a' OR '1'='1"} {
				if got, err := r.Get(ctx, id); !errors.Is(err, server.ErrResponseNotFound) {
					t.Errorf("%s: Get(%q) = %v, %v; want ErrResponseNotFound", when, id, got, err)
				}
			}
		}
		check(r, "before the restart")

		// A restart keeps them.
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		s = open(t, dsn, Options{})
		r = responses(t, s, 0)
		check(r, "after the restart")

		// Delete: then not found, and a second Delete is not found either.
		for _, tc := range []struct {
			id   string
			want error
		}{
			{"resp_a", nil},
			{"resp_a", server.ErrResponseNotFound},
			{"resp_unknown", server.ErrResponseNotFound},
			{"resp_old", server.ErrResponseNotFound}, // expired
			{"resp_big", nil},
		} {
			if err := r.Delete(ctx, tc.id); !errors.Is(err, tc.want) || (tc.want == nil && err != nil) {
				t.Errorf("Delete(%s) = %v, want %v", tc.id, err, tc.want)
			}
			if _, err := r.Get(ctx, tc.id); !errors.Is(err, server.ErrResponseNotFound) {
				t.Errorf("Get(%s) after Delete = %v", tc.id, err)
			}
		}
		if got, err := r.Get(ctx, "resp_b"); err != nil || !sameStored(got, &kept[1]) {
			t.Errorf("Delete took another response: Get(resp_b) = %v", err)
		}
	})
}

// TestResponsesRetention: a response older than the retention is not
// found, and is deleted when the response store starts and by Sweep, in
// batches; newer ones stay.
func TestResponsesRetention(t *testing.T) {
	each(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		s := open(t, dsn, Options{})
		now := time.Now()
		// 2500 expired rows (more than one batch) and 3 kept, written
		// straight into the table before the response store starts.
		tx, err := s.db.Begin()
		if err != nil {
			t.Fatal(err)
		}
		for i := range 2503 {
			age := 2 * time.Hour
			if i >= 2500 {
				age = time.Duration(i-2500) * time.Minute
			}
			if _, err := tx.Exec(s.q(`INSERT INTO responses (id, key_id, created_us, response, conversation) VALUES (?, '', ?, '{}', '[]')`),
				fmt.Sprintf("resp_%d", i), now.Add(-age).UnixMicro()); err != nil {
				t.Fatal(err)
			}
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
		r := responses(t, s, time.Hour)
		// The sweep at start deletes the expired rows.
		deadline := time.Now().Add(10 * time.Second)
		for countResponses(t, s) != 3 {
			if time.Now().After(deadline) {
				t.Fatalf("%d rows 10s after the start, want 3", countResponses(t, s))
			}
			time.Sleep(10 * time.Millisecond)
		}
		for _, id := range []string{"resp_2500", "resp_2501", "resp_2502"} {
			if _, err := r.Get(ctx, id); err != nil {
				t.Errorf("Get(%s): %v", id, err)
			}
		}
		// Expired but not yet swept: not found; Sweep then deletes it.
		for _, age := range []time.Duration{61 * time.Minute, 59 * time.Minute} {
			if err := r.Put(ctx, server.StoredResponse{ID: "resp_" + age.String(), CreatedAt: now.Add(-age), Response: []byte(`{}`), Conversation: []byte(`[]`)}); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := r.Get(ctx, "resp_1h1m0s"); !errors.Is(err, server.ErrResponseNotFound) {
			t.Errorf("Get(61 minutes old) = %v, want not found", err)
		}
		if _, err := r.Get(ctx, "resp_59m0s"); err != nil {
			t.Errorf("Get(59 minutes old) = %v", err)
		}
		if n, err := r.Sweep(ctx); n != 1 || err != nil {
			t.Errorf("Sweep = %d, %v; want 1", n, err)
		}
		if n := countResponses(t, s); n != 4 {
			t.Errorf("%d rows after the sweep, want 4", n)
		}

		// One response store per Store; no negative retention.
		if _, err := s.Responses(0); err == nil {
			t.Error("a second Responses call succeeded")
		}
		s2 := open(t, dsn, Options{})
		if _, err := s2.Responses(-time.Hour); err == nil || !strings.Contains(err.Error(), "negative") {
			t.Errorf("Responses(-1h) = %v", err)
		}
		s2.Close()
		if _, err := s2.Responses(0); err == nil {
			t.Error("Responses on a closed store succeeded")
		}
	})
}

// TestResponsesConcurrent: Puts from many goroutines beside the ledger's
// writer all land (SQLite's one writer is shared).
func TestResponsesConcurrent(t *testing.T) {
	each(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		s := open(t, dsn, Options{})
		r := responses(t, s, 0)
		var wg sync.WaitGroup
		errs := make(chan error, 400)
		for g := range 16 {
			wg.Go(func() {
				for i := range 10 {
					id := fmt.Sprintf("resp_%d_%d", g, i)
					errs <- r.Put(ctx, stored(id, "", time.Now(), id))
					errs <- s.Append(ctx, record(id, time.Now(), "", "m", 1))
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
		if n := countResponses(t, s); n != 160 {
			t.Errorf("%d responses, want 160", n)
		}
	})
}

// TestMigrateToResponses: a database of schema version 1 (before stored
// responses) is migrated on open: its ledger kept, the responses table
// added.
func TestMigrateToResponses(t *testing.T) {
	each(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		driver, conn := "pgx", dsn
		if path, ok := strings.CutPrefix(dsn, "sqlite:"); ok {
			driver, conn = "sqlite", path
		}
		db, err := sql.Open(driver, conn)
		if err != nil {
			t.Fatal(err)
		}
		stmts := append(strings.Split(migrations[1], ";"),
			`CREATE TABLE schema_version (version INTEGER PRIMARY KEY, applied_us BIGINT NOT NULL)`,
			`INSERT INTO schema_version (version, applied_us) VALUES (1, 0)`,
			`INSERT INTO ledger (request_id, time_us, model, endpoint, stream, latency_us, status) VALUES ('req_v1', 1, 'm', 'chat', false, 1, 200)`)
		for _, stmt := range stmts {
			if strings.TrimSpace(stmt) == "" {
				continue
			}
			if _, err := db.Exec(stmt); err != nil {
				t.Fatalf("%s: %v", stmt, err)
			}
		}
		db.Close()

		s := open(t, dsn, Options{})
		var v int
		if err := s.db.QueryRow(`SELECT MAX(version) FROM schema_version`).Scan(&v); err != nil || v != SchemaVersion || SchemaVersion < 2 {
			t.Errorf("schema version %d (%v), want %d", v, err, SchemaVersion)
		}
		if recs, err := s.Records(ctx, "req_v1"); err != nil || len(recs) != 1 {
			t.Errorf("the ledger after the migration: %v, %v", recs, err)
		}
		r := responses(t, s, 0)
		want := stored("resp_x", "", time.Now().UTC().Truncate(time.Microsecond), "x")
		if err := r.Put(ctx, want); err != nil {
			t.Fatal(err)
		}
		if got, err := r.Get(ctx, "resp_x"); err != nil || !sameStored(got, &want) {
			t.Errorf("Get after the migration: %v, %v", got, err)
		}
	})
}
