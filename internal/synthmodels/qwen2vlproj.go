package synthmodels

import (
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/stepflash/stepflash/gguf"
)

// Qwen25VLProjector turns tiny-vlm-mmproj-F32 (idefics3) into a
// qwen2.5vl_merger projector for the Qwen2VL text model (128 wide): the
// same ViT weights (8x8-pixel... 4x4-pixel patches, 64 wide, 4 heads of 16,
// 2 blocks) read as Qwen2.5-VL's encoder: no position embeddings or patch
// bias (2-D RoPE instead), RMSNorms without biases, a seeded random second
// patch kernel (v.patch_embd.weight.1) and gated SiLU MLP (ffn_gate, with
// bias), layer 0 attending within windows of 2x2 merged tokens
// (clip.vision.window_size 16 pixels, n_wa_pattern 2), and a seeded random
// merger mm.0 (256 -> 256) and mm.2 (256 -> 128), both with biases.
// Deterministic; cmd/stepflash/testdata/tiny-qwen25vl-ref.json records its
// sha256 and what llama.cpp computes on the pair.
func Qwen25VLProjector(t testing.TB, dst string) { qwenVLProjector(t, dst, true) }

// Qwen2VLProjector is Qwen25VLProjector's Qwen2-VL sibling, a
// qwen2vl_merger: the same patches and merger (other seeds), but the
// encoder's LayerNorms keep their biases, its MLP is ungated quick-GELU
// (neither clip.use_gelu nor clip.use_silu), and every layer attends to
// the whole image. cmd/stepflash/testdata/tiny-qwen2vl-ref.json records
// its sha256 and what llama.cpp computes on the pair.
func Qwen2VLProjector(t testing.TB, dst string) { qwenVLProjector(t, dst, false) }

func qwenVLProjector(t testing.TB, dst string, v25 bool) {
	const vision, ff, text, patch = 64, 128, 128, 14
	typ, name, seed := "qwen2vl_merger", "tiny-qwen2vl-mmproj", uint64(20)
	if v25 {
		typ, name, seed = "qwen2.5vl_merger", "tiny-qwen25vl-mmproj", 25
	}
	r := rand.New(rand.NewPCG(2026, seed))
	kvs := []pair{{"clip.vision.spatial_merge_size", uint32(2)}}
	if v25 {
		kvs = append(kvs, pair{"clip.use_silu", true}, pair{"clip.vision.n_wa_pattern", uint32(2)})
	}
	uniform := func(a float32) func() float32 { return func() float32 { return a * (2*r.Float32() - 1) } }
	derive(t, "tiny-vlm-mmproj-F32.gguf", dst, edit{
		key: func(k string, v any) (string, any, bool) {
			switch k {
			case "clip.projector_type", "clip.vision.projector_type":
				v = typ
			case "general.name":
				v = name
			case "clip.vision.projection_dim":
				v = uint32(text)
			case "clip.vision.patch_size":
				v = uint32(patch)
			case "clip.vision.image_size":
				v = uint32(4 * patch)
			case "clip.use_gelu", "clip.vision.preproc_image_size", "clip.vision.projector.scale_factor":
				return k, v, false
			}
			return k, v, true
		},
		kv: kvs,
		drop: func(name string) bool {
			switch {
			case name == "v.position_embd.weight", strings.HasPrefix(name, "v.patch_embd."), name == "mm.model.fc.weight":
				return true
			case strings.HasSuffix(name, "ln1.bias"), strings.HasSuffix(name, "ln2.bias"), name == "v.post_ln.bias":
				return v25 // RMSNorm: no biases
			}
			return false
		},
		tensor: func(w *writer, ti *gguf.TensorInfo) {
			switch {
			case v25 && strings.HasSuffix(ti.Name, ".ffn_up.bias"):
				l := strings.TrimSuffix(ti.Name, ".ffn_up.bias")
				w.tensor(l+".ffn_gate.weight", gguf.TypeF32, []uint64{vision, ff}, f32s(vision*ff, uniform(0.25)))
				w.tensor(l+".ffn_gate.bias", gguf.TypeF32, []uint64{ff}, f32s(ff, uniform(0.5)))
			}
		},
		extra: func(w *writer) {
			for _, name := range []string{"v.patch_embd.weight", "v.patch_embd.weight.1"} {
				w.tensor(name, gguf.TypeF32, []uint64{patch, patch, 3, vision}, f32s(patch*patch*3*vision, uniform(0.05)))
			}
			w.tensor("mm.0.weight", gguf.TypeF32, []uint64{4 * vision, 4 * vision}, f32s(16*vision*vision, uniform(0.125)))
			w.tensor("mm.0.bias", gguf.TypeF32, []uint64{4 * vision}, f32s(4*vision, uniform(0.5)))
			w.tensor("mm.2.weight", gguf.TypeF32, []uint64{4 * vision, text}, f32s(4*vision*text, uniform(0.125)))
			w.tensor("mm.2.bias", gguf.TypeF32, []uint64{text}, f32s(text, uniform(0.5)))
		},
	})
}
