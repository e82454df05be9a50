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
		out[i] = ImageSegment{Text: s.Text, Embeds: s.Embeddings, Bidirectional: s.Bidirectional, Rows: s.Rows, Cols: s.Cols}
	}
	return out, nil
}

// ImageSegment is a piece of an image's expansion in the prompt.
type ImageSegment struct {
	Text   string
	Embeds [][]float32
	// Bidirectional: the text model reads these embeddings with
	// attention in both directions among them (Gemma 3).
	Bidirectional bool
	// Rows and Cols, when set, make the embeddings a Rows x Cols grid
	// (row-major) read with 2-D positions (M-RoPE: Qwen2-VL).
	Rows, Cols int
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

// ImagePrompt is a prompt with images, ready for an engine request.
type ImagePrompt struct {
	Tokens []int32 // a placeholder token at each embedding position
	// Embeds, CacheKeys (each image's positions keyed by its Key),
	// Bidirectional and Grids are the engine request's fields of the same
	// names.
	Embeds        [][]float32
	CacheKeys     []engine.CacheKey
	Bidirectional []engine.Span
	Grids         []engine.Grid
	ImageTokens   int // the positions the images' embeddings take
}

// Apply sets the request's prompt and its image fields (Embeds, CacheKeys,
// Bidirectional, Grids) from p.
func (p *ImagePrompt) Apply(r *engine.Request) {
	r.Prompt, r.Embeds, r.CacheKeys, r.Bidirectional, r.Grids = p.Tokens, p.Embeds, p.CacheKeys, p.Bidirectional, p.Grids
}

// Prepend puts tokens (text, no embeddings) before the prompt.
func (p *ImagePrompt) Prepend(tokens ...int32) {
	n := len(tokens)
	p.Tokens = append(append([]int32(nil), tokens...), p.Tokens...)
	if p.Embeds != nil {
		p.Embeds = append(make([][]float32, n), p.Embeds...)
	}
	for i := range p.CacheKeys {
		p.CacheKeys[i].Start += n
		p.CacheKeys[i].End += n
	}
	for i := range p.Bidirectional {
		p.Bidirectional[i].Start += n
		p.Bidirectional[i].End += n
	}
	for i := range p.Grids {
		p.Grids[i].Start += n
	}
}

// PromptWithImages tokenizes text whose images stand as marker (one marker
// per image, in order): the text between them as usual (special tokens
// parsed; BOS first when bos and the vocabulary asks for it), each image
// as its segments.
func PromptWithImages(tok *tokenizer.Tokenizer, text, marker string, bos bool, images []EncodedImage) (*ImagePrompt, error) {
	pieces := strings.Split(text, marker)
	if len(pieces)-1 != len(images) {
		return nil, fmt.Errorf("the prompt has %d image markers for %d images", len(pieces)-1, len(images))
	}
	p := &ImagePrompt{}
	addText := func(s string, bos bool) {
		ids := tok.Encode(s, bos, true)
		p.Tokens = append(p.Tokens, ids...)
		p.Embeds = append(p.Embeds, make([][]float32, len(ids))...)
	}
	addText(pieces[0], bos)
	for i, img := range images {
		start := len(p.Tokens)
		for _, s := range img.Segments {
			if s.Text != "" {
				addText(s.Text, false)
			}
			if s.Bidirectional && len(s.Embeds) > 0 {
				p.Bidirectional = append(p.Bidirectional, engine.Span{Start: len(p.Tokens), End: len(p.Tokens) + len(s.Embeds)})
			}
			if s.Rows > 0 || s.Cols > 0 {
				if s.Rows <= 0 || s.Cols <= 0 || s.Rows*s.Cols != len(s.Embeds) {
					return nil, fmt.Errorf("image %d: a %dx%d grid of %d embeddings", i, s.Rows, s.Cols, len(s.Embeds))
				}
				p.Grids = append(p.Grids, engine.Grid{Start: len(p.Tokens), Rows: s.Rows, Cols: s.Cols})
			}
			for _, e := range s.Embeds {
				p.Tokens = append(p.Tokens, 0) // a placeholder: the embedding is the input
				p.Embeds = append(p.Embeds, e)
				p.ImageTokens++
			}
		}
		p.CacheKeys = append(p.CacheKeys, engine.CacheKey{Start: start, End: len(p.Tokens), Key: img.Key})
		addText(pieces[i+1], false)
	}
	return p, nil
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
