package upstream_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stepflash/stepflash/backend"
	"github.com/stepflash/stepflash/billing"
	"github.com/stepflash/stepflash/internal/httpclient"
	"github.com/stepflash/stepflash/internal/testserve"
	"github.com/stepflash/stepflash/server"
	"github.com/stepflash/stepflash/upstream"
)

// poolServer serves one model "x" as a pool over cfgs, with short
// cooldowns and no active checks unless tune sets them.
func poolServer(t *testing.T, routing upstream.Routing, cfgs []upstream.Config, tune func(*upstream.PoolConfig)) (*testserve.Served, *upstream.Pool) {
	t.Helper()
	pc := upstream.PoolConfig{Name: "x", Upstreams: cfgs, Routing: routing, HealthInterval: -1, Cooldown: time.Minute}
	if tune != nil {
		tune(&pc)
	}
	p, err := upstream.NewPool(pc)
	if err != nil {
		t.Fatal(err)
	}
	p.Start()
	t.Cleanup(p.Close)
	return testserve.Start(t, server.Config{}, nil, &server.Model{Name: "x", Backend: backend.Chain(p, billing.Pricing(billing.Default))}), p
}

// deadURL is a base URL where nothing listens.
func deadURL(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return "http://" + addr + "/v1"
}

// chunk is an OpenAI chat chunk with one content delta.
func chunk(content string) string {
	b, _ := json.Marshal(map[string]any{"id": "chatcmpl-up", "object": "chat.completion.chunk", "created": 1, "model": "up",
		"choices": []any{map[string]any{"index": 0, "delta": map[string]any{"content": content}, "finish_reason": nil}}})
	return string(b)
}

func finishChunk(reason string) string {
	return `{"id":"chatcmpl-up","object":"chat.completion.chunk","created":1,"model":"up","choices":[{"index":0,"delta":{},"finish_reason":"` + reason + `"}]}`
}

// sseOut writes events and flushes each.
func sseOut(w http.ResponseWriter, events ...string) {
	w.Header().Set("Content-Type", "text/event-stream")
	for _, e := range events {
		fmt.Fprintf(w, "data: %s\n\n", e)
		w.(http.Flusher).Flush()
	}
}

// okStream answers every request with a short complete stream.
func okStream(text string) func(http.ResponseWriter, *http.Request, []byte) {
	return func(w http.ResponseWriter, _ *http.Request, _ []byte) {
		sseOut(w, chunk(text), finishChunk("stop"), `{"id":"chatcmpl-up","object":"chat.completion.chunk","created":1,"model":"up","choices":[],"usage":{"prompt_tokens":7,"completion_tokens":1,"total_tokens":8}}`, "[DONE]")
	}
}

func chatBody(stream bool) string {
	return fmt.Sprintf(`{"model":"x","messages":[{"role":"user","content":"hi"}],"stream":%v}`, stream)
}

// readAll posts and returns the status and body.
func readAll(t *testing.T, base, body string) (int, string) {
	t.Helper()
	resp := post(t, base, "/v1/chat/completions", body)
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp.StatusCode, string(b)
}

func TestFailoverBeforeTheFirstByte(t *testing.T) {
	var calls500, callsOK, calls400 atomic.Int32
	bad, _ := upstreamOf(t, func(w http.ResponseWriter, _ *http.Request, _ []byte) {
		calls500.Add(1)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(500)
		io.WriteString(w, `{"error":{"message":"CUDA out of memory","type":"server_error","code":null}}`)
	})
	refusing, _ := upstreamOf(t, func(w http.ResponseWriter, _ *http.Request, _ []byte) {
		calls400.Add(1)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(400)
		io.WriteString(w, `{"object":"error","message":"temperature must be non-negative","type":"BadRequestError","param":null,"code":400}`)
	})
	good, _ := upstreamOf(t, func(w http.ResponseWriter, r *http.Request, b []byte) {
		callsOK.Add(1)
		okStream("fine")(w, r, b)
	})
	dead := deadURL(t)
	t.Run("dead and failing upstreams are skipped", func(t *testing.T) {
		gw, pool := poolServer(t, upstream.Ordered, []upstream.Config{{BaseURL: dead}, {BaseURL: bad.URL + "/v1"}, {BaseURL: good.URL + "/v1"}}, nil)
		for i := range 4 {
			status, body := readAll(t, gw.URL, chatBody(i%2 == 1))
			if status != 200 || !strings.Contains(body, `"content":"fine"`) {
				t.Fatalf("request %d: %d %s", i, status, body)
			}
			if i == 1 {
				if st := pool.Status(); st[0].Up || !strings.Contains(st[0].LastError, "cannot connect") || !st[1].Up || !strings.Contains(st[1].LastError, "CUDA out of memory") || !st[2].Up {
					t.Errorf("status after 2 requests: %+v", st)
				}
			}
		}
		// The refused upstream is out after its first failure; the failing
		// one after its third (EjectAfter); the fourth request skips both.
		if calls500.Load() != 3 || callsOK.Load() != 4 {
			t.Errorf("the 500 upstream got %d requests (want 3), the good one %d (want 4)", calls500.Load(), callsOK.Load())
		}
		if st := pool.Status(); st[1].Up {
			t.Errorf("the failing upstream is still in after 3 failures: %+v", st)
		}
	})
	t.Run("a refused request is not retried", func(t *testing.T) {
		calls400.Store(0)
		okBefore := callsOK.Load()
		gw, _ := poolServer(t, upstream.Ordered, []upstream.Config{{BaseURL: refusing.URL + "/v1"}, {BaseURL: good.URL + "/v1"}}, nil)
		status, body := readAll(t, gw.URL, chatBody(false))
		if status != 400 || !strings.Contains(body, "temperature must be non-negative") || !strings.Contains(body, "rejected the request (400)") {
			t.Errorf("%d %s", status, body)
		}
		if calls400.Load() != 1 || callsOK.Load() != okBefore {
			t.Errorf("refusing upstream %d calls, good one %d more", calls400.Load(), callsOK.Load()-okBefore)
		}
	})
	t.Run("all failing: every failure named", func(t *testing.T) {
		gw, _ := poolServer(t, upstream.Ordered, []upstream.Config{{BaseURL: dead}, {BaseURL: bad.URL + "/v1"}}, nil)
		status, body := readAll(t, gw.URL, chatBody(true))
		if status != 502 || !strings.Contains(body, `no upstream of model \"x\" could answer (2 tried)`) || !strings.Contains(body, "cannot connect") ||
			!strings.Contains(body, "CUDA out of memory") || !strings.Contains(body, `"code":"upstream_error"`) {
			t.Errorf("%d %s", status, body)
		}
	})
}

// TestFailureAfterTheFirstByte: once a chunk has reached the client, an
// upstream that breaks ends the stream with an error event and [DONE] (a
// non-streamed request gets a 502), and nothing is retried.
func TestFailureAfterTheFirstByte(t *testing.T) {
	var fallbackCalls atomic.Int32
	breaking, _ := upstreamOf(t, func(w http.ResponseWriter, _ *http.Request, _ []byte) {
		sseOut(w, chunk("Once"), chunk(" upon"))
		conn, buf, err := http.NewResponseController(w).Hijack()
		if err == nil {
			buf.Flush()
			conn.Close() // the replica died mid-stream
		}
	})
	stalling, _ := upstreamOf(t, func(w http.ResponseWriter, r *http.Request, _ []byte) {
		sseOut(w, chunk("Once"))
		<-r.Context().Done()
	})
	fallback, _ := upstreamOf(t, func(w http.ResponseWriter, r *http.Request, b []byte) {
		fallbackCalls.Add(1)
		okStream("other")(w, r, b)
	})
	for _, tc := range []struct {
		name string
		up   string
		want string
	}{
		{"connection cut", breaking.URL, "closed the stream before it finished"},
		{"stalled", stalling.URL, "no data for 200ms (idle timeout)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			gw, _ := poolServer(t, upstream.Ordered, []upstream.Config{{BaseURL: tc.up + "/v1", Timeouts: httpclient.Timeouts{Idle: 200 * time.Millisecond}},
				{BaseURL: fallback.URL + "/v1"}}, nil)
			status, body := readAll(t, gw.URL, chatBody(true))
			events := strings.Split(strings.TrimSpace(body), "\n\n")
			last, errEv := events[len(events)-1], events[len(events)-2]
			if status != 200 || !strings.Contains(body, `"content":"Once"`) || last != "data: [DONE]" || !strings.HasPrefix(errEv, `data: {"error":`) || !strings.Contains(errEv, tc.want) {
				t.Errorf("stream: %d %s", status, body)
			}
			status, body = readAll(t, gw.URL, chatBody(false))
			if status == 200 || !strings.Contains(body, tc.want) {
				t.Errorf("non-streamed: %d %s", status, body)
			}
			if fallbackCalls.Load() != 0 {
				t.Errorf("the fallback was called %d times after the first chunk had gone out", fallbackCalls.Load())
			}
		})
	}
}

// TestTimeouts: an upstream that accepts and never answers is a 504
// upstream_timeout after the first-byte limit, and the next upstream answers.
func TestTimeouts(t *testing.T) {
	silent, _ := upstreamOf(t, func(_ http.ResponseWriter, r *http.Request, _ []byte) { <-r.Context().Done() })
	good, _ := upstreamOf(t, okStream("late but fine"))
	tm := httpclient.Timeouts{FirstByte: 150 * time.Millisecond}
	gw, _ := poolServer(t, upstream.Ordered, []upstream.Config{{BaseURL: silent.URL + "/v1", Timeouts: tm}}, nil)
	start := time.Now()
	status, body := readAll(t, gw.URL, chatBody(false))
	if status != 504 || !strings.Contains(body, `"code":"upstream_timeout"`) || !strings.Contains(body, "first-byte timeout") || time.Since(start) > 5*time.Second {
		t.Errorf("%d after %s: %s", status, time.Since(start), body)
	}
	gw2, _ := poolServer(t, upstream.Ordered, []upstream.Config{{BaseURL: silent.URL + "/v1", Timeouts: tm}, {BaseURL: good.URL + "/v1"}}, nil)
	if status, body := readAll(t, gw2.URL, chatBody(true)); status != 200 || !strings.Contains(body, "late but fine") {
		t.Errorf("failover after a timeout: %d %s", status, body)
	}
}

// TestClientDisconnectCancelsUpstream: a client that goes away cancels the
// request upstream at once.
func TestClientDisconnectCancelsUpstream(t *testing.T) {
	cancelled := make(chan time.Time, 1)
	slow, _ := upstreamOf(t, func(w http.ResponseWriter, r *http.Request, _ []byte) {
		for i := 0; ; i++ {
			select {
			case <-r.Context().Done():
				cancelled <- time.Now()
				return
			case <-time.After(20 * time.Millisecond):
			}
			sseOut(w, chunk(fmt.Sprint(i)))
		}
	})
	gw, _ := poolServer(t, upstream.Ordered, []upstream.Config{{BaseURL: slow.URL + "/v1"}}, nil)
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, gw.URL+"/v1/chat/completions", strings.NewReader(chatBody(true)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(resp.Body)
	for range 4 { // two events
		br.ReadString('\n')
	}
	left := time.Now()
	cancel()
	resp.Body.Close()
	select {
	case at := <-cancelled:
		if d := at.Sub(left); d > time.Second {
			t.Errorf("the upstream request ended %s after the client left", d)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the upstream request was not cancelled")
	}
}

// TestActiveHealth: an upstream that stops answering its health check is
// taken out before any request fails on it, and comes back when it answers
// again.
func TestActiveHealth(t *testing.T) {
	var healthy atomic.Bool
	healthy.Store(true)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/health" && !healthy.Load() {
			w.WriteHeader(503)
			return
		}
		if r.URL.Path == "/health" {
			io.WriteString(w, `{"status":"ok"}`)
			return
		}
		okStream("x")(w, r, nil)
	}))
	defer up.Close()
	_, pool := poolServer(t, upstream.Prefix, []upstream.Config{{BaseURL: up.URL + "/v1"}}, func(pc *upstream.PoolConfig) {
		pc.HealthInterval = 30 * time.Millisecond
		pc.Cooldown = 10 * time.Millisecond
	})
	waitFor := func(up bool) {
		t.Helper()
		deadline := time.Now().Add(3 * time.Second)
		for time.Now().Before(deadline) {
			if pool.Status()[0].Up == up {
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
		t.Fatalf("upstream never became up=%v: %+v", up, pool.Status())
	}
	healthy.Store(false)
	waitFor(false)
	if !strings.Contains(pool.Status()[0].LastError, "answered 503") {
		t.Errorf("last error %q", pool.Status()[0].LastError)
	}
	healthy.Store(true)
	waitFor(true)
}

// TestNoUpstreams: a pool whose DNS name resolves to nothing answers 502
// saying so.
func TestNoUpstreams(t *testing.T) {
	gw, _ := poolServer(t, upstream.Prefix, []upstream.Config{{BaseURL: "http://replicas.invalid:8000/v1", Discover: "dns"}}, func(pc *upstream.PoolConfig) {
		pc.LookupHost = func(context.Context, string) ([]string, error) {
			return nil, &net.DNSError{Err: "no such host", IsNotFound: true}
		}
	})
	status, body := readAll(t, gw.URL, chatBody(false))
	if status != 502 || !strings.Contains(body, "DNS discovery found no replicas") {
		t.Errorf("%d %s", status, body)
	}
}

// TestNoUsage: an upstream that ignores include_usage still answers; its
// usage is zeros, and the log says once that its tokens cannot be billed.
func TestNoUsage(t *testing.T) {
	up, _ := upstreamOf(t, func(w http.ResponseWriter, _ *http.Request, _ []byte) {
		sseOut(w, chunk("hi"), finishChunk("stop"), "[DONE]")
	})
	var log testserve.Buffer
	gw, _ := poolServer(t, upstream.Ordered, []upstream.Config{{BaseURL: up.URL + "/v1"}}, func(pc *upstream.PoolConfig) {
		pc.Logger = slog.New(slog.NewTextHandler(&log, nil))
	})
	for range 2 {
		status, body := readAll(t, gw.URL, chatBody(false))
		if status != 200 || !strings.Contains(body, `"content":"hi"`) || !strings.Contains(body, `"prompt_tokens":0,"completion_tokens":0`) {
			t.Errorf("%d %s", status, body)
		}
	}
	if n := strings.Count(log.String(), "without usage"); n != 1 {
		t.Errorf("%d warnings in the log:\n%s", n, log.String())
	}
}
