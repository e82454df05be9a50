package media

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/gif"
	"image/jpeg"
	"image/png"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"runtime"
	"strings"
	"testing"
	"time"
)

var loopbackNets = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}

// imageServer serves body with contentType at every path.
func imageServer(contentType string, body []byte) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", contentType)
		w.Write(body)
	})
}

// TestDataURLAndHTTPSAgree: the shared image as a data: URL and from an
// explicitly allowed loopback HTTPS server (by address and by a host name)
// decodes to the same pixels, info and hash.
func TestDataURLAndHTTPSAgree(t *testing.T) {
	pngBytes := quadrantsPNG(t)
	srv := httptest.NewTLSServer(imageServer("image/png", pngBytes))
	defer srv.Close()
	port := srv.Listener.Addr().(*net.TCPAddr).Port

	fromData, dataInfo, err := newTestFetcher(t, Options{}).Load(context.Background(), dataURL("image/png", pngBytes))
	if err != nil {
		t.Fatal(err)
	}
	want := Info{Format: "png", MediaType: "image/png", Bytes: int64(len(pngBytes)), Width: 64, Height: 64, SHA256: sha256.Sum256(pngBytes)}
	if dataInfo != want {
		t.Fatalf("data: info = %+v, want %+v", dataInfo, want)
	}

	tlsConfig := &tls.Config{RootCAs: tlsTrust(srv)}
	for _, tc := range []struct {
		name string
		url  string
		opts Options
	}{
		{"allowed address", srv.URL + "/quadrants.png", Options{AllowNets: loopbackNets, TLSConfig: tlsConfig}},
		{"allowed host name", fmt.Sprintf("https://example.com:%d/quadrants.png", port),
			Options{AllowHosts: []string{"Example.COM"}, Resolver: stubResolver{"example.com": {"127.0.0.1"}}, TLSConfig: tlsConfig}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			img, info, err := newTestFetcher(t, tc.opts).Load(context.Background(), tc.url)
			if err != nil {
				t.Fatal(err)
			}
			if info != dataInfo {
				t.Errorf("https info = %+v, data: info = %+v", info, dataInfo)
			}
			if info.Hash() != fmt.Sprintf("%x", want.SHA256) {
				t.Errorf("Hash() = %s", info.Hash())
			}
			samePixels(t, img, fromData)
		})
	}
	// The quadrants really are four colours: a decoder that returned a blank
	// image both times would pass the comparison.
	if c1, c2 := fromData.At(5, 5), fromData.At(60, 60); color.NRGBAModel.Convert(c1) == color.NRGBAModel.Convert(c2) {
		t.Errorf("top-left and bottom-right quadrants have the same colour %v", c1)
	}
}

// TestForbiddenURLs: the default options refuse every non-public address,
// given literally or by a name that resolves to it, and schemes other than
// https (and http when allowed), before anything is dialed.
func TestForbiddenURLs(t *testing.T) {
	resolver := stubResolver{
		"localhost":        {"127.0.0.1", "::1"},
		"internal.example": {"10.1.2.3"},
		"metadata.example": {"169.254.169.254"},
		"mixed.example":    {"93.184.215.14", "192.168.0.10"},
		"v6.example":       {"fd00:ec2::254"},
		"mapped.example":   {"::ffff:127.0.0.1"},
	}
	for _, tc := range []struct {
		url    string
		reason string
		what   string
	}{
		{"https://127.0.0.1/a.png", ReasonImageURLForbidden, "loopback"},
		{"https://127.1.2.3:8443/a.png", ReasonImageURLForbidden, "loopback"},
		{"https://[::1]/a.png", ReasonImageURLForbidden, "loopback"},
		{"https://10.0.0.1/a.png", ReasonImageURLForbidden, "private"},
		{"https://172.16.5.4/a.png", ReasonImageURLForbidden, "private"},
		{"https://192.168.1.1/a.png", ReasonImageURLForbidden, "private"},
		{"https://169.254.169.254/latest/meta-data/", ReasonImageURLForbidden, "link-local"},
		{"https://[fe80::1]/a.png", ReasonImageURLForbidden, "link-local"},
		{"https://[fd00:ec2::254]/a.png", ReasonImageURLForbidden, "unique local"},
		{"https://100.64.0.1/a.png", ReasonImageURLForbidden, "carrier-grade NAT"},
		{"https://0.0.0.0/a.png", ReasonImageURLForbidden, "unspecified"},
		{"https://[::]/a.png", ReasonImageURLForbidden, "unspecified"},
		{"https://224.0.0.1/a.png", ReasonImageURLForbidden, "multicast"},
		{"https://[ff02::1]/a.png", ReasonImageURLForbidden, "multicast"},
		{"https://255.255.255.255/a.png", ReasonImageURLForbidden, "broadcast"},
		{"https://[::ffff:127.0.0.1]/a.png", ReasonImageURLForbidden, "loopback"},
		{"https://[::ffff:169.254.169.254]/a.png", ReasonImageURLForbidden, "link-local"},
		{"https://[64:ff9b::a9fe:a9fe]/a.png", ReasonImageURLForbidden, "link-local"},
		{"https://[2002:7f00:1::]/a.png", ReasonImageURLForbidden, "loopback"},
		{"https://localhost/a.png", ReasonImageURLForbidden, `"localhost" resolves to a loopback`},
		{"https://internal.example/a.png", ReasonImageURLForbidden, `"internal.example" resolves to a private`},
		{"https://metadata.example/a.png", ReasonImageURLForbidden, "link-local"},
		{"https://mixed.example/a.png", ReasonImageURLForbidden, "private"},
		{"https://v6.example/a.png", ReasonImageURLForbidden, "unique local"},
		{"https://mapped.example/a.png", ReasonImageURLForbidden, "loopback"},
		{"http://93.184.215.14/a.png", ReasonImageURLForbidden, "uses http://"},
		{"file:///etc/passwd", ReasonImageURLForbidden, "uses the scheme file:"},
		{"gopher://example.com/", ReasonImageURLForbidden, "gopher:"},
		{"ftp://example.com/a.png", ReasonImageURLForbidden, "ftp:"},
		{"", ReasonInvalidImageURL, "empty"},
		{"/relative/a.png", ReasonInvalidImageURL, "has no scheme"},
		{"https:///a.png", ReasonInvalidImageURL, "no host"},
		{"https://exa mple.com/a.png", ReasonInvalidImageURL, "cannot be parsed"},
		{"https://nonexistent.example/a.png", ReasonInvalidImageURL, `no such host "nonexistent.example"`},
	} {
		t.Run(tc.url, func(t *testing.T) {
			var d dialRecorder
			f := newTestFetcher(t, Options{Resolver: resolver, Dial: d.Dial})
			_, _, err := f.Load(context.Background(), tc.url)
			wantError(t, err, tc.reason, tc.what)
			if got := d.dialed(); len(got) > 0 {
				t.Errorf("dialed %v", got)
			}
		})
	}
}

// TestAllowList: an allow-listed network or host name opens exactly what it
// names.
func TestAllowList(t *testing.T) {
	srv := httptest.NewServer(imageServer("image/png", quadrantsPNG(t)))
	defer srv.Close()
	port := srv.Listener.Addr().(*net.TCPAddr).Port
	resolver := stubResolver{"img.internal": {"127.0.0.1"}, "other.internal": {"127.0.0.1"}}
	for _, tc := range []struct {
		name  string
		url   string
		allow []string
		ok    bool
	}{
		{"address in allowed network", srv.URL, []string{"127.0.0.0/8"}, true},
		{"single allowed address", srv.URL, []string{"127.0.0.1"}, true},
		{"other network", srv.URL, []string{"10.0.0.0/8"}, false},
		{"name in allowed network", fmt.Sprintf("http://img.internal:%d/", port), []string{"127.0.0.0/8"}, true},
		{"allowed name", fmt.Sprintf("http://img.internal:%d/", port), []string{"img.internal."}, true},
		{"other name", fmt.Sprintf("http://other.internal:%d/", port), []string{"img.internal"}, false},
		{"allowed name does not open its address", srv.URL, []string{"img.internal"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hosts, nets, err := ParseAllowList(tc.allow)
			if err != nil {
				t.Fatal(err)
			}
			f := newTestFetcher(t, Options{AllowHTTP: true, AllowHosts: hosts, AllowNets: nets, Resolver: resolver})
			_, info, err := f.Load(context.Background(), tc.url)
			if tc.ok {
				if err != nil || info.Width != 64 {
					t.Fatalf("Load = %+v, %v", info, err)
				}
				return
			}
			wantError(t, err, ReasonImageURLForbidden, "loopback")
		})
	}
	if _, _, err := ParseAllowList([]string{"10.0.0.0/33"}); err == nil {
		t.Error("ParseAllowList accepted 10.0.0.0/33")
	}
	if _, _, err := ParseAllowList([]string{"http://x"}); err == nil {
		t.Error("ParseAllowList accepted a URL")
	}
}

func TestClassify(t *testing.T) {
	for _, a := range []string{"8.8.8.8", "1.1.1.1", "93.184.215.14", "2606:4700:4700::1111", "2a00:1450:4001:80b::200e", "::ffff:8.8.8.8", "64:ff9b::808:808"} {
		if why := classify(netip.MustParseAddr(a)); why != "" {
			t.Errorf("classify(%s) = %q, want public", a, why)
		}
	}
	for _, a := range []string{"127.0.0.1", "10.255.255.255", "172.31.0.1", "192.168.255.255", "169.254.0.1", "100.127.255.254",
		"0.1.2.3", "198.18.0.1", "192.0.2.1", "240.0.0.1", "::", "::1", "fe80::1%eth0", "fc00::1", "fdff::1", "ff05::1",
		"::ffff:10.0.0.1", "::10.0.0.1", "2001:db8::1", "2001::1", "64:ff9b::7f00:1", "64:ff9b:1::1", "2002:a00:1::1", "fec0::1"} {
		if why := classify(netip.MustParseAddr(a)); why == "" {
			t.Errorf("classify(%s) = public, want refused", a)
		}
	}
}

// TestRedirects: every redirect is checked like the first URL, and their
// number is limited.
func TestRedirects(t *testing.T) {
	pngBytes := quadrantsPNG(t)
	var srvURL string
	mux := http.NewServeMux()
	mux.Handle("/img.png", imageServer("image/png", pngBytes))
	mux.HandleFunc("/to/", func(w http.ResponseWriter, r *http.Request) {
		target, _ := url.PathUnescape(strings.TrimPrefix(r.URL.EscapedPath(), "/to/"))
		http.Redirect(w, r, target, http.StatusFound)
	})
	mux.HandleFunc("/hops/", func(w http.ResponseWriter, r *http.Request) {
		var n int
		fmt.Sscanf(strings.TrimPrefix(r.URL.Path, "/hops/"), "%d", &n)
		if n == 0 {
			http.Redirect(w, r, "/img.png", http.StatusMovedPermanently)
			return
		}
		http.Redirect(w, r, fmt.Sprintf("/hops/%d", n-1), http.StatusTemporaryRedirect)
	})
	mux.HandleFunc("/loop", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/loop", http.StatusFound) })
	srv := httptest.NewServer(mux)
	defer srv.Close()
	srvURL = srv.URL
	port := srv.Listener.Addr().(*net.TCPAddr).Port
	allowed := fmt.Sprintf("http://allowed.example:%d", port)
	resolver := stubResolver{
		"allowed.example":  {"127.0.0.1"},
		"localhost":        {"127.0.0.1"},
		"internal.example": {"10.0.0.5"},
	}
	to := func(target string) string { return allowed + "/to/" + url.PathEscape(target) }

	for _, tc := range []struct {
		name   string
		url    string
		reason string
		what   string
	}{
		{"to loopback address", to(srvURL + "/img.png"), ReasonImageURLForbidden, "127.0.0.1 is a loopback"},
		{"to localhost", to(fmt.Sprintf("http://localhost:%d/img.png", port)), ReasonImageURLForbidden, `"localhost" resolves to a loopback`},
		{"to metadata", to("http://169.254.169.254/latest/meta-data/"), ReasonImageURLForbidden, "link-local"},
		{"to a name resolving to a private address", to("http://internal.example/img.png"), ReasonImageURLForbidden, "private"},
		{"to file:", to("file:///etc/passwd"), ReasonImageURLForbidden, "redirects to a URL that uses the scheme file:"},
		{"three redirects", allowed + "/hops/2", "", ""},
		{"four redirects", allowed + "/hops/3", ReasonInvalidImageURL, "redirected more than the limit of 3 times"},
		{"loop", allowed + "/loop", ReasonInvalidImageURL, "redirected more than the limit of 3 times"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var d dialRecorder
			f := newTestFetcher(t, Options{AllowHTTP: true, AllowHosts: []string{"allowed.example"}, Resolver: resolver, Dial: d.Dial})
			_, info, err := f.Load(context.Background(), tc.url)
			if tc.reason == "" {
				if err != nil || info.Width != 64 {
					t.Fatalf("Load = %+v, %v", info, err)
				}
				return
			}
			wantError(t, err, tc.reason, tc.what)
			for _, a := range d.dialed() {
				if a != fmt.Sprintf("127.0.0.1:%d", port) {
					t.Errorf("dialed %s", a)
				}
			}
		})
	}

	t.Run("https to http", func(t *testing.T) {
		tsrv := httptest.NewTLSServer(http.RedirectHandler("http://93.184.215.14/img.png", http.StatusFound))
		defer tsrv.Close()
		f := newTestFetcher(t, Options{AllowNets: loopbackNets, TLSConfig: &tls.Config{RootCAs: tlsTrust(tsrv)}})
		_, _, err := f.Load(context.Background(), tsrv.URL)
		wantError(t, err, ReasonImageURLForbidden, "redirects to a URL that uses http://")
	})
	t.Run("no redirects", func(t *testing.T) {
		f := newTestFetcher(t, Options{AllowHTTP: true, AllowNets: loopbackNets, MaxRedirects: -1})
		_, _, err := f.Load(context.Background(), srvURL+"/hops/0")
		wantError(t, err, ReasonInvalidImageURL, "follows no redirects")
	})
}

// TestRebinding: the address checked is the address connected to. A
// resolver that answers a public address first and loopback afterwards
// (DNS rebinding) is asked once per connection, and the loopback answer is
// refused.
func TestRebinding(t *testing.T) {
	srv := httptest.NewServer(imageServer("image/png", quadrantsPNG(t)))
	defer srv.Close()
	port := srv.Listener.Addr().(*net.TCPAddr).Port
	var d dialRecorder
	r := &flipResolver{first: netip.MustParseAddr("192.0.2.1"), then: netip.MustParseAddr("127.0.0.1")}
	// 192.0.2.1 is TEST-NET-1, itself refused; allow it so the first check
	// passes, as a public address would.
	f := newTestFetcher(t, Options{AllowHTTP: true, AllowNets: []netip.Prefix{netip.MustParsePrefix("192.0.2.1/32")},
		Resolver: r, Dial: func(ctx context.Context, network, address string) (net.Conn, error) {
			if address == "192.0.2.1:"+fmt.Sprint(port) {
				return nil, errors.New("unreachable")
			}
			return d.Dial(ctx, network, address)
		}})
	u := fmt.Sprintf("http://rebind.example:%d/img.png", port)
	_, _, err := f.Load(context.Background(), u)
	wantError(t, err, ReasonInvalidImageURL, "unreachable")
	_, _, err = f.Load(context.Background(), u)
	wantError(t, err, ReasonImageURLForbidden, "loopback")
	if got := d.dialed(); len(got) > 0 {
		t.Errorf("dialed %v", got)
	}
}

type flipResolver struct {
	n           int
	first, then netip.Addr
}

func (r *flipResolver) LookupNetIP(context.Context, string, string) ([]netip.Addr, error) {
	r.n++
	if r.n == 1 {
		return []netip.Addr{r.first}, nil
	}
	return []netip.Addr{r.then}, nil
}

// TestPNGBomb: a PNG of about a kilobyte whose header says 10000x10000 is
// refused from its header, without allocating its pixels, by the default
// limit, whether it comes as a data: URL or over HTTPS.
func TestPNGBomb(t *testing.T) {
	bomb := pngBomb(10000, 10000)
	if len(bomb) > 4<<10 {
		t.Fatalf("bomb is %d bytes", len(bomb))
	}
	f := newTestFetcher(t, Options{})
	u := dataURL("image/png", bomb)
	load := func() error { _, _, err := f.Load(context.Background(), u); return err }
	wantError(t, load(), ReasonImageTooLarge, "10000x10000 = 100,000,000 pixels", "limit of 50,000,000 pixels")

	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for range 10 {
		load()
	}
	runtime.ReadMemStats(&after)
	if perLoad := (after.TotalAlloc - before.TotalAlloc) / 10; perLoad > 256<<10 {
		t.Errorf("refusing the bomb allocated %d bytes per Load", perLoad)
	}

	srv := httptest.NewTLSServer(imageServer("image/png", bomb))
	defer srv.Close()
	hf := newTestFetcher(t, Options{AllowNets: loopbackNets, TLSConfig: &tls.Config{RootCAs: tlsTrust(srv)}})
	_, _, err := hf.Load(context.Background(), srv.URL+"/bomb.png")
	wantError(t, err, ReasonImageTooLarge, "100,000,000 pixels")

	// The same check lets an image at the limit through.
	small := newTestFetcher(t, Options{MaxPixels: 64 * 64})
	if _, _, err := small.Load(context.Background(), dataURL("image/png", quadrantsPNG(t))); err != nil {
		t.Errorf("64x64 at a limit of 4096 pixels: %v", err)
	}
	smaller := newTestFetcher(t, Options{MaxPixels: 64*64 - 1})
	_, _, err = smaller.Load(context.Background(), dataURL("image/png", quadrantsPNG(t)))
	wantError(t, err, ReasonImageTooLarge, "64x64 = 4,096 pixels, over the limit of 4,095")
}

// TestBadImages: corrupt, truncated and mislabelled images, as data: URLs
// and over HTTP, each an invalid_image saying why.
func TestBadImages(t *testing.T) {
	pngBytes := quadrantsPNG(t)
	src, err := png.Decode(bytes.NewReader(pngBytes))
	if err != nil {
		t.Fatal(err)
	}
	var jpg bytes.Buffer
	if err := jpeg.Encode(&jpg, src, &jpeg.Options{Quality: 90}); err != nil {
		t.Fatal(err)
	}
	truncatedJPEG := jpg.Bytes()[:jpg.Len()/2]
	corruptPNG := append([]byte(nil), pngBytes...)
	corruptPNG[len(corruptPNG)-20] ^= 0xff // inside the IDAT: a checksum mismatch
	html := []byte("<!doctype html><html><body>Not an image</body></html>")

	for _, tc := range []struct {
		name   string
		url    string
		reason string
		what   []string
	}{
		{"truncated JPEG", dataURL("image/jpeg", truncatedJPEG), ReasonInvalidImage, []string{"JPEG data is truncated", "unexpected EOF"}},
		{"corrupt PNG", dataURL("image/png", corruptPNG), ReasonInvalidImage, []string{"PNG data is corrupt", "png:"}},
		{"PNG signature only", dataURL("image/png", pngBytes[:8]), ReasonInvalidImage, []string{"PNG data is truncated"}},
		{"declared JPEG, is PNG", dataURL("image/jpeg", pngBytes), ReasonInvalidImage, []string{"declared as image/jpeg but is a PNG image (image/png)"}},
		{"declared PNG, is HTML", dataURL("image/png", html), ReasonInvalidImage, []string{"declared as image/png but is not a PNG, JPEG, WebP or GIF image"}},
		{"text/html", dataURL("text/html", html), ReasonInvalidImage, []string{"text/html, which is not an image type"}},
		{"text/plain default", "data:,hello", ReasonInvalidImage, []string{"declares no media type"}},
		{"svg", dataURL("image/svg+xml", []byte("<svg/>")), ReasonInvalidImage, []string{"image/svg+xml, which is not supported"}},
		{"bad base64", "data:image/png;base64,iVBOR!!!", ReasonInvalidImage, []string{"base64 data is malformed"}},
		{"no comma", "data:image/png;base64", ReasonInvalidImage, []string{"no comma"}},
		{"empty", "data:image/png;base64,", ReasonInvalidImage, []string{"empty (0 bytes)"}},
		{"bad percent", "data:image/png,%zz", ReasonInvalidImage, []string{"percent-encoded data is malformed"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := newTestFetcher(t, Options{}).Load(context.Background(), tc.url)
			wantError(t, err, tc.reason, tc.what...)
		})
	}

	mux := http.NewServeMux()
	mux.Handle("/truncated.jpg", imageServer("image/jpeg", truncatedJPEG))
	mux.Handle("/page.html", imageServer("text/html; charset=utf-8", html))
	mux.Handle("/mislabelled.png", imageServer("text/plain", pngBytes))
	mux.Handle("/octets", imageServer("application/octet-stream", pngBytes))
	mux.Handle("/nothing", imageServer("image/png", nil))
	mux.Handle("/fake.png", imageServer("image/png", html))
	mux.Handle("/svg", imageServer("image/svg+xml", []byte("<svg/>")))
	mux.Handle("/gone", http.NotFoundHandler())
	srv := httptest.NewServer(mux)
	defer srv.Close()
	f := newTestFetcher(t, Options{AllowHTTP: true, AllowNets: loopbackNets})
	for _, tc := range []struct {
		path   string
		reason string
		what   []string
	}{
		{"/truncated.jpg", ReasonInvalidImage, []string{"JPEG data is truncated"}},
		{"/page.html", ReasonInvalidImage, []string{"content type is text/html, not an image type"}},
		{"/fake.png", ReasonInvalidImage, []string{"content type is image/png but the content is not a PNG, JPEG, WebP or GIF image"}},
		{"/svg", ReasonInvalidImage, []string{"image/svg+xml, which is not supported"}},
		{"/nothing", ReasonInvalidImage, []string{"empty (0 bytes)"}},
		{"/gone", ReasonInvalidImageURL, []string{"HTTP 404 Not Found"}},
		{"/mislabelled.png", "", nil}, // a wrong label on real image bytes is forgiven
		{"/octets", "", nil},
	} {
		t.Run("http"+tc.path, func(t *testing.T) {
			_, info, err := f.Load(context.Background(), srv.URL+tc.path)
			if tc.reason == "" {
				if err != nil || info.Format != "png" {
					t.Fatalf("Load = %+v, %v", info, err)
				}
				return
			}
			wantError(t, err, tc.reason, tc.what...)
		})
	}
}

// TestByteLimit: a body beyond MaxBytes is cut off where the limit is
// reached, whether it says its length or streams without end.
func TestByteLimit(t *testing.T) {
	const limit = 1 << 20
	endless := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "image/png")
		w.Write([]byte("\x89PNG\r\n\x1a\n"))
		chunk := make([]byte, 32<<10)
		for sent := 0; sent < 64*limit; sent += len(chunk) { // stops only if the client does not
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	})
	declared := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "image/png")
		w.Header().Set("Content-Length", fmt.Sprint(100<<20))
		w.Write([]byte("\x89PNG\r\n\x1a\n"))
	})
	mux := http.NewServeMux()
	mux.Handle("/endless", endless)
	mux.Handle("/declared", declared)
	srv := httptest.NewServer(mux)
	defer srv.Close()
	f := newTestFetcher(t, Options{AllowHTTP: true, AllowNets: loopbackNets, MaxBytes: limit})

	start := time.Now()
	_, _, err := f.Load(context.Background(), srv.URL+"/endless")
	wantError(t, err, ReasonImageTooLarge, "larger than the limit of 1 MiB")
	_, _, err = f.Load(context.Background(), srv.URL+"/declared")
	wantError(t, err, ReasonImageTooLarge, "100 MiB, over the limit of 1 MiB")
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("refusing took %v", d)
	}

	big := make([]byte, limit+1)
	copy(big, "\x89PNG\r\n\x1a\n")
	_, _, err = f.Load(context.Background(), dataURL("image/png", big))
	wantError(t, err, ReasonImageTooLarge, "over the limit of 1 MiB")
	_, _, err = f.Load(context.Background(), "data:image/png,"+strings.Repeat("%00", limit+1))
	wantError(t, err, ReasonImageTooLarge, "over the limit of 1 MiB")
	_, _, err = f.Decode(big)
	wantError(t, err, ReasonImageTooLarge, "over the limit of 1 MiB")
}

// TestTimeout: a server that is slow to answer, or to send the body, runs
// into Timeout; the caller's own cancellation is returned as itself.
func TestTimeout(t *testing.T) {
	pngBytes := quadrantsPNG(t)
	done := make(chan struct{})
	mux := http.NewServeMux()
	mux.HandleFunc("/slow-headers", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-done:
		}
	})
	mux.HandleFunc("/slow-body", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "image/png")
		for _, b := range pngBytes {
			w.Write([]byte{b})
			w.(http.Flusher).Flush()
			select {
			case <-r.Context().Done():
				return
			case <-done:
				return
			case <-time.After(10 * time.Millisecond):
			}
		}
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	defer close(done)

	const timeout = 300 * time.Millisecond
	f := newTestFetcher(t, Options{AllowHTTP: true, AllowNets: loopbackNets, Timeout: timeout})
	for _, path := range []string{"/slow-headers", "/slow-body"} {
		t.Run(path, func(t *testing.T) {
			start := time.Now()
			_, _, err := f.Load(context.Background(), srv.URL+path)
			wantError(t, err, ReasonInvalidImageURL, "took longer than the limit of 300ms")
			if d := time.Since(start); d > 10*timeout {
				t.Errorf("gave up after %v", d)
			}
		})
	}
	t.Run("caller cancels", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		_, _, err := f.Load(ctx, srv.URL+"/slow-headers")
		var me *Error
		if !errors.Is(err, context.DeadlineExceeded) || errors.As(err, &me) {
			t.Fatalf("error = %v (%T), want the caller's context.DeadlineExceeded", err, err)
		}
		if ae := APIError(err, Param(0, 0)); ae == nil || ae.Status != 400 || ae.CodeString() != ReasonInvalidImageURL {
			t.Errorf("APIError = %+v", ae)
		}
	})
}

// TestFormats: every format decodes, from data: URLs in their variants.
func TestFormats(t *testing.T) {
	pngBytes := quadrantsPNG(t)
	src, _ := png.Decode(bytes.NewReader(pngBytes))

	// A GIF of the quadrants with an exact palette, a second frame that is
	// not returned, and a GIF whose first frame covers part of the screen.
	pal := color.Palette{color.NRGBA{0, 0, 0, 0}}
	idx := map[color.NRGBA]uint8{}
	pm := image.NewPaletted(src.Bounds(), nil)
	for y := 0; y < 64; y++ {
		for x := 0; x < 64; x++ {
			c := color.NRGBAModel.Convert(src.At(x, y)).(color.NRGBA)
			i, ok := idx[c]
			if !ok {
				i = uint8(len(pal))
				idx[c] = i
				pal = append(pal, c)
			}
			pm.SetColorIndex(x, y, i)
		}
	}
	pm.Palette = pal
	second := image.NewPaletted(src.Bounds(), pal)
	var animated bytes.Buffer
	if err := gif.EncodeAll(&animated, &gif.GIF{Image: []*image.Paletted{pm, second}, Delay: []int{10, 10}}); err != nil {
		t.Fatal(err)
	}
	part := image.NewPaletted(image.Rect(16, 16, 32, 32), pal)
	for i := range part.Pix {
		part.Pix[i] = 1
	}
	var partial bytes.Buffer
	if err := gif.EncodeAll(&partial, &gif.GIF{Image: []*image.Paletted{part}, Delay: []int{0},
		Config: image.Config{ColorModel: pal, Width: 64, Height: 48}}); err != nil {
		t.Fatal(err)
	}
	var jpg bytes.Buffer
	jpeg.Encode(&jpg, src, &jpeg.Options{Quality: 95})

	webpLossless := readTestdata(t, "gopher-doc.8bpp.lossless.webp")
	gopherPNG, err := png.Decode(bytes.NewReader(readTestdata(t, "gopher-doc.8bpp.png")))
	if err != nil {
		t.Fatal(err)
	}
	b64 := base64.StdEncoding.EncodeToString(pngBytes)

	f := newTestFetcher(t, Options{})
	for _, tc := range []struct {
		name   string
		url    string
		format string
		check  func(t *testing.T, img image.Image)
	}{
		{"png", dataURL("image/png", pngBytes), "png", func(t *testing.T, img image.Image) { samePixels(t, img, src) }},
		{"png unpadded base64", "data:image/png;base64," + strings.TrimRight(b64, "="), "png", nil},
		{"png url-safe base64", "data:image/png;base64," + base64.URLEncoding.EncodeToString(pngBytes), "png", nil},
		{"png wrapped base64", "data:image/png;base64," + b64[:40] + "\r\n" + b64[40:80] + "\n " + b64[80:], "png", nil},
		{"png with parameters, upper case", "DATA:Image/PNG;name=q.png;BASE64," + b64, "png", nil},
		{"png percent-encoded", "data:image/png," + url.PathEscape(string(pngBytes)), "png", func(t *testing.T, img image.Image) { samePixels(t, img, src) }},
		{"jpeg", dataURL("image/jpeg", jpg.Bytes()), "jpeg", nil},
		{"jpg alias", dataURL("image/jpg", jpg.Bytes()), "jpeg", nil},
		{"gif first frame", dataURL("image/gif", animated.Bytes()), "gif", func(t *testing.T, img image.Image) { samePixels(t, img, src) }},
		{"gif partial first frame", dataURL("image/gif", partial.Bytes()), "gif", func(t *testing.T, img image.Image) {
			if img.Bounds() != image.Rect(0, 0, 64, 48) {
				t.Fatalf("bounds %v", img.Bounds())
			}
			if _, _, _, a := img.At(0, 0).RGBA(); a != 0 {
				t.Errorf("outside the frame: %v, want transparent", img.At(0, 0))
			}
			if got, want := color.NRGBAModel.Convert(img.At(20, 20)), color.NRGBAModel.Convert(pal[1]); got != want {
				t.Errorf("inside the frame: %v, want %v", got, want)
			}
		}},
		{"webp lossless", dataURL("image/webp", webpLossless), "webp", func(t *testing.T, img image.Image) { samePixels(t, img, gopherPNG) }},
		{"webp with alpha", dataURL("image/webp", readTestdata(t, "gopher-doc.with-alpha.lossless.webp")), "webp", nil},
		{"webp lossy", dataURL("image/webp", readTestdata(t, "video-001.lossy.webp")), "webp", func(t *testing.T, img image.Image) {
			if img.Bounds() != image.Rect(0, 0, 150, 103) {
				t.Errorf("bounds %v", img.Bounds())
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			img, info, err := f.Load(context.Background(), tc.url)
			if err != nil {
				t.Fatal(err)
			}
			if info.Format != tc.format || info.MediaType != "image/"+tc.format {
				t.Errorf("info = %+v, want format %s", info, tc.format)
			}
			if b := img.Bounds(); b.Min != (image.Point{}) || b.Dx() != info.Width || b.Dy() != info.Height {
				t.Errorf("bounds %v, info %dx%d", b, info.Width, info.Height)
			}
			if tc.check != nil {
				tc.check(t, img)
			}
		})
	}

	// Decode takes a file's bytes; the same bytes give the same hash.
	_, fi, err := f.Decode(webpLossless)
	if err != nil || fi.SHA256 != sha256.Sum256(webpLossless) || fi.Bytes != int64(len(webpLossless)) {
		t.Errorf("Decode = %+v, %v", fi, err)
	}
	_, _, err = f.Decode([]byte("BM not supported"))
	wantError(t, err, ReasonInvalidImage, "not a PNG, JPEG, WebP or GIF image")
}

// TestAPIError: the 400 the HTTP layer sends names the image's place.
func TestAPIError(t *testing.T) {
	_, _, err := newTestFetcher(t, Options{}).Load(context.Background(), "https://169.254.169.254/latest/meta-data/")
	ae := APIError(err, Param(2, 1))
	if ae.Status != http.StatusBadRequest || ae.Type != "invalid_request_error" || ae.CodeString() != "image_url_forbidden" ||
		ae.ParamString() != "messages[2].content[1].image_url" ||
		!strings.HasPrefix(ae.Message, "messages[2].content[1].image_url: the image URL's address 169.254.169.254 is a link-local address") {
		t.Errorf("APIError = %+v (message %q)", ae, ae.Message)
	}
	body, _ := json.Marshal(map[string]any{"error": ae})
	if !strings.Contains(string(body), `"param":"messages[2].content[1].image_url"`) || !strings.Contains(string(body), `"code":"image_url_forbidden"`) {
		t.Errorf("JSON = %s", body)
	}
	if APIError(nil, "x") != nil {
		t.Error("APIError(nil) != nil")
	}
	if ae := APIError(errors.New("boom"), "x"); ae.Status != 500 {
		t.Errorf("APIError(other) = %+v", ae)
	}
}
