//go:build goexperiment.simd && amd64

package tensor

import (
	"simd/archsimd"
	"unsafe"
)

// BF16 weights with AVX512_BF16. VDPBF16PS multiplies 32 bfloat16 pairs
// and adds them into 16 float32 lanes, twice the multiply-adds per
// instruction of the float32 tile that mmBF16 runs (and half its bytes per
// element), so where the CPU has it BF16 rows are multiplied with the
// activations' bfloat16 bits (act.h) directly: batches in tiles of four rows
// by four vectors (bf16Tile4x4, bf16dp_amd64.s) and four rows by one
// (bf16Tile4x1) for the vectors past a multiple of four; decode and the
// leftover rows one dot at a time (bf16Dot). All three sum a row's
// products in the same 16 lanes, in order, and reduce the lanes the same
// way, so a result does not depend on the kernel, the batch or the place in
// it (speculative decoding's verification and batched decoding give decode's
// bits). They are not dotF32Ptr's sums: each product is exact in float32
// (eight significant bits times eight), but they are added two to a lane in
// the instruction's order, 16 lanes instead of 32, with denormals flushed to
// zero. Mirroring that in the pure-Go kernels would tie them to one
// vendor's reading of the instruction, so these are the kernels that are not
// bit-exact with the pure-Go ones: results stay within the float32 rounding
// bound of the generic kernel that the tests check (variant "avx512bf16",
// kernelVariant.approx; tensor/doc.go). Rows whose length is not a multiple
// of 32 take the float32 path in every shape.

// bf16Tile4x4 computes sixteen dots, the bfloat16 rows r + i·rstride bytes
// by the bfloat16 vectors x + j·xstride bytes (i, j in 0..3), over their
// first n32 elements (a positive multiple of 32): row i by vector j to
// out + j·ostride + 4i bytes (bf16dp_amd64.s).
//
//go:noescape
func bf16Tile4x4(r *uint16, rstride uintptr, x *uint16, xstride uintptr, n32 int, out *float32, ostride uintptr)

// bf16Tile4x1 is bf16Tile4x4 for one vector: rows i = 0..3 to out[i].
//
//go:noescape
func bf16Tile4x1(r *uint16, rstride uintptr, x *uint16, n32 int, out *float32)

// bf16Dot is one row's dot with one vector, as bf16Tile4x4 sums it.
//
//go:noescape
func bf16Dot(r *uint16, x *uint16, n32 int) float32

// cpuHasAVX512BF16 reports CPUID leaf 7 subleaf 1's AVX512_BF16 bit (EAX
// bit 5); the AVX-512 state the OS enables is archsimd.X86.AVX512's check.
func cpuHasAVX512BF16() bool {
	if max, _, _, _ := cpuid(0, 0); max < 7 {
		return false
	}
	eax, _, _, _ := cpuid(7, 1)
	return eax&(1<<5) != 0
}

// hasBF16DP says whether the CPU runs bf16Tile4x4.
var hasBF16DP = hasSIMD && archsimd.X86.AVX512() && cpuHasAVX512BF16()

// bf16BlockBytes is the size of the block of weight rows that mmBF16DP
// multiplies with every vector while it is in the L2 cache.
const bf16BlockBytes = 192 << 10

// bf16Row returns a pointer to row r of the n-element BF16 rows in w.
func bf16Row(w []byte, n, r int) *uint16 { return (*uint16)(unsafe.Pointer(&w[2*n*r])) }

// dotBF16DP is the decode kernel: rows 0..nrows-1 by vector e0/n, one row
// after the other, so the weights are read in memory order (four rows side
// by side with bf16Tile4x1 decoded bench-dense BF16 35% slower on an AMD
// EPYC: the hardware prefetcher follows one long stream better than four
// short ones).
func dotBF16DP(w []byte, nrows int, a *act, e0 int, out []float32) {
	n := a.cols
	if n%32 != 0 || !packBF16 {
		dotBF16SIMD(w, nrows, a, e0, out)
		return
	}
	w = w[:nrows*2*n]
	x := a.h[e0 : e0+n]
	out = out[:nrows]
	for r := range out {
		out[r] = bf16Dot(bf16Row(w, n, r), &x[0], n)
	}
}

// mmBF16DP multiplies nrows BF16 rows with vectors 0..ncols-1 into
// out[j*ostride + r]: blocks of rows pass every group of four vectors in
// bf16Tile4x4's tiles, the vectors past the last multiple of four in
// bf16Tile4x1's, and the rows past the last multiple of four go one by one.
func mmBF16DP(w []byte, nrows int, a *act, ncols int, out []float32, ostride int) {
	n := a.cols
	if n%32 != 0 || !packBF16 {
		mmBF16(w, nrows, a, ncols, out, ostride)
		return
	}
	w = w[:nrows*2*n]
	xs := a.h[:ncols*n]
	out = out[:(ncols-1)*ostride+nrows]
	nr4, nc4 := nrows&^3, ncols&^3
	rblk := max(4, bf16BlockBytes/(2*n)&^3)
	for r0 := 0; r0 < nr4; r0 += rblk {
		r1 := min(r0+rblk, nr4)
		for j := 0; j < nc4; j += 4 {
			for i := r0; i < r1; i += 4 {
				bf16Tile4x4(bf16Row(w, n, i), uintptr(2*n), &xs[j*n], uintptr(2*n), n, &out[j*ostride+i], uintptr(4*ostride))
			}
		}
		for j := nc4; j < ncols; j++ {
			for i := r0; i < r1; i += 4 {
				bf16Tile4x1(bf16Row(w, n, i), uintptr(2*n), &xs[j*n], n, &out[j*ostride+i])
			}
		}
	}
	for j := 0; j < ncols; j++ {
		for i := nr4; i < nrows; i++ {
			out[j*ostride+i] = bf16Dot(bf16Row(w, n, i), &xs[j*n], n)
		}
	}
}
