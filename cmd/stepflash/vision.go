package main

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"image"
	"os"
	"strings"

	"github.com/stepflash/stepflash/gguf"
	"github.com/stepflash/stepflash/local"
	"github.com/stepflash/stepflash/media"
	"github.com/stepflash/stepflash/vision"
)

// visionAdapter is a vision encoder as the local backend needs it.
type visionAdapter struct{ e *vision.Encoder }

// Encode prepares, encodes and lays out one image.
func (a visionAdapter) Encode(img image.Image) ([]local.ImageSegment, error) {
	segs, err := a.e.Embed(img)
	if err != nil {
		return nil, err
	}
	out := make([]local.ImageSegment, len(segs))
	for i, s := range segs {
		out[i] = local.ImageSegment{Text: s.Text, Embeds: s.Embeddings}
	}
	return out, nil
}

// openVision opens a vision projector (--mmproj) for a text model of width
// textWidth.
func openVision(path string, threads int, load gguf.Loading, textWidth int) (*vision.Encoder, error) {
	e, err := vision.Open(path, vision.Options{Threads: threads, Loading: load})
	if err != nil {
		return nil, fmt.Errorf("--mmproj %s: %w", path, err)
	}
	if d := e.EmbeddingDim(); d != textWidth {
		e.Close()
		return nil, fmt.Errorf("--mmproj %s: its embeddings have %d values, but the text model's width is %d: not this model's projector", path, d, textWidth)
	}
	return e, nil
}

// runMarker is where run's prompt takes an image (llama.cpp's default
// media marker).
const runMarker = "<__media__>"

// runImages reads run's --image files and encodes them; the prompt gets a
// marker per image at its start when it has none.
func runImages(prompt string, files []string, enc *vision.Encoder) (string, []local.EncodedImage, error) {
	if n := strings.Count(prompt, runMarker); n == 0 {
		prompt = strings.Repeat(runMarker, len(files)) + prompt
	} else if n != len(files) {
		return "", nil, fmt.Errorf("the prompt has %d %s markers for %d --image files", n, runMarker, len(files))
	}
	dec := media.New(media.Options{})
	var out []local.EncodedImage
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return "", nil, err
		}
		img, info, err := dec.Decode(b)
		if err != nil {
			return "", nil, fmt.Errorf("--image %s: %w", f, err)
		}
		segs, err := visionAdapter{enc}.Encode(img)
		if err != nil {
			return "", nil, fmt.Errorf("--image %s: %w", f, err)
		}
		out = append(out, local.EncodedImage{Segments: segs, Key: "image:sha256:" + info.Hash()})
	}
	return prompt, out, nil
}

// trustFile is a TLS configuration trusting the system's authorities and
// those of a PEM file.
func trustFile(path string) (*tls.Config, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s holds no PEM certificate", path)
	}
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, nil
}
