// Package model holds the transformer architectures (llama, qwen3, qwen3moe,
// gemma3, qwen2vl, …) that run a batch of tokens through GGUF weights; each
// architecture is one file that registers itself.
package model

import (
	"fmt"

	"github.com/stepflash/stepflash/gguf"
	"github.com/stepflash/stepflash/internal/registry"
	"github.com/stepflash/stepflash/tensor"
)

// Batch is one forward pass worth of tokens, possibly from several sequences.
// Token i sits at position Pos[i] of sequence Seq[i]; it attends to the
// positions 0..Pos[i] of its own sequence in the cache, including tokens of the
// same batch.
type Batch struct {
	Tokens []int32
	Pos    []int
	Seq    []int
	// Output marks the tokens whose logits are wanted; their rows are written
	// to the logits buffer in batch order. Nil means only the last token.
	Output []bool
	// ExpertsUsed sets, per token, how many experts an MoE model routes it to
	// (1..trained count); nil or 0 means the trained count. Dense models ignore it.
	ExpertsUsed []int
	// Embeds, when set, gives tokens their input embedding directly (an
	// image's, from a vision encoder): where Embeds[i] is not nil it is
	// used instead of token Tokens[i]'s row of the embedding table (the
	// token is then a placeholder) and must hold NEmbd floats.
	Embeds [][]float32
	// Hidden marks the tokens whose final hidden state is wanted (after
	// the output norm, before the vocabulary projection: what embedding
	// pooling reads); Forward writes their rows, NEmbd floats each, to
	// HiddenOut in batch order. Nil wants none.
	Hidden    []bool
	HiddenOut []float32
	// KeyEnd, when set, lets token i attend to the positions up to
	// KeyEnd[i] (at least Pos[i]) of its sequence instead of up to Pos[i]:
	// positions after its own must be in this batch, and KeyEnd must not
	// decrease along a sequence's consecutive positions. Gemma 3 reads an
	// image's embeddings this way (llama.cpp decodes them with causal
	// attention off). Nil: causal.
	KeyEnd []int
	// RopePos, when set, gives token i its rotary positions section by
	// section (M-RoPE as Qwen2-VL uses it: temporal, height, width, extra;
	// Config.RopeSections says how many rotated pairs each section takes),
	// none negative. Pos[i] stays the token's cache position, which
	// attention masks by. An image read with 2-D positions needs it, and so
	// does text after one (llama.cpp moves its rotary positions on by the
	// image's larger side, not by its count of embeddings); architectures
	// without sections ignore it. Nil: (Pos[i], Pos[i], Pos[i], 0), what
	// llama.cpp gives a text token.
	RopePos [][4]int
}

// keyEnd is the last position token i attends to.
func (b *Batch) keyEnd(i int) int {
	if b.KeyEnd == nil {
		return b.Pos[i]
	}
	return b.KeyEnd[i]
}

// Len is the number of tokens in the batch.
func (b *Batch) Len() int { return len(b.Tokens) }

// NumHidden is the number of hidden-state rows Forward writes to HiddenOut.
func (b *Batch) NumHidden() int {
	n := 0
	for _, h := range b.Hidden {
		if h {
			n++
		}
	}
	return n
}

// NumOutputs is the number of logits rows Forward writes.
func (b *Batch) NumOutputs() int {
	if b.Output == nil {
		if len(b.Tokens) > 0 {
			return 1
		}
		return 0
	}
	n := 0
	for _, o := range b.Output {
		if o {
			n++
		}
	}
	return n
}

func (b *Batch) wantOutput(i int) bool {
	if b.Output == nil {
		return i == len(b.Tokens)-1
	}
	return b.Output[i]
}

// Cache stores keys and values per layer in blocks of BlockSize positions.
// The engine owns allocation; the model only reads and writes through Block.
type Cache interface {
	// BlockSize is the number of positions in one block.
	BlockSize() int
	// Types are the element types of the stored keys and values: F32,
	// F16 or Q8_0 (tensor.KVSupported).
	Types() (k, v gguf.Type)
	// Block returns the key and value storage of the block that holds
	// position pos of sequence seq in layer layer, head-major: for each
	// KV head in turn, BlockSize() rows of HeadDim (keys) or HeadDimV
	// (values) elements of the cache's types (tensor.KVRowBytes each);
	// position pos is row pos%BlockSize() of every head.
	Block(layer, seq, pos int) (k, v []byte)
}

// Model is a loaded architecture ready to run.
type Model interface {
	// Config returns the hyperparameters.
	Config() *Config
	// Forward runs b through the model, storing keys and values in c, and
	// writes b.NumOutputs() rows of vocabulary logits to logits. It reuses
	// the model's activation buffers: calls must not overlap (the engine's
	// scheduler is the one caller).
	Forward(b *Batch, c Cache, logits []float32) error
	// Close stops the model's worker threads. The GGUF file stays open: its
	// owner closes it after the model.
	Close() error
}

// Options tune how a model runs.
type Options struct {
	// Threads is the number of threads for the kernels (default 1).
	Threads int
	// Loading says how Open brings the file into memory (default
	// gguf.LoadAuto: a huge-page copy when it fits easily, else a mapping).
	Loading gguf.Loading
	// Rope overrides the GGUF's RoPE scaling (llama.cpp's --rope-scaling,
	// --rope-scale, --yarn-orig-ctx).
	Rope RopeOptions
}

// Constructor builds an architecture from an opened GGUF file.
type Constructor func(f *gguf.File, cfg *Config, pool *tensor.Pool) (Model, error)

var constructors = registry.New[Constructor]("model: architecture")

// Register makes an architecture available under its GGUF general.architecture name.
func Register(arch string, c Constructor) { constructors.Register(arch, c) }

// Architectures lists the registered architecture names.
func Architectures() []string { return constructors.Names() }

// Load builds the model of an already opened GGUF file. The file must stay
// open while the model is used.
func Load(f *gguf.File, opts Options) (Model, error) {
	arch := f.Architecture()
	ctor, _ := constructors.Get(arch)
	if ctor == nil {
		return nil, fmt.Errorf("model: architecture %q is not supported (supported: %v)", arch, Architectures())
	}
	cfg, err := ReadConfig(f)
	if err != nil {
		return nil, err
	}
	if err := cfg.ApplyRope(opts.Rope); err != nil {
		return nil, err
	}
	threads := opts.Threads
	if threads <= 0 {
		threads = 1
	}
	pool := tensor.NewPool(threads)
	m, err := ctor(f, cfg, pool)
	if err != nil {
		pool.Close()
		return nil, err
	}
	return m, nil
}

// Open opens a GGUF file and loads its model. Close the model, then the file.
func Open(path string, opts Options) (Model, *gguf.File, error) {
	f, err := gguf.OpenWith(path, opts.Loading)
	if err != nil {
		return nil, nil, err
	}
	m, err := Load(f, opts)
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	return m, f, nil
}
