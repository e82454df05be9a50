package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stepflash/stepflash/api"
	"github.com/stepflash/stepflash/internal/pgtest"
	"github.com/stepflash/stepflash/internal/testmodels"
	"github.com/stepflash/stepflash/sse"
	"github.com/stepflash/stepflash/store"
)

// Tests never write into the user's data dir: a serve, keys or usage run
// without --data or --db (and the serve processes tests start) uses a
// scratch one.
func init() {
	if os.Getenv("STEPFLASH_DATA") == "" {
		os.Setenv("STEPFLASH_DATA", filepath.Join(os.TempDir(), "stepflash-test-data"))
	}
}

// crashReply is what a client of the crash test saw.
type crashReply struct {
	id     string
	stream bool
	usage  *api.Usage // nil: the client never received usage
}

// TestLedgerCrash is issue 9's crash test: 200 requests (streamed and not,
// chat and completions) under load against a real `stepflash serve`
// process, kill -9 while they run, restart it on the same database: every
// request whose client received usage has exactly one ledger row, with the
// same token counts and cost. SQLite (the data dir) and Postgres.
func TestLedgerCrash(t *testing.T) {
	model := testmodels.Path(t, "stories260K.gguf")
	for _, db := range []struct {
		name string
		args func(t *testing.T) ([]string, string)
	}{
		{"sqlite", func(t *testing.T) ([]string, string) {
			dir := t.TempDir()
			return []string{"--data", dir}, store.DSNFor(dir)
		}},
		{"postgres", func(t *testing.T) ([]string, string) {
			dsn := pgtest.DSN(t)
			return []string{"--db", dsn}, dsn
		}},
	} {
		t.Run(db.name, func(t *testing.T) {
			where, dsn := db.args(t)
			serve := append([]string{"serve", "-m", model, "--addr", "127.0.0.1:0", "--quiet", "-t", "1", "--parallel", "8", "-c", "256"}, where...)
			p := startProcess(t, serve...)

			const total, clients, killAfter = 200, 32, 150
			var (
				mu      sync.Mutex
				replies []crashReply
				done    atomic.Int32
				next    atomic.Int32
				killed  = make(chan struct{})
				once    sync.Once
			)
			kill := func() {
				once.Do(func() {
					p.cmd.Process.Kill() // SIGKILL
					close(killed)
				})
			}
			hc := &http.Client{Timeout: 30 * time.Second}
			var wg sync.WaitGroup
			for c := range clients {
				wg.Go(func() {
					rng := rand.New(rand.NewPCG(uint64(c), 9))
					for next.Add(1) <= total {
						r, _ := crashRequest(hc, p.base, rng)
						mu.Lock()
						replies = append(replies, r)
						mu.Unlock()
						if r.usage != nil && done.Add(1) == killAfter {
							kill()
						}
					}
				})
			}
			wg.Wait()
			kill()
			<-killed
			p.cmd.Wait()

			// Restart on the same database: it opens, and records anew.
			p2 := startProcess(t, serve...)
			after, err := crashRequest(hc, p2.base, rand.New(rand.NewPCG(1, 2)))
			if err != nil || after.usage == nil {
				t.Fatalf("after the restart: %+v, %v\n%s", after, err, p2.log.String())
			}
			replies = append(replies, after)

			st, err := store.Open(context.Background(), dsn)
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			recs, err := st.Records(context.Background(), "")
			if err != nil {
				t.Fatal(err)
			}
			rows := map[string]int{}
			for _, r := range recs {
				rows[r.RequestID]++
			}
			withUsage, streamed := 0, 0
			for _, r := range replies {
				if r.usage == nil {
					continue
				}
				withUsage++
				if r.stream {
					streamed++
				}
				got, err := st.Records(context.Background(), r.id)
				if err != nil || len(got) != 1 || rows[r.id] != 1 {
					t.Errorf("request %s received usage but has %d rows (%v)", r.id, rows[r.id], err)
					continue
				}
				g, u := got[0], r.usage
				if g.PromptTokens != u.PromptTokens || g.CachedTokens != u.PromptTokensDetails.CachedTokens ||
					g.CompletionTokens != u.CompletionTokens || g.ReasoningTokens != u.CompletionTokensDetails.ReasoningTokens ||
					g.CostUSD != u.Cost || g.Status != 200 || g.ErrorCode != "" || g.Stream != r.stream {
					t.Errorf("request %s: row %+v, client's usage %+v", r.id, g, u)
				}
			}
			for id, n := range rows {
				if n != 1 {
					t.Errorf("request %s has %d rows", id, n)
				}
			}
			t.Logf("%d requests received usage (%d streamed), %d rows; killed after %d", withUsage, streamed, len(recs), killAfter)
			if withUsage < killAfter || streamed == 0 || streamed == withUsage {
				t.Errorf("%d requests with usage, %d streamed: the test did not run as meant", withUsage, streamed)
			}
		})
	}
}

// crashRequest makes one random request: chat or completion, streamed
// (with usage) or not, and returns what the client saw, usage included
// when it came (even if the stream was cut after it).
func crashRequest(hc *http.Client, base string, rng *rand.Rand) (crashReply, error) {
	stream := rng.IntN(2) == 0
	path, body := "/v1/completions", fmt.Sprintf(`{"model":"step-3.7-flash","prompt":"Once upon a time","max_tokens":%d,"temperature":0.8,"seed":%d`, 2+rng.IntN(8), rng.IntN(1000))
	if rng.IntN(2) == 0 {
		path, body = "/v1/chat/completions", fmt.Sprintf(`{"model":"step-3.7-flash","messages":[{"role":"user","content":"Tell a story %d"}],"max_tokens":%d,"temperature":0.8`, rng.IntN(1000), 2+rng.IntN(8))
	}
	if stream {
		body += `,"stream":true,"stream_options":{"include_usage":true}`
	}
	resp, err := hc.Post(base+path, "application/json", strings.NewReader(body+"}"))
	if err != nil {
		return crashReply{}, err
	}
	defer resp.Body.Close()
	r := crashReply{id: resp.Header.Get("X-Request-Id"), stream: stream}
	if resp.StatusCode != 200 {
		return r, fmt.Errorf("status %d", resp.StatusCode)
	}
	if !stream {
		var v struct {
			Usage *api.Usage `json:"usage"`
		}
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			return r, err
		}
		if err := json.Unmarshal(b, &v); err != nil {
			return r, err
		}
		r.usage = v.Usage
		return r, nil
	}
	rd := sse.NewReader(resp.Body, 0)
	for {
		ev, err := rd.Next()
		if err != nil {
			return r, err // r.usage is set when the usage came before the cut
		}
		if ev.Data == "[DONE]" {
			return r, nil
		}
		var v struct {
			Choices []json.RawMessage `json:"choices"`
			Usage   *api.Usage        `json:"usage"`
		}
		if json.Unmarshal([]byte(ev.Data), &v) == nil && v.Usage != nil && len(v.Choices) == 0 {
			r.usage = v.Usage
		}
	}
}
