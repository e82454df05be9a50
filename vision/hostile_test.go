package vision

import (
	"bytes"
	"image"
	"math"
	"strings"
	"testing"

	"github.com/stepflash/stepflash/gguf"
	"github.com/stepflash/stepflash/internal/testmodels"
)

// tensorSpec is one tensor of a rewritten file.
type tensorSpec struct {
	typ   gguf.Type
	shape []uint64
	data  []byte
}

// rewrite copies the tiny projector with its metadata and tensors changed
// (a nil value or spec removes the key or tensor; new ones are added) and
// parses it.
func rewrite(t *testing.T, kv map[string]any, tensors map[string]*tensorSpec) *gguf.File {
	t.Helper()
	return rewriteFile(t, testmodels.Path(t, tinyProjector), kv, tensors)
}

// rewriteFile is rewrite on the projector at path.
func rewriteFile(t *testing.T, path string, kv map[string]any, tensors map[string]*tensorSpec) *gguf.File {
	t.Helper()
	src, err := gguf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	w := gguf.NewWriter()
	for _, e := range src.KV {
		v, changed := kv[e.Key]
		if !changed {
			v = e.Value
		}
		if v == nil {
			continue
		}
		if err := w.AddKV(e.Key, v); err != nil {
			t.Fatal(err)
		}
	}
	for k, v := range kv {
		if _, ok := src.Get(k); !ok && v != nil {
			if err := w.AddKV(k, v); err != nil {
				t.Fatal(err)
			}
		}
	}
	for i := range src.Tensors {
		ti := &src.Tensors[i]
		spec, changed := tensors[ti.Name]
		if !changed {
			spec = &tensorSpec{ti.Type, ti.Shape, append([]byte(nil), src.TensorData(ti)...)}
		}
		if spec == nil {
			continue
		}
		if err := w.AddTensor(ti.Name, spec.typ, spec.shape, spec.data); err != nil {
			t.Fatal(err)
		}
	}
	for name, spec := range tensors {
		if _, ok := src.Tensor(name); !ok && spec != nil {
			if err := w.AddTensor(name, spec.typ, spec.shape, spec.data); err != nil {
				t.Fatal(err)
			}
		}
	}
	var buf bytes.Buffer
	if _, err := w.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	f, err := gguf.Read(buf.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func f32Tensor(shape ...uint64) *tensorSpec {
	n := uint64(1)
	for _, d := range shape {
		n *= d
	}
	return &tensorSpec{gguf.TypeF32, shape, make([]byte, 4*n)}
}

// g3kv and g3t turn the tiny idefics3 projector into a gemma3 one (64 ->
// 256), with more changes merged in.
func g3kv(more map[string]any) map[string]any {
	kv := map[string]any{"clip.projector_type": "gemma3", "clip.vision.projection_dim": uint32(256)}
	for k, v := range more {
		kv[k] = v
	}
	return kv
}

func g3t(more map[string]*tensorSpec) map[string]*tensorSpec {
	ts := map[string]*tensorSpec{"mm.model.fc.weight": nil, "mm.soft_emb_norm.weight": f32Tensor(64), "mm.input_projection.weight": f32Tensor(256, 64)}
	for k, v := range more {
		ts[k] = v
	}
	return ts
}

// TestHostileMetadata loads the tiny projector with one piece of metadata
// or one tensor broken at a time: each must fail with a clear error, never
// panic.
func TestHostileMetadata(t *testing.T) {
	cases := []struct {
		name    string
		kv      map[string]any
		tensors map[string]*tensorSpec
		want    string // in the error
	}{
		{"not clip", map[string]any{"general.architecture": "llama"}, nil, `"llama", want "clip"`},
		{"unsupported projector", map[string]any{"clip.projector_type": "llama4"}, nil, `projector type "llama4" is not supported (supported: [gemma3 idefics3 qwen2.5vl_merger qwen2vl_merger])`},
		{"gemma3", g3kv(nil), g3t(nil), ""},
		{"gemma3 without norm", g3kv(nil), g3t(map[string]*tensorSpec{"mm.soft_emb_norm.weight": nil}), `"mm.soft_emb_norm.weight" is missing`},
		{"gemma3 projection transposed", g3kv(nil), g3t(map[string]*tensorSpec{"mm.input_projection.weight": f32Tensor(64, 256)}), "mm.input_projection.weight"},
		{"gemma3 pool not dividing", g3kv(map[string]any{"clip.vision.projector.scale_factor": uint32(3)}), g3t(nil), "not a multiple of the pooling factor 3"},
		{"gemma3 default pool", g3kv(map[string]any{"clip.vision.projector.scale_factor": nil}), g3t(nil), ""},
		{"gemma3 no projection dim", g3kv(map[string]any{"clip.vision.projection_dim": nil}), g3t(map[string]*tensorSpec{"mm.input_projection.weight": nil}), "projection_dim is missing"},
		{"no projector type", map[string]any{"clip.projector_type": nil}, nil, "projector_type is missing"},
		{"no vision encoder", map[string]any{"clip.has_vision_encoder": false}, nil, "no vision encoder"},
		{"image size zero", map[string]any{"clip.vision.image_size": uint32(0)}, nil, "must be positive"},
		{"image size huge", map[string]any{"clip.vision.image_size": uint32(1 << 30)}, nil, "out of range"},
		{"image size not patches", map[string]any{"clip.vision.image_size": uint32(34)}, nil, "not a multiple of patch_size"},
		{"image size string", map[string]any{"clip.vision.image_size": "32"}, nil, "not a non-negative integer"},
		{"image size negative", map[string]any{"clip.vision.image_size": int32(-32)}, nil, "not a non-negative integer"},
		{"image size missing", map[string]any{"clip.vision.image_size": nil}, nil, "image_size is missing"},
		{"too many patches", map[string]any{"clip.vision.image_size": uint32(8192), "clip.vision.patch_size": uint32(1)}, nil, "patches per picture"},
		{"patch size zero", map[string]any{"clip.vision.patch_size": uint32(0)}, nil, "must be positive"},
		{"patch size other", map[string]any{"clip.vision.patch_size": uint32(8)}, nil, "v.patch_embd.weight"},
		{"width not heads", map[string]any{"clip.vision.embedding_length": uint32(66)}, nil, "not a multiple of head_count"},
		{"width mismatch", map[string]any{"clip.vision.embedding_length": uint32(128)}, nil, "ggml shape"},
		{"heads zero", map[string]any{"clip.vision.attention.head_count": uint32(0)}, nil, "must be positive"},
		{"ff mismatch", map[string]any{"clip.vision.feed_forward_length": uint32(256)}, nil, "ffn_up.weight"},
		{"blocks beyond tensors", map[string]any{"clip.vision.block_count": uint32(1000)}, nil, "exceeds the"},
		{"blocks missing", map[string]any{"clip.vision.block_count": uint32(3)}, nil, `"v.blk.2.ln1.weight" is missing`},
		{"eps nan", map[string]any{"clip.vision.attention.layer_norm_epsilon": float32(math.NaN())}, nil, "not a finite"},
		{"eps negative", map[string]any{"clip.vision.attention.layer_norm_epsilon": float32(-1)}, nil, "must be positive"},
		{"mean short", map[string]any{"clip.vision.image_mean": []float32{0.5, 0.5}}, nil, "want 3"},
		{"mean missing", map[string]any{"clip.vision.image_mean": nil}, nil, "image_mean is missing"},
		{"mean strings", map[string]any{"clip.vision.image_mean": []string{"a", "b", "c"}}, nil, "not an array of numbers"},
		{"std zero", map[string]any{"clip.vision.image_std": []float32{0.5, 0, 0.5}}, nil, "image_std[1] is zero"},
		{"std inf", map[string]any{"clip.vision.image_std": []float32{0.5, float32(math.Inf(1)), 0.5}}, nil, "not finite"},
		{"scale missing", map[string]any{"clip.vision.projector.scale_factor": nil}, nil, "scale_factor is missing"},
		{"scale not dividing", map[string]any{"clip.vision.projector.scale_factor": uint32(3)}, nil, "not a multiple of scale_factor"},
		{"scale mismatch", map[string]any{"clip.vision.projector.scale_factor": uint32(4)}, nil, "mm.model.fc.weight"},
		{"preproc missing", map[string]any{"clip.vision.preproc_image_size": nil}, nil, "preproc_image_size is missing"},
		{"preproc huge", map[string]any{"clip.vision.preproc_image_size": uint32(1 << 16)}, nil, "slices per side"},
		{"projection mismatch", map[string]any{"clip.vision.projection_dim": uint32(64)}, nil, "mm.model.fc.weight"},
		{"bool as int", map[string]any{"clip.use_gelu": uint32(1)}, nil, "not a boolean"},
		{"tensor missing", nil, map[string]*tensorSpec{"v.blk.1.attn_q.weight": nil}, `"v.blk.1.attn_q.weight" is missing`},
		{"position shape", nil, map[string]*tensorSpec{"v.position_embd.weight": f32Tensor(128, 32)}, "v.position_embd.weight"},
		{"patch embd shape", nil, map[string]*tensorSpec{"v.patch_embd.weight": f32Tensor(48, 64)}, "v.patch_embd.weight"},
		{"fc transposed", nil, map[string]*tensorSpec{"mm.model.fc.weight": f32Tensor(128, 256)}, "mm.model.fc.weight"},
		{"bias length", nil, map[string]*tensorSpec{"v.blk.0.attn_q.bias": f32Tensor(63)}, "v.blk.0.attn_q.bias"},
		{"norm as matrix", nil, map[string]*tensorSpec{"v.post_ln.weight": f32Tensor(64, 2)}, "v.post_ln.weight"},
		{"integer weights", nil, map[string]*tensorSpec{"v.blk.0.attn_k.weight": {gguf.TypeI32, []uint64{64, 64}, make([]byte, 4*64*64)}}, "unsupported"},
		{"integer vector", nil, map[string]*tensorSpec{"v.blk.0.ln1.weight": {gguf.TypeI8, []uint64{64}, make([]byte, 64)}}, "v.blk.0.ln1.weight"},
		{"gated ffn", nil, map[string]*tensorSpec{"v.blk.0.ffn_gate.weight": f32Tensor(64, 128)}, "gated ViT feed-forward"},
		{"extra tensor", nil, map[string]*tensorSpec{"v.unused.weight": f32Tensor(4)}, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := rewrite(t, c.kv, c.tensors)
			e, err := Load(f, Options{})
			if c.want == "" {
				if err != nil {
					t.Fatalf("unchanged file rejected: %v", err)
				}
				e.Close()
				return
			}
			if err == nil {
				e.Close()
				t.Fatalf("loaded; want an error containing %q", c.want)
			}
			t.Log(err)
			if !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %q does not contain %q", err, c.want)
			}
		})
	}
}

// TestHostileInputs feeds malformed pictures and images to a good encoder.
func TestHostileInputs(t *testing.T) {
	e := openTiny(t, 1)
	if _, err := e.Prepare(nil); err == nil {
		t.Error("nil image accepted")
	}
	if _, err := e.Prepare(image.NewGray(image.Rect(0, 0, 5, 0))); err == nil {
		t.Error("empty image accepted")
	}
	for _, pic := range []*RGB{nil, NewRGB(31, 32), {W: 32, H: 32, Pix: make([]uint8, 10)}} {
		if _, err := e.Encode(&Prepared{Pictures: []Picture{{Image: pic}}}); err == nil {
			t.Errorf("picture %v accepted", pic)
		}
	}
	if _, err := e.Layout(&Prepared{Pictures: []Picture{{Kind: Slice, Row: 1, Col: 1}}}, nil); err == nil {
		t.Error("layout with missing embeddings accepted")
	}
	if _, err := e.Layout(&Prepared{Pictures: []Picture{{Kind: Slice, Row: 1, Col: 1}}}, make([][][]float32, 1)); err == nil {
		t.Error("layout without overview accepted")
	}
}
