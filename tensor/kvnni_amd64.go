//go:build goexperiment.simd && amd64

package tensor

import (
	"simd/archsimd"
	"unsafe"
)

// The K-quant decode kernels' block loops (Q2_K, Q3_K, Q4_K, Q6_K) in Go
// assembly
// (kvnni_amd64.s), for CPUs with AVX-512 VNNI and GFNI; archsimd has no
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
// Q4_K and Q6_K, the bulk of a Q4_K_M file's decode, gain less (their
// archsimd loops keep their vectors in registers): the fused scale
// multiply-add and one GF2P8AFFINEQB for each high nibble (was a shift and
// a mask).

// kVNNIConsts holds the assembly's constant vectors, in the order it
// loads them into Z16-Z25.
type kVNNIConsts struct {
	// quant[h] takes a chunk's 2-bit quants: bits (0,1) of each byte in the
	// first 256 bits and (2,3) in the second for h = 0, (4,5) and (6,7) for
	// h = 1.
	quant [2][8]uint64
	// high[c] moves Q3_K's hmask bit of chunk c = 2n+h (bit 4n+2h in the
	// first 256 bits, 4n+2h+1 in the second) to bit 2.
	high [4][8]uint64
	// idx[c] is q6Idx512[c]: each int16 product's 16-element group.
	idx [4][32]uint16
	// k4 is k4Byte512 (Q4_K's scale bytes to int16 lanes), then q4KSA,
	// q4KKA, q4KSC and q4KKC (q4KScalesVec's shifts and masks).
	k4  [4][64]int8
	k4s [4][4]int32
	// q6 is q6GFx and q6GFz: Q6_K's qh bit pairs to bits 4-5.
	q6 [2][8]uint64
}

var kVNNI kVNNIConsts

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
			kVNNI.quant[h][i] = bit(0, s) | bit(1, s+1)
		}
		for c := 0; c < 4; c++ {
			kVNNI.high[c][i] = bit(2, 4*(c/2)+2*(c%2)+half)
		}
	}
	// As q6Idx512 and k4Byte512, which are not set yet: this file's init
	// runs first.
	for c := range kVNNI.idx {
		for i := range kVNNI.idx[c] {
			kVNNI.idx[c][i] = uint16(4*c + i/8)
		}
	}
	for p := 0; p < 2; p++ {
		for h := 0; h < 2; h++ {
			for i := 0; i < 64; i += 2 {
				j := 4*p + h
				if i >= 32 {
					j += 2
				}
				kVNNI.k4[2*p+h][i], kVNNI.k4[2*p+h][i+1] = int8(j), -1
			}
		}
	}
	kVNNI.k4s = [4][4]int32{q4KSA, q4KKA, q4KSC, q4KKC}
	for i := 0; i < 8; i++ {
		j := 0
		if i >= 4 {
			j = 2
		}
		kVNNI.q6[0][i] = bit(4, j) | bit(5, j+1)
		kVNNI.q6[1][i] = bit(4, j+4) | bit(5, j+5)
	}
}

// hasKVNNI says whether the CPU runs q2KChunkVNNI and q3KChunkVNNI.
var hasKVNNI = hasSIMD && archsimd.X86.AVX512() && archsimd.X86.AVX512VNNI() && archsimd.X86.AVX512GFNI()

// q3KChunkVNNI is q3KChunk512 (n >= 0 blocks) with the constants at k.
//
//go:noescape
func q3KChunkVNNI(p, y, bs unsafe.Pointer, n int, acc *[kChunk]archsimd.Int32x16, k *kVNNIConsts)

// q2KChunkVNNI is q2KChunk512 (n >= 0 blocks) with the constants at k.
//
//go:noescape
func q2KChunkVNNI(p, y, bs unsafe.Pointer, n int, acc *[kChunk]archsimd.Int32x16, m *[kChunk]archsimd.Int32x4, dm unsafe.Pointer, k *kVNNIConsts)

// q4KChunkVNNI is q4KChunk512 (n >= 0 blocks) with the constants at k.
//
//go:noescape
func q4KChunkVNNI(p, y, bs unsafe.Pointer, n int, acc *[kChunk]archsimd.Int32x16, m *[kChunk]archsimd.Int32x4, dm unsafe.Pointer, k *kVNNIConsts)

func dotQ4_KVNNI(w []byte, nrows int, a *act, e0 int, out []float32) {
	dotQ4_K512(w, nrows, a, e0, out, true)
}

// q6KChunkVNNI is q6KChunk512 (n >= 0 blocks) with the constants at k.
//
//go:noescape
func q6KChunkVNNI(p, y, bs unsafe.Pointer, n int, acc *[kChunk]archsimd.Int32x16, k *kVNNIConsts)

func dotQ6_KVNNI(w []byte, nrows int, a *act, e0 int, out []float32) {
	dotQ6_K512(w, nrows, a, e0, out, true)
}

func dotQ2_KVNNI(w []byte, nrows int, a *act, e0 int, out []float32) {
	dotQ2_K512(w, nrows, a, e0, out, true)
}

func dotQ3_KVNNI(w []byte, nrows int, a *act, e0 int, out []float32) {
	dotQ3_K512(w, nrows, a, e0, out, true)
}

// q2KChunk runs q2KChunkVNNI if vnni, else q2KChunk512.
func q2KChunk(vnni bool, p, y, bs unsafe.Pointer, n int, acc *[kChunk]archsimd.Int32x16, m *[kChunk]archsimd.Int32x4, dm unsafe.Pointer) {
	if vnni {
		q2KChunkVNNI(p, y, bs, n, acc, m, dm, &kVNNI)
	} else {
		q2KChunk512(p, y, bs, n, acc, m, dm)
	}
}

// q3KChunk runs q3KChunkVNNI if vnni, else q3KChunk512.
func q3KChunk(vnni bool, p, y, bs unsafe.Pointer, n int, acc *[kChunk]archsimd.Int32x16) {
	if vnni {
		q3KChunkVNNI(p, y, bs, n, acc, &kVNNI)
	} else {
		q3KChunk512(p, y, bs, n, acc)
	}
}

// q4KChunk runs q4KChunkVNNI if vnni, else q4KChunk512.
func q4KChunk(vnni bool, p, y, bs unsafe.Pointer, n int, acc *[kChunk]archsimd.Int32x16, m *[kChunk]archsimd.Int32x4, dm unsafe.Pointer) {
	if vnni {
		q4KChunkVNNI(p, y, bs, n, acc, m, dm, &kVNNI)
	} else {
		q4KChunk512(p, y, bs, n, acc, m, dm)
	}
}

// q6KChunk runs q6KChunkVNNI if vnni, else q6KChunk512.
func q6KChunk(vnni bool, p, y, bs unsafe.Pointer, n int, acc *[kChunk]archsimd.Int32x16) {
	if vnni {
		q6KChunkVNNI(p, y, bs, n, acc, &kVNNI)
	} else {
		q6KChunk512(p, y, bs, n, acc)
	}
}
