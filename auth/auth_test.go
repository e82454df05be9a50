package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stepflash/stepflash/api"
	"github.com/stepflash/stepflash/backend"
)

// memStore is an in-memory Store for the middleware's tests (the SQL store
// has its own tests in package store, and serve's tests use it end to end).
type memStore struct {
	mu   sync.Mutex
	keys []Key
	fail error
}

func (m *memStore) CreateKey(_ context.Context, k Key) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.keys = append(m.keys, k)
	return nil
}

func (m *memStore) KeyByHash(_ context.Context, h [32]byte) (Key, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		return Key{}, m.fail
	}
	for _, k := range m.keys {
		if k.Hash == h {
			return k, nil
		}
	}
	return Key{}, ErrNotFound
}

func (m *memStore) Keys(_ context.Context, region string) ([]Key, error) { return nil, nil }

func (m *memStore) RevokeKey(_ context.Context, id string, at time.Time) (Key, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for i := range m.keys {
		if m.keys[i].ID == id {
			m.keys[i].Revoked = at
			return m.keys[i], nil
		}
	}
	return Key{}, ErrNotFound
}

func (m *memStore) CountKeys(_ context.Context, region string) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		return 0, m.fail
	}
	n := 0
	for _, k := range m.keys {
		if region == "" || k.Region == region {
			n++
		}
	}
	return n, nil
}

func newKey(t *testing.T, s Store, region, name string) (string, Key) {
	t.Helper()
	text, err := Generate(region)
	if err != nil {
		t.Fatal(err)
	}
	p, _ := Parse(text)
	k := Key{ID: p.Prefix, Hash: p.Hash, Region: region, Name: name, Created: time.Now()}
	if err := s.CreateKey(context.Background(), k); err != nil {
		t.Fatal(err)
	}
	return text, k
}

// serveRegions starts one listener per region in front of the middleware;
// the handler echoes the caller.
func serveRegions(t *testing.T, a *Authenticator, regions ...string) map[string]string {
	t.Helper()
	h := a.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c := backend.CallerFrom(r.Context())
		k := KeyFrom(r.Context())
		name := ""
		if k != nil {
			name = k.Name
		}
		fmt.Fprintf(w, "ok key=%s region=%s name=%s", c.KeyID, c.Region, name)
	}))
	urls := map[string]string{}
	for _, region := range regions {
		ts := httptest.NewUnstartedServer(h)
		ts.Config.BaseContext = func(net.Listener) context.Context { return WithListenerRegion(context.Background(), region) }
		ts.Start()
		t.Cleanup(ts.Close)
		urls[region] = ts.URL
	}
	return urls
}

func TestAuthenticate(t *testing.T) {
	store := &memStore{}
	g1, g1k := newKey(t, store, "global", "alice")
	revoked, revokedKey := newKey(t, store, "global", "bob")
	store.RevokeKey(context.Background(), revokedKey.ID, time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC))
	c1, c1k := newKey(t, store, "cn", "carol")
	e1, _ := newKey(t, store, "eu", "dave")
	unknown, _ := Generate("global")
	// One character of the key's random part changed (to another base62
	// character), so its checksum no longer matches.
	swap := byte('x')
	if g1[20] == 'x' {
		swap = 'y'
	}
	typo := g1[:20] + string(swap) + g1[21:]
	a := New(Options{Store: store, Regions: []Region{{Name: "global", Port: 1111}, {Name: "cn", BaseURL: "https://cn.example.com/v1"}}})
	urls := serveRegions(t, a, "global", "cn")

	for _, tc := range []struct {
		name, region, path string
		header             map[string]string
		status             int
		code, want         string
	}{
		{"right key", "global", "/v1/models", map[string]string{"Authorization": "Bearer " + g1}, 200, "", "ok key=" + g1k.ID + " region=global name=alice"},
		{"x-api-key", "global", "/v1/models", map[string]string{"X-Api-Key": g1}, 200, "", "ok key=" + g1k.ID},
		{"cn key at cn", "cn", "/v1/chat/completions", map[string]string{"Authorization": "Bearer " + c1}, 200, "", "ok key=" + c1k.ID + " region=cn"},
		{"no key", "global", "/v1/models", nil, 401, CodeMissingKey, "No API key was given"},
		{"empty bearer", "global", "/v1/models", map[string]string{"Authorization": "Bearer "}, 401, CodeMissingKey, "No API key"},
		{"mistyped", "global", "/v1/models", map[string]string{"Authorization": "Bearer " + typo}, 401, CodeInvalidKey, "mistyped"},
		{"not a key", "global", "/v1/models", map[string]string{"Authorization": "Bearer hunter2"}, 401, CodeInvalidKey, "not a stepflash key"},
		{"unknown", "global", "/v1/models", map[string]string{"Authorization": "Bearer " + unknown}, 401, CodeInvalidKey, "not known here"},
		{"revoked", "global", "/v1/models", map[string]string{"Authorization": "Bearer " + revoked}, 401, CodeInvalidKey, "revoked on 2026-12-01"},
		{"cn key at global", "global", "/v1/models", map[string]string{"Authorization": "Bearer " + c1}, 401, CodeRegionMismatch, "https://cn.example.com/v1"},
		{"global key at cn", "cn", "/v1/models", map[string]string{"Authorization": "Bearer " + g1}, 401, CodeRegionMismatch, "http://127.0.0.1:1111/v1"},
		{"key of a region not served", "global", "/v1/models", map[string]string{"Authorization": "Bearer " + e1}, 401, CodeRegionMismatch, `region "eu"`},
		{"health stays open", "global", "/health", nil, 200, "", "ok"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest("GET", urls[tc.region]+tc.path, nil)
			for k, v := range tc.header {
				req.Header.Set(k, v)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.status {
				t.Fatalf("%d %s, want %d", resp.StatusCode, b, tc.status)
			}
			if tc.status == 200 {
				if !strings.Contains(string(b), tc.want) {
					t.Fatalf("%s, want it to contain %q", b, tc.want)
				}
				return
			}
			var er api.ErrorResponse
			if err := json.Unmarshal(b, &er); err != nil || er.Error == nil || er.Error.CodeString() != tc.code || er.Error.Type != api.TypeAuthentication ||
				!strings.Contains(er.Error.Message, tc.want) {
				t.Fatalf("body %s: want an authentication_error with code %s and a message containing %q", b, tc.code, tc.want)
			}
			if resp.Header.Get("Content-Type") != "application/json" {
				t.Errorf("Content-Type %q", resp.Header.Get("Content-Type"))
			}
			www := resp.Header.Get("WWW-Authenticate")
			if !strings.HasPrefix(www, `Bearer realm="stepflash"`) || strings.Contains(www, "error=") != (tc.code != CodeMissingKey) {
				t.Errorf("WWW-Authenticate %q", www)
			}
			for _, secret := range []string{g1, c1, revoked, unknown, e1} {
				if strings.Contains(string(b), secret) {
					t.Errorf("the error repeats a whole key: %s", b)
				}
			}
		})
	}
}

// TestEnforcement: keys are enforced once a region's store has a live key,
// or always with Require; a store that fails is a 503, not an open door.
func TestEnforcement(t *testing.T) {
	store := &memStore{}
	a := New(Options{Store: store})
	clock := time.Now()
	a.now = func() time.Time { return clock }
	urls := serveRegions(t, a, "global")
	get := func() int {
		resp, err := http.Get(urls["global"] + "/v1/models")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := get(); got != 200 {
		t.Fatalf("no keys: %d, want 200", got)
	}
	newKey(t, store, "cn", "other region")
	clock = clock.Add(2 * enforceTTL)
	if got := get(); got != 200 {
		t.Fatalf("a key of another region only: %d, want 200", got)
	}
	_, first := newKey(t, store, "global", "first")
	if got := get(); got != 200 {
		t.Fatalf("within the cache time: %d, want 200 still", got)
	}
	clock = clock.Add(2 * enforceTTL)
	if got := get(); got != 401 {
		t.Fatalf("a global key exists: %d, want 401", got)
	}
	// Revoking the region's only key locks its holder out; it does not
	// open the region again.
	if _, err := store.RevokeKey(context.Background(), first.ID, clock); err != nil {
		t.Fatal(err)
	}
	clock = clock.Add(2 * enforceTTL)
	if got := get(); got != 401 {
		t.Fatalf("the only global key revoked: %d, want 401", got)
	}
	store.fail = errors.New("disk on fire")
	clock = clock.Add(2 * enforceTTL)
	if got := get(); got != 503 {
		t.Fatalf("store failing: %d, want 503", got)
	}

	req := New(Options{Require: true})
	urls = serveRegions(t, req, "global")
	if got := get(); got != 401 {
		t.Fatalf("Require with no store: %d, want 401", got)
	}
	key, _ := Generate("global")
	r, _ := http.NewRequest("GET", urls["global"]+"/v1/models", nil)
	r.Header.Set("Authorization", "Bearer "+key)
	resp, err := http.DefaultClient.Do(r)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 {
		t.Fatalf("Require with no store, a well-formed key: %d, want 401", resp.StatusCode)
	}
}

// fakeLedger answers Spent from the costs it was told of, by time; spent
// adds spending that happened elsewhere (another replica).
type fakeLedger struct {
	mu    sync.Mutex
	spent float64
	rows  []row
	since []time.Time
	err   error
}

type row struct {
	at   time.Time
	cost float64
}

func (f *fakeLedger) Spent(_ context.Context, _ string, since time.Time) (float64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.since = append(f.since, since)
	sum := f.spent
	for _, r := range f.rows {
		if !r.at.Before(since) {
			sum += r.cost
		}
	}
	return sum, f.err
}

func TestLimiter(t *testing.T) {
	ctx := context.Background()
	t0 := time.Date(2026, 12, 6, 23, 59, 0, 0, time.UTC)
	for _, tc := range []struct {
		name string
		key  Key
		// steps: "admit" expects success, "refuse CODE RETRY" expects a 429,
		// "used TOKENS COST", "wait SECONDS".
		steps []string
	}{
		{"rpm", Key{ID: "k", RPM: 2}, []string{"admit", "wait 10", "admit", "refuse rate_limit_exceeded 50", "wait 50", "admit", "refuse rate_limit_exceeded 10"}},
		{"tpm", Key{ID: "k", TPM: 100}, []string{"admit", "used 60 0", "admit", "wait 30", "used 50 0", "refuse rate_limit_exceeded 30", "wait 30", "admit", "used 50 0", "wait 29", "refuse rate_limit_exceeded 1"}},
		{"daily budget", Key{ID: "k", BudgetUSD: 1, BudgetPeriod: "day"}, []string{"admit", "used 10 0.6", "admit", "used 10 0.5", "refuse insufficient_quota 60", "wait 60", "admit"}},
		{"total budget", Key{ID: "k", BudgetUSD: 1, BudgetPeriod: "total"}, []string{"admit", "used 10 1.5", "refuse insufficient_quota 0", "wait 86400", "refuse insufficient_quota 0"}},
		{"no limits", Key{ID: "k"}, []string{"admit", "admit", "used 1000000 1000", "admit"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clock := t0
			sp := &fakeLedger{}
			l := NewLimiter(sp)
			l.now = func() time.Time { return clock }
			k := tc.key
			for i, st := range tc.steps {
				f := strings.Fields(st)
				switch f[0] {
				case "admit":
					if e := l.Admit(ctx, &k); e != nil {
						t.Fatalf("step %d (%s): %v", i, st, e)
					}
				case "refuse":
					e := l.Admit(ctx, &k)
					if e == nil || e.Status != 429 || e.CodeString() != f[1] || fmt.Sprint(e.RetryAfter) != f[2] {
						t.Fatalf("step %d (%s): %+v", i, st, e)
					}
				case "used":
					var n int
					var c float64
					fmt.Sscan(f[1], &n)
					fmt.Sscan(f[2], &c)
					l.Used(&k, n, c)
					sp.rows = append(sp.rows, row{clock, c}) // and the ledger has its row
				case "wait":
					var s int
					fmt.Sscan(f[1], &s)
					clock = clock.Add(time.Duration(s) * time.Second)
				}
			}
		})
	}
}

// TestLimiterLedger: the budget comes from the ledger, per period, re-read
// after SpentTTL (other replicas' spending); a ledger that fails refuses
// with 503 rather than letting a spent key through.
func TestLimiterLedger(t *testing.T) {
	ctx := context.Background()
	clock := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	sp := &fakeLedger{spent: 0.9}
	l := NewLimiter(sp)
	l.now = func() time.Time { return clock }
	k := Key{ID: "k", BudgetUSD: 1, BudgetPeriod: "month"}
	if e := l.Admit(ctx, &k); e != nil {
		t.Fatal(e)
	}
	if want := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC); !sp.since[0].Equal(want) {
		t.Errorf("spent since %v, want %v", sp.since[0], want)
	}
	sp.spent = 1.2 // another replica spent it
	if e := l.Admit(ctx, &k); e != nil {
		t.Fatalf("within SpentTTL the cached figure holds: %v", e)
	}
	clock = clock.Add(SpentTTL)
	if e := l.Admit(ctx, &k); e == nil || e.CodeString() != CodeQuota {
		t.Fatalf("after SpentTTL: %v, want insufficient_quota", e)
	}
	sp.err = errors.New("db down")
	clock = clock.Add(SpentTTL)
	if e := l.Admit(ctx, &k); e == nil || e.Status != 503 {
		t.Fatalf("ledger down: %v, want a 503", e)
	}
	if got := len(sp.since); got != 3 {
		t.Errorf("%d ledger reads, want 3", got)
	}
}
