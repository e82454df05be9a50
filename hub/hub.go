// Package hub downloads GGUF files from Hugging Face (or any server with the
// same resolve endpoint) into a local cache: `stepflash pull REPO[:FILE]`
// and the default model of `stepflash serve`. Downloads resume from a
// partial file with HTTP ranges, follow the resolve endpoint's redirects to
// its CDN, check the size and SHA-256 (from a built-in pin or the
// X-Linked-Etag header of LFS files), and show a progress bar. Requests
// obey the connect, first-byte and idle limits of internal/httpclient, so a
// hub that stops answering fails the pull instead of hanging it.
package hub

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/stepflash/stepflash/internal/httpclient"
)

// DefaultEndpoint is Hugging Face's address.
const DefaultEndpoint = "https://huggingface.co"

// Ref names a file in a repository: REPO[:FILE], REPO being owner/name. An
// empty File means "the repository's only GGUF, or its Q4_K_M/Q8_0 one".
type Ref struct {
	Repo     string
	File     string
	Revision string // "" means main
}

// String renders the ref as REPO[:FILE].
func (r Ref) String() string {
	s := r.Repo
	if r.Revision != "" && r.Revision != "main" {
		s += "@" + r.Revision
	}
	if r.File != "" {
		s += ":" + r.File
	}
	return s
}

func (r Ref) revision() string {
	if r.Revision == "" {
		return "main"
	}
	return r.Revision
}

var repoName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$`)

// ParseRef parses REPO[@REVISION][:FILE].
func ParseRef(s string) (Ref, error) {
	repo, file, _ := strings.Cut(s, ":")
	repo, rev, _ := strings.Cut(repo, "@")
	if !repoName.MatchString(repo) || strings.Contains(repo, "..") {
		return Ref{}, fmt.Errorf("hub: %q is not a repository name of the form owner/name[:file]", s)
	}
	if file != "" {
		if strings.HasPrefix(file, "/") || slices.Contains(strings.Split(file, "/"), "..") || strings.ContainsAny(file, "\\\x00") {
			return Ref{}, fmt.Errorf("hub: %q is not a file name inside the repository", file)
		}
	}
	return Ref{Repo: repo, File: file, Revision: rev}, nil
}

// LooksLikeRef reports whether s reads as a repository reference rather
// than a local path (owner/name[:file], with no such local file).
func LooksLikeRef(s string) bool {
	if _, err := os.Stat(s); err == nil {
		return false
	}
	_, err := ParseRef(s)
	return err == nil
}

// Pin is what is known in advance about a file: its size and SHA-256.
type Pin struct {
	Size   int64
	SHA256 string
	// Revision is the commit the pin was taken from.
	Revision string
}

// Default is the model `stepflash serve` pulls when given none: Qwen's own
// Q8_0 GGUF of Qwen3-0.6B (qwen3 architecture, thinking switch, Apache-2.0).
var Default = Ref{Repo: "Qwen/Qwen3-0.6B-GGUF", File: "Qwen3-0.6B-Q8_0.gguf"}

// Pins holds the known files, by Ref.String() (revision left out).
var Pins = map[string]Pin{
	"Qwen/Qwen3-0.6B-GGUF:Qwen3-0.6B-Q8_0.gguf": {
		Size:     639446688,
		SHA256:   "9465e63a22add5354d9bb4b99e90117043c7124007664907259bd16d043bb031",
		Revision: "23749fefcc72300e3a2ad315e1317431b06b590a",
	},
}

// DefaultCacheDir is $STEPFLASH_CACHE, else $XDG_CACHE_HOME/stepflash/models,
// else ~/.cache/stepflash/models.
func DefaultCacheDir() string {
	if d := os.Getenv("STEPFLASH_CACHE"); d != "" {
		return d
	}
	if d, err := os.UserCacheDir(); err == nil {
		return filepath.Join(d, "stepflash", "models")
	}
	return filepath.Join(os.TempDir(), "stepflash", "models")
}

// Client downloads files. The zero value uses DefaultEndpoint,
// httpclient.DefaultTimeouts, DefaultCacheDir and $HF_TOKEN, and shows no
// progress.
type Client struct {
	// Endpoint is the hub's base URL (default DefaultEndpoint, or $HF_ENDPOINT).
	Endpoint string
	// HTTP is the client used; nil: httpclient.NewClient(Timeouts), made
	// for each Pull and its idle connections closed at its end.
	HTTP *http.Client
	// Timeouts are the connect, first-byte and idle limits of each request
	// (zero fields: httpclient.DefaultTimeouts). Unused when HTTP is set.
	Timeouts httpclient.Timeouts
	// Token is a Hugging Face access token for gated repositories (default $HF_TOKEN).
	Token string
	// CacheDir is where files are kept (default DefaultCacheDir()).
	CacheDir string
	// Progress receives a progress bar (carriage-return updates); nil: none.
	Progress io.Writer
	// Retries is how many times an interrupted download is resumed (default 3).
	Retries int
}

func (c *Client) endpoint() string {
	if c.Endpoint != "" {
		return strings.TrimRight(c.Endpoint, "/")
	}
	if e := os.Getenv("HF_ENDPOINT"); e != "" {
		return strings.TrimRight(e, "/")
	}
	return DefaultEndpoint
}

// client returns the HTTP client for one Pull and a function to call when
// the Pull is done.
func (c *Client) client() (*http.Client, func()) {
	if c.HTTP != nil {
		return c.HTTP, func() {}
	}
	hc := httpclient.NewClient(c.Timeouts)
	return hc, hc.CloseIdleConnections
}

func (c *Client) cacheDir() string {
	if c.CacheDir != "" {
		return c.CacheDir
	}
	return DefaultCacheDir()
}

func (c *Client) token() string {
	if c.Token != "" {
		return c.Token
	}
	return os.Getenv("HF_TOKEN")
}

// Path is where a file of a repository is cached:
// CACHE/owner/name[@revision]/file.
func (c *Client) Path(ref Ref) string {
	dir := ref.Repo
	if ref.Revision != "" && ref.Revision != "main" {
		dir += "@" + ref.Revision
	}
	return filepath.Join(c.cacheDir(), filepath.FromSlash(dir), filepath.FromSlash(ref.File))
}

// Cached returns the cached file of ref, if present. With no File it picks
// the cached GGUF when there is exactly one.
func (c *Client) Cached(ref Ref) (string, bool) {
	if ref.File == "" {
		dir := filepath.Dir(c.Path(Ref{Repo: ref.Repo, Revision: ref.Revision, File: "x"}))
		m, _ := filepath.Glob(filepath.Join(dir, "*.gguf"))
		if len(m) != 1 {
			return "", false
		}
		return m[0], true
	}
	p := c.Path(ref)
	if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() {
		return p, true
	}
	return "", false
}

// ErrNotFound is returned for a repository or file the hub does not have.
var ErrNotFound = errors.New("hub: not found")

func (c *Client) resolveURL(ref Ref) string {
	return c.endpoint() + "/" + ref.Repo + "/resolve/" + url.PathEscape(ref.revision()) + "/" + escapePath(ref.File)
}

func escapePath(p string) string {
	parts := strings.Split(p, "/")
	for i, s := range parts {
		parts[i] = url.PathEscape(s)
	}
	return strings.Join(parts, "/")
}

func (c *Client) newRequest(ctx context.Context, method, u string) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, method, u, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("User-Agent", "stepflash")
	if t := c.token(); t != "" {
		req.Header.Set("Authorization", "Bearer "+t)
	}
	return req, nil
}

// pickFile asks the hub for a repository's files and picks its GGUF.
func (c *Client) pickFile(ctx context.Context, hc *http.Client, ref Ref) (string, error) {
	u := c.endpoint() + "/api/models/" + ref.Repo
	if ref.Revision != "" {
		u += "/revision/" + url.PathEscape(ref.Revision)
	}
	req, err := c.newRequest(ctx, http.MethodGet, u)
	if err != nil {
		return "", err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return "", c.reachError(err)
	}
	defer resp.Body.Close()
	if err := statusError(resp, ref); err != nil {
		return "", err
	}
	var info struct {
		Siblings []struct {
			Name string `json:"rfilename"`
		} `json:"siblings"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 16<<20)).Decode(&info); err != nil {
		return "", fmt.Errorf("hub: listing %s: %w", ref.Repo, err)
	}
	var ggufs []string
	for _, s := range info.Siblings {
		if strings.HasSuffix(strings.ToLower(s.Name), ".gguf") {
			ggufs = append(ggufs, s.Name)
		}
	}
	return PickGGUF(ref.Repo, ggufs)
}

// PickGGUF chooses a file from a repository's GGUFs: the only one, else
// the Q4_K_M one, else the Q8_0 one (single-file models only).
func PickGGUF(repo string, files []string) (string, error) {
	if len(files) == 1 {
		return files[0], nil
	}
	for _, q := range []string{"q4_k_m", "q8_0"} {
		var hits []string
		for _, f := range files {
			l := strings.ToLower(f)
			if strings.Contains(l, q) && !strings.Contains(l, "-of-") && !strings.Contains(l, "mmproj") {
				hits = append(hits, f)
			}
		}
		if len(hits) == 1 {
			return hits[0], nil
		}
	}
	if len(files) == 0 {
		return "", fmt.Errorf("%w: %s has no .gguf file", ErrNotFound, repo)
	}
	return "", fmt.Errorf("hub: %s has several GGUF files; name one as %s:FILE (%s)", repo, repo, strings.Join(files, ", "))
}

func statusError(resp *http.Response, ref Ref) error {
	switch {
	case resp.StatusCode < 300 || resp.StatusCode == http.StatusPartialContent:
		return nil
	case resp.StatusCode == http.StatusNotFound:
		return fmt.Errorf("%w: %s (HTTP 404 from %s)", ErrNotFound, ref, resp.Request.URL.Host)
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
		return fmt.Errorf("hub: %s needs authorisation (HTTP %d): set HF_TOKEN to a token that may read it (gated or private repository)", ref, resp.StatusCode)
	}
	return fmt.Errorf("hub: %s: HTTP %s from %s", ref, resp.Status, resp.Request.URL.Host)
}

// meta is what the resolve endpoint says about a file.
type meta struct {
	size   int64 // -1 when unknown
	sha256 string
	commit string
}

var hex64 = regexp.MustCompile(`^[0-9a-f]{64}$`)

// head asks the resolve endpoint for a file's size and hash without
// following its redirect (the LFS headers are on the redirect itself).
func (c *Client) head(ctx context.Context, hc *http.Client, ref Ref) (meta, error) {
	m := meta{size: -1}
	req, err := c.newRequest(ctx, http.MethodHead, c.resolveURL(ref))
	if err != nil {
		return m, err
	}
	req.Header.Set("Accept-Encoding", "identity")
	noRedirect := *hc
	noRedirect.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err := noRedirect.Do(req)
	if err != nil {
		return m, c.reachError(err)
	}
	resp.Body.Close()
	if resp.StatusCode >= 300 && resp.StatusCode < 400 {
		resp.StatusCode = http.StatusOK
	}
	if err := statusError(resp, ref); err != nil {
		return m, err
	}
	h := resp.Header
	if etag := strings.Trim(strings.TrimPrefix(h.Get("X-Linked-Etag"), "W/"), `"`); hex64.MatchString(etag) {
		m.sha256 = etag
	}
	if s := h.Get("X-Linked-Size"); s != "" {
		m.size, _ = strconv.ParseInt(s, 10, 64)
	} else if resp.ContentLength >= 0 && h.Get("Location") == "" {
		m.size = resp.ContentLength
	}
	m.commit = h.Get("X-Repo-Commit")
	return m, nil
}

// Pull downloads ref into the cache (resuming a partial download) and
// returns its path. A file already cached is returned as is.
//
// A hub that cannot be reached fails with advice on working offline; a
// download that stops (after Retries attempts to resume) fails saying that
// running the same command again resumes it.
func (c *Client) Pull(ctx context.Context, ref Ref) (string, error) {
	hc, done := c.client()
	defer done()
	if ref.File == "" {
		if p, ok := c.Cached(ref); ok {
			return p, nil
		}
		f, err := c.pickFile(ctx, hc, ref)
		if err != nil {
			return "", err
		}
		ref.File = f
	}
	if p, ok := c.Cached(ref); ok {
		return p, nil
	}
	m, err := c.head(ctx, hc, ref)
	if err != nil {
		return "", err
	}
	pin, pinned := Pins[Ref{Repo: ref.Repo, File: ref.File}.String()]
	if pinned {
		if m.sha256 != "" && m.sha256 != pin.SHA256 {
			// The hub serves a different file now; trust its own hash.
			pinned = false
		} else {
			m.sha256, m.size = pin.SHA256, pin.Size
		}
	}
	dst := c.Path(ref)
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return "", err
	}
	part := dst + ".part"
	retries := c.Retries
	if retries <= 0 {
		retries = 3
	}
	for attempt := 0; ; attempt++ {
		err = c.download(ctx, hc, ref, part, m)
		if err == nil || attempt >= retries || ctx.Err() != nil || !retryable(err) {
			break
		}
		select {
		case <-time.After(time.Duration(attempt+1) * 500 * time.Millisecond):
		case <-ctx.Done():
		}
	}
	if err != nil {
		return "", err
	}
	if err := os.Rename(part, dst); err != nil {
		return "", err
	}
	return dst, nil
}

// errCorrupt marks a download whose size or hash is wrong (not retried).
var errCorrupt = errors.New("hub: downloaded file is corrupt")

func retryable(err error) bool {
	return !errors.Is(err, errCorrupt) && !errors.Is(err, ErrNotFound) && !strings.Contains(err.Error(), "authorisation")
}

// download fetches the rest of part and checks the whole file.
func (c *Client) download(ctx context.Context, hc *http.Client, ref Ref, part string, m meta) error {
	f, err := os.OpenFile(part, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	h := sha256.New()
	have, err := io.Copy(h, f) // hash what an earlier attempt left
	if err != nil {
		return err
	}
	if m.size >= 0 && have > m.size {
		have = 0
	}
	if have == 0 || (m.size >= 0 && have > m.size) {
		if err := f.Truncate(0); err != nil {
			return err
		}
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return err
		}
		h.Reset()
		have = 0
	}
	if m.size < 0 || have < m.size {
		req, err := c.newRequest(ctx, http.MethodGet, c.resolveURL(ref))
		if err != nil {
			return err
		}
		req.Header.Set("Accept-Encoding", "identity")
		if have > 0 {
			req.Header.Set("Range", fmt.Sprintf("bytes=%d-", have))
		}
		resp, err := hc.Do(req)
		if err != nil {
			return stopped(ref, part, have, m.size, err)
		}
		defer resp.Body.Close()
		switch {
		case resp.StatusCode == http.StatusRequestedRangeNotSatisfiable && have > 0:
			// Nothing left to send: the part is complete (checked below).
		case resp.StatusCode == http.StatusPartialContent:
			start, total, ok := contentRange(resp.Header.Get("Content-Range"))
			if !ok || start != have {
				return fmt.Errorf("hub: %s: server resumed at the wrong offset (%q, have %d bytes)", ref, resp.Header.Get("Content-Range"), have)
			}
			if m.size < 0 {
				m.size = total
			}
		case resp.StatusCode == http.StatusOK:
			if have > 0 { // the server ignored the range: start over
				if err := f.Truncate(0); err != nil {
					return err
				}
				h.Reset()
				have = 0
			}
			if _, err := f.Seek(0, io.SeekStart); err != nil {
				return err
			}
			if m.size < 0 && resp.ContentLength >= 0 {
				m.size = resp.ContentLength
			}
		default:
			if err := statusError(resp, ref); err != nil {
				return err
			}
			return fmt.Errorf("hub: %s: unexpected HTTP %s", ref, resp.Status)
		}
		if resp.StatusCode != http.StatusRequestedRangeNotSatisfiable {
			bar := newProgress(c.Progress, ref.File, have, m.size)
			_, err = io.Copy(io.MultiWriter(f, h, bar), resp.Body)
			bar.done(err == nil)
			if err != nil {
				return stopped(ref, part, bar.cur, m.size, err)
			}
		}
	}
	if err := f.Sync(); err != nil {
		return err
	}
	st, err := f.Stat()
	if err != nil {
		return err
	}
	if m.size >= 0 && st.Size() != m.size {
		if st.Size() < m.size {
			return stopped(ref, part, st.Size(), m.size, io.ErrUnexpectedEOF)
		}
		os.Remove(part)
		return fmt.Errorf("%w: %s is %d bytes, expected %d", errCorrupt, ref, st.Size(), m.size)
	}
	if m.sha256 != "" {
		if got := hex.EncodeToString(h.Sum(nil)); got != m.sha256 {
			os.Remove(part)
			return fmt.Errorf("%w: %s has SHA-256 %s, expected %s (the partial file was removed)", errCorrupt, ref, got, m.sha256)
		}
	}
	return nil
}

// contentRange parses "bytes START-END/TOTAL".
func contentRange(s string) (start, total int64, ok bool) {
	s, found := strings.CutPrefix(s, "bytes ")
	if !found {
		return 0, 0, false
	}
	rng, tot, found := strings.Cut(s, "/")
	if !found {
		return 0, 0, false
	}
	a, _, found := strings.Cut(rng, "-")
	if !found {
		return 0, 0, false
	}
	start, err := strconv.ParseInt(a, 10, 64)
	if err != nil {
		return 0, 0, false
	}
	total = -1
	if tot != "*" {
		if total, err = strconv.ParseInt(tot, 10, 64); err != nil {
			return 0, 0, false
		}
	}
	return start, total, true
}

// reachError explains a request to the hub that got no answer, and how to
// work without the hub.
func (c *Client) reachError(err error) error {
	if !unreachable(err) {
		return fmt.Errorf("hub: %w", err)
	}
	var uerr *url.Error
	if errors.As(err, &uerr) {
		err = uerr.Err // the endpoint is named below
	}
	return fmt.Errorf("hub: cannot reach %s (%w).%s Offline: pass -m FILE.gguf to serve a local file, "+
		"or serve a model already in the cache (%s; set by --cache-dir or $STEPFLASH_CACHE) with --offline or HF_HUB_OFFLINE=1",
		c.endpoint(), err, raiseHint(err), c.cacheDir())
}

// unreachable reports whether err says that no answer came: no connection,
// or no response to the request.
func unreachable(err error) bool {
	var herr *httpclient.Error
	if errors.As(err, &herr) {
		return herr.Phase == httpclient.PhaseConnect || herr.Phase == httpclient.PhaseFirstByte
	}
	// A caller's own http.Client (Client.HTTP) gives the net package's errors.
	var dns *net.DNSError
	var op *net.OpError
	return errors.As(err, &dns) || errors.As(err, &op) && op.Op == "dial"
}

// raiseHint names the flag that raises a limit that ran out, for a hub
// that is slow rather than gone.
func raiseHint(err error) string {
	var herr *httpclient.Error
	if !errors.As(err, &herr) || !herr.Timeout() {
		return ""
	}
	flag := map[httpclient.Phase]string{
		httpclient.PhaseConnect:   "--connect-timeout",
		httpclient.PhaseFirstByte: "--first-byte-timeout",
		httpclient.PhaseIdle:      "--idle-timeout",
	}[herr.Phase]
	return " If the network is only slow, raise " + flag + "."
}

// stopped explains a download that ended early: what stopped it, how far it
// got, and that the same command resumes it.
func stopped(ref Ref, part string, have, size int64, err error) error {
	var uerr *url.Error
	if errors.As(err, &uerr) {
		// Name the host only: a CDN's URL carries a long signature.
		host := uerr.URL
		if u, perr := url.Parse(uerr.URL); perr == nil {
			host = u.Host
		}
		err = fmt.Errorf("%s: %w", host, uerr.Err)
	}
	of := ""
	if size >= 0 {
		of = fmt.Sprintf(" of %d", size)
	}
	return fmt.Errorf("hub: downloading %s stopped at %d%s bytes: %w.%s "+
		"Run the same command again to resume from there (the partial file is kept: %s)", ref, have, of, err, raiseHint(err), part)
}
