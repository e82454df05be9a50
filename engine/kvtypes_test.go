package engine

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/stepflash/stepflash/gguf"
	"github.com/stepflash/stepflash/internal/testmodels"
	"github.com/stepflash/stepflash/model"
)

// kvTolerance bounds how far the next-token log-probabilities after a long
// prompt may move when the KV cache holds F16 or Q8_0 instead of F32: the
// largest difference over the F32 run's top 5, per model. The shared refs'
// README expects about 0.03 for an F16 cache on these F32 files. Q8_0
// rounds to 8 bits per block of 32, and these random-weight models attend
// sharply (large q·k; qwen3's QK-norm weights make the scores largest), so
// rounding keys moves the scores far more than rounding values. Measured
// on this test's prompt (F16 / Q8_0 / F16 keys with Q8_0 values): llama
// 0.0072 / 0.089 / 0.042, qwen3 0.0087 / 0.25 / 0.047; the bounds leave
// some 40% over them.
var kvTolerance = map[string]map[[2]gguf.Type]float64{
	"tiny-llama-F32.gguf": {
		{gguf.TypeF16, gguf.TypeF16}:   0.03,
		{gguf.TypeQ8_0, gguf.TypeQ8_0}: 0.13,
		{gguf.TypeF16, gguf.TypeQ8_0}:  0.06,
	},
	"tiny-qwen3-F32.gguf": {
		{gguf.TypeF16, gguf.TypeF16}:   0.03,
		{gguf.TypeQ8_0, gguf.TypeQ8_0}: 0.35,
		{gguf.TypeF16, gguf.TypeQ8_0}:  0.07,
	},
}

// TestKVCacheTypes runs a prompt of 800 positions (25 cache blocks) with
// the KV cache in F32, F16 and Q8_0, and checks that the compact caches
// stay within kvTolerance of the F32 one, that they differ from it at all
// (the types are really used), and that each takes the bytes per token it
// says.
func TestKVCacheTypes(t *testing.T) {
	for _, file := range []string{"tiny-llama-F32.gguf", "tiny-qwen3-F32.gguf"} {
		t.Run(file, func(t *testing.T) {
			m, tok := openModel(t, testmodels.Path(t, file), 2)
			tols := kvTolerance[file]
			cfg := m.Config()
			r := rand.New(rand.NewPCG(3, 4))
			prompt := make([]int32, 800)
			for i := range prompt {
				prompt[i] = int32(r.IntN(cfg.NVocab))
			}
			run := func(kt, vt gguf.Type) *Result {
				t.Helper()
				e := New(m, tok, Options{Context: 900, CacheTypeK: kt, CacheTypeV: vt, CacheBytes: -1})
				defer e.Close()
				res, err := e.Generate(context.Background(), Request{Prompt: prompt, MaxTokens: 1, TopLogprobs: 5}, nil)
				if err != nil {
					t.Fatal(err)
				}
				return res
			}
			ref := run(gguf.TypeF32, gguf.TypeF32)
			for types, tol := range tols {
				got := run(types[0], types[1])
				worst := 0.0
				for _, want := range ref.Tokens[0].Top {
					lp, ok := logprobOf(got.Tokens[0].Top, want.ID)
					if !ok {
						t.Fatalf("%v/%v: token %d of F32's top 5 is not in its top 5", types[0], types[1], want.ID)
					}
					worst = max(worst, math.Abs(float64(lp-want.Logprob)))
				}
				t.Logf("%v keys, %v values: max |Δ logprob| over the top 5 = %.4f (tolerance %.2f)", types[0], types[1], worst, tol)
				if worst > tol {
					t.Errorf("%v keys, %v values: log-probabilities moved by %.4f > %.2f", types[0], types[1], worst, tol)
				}
				if worst == 0 {
					t.Errorf("%v keys, %v values: identical to the F32 cache; the type is not used", types[0], types[1])
				}
			}
		})
	}
}

func logprobOf(top []TokenLogprob, id int32) (float32, bool) {
	for _, t := range top {
		if t.ID == id {
			return t.Logprob, true
		}
	}
	return 0, false
}

// TestKVBytesPerToken: what a cached position costs in each type, as
// llama.cpp sizes it (F16 half of F32, Q8_0 34 bytes per 32 values).
func TestKVBytesPerToken(t *testing.T) {
	cfg := &model.Config{NLayer: 28, NHeadKV: 8, HeadDim: 128, HeadDimV: 128} // Qwen3-0.6B's shape
	for _, tc := range []struct {
		k, v gguf.Type
		want int64
	}{
		{gguf.TypeF32, gguf.TypeF32, 28 * 8 * 128 * 2 * 4},
		{gguf.TypeF16, gguf.TypeF16, 28 * 8 * 128 * 2 * 2},
		{gguf.TypeQ8_0, gguf.TypeQ8_0, 28 * 8 * (128 / 32 * 34) * 2},
		{gguf.TypeQ8_0, gguf.TypeF16, 28 * 8 * (128/32*34 + 128*2)},
	} {
		if got := KVBytesPerTokenOf(cfg, tc.k, tc.v); got != tc.want {
			t.Errorf("%v/%v: %d bytes per token, want %d", tc.k, tc.v, got, tc.want)
		}
	}
	// 256k positions of this shape: 29 GB in F16, 15 GB in Q8_0 (issue 14's figures).
	if gb := float64(256*1024*KVBytesPerTokenOf(cfg, gguf.TypeF16, gguf.TypeF16)) / 1e9; gb < 29 || gb > 31 {
		t.Errorf("256k F16: %.1f GB", gb)
	}
}

func TestCheckCacheTypes(t *testing.T) {
	cfg := &model.Config{NLayer: 1, NHeadKV: 1, HeadDim: 48, HeadDimV: 64}
	for _, tc := range []struct {
		k, v gguf.Type
		err  string
	}{
		{gguf.TypeF32, gguf.TypeF32, ""},
		{gguf.TypeF16, gguf.TypeQ8_0, ""},
		{gguf.TypeQ8_0, gguf.TypeF16, "multiple of 32; this model's is 48"},
		{gguf.TypeQ4_0, gguf.TypeF16, "cannot hold keys as Q4_0"},
		{gguf.TypeF16, gguf.TypeBF16, "cannot hold values as BF16"},
	} {
		err := CheckCacheTypes(cfg, tc.k, tc.v)
		if got := fmt.Sprint(err); (tc.err == "") != (err == nil) || tc.err != "" && !strings.Contains(got, tc.err) {
			t.Errorf("%v/%v: %v, want %q", tc.k, tc.v, err, tc.err)
		}
	}
}
