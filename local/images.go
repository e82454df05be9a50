package local

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"image"
	"strings"

	"github.com/stepflash/stepflash/api"
	"github.com/stepflash/stepflash/engine"
	"github.com/stepflash/stepflash/media"
	"github.com/stepflash/stepflash/tokenizer"
	"github.com/stepflash/stepflash/vision"
)

// Vision is what the local backend needs of a vision encoder (a
// VisionEncoder): the prompt pieces that take an image's place.
type Vision interface {
	// Encode returns the segments that replace one image in the prompt,
	// in order: text (tokenized with special tokens) or embeddings (one
	// prompt position each).
	Encode(img image.Image) ([]ImageSegment, error)
}

// VisionEncoder adapts a vision projector (package vision) to Vision:
// the image prepared, encoded and laid out as its segments.
type VisionEncoder struct{ Encoder *vision.Encoder }

// Encode prepares, encodes and lays out one image.
func (v VisionEncoder) Encode(img image.Image) ([]ImageSegment, error) {
	segs, err := v.Encoder.Embed(img)
	if err != nil {
		return nil, err
	}
	out := make([]ImageSegment, len(segs))
	for i, s := range segs {
		out[i] = ImageSegment{Text: s.Text, Embeds: s.Embeddings}
	}
	return out, nil
}

// ImageSegment is a piece of an image's expansion in the prompt.
type ImageSegment struct {
	Text   string
	Embeds [][]float32
}

// ImageLoader fetches and decodes an image_url (a *media.Fetcher).
type ImageLoader interface {
	Load(ctx context.Context, url string) (image.Image, media.Info, error)
}

// imageRef is one image of a request: where it was, and its URL.
type imageRef struct {
	message, part int
	url           string
}

// param is the request field that names the image.
func (r imageRef) param() string { return media.Param(r.message, r.part) }

// mediaMarker stands for an image in the rendered prompt until the prompt is
// tokenized. It is random per process, so that no text a user sends can
// pass for an image.
var mediaMarker = func() string {
	var b [8]byte
	rand.Read(b[:])
	return "<__media_" + hex.EncodeToString(b[:]) + "__>"
}()

// imageURL reads an image_url part's URL ({"url": "..."} or, as some
// clients send it, a bare string).
func imageURL(raw json.RawMessage) (string, bool) {
	var obj struct {
		URL string `json:"url"`
	}
	if json.Unmarshal(raw, &obj) == nil && obj.URL != "" {
		return obj.URL, true
	}
	var s string
	if json.Unmarshal(raw, &s) == nil && s != "" {
		return s, true
	}
	return "", false
}

// EncodedImage is an image ready for a prompt: its encoder's segments and
// the key that names it in the prefix cache.
type EncodedImage struct {
	Segments []ImageSegment
	// Key names the image's content (e.g. "image:sha256:HEX").
	Key string
}

// PromptWithImages tokenizes text whose images stand as marker (one marker
// per image, in order): the text between them as usual (special tokens
// parsed; BOS first when bos and the vocabulary asks for it), each image
// as its segments. It returns the prompt (a placeholder token at each
// embedding position), the engine request's Embeds and CacheKeys (each
// image's positions keyed by its Key), and the number of image positions.
func PromptWithImages(tok *tokenizer.Tokenizer, text, marker string, bos bool, images []EncodedImage) ([]int32, [][]float32, []engine.CacheKey, int, error) {
	pieces := strings.Split(text, marker)
	if len(pieces)-1 != len(images) {
		return nil, nil, nil, 0, fmt.Errorf("the prompt has %d image markers for %d images", len(pieces)-1, len(images))
	}
	var prompt []int32
	var embeds [][]float32
	var keys []engine.CacheKey
	n := 0
	addText := func(s string, bos bool) {
		ids := tok.Encode(s, bos, true)
		prompt = append(prompt, ids...)
		embeds = append(embeds, make([][]float32, len(ids))...)
	}
	addText(pieces[0], bos)
	for i, img := range images {
		start := len(prompt)
		for _, s := range img.Segments {
			if s.Text != "" {
				addText(s.Text, false)
			}
			for _, e := range s.Embeds {
				prompt = append(prompt, 0) // a placeholder: the embedding is the input
				embeds = append(embeds, e)
				n++
			}
		}
		keys = append(keys, engine.CacheKey{Start: start, End: len(prompt), Key: img.Key})
		addText(pieces[i+1], false)
	}
	return prompt, embeds, keys, n, nil
}

// loadImages fetches, decodes and encodes a request's images.
func (b *Backend) loadImages(ctx context.Context, refs []imageRef) ([]EncodedImage, *api.Error) {
	out := make([]EncodedImage, 0, len(refs))
	for _, ref := range refs {
		select {
		case b.imageSlots <- struct{}{}:
		case <-ctx.Done():
			return nil, media.APIError(ctx.Err(), ref.param())
		}
		e, err := b.loadImage(ctx, ref)
		<-b.imageSlots
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, nil
}

// loadImage fetches, decodes and encodes one image.
func (b *Backend) loadImage(ctx context.Context, ref imageRef) (EncodedImage, *api.Error) {
	img, info, err := b.m.Images.Load(ctx, ref.url)
	if err != nil {
		return EncodedImage{}, media.APIError(err, ref.param())
	}
	segs, err := b.m.Vision.Encode(img)
	if err != nil {
		return EncodedImage{}, api.InvalidRequest("invalid_image", ref.param(), "The image at '%s' could not be encoded: %v.", ref.param(), err)
	}
	return EncodedImage{Segments: segs, Key: "image:sha256:" + info.Hash()}, nil
}

// noImages is the 400 for an image sent to a model that takes none.
func noImages(ref imageRef) *api.Error {
	return api.InvalidRequest(api.CodeInvalidValue, ref.param(),
		"This model does not take images ('%s' is one): it was loaded without a vision projector (serve --mmproj FILE).", ref.param())
}
