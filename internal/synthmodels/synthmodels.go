// Package synthmodels writes the synthetic test models that tests across the
// project derive from the shared ones (a Mixtral-style llama, a Gemma 3 text
// model and its projector): deterministic files whose llama.cpp references
// are stored beside the tests that use them.
package synthmodels

import (
	"encoding/binary"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/stepflash/stepflash/gguf"
	"github.com/stepflash/stepflash/internal/testmodels"
)

// Mixtral turns tiny-qwen3moe-F32 into a Mixtral-style model: the
// llama architecture with routed experts (no q/k norms, adjacent-pair RoPE).
// The output is deterministic; model/testdata/tiny-mixtral-ref.json records its
// sha256 and what llama.cpp computes on it.
func Mixtral(t testing.TB, dst string) {
	src, err := gguf.Open(testmodels.Path(t, "tiny-qwen3moe-F32.gguf"))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	w := gguf.NewWriter()
	for _, kv := range src.KV {
		key := kv.Key
		var v any = kv.Value
		switch {
		case key == "general.architecture":
			v = "llama"
		case key == "general.name":
			v = "tiny-mixtral"
		case strings.HasPrefix(key, "qwen3moe."):
			key = "llama." + strings.TrimPrefix(key, "qwen3moe.")
			if key == "llama.expert_feed_forward_length" {
				continue // llama reads the expert width from feed_forward_length
			}
			if key == "llama.feed_forward_length" {
				v = uint32(64)
			}
		}
		if err := w.AddKV(key, v); err != nil {
			t.Fatal(err)
		}
	}
	for i := range src.Tensors {
		ti := &src.Tensors[i]
		if strings.HasSuffix(ti.Name, "attn_q_norm.weight") || strings.HasSuffix(ti.Name, "attn_k_norm.weight") {
			continue
		}
		if err := w.AddTensor(ti.Name, ti.Type, ti.Shape, src.TensorData(ti)); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.WriteFile(dst); err != nil {
		t.Fatal(err)
	}
}

// Gemma3 turns tiny-qwen3-F32 into a Gemma 3 model: the gemma3 architecture, the same weights
// plus post-attention and post-MLP norms (seeded random weights in
// 0.5..1.5), a sliding window of 8 positions on layer 0 of every 2
// (layer 1 global), linear RoPE scaling ×4 on the global layers and final
// logit softcapping at 8, so that a few dozen positions exercise every
// difference from Qwen3. The output is deterministic; model/testdata/
// tiny-gemma3-ref.json records its sha256 and what llama.cpp computes on it.
func Gemma3(t testing.TB, dst string) {
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

// Gemma3Projector turns tiny-vlm-mmproj-F32 (idefics3) into a gemma3
// projector for the Gemma3 text model: the same ViT (32x32 pictures, 8x8
// patches), average pooling by 2 (16 tokens a picture), and a seeded
// random mm.soft_emb_norm (0.5..1.5) and mm.input_projection (64 -> 256,
// ±0.25) in place of the pixel shuffle's mm.model.fc. Deterministic;
// cmd/stepflash/testdata/tiny-gemma3-vlm-ref.json records its sha256 and
// what llama.cpp computes on the pair.
func Gemma3Projector(t testing.TB, dst string) {
	src, err := gguf.Open(testmodels.Path(t, "tiny-vlm-mmproj-F32.gguf"))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	const vision, text = 64, 256
	w := gguf.NewWriter()
	for _, kv := range src.KV {
		var v any = kv.Value
		switch kv.Key {
		case "clip.projector_type", "clip.vision.projector_type":
			v = "gemma3"
		case "general.name":
			v = "tiny-gemma3-mmproj"
		case "clip.vision.projection_dim":
			v = uint32(text)
		case "clip.vision.preproc_image_size":
			continue
		}
		if err := w.AddKV(kv.Key, v); err != nil {
			t.Fatal(err)
		}
	}
	r := rand.New(rand.NewPCG(2026, 13))
	f32 := func(n int, f func() float32) []byte {
		b := make([]byte, 4*n)
		for i := 0; i < n; i++ {
			binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(f()))
		}
		return b
	}
	for i := range src.Tensors {
		ti := &src.Tensors[i]
		if ti.Name == "mm.model.fc.weight" {
			continue
		}
		if err := w.AddTensor(ti.Name, ti.Type, ti.Shape, src.TensorData(ti)); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.AddTensor("mm.soft_emb_norm.weight", gguf.TypeF32, []uint64{vision}, f32(vision, func() float32 { return 0.5 + r.Float32() })); err != nil {
		t.Fatal(err)
	}
	if err := w.AddTensor("mm.input_projection.weight", gguf.TypeF32, []uint64{text, vision}, f32(vision*text, func() float32 { return 0.5 * (r.Float32() - 0.5) })); err != nil {
		t.Fatal(err)
	}
	if err := w.WriteFile(dst); err != nil {
		t.Fatal(err)
	}
}
