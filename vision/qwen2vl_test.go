package vision

import (
	"image"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stepflash/stepflash/internal/synthmodels"
)

// qwenProjector writes a synthetic Qwen-VL projector (2.5 or 2) and returns
// its path.
func qwenProjector(t testing.TB, v25 bool) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "qwen-mmproj.gguf")
	if v25 {
		synthmodels.Qwen25VLProjector(t, path)
	} else {
		synthmodels.Qwen2VLProjector(t, path)
	}
	return path
}

// TestSmartResize: the sizes llama.cpp's Qwen-VL preprocessing gives, worked
// out by hand from its calc_size_preserved_ratio (align 28, 8 to 4,096
// tokens of 28x28 pixels).
func TestSmartResize(t *testing.T) {
	const align, minPx, maxPx = 28, 8 * 28 * 28, 4096 * 28 * 28
	cases := []struct{ w, h, ww, wh int }{
		{64, 64, 84, 84},         // 56x56 is below the minimum: scaled up by sqrt(6272/4096), rounded up
		{48, 20, 140, 56},        // scaled up: 122.7 x 51.1 rounded up
		{448, 448, 448, 448},     // already multiples
		{500, 300, 504, 308},     // rounded to the nearest multiple
		{1, 10000, 28, 9996},     // a sliver keeps at least one merged token a side
		{4000, 3000, 2044, 1540}, // above the maximum: scaled down by sqrt(w*h/max) = 1.933 (2069.2 x 1551.9), floored
	}
	for _, c := range cases {
		w, h := SmartResize(c.w, c.h, align, minPx, maxPx)
		if w != c.ww || h != c.wh {
			t.Errorf("%dx%d: %dx%d, want %dx%d", c.w, c.h, w, h, c.ww, c.wh)
		}
		if w%align != 0 || h%align != 0 || w*h > maxPx {
			t.Errorf("%dx%d: %dx%d is not aligned or too large", c.w, c.h, w, h)
		}
	}
}

// TestQwenVLGrid: an image becomes one embeddings segment whose grid is
// the resized image's merged tokens, between the vision markers, for both
// projector types; the embeddings do not depend on the thread count.
func TestQwenVLGrid(t *testing.T) {
	for _, v25 := range []bool{true, false} {
		path := qwenProjector(t, v25)
		var first [][]float32
		for _, threads := range []int{1, 3} {
			e, err := Open(path, Options{Threads: threads})
			if err != nil {
				t.Fatal(err)
			}
			img := image.NewNRGBA(image.Rect(0, 0, 48, 20))
			for i := range img.Pix {
				img.Pix[i] = uint8(i * 7)
			}
			segs, err := e.Embed(img)
			e.Close()
			if err != nil {
				t.Fatal(err)
			}
			if len(segs) != 3 || segs[0].Text != "<|vision_start|>" || segs[2].Text != "<|vision_end|>" || segs[1].Rows != 2 || segs[1].Cols != 5 || len(segs[1].Embeddings) != 10 {
				t.Fatalf("v25 %v: segments %+v", v25, segs)
			}
			if first == nil {
				first = segs[1].Embeddings
				continue
			}
			for i := range first {
				for j := range first[i] {
					if first[i][j] != segs[1].Embeddings[i][j] {
						t.Fatalf("v25 %v: token %d value %d: %g with 1 thread, %g with 3", v25, i, j, first[i][j], segs[1].Embeddings[i][j])
					}
				}
			}
		}
	}
}

// TestHostileQwenVL breaks the synthetic Qwen-VL projectors one piece at a
// time: each must fail to load with a clear error.
func TestHostileQwenVL(t *testing.T) {
	v25, v2 := qwenProjector(t, true), qwenProjector(t, false)
	cases := []struct {
		name    string
		path    string
		kv      map[string]any
		tensors map[string]*tensorSpec
		want    string
	}{
		{"qwen2.5vl", v25, nil, nil, ""},
		{"qwen2vl", v2, nil, nil, ""},
		{"no second kernel", v25, nil, map[string]*tensorSpec{"v.patch_embd.weight.1": nil}, `"v.patch_embd.weight.1" is missing`},
		{"patch bias", v25, nil, map[string]*tensorSpec{"v.patch_embd.bias": f32Tensor(64)}, "no patch bias"},
		{"no window pattern", v25, map[string]any{"clip.vision.n_wa_pattern": nil}, nil, "n_wa_pattern is missing"},
		{"qwen2vl without pattern", v2, map[string]any{"clip.vision.n_wa_pattern": nil}, nil, ""},
		{"merge 3", v25, map[string]any{"clip.vision.spatial_merge_size": uint32(3)}, nil, "spatial_merge_size 3 is not supported"},
		{"heads of 2", v25, map[string]any{"clip.vision.attention.head_count": uint32(32)}, nil, "not a multiple of 4"},
		{"patches past the limit", v25, map[string]any{"clip.vision.patch_size": uint32(128), "clip.vision.image_size": uint32(256)}, nil, "patch_size 128 is too large"},
		{"huge patches", v25, map[string]any{"clip.vision.patch_size": uint32(64), "clip.vision.image_size": uint32(128)}, nil, "too large for the 112-pixel"},
		{"no merger", v25, nil, map[string]*tensorSpec{"mm.0.weight": nil}, "mm.0.weight"},
		{"merger misshapen", v25, nil, map[string]*tensorSpec{"mm.0.weight": f32Tensor(128, 256)}, "mm.0.weight"},
		{"merger out mismatch", v25, map[string]any{"clip.vision.projection_dim": uint32(64)}, nil, "mm.2.weight"},
		{"gate misshapen", v25, nil, map[string]*tensorSpec{"v.blk.0.ffn_gate.weight": f32Tensor(64, 64)}, "ffn_gate.weight"},
		{"gated quick gelu", v25, map[string]any{"clip.use_silu": nil}, nil, "gated quick-GELU"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := rewriteFile(t, c.path, c.kv, c.tensors)
			e, err := Load(f, Options{})
			if c.want == "" {
				if err != nil {
					t.Fatalf("rejected: %v", err)
				}
				e.Close()
				return
			}
			if err == nil {
				e.Close()
				t.Fatalf("loaded; want an error containing %q", c.want)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %q does not contain %q", err, c.want)
			}
		})
	}
}

// FuzzPrepareEncodeQwen is FuzzPrepareEncode for the dynamic-resolution
// encoder: any image size and content becomes one grid of finite
// embeddings whose size is SmartResize's, or an error; never a panic.
func FuzzPrepareEncodeQwen(f *testing.F) {
	e, err := Open(qwenProjector(f, true), Options{Threads: 1})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { e.Close() })
	f.Add([]byte{64, 64, 200, 10, 10})
	f.Add([]byte{1, 1, 0})
	f.Add([]byte{255, 3, 1, 2, 3, 4})
	f.Add([]byte{47, 19, 9})
	f.Fuzz(func(t *testing.T, data []byte) {
		img, w, h := fuzzImage(data)
		if img == nil {
			return
		}
		segs, err := e.Embed(img)
		if err != nil {
			t.Fatalf("%dx%d: %v", w, h, err)
		}
		ww, wh := SmartResize(w, h, 28, 8*28*28, 4096*28*28)
		g := segs[1]
		if g.Rows != wh/28 || g.Cols != ww/28 || len(g.Embeddings) != g.Rows*g.Cols {
			t.Fatalf("%dx%d: a %dx%d grid of %d, want %dx%d", w, h, g.Rows, g.Cols, len(g.Embeddings), wh/28, ww/28)
		}
		for _, row := range g.Embeddings {
			for _, v := range row {
				if v != v || v > 1e30 || v < -1e30 {
					t.Fatalf("%dx%d: embedding value %g", w, h, v)
				}
			}
		}
	})
}
