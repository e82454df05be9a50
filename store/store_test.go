package store

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stepflash/stepflash/auth"
	"github.com/stepflash/stepflash/internal/pgtest"
)

// kinds are the databases every store test runs against: a fresh SQLite
// file, and a fresh database on the test binary's Postgres server.
var kinds = []struct {
	name string
	dsn  func(t *testing.T) string
}{
	{"sqlite", func(t *testing.T) string { return "sqlite:" + filepath.Join(t.TempDir(), "s.db") }},
	{"postgres", func(t *testing.T) string { return pgtest.DSN(t) }},
}

// each runs f against every kind of database.
func each(t *testing.T, f func(t *testing.T, dsn string)) {
	for _, k := range kinds {
		t.Run(k.name, func(t *testing.T) { f(t, k.dsn(t)) })
	}
}

func open(t *testing.T, dsn string, opts Options) *Store {
	t.Helper()
	s, err := OpenOptions(context.Background(), dsn, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// newKey makes a real key and its record.
func newKey(t *testing.T, region, name string, created time.Time) (string, auth.Key) {
	t.Helper()
	key, err := auth.Generate(region)
	if err != nil {
		t.Fatal(err)
	}
	p, err := auth.Parse(key)
	if err != nil {
		t.Fatal(err)
	}
	return key, auth.Key{ID: p.Prefix, Hash: p.Hash, Region: region, Name: name, Created: created}
}

func TestKeys(t *testing.T) {
	each(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		s := open(t, dsn, Options{})
		t0 := time.Date(2026, 5, 1, 10, 0, 0, 123456789, time.UTC)
		keyA, a := newKey(t, "global", "ci", t0)
		a.BudgetUSD, a.BudgetPeriod, a.RPM, a.TPM = 12.5, "month", 60, 100000
		_, b := newKey(t, "cn", "ci", t0.Add(time.Second))
		_, c := newKey(t, "global", "laptop", t0.Add(2*time.Second))
		for _, k := range []auth.Key{c, a, b} {
			if err := s.CreateKey(ctx, k); err != nil {
				t.Fatal(err)
			}
		}
		// Stored times keep microseconds.
		a.Created = a.Created.Truncate(time.Microsecond)
		b.Created = b.Created.Truncate(time.Microsecond)
		c.Created = c.Created.Truncate(time.Microsecond)

		bad := []struct {
			name string
			k    auth.Key
			want string
		}{
			{"same id", func() auth.Key { k := c; k.Hash[0] ^= 1; return k }(), "already exists"},
			{"same hash", func() auth.Key { k := c; k.ID = "sk-global-zzzzzzzz"; return k }(), "already exists"},
			{"no id", auth.Key{Region: "global", Hash: a.Hash}, "needs an ID"},
			{"bad region", func() auth.Key { k := newKeyOnly(t, "global"); k.Region = "Global"; return k }(), "region"},
			{"id of another region", func() auth.Key { k := newKeyOnly(t, "global"); k.Region = "cn"; return k }(), "not of region"},
			{"no hash", func() auth.Key { k := newKeyOnly(t, "global"); k.Hash = [32]byte{}; return k }(), "hash"},
			{"negative budget", func() auth.Key { k := newKeyOnly(t, "global"); k.BudgetUSD = -1; return k }(), "negative"},
			{"bad period", func() auth.Key { k := newKeyOnly(t, "global"); k.BudgetPeriod = "week"; return k }(), "period"},
		}
		for _, tc := range bad {
			if err := s.CreateKey(ctx, tc.k); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("CreateKey(%s) = %v, want an error saying %q", tc.name, err, tc.want)
			}
		}

		p, _ := auth.Parse(keyA)
		got, err := s.KeyByHash(ctx, p.Hash)
		if err != nil || got != a || !got.Matches(p) {
			t.Errorf("KeyByHash = %+v, %v; want %+v", got, err, a)
		}
		if _, err := s.KeyByHash(ctx, [32]byte{1}); !errors.Is(err, auth.ErrNotFound) {
			t.Errorf("KeyByHash(unknown) = %v, want ErrNotFound", err)
		}
		lists := []struct {
			region string
			want   []auth.Key
		}{{"", []auth.Key{a, b, c}}, {"global", []auth.Key{a, c}}, {"cn", []auth.Key{b}}, {"eu", nil}}
		for _, l := range lists {
			keys, err := s.Keys(ctx, l.region)
			if err != nil || !equalKeys(keys, l.want) {
				t.Errorf("Keys(%q) = %v, %v; want %v", l.region, ids(keys), err, ids(l.want))
			}
			if n, err := s.CountKeys(ctx, l.region); err != nil || n != len(l.want) {
				t.Errorf("CountKeys(%q) = %d, %v; want %d", l.region, n, err, len(l.want))
			}
		}

		// Revoking: by id, by name, ambiguity, already revoked, unknown.
		at := t0.Add(time.Hour).Truncate(time.Microsecond)
		if _, err := s.RevokeKey(ctx, "ci", at); err == nil || !strings.Contains(err.Error(), a.ID) || !strings.Contains(err.Error(), b.ID) {
			t.Errorf("revoking an ambiguous name: %v, want an error naming %s and %s", err, a.ID, b.ID)
		}
		if _, err := s.RevokeKey(ctx, "nobody", at); !errors.Is(err, auth.ErrNotFound) {
			t.Errorf("revoking an unknown key: %v", err)
		}
		k, err := s.RevokeKey(ctx, b.ID, at)
		if err != nil || k.ID != b.ID || !k.Revoked.Equal(at) {
			t.Errorf("RevokeKey(id) = %+v, %v", k, err)
		}
		// Now "ci" names one live key (a) and one revoked (b): a is meant.
		k, err = s.RevokeKey(ctx, "ci", at.Add(time.Minute))
		if err != nil || k.ID != a.ID || !k.Revoked.Equal(at.Add(time.Minute)) {
			t.Errorf("RevokeKey(name with one live key) = %+v, %v", k, err)
		}
		// Both revoked: the name is ambiguous again; an id still works and
		// keeps the first revocation time.
		if _, err := s.RevokeKey(ctx, "ci", at); err == nil || !strings.Contains(err.Error(), "2 keys") {
			t.Errorf("revoking a name of two revoked keys: %v", err)
		}
		k, err = s.RevokeKey(ctx, b.ID, at.Add(time.Hour))
		if err != nil || !k.Revoked.Equal(at) {
			t.Errorf("revoking again = %+v, %v; want the first time kept", k, err)
		}
		k, err = s.RevokeKey(ctx, "laptop", time.Time{})
		if err != nil || k.ID != c.ID || k.Revoked.IsZero() {
			t.Errorf("RevokeKey(name, zero time) = %+v, %v; want revoked now", k, err)
		}
		if got, err := s.KeyByHash(ctx, b.Hash); err != nil || !got.Revoked.Equal(at) {
			t.Errorf("a revoked key is still found, with its time: %+v, %v", got, err)
		}
		if n, _ := s.CountKeys(ctx, ""); n != 3 {
			t.Errorf("CountKeys after revoking all = %d, want 3: revoked keys still count (a region whose keys are all revoked stays closed)", n)
		}

		// Reopening finds the same keys.
		s.Close()
		s2 := open(t, dsn, Options{})
		keys, err := s2.Keys(ctx, "")
		if err != nil || len(keys) != 3 || keys[0].ID != a.ID || keys[0].BudgetUSD != 12.5 || keys[0].TPM != 100000 || keys[0].BudgetPeriod != "month" {
			t.Errorf("after reopening: %+v, %v", keys, err)
		}
	})
}

func newKeyOnly(t *testing.T, region string) auth.Key {
	_, k := newKey(t, region, "x", time.Now())
	return k
}

func equalKeys(a, b []auth.Key) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func ids(keys []auth.Key) []string {
	var out []string
	for _, k := range keys {
		out = append(out, k.ID)
	}
	return out
}

// TestNoKeyInClear: the SQLite files (database, WAL, shared memory) hold
// the keys' ids and hashes and never the keys or their secret part.
func TestNoKeyInClear(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "keys.db")
	s, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	var recs []auth.Key
	for i, region := range []string{"global", "cn", "global"} {
		key, k := newKey(t, region, "k"+string(rune('0'+i)), time.Now())
		if err := s.CreateKey(ctx, k); err != nil {
			t.Fatal(err)
		}
		keys, recs = append(keys, key), append(recs, k)
	}
	check := func(when string) {
		var all []byte
		for _, suffix := range []string{"", "-wal", "-shm"} {
			b, _ := os.ReadFile(path + suffix)
			all = append(all, b...)
		}
		for i, key := range keys {
			if !bytes.Contains(all, []byte(recs[i].ID)) {
				t.Fatalf("%s: the files do not hold the id %s: the check below would prove nothing", when, recs[i].ID)
			}
			secret := key[len(recs[i].ID):] // the random part after the display prefix, and the checksum
			if bytes.Contains(all, []byte(key)) || bytes.Contains(all, []byte(secret[:16])) {
				t.Errorf("%s: the database files hold key %s… in clear", when, recs[i].ID)
			}
		}
	}
	check("open") // with the WAL not checkpointed
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	check("closed")
}

// TestMigrateOnce: processes opening a new database at once create the
// schema once; a schema newer than the binary is refused.
func TestMigrateOnce(t *testing.T) {
	each(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		var wg sync.WaitGroup
		errs := make([]error, 4)
		for i := range errs {
			wg.Go(func() {
				s, err := Open(ctx, dsn)
				if err == nil {
					err = s.Close()
				}
				errs[i] = err
			})
		}
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
		s := open(t, dsn, Options{})
		var n, v int
		if err := s.db.QueryRow(`SELECT COUNT(*), MAX(version) FROM schema_version`).Scan(&n, &v); err != nil || n != SchemaVersion || v != SchemaVersion {
			t.Errorf("schema_version has %d rows up to %d (%v), want %d", n, v, err, SchemaVersion)
		}
		if _, err := s.db.Exec(s.q(`INSERT INTO schema_version (version, applied_us) VALUES (?, 0)`), SchemaVersion+1); err != nil {
			t.Fatal(err)
		}
		s.Close()
		if _, err := Open(ctx, dsn); err == nil || !strings.Contains(err.Error(), "upgrade stepflash") {
			t.Errorf("opening a newer schema: %v", err)
		}
	})
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct{ dsn, want string }{
		{"", "empty DSN"},
		{"sqlite:" + dir + "/a.db?synchronous=off", "synchronous must be normal or full"},
		{"sqlite:" + dir + "/a.db?cache=shared", `unknown option "cache"`},
		{"sqlite:", "path of an SQLite file"},
		{"sqlite::memory:", "path of an SQLite file"},
		{dir, "SQLite " + dir}, // a directory is no database file
		{"postgres://nobody@127.0.0.1:1/x?connect_timeout=2", "Postgres postgres://nobody@127.0.0.1:1/x"},
		{"postgres://u:secret@127.0.0.1:1/x?connect_timeout=2", "xxxxx"}, // the password is redacted
	} {
		s, err := Open(context.Background(), tc.dsn)
		if err == nil {
			s.Close()
			t.Errorf("Open(%q) worked", tc.dsn)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "secret") {
			t.Errorf("Open(%q) = %v, want it to say %q", tc.dsn, err, tc.want)
		}
	}
	// A plain path and sqlite:PATH?synchronous=full open; a file name with
	// spaces and URL characters is taken literally.
	for _, dsn := range []string{filepath.Join(dir, "sub dir", "a #1%.db"), "sqlite:" + filepath.Join(dir, "b.db") + "?synchronous=full"} {
		s, err := Open(context.Background(), dsn)
		if err != nil {
			t.Errorf("Open(%q): %v", dsn, err)
			continue
		}
		s.Close()
	}
	if _, err := os.Stat(filepath.Join(dir, "sub dir", "a #1%.db")); err != nil {
		t.Errorf("the database is not where the path says: %v", err)
	}
}

func TestDefaultDir(t *testing.T) {
	home, _ := os.UserHomeDir()
	want := filepath.Join(home, ".local", "share", "stepflash")
	switch runtime.GOOS {
	case "darwin":
		want = filepath.Join(home, "Library", "Application Support", "stepflash")
	case "windows":
		want = filepath.Join(os.Getenv("LocalAppData"), "stepflash")
	}
	for _, tc := range []struct{ data, xdg, want string }{
		{"/srv/sf", "/x", "/srv/sf"},
		{"", "/xdg", filepath.Join("/xdg", "stepflash")},
		{"", "relative", want}, // XDG requires absolute paths
		{"", "", want},
	} {
		t.Setenv("STEPFLASH_DATA", tc.data)
		t.Setenv("XDG_DATA_HOME", tc.xdg)
		if got := DefaultDir(); got != tc.want {
			t.Errorf("STEPFLASH_DATA=%q XDG_DATA_HOME=%q: %q, want %q", tc.data, tc.xdg, got, tc.want)
		}
	}
	if got := DSNFor("/d"); got != "sqlite:"+filepath.Join("/d", DefaultFile) {
		t.Errorf("DSNFor = %q", got)
	}
}
