package model

import (
	"fmt"

	"github.com/stepflash/stepflash/gguf"
	"github.com/stepflash/stepflash/tensor"
)

func init() { Register("qwen2vl", newQwen2VL) }

// Qwen2VL is the language model of Qwen2-VL and Qwen2.5-VL: Qwen2's
// layout (Llama's pre-norm blocks and SwiGLU MLP, biases on the query, key
// and value projections, none on the output) with M-RoPE: NeoX-paired
// rotation whose pairs take their positions from the sections of
// Config.RopeSections, temporal, height, width and extra, so that an
// image's embeddings can be read with 2-D positions (Batch.RopePos). A
// text token has its position in the first three sections and 0 in the
// extra one (as llama.cpp gives text): NeoX RoPE when, as in Qwen2-VL's
// files, the extra section is empty.
// Embeddings are tied unless the file has output.weight. As llama.cpp's
// qwen2vl.
type Qwen2VL struct {
	Out    Output
	Blocks []Qwen2VLBlock

	cfg  *Config
	pool *tensor.Pool
	run  runner
}

// Qwen2VLBlock is one Qwen2-VL layer.
type Qwen2VLBlock struct {
	AttnNorm []float32 `gguf:"attn_norm"`
	Attn     Attention
	Bias     QKVBias
	FFNNorm  []float32 `gguf:"ffn_norm"`
	MLP      MLP
}

func newQwen2VL(f *gguf.File, cfg *Config, pool *tensor.Pool) (Model, error) {
	if cfg.NExpert > 0 {
		return nil, fmt.Errorf("model: qwen2vl: expert_count %d: Qwen2-VL has no experts", cfg.NExpert)
	}
	// llama.cpp's graph asserts both; its wo is n_embd x n_embd.
	if cfg.RopeDims != cfg.HeadDim || cfg.QDim() != cfg.NEmbd {
		return nil, fmt.Errorf("model: qwen2vl: rope.dimension_count %d and head_count × head dimension %d must be the head dimension %d and embedding_length %d",
			cfg.RopeDims, cfg.QDim(), cfg.HeadDim, cfg.NEmbd)
	}
	if err := readRopeSections(f, cfg); err != nil {
		return nil, err
	}
	m := &Qwen2VL{cfg: cfg, pool: pool, Blocks: make([]Qwen2VLBlock, cfg.NLayer)}
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
		b.Bias.check(s, cfg, i)
		b.MLP.check(s, cfg, i)
	}
	if s.err != nil {
		return nil, s.err
	}
	m.run = runner{cfg: cfg, pool: pool, rope: RopeNeox} // sections from cfg.RopeSections
	return m, nil
}

// Config returns the hyperparameters.
func (m *Qwen2VL) Config() *Config { return m.cfg }

// Close stops the worker threads.
func (m *Qwen2VL) Close() error { m.pool.Close(); return nil }

// Forward runs the batch through every layer and writes the wanted logits.
func (m *Qwen2VL) Forward(b *Batch, c Cache, logits []float32) error {
	r := &m.run
	if err := r.begin(b, logits); err != nil {
		return err
	}
	r.embed(m.Out.TokenEmbd, b)
	for i := range m.Blocks {
		blk := &m.Blocks[i]
		r.norm(blk.AttnNorm)
		r.attentionWith(i, &blk.Attn, c, b, attnOpts{bias: &blk.Bias}) // q, k, v + biases; M-RoPE on q, k
		r.norm(blk.FFNNorm)
		r.mlp(&blk.MLP)
	}
	return r.output(&m.Out, b, logits)
}
