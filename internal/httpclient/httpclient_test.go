package httpclient

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Short limits keep the package tests fast; every wait below is a multiple
// of them.
var short = Timeouts{Connect: 100 * time.Millisecond, FirstByte: 150 * time.Millisecond, Idle: 150 * time.Millisecond}

// silentListener accepts connections, reads what the client sends and never
// answers. Close closes the listener and every connection.
type silentListener struct {
	ln    net.Listener
	mu    sync.Mutex
	conns []net.Conn
	wg    sync.WaitGroup
}

func newSilentListener(t *testing.T) *silentListener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &silentListener{ln: ln}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.conns = append(s.conns, c)
			s.mu.Unlock()
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				// A client that never gives up fails the test in 5s
				// rather than hanging it.
				c.SetDeadline(time.Now().Add(5 * time.Second))
				io.Copy(io.Discard, c)
				c.Close()
			}()
		}
	}()
	return s
}

func (s *silentListener) URL() string { return "http://" + s.ln.Addr().String() + "/" }

func (s *silentListener) Close() {
	s.ln.Close()
	s.mu.Lock()
	for _, c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

// refusedURL returns an address on which nothing listens.
func refusedURL(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return "http://" + addr + "/"
}

// blockingDial never connects: it waits for its context, as a dial to a
// host that drops SYNs does.
func blockingDial(ctx context.Context, network, addr string) (net.Conn, error) {
	<-ctx.Done()
	return nil, &net.OpError{Op: "dial", Net: network, Err: ctx.Err()}
}

// stallAfter serves headers and prefix, then sends nothing more until the
// client goes away (or 5s pass, so that a client that never gives up fails
// the test rather than hanging it).
func stallAfter(prefix string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "1000")
		w.WriteHeader(http.StatusOK)
		io.WriteString(w, prefix)
		w.(http.Flusher).Flush()
		select {
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
	}
}

// trickle sends n chunks with gap between them.
func trickle(n int, gap time.Duration) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		for i := range n {
			time.Sleep(gap)
			fmt.Fprintf(w, "chunk%d;", i)
			w.(http.Flusher).Flush()
		}
	}
}

// settleGoroutines waits until at most want goroutines run, and fails the
// test if that does not happen within two seconds.
func settleGoroutines(t *testing.T, want int) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for {
		n := runtime.NumGoroutine()
		if n <= want {
			return
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			t.Fatalf("%d goroutines left, want at most %d:\n%s", n, want, buf)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestClient(t *testing.T) {
	cases := []struct {
		name string
		// server returns the URL to request and a function that stops the
		// server; nil means a plain httptest server running handler.
		server  func(t *testing.T) (string, func())
		handler http.HandlerFunc
		dial    dialFunc // nil: a real dial
		cancel  time.Duration
		// readGap is a pause between the caller's body Reads.
		readGap time.Duration

		wantPhase Phase // "": success (or a non-phase error, see wantIs)
		wantLimit time.Duration
		wantIs    error
		wantBody  string // the body read (before any error)
		wantMsg   string
	}{
		{
			name:     "normal response",
			handler:  func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "hello") },
			wantBody: "hello",
		},
		{
			name:      "connection refused",
			server:    func(t *testing.T) (string, func()) { return refusedURL(t), func() {} },
			wantPhase: PhaseConnect,
			wantIs:    syscall.ECONNREFUSED,
			wantMsg:   "cannot connect",
		},
		{
			name:      "connect timeout",
			server:    func(t *testing.T) (string, func()) { return "http://192.0.2.1/", func() {} },
			dial:      blockingDial,
			wantPhase: PhaseConnect,
			wantLimit: short.Connect,
			wantMsg:   "no connection within 100ms (connect timeout)",
		},
		{
			name: "accepts, never answers",
			server: func(t *testing.T) (string, func()) {
				s := newSilentListener(t)
				return s.URL(), s.Close
			},
			wantPhase: PhaseFirstByte,
			wantLimit: short.FirstByte,
			wantMsg:   "no response within 150ms of sending the request (first-byte timeout)",
		},
		{
			name: "closes without answering",
			handler: func(w http.ResponseWriter, r *http.Request) {
				panic(http.ErrAbortHandler)
			},
			wantPhase: PhaseFirstByte,
			wantIs:    io.EOF,
			wantMsg:   "connected, but no response: EOF",
		},
		{
			name:      "stalls mid-body",
			handler:   stallAfter("partial"),
			wantPhase: PhaseIdle,
			wantLimit: short.Idle,
			wantBody:  "partial",
			wantMsg:   "no data for 150ms (idle timeout)",
		},
		{
			name:     "trickles within the idle limit",
			handler:  trickle(5, short.Idle/3),
			wantBody: "chunk0;chunk1;chunk2;chunk3;chunk4;",
		},
		{
			name:     "slow reader, prompt server",
			handler:  func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, strings.Repeat("x", 3)) },
			readGap:  2 * short.Idle,
			wantBody: "xxx",
		},
		{
			name: "caller cancels while waiting for headers",
			server: func(t *testing.T) (string, func()) {
				s := newSilentListener(t)
				return s.URL(), s.Close
			},
			cancel: short.FirstByte / 3,
			wantIs: context.Canceled,
		},
		{
			name:     "caller cancels mid-body",
			handler:  stallAfter("partial"),
			cancel:   short.Idle / 3,
			wantIs:   context.Canceled,
			wantBody: "partial",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := runtime.NumGoroutine()
			var url string
			var stop func()
			if tc.server != nil {
				url, stop = tc.server(t)
			} else {
				srv := httptest.NewServer(tc.handler)
				url, stop = srv.URL, srv.Close
			}
			dial := tc.dial
			if dial == nil {
				dial = (&net.Dialer{}).DialContext
			}
			client := &http.Client{Transport: Wrap(newTransport(short, dial), short)}
			ctx := context.Background()
			if tc.cancel > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithCancel(ctx)
				timer := time.AfterFunc(tc.cancel, cancel)
				defer timer.Stop()
			}
			body, err := get(ctx, client, url, tc.readGap)
			stop()
			client.CloseIdleConnections()
			settleGoroutines(t, before)

			if body != tc.wantBody {
				t.Errorf("body %q, want %q", body, tc.wantBody)
			}
			if tc.wantPhase == "" && tc.wantIs == nil {
				if err != nil {
					t.Fatalf("error %v, want none", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("no error, want phase %q / %v", tc.wantPhase, tc.wantIs)
			}
			var e *Error
			gotPhase := errors.As(err, &e)
			switch {
			case tc.wantPhase == "" && gotPhase:
				t.Errorf("error %v is an *Error of phase %q, want a plain error", err, e.Phase)
			case tc.wantPhase != "" && !gotPhase:
				t.Errorf("error %v (%T) is no *Error, want phase %q", err, err, tc.wantPhase)
			case gotPhase && (e.Phase != tc.wantPhase || e.Limit != tc.wantLimit || e.Timeout() != (tc.wantLimit > 0)):
				t.Errorf("error %v: phase %q limit %v, want %q %v", err, e.Phase, e.Limit, tc.wantPhase, tc.wantLimit)
			}
			if tc.wantIs != nil && !errors.Is(err, tc.wantIs) {
				t.Errorf("error %v is not %v", err, tc.wantIs)
			}
			if !strings.Contains(err.Error(), tc.wantMsg) {
				t.Errorf("message %q lacks %q", err, tc.wantMsg)
			}
		})
	}
}

// get fetches url and reads the body in small pieces, pausing gap between
// Reads; it returns what it read and the first error.
func get(ctx context.Context, client *http.Client, url string, gap time.Duration) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if resp.Request != req {
		return "", errors.New("resp.Request is not the request sent")
	}
	var sb strings.Builder
	buf := make([]byte, 7)
	for {
		if gap > 0 {
			time.Sleep(gap)
		}
		n, err := resp.Body.Read(buf)
		sb.Write(buf[:n])
		if err == io.EOF {
			return sb.String(), nil
		}
		if err != nil {
			return sb.String(), err
		}
	}
}

// TestIdleCancelsRequest: an idle timeout closes the stalled connection, so
// the server sees the request end.
func TestIdleCancelsRequest(t *testing.T) {
	ended := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		select {
		case <-r.Context().Done():
			close(ended)
		case <-time.After(5 * time.Second):
		}
	}))
	defer srv.Close()
	client := NewClient(short)
	defer client.CloseIdleConnections()
	resp, err := client.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	_, err = io.ReadAll(resp.Body)
	var e *Error
	if !errors.As(err, &e) || e.Phase != PhaseIdle {
		t.Fatalf("read error %v, want an idle timeout", err)
	}
	select {
	case <-ended:
	case <-time.After(2 * time.Second):
		t.Fatal("the server's request did not end after the idle timeout")
	}
}

// TestConnectionReuse: a body read to its end leaves the connection for the
// next request, and the caller's own trace hooks still run.
func TestConnectionReuse(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	defer srv.Close()
	client := NewClient(short)
	defer client.CloseIdleConnections()
	var reused []bool
	for range 3 {
		ctx := httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{
			GotConn: func(info httptrace.GotConnInfo) { reused = append(reused, info.Reused) },
		})
		if body, err := get(ctx, client, srv.URL, 0); err != nil || body != "ok" {
			t.Fatalf("body %q, error %v", body, err)
		}
	}
	if fmt.Sprint(reused) != "[false true true]" {
		t.Errorf("connections reused: %v, want [false true true]", reused)
	}
}

func TestWithDefaults(t *testing.T) {
	cases := []struct {
		in, want Timeouts
	}{
		{Timeouts{}, DefaultTimeouts},
		{Timeouts{Connect: time.Second}, Timeouts{Connect: time.Second, FirstByte: DefaultTimeouts.FirstByte, Idle: DefaultTimeouts.Idle}},
		{Timeouts{FirstByte: -1, Idle: 2 * time.Minute}, Timeouts{Connect: DefaultTimeouts.Connect, FirstByte: -1, Idle: 2 * time.Minute}},
	}
	for _, tc := range cases {
		if got := tc.in.WithDefaults(); got != tc.want {
			t.Errorf("%+v.WithDefaults() = %+v, want %+v", tc.in, got, tc.want)
		}
	}
	tr := NewTransport(Timeouts{Connect: -1, FirstByte: -1})
	if tr.TLSHandshakeTimeout != 0 || tr.ResponseHeaderTimeout != 0 {
		t.Errorf("negative limits: TLS %v, headers %v; want none", tr.TLSHandshakeTimeout, tr.ResponseHeaderTimeout)
	}
	tr = NewTransport(Timeouts{})
	if tr.TLSHandshakeTimeout != DefaultTimeouts.Connect || tr.ResponseHeaderTimeout != DefaultTimeouts.FirstByte || tr.MaxIdleConnsPerHost < 64 || tr.Proxy == nil {
		t.Errorf("default transport %+v", tr)
	}
}

// TestNoIdleLimit: a negative Idle lets a body pause for longer than the
// default test limits.
func TestNoIdleLimit(t *testing.T) {
	srv := httptest.NewServer(trickle(2, 2*short.Idle))
	defer srv.Close()
	lim := short
	lim.Idle = -1
	client := NewClient(lim)
	defer client.CloseIdleConnections()
	body, err := get(context.Background(), client, srv.URL, 0)
	if err != nil || body != "chunk0;chunk1;" {
		t.Errorf("body %q, error %v", body, err)
	}
}

func TestErrorMessages(t *testing.T) {
	cases := []struct {
		err  *Error
		want string
	}{
		{&Error{Phase: PhaseConnect, Limit: 10 * time.Second, Err: errors.New("dial tcp 10.0.0.1:443: i/o timeout")}, "no connection within 10s (connect timeout): dial tcp 10.0.0.1:443: i/o timeout"},
		{&Error{Phase: PhaseConnect, Err: errors.New("dial tcp: lookup x: no such host")}, "cannot connect: dial tcp: lookup x: no such host"},
		{&Error{Phase: PhaseFirstByte, Limit: time.Minute}, "connected, but no response within 60s of sending the request (first-byte timeout)"},
		{&Error{Phase: PhaseIdle, Limit: 1500 * time.Millisecond}, "no data for 1.5s (idle timeout)"},
	}
	for _, tc := range cases {
		if got := tc.err.Error(); got != tc.want {
			t.Errorf("message %q, want %q", got, tc.want)
		}
	}
}
