// Package media fetches and decodes the images a request carries: data: and http(s) URLs fetched SSRF-safely within limits, PNG, JPEG, WebP and GIF decoded in Go.
//
// A Fetcher, made once by New and safe for concurrent use, loads one image
// URL at a time:
//
//	img, info, err := f.Load(ctx, part.ImageURL.URL)
//	if err != nil {
//		return media.APIError(err, media.Param(i, j)) // 400 naming messages[i].content[j].image_url
//	}
//
// Every refusal is an *Error whose Reason is the API error code
// (invalid_image, image_too_large, image_url_forbidden, invalid_image_url)
// and whose Message says what is wrong, with the limit and the value.
//
// Fetching is SSRF-safe: a URL's host is resolved by the Fetcher, every
// address it resolves to is checked (no loopback, private, unique-local,
// link-local and so cloud metadata, CGNAT, multicast, reserved or
// documentation ranges, nor IPv4-mapped or NAT64 forms of them) unless
// Options.AllowHosts or Options.AllowNets allow it, and the connection is
// made to that checked address itself, so a DNS answer that changes between
// check and connect (rebinding) cannot reach another one. Each redirect is
// a new connection and is checked the same way. No proxy from the
// environment is used. The limits: MaxBytes on the bytes (read no further),
// MaxPixels on width×height (read from the header before any pixel is
// decoded, which stops decompression bombs), MaxRedirects, and Timeout on
// the whole fetch.
//
// Decoding uses the standard library for PNG, JPEG and GIF (the first frame,
// placed on the GIF's logical screen) and golang.org/x/image/webp for WebP
// (lossy, lossless and with alpha; not animated). The format is sniffed from
// the bytes; a data: URL must declare an image type that agrees with them.
package media

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"image"
	"io"
	"mime"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"syscall"
	"time"
)

// Defaults for zero Options fields.
//
// MaxBytes is 20 MiB, OpenAI's documented limit per image: any photo a
// client sends to OpenAI fits, and a request's worth of them stays in
// memory comfortably (the body is held while it is decoded).
//
// MaxPixels is 50 megapixels: the largest common camera output, a 48 MP
// phone photo (8000x6000) or a 45 MP full-frame camera, fits, while a
// 100-megapixel decompression bomb (a few KiB of PNG whose header says
// 10000x10000) does not. Decoded, 50 MP is 200 MB as 8-bit RGBA (and up to
// about twice that for a 16-bit PNG or a progressive JPEG's coefficients),
// transient: the vision encoder resizes every image to a few megapixels
// at most, so nothing larger is useful, and a server that decodes several
// images at once should bound how many.
//
// MaxRedirects is 3: image hosts and CDNs redirect once or twice (http to
// https, a signed URL); more is a loop or an attempt to wander.
//
// Timeout is 10 s for the whole fetch (DNS, connect, TLS, headers, body):
// 20 MiB arrives in well under that on any link a server has, and a
// request's first token should not wait longer on one image.
const (
	DefaultMaxBytes     = 20 << 20
	DefaultMaxPixels    = 50_000_000
	DefaultMaxRedirects = 3
	DefaultTimeout      = 10 * time.Second
)

// Resolver looks up a host's addresses. *net.Resolver is one.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// Options configure a Fetcher. The zero value is the safe default: https://
// and data: only, public addresses only, the default limits.
type Options struct {
	// AllowHTTP allows http:// URLs (and redirects to them); https:// and
	// data: are always allowed.
	AllowHTTP bool
	// AllowHosts are host names fetched whatever they resolve to (loopback
	// or private included), matched exactly, case-insensitively.
	AllowHosts []string
	// AllowNets are addresses fetched even though they are loopback,
	// private, link-local, ... (e.g. 10.0.0.0/8 for an internal image
	// store, 127.0.0.1/32 for tests). See ParseAllowList.
	AllowNets []netip.Prefix

	// MaxBytes limits an image's encoded size (a data: URL's decoded bytes,
	// an HTTP body); 0 means DefaultMaxBytes, negative means no limit.
	MaxBytes int64
	// MaxPixels limits width×height; 0 means DefaultMaxPixels, negative
	// means no limit.
	MaxPixels int64
	// MaxRedirects limits the redirects followed; 0 means
	// DefaultMaxRedirects, negative means none is followed.
	MaxRedirects int
	// Timeout limits a whole fetch; 0 means DefaultTimeout, negative means
	// none (the caller's context still applies).
	Timeout time.Duration

	// Resolver resolves host names; nil means net.DefaultResolver. Tests
	// use it to make a name resolve to a chosen address.
	Resolver Resolver
	// Dial, when set, connects to an address that has passed the checks
	// (always an IP literal and port); nil means a net.Dialer that checks
	// the address again just before it connects.
	Dial func(ctx context.Context, network, address string) (net.Conn, error)
	// TLSConfig, when set, is the TLS client configuration (e.g. RootCAs
	// for a private CA, or a test server's certificate).
	TLSConfig *tls.Config
	// UserAgent is sent with requests; "" means "stepflash-media/1".
	UserAgent string
}

// Info describes a loaded image.
type Info struct {
	// Format is "png", "jpeg", "webp" or "gif", sniffed from the bytes.
	Format string
	// MediaType is the format's media type, "image/png" etc.
	MediaType string
	// Bytes is the size of the encoded image.
	Bytes int64
	// Width and Height are the image's dimensions in pixels.
	Width, Height int
	// SHA256 is the hash of the encoded bytes: two URLs with the same image
	// file (a data: URL and an https:// one) give the same hash.
	SHA256 [32]byte
}

// Hash is SHA256 in hex.
func (i Info) Hash() string { return hex.EncodeToString(i.SHA256[:]) }

// Fetcher loads images within its Options. Make one with New; it is safe for
// concurrent use and keeps idle connections for reuse.
type Fetcher struct {
	opts      Options
	allow     allowList
	resolver  Resolver
	transport *http.Transport
	client    *http.Client
}

// New makes a Fetcher. Zero fields of opts take their defaults.
func New(opts Options) *Fetcher {
	if opts.MaxBytes == 0 {
		opts.MaxBytes = DefaultMaxBytes
	}
	if opts.MaxPixels == 0 {
		opts.MaxPixels = DefaultMaxPixels
	}
	if opts.MaxRedirects == 0 {
		opts.MaxRedirects = DefaultMaxRedirects
	}
	if opts.Timeout == 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.UserAgent == "" {
		opts.UserAgent = "stepflash-media/1"
	}
	f := &Fetcher{opts: opts, allow: newAllowList(opts.AllowHosts, opts.AllowNets), resolver: opts.Resolver}
	if f.resolver == nil {
		f.resolver = net.DefaultResolver
	}
	var tlsConfig *tls.Config
	if opts.TLSConfig != nil {
		tlsConfig = opts.TLSConfig.Clone()
	}
	handshake := opts.Timeout
	if handshake < 0 {
		handshake = 0
	}
	f.transport = &http.Transport{
		Proxy:                  nil, // never a proxy from the environment
		DialContext:            f.dialContext,
		TLSClientConfig:        tlsConfig,
		TLSHandshakeTimeout:    handshake,
		ForceAttemptHTTP2:      true,
		MaxIdleConns:           32,
		MaxIdleConnsPerHost:    4,
		IdleConnTimeout:        30 * time.Second,
		MaxResponseHeaderBytes: 64 << 10,
		// Images are compressed already; a gzip body would only make the
		// byte limit count decoded bytes the server never sent.
		DisableCompression: true,
	}
	f.client = &http.Client{Transport: f.transport, CheckRedirect: f.checkRedirect}
	return f
}

// Options returns the options in effect, defaults filled in.
func (f *Fetcher) Options() Options { return f.opts }

// CloseIdleConnections closes the connections kept for reuse.
func (f *Fetcher) CloseIdleConnections() { f.transport.CloseIdleConnections() }

// Load fetches (https://, or http:// when allowed) or decodes (data:) the
// image at rawURL and decodes it within the limits. Any refusal is an
// *Error; when ctx ends first, Load returns ctx.Err() (wrapped or not) so
// that a caller can tell a gone client from a bad image. See APIError.
func (f *Fetcher) Load(ctx context.Context, rawURL string) (image.Image, Info, error) {
	if err := ctx.Err(); err != nil {
		return nil, Info{}, err
	}
	u := strings.TrimSpace(rawURL)
	if len(u) >= 5 && strings.EqualFold(u[:5], "data:") {
		data, declared, err := parseDataURL(u, f.opts.MaxBytes)
		if err != nil {
			return nil, Info{}, err
		}
		return decodeBytes(data, declared, f.opts.MaxPixels)
	}
	data, contentType, err := f.fetch(ctx, u)
	if err != nil {
		return nil, Info{}, err
	}
	if Sniff(data) == "" && len(data) > 0 {
		return nil, Info{}, notImage(contentType)
	}
	return decodeBytes(data, "", f.opts.MaxPixels)
}

// Decode decodes an image's bytes (a file's, say) within MaxBytes and
// MaxPixels, sniffing the format.
func (f *Fetcher) Decode(data []byte) (image.Image, Info, error) {
	if f.opts.MaxBytes > 0 && int64(len(data)) > f.opts.MaxBytes {
		return nil, Info{}, tooManyBytes(int64(len(data)), f.opts.MaxBytes)
	}
	return decodeBytes(data, "", f.opts.MaxPixels)
}

// notImage is the error for a response whose bytes are no image.
func notImage(contentType string) *Error {
	mt, _, err := mime.ParseMediaType(contentType)
	switch {
	case contentType == "":
		return newError(ReasonInvalidImage, nil, "the URL's content (no Content-Type) is not a %s image", supportedList)
	case err != nil:
		return newError(ReasonInvalidImage, nil, "the URL's content type %q is not an image type, and the content is not a %s image", clip(contentType, 64), supportedList)
	case formatOfType(mt) == "?":
		return newError(ReasonInvalidImage, nil, "the URL's content type is %s, which is not supported (supported: %s)", mt, supportedList)
	case formatOfType(mt) == "":
		return newError(ReasonInvalidImage, nil, "the URL's content type is %s, not an image type, and the content is not a %s image", mt, supportedList)
	}
	return newError(ReasonInvalidImage, nil, "the URL's content type is %s but the content is not a %s image", mt, supportedList)
}

// fetch GETs rawURL within the limits and returns the body and its
// Content-Type.
func (f *Fetcher) fetch(parent context.Context, rawURL string) ([]byte, string, error) {
	if rawURL == "" {
		return nil, "", newError(ReasonInvalidImageURL, nil, "the image URL is empty")
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, "", newError(ReasonInvalidImageURL, err, "the image URL cannot be parsed: %v", errors.Unwrap(err))
	}
	if err := f.checkScheme(u, false); err != nil {
		return nil, "", err
	}
	if u.Hostname() == "" {
		return nil, "", newError(ReasonInvalidImageURL, nil, "the image URL %q has no host", clip(rawURL, 100))
	}
	ctx, cancel := parent, context.CancelFunc(func() {})
	if f.opts.Timeout > 0 {
		ctx, cancel = context.WithTimeout(parent, f.opts.Timeout)
	}
	defer cancel()
	fail := func(err error) ([]byte, string, error) {
		if perr := parent.Err(); perr != nil {
			return nil, "", perr
		}
		var me *Error
		if errors.As(err, &me) {
			return nil, "", me
		}
		if ctx.Err() != nil {
			return nil, "", newError(ReasonInvalidImageURL, err, "fetching the image from %s took longer than the limit of %v", u.Host, f.opts.Timeout)
		}
		return nil, "", newError(ReasonInvalidImageURL, err, "the image could not be fetched from %s: %v", u.Host, netReason(err))
	}

	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, "", newError(ReasonInvalidImageURL, err, "the image URL is not valid: %v", err)
	}
	req.Header.Set("User-Agent", f.opts.UserAgent)
	req.Header.Set("Accept", "image/png,image/jpeg,image/webp,image/gif;q=0.9,*/*;q=0.1")
	resp, err := f.client.Do(req)
	if err != nil {
		return fail(err)
	}
	defer resp.Body.Close()
	host := resp.Request.URL.Host
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return nil, "", newError(ReasonInvalidImageURL, nil, "fetching the image from %s failed: the server answered HTTP %s", host, resp.Status)
	}
	contentType := resp.Header.Get("Content-Type")
	if max := f.opts.MaxBytes; max > 0 && resp.ContentLength > max {
		return nil, "", tooManyBytes(resp.ContentLength, max)
	}

	br := bufio.NewReaderSize(resp.Body, 512)
	// A response that is neither declared nor sniffed as an image is refused
	// before its body is read.
	if mt, _, _ := mime.ParseMediaType(contentType); formatOfType(mt) == "" || formatOfType(mt) == "?" {
		head, err := br.Peek(16)
		switch {
		case len(head) == 0 && err != nil && !errors.Is(err, io.EOF):
			return fail(err)
		case len(head) == 0:
			return nil, "", newError(ReasonInvalidImage, nil, "the URL's content is empty (0 bytes)")
		case Sniff(head) == "":
			return nil, "", notImage(contentType)
		}
	}

	var r io.Reader = br
	if f.opts.MaxBytes > 0 {
		r = io.LimitReader(br, f.opts.MaxBytes+1)
	}
	size := 0
	if resp.ContentLength > 0 {
		size = int(resp.ContentLength)
	}
	buf := make([]byte, 0, size+1)
	data, err := readAll(r, buf)
	if err != nil {
		return fail(err)
	}
	if max := f.opts.MaxBytes; max > 0 && int64(len(data)) > max {
		return nil, "", newError(ReasonImageTooLarge, nil, "the image at %s is larger than the limit of %s", host, sizeString(max))
	}
	return data, contentType, nil
}

// readAll is io.ReadAll into buf.
func readAll(r io.Reader, buf []byte) ([]byte, error) {
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err != nil {
			if err == io.EOF {
				err = nil
			}
			return buf, err
		}
	}
}

// netReason is a network error in words, without the URL http.Client adds.
func netReason(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) && dnsErr.IsNotFound {
		return fmt.Sprintf("no such host %q", dnsErr.Name)
	}
	return err.Error()
}

// checkScheme refuses a scheme other than https (or http with AllowHTTP).
func (f *Fetcher) checkScheme(u *url.URL, redirect bool) error {
	where := "the image URL"
	if redirect {
		where = "the image URL redirects to a URL that"
	}
	switch strings.ToLower(u.Scheme) {
	case "https":
		return nil
	case "http":
		if f.opts.AllowHTTP {
			return nil
		}
		return newError(ReasonImageURLForbidden, nil, "%s uses http://, which this server does not fetch; use https:// or a data: URL", where)
	case "":
		return newError(ReasonInvalidImageURL, nil, "%s has no scheme; use https:// or a data: URL", where)
	}
	return newError(ReasonImageURLForbidden, nil, "%s uses the scheme %s:, which this server does not fetch; use https:// or a data: URL", where, clip(u.Scheme, 20))
}

func (f *Fetcher) checkRedirect(req *http.Request, via []*http.Request) error {
	if f.opts.MaxRedirects < 0 {
		return newError(ReasonInvalidImageURL, nil, "fetching the image was redirected to %s; this server follows no redirects", req.URL.Host)
	}
	if len(via) > f.opts.MaxRedirects {
		return newError(ReasonInvalidImageURL, nil, "fetching the image was redirected more than the limit of %d times", f.opts.MaxRedirects)
	}
	return f.checkScheme(req.URL, true)
}

// dialContext resolves the host, refuses it unless every address it
// resolves to may be fetched, and connects to a checked address itself, so
// that no second lookup can give another.
func (f *Fetcher) dialContext(ctx context.Context, network, address string) (net.Conn, error) {
	host, port, err := net.SplitHostPort(address)
	if err != nil {
		return nil, err
	}
	portNum, err := net.LookupPort(network, port)
	if err != nil {
		return nil, err
	}
	hostAllowed := f.allow.host(host)
	var addrs []netip.Addr
	literal := false
	if a, err := netip.ParseAddr(host); err == nil {
		addrs, literal = []netip.Addr{a}, true
	} else {
		ipNet := "ip"
		switch network {
		case "tcp4":
			ipNet = "ip4"
		case "tcp6":
			ipNet = "ip6"
		}
		addrs, err = f.resolver.LookupNetIP(ctx, ipNet, host)
		if err != nil {
			return nil, err
		}
		if len(addrs) == 0 {
			return nil, &net.DNSError{Err: "no addresses", Name: host, IsNotFound: true}
		}
	}
	for _, a := range addrs {
		if why := f.forbidden(a, hostAllowed); why != "" {
			if literal {
				return nil, newError(ReasonImageURLForbidden, nil, "the image URL's address %s is %s, which this server does not fetch images from", a, why)
			}
			return nil, newError(ReasonImageURLForbidden, nil, "the image URL's host %q resolves to %s, which this server does not fetch images from", host, why)
		}
	}
	var firstErr error
	for _, a := range addrs {
		target := netip.AddrPortFrom(a.Unmap(), uint16(portNum)).String()
		var c net.Conn
		if f.opts.Dial != nil {
			c, err = f.opts.Dial(ctx, network, target)
		} else {
			d := net.Dialer{Control: func(_, address string, _ syscall.RawConn) error {
				// The address about to be connected, checked once more.
				ap, err := netip.ParseAddrPort(address)
				if err != nil {
					return err
				}
				if why := f.forbidden(ap.Addr(), hostAllowed); why != "" {
					return newError(ReasonImageURLForbidden, nil, "the image URL's host %q leads to %s, which this server does not fetch images from", host, why)
				}
				return nil
			}}
			c, err = d.DialContext(ctx, network, target)
		}
		if err == nil {
			return c, nil
		}
		if firstErr == nil {
			firstErr = err
		}
		if ctx.Err() != nil {
			break
		}
	}
	return nil, firstErr
}

// forbidden says why a may not be fetched, or "" when it may.
func (f *Fetcher) forbidden(a netip.Addr, hostAllowed bool) string {
	if hostAllowed || f.allow.addr(a) {
		return ""
	}
	return classify(a)
}
