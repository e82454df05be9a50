package model

import (
	"encoding/binary"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/stepflash/stepflash/gguf"
	"github.com/stepflash/stepflash/internal/testmodels"
)

// WriteTinyGemma3 turns tiny-qwen3-F32 into a Gemma 3 model (for tests in
// this package and model_test): the gemma3 architecture, the same weights
// plus post-attention and post-MLP norms (seeded random weights in
// 0.5..1.5), a sliding window of 8 positions on layer 0 of every 2
// (layer 1 global), linear RoPE scaling ×4 on the global layers and final
// logit softcapping at 8, so that a few dozen positions exercise every
// difference from Qwen3. The output is deterministic; testdata/
// tiny-gemma3-ref.json records its sha256 and what llama.cpp computes on it.
func WriteTinyGemma3(t testing.TB, dst string) {
	src, err := gguf.Open(testmodels.Path(t, "tiny-qwen3-F32.gguf"))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	w := gguf.NewWriter()
	add := func(k string, v any) {
		if err := w.AddKV(k, v); err != nil {
			t.Fatal(err)
		}
	}
	for _, kv := range src.KV {
		key := kv.Key
		var v any = kv.Value
		switch {
		case key == "general.architecture":
			v = "gemma3"
		case key == "general.name":
			v = "tiny-gemma3"
		case strings.HasPrefix(key, "qwen3."):
			key = "gemma3." + strings.TrimPrefix(key, "qwen3.")
		}
		add(key, v)
	}
	add("gemma3.attention.sliding_window", uint32(8))
	add("gemma3.attention.sliding_window_pattern", uint32(2))
	add("gemma3.rope.scaling.type", "linear")
	add("gemma3.rope.scaling.factor", float32(4))
	add("gemma3.final_logit_softcapping", float32(8))
	r := rand.New(rand.NewPCG(2026, 12))
	norm := func(n int) []byte {
		b := make([]byte, 4*n)
		for i := 0; i < n; i++ {
			binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(0.5+r.Float32()))
		}
		return b
	}
	for i := range src.Tensors {
		ti := &src.Tensors[i]
		if err := w.AddTensor(ti.Name, ti.Type, ti.Shape, src.TensorData(ti)); err != nil {
			t.Fatal(err)
		}
		if l, ok := strings.CutSuffix(ti.Name, ".ffn_norm.weight"); ok {
			for _, name := range []string{".post_attention_norm.weight", ".post_ffw_norm.weight"} {
				if err := w.AddTensor(l+name, gguf.TypeF32, ti.Shape, norm(int(ti.Shape[0]))); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	if err := w.WriteFile(dst); err != nil {
		t.Fatal(err)
	}
}
