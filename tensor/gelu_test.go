package tensor

import (
	"math"
	"testing"
)

// TestF32ToF16 checks the fp16 rounding against the nearest of the
// neighbouring halves (ties to even) over many float32 values.
func TestF32ToF16(t *testing.T) {
	half := func(h uint16) float64 { return float64(f16ToF32(h)) }
	for h := 0; h < 0x7c00; h++ { // every finite positive half round-trips
		if got := f32ToF16(float32(half(uint16(h)))); got != uint16(h) {
			t.Fatalf("half %#x round-trips to %#x", h, got)
		}
	}
	x := uint32(0x2f000000)
	for i := 0; i < 200000; i++ {
		x = x*1664525 + 1013904223
		f := math.Float32frombits(x&0x3fffffff | 0x20000000) // 2^-63 .. 2^65
		h := f32ToF16(f)
		if f >= 65520 {
			if h != 0x7c00 {
				t.Fatalf("%g -> %#x, want Inf", f, h)
			}
			continue
		}
		v, d := half(h), math.Abs(half(h)-float64(f))
		for _, n := range []uint16{h - 1, h + 1} {
			if h == 0 && n == h-1 || n >= 0x7c00 {
				continue
			}
			dn := math.Abs(half(n) - float64(f))
			if dn < d || dn == d && h&1 == 1 {
				t.Fatalf("%g -> %#x (%g), but %#x (%g) is nearer or even", f, h, v, n, half(n))
			}
		}
		if g := f32ToF16(-f); g != h|0x8000 {
			t.Fatalf("-%g -> %#x, want %#x", f, g, h|0x8000)
		}
	}
}

// TestGELUTable spot-checks the table GELU against float64 GELU (within
// fp16 resolution) and its clamps.
func TestGELUTable(t *testing.T) {
	x := []float32{-20, -10, -3, -1, -0.5, 0, 0.001, 0.5, 1, 3, 9.99, 10, 25}
	y := append([]float32(nil), x...)
	GELU(y)
	for i, v := range x {
		xf := float64(v)
		want := 0.5 * xf * (1 + math.Tanh(math.Sqrt(2/math.Pi)*(xf+0.044715*xf*xf*xf)))
		if v <= -10 {
			want = 0
		}
		if v >= 10 {
			want = xf
		}
		if d := math.Abs(float64(y[i]) - want); d > 2e-3*math.Max(1, math.Abs(want)) {
			t.Errorf("gelu(%g) = %g, want about %g", v, y[i], want)
		}
	}
}

// TestGeGLU checks the gated form against GELU then a product, with its
// clamps (below -10: 0; from 10: the input times up).
func TestGeGLU(t *testing.T) {
	gate := []float32{-20, -10, -3, -0.5, 0, 0.7, 3, 9.99, 10, 25}
	up := []float32{2, 3, -1, 0.5, 7, -2, 1.5, 0.25, -1, 0.5}
	want := append([]float32(nil), gate...)
	GELU(want)
	for i := range want {
		want[i] *= up[i]
	}
	got := append([]float32(nil), gate...)
	GeGLU(got, up)
	for i := range got {
		if got[i] != want[i] {
			t.Errorf("GeGLU(%g, %g) = %g, want %g", gate[i], up[i], got[i], want[i])
		}
	}
}
