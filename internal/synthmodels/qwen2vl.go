package synthmodels

import (
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/stepflash/stepflash/gguf"
)

// Qwen2VL turns tiny-vlm-text-F32 (llama, 4 heads of 32, 2 KV heads) into
// a Qwen2-VL language model: the qwen2vl architecture (NeoX-paired M-RoPE)
// with rope.dimension_sections [4, 6, 6, 0] over the 16 pairs of a head,
// the same weights plus seeded random biases (uniform ±0.5) on every
// layer's query, key and value projections, each written after its
// weight, and the shared tokenizer. Its RMSNorm epsilon is 1e-10, not
// 1e-5: llama.cpp at the references' commit does not read qwen2vl's
// attention.layer_norm_rms_epsilon (splitting the architectures into files
// lost qwen2vl's fall-through to qwen2's hyperparameters) and normalises
// with 0, which 1e-10 equals in float32, while model reads the file's
// epsilon, as Qwen2-VL means it. The output is deterministic;
// model/testdata/tiny-qwen2vl-ref.json records its sha256 and what
// llama.cpp computes on it.
func Qwen2VL(t testing.TB, dst string) {
	r := rand.New(rand.NewPCG(2026, 14))
	rename := rearch("llama", "qwen2vl", "tiny-qwen2vl")
	derive(t, "tiny-vlm-text-F32.gguf", dst, edit{
		key: func(k string, v any) (string, any, bool) {
			k, v, _ = rename(k, v)
			if k == "qwen2vl.attention.layer_norm_rms_epsilon" {
				v = float32(1e-10)
			}
			return k, v, true
		},
		kv: []pair{{"qwen2vl.rope.dimension_sections", []int32{4, 6, 6, 0}}},
		tensor: func(w *writer, ti *gguf.TensorInfo) {
			for _, proj := range []string{".attn_q", ".attn_k", ".attn_v"} {
				if l, ok := strings.CutSuffix(ti.Name, proj+".weight"); ok {
					n := ti.Shape[1] // the projection's outputs
					w.tensor(l+proj+".bias", gguf.TypeF32, []uint64{n}, f32s(int(n), func() float32 { return r.Float32() - 0.5 }))
				}
			}
		},
	})
}
