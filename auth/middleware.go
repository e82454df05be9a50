package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/stepflash/stepflash/api"
	"github.com/stepflash/stepflash/backend"
)

// Error codes of authentication failures (DESIGN.md section 4).
const (
	CodeMissingKey     = "missing_api_key"
	CodeInvalidKey     = "invalid_api_key"
	CodeRegionMismatch = "region_mismatch"
)

// Region is one region a server knows of.
type Region struct {
	// Name is the region tag its keys carry.
	Name string
	// BaseURL is where its API is (".../v1"), named to callers who bring
	// its keys elsewhere; "" when unknown.
	BaseURL string
	// Port is the port of its listener in this process (0 when another
	// process serves it): with no BaseURL, a caller is pointed at the host
	// it reached this server by, on this port.
	Port int
}

// Authenticator checks the API keys of requests. One Authenticator serves
// every region of a process: the listener a request came through tells
// its region (WithListenerRegion, set by the listener's BaseContext).
type Authenticator struct {
	store Store

	regionsMu sync.RWMutex
	regions   map[string]Region
	require   bool
	now       func() time.Time

	mu       sync.Mutex
	enforced map[string]enforcedAt // region → cached "has keys"
}

type enforcedAt struct {
	on bool
	at time.Time
}

// Options configure an Authenticator.
type Options struct {
	// Store holds the keys; nil means no keys (every request passes unless
	// Require is set, which then refuses every one).
	Store Store
	// Regions are the regions this process serves and those it points
	// callers to.
	Regions []Region
	// Require enforces keys even where a region's store has none.
	Require bool
}

// enforceTTL is how long "this region has keys" is believed: a key created
// by `stepflash keys create` while the server runs is enforced within it.
const enforceTTL = time.Second

// New makes an Authenticator.
func New(o Options) *Authenticator {
	a := &Authenticator{store: o.Store, require: o.Require, now: time.Now, enforced: map[string]enforcedAt{}}
	a.SetRegions(o.Regions)
	return a
}

// SetRegions replaces the regions the Authenticator knows of (a server
// learns its listeners' ports only once bound).
func (a *Authenticator) SetRegions(regions []Region) {
	m := map[string]Region{}
	for _, r := range regions {
		m[r.Name] = r
	}
	a.regionsMu.Lock()
	a.regions = m
	a.regionsMu.Unlock()
}

type ctxKey int

const listenerRegionKey ctxKey = 0

// WithListenerRegion marks ctx as belonging to a listener of region: use it
// in the listener's http.Server BaseContext.
func WithListenerRegion(ctx context.Context, region string) context.Context {
	return context.WithValue(ctx, listenerRegionKey, region)
}

// ListenerRegion returns the region of the listener ctx came through.
func ListenerRegion(ctx context.Context) string {
	r, _ := ctx.Value(listenerRegionKey).(string)
	return r
}

// Enforced reports whether region's requests need a key: Require, or its
// store holds keys of the region, live or revoked (so that revoking a
// leaked last key locks its holder out rather than opening the region).
func (a *Authenticator) Enforced(ctx context.Context, region string) (bool, error) {
	if a.require {
		return true, nil
	}
	if a.store == nil {
		return false, nil
	}
	a.mu.Lock()
	e, ok := a.enforced[region]
	a.mu.Unlock()
	if ok && a.now().Sub(e.at) < enforceTTL {
		return e.on, nil
	}
	n, err := a.store.CountKeys(ctx, region)
	if err != nil {
		return false, err
	}
	a.mu.Lock()
	a.enforced[region] = enforcedAt{on: n > 0, at: a.now()}
	a.mu.Unlock()
	return n > 0, nil
}

// Authenticate checks r's key for the region of its listener and returns
// the caller and its key (nil where keys are not enforced), or the 401 (or
// 503, when the store fails) to answer with.
func (a *Authenticator) Authenticate(r *http.Request) (backend.Caller, *Key, *api.Error) {
	ctx := r.Context()
	region := ListenerRegion(ctx)
	caller := backend.Caller{Region: region}
	on, err := a.Enforced(ctx, region)
	if err != nil {
		return caller, nil, storeError(err)
	}
	token, present := bearer(r)
	if !on {
		return caller, nil, nil
	}
	if !present {
		return caller, nil, authError(CodeMissingKey,
			"No API key was given. Send it as the header \"Authorization: Bearer sk-%s-…\" (or \"x-api-key\").", regionOr(region))
	}
	p, err := Parse(token)
	switch {
	case errors.Is(err, ErrChecksum):
		return caller, nil, authError(CodeInvalidKey, "The API key %s… is not valid: %v.", safePrefix(token), err)
	case err != nil:
		return caller, nil, authError(CodeInvalidKey, "The API key given is not a stepflash key: %v.", err)
	}
	if region != "" && p.Region != region {
		return caller, nil, a.mismatch(r, p.Region, region)
	}
	if a.store == nil {
		return caller, nil, authError(CodeInvalidKey, "The API key %s… is not known here: this server has no key store.", p.Prefix)
	}
	k, err := a.store.KeyByHash(ctx, p.Hash)
	switch {
	case errors.Is(err, ErrNotFound) || (err == nil && !k.Matches(p)):
		return caller, nil, authError(CodeInvalidKey, "The API key %s… is not known here: it was never issued by this server or was deleted.", p.Prefix)
	case err != nil:
		return caller, nil, storeError(err)
	case !k.Revoked.IsZero():
		return caller, nil, authError(CodeInvalidKey, "The API key %s… was revoked on %s.", p.Prefix, k.Revoked.UTC().Format(time.DateOnly))
	case region != "" && k.Region != region:
		return caller, nil, a.mismatch(r, k.Region, region)
	}
	caller.KeyID = k.ID
	return caller, &k, nil
}

// mismatch is the 401 for a key of another region: it names the region and
// its base URL.
func (a *Authenticator) mismatch(r *http.Request, keyRegion, here string) *api.Error {
	where := ""
	a.regionsMu.RLock()
	reg, ok := a.regions[keyRegion]
	a.regionsMu.RUnlock()
	if ok {
		if u := reg.BaseURL; u != "" {
			where = u
		} else if reg.Port != 0 {
			where = sameHostURL(r, reg.Port)
		}
	}
	if where == "" {
		return authError(CodeRegionMismatch,
			"This API key belongs to region %q, but this is region %q's endpoint, and keys work only in the region that issued them. Use the key at region %q's base URL (this server does not know it), or a key issued for region %q.",
			keyRegion, here, keyRegion, here)
	}
	return authError(CodeRegionMismatch,
		"This API key belongs to region %q, but this is region %q's endpoint, and keys work only in the region that issued them. Use it at %s (region %q's base URL), or use a key issued for region %q.",
		keyRegion, here, where, keyRegion, here)
}

// sameHostURL is the base URL on port of the host r reached this server by.
func sameHostURL(r *http.Request, port int) string {
	host := r.Host
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	if host == "" {
		host = "localhost"
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return (&url.URL{Scheme: scheme, Host: net.JoinHostPort(strings.Trim(host, "[]"), strconv.Itoa(port)), Path: "/v1"}).String()
}

// bearer returns the request's key: "Authorization: Bearer K" (OpenAI's
// SDKs) or "x-api-key: K" (Anthropic's).
func bearer(r *http.Request) (string, bool) {
	if h := strings.TrimSpace(r.Header.Get("Authorization")); h != "" {
		if strings.EqualFold(h, "Bearer") {
			return "", false
		}
		scheme, tok, ok := strings.Cut(h, " ")
		if ok && strings.EqualFold(scheme, "Bearer") {
			tok = strings.TrimSpace(tok)
			return tok, tok != ""
		}
		return h, true
	}
	k := strings.TrimSpace(r.Header.Get("X-Api-Key"))
	return k, k != ""
}

// safePrefix shows the start of a mistyped key, enough to tell which one
// it was and no more than its display prefix.
func safePrefix(tok string) string {
	if p, err := Parse(tok); err == nil {
		return p.Prefix
	}
	rest, _ := strings.CutPrefix(tok, "sk-")
	region, rest, _ := strings.Cut(rest, "-")
	return "sk-" + region + "-" + rest[:min(len(rest), PrefixLen)]
}

func regionOr(r string) string {
	if r == "" {
		return "<region>"
	}
	return r
}

func authError(code, format string, args ...any) *api.Error {
	return api.NewError(http.StatusUnauthorized, api.TypeAuthentication, code, "", format, args...)
}

func storeError(err error) *api.Error {
	e := api.NewError(http.StatusServiceUnavailable, api.TypeServer, "key_store_unavailable", "",
		"The key store could not be read (%v). Retry after 1 second(s).", err)
	e.RetryAfter = 1
	return e
}

// Protected reports whether a path needs a key: the API under /v1/ and
// the tokenizer's endpoints (which may fetch and encode images).
func Protected(path string) bool {
	return strings.HasPrefix(path, "/v1/") || path == "/tokenize" || path == "/detokenize"
}

// Middleware checks the key of every /v1/ request and of /tokenize and
// /detokenize (the health probes and /metrics stay open) and puts the
// caller into the request's context (backend.CallerFrom); a failure is
// answered with its error object.
func (a *Authenticator) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !Protected(r.URL.Path) || r.Method == http.MethodOptions {
			next.ServeHTTP(w, r)
			return
		}
		caller, k, e := a.Authenticate(r)
		if e != nil {
			WriteError(w, e)
			return
		}
		ctx := backend.WithCaller(r.Context(), caller)
		if k != nil {
			ctx = withKey(ctx, k)
		}
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}

// WriteError writes an OpenAI error object with its status, Retry-After and
// (on 401) WWW-Authenticate.
func WriteError(w http.ResponseWriter, e *api.Error) {
	if e.RetryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(e.RetryAfter))
	}
	if e.Status == http.StatusUnauthorized {
		// RFC 6750 section 3: no error attribute when no credentials came.
		h := `Bearer realm="stepflash"`
		if code := e.CodeString(); code != CodeMissingKey {
			h += fmt.Sprintf(`, error="invalid_token", error_description=%q`, code)
		}
		w.Header().Set("WWW-Authenticate", h)
	}
	b, _ := json.Marshal(api.ErrorResponse{Error: e})
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)+1))
	w.WriteHeader(e.Status)
	w.Write(append(b, '\n'))
}
