package server

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/stepflash/stepflash/api"
)

// Listener wraps a listener of the server: its connections count against
// Guard.MaxConns (shared by all listeners of s), and the plain-text error
// responses net/http writes itself, before any handler runs (400 on a
// malformed request, 431, 501), are rewritten as JSON error objects. Serve
// it with an http.Server set up by Configure.
func (s *Server) Listener(ln net.Listener) net.Listener {
	wildcard := false
	if tcp, ok := ln.Addr().(*net.TCPAddr); ok {
		wildcard = tcp.IP.IsUnspecified()
	}
	return &guardListener{Listener: ln, lim: s.guard.conns, wildcard: wildcard, closed: make(chan struct{})}
}

// OpenConns is the number of open connections of the server's listeners.
func (s *Server) OpenConns() int { return s.guard.conns.count() }

type guardListener struct {
	net.Listener
	lim       *connLimiter
	wildcard  bool
	closed    chan struct{}
	closeOnce sync.Once
}

// Accept waits for a free connection slot before accepting, so that
// connections beyond the cap wait in the kernel's backlog, costing the
// process no file descriptor.
func (l *guardListener) Accept() (net.Conn, error) {
	if err := l.lim.acquire(l.closed); err != nil {
		return nil, err
	}
	c, err := l.Listener.Accept()
	if err != nil {
		l.lim.release(nil)
		return nil, err
	}
	gc := &guardConn{Conn: c, lim: l.lim, wildcard: l.wildcard}
	l.lim.add(gc)
	return gc, nil
}

func (l *guardListener) Close() error {
	l.closeOnce.Do(func() { close(l.closed) })
	return l.Listener.Close()
}

// connLimiter counts open connections against a cap and knows which of
// them may be closed to make room.
type connLimiter struct {
	max   int           // < 0: no cap
	grace time.Duration // a connection is closed to make room only after this long without a request
	mu    sync.Mutex
	open  int // slots taken: connections, and accepts in progress
	conns map[*guardConn]struct{}
	freed chan struct{}
}

func newConnLimiter(max int, grace time.Duration) *connLimiter {
	return &connLimiter{max: max, grace: grace, conns: map[*guardConn]struct{}{}, freed: make(chan struct{}, 1)}
}

func (l *connLimiter) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.conns)
}

// acquire takes a slot. At the cap it closes the connection that has
// waited longest without a request in progress (for at least the grace
// period, so that one just accepted can show its request), or waits for a
// slot to free.
func (l *connLimiter) acquire(closed <-chan struct{}) error {
	for {
		l.mu.Lock()
		if l.max < 0 || l.open < l.max {
			l.open++
			l.mu.Unlock()
			return nil
		}
		var oldest *guardConn
		for c := range l.conns {
			if c.reusable() && !c.evicted && (oldest == nil || c.since.Before(oldest.since)) {
				oldest = c
			}
		}
		var retry <-chan time.Time
		if oldest != nil {
			if wait := l.grace - time.Since(oldest.since); wait > 0 {
				retry = time.After(wait)
				oldest = nil
			} else {
				oldest.evicted = true
			}
		}
		l.mu.Unlock()
		if oldest != nil {
			oldest.Close()
		}
		select {
		case <-l.freed:
		case <-retry:
		case <-closed:
			return net.ErrClosed
		}
	}
}

func (l *connLimiter) add(c *guardConn) {
	l.mu.Lock()
	c.state, c.since = http.StateNew, time.Now()
	l.conns[c] = struct{}{}
	l.mu.Unlock()
}

// release frees the slot of c (nil: of an accept that failed).
func (l *connLimiter) release(c *guardConn) {
	l.mu.Lock()
	if c != nil {
		delete(l.conns, c)
	}
	l.open--
	l.mu.Unlock()
	select {
	case l.freed <- struct{}{}:
	default:
	}
}

func (l *connLimiter) setState(c *guardConn, st http.ConnState) {
	l.mu.Lock()
	if c.state != st {
		c.state, c.since = st, time.Now()
	}
	l.mu.Unlock()
}

// guardConn is an accepted connection.
type guardConn struct {
	net.Conn
	lim      *connLimiter
	wildcard bool // accepted by a listener on 0.0.0.0 or ::

	// guarded by lim.mu
	state   http.ConnState
	since   time.Time // when it entered state
	evicted bool

	closeOnce sync.Once
	// linger is set when the connection is to be closed after an error
	// response to a request whose body was not read (net/http half-closed
	// it, or a handler answered a body that timed out).
	linger atomic.Bool
}

// lingerTime bounds how long Close drains a half-closed connection.
const lingerTime = 2 * time.Second

// lingerBytes bounds what Close drains from it.
const lingerBytes = 1 << 20

// reusable: no request in progress (nothing read yet, or keep-alive idle).
func (c *guardConn) reusable() bool { return c.state == http.StateNew || c.state == http.StateIdle }

func (c *guardConn) Close() error {
	if c.linger.Load() {
		// Lingering close (RFC 9112 section 9.6, as nginx does): a client
		// still sending the body we refused (a 408, a 413) would get a
		// TCP reset for its unread bytes, and a reset can destroy the
		// error response before the client read it. Half-close, then
		// drain what it sends until it closes too, for a while.
		if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
			cw.CloseWrite()
		}
		c.Conn.SetReadDeadline(time.Now().Add(lingerTime))
		io.Copy(io.Discard, io.LimitReader(c.Conn, lingerBytes))
	}
	err := c.Conn.Close()
	c.closeOnce.Do(func() { c.lim.release(c) })
	return err
}

// CloseWrite lets net/http half-close the connection after a 431, as it
// does with a bare TCP connection.
func (c *guardConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		c.linger.Store(true)
		return cw.CloseWrite()
	}
	return nil
}

// Write passes writes through, but for net/http's own plain-text error
// responses, which it writes in one piece straight to the connection when a
// request cannot be read (no handler runs): those go out as the same
// status with a JSON error object.
func (c *guardConn) Write(b []byte) (int, error) {
	if status, text, ok := cannedError(b); ok {
		if _, err := c.Conn.Write(jsonErrorResponse(status, text)); err != nil {
			return 0, err
		}
		return len(b), nil
	}
	return c.Conn.Write(b)
}

// cannedHeaders follow the status line of every error response net/http
// writes itself (server.go, conn.serve). A response of a handler always
// has a Date header there instead.
const cannedHeaders = "\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n"

// cannedError recognises net/http's own error response and returns its
// status and text.
func cannedError(b []byte) (int, string, bool) {
	if !bytes.HasPrefix(b, []byte("HTTP/1.1 ")) || len(b) < len("HTTP/1.1 400") {
		return 0, "", false
	}
	line, rest, ok := bytes.Cut(b, []byte("\r\n"))
	if !ok || !bytes.HasPrefix(rest, []byte(cannedHeaders[2:])) {
		return 0, "", false
	}
	status, err := strconv.Atoi(string(line[9:12]))
	if err != nil || status < 400 {
		return 0, "", false
	}
	return status, string(rest[len(cannedHeaders)-2:]), true
}

// jsonErrorResponse is a whole HTTP response carrying the error object of
// net/http's status and text; the connection closes after it, as after
// the original.
func jsonErrorResponse(status int, text string) []byte {
	var e *api.Error
	switch status {
	case http.StatusRequestHeaderFieldsTooLarge:
		e = api.NewError(status, api.TypeInvalidRequest, CodeHeadersTooLarge, "",
			"The request's headers (or its request line) are larger than the server's limit.")
	case http.StatusNotImplemented:
		e = api.NewError(status, api.TypeInvalidRequest, CodeBadRequest, "",
			"The request could not be read: %s (only chunked Transfer-Encoding is supported).", text)
	default:
		e = api.NewError(status, api.TypeInvalidRequest, CodeBadRequest, "",
			"The HTTP request could not be read (%s): check the request line, the headers and the Host header.", text)
	}
	body, _ := json.Marshal(api.ErrorResponse{Error: e})
	body = append(body, '\n')
	head := fmt.Sprintf("HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: %d\r\n\r\n",
		status, http.StatusText(status), len(body))
	return append([]byte(head), body...)
}

// lingerOnClose marks the connection of r to be closed with a lingering
// close (see guardConn.Close).
func lingerOnClose(r *http.Request) {
	if gc, ok := r.Context().Value(connKey{}).(*guardConn); ok {
		gc.linger.Store(true)
	}
}
