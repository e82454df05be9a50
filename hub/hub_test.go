package hub

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeHub behaves like Hugging Face's resolve endpoint for LFS files: the
// resolve URL answers 302 with X-Linked-Etag / X-Linked-Size / X-Repo-Commit
// and a Location on a CDN path, which serves the bytes with ranges.
type fakeHub struct {
	files map[string][]byte // "owner/name/file" -> content
	// cutAfter, when positive, makes the first CDN GET stop after that many bytes.
	cutAfter int
	badHash  bool // advertise a wrong hash

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
