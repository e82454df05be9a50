package vision

import (
	"fmt"
	"math"

	"github.com/stepflash/stepflash/gguf"
)

// Activation is a ViT feed-forward nonlinearity.
type Activation int

const (
	// GELU is tanh-GELU through ggml's fp16 table (clip.use_gelu).
	GELU Activation = iota
	// SiLU is x*sigmoid(x) (clip.use_silu).
	SiLU
	// QuickGELU is x*sigmoid(1.702x) through ggml's fp16 table (neither key).
	QuickGELU
)

func (a Activation) String() string {
	switch a {
	case GELU:
		return "gelu"
	case SiLU:
		return "silu"
	case QuickGELU:
		return "gelu_quick"
	}
	return fmt.Sprintf("Activation(%d)", int(a))
}

// Config holds a clip vision encoder's hyperparameters, read from the
// clip.* metadata of a projector GGUF.
type Config struct {
	Name          string // general.name, if any
	ProjectorType string // clip.projector_type (or clip.vision.projector_type)

	ImageSize  int // clip.vision.image_size: the side of one encoded picture
	PatchSize  int // clip.vision.patch_size
	NEmbd      int // clip.vision.embedding_length: the ViT width
	NFF        int // clip.vision.feed_forward_length
	NHead      int // clip.vision.attention.head_count
	NLayer     int // clip.vision.block_count
	Eps        float32
	ImageMean  [3]float32 // clip.vision.image_mean
	ImageStd   [3]float32 // clip.vision.image_std
	Activation Activation // clip.use_gelu / clip.use_silu

	// ScaleFactor is clip.vision.projector.scale_factor (pixel shuffle or
	// pooling factor); 0 when absent.
	ScaleFactor int
	// PreprocImageSize is clip.vision.preproc_image_size, the longest side
	// an image is scaled to before slicing (idefics3); 0 when absent.
	PreprocImageSize int
	// ProjectionDim is the width of the output embeddings: the text model's
	// embedding width. clip.vision.projection_dim, checked against the
	// projector's output tensor.
	ProjectionDim int
}

// PatchesPerSide is the number of patches along each side of a picture.
func (c *Config) PatchesPerSide() int { return c.ImageSize / c.PatchSize }

// NPatches is the number of patches of one picture.
func (c *Config) NPatches() int { return c.PatchesPerSide() * c.PatchesPerSide() }

// HeadDim is the width of one attention head.
func (c *Config) HeadDim() int { return c.NEmbd / c.NHead }

// Limits on hyperparameters: far above any real encoder, low enough that
// products of them cannot overflow and allocations stay bounded.
const (
	maxDim       = 1 << 16 // widths, feed-forward lengths
	maxImageSize = 1 << 13 // pixels per side of one picture
	maxPatches   = 1 << 14 // patches per picture
	maxLayers    = 1 << 10
	maxElements  = 1 << 28 // elements of one tensor
)

// cmeta reads clip metadata and remembers the first error.
type cmeta struct {
	f   *gguf.File
	err error
}

func (m *cmeta) fail(format string, args ...any) {
	if m.err == nil {
		m.err = fmt.Errorf("vision: "+format, args...)
	}
}

func (m *cmeta) uint(key string, max int, required bool) int {
	v, ok := m.f.Uint(key)
	if !ok {
		if _, present := m.f.Get(key); present {
			m.fail("metadata %s is not a non-negative integer", key)
		} else if required {
			m.fail("metadata %s is missing", key)
		}
		return 0
	}
	if v > uint64(max) {
		m.fail("metadata %s = %d is out of range (at most %d)", key, v, max)
		return 0
	}
	return int(v)
}

func (m *cmeta) float(key string, def float32) float32 {
	v, ok := m.f.Float(key)
	if !ok {
		if _, present := m.f.Get(key); present {
			m.fail("metadata %s is not a number", key)
		}
		return def
	}
	if math.IsNaN(v) || math.IsInf(v, 0) || math.Abs(v) > math.MaxFloat32 {
		m.fail("metadata %s = %v is not a finite float32", key, v)
		return def
	}
	return float32(v)
}

func (m *cmeta) triple(key string) [3]float32 {
	var out [3]float32
	v, ok := m.f.Float32s(key)
	if !ok {
		if _, present := m.f.Get(key); present {
			m.fail("metadata %s is not an array of numbers", key)
		} else {
			m.fail("metadata %s is missing", key)
		}
		return out
	}
	if len(v) != 3 {
		m.fail("metadata %s has %d values, want 3 (R, G, B)", key, len(v))
		return out
	}
	for i, x := range v {
		if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
			m.fail("metadata %s[%d] = %v is not finite", key, i, x)
		}
		out[i] = x
	}
	return out
}

func (m *cmeta) bool(key string) bool {
	v, ok := m.f.Bool(key)
	if !ok {
		if _, present := m.f.Get(key); present {
			m.fail("metadata %s is not a boolean", key)
		}
	}
	return v
}

// ReadConfig reads and checks the vision hyperparameters of a clip GGUF.
// It does not check that the projector type is supported (Load does).
func ReadConfig(f *gguf.File) (*Config, error) {
	if arch := f.Architecture(); arch != "clip" {
		return nil, fmt.Errorf("vision: general.architecture is %q, want \"clip\" (a projector GGUF, often named mmproj-*.gguf)", arch)
	}
	m := &cmeta{f: f}
	c := &Config{}
	c.Name, _ = f.String("general.name")
	if has, ok := f.Bool("clip.has_vision_encoder"); ok && !has {
		return nil, fmt.Errorf("vision: the file has no vision encoder (clip.has_vision_encoder is false)")
	}
	c.ProjectorType, _ = f.String("clip.vision.projector_type")
	if c.ProjectorType == "" {
		c.ProjectorType, _ = f.String("clip.projector_type")
	}
	if c.ProjectorType == "" {
		return nil, fmt.Errorf("vision: metadata clip.projector_type is missing")
	}
	c.ImageSize = m.uint("clip.vision.image_size", maxImageSize, true)
	c.PatchSize = m.uint("clip.vision.patch_size", maxImageSize, true)
	c.NEmbd = m.uint("clip.vision.embedding_length", maxDim, true)
	c.NFF = m.uint("clip.vision.feed_forward_length", maxDim, true)
	c.NHead = m.uint("clip.vision.attention.head_count", maxDim, true)
	c.NLayer = m.uint("clip.vision.block_count", maxLayers, true)
	c.Eps = m.float("clip.vision.attention.layer_norm_epsilon", 1e-6)
	c.ImageMean = m.triple("clip.vision.image_mean")
	c.ImageStd = m.triple("clip.vision.image_std")
	c.ScaleFactor = m.uint("clip.vision.projector.scale_factor", maxImageSize, false)
	c.PreprocImageSize = m.uint("clip.vision.preproc_image_size", maxImageSize*8, false)
	c.ProjectionDim = m.uint("clip.vision.projection_dim", maxDim, false)
	switch {
	case m.bool("clip.use_gelu"):
		c.Activation = GELU
	case m.bool("clip.use_silu"):
		c.Activation = SiLU
	default:
		c.Activation = QuickGELU
	}
	if m.err != nil {
		return nil, m.err
	}
	t := c.ProjectorType
	switch {
	case c.ImageSize <= 0 || c.PatchSize <= 0 || c.NEmbd <= 0 || c.NFF <= 0 || c.NHead <= 0 || c.NLayer <= 0:
		return nil, fmt.Errorf("vision: %s: image_size %d, patch_size %d, embedding_length %d, feed_forward_length %d, head_count %d and block_count %d must be positive",
			t, c.ImageSize, c.PatchSize, c.NEmbd, c.NFF, c.NHead, c.NLayer)
	case c.ImageSize%c.PatchSize != 0:
		return nil, fmt.Errorf("vision: %s: image_size %d is not a multiple of patch_size %d", t, c.ImageSize, c.PatchSize)
	case c.NPatches() > maxPatches:
		return nil, fmt.Errorf("vision: %s: %d patches per picture is too many (at most %d)", t, c.NPatches(), maxPatches)
	case c.NEmbd%c.NHead != 0:
		return nil, fmt.Errorf("vision: %s: embedding_length %d is not a multiple of head_count %d", t, c.NEmbd, c.NHead)
	case c.NLayer > len(f.Tensors):
		return nil, fmt.Errorf("vision: %s: block_count %d exceeds the %d tensors in the file", t, c.NLayer, len(f.Tensors))
	case !(c.Eps > 0):
		return nil, fmt.Errorf("vision: %s: layer_norm_epsilon %g must be positive", t, c.Eps)
	}
	for i, s := range c.ImageStd {
		if s == 0 {
			return nil, fmt.Errorf("vision: %s: image_std[%d] is zero", t, i)
		}
	}
	return c, nil
}
