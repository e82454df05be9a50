package engine

import (
	"context"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/stepflash/stepflash/internal/testmodels"
)

// TestEmbedsInPrefixCache: prompts with input embeddings (an image's)
// reuse cached blocks only when their cache keys agree: two different
// images behind the same placeholder tokens never share the image's
// blocks, the same image does, and every result equals the one computed
// without the cache. Malformed embeddings are errors.
func TestEmbedsInPrefixCache(t *testing.T) {
	m, tok := openModel(t, testmodels.Path(t, "tiny-vlm-text-F32.gguf"), 1)
	d := m.Config().NEmbd
	head := tok.Encode("<|im_start|>User:", false, true)
	tail := tok.Encode("Describe the image.<end_of_utterance>\nAssistant:", false, true)
	image := func(seed uint64) [][]float32 {
		r := rand.New(rand.NewPCG(seed, 1))
		out := make([][]float32, 80) // five pictures of 16: past a block or two
		for i := range out {
			out[i] = make([]float32, d)
			for j := range out[i] {
				out[i][j] = float32(r.NormFloat64())
			}
		}
		return out
	}
	req := func(img [][]float32, key string) Request {
		prompt := slices.Concat(head, make([]int32, len(img)), tail)
		embeds := slices.Concat(make([][]float32, len(head)), img)
		return Request{Prompt: prompt, Embeds: embeds, MaxTokens: 8, IgnoreEOS: true,
			CacheKeys: []CacheKey{{Start: len(head), End: len(head) + len(img), Key: key}}}
	}
	a, b := image(1), image(2)
	e := New(m, tok, Options{Context: 512})
	defer e.Close()
	ref := New(m, tok, Options{Context: 512, CacheBytes: -1})
	defer ref.Close()
	for i, tc := range []struct {
		name      string
		r         Request
		maxCached int // at most this many prompt tokens reused
		minCached int
	}{
		{"image a", req(a, "sha256:a"), 0, 0},
		{"image b behind the same tokens", req(b, "sha256:b"), len(head), 0},
		{"image a again", req(a, "sha256:a"), len(head) + 80 + len(tail) - 1, len(head) + 64},
	} {
		got, err := e.Generate(context.Background(), tc.r, nil)
		if err != nil {
			t.Fatal(err)
		}
		want, err := ref.Generate(context.Background(), tc.r, nil)
		if err != nil {
			t.Fatal(err)
		}
		if got.CachedTokens > tc.maxCached || got.CachedTokens < tc.minCached || !slices.Equal(ids(got), ids(want)) {
			t.Errorf("%d %s: %d cached tokens (want %d..%d), output %v, without the cache %v", i, tc.name, got.CachedTokens, tc.minCached, tc.maxCached, ids(got), ids(want))
		}
	}
	if slices.Equal(ids(mustGenerate(t, ref, req(a, "a"))), ids(mustGenerate(t, ref, req(b, "b")))) {
		t.Error("two images give the same output: the embeddings are not reaching the model")
	}
	bad := req(a, "sha256:a")
	bad.CacheKeys = nil
	short := req(a, "sha256:a")
	short.Embeds[len(head)] = short.Embeds[len(head)][:d-1]
	long := req(a, "sha256:a")
	long.Embeds = append(long.Embeds, make([][]float32, len(long.Prompt))...)
	for _, tc := range []struct {
		name string
		r    Request
		err  string
	}{{"no cache key", bad, "no cache key"}, {"short embedding", short, "width"}, {"more embeddings than tokens", long, "input embeddings for a prompt"}} {
		if _, err := e.Generate(context.Background(), tc.r, nil); err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
}

func mustGenerate(t *testing.T, e *Engine, r Request) *Result {
	t.Helper()
	res, err := e.Generate(context.Background(), r, nil)
	if err != nil {
		t.Fatal(err)
	}
	return res
}
