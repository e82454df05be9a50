package model

import (
	"fmt"

	"github.com/stepflash/stepflash/gguf"
	"github.com/stepflash/stepflash/tensor"
)

func init() { Register("llama", newLlama) }

// Llama is the Llama decoder: pre-norm blocks of grouped-query attention with
// adjacent-pair RoPE and a SwiGLU MLP. (llama-architecture MoE files, e.g.
// Mixtral, route the MLP through experts instead.)
type Llama struct {
	Out      Output
	RopeFreq []float32 `gguf:"rope_freqs,optional"` // llama3-style per-frequency divisors
	Blocks   []LlamaBlock

	cfg  *Config
	pool *tensor.Pool
	run  runner
}

// LlamaBlock is one Llama layer.
type LlamaBlock struct {
	AttnNorm []float32 `gguf:"attn_norm"`
	Attn     Attention
	FFNNorm  []float32 `gguf:"ffn_norm"`
	MLP      *MLP      // dense feed-forward, or
	MoE      *MoE      // Mixtral-style experts (softmax, top-k, renormalised)
}

func newLlama(f *gguf.File, cfg *Config, pool *tensor.Pool) (Model, error) {
	m := &Llama{cfg: cfg, pool: pool}
	if err := loadTensors(f, "", m); err != nil {
		return nil, err
	}
	m.Blocks = make([]LlamaBlock, cfg.NLayer)
	s := &shapeCheck{}
	m.Out.check(s, cfg)
	s.vec("rope_freqs", m.RopeFreq, cfg.RopeDims/2)
	for i := range m.Blocks {
		b := &m.Blocks[i]
		p := fmt.Sprintf("blk.%d.", i)
		if err := loadTensors(f, p, b); err != nil {
			return nil, err
		}
		var err error
		if b.MLP, b.MoE, err = loadFFN(f, s, cfg, i); err != nil {
			return nil, err
		}
		b.Attn.check(s, cfg, i)
		s.vec(p+"attn_norm", b.AttnNorm, cfg.NEmbd)
		s.vec(p+"ffn_norm", b.FFNNorm, cfg.NEmbd)
	}
	if s.err != nil {
		return nil, s.err
	}
	m.run = runner{cfg: cfg, pool: pool, rope: RopeNorm, ropeFreq: m.RopeFreq}
	return m, nil
}

// Config returns the hyperparameters.
func (m *Llama) Config() *Config { return m.cfg }

// Close stops the worker threads.
func (m *Llama) Close() error { m.pool.Close(); return nil }

// Forward runs the batch through every layer and writes the wanted logits.
func (m *Llama) Forward(b *Batch, c Cache, logits []float32) error {
	r := &m.run
	if err := r.begin(b, logits); err != nil {
		return err
	}
	r.embed(m.Out.TokenEmbd, b)
	for i := range m.Blocks {
		blk := &m.Blocks[i]
		r.norm(blk.AttnNorm)                 // h = RMSNorm(x) ⊙ w
		r.attention(i, &blk.Attn, nil, c, b) // x += Wo · softmax(RoPE(Wq h) · RoPE(Wk h)ᵀ/√d) · Wv h
		r.norm(blk.FFNNorm)
		r.ffn(blk.MLP, blk.MoE, b) // x += Wdown (silu(Wgate h) ⊙ Wup h), or Σ_top-k w_e · expert_e(h)
	}
	return r.output(&m.Out, b, logits)
}
