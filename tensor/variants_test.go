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
		for _, cols := range []int{256, 768, 1024, 2816} {
			const nrows = 5
			var w []byte
			for r := 0; r < nrows; r++ {
				w = append(w, randRow(rng, v.typ, cols)...)
			}
			rb := len(w) / nrows
			x := randFloats(rng, 2*cols)
			var a act
			a.prepare(vecDotKind(v.typ), cols, 2)
			a.quantize(x, 0, 2*cols)
			for j := 0; j < 2; j++ {
				var out [nrows]float32
				v.rows(w, nrows, &a, j*cols, out[:])
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
