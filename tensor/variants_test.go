package tensor

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stepflash/stepflash/gguf"
)

// TestKernelVariantsBitExact checks every SIMD kernel variant the CPU can run
// (also those a faster variant replaces in the dispatch table) against the
// pure-Go kernel, bit for bit. kernelVariants is empty in pure-Go builds.
func TestKernelVariantsBitExact(t *testing.T) { checkKernelVariants(t) }

// checkKernelVariants is TestKernelVariantsBitExact's check, also run with
// the other row order (TestKernelVariantsRowOrders).
func checkKernelVariants(t *testing.T) {
	t.Helper()
	rng := rand.New(rand.NewPCG(19, 20))
	checked := 0
	for _, v := range kernelVariants {
		if !v.ok {
			t.Logf("%v/%s: not supported by this CPU", v.typ, v.name)
			continue
		}
		for _, cols := range []int{256, 768, 1024, 2816, 4608} {
			if v.typ.BlockSize() == 32 && cols == 768 {
				cols = 800 // an odd number of blocks
			}
			// Groups of four rows and a partial one; for the batched
			// kernels, more vectors than tileMinVecsQ4K/Q6K (the tiles, not
			// the eight- and four-vector kernels they use below it) and a
			// partial 16-row group.
			nrows, nvec := 7, 8
			if v.rowsN != nil {
				nrows, nvec = 19, 44
			}
			var w []byte
			for r := 0; r < nrows; r++ {
				w = append(w, randRow(rng, v.typ, cols)...)
			}
			rb := len(w) / nrows
			x := randFloats(rng, nvec*cols)
			var a act
			a.prepare(vecDotKind(v.typ), cols, nvec)
			a.quantize(x, 0, nvec*cols)
			a.transposeScales(nvec)
			a.expandPairScales(nvec)
			all := make([]float32, nvec*nrows)
			switch {
			case v.rows != nil:
				for j := 0; j < nvec; j++ {
					v.rows(w, nrows, &a, j*cols, all[j*nrows:(j+1)*nrows])
				}
			case v.rows4 != nil:
				for j := 0; j < nvec; j += 4 {
					v.rows4(w, nrows, &a, j, all[j*nrows:], nrows)
				}
			default:
				v.rowsN(w, nrows, &a, nvec, all, nrows)
			}
			for j := 0; j < nvec; j++ {
				out := all[j*nrows : (j+1)*nrows]
				for r, got := range out {
					want := genericKernels[v.typ](w[r*rb:(r+1)*rb], &a, j*cols)
					if v.approx {
						if bound := approxBound(v.typ, w[r*rb:(r+1)*rb], a.f[j*cols:(j+1)*cols]); math.Abs(float64(got)-float64(want)) > bound {
							t.Fatalf("%v/%s cols %d vec %d row %d: %v, generic %v: differ by more than %g", v.typ, v.name, cols, j, r, got, want, bound)
						}
						continue
					}
					if math.Float32bits(got) != math.Float32bits(want) {
						t.Fatalf("%v/%s cols %d vec %d row %d: %v != generic %v", v.typ, v.name, cols, j, r, got, want)
					}
				}
			}
		}
		checked++
	}
	t.Logf("%d kernel variants checked", checked)
}

// approxBound bounds how far an approx (not bit-exact) variant's dot of the
// BF16 row w with the rounded activations x may fall from the generic
// kernel's: both sum exact products in float32, the generic kernel in 32
// lanes of n/32 additions, VDPBF16PS in 16 lanes of n/16, each reduced
// across lanes after, so each is within (n/16+5)·2⁻²⁴·Σ|wᵢxᵢ| of the exact
// sum (first order); twice the sum of the two, plus n products of the
// smallest normal for the denormals VDPBF16PS flushes. A tile that pairs
// the wrong elements, or drops or repeats a block, misses it by far.
func approxBound(typ gguf.Type, w []byte, x []float32) float64 {
	if typ != gguf.TypeBF16 {
		panic("approxBound: " + typ.String())
	}
	var abs float64
	for i, xi := range x {
		abs += math.Abs(float64(bf16ToF32(le16(w[2*i:]))) * float64(xi))
	}
	n := float64(len(x))
	return 2*(2*(n/16+5))*0x1p-24*abs + n*0x1p-126
}

// TestVecVariantsBitExact checks every SIMD Dot, Axpy, DotRows and AxpyRows
// the CPU can run against the pure-Go versions, bit for bit.
func TestVecVariantsBitExact(t *testing.T) {
	rng := rand.New(rand.NewPCG(21, 22))
	for _, v := range vecVariants {
		if !v.ok {
			continue
		}
		for _, n := range []int{0, 1, 15, 16, 17, 31, 32, 33, 64, 100, 128, 1031} {
			a, b := randFloats(rng, n), randFloats(rng, n)
			const rows, stride = 5, 1040
			x := randFloats(rng, (rows-1)*stride+n)
			switch {
			case v.sumWords != nil:
				raw := make([]byte, 4*n+3)
				for i := range raw {
					raw[i] = byte(rng.Uint32())
				}
				for _, l := range []int{0, 1, 3, 4, 7, 255, 256, 257, len(raw)} {
					if l <= len(raw) {
						if got, want := v.sumWords(raw[:l]), sumWordsGeneric(raw[:l]); got != want {
							t.Fatalf("%s n=%d len %d: %#x != %#x", v.name, n, l, got, want)
						}
					}
				}
				continue
			case v.mulScale != nil:
				w := randFloats(rng, n)
				got, want := make([]float32, n), make([]float32, n)
				v.mulScale(got, a, w, 0.731)
				mulScaleGeneric(want, a, w, 0.731)
				for i := range got {
					if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
						t.Fatalf("%s n=%d elem %d: %v != %v", v.name, n, i, got[i], want[i])
					}
				}
				continue
			case v.subMax != nil:
				// Also a zero maximum of either sign, a NaN and -Inf.
				for k, c := range [][]float32{b, negate(b, true), negate(b, false), withNaN(b), withNegInf(b)} {
					y1 := append([]float32(nil), c...)
					y2 := append([]float32(nil), c...)
					if len(y1) > 0 {
						v.subMax(y1)
						subMaxGeneric(y2)
					}
					for i := range y1 {
						if math.Float32bits(y1[i]) != math.Float32bits(y2[i]) {
							t.Fatalf("%s case %d n=%d elem %d: %v != %v", v.name, k, n, i, y1[i], y2[i])
						}
					}
				}
				continue
			case v.dotRows != nil:
				got, want := make([]float32, rows), make([]float32, rows)
				v.dotRows(a, x, stride, got)
				dotRowsGeneric(a, x, stride, want)
				for j := range got {
					if math.Float32bits(got[j]) != math.Float32bits(want[j]) {
						t.Fatalf("%s n=%d row %d: %v != %v", v.name, n, j, got[j], want[j])
					}
				}
				continue
			case v.axpyRows != nil:
				w := randFloats(rng, rows)
				y1 := append([]float32(nil), b...)
				y2 := append([]float32(nil), b...)
				v.axpyRows(w, x, stride, y1)
				axpyRowsGeneric(w, x, stride, y2)
				for i := range y1 {
					if math.Float32bits(y1[i]) != math.Float32bits(y2[i]) {
						t.Fatalf("%s n=%d elem %d: %v != %v", v.name, n, i, y1[i], y2[i])
					}
				}
				continue
			}
			if v.dot != nil {
				if got, want := v.dot(a, b), dotGeneric32(a, b); math.Float32bits(got) != math.Float32bits(want) {
					t.Fatalf("%s n=%d: %v != %v", v.name, n, got, want)
				}
				continue
			}
			y1 := append([]float32(nil), b...)
			y2 := append([]float32(nil), b...)
			v.axpy(0.37, a, y1)
			axpyGeneric(0.37, a, y2)
			for i := range y1 {
				if math.Float32bits(y1[i]) != math.Float32bits(y2[i]) {
					t.Fatalf("%s n=%d elem %d: %v != %v", v.name, n, i, y1[i], y2[i])
				}
			}
		}
	}
}

// TestRowsOps checks DotRows and AxpyRows against Dot and Axpy calls.
func TestRowsOps(t *testing.T) {
	rng := rand.New(rand.NewPCG(23, 24))
	for _, n := range []int{1, 33, 128} {
		const rows, stride = 9, 200
		q, y := randFloats(rng, n), randFloats(rng, n)
		x := randFloats(rng, (rows-1)*stride+n)
		got := make([]float32, rows)
		DotRows(q, x, stride, got)
		for j := range got {
			if want := Dot(q, x[j*stride:j*stride+n]); math.Float32bits(got[j]) != math.Float32bits(want) {
				t.Fatalf("DotRows n=%d row %d: %v != %v", n, j, got[j], want)
			}
		}
		y2 := append([]float32(nil), y...)
		AxpyRows(got, x, stride, y)
		for j, a := range got {
			Axpy(a, x[j*stride:j*stride+n], y2)
		}
		for i := range y {
			if math.Float32bits(y[i]) != math.Float32bits(y2[i]) {
				t.Fatalf("AxpyRows n=%d elem %d: %v != %v", n, i, y[i], y2[i])
			}
		}
	}
}

// negate returns -|x| with one element set to +0 (plus) or -0.
func negate(x []float32, plus bool) []float32 {
	y := make([]float32, len(x))
	for i, v := range x {
		y[i] = -float32(math.Abs(float64(v))) - 1
	}
	if len(y) > 0 {
		y[len(y)/2] = float32(math.Copysign(0, map[bool]float64{true: 1, false: -1}[plus]))
	}
	return y
}

func withNaN(x []float32) []float32 {
	y := append([]float32(nil), x...)
	if len(y) > 0 {
		y[len(y)*2/3] = float32(math.NaN())
	}
	return y
}

func withNegInf(x []float32) []float32 {
	y := append([]float32(nil), x...)
	if len(y) > 0 {
		y[0] = float32(math.Inf(-1))
	}
	return y
}
