package local

import (
	"slices"
	"testing"

	"github.com/stepflash/stepflash/engine"
	"github.com/stepflash/stepflash/gguf"
	"github.com/stepflash/stepflash/internal/testmodels"
	"github.com/stepflash/stepflash/tokenizer"
)

// TestPromptWithImages: images expand to their segments in marker order;
// each image's positions get its cache key, bidirectional segments their
// range, and Prepend shifts all of them with the tokens.
func TestPromptWithImages(t *testing.T) {
	f, err := gguf.Open(testmodels.Path(t, "tiny-vlm-text-F32.gguf"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tok, err := tokenizer.FromGGUF(f)
	if err != nil {
		t.Fatal(err)
	}
	emb := func(n int) [][]float32 {
		e := make([][]float32, n)
		for i := range e {
			e[i] = []float32{float32(i)}
		}
		return e
	}
	images := []EncodedImage{
		{Key: "a", Segments: []ImageSegment{{Text: "<fake_token_around_image>"}, {Embeds: emb(3)}, {Text: "<fake_token_around_image>"}}},
		{Key: "b", Segments: []ImageSegment{{Text: "<global-img>"}, {Embeds: emb(4), Bidirectional: true}, {Text: "\n"}}},
	}
	p, err := PromptWithImages(tok, "x<M>y<M>z", "<M>", false, images)
	if err != nil {
		t.Fatal(err)
	}
	x, y := len(tok.Encode("x", false, true)), len(tok.Encode("y", false, true))
	// x, [1 marker token, 3 embeds, 1 marker token], y, [<global-img>, 4 embeds, \n], z
	aStart := x
	bStart := aStart + 5 + y
	wantKeys := []engine.CacheKey{{Start: aStart, End: aStart + 5, Key: "a"}, {Start: bStart, End: bStart + 6, Key: "b"}}
	wantBidi := []engine.Span{{Start: bStart + 1, End: bStart + 5}}
	if !slices.Equal(p.CacheKeys, wantKeys) || !slices.Equal(p.Bidirectional, wantBidi) || p.ImageTokens != 7 || len(p.Embeds) != len(p.Tokens) {
		t.Fatalf("keys %v, bidirectional %v, %d image tokens, %d embeds for %d tokens; want %v, %v, 7", p.CacheKeys, p.Bidirectional, p.ImageTokens, len(p.Embeds), len(p.Tokens), wantKeys, wantBidi)
	}
	if p.Embeds[bStart+1] == nil || p.Embeds[bStart] != nil || p.Embeds[bStart+5] != nil {
		t.Errorf("the embeddings are not at the bidirectional range")
	}
	p.Prepend(7, 8)
	for i := range wantKeys {
		wantKeys[i].Start += 2
		wantKeys[i].End += 2
	}
	wantBidi[0].Start += 2
	wantBidi[0].End += 2
	if !slices.Equal(p.CacheKeys, wantKeys) || !slices.Equal(p.Bidirectional, wantBidi) || p.Tokens[0] != 7 || p.Tokens[1] != 8 ||
		len(p.Embeds) != len(p.Tokens) || p.Embeds[wantBidi[0].Start] == nil {
		t.Errorf("after Prepend: keys %v, bidirectional %v, tokens %v", p.CacheKeys, p.Bidirectional, p.Tokens[:3])
	}
	text := &ImagePrompt{Tokens: []int32{5, 6}}
	text.Prepend(1)
	if !slices.Equal(text.Tokens, []int32{1, 5, 6}) || text.Embeds != nil {
		t.Errorf("a text-only prompt after Prepend: tokens %v, embeds %v", text.Tokens, text.Embeds)
	}
	if _, err := PromptWithImages(tok, "x<M>", "<M>", false, images); err == nil {
		t.Error("one marker for two images accepted")
	}
}
