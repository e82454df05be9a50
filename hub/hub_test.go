package hub

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stepflash/stepflash/internal/httpclient"
)

// fakeHub behaves like Hugging Face's resolve endpoint for LFS files: the
// resolve URL answers 302 with X-Linked-Etag / X-Linked-Size / X-Repo-Commit
// and a Location on a CDN path, which serves the bytes with ranges.
type fakeHub struct {
	files map[string][]byte // "owner/name/file" -> content
	// cutAfter, when positive, makes the first CDN GET stop after that many bytes.
	cutAfter int
	badHash  bool // advertise a wrong hash
	// stallAfter, when positive, makes every CDN GET send that many bytes
	// from where its range starts and then nothing more.
	stallAfter int

	mu       sync.Mutex
	gets     int
	ranges   []string
	served   int64
	sawToken string
}

func (f *fakeHub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if tok := r.Header.Get("Authorization"); tok != "" {
		f.mu.Lock()
		f.sawToken = tok
		f.mu.Unlock()
	}
	if rest, ok := strings.CutPrefix(r.URL.Path, "/api/models/"); ok {
		var names []string
		for k := range f.files {
			if repo, file, ok := cutRepo(k); ok && repo == rest {
				names = append(names, fmt.Sprintf(`{"rfilename":%q}`, file))
			}
		}
		if names == nil {
			http.NotFound(w, r)
			return
		}
		fmt.Fprintf(w, `{"id":%q,"siblings":[%s]}`, rest, strings.Join(names, ","))
		return
	}
	if key, ok := strings.CutPrefix(r.URL.Path, "/cdn/"); ok {
		data, ok := f.files[key]
		if !ok {
			http.NotFound(w, r)
			return
		}
		f.mu.Lock()
		f.gets++
		f.ranges = append(f.ranges, r.Header.Get("Range"))
		cut := f.cutAfter
		f.cutAfter = 0
		f.mu.Unlock()
		if f.stallAfter > 0 {
			start := 0
			if rng := r.Header.Get("Range"); rng != "" {
				fmt.Sscanf(rng, "bytes=%d-", &start)
			}
			end := min(start+f.stallAfter, len(data))
			w.Header().Set("Content-Length", fmt.Sprint(len(data)-start))
			if start > 0 {
				w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", start, len(data)-1, len(data)))
				w.WriteHeader(http.StatusPartialContent)
			}
			w.Write(data[start:end])
			w.(http.Flusher).Flush()
			select { // stall until the client gives up (or fail the test in 5s)
			case <-r.Context().Done():
			case <-time.After(5 * time.Second):
			}
			return
		}
		if cut > 0 {
			// Promise everything, send a little, then drop the connection.
			w.Header().Set("Content-Length", fmt.Sprint(len(data)))
			w.WriteHeader(http.StatusOK)
			w.Write(data[:cut])
			panic(http.ErrAbortHandler)
		}
		cw := &countWriter{ResponseWriter: w}
		http.ServeContent(cw, r, "", time.Time{}, bytes.NewReader(data))
		f.mu.Lock()
		f.served += cw.n
		f.mu.Unlock()
		return
	}
	// /{owner}/{name}/resolve/{rev}/{file}
	parts := strings.SplitN(strings.TrimPrefix(r.URL.Path, "/"), "/", 5)
	if len(parts) != 5 || parts[2] != "resolve" {
		http.NotFound(w, r)
		return
	}
	key := parts[0] + "/" + parts[1] + "/" + parts[4]
	data, ok := f.files[key]
	if !ok {
		w.Header().Set("X-Error-Code", "EntryNotFound")
		http.Error(w, "Entry not found", http.StatusNotFound)
		return
	}
	sum := sha256.Sum256(data)
	etag := hex.EncodeToString(sum[:])
	if f.badHash {
		etag = strings.Repeat("0", 64)
	}
	w.Header().Set("X-Linked-Etag", `"`+etag+`"`)
	w.Header().Set("X-Linked-Size", fmt.Sprint(len(data)))
	w.Header().Set("X-Repo-Commit", "abc123")
	http.Redirect(w, r, "/cdn/"+key, http.StatusFound)
}

func cutRepo(k string) (repo, file string, ok bool) {
	p := strings.SplitN(k, "/", 3)
	if len(p) != 3 {
		return "", "", false
	}
	return p[0] + "/" + p[1], p[2], true
}

type countWriter struct {
	http.ResponseWriter
	n int64
}

func (c *countWriter) Write(b []byte) (int, error) {
	n, err := c.ResponseWriter.Write(b)
	c.n += int64(n)
	return n, err
}

func testData(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + i/251)
	}
	return b
}

func TestParseRef(t *testing.T) {
	cases := []struct {
		in      string
		want    Ref
		wantErr bool
	}{
		{"Qwen/Qwen3-0.6B-GGUF", Ref{Repo: "Qwen/Qwen3-0.6B-GGUF"}, false},
		{"Qwen/Qwen3-0.6B-GGUF:Qwen3-0.6B-Q8_0.gguf", Ref{Repo: "Qwen/Qwen3-0.6B-GGUF", File: "Qwen3-0.6B-Q8_0.gguf"}, false},
		{"a/b@v1:sub/x.gguf", Ref{Repo: "a/b", Revision: "v1", File: "sub/x.gguf"}, false},
		{"justaname", Ref{}, true},
		{"a/b/c", Ref{}, true},
		{"a/b:../etc/passwd", Ref{}, true},
		{"a/b:/abs.gguf", Ref{}, true},
		{"../b", Ref{}, true},
	}
	for _, tc := range cases {
		got, err := ParseRef(tc.in)
		if (err != nil) != tc.wantErr || got != tc.want {
			t.Errorf("ParseRef(%q) = %+v, %v; want %+v, err %v", tc.in, got, err, tc.want, tc.wantErr)
		}
	}
}

func TestPickGGUF(t *testing.T) {
	cases := []struct {
		files   []string
		want    string
		wantErr bool
	}{
		{[]string{"m-Q8_0.gguf"}, "m-Q8_0.gguf", false},
		{[]string{"m-Q8_0.gguf", "m-Q4_K_M.gguf", "m-F16.gguf"}, "m-Q4_K_M.gguf", false},
		{[]string{"m-Q8_0.gguf", "m-F16.gguf"}, "m-Q8_0.gguf", false},
		{[]string{"m-F16.gguf", "m-BF16.gguf"}, "", true},
		{nil, "", true},
	}
	for _, tc := range cases {
		got, err := PickGGUF("o/r", tc.files)
		if (err != nil) != tc.wantErr || got != tc.want {
			t.Errorf("PickGGUF(%v) = %q, %v; want %q (err %v)", tc.files, got, err, tc.want, tc.wantErr)
		}
	}
}

func newHub(t *testing.T, f *fakeHub) *Client {
	t.Helper()
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return &Client{Endpoint: srv.URL, CacheDir: t.TempDir(), Token: "hf_test"}
}

func TestPull(t *testing.T) {
	data := testData(300_000)
	ref := Ref{Repo: "o/r", File: "m.gguf"}
	cases := []struct {
		name      string
		partial   int // bytes of a .part file left by an earlier run
		cutAfter  int
		badHash   bool
		wantErr   error
		wantRange string // Range header of the last CDN request
		maxServed int64
	}{
		{name: "fresh", maxServed: int64(len(data))},
		{name: "resume", partial: 200_000, wantRange: "bytes=200000-", maxServed: 100_000},
		{name: "interrupted then resumed", cutAfter: 50_000, wantRange: "bytes=50000-", maxServed: int64(len(data))},
		{name: "complete part", partial: len(data), maxServed: 0},
		{name: "bad hash", badHash: true, wantErr: errCorrupt},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakeHub{files: map[string][]byte{"o/r/m.gguf": data}, cutAfter: tc.cutAfter, badHash: tc.badHash}
			c := newHub(t, f)
			var prog bytes.Buffer
			c.Progress = &prog
			if tc.partial > 0 {
				p := c.Path(ref) + ".part"
				os.MkdirAll(filepath.Dir(p), 0o755)
				os.WriteFile(p, data[:tc.partial], 0o644)
			}
			path, err := c.Pull(context.Background(), ref)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("Pull error = %v, want %v", err, tc.wantErr)
				}
				if _, err := os.Stat(c.Path(ref) + ".part"); err == nil {
					t.Errorf("corrupt partial file kept")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			f.mu.Lock()
			defer f.mu.Unlock()
			got, _ := os.ReadFile(path)
			if !bytes.Equal(got, data) {
				t.Fatalf("downloaded %d bytes, differ from the %d served", len(got), len(data))
			}
			if path != c.Path(ref) {
				t.Errorf("path %q, want %q", path, c.Path(ref))
			}
			if tc.wantRange != "" && (len(f.ranges) == 0 || f.ranges[len(f.ranges)-1] != tc.wantRange) {
				t.Errorf("CDN ranges %q, want last %q", f.ranges, tc.wantRange)
			}
			if f.served > tc.maxServed {
				t.Errorf("served %d bytes, want at most %d", f.served, tc.maxServed)
			}
			if f.sawToken != "Bearer hf_test" {
				t.Errorf("Authorization %q not sent", f.sawToken)
			}
			if tc.maxServed > 0 && !strings.Contains(prog.String(), "100%") {
				t.Errorf("progress bar never reached 100%%: %q", prog.String())
			}
			// A second pull is served from the cache.
			gets := f.gets
			f.mu.Unlock()
			_, err = c.Pull(context.Background(), ref)
			f.mu.Lock()
			if err != nil || f.gets != gets {
				t.Errorf("second pull: err %v, %d more GETs", err, f.gets-gets)
			}
		})
	}
}

func TestPullErrors(t *testing.T) {
	f := &fakeHub{files: map[string][]byte{"o/r/a-Q8_0.gguf": testData(10), "o/r/a-F16.gguf": testData(20), "o/s/x.gguf": testData(30)}}
	c := newHub(t, f)
	if _, err := c.Pull(context.Background(), Ref{Repo: "o/r", File: "missing.gguf"}); !errors.Is(err, ErrNotFound) {
		t.Errorf("missing file: %v", err)
	}
	if _, err := c.Pull(context.Background(), Ref{Repo: "o/none"}); !errors.Is(err, ErrNotFound) {
		t.Errorf("missing repo: %v", err)
	}
	p, err := c.Pull(context.Background(), Ref{Repo: "o/r"})
	if err != nil || filepath.Base(p) != "a-Q8_0.gguf" {
		t.Errorf("pick: %q, %v", p, err)
	}
	if p, ok := c.Cached(Ref{Repo: "o/r"}); !ok || filepath.Base(p) != "a-Q8_0.gguf" {
		t.Errorf("Cached without file: %q %v", p, ok)
	}
	// Offline: nothing listens.
	off := &Client{Endpoint: "http://127.0.0.1:1", CacheDir: t.TempDir(), Retries: 1}
	if _, err := off.Pull(context.Background(), Ref{Repo: "o/r", File: "a.gguf"}); err == nil {
		t.Errorf("offline pull succeeded")
	}
}

func TestDefaultPinned(t *testing.T) {
	pin, ok := Pins[Default.String()]
	if !ok || !hex64.MatchString(pin.SHA256) || pin.Size <= 0 {
		t.Fatalf("default model %s has no valid pin: %+v", Default, pin)
	}
}

// silentServer accepts connections and never answers; it returns its URL.
func silentServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Go(func() { io.Copy(io.Discard, c) })
		}
	})
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return "http://" + ln.Addr().String()
}

// refusedServer returns the URL of a port on which nothing listens.
func refusedServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln.Close()
	return "http://" + ln.Addr().String()
}

var shortTimeouts = httpclient.Timeouts{Connect: 200 * time.Millisecond, FirstByte: 100 * time.Millisecond, Idle: 100 * time.Millisecond}

// TestPullUnreachable: a hub that refuses connections, or accepts them and
// never answers, fails the pull within the limits, with advice on working
// offline.
func TestPullUnreachable(t *testing.T) {
	cases := []struct {
		name      string
		endpoint  func(t *testing.T) string
		ref       Ref
		wantPhase httpclient.Phase
		wantMsg   []string
	}{
		{"refused", refusedServer, Ref{Repo: "o/r", File: "m.gguf"}, httpclient.PhaseConnect, []string{"cannot connect", "connection refused"}},
		{"refused, no file named", refusedServer, Ref{Repo: "o/r"}, httpclient.PhaseConnect, []string{"cannot connect"}},
		{"accepts, never answers", silentServer, Ref{Repo: "o/r", File: "m.gguf"}, httpclient.PhaseFirstByte,
			[]string{"no response within 100ms", "first-byte timeout", "raise --first-byte-timeout"}},
		{"accepts, never answers, no file named", silentServer, Ref{Repo: "o/r"}, httpclient.PhaseFirstByte, []string{"first-byte timeout"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			endpoint := tc.endpoint(t)
			cache := t.TempDir()
			c := &Client{Endpoint: endpoint, CacheDir: cache, Timeouts: shortTimeouts}
			// The pull must give up by itself, long before this deadline.
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_, err := c.Pull(ctx, tc.ref)
			if err == nil || ctx.Err() != nil {
				t.Fatalf("Pull: %v (context: %v), want an error of its own", err, ctx.Err())
			}
			var herr *httpclient.Error
			if !errors.As(err, &herr) || herr.Phase != tc.wantPhase {
				t.Errorf("error %v: want an httpclient.Error of phase %q", err, tc.wantPhase)
			}
			want := append([]string{"cannot reach " + endpoint, "Offline: pass -m FILE.gguf", cache, "$STEPFLASH_CACHE", "--offline", "HF_HUB_OFFLINE=1"}, tc.wantMsg...)
			for _, w := range want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

// TestPullStalled: a download that stalls fails with the idle limit and
// keeps what it got; the same pull against a healthy hub resumes from there.
func TestPullStalled(t *testing.T) {
	data := testData(300_000)
	ref := Ref{Repo: "o/r", File: "m.gguf"}
	cache := t.TempDir()
	stalling := &fakeHub{files: map[string][]byte{"o/r/m.gguf": data}, stallAfter: 50_000}
	c := newHub(t, stalling)
	c.CacheDir, c.Timeouts, c.Retries = cache, shortTimeouts, 1
	_, err := c.Pull(context.Background(), ref)
	if err == nil {
		t.Fatal("pull from a stalling hub succeeded")
	}
	part := c.Path(ref) + ".part"
	for _, w := range []string{"o/r:m.gguf stopped at 100000 of 300000 bytes", "no data for 100ms (idle timeout)", "raise --idle-timeout",
		"Run the same command again to resume", part} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q lacks %q", err, w)
		}
	}
	var herr *httpclient.Error
	if !errors.As(err, &herr) || herr.Phase != httpclient.PhaseIdle {
		t.Errorf("error %v: want an idle httpclient.Error", err)
	}
	if got, _ := os.ReadFile(part); !bytes.Equal(got, data[:100_000]) {
		t.Fatalf("partial file has %d bytes, want the first 100000 served (50000 per attempt)", len(got))
	}

	healthy := &fakeHub{files: map[string][]byte{"o/r/m.gguf": data}}
	c2 := newHub(t, healthy)
	c2.CacheDir, c2.Timeouts = cache, shortTimeouts
	path, err := c2.Pull(context.Background(), ref)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(path); !bytes.Equal(got, data) {
		t.Fatalf("resumed file differs from the data served")
	}
	healthy.mu.Lock()
	defer healthy.mu.Unlock()
	if len(healthy.ranges) != 1 || healthy.ranges[0] != "bytes=100000-" || healthy.served != 200_000 {
		t.Errorf("healthy hub saw ranges %q and served %d bytes; want one request for bytes=100000- (200000 bytes)", healthy.ranges, healthy.served)
	}
}
