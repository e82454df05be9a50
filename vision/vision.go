package vision

import (
	"fmt"
	"image"

	"github.com/stepflash/stepflash/gguf"
	"github.com/stepflash/stepflash/internal/registry"
	"github.com/stepflash/stepflash/tensor"
)

// PictureKind says what part of an image a picture is.
type PictureKind int

const (
	// Slice is one tile of the grid an image is cut into.
	Slice PictureKind = iota
	// Overview is the whole image, resized to one picture.
	Overview
)

func (k PictureKind) String() string {
	if k == Overview {
		return "overview"
	}
	return "slice"
}

// Picture is one input of the encoder: a tile of the image or its overview.
type Picture struct {
	Kind     PictureKind
	Row, Col int // 1-based grid position of a slice; 0 for the overview
	Image    *RGB
}

// Prepared is an image cut into the pictures the encoder takes, in prompt
// order (for idefics3: slices row-major, then the overview).
type Prepared struct {
	Cols, Rows int // the slice grid; 0 x 0 when the image is not sliced
	Pictures   []Picture
}

// Segment is one piece of what replaces the media marker in a prompt:
// either Text, to tokenize with the text model's tokenizer (special tokens
// parsed), or Embeddings, one position per row, fed in place of token
// embeddings. Exactly one of the two is set.
type Segment struct {
	Text       string
	Embeddings [][]float32
	// Picture is the index in Prepared.Pictures of an embeddings segment.
	Picture int
	// Bidirectional says the text model reads an embeddings segment with
	// attention in both directions among its positions, as llama.cpp
	// decodes Gemma 3's images (causal attention off).
	Bidirectional bool
	// Rows and Cols, when set, say that the text model reads an
	// embeddings segment with 2-D positions (M-RoPE, as Qwen2-VL): its
	// embeddings are a Rows x Cols grid, row-major. Zero: one position
	// after another.
	Rows, Cols int
}

// Projector is one registered projector type: its preprocessing, its
// encoder and its prompt layout.
type Projector interface {
	// Prepare converts and cuts an image into pictures.
	Prepare(img *RGB) (*Prepared, error)
	// Encode runs pictures (of the sizes Prepare makes, which it checks)
	// through the encoder and the projector; out[i] holds picture i's
	// embeddings, rows of Config.ProjectionDim.
	Encode(pool *tensor.Pool, pics []*RGB) ([][][]float32, error)
	// TokensPerPicture is the number of embeddings of one picture; 0 when
	// it depends on the image (dynamic resolution).
	TokensPerPicture() int
	// Layout interleaves the pictures' embeddings (embd[i] for
	// p.Pictures[i]) with the text pieces the text model expects.
	Layout(p *Prepared, embd [][][]float32) ([]Segment, error)
}

// Constructor builds a projector type from an opened GGUF file whose
// hyperparameters cfg has read; it checks every tensor it uses.
type Constructor func(f *gguf.File, cfg *Config) (Projector, error)

var constructors = registry.New[Constructor]("vision: projector type")

// Register makes a projector type available under its clip.projector_type name.
func Register(projType string, c Constructor) { constructors.Register(projType, c) }

// ProjectorTypes lists the registered projector types.
func ProjectorTypes() []string { return constructors.Names() }

// Options tune how an encoder runs.
type Options struct {
	// Threads is the number of threads of the encoder's own pool (default
	// 1); ignored when Pool is set.
	Threads int
	// Pool, if set, is used instead of a pool of the encoder's own (e.g.
	// the text model's); the encoder does not close it.
	Pool *tensor.Pool
	// Loading says how Open brings the file into memory (default
	// gguf.LoadAuto).
	Loading gguf.Loading
}

// Encoder is a loaded vision projector. Its methods may be called from
// several goroutines; calls that share a pool run one at a time on it.
type Encoder struct {
	proj    Projector
	cfg     *Config
	pool    *tensor.Pool
	ownPool bool
	file    *gguf.File // closed by Close when Open opened it
}

// Load builds the encoder of an already opened projector GGUF. The file
// must stay open while the encoder is used.
func Load(f *gguf.File, opts Options) (*Encoder, error) {
	cfg, err := ReadConfig(f)
	if err != nil {
		return nil, err
	}
	ctor, _ := constructors.Get(cfg.ProjectorType)
	if ctor == nil {
		return nil, fmt.Errorf("vision: projector type %q is not supported (supported: %v)", cfg.ProjectorType, ProjectorTypes())
	}
	p, err := ctor(f, cfg)
	if err != nil {
		return nil, err
	}
	e := &Encoder{proj: p, cfg: cfg, pool: opts.Pool}
	if e.pool == nil {
		e.pool, e.ownPool = tensor.NewPool(max(opts.Threads, 1)), true
	}
	return e, nil
}

// Open opens a projector GGUF and loads its encoder; Close closes both.
func Open(path string, opts Options) (*Encoder, error) {
	f, err := gguf.OpenWith(path, opts.Loading)
	if err != nil {
		return nil, err
	}
	e, err := Load(f, opts)
	if err != nil {
		f.Close()
		return nil, err
	}
	e.file = f
	return e, nil
}

// Close stops the encoder's own threads and closes the file if Open opened it.
func (e *Encoder) Close() error {
	if e.ownPool {
		e.pool.Close()
	}
	if e.file != nil {
		return e.file.Close()
	}
	return nil
}

// Config returns the hyperparameters.
func (e *Encoder) Config() *Config { return e.cfg }

// EmbeddingDim is the width of the embeddings: the text model's n_embd
// must equal it.
func (e *Encoder) EmbeddingDim() int { return e.cfg.ProjectionDim }

// Grids says whether the encoder's embeddings are grids read with 2-D
// positions (Segment.Rows, Cols): the text model must have M-RoPE.
func (e *Encoder) Grids() bool {
	g, ok := e.proj.(interface{ Grids() bool })
	return ok && g.Grids()
}

// TokensPerPicture is the number of embeddings (positions) one picture
// takes; 0 when it depends on the image.
func (e *Encoder) TokensPerPicture() int { return e.proj.TokensPerPicture() }

// Prepare converts an image to RGB and cuts it into the pictures the
// encoder takes.
func (e *Encoder) Prepare(img image.Image) (*Prepared, error) {
	rgb, err := FromImage(img)
	if err != nil {
		return nil, err
	}
	return e.proj.Prepare(rgb)
}

// Encode returns the embeddings of each picture of p, in order.
func (e *Encoder) Encode(p *Prepared) ([][][]float32, error) {
	pics := make([]*RGB, len(p.Pictures))
	for i, pic := range p.Pictures {
		if pic.Image == nil || pic.Image.W <= 0 || pic.Image.H <= 0 || len(pic.Image.Pix) != 3*pic.Image.W*pic.Image.H {
			return nil, fmt.Errorf("vision: picture %d is not an RGB picture", i)
		}
		pics[i] = pic.Image
	}
	return e.proj.Encode(e.pool, pics)
}

// Layout interleaves the pictures' embeddings with the projector's text
// pieces.
func (e *Encoder) Layout(p *Prepared, embd [][][]float32) ([]Segment, error) {
	return e.proj.Layout(p, embd)
}

// Embed prepares, encodes and lays out one image: the segments that replace
// the media marker in the prompt.
func (e *Encoder) Embed(img image.Image) ([]Segment, error) {
	p, err := e.Prepare(img)
	if err != nil {
		return nil, err
	}
	embd, err := e.Encode(p)
	if err != nil {
		return nil, err
	}
	return e.Layout(p, embd)
}

// Positions is the number of prompt positions the embeddings segments of
// segs take (text segments not counted: they take as many as their tokens).
func Positions(segs []Segment) int {
	n := 0
	for _, s := range segs {
		n += len(s.Embeddings)
	}
	return n
}
