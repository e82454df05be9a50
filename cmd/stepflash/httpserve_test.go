package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stepflash/stepflash/internal/testmodels"
)

func TestServeHTTPFlags(t *testing.T) {
	cases := []struct {
		args []string
		err  string // "" when valid
	}{
		{[]string{"--allowed-host", "api.example.com", "--allowed-host", "[::1]:8000", "--cors-origin", "https://ui.example.com", "--cors-origin", "*"}, ""},
		{[]string{"--max-conns", "0", "--read-timeout", "1s", "--read-header-timeout", "1s", "--write-timeout", "1s", "--idle-timeout", "1s"}, ""},
		{[]string{"--allowed-host", "http://x/"}, "not a host name"},
		{[]string{"--cors-origin", "ui.example.com"}, "not an origin"},
		{[]string{"--cors-origin", "https://ui.example.com/app"}, "not an origin"},
		{[]string{"--max-conns", "-1"}, "--max-conns"},
		{[]string{"--read-timeout", "0s"}, "must be positive"},
		{[]string{"--idle-timeout", "-1s"}, "must be positive"},
	}
	for _, tc := range cases {
		var log strings.Builder
		o, err := parseServe(tc.args, &log)
		if tc.err == "" {
			if err != nil {
				t.Errorf("%v: %v", tc.args, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error()+log.String(), tc.err) {
			t.Errorf("%v: %v %s, want %q", tc.args, err, log.String(), tc.err)
		}
		_ = o
	}
	o, err := parseServe([]string{"--addr", "myhost.lan:8000", "--allowed-host", "a.test", "--max-conns", "0", "--read-timeout", "3s"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	g := o.guard(o.addr, "127.0.0.1:9000")
	if strings.Join(g.AllowedHosts, ",") != "a.test,myhost.lan" || g.MaxConns != -1 || g.ReadTimeout != 3*time.Second {
		t.Errorf("guard %+v", g)
	}
}

// TestServeAbuse runs serve with the HTTP layer's flags on a tiny model:
// slow clients are cut while a legit request is answered, the Host,
// Content-Type and CORS checks, n beyond the queue, and a shutdown that
// answers the waiting request at once and ends the running stream with an
// error event and [DONE].
func TestServeAbuse(t *testing.T) {
	path := testmodels.Path(t, "stories260K.gguf")
	base, log, stop := startServe(t, "-m", path, "--quiet", "-c", "2048", "--parallel", "1", "--queue", "2",
		"--read-header-timeout", "300ms", "--read-timeout", "500ms", "--idle-timeout", "500ms", "--max-conns", "8",
		"--allowed-host", "api.test", "--cors-origin", "https://ui.test", "--shutdown-timeout", "300ms")
	addr := strings.TrimPrefix(base, "http://")
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DisableKeepAlives: true},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	request := func(method, path, host, ct, body string, hdr ...string) (*http.Response, string) {
		t.Helper()
		var r io.Reader
		if body != "" {
			r = strings.NewReader(body)
		}
		req, err := http.NewRequest(method, base+path, r)
		if err != nil {
			t.Fatal(err)
		}
		if host != "" {
			req.Host = host
		}
		if ct != "" {
			req.Header.Set("Content-Type", ct)
		}
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp, string(b)
	}

	t.Run("slow clients", func(t *testing.T) {
		var wg sync.WaitGroup
		got := make(chan string, 40)
		for i := range 40 {
			wg.Go(func() {
				c, err := net.Dial("tcp", addr)
				if err != nil {
					got <- "dial: " + err.Error()
					return
				}
				defer c.Close()
				if i%4 == 0 { // trickles a body
					fmt.Fprintf(c, "POST /v1/completions HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{", addr)
					go func() {
						for range 200 {
							time.Sleep(50 * time.Millisecond)
							if _, err := c.Write([]byte(" ")); err != nil {
								return
							}
						}
					}()
				}
				c.SetReadDeadline(time.Now().Add(30 * time.Second))
				b, err := io.ReadAll(c)
				if err != nil {
					got <- "not cut: " + err.Error()
					return
				}
				got <- string(b)
			})
		}
		resp, b := request("POST", "/v1/completions", "", "application/json", `{"model":"stories260K","prompt":"Once","max_tokens":4}`)
		if resp.StatusCode != 200 {
			t.Errorf("legit request among slow clients: %d %s", resp.StatusCode, b)
		}
		_, metrics := request("GET", "/metrics", "", "", "")
		if m := regexp.MustCompile(`stepflash_http_open_connections (\d+)`).FindStringSubmatch(metrics); m == nil {
			t.Error("no stepflash_http_open_connections on /metrics")
		} else if n, _ := strconv.Atoi(m[1]); n > 8 {
			t.Errorf("%d connections open, --max-conns 8", n)
		}
		wg.Wait()
		close(got)
		timeouts := 0
		for s := range got {
			switch {
			case strings.HasPrefix(s, "HTTP/1.1 408 ") && strings.Contains(s, `"request_timeout"`):
				timeouts++
			case s != "":
				t.Errorf("a slow client got %q", s)
			}
		}
		if timeouts != 10 {
			t.Errorf("%d body tricklers got a 408, want 10", timeouts)
		}
	})

	t.Run("checks", func(t *testing.T) {
		cases := []struct {
			name, method, path, host, ct, body string
			hdr                                []string
			status                             int
			want                               string
		}{
			{"allowed host", "GET", "/v1/models", "api.test:443", "", "", nil, 200, `"stories260K"`},
			{"loopback host", "GET", "/v1/models", "localhost:8000", "", "", nil, 200, `"stories260K"`},
			{"rebound host", "GET", "/v1/models", "evil.test", "", "", nil, 403, "--allowed-host evil.test"},
			{"form body", "POST", "/v1/completions", "", "application/x-www-form-urlencoded", `{"model":"stories260K","prompt":"x"}`, nil, 415, "application/json"},
			{"n beyond the queue", "POST", "/v1/completions", "", "application/json", `{"model":"stories260K","prompt":"x","max_tokens":2,"n":3}`, nil, 400, "at most 2 choices"},
			{"n within the queue", "POST", "/v1/completions", "", "application/json", `{"model":"stories260K","prompt":"x","max_tokens":2,"n":2}`, nil, 200, `"index":1`},
			{"preflight", "OPTIONS", "/v1/chat/completions", "", "", "", []string{"Origin", "https://ui.test", "Access-Control-Request-Method", "POST"}, 204, ""},
			{"foreign preflight", "OPTIONS", "/v1/chat/completions", "", "", "", []string{"Origin", "https://evil.test", "Access-Control-Request-Method", "POST"}, 403, "--cors-origin https://evil.test"},
			{"double slash", "GET", "//v1/models", "", "", "", nil, 307, `"path_not_canonical"`},
		}
		for _, tc := range cases {
			resp, b := request(tc.method, tc.path, tc.host, tc.ct, tc.body, tc.hdr...)
			if resp.StatusCode != tc.status || !strings.Contains(b, tc.want) {
				t.Errorf("%s: %d %s, want %d with %q", tc.name, resp.StatusCode, b, tc.status, tc.want)
			}
			if tc.name == "preflight" && resp.Header.Get("Access-Control-Allow-Origin") != "https://ui.test" {
				t.Errorf("preflight headers %v", resp.Header)
			}
		}
		// net/http's own 400, as JSON.
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		io.WriteString(c, "NOT HTTP\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 400 || resp.Header.Get("Content-Type") != "application/json" || !strings.Contains(string(b), `"bad_request"`) {
			t.Errorf("malformed request: %d %s", resp.StatusCode, b)
		}
	})

	t.Run("shutdown", func(t *testing.T) {
		streamReq, _ := http.NewRequest("POST", base+"/v1/completions",
			strings.NewReader(`{"model":"stories260K","prompt":"Once","max_tokens":2000,"ignore_eos":true,"stream":true}`))
		streamReq.Header.Set("Content-Type", "application/json")
		stream, err := client.Do(streamReq)
		if err != nil {
			t.Fatal(err)
		}
		defer stream.Body.Close()
		sr := bufio.NewReader(stream.Body)
		if line, err := sr.ReadString('\n'); err != nil || !strings.HasPrefix(line, "data: ") {
			t.Fatalf("stream: %q %v", line, err)
		}
		queued := make(chan *http.Response, 1)
		go func() {
			resp, err := client.Post(base+"/v1/completions", "application/json", strings.NewReader(`{"model":"stories260K","prompt":"Once","max_tokens":4}`))
			if err != nil {
				t.Error(err)
				close(queued)
				return
			}
			queued <- resp
		}()
		for !strings.Contains(func() string { _, m := request("GET", "/metrics", "", "", ""); return m }(), `stepflash_queue_depth{model="stories260K"} 1`) {
			time.Sleep(5 * time.Millisecond)
		}
		stopped := make(chan error, 1)
		go func() { stopped <- stop() }()
		if resp := <-queued; resp != nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" || !strings.Contains(string(b), `"overloaded"`) {
				t.Errorf("queued request at shutdown: %d %v %s", resp.StatusCode, resp.Header, b)
			}
		}
		rest, err := io.ReadAll(sr)
		if err != nil {
			t.Fatalf("stream cut: %v", err)
		}
		events := strings.Split(strings.TrimSpace(string(rest)), "\n\n")
		n := len(events)
		if n < 2 || events[n-1] != "data: [DONE]" || !strings.HasPrefix(events[n-2], `data: {"error":`) {
			t.Fatalf("stream ends %q", events[max(0, n-2):])
		}
		var ev struct {
			Error struct{ Code, Message string }
		}
		if err := json.Unmarshal([]byte(strings.TrimPrefix(events[n-2], "data: ")), &ev); err != nil || ev.Error.Code != "overloaded" {
			t.Errorf("error event %s: %v", events[n-2], err)
		}
		if err := <-stopped; err != nil {
			t.Errorf("serve: %v", err)
		}
		if !strings.Contains(log.String(), "shutdown timeout ran out: 1 request(s) were ended") {
			t.Errorf("log: %s", log.String())
		}
	})
}
