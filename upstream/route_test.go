package upstream_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stepflash/stepflash/upstream"
)

// counting is a fake upstream that records the first user message of each
// request it answers, and can hold requests until released.
type counting struct {
	srv   *httptest.Server
	mu    sync.Mutex
	seen  []string
	hold  chan struct{} // when set, requests wait on it
	began chan struct{} // receives once per request, when set
}

func newCounting(t *testing.T, hold bool) *counting {
	c := &counting{}
	if hold {
		c.hold, c.began = make(chan struct{}), make(chan struct{}, 100)
	}
	c.srv, _ = upstreamOf(t, func(w http.ResponseWriter, r *http.Request, body []byte) {
		var req struct {
			Messages []struct {
				Role    string `json:"role"`
				Content string `json:"content"`
			} `json:"messages"`
		}
		json.Unmarshal(body, &req)
		first := ""
		for _, m := range req.Messages {
			if m.Role == "user" {
				first = m.Content
				break
			}
		}
		c.mu.Lock()
		c.seen = append(c.seen, first)
		c.mu.Unlock()
		if c.hold != nil {
			c.began <- struct{}{}
			<-c.hold
		}
		okStream("ok")(w, r, body)
	})
	return c
}

func (c *counting) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.seen)
}

func (c *counting) saw(conv string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, s := range c.seen {
		if s == conv {
			return true
		}
	}
	return false
}

func turns(conv string, n int) string {
	msgs := []map[string]string{{"role": "system", "content": "You are terse."}, {"role": "user", "content": conv}}
	for i := 1; i < n; i++ {
		msgs = append(msgs, map[string]string{"role": "assistant", "content": fmt.Sprint("answer ", i)},
			map[string]string{"role": "user", "content": fmt.Sprint("follow-up ", i)})
	}
	b, _ := json.Marshal(map[string]any{"model": "x", "messages": msgs})
	return string(b)
}

// TestPrefixAffinity: every turn of a conversation goes to the replica its
// opening hashes to, and different conversations spread over the replicas.
func TestPrefixAffinity(t *testing.T) {
	reps := []*counting{newCounting(t, false), newCounting(t, false), newCounting(t, false)}
	var cfgs []upstream.Config
	for _, r := range reps {
		cfgs = append(cfgs, upstream.Config{BaseURL: r.srv.URL + "/v1"})
	}
	gw, _ := poolServer(t, upstream.Prefix, cfgs, nil)
	const convs, nturns = 90, 4 // enough conversations that a fair ring gives each replica over a sixth (3.4 standard deviations)
	for c := range convs {
		for turn := 1; turn <= nturns; turn++ {
			if status, body := readAll(t, gw.URL, turns(fmt.Sprint("conversation ", c), turn)); status != 200 {
				t.Fatalf("%d %s", status, body)
			}
		}
	}
	for c := range convs {
		conv := fmt.Sprint("conversation ", c)
		holders := 0
		for _, r := range reps {
			if r.saw(conv) {
				holders++
			}
		}
		if holders != 1 {
			t.Errorf("%s went to %d replicas", conv, holders)
		}
	}
	for i, r := range reps {
		if n := r.count() / nturns; n < convs/6 {
			t.Errorf("replica %d got %d of %d conversations: the ring does not spread", i, n, convs)
		}
	}
}

// TestBoundedLoad: requests with one opening (one hot prefix) overflow
// around the ring once their replica carries LoadFactor × the mean load.
func TestBoundedLoad(t *testing.T) {
	reps := []*counting{newCounting(t, true), newCounting(t, true), newCounting(t, true)}
	var cfgs []upstream.Config
	for _, r := range reps {
		cfgs = append(cfgs, upstream.Config{BaseURL: r.srv.URL + "/v1"})
	}
	gw, _ := poolServer(t, upstream.Prefix, cfgs, nil)
	const n = 12
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			readAll(t, gw.URL, turns("the same opening", 1))
		}()
		// Wait until some replica holds it, so each pick sees the load so far.
		select {
		case <-reps[0].began:
		case <-reps[1].began:
		case <-reps[2].began:
		case <-time.After(5 * time.Second):
			t.Fatal("a request never reached a replica")
		}
	}
	counts := []int{reps[0].count(), reps[1].count(), reps[2].count()}
	for _, r := range reps {
		close(r.hold)
	}
	wg.Wait()
	limit := 5 // ceil(1.25 × 12 / 3)
	used, most := 0, 0
	for _, c := range counts {
		if c > limit {
			t.Errorf("a replica carries %d of %d requests, over the bound of %d: %v", c, n, limit, counts)
		}
		if c > 0 {
			used++
		}
		most = max(most, c)
	}
	if used < 3 || most != limit {
		t.Errorf("loads %v: the hot prefix should fill its replica to the bound (%d) and overflow to the others", counts, limit)
	}
}

func TestRoundRobin(t *testing.T) {
	reps := []*counting{newCounting(t, false), newCounting(t, false), newCounting(t, false)}
	var cfgs []upstream.Config
	for _, r := range reps {
		cfgs = append(cfgs, upstream.Config{BaseURL: r.srv.URL + "/v1"})
	}
	gw, _ := poolServer(t, upstream.RoundRobin, cfgs, nil)
	for range 9 {
		readAll(t, gw.URL, turns("same", 1))
	}
	for i, r := range reps {
		if r.count() != 3 {
			t.Errorf("replica %d got %d of 9", i, r.count())
		}
	}
}

// TestDNSDiscovery: a DNS name that resolves to several addresses (a
// Kubernetes headless Service) is a pool of replicas that follows the
// records as they change.
func TestDNSDiscovery(t *testing.T) {
	ln1, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln1.Addr().(*net.TCPAddr).Port
	ln2, err := net.Listen("tcp", fmt.Sprintf("127.0.0.2:%d", port))
	if err != nil {
		ln1.Close()
		t.Skipf("cannot listen on 127.0.0.2 here: %v", err)
	}
	var hits [2]atomic.Int32
	for i, ln := range []net.Listener{ln1, ln2} {
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method != http.MethodPost {
				http.NotFound(w, r)
				return
			}
			hits[i].Add(1)
			okStream(fmt.Sprint("replica ", i))(w, r, nil)
		})}
		go srv.Serve(ln)
		t.Cleanup(func() { srv.Close() })
	}
	var records atomic.Value
	records.Store([]string{"127.0.0.1"})
	gw, pool := poolServer(t, upstream.RoundRobin, []upstream.Config{{Name: "engine", BaseURL: fmt.Sprintf("http://engine.svc:%d/v1", port), Discover: "dns"}},
		func(pc *upstream.PoolConfig) {
			pc.DiscoverInterval = 20 * time.Millisecond
			pc.LookupHost = func(_ context.Context, host string) ([]string, error) {
				if host != "engine.svc" {
					return nil, fmt.Errorf("unexpected lookup of %q", host)
				}
				return records.Load().([]string), nil
			}
		})
	ask := func() string {
		_, body := readAll(t, gw.URL, chatBody(false))
		return body
	}
	waitMembers := func(n int) {
		deadline := time.Now().Add(3 * time.Second)
		for len(pool.Status()) != n && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		if len(pool.Status()) != n {
			t.Fatalf("%d replicas, want %d: %+v", len(pool.Status()), n, pool.Status())
		}
	}
	if b := ask(); !strings.Contains(b, "replica 0") {
		t.Fatalf("first answer %s", b)
	}
	records.Store([]string{"127.0.0.1", "127.0.0.2"})
	waitMembers(2)
	for range 4 {
		ask()
	}
	if hits[1].Load() != 2 {
		t.Errorf("the new replica got %d of 4 requests", hits[1].Load())
	}
	if st := pool.Status(); st[1].Name != "engine@127.0.0.2" {
		t.Errorf("status %+v", st)
	}
	records.Store([]string{"127.0.0.2"})
	waitMembers(1)
	before := hits[0].Load()
	for range 3 {
		ask()
	}
	if hits[0].Load() != before {
		t.Errorf("a replica gone from DNS still got requests")
	}
}
