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

// RopeScalingType is how RoPE positions are scaled, as llama.cpp's
// --rope-scaling names it.
type RopeScalingType int

const (
	RopeScalingNone   RopeScalingType = iota // no scaling, whatever the factor
	RopeScalingLinear                        // positions × 1/factor (position interpolation)
	RopeScalingYaRN                          // YaRN: interpolate low frequencies, keep high ones, scale attention
)

func (t RopeScalingType) String() string {
	return [...]string{"none", "linear", "yarn"}[t]
}

// ParseRopeScaling reads a scaling type name (none, linear, yarn).
func ParseRopeScaling(s string) (RopeScalingType, error) {
	for _, t := range []RopeScalingType{RopeScalingNone, RopeScalingLinear, RopeScalingYaRN} {
		if s == t.String() {
			return t, nil
		}
	}
	return 0, fmt.Errorf("RoPE scaling %q is not supported (none, linear or yarn)", s)
}

// RopeScaling is a model's RoPE scaling beyond RopeScale (the factor).
type RopeScaling struct {
	Type RopeScalingType
	// OrigCtx is the context the model was trained at before scaling
	// (rope.scaling.original_context_length; 0: the training context),
	// which YaRN's correction dimensions are computed from.
	OrigCtx int
	// AttnFactor multiplies the rotation's magnitude
	// (rope.scaling.attn_factor, default 1).
	AttnFactor float32
	// YaRN's parameters, llama.cpp's defaults unless overridden: the
	// extrapolation mix (1 for YaRN), the magnitude scale (its
	// yarn_attn_factor: 1, and 1 + 0.1 ln(factor) applied in the
	// rotation) and the correction range's betas (32 and 1).
	ExtFactor, YarnAttn, BetaFast, BetaSlow float32
}

// RopeOptions override a model's RoPE scaling as llama.cpp's flags do:
// zero values (Type "") keep what the GGUF says.
type RopeOptions struct {
	Type    string  // --rope-scaling none|linear|yarn
	Scale   float32 // --rope-scale: the factor (context multiplier)
	OrigCtx int     // --yarn-orig-ctx
}

// ApplyRope sets c's scaling from the GGUF's keys (already read) and the
// overrides, and fills YaRN's derived parameters as llama.cpp's context
// does.
func (c *Config) ApplyRope(o RopeOptions) error {
	if o.Type != "" {
		t, err := ParseRopeScaling(o.Type)
		if err != nil {
			return err
		}
		c.Rope.Type = t
	}
	if o.Scale < 0 {
		return fmt.Errorf("--rope-scale must be positive, got %g", o.Scale)
	}
	if o.Scale > 0 {
		c.RopeScale = 1 / o.Scale
	}
	if o.OrigCtx < 0 {
		return fmt.Errorf("--yarn-orig-ctx must be positive, got %d", o.OrigCtx)
	}
	if o.OrigCtx > 0 {
		c.Rope.OrigCtx = o.OrigCtx
	}
	if c.Rope.Type == RopeScalingNone {
		c.RopeScale = 1
	}
	if c.Rope.OrigCtx == 0 {
		c.Rope.OrigCtx = c.NCtxTrain
	}
	c.Rope.BetaFast, c.Rope.BetaSlow = 32, 1
	c.Rope.ExtFactor, c.Rope.YarnAttn = 0, 1
	if c.Rope.Type == RopeScalingYaRN {
		c.Rope.ExtFactor = 1
		// llama.cpp sets its yarn_attn_factor to get_mscale(factor) /
		// (1 + 0.1 ln factor), cancelling the rotation's own 1 + 0.1 ln
		// factor: for factor > 1 that is 1, and below 1 it is 1 / (1 + 0.1
		// ln factor).
		factor := 1 / c.RopeScale
		m := float32(1)
		if factor > 1 {
			m = 0.1*float32(math.Log(float64(factor))) + 1
		}
		c.Rope.YarnAttn = m / (1 + 0.1*float32(math.Log(float64(factor))))
	}
	return nil
}

// ContextLimit is the longest context the model's positions are trained
// or scaled for: the training context, times the factor when scaled.
func (c *Config) ContextLimit() int {
	if c.Rope.Type == RopeScalingNone || c.RopeScale >= 1 {
		return c.NCtxTrain
	}
	base := c.NCtxTrain
	if c.Rope.Type == RopeScalingYaRN && c.Rope.OrigCtx > 0 {
		base = c.Rope.OrigCtx
	}
	return int(math.Round(float64(base) / float64(c.RopeScale)))
}

// Config holds a decoder's hyperparameters, read from GGUF metadata.
type Config struct {
	Arch      string
	Name      string // general.name, if any
	NLayer    int
	NEmbd     int
	NHead     int
	NHeadKV   int
	HeadDim   int // attention.key_length (default NEmbd/NHead)
	HeadDimV  int // attention.value_length (default HeadDim)
	NFF       int
	NCtxTrain int
	NVocab    int
	RMSEps    float32
	RopeBase  float32
	RopeDims  int
	RopeType  RopeType
	RopeScale float32 // position scale (1/factor, llama.cpp's freq_scale); 1 when not scaled
	// RopeSections, for M-RoPE (qwen2vl), is how many rotated pairs each
	// section of Batch.RopePos takes: temporal, height, width, extra
	// (<arch>.rope.dimension_sections). Pair i rotates by the position of
	// the section that i mod the sum falls in. Zero for architectures
	// without M-RoPE, which rotate every pair by Batch.Pos.
	RopeSections [4]int
	// Rope is how positions are scaled beyond the trained context (the
	// GGUF's rope.scaling.* keys, or RopeOptions).
	Rope       RopeScaling
	NExpert    int // 0 for dense models
	NExpertUse int // trained experts per token
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
	c.Rope = RopeScaling{Type: RopeScalingLinear, AttnFactor: m.float("rope.scaling.attn_factor", 1),
		OrigCtx: m.uint("rope.scaling.original_context_length", 0, false)}
	if st, ok := f.String(m.key("rope.scaling.type")); ok {
		t, err := ParseRopeScaling(st)
		if err != nil && m.err == nil {
			m.err = fmt.Errorf("model: %s: %w", m.key("rope.scaling.type"), err)
		}
		c.Rope.Type = t
	}
	fac := m.float("rope.scaling.factor", 0)
	if fac == 0 {
		fac = m.float("rope.scale_linear", 0) // older files
	}
	if fac > 0 && c.Rope.Type != RopeScalingNone {
		c.RopeScale = 1 / fac
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

// readRopeSections sets c.RopeSections from <arch>.rope.dimension_sections,
// read as llama.cpp's get_key_or_arr reads it (required): an array of
// exactly 4 integers, or one integer for all four. The sections must not be
// negative, must rotate some pair by a temporal, height or width position
// (ggml asserts one of the first three is positive) and must fit the head
// (ggml asserts their sum is at most the head dimension).
func readRopeSections(f *gguf.File, c *Config) error {
	key := c.Arch + ".rope.dimension_sections"
	v, ok := f.Get(key)
	if !ok {
		return fmt.Errorf("model: %s: metadata %s is missing", c.Arch, key)
	}
	var secs []int64
	if vals, isInts := v.Int32s(); isInts {
		if len(vals) != 4 {
			return fmt.Errorf("model: %s: %s has %d values, want 4", c.Arch, key, len(vals))
		}
		for _, x := range vals {
			secs = append(secs, int64(x))
		}
	} else if x, isInt := v.Int(); isInt {
		secs = []int64{x, x, x, x}
	} else {
		what := v.Type.String()
		if v.Type == gguf.Array {
			what = "an array of " + v.ElemType.String()
		}
		return fmt.Errorf("model: %s: %s is %s, want 4 integers", c.Arch, key, what)
	}
	sum := int64(0)
	for i, x := range secs {
		if x < 0 || x > int64(c.HeadDim) {
			return fmt.Errorf("model: %s: %s %v: section %d is outside 0..%d", c.Arch, key, secs, i, c.HeadDim)
		}
		sum += x
		c.RopeSections[i] = int(x)
	}
	if secs[0]+secs[1]+secs[2] == 0 || sum > int64(c.HeadDim) {
		return fmt.Errorf("model: %s: %s %v: the temporal, height and width sections must take some pairs and all four at most the head dimension %d", c.Arch, key, secs, c.HeadDim)
	}
	return nil
}

// ropeSection is the section (0 temporal, 1 height, 2 width, 3 extra) whose
// position rotates pair i under M-RoPE, as ggml_mrope_cache_init picks it:
// by where i mod the sections' sum falls.
func (c *Config) ropeSection(i int) int {
	s := c.RopeSections
	k := i % (s[0] + s[1] + s[2] + s[3])
	switch {
	case k < s[0]:
		return 0
	case k < s[0]+s[1]:
		return 1
	case k < s[0]+s[1]+s[2]:
		return 2
	}
	return 3
}
