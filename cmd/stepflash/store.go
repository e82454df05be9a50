package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/stepflash/stepflash/backend"
	"github.com/stepflash/stepflash/billing"
	"github.com/stepflash/stepflash/server"
	"github.com/stepflash/stepflash/store"
)

// storeOptions name the database of keys and the usage ledger: --data DIR
// (its stepflash.db) or --db DSN. serve, keys and usage share them.
type storeOptions struct {
	dataDir string
	dataSet bool // --data was given
	dsn     string
	dbSet   bool // --db was given (not only $STEPFLASH_DB)
	// ledger is where serve records every request (set once it opened
	// the store).
	ledger billing.Ledger
	// responsesOff (serve --responses-store=false) keeps /v1/responses
	// stateless; responsesDays is how long stored responses are kept.
	responsesOff  bool
	responsesDays int
}

// storeFlagsHelp is what the commands' help says of --data and --db.
const storeFlagsHelp = `The keys and the usage ledger live in an SQLite file, stepflash.db in the
data dir (--data, default $STEPFLASH_DATA, else $XDG_DATA_HOME/stepflash, else
~/.local/share/stepflash), or in the database --db names (default
$STEPFLASH_DB): sqlite:PATH, or postgres://USER:PASSWORD@HOST:PORT/DB (several
gateway replicas share one). $STEPFLASH_DB, when set, wins over the data dir
unless --data is given; giving both --data and --db is an error.
`

// registerStoreFlags adds --data and --db to fs, with their defaults read
// now: $STEPFLASH_DATA (store.DefaultDir) and $STEPFLASH_DB. The default
// DSN is not printed in the help, since it may hold a password.
func registerStoreFlags(fs *flag.FlagSet, o *storeOptions) {
	o.dataDir = store.DefaultDir()
	o.dsn = os.Getenv("STEPFLASH_DB")
	fs.Func("data", "data dir holding the keys and the usage ledger (stepflash.db) (default "+o.dataDir+")", func(s string) error {
		if s == "" {
			return errors.New("empty directory")
		}
		o.dataDir, o.dataSet = s, true
		return nil
	})
	fs.Func("db", "database of keys and ledger instead of the data dir's: sqlite:PATH or postgres://… (default $STEPFLASH_DB)", func(s string) error {
		o.dsn, o.dbSet = s, s != ""
		return nil
	})
}

// registerResponsesFlags adds serve's --responses-store and
// --responses-days to fs.
func registerResponsesFlags(fs *flag.FlagSet, o *storeOptions) {
	o.responsesDays = int(store.DefaultResponseRetention / (24 * time.Hour))
	fs.BoolFunc("responses-store", "keep /v1/responses answers in the store (--data/--db) for previous_response_id and GET/DELETE /v1/responses/{id}, unless a request says store: false; --responses-store=false: stateless, every response says store: false (default true)", func(s string) error {
		on, err := strconv.ParseBool(s)
		if err != nil {
			return errors.New("want true or false")
		}
		o.responsesOff = !on
		return nil
	})
	fs.Func("responses-days", fmt.Sprintf("days a stored response is kept (then deleted), 1 to %d (default %d)", maxResponsesDays, o.responsesDays), func(s string) error {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > maxResponsesDays {
			return fmt.Errorf("want a number of days from 1 to %d", maxResponsesDays)
		}
		o.responsesDays = n
		return nil
	})
}

// maxResponsesDays bounds --responses-days (100 years).
const maxResponsesDays = 36500

// responseStore is what serve's /v1/responses keeps responses in: st's
// table, or nil (stateless) with --responses-store=false.
func (o *storeOptions) responseStore(st *store.Store) (server.ResponseStore, error) {
	if o.responsesOff {
		return nil, nil
	}
	days := o.responsesDays
	if days == 0 {
		days = int(store.DefaultResponseRetention / (24 * time.Hour))
	}
	r, err := st.Responses(time.Duration(days) * 24 * time.Hour)
	if err != nil {
		return nil, err
	}
	return r, nil
}

// DSN is the database the options name: --db, else --data's, else
// $STEPFLASH_DB, else the default data dir's. Both flags together are an
// error; an explicit --data wins over $STEPFLASH_DB.
func (o *storeOptions) DSN() (string, error) {
	if o.dbSet && o.dataSet {
		return "", errors.New("give --data or --db, not both")
	}
	if o.dsn != "" && !o.dataSet {
		return o.dsn, nil
	}
	if o.dataDir == "" {
		return store.DSNFor(store.DefaultDir()), nil
	}
	return store.DSNFor(o.dataDir), nil
}

// openStore opens (creating or migrating it as needed) the key store and
// ledger the options name.
func (o *storeOptions) openStore(ctx context.Context) (*store.Store, error) {
	dsn, err := o.DSN()
	if err != nil {
		return nil, err
	}
	return store.Open(ctx, dsn)
}

// recorded is a served model's backend middleware: the ledger's Recording
// outermost, so that it records every request (those that inner
// middleware refuses too) and sees the usage priced, then mws.
func (o *storeOptions) recorded(name string, mws ...backend.Middleware) []backend.Middleware {
	if o.ledger == nil {
		return mws
	}
	return append([]backend.Middleware{billing.Recording(o.ledger, name)}, mws...)
}

// meter registers the ledger's counters on srv's /metrics, per served
// model and key (key "" where keys are not enforced), and returns what
// counts each record the ledger made durable.
func meter(srv *server.Server) func(billing.Record) {
	reqs := srv.Counter("stepflash_billed_requests_total", "Requests in the usage ledger, by served model, key and HTTP status.", "model", "key", "code")
	toks := srv.Counter("stepflash_billed_tokens_total", "Tokens in the usage ledger, by served model, key and type: prompt (cached ones included), cached (prompt tokens billed at the cache-hit price), completion (reasoning included), reasoning.", "model", "key", "type")
	cost := srv.Counter("stepflash_cost_usd_total", "Cost in USD in the usage ledger, by served model and key.", "model", "key")
	return func(r billing.Record) {
		reqs(1, r.Model, r.KeyID, strconv.Itoa(r.Status))
		for _, t := range []struct {
			typ string
			n   int
		}{{"prompt", r.PromptTokens}, {"cached", r.CachedTokens}, {"completion", r.CompletionTokens}, {"reasoning", r.ReasoningTokens}} {
			toks(float64(t.n), r.Model, r.KeyID, t.typ)
		}
		cost(r.CostUSD, r.Model, r.KeyID)
	}
}
