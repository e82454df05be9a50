package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/stepflash/stepflash/billing"
)

var _ billing.Ledger = (*Store)(nil)

// ErrClosed is Append's answer once the store is closing.
var ErrClosed = errors.New("store: closed")

// commitTimeout bounds one batch's commit, so a database that hangs fails
// the batch instead of the writer.
const commitTimeout = 30 * time.Second

const ledgerColumns = `request_id, time_us, key_id, region, model, backend, endpoint, effort, stream, ` +
	`prompt_tokens, cached_tokens, completion_tokens, reasoning_tokens, advisor_prompt_tokens, ` +
	`advisor_completion_tokens, advisor_cost_usd, cost_usd, latency_us, status, error_code`

var nLedgerColumns = strings.Count(ledgerColumns, ",") + 1

// pending is a record waiting for its batch to commit.
type pending struct {
	rec  billing.Record
	done chan error // buffered: the writer never waits on it
}

// Append adds r to the ledger and returns once the batch holding it has
// committed: durable as the database is (see the Sync* constants; on
// Postgres, as its synchronous_commit says, on by default). Concurrent
// Appends share commits: one writer takes every record waiting (up to
// MaxBatch, after the Window) into one INSERT.
func (s *Store) Append(ctx context.Context, r billing.Record) error {
	switch {
	case r.RequestID == "":
		return errors.New("store: a ledger record needs its request id")
	case r.Model == "" || r.Endpoint == "":
		return fmt.Errorf("store: ledger record %s needs its model and endpoint", r.RequestID)
	}
	if r.Time.IsZero() {
		r.Time = time.Now()
	}
	p := &pending{rec: r, done: make(chan error, 1)}
	select {
	case <-s.quit:
		return ErrClosed
	default:
	}
	select {
	case s.appends <- p:
	case <-s.quit:
		return ErrClosed
	case <-ctx.Done():
		return fmt.Errorf("store: waiting to append %s: %w", r.RequestID, ctx.Err())
	}
	select {
	case err := <-p.done:
		return err
	case <-s.finished:
		select {
		case err := <-p.done:
			return err
		default:
			return ErrClosed
		}
	case <-ctx.Done():
		return fmt.Errorf("store: waiting for %s to commit: %w", r.RequestID, ctx.Err())
	}
}

// writer commits the ledger's records in batches until the store closes,
// then commits what is left.
func (s *Store) writer() {
	defer close(s.finished)
	batch := make([]*pending, 0, s.opts.MaxBatch)
	for {
		var first *pending
		select {
		case first = <-s.appends:
		case <-s.quit:
			for {
				select {
				case p := <-s.appends:
					batch = append(batch, p)
					if len(batch) == s.opts.MaxBatch {
						s.commit(batch)
						batch = batch[:0]
					}
				default:
					if len(batch) > 0 {
						s.commit(batch)
					}
					return
				}
			}
		}
		batch = append(batch[:0], first)
		s.gather(&batch)
		s.commit(batch)
		clear(batch)
		batch = batch[:0]
	}
}

// gather adds the records that arrive within the window (or, with no
// window, those already waiting) until the batch is full.
func (s *Store) gather(batch *[]*pending) {
	if s.opts.Window <= 0 {
		for len(*batch) < s.opts.MaxBatch {
			select {
			case p := <-s.appends:
				*batch = append(*batch, p)
			default:
				return
			}
		}
		return
	}
	t := time.NewTimer(s.opts.Window)
	defer t.Stop()
	for len(*batch) < s.opts.MaxBatch {
		select {
		case p := <-s.appends:
			*batch = append(*batch, p)
		case <-t.C:
			return
		case <-s.quit:
			return
		}
	}
}

// commit inserts a batch in one statement and tells each Append how it
// went. When the batch fails, each record is tried alone, so one bad
// record (a duplicate request id) fails only its own Append.
func (s *Store) commit(batch []*pending) {
	s.batches.Add(1)
	err := s.insert(batch)
	if err != nil && len(batch) > 1 {
		for _, p := range batch {
			p.done <- s.insert([]*pending{p})
		}
		return
	}
	for _, p := range batch {
		p.done <- err
	}
}

func (s *Store) insert(batch []*pending) error {
	ctx, cancel := context.WithTimeout(context.Background(), commitTimeout)
	defer cancel()
	var b strings.Builder
	b.WriteString(`INSERT INTO ledger (` + ledgerColumns + `) VALUES `)
	row := "(" + strings.Repeat("?, ", nLedgerColumns-1) + "?)"
	args := make([]any, 0, len(batch)*nLedgerColumns)
	for i, p := range batch {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(row)
		r := &p.rec
		args = append(args, r.RequestID, micros(r.Time), r.KeyID, r.Region, r.Model, r.Backend, r.Endpoint, r.Effort, r.Stream,
			r.PromptTokens, r.CachedTokens, r.CompletionTokens, r.ReasoningTokens, r.AdvisorPromptTokens,
			r.AdvisorCompletionTokens, r.AdvisorCostUSD, r.CostUSD, r.Latency.Microseconds(), r.Status, r.ErrorCode)
	}
	if _, err := s.db.ExecContext(ctx, s.q(b.String()), args...); err != nil {
		if len(batch) == 1 {
			return fmt.Errorf("store: ledger record %s: %w", batch[0].rec.RequestID, err)
		}
		return fmt.Errorf("store: ledger: %w", err)
	}
	return nil
}

// Spent is the total cost (USD) of keyID's requests since a time.
func (s *Store) Spent(ctx context.Context, keyID string, since time.Time) (float64, error) {
	var usd float64
	err := s.db.QueryRowContext(ctx, s.q(`SELECT COALESCE(SUM(cost_usd), 0) FROM ledger WHERE key_id = ? AND time_us >= ?`),
		keyID, micros(since)).Scan(&usd)
	return usd, err
}

// Records returns the ledger's records in time order (then request id),
// those of a request id when id is not "".
func (s *Store) Records(ctx context.Context, id string) ([]billing.Record, error) {
	rows, err := s.db.QueryContext(ctx, s.q(`SELECT `+ledgerColumns+` FROM ledger WHERE (? = '' OR request_id = ?) ORDER BY time_us, request_id`), id, id)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []billing.Record
	for rows.Next() {
		var r billing.Record
		var t, lat int64
		if err := rows.Scan(&r.RequestID, &t, &r.KeyID, &r.Region, &r.Model, &r.Backend, &r.Endpoint, &r.Effort, &r.Stream,
			&r.PromptTokens, &r.CachedTokens, &r.CompletionTokens, &r.ReasoningTokens, &r.AdvisorPromptTokens,
			&r.AdvisorCompletionTokens, &r.AdvisorCostUSD, &r.CostUSD, &lat, &r.Status, &r.ErrorCode); err != nil {
			return nil, err
		}
		r.Time, r.Latency = fromMicros(t), time.Duration(lat)*time.Microsecond
		out = append(out, r)
	}
	return out, rows.Err()
}

// Grouping of a usage report.
const (
	ByNone  = ""
	ByKey   = "key"
	ByModel = "model"
	ByDay   = "day"
)

// UsageQuery selects and groups ledger rows for a report.
type UsageQuery struct {
	// KeyID and Model select one key's or one model's rows ("": all).
	KeyID, Model string
	// Since (inclusive) and Until (exclusive) bound the rows' times; zero
	// is unbounded.
	Since, Until time.Time
	// By is ByNone (one total row), ByKey, ByModel or ByDay (UTC days).
	By string
}

// UsageRow is one group of a usage report.
type UsageRow struct {
	// Group is the key id, model or day (YYYY-MM-DD, UTC); "" for ByNone.
	Group    string `json:"group"`
	Requests int64  `json:"requests"`
	// Errors counts requests that failed or were cut (an error status or
	// an error code).
	Errors           int64   `json:"errors"`
	PromptTokens     int64   `json:"prompt_tokens"`
	CachedTokens     int64   `json:"cached_tokens"`
	CompletionTokens int64   `json:"completion_tokens"`
	ReasoningTokens  int64   `json:"reasoning_tokens"`
	CostUSD          float64 `json:"cost_usd"`
}

// Usage totals the ledger rows q selects, one row per group in group
// order. A report with no rows in range is empty.
func (s *Store) Usage(ctx context.Context, q UsageQuery) ([]UsageRow, error) {
	var group string
	switch q.By {
	case ByNone:
		group = `''`
	case ByKey:
		group = `key_id`
	case ByModel:
		group = `model`
	case ByDay:
		if s.pg {
			group = `to_char(to_timestamp(time_us / 1000000) AT TIME ZONE 'UTC', 'YYYY-MM-DD')`
		} else {
			group = `strftime('%Y-%m-%d', time_us / 1000000, 'unixepoch')`
		}
	default:
		return nil, fmt.Errorf("store: group by %q: want key, model or day", q.By)
	}
	var where []string
	var args []any
	if q.KeyID != "" {
		where, args = append(where, `key_id = ?`), append(args, q.KeyID)
	}
	if q.Model != "" {
		where, args = append(where, `model = ?`), append(args, q.Model)
	}
	if !q.Since.IsZero() {
		where, args = append(where, `time_us >= ?`), append(args, micros(q.Since))
	}
	if !q.Until.IsZero() {
		where, args = append(where, `time_us < ?`), append(args, micros(q.Until))
	}
	query := `SELECT ` + group + ` AS g, COUNT(*), ` +
		`COALESCE(SUM(CASE WHEN status >= 400 OR error_code <> '' THEN 1 ELSE 0 END), 0), ` +
		`COALESCE(SUM(prompt_tokens), 0), COALESCE(SUM(cached_tokens), 0), COALESCE(SUM(completion_tokens), 0), ` +
		`COALESCE(SUM(reasoning_tokens), 0), COALESCE(SUM(cost_usd), 0) FROM ledger`
	if len(where) > 0 {
		query += ` WHERE ` + strings.Join(where, ` AND `)
	}
	query += ` GROUP BY g ORDER BY g`
	rows, err := s.db.QueryContext(ctx, s.q(query), args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []UsageRow
	for rows.Next() {
		var r UsageRow
		if err := rows.Scan(&r.Group, &r.Requests, &r.Errors, &r.PromptTokens, &r.CachedTokens, &r.CompletionTokens,
			&r.ReasoningTokens, &r.CostUSD); err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}
