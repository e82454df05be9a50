package model

import (
	"fmt"

	"github.com/stepflash/stepflash/gguf"
	"github.com/stepflash/stepflash/tensor"
)

func init() { Register("qwen3moe", newQwen3MoE) }

// Qwen3MoE is Qwen3 with every MLP replaced by a routed mixture of experts:
// softmax router over all experts, top-k, weights renormalised over the k.
type Qwen3MoE struct {
	Out    Output
	Blocks []Qwen3MoEBlock

	cfg  *Config
	pool *tensor.Pool
	run  runner
}

// Qwen3MoEBlock is one Qwen3-MoE layer.
type Qwen3MoEBlock struct {
	AttnNorm []float32 `gguf:"attn_norm"`
	Attn     Attention
	QKNorm   QKNorm
	FFNNorm  []float32 `gguf:"ffn_norm"`
	MoE      MoE
}

func newQwen3MoE(f *gguf.File, cfg *Config, pool *tensor.Pool) (Model, error) {
	if cfg.NExpert == 0 {
		return nil, fmt.Errorf("model: qwen3moe: qwen3moe.expert_count is missing")
	}
	m := &Qwen3MoE{cfg: cfg, pool: pool, Blocks: make([]Qwen3MoEBlock, cfg.NLayer)}
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
		s.vec(p+"ffn_norm", b.FFNNorm, cfg.NEmbd)
		b.Attn.check(s, cfg, i)
		b.QKNorm.check(s, cfg, i)
		b.MoE.check(s, cfg, i)
	}
	if s.err != nil {
		return nil, s.err
	}
	m.run = runner{cfg: cfg, pool: pool, rope: RopeNeox}
	return m, nil
}

// Config returns the hyperparameters.
func (m *Qwen3MoE) Config() *Config { return m.cfg }

// Close stops the worker threads.
func (m *Qwen3MoE) Close() error { m.pool.Close(); return nil }

// Forward runs the batch through every layer and writes the wanted logits.
func (m *Qwen3MoE) Forward(b *Batch, c Cache, logits []float32) error {
	r := &m.run
	if err := r.begin(b, logits); err != nil {
		return err
	}
	r.embed(m.Out.TokenEmbd, b)
	for i := range m.Blocks {
		blk := &m.Blocks[i]
		r.norm(blk.AttnNorm)
		r.attention(i, &blk.Attn, &blk.QKNorm, c, b)
		r.norm(blk.FFNNorm)
		r.moe(&blk.MoE, b, true) // x += Σ_top-k w_e · expert_e(h), w renormalised
	}
	return r.output(&m.Out, b, logits)
}
