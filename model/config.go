package model

import (
	"fmt"
	"math"

	"github.com/stepflash/stepflash/gguf"
)

// RopeType says which elements RoPE rotates together.
type RopeType int

const (
	// RopeNorm rotates adjacent pairs (x[2i], x[2i+1]), as llama does.
	RopeNorm RopeType = iota
	// RopeNeox rotates (x[i], x[i+d/2]), as GPT-NeoX, Qwen2 and Qwen3 do.
	RopeNeox
)

// Config holds a decoder's hyperparameters, read from GGUF metadata.
type Config struct {
	Arch       string
	Name       string // general.name, if any
	NLayer     int
	NEmbd      int
	NHead      int
	NHeadKV    int
	HeadDim    int // attention.key_length (default NEmbd/NHead)
	HeadDimV   int // attention.value_length (default HeadDim)
	NFF        int
	NCtxTrain  int
	NVocab     int
	RMSEps     float32
	RopeBase   float32
	RopeDims   int
	RopeType   RopeType
	RopeScale  float32 // linear position scale (1/factor); 1 when absent
	NExpert    int     // 0 for dense models
	NExpertUse int     // trained experts per token
	ExpertFF   int
	// PoolingType is <arch>.pooling_type as llama.cpp numbers it (0 none,
	// 1 mean, 2 cls, 3 last, 4 rank): how an embedding model pools its
	// hidden states; -1 when the file does not say (generative models).
	PoolingType int
}

// QDim is the width of the concatenated query heads.
func (c *Config) QDim() int { return c.NHead * c.HeadDim }

// KVDim is the width of one position's keys (and of its values) in the cache.
func (c *Config) KVDim() int { return c.NHeadKV * c.HeadDim }

// VDim is the width of one position's values in the cache.
func (c *Config) VDim() int { return c.NHeadKV * c.HeadDimV }

// meta reads architecture-scoped keys and remembers the first error.
type meta struct {
	f    *gguf.File
	arch string
	err  error
}

func (m *meta) key(k string) string { return m.arch + "." + k }

func (m *meta) uint(k string, def int, required bool) int {
	v, ok := m.f.Uint(m.key(k))
	if !ok {
		if _, present := m.f.Get(m.key(k)); present && m.err == nil {
			m.err = fmt.Errorf("model: metadata %s is not a non-negative integer", m.key(k))
		}
		if required && m.err == nil {
			m.err = fmt.Errorf("model: metadata %s is missing", m.key(k))
		}
		return def
	}
	if v > 1<<24 {
		if m.err == nil {
			m.err = fmt.Errorf("model: metadata %s = %d is out of range", m.key(k), v)
		}
		return def
	}
	return int(v)
}

func (m *meta) float(k string, def float32) float32 {
	v, ok := m.f.Float(m.key(k))
	if !ok {
		return def
	}
	if math.IsNaN(v) || math.IsInf(v, 0) {
		if m.err == nil {
			m.err = fmt.Errorf("model: metadata %s = %v is not finite", m.key(k), v)
		}
		return def
	}
	return float32(v)
}

// ReadConfig reads the common decoder hyperparameters of f's architecture and
// checks that they are consistent.
func ReadConfig(f *gguf.File) (*Config, error) {
	arch := f.Architecture()
	if arch == "" {
		return nil, fmt.Errorf("model: general.architecture is missing")
	}
	m := &meta{f: f, arch: arch}
	c := &Config{Arch: arch}
	c.Name, _ = f.String("general.name")
	c.NLayer = m.uint("block_count", 0, true)
	c.NEmbd = m.uint("embedding_length", 0, true)
	c.NFF = m.uint("feed_forward_length", 0, false)
	c.NHead = m.uint("attention.head_count", 0, true)
	c.NHeadKV = m.uint("attention.head_count_kv", c.NHead, false)
	c.NCtxTrain = m.uint("context_length", 2048, false)
	c.RMSEps = m.float("attention.layer_norm_rms_epsilon", 1e-5)
	c.RopeBase = m.float("rope.freq_base", 10000)
	c.RopeScale = 1
	if st, _ := f.String(m.key("rope.scaling.type")); st == "linear" {
		if fac := m.float("rope.scaling.factor", 1); fac > 0 {
			c.RopeScale = 1 / fac
		}
	}
	c.NExpert = m.uint("expert_count", 0, false)
	c.NExpertUse = m.uint("expert_used_count", 0, false)
	c.ExpertFF = m.uint("expert_feed_forward_length", 0, false)
	c.PoolingType = m.uint("pooling_type", -1, false)
	if m.err != nil {
		return nil, m.err
	}
	if c.NLayer <= 0 || c.NEmbd <= 0 || c.NHead <= 0 {
		return nil, fmt.Errorf("model: %s: block_count, embedding_length and attention.head_count must be positive (got %d, %d, %d)", arch, c.NLayer, c.NEmbd, c.NHead)
	}
	if c.NLayer > len(f.Tensors) {
		// Every layer has tensors; a larger count is a corrupt or hostile
		// file, and must not size allocations.
		return nil, fmt.Errorf("model: %s: block_count %d exceeds the %d tensors in the file", arch, c.NLayer, len(f.Tensors))
	}
	if c.NHeadKV <= 0 || c.NHead%c.NHeadKV != 0 {
		return nil, fmt.Errorf("model: %s: attention.head_count %d is not a multiple of head_count_kv %d", arch, c.NHead, c.NHeadKV)
	}
	defHead := 0
	if c.NEmbd%c.NHead == 0 {
		defHead = c.NEmbd / c.NHead
	}
	c.HeadDim = m.uint("attention.key_length", defHead, false)
	c.HeadDimV = m.uint("attention.value_length", c.HeadDim, false)
	c.RopeDims = m.uint("rope.dimension_count", c.HeadDim, false)
	if m.err != nil {
		return nil, m.err
	}
	if c.HeadDim <= 0 || c.HeadDim%2 != 0 {
		return nil, fmt.Errorf("model: %s: head dimension %d must be positive and even", arch, c.HeadDim)
	}
	if c.HeadDimV != c.HeadDim {
		return nil, fmt.Errorf("model: %s: key_length %d != value_length %d is not supported", arch, c.HeadDim, c.HeadDimV)
	}
	if c.RopeDims <= 0 || c.RopeDims > c.HeadDim || c.RopeDims%2 != 0 {
		return nil, fmt.Errorf("model: %s: rope.dimension_count %d must be even and within the head dimension %d", arch, c.RopeDims, c.HeadDim)
	}
	if c.RMSEps <= 0 {
		return nil, fmt.Errorf("model: %s: attention.layer_norm_rms_epsilon %g must be positive", arch, c.RMSEps)
	}
	if c.RopeBase <= 0 {
		return nil, fmt.Errorf("model: %s: rope.freq_base %g must be positive", arch, c.RopeBase)
	}
	if c.NExpert > 0 {
		if c.NExpertUse <= 0 || c.NExpertUse > c.NExpert {
			return nil, fmt.Errorf("model: %s: expert_used_count %d must be in 1..expert_count %d", arch, c.NExpertUse, c.NExpert)
		}
	}
	if toks, ok := f.Strings("tokenizer.ggml.tokens"); ok {
		c.NVocab = len(toks)
	}
	return c, nil
}
