package synthmodels

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"

	"github.com/stepflash/stepflash/gguf"
	"github.com/stepflash/stepflash/internal/testmodels"
	"github.com/stepflash/stepflash/tensor"
)

// Gemma 3 4B's vision shape (its mmproj as llama.cpp converts it).
const (
	g3Image, g3Patch, g3Width, g3FF, g3Blocks, g3Heads, g3Text = 896, 14, 1152, 4304, 27, 16, 2560
)

// Gemma3Full writes into dir a projector of Gemma 3 4B's shape (SigLIP on
// 896-pixel pictures, patches of 14, width 1152, 27 blocks, pooled 4x4 to
// 256 embeddings of 2560; random F16 weights) and a one-layer gemma3 text
// model of width 2560 with tiny-qwen3's vocabulary to pair it with, for
// timing image encoding side by side with llama.cpp. Files already in dir
// are kept. It returns the two paths.
func Gemma3Full(dir string) (text, proj string, err error) {
	text, proj = filepath.Join(dir, "gemma3-full-text-F16.gguf"), filepath.Join(dir, "gemma3-full-mmproj-F16.gguf")
	err = writeMissing(rand.New(rand.NewPCG(2026, 14)), proj, writeGemma3FullProjector, text, writeGemma3FullText)
	return text, proj, err
}

// writeMissing writes proj and then text with their writers (in that
// order, from one random source) unless the file is already there.
func writeMissing(r *rand.Rand, proj string, writeProj func(string, *rand.Rand) error, text string, writeText func(string, *rand.Rand) error) error {
	for _, f := range []struct {
		path  string
		write func(string, *rand.Rand) error
	}{{proj, writeProj}, {text, writeText}} {
		if _, err := os.Stat(f.path); err != nil {
			if err := f.write(f.path, r); err != nil {
				return err
			}
		}
	}
	return nil
}

// newWriter is a gguf.Writer with kvs set.
func newWriter(kvs []pair) (*gguf.Writer, error) {
	w := gguf.NewWriter()
	for _, p := range kvs {
		if err := w.AddKV(p.key, p.value); err != nil {
			return nil, err
		}
	}
	return w, nil
}

// tinyQwen3Tokenizer copies tiny-qwen3-F32's tokenizer metadata into w and
// returns its vocabulary size.
func tinyQwen3Tokenizer(w *gguf.Writer) (uint64, error) {
	dir, ok := testmodels.ModelsDir()
	if !ok {
		return 0, fmt.Errorf("synthmodels: the shared models directory %s is missing", dir)
	}
	src, err := gguf.Open(filepath.Join(dir, "tiny-qwen3-F32.gguf"))
	if err != nil {
		return 0, err
	}
	defer src.Close()
	for _, kv := range src.KV {
		if strings.HasPrefix(kv.Key, "tokenizer.") {
			if err := w.AddKV(kv.Key, kv.Value); err != nil {
				return 0, err
			}
		}
	}
	toks, _ := src.Strings("tokenizer.ggml.tokens")
	return uint64(len(toks)), nil
}

// randomTensors adds tensors to a writer: F16 weights N(0, 0.02²), F32
// vectors of ones (norm weights) or zeros (biases).
type randomTensors struct {
	w   *gguf.Writer
	r   *rand.Rand
	err error
}

func (t *randomTensors) add(name string, typ gguf.Type, shape []uint64, data []byte) {
	if t.err == nil {
		t.err = t.w.AddTensor(name, typ, shape, data)
	}
}

func (t *randomTensors) f16(name string, shape ...uint64) {
	n := uint64(1)
	for _, d := range shape {
		n *= d
	}
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(t.r.NormFloat64() * 0.02)
	}
	b := make([]byte, 2*n)
	tensor.StoreKV(gguf.TypeF16, v, b)
	t.add(name, gguf.TypeF16, shape, b)
}

func (t *randomTensors) vec(name string, n int, value float32) {
	t.add(name, gguf.TypeF32, []uint64{uint64(n)}, f32s(n, func() float32 { return value }))
}

func writeGemma3FullProjector(path string, r *rand.Rand) error {
	side := uint64(g3Image / g3Patch)
	w, err := newWriter([]pair{
		{"general.architecture", "clip"}, {"general.name", "gemma3-4b-shaped-mmproj"},
		{"clip.projector_type", "gemma3"}, {"clip.has_vision_encoder", true}, {"clip.use_gelu", true},
		{"clip.vision.image_size", uint32(g3Image)}, {"clip.vision.patch_size", uint32(g3Patch)},
		{"clip.vision.embedding_length", uint32(g3Width)}, {"clip.vision.feed_forward_length", uint32(g3FF)},
		{"clip.vision.block_count", uint32(g3Blocks)}, {"clip.vision.attention.head_count", uint32(g3Heads)},
		{"clip.vision.attention.layer_norm_epsilon", float32(1e-6)}, {"clip.vision.projection_dim", uint32(g3Text)},
		{"clip.vision.image_mean", []float32{0.5, 0.5, 0.5}}, {"clip.vision.image_std", []float32{0.5, 0.5, 0.5}},
		{"clip.vision.projector.scale_factor", uint32(4)},
	})
	if err != nil {
		return err
	}
	t := &randomTensors{w: w, r: r}
	t.f16("v.patch_embd.weight", g3Patch, g3Patch, 3, g3Width)
	t.vec("v.patch_embd.bias", g3Width, 0)
	t.add("v.position_embd.weight", gguf.TypeF32, []uint64{g3Width, side * side}, f32s(int(g3Width*side*side), func() float32 { return float32(r.NormFloat64() * 0.02) }))
	for i := 0; i < g3Blocks; i++ {
		n := func(s string) string { return fmt.Sprintf("v.blk.%d.%s", i, s) }
		for _, ln := range []string{"ln1", "ln2"} {
			t.vec(n(ln+".weight"), g3Width, 1)
			t.vec(n(ln+".bias"), g3Width, 0)
		}
		for _, m := range []string{"attn_q", "attn_k", "attn_v", "attn_out"} {
			t.f16(n(m+".weight"), g3Width, g3Width)
			t.vec(n(m+".bias"), g3Width, 0)
		}
		t.f16(n("ffn_up.weight"), g3Width, g3FF)
		t.vec(n("ffn_up.bias"), g3FF, 0)
		t.f16(n("ffn_down.weight"), g3FF, g3Width)
		t.vec(n("ffn_down.bias"), g3Width, 0)
	}
	t.vec("v.post_ln.weight", g3Width, 1)
	t.vec("v.post_ln.bias", g3Width, 0)
	t.vec("mm.soft_emb_norm.weight", g3Width, 1)
	t.f16("mm.input_projection.weight", g3Text, g3Width)
	if t.err != nil {
		return t.err
	}
	return w.WriteFile(path)
}

func writeGemma3FullText(path string, r *rand.Rand) error {
	const heads, kvHeads, headDim, ff = 8, 4, 256, 1024
	w, err := newWriter([]pair{
		{"general.architecture", "gemma3"}, {"general.name", "gemma3-4b-width-1-layer"},
		{"gemma3.context_length", uint32(8192)}, {"gemma3.embedding_length", uint32(g3Text)}, {"gemma3.block_count", uint32(1)},
		{"gemma3.feed_forward_length", uint32(ff)}, {"gemma3.attention.head_count", uint32(heads)},
		{"gemma3.attention.head_count_kv", uint32(kvHeads)}, {"gemma3.attention.key_length", uint32(headDim)},
		{"gemma3.attention.value_length", uint32(headDim)}, {"gemma3.attention.layer_norm_rms_epsilon", float32(1e-6)},
		{"gemma3.rope.freq_base", float32(1e6)}, {"gemma3.attention.sliding_window", uint32(1024)},
	})
	if err != nil {
		return err
	}
	nvocab, err := tinyQwen3Tokenizer(w)
	if err != nil {
		return err
	}
	t := &randomTensors{w: w, r: r}
	t.f16("token_embd.weight", g3Text, nvocab)
	t.vec("output_norm.weight", g3Text, 1)
	for _, v := range []string{"attn_norm", "post_attention_norm", "ffn_norm", "post_ffw_norm"} {
		t.vec("blk.0."+v+".weight", g3Text, 1)
	}
	t.vec("blk.0.attn_q_norm.weight", headDim, 1)
	t.vec("blk.0.attn_k_norm.weight", headDim, 1)
	t.f16("blk.0.attn_q.weight", g3Text, heads*headDim)
	t.f16("blk.0.attn_k.weight", g3Text, kvHeads*headDim)
	t.f16("blk.0.attn_v.weight", g3Text, kvHeads*headDim)
	t.f16("blk.0.attn_output.weight", heads*headDim, g3Text)
	t.f16("blk.0.ffn_gate.weight", g3Text, ff)
	t.f16("blk.0.ffn_up.weight", g3Text, ff)
	t.f16("blk.0.ffn_down.weight", ff, g3Text)
	if t.err != nil {
		return t.err
	}
	return w.WriteFile(path)
}

// Qwen2.5-VL 3B's vision shape (its mmproj as llama.cpp converts it) and
// text width.
const (
	q25Patch, q25Width, q25FF, q25Blocks, q25Heads, q25FullEvery, q25Text = 14, 1280, 3420, 32, 16, 8, 2048
)

// Qwen25VLFull writes into dir a projector of Qwen2.5-VL 3B's vision shape
// (patches of 14 from two kernels, width 1280, 32 blocks of 16 heads with
// RMSNorm and SwiGLU, every 8th attending globally and the rest within
// 112-pixel windows, the 2x2 merger 5120 -> 5120 -> 2048; random F16
// weights) and a one-layer qwen2vl text model of width 2048 with
// tiny-qwen3's vocabulary to pair it with, for timing image encoding side
// by side with llama.cpp. Files already in dir are kept. It returns the
// two paths.
func Qwen25VLFull(dir string) (text, proj string, err error) {
	text, proj = filepath.Join(dir, "qwen25vl-full-text-F16.gguf"), filepath.Join(dir, "qwen25vl-full-mmproj-F16.gguf")
	err = writeMissing(rand.New(rand.NewPCG(2026, 26)), proj, writeQwen25VLFullProjector, text, writeQwen25VLFullText)
	return text, proj, err
}

func writeQwen25VLFullProjector(path string, r *rand.Rand) error {
	w, err := newWriter([]pair{
		{"general.architecture", "clip"}, {"general.name", "qwen25vl-3b-shaped-mmproj"},
		{"clip.projector_type", "qwen2.5vl_merger"}, {"clip.has_vision_encoder", true}, {"clip.use_silu", true},
		{"clip.vision.image_size", uint32(560)}, {"clip.vision.patch_size", uint32(q25Patch)},
		{"clip.vision.embedding_length", uint32(q25Width)}, {"clip.vision.feed_forward_length", uint32(q25FF)},
		{"clip.vision.block_count", uint32(q25Blocks)}, {"clip.vision.attention.head_count", uint32(q25Heads)},
		{"clip.vision.attention.layer_norm_epsilon", float32(1e-6)}, {"clip.vision.projection_dim", uint32(q25Text)},
		{"clip.vision.image_mean", []float32{0.48145466, 0.4578275, 0.40821073}},
		{"clip.vision.image_std", []float32{0.26862954, 0.26130258, 0.27577711}},
		{"clip.vision.n_wa_pattern", uint32(q25FullEvery)},
	})
	if err != nil {
		return err
	}
	t := &randomTensors{w: w, r: r}
	t.f16("v.patch_embd.weight", q25Patch, q25Patch, 3, q25Width)
	t.f16("v.patch_embd.weight.1", q25Patch, q25Patch, 3, q25Width)
	for i := 0; i < q25Blocks; i++ {
		n := func(s string) string { return fmt.Sprintf("v.blk.%d.%s", i, s) }
		t.vec(n("ln1.weight"), q25Width, 1)
		t.vec(n("ln2.weight"), q25Width, 1)
		for _, m := range []string{"attn_q", "attn_k", "attn_v", "attn_out"} {
			t.f16(n(m+".weight"), q25Width, q25Width)
			t.vec(n(m+".bias"), q25Width, 0)
		}
		for _, m := range []string{"ffn_gate", "ffn_up"} {
			t.f16(n(m+".weight"), q25Width, q25FF)
			t.vec(n(m+".bias"), q25FF, 0)
		}
		t.f16(n("ffn_down.weight"), q25FF, q25Width)
		t.vec(n("ffn_down.bias"), q25Width, 0)
	}
	t.vec("v.post_ln.weight", q25Width, 1)
	t.f16("mm.0.weight", 4*q25Width, 4*q25Width)
	t.vec("mm.0.bias", 4*q25Width, 0)
	t.f16("mm.2.weight", 4*q25Width, q25Text)
	t.vec("mm.2.bias", q25Text, 0)
	if t.err != nil {
		return t.err
	}
	return w.WriteFile(path)
}

func writeQwen25VLFullText(path string, r *rand.Rand) error {
	const heads, kvHeads, ff = 16, 2, 1024
	w, err := newWriter([]pair{
		{"general.architecture", "qwen2vl"}, {"general.name", "qwen25vl-3b-width-1-layer"},
		{"qwen2vl.context_length", uint32(8192)}, {"qwen2vl.embedding_length", uint32(q25Text)}, {"qwen2vl.block_count", uint32(1)},
		{"qwen2vl.feed_forward_length", uint32(ff)}, {"qwen2vl.attention.head_count", uint32(heads)},
		{"qwen2vl.attention.head_count_kv", uint32(kvHeads)}, {"qwen2vl.attention.layer_norm_rms_epsilon", float32(1e-6)},
		{"qwen2vl.rope.freq_base", float32(1e6)}, {"qwen2vl.rope.dimension_sections", []int32{16, 24, 24, 0}},
	})
	if err != nil {
		return err
	}
	nvocab, err := tinyQwen3Tokenizer(w)
	if err != nil {
		return err
	}
	headDim := uint64(q25Text / heads)
	t := &randomTensors{w: w, r: r}
	t.f16("token_embd.weight", q25Text, nvocab)
	t.vec("output_norm.weight", q25Text, 1)
	t.vec("blk.0.attn_norm.weight", q25Text, 1)
	t.vec("blk.0.ffn_norm.weight", q25Text, 1)
	t.f16("blk.0.attn_q.weight", q25Text, heads*headDim)
	t.vec("blk.0.attn_q.bias", int(heads*headDim), 0)
	t.f16("blk.0.attn_k.weight", q25Text, kvHeads*headDim)
	t.vec("blk.0.attn_k.bias", int(kvHeads*headDim), 0)
	t.f16("blk.0.attn_v.weight", q25Text, kvHeads*headDim)
	t.vec("blk.0.attn_v.bias", int(kvHeads*headDim), 0)
	t.f16("blk.0.attn_output.weight", heads*headDim, q25Text)
	t.f16("blk.0.ffn_gate.weight", q25Text, ff)
	t.f16("blk.0.ffn_up.weight", q25Text, ff)
	t.f16("blk.0.ffn_down.weight", ff, q25Text)
	if t.err != nil {
		return t.err
	}
	return w.WriteFile(path)
}
