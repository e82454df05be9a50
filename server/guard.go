package server

import (
	"context"
	"errors"
	"fmt"
	"mime"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/stepflash/stepflash/api"
)

// Defaults of Guard.
const (
	DefaultReadHeaderTimeout = 10 * time.Second
	DefaultReadTimeout       = 60 * time.Second
	DefaultWriteTimeout      = 30 * time.Second
	DefaultIdleTimeout       = 60 * time.Second
	DefaultMaxConns          = 1024
	DefaultMaxHeaderBytes    = 64 << 10
)

// Error codes of the HTTP layer (not in DESIGN.md's table, which lists the
// API's own).
const (
	CodeUnsupportedMediaType = "unsupported_media_type"
	CodeHostNotAllowed       = "host_not_allowed"
	CodeOriginNotAllowed     = "origin_not_allowed"
	CodeRequestTimeout       = "request_timeout"
	CodeBadRequest           = "bad_request"
	CodeHeadersTooLarge      = "request_header_fields_too_large"
	CodeNotCanonical         = "path_not_canonical"
)

// Guard is what keeps clients that are slow, many, or not who they say
// from hurting the server: timeouts, a connection cap, the Host allow-list
// against DNS rebinding, and CORS. Zero fields take the defaults.
type Guard struct {
	// ReadHeaderTimeout is how long a client may take to send a request's
	// headers, from its first byte (a new connection: from its accept).
	ReadHeaderTimeout time.Duration
	// ReadTimeout is how long a client may take to send a whole request,
	// headers and body, from its first byte; a body still arriving then is
	// a 408 and the connection is closed. It does not bound the response:
	// a stream may run for as long as it generates.
	ReadTimeout time.Duration
	// WriteTimeout is how long each write of a response (each event of a
	// stream) may wait for the client to take it; a client that stops
	// reading is cut, and its generation stops.
	WriteTimeout time.Duration
	// IdleTimeout is how long a keep-alive connection may wait for its
	// next request.
	IdleTimeout time.Duration
	// MaxConns caps the open connections of all the server's listeners
	// (Listener). At the cap the server stops accepting, so further
	// connections wait in the kernel's backlog; to make room it closes the
	// connection that has longest had no request in progress (idle
	// keep-alive, or no complete request yet, for at least a quarter
	// second), as nginx reuses such connections. Negative: no cap.
	MaxConns int
	// MaxHeaderBytes limits a request's headers (431 beyond).
	MaxHeaderBytes int
	// AllowedHosts are Host names answered besides the defaults:
	// "localhost" and its subdomains, any IP address, this machine's host
	// name. "*" allows any Host. See docs/api.md for when the check
	// applies.
	AllowedHosts []string
	// CORSOrigins are the browser origins allowed to call the API
	// ("https://app.example.com", or "*" for any); none by default.
	CORSOrigins []string
}

func (g Guard) withDefaults() Guard {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&g.ReadHeaderTimeout, DefaultReadHeaderTimeout)
	def(&g.ReadTimeout, DefaultReadTimeout)
	def(&g.WriteTimeout, DefaultWriteTimeout)
	def(&g.IdleTimeout, DefaultIdleTimeout)
	g.ReadHeaderTimeout = min(g.ReadHeaderTimeout, g.ReadTimeout)
	if g.MaxConns == 0 {
		g.MaxConns = DefaultMaxConns
	}
	if g.MaxHeaderBytes <= 0 {
		g.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	return g
}

// guard is a Guard made ready for requests.
type guard struct {
	Guard
	anyHost   bool
	hosts     map[string]bool // normalised names
	anyOrigin bool
	origins   map[string]bool // normalised origins
	conns     *connLimiter
}

func newGuard(g Guard) *guard {
	gd := &guard{Guard: g.withDefaults(), hosts: map[string]bool{"localhost": true}, origins: map[string]bool{}}
	if h, err := os.Hostname(); err == nil && h != "" {
		gd.hosts[normalHost(h)] = true
	}
	for _, h := range gd.AllowedHosts {
		if h == "*" {
			gd.anyHost = true
			continue
		}
		gd.hosts[normalHost(h)] = true
	}
	for _, o := range gd.CORSOrigins {
		if o == "*" {
			gd.anyOrigin = true
			continue
		}
		gd.origins[normalOrigin(o)] = true
	}
	gd.conns = newConnLimiter(gd.MaxConns, min(250*time.Millisecond, gd.ReadHeaderTimeout/2))
	return gd
}

// CheckHost reports whether a Host value is a well-formed host name or
// address with an optional port, as --allowed-host takes it.
func CheckHost(h string) error {
	if h == "*" {
		return nil
	}
	if n := normalHost(h); n == "" || strings.ContainsAny(h, "/?#@ \t") {
		return fmt.Errorf("%q is not a host name or address", h)
	}
	return nil
}

// CheckOrigin reports whether o is an origin as browsers send it
// (scheme://host[:port]) or "*", as --cors-origin takes it.
func CheckOrigin(o string) error {
	if o == "*" {
		return nil
	}
	scheme, rest, ok := strings.Cut(o, "://")
	if !ok || (scheme != "http" && scheme != "https") || rest == "" || strings.ContainsAny(strings.TrimSuffix(rest, "/"), "/?#@ ") {
		return fmt.Errorf("%q is not an origin: want scheme://host[:port], such as https://app.example.com, or *", o)
	}
	return nil
}

// normalHost is a Host header's name: lower case, no port, no brackets,
// no trailing dot.
func normalHost(h string) string {
	h = strings.ToLower(strings.TrimSpace(h))
	if host, _, err := net.SplitHostPort(h); err == nil {
		h = host
	}
	h = strings.TrimSuffix(strings.TrimPrefix(h, "["), "]")
	return strings.TrimSuffix(h, ".")
}

func normalOrigin(o string) string { return strings.TrimSuffix(strings.ToLower(o), "/") }

// Configure sets an http.Server's timeouts and header limit from the
// Guard and lets the server tell its connections apart (for the connection
// cap and the Host check); use it on every http.Server that serves s, with
// a listener from Listener.
func (s *Server) Configure(hs *http.Server) {
	g := s.guard
	hs.ReadHeaderTimeout = g.ReadHeaderTimeout
	// ReadTimeout bounds the headers and body of a request. It does not
	// cut a long stream: net/http lifts the read deadline when the body
	// has been read (connReader.startBackgroundRead), which
	// TestLongStreamOutlivesReadTimeout holds it to.
	hs.ReadTimeout = g.ReadTimeout
	hs.WriteTimeout = 0 // each write gets its own deadline (deadlineWriter)
	hs.IdleTimeout = g.IdleTimeout
	hs.MaxHeaderBytes = g.MaxHeaderBytes
	prevState := hs.ConnState
	hs.ConnState = func(c net.Conn, st http.ConnState) {
		if gc, ok := c.(*guardConn); ok {
			gc.lim.setState(gc, st)
		}
		if prevState != nil {
			prevState(c, st)
		}
	}
	prevCtx := hs.ConnContext
	hs.ConnContext = func(ctx context.Context, c net.Conn) context.Context {
		if prevCtx != nil {
			ctx = prevCtx(ctx, c)
		}
		if gc, ok := c.(*guardConn); ok {
			ctx = context.WithValue(ctx, connKey{}, gc)
		}
		return ctx
	}
}

type connKey struct{}

// Guard is the middleware of the HTTP layer's own checks, before any
// other: the Host allow-list, CORS (preflights are answered here), the
// JSON redirect of a path that is not canonical, and a write deadline on
// every write of the response.
func (s *Server) Guard(next http.Handler) http.Handler {
	g := s.guard
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		dw := &deadlineWriter{ResponseWriter: w, rc: http.NewResponseController(w), d: g.WriteTimeout}
		dw.extend()
		w = dw
		if e := g.checkHost(r); e != nil {
			writeError(w, e)
			return
		}
		origin := r.Header.Get("Origin")
		if origin != "" && g.originAllowed(origin) {
			h := w.Header()
			h.Add("Vary", "Origin")
			h.Set("Access-Control-Allow-Origin", g.allowOriginValue(origin))
			h.Set("Access-Control-Expose-Headers", "X-Request-Id, X-Reasoning-Effort, X-Advisor, Retry-After")
		}
		if r.Method == http.MethodOptions && origin != "" && r.Header.Get("Access-Control-Request-Method") != "" {
			g.preflight(w, r, origin)
			return
		}
		if r.Method != http.MethodConnect {
			if p := r.URL.EscapedPath(); cleanPath(p) != p {
				loc := cleanPath(p)
				if r.URL.RawQuery != "" {
					loc += "?" + r.URL.RawQuery
				}
				w.Header().Set("Location", loc)
				writeError(w, api.NewError(http.StatusTemporaryRedirect, api.TypeInvalidRequest, CodeNotCanonical, "",
					"The path %s is not canonical: the resource is at %s (see Location; the method and body may be sent there unchanged).", p, loc))
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// checkHost is the allow-list against DNS rebinding: a page of another
// site whose name was made to resolve to this server's address makes the
// browser send that site's name as Host. Any IP address is allowed (a
// browser sends an IP as Host only to that IP), as are localhost names, the
// machine's host name and AllowedHosts. On a connection the server cannot
// name itself for, one that arrived on a non-loopback address of a
// wildcard listener (0.0.0.0 or ::: behind a container port map, a
// Kubernetes Service or a load balancer), any Host is allowed.
func (g *guard) checkHost(r *http.Request) *api.Error {
	if g.anyHost || r.Host == "" {
		return nil
	}
	h := normalHost(r.Host)
	if g.hosts[h] || h == "localhost" || strings.HasSuffix(h, ".localhost") {
		return nil
	}
	if _, err := netip.ParseAddr(h); err == nil {
		return nil
	}
	if !g.checksHostOn(r) {
		return nil
	}
	return api.NewError(http.StatusForbidden, api.TypeInvalidRequest, CodeHostNotAllowed, "",
		"Requests for host %q are not answered here (a guard against DNS rebinding): this server answers localhost, IP addresses%s. Start it with --allowed-host %s to allow this name.",
		h, g.namesList(), h)
}

// checksHostOn reports whether the Host check applies to the request's
// connection: everything on loopback, and everything on a listener bound
// to a specific address.
func (g *guard) checksHostOn(r *http.Request) bool {
	var local net.Addr
	wildcard := true
	if gc, ok := r.Context().Value(connKey{}).(*guardConn); ok {
		local, wildcard = gc.LocalAddr(), gc.wildcard
	} else if a, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
		local = a
	}
	if tcp, ok := local.(*net.TCPAddr); ok && tcp.IP.IsLoopback() {
		return true
	}
	return !wildcard
}

func (g *guard) namesList() string {
	var names []string
	for h := range g.hosts {
		if h != "localhost" {
			names = append(names, h)
		}
	}
	if len(names) == 0 {
		return ""
	}
	slices.Sort(names)
	return " and " + strings.Join(names, ", ")
}

func (g *guard) originAllowed(origin string) bool {
	return g.anyOrigin || g.origins[normalOrigin(origin)]
}

func (g *guard) allowOriginValue(origin string) string {
	if g.anyOrigin {
		return "*"
	}
	return origin
}

// preflight answers a CORS preflight: 204 with the allowed methods and
// headers for an allowed origin, a 403 error object otherwise.
func (g *guard) preflight(w http.ResponseWriter, r *http.Request, origin string) {
	if !g.originAllowed(origin) {
		hint := "Start the server with --cors-origin " + origin + " to allow it."
		writeError(w, api.NewError(http.StatusForbidden, api.TypeInvalidRequest, CodeOriginNotAllowed, "",
			"Cross-origin requests from %s are not allowed. %s", origin, hint))
		return
	}
	h := w.Header()
	h.Set("Access-Control-Allow-Methods", "GET, POST, OPTIONS")
	if req := r.Header.Get("Access-Control-Request-Headers"); req != "" {
		h.Set("Access-Control-Allow-Headers", req)
		h.Add("Vary", "Access-Control-Request-Headers")
	}
	h.Set("Access-Control-Max-Age", "600")
	w.WriteHeader(http.StatusNoContent)
}

// sameOrigin reports whether a browser's Origin is this server's own
// (scheme://Host).
func sameOrigin(origin, host string) bool {
	_, rest, ok := strings.Cut(normalOrigin(origin), "://")
	return ok && host != "" && rest == strings.ToLower(host)
}

// checkContentType accepts a JSON body: Content-Type application/json (a
// charset, if given, must be UTF-8). A request without Content-Type is
// read as JSON, as llama.cpp's server does, unless it comes from a page of
// another origin that CORS does not allow: a browser sends a body without
// a type (a Blob) cross-site without a preflight, so that is how a page
// could make a keyless local server work for it.
func (s *Server) checkContentType(r *http.Request) *api.Error {
	ct := r.Header.Get("Content-Type")
	if ct == "" {
		origin := r.Header.Get("Origin")
		if origin == "" || s.guard.originAllowed(origin) || sameOrigin(origin, r.Host) {
			return nil
		}
		return api.NewError(http.StatusUnsupportedMediaType, api.TypeInvalidRequest, CodeUnsupportedMediaType, "",
			"Send the body with Content-Type: application/json. (Without it a request from a page of another origin, %s, is refused.)", origin)
	}
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil || mt != "application/json" {
		return api.NewError(http.StatusUnsupportedMediaType, api.TypeInvalidRequest, CodeUnsupportedMediaType, "",
			"Unsupported Content-Type %q: this endpoint takes a JSON body, Content-Type: application/json.", ct)
	}
	if cs, ok := params["charset"]; ok && !strings.EqualFold(cs, "utf-8") && !strings.EqualFold(cs, "utf8") {
		return api.NewError(http.StatusUnsupportedMediaType, api.TypeInvalidRequest, CodeUnsupportedMediaType, "",
			"Unsupported charset %q: JSON bodies are UTF-8 (Content-Type: application/json; charset=utf-8).", cs)
	}
	return nil
}

// bodyTimeout is the 408 of a body that did not arrive within the read
// timeout.
func (s *Server) bodyTimeout() *api.Error {
	return api.NewError(http.StatusRequestTimeout, api.TypeInvalidRequest, CodeRequestTimeout, "",
		"The request body did not arrive within %s of the request's start; the connection is closed.", s.guard.ReadTimeout)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}

// deadlineWriter gives every write and flush of a response its own write
// deadline, so that a client that stops reading is cut after WriteTimeout
// (and the backend feeding it stops), whereas a stream that keeps flowing
// may last as long as it generates.
type deadlineWriter struct {
	http.ResponseWriter
	rc *http.ResponseController
	d  time.Duration
}

func (w *deadlineWriter) extend() { _ = w.rc.SetWriteDeadline(time.Now().Add(w.d)) }

func (w *deadlineWriter) Write(b []byte) (int, error) {
	w.extend()
	return w.ResponseWriter.Write(b)
}

func (w *deadlineWriter) FlushError() error {
	w.extend()
	return w.rc.Flush()
}

func (w *deadlineWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// cleanPath is net/http's canonical form of a path (ServeMux redirects
// any other form).
func cleanPath(p string) string {
	if p == "" {
		return "/"
	}
	if p[0] != '/' {
		p = "/" + p
	}
	np := path.Clean(p)
	if p[len(p)-1] == '/' && np != "/" {
		if len(p) == len(np)+1 && strings.HasPrefix(p, np) {
			np = p
		} else {
			np += "/"
		}
	}
	return np
}
