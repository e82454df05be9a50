package media

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"image"
	"image/gif"
	"image/jpeg"
	"image/png"
	"os"
	"strings"
	"testing"

	"github.com/stepflash/stepflash/internal/testmodels"
)

// fuzzMaxPixels is the pixel limit under fuzzing: small, so that a mutated
// header's dimensions are refused rather than decoded slowly.
const fuzzMaxPixels = 1 << 16

// FuzzDecode: any bytes, as a data: URL declaring the type their signature
// says (so that they reach the decoders), and as a data: URL's text itself,
// give an image within MaxPixels or an *Error, and never panic.
func FuzzDecode(f *testing.F) {
	if d, ok := testmodels.ModelsDir(); ok {
		if b, err := os.ReadFile(d + "/test-image-quadrants-64.png"); err == nil {
			f.Add(b)
			if img, err := png.Decode(bytes.NewReader(b)); err == nil {
				var j, g bytes.Buffer
				jpeg.Encode(&j, img, &jpeg.Options{Quality: 50})
				f.Add(j.Bytes())
				f.Add(j.Bytes()[:j.Len()/2])
				gif.Encode(&g, img, nil)
				f.Add(g.Bytes())
			}
		}
	}
	for _, name := range []string{"gopher-doc.8bpp.lossless.webp", "gopher-doc.with-alpha.lossless.webp", "video-001.lossy.webp"} {
		if b, err := os.ReadFile("testdata/" + name); err == nil {
			f.Add(b)
		}
	}
	small := image.NewNRGBA(image.Rect(0, 0, 3, 2))
	var p bytes.Buffer
	png.Encode(&p, small)
	f.Add(p.Bytes())
	f.Add(pngBomb(10000, 10000))
	f.Add(pngBomb(1<<31-1, 1<<31-1))
	f.Add([]byte("data:image/png;base64," + base64.StdEncoding.EncodeToString(p.Bytes())))
	f.Add([]byte("data:image/gif,GIF89a%01%00%01%00"))
	f.Add([]byte("RIFF\x00\x00\x00\x00WEBPVP8X"))

	fetcher := New(Options{MaxPixels: fuzzMaxPixels, MaxBytes: 1 << 20})
	check := func(t *testing.T, img image.Image, info Info, err error) {
		if err != nil {
			var me *Error
			if !errors.As(err, &me) || me.Reason == "" || me.Message == "" {
				t.Fatalf("error %v (%T) is not a *media.Error with a reason and message", err, err)
			}
			return
		}
		b := img.Bounds()
		if b.Min != (image.Point{}) || b.Dx() != info.Width || b.Dy() != info.Height || b.Dx() <= 0 || b.Dy() <= 0 {
			t.Fatalf("bounds %v, info %+v", b, info)
		}
		if int64(b.Dx())*int64(b.Dy()) > fuzzMaxPixels {
			t.Fatalf("decoded %v, over the limit of %d pixels", b, fuzzMaxPixels)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		mt := MediaType(Sniff(data))
		if mt == "" {
			mt = "image/png"
		}
		img, info, err := fetcher.Load(context.Background(), dataURL(mt, data))
		check(t, img, info, err)
		if err == nil && (info.Bytes != int64(len(data)) || info.MediaType != mt) {
			t.Fatalf("info %+v for %d bytes declared %s", info, len(data), mt)
		}
		if s := string(data); strings.HasPrefix(strings.ToLower(s), "data:") {
			img, info, err := fetcher.Load(context.Background(), s)
			check(t, img, info, err)
		}
	})
}
