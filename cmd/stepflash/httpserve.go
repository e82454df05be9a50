package main

import (
	"flag"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/stepflash/stepflash/server"
)

// httpOptions are serve's flags for the HTTP layer: timeouts, the
// connection cap, the Host allow-list and CORS (server.Guard).
type httpOptions struct {
	allowedHosts      []string
	corsOrigins       []string
	maxConns          int
	readHeaderTimeout time.Duration
	readTimeout       time.Duration
	writeTimeout      time.Duration
	idleTimeout       time.Duration
}

// httpUsage is serve's help on these flags.
const httpUsage = `Clients that are slow, many, or not who they say: a request's headers must
arrive within --read-header-timeout and its body within --read-timeout (a
trickled body is a 408), each write of a response or stream event must be
taken within --write-timeout (a client that stops reading is cut and its
generation stops), a keep-alive connection may idle for --idle-timeout, and
at most --max-conns connections are open (more wait in the kernel's backlog;
at the cap the one that has longest had no request in progress is closed to
make room). A Host header other than localhost, an IP address, this
machine's name or an --allowed-host is refused with a 403 on loopback and on
a specific --addr (DNS rebinding; on 0.0.0.0 or :: connections from other
machines are not checked). Browsers of other origins get CORS only for a
--cors-origin. POST bodies must be Content-Type: application/json (415).
`

func registerHTTPFlags(fs *flag.FlagSet, o *httpOptions) {
	fs.Func("allowed-host", "a further Host name to answer (repeatable; * for any), besides localhost, IP addresses and this machine's name", func(s string) error {
		if err := server.CheckHost(s); err != nil {
			return err
		}
		o.allowedHosts = append(o.allowedHosts, s)
		return nil
	})
	fs.Func("cors-origin", "a browser origin allowed to call the API, scheme://host[:port] (repeatable; * for any; default none)", func(s string) error {
		if err := server.CheckOrigin(s); err != nil {
			return err
		}
		o.corsOrigins = append(o.corsOrigins, s)
		return nil
	})
	fs.IntVar(&o.maxConns, "max-conns", server.DefaultMaxConns, "most open client connections (0: no cap)")
	fs.DurationVar(&o.readHeaderTimeout, "read-header-timeout", server.DefaultReadHeaderTimeout, "how long a client may take to send a request's headers")
	fs.DurationVar(&o.readTimeout, "read-timeout", server.DefaultReadTimeout, "how long a client may take to send a whole request, headers and body")
	fs.DurationVar(&o.writeTimeout, "write-timeout", server.DefaultWriteTimeout, "how long each write of a response or stream event may wait for the client to read")
	fs.DurationVar(&o.idleTimeout, "idle-timeout", server.DefaultIdleTimeout, "how long a keep-alive connection may wait for its next request")
}

// check reports flags out of range.
func (o *httpOptions) check() error {
	if o.readHeaderTimeout <= 0 || o.readTimeout <= 0 || o.writeTimeout <= 0 || o.idleTimeout <= 0 {
		return fmt.Errorf("--read-header-timeout, --read-timeout, --write-timeout and --idle-timeout must be positive")
	}
	if o.maxConns < 0 {
		return fmt.Errorf("--max-conns must be positive (0: no cap)")
	}
	return nil
}

// guard is the server.Guard of the flags. The host names among the listen
// addresses (not IP addresses, which are always answered) are allowed
// Hosts too.
func (o *httpOptions) guard(listen ...string) server.Guard {
	g := server.Guard{
		ReadHeaderTimeout: o.readHeaderTimeout, ReadTimeout: o.readTimeout, WriteTimeout: o.writeTimeout, IdleTimeout: o.idleTimeout,
		MaxConns: o.maxConns, AllowedHosts: append([]string(nil), o.allowedHosts...), CORSOrigins: o.corsOrigins,
	}
	if g.MaxConns == 0 {
		g.MaxConns = -1
	}
	for _, a := range listen {
		host, _, err := net.SplitHostPort(a)
		if err != nil || host == "" {
			continue
		}
		if _, err := netip.ParseAddr(host); err != nil {
			g.AllowedHosts = append(g.AllowedHosts, host)
		}
	}
	return g
}
