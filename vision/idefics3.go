package vision

import (
	"fmt"
	"math"

	"github.com/stepflash/stepflash/gguf"
	"github.com/stepflash/stepflash/tensor"
)

func init() { Register("idefics3", newIdefics3) }

// Idefics3 is the idefics3 projector (SmolVLM, Idefics3): the ViT, a pixel
// shuffle that merges each ScaleFactor x ScaleFactor block of patches into
// one token (features concatenated dy outer, dx inner), and one linear
// layer without bias (mm.model.fc) to ProjectionDim.
//
// An image is cut as llama.cpp's libmtmd does: scaled, keeping its aspect
// ratio, so that its longest side is PreprocImageSize, each side rounded up
// to a multiple of ImageSize (the refined size; the image is resized to it
// when it differs, with llama.cpp's bicubic resize), then cut into a grid
// of ImageSize tiles, row-major; the overview is the whole image resized
// to ImageSize x ImageSize with llama.cpp's bilinear resize.
//
// llama.cpp's versions differ on the two resizes (bilinear or bicubic
// overview; bicubic refined image, stretched or, in the newest, letterboxed
// with PAD_CEIL). The shared refs' 64x64 image needs no refined resize and
// its overview is the same under both filters, so only the overview's
// bilinear filter (which the refs' README names) and the grid rule are
// checked against llama.cpp; the stretched bicubic refined resize follows
// the version that says "only algo bicubic preserves the ratio".
type Idefics3 struct {
	cfg *Config
	vit *ViT
	FC  tensor.Matrix // mm.model.fc.weight: ProjectionDim rows of NEmbd*ScaleFactor²
}

// maxGridSide bounds the slices per side PreprocImageSize/ImageSize can ask
// for (real models: 4 or 5).
const maxGridSide = 32

func newIdefics3(f *gguf.File, cfg *Config) (Projector, error) {
	s := cfg.ScaleFactor
	switch {
	case s <= 0:
		return nil, fmt.Errorf("vision: idefics3: clip.vision.projector.scale_factor is missing or zero")
	case cfg.PatchesPerSide()%s != 0:
		return nil, fmt.Errorf("vision: idefics3: %d patches per side is not a multiple of scale_factor %d", cfg.PatchesPerSide(), s)
	case cfg.PreprocImageSize <= 0:
		return nil, fmt.Errorf("vision: idefics3: clip.vision.preproc_image_size is missing or zero")
	case cfg.PreprocImageSize > maxGridSide*cfg.ImageSize:
		return nil, fmt.Errorf("vision: idefics3: preproc_image_size %d over image_size %d asks for more than %d slices per side",
			cfg.PreprocImageSize, cfg.ImageSize, maxGridSide)
	case cfg.NEmbd*s*s > maxDim:
		return nil, fmt.Errorf("vision: idefics3: merged width %d is too large", cfg.NEmbd*s*s)
	}
	const fcName = "mm.model.fc.weight"
	if ti, ok := f.Tensor(fcName); ok && cfg.ProjectionDim == 0 && len(ti.Shape) == 2 && ti.Shape[1] <= maxDim {
		cfg.ProjectionDim = int(ti.Shape[1]) // no projection_dim key: the tensor says
	}
	if cfg.ProjectionDim <= 0 {
		return nil, fmt.Errorf("vision: idefics3: clip.vision.projection_dim is missing or zero")
	}
	w := &weights{f: f}
	m := &Idefics3{cfg: cfg, vit: loadViT(w, cfg, vitSpec{})}
	m.FC = w.matrix(fcName, cfg.ProjectionDim, cfg.NEmbd*s*s, false)
	if w.err != nil {
		return nil, w.err
	}
	return m, nil
}

// TokensPerPicture is NPatches / ScaleFactor².
func (m *Idefics3) TokensPerPicture() int {
	return m.cfg.NPatches() / (m.cfg.ScaleFactor * m.cfg.ScaleFactor)
}

// RefinedSize is the size an image of w x h is resized to before it is cut
// into tiles of align: scaled so its longest side is longest, each side
// rounded up to a multiple of align. The scale is computed in float64, as
// current llama.cpp and the Python reference do.
func RefinedSize(w, h, align, longest int) (int, int) {
	scale := math.Min(float64(longest)/float64(w), float64(longest)/float64(h))
	up := func(x float64) int { return int(math.Ceil(x/float64(align))) * align }
	return up(float64(w) * scale), up(float64(h) * scale)
}

// Prepare cuts img into its grid of slices (row-major) and the overview.
func (m *Idefics3) Prepare(img *RGB) (*Prepared, error) {
	c := m.cfg
	if img == nil || img.W <= 0 || img.H <= 0 || len(img.Pix) != 3*img.W*img.H {
		return nil, fmt.Errorf("vision: idefics3: not an RGB image")
	}
	size := c.ImageSize
	rw, rh := RefinedSize(img.W, img.H, size, c.PreprocImageSize)
	if rw <= 0 || rh <= 0 || rw > (maxGridSide+1)*size || rh > (maxGridSide+1)*size {
		return nil, fmt.Errorf("vision: idefics3: refined size %dx%d of a %dx%d image is out of range", rw, rh, img.W, img.H)
	}
	refined := img
	if rw != img.W || rh != img.H {
		refined = img.ResizeBicubic(rw, rh)
	}
	p := &Prepared{Cols: rw / size, Rows: rh / size}
	for y := 0; y < p.Rows; y++ {
		for x := 0; x < p.Cols; x++ {
			p.Pictures = append(p.Pictures, Picture{Kind: Slice, Row: y + 1, Col: x + 1, Image: refined.Crop(x*size, y*size, size, size)})
		}
	}
	p.Pictures = append(p.Pictures, Picture{Kind: Overview, Image: img.ResizeBilinear(size, size)})
	return p, nil
}

// encodeBatch is the number of pictures one forward pass takes (their
// patches go through each matrix product together).
const encodeBatch = 8

// Encode runs the ViT, the pixel shuffle and the projection.
func (m *Idefics3) Encode(pool *tensor.Pool, pics []*RGB) ([][][]float32, error) {
	c := m.cfg
	if err := squarePictures(pics, c); err != nil {
		return nil, err
	}
	s, e := c.ScaleFactor, c.NEmbd
	side, ms := c.PatchesPerSide(), c.PatchesPerSide()/c.ScaleFactor
	nt, merged := m.TokensPerPicture(), e*s*s
	out := make([][][]float32, 0, len(pics))
	for start := 0; start < len(pics); start += encodeBatch {
		batch := pics[start:min(start+encodeBatch, len(pics))]
		h := m.vit.forward(pool, batch)
		// Pixel shuffle: token (Y, X) = concat over dy, dx of patch
		// (s*Y+dy, s*X+dx).
		sh := make([]float32, len(batch)*nt*merged)
		for b := range batch {
			for t := 0; t < nt; t++ {
				Y, X := t/ms, t%ms
				dst := sh[(b*nt+t)*merged:]
				for dy := 0; dy < s; dy++ {
					for dx := 0; dx < s; dx++ {
						patch := b*side*side + (s*Y+dy)*side + s*X + dx
						copy(dst[(dy*s+dx)*e:(dy*s+dx+1)*e], h[patch*e:(patch+1)*e])
					}
				}
			}
		}
		proj := make([]float32, len(batch)*nt*c.ProjectionDim)
		tensor.MatMul(pool, m.FC, sh, len(batch)*nt, proj)
		out = appendPictures(out, proj, len(batch), nt, c.ProjectionDim)
	}
	return out, nil
}

// squarePictures checks that every picture is ImageSize x ImageSize, as the
// fixed-resolution encoders take them.
func squarePictures(pics []*RGB, c *Config) error {
	for i, p := range pics {
		if p == nil || p.W != c.ImageSize || p.H != c.ImageSize || len(p.Pix) != 3*p.W*p.H {
			return fmt.Errorf("vision: %s: picture %d is not a %dx%d RGB picture", c.ProjectorType, i, c.ImageSize, c.ImageSize)
		}
	}
	return nil
}

// appendPictures appends the embeddings of npics pictures, nt rows of dim
// each in proj, one [][]float32 per picture (rows share proj's storage).
func appendPictures(out [][][]float32, proj []float32, npics, nt, dim int) [][][]float32 {
	for b := 0; b < npics; b++ {
		rows := make([][]float32, nt)
		for t := range rows {
			r := (b*nt + t) * dim
			rows[t] = proj[r : r+dim : r+dim]
		}
		out = append(out, rows)
	}
	return out
}

// Layout lays an idefics3 image out as libmtmd does: per slice
// "<fake_token_around_image><row_R_col_C>" then its embeddings, "\n" after
// every row but the last, then "\n\n<fake_token_around_image><global-img>",
// the overview's embeddings and "<fake_token_around_image>".
func (m *Idefics3) Layout(p *Prepared, embd [][][]float32) ([]Segment, error) {
	if len(embd) != len(p.Pictures) {
		return nil, fmt.Errorf("vision: idefics3: %d pictures, %d embeddings", len(p.Pictures), len(embd))
	}
	var segs []Segment
	ov := -1
	lastRow := 0
	for i, pic := range p.Pictures {
		switch pic.Kind {
		case Overview:
			ov = i
			continue
		case Slice:
			if lastRow != 0 && pic.Row != lastRow {
				segs = append(segs, Segment{Text: "\n"})
			}
			lastRow = pic.Row
			segs = append(segs,
				Segment{Text: fmt.Sprintf("<fake_token_around_image><row_%d_col_%d>", pic.Row, pic.Col)},
				Segment{Embeddings: embd[i], Picture: i})
		}
	}
	if ov < 0 {
		return nil, fmt.Errorf("vision: idefics3: no overview picture")
	}
	segs = append(segs,
		Segment{Text: "\n\n<fake_token_around_image><global-img>"},
		Segment{Embeddings: embd[ov], Picture: ov},
		Segment{Text: "<fake_token_around_image>"})
	return segs, nil
}
