package main

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/stepflash/stepflash/gguf"
	"github.com/stepflash/stepflash/local"
	"github.com/stepflash/stepflash/media"
	"github.com/stepflash/stepflash/model"
	"github.com/stepflash/stepflash/vision"
)

// openVision opens a vision projector (--mmproj) for the text model cfg
// describes: its width must match, and a projector whose images are read
// with 2-D positions needs a model with M-RoPE.
func openVision(path string, threads int, load gguf.Loading, cfg *model.Config) (*vision.Encoder, error) {
	textWidth := cfg.NEmbd
	e, err := vision.Open(path, vision.Options{Threads: threads, Loading: load})
	if err != nil {
		return nil, fmt.Errorf("--mmproj %s: %w", path, err)
	}
	if d := e.EmbeddingDim(); d != textWidth {
		e.Close()
		return nil, fmt.Errorf("--mmproj %s: its embeddings have %d values, but the text model's width is %d: not this model's projector", path, d, textWidth)
	}
	if e.Grids() && cfg.RopeSections == [4]int{} {
		e.Close()
		return nil, fmt.Errorf("--mmproj %s: a %s projector's images are read with M-RoPE positions, which the %s text model does not have: not this model's projector", path, e.Config().ProjectorType, cfg.Arch)
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
		segs, err := local.VisionEncoder{Encoder: enc}.Encode(img)
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

// quantSuffix is a GGUF file name's type suffix (-Q8_0, .f16, -BF16, ...).
var quantSuffix = regexp.MustCompile(`(?i)[-._](q\d[a-z0-9_]*|iq\d[a-z0-9_]*|f16|f32|bf16)$`)

// projectorStem is a file name without its extension, type suffix and (for
// a projector) the word mmproj and the separator beside it.
func projectorStem(name string) string {
	s := strings.TrimSuffix(name, filepath.Ext(name))
	s = quantSuffix.ReplaceAllString(s, "")
	for _, p := range []string{"mmproj-", "mmproj_", "mmproj.", "-mmproj", "_mmproj", ".mmproj"} {
		s = strings.Replace(s, p, "", 1)
	}
	return strings.ToLower(s)
}

// findProjector looks beside a model file for its vision projector, named
// as llama.cpp's converters and Hugging Face repositories name them
// (mmproj-MODEL.gguf, MODEL-mmproj-f16.gguf, ...): a *.gguf file whose name
// holds "mmproj" and whose stem is the model's stem or a prefix of it
// ending at a separator. "" when there is none, or more than one.
func findProjector(modelPath string) string {
	dir := filepath.Dir(modelPath)
	entries, err := os.ReadDir(dir)
	if err != nil {
		return ""
	}
	model := projectorStem(filepath.Base(modelPath))
	found := ""
	for _, e := range entries {
		n := e.Name()
		if e.IsDir() || !strings.EqualFold(filepath.Ext(n), ".gguf") || !strings.Contains(strings.ToLower(n), "mmproj") {
			continue
		}
		stem := projectorStem(n)
		if stem == "" || !(model == stem || strings.HasPrefix(model, stem) && strings.ContainsAny(model[len(stem):len(stem)+1], "-_.")) {
			continue
		}
		if found != "" {
			return "" // ambiguous: say nothing rather than guess
		}
		found = filepath.Join(dir, n)
	}
	return found
}
