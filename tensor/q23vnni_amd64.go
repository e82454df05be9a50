//go:build goexperiment.simd && amd64

package tensor

import (
	"simd/archsimd"
	"unsafe"
)

// The Q2_K and Q3_K decode kernels' block loops in Go assembly
// (q23vnni_amd64.s), for CPUs with AVX-512 VNNI and GFNI; archsimd has no
// VNNI. In a Q2_K file these two formats are most of decode's time (the
// attention output, value and down projections are Q3_K), and decode there
// is compute-bound: q2KChunk512 and q3KChunk512 spend most of their
// instructions moving bits. Per 64-element chunk the assembly takes the
// 2-bit quants with one GF2P8AFFINEQB (a bit matrix per 64-bit lane, so each
// 256-bit half shifts by its own amount) where archsimd needs a variable
// shift and a mask, Q3_K's high bit with a second one and an OR (was shift,
// shift, mask, OR), and fuses the scale multiply and the add (VPDPWSSD).
// Each block's int32 lanes hold other partial sums than the archsimd
// chunks', but the same total, and the float steps (kFinish4, kFinish4d)
// are shared, so results are bit-identical (TestKernelVariantsBitExact).

// q23VNNIConsts holds the assembly's constant vectors, in the order it
// loads them into Z16-Z25.
type q23VNNIConsts struct {
	// quant[h] takes a chunk's 2-bit quants: bits (0,1) of each byte in the
	// first 256 bits and (2,3) in the second for h = 0, (4,5) and (6,7) for
	// h = 1.
	quant [2][8]uint64
	// high[c] moves Q3_K's hmask bit of chunk c = 2n+h (bit 4n+2h in the
	// first 256 bits, 4n+2h+1 in the second) to bit 2.
	high [4][8]uint64
	// idx[c] is q6Idx512[c]: each int16 product's 16-element group.
	idx [4][32]uint16
}

var q23VNNI q23VNNIConsts

func init() {
	// Output bit o takes input bit j: bit j of the matrix's byte 7-o.
	bit := func(o, j int) uint64 { return 1 << (8*(7-o) + j) }
	for i := 0; i < 8; i++ {
		half := 0
		if i >= 4 {
			half = 1
		}
		for h := 0; h < 2; h++ {
			s := 4*h + 2*half
			q23VNNI.quant[h][i] = bit(0, s) | bit(1, s+1)
		}
		for c := 0; c < 4; c++ {
			q23VNNI.high[c][i] = bit(2, 4*(c/2)+2*(c%2)+half)
		}
	}
	// As q6Idx512, which is not set yet: this file's init runs first.
	for c := range q23VNNI.idx {
		for i := range q23VNNI.idx[c] {
			q23VNNI.idx[c][i] = uint16(4*c + i/8)
		}
	}
}

// hasQ23VNNI says whether the CPU runs q2KChunkVNNI and q3KChunkVNNI.
var hasQ23VNNI = hasSIMD && archsimd.X86.AVX512() && archsimd.X86.AVX512VNNI() && archsimd.X86.AVX512GFNI()

// q3KChunkVNNI is q3KChunk512 (n >= 0 blocks) with the constants at k.
//
//go:noescape
func q3KChunkVNNI(p, y, bs unsafe.Pointer, n int, acc *[kChunk]archsimd.Int32x16, k *q23VNNIConsts)

// q2KChunkVNNI is q2KChunk512 (n >= 0 blocks) with the constants at k.
//
//go:noescape
func q2KChunkVNNI(p, y, bs unsafe.Pointer, n int, acc *[kChunk]archsimd.Int32x16, m *[kChunk]archsimd.Int32x4, dm unsafe.Pointer, k *q23VNNIConsts)

func dotQ2_KVNNI(w []byte, nrows int, a *act, e0 int, out []float32) {
	dotQ2_K512(w, nrows, a, e0, out, true)
}

func dotQ3_KVNNI(w []byte, nrows int, a *act, e0 int, out []float32) {
	dotQ3_K512(w, nrows, a, e0, out, true)
}
