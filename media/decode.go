package media

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"image"
	"image/draw"
	"image/gif"
	"image/jpeg"
	"image/png"
	"io"
	"mime"
	"net/url"
	"strings"

	"golang.org/x/image/webp"
)

// Formats decoded here, by the name Info.Format gives.
const (
	FormatPNG  = "png"
	FormatJPEG = "jpeg"
	FormatWebP = "webp"
	FormatGIF  = "gif"
)

// supportedList names the formats in messages.
const supportedList = "PNG, JPEG, WebP or GIF"

// Sniff returns the format of an image's bytes from their signature, or ""
// when they are none of the four.
func Sniff(b []byte) string {
	switch {
	case bytes.HasPrefix(b, []byte("\x89PNG\r\n\x1a\n")):
		return FormatPNG
	case bytes.HasPrefix(b, []byte("\xff\xd8\xff")):
		return FormatJPEG
	case bytes.HasPrefix(b, []byte("GIF87a")), bytes.HasPrefix(b, []byte("GIF89a")):
		return FormatGIF
	case len(b) >= 12 && string(b[:4]) == "RIFF" && string(b[8:12]) == "WEBP":
		return FormatWebP
	}
	return ""
}

// MediaType is the media type of a format: "image/png" for "png".
func MediaType(format string) string {
	if format == "" {
		return ""
	}
	return "image/" + format
}

// formatOfType maps a declared image media type to its format: "" for a
// type that is not an image type, "?" for an image type not decoded here.
func formatOfType(mediaType string) string {
	switch mediaType {
	case "image/png", "image/x-png", "image/apng":
		return FormatPNG
	case "image/jpeg", "image/jpg", "image/pjpeg":
		return FormatJPEG
	case "image/webp", "image/x-webp":
		return FormatWebP
	case "image/gif":
		return FormatGIF
	}
	if strings.HasPrefix(mediaType, "image/") {
		return "?"
	}
	return ""
}

// formatName is a format as messages write it.
func formatName(format string) string {
	switch format {
	case FormatPNG:
		return "PNG"
	case FormatJPEG:
		return "JPEG"
	case FormatWebP:
		return "WebP"
	case FormatGIF:
		return "GIF"
	}
	return format
}

// parseDataURL returns the bytes of a data: URL (RFC 2397) and its declared
// media type. The type must be an image type this package decodes, and the
// bytes must fit in maxBytes (checked on the encoded length first, so that
// an oversized URL is not decoded).
func parseDataURL(u string, maxBytes int64) ([]byte, string, error) {
	rest := u[len("data:"):]
	comma := strings.IndexByte(rest, ',')
	if comma < 0 {
		return nil, "", newError(ReasonInvalidImage, nil, "the data: URL has no comma before its data (expected data:image/png;base64,...)")
	}
	header, payload := rest[:comma], rest[comma+1:]
	isBase64 := false
	if h := strings.TrimRight(header, " "); len(h) >= 7 && strings.EqualFold(h[len(h)-7:], ";base64") {
		isBase64 = true
		header = h[:len(h)-7]
	}
	if strings.TrimSpace(header) == "" {
		return nil, "", newError(ReasonInvalidImage, nil, "the data: URL declares no media type; it must declare the image's type (data:image/png;base64,...)")
	}
	mediaType, _, err := mime.ParseMediaType(header)
	if err != nil {
		return nil, "", newError(ReasonInvalidImage, err, "the data: URL's media type %q cannot be parsed: %v", clip(header, 64), err)
	}
	switch formatOfType(mediaType) {
	case "":
		return nil, "", newError(ReasonInvalidImage, nil, "the data: URL's media type is %s, which is not an image type (expected image/png, image/jpeg, image/webp or image/gif)", mediaType)
	case "?":
		return nil, "", newError(ReasonInvalidImage, nil, "the data: URL's media type is %s, which is not supported (supported: image/png, image/jpeg, image/webp, image/gif)", mediaType)
	}

	var data []byte
	if isBase64 {
		payload = stripSpace(payload)
		if n := int64(base64.RawStdEncoding.DecodedLen(len(strings.TrimRight(payload, "=")))); maxBytes > 0 && n > maxBytes {
			return nil, "", tooManyBytes(n, maxBytes)
		}
		data, err = decodeBase64(payload)
		if err != nil {
			return nil, "", newError(ReasonInvalidImage, err, "the data: URL's base64 data is malformed: %v", err)
		}
	} else {
		if n := int64(len(payload) - 2*strings.Count(payload, "%")); maxBytes > 0 && n > maxBytes {
			return nil, "", tooManyBytes(n, maxBytes)
		}
		s, err := url.PathUnescape(payload)
		if err != nil {
			return nil, "", newError(ReasonInvalidImage, err, "the data: URL's percent-encoded data is malformed: %v", err)
		}
		data = []byte(s)
	}
	if maxBytes > 0 && int64(len(data)) > maxBytes {
		return nil, "", tooManyBytes(int64(len(data)), maxBytes)
	}
	return data, mediaType, nil
}

// decodeBase64 accepts standard and URL-safe base64, padded or not.
func decodeBase64(s string) ([]byte, error) {
	enc := base64.StdEncoding
	if strings.ContainsAny(s, "-_") {
		enc = base64.URLEncoding
	}
	if len(s)%4 != 0 {
		enc = enc.WithPadding(base64.NoPadding)
	}
	return enc.DecodeString(s)
}

// stripSpace removes the whitespace some encoders wrap base64 with.
func stripSpace(s string) string {
	if !strings.ContainsAny(s, " \t\r\n") {
		return s
	}
	return strings.Map(func(r rune) rune {
		switch r {
		case ' ', '\t', '\r', '\n':
			return -1
		}
		return r
	}, s)
}

func tooManyBytes(n, limit int64) *Error {
	return newError(ReasonImageTooLarge, nil, "the image is %s, over the limit of %s", sizeString(n), sizeString(limit))
}

// decode decodes data, whose format has been sniffed, within maxPixels
// (when positive): the dimensions are read from the header first, so that
// an image over the limit is refused before its pixels are allocated.
func decode(data []byte, format string, maxPixels int64) (img image.Image, cfg image.Config, err error) {
	var decodeConfig func(io.Reader) (image.Config, error)
	var decodeImage func(io.Reader) (image.Image, error)
	switch format {
	case FormatPNG:
		decodeConfig, decodeImage = png.DecodeConfig, png.Decode
	case FormatJPEG:
		decodeConfig, decodeImage = jpeg.DecodeConfig, jpeg.Decode
	case FormatGIF:
		decodeConfig, decodeImage = gif.DecodeConfig, gif.Decode
	case FormatWebP:
		decodeConfig, decodeImage = webp.DecodeConfig, webp.Decode
	default:
		return nil, cfg, newError(ReasonInvalidImage, nil, "the data is not a %s image", supportedList)
	}
	name := formatName(format)
	// The decoders are written not to panic on bad input; this is a second
	// line of defence, so that one bad image can never take the server down.
	defer func() {
		if r := recover(); r != nil {
			img = nil
			err = newError(ReasonInvalidImage, fmt.Errorf("panic: %v", r), "the %s data is corrupt: the decoder failed (%v)", name, r)
		}
	}()

	cfg, err = decodeConfig(bytes.NewReader(data))
	if err != nil {
		return nil, cfg, decodeError(name, err)
	}
	if cfg.Width <= 0 || cfg.Height <= 0 {
		return nil, cfg, newError(ReasonInvalidImage, nil, "the %s image has no pixels (%dx%d)", name, cfg.Width, cfg.Height)
	}
	if px := int64(cfg.Width) * int64(cfg.Height); maxPixels > 0 && px > maxPixels {
		return nil, cfg, newError(ReasonImageTooLarge, nil, "the %s image is %dx%d = %s pixels, over the limit of %s pixels",
			name, cfg.Width, cfg.Height, groupDigits(px), groupDigits(maxPixels))
	}
	img, err = decodeImage(bytes.NewReader(data))
	if err != nil {
		return nil, cfg, decodeError(name, err)
	}
	b := img.Bounds()
	if format == FormatGIF && b != image.Rect(0, 0, cfg.Width, cfg.Height) {
		// The first frame covers part of the logical screen: place it there.
		// The GIF decoder has checked that it lies within the screen.
		canvas := image.NewNRGBA(image.Rect(0, 0, cfg.Width, cfg.Height))
		draw.Draw(canvas, b, img, b.Min, draw.Src)
		img, b = canvas, canvas.Bounds()
	}
	if b.Dx() != cfg.Width || b.Dy() != cfg.Height {
		return nil, cfg, newError(ReasonInvalidImage, nil, "the %s image is corrupt: its header says %dx%d but it decodes to %dx%d",
			name, cfg.Width, cfg.Height, b.Dx(), b.Dy())
	}
	return img, cfg, nil
}

func decodeError(name string, err error) *Error {
	msg := err.Error()
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		return newError(ReasonInvalidImage, err, "the %s data is truncated (%s)", name, msg)
	}
	return newError(ReasonInvalidImage, err, "the %s data is corrupt: %s", name, msg)
}

// decodeBytes sniffs, checks against the declared type (when not ""), and
// decodes, filling info.
func decodeBytes(data []byte, declared string, maxPixels int64) (image.Image, Info, error) {
	format := Sniff(data)
	if format == "" {
		if len(data) == 0 {
			return nil, Info{}, newError(ReasonInvalidImage, nil, "the image is empty (0 bytes)")
		}
		if declared != "" {
			return nil, Info{}, newError(ReasonInvalidImage, nil, "the data is declared as %s but is not a %s image", declared, supportedList)
		}
		return nil, Info{}, newError(ReasonInvalidImage, nil, "the data is not a %s image", supportedList)
	}
	if declared != "" && formatOfType(declared) != format {
		return nil, Info{}, newError(ReasonInvalidImage, nil, "the data is declared as %s but is a %s image (%s)", declared, formatName(format), MediaType(format))
	}
	img, cfg, err := decode(data, format, maxPixels)
	if err != nil {
		return nil, Info{}, err
	}
	return img, Info{
		Format:    format,
		MediaType: MediaType(format),
		Bytes:     int64(len(data)),
		Width:     cfg.Width,
		Height:    cfg.Height,
		SHA256:    sha256.Sum256(data),
	}, nil
}

// sizeString writes a byte count for people: "20 MiB", "1.5 KiB", "17 bytes".
func sizeString(n int64) string {
	const (
		kib = 1 << 10
		mib = 1 << 20
	)
	switch {
	case n >= mib && n%mib == 0:
		return fmt.Sprintf("%d MiB", n/mib)
	case n >= mib:
		return fmt.Sprintf("%.1f MiB (%s bytes)", float64(n)/mib, groupDigits(n))
	case n >= kib && n%kib == 0:
		return fmt.Sprintf("%d KiB", n/kib)
	case n >= kib:
		return fmt.Sprintf("%.1f KiB (%s bytes)", float64(n)/kib, groupDigits(n))
	}
	return fmt.Sprintf("%d bytes", n)
}

// groupDigits writes 100000000 as 100,000,000.
func groupDigits(n int64) string {
	s := fmt.Sprint(n)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

// clip shortens s for a message.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
