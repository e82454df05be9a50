package vision

import (
	"fmt"
	"math"

	"github.com/stepflash/stepflash/gguf"
	"github.com/stepflash/stepflash/tensor"
)

func init() {
	Register("qwen2vl_merger", newQwen2VL)
	Register("qwen2.5vl_merger", newQwen2VL)
}

// Qwen2VL is the qwen2vl_merger (Qwen2-VL) and qwen2.5vl_merger
// (Qwen2.5-VL) projector: dynamic resolution (the image resized, keeping
// its aspect ratio, to sides that are multiples of 2*PatchSize, between
// 8 and 4,096 output tokens, as llama.cpp's limits are), a patch embedding
// by two convolution kernels (the model's two temporal frames, both applied
// to a still image, summed), a ViT with 2-D RoPE and no position
// embeddings (LayerNorm and a quick-GELU MLP for Qwen2-VL; RMSNorm and a
// SwiGLU MLP for Qwen2.5-VL, whose layers other than every
// clip.vision.n_wa_pattern-th attend within windows of 112 pixels: the
// model's window_size, fixed in llama.cpp), then each 2x2 block of patches
// concatenated and put through mm.0, GELU, mm.2 to the text model's width.
//
// An image becomes one embeddings segment of Rows x Cols tokens (the
// merged grid) between "<|vision_start|>" and "<|vision_end|>", read by the
// text model with M-RoPE positions (Segment.Rows, Segment.Cols).
type Qwen2VL struct {
	cfg    *Config
	vit    *ViT
	Patch1 tensor.Matrix // v.patch_embd.weight.1: the second frame's kernel
	// Window is the attention window's side in merged tokens (Qwen2.5-VL);
	// FullEvery makes every FullEvery-th layer attend to the whole image.
	// Window 0: every layer attends to the whole image.
	Window, FullEvery int
	// MinPixels and MaxPixels bound the resized image's area.
	MinPixels, MaxPixels int
	MM0, MM2             tensor.Matrix // mm.0 (4*NEmbd -> hidden), mm.2 (hidden -> ProjectionDim)
	MM0B, MM2B           []float32
}

// Limits on the merged grid of llama.cpp's Qwen-VL preprocessing
// (clip_model_loader: set_limit_image_tokens(8, 4096)).
const (
	qwenMinTokens = 8
	qwenMaxTokens = 4096
)

func newQwen2VL(f *gguf.File, cfg *Config) (Projector, error) {
	t := cfg.ProjectorType
	v25 := t == "qwen2.5vl_merger"
	m := &cmeta{f: f}
	merge := m.uint("clip.vision.spatial_merge_size", maxImageSize, false)
	pattern := m.uint("clip.vision.n_wa_pattern", maxLayers, v25)
	if m.err != nil {
		return nil, m.err
	}
	if merge != 0 && merge != 2 {
		return nil, fmt.Errorf("vision: %s: spatial_merge_size %d is not supported (only 2, as llama.cpp's graph)", t, merge)
	}
	if p := cfg.PatchSize; 4*qwenMaxTokens*3*p*p > maxElements {
		// 4,096 tokens of 2x2 patches: the encoder's input alone would
		// pass maxElements (real files have patches of 14 or 16).
		return nil, fmt.Errorf("vision: %s: patch_size %d is too large (at most %d)", t, p, int(math.Sqrt(maxElements/(4*qwenMaxTokens*3))))
	}
	if cfg.HeadDim()%4 != 0 {
		return nil, fmt.Errorf("vision: %s: head size %d is not a multiple of 4 (the 2-D RoPE's sections)", t, cfg.HeadDim())
	}
	q := &Qwen2VL{cfg: cfg}
	align := 2 * cfg.PatchSize
	q.MinPixels, q.MaxPixels = qwenMinTokens*align*align, qwenMaxTokens*align*align
	if v25 && pattern > 0 {
		// Qwen2.5-VL's window_size; llama.cpp does not read a key for it.
		const window = 112
		q.Window, q.FullEvery = window/align, pattern
		if q.Window == 0 {
			return nil, fmt.Errorf("vision: %s: a patch of %d pixels is too large for the 112-pixel attention window", t, cfg.PatchSize)
		}
	}
	w := &weights{f: f}
	q.vit = loadViT(w, cfg, vitSpec{rope: true, rms: v25, gated: true})
	e, p := cfg.NEmbd, cfg.PatchSize
	q.Patch1 = w.matrix("v.patch_embd.weight.1", e, 3*p*p, false, p, p, 3, e)
	if q.vit.PatchB != nil && w.err == nil {
		w.fail("tensor v.patch_embd.bias: %s has no patch bias (llama.cpp refuses it)", t)
	}
	hidden := 0
	if ti, ok := f.Tensor("mm.0.weight"); ok && len(ti.Shape) == 2 && ti.Shape[1] <= maxDim {
		hidden = int(ti.Shape[1])
	}
	if ti, ok := f.Tensor("mm.2.weight"); ok && cfg.ProjectionDim == 0 && len(ti.Shape) == 2 && ti.Shape[1] <= maxDim {
		cfg.ProjectionDim = int(ti.Shape[1]) // no projection_dim key: the tensor says
	}
	if hidden <= 0 || cfg.ProjectionDim <= 0 {
		if w.err == nil {
			w.fail("%s: mm.0.weight or mm.2.weight is missing or misshapen (projection_dim %d)", t, cfg.ProjectionDim)
		}
		return nil, w.err
	}
	if 4*e*hidden > maxElements || hidden*cfg.ProjectionDim > maxElements {
		return nil, fmt.Errorf("vision: %s: merger of %d -> %d -> %d is too large", t, 4*e, hidden, cfg.ProjectionDim)
	}
	q.MM0 = w.matrix("mm.0.weight", hidden, 4*e, false)
	q.MM0B = w.vector("mm.0.bias", hidden, false)
	q.MM2 = w.matrix("mm.2.weight", cfg.ProjectionDim, hidden, false)
	q.MM2B = w.vector("mm.2.bias", cfg.ProjectionDim, false)
	if w.err != nil {
		return nil, w.err
	}
	return q, nil
}

// TokensPerPicture is 0: the number of tokens depends on the image (see
// SmartResize).
func (q *Qwen2VL) TokensPerPicture() int { return 0 }

// Grids is true: the text model must read the embeddings with M-RoPE.
func (q *Qwen2VL) Grids() bool { return true }

// SmartResize is the size Qwen-VL preprocessing resizes a w x h image to, as
// llama.cpp computes it (transformers' smart_resize): each side rounded to a
// multiple of align (at least align); if the area is then above maxPixels,
// both sides scaled down by sqrt(w*h/maxPixels) and floored to multiples of
// align; if below minPixels, scaled up by sqrt(minPixels/(w*h)) and rounded
// up. Float32 arithmetic, as llama.cpp's.
func SmartResize(w, h, align, minPixels, maxPixels int) (int, int) {
	f := float32(align)
	round := func(x float32) int { return int(math.Round(float64(x/f))) * align } // std::round: half away from zero
	floor := func(x float32) int { return int(math.Floor(float64(x/f))) * align }
	ceil := func(x float32) int { return int(math.Ceil(float64(x/f))) * align }
	hb := max(align, round(float32(h)))
	wb := max(align, round(float32(w)))
	if hb*wb > maxPixels {
		beta := float32(math.Sqrt(float64(float32(h*w) / float32(maxPixels))))
		hb = max(align, floor(float32(h)/beta))
		wb = max(align, floor(float32(w)/beta))
	} else if hb*wb < minPixels {
		beta := float32(math.Sqrt(float64(float32(minPixels) / float32(h*w))))
		hb = ceil(float32(h) * beta)
		wb = ceil(float32(w) * beta)
	}
	return wb, hb
}

// Prepare resizes img to its smart-resize size (bilinear, fitted with
// llama.cpp's PAD_CEIL letterbox: the aspect ratio kept, black bars of a
// pixel or so where the rounding leaves them).
func (q *Qwen2VL) Prepare(img *RGB) (*Prepared, error) {
	t := q.cfg.ProjectorType
	if img == nil || img.W <= 0 || img.H <= 0 || len(img.Pix) != 3*img.W*img.H {
		return nil, fmt.Errorf("vision: %s: not an RGB image", t)
	}
	align := 2 * q.cfg.PatchSize
	w, h := SmartResize(img.W, img.H, align, q.MinPixels, q.MaxPixels)
	if w <= 0 || h <= 0 || (w/align)*(h/align) > qwenMaxTokens || w > maxImageSize*8 || h > maxImageSize*8 {
		return nil, fmt.Errorf("vision: %s: a %dx%d image resizes to %dx%d, out of range", t, img.W, img.H, w, h)
	}
	return &Prepared{Pictures: []Picture{{Kind: Overview, Image: img.Fit(w, h, [3]uint8{})}}}, nil
}

// Encode runs each picture (sides multiples of 2*PatchSize) through the
// encoder and the merger; out[i] holds its tokens row-major over the merged
// grid.
func (q *Qwen2VL) Encode(pool *tensor.Pool, pics []*RGB) ([][][]float32, error) {
	out := make([][][]float32, len(pics))
	for i, pic := range pics {
		emb, err := q.encode(pool, pic)
		if err != nil {
			return nil, fmt.Errorf("vision: %s: picture %d: %w", q.cfg.ProjectorType, i, err)
		}
		out[i] = emb
	}
	return out, nil
}

// grid is the merged-token grid of a picture.
func (q *Qwen2VL) grid(pic *RGB) (rows, cols int, err error) {
	align := 2 * q.cfg.PatchSize
	if pic.W%align != 0 || pic.H%align != 0 || pic.W <= 0 || pic.H <= 0 {
		return 0, 0, fmt.Errorf("%dx%d is not a multiple of %d on both sides", pic.W, pic.H, align)
	}
	rows, cols = pic.H/align, pic.W/align
	if rows*cols > qwenMaxTokens {
		return 0, 0, fmt.Errorf("%d tokens, more than %d", rows*cols, qwenMaxTokens)
	}
	return rows, cols, nil
}

func (q *Qwen2VL) encode(pool *tensor.Pool, pic *RGB) ([][]float32, error) {
	c := q.cfg
	rows, cols, err := q.grid(pic)
	if err != nil {
		return nil, err
	}
	e, p := c.NEmbd, c.PatchSize
	nt := rows * cols
	n := 4 * nt
	// order[j] is the merged token (raster index) at place j of the
	// encoder's rows: raster order, or window after window (each window's
	// tokens raster order within it) when the layers use windows. Rows
	// 4j..4j+3 are that token's patches (dy, dx) = (0,0), (0,1), (1,0), (1,1).
	order := make([]int, 0, nt)
	l := &vitLayout{full: []span{{0, n}}, pos: make([][2]int, n)}
	if q.Window > 0 {
		gw := q.Window
		for y := 0; y < rows; y += gw {
			for x := 0; x < cols; x += gw {
				start := len(order)
				for dy := 0; dy < min(gw, rows-y); dy++ {
					for dx := 0; dx < min(gw, cols-x); dx++ {
						order = append(order, (y+dy)*cols+x+dx)
					}
				}
				l.window = append(l.window, span{4 * start, 4 * (len(order) - start)})
			}
		}
		l.fullEvery = q.FullEvery
	} else {
		for j := 0; j < nt; j++ {
			order = append(order, j)
		}
	}
	width := 3 * p * p
	x := make([]float32, n*width)
	for j, tok := range order {
		Y, X := tok/cols, tok%cols
		for k := 0; k < 4; k++ {
			py, px := 2*Y+k/2, 2*X+k%2
			r := 4*j + k
			l.pos[r] = [2]int{py, px}
			q.vit.patch(x[r*width:][:width], pic, py, px)
		}
	}
	h := make([]float32, n*e)
	h1 := make([]float32, n*e)
	tensor.MatMulMany(pool, []tensor.Matrix{q.vit.PatchW, q.Patch1}, x, n, [][]float32{h, h1})
	tensor.Add(h, h1)
	q.vit.blocks(pool, h, l)
	// The merger: each token's 4 rows side by side are one row of 4*e.
	hidden := q.MM0.Rows
	mid := make([]float32, nt*hidden)
	tensor.MatMul(pool, q.MM0, h, nt, mid)
	addBias(pool, mid, q.MM0B)
	pool.For(nt, func(lo, hi int) { tensor.GELU(mid[lo*hidden : hi*hidden]) })
	dim := c.ProjectionDim
	proj := make([]float32, nt*dim)
	tensor.MatMul(pool, q.MM2, mid, nt, proj)
	addBias(pool, proj, q.MM2B)
	emb := make([][]float32, nt)
	for j, tok := range order {
		emb[tok] = proj[j*dim : (j+1)*dim : (j+1)*dim]
	}
	return emb, nil
}

// Layout lays a Qwen-VL image out as libmtmd does: "<|vision_start|>", the
// embeddings (a Rows x Cols grid read with 2-D positions),
// "<|vision_end|>".
func (q *Qwen2VL) Layout(p *Prepared, embd [][][]float32) ([]Segment, error) {
	t := q.cfg.ProjectorType
	if len(embd) != 1 || len(p.Pictures) != 1 || p.Pictures[0].Image == nil {
		return nil, fmt.Errorf("vision: %s: %d pictures, %d embeddings; want one of each", t, len(p.Pictures), len(embd))
	}
	rows, cols, err := q.grid(p.Pictures[0].Image)
	if err != nil {
		return nil, fmt.Errorf("vision: %s: %w", t, err)
	}
	if len(embd[0]) != rows*cols {
		return nil, fmt.Errorf("vision: %s: %d embeddings for a %dx%d grid", t, len(embd[0]), rows, cols)
	}
	return []Segment{
		{Text: "<|vision_start|>"},
		{Embeddings: embd[0], Rows: rows, Cols: cols},
		{Text: "<|vision_end|>"},
	}, nil
}
