package vision

import (
	"fmt"
	"math"
	"sort"

	"github.com/stepflash/stepflash/tensor"
)

// ViT is the pre-norm vision transformer most clip projectors share
// (SigLIP, CLIP, Qwen2-VL): a patch-embedding convolution (one matrix
// product over all patches), learned position embeddings (or 2-D RoPE in
// the attention), an optional pre-norm, blocks of norm -> multi-head
// attention -> residual, norm -> MLP (gated or not) -> residual (weights
// and biases, llama.cpp's tensor names under "v."), and an optional
// post-norm. The norms are LayerNorm, or RMSNorm when RMS is set.
type ViT struct {
	cfg *Config

	PatchW tensor.Matrix // v.patch_embd.weight [P, P, 3, NEmbd]: NEmbd rows of 3*P*P ([c][ky][kx])
	PatchB []float32     // v.patch_embd.bias, optional
	Pos    []float32     // v.position_embd.weight [NEmbd, NPatches], row-major per patch (nil with RoPE)
	RMS    bool          // RMSNorm in place of LayerNorm
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
	// Gate, when present (ffn_gate), makes the MLP gated:
	// down(act(gate(x)) * up(x)), as llama.cpp's swiglu/geglu split.
	Gate  tensor.Matrix
	GateB []float32
}

// vitSpec says which variant of the encoder a projector's file holds.
type vitSpec struct {
	rope  bool // 2-D RoPE in the attention, no position embeddings
	rms   bool // RMSNorm
	gated bool // the MLP may be gated (ffn_gate)
}

// loadViT reads the encoder tensors of f and checks their shapes against cfg.
func loadViT(w *weights, cfg *Config, spec vitSpec) *ViT {
	e, ff, p := cfg.NEmbd, cfg.NFF, cfg.PatchSize
	v := &ViT{cfg: cfg, RMS: spec.rms}
	v.PatchW = w.matrix("v.patch_embd.weight", e, 3*p*p, false, p, p, 3, e)
	v.PatchB = w.vector("v.patch_embd.bias", e, true)
	if !spec.rope {
		v.Pos = w.vector("v.position_embd.weight", e*cfg.NPatches(), false, e, cfg.NPatches())
	}
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
			switch {
			case !spec.gated:
				w.fail("tensor %q: gated ViT feed-forward layers are not supported for %s", n("ffn_gate.weight"), cfg.ProjectorType)
			case cfg.Activation == QuickGELU:
				w.fail("tensor %q: a gated quick-GELU feed-forward layer is not supported", n("ffn_gate.weight"))
			}
			b.Gate = w.matrix(n("ffn_gate.weight"), ff, e, false)
			b.GateB = w.vector(n("ffn_gate.bias"), ff, true)
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
	side, width := c.PatchesPerSide(), 3*c.PatchSize*c.PatchSize
	for pi, pic := range pics {
		for py := 0; py < side; py++ {
			for px := 0; px < side; px++ {
				v.patch(x[((pi*side+py)*side+px)*width:][:width], pic, py, px)
			}
		}
	}
}

// patch writes the normalized patch (py, px) of pic into row, 3*P*P values
// ([channel][ky][kx]), as ggml: (u8/255 - mean) / std, in float32.
func (v *ViT) patch(row []float32, pic *RGB, py, px int) {
	c := v.cfg
	p, mean, std := c.PatchSize, c.ImageMean, c.ImageStd
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

// span is a range of rows that attend to each other: one picture, or one
// attention window.
type span struct{ start, n int }

// vitLayout says how the rows of one forward pass attend: within each of
// full's spans on full-attention layers, within each of window's on the
// others (nil: every layer is full; a layer il is full when
// (il+1)%fullEvery == 0), with 2-D RoPE positions (row, column) per row
// when pos is set.
type vitLayout struct {
	full, window []span
	fullEvery    int
	pos          [][2]int
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
	l := &vitLayout{full: make([]span, len(pics))}
	for i := range l.full {
		l.full[i] = span{i * np, np}
	}
	v.blocks(pool, h, l)
	return h
}

// blocks runs the pre-norm, the layers and the post-norm on h (rows of
// NEmbd: the embedded patches), in place.
func (v *ViT) blocks(pool *tensor.Pool, h []float32, l *vitLayout) {
	c := v.cfg
	e := c.NEmbd
	n := len(h) / e
	if v.PreW != nil {
		v.norm(pool, h, h, v.PreW, v.PreB)
	}
	cur := make([]float32, n*e)
	q, k, val := make([]float32, n*e), make([]float32, n*e), make([]float32, n*e)
	attn := make([]float32, n*e)
	dp := (c.HeadDim() + 15) &^ 15
	kh, vh := make([]float32, n*c.NHead*dp), make([]float32, n*c.NHead*dp) // attention's head-major keys and values
	up := make([]float32, n*c.NFF)
	var gate []float32
	for i := range v.Blocks {
		b := &v.Blocks[i]
		v.norm(pool, cur, h, b.LN1W, b.LN1B)
		tensor.MatMulMany(pool, []tensor.Matrix{b.Q, b.K, b.V}, cur, n, [][]float32{q, k, val})
		addBias(pool, q, b.QB)
		addBias(pool, k, b.KB)
		addBias(pool, val, b.VB)
		if l.pos != nil {
			v.rope(pool, q, l.pos)
			v.rope(pool, k, l.pos)
		}
		spans := l.full
		if l.window != nil && (l.fullEvery <= 0 || (i+1)%l.fullEvery != 0) {
			spans = l.window
		}
		v.attention(pool, q, k, val, attn, kh, vh, spans)
		tensor.MatMul(pool, b.O, attn, n, cur)
		addBias(pool, cur, b.OB)
		tensor.Add(h, cur)

		v.norm(pool, cur, h, b.LN2W, b.LN2B)
		tensor.MatMul(pool, b.Up, cur, n, up)
		addBias(pool, up, b.UpB)
		ff := c.NFF
		if b.Gate.Rows > 0 {
			if gate == nil {
				gate = make([]float32, n*ff)
			}
			tensor.MatMul(pool, b.Gate, cur, n, gate)
			addBias(pool, gate, b.GateB)
			glu := tensor.SwiGLU
			if c.Activation == GELU {
				glu = tensor.GeGLU
			}
			pool.For(n, func(lo, hi int) { glu(gate[lo*ff:hi*ff], up[lo*ff:hi*ff]) })
			tensor.MatMul(pool, b.Down, gate, n, cur)
		} else {
			pool.For(n, func(lo, hi int) { v.act(up[lo*ff : hi*ff]) })
			tensor.MatMul(pool, b.Down, up, n, cur)
		}
		addBias(pool, cur, b.DownB)
		tensor.Add(h, cur)
	}
	if v.PostW != nil {
		v.norm(pool, h, h, v.PostW, v.PostB)
	}
}

// norm is the encoder's normalization of each row: LayerNorm, or RMSNorm
// (then + b when b is set) when RMS is set.
func (v *ViT) norm(pool *tensor.Pool, dst, x, w, b []float32) {
	e := v.cfg.NEmbd
	if !v.RMS {
		layerNorm(pool, dst, x, w, b, e, v.cfg.Eps)
		return
	}
	pool.For(len(x)/e, func(lo, hi int) {
		for r := lo; r < hi; r++ {
			tensor.RMSNorm(dst[r*e:(r+1)*e], x[r*e:(r+1)*e], w, v.cfg.Eps)
			if b != nil {
				tensor.Add(dst[r*e:(r+1)*e], b)
			}
		}
	})
}

// rope applies the 2-D rotary embedding of Qwen2-VL's encoder to each head
// of each row of x, as ggml_rope_multi in GGML_ROPE_TYPE_VISION mode with
// sections of d/4 does (d the head size): element pairs (j, j+d/2), pair j
// < d/4 turned by row * 10000^(-4j/d), pair j >= d/4 by column *
// 10000^(-4(j-d/4)/d), the angles stepped by a float32 multiplication as
// ggml does.
func (v *ViT) rope(pool *tensor.Pool, x []float32, pos [][2]int) {
	c := v.cfg
	e, d := c.NEmbd, c.HeadDim()
	half, quarter := d/2, d/4
	scale := float32(math.Pow(10000, float64(float32(-2)/float32(half)))) // powf(10000, -2.0f/n_dims)
	pool.For(len(pos), func(lo, hi int) {
		cos, sin := make([]float32, half), make([]float32, half)
		for r := lo; r < hi; r++ {
			ty, tx := float32(pos[r][0]), float32(pos[r][1])
			for j := 0; j < half; j++ {
				var th float32
				if j < quarter {
					th = ty
					ty *= scale
				} else {
					th = tx
					tx *= scale
				}
				cos[j] = float32(math.Cos(float64(th)))
				sin[j] = float32(math.Sin(float64(th)))
			}
			for h := 0; h < c.NHead; h++ {
				row := x[r*e+h*d:][:d]
				for j := 0; j < half; j++ {
					x0, x1 := row[j], row[j+half]
					row[j] = float32(x0*cos[j]) - float32(x1*sin[j])
					row[j+half] = float32(x0*sin[j]) + float32(x1*cos[j])
				}
			}
		}
	})
}

// attention computes full (unmasked) multi-head attention within each
// span of rows: out = softmax(q kᵀ / sqrt(d)) v per head, as ggml's
// soft_max_ext with a scale. The keys and values are first laid out span by
// span, head by head (contiguous rows, zero-padded to a multiple of 16
// elements so that the SIMD kernels take them: SigLIP's heads are 72 wide);
// then each job takes a tile of one head's queries of one span through the
// text model's attention kernels (tensor.AttnScores, tensor.AttnPV),
// reading the head's keys once for the whole tile. The zeros add nothing to
// the dot products.
//
// kh and vh are the head-major buffers ([span][head][row][dp], dp the head
// size rounded up to 16; spans partition the rows in order): the padding
// must be zero, and stays so.
func (v *ViT) attention(pool *tensor.Pool, q, k, val, out, kh, vh []float32, spans []span) {
	c := v.cfg
	e, nh, d := c.NEmbd, c.NHead, c.HeadDim()
	dp := (d + 15) &^ 15
	scale := float32(1 / math.Sqrt(float64(d)))
	const tile = 16
	// firstJob[s] is the first job of span s: nh * its tiles each.
	firstJob := make([]int, len(spans)+1)
	longest := 0
	for i, sp := range spans {
		firstJob[i+1] = firstJob[i] + nh*((sp.n+tile-1)/tile)
		longest = max(longest, sp.n)
	}
	pool.For(len(spans), func(lo, hi int) {
		for _, sp := range spans[lo:hi] {
			for i := 0; i < sp.n; i++ {
				r := sp.start + i
				for h := 0; h < nh; h++ {
					dst := (sp.start*nh + h*sp.n + i) * dp
					copy(kh[dst:dst+d], k[r*e+h*d:][:d])
					copy(vh[dst:dst+d], val[r*e+h*d:][:d])
				}
			}
		}
	})
	pool.For(firstJob[len(spans)], func(lo, hi int) {
		qt := make([]float32, tile*dp) // the padding stays zero
		sc := make([]float32, tile*longest)
		ot := make([]float32, tile*dp)
		cnt := make([]int, tile)
		s := sort.SearchInts(firstJob, lo+1) - 1
		for job := lo; job < hi; job++ {
			for job >= firstJob[s+1] {
				s++
			}
			sp := spans[s]
			tiles := (sp.n + tile - 1) / tile
			t0 := ((job - firstJob[s]) % tiles) * tile
			h := (job - firstJob[s]) / tiles
			m := min(tile, sp.n-t0)
			for i := 0; i < m; i++ {
				copy(qt[i*dp:i*dp+d], q[(sp.start+t0+i)*e+h*d:][:d])
				cnt[i] = sp.n
			}
			hk := kh[(sp.start*nh+h*sp.n)*dp:][:sp.n*dp]
			hv := vh[(sp.start*nh+h*sp.n)*dp:][:sp.n*dp]
			tensor.AttnScores(qt[:m*dp], m, dp, hk, sp.n, sc, sp.n)
			for i := 0; i < m; i++ {
				row := sc[i*sp.n : (i+1)*sp.n]
				tensor.Scale(row, scale)
				tensor.Softmax(row)
			}
			clear(ot[:m*dp])
			tensor.AttnPV(sc, sp.n, cnt[:m], hv, dp, ot)
			for i := 0; i < m; i++ {
				copy(out[(sp.start+t0+i)*e+h*d:][:d], ot[i*dp:i*dp+d])
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
