// Package store keeps API keys and the usage ledger in SQLite or Postgres.
//
// One Store implements auth.Store (the keys: a SHA-256 hash and a display
// prefix, never the key in clear) and billing.Ledger (one row per request,
// appended by a group-committing writer), and holds the Responses API's
// stored responses (Store.Responses, a server.ResponseStore). SQLite (modernc.org/sqlite, no
// cgo, WAL) is the default, a file in the data dir; a Postgres DSN moves
// both to a server that several gateway replicas share. docs/ledger.md has
// the schema and what each backend survives.
package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx"
	_ "modernc.org/sqlite"             // database/sql driver "sqlite"
)

// DefaultFile is the SQLite file's name in the data dir.
const DefaultFile = "stepflash.db"

// DefaultDir is the per-user data dir: $STEPFLASH_DATA, else
// $XDG_DATA_HOME/stepflash, else the platform's: ~/.local/share/stepflash,
// ~/Library/Application Support/stepflash on macOS, %LocalAppData%\stepflash
// on Windows.
func DefaultDir() string {
	if d := os.Getenv("STEPFLASH_DATA"); d != "" {
		return d
	}
	if d := os.Getenv("XDG_DATA_HOME"); d != "" && filepath.IsAbs(d) {
		return filepath.Join(d, "stepflash")
	}
	home, _ := os.UserHomeDir()
	switch runtime.GOOS {
	case "windows":
		if d := os.Getenv("LocalAppData"); d != "" {
			return filepath.Join(d, "stepflash")
		}
		return filepath.Join(home, "AppData", "Local", "stepflash")
	case "darwin", "ios":
		return filepath.Join(home, "Library", "Application Support", "stepflash")
	}
	if home == "" {
		return filepath.Join(os.TempDir(), "stepflash-data")
	}
	return filepath.Join(home, ".local", "share", "stepflash")
}

// DSNFor is the DSN of the default SQLite file in dir.
func DSNFor(dir string) string { return "sqlite:" + filepath.Join(dir, DefaultFile) }

// Synchronous levels of an SQLite store (the DSN's ?synchronous=).
const (
	// SyncNormal: in WAL mode a commit is written to the WAL but not
	// fsynced; it survives the process being killed (kill -9, a crash, an
	// OOM kill), not a power cut or kernel crash, which can lose the last
	// commits (never corrupt the file). The default: see docs/ledger.md.
	SyncNormal = "normal"
	// SyncFull: every commit fsyncs the WAL; it survives a power cut too,
	// on a disk that honours fsync.
	SyncFull = "full"
)

// Options tune a Store; the zero value takes the defaults.
type Options struct {
	// Window is how long the ledger's writer waits for more records after
	// the first of a batch before it commits (default DefaultWindow).
	// Records arriving while a commit runs join the next batch anyway.
	Window time.Duration
	// MaxBatch is the most records one commit takes (default 256).
	MaxBatch int
}

// DefaultWindow is the ledger writer's default batching window.
const DefaultWindow = 0

// Store is a key store and usage ledger. It is safe for concurrent use.
type Store struct {
	db   *sql.DB
	pg   bool // Postgres (else SQLite)
	desc string
	sync string // SQLite's synchronous level

	opts     Options
	appends  chan *pending
	quit     chan struct{}
	finished chan struct{}
	close    sync.Once
	closeErr error
	batches  atomic.Int64 // commits of the ledger writer, for tests

	stopCkpt, ckptDone chan struct{} // SQLite's checkpointer

	sweepState // the Responses API's stored responses (responses.go)
}

// checkpointInterval is how often an SQLite store copies its WAL into the
// database file.
const checkpointInterval = time.Second

// checkpointer checkpoints an SQLite store's WAL every checkpointInterval
// (PASSIVE: it never waits for, nor blocks, the writer), and truncates it
// when the store closes.
func (s *Store) checkpointer() {
	defer close(s.ckptDone)
	t := time.NewTicker(checkpointInterval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			s.db.Exec(`PRAGMA wal_checkpoint(PASSIVE)`)
		case <-s.stopCkpt:
			s.db.Exec(`PRAGMA wal_checkpoint(TRUNCATE)`)
			return
		}
	}
}

// Open opens (creating and migrating as needed) the store a DSN names:
// a file path or sqlite:PATH[?synchronous=normal|full] (SQLite, the
// directory created), or postgres://… / postgresql://… (Postgres, any
// libpq URL pgx takes).
func Open(ctx context.Context, dsn string) (*Store, error) {
	return OpenOptions(ctx, dsn, Options{})
}

// OpenOptions is Open with Options.
func OpenOptions(ctx context.Context, dsn string, opts Options) (*Store, error) {
	if opts.Window < 0 {
		return nil, fmt.Errorf("store: negative batching window %v", opts.Window)
	}
	if opts.MaxBatch <= 0 {
		opts.MaxBatch = 256
	}
	s := &Store{opts: opts}
	var err error
	switch {
	case strings.TrimSpace(dsn) == "":
		return nil, errors.New("store: empty DSN: give a file path, sqlite:PATH or postgres://…")
	case strings.HasPrefix(dsn, "postgres://"), strings.HasPrefix(dsn, "postgresql://"):
		err = s.openPostgres(dsn)
	default:
		err = s.openSQLite(dsn)
	}
	if err != nil {
		return nil, err
	}
	if err := s.db.PingContext(ctx); err != nil {
		s.db.Close()
		return nil, fmt.Errorf("store: %s: %w", s.desc, err)
	}
	if err := s.migrate(ctx); err != nil {
		s.db.Close()
		return nil, fmt.Errorf("store: %s: %w", s.desc, err)
	}
	s.appends = make(chan *pending, 4*opts.MaxBatch)
	s.quit = make(chan struct{})
	s.finished = make(chan struct{})
	go s.writer()
	if !s.pg {
		s.stopCkpt = make(chan struct{})
		s.ckptDone = make(chan struct{})
		go s.checkpointer()
	}
	return s, nil
}

func (s *Store) openPostgres(dsn string) error {
	u, err := url.Parse(dsn)
	if err != nil {
		return fmt.Errorf("store: bad Postgres URL: %v", err)
	}
	s.pg = true
	s.desc = "Postgres " + u.Redacted()
	s.db, err = sql.Open("pgx", dsn)
	if err != nil {
		return fmt.Errorf("store: %s: %w", s.desc, err)
	}
	s.db.SetMaxIdleConns(4)
	return nil
}

func (s *Store) openSQLite(dsn string) error {
	path, query, _ := strings.Cut(strings.TrimPrefix(dsn, "sqlite:"), "?")
	s.sync = SyncNormal
	q, err := url.ParseQuery(query)
	if err != nil {
		return fmt.Errorf("store: %q: bad options: %v", dsn, err)
	}
	for k, v := range q {
		switch {
		case k == "synchronous" && len(v) == 1 && (v[0] == SyncNormal || v[0] == SyncFull):
			s.sync = v[0]
		case k == "synchronous":
			return fmt.Errorf("store: %q: synchronous must be %s or %s", dsn, SyncNormal, SyncFull)
		default:
			return fmt.Errorf("store: %q: unknown option %q (SQLite takes synchronous=%s|%s)", dsn, k, SyncNormal, SyncFull)
		}
	}
	if path == "" || path == ":memory:" || strings.HasPrefix(path, "file:") {
		return fmt.Errorf("store: %q: want the path of an SQLite file", dsn)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("store: %w", err)
	}
	s.desc = "SQLite " + path
	// busy_timeout: another process (stepflash keys beside a running
	// server) may hold the write lock for a moment. _txlock=immediate takes
	// it at BEGIN, so a transaction never fails upgrading a read lock.
	params := url.Values{}
	params.Add("_pragma", "busy_timeout(10000)")
	params.Add("_pragma", "journal_mode(WAL)")
	params.Add("_pragma", "synchronous("+strings.ToUpper(s.sync)+")")
	// Checkpoints (copying the WAL into the database file, with an fsync)
	// run in the background (checkpointer), not in the commit that
	// happens to fill the WAL.
	params.Add("_pragma", "wal_autocheckpoint(0)")
	params.Add("_txlock", "immediate")
	s.db, err = sql.Open("sqlite", "file:"+(&url.URL{Path: path}).EscapedPath()+"?"+params.Encode())
	if err != nil {
		return fmt.Errorf("store: %s: %w", s.desc, err)
	}
	return nil
}

// String says which database the store is, without passwords.
func (s *Store) String() string {
	if s.pg {
		return s.desc
	}
	return s.desc + " (WAL, synchronous=" + s.sync + ")"
}

// Close stops the ledger's writer after it has committed every record
// already handed to it, and closes the database.
func (s *Store) Close() error {
	s.close.Do(func() {
		close(s.quit)
		s.stopSweeper()
		<-s.finished
		if s.stopCkpt != nil {
			close(s.stopCkpt)
			<-s.ckptDone
		}
		s.closeErr = s.db.Close()
	})
	return s.closeErr
}

// q rewrites a query's ? placeholders as Postgres's $1, $2, ….
func (s *Store) q(query string) string {
	if !s.pg {
		return query
	}
	var b strings.Builder
	n := 0
	for i := 0; i < len(query); i++ {
		if query[i] == '?' {
			n++
			b.WriteString("$" + strconv.Itoa(n))
			continue
		}
		b.WriteByte(query[i])
	}
	return b.String()
}

// migrations are the schema's versions, applied in order, each once. The
// same SQL serves both databases: SQLite reads BIGINT, BOOLEAN and DOUBLE
// PRECISION by affinity. Times are Unix microseconds (UTC), money is USD.
var migrations = []string{
	1: `
CREATE TABLE keys (
	id            TEXT PRIMARY KEY,
	hash          TEXT NOT NULL UNIQUE,
	region        TEXT NOT NULL,
	name          TEXT NOT NULL,
	budget_usd    DOUBLE PRECISION NOT NULL DEFAULT 0,
	budget_period TEXT NOT NULL DEFAULT '' CHECK (budget_period IN ('', 'day', 'month', 'total')),
	rpm           BIGINT NOT NULL DEFAULT 0,
	tpm           BIGINT NOT NULL DEFAULT 0,
	created_us    BIGINT NOT NULL,
	revoked_us    BIGINT
);
CREATE INDEX keys_name ON keys (name);
CREATE TABLE ledger (
	request_id                TEXT PRIMARY KEY,
	time_us                   BIGINT NOT NULL,
	key_id                    TEXT NOT NULL DEFAULT '',
	region                    TEXT NOT NULL DEFAULT '',
	model                     TEXT NOT NULL,
	backend                   TEXT NOT NULL DEFAULT '',
	endpoint                  TEXT NOT NULL,
	effort                    TEXT NOT NULL DEFAULT '',
	stream                    BOOLEAN NOT NULL,
	prompt_tokens             BIGINT NOT NULL DEFAULT 0,
	cached_tokens             BIGINT NOT NULL DEFAULT 0,
	completion_tokens         BIGINT NOT NULL DEFAULT 0,
	reasoning_tokens          BIGINT NOT NULL DEFAULT 0,
	advisor_prompt_tokens     BIGINT NOT NULL DEFAULT 0,
	advisor_completion_tokens BIGINT NOT NULL DEFAULT 0,
	advisor_cost_usd          DOUBLE PRECISION NOT NULL DEFAULT 0,
	cost_usd                  DOUBLE PRECISION NOT NULL DEFAULT 0,
	latency_us                BIGINT NOT NULL,
	status                    INTEGER NOT NULL,
	error_code                TEXT NOT NULL DEFAULT ''
);
CREATE INDEX ledger_key_time ON ledger (key_id, time_us);
CREATE INDEX ledger_time ON ledger (time_us);
`,
	// The Responses API's stored responses (responses.go): the Response
	// object as sent and the conversation a follow-up continues, as JSON.
	2: `
CREATE TABLE responses (
	id           TEXT PRIMARY KEY,
	key_id       TEXT NOT NULL DEFAULT '',
	created_us   BIGINT NOT NULL,
	response     TEXT NOT NULL,
	conversation TEXT NOT NULL
);
CREATE INDEX responses_created ON responses (created_us);
`,
	// Operator keys (auth.Key.Operator) may read the whole ledger through
	// GET /v1/usage and the dashboard.
	3: `
ALTER TABLE keys ADD COLUMN operator BOOLEAN NOT NULL DEFAULT FALSE;
`,
}

// SchemaVersion is the schema version this build writes.
var SchemaVersion = len(migrations) - 1

// migrate brings the schema to SchemaVersion in one transaction that holds
// the database's write lock (SQLite's BEGIN IMMEDIATE, a Postgres advisory
// lock), so processes opening one database at once migrate it once.
func (s *Store) migrate(ctx context.Context) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if s.pg {
		if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock(7318009412)`); err != nil {
			return err
		}
	}
	if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, applied_us BIGINT NOT NULL)`); err != nil {
		return err
	}
	var have int
	if err := tx.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_version`).Scan(&have); err != nil {
		return err
	}
	if have > SchemaVersion {
		return fmt.Errorf("the database's schema is version %d, newer than this stepflash knows (%d): upgrade stepflash", have, SchemaVersion)
	}
	if have == SchemaVersion {
		return nil
	}
	for v := have + 1; v <= SchemaVersion; v++ {
		for _, stmt := range strings.Split(migrations[v], ";") {
			if strings.TrimSpace(stmt) == "" {
				continue
			}
			if _, err := tx.ExecContext(ctx, stmt); err != nil {
				return fmt.Errorf("schema version %d: %w", v, err)
			}
		}
		if _, err := tx.ExecContext(ctx, s.q(`INSERT INTO schema_version (version, applied_us) VALUES (?, ?)`), v, time.Now().UnixMicro()); err != nil {
			return err
		}
	}
	return tx.Commit()
}

// micros is t in Unix microseconds; the zero time is 0.
func micros(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMicro()
}

// fromMicros is the UTC time of Unix microseconds; 0 is the zero time.
func fromMicros(us int64) time.Time {
	if us == 0 {
		return time.Time{}
	}
	return time.UnixMicro(us).UTC()
}
