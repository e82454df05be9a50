package upstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/stepflash/stepflash/api"
	"github.com/stepflash/stepflash/backend"
)

// PoolConfig configures a Pool: the upstreams of one served model and how
// requests are spread over them.
type PoolConfig struct {
	// Name is the served model's name (the default upstream model id).
	Name      string
	Upstreams []Config
	Routing   Routing
	// LoadFactor bounds prefix routing: no replica takes more than
	// LoadFactor × the mean load (default 1.25).
	LoadFactor float64
	// PrefixChars is how much of a conversation's opening the prefix key
	// reads (default DefaultPrefixChars).
	PrefixChars int
	// Attempts is the most upstreams one request tries (default 3, and at
	// most the number of upstreams).
	Attempts int
	// HealthInterval is the period of active health checks (default 10s;
	// negative: none).
	HealthInterval time.Duration
	// EjectAfter is the number of consecutive failures that take an
	// upstream out (default 3); a refused connection takes it out at once.
	EjectAfter int
	// Cooldown is how long an upstream stays out the first time; it doubles
	// with each ejection in a row, up to MaxCooldown (defaults 2s and 60s).
	Cooldown, MaxCooldown time.Duration
	// DiscoverInterval is how often DNS-discovered upstreams are resolved
	// again (default 10s).
	DiscoverInterval time.Duration
	// Logger logs ejections, recoveries, retries and discovery; nil: none.
	Logger *slog.Logger
	// LookupHost resolves names for DNS discovery (default
	// net.DefaultResolver.LookupHost).
	LookupHost func(ctx context.Context, host string) ([]string, error)
	// Metrics, when set, counts the pool's requests and ejections.
	Metrics *Metrics
}

// Pool is a backend.Backend over the upstreams of one model.
type Pool struct {
	cfg PoolConfig

	mu      sync.RWMutex
	members []*member
	ring    *ring
	dns     map[int][]*member // members discovered from Upstreams[i]

	rr      atomic.Uint64
	context atomic.Int64 // the smallest max_model_len an upstream reported
	stop    chan struct{}
	wg      sync.WaitGroup
}

// member is one upstream endpoint of a pool, with its health.
type member struct {
	client *Client
	origin int // index in PoolConfig.Upstreams
	health string
	warned atomic.Bool // about a stream without usage

	inflight atomic.Int64

	mu        sync.Mutex
	fails     int // consecutive failures
	ejections int // ejections in a row
	downUntil time.Time
	lastErr   string
}

// NewPool checks the configuration, resolves DNS-discovered upstreams once
// and returns the pool. Start begins its health checks and discovery.
func NewPool(cfg PoolConfig) (*Pool, error) {
	if len(cfg.Upstreams) == 0 {
		return nil, fmt.Errorf("model %q: no upstreams", cfg.Name)
	}
	if cfg.Routing == "" {
		cfg.Routing = Prefix
	}
	if _, err := ParseRouting(string(cfg.Routing)); err != nil {
		return nil, fmt.Errorf("model %q: %w", cfg.Name, err)
	}
	if cfg.LoadFactor <= 1 {
		cfg.LoadFactor = 1.25
	}
	if cfg.PrefixChars <= 0 {
		cfg.PrefixChars = DefaultPrefixChars
	}
	if cfg.Attempts <= 0 {
		cfg.Attempts = 3
	}
	if cfg.HealthInterval == 0 {
		cfg.HealthInterval = 10 * time.Second
	}
	if cfg.EjectAfter <= 0 {
		cfg.EjectAfter = 3
	}
	if cfg.Cooldown <= 0 {
		cfg.Cooldown = 2 * time.Second
	}
	if cfg.MaxCooldown < cfg.Cooldown {
		cfg.MaxCooldown = max(60*time.Second, cfg.Cooldown)
	}
	if cfg.DiscoverInterval <= 0 {
		cfg.DiscoverInterval = 10 * time.Second
	}
	if cfg.LookupHost == nil {
		cfg.LookupHost = net.DefaultResolver.LookupHost
	}
	p := &Pool{cfg: cfg, dns: map[int][]*member{}, stop: make(chan struct{})}
	var static []*member
	for i, uc := range cfg.Upstreams {
		c, err := NewClient(uc, cfg.Name)
		if err != nil {
			return nil, fmt.Errorf("model %q: %w", cfg.Name, err)
		}
		if uc.Discover == "dns" {
			continue
		}
		static = append(static, p.newMember(c, i))
	}
	p.members = static
	p.discover(context.Background())
	p.rebuild()
	return p, nil
}

// Start begins active health checks and DNS re-resolution; Close ends them.
func (p *Pool) Start() {
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		p.loop()
	}()
}

// Close stops the pool's background work.
func (p *Pool) Close() {
	select {
	case <-p.stop:
	default:
		close(p.stop)
	}
	p.wg.Wait()
}

func (p *Pool) loop() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		<-p.stop
		cancel()
	}()
	p.fetchContext(ctx)
	health := time.NewTicker(max(p.cfg.HealthInterval, time.Millisecond))
	if p.cfg.HealthInterval < 0 {
		health.Stop()
	}
	defer health.Stop()
	disc := time.NewTicker(p.cfg.DiscoverInterval)
	defer disc.Stop()
	if p.cfg.HealthInterval > 0 {
		p.checkAll(ctx)
	}
	for {
		select {
		case <-p.stop:
			return
		case <-health.C:
			p.checkAll(ctx)
		case <-disc.C:
			if p.discover(ctx) {
				p.rebuild()
			}
		}
	}
}

func (p *Pool) log(msg string, args ...any) {
	if p.cfg.Logger != nil {
		p.cfg.Logger.Info(msg, append([]any{"model", p.cfg.Name}, args...)...)
	}
}

// discover resolves the DNS-discovered upstreams and reports whether the
// member set changed. Members that stay keep their state.
func (p *Pool) discover(ctx context.Context) bool {
	changed := false
	for i, uc := range p.cfg.Upstreams {
		if uc.Discover != "dns" {
			continue
		}
		u, _ := url.Parse(uc.BaseURL)
		lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		addrs, err := p.cfg.LookupHost(lctx, u.Hostname())
		cancel()
		if err != nil {
			p.log("upstream discovery failed; keeping the last known replicas", "host", u.Hostname(), "error", err)
			continue
		}
		slices.Sort(addrs)
		p.mu.RLock()
		old := p.dns[i]
		p.mu.RUnlock()
		byURL := map[string]*member{}
		for _, m := range old {
			byURL[m.client.cfg.BaseURL] = m
		}
		var next []*member
		for _, a := range addrs {
			rc := uc
			rc.Discover = ""
			host := a
			if strings.Contains(a, ":") {
				host = "[" + a + "]"
			}
			if port := u.Port(); port != "" {
				host += ":" + port
			}
			ru := *u
			ru.Host = host
			rc.BaseURL = ru.String()
			base := uc.Name
			if base == "" {
				base = u.Hostname()
			}
			rc.Name = base + "@" + a
			if m, ok := byURL[strings.TrimRight(rc.BaseURL, "/")]; ok {
				next = append(next, m)
				continue
			}
			c, err := NewClient(rc, p.cfg.Name)
			if err != nil {
				p.log("discovered replica rejected", "address", a, "error", err)
				continue
			}
			next = append(next, p.newMember(c, i))
			changed = true
		}
		if len(next) != len(old) {
			changed = true
		}
		if changed {
			p.log("upstream replicas discovered", "host", u.Hostname(), "replicas", len(next))
		}
		p.mu.Lock()
		p.dns[i] = next
		p.mu.Unlock()
	}
	return changed
}

// rebuild recomputes the member list (static and discovered, in
// configuration order) and the ring.
func (p *Pool) rebuild() {
	p.mu.Lock()
	defer p.mu.Unlock()
	var all []*member
	for i := range p.cfg.Upstreams {
		if p.cfg.Upstreams[i].Discover == "dns" {
			all = append(all, p.dns[i]...)
			continue
		}
		for _, m := range p.members {
			if m.origin == i {
				all = append(all, m)
			}
		}
	}
	p.members = all
	names := make([]string, len(all))
	for i, m := range all {
		names[i] = m.client.cfg.BaseURL
	}
	p.ring = newRing(names)
}

// newMember makes the member of a client; it logs, once, an upstream whose
// streams carry no usage (its tokens then cannot be counted or billed).
func (p *Pool) newMember(c *Client, origin int) *member {
	m := &member{client: c, origin: origin, health: c.cfg.Health}
	c.noUsage = func() {
		if !m.warned.Swap(true) {
			p.log("upstream sent a stream without usage although asked for it; its tokens are reported as 0 and cannot be billed",
				"upstream", c.cfg.Name)
		}
	}
	return m
}

func (m *member) up(now time.Time) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return !now.Before(m.downUntil)
}

// pick chooses the upstream for a request among those not yet tried.
func (p *Pool) pick(key uint64, tried map[*member]bool) *member {
	p.mu.RLock()
	members, r := p.members, p.ring
	p.mu.RUnlock()
	now := time.Now()
	var eligible []int
	for i, m := range members {
		if !tried[m] && m.up(now) {
			eligible = append(eligible, i)
		}
	}
	if len(eligible) == 0 {
		// Every upstream left is out: try the one due back soonest rather
		// than fail without asking any.
		var best *member
		var bestAt time.Time
		for _, m := range members {
			if tried[m] {
				continue
			}
			m.mu.Lock()
			at := m.downUntil
			m.mu.Unlock()
			if best == nil || at.Before(bestAt) {
				best, bestAt = m, at
			}
		}
		return best
	}
	switch p.cfg.Routing {
	case Ordered:
		return members[eligible[0]]
	case RoundRobin:
		return members[eligible[int(p.rr.Add(1)-1)%len(eligible)]]
	}
	ok := make([]bool, len(members))
	total := 0
	for _, i := range eligible {
		ok[i] = true
		total += int(members[i].inflight.Load())
	}
	limit := capacity(total, len(eligible), p.cfg.LoadFactor)
	var chosen *member
	r.walk(key, len(members), func(i int) bool {
		if ok[i] && int(members[i].inflight.Load()) < limit {
			chosen = members[i]
			return true
		}
		return false
	})
	if chosen == nil { // every eligible replica is at the limit: the least loaded
		for _, i := range eligible {
			if chosen == nil || members[i].inflight.Load() < chosen.inflight.Load() {
				chosen = members[i]
			}
		}
	}
	return chosen
}

// succeeded records an answer: the upstream is healthy.
func (p *Pool) succeeded(m *member) {
	m.mu.Lock()
	wasOut := m.ejections > 0
	m.fails, m.ejections, m.downUntil, m.lastErr = 0, 0, time.Time{}, ""
	m.mu.Unlock()
	if wasOut {
		p.log("upstream answered again", "upstream", m.client.cfg.Name)
	}
}

// failed records a failure; enough of them (or one refused connection)
// take the upstream out for a cooldown that doubles each time in a row.
func (p *Pool) failed(m *member, f *Failure) {
	if !f.Unhealthy {
		return
	}
	m.mu.Lock()
	m.fails++
	m.lastErr = f.Err.Message
	eject := f.Refused || m.fails >= p.cfg.EjectAfter
	var cool time.Duration
	if eject {
		m.ejections++
		cool = min(p.cfg.Cooldown<<min(m.ejections-1, 20), p.cfg.MaxCooldown)
		m.downUntil = time.Now().Add(cool)
		m.fails = 0
	}
	m.mu.Unlock()
	if eject {
		p.cfg.Metrics.ejected(p.cfg.Name, m.client.cfg.Name)
		p.log("upstream taken out", "upstream", m.client.cfg.Name, "for", cool, "error", f.Err.Message)
	}
}

// attempts is how many upstreams one request may try.
func (p *Pool) attempts() int {
	p.mu.RLock()
	n := len(p.members)
	p.mu.RUnlock()
	return max(1, min(p.cfg.Attempts, n))
}

// Chat answers a chat request from the pool's upstreams.
func (p *Pool) Chat(ctx context.Context, req *api.ChatCompletionRequest, emit func(*api.ChatCompletionChunk) error) error {
	key := hash64(chatKey(req, p.cfg.PrefixChars))
	return serve(p, ctx, key, func(m *member, emit func(*api.ChatCompletionChunk) error) error {
		return m.client.Chat(ctx, req, emit)
	}, emit)
}

// Complete answers a legacy completion request from the pool's upstreams.
func (p *Pool) Complete(ctx context.Context, req *api.CompletionRequest, emit func(*api.Completion) error) error {
	key := hash64(completionKey(req, p.cfg.PrefixChars))
	return serve(p, ctx, key, func(m *member, emit func(*api.Completion) error) error {
		return m.client.Complete(ctx, req, emit)
	}, emit)
}

// Embed answers an embeddings request from the pool's upstreams.
func (p *Pool) Embed(ctx context.Context, req *api.EmbeddingRequest) (*api.EmbeddingResponse, error) {
	var out *api.EmbeddingResponse
	err := serve(p, ctx, hash64(req.Model), func(m *member, emit func(*api.EmbeddingResponse) error) error {
		r, err := m.client.Embed(ctx, req)
		if err != nil {
			return err
		}
		return emit(r)
	}, func(r *api.EmbeddingResponse) error {
		out = r
		return nil
	})
	return out, err
}

// serve runs a request on one upstream after another until one answers:
// an upstream that fails before anything reached the client is retried on
// the next (with a short backoff); once a chunk has gone out, a failure
// ends the request.
func serve[C any](p *Pool, ctx context.Context, key uint64, call func(*member, func(C) error) error, emit func(C) error) error {
	tried := map[*member]bool{}
	var failures []string
	var last error
	for attempt := range p.attempts() {
		m := p.pick(key, tried)
		if m == nil {
			break
		}
		tried[m] = true
		if attempt > 0 {
			d := time.Duration(25<<min(attempt-1, 6))*time.Millisecond + rand.N(10*time.Millisecond)
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(d):
			}
		}
		sent := false
		m.inflight.Add(1)
		err := call(m, func(ch C) error {
			sent = true
			return emit(ch)
		})
		m.inflight.Add(-1)
		if err == nil {
			p.succeeded(m)
			p.cfg.Metrics.request(p.cfg.Name, m.client.cfg.Name, "ok")
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		var f *Failure
		if !errors.As(err, &f) {
			return err // the client went away, or this server failed
		}
		p.failed(m, f)
		last = err
		failures = append(failures, f.Err.Message)
		if sent || !f.Retry {
			p.cfg.Metrics.request(p.cfg.Name, m.client.cfg.Name, "failed")
			return err
		}
		p.cfg.Metrics.request(p.cfg.Name, m.client.cfg.Name, "retried")
		p.log("upstream failed before answering; trying another", "upstream", m.client.cfg.Name, "error", f.Err.Message,
			"request_id", backend.RequestID(ctx))
	}
	if last == nil {
		return api.NewError(http.StatusBadGateway, api.TypeServer, CodeUpstreamError, "",
			"model %q has no upstream to send the request to (none configured, or DNS discovery found no replicas yet).", p.cfg.Name)
	}
	if len(failures) > 1 {
		var f *Failure
		errors.As(last, &f)
		e := *f.Err
		e.Message = fmt.Sprintf("no upstream of model %q could answer (%d tried): %s", p.cfg.Name, len(failures), strings.Join(failures, "; "))
		return &Failure{Err: &e}
	}
	return last
}

// Info describes the pool for the model list.
func (p *Pool) Info() backend.Info {
	return backend.Info{Context: int(p.context.Load()), OwnedBy: "stepflash", Label: "upstream"}
}

// MemberStatus is one upstream's state, for readiness reports.
type MemberStatus struct {
	Name      string `json:"name"`
	BaseURL   string `json:"base_url"`
	Up        bool   `json:"up"`
	InFlight  int    `json:"in_flight"`
	LastError string `json:"last_error,omitempty"`
}

// Status reports every upstream's state.
func (p *Pool) Status() []MemberStatus {
	p.mu.RLock()
	members := slices.Clone(p.members)
	p.mu.RUnlock()
	now := time.Now()
	out := make([]MemberStatus, 0, len(members))
	for _, m := range members {
		m.mu.Lock()
		s := MemberStatus{Name: m.client.cfg.Name, BaseURL: m.client.cfg.BaseURL, Up: !now.Before(m.downUntil),
			InFlight: int(m.inflight.Load()), LastError: m.lastErr}
		m.mu.Unlock()
		out = append(out, s)
	}
	return out
}

// checkAll runs the active health check of every upstream that has one.
func (p *Pool) checkAll(ctx context.Context) {
	p.mu.RLock()
	members := slices.Clone(p.members)
	p.mu.RUnlock()
	var wg sync.WaitGroup
	for _, m := range members {
		if m.health == "off" {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := p.probe(ctx, m)
			if ctx.Err() != nil {
				return
			}
			if err == nil {
				m.mu.Lock()
				wasOut := !time.Now().After(m.downUntil) && m.ejections > 0
				m.fails, m.ejections, m.downUntil, m.lastErr = 0, 0, time.Time{}, ""
				m.mu.Unlock()
				if wasOut {
					p.log("upstream healthy again", "upstream", m.client.cfg.Name)
				}
				return
			}
			p.failed(m, &Failure{Err: api.NewError(http.StatusBadGateway, api.TypeServer, CodeUpstreamError, "", "health check: %v", err),
				Unhealthy: true, Refused: true})
		}()
	}
	wg.Wait()
}

// probe is one health check: GET the health path (falling back to
// {base}/models when the server has no such path).
func (p *Pool) probe(ctx context.Context, m *member) error {
	c := m.client
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeouts.Connect+5*time.Second)
	defer cancel()
	target := c.cfg.BaseURL + "/models"
	if m.health != "models" {
		u, _ := url.Parse(c.cfg.BaseURL)
		u.Path, u.RawPath = m.health, ""
		target = u.String()
	}
	status, _, err := c.get(ctx, target)
	if err != nil {
		return err
	}
	if status == http.StatusNotFound && m.health != "models" {
		m.health = "models"
		p.log("upstream has no health path; checking its model list instead", "upstream", c.cfg.Name)
		return p.probe(ctx, m)
	}
	if status != http.StatusOK {
		return fmt.Errorf("%s answered %d", target, status)
	}
	return nil
}

// get fetches a URL with the upstream's key.
func (c *Client) get(ctx context.Context, target string) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return 0, nil, err
	}
	if c.cfg.APIKey != "" {
		req.Header.Set("Authorization", "Bearer "+c.cfg.APIKey)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	return resp.StatusCode, b, err
}

// fetchContext learns the model's context length from the upstreams' model
// lists (vLLM and stepflash give max_model_len): the smallest one reported.
func (p *Pool) fetchContext(ctx context.Context) {
	p.mu.RLock()
	members := slices.Clone(p.members)
	p.mu.RUnlock()
	for _, m := range members {
		c := m.client
		if c.known { // public APIs: their lists are large and say nothing of this
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, c.cfg.Timeouts.Connect+5*time.Second)
		status, body, err := c.get(cctx, c.cfg.BaseURL+"/models")
		cancel()
		if err != nil || status != http.StatusOK {
			continue
		}
		var list struct {
			Data []struct {
				ID          string `json:"id"`
				MaxModelLen int    `json:"max_model_len"`
			} `json:"data"`
		}
		if json.Unmarshal(body, &list) != nil {
			continue
		}
		for _, d := range list.Data {
			if d.ID == c.cfg.Model && d.MaxModelLen > 0 {
				if cur := p.context.Load(); cur == 0 || int64(d.MaxModelLen) < cur {
					p.context.Store(int64(d.MaxModelLen))
				}
			}
		}
	}
}
