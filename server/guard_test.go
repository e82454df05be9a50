package server_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stepflash/stepflash/api"
	"github.com/stepflash/stepflash/backend"
	"github.com/stepflash/stepflash/server"
)

// guarded is a server as the binary runs it: an http.Server set up by
// Configure on a listener from Listener.
type guarded struct {
	srv  *server.Server
	hs   *http.Server
	addr string // host:port of the listener
	base string // http://addr
}

func startGuarded(t *testing.T, cfg server.Config, listen string, models ...*server.Model) *guarded {
	t.Helper()
	srv := server.New(cfg)
	for _, m := range models {
		if err := srv.AddModel(m); err != nil {
			t.Fatal(err)
		}
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: srv}
	srv.Configure(hs)
	go hs.Serve(srv.Listener(ln))
	t.Cleanup(func() { hs.Close() })
	addr := ln.Addr().String()
	if tcp := ln.Addr().(*net.TCPAddr); tcp.IP.IsUnspecified() {
		addr = net.JoinHostPort("127.0.0.1", fmt.Sprint(tcp.Port))
	}
	return &guarded{srv: srv, hs: hs, addr: addr, base: "http://" + addr}
}

// echoModel answers every chat request with one content chunk and usage.
func echoModel(name string) *server.Model {
	return funcModel(name, func(emit func(*api.ChatCompletionChunk) error) error {
		if err := emit(content("hello")); err != nil {
			return err
		}
		return emit(&api.ChatCompletionChunk{Choices: []api.ChunkChoice{}, Usage: api.NewUsage(1, 0, 1, 0)})
	})
}

const chatBody = `{"model":"m","messages":[{"role":"user","content":"hi"}]}`

// errorOf decodes an error object body (failing the test when it is not one).
func errorOf(t *testing.T, b []byte) *api.Error {
	t.Helper()
	var er api.ErrorResponse
	if err := json.Unmarshal(b, &er); err != nil || er.Error == nil || er.Error.Message == "" {
		t.Fatalf("not an error object: %q (%v)", b, err)
	}
	return er.Error
}

func do(t *testing.T, req *http.Request) (*http.Response, []byte) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, b
}

func newReq(t *testing.T, method, url, body string) *http.Request {
	t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, r)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

func fdCount(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("no /proc/self/fd: %v", err)
	}
	return len(ents)
}

// TestSlowClients is the slow-client check: 200 connections that
// send nothing, trickle their headers, trickle their body or sit idle
// after a request, against a server capped at 40 connections. Meanwhile
// legit requests are answered; every bad connection is cut (the body
// tricklers with a JSON 408); and the process never holds more server-side
// sockets than the cap.
func TestSlowClients(t *testing.T) {
	const maxConns, perKind = 40, 50
	g := startGuarded(t, server.Config{Guard: server.Guard{
		ReadHeaderTimeout: 300 * time.Millisecond, ReadTimeout: 600 * time.Millisecond,
		IdleTimeout: 600 * time.Millisecond, WriteTimeout: 2 * time.Second, MaxConns: maxConns,
	}}, "127.0.0.1:0", echoModel("m"))
	base := fdCount(t)

	// Sample the descriptors and the open connections all along.
	var maxFDs, maxOpen, clientConns atomic.Int64
	stopSampling := make(chan struct{})
	var sampler sync.WaitGroup
	sampler.Go(func() {
		for {
			// The client count is an upper bound of the clients'
			// descriptors at any instant (counted before a dial, uncounted
			// after a close); the larger of its values around the scan
			// bounds them during it.
			before := clientConns.Load()
			all := int64(fdCount(t))
			fds := all - max(before, clientConns.Load())
			if fds > maxFDs.Load() {
				maxFDs.Store(fds)
			}
			if o := int64(g.srv.OpenConns()); o > maxOpen.Load() {
				maxOpen.Store(o)
			}
			select {
			case <-stopSampling:
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	})

	type outcome struct {
		kind string
		resp string // what the server sent before closing
		err  error  // the connection was not closed by the server
	}
	outcomes := make(chan outcome, 4*perKind)
	trickle := func(c net.Conn, stop <-chan struct{}) {
		for {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			if _, err := c.Write([]byte("x")); err != nil {
				return
			}
		}
	}
	// waitClosed reads until the server closes the connection (EOF or
	// reset), with a hang guard far beyond the timeouts.
	waitClosed := func(c net.Conn) (string, error) {
		c.SetReadDeadline(time.Now().Add(30 * time.Second))
		b, err := io.ReadAll(c)
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return string(b), fmt.Errorf("still open after 30s: %w", err)
		}
		return string(b), nil
	}
	bad := func(kind string, setup func(c net.Conn, stop <-chan struct{})) {
		clientConns.Add(1) // before its descriptor exists, so that it is never counted as the server's
		c, err := net.Dial("tcp", g.addr)
		if err != nil {
			clientConns.Add(-1)
			outcomes <- outcome{kind: kind, err: err}
			return
		}
		defer func() { c.Close(); clientConns.Add(-1) }()
		stop := make(chan struct{})
		go setup(c, stop)
		resp, err := waitClosed(c)
		close(stop)
		outcomes <- outcome{kind, resp, err}
	}
	kinds := map[string]func(c net.Conn, stop <-chan struct{}){
		"silent": func(net.Conn, <-chan struct{}) {},
		"header trickler": func(c net.Conn, stop <-chan struct{}) {
			fmt.Fprintf(c, "POST /v1/chat/completions HTTP/1.1\r\nHost: %s\r\nX-Slow: ", g.addr)
			trickle(c, stop)
		},
		"body trickler": func(c net.Conn, stop <-chan struct{}) {
			fmt.Fprintf(c, "POST /v1/chat/completions HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{", g.addr)
			trickle(c, stop)
		},
		"idle keep-alive": func(c net.Conn, _ <-chan struct{}) {
			fmt.Fprintf(c, "GET /health HTTP/1.1\r\nHost: %s\r\n\r\n", g.addr)
		},
	}
	var clients sync.WaitGroup
	for kind, setup := range kinds {
		for range perKind {
			clients.Go(func() { bad(kind, setup) })
		}
	}

	// Legit requests while the bad clients hold on, each on a new
	// connection: answered, with the right body.
	legit := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	for i := range 12 {
		var resp *http.Response
		var err error
		switch i % 3 {
		case 0:
			resp, err = legit.Get(g.base + "/v1/models")
		case 1:
			resp, err = legit.Post(g.base+"/v1/chat/completions", "application/json", strings.NewReader(chatBody))
		default:
			resp, err = legit.Post(g.base+"/v1/chat/completions", "application/json", strings.NewReader(`{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}`))
		}
		if err != nil {
			t.Fatalf("legit request %d: %v", i, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || (i%3 != 0 && !strings.Contains(string(b), `"hello"`)) {
			t.Errorf("legit request %d: %d %s", i, resp.StatusCode, b)
		}
	}

	clients.Wait()
	close(stopSampling)
	sampler.Wait()
	close(outcomes)
	counts := map[string]int{}
	for o := range outcomes {
		counts[o.kind]++
		if o.err != nil {
			t.Errorf("%s: %v", o.kind, o.err)
			continue
		}
		switch o.kind {
		case "body trickler":
			if !strings.HasPrefix(o.resp, "HTTP/1.1 408 ") || !strings.Contains(o.resp, `"code":"request_timeout"`) {
				t.Errorf("body trickler got %q, want a JSON 408", o.resp)
			}
		case "idle keep-alive":
			if !strings.HasPrefix(o.resp, "HTTP/1.1 200 ") {
				t.Errorf("idle keep-alive client got %q", o.resp)
			}
		default:
			if o.resp != "" {
				t.Errorf("%s got %q", o.kind, o.resp)
			}
		}
	}
	for kind := range kinds {
		if counts[kind] != perKind {
			t.Errorf("%s: %d outcomes, want %d", kind, counts[kind], perKind)
		}
	}
	if m := maxOpen.Load(); m > maxConns {
		t.Errorf("%d connections open at once, cap %d", m, maxConns)
	}
	// Descriptors beyond the client ends: the server's accepted sockets
	// (at most the cap), the listener, and a few for the runtime.
	if m := maxFDs.Load(); m > int64(base+maxConns+16) {
		t.Errorf("server-side descriptors peaked at %d (baseline %d, cap %d)", m, base, maxConns)
	}
	t.Logf("peak: %d open connections, %d server-side descriptors over a baseline of %d", maxOpen.Load(), maxFDs.Load(), base)
}

// TestSlowReaderFreesBackend: a client that stops reading a stream is cut
// after the write timeout, and the backend feeding it sees the error and
// stops.
func TestSlowReaderFreesBackend(t *testing.T) {
	ended := make(chan error, 1)
	big := strings.Repeat("x", 64<<10)
	flood := funcModel("m", func(emit func(*api.ChatCompletionChunk) error) error {
		for {
			if err := emit(content(big)); err != nil {
				ended <- err
				return err
			}
		}
	})
	g := startGuarded(t, server.Config{Guard: server.Guard{WriteTimeout: 300 * time.Millisecond}}, "127.0.0.1:0", flood)
	c, err := net.Dial("tcp", g.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	body := `{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}`
	fmt.Fprintf(c, "POST /v1/chat/completions HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", g.addr, len(body), body)
	// Never read.
	select {
	case err := <-ended:
		if err == nil {
			t.Fatal("emit returned nil")
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the backend still streams to a client that stopped reading 30s ago")
	}
}

func TestContentType(t *testing.T) {
	g := startGuarded(t, server.Config{Guard: server.Guard{CORSOrigins: []string{"https://ui.example.com"}}}, "127.0.0.1:0", echoModel("m"))
	cases := []struct {
		ct, origin string
		status     int
	}{
		{"application/json", "", 200},
		{"application/json; charset=utf-8", "", 200},
		{"Application/JSON; charset=UTF-8", "", 200},
		{"", "", 200}, // no type, not from a browser: read as JSON
		{"", "https://ui.example.com", 200},
		{"", "http://" + g.addr, 200}, // same origin
		{"", "https://evil.example", 415},
		{"", "null", 415},
		{"text/plain", "", 415},
		{"text/plain", "https://ui.example.com", 415},
		{"application/x-www-form-urlencoded", "", 415},
		{"multipart/form-data; boundary=x", "", 415},
		{"application/json; charset=latin1", "", 415},
		{"application/jsonx", "", 415},
		{";;", "", 415},
	}
	for _, tc := range cases {
		req := newReq(t, "POST", g.base+"/v1/chat/completions", chatBody)
		if tc.ct != "" {
			req.Header.Set("Content-Type", tc.ct)
		}
		if tc.origin != "" {
			req.Header.Set("Origin", tc.origin)
		}
		resp, b := do(t, req)
		if resp.StatusCode != tc.status {
			t.Errorf("Content-Type %q Origin %q: %d, want %d: %s", tc.ct, tc.origin, resp.StatusCode, tc.status, b)
			continue
		}
		if tc.status == 415 {
			if e := errorOf(t, b); e.CodeString() != server.CodeUnsupportedMediaType || !strings.Contains(e.Message, "application/json") {
				t.Errorf("Content-Type %q: error %+v", tc.ct, e)
			}
		}
	}
}

// nonLoopbackIP is an address of this machine other than loopback, or nil.
func nonLoopbackIP() net.IP {
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok && !ipn.IP.IsLoopback() && ipn.IP.To4() != nil && !ipn.IP.IsLinkLocalUnicast() {
			return ipn.IP
		}
	}
	return nil
}

func TestHostAllowList(t *testing.T) {
	hostname, _ := os.Hostname()
	specific := startGuarded(t, server.Config{Guard: server.Guard{AllowedHosts: []string{"api.example.com", "other.test:9000"}}}, "127.0.0.1:0", echoModel("m"))
	wildcard := startGuarded(t, server.Config{}, "0.0.0.0:0", echoModel("m"))
	anyHost := startGuarded(t, server.Config{Guard: server.Guard{AllowedHosts: []string{"*"}}}, "127.0.0.1:0", echoModel("m"))
	_, wport, _ := net.SplitHostPort(wildcard.addr)
	cases := []struct {
		name string
		base string
		host string
		ok   bool
	}{
		{"loopback IP", specific.base, "127.0.0.1:8000", true},
		{"localhost", specific.base, "localhost:8000", true},
		{"localhost without port", specific.base, "localhost", true},
		{"IPv6 loopback", specific.base, "[::1]:8000", true},
		{"a localhost subdomain", specific.base, "app.localhost:8000", true},
		{"any IP", specific.base, "10.1.2.3:8000", true},
		{"this machine", specific.base, hostname, hostname != ""},
		{"allowed", specific.base, "api.example.com", true},
		{"allowed, other case and trailing dot", specific.base, "API.Example.COM.:443", true},
		{"allowed given with a port", specific.base, "other.test", true},
		{"rebound name", specific.base, "evil.example:8000", false},
		{"a suffix of an allowed name", specific.base, "example.com", false},
		{"wildcard listener, on loopback", wildcard.base, "evil.example", false},
		{"star", anyHost.base, "evil.example", true},
	}
	if ip := nonLoopbackIP(); ip != nil {
		cases = append(cases, struct {
			name string
			base string
			host string
			ok   bool
		}{"wildcard listener, not on loopback", "http://" + net.JoinHostPort(ip.String(), wport), "api.internal.example", true})
	} else {
		t.Log("no non-loopback address: the wildcard listener's unchecked case is not run")
	}
	for _, tc := range cases {
		for _, path := range []string{"/v1/models", "/health"} {
			req := newReq(t, "GET", tc.base+path, "")
			req.Host = tc.host
			resp, b := do(t, req)
			if tc.ok {
				if resp.StatusCode != 200 {
					t.Errorf("%s (Host %q) %s: %d %s", tc.name, tc.host, path, resp.StatusCode, b)
				}
				continue
			}
			if resp.StatusCode != 403 {
				t.Errorf("%s (Host %q) %s: %d, want 403: %s", tc.name, tc.host, path, resp.StatusCode, b)
				continue
			}
			e := errorOf(t, b)
			if e.CodeString() != server.CodeHostNotAllowed || !strings.Contains(e.Message, "--allowed-host "+normal(tc.host)) || resp.Header.Get("X-Request-Id") == "" {
				t.Errorf("%s: %+v", tc.name, e)
			}
		}
	}
}

func normal(h string) string {
	if host, _, err := net.SplitHostPort(h); err == nil {
		return host
	}
	return h
}

func TestCORS(t *testing.T) {
	const ui = "https://ui.example.com"
	off := startGuarded(t, server.Config{}, "127.0.0.1:0", echoModel("m"))
	on := startGuarded(t, server.Config{Guard: server.Guard{CORSOrigins: []string{ui + "/"}}}, "127.0.0.1:0", echoModel("m"))
	star := startGuarded(t, server.Config{Guard: server.Guard{CORSOrigins: []string{"*"}}}, "127.0.0.1:0", echoModel("m"))
	preflight := func(base, origin string) (*http.Response, []byte) {
		req := newReq(t, "OPTIONS", base+"/v1/chat/completions", "")
		req.Header.Set("Origin", origin)
		req.Header.Set("Access-Control-Request-Method", "POST")
		req.Header.Set("Access-Control-Request-Headers", "authorization, content-type")
		return do(t, req)
	}
	simple := func(base, origin string) *http.Response {
		req := newReq(t, "POST", base+"/v1/chat/completions", chatBody)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Origin", origin)
		resp, b := do(t, req)
		if resp.StatusCode != 200 {
			t.Errorf("POST from %s: %d %s", origin, resp.StatusCode, b)
		}
		return resp
	}
	cases := []struct {
		name   string
		base   string
		origin string
		allow  string // Access-Control-Allow-Origin, "" for none (and a 403 preflight)
	}{
		{"off by default", off.base, ui, ""},
		{"allowed origin", on.base, ui, ui},
		{"other origin", on.base, "https://evil.example", ""},
		{"star", star.base, "https://anything.example", "*"},
	}
	for _, tc := range cases {
		resp, b := preflight(tc.base, tc.origin)
		if tc.allow == "" {
			if resp.StatusCode != 403 || resp.Header.Get("Access-Control-Allow-Origin") != "" {
				t.Errorf("%s: preflight %d %v", tc.name, resp.StatusCode, resp.Header)
			} else if e := errorOf(t, b); e.CodeString() != server.CodeOriginNotAllowed || !strings.Contains(e.Message, "--cors-origin "+tc.origin) {
				t.Errorf("%s: %+v", tc.name, e)
			}
		} else {
			h := resp.Header
			if resp.StatusCode != 204 || h.Get("Access-Control-Allow-Origin") != tc.allow || !strings.Contains(h.Get("Access-Control-Allow-Methods"), "POST") ||
				h.Get("Access-Control-Allow-Headers") != "authorization, content-type" || h.Get("Access-Control-Max-Age") == "" {
				t.Errorf("%s: preflight %d %v", tc.name, resp.StatusCode, h)
			}
		}
		r := simple(tc.base, tc.origin)
		if got := r.Header.Get("Access-Control-Allow-Origin"); got != tc.allow {
			t.Errorf("%s: Access-Control-Allow-Origin %q, want %q", tc.name, got, tc.allow)
		}
		if tc.allow != "" && !strings.Contains(r.Header.Get("Access-Control-Expose-Headers"), "X-Request-Id") {
			t.Errorf("%s: exposed headers %q", tc.name, r.Header.Get("Access-Control-Expose-Headers"))
		}
	}
	// A plain OPTIONS (no preflight) is the route's 405.
	resp, b := do(t, newReq(t, "OPTIONS", on.base+"/v1/chat/completions", ""))
	if resp.StatusCode != 405 || errorOf(t, b).CodeString() != api.CodeMethodNotAllowed {
		t.Errorf("OPTIONS without preflight: %d %s", resp.StatusCode, b)
	}
}

// rawExchange sends raw bytes on a new connection and reads one response.
func rawExchange(t *testing.T, addr, raw string) (*http.Response, []byte, *bufio.Reader, net.Conn) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("%q: %v", raw, err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatalf("%q: body: %v", raw, err)
	}
	return resp, b, br, c
}

// TestHTTPLayerErrorsAreJSON: what net/http answers itself before any
// handler runs, and ServeMux's redirect of a path that is not canonical,
// come as error objects; keep-alive survives the errors handlers write.
func TestHTTPLayerErrorsAreJSON(t *testing.T) {
	g := startGuarded(t, server.Config{Guard: server.Guard{MaxHeaderBytes: 4096}}, "127.0.0.1:0", echoModel("m"))
	host := "Host: " + g.addr + "\r\n"
	cases := []struct {
		name     string
		raw      string
		status   int
		code     string
		closes   bool   // the server closes the connection after it
		location string // for redirects
	}{
		{"malformed request line", "GARBAGE\r\n\r\n", 400, server.CodeBadRequest, true, ""},
		{"no Host", "GET /health HTTP/1.1\r\n\r\n", 400, server.CodeBadRequest, true, ""},
		{"malformed header", "GET /health HTTP/1.1\r\n" + host + "Bad Header\r\n\r\n", 400, server.CodeBadRequest, true, ""},
		{"headers too large", "GET /health HTTP/1.1\r\n" + host + "X-Big: " + strings.Repeat("a", 16<<10) + "\r\n\r\n", 431, server.CodeHeadersTooLarge, true, ""},
		{"unsupported transfer encoding", "POST /v1/chat/completions HTTP/1.1\r\n" + host + "Transfer-Encoding: gzip, chunked\r\n\r\n", 501, server.CodeBadRequest, true, ""},
		{"unknown path", "GET /nope HTTP/1.1\r\n" + host + "\r\n", 404, api.CodeNotFound, false, ""},
		{"wrong method", "DELETE /v1/models HTTP/1.1\r\n" + host + "\r\n", 405, api.CodeMethodNotAllowed, false, ""},
		{"double slash", "GET /v1//models HTTP/1.1\r\n" + host + "\r\n", 307, server.CodeNotCanonical, false, "/v1/models"},
		{"dot segment, query kept", "GET /v1/./models/../models?x=1 HTTP/1.1\r\n" + host + "\r\n", 307, server.CodeNotCanonical, false, "/v1/models?x=1"},
		{"POST to a double slash", "POST //v1/chat/completions HTTP/1.1\r\n" + host + "Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}", 307, server.CodeNotCanonical, false, "/v1/chat/completions"},
	}
	for _, tc := range cases {
		resp, b, br, c := rawExchange(t, g.addr, tc.raw)
		if resp.StatusCode != tc.status || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
			t.Errorf("%s: %d %q, want %d JSON: %s", tc.name, resp.StatusCode, resp.Header.Get("Content-Type"), tc.status, b)
			continue
		}
		if e := errorOf(t, b); e.CodeString() != tc.code {
			t.Errorf("%s: code %q, want %q (%s)", tc.name, e.CodeString(), tc.code, e.Message)
		}
		if tc.location != "" && resp.Header.Get("Location") != tc.location {
			t.Errorf("%s: Location %q, want %q", tc.name, resp.Header.Get("Location"), tc.location)
		}
		// The connection: closed after net/http's own errors, kept alive
		// after a handler's.
		if tc.closes {
			if _, err := br.ReadByte(); err == nil {
				t.Errorf("%s: connection still open", tc.name)
			}
			continue
		}
		fmt.Fprintf(c, "GET /health HTTP/1.1\r\n%s\r\n", host)
		next, err := http.ReadResponse(br, nil)
		if err != nil || next.StatusCode != 200 {
			t.Errorf("%s: the next request on the connection: %v", tc.name, err)
		}
	}
}

// slotModel is a backend with a number of slots: a request waits for one
// (as in an engine's queue, sending nothing) and then streams a chunk
// every 10 ms until its context ends.
func slotModel(name string, slots int, running *atomic.Int32) *server.Model {
	sem := make(chan struct{}, slots)
	run := func(ctx context.Context, emit func(*api.ChatCompletionChunk) error) error {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			return ctx.Err()
		}
		defer func() { <-sem }()
		running.Add(1)
		defer running.Add(-1)
		for {
			if err := emit(content("tick")); err != nil {
				return err
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(10 * time.Millisecond):
			}
		}
	}
	return &server.Model{Name: name, Backend: &backend.Funcs{
		ChatFunc: func(ctx context.Context, _ *api.ChatCompletionRequest, emit func(*api.ChatCompletionChunk) error) error {
			return run(ctx, emit)
		},
		InfoFunc: func() backend.Info { return backend.Info{Label: "test"} },
	}}
}

// TestShutdown: when shutdown begins, requests still waiting for a slot get
// a 503 overloaded with Retry-After at once; running ones go on until the
// shutdown timeout, then a stream ends with an error event and [DONE] and
// a non-streamed request gets a 503.
func TestShutdown(t *testing.T) {
	var running atomic.Int32
	g := startGuarded(t, server.Config{}, "127.0.0.1:0", slotModel("m", 2, &running))
	client := &http.Client{Timeout: 30 * time.Second}
	post := func(stream bool) (*http.Response, error) {
		body := `{"model":"m","messages":[{"role":"user","content":"hi"}],"stream":` + fmt.Sprint(stream) + `}`
		return client.Post(g.base+"/v1/chat/completions", "application/json", strings.NewReader(body))
	}
	type result struct {
		status int
		header http.Header
		body   string
		err    error
	}
	collect := func(stream bool) chan result {
		ch := make(chan result, 1)
		go func() {
			resp, err := post(stream)
			if err != nil {
				ch <- result{err: err}
				return
			}
			b, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			ch <- result{resp.StatusCode, resp.Header, string(b), err}
		}()
		return ch
	}
	// Two running requests (a stream and a non-streamed one), then two
	// waiting for a slot.
	streamResp, err := post(true)
	if err != nil {
		t.Fatal(err)
	}
	defer streamResp.Body.Close()
	sr := bufio.NewReader(streamResp.Body)
	if line, err := sr.ReadString('\n'); err != nil || !strings.Contains(line, "tick") {
		t.Fatalf("first event %q: %v", line, err)
	}
	plain := collect(false)
	for running.Load() < 2 {
		time.Sleep(time.Millisecond)
	}
	queuedPlain, queuedStream := collect(false), collect(true)
	for {
		var b strings.Builder
		resp, err := http.Get(g.base + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(&b, resp.Body)
		resp.Body.Close()
		if strings.Contains(b.String(), "stepflash_requests_in_flight 5") { // 4 calls and this scrape
			break
		}
		time.Sleep(5 * time.Millisecond)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 400*time.Millisecond)
	defer cancel()
	shutdownErr := make(chan error, 1)
	go func() { shutdownErr <- g.srv.Shutdown(ctx, g.hs) }()

	for name, ch := range map[string]chan result{"queued non-streamed": queuedPlain, "queued stream": queuedStream} {
		r := <-ch
		if r.err != nil {
			t.Fatalf("%s: %v", name, r.err)
		}
		if r.status != 503 || r.header.Get("Retry-After") == "" {
			t.Errorf("%s: %d %v %s", name, r.status, r.header, r.body)
			continue
		}
		if e := errorOf(t, []byte(r.body)); e.CodeString() != api.CodeOverloaded || !strings.Contains(e.Message, "had not started") {
			t.Errorf("%s: %+v", name, e)
		}
		// Answered while the running ones still run.
		if running.Load() != 2 {
			t.Errorf("%s answered after the running requests ended", name)
		}
	}

	// The stream runs on until the timeout, then ends with an error event
	// and [DONE].
	rest, err := io.ReadAll(sr)
	if err != nil {
		t.Fatalf("stream: %v (the connection was cut)", err)
	}
	events := strings.Split(strings.TrimSpace(string(rest)), "\n\n")
	if len(events) < 3 || events[len(events)-1] != "data: [DONE]" || !strings.HasPrefix(events[len(events)-2], `data: {"error":`) {
		t.Fatalf("stream ended with %q", events[max(0, len(events)-3):])
	}
	var ev api.ErrorResponse
	if err := json.Unmarshal([]byte(strings.TrimPrefix(events[len(events)-2], "data: ")), &ev); err != nil || ev.Error.CodeString() != api.CodeOverloaded ||
		!strings.Contains(ev.Error.Message, "shutdown timeout") {
		t.Errorf("error event %s: %v", events[len(events)-2], err)
	}
	r := <-plain
	if r.err != nil || r.status != 503 || r.header.Get("Retry-After") == "" || !strings.Contains(r.body, "shutdown timeout") {
		t.Errorf("running non-streamed: %d %v %s %v", r.status, r.header, r.body, r.err)
	}
	if err := <-shutdownErr; err == nil || !strings.Contains(err.Error(), "2 request(s)") {
		t.Errorf("Shutdown: %v, want the 2 ended requests", err)
	}
	// Not ready any more.
	rec := httptest.NewRecorder()
	g.srv.ServeHTTP(rec, httptest.NewRequest("GET", "/health/ready", nil))
	if rec.Code != 503 {
		t.Errorf("ready after shutdown: %d", rec.Code)
	}
}

// TestShutdownInTime: requests that finish before the timeout are not
// touched and Shutdown returns nil.
func TestShutdownInTime(t *testing.T) {
	g := startGuarded(t, server.Config{}, "127.0.0.1:0", echoModel("m"))
	resp, b := do(t, func() *http.Request {
		r := newReq(t, "POST", g.base+"/v1/chat/completions", chatBody)
		r.Header.Set("Content-Type", "application/json")
		return r
	}())
	if resp.StatusCode != 200 {
		t.Fatalf("%d %s", resp.StatusCode, b)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := g.srv.Shutdown(ctx, g.hs); err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	if _, err := http.Get(g.base + "/health"); err == nil {
		t.Error("still listening after Shutdown")
	}
}

// TestLongStreamOutlivesReadTimeout: the read timeout bounds receiving the
// request, not the response: a stream that runs five times longer flows to
// its end (net/http would cancel it if the read deadline stayed set).
func TestLongStreamOutlivesReadTimeout(t *testing.T) {
	const chunks = 50
	slow := &server.Model{Name: "m", Backend: &backend.Funcs{
		ChatFunc: func(ctx context.Context, _ *api.ChatCompletionRequest, emit func(*api.ChatCompletionChunk) error) error {
			for range chunks {
				if err := emit(content("tick")); err != nil {
					return err
				}
				select {
				case <-ctx.Done(): // what a backend does when the client goes away
					return ctx.Err()
				case <-time.After(20 * time.Millisecond):
				}
			}
			return emit(&api.ChatCompletionChunk{Choices: []api.ChunkChoice{}, Usage: api.NewUsage(1, 0, chunks, 0)})
		},
		InfoFunc: func() backend.Info { return backend.Info{Label: "test"} },
	}}
	g := startGuarded(t, server.Config{Guard: server.Guard{ReadTimeout: 200 * time.Millisecond}}, "127.0.0.1:0", slow)
	req := newReq(t, "POST", g.base+"/v1/chat/completions", `{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}`)
	req.Header.Set("Content-Type", "application/json")
	resp, b := do(t, req)
	if resp.StatusCode != 200 || strings.Count(string(b), `"tick"`) != chunks || !strings.HasSuffix(string(b), "data: [DONE]\n\n") {
		t.Errorf("%d, %d chunks, ends %q", resp.StatusCode, strings.Count(string(b), `"tick"`), b[max(0, len(b)-40):])
	}
}

// TestCapMakesRoomFromIdleConnections: at the connection cap, a new
// connection takes the place of one with no request in progress (an idle
// keep-alive one) rather than wait for its idle timeout, but never of one
// with a request running: then it waits until one ends.
func TestCapMakesRoomFromIdleConnections(t *testing.T) {
	var running atomic.Int32
	g := startGuarded(t, server.Config{Guard: server.Guard{MaxConns: 2, IdleTimeout: time.Hour, ReadHeaderTimeout: 200 * time.Millisecond}},
		"127.0.0.1:0", slotModel("m", 4, &running))
	// A stream, running, and an idle keep-alive connection.
	stream := func() (*http.Response, context.CancelFunc) {
		ctx, cancel := context.WithCancel(context.Background())
		req := newReq(t, "POST", g.base+"/v1/chat/completions", `{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}`).WithContext(ctx)
		req.Header.Set("Content-Type", "application/json")
		resp, err := (&http.Client{Transport: &http.Transport{DisableKeepAlives: true}}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp, cancel
	}
	s1, cancel1 := stream()
	defer s1.Body.Close()
	defer cancel1()
	_, _, _, idle := rawExchange(t, g.addr, "GET /health HTTP/1.1\r\nHost: "+g.addr+"\r\n\r\n")
	// A new request gets the idle connection's place.
	quick := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := quick.Get(g.base + "/health")
	if err != nil {
		t.Fatalf("at the cap with an idle connection: %v", err)
	}
	resp.Body.Close()
	idle.SetReadDeadline(time.Now().Add(20 * time.Second))
	if _, err := idle.Read(make([]byte, 1)); err == nil {
		t.Error("the idle connection was not the one closed")
	}
	// Two streams running: a new connection waits for one to end.
	s2, cancel2 := stream()
	defer s2.Body.Close()
	defer cancel2()
	answered := make(chan error, 1)
	go func() {
		resp, err := quick.Get(g.base + "/health")
		if err == nil {
			resp.Body.Close()
		}
		answered <- err
	}()
	select {
	case err := <-answered:
		t.Fatalf("answered (%v) while both connections had a request running", err)
	case <-time.After(500 * time.Millisecond):
	}
	if running.Load() != 2 {
		t.Fatalf("%d streams running, want 2: a running one was cut", running.Load())
	}
	cancel1()
	if err := <-answered; err != nil {
		t.Fatalf("after a stream ended: %v", err)
	}
}
