package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/stepflash/stepflash/server"
)

// DefaultResponseRetention is how long stored responses are kept unless
// the store is told otherwise: 30 days, as OpenAI keeps them.
const DefaultResponseRetention = 30 * 24 * time.Hour

// ResponseSweepInterval is how often expired responses are deleted while a
// response store is in use (besides once when it starts).
var ResponseSweepInterval = time.Hour

// sweepBatch is the most expired rows one DELETE takes, so that a sweep
// never holds the write lock long (the ledger's writer shares it).
const sweepBatch = 1000

// Responses is the store's table of the Responses API's stored responses:
// a server.ResponseStore. A response is kept for the retention the store
// was given, counted from its CreatedAt: an older one is not found (Get
// and Delete answer server.ErrResponseNotFound) and is deleted, in batches,
// when the response store starts and then every ResponseSweepInterval.
// Writes are as durable as the ledger's (docs/ledger.md): a Put that
// returned survives the process being killed.
type Responses struct {
	s         *Store
	retention time.Duration
}

var _ server.ResponseStore = (*Responses)(nil)

// Responses returns the store's response store, keeping responses for
// retention (0: DefaultResponseRetention), and starts deleting expired ones
// until the Store closes. A Store has one: a second call is an error.
func (s *Store) Responses(retention time.Duration) (*Responses, error) {
	switch {
	case retention < 0:
		return nil, fmt.Errorf("store: negative response retention %v", retention)
	case retention == 0:
		retention = DefaultResponseRetention
	}
	s.sweepMu.Lock()
	defer s.sweepMu.Unlock()
	if s.responses != nil {
		return nil, errors.New("store: the response store is already in use")
	}
	select {
	case <-s.quit:
		return nil, errors.New("store: closed")
	default:
	}
	r := &Responses{s: s, retention: retention}
	s.responses = r
	s.stopSweep = make(chan struct{})
	s.sweepDone = make(chan struct{})
	go r.sweeper(s.stopSweep, s.sweepDone)
	return r, nil
}

// cutoff is the creation time (Unix microseconds) before which a response
// has expired.
func (r *Responses) cutoff() int64 { return time.Now().Add(-r.retention).UnixMicro() }

// Put keeps resp under its ID, replacing a response stored under it. A
// zero CreatedAt is now.
func (r *Responses) Put(ctx context.Context, resp server.StoredResponse) error {
	if resp.ID == "" {
		return errors.New("store: a stored response needs an ID")
	}
	created := resp.CreatedAt
	if created.IsZero() {
		created = time.Now()
	}
	_, err := r.s.db.ExecContext(ctx, r.s.q(`INSERT INTO responses (id, key_id, created_us, response, conversation) VALUES (?, ?, ?, ?, ?)
ON CONFLICT (id) DO UPDATE SET key_id = excluded.key_id, created_us = excluded.created_us, response = excluded.response, conversation = excluded.conversation`),
		resp.ID, resp.KeyID, created.UnixMicro(), string(resp.Response), string(resp.Conversation))
	if err != nil {
		return fmt.Errorf("store: keeping response %s: %w", resp.ID, err)
	}
	return nil
}

// Get returns the response stored under id, or server.ErrResponseNotFound
// (unknown, deleted or expired). It does not check the key: the server
// compares StoredResponse.KeyID with the caller's.
func (r *Responses) Get(ctx context.Context, id string) (*server.StoredResponse, error) {
	var sr server.StoredResponse
	var created int64
	var resp, conv string
	err := r.s.db.QueryRowContext(ctx, r.s.q(`SELECT id, key_id, created_us, response, conversation FROM responses WHERE id = ? AND created_us >= ?`),
		id, r.cutoff()).Scan(&sr.ID, &sr.KeyID, &created, &resp, &conv)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return nil, server.ErrResponseNotFound
	case err != nil:
		return nil, fmt.Errorf("store: reading response %s: %w", id, err)
	}
	sr.CreatedAt = time.UnixMicro(created).UTC()
	sr.Response, sr.Conversation = []byte(resp), []byte(conv)
	return &sr, nil
}

// Delete removes the response stored under id, or returns
// server.ErrResponseNotFound (unknown, already deleted or expired).
func (r *Responses) Delete(ctx context.Context, id string) error {
	res, err := r.s.db.ExecContext(ctx, r.s.q(`DELETE FROM responses WHERE id = ? AND created_us >= ?`), id, r.cutoff())
	if err != nil {
		return fmt.Errorf("store: deleting response %s: %w", id, err)
	}
	if n, err := res.RowsAffected(); err == nil && n == 0 {
		return server.ErrResponseNotFound
	}
	return nil
}

// Sweep deletes the expired responses, sweepBatch rows per statement, and
// returns how many it deleted.
func (r *Responses) Sweep(ctx context.Context) (int64, error) {
	var total int64
	for {
		res, err := r.s.db.ExecContext(ctx, r.s.q(`DELETE FROM responses WHERE id IN (SELECT id FROM responses WHERE created_us < ? LIMIT ?)`),
			r.cutoff(), sweepBatch)
		if err != nil {
			return total, fmt.Errorf("store: deleting expired responses: %w", err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return total, err
		}
		total += n
		if n < sweepBatch {
			return total, nil
		}
	}
}

// sweeper sweeps at once and then every ResponseSweepInterval until stop
// closes. A failed sweep is tried again at the next tick: expired
// responses are never returned meanwhile.
func (r *Responses) sweeper(stop, done chan struct{}) {
	defer close(done)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-stop:
			cancel()
		case <-done:
		}
	}()
	t := time.NewTicker(ResponseSweepInterval)
	defer t.Stop()
	for {
		r.Sweep(ctx)
		select {
		case <-t.C:
		case <-stop:
			return
		}
	}
}

// sweepState is a Store's response store and its sweeper.
type sweepState struct {
	sweepMu              sync.Mutex
	responses            *Responses
	stopSweep, sweepDone chan struct{}
}

// stopSweeper stops the response store's sweeper, if it runs, and waits
// for it.
func (s *Store) stopSweeper() {
	s.sweepMu.Lock()
	stop, done := s.stopSweep, s.sweepDone
	s.stopSweep = nil
	s.sweepMu.Unlock()
	if stop != nil {
		close(stop)
		<-done
	}
}
