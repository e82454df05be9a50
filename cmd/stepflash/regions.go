package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/stepflash/stepflash/auth"
	"github.com/stepflash/stepflash/backend"
	"github.com/stepflash/stepflash/billing"
)

// regionFlag is one --region: a region tag and, unless the process serves
// one region on --addr, its own listen address.
type regionFlag struct {
	name, addr string
}

// regionOptions are serve's key and region flags.
type regionOptions struct {
	regions     []regionFlag
	regionURLs  map[string]string // --region-url NAME=URL
	requireKeys bool
	// backendMiddleware wraps each served model's backend (set by runServe).
	backendMiddleware func(billing.Prices, ...backend.Middleware) []backend.Middleware
}

func registerRegionFlags(fs *flag.FlagSet, o *regionOptions) {
	fs.Func("region", "serve region NAME (its keys only): NAME alone on --addr, or NAME=ADDR for a listener of its own (repeatable; default global on --addr)", func(s string) error {
		name, addr, hasAddr := strings.Cut(s, "=")
		if !auth.ValidRegion(name) {
			return fmt.Errorf("region %q: want 1 to %d lowercase letters and digits", name, auth.MaxRegionLen)
		}
		if hasAddr && addr == "" {
			return fmt.Errorf("region %s: empty address after =", name)
		}
		for _, r := range o.regions {
			if r.name == name {
				return fmt.Errorf("region %s given twice", name)
			}
		}
		o.regions = append(o.regions, regionFlag{name, addr})
		return nil
	})
	fs.Func("region-url", "NAME=URL: the public base URL of region NAME, named to callers who bring its keys to another region (repeatable)", func(s string) error {
		name, u, ok := strings.Cut(s, "=")
		if !ok || !auth.ValidRegion(name) {
			return fmt.Errorf("--region-url %q: want NAME=URL", s)
		}
		if pu, err := url.Parse(u); err != nil || (pu.Scheme != "http" && pu.Scheme != "https") || pu.Host == "" {
			return fmt.Errorf("--region-url %s: %q is not an http(s) URL", name, u)
		}
		if o.regionURLs == nil {
			o.regionURLs = map[string]string{}
		}
		o.regionURLs[name] = strings.TrimRight(u, "/")
		return nil
	})
	fs.BoolVar(&o.requireKeys, "require-keys", false, "refuse requests without a valid key even while the key store is empty")
}

// listeners resolves the regions into listen addresses: with no --region,
// one region "global" on addr; a region without an address takes addr (at
// most one may).
func (o *regionOptions) listeners(addr string) ([]regionFlag, error) {
	if len(o.regions) == 0 {
		return []regionFlag{{"global", addr}}, nil
	}
	out := make([]regionFlag, len(o.regions))
	bare := ""
	for i, r := range o.regions {
		if r.addr == "" {
			if bare != "" {
				return nil, fmt.Errorf("--region %s and --region %s both want --addr: give one of them its own address (NAME=ADDR)", bare, r.name)
			}
			bare, r.addr = r.name, addr
		}
		out[i] = r
	}
	return out, nil
}

// regionListener is one region's bound listener.
type regionListener struct {
	name string
	ln   net.Listener
}

// listenRegions binds every region's address (all or none).
func listenRegions(regions []regionFlag) ([]regionListener, error) {
	var out []regionListener
	for _, r := range regions {
		ln, err := net.Listen("tcp", r.addr)
		if err != nil {
			for _, l := range out {
				l.ln.Close()
			}
			return nil, fmt.Errorf("region %s: %w", r.name, err)
		}
		out = append(out, regionListener{r.name, ln})
	}
	return out, nil
}

// authRegions is what the authenticator knows of regions: those served
// here (with their ports) and those named by --region-url.
func (o *regionOptions) authRegions(ls []regionListener) []auth.Region {
	var out []auth.Region
	seen := map[string]bool{}
	for _, l := range ls {
		port := 0
		if tcp, ok := l.ln.Addr().(*net.TCPAddr); ok {
			port = tcp.Port
		}
		out = append(out, auth.Region{Name: l.name, BaseURL: o.regionURLs[l.name], Port: port})
		seen[l.name] = true
	}
	for name, u := range o.regionURLs {
		if !seen[name] {
			out = append(out, auth.Region{Name: name, BaseURL: u})
		}
	}
	return out
}

// regionBaseContext tags a listener's requests with its region.
func regionBaseContext(region string) func(net.Listener) context.Context {
	return func(net.Listener) context.Context { return auth.WithListenerRegion(context.Background(), region) }
}

// warnOpen says loudly, for each region listening beyond loopback, that
// anyone who can reach it can use it: keys are not enforced there.
func warnOpen(ctx context.Context, a *auth.Authenticator, ls []regionListener, stderr io.Writer) {
	for _, l := range ls {
		on, err := a.Enforced(ctx, l.name)
		if err != nil || on || isLoopback(l.ln.Addr()) {
			continue
		}
		fmt.Fprintf(stderr, "stepflash serve: WARNING: region %s listens on %s with no API keys: anyone who can reach it can use it. "+
			"Create a key (stepflash keys create --region %s --name NAME) or pass --require-keys.\n", l.name, l.ln.Addr(), l.name)
	}
}

func isLoopback(a net.Addr) bool {
	tcp, ok := a.(*net.TCPAddr)
	return ok && tcp.IP.IsLoopback()
}

// servedURL is a listener's base URL for the start-up lines.
func servedURL(ln net.Listener) string {
	a := ln.Addr().(*net.TCPAddr)
	host := a.IP.String()
	if a.IP.IsUnspecified() {
		host = "0.0.0.0"
		if a.IP.To4() == nil {
			host = "::"
		}
	}
	return "http://" + net.JoinHostPort(host, strconv.Itoa(a.Port))
}

// backendMiddleware is what wraps every served model's backend, outermost
// first: the key's limits (checked before work, counting the priced usage),
// the ledger (extra, when the server keeps one), then pricing.
func backendMiddleware(limiter *auth.Limiter, prices billing.Prices, extra ...backend.Middleware) []backend.Middleware {
	var mws []backend.Middleware
	if limiter != nil {
		mws = append(mws, auth.Limits(limiter))
	}
	mws = append(mws, extra...)
	return append(mws, billing.Pricing(prices))
}

// serveRegions serves h on every listener, each tagged with its region,
// and returns the servers (for shutdown) and a channel of the first error.
func serveRegions(ls []regionListener, h http.Handler, configure func(*http.Server)) ([]*http.Server, chan error) {
	errc := make(chan error, len(ls))
	var servers []*http.Server
	for _, l := range ls {
		hs := &http.Server{Handler: h, BaseContext: regionBaseContext(l.name)}
		if configure != nil {
			configure(hs)
		}
		servers = append(servers, hs)
		go func() { errc <- hs.Serve(l.ln) }()
	}
	return servers, errc
}

// listenAddrs are the regions' listen addresses (whose host names the
// Host allow-list takes).
func listenAddrs(regions []regionFlag) []string {
	out := make([]string, len(regions))
	for i, r := range regions {
		out[i] = r.addr
	}
	return out
}
