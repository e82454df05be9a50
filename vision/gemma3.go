package vision

import (
	"fmt"

	"github.com/stepflash/stepflash/gguf"
	"github.com/stepflash/stepflash/tensor"
)

func init() { Register("gemma3", newGemma3) }

// Gemma3 is the gemma3 projector (Gemma 3's SigLIP encoder): the ViT on
// one ImageSize picture, an average pool over each Pool x Pool block of
// patches (clip.vision.projector.scale_factor, 4 when absent: 4,096
// patches become 256 tokens), RMSNorm with mm.soft_emb_norm, and
// mm.input_projection to the text model's width.
//
// The picture is the image fitted into ImageSize x ImageSize as llama.cpp
// does for this projector: scaled keeping its aspect ratio (bilinear) and
// centred on black (PAD_CEIL; a square image just resized). The prompt
// layout is "<start_of_image>", the embeddings, "<end_of_image>", and the
// text model reads the embeddings with attention in both directions among
// them (Segment.Bidirectional).
type Gemma3 struct {
	cfg  *Config
	vit  *ViT
	Pool int
	Norm []float32 // mm.soft_emb_norm.weight [NEmbd]
	// Proj is mm.input_projection.weight transposed to ProjectionDim rows
	// of NEmbd (the file stores it NEmbd rows of ProjectionDim, which
	// llama.cpp transposes in its graph), in float32.
	Proj tensor.Matrix
}

func newGemma3(f *gguf.File, cfg *Config) (Projector, error) {
	k := cfg.ScaleFactor
	if k == 0 {
		k = 4 // llama.cpp's default for every Gemma 3 size
	}
	if side := cfg.PatchesPerSide(); side%k != 0 {
		return nil, fmt.Errorf("vision: gemma3: %d patches per side is not a multiple of the pooling factor %d", side, k)
	}
	const projName = "mm.input_projection.weight"
	if ti, ok := f.Tensor(projName); ok && cfg.ProjectionDim == 0 && len(ti.Shape) == 2 && ti.Shape[0] <= maxDim {
		cfg.ProjectionDim = int(ti.Shape[0]) // no projection_dim key: the tensor says
	}
	if cfg.ProjectionDim <= 0 {
		return nil, fmt.Errorf("vision: gemma3: clip.vision.projection_dim is missing or zero")
	}
	if cfg.ProjectionDim*cfg.NEmbd > maxElements {
		return nil, fmt.Errorf("vision: gemma3: projection of %d x %d is too large", cfg.ProjectionDim, cfg.NEmbd)
	}
	w := &weights{f: f}
	m := &Gemma3{cfg: cfg, vit: loadViT(w, cfg, vitSpec{}), Pool: k}
	m.Norm = w.vector("mm.soft_emb_norm.weight", cfg.NEmbd, false)
	p := w.vector(projName, cfg.NEmbd*cfg.ProjectionDim, false, cfg.ProjectionDim, cfg.NEmbd)
	if w.err != nil {
		return nil, w.err
	}
	raw := make([]byte, 4*len(p))
	t := tensor.F32s(raw)
	for i := 0; i < cfg.NEmbd; i++ {
		for j := 0; j < cfg.ProjectionDim; j++ {
			t[j*cfg.NEmbd+i] = p[i*cfg.ProjectionDim+j]
		}
	}
	var err error
	if m.Proj, err = tensor.NewMatrix(gguf.TypeF32, cfg.ProjectionDim, cfg.NEmbd, raw); err != nil {
		return nil, fmt.Errorf("vision: gemma3: %s: %w", projName, err)
	}
	return m, nil
}

// TokensPerPicture is NPatches / Pool².
func (m *Gemma3) TokensPerPicture() int { return m.cfg.NPatches() / (m.Pool * m.Pool) }

// Prepare fits img into one picture.
func (m *Gemma3) Prepare(img *RGB) (*Prepared, error) {
	if img == nil || img.W <= 0 || img.H <= 0 || len(img.Pix) != 3*img.W*img.H {
		return nil, fmt.Errorf("vision: gemma3: not an RGB image")
	}
	return &Prepared{Pictures: []Picture{{Kind: Overview, Image: img.Letterbox(m.cfg.ImageSize, [3]uint8{})}}}, nil
}

// Encode runs the ViT, the pooling, the norm and the projection.
func (m *Gemma3) Encode(pool *tensor.Pool, pics []*RGB) ([][][]float32, error) {
	c := m.cfg
	if err := squarePictures(pics, c); err != nil {
		return nil, err
	}
	e, k, side := c.NEmbd, m.Pool, c.PatchesPerSide()
	ms, nt := side/k, m.TokensPerPicture()
	inv := float32(k * k)
	out := make([][][]float32, 0, len(pics))
	for start := 0; start < len(pics); start += encodeBatch {
		batch := pics[start:min(start+encodeBatch, len(pics))]
		h := m.vit.forward(pool, batch)
		// Token (Y, X) = the mean of patches (kY+dy, kX+dx), summed dy
		// outer, dx inner, then divided (ggml_pool_2d).
		pooled := make([]float32, len(batch)*nt*e)
		pool.For(len(batch)*nt, func(lo, hi int) {
			for bt := lo; bt < hi; bt++ {
				b, t := bt/nt, bt%nt
				Y, X := t/ms, t%ms
				dst := pooled[bt*e : (bt+1)*e]
				for dy := 0; dy < k; dy++ {
					for dx := 0; dx < k; dx++ {
						patch := b*side*side + (k*Y+dy)*side + k*X + dx
						tensor.Add(dst, h[patch*e:(patch+1)*e])
					}
				}
				for i := range dst {
					dst[i] /= inv
				}
				tensor.RMSNorm(dst, dst, m.Norm, c.Eps)
			}
		})
		proj := make([]float32, len(batch)*nt*c.ProjectionDim)
		tensor.MatMul(pool, m.Proj, pooled, len(batch)*nt, proj)
		out = appendPictures(out, proj, len(batch), nt, c.ProjectionDim)
	}
	return out, nil
}

// Layout lays a Gemma 3 image out as libmtmd does: "<start_of_image>", the
// embeddings (read bidirectionally), "<end_of_image>".
func (m *Gemma3) Layout(p *Prepared, embd [][][]float32) ([]Segment, error) {
	if len(embd) != 1 || len(p.Pictures) != 1 {
		return nil, fmt.Errorf("vision: gemma3: %d pictures, %d embeddings; want one of each", len(p.Pictures), len(embd))
	}
	return []Segment{
		{Text: "<start_of_image>"},
		{Embeddings: embd[0], Bidirectional: true},
		{Text: "<end_of_image>"},
	}, nil
}
