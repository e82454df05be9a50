package vision

import (
	"fmt"
	"image"
	"image/color"
	"math"
)

// RGB is an 8-bit RGB picture, pixels row-major and interleaved
// (Pix[3*(y*W+x)+c]), as llama.cpp's clip_image_u8.
type RGB struct {
	W, H int
	Pix  []uint8
}

// NewRGB returns a black w x h picture.
func NewRGB(w, h int) *RGB { return &RGB{W: w, H: h, Pix: make([]uint8, 3*w*h)} }

// At returns the pixel at (x, y).
func (p *RGB) At(x, y int) [3]uint8 {
	i := 3 * (y*p.W + x)
	return [3]uint8{p.Pix[i], p.Pix[i+1], p.Pix[i+2]}
}

// Set sets the pixel at (x, y).
func (p *RGB) Set(x, y int, c [3]uint8) {
	i := 3 * (y*p.W + x)
	p.Pix[i], p.Pix[i+1], p.Pix[i+2] = c[0], c[1], c[2]
}

// maxImagePixels bounds the images FromImage accepts (8k x 8k pixels).
const maxImagePixels = 1 << 26

// FromImage converts any image to 8-bit RGB. Alpha is dropped without
// compositing (colours are taken un-premultiplied), as stb_image does when
// llama.cpp asks it for 3 channels.
func FromImage(img image.Image) (*RGB, error) {
	if img == nil {
		return nil, fmt.Errorf("vision: nil image")
	}
	b := img.Bounds()
	w, h := b.Dx(), b.Dy()
	if w <= 0 || h <= 0 {
		return nil, fmt.Errorf("vision: empty image (%dx%d)", w, h)
	}
	if int64(w)*int64(h) > maxImagePixels {
		return nil, fmt.Errorf("vision: image %dx%d is too large (at most %d pixels)", w, h, maxImagePixels)
	}
	out := NewRGB(w, h)
	switch src := img.(type) {
	case *image.NRGBA:
		for y := 0; y < h; y++ {
			row := src.Pix[(y+b.Min.Y-src.Rect.Min.Y)*src.Stride+(b.Min.X-src.Rect.Min.X)*4:]
			for x := 0; x < w; x++ {
				copy(out.Pix[3*(y*w+x):3*(y*w+x)+3], row[4*x:4*x+3])
			}
		}
	case *image.RGBA:
		for y := 0; y < h; y++ {
			row := src.Pix[(y+b.Min.Y-src.Rect.Min.Y)*src.Stride+(b.Min.X-src.Rect.Min.X)*4:]
			for x := 0; x < w; x++ {
				p := row[4*x : 4*x+4]
				if p[3] == 0xff {
					copy(out.Pix[3*(y*w+x):3*(y*w+x)+3], p[:3])
					continue
				}
				c := color.NRGBAModel.Convert(color.RGBA{p[0], p[1], p[2], p[3]}).(color.NRGBA)
				out.Set(x, y, [3]uint8{c.R, c.G, c.B})
			}
		}
	default:
		for y := 0; y < h; y++ {
			for x := 0; x < w; x++ {
				c := color.NRGBAModel.Convert(img.At(b.Min.X+x, b.Min.Y+y)).(color.NRGBA)
				out.Set(x, y, [3]uint8{c.R, c.G, c.B})
			}
		}
	}
	return out, nil
}

// Crop returns the w x h picture at (x, y) of p (the rectangle must lie
// inside p).
func (p *RGB) Crop(x, y, w, h int) *RGB {
	out := NewRGB(w, h)
	for i := 0; i < h; i++ {
		copy(out.Pix[3*i*w:3*(i+1)*w], p.Pix[3*((y+i)*p.W+x):3*((y+i)*p.W+x+w)])
	}
	return out
}

func (p *RGB) clone() *RGB {
	return &RGB{W: p.W, H: p.H, Pix: append([]uint8(nil), p.Pix...)}
}

// lerp is llama.cpp's s + (e - s) * t in float32 (no fused multiply-add).
func lerp(s, e, t float32) float32 { return s + float32((e-s)*t) }

// ResizeBilinear resizes p to w x h as llama.cpp's bilinear resize does:
// source coordinate x*(src-1)/(dst-1) per axis, float32 linear
// interpolation, truncation to u8. A picture already of that size is copied.
func (p *RGB) ResizeBilinear(w, h int) *RGB {
	if w == p.W && h == p.H {
		return p.clone()
	}
	w, h = max(w, 1), max(h, 1)
	out := NewRGB(w, h)
	var xr, yr float32
	if w > 1 {
		xr = float32(p.W-1) / float32(w-1)
	}
	if h > 1 {
		yr = float32(p.H-1) / float32(h-1)
	}
	for y := 0; y < h; y++ {
		py := float32(y) * yr
		y0 := min(int(py), p.H-1)
		y1 := min(y0+1, p.H-1)
		yf := py - float32(y0)
		for x := 0; x < w; x++ {
			px := float32(x) * xr
			x0 := min(int(px), p.W-1)
			x1 := min(x0+1, p.W-1)
			xf := px - float32(x0)
			p00, p10, p01, p11 := p.At(x0, y0), p.At(x1, y0), p.At(x0, y1), p.At(x1, y1)
			var c [3]uint8
			for k := range c {
				top := lerp(float32(p00[k]), float32(p10[k]), xf)
				bottom := lerp(float32(p01[k]), float32(p11[k]), xf)
				c[k] = uint8(lerp(top, bottom, yf))
			}
			out.Set(x, y, c)
		}
	}
	return out
}

// ResizeBicubic resizes p to w x h as llama.cpp's bicubic resize
// (img_tool::resize_bicubic, after ViT.cpp) does: source coordinate
// x*src/dst, a cubic through the 4x4 neighbourhood (clamped at the edges),
// rounded and clamped to u8. A picture already of that size is copied.
func (p *RGB) ResizeBicubic(w, h int) *RGB {
	if w == p.W && h == p.H {
		return p.clone()
	}
	w, h = max(w, 1), max(h, 1)
	out := NewRGB(w, h)
	nx, ny := p.W, p.H
	tx := float32(nx) / float32(w)
	ty := float32(ny) / float32(h)
	clampi := func(v, lo, hi int) int { return min(max(v, lo), hi) }
	// cubic evaluates llama.cpp's interpolation through four samples at
	// offset d in [0,1): the coefficients are computed in double and
	// stored as float, the polynomial in float.
	cubic := func(c0, c1, c2, c3, d float32) float32 {
		d0, d2, d3, a0 := c0-c1, c2-c1, c3-c1, c1
		a1 := float32(-1.0/3*float64(d0) + float64(d2) - 1.0/6*float64(d3))
		a2 := float32(1.0/2*float64(d0) + 1.0/2*float64(d2))
		a3 := float32(-1.0/6*float64(d0) - 1.0/2*float64(d2) + 1.0/6*float64(d3))
		return a0 + float32(a1*d) + float32(float32(a2*d)*d) + float32(float32(float32(a3*d)*d)*d)
	}
	for i := 0; i < h; i++ {
		for j := 0; j < w; j++ {
			x := int(tx * float32(j))
			y := int(ty * float32(i))
			dx := tx*float32(j) - float32(x)
			dy := ty*float32(i) - float32(y)
			var px [3]uint8
			for k := 0; k < 3; k++ {
				var C [4]float32
				for jj := 0; jj < 4; jj++ {
					yy := clampi(y-1+jj, 0, ny-1)
					g := func(xx int) float32 { return float32(p.Pix[3*(yy*nx+clampi(xx, 0, nx-1))+k]) }
					C[jj] = cubic(g(x-1), g(x), g(x+1), g(x+2), dx)
				}
				cc := cubic(C[0], C[1], C[2], C[3], dy)
				px[k] = uint8(min(max(float32(math.Round(float64(cc))), 0), 255))
			}
			out.Set(j, i, px)
		}
	}
	return out
}

// Letterbox fits p into a size x size picture: Fit(size, size, pad).
func (p *RGB) Letterbox(size int, pad [3]uint8) *RGB { return p.Fit(size, size, pad) }

// Fit fits p into a w x h picture as llama.cpp's resize with PAD_CEIL does:
// scaled (bilinear, see ResizeBilinear) by the smaller of the two side
// ratios, each side rounded up (float32 arithmetic) and at most w or h,
// centred (offsets rounded down) on a background of pad. A picture already
// of that size is copied.
func (p *RGB) Fit(w, h int, pad [3]uint8) *RGB {
	if p.W == w && p.H == h {
		return p.clone()
	}
	scale := min(float32(w)/float32(p.W), float32(h)/float32(p.H))
	nw := min(int(math.Ceil(float64(float32(p.W)*scale))), w)
	nh := min(int(math.Ceil(float64(float32(p.H)*scale))), h)
	scaled := p.ResizeBilinear(nw, nh)
	out := NewRGB(w, h)
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			out.Set(x, y, pad)
		}
	}
	ox, oy := (w-scaled.W)/2, (h-scaled.H)/2
	for y := 0; y < scaled.H; y++ {
		copy(out.Pix[3*((oy+y)*w+ox):][:3*scaled.W], scaled.Pix[3*y*scaled.W:][:3*scaled.W])
	}
	return out
}
