package tensor

import (
	"math"
	"math/rand/v2"
	"testing"
)

// TestKernelVariantsBitExact checks every SIMD kernel variant the CPU can run
// (also those a faster variant replaces in the dispatch table) against the
// pure-Go kernel, bit for bit. kernelVariants is empty in pure-Go builds.
func TestKernelVariantsBitExact(t *testing.T) {
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
			// kernels, more vectors than tileMinVecs and a partial 16-row group.
			nrows, nvec := 7, 8
			if v.rowsN != nil {
				nrows, nvec = 19, 28
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
