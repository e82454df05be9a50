package model

import (
	"fmt"

	"github.com/stepflash/stepflash/gguf"
	"math"
	"sort"
	"sync"

	"github.com/stepflash/stepflash/tensor"
)

// Attention holds the projections of a self-attention block.
type Attention struct {
	Q tensor.Matrix `gguf:"attn_q"`
	K tensor.Matrix `gguf:"attn_k"`
	V tensor.Matrix `gguf:"attn_v"`
	O tensor.Matrix `gguf:"attn_output"`
}

// QKNorm holds per-head RMSNorm weights applied to queries and keys before RoPE (Qwen3).
type QKNorm struct {
	Q []float32 `gguf:"attn_q_norm"`
	K []float32 `gguf:"attn_k_norm"`
}

// QKVBias holds the biases some architectures add to the query, key and
// value projections (Qwen2, Qwen2-VL); each is optional, as llama.cpp's.
type QKVBias struct {
	Q []float32 `gguf:"attn_q.bias,optional"`
	K []float32 `gguf:"attn_k.bias,optional"`
	V []float32 `gguf:"attn_v.bias,optional"`
}

// MLP is a SwiGLU feed-forward block: Down(silu(Gate h) ⊙ Up h).
type MLP struct {
	Gate tensor.Matrix `gguf:"ffn_gate"`
	Up   tensor.Matrix `gguf:"ffn_up"`
	Down tensor.Matrix `gguf:"ffn_down"`
}

// MoE is a routed mixture of SwiGLU experts.
type MoE struct {
	Router tensor.Matrix `gguf:"ffn_gate_inp"`
	Gate   Experts       `gguf:"ffn_gate_exps"`
	Up     Experts       `gguf:"ffn_up_exps"`
	Down   Experts       `gguf:"ffn_down_exps"`
}

// Output holds the token embedding, the final norm and the LM head.
type Output struct {
	TokenEmbd tensor.Matrix `gguf:"token_embd"`
	Norm      []float32     `gguf:"output_norm"`
	Head      tensor.Matrix `gguf:"output,optional"` // absent: tied to TokenEmbd
}

func (o *Output) head() tensor.Matrix {
	if o.Head.Data != nil {
		return o.Head
	}
	return o.TokenEmbd
}

func (o *Output) check(s *shapeCheck, c *Config) {
	if c.NVocab == 0 {
		c.NVocab = o.TokenEmbd.Rows
	}
	s.mat("token_embd", o.TokenEmbd, c.NVocab, c.NEmbd)
	s.vec("output_norm", o.Norm, c.NEmbd)
	s.mat("output", o.Head, c.NVocab, c.NEmbd)
}

func (a *Attention) check(s *shapeCheck, c *Config, layer int) {
	p := fmt.Sprintf("blk.%d.", layer)
	s.mat(p+"attn_q", a.Q, c.QDim(), c.NEmbd)
	s.mat(p+"attn_k", a.K, c.KVDim(), c.NEmbd)
	s.mat(p+"attn_v", a.V, c.VDim(), c.NEmbd)
	s.mat(p+"attn_output", a.O, c.NEmbd, c.QDim())
}

func (n *QKNorm) check(s *shapeCheck, c *Config, layer int) {
	p := fmt.Sprintf("blk.%d.", layer)
	s.vec(p+"attn_q_norm", n.Q, c.HeadDim)
	s.vec(p+"attn_k_norm", n.K, c.HeadDim)
}

func (q *QKVBias) check(s *shapeCheck, c *Config, layer int) {
	p := fmt.Sprintf("blk.%d.", layer)
	s.vec(p+"attn_q.bias", q.Q, c.QDim())
	s.vec(p+"attn_k.bias", q.K, c.KVDim())
	s.vec(p+"attn_v.bias", q.V, c.VDim())
}

func (m *MLP) check(s *shapeCheck, c *Config, layer int) {
	p := fmt.Sprintf("blk.%d.", layer)
	if c.NFF == 0 {
		c.NFF = m.Gate.Rows
	}
	s.mat(p+"ffn_gate", m.Gate, c.NFF, c.NEmbd)
	s.mat(p+"ffn_up", m.Up, c.NFF, c.NEmbd)
	s.mat(p+"ffn_down", m.Down, c.NEmbd, c.NFF)
}

func (m *MoE) check(s *shapeCheck, c *Config, layer int) {
	p := fmt.Sprintf("blk.%d.", layer)
	if c.ExpertFF == 0 {
		c.ExpertFF = m.Gate.Rows
	}
	s.mat(p+"ffn_gate_inp", m.Router, c.NExpert, c.NEmbd)
	s.experts(p+"ffn_gate_exps", m.Gate, c.NExpert, c.ExpertFF, c.NEmbd)
	s.experts(p+"ffn_up_exps", m.Up, c.NExpert, c.ExpertFF, c.NEmbd)
	s.experts(p+"ffn_down_exps", m.Down, c.NExpert, c.NEmbd, c.ExpertFF)
}

// runner holds the activations of one forward pass and the operations that
// transform them. Its buffers grow to the largest batch seen and are reused.
type runner struct {
	cfg  *Config
	pool *tensor.Pool
	rope RopeType
	// ropeFreq, when set, divides each rotation frequency (llama3 rope_freqs).
	ropeFreq []float32
	// local, when set, is the RoPE of the sliding-window layers (Gemma 3:
	// its own base, unscaled); attention with attnOpts.local uses it.
	local *localRope
	// embedScale, when not 0, multiplies the token embeddings (not the
	// Batch.Embeds rows): Gemma's √NEmbd.
	embedScale float32
	// attnScale multiplies the attention scores (0: 1/√HeadDim).
	attnScale float32
	// softcap, when not 0, caps the logits at ±softcap: softcap·tanh(x/softcap).
	softcap float32

	n        int       // tokens in the current batch
	x        []float32 // residual stream [n][NEmbd]
	h        []float32 // normalised input of the current sub-block [n][NEmbd]
	tmp      []float32 // sub-block output before the residual add [n][NEmbd]
	q, k, v  []float32 // [n][QDim], [n][KVDim], [n][VDim]
	att      []float32 // attention output [n][QDim]
	gate, up []float32 // [n][NFF or ExpertFF]
	cos, sin []float32 // [n][RopeDims/2]
	cosL     []float32 // the local RoPE's tables (runner.local)
	sinL     []float32
	part     []float32 // attention spans' parts: [item][max, sum, acc (HeadDimV)]
	spans    []int     // attention: per token, its first span's item index (÷ NHead)
	first    []int     // attention: per token, the index of its first span
	items    []attnItem
	// MoE scratch
	route   []float32 // router probabilities [n][NExpert]
	sel     []int     // chosen experts [n][NExpertUse]
	selW    []float32 // their weights [n][NExpertUse]
	xin     []float32 // gathered inputs for one expert
	xout    []float32
	outRows []int
}

// attnSpan is the most key positions one attention work item covers: a
// query over a longer context is split into spans of this many, worked on
// in parallel and merged (a whole number of cache blocks).
var attnSpan = 1024

// mergeSpans combines the spans' parts (each: max m, sum l of exp(s - m),
// and acc = Σ exp(s - m) v) into out = Σ acc e^(m-M) / Σ l e^(m-M), M the
// largest m, in span order.
func mergeSpans(parts []float32, nsp, hdv int, out []float32) {
	M := float32(math.Inf(-1))
	for s := 0; s < nsp; s++ {
		M = max(M, parts[s*(hdv+2)])
	}
	var total float64
	clear(out)
	for s := 0; s < nsp; s++ {
		p := parts[s*(hdv+2):][:hdv+2]
		w := float32(math.Exp(float64(p[0] - M)))
		total += float64(p[1]) * float64(w)
		tensor.Axpy(w, p[2:], out)
	}
	tensor.Scale(out, float32(1/total))
}

// attnTile is about how many queries share an attention work item: the
// query heads of one KV head for up to attnTile/group consecutive tokens.
var attnTile = 16

// attnItem is one attention work item: the queries of KV head g for the
// batch tokens [t0, t1) (one sequence, consecutive positions) over span sp.
type attnItem struct{ t0, t1, g, sp int }

// attnWork is one attention worker's scratch: a tile's queries (converted
// for the keys' type), scores, per-query counts and outputs, and cached
// blocks converted to float32.
type attnWork struct {
	q, sc, out, kbuf, vbuf []float32
	cnt, bcnt, off         []int
	kv                     tensor.KVScratch
	blocks                 [tensor.KVStreams][]byte
}

// kvRun returns how many cache blocks from position p0 on go through
// tensor.KVBlocksF32 side by side: the full blocks below to, at most
// tensor.KVStreams; 0 when the block at p0 is partial or the type is F32
// (whose rows are used in place).
func kvRun(t gguf.Type, p0, to, bs int) int {
	if t == gguf.TypeF32 {
		return 0
	}
	return min((to-p0)/bs, tensor.KVStreams)
}

var workPool = sync.Pool{New: func() any { return new(attnWork) }}

func grow(buf []float32, n int) []float32 {
	if cap(buf) < n {
		return make([]float32, n)
	}
	return buf[:n]
}

// begin validates b and sizes the buffers for it.
func (r *runner) begin(b *Batch, logits []float32) error {
	c := r.cfg
	n := len(b.Tokens)
	if n == 0 {
		return fmt.Errorf("model: empty batch")
	}
	if len(b.Pos) != n || len(b.Seq) != n || (b.Output != nil && len(b.Output) != n) || (b.ExpertsUsed != nil && len(b.ExpertsUsed) != n) ||
		(b.Embeds != nil && len(b.Embeds) != n) || (b.Hidden != nil && len(b.Hidden) != n) || (b.KeyEnd != nil && len(b.KeyEnd) != n) ||
		(b.RopePos != nil && len(b.RopePos) != n) {
		return fmt.Errorf("model: batch fields have different lengths")
	}
	for i, e := range b.Embeds {
		if e != nil && len(e) != c.NEmbd {
			return fmt.Errorf("model: the input embedding at batch index %d has %d values; the model's width is %d", i, len(e), c.NEmbd)
		}
	}
	for i, t := range b.Tokens {
		if t < 0 || int(t) >= c.NVocab {
			return fmt.Errorf("model: token %d at batch index %d is outside the vocabulary of %d", t, i, c.NVocab)
		}
		if b.Pos[i] < 0 {
			return fmt.Errorf("model: negative position %d at batch index %d", b.Pos[i], i)
		}
		if b.RopePos != nil && min(b.RopePos[i][0], b.RopePos[i][1], b.RopePos[i][2], b.RopePos[i][3]) < 0 {
			return fmt.Errorf("model: negative rotary position %v at batch index %d", b.RopePos[i], i)
		}
		if b.KeyEnd != nil && (b.KeyEnd[i] < b.Pos[i] || i > 0 && b.Seq[i] == b.Seq[i-1] && b.Pos[i] == b.Pos[i-1]+1 && b.KeyEnd[i] < b.KeyEnd[i-1]) {
			return fmt.Errorf("model: key end %d at batch index %d is before its position %d or its predecessor's key end", b.KeyEnd[i], i, b.Pos[i])
		}
		if b.ExpertsUsed != nil && (b.ExpertsUsed[i] < 0 || b.ExpertsUsed[i] > c.NExpertUse && c.NExpert > 0) {
			return fmt.Errorf("model: experts per token %d at batch index %d is outside 1..%d", b.ExpertsUsed[i], i, c.NExpertUse)
		}
	}
	if want := b.NumOutputs() * c.NVocab; len(logits) < want {
		return fmt.Errorf("model: logits buffer holds %d floats, need %d", len(logits), want)
	}
	if want := b.NumHidden() * c.NEmbd; len(b.HiddenOut) < want {
		return fmt.Errorf("model: hidden-state buffer holds %d floats, need %d", len(b.HiddenOut), want)
	}
	r.n = n
	ff := max(c.NFF, c.ExpertFF)
	r.x = grow(r.x, n*c.NEmbd)
	r.h = grow(r.h, n*c.NEmbd)
	r.tmp = grow(r.tmp, n*c.NEmbd)
	r.q = grow(r.q, n*c.QDim())
	r.k = grow(r.k, n*c.KVDim())
	r.v = grow(r.v, n*c.VDim())
	r.att = grow(r.att, n*c.NHead*c.HeadDimV)
	r.gate = grow(r.gate, n*ff)
	r.up = grow(r.up, n*ff)
	r.ropeTables(b)
	return nil
}

// localRope is the RoPE of sliding-window layers where it differs from the
// model's (Gemma 3: base rope.freq_base_swa, no position scaling).
type localRope struct {
	Base, Scale float32
}

// ropeTables computes cos/sin of every rotation angle for the batch positions,
// as ggml does: theta_i = pos * base^(-2i/d), built by repeated float32
// products, divided by llama 3's rope_freqs, times the position scale
// (1/factor); with YaRN, mixed with the unscaled angle by each dimension's
// ramp and the magnitude scaled (ggml's rope_yarn). With M-RoPE sections
// (Config.RopeSections), pair i takes pos from its section of
// Batch.RopePos (ggml_mrope_cache_init: four products, one per section,
// each advanced every pair).
func (r *runner) ropeTables(b *Batch) {
	c := r.cfg
	r.cos, r.sin = r.ropeTable(b, c.RopeBase, c.RopeScale, r.cos, r.sin)
	if r.local != nil {
		r.cosL, r.sinL = r.ropeTable(b, r.local.Base, r.local.Scale, r.cosL, r.sinL)
	}
}

// ropeTable fills cos and sin (grown to the batch) for one RoPE base and
// position scale; the rest of the scaling (YaRN's mix and magnitude) is
// the model's, as ggml_rope_ext takes them for every layer.
func (r *runner) ropeTable(b *Batch, base, pscale float32, cos, sin []float32) ([]float32, []float32) {
	c := r.cfg
	half := c.RopeDims / 2
	cos = grow(cos, r.n*half)
	sin = grow(sin, r.n*half)
	scale := float32(math.Pow(float64(base), -2.0/float64(c.RopeDims)))
	ext := c.Rope.ExtFactor
	mscale := c.Rope.YarnAttn * c.Rope.AttnFactor
	var low, high float32
	if ext != 0 {
		low, high = yarnCorrDims(c.RopeDims, c.Rope.OrigCtx, base, c.Rope.BetaFast, c.Rope.BetaSlow)
		mscale *= 1 + 0.1*logf(1/pscale)
	}
	mrope := c.RopeSections != [4]int{}
	for t := 0; t < r.n; t++ {
		// One angle per M-RoPE section: the batch's, or as llama.cpp
		// gives a text token, its position in all but the extra section
		// (without sections only theta[0] is used).
		p := float32(b.Pos[t])
		theta := [4]float32{p, p, p, 0}
		if mrope && b.RopePos != nil {
			for s, q := range b.RopePos[t] {
				theta[s] = float32(q)
			}
		}
		cs, sn := cos[t*half:(t+1)*half], sin[t*half:(t+1)*half]
		for i := 0; i < half; i++ {
			th := theta[0]
			if mrope {
				th = theta[c.ropeSection(i)]
			}
			if r.ropeFreq != nil {
				th /= r.ropeFreq[i]
			}
			extrap := th
			th *= pscale
			if ext != 0 {
				mix := yarnRamp(low, high, i) * ext
				th = th*(1-mix) + extrap*mix
			}
			cs[i] = float32(math.Cos(float64(th))) * mscale
			sn[i] = float32(math.Sin(float64(th))) * mscale
			if mrope {
				for s := range theta {
					theta[s] *= scale
				}
			} else {
				theta[0] *= scale
			}
		}
	}
	return cos, sin
}

// yarnCorrDims is ggml_rope_yarn_corr_dims: the first and last rotary
// dimensions between which YaRN ramps from extrapolation to interpolation.
func yarnCorrDims(dims, origCtx int, base, betaFast, betaSlow float32) (low, high float32) {
	dim := func(beta float32) float32 {
		return float32(dims) * logf(float32(origCtx)/(beta*2*float32(math.Pi))) / (2 * logf(base))
	}
	low = max(0, float32(math.Floor(float64(dim(betaFast)))))
	high = min(float32(dims-1), float32(math.Ceil(float64(dim(betaSlow)))))
	return low, high
}

// yarnRamp is ggml's rope_yarn_ramp for the pair i (i0 = 2i).
func yarnRamp(low, high float32, i int) float32 {
	y := (float32(i) - low) / max(0.001, high-low)
	return 1 - min(1, max(0, y))
}

func logf(x float32) float32 { return float32(math.Log(float64(x))) }

// embed looks up the token embeddings into the residual stream (times
// embedScale when set; given Batch.Embeds rows are used as they are).
func (r *runner) embed(e tensor.Matrix, b *Batch) {
	d := r.cfg.NEmbd
	for t, tok := range b.Tokens {
		if b.Embeds != nil && b.Embeds[t] != nil {
			copy(r.x[t*d:(t+1)*d], b.Embeds[t])
			continue
		}
		e.DequantizeRow(int(tok), r.x[t*d:(t+1)*d])
		if r.embedScale != 0 {
			tensor.Scale(r.x[t*d:(t+1)*d], r.embedScale)
		}
	}
}

// norm sets h = RMSNorm(x) ⊙ w, row by row.
func (r *runner) norm(w []float32) {
	d := r.cfg.NEmbd
	for t := 0; t < r.n; t++ {
		tensor.RMSNorm(r.h[t*d:(t+1)*d], r.x[t*d:(t+1)*d], w, r.cfg.RMSEps)
	}
}

// residual adds the sub-block output tmp to the residual stream.
func (r *runner) residual() { tensor.Add(r.x[:r.n*r.cfg.NEmbd], r.tmp[:r.n*r.cfg.NEmbd]) }

// postNorm sets tmp = RMSNorm(tmp) ⊙ w, row by row (Gemma's norms after
// each sub-block, before the residual add).
func (r *runner) postNorm(w []float32) {
	d := r.cfg.NEmbd
	for t := 0; t < r.n; t++ {
		x := r.tmp[t*d : (t+1)*d]
		tensor.RMSNorm(x, x, w, r.cfg.RMSEps)
	}
}

// applyRope rotates every head of rows (n rows of heads*HeadDim) by its
// token's position, with the tables cos and sin.
func (r *runner) applyRope(rows []float32, heads int, cos, sin []float32) {
	c := r.cfg
	hd, half := c.HeadDim, c.RopeDims/2
	for t := 0; t < r.n; t++ {
		cs, sn := cos[t*half:(t+1)*half], sin[t*half:(t+1)*half]
		for h := 0; h < heads; h++ {
			x := rows[(t*heads+h)*hd : (t*heads+h+1)*hd]
			if r.rope == RopeNeox {
				for i := 0; i < half; i++ {
					x0, x1 := x[i], x[i+half]
					x[i] = x0*cs[i] - x1*sn[i]
					x[i+half] = x0*sn[i] + x1*cs[i]
				}
			} else {
				for i := 0; i < half; i++ {
					x0, x1 := x[2*i], x[2*i+1]
					x[2*i] = x0*cs[i] - x1*sn[i]
					x[2*i+1] = x0*sn[i] + x1*cs[i]
				}
			}
		}
	}
}

// addBias adds bias (nil: none) to each of the batch's rows of rows.
func (r *runner) addBias(rows, bias []float32) {
	if bias == nil {
		return
	}
	w := len(bias)
	for t := 0; t < r.n; t++ {
		tensor.Add(rows[t*w:(t+1)*w], bias)
	}
}

// headNorm applies RMSNorm with weights w to every head of rows in place.
func (r *runner) headNorm(rows []float32, heads int, w []float32) {
	hd := r.cfg.HeadDim
	for i := 0; i < r.n*heads; i++ {
		x := rows[i*hd : (i+1)*hd]
		tensor.RMSNorm(x, x, w, r.cfg.RMSEps)
	}
}

// attnOpts are an attention block's variations.
type attnOpts struct {
	qk   *QKNorm  // per-head RMSNorm of queries and keys before RoPE (Qwen3, Gemma 3)
	bias *QKVBias // added to the query, key and value projections (Qwen2-VL)
	// window, when not 0, limits each query to the keys of its last
	// window positions (its own included): sliding-window attention.
	window int
	local  bool      // RoPE with the runner's local tables
	post   []float32 // RMSNorm weights of the output before the residual add (Gemma)
}

// attention runs causal multi-head attention with grouped KV heads on h and
// adds the projected result to the residual stream. Keys and values of the
// batch are stored in the cache first, so tokens see earlier tokens of their
// own sequence in the same batch.
func (r *runner) attention(layer int, a *Attention, qk *QKNorm, c Cache, b *Batch) {
	r.attentionWith(layer, a, c, b, attnOpts{qk: qk})
}

// attentionWith is attention with the variations of o.
func (r *runner) attentionWith(layer int, a *Attention, c Cache, b *Batch, o attnOpts) {
	cfg := r.cfg
	n, hd := r.n, cfg.HeadDim
	kvDim := cfg.KVDim()
	tensor.MatMulMany(r.pool, []tensor.Matrix{a.Q, a.K, a.V}, r.h, n, [][]float32{r.q[:n*cfg.QDim()], r.k[:n*kvDim], r.v[:n*cfg.VDim()]})
	if o.bias != nil {
		r.addBias(r.q, o.bias.Q)
		r.addBias(r.k, o.bias.K)
		r.addBias(r.v, o.bias.V)
	}
	if o.qk != nil {
		r.headNorm(r.q, cfg.NHead, o.qk.Q)
		r.headNorm(r.k, cfg.NHeadKV, o.qk.K)
	}
	cos, sin := r.cos, r.sin
	if o.local && r.local != nil {
		cos, sin = r.cosL, r.sinL
	}
	r.applyRope(r.q, cfg.NHead, cos, sin)
	r.applyRope(r.k, cfg.NHeadKV, cos, sin)

	// Store the batch's keys and values, head by head, in the cache's types.
	bs := c.BlockSize()
	kt, vt := c.Types()
	hdv := cfg.HeadDimV
	vDim := cfg.VDim()
	krb, vrb := tensor.KVRowBytes(kt, hd), tensor.KVRowBytes(vt, hdv)
	for t := 0; t < n; t++ {
		kb, vb := c.Block(layer, b.Seq[t], b.Pos[t])
		row := b.Pos[t] % bs
		for g := 0; g < cfg.NHeadKV; g++ {
			at := (g*bs + row) * krb
			tensor.StoreKV(kt, r.k[t*kvDim+g*hd:t*kvDim+(g+1)*hd], kb[at:at+krb])
			at = (g*bs + row) * vrb
			tensor.StoreKV(vt, r.v[t*vDim+g*hdv:t*vDim+(g+1)*hdv], vb[at:at+vrb])
		}
	}

	r.attendWindow(layer, c, b, o.window)
	tensor.MatMul(r.pool, a.O, r.att, n, r.tmp)
	if o.post != nil {
		r.postNorm(o.post)
	}
	r.residual()
}

// keyFrom is the first key position a query at pos attends to with a
// sliding window of window positions (0: no window).
func keyFrom(pos, window int) int {
	if window <= 0 {
		return 0
	}
	return max(0, pos-window+1)
}

// attend sets r.att from the batch's queries (r.q) and the cached keys
// and values of their sequences.
func (r *runner) attend(layer int, c Cache, b *Batch) { r.attendWindow(layer, c, b, 0) }

// attendWindow is attend with each query limited to the keys of its last
// window positions when window > 0 (spans wholly before that are skipped).
func (r *runner) attendWindow(layer int, c Cache, b *Batch, window int) {
	cfg := r.cfg
	n, hd, hdv := r.n, cfg.HeadDim, cfg.HeadDimV
	// Each (token, head) attends over its positions in spans of at most
	// attnSpan: one span is the plain softmax; a longer context is split
	// into spans that are worked on in parallel (a single decoding
	// sequence at depth keeps every thread busy) and merged by their
	// maxima (flash-decoding). The spans depend only on the position, so
	// a token's result is the same in any batch. A work item takes the
	// query heads of one KV head for up to attnTile consecutive tokens of
	// a sequence over one span: each cached block is converted once for
	// all of them (tensor.KVRowsF32) and multiplied as a tile
	// (tensor.AttnScores, tensor.AttnPV), each query's result still its
	// own.
	// A sliding window starts a query's spans later: token t's spans are
	// first[t] .. Pos[t]/attnSpan.
	group := cfg.NHead / cfg.NHeadKV
	scale := r.attnScale
	if scale == 0 {
		scale = float32(1 / math.Sqrt(float64(hd)))
	}
	if cap(r.spans) < n+1 {
		r.spans = make([]int, n+1)
		r.first = make([]int, n)
	}
	spans := r.spans[:n+1] // item offsets: token t's (t, h, span) parts start at spans[t]*NHead
	first := r.first[:n]
	spans[0] = 0
	for t := 0; t < n; t++ {
		first[t] = keyFrom(b.Pos[t], window) / attnSpan
		spans[t+1] = spans[t] + b.keyEnd(t)/attnSpan - first[t] + 1
	}
	multi := spans[n] > n // some token has more than one span
	if multi {
		r.part = grow(r.part, spans[n]*cfg.NHead*(hdv+2))
	}
	tile := max(1, attnTile/group)
	items := r.items[:0]
	for t0 := 0; t0 < n; {
		t1 := t0 + 1
		for t1 < n && t1-t0 < tile && b.Seq[t1] == b.Seq[t0] && b.Pos[t1] == b.Pos[t1-1]+1 {
			t1++
		}
		for sp := first[t0]; sp <= b.keyEnd(t1-1)/attnSpan; sp++ {
			for g := 0; g < cfg.NHeadKV; g++ {
				items = append(items, attnItem{t0: t0, t1: t1, g: g, sp: sp})
			}
		}
		t0 = t1
	}
	r.items = items
	r.pool.For(len(items), func(lo, hi int) {
		w := workPool.Get().(*attnWork)
		for _, it := range items[lo:hi] {
			r.attendTile(w, layer, c, b, it, spans, first, window, group, scale)
		}
		workPool.Put(w)
	})
	if multi {
		r.pool.For(n*cfg.NHead, func(lo, hi int) {
			for i := lo; i < hi; i++ {
				t, h := i/cfg.NHead, i%cfg.NHead
				nsp := spans[t+1] - spans[t]
				if nsp == 1 {
					continue
				}
				parts := r.part[(spans[t]*cfg.NHead+h*nsp)*(hdv+2):][:nsp*(hdv+2)]
				mergeSpans(parts, nsp, hdv, r.att[(t*cfg.NHead+h)*hdv:(t*cfg.NHead+h+1)*hdv])
			}
		})
	}
}

// attendTile works one attention item: the scores of its queries against
// the span's keys, their softmax (or, for a token with several spans, the
// span's part for mergeSpans), and the weighted sum of the values. With a
// sliding window, keys before a query's window get weight 0.
func (r *runner) attendTile(w *attnWork, layer int, c Cache, b *Batch, it attnItem, spans, first []int, window, group int, scale float32) {
	cfg := r.cfg
	hd, hdv := cfg.HeadDim, cfg.HeadDimV
	bs := c.BlockSize()
	kt, vt := c.Types()
	krb, vrb := tensor.KVRowBytes(kt, hd), tensor.KVRowBytes(vt, hdv)
	from := it.sp * attnSpan
	ta := it.t0 // the tokens [ta, tb) have this span among theirs
	for b.keyEnd(ta) < from {
		ta++
	}
	tb := ta
	for tb < it.t1 && first[tb] <= it.sp {
		tb++
	}
	if tb == ta {
		return
	}
	to := min(from+attnSpan, b.keyEnd(tb-1)+1)
	lds := to - from
	// The first block any of the tokens needs (ta's window starts first).
	kfrom := max(from, keyFrom(b.Pos[ta], window)) / bs * bs
	M := (tb - ta) * group
	w.q = grow(w.q, M*hd)
	w.sc = grow(w.sc, M*lds)
	w.out = grow(w.out, M*hdv)
	if cap(w.cnt) < M {
		w.cnt, w.bcnt, w.off = make([]int, M), make([]int, M), make([]int, M)
	}
	cnt, bcnt, off := w.cnt[:M], w.bcnt[:M], w.off[:M]
	for m := range cnt {
		t, h := ta+m/group, it.g*group+m%group
		cnt[m] = min(b.keyEnd(t)+1, from+attnSpan) - from
		off[m] = max(keyFrom(b.Pos[t], window)-from, 0)
		tensor.KVQuery(kt, r.q[(t*cfg.NHead+h)*hd:(t*cfg.NHead+h+1)*hd], w.q[m*hd:(m+1)*hd])
	}
	seq := b.Seq[it.t0]
	if kt == gguf.TypeQ8_0 {
		// Q8_0 keys multiply a Q8_0 query in integers (llama.cpp's
		// vec_dot_q8_0_q8_0), the tile's queries at once where the CPU
		// has the batched kernels (w.q holds the queries as they are).
		w.kv.SetQueries(kt, w.q, M, hd)
		for p0 := kfrom; p0 < to; p0 += bs {
			kb, _ := c.Block(layer, seq, p0)
			w.kv.DotTile(kb[it.g*bs*krb:], min(p0+bs, to)-p0, w.sc[p0-from:], lds)
		}
	} else {
		for p0 := kfrom; p0 < to; {
			if nb := kvRun(kt, p0, to, bs); nb > 0 {
				blocks := w.blocks[:nb]
				for i := range blocks {
					kb, _ := c.Block(layer, seq, p0+i*bs)
					blocks[i] = kb[it.g*bs*krb:]
				}
				k := tensor.KVBlocksF32(kt, blocks, bs, hd, &w.kbuf)
				for i := range blocks {
					tensor.AttnScores(w.q, M, hd, k[i*bs*hd:], bs, w.sc[p0+i*bs-from:], lds)
				}
				p0 += nb * bs
				continue
			}
			nk := min(p0+bs, to) - p0
			kb, _ := c.Block(layer, seq, p0)
			k := tensor.KVRowsF32(kt, kb[it.g*bs*krb:], nk, hd, &w.kbuf)
			tensor.AttnScores(w.q, M, hd, k, nk, w.sc[p0-from:], lds)
			p0 += bs
		}
	}
	for m, cm := range cnt {
		row := w.sc[m*lds : m*lds+cm]
		clear(row[:off[m]]) // before the window: weight 0
		row = row[off[m]:]
		tensor.Scale(row, scale)
		t, h := ta+m/group, it.g*group+m%group
		mx, sum := tensor.ExpSum(row)
		if nsp := spans[t+1] - spans[t]; nsp == 1 {
			tensor.Scale(row, float32(1/sum)) // the softmax
		} else {
			// A span's part: its maximum, its sum of exp(s - max) and the
			// values weighted by those, merged by mergeSpans.
			part := r.part[(spans[t]*cfg.NHead+h*nsp+it.sp-first[t])*(hdv+2):][:2]
			part[0], part[1] = mx, float32(sum)
		}
	}
	clear(w.out)
	for p0 := kfrom; p0 < to; {
		var v []float32
		nb := kvRun(vt, p0, to, bs)
		if nb > 0 {
			blocks := w.blocks[:nb]
			for i := range blocks {
				_, vb := c.Block(layer, seq, p0+i*bs)
				blocks[i] = vb[it.g*bs*vrb:]
			}
			v = tensor.KVBlocksF32(vt, blocks, bs, hdv, &w.vbuf)
		} else {
			nb = 1
			_, vb := c.Block(layer, seq, p0)
			v = tensor.KVRowsF32(vt, vb[it.g*bs*vrb:], min(p0+bs, to)-p0, hdv, &w.vbuf)
		}
		// The blocks' value rows are added in position order, as one
		// block at a time would add them.
		for i := 0; i < nb; i, p0 = i+1, p0+bs {
			nk := min(p0+bs, to) - p0
			for m, cm := range cnt {
				bcnt[m] = min(max(cm-(p0-from), 0), nk)
			}
			tensor.AttnPV(w.sc[p0-from:], lds, bcnt, v[i*bs*hdv:], hdv, w.out)
		}
	}
	for m := range cnt {
		t, h := ta+m/group, it.g*group+m%group
		dst := r.att[(t*cfg.NHead+h)*hdv : (t*cfg.NHead+h+1)*hdv]
		if nsp := spans[t+1] - spans[t]; nsp > 1 {
			dst = r.part[(spans[t]*cfg.NHead+h*nsp+it.sp-first[t])*(hdv+2)+2:][:hdv]
		}
		copy(dst, w.out[m*hdv:(m+1)*hdv])
	}
}

// loadFFN loads layer i's feed-forward: routed experts when the model has
// any, else a dense MLP.
func loadFFN(f *gguf.File, s *shapeCheck, cfg *Config, i int) (*MLP, *MoE, error) {
	p := fmt.Sprintf("blk.%d.", i)
	if cfg.NExpert > 0 {
		moe := &MoE{}
		if err := loadTensors(f, p, moe); err != nil {
			return nil, nil, err
		}
		moe.check(s, cfg, i)
		return nil, moe, nil
	}
	mlp := &MLP{}
	if err := loadTensors(f, p, mlp); err != nil {
		return nil, nil, err
	}
	mlp.check(s, cfg, i)
	return mlp, nil, nil
}

// ffn runs the layer's feed-forward on h and adds it to the residual stream.
func (r *runner) ffn(mlp *MLP, moe *MoE, b *Batch) {
	if moe != nil {
		r.moe(moe, b, true)
	} else {
		r.mlp(mlp)
	}
}

// mlp runs the SwiGLU feed-forward block on h and adds it to the residual stream.
func (r *runner) mlp(m *MLP) { r.mlpWith(m, tensor.SwiGLU, nil) }

// mlpWith runs a gated feed-forward block on h, Down(act(Gate h, Up h)),
// RMSNorms its output with post when set (Gemma), and adds it to the
// residual stream.
func (r *runner) mlpWith(m *MLP, act func(gate, up []float32), post []float32) {
	n, ff := r.n, m.Gate.Rows
	gate, up := r.gate[:n*ff], r.up[:n*ff]
	tensor.MatMulMany(r.pool, []tensor.Matrix{m.Gate, m.Up}, r.h, n, [][]float32{gate, up})
	act(gate, up)
	tensor.MatMul(r.pool, m.Down, gate, n, r.tmp)
	if post != nil {
		r.postNorm(post)
	}
	r.residual()
}

// moe routes each token of h to its top experts (softmax over all experts,
// top k, weights renormalised to sum to 1 when normTopK), runs each expert
// once on all the tokens routed to it, and adds the weighted sum to the
// residual stream. Only the chosen experts' weights are read.
func (r *runner) moe(m *MoE, b *Batch, normTopK bool) {
	cfg := r.cfg
	n, d, ne, kmax := r.n, cfg.NEmbd, cfg.NExpert, cfg.NExpertUse
	r.route = grow(r.route, n*ne)
	tensor.MatMul(r.pool, m.Router, r.h, n, r.route)
	if cap(r.sel) < n*kmax {
		r.sel = make([]int, n*kmax)
	}
	r.sel = r.sel[:n*kmax]
	r.selW = grow(r.selW, n*kmax)
	counts := make([]int, ne)
	for t := 0; t < n; t++ {
		p := r.route[t*ne : (t+1)*ne]
		tensor.Softmax(p)
		k := kmax
		if b.ExpertsUsed != nil && b.ExpertsUsed[t] > 0 {
			k = b.ExpertsUsed[t]
		}
		sel, w := r.sel[t*kmax:t*kmax+kmax], r.selW[t*kmax:t*kmax+kmax]
		topK(p, sel[:k])
		var sum float32
		for j := 0; j < k; j++ {
			w[j] = p[sel[j]]
			sum += w[j]
			counts[sel[j]]++
		}
		for j := k; j < kmax; j++ {
			sel[j], w[j] = -1, 0
		}
		if normTopK {
			for j := 0; j < k; j++ {
				w[j] /= sum
			}
		}
	}
	clear(r.tmp[:n*d])
	if n == 1 {
		r.moeOneToken(m, kmax)
		r.residual()
		return
	}
	for e := 0; e < ne; e++ {
		cnt := counts[e]
		if cnt == 0 {
			continue
		}
		ff := m.Gate.Rows
		r.xin = grow(r.xin, cnt*d)
		r.xout = grow(r.xout, cnt*d)
		r.outRows = r.outRows[:0]
		var weights []float32
		for t := 0; t < n; t++ {
			for j := 0; j < kmax; j++ {
				if r.sel[t*kmax+j] == e {
					copy(r.xin[len(r.outRows)*d:], r.h[t*d:(t+1)*d])
					r.outRows = append(r.outRows, t)
					weights = append(weights, r.selW[t*kmax+j])
				}
			}
		}
		gate, up := r.gate[:cnt*ff], r.up[:cnt*ff] // cnt <= n: a token picks an expert once
		tensor.MatMulMany(r.pool, []tensor.Matrix{m.Gate.Expert(e), m.Up.Expert(e)}, r.xin, cnt, [][]float32{gate, up})
		tensor.SwiGLU(gate, up)
		tensor.MatMul(r.pool, m.Down.Expert(e), gate, cnt, r.xout)
		for i, t := range r.outRows {
			tensor.Axpy(weights[i], r.xout[i*d:(i+1)*d], r.tmp[t*d:(t+1)*d])
		}
	}
	r.residual()
}

// moeOneToken is moe's decode path: the gate and up projections of every
// chosen expert share the one input, so they run as a single MatMulMany (one
// activation quantization, one parallel pass) instead of one call per expert.
// Results are identical to the per-expert loop.
func (r *runner) moeOneToken(m *MoE, kmax int) {
	d, ff := r.cfg.NEmbd, m.Gate.Rows
	var ms []tensor.Matrix
	var outs [][]float32
	r.xin = grow(r.xin, 2*kmax*ff)
	for j, e := range r.sel[:kmax] {
		if e < 0 {
			break
		}
		ms = append(ms, m.Gate.Expert(e), m.Up.Expert(e))
		outs = append(outs, r.xin[2*j*ff:(2*j+1)*ff], r.xin[(2*j+1)*ff:(2*j+2)*ff])
	}
	tensor.MatMulMany(r.pool, ms, r.h[:d], 1, outs)
	k := len(ms) / 2
	r.xout = grow(r.xout, k*d)
	// The down projections have different inputs: run whole experts on the
	// threads (one pass) rather than each expert across the threads.
	r.pool.For(k, func(lo, hi int) {
		for j := lo; j < hi; j++ {
			gate, up := outs[2*j], outs[2*j+1]
			tensor.SwiGLU(gate, up)
			tensor.MatMul(nil, m.Down.Expert(r.sel[j]), gate, 1, r.xout[j*d:(j+1)*d])
		}
	})
	for j := 0; j < k; j++ {
		tensor.Axpy(r.selW[j], r.xout[j*d:(j+1)*d], r.tmp[:d])
	}
}

// topK writes the indices of the len(dst) largest values of p to dst, largest
// first; ties go to the lower index.
func topK(p []float32, dst []int) {
	idx := make([]int, len(p))
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool { return p[idx[a]] > p[idx[b]] })
	copy(dst, idx[:len(dst)])
}

// output applies the final norm to the tokens whose logits are wanted and
// projects them onto the vocabulary, and writes the normed rows of the
// tokens whose hidden state is wanted to b.HiddenOut.
func (r *runner) output(o *Output, b *Batch, logits []float32) error {
	d := r.cfg.NEmbd
	rows, hrows := 0, 0
	for t := 0; t < r.n; t++ {
		if b.Hidden != nil && b.Hidden[t] {
			tensor.RMSNorm(b.HiddenOut[hrows*d:(hrows+1)*d], r.x[t*d:(t+1)*d], o.Norm, r.cfg.RMSEps)
			hrows++
		}
		if b.wantOutput(t) {
			tensor.RMSNorm(r.h[rows*d:(rows+1)*d], r.x[t*d:(t+1)*d], o.Norm, r.cfg.RMSEps)
			rows++
		}
	}
	if rows == 0 {
		return nil
	}
	tensor.MatMul(r.pool, o.head(), r.h[:rows*d], rows, logits[:rows*r.cfg.NVocab])
	if c := r.softcap; c != 0 {
		// ggml: scale by 1/c, tanh, scale by c.
		inv := 1 / c
		for i, v := range logits[:rows*r.cfg.NVocab] {
			logits[i] = float32(math.Tanh(float64(v*inv))) * c
		}
	}
	return nil
}
