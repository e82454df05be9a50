//go:build goexperiment.simd && amd64

package tensor

import (
	"math"
	"math/rand/v2"
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

// TestRoundF16Rows checks F16C's rounding of activations to binary16
// against roundF16, bit for bit, on every float32 whose low 12 bits are one
// of a few patterns (ties, just above and below them; all exponents, both
// signs, infinities and NaNs) and at lengths around the 8-value steps.
func TestRoundF16Rows(t *testing.T) {
	if !hasF16C {
		t.Skip("no F16C")
	}
	var src []float32
	for hi := uint32(0); hi < 1<<20; hi++ {
		for _, lo := range []uint32{0, 1, 0x7ff, 0x800, 0x801, 0xfff} {
			src = append(src, math.Float32frombits(hi<<12|lo))
		}
	}
	for _, n := range []int{len(src), 7, 8, 9, 17} {
		got := make([]float32, n)
		roundF16RowsF16C(got, src[len(src)-n:])
		for i, v := range got {
			x := src[len(src)-n+i]
			if want := roundF16(x); math.Float32bits(v) != math.Float32bits(want) {
				t.Fatalf("roundF16Rows(%#08x) = %#08x, want %#08x", math.Float32bits(x), math.Float32bits(v), math.Float32bits(want))
			}
		}
	}
}

// mmF32Rows gives every cell exactly dotF32Ptr's value, with the register
// tiles and without, for row and vector counts that leave partial tiles and
// lengths with and without a tail past the last multiple of 32, shorter and
// longer than a stretch of f32TileK.
func TestMmF32Rows(t *testing.T) {
	defer func(v bool) { useF32Tile = v }(useF32Tile)
	r := rand.New(rand.NewPCG(41, 42))
	for _, tile := range []bool{false, true} {
		if tile && !(hasSIMD && archsimd.X86.AVX512()) {
			t.Log("no AVX-512: the tiles are not checked")
			continue
		}
		useF32Tile = tile
		for _, n := range []int{8, 32, 40, 96, 1000, 1024, 1056, 2100, 3072} {
			for _, nr := range []int{1, 2, 3, 6} {
				for _, ncols := range []int{1, 3, 4, 5, 9} {
					rows, xs := randFloats(r, nr*n), randFloats(r, ncols*n)
					ostride := nr + 3
					out := make([]float32, ncols*ostride)
					mmF32Rows(rows, nr, xs, ncols, n, out, ostride)
					for j := 0; j < ncols; j++ {
						for i := 0; i < nr; i++ {
							row, x := rows[i*n:(i+1)*n], xs[j*n:(j+1)*n]
							want := dotF32Ptr(ptr(row), ptr(x), row, x, n)
							if got := out[j*ostride+i]; math.Float32bits(got) != math.Float32bits(want) {
								t.Fatalf("tile %v n %d rows %d vectors %d: row %d vector %d = %v, want %v", tile, n, nr, ncols, i, j, got, want)
							}
						}
					}
				}
			}
		}
	}
}

// TestKernelVariantsRowOrders runs TestKernelVariantsBitExact's check with
// the single-vector kernels reading rows in the order this CPU does not use
// by default (streamRows): both orders must give the generic kernels' bits.
func TestKernelVariantsRowOrders(t *testing.T) {
	def := rowStreams4
	t.Cleanup(func() { rowStreams4 = def })
	rowStreams4 = !def
	t.Logf("four streams: %v (default %v)", rowStreams4, def)
	checkKernelVariants(t)
}
