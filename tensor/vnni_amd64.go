//go:build goexperiment.simd && amd64

package tensor

import (
	"simd/archsimd"
	"sync"
	"unsafe"
)

// The batched kernel of the signed 32-element block formats (Q8_0, Q4_0 and
// Q5_0 weights, Q8_0 activations) on CPUs with AVX-512 VNNI. VPDPBUSD
// multiplies unsigned by signed bytes and adds groups of four into int32
// lanes: one instruction per 64 weight-activation pairs where
// mm32AVX512 needs four (sign transfer, VPMADDUBSW, VPMADDWD). The unsigned
// operand is the activation plus 128 (y XOR 0x80) and each lane starts at
// its bias -128·Σx, so every lane ends at exactly the generic kernel's
// integer sum Σx·y of its four elements (|sum| < 2^17, no overflow, no
// saturation). The float steps are the generic ones in the generic order:
// per block pair, lanes converted, times d = dx·dy, added to the even (lanes
// 0-7) and odd (8-15) blocks' accumulators; at the end hsum8 of their sum.
// So results are bit-identical to dot.go (TestKernelVariantsBitExact).
//
// The weights are decoded once per group of four rows into records, one per
// row and block pair: the 64 quants as signed bytes, the 16 int32 biases
// and the 16 lane scales [dx(2p) ×8, dx(2p+1) ×8]; vnniTile4x4
// (vnni_amd64.s) then multiplies the group with four activation vectors at
// a time, sixteen accumulators in registers.

// vnniTile4x4 computes the 16 dots of the four rows whose records start at
// rec (np block pairs, 4·vnniRecBytes bytes each) with the activation
// vectors at y, y+cst, y+2cst, y+3cst (their expanded pair scales at dv,
// dv+dst, ...): res[4r+j] = dot(row r, vector j). It returns with the upper
// vector state clean.
//
//go:noescape
func vnniTile4x4(rec *byte, np int, y *int8, cst int, dv *float32, dst int, res *[16]float32)

// vnniRecBytes is the size of one row's record of a block pair: 64 quants,
// 16 int32 biases, 16 float32 scales.
const vnniRecBytes = 192

// vnniScratch holds a chunk's records and one group's block scales (up to
// 512 blocks a row).
type vnniScratch struct {
	rec []byte
	dx  [4][512]float32
}

// vnniChunkBytes bounds the records decoded at a time.
const vnniChunkBytes = 192 << 10

var vnniPool = sync.Pool{New: func() any { return new(vnniScratch) }}

func mmQ8_0VNNI(w []byte, nrows int, a *act, ncols int, out []float32, ostride int) {
	mm32VNNI(fmtQ8_0, w, nrows, a, ncols, out, ostride)
}

func mmQ4_0VNNI(w []byte, nrows int, a *act, ncols int, out []float32, ostride int) {
	mm32VNNI(fmtQ4_0, w, nrows, a, ncols, out, ostride)
}

func mmQ5_0VNNI(w []byte, nrows int, a *act, ncols int, out []float32, ostride int) {
	mm32VNNI(fmtQ5_0, w, nrows, a, ncols, out, ostride)
}

// mm32VNNI is mm32AVX512 for the signed formats (f is fmtQ8_0, fmtQ4_0 or
// fmtQ5_0) with VPDPBUSD: rows in groups of four (a partial group repeats
// its last row and drops the extra results), vectors in groups of four
// (ncols a multiple of 4).
func mm32VNNI(f int, w []byte, nrows int, a *act, ncols int, out []float32, ostride int) {
	nb := a.cols / qk
	if nb%2 != 0 || nb > 512 {
		mm32AVX512(f, w, nrows, a, ncols, out, ostride)
		return
	}
	var bpb int
	switch f {
	case fmtQ8_0:
		bpb = bytesQ8_0
	case fmtQ4_0:
		bpb = bytesQ4_0
	case fmtQ5_0:
		bpb = bytesQ5_0
	default:
		panic("tensor: mm32VNNI: unsigned block format")
	}
	np := nb / 2
	rb := nb * bpb
	w = w[:nrows*rb]
	qs := a.qs[:ncols*a.cols]
	d16 := a.d16[:ncols*np*16]
	out = out[:(ncols-1)*ostride+nrows]
	pw, py, pd := ptr(w), ptr(qs), ptr(d16)
	cst := a.cols      // bytes between activation vectors in qs
	dst := np * 16 * 4 // bytes between vectors in d16
	s := vnniPool.Get().(*vnniScratch)
	defer vnniPool.Put(s)
	pc := newPair32Consts()
	ones8 := archsimd.BroadcastUint8x64(1)
	ones16 := archsimd.BroadcastInt16x32(1)
	var zero32 archsimd.Int32x16
	var res [16]float32
	// Groups of rows are decoded a chunk at a time (records of up to
	// vnniChunkBytes, kept in the L2 cache) and each four vectors pass over
	// the whole chunk: the results of a vector then go to consecutive
	// outputs. (One group at a time, the stores of a tile went to four
	// outputs ostride floats apart, and with ostride a multiple of 1,024 all
	// of a sweep's stores fell into one L1 set: 10% of prefill time.)
	gbytes := np * 4 * vnniRecBytes
	groups := max(1, min(vnniChunkBytes/gbytes, (nrows+3)/4))
	s.rec = grow(s.rec, groups*gbytes)
	for r0 := 0; r0 < nrows; r0 += 4 * groups {
		r1 := min(r0+4*groups, nrows)
		for g := 0; 4*g < r1-r0; g++ {
			r := r0 + 4*g
			k := min(4, nrows-r)
			var rows [4]unsafe.Pointer
			for i := range rows {
				rows[i] = unsafe.Add(pw, (r+min(i, k-1))*rb)
			}
			// Scalar code follows vector work.
			archsimd.ClearAVXUpperBits()
			for i := range rows {
				for b := 0; b < nb; b++ {
					f16Store(&s.dx[i][b], ldU16(rows[i], b*bpb))
				}
			}
			rec := unsafe.Pointer(&s.rec[g*gbytes])
			for p := 0; p < np; p++ {
				for i := range rows {
					o := unsafe.Add(rec, (4*p+i)*vnniRecBytes)
					x := blockPair32(f, unsafe.Add(rows[i], 2*p*bpb), bpb, pc)
					x.Store((*[64]int8)(o))
					sum := ones8.DotProductPairsSaturated(x).DotProductPairs(ones16)
					zero32.Sub(sum.ShiftAllLeft(7)).Store((*[16]int32)(unsafe.Add(o, 64)))
					pairF32(s.dx[i][2*p], s.dx[i][2*p+1]).Store((*[16]float32)(unsafe.Add(o, 128)))
				}
			}
		}
		archsimd.ClearAVXUpperBits()
		for j := 0; j < ncols; j += 4 {
			y, dv := (*int8)(unsafe.Add(py, j*cst)), (*float32)(unsafe.Add(pd, j*dst))
			o0 := out[j*ostride+r0 : j*ostride+r1]
			o1 := out[(j+1)*ostride+r0 : (j+1)*ostride+r1]
			o2 := out[(j+2)*ostride+r0 : (j+2)*ostride+r1]
			o3 := out[(j+3)*ostride+r0 : (j+3)*ostride+r1]
			for g := 0; 4*g < r1-r0; g++ {
				vnniTile4x4(&s.rec[g*gbytes], np, y, cst, dv, dst, &res)
				for i := 4 * g; i < min(4*g+4, r1-r0); i++ {
					o0[i] = res[4*(i-4*g)]
					o1[i] = res[4*(i-4*g)+1]
					o2[i] = res[4*(i-4*g)+2]
					o3[i] = res[4*(i-4*g)+3]
				}
			}
		}
	}
}
