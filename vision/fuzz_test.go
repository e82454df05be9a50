package vision

import (
	"image"
	"image/color"
	"testing"
)

// FuzzPrepareEncode: any image size and content (width and height from the
// first bytes, the pixels from the rest) is cut into pictures of the
// encoder's size and encoded into finite embeddings of the projection
// width, or refused with an error; never a panic.
func FuzzPrepareEncode(f *testing.F) {
	e := openTiny(f, 1)
	f.Cleanup(func() { e.Close() })
	f.Add([]byte{64, 64, 200, 10, 10})
	f.Add([]byte{1, 1, 0})
	f.Add([]byte{255, 3, 1, 2, 3, 4})
	f.Add([]byte{7, 200})
	f.Fuzz(func(t *testing.T, data []byte) {
		img, w, h := fuzzImage(data)
		if img == nil {
			return
		}
		p, err := e.Prepare(img)
		if err != nil {
			return
		}
		size := e.Config().ImageSize
		for i, pic := range p.Pictures {
			if pic.Image == nil || pic.Image.W != size || pic.Image.H != size {
				t.Fatalf("%dx%d: picture %d is not %dx%d", w, h, i, size, size)
			}
		}
		embd, err := e.Encode(p)
		if err != nil {
			t.Fatalf("%dx%d: prepared but not encoded: %v", w, h, err)
		}
		for _, pic := range embd {
			for _, row := range pic {
				if len(row) != e.EmbeddingDim() {
					t.Fatalf("%dx%d: an embedding of %d values", w, h, len(row))
				}
				for _, v := range row {
					if v != v || v > 1e30 || v < -1e30 {
						t.Fatalf("%dx%d: embedding value %g", w, h, v)
					}
				}
			}
		}
	})
}

// fuzzImage is the image a fuzz input describes: width and height from the
// first two bytes (1..256), the pixels cycling through the rest (nil for
// fewer than two bytes).
func fuzzImage(data []byte) (img *image.NRGBA, w, h int) {
	if len(data) < 2 {
		return nil, 0, 0
	}
	w, h = int(data[0])+1, int(data[1])+1
	img = image.NewNRGBA(image.Rect(0, 0, w, h))
	px := data[2:]
	for i := range w * h {
		if len(px) == 0 {
			break
		}
		c := px[i%len(px)]
		img.Set(i%w, i/w, color.NRGBA{R: c, G: c * 3, B: c * 7, A: 255 - c/2})
	}
	return img, w, h
}
