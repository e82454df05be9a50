// Package synthmodels writes the synthetic test models that tests across the
// project derive from the shared ones (a Mixtral-style llama, Gemma 3 and
// Qwen2-VL text models and their projectors): deterministic files whose
// llama.cpp references are stored beside the tests that use them.
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

// edit says how derive changes a file: key maps each metadata key and value
// to the written one (ok false drops it), tensor may add tensors after each
// copied one (drop skips copying it), and extra adds metadata and tensors
// at the ends.
type edit struct {
	key    func(k string, v any) (string, any, bool)
	drop   func(name string) bool
	tensor func(w *writer, ti *gguf.TensorInfo)
	kv     []pair
	extra  func(w *writer)
}

// pair is a metadata key and value to add.
type pair struct {
	key   string
	value any
}

// writer is a gguf.Writer that fails the test on an error.
type writer struct {
	t testing.TB
	*gguf.Writer
}

func (w *writer) kv(k string, v any) {
	if err := w.AddKV(k, v); err != nil {
		w.t.Fatal(err)
	}
}

func (w *writer) tensor(name string, typ gguf.Type, shape []uint64, data []byte) {
	if err := w.AddTensor(name, typ, shape, data); err != nil {
		w.t.Fatal(err)
	}
}

// derive writes dst: the shared model file src with e's changes.
func derive(t testing.TB, src, dst string, e edit) {
	f, err := gguf.Open(testmodels.Path(t, src))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w := &writer{t, gguf.NewWriter()}
	for _, kv := range f.KV {
		if k, v, ok := e.key(kv.Key, kv.Value); ok {
			w.kv(k, v)
		}
	}
	for _, p := range e.kv {
		w.kv(p.key, p.value)
	}
	for i := range f.Tensors {
		ti := &f.Tensors[i]
		if e.drop != nil && e.drop(ti.Name) {
			continue
		}
		w.tensor(ti.Name, ti.Type, ti.Shape, f.TensorData(ti))
		if e.tensor != nil {
			e.tensor(w, ti)
		}
	}
	if e.extra != nil {
		e.extra(w)
	}
	if err := w.WriteFile(dst); err != nil {
		t.Fatal(err)
	}
}

// rearch renames an architecture's metadata keys and sets general.name.
func rearch(from, to, name string) func(k string, v any) (string, any, bool) {
	return func(k string, v any) (string, any, bool) {
		switch {
		case k == "general.architecture":
			v = to
		case k == "general.name":
			v = name
		case strings.HasPrefix(k, from+"."):
			k = to + "." + strings.TrimPrefix(k, from+".")
		}
		return k, v, true
	}
}

// f32s is n float32s from f, little-endian.
func f32s(n int, f func() float32) []byte {
	b := make([]byte, 4*n)
	for i := 0; i < n; i++ {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(f()))
	}
	return b
}

// Mixtral turns tiny-qwen3moe-F32 into a Mixtral-style model: the
// llama architecture with routed experts (no q/k norms, adjacent-pair RoPE).
// The output is deterministic; model/testdata/tiny-mixtral-ref.json records its
// sha256 and what llama.cpp computes on it.
func Mixtral(t testing.TB, dst string) {
	rename := rearch("qwen3moe", "llama", "tiny-mixtral")
	derive(t, "tiny-qwen3moe-F32.gguf", dst, edit{
		key: func(k string, v any) (string, any, bool) {
			k, v, _ = rename(k, v)
			switch k {
			case "llama.expert_feed_forward_length":
				return k, v, false // llama reads the expert width from feed_forward_length
			case "llama.feed_forward_length":
				v = uint32(64)
			}
			return k, v, true
		},
		drop: func(name string) bool {
			return strings.HasSuffix(name, "attn_q_norm.weight") || strings.HasSuffix(name, "attn_k_norm.weight")
		},
	})
}

// Gemma3 turns tiny-qwen3-F32 into a Gemma 3 model: the gemma3
// architecture, the same weights plus post-attention and post-MLP norms
// (seeded random weights in 0.5..1.5), a sliding window of 8 positions on
// layer 0 of every 2 (layer 1 global), linear RoPE scaling ×4 on the global
// layers and final logit softcapping at 8, so that a few dozen positions
// exercise every difference from Qwen3. The output is deterministic;
// model/testdata/tiny-gemma3-ref.json records its sha256 and what llama.cpp
// computes on it.
func Gemma3(t testing.TB, dst string) {
	r := rand.New(rand.NewPCG(2026, 12))
	derive(t, "tiny-qwen3-F32.gguf", dst, edit{
		key: rearch("qwen3", "gemma3", "tiny-gemma3"),
		kv: []pair{
			{"gemma3.attention.sliding_window", uint32(8)},
			{"gemma3.attention.sliding_window_pattern", uint32(2)},
			{"gemma3.rope.scaling.type", "linear"},
			{"gemma3.rope.scaling.factor", float32(4)},
			{"gemma3.final_logit_softcapping", float32(8)},
		},
		tensor: func(w *writer, ti *gguf.TensorInfo) {
			if l, ok := strings.CutSuffix(ti.Name, ".ffn_norm.weight"); ok {
				for _, name := range []string{".post_attention_norm.weight", ".post_ffw_norm.weight"} {
					w.tensor(l+name, gguf.TypeF32, ti.Shape, f32s(int(ti.Shape[0]), func() float32 { return 0.5 + r.Float32() }))
				}
			}
		},
	})
}

// Gemma3Projector turns tiny-vlm-mmproj-F32 (idefics3) into a gemma3
// projector for the Gemma3 text model: the same ViT (32x32 pictures, 8x8
// patches), average pooling by 2 (16 tokens a picture), and a seeded
// random mm.soft_emb_norm (0.5..1.5) and mm.input_projection (64 -> 256,
// ±0.25) in place of the pixel shuffle's mm.model.fc. Deterministic;
// cmd/stepflash/testdata/tiny-gemma3-vlm-ref.json records its sha256 and
// what llama.cpp computes on the pair.
func Gemma3Projector(t testing.TB, dst string) {
	const vision, text = 64, 256
	r := rand.New(rand.NewPCG(2026, 13))
	derive(t, "tiny-vlm-mmproj-F32.gguf", dst, edit{
		key: func(k string, v any) (string, any, bool) {
			switch k {
			case "clip.projector_type", "clip.vision.projector_type":
				v = "gemma3"
			case "general.name":
				v = "tiny-gemma3-mmproj"
			case "clip.vision.projection_dim":
				v = uint32(text)
			case "clip.vision.preproc_image_size":
				return k, v, false
			}
			return k, v, true
		},
		drop: func(name string) bool { return name == "mm.model.fc.weight" },
		extra: func(w *writer) {
			w.tensor("mm.soft_emb_norm.weight", gguf.TypeF32, []uint64{vision}, f32s(vision, func() float32 { return 0.5 + r.Float32() }))
			w.tensor("mm.input_projection.weight", gguf.TypeF32, []uint64{text, vision}, f32s(vision*text, func() float32 { return 0.5 * (r.Float32() - 0.5) }))
		},
	})
}
