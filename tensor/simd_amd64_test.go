//go:build goexperiment.simd && amd64

package tensor

import (
	"math"
	"testing"

	"simd/archsimd"
)

// TestF16Vectors checks the vector fp16 conversions (8 and 16 lanes) against
// f16ToF32 on all 65,536 inputs, bit for bit: the kernels' block scales go
// through them, so subnormals, infinities and NaNs must convert exactly.
func TestF16Vectors(t *testing.T) {
	if !hasSIMD {
		t.Skip("no AVX2")
	}
	var in [16]uint32
	var out8 [8]float32
	var out16 [16]float32
	avx512 := archsimd.X86.AVX512()
	for h := 0; h < 1<<16; h += 16 {
		for i := range in {
			in[i] = uint32(h + i)
		}
		for k := 0; k < 16; k += 8 {
			f16x8(archsimd.LoadUint32x8((*[8]uint32)(in[k : k+8]))).Store(&out8)
			for i, v := range out8 {
				if want := f16ToF32(uint16(h + k + i)); math.Float32bits(v) != math.Float32bits(want) {
					t.Fatalf("f16x8(%#04x) = %#08x, want %#08x", h+k+i, math.Float32bits(v), math.Float32bits(want))
				}
			}
		}
		if avx512 {
			f16x16(archsimd.LoadUint32x16(&in)).Store(&out16)
			for i, v := range out16 {
				if want := f16ToF32(uint16(h + i)); math.Float32bits(v) != math.Float32bits(want) {
					t.Fatalf("f16x16(%#04x) = %#08x, want %#08x", h+i, math.Float32bits(v), math.Float32bits(want))
				}
			}
		}
	}
}
