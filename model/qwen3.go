package model

import (
	"fmt"

	"github.com/stepflash/stepflash/gguf"
	"github.com/stepflash/stepflash/tensor"
)

func init() { Register("qwen3", newQwen3) }

// Qwen3 is the Qwen3 decoder: Llama's layout plus per-head RMSNorm of queries
// and keys before NeoX-style RoPE; embeddings are often tied. Qwen3-MoE
// (qwen3moe) replaces every MLP with a mixture of experts: softmax router
// over all experts, top-k, weights renormalised over the k.
type Qwen3 struct {
	Out    Output
	Blocks []Qwen3Block

	cfg  *Config
	pool *tensor.Pool
	run  runner
}

// Qwen3Block is one Qwen3 layer.
type Qwen3Block struct {
	AttnNorm []float32 `gguf:"attn_norm"`
	Attn     Attention
	QKNorm   QKNorm
	FFNNorm  []float32 `gguf:"ffn_norm"`
	MLP      *MLP      // dense feed-forward (qwen3), or
	MoE      *MoE      // routed experts (qwen3moe)
}

func newQwen3(f *gguf.File, cfg *Config, pool *tensor.Pool) (Model, error) {
	if cfg.Arch == "qwen3moe" && cfg.NExpert == 0 {
		return nil, fmt.Errorf("model: qwen3moe: qwen3moe.expert_count is missing")
	}
	m := &Qwen3{cfg: cfg, pool: pool, Blocks: make([]Qwen3Block, cfg.NLayer)}
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
		var err error
		if b.MLP, b.MoE, err = loadFFN(f, s, cfg, i); err != nil {
			return nil, err
		}
		s.vec(p+"attn_norm", b.AttnNorm, cfg.NEmbd)
		s.vec(p+"ffn_norm", b.FFNNorm, cfg.NEmbd)
		b.Attn.check(s, cfg, i)
		b.QKNorm.check(s, cfg, i)
	}
	if s.err != nil {
		return nil, s.err
	}
	m.run = runner{cfg: cfg, pool: pool, rope: RopeNeox}
	return m, nil
}

// Config returns the hyperparameters.
func (m *Qwen3) Config() *Config { return m.cfg }

// Close stops the worker threads.
func (m *Qwen3) Close() error { m.pool.Close(); return nil }

// Forward runs the batch through every layer and writes the wanted logits.
func (m *Qwen3) Forward(b *Batch, c Cache, logits []float32) error {
	r := &m.run
	if err := r.begin(b, logits); err != nil {
		return err
	}
	r.embed(m.Out.TokenEmbd, b)
	for i := range m.Blocks {
		blk := &m.Blocks[i]
		r.norm(blk.AttnNorm)
		r.attention(i, &blk.Attn, &blk.QKNorm, c, b) // q, k: per-head RMSNorm, then NeoX RoPE
		r.norm(blk.FFNNorm)
		r.ffn(blk.MLP, blk.MoE, b)
	}
	return r.output(&m.Out, b, logits)
}
