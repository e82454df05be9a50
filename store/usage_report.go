package store

import (
	"context"
	"time"

	"github.com/stepflash/stepflash/billing"
	"github.com/stepflash/stepflash/server"
)

var _ server.UsageSource = (*Store)(nil)

// LedgerRows calls each with the ledger's rows of [since, until) in time
// order (GET /v1/usage and the dashboard total them: server.UsageSource).
// It stops at the first error each returns, and returns it.
func (s *Store) LedgerRows(ctx context.Context, since, until time.Time, each func(*billing.Record) error) error {
	rows, err := s.db.QueryContext(ctx, s.q(`SELECT `+ledgerColumns+` FROM ledger WHERE time_us >= ? AND time_us < ? ORDER BY time_us, request_id`),
		micros(since), micros(until))
	if err != nil {
		return err
	}
	defer rows.Close()
	var r billing.Record
	for rows.Next() {
		var t, lat int64
		if err := rows.Scan(&r.RequestID, &t, &r.KeyID, &r.Region, &r.Model, &r.Backend, &r.Endpoint, &r.Effort, &r.Stream,
			&r.PromptTokens, &r.CachedTokens, &r.CompletionTokens, &r.ReasoningTokens, &r.AdvisorPromptTokens,
			&r.AdvisorCompletionTokens, &r.AdvisorCostUSD, &r.CostUSD, &lat, &r.Status, &r.ErrorCode); err != nil {
			return err
		}
		r.Time, r.Latency = fromMicros(t), time.Duration(lat)*time.Microsecond
		if err := each(&r); err != nil {
			return err
		}
	}
	return rows.Err()
}
