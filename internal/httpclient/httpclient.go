// Package httpclient makes HTTP clients with the three timeouts a gateway
// needs: connect, first byte and idle.
//
// A client for long downloads or token streams cannot have an overall
// deadline (http.Client.Timeout), yet must not wait forever on a peer that
// went silent. The three limits here bound each wait on the peer instead:
//
//   - Connect: DNS lookup plus TCP connect, and then the TLS handshake (each
//     gets the full limit).
//   - FirstByte: from the request being written until the response headers
//     arrive.
//   - Idle: each Read of the response body; a Read that gets no data within
//     Idle cancels the request. Time the caller spends between Reads does not
//     count, so a slow consumer is never cut off.
//
// A request that fails in one of these phases returns an *Error (wrapped in
// *url.Error by http.Client; use errors.As), whose Phase says where it failed
// and whose Limit is the timeout that ran out (zero when the phase failed
// for another reason, such as a refused connection). A cancelled or expired
// caller context is returned as is, not as an *Error.
package httpclient

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"sync/atomic"
	"time"
)

// Timeouts are the limits on each wait for the peer. A zero field takes its
// value from DefaultTimeouts; a negative field means no limit.
type Timeouts struct {
	// Connect bounds DNS lookup plus TCP connect, and separately the TLS
	// handshake.
	Connect time.Duration
	// FirstByte bounds the wait for the response headers once the request
	// has been written.
	FirstByte time.Duration
	// Idle bounds each Read of the response body.
	Idle time.Duration
}

// DefaultTimeouts are the limits used for zero fields.
//
// Connect is 10s: a reachable host answers a SYN within a round trip, and
// 10s still covers a slow DNS lookup and three lost SYNs (Linux resends
// after 1, 3 and 7 s), while an unreachable hub fails fast enough for a
// person to read the offline advice. FirstByte and Idle are 60s, the
// proxy_read_timeout of nginx, the limit most HTTP gateways already apply
// between reads: Hugging Face and its CDN answer in well under a second, and
// a token stream that is silent for a minute has stalled. A peer that sends
// nothing until a long job is done (a non-streamed completion whose headers
// come after the last token) needs a larger FirstByte.
var DefaultTimeouts = Timeouts{Connect: 10 * time.Second, FirstByte: 60 * time.Second, Idle: 60 * time.Second}

// WithDefaults returns t with each zero field set from DefaultTimeouts.
func (t Timeouts) WithDefaults() Timeouts {
	if t.Connect == 0 {
		t.Connect = DefaultTimeouts.Connect
	}
	if t.FirstByte == 0 {
		t.FirstByte = DefaultTimeouts.FirstByte
	}
	if t.Idle == 0 {
		t.Idle = DefaultTimeouts.Idle
	}
	return t
}

// Phase is the part of a request that failed.
type Phase string

const (
	// PhaseConnect: no connection was made (DNS, TCP connect, TLS handshake
	// or proxy).
	PhaseConnect Phase = "connect"
	// PhaseFirstByte: connected and the request sent, but no response
	// headers came.
	PhaseFirstByte Phase = "first_byte"
	// PhaseIdle: the response body stopped arriving.
	PhaseIdle Phase = "idle"
)

// Error is a request that failed in one phase.
type Error struct {
	Phase Phase
	// Limit is the timeout that ran out; zero when the phase failed for
	// another reason (connection refused, DNS failure, connection closed).
	Limit time.Duration
	// Err is the underlying error; nil for an idle timeout.
	Err error
}

func (e *Error) Error() string {
	switch {
	case e.Phase == PhaseConnect && e.Limit > 0:
		return fmt.Sprintf("no connection within %s (connect timeout): %v", seconds(e.Limit), e.Err)
	case e.Phase == PhaseConnect:
		return fmt.Sprintf("cannot connect: %v", e.Err)
	case e.Phase == PhaseFirstByte && e.Limit > 0:
		return fmt.Sprintf("connected, but no response within %s of sending the request (first-byte timeout)", seconds(e.Limit))
	case e.Phase == PhaseFirstByte:
		return fmt.Sprintf("connected, but no response: %v", e.Err)
	case e.Phase == PhaseIdle:
		return fmt.Sprintf("no data for %s (idle timeout)", seconds(e.Limit))
	}
	return fmt.Sprintf("%s: %v", e.Phase, e.Err)
}

// Unwrap returns the underlying error.
func (e *Error) Unwrap() error { return e.Err }

// Timeout reports whether a limit ran out (as net.Error does).
func (e *Error) Timeout() bool { return e.Limit > 0 }

// seconds formats a limit as "60s" rather than "1m0s".
func seconds(d time.Duration) string {
	if d%time.Second == 0 {
		return fmt.Sprintf("%ds", d/time.Second)
	}
	return d.String()
}

// NewClient returns a client whose requests obey t (zero fields default):
// Wrap(NewTransport(t), t). It has no overall Timeout, since a stream may
// rightly last for hours; bound a whole request with its context.
func NewClient(t Timeouts) *http.Client {
	return &http.Client{Transport: Wrap(NewTransport(t), t)}
}

// dialFunc is net.Dialer.DialContext's signature.
type dialFunc func(ctx context.Context, network, addr string) (net.Conn, error)

// NewTransport returns a transport with the Connect and FirstByte limits of
// t (zero fields default), the proxy from $HTTPS_PROXY / $HTTP_PROXY /
// $NO_PROXY, HTTP/2 where the server offers it, and an idle-connection pool
// sized for a gateway (64 per host, 256 in all, closed after 90s unused).
// A failed dial returns an *Error of PhaseConnect. Use it alone to
// customise the transport, then pass it to Wrap for the idle limit and the
// classification of the other errors.
func NewTransport(t Timeouts) *http.Transport {
	d := &net.Dialer{KeepAlive: 30 * time.Second}
	return newTransport(t, d.DialContext)
}

// newTransport is NewTransport with the underlying dial replaced (tests).
func newTransport(t Timeouts, dial dialFunc) *http.Transport {
	t = t.WithDefaults()
	return &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           connectDialer(dial, t.Connect),
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          256,
		MaxIdleConnsPerHost:   64,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   max(t.Connect, 0),
		ResponseHeaderTimeout: max(t.FirstByte, 0),
		ExpectContinueTimeout: time.Second,
	}
}

// errConnectTimeout is the cancel cause of a dial that ran out of time.
var errConnectTimeout = errors.New("connect timeout")

// connectDialer bounds dial by limit and returns its failures as *Error.
func connectDialer(dial dialFunc, limit time.Duration) dialFunc {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		dctx := ctx
		if limit > 0 {
			var cancel context.CancelFunc
			dctx, cancel = context.WithTimeoutCause(ctx, limit, errConnectTimeout)
			defer cancel()
		}
		c, err := dial(dctx, network, addr)
		if err == nil {
			return c, nil
		}
		if ctx.Err() != nil {
			return nil, err // the caller gave up
		}
		e := &Error{Phase: PhaseConnect, Err: err}
		if context.Cause(dctx) == errConnectTimeout {
			e.Limit = limit
		}
		return nil, e
	}
}

// Wrap returns a round tripper that sends requests through rt, classifies
// their failures as *Error (see the package comment) and bounds each Read
// of a response body by t.Idle (zero defaults; negative: no limit). The
// Connect and FirstByte limits themselves are rt's (NewTransport sets them);
// t names them in errors.
func Wrap(rt http.RoundTripper, t Timeouts) http.RoundTripper {
	return &guard{rt: rt, t: t.WithDefaults()}
}

type guard struct {
	rt http.RoundTripper
	t  Timeouts
}

// progress records how far a request got, from httptrace hooks (which may
// run on the transport's goroutines).
type progress struct {
	gotConn, gotFirstByte atomic.Bool
}

func (g *guard) RoundTrip(req *http.Request) (*http.Response, error) {
	parent := req.Context()
	ctx, cancel := context.WithCancelCause(parent)
	var p progress
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		GotConn:              func(httptrace.GotConnInfo) { p.gotConn.Store(true) },
		GotFirstResponseByte: func() { p.gotFirstByte.Store(true) },
	})
	resp, err := g.rt.RoundTrip(req.WithContext(ctx))
	if err != nil {
		cancel(nil)
		return nil, g.classify(parent, &p, err)
	}
	resp.Request = req
	if rwc, ok := resp.Body.(io.ReadWriteCloser); ok && resp.StatusCode == http.StatusSwitchingProtocols {
		// The body is the upgraded connection, which has no idle limit.
		resp.Body = upgraded{rwc, cancel}
		return resp, nil
	}
	resp.Body = &idleBody{rc: resp.Body, ctx: ctx, cancel: cancel, limit: g.t.Idle}
	return resp, nil
}

// classify turns a round-trip error into an *Error where it belongs to a phase.
func (g *guard) classify(parent context.Context, p *progress, err error) error {
	var e *Error
	if parent.Err() != nil || errors.As(err, &e) {
		return err
	}
	var timeout interface{ Timeout() bool }
	isTimeout := errors.As(err, &timeout) && timeout.Timeout()
	switch {
	case !p.gotConn.Load():
		e = &Error{Phase: PhaseConnect, Err: err}
		if isTimeout && g.t.Connect > 0 {
			e.Limit = g.t.Connect
		}
		return e
	case !p.gotFirstByte.Load():
		e = &Error{Phase: PhaseFirstByte, Err: err}
		if isTimeout && g.t.FirstByte > 0 {
			e.Limit = g.t.FirstByte
		}
		return e
	}
	return err
}

// CloseIdleConnections closes the idle connections of the wrapped transport.
func (g *guard) CloseIdleConnections() {
	if c, ok := g.rt.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

// upgraded is the connection of a 101 response; Close releases the context.
type upgraded struct {
	io.ReadWriteCloser
	cancel context.CancelCauseFunc
}

func (u upgraded) Close() error {
	err := u.ReadWriteCloser.Close()
	u.cancel(nil)
	return err
}

// idleBody cancels the request when a Read waits longer than limit. The
// timer runs only inside Read, so no timer or goroutine outlives a Read.
type idleBody struct {
	rc     io.ReadCloser
	ctx    context.Context
	cancel context.CancelCauseFunc
	limit  time.Duration
	timer  atomic.Pointer[time.Timer]
}

func (b *idleBody) Read(p []byte) (int, error) {
	var t *time.Timer
	if b.limit > 0 && len(p) > 0 {
		t = b.timer.Load()
		if t == nil {
			t = time.AfterFunc(b.limit, b.expire)
			b.timer.Store(t)
		} else {
			t.Reset(b.limit)
		}
	}
	n, err := b.rc.Read(p)
	if t != nil {
		t.Stop()
	}
	if err != nil {
		// A Read that failed because the idle timer cancelled the request,
		// or one that won the race with it, reports the idle timeout.
		var e *Error
		if err != io.EOF && errors.As(context.Cause(b.ctx), &e) {
			return n, e
		}
		if err == io.EOF {
			b.cancel(nil) // done: release the context, as http.Client does
		}
		return n, err
	}
	return n, nil
}

func (b *idleBody) expire() {
	b.cancel(&Error{Phase: PhaseIdle, Limit: b.limit})
}

func (b *idleBody) Close() error {
	if t := b.timer.Load(); t != nil {
		t.Stop()
	}
	err := b.rc.Close()
	b.cancel(nil)
	return err
}
