package tensor

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stepflash/stepflash/gguf"
)

var specKernels = map[gguf.Type]dotFunc{
	gguf.TypeF32:  specDotF32Generic,
	gguf.TypeF16:  specDotF16Generic,
	gguf.TypeBF16: specDotBF16Generic,
	gguf.TypeQ8_0: specDotQ8_0Generic,
	gguf.TypeQ4_0: specDotQ4_0Generic,
	gguf.TypeQ4_1: specDotQ4_1Generic,
	gguf.TypeQ5_0: specDotQ5_0Generic,
	gguf.TypeQ5_1: specDotQ5_1Generic,
	gguf.TypeQ2_K: specDotQ2_KGeneric,
	gguf.TypeQ3_K: specDotQ3_KGeneric,
	gguf.TypeQ4_K: specDotQ4_KGeneric,
	gguf.TypeQ5_K: specDotQ5_KGeneric,
	gguf.TypeQ6_K: specDotQ6_KGeneric,
}

// sameFloat: equal bits, or both NaN (the payload of a NaN depends on
// operand order, which Go may commute).
func sameFloat(a, b float32) bool {
	return math.Float32bits(a) == math.Float32bits(b) || (a != a && b != b)
}

// TestGenericMatchesSpec checks the pure-Go kernels (the only ones a build
// without GOEXPERIMENT=simd has) against their plain statements in
// generic_spec_test.go, bit for bit: every weight type's dot product on
// sensible and on random bytes (scales that are Inf, NaN or subnormal), for
// several vectors of a batch and row lengths with an odd number of blocks,
// and the float32 dot. (The dequantizers and vector ops were not rewritten,
// so they have no second copy here; the SIMD variant tests pin them.)
func TestGenericMatchesSpec(t *testing.T) {
	rng := rand.New(rand.NewPCG(41, 42))
	for _, typ := range allTypes {
		for _, cols := range []int{256, 768, 2816} {
			if typ.BlockSize() == 32 {
				cols += 32 // an odd number of blocks
			}
			for _, junk := range []bool{false, true} {
				name := fmt.Sprintf("%v/%d", typ, cols)
				if junk {
					name += "/random-bytes"
				}
				const nrows, nvec = 5, 3
				var w []byte
				for r := 0; r < nrows; r++ {
					row := randRow(rng, typ, cols)
					if junk {
						for i := range row {
							row[i] = byte(rng.Uint32())
						}
					}
					w = append(w, row...)
				}
				rb := len(w) / nrows
				x := randFloats(rng, nvec*cols)
				if junk {
					for i := range x {
						x[i] *= float32(math.Ldexp(1, rng.IntN(200)-100))
					}
				}
				var a act
				a.prepare(vecDotKind(typ), cols, nvec)
				a.quantize(x, 0, nvec*cols)
				for j := 0; j < nvec; j++ {
					for r := 0; r < nrows; r++ {
						row := w[r*rb : (r+1)*rb]
						got := genericKernels[typ](row, &a, j*cols)
						want := specKernels[typ](row, &a, j*cols)
						if !sameFloat(got, want) {
							t.Fatalf("%s vec %d row %d: dot %v (%#x), spec %v (%#x)", name, j, r, got, math.Float32bits(got), want, math.Float32bits(want))
						}
					}
				}
			}
		}
	}
	for _, n := range []int{0, 1, 7, 31, 32, 33, 100, 128, 1031} {
		a, b := randFloats(rng, n), randFloats(rng, n)
		if got, want := dotGeneric32(a, b), specDotGeneric32(a, b); !sameFloat(got, want) {
			t.Fatalf("dot32 %d: %v, spec %v", n, got, want)
		}
	}
}
