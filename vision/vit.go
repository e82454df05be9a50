package vision

import (
	"fmt"
	"math"

	"github.com/stepflash/stepflash/tensor"
)

// ViT is the pre-norm vision transformer most clip projectors share
// (SigLIP, CLIP): a patch-embedding convolution (one matrix product over all
// patches), learned position embeddings, an optional pre-norm, blocks of
// LayerNorm -> multi-head attention -> residual, LayerNorm -> MLP ->
// residual (weights and biases, llama.cpp's tensor names under "v."), and
// an optional post-norm.
type ViT struct {
	cfg *Config

	PatchW tensor.Matrix // v.patch_embd.weight [P, P, 3, NEmbd]: NEmbd rows of 3*P*P ([c][ky][kx])
	PatchB []float32     // v.patch_embd.bias, optional
	Pos    []float32     // v.position_embd.weight [NEmbd, NPatches], row-major per patch
	PreW   []float32     // v.pre_ln, optional
	PreB   []float32
	Blocks []ViTBlock
	PostW  []float32 // v.post_ln, optional
	PostB  []float32

	act func([]float32)
}

// ViTBlock is one encoder layer.
type ViTBlock struct {
	LN1W, LN1B []float32
	Q, K, V, O tensor.Matrix
	QB, KB, VB []float32
	OB         []float32
	LN2W, LN2B []float32
	Up, Down   tensor.Matrix
	UpB, DownB []float32
}

// loadViT reads the encoder tensors of f and checks their shapes against cfg.
func loadViT(w *weights, cfg *Config) *ViT {
	e, ff, p := cfg.NEmbd, cfg.NFF, cfg.PatchSize
	v := &ViT{cfg: cfg}
	v.PatchW = w.matrix("v.patch_embd.weight", e, 3*p*p, false, p, p, 3, e)
	v.PatchB = w.vector("v.patch_embd.bias", e, true)
	v.Pos = w.vector("v.position_embd.weight", e*cfg.NPatches(), false, e, cfg.NPatches())
	v.PreW = w.vector("v.pre_ln.weight", e, true)
	v.PreB = w.vector("v.pre_ln.bias", e, true)
	v.PostW = w.vector("v.post_ln.weight", e, true)
	v.PostB = w.vector("v.post_ln.bias", e, true)
	v.Blocks = make([]ViTBlock, cfg.NLayer)
	for i := range v.Blocks {
		b := &v.Blocks[i]
		n := func(s string) string { return fmt.Sprintf("v.blk.%d.%s", i, s) }
		b.LN1W = w.vector(n("ln1.weight"), e, false)
		b.LN1B = w.vector(n("ln1.bias"), e, true)
		b.LN2W = w.vector(n("ln2.weight"), e, false)
		b.LN2B = w.vector(n("ln2.bias"), e, true)
		b.Q = w.matrix(n("attn_q.weight"), e, e, false)
		b.K = w.matrix(n("attn_k.weight"), e, e, false)
		b.V = w.matrix(n("attn_v.weight"), e, e, false)
		b.O = w.matrix(n("attn_out.weight"), e, e, false)
		b.QB = w.vector(n("attn_q.bias"), e, true)
		b.KB = w.vector(n("attn_k.bias"), e, true)
		b.VB = w.vector(n("attn_v.bias"), e, true)
		b.OB = w.vector(n("attn_out.bias"), e, true)
		b.Up = w.matrix(n("ffn_up.weight"), ff, e, false)
		b.UpB = w.vector(n("ffn_up.bias"), ff, true)
		b.Down = w.matrix(n("ffn_down.weight"), e, ff, false)
		b.DownB = w.vector(n("ffn_down.bias"), e, true)
		if _, gated := w.f.Tensor(n("ffn_gate.weight")); gated && w.err == nil {
			w.fail("tensor %q: gated ViT feed-forward layers are not supported", n("ffn_gate.weight"))
		}
	}
	if v.PreW == nil && v.PreB != nil {
		w.fail("tensor v.pre_ln.bias without v.pre_ln.weight")
	}
	if v.PostW == nil && v.PostB != nil {
		w.fail("tensor v.post_ln.bias without v.post_ln.weight")
	}
	switch cfg.Activation {
	case GELU:
		v.act = tensor.GELU
	case QuickGELU:
		v.act = tensor.QuickGELU
	default:
		v.act = silu
	}
	return v
}

// embedPatches writes the normalized patches of pics as rows of 3*P*P
// ([channel][ky][kx]) into x, patch index row*side + col, picture after
// picture.
func (v *ViT) embedPatches(pics []*RGB, x []float32) {
	c := v.cfg
	p, side, width := c.PatchSize, c.PatchesPerSide(), 3*c.PatchSize*c.PatchSize
	mean, std := c.ImageMean, c.ImageStd // ggml: (u8/255 - mean) / std, in float32
	for pi, pic := range pics {
		for py := 0; py < side; py++ {
			for px := 0; px < side; px++ {
				row := x[((pi*side+py)*side+px)*width:][:width]
				for ch := 0; ch < 3; ch++ {
					for ky := 0; ky < p; ky++ {
						src := pic.Pix[3*((py*p+ky)*pic.W+px*p):]
						dst := row[(ch*p+ky)*p:][:p]
						for kx := range dst {
							dst[kx] = (float32(src[3*kx+ch])/255 - mean[ch]) / std[ch]
						}
					}
				}
			}
		}
	}
}

// forward runs pics (each ImageSize x ImageSize) through the encoder and
// returns the final hidden states, NPatches rows of NEmbd per picture.
func (v *ViT) forward(pool *tensor.Pool, pics []*RGB) []float32 {
	c := v.cfg
	e, np := c.NEmbd, c.NPatches()
	n := len(pics) * np // rows: all patches of all pictures
	x := make([]float32, n*3*c.PatchSize*c.PatchSize)
	v.embedPatches(pics, x)
	h := make([]float32, n*e)
	tensor.MatMul(pool, v.PatchW, x, n, h)
	addBias(pool, h, v.PatchB)
	pool.For(n, func(lo, hi int) {
		for r := lo; r < hi; r++ {
			tensor.Add(h[r*e:(r+1)*e], v.Pos[(r%np)*e:(r%np+1)*e])
		}
	})
	if v.PreW != nil {
		layerNorm(pool, h, h, v.PreW, v.PreB, e, c.Eps)
	}
	cur := make([]float32, n*e)
	q, k, val := make([]float32, n*e), make([]float32, n*e), make([]float32, n*e)
	attn := make([]float32, n*e)
	dp := (c.HeadDim() + 15) &^ 15
	kh, vh := make([]float32, len(pics)*c.NHead*np*dp), make([]float32, len(pics)*c.NHead*np*dp) // attention's head-major keys and values
	up := make([]float32, n*c.NFF)
	for i := range v.Blocks {
		b := &v.Blocks[i]
		layerNorm(pool, cur, h, b.LN1W, b.LN1B, e, c.Eps)
		tensor.MatMulMany(pool, []tensor.Matrix{b.Q, b.K, b.V}, cur, n, [][]float32{q, k, val})
		addBias(pool, q, b.QB)
		addBias(pool, k, b.KB)
		addBias(pool, val, b.VB)
		v.attention(pool, q, k, val, attn, kh, vh, len(pics))
		tensor.MatMul(pool, b.O, attn, n, cur)
		addBias(pool, cur, b.OB)
		tensor.Add(h, cur)

		layerNorm(pool, cur, h, b.LN2W, b.LN2B, e, c.Eps)
		tensor.MatMul(pool, b.Up, cur, n, up)
		addBias(pool, up, b.UpB)
		pool.For(n, func(lo, hi int) { v.act(up[lo*c.NFF : hi*c.NFF]) })
		tensor.MatMul(pool, b.Down, up, n, cur)
		addBias(pool, cur, b.DownB)
		tensor.Add(h, cur)
	}
	if v.PostW != nil {
		layerNorm(pool, h, h, v.PostW, v.PostB, e, c.Eps)
	}
	return h
}

// attention computes full (unmasked) multi-head attention within each
// picture: out = softmax(q kᵀ / sqrt(d)) v per head, as ggml's soft_max_ext
// with a scale. The keys and values are first laid out head by head
// (contiguous rows, zero-padded to a multiple of 16 elements so that the
// SIMD kernels take them: SigLIP's heads are 72 wide); then each job takes
// a tile of one head's queries through the text model's attention kernels
// (tensor.AttnScores, tensor.AttnPV), reading the head's keys once for the
// whole tile. The zeros add nothing to the dot products.
//
// kh and vh are the head-major buffers ([pic][head][patch][dp], dp the
// head size rounded up to 16): the padding must be zero, and stays so.
func (v *ViT) attention(pool *tensor.Pool, q, k, val, out, kh, vh []float32, npics int) {
	c := v.cfg
	e, np, nh, d := c.NEmbd, c.NPatches(), c.NHead, c.HeadDim()
	dp := (d + 15) &^ 15
	scale := float32(1 / math.Sqrt(float64(d)))
	pool.For(npics*np, func(lo, hi int) {
		for r := lo; r < hi; r++ {
			pic, i := r/np, r%np
			for h := 0; h < nh; h++ {
				dst := ((pic*nh+h)*np + i) * dp
				copy(kh[dst:dst+d], k[r*e+h*d:][:d])
				copy(vh[dst:dst+d], val[r*e+h*d:][:d])
			}
		}
	})
	const tile = 16
	tiles := (np + tile - 1) / tile
	pool.For(npics*nh*tiles, func(lo, hi int) {
		qt := make([]float32, tile*dp) // the padding stays zero
		sc := make([]float32, tile*np)
		ot := make([]float32, tile*dp)
		cnt := make([]int, tile)
		for job := lo; job < hi; job++ {
			t0 := (job % tiles) * tile
			h := (job / tiles) % nh
			pic := job / (tiles * nh)
			m := min(tile, np-t0)
			for i := 0; i < m; i++ {
				copy(qt[i*dp:i*dp+d], q[(pic*np+t0+i)*e+h*d:][:d])
				cnt[i] = np
			}
			hk := kh[(pic*nh+h)*np*dp:][:np*dp]
			hv := vh[(pic*nh+h)*np*dp:][:np*dp]
			tensor.AttnScores(qt[:m*dp], m, dp, hk, np, sc, np)
			for i := 0; i < m; i++ {
				row := sc[i*np : (i+1)*np]
				tensor.Scale(row, scale)
				tensor.Softmax(row)
			}
			clear(ot[:m*dp])
			tensor.AttnPV(sc, np, cnt[:m], hv, dp, ot)
			for i := 0; i < m; i++ {
				copy(out[(pic*np+t0+i)*e+h*d:][:d], ot[i*dp:i*dp+d])
			}
		}
	})
}

// addBias adds b (len = row width) to every row of x; nil b is no bias.
func addBias(pool *tensor.Pool, x, b []float32) {
	if b == nil {
		return
	}
	w := len(b)
	pool.For(len(x)/w, func(lo, hi int) {
		for r := lo; r < hi; r++ {
			tensor.Add(x[r*w:(r+1)*w], b)
		}
	})
}

// layerNorm sets each row of dst (width e) to LayerNorm(row of x) * w + b,
// as ggml_norm computes it: float64 sums, float32 variance and scale.
// dst may alias x; nil b is no bias.
func layerNorm(pool *tensor.Pool, dst, x, w, b []float32, e int, eps float32) {
	pool.For(len(x)/e, func(lo, hi int) {
		for r := lo; r < hi; r++ {
			xr, dr := x[r*e:(r+1)*e], dst[r*e:(r+1)*e]
			var sum float64
			for _, v := range xr {
				sum += float64(v)
			}
			mean := float32(sum / float64(e))
			var sum2 float64
			for i, v := range xr {
				d := v - mean
				dr[i] = d
				sum2 += float64(d * d)
			}
			variance := float32(sum2 / float64(e))
			s := 1 / float32(math.Sqrt(float64(variance+eps)))
			for i := range dr {
				dr[i] = float32(dr[i]*s) * w[i]
			}
			if b != nil {
				tensor.Add(dr, b)
			}
		}
	})
}
