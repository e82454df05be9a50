package media

import (
	"bytes"
	"compress/zlib"
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"image"
	"image/color"
	"net"
	"net/http/httptest"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/stepflash/stepflash/internal/testmodels"
)

// quadrantsPNG is the shared 64x64 test image.
func quadrantsPNG(t testing.TB) []byte {
	t.Helper()
	b, err := os.ReadFile(testmodels.Path(t, "test-image-quadrants-64.png"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func readTestdata(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func dataURL(mediaType string, b []byte) string {
	return "data:" + mediaType + ";base64," + base64.StdEncoding.EncodeToString(b)
}

// stubResolver resolves the names it holds and no others.
type stubResolver map[string][]string

func (r stubResolver) LookupNetIP(_ context.Context, network, host string) ([]netip.Addr, error) {
	addrs, ok := r[strings.ToLower(host)]
	if !ok {
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	var out []netip.Addr
	for _, a := range addrs {
		ip := netip.MustParseAddr(a)
		if (network == "ip4" && !ip.Is4()) || (network == "ip6" && ip.Is4()) {
			continue
		}
		out = append(out, ip)
	}
	return out, nil
}

// dialRecorder dials like net.Dialer and records every address dialed.
type dialRecorder struct {
	mu    sync.Mutex
	addrs []string
}

func (d *dialRecorder) Dial(ctx context.Context, network, address string) (net.Conn, error) {
	d.mu.Lock()
	d.addrs = append(d.addrs, address)
	d.mu.Unlock()
	var nd net.Dialer
	return nd.DialContext(ctx, network, address)
}

func (d *dialRecorder) dialed() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]string(nil), d.addrs...)
}

// tlsTrust makes a TLS config trusting srv's certificate.
func tlsTrust(srv *httptest.Server) *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate())
	return pool
}

func newTestFetcher(t testing.TB, opts Options) *Fetcher {
	t.Helper()
	f := New(opts)
	t.Cleanup(f.CloseIdleConnections)
	return f
}

// wantError checks that err is an *Error with the reason and a message
// containing each of parts.
func wantError(t testing.TB, err error, reason string, parts ...string) *Error {
	t.Helper()
	var me *Error
	if !errors.As(err, &me) {
		t.Fatalf("error = %v (%T), want *media.Error with reason %s", err, err, reason)
	}
	t.Logf("%s: %s", me.Reason, me.Message)
	if me.Reason != reason {
		t.Errorf("reason = %s, want %s (message %q)", me.Reason, reason, me.Message)
	}
	for _, p := range parts {
		if !strings.Contains(me.Message, p) {
			t.Errorf("message %q does not contain %q", me.Message, p)
		}
	}
	return me
}

// samePixels fails unless a and b have the same bounds and colours.
func samePixels(t testing.TB, a, b image.Image) {
	t.Helper()
	if a.Bounds() != b.Bounds() {
		t.Fatalf("bounds %v != %v", a.Bounds(), b.Bounds())
	}
	r := a.Bounds()
	for y := r.Min.Y; y < r.Max.Y; y++ {
		for x := r.Min.X; x < r.Max.X; x++ {
			ca := color.NRGBA64Model.Convert(a.At(x, y))
			cb := color.NRGBA64Model.Convert(b.At(x, y))
			if ca != cb {
				t.Fatalf("pixel (%d,%d): %v != %v", x, y, ca, cb)
			}
		}
	}
}

// pngChunk is one PNG chunk with its CRC.
func pngChunk(typ string, data []byte) []byte {
	var b bytes.Buffer
	binary.Write(&b, binary.BigEndian, uint32(len(data)))
	b.WriteString(typ)
	b.Write(data)
	crc := crc32.NewIEEE()
	crc.Write([]byte(typ))
	crc.Write(data)
	binary.Write(&b, binary.BigEndian, crc.Sum32())
	return b.Bytes()
}

// pngBomb is a PNG of about a kilobyte whose header says width x height
// 8-bit grey pixels: IHDR, a small IDAT and IEND. The IDAT is the start of a
// zlib stream of zero rows (1 MiB of them, deflated to about 1 KiB, not
// closed), as a bomb's would be: decoding it would allocate width*height
// bytes before finding the data short.
func pngBomb(width, height uint32) []byte {
	var b bytes.Buffer
	b.WriteString("\x89PNG\r\n\x1a\n")
	ihdr := make([]byte, 13)
	binary.BigEndian.PutUint32(ihdr[0:], width)
	binary.BigEndian.PutUint32(ihdr[4:], height)
	ihdr[8] = 8 // bit depth
	ihdr[9] = 0 // greyscale
	b.Write(pngChunk("IHDR", ihdr))
	var idat bytes.Buffer
	zw, _ := zlib.NewWriterLevel(&idat, zlib.BestCompression)
	zw.Write(make([]byte, 1<<20))
	zw.Flush()
	b.Write(pngChunk("IDAT", idat.Bytes()))
	b.Write(pngChunk("IEND", nil))
	return b.Bytes()
}
