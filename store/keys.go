package store

import (
	"context"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/stepflash/stepflash/auth"
)

var _ auth.Store = (*Store)(nil)

const keyColumns = `id, hash, region, name, budget_usd, budget_period, rpm, tpm, created_us, revoked_us, operator`

// CreateKey adds k. An ID or hash already stored is an error, as is a key
// that does not check out (region, period, negative limits).
func (s *Store) CreateKey(ctx context.Context, k auth.Key) error {
	switch {
	case k.ID == "":
		return errors.New("store: a key needs an ID (its display prefix)")
	case !auth.ValidRegion(k.Region):
		return fmt.Errorf("store: region %q: want 1 to %d lowercase letters and digits", k.Region, auth.MaxRegionLen)
	case !strings.HasPrefix(k.ID, "sk-"+k.Region+"-"):
		return fmt.Errorf("store: key ID %q is not of region %q", k.ID, k.Region)
	case k.Hash == [32]byte{}:
		return errors.New("store: a key needs its hash")
	case k.BudgetUSD < 0 || k.RPM < 0 || k.TPM < 0:
		return errors.New("store: budget, rpm and tpm cannot be negative")
	}
	switch k.BudgetPeriod {
	case "", "day", "month", "total":
	default:
		return fmt.Errorf("store: budget period %q: want day, month or total", k.BudgetPeriod)
	}
	if k.Created.IsZero() {
		k.Created = time.Now()
	}
	var revoked any
	if !k.Revoked.IsZero() {
		revoked = micros(k.Revoked)
	}
	_, err := s.db.ExecContext(ctx, s.q(`INSERT INTO keys (`+keyColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`),
		k.ID, hex.EncodeToString(k.Hash[:]), k.Region, k.Name, k.BudgetUSD, k.BudgetPeriod, k.RPM, k.TPM, micros(k.Created), revoked, k.Operator)
	if err != nil {
		var n int
		if qerr := s.db.QueryRowContext(ctx, s.q(`SELECT COUNT(*) FROM keys WHERE id = ? OR hash = ?`), k.ID, hex.EncodeToString(k.Hash[:])).Scan(&n); qerr == nil && n > 0 {
			return fmt.Errorf("store: a key with ID %s (or the same hash) already exists", k.ID)
		}
		return fmt.Errorf("store: %w", err)
	}
	return nil
}

type scanner interface{ Scan(dest ...any) error }

func scanKey(row scanner) (auth.Key, error) {
	var k auth.Key
	var hash string
	var created int64
	var revoked sql.NullInt64
	if err := row.Scan(&k.ID, &hash, &k.Region, &k.Name, &k.BudgetUSD, &k.BudgetPeriod, &k.RPM, &k.TPM, &created, &revoked, &k.Operator); err != nil {
		return k, err
	}
	b, err := hex.DecodeString(hash)
	if err != nil || len(b) != len(k.Hash) {
		return k, fmt.Errorf("store: key %s has a corrupt hash", k.ID)
	}
	copy(k.Hash[:], b)
	k.Created = fromMicros(created)
	if revoked.Valid {
		k.Revoked = fromMicros(revoked.Int64)
	}
	return k, nil
}

// KeyByHash returns the key with this hash, revoked or not, or
// auth.ErrNotFound.
func (s *Store) KeyByHash(ctx context.Context, hash [32]byte) (auth.Key, error) {
	k, err := scanKey(s.db.QueryRowContext(ctx, s.q(`SELECT `+keyColumns+` FROM keys WHERE hash = ?`), hex.EncodeToString(hash[:])))
	if errors.Is(err, sql.ErrNoRows) {
		return auth.Key{}, auth.ErrNotFound
	}
	return k, err
}

// Keys lists the keys of region ("" for all), oldest first.
func (s *Store) Keys(ctx context.Context, region string) ([]auth.Key, error) {
	return s.queryKeys(ctx, s.db, `SELECT `+keyColumns+` FROM keys WHERE (? = '' OR region = ?) ORDER BY created_us, id`, region, region)
}

type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

func (s *Store) queryKeys(ctx context.Context, db querier, query string, args ...any) ([]auth.Key, error) {
	rows, err := db.QueryContext(ctx, s.q(query), args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []auth.Key
	for rows.Next() {
		k, err := scanKey(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, k)
	}
	return out, rows.Err()
}

// RevokeKey revokes the key with this ID or, when no ID matches, the key
// with this name: the only live one of that name, or else the only one.
// A key already revoked keeps its first revocation time and is returned
// as it is. auth.ErrNotFound when nothing matches; an error naming the IDs
// when a name matches several.
func (s *Store) RevokeKey(ctx context.Context, idOrName string, at time.Time) (auth.Key, error) {
	if at.IsZero() {
		at = time.Now()
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return auth.Key{}, err
	}
	defer tx.Rollback()
	keys, err := s.queryKeys(ctx, tx, `SELECT `+keyColumns+` FROM keys WHERE id = ?`, idOrName)
	if err != nil {
		return auth.Key{}, err
	}
	if len(keys) == 0 {
		if keys, err = s.queryKeys(ctx, tx, `SELECT `+keyColumns+` FROM keys WHERE name = ? ORDER BY created_us, id`, idOrName); err != nil {
			return auth.Key{}, err
		}
		var live []auth.Key
		for _, k := range keys {
			if k.Revoked.IsZero() {
				live = append(live, k)
			}
		}
		if len(live) > 0 {
			keys = live
		}
		if len(keys) > 1 {
			ids := make([]string, len(keys))
			for i, k := range keys {
				ids[i] = k.ID
			}
			return auth.Key{}, fmt.Errorf("%d keys are named %q (%s): give the ID of the one to revoke", len(keys), idOrName, strings.Join(ids, ", "))
		}
	}
	if len(keys) == 0 {
		return auth.Key{}, auth.ErrNotFound
	}
	k := keys[0]
	if !k.Revoked.IsZero() {
		return k, nil
	}
	if _, err := tx.ExecContext(ctx, s.q(`UPDATE keys SET revoked_us = ? WHERE id = ? AND revoked_us IS NULL`), micros(at), k.ID); err != nil {
		return auth.Key{}, err
	}
	if err := tx.Commit(); err != nil {
		return auth.Key{}, err
	}
	k.Revoked = fromMicros(micros(at))
	return k, nil
}

// CountKeys is the number of keys ever issued for region ("" for all),
// revoked ones included.
func (s *Store) CountKeys(ctx context.Context, region string) (int, error) {
	var n int
	err := s.db.QueryRowContext(ctx, s.q(`SELECT COUNT(*) FROM keys WHERE (? = '' OR region = ?)`), region, region).Scan(&n)
	return n, err
}
