package model

import (
	"fmt"
	"math"

	"github.com/stepflash/stepflash/gguf"
	"github.com/stepflash/stepflash/tensor"
)

func init() { Register("gemma3", newGemma3) }

// Gemma3 is the Gemma 3 decoder: token embeddings scaled by √NEmbd,
// RMSNorm before and after both sub-blocks, per-head RMSNorm of queries and
// keys, NeoX RoPE, a GELU-gated MLP and, in most layers, sliding-window
// attention: of every sliding_window_pattern layers all but the last attend
// to their last sliding_window positions with their own RoPE base
// (rope.freq_base_swa, 10,000 by default) and no position scaling; the
// others see the whole context with rope.freq_base and the file's scaling.
// Embeddings are tied unless the file has output.weight; logits are capped
// when it sets final_logit_softcapping. As llama.cpp's gemma3.
type Gemma3 struct {
	Out    Output
	Blocks []Gemma3Block

	// Window is the sliding window in positions (0: every layer sees the
	// whole context), and Local says which layers use it.
	Window int
	Local  []bool

	cfg  *Config
	pool *tensor.Pool
	run  runner
}

// Gemma3Block is one Gemma 3 layer.
type Gemma3Block struct {
	AttnNorm []float32 `gguf:"attn_norm"`
	Attn     Attention
	QKNorm   QKNorm
	AttnPost []float32 `gguf:"post_attention_norm"`
	FFNNorm  []float32 `gguf:"ffn_norm"`
	MLP      MLP
	FFNPost  []float32 `gguf:"post_ffw_norm"`
}

func newGemma3(f *gguf.File, cfg *Config, pool *tensor.Pool) (Model, error) {
	if cfg.NExpert > 0 {
		return nil, fmt.Errorf("model: gemma3: expert_count %d: Gemma 3 has no experts", cfg.NExpert)
	}
	md := &meta{f: f, arch: cfg.Arch}
	m := &Gemma3{cfg: cfg, pool: pool, Blocks: make([]Gemma3Block, cfg.NLayer), Local: make([]bool, cfg.NLayer)}
	m.Window = md.uint("attention.sliding_window", 0, false)
	pattern := 6
	if v, ok := f.Get(md.key("attention.sliding_window_pattern")); ok {
		p, isUint := f.Uint(md.key("attention.sliding_window_pattern"))
		if !isUint || p > 1<<16 {
			return nil, fmt.Errorf("model: gemma3: attention.sliding_window_pattern %v: want a layer period (an integer)", v)
		}
		pattern = int(p)
	}
	baseSWA := md.float("rope.freq_base_swa", 10000)
	softcap := md.float("final_logit_softcapping", 0)
	if md.err != nil {
		return nil, md.err
	}
	if baseSWA <= 0 || softcap < 0 {
		return nil, fmt.Errorf("model: gemma3: rope.freq_base_swa %g must be positive and final_logit_softcapping %g not negative", baseSWA, softcap)
	}
	if m.Window > 0 {
		// llama.cpp's set_swa_pattern: of each period, all but the last
		// layer are local (a period of 0: every layer).
		for i := range m.Local {
			m.Local[i] = pattern == 0 || i%pattern < pattern-1
		}
	}
	if err := loadTensors(f, "", &m.Out); err != nil {
		return nil, err
	}
	s := &shapeCheck{}
	m.Out.check(s, cfg)
	for i := range m.Blocks {
		b := &m.Blocks[i]
		p := fmt.Sprintf("blk.%d.", i)
		if err := loadTensors(f, p, b); err != nil {
			return nil, err
		}
		s.vec(p+"attn_norm", b.AttnNorm, cfg.NEmbd)
		s.vec(p+"post_attention_norm", b.AttnPost, cfg.NEmbd)
		s.vec(p+"ffn_norm", b.FFNNorm, cfg.NEmbd)
		s.vec(p+"post_ffw_norm", b.FFNPost, cfg.NEmbd)
		b.Attn.check(s, cfg, i)
		b.QKNorm.check(s, cfg, i)
		b.MLP.check(s, cfg, i)
	}
	if s.err != nil {
		return nil, s.err
	}
	// Queries are scaled by 1/√HeadDim, except in the 27B model (62
	// layers), whose scale is 1/√(NEmbd/NHead) (gemma_pytorch's
	// query_pre_attn_scalar; llama.cpp decides by the layer count too).
	scale := float32(1 / math.Sqrt(float64(cfg.HeadDim)))
	if cfg.NLayer == 62 {
		scale = float32(1 / math.Sqrt(float64(cfg.NEmbd/cfg.NHead)))
	}
	m.run = runner{cfg: cfg, pool: pool, rope: RopeNeox, attnScale: scale, softcap: softcap,
		embedScale: float32(math.Sqrt(float64(cfg.NEmbd)))}
	if m.Window > 0 {
		// Only local layers use these tables: without a window, none.
		m.run.local = &localRope{Base: baseSWA, Scale: 1}
	}
	return m, nil
}

// Config returns the hyperparameters.
func (m *Gemma3) Config() *Config { return m.cfg }

// Close stops the worker threads.
func (m *Gemma3) Close() error { m.pool.Close(); return nil }

// Forward runs the batch through every layer and writes the wanted logits.
func (m *Gemma3) Forward(b *Batch, c Cache, logits []float32) error {
	r := &m.run
	if err := r.begin(b, logits); err != nil {
		return err
	}
	r.embed(m.Out.TokenEmbd, b) // × √NEmbd (not image embeddings)
	for i := range m.Blocks {
		blk := &m.Blocks[i]
		o := attnOpts{qk: &blk.QKNorm, post: blk.AttnPost}
		if m.Local[i] {
			o.window, o.local = m.Window, true
		}
		r.norm(blk.AttnNorm)
		r.attentionWith(i, &blk.Attn, c, b, o) // x += RMSNorm(attention) ⊙ post_attention_norm
		r.norm(blk.FFNNorm)
		r.mlpWith(&blk.MLP, tensor.GeGLU, blk.FFNPost) // x += RMSNorm(Down(gelu(Gate h) ⊙ Up h)) ⊙ post_ffw_norm
	}
	return r.output(&m.Out, b, logits)
}
