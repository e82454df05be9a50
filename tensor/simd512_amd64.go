//go:build goexperiment.simd && amd64

package tensor

import (
	"simd/archsimd"
	"unsafe"
)

// AVX-512 variants of the hottest kernels (registered in simd_amd64.go):
// same integer sums, same float steps, fewer vector instructions than the
// AVX2 versions.

// k4Idx512[2p+h] broadcasts, per 128-bit lane, the Q4_K sub-block scale for
// chunk pair p and nibble half h (see init).
var k4Idx512 [4][64]int8

func init() {
	// For chunk pair p (chunks 2p, 2p+1) and nibble half h (0 low, 1 high):
	// lanes 0-1 (chunk 2p) use sub-block 4p+h, lanes 2-3 (chunk 2p+1) use
	// sub-block 4p+2+h.
	for p := 0; p < 2; p++ {
		for h := 0; h < 2; h++ {
			for i := 0; i < 64; i++ {
				j := 4*p + h
				if i >= 32 {
					j += 2
				}
				k4Idx512[2*p+h][i] = int8(2*j + i%2)
			}
		}
	}
}

// ldI8Pair loads 32 bytes at off and 32 at off+64 into one vector.
func ldI8Pair(p unsafe.Pointer, off int) archsimd.Int8x64 {
	return archsimd.Int8x64{}.SetLo(ldI8(p, off)).SetHi(ldI8(p, off+64))
}

func dotQ4_KAVX512(w []byte, nrows int, a *act, e0 int, out []float32) {
	nb := a.cols / qkK
	rb := nb * bytesQ4_K
	w = w[:nrows*rb]
	out = out[:nrows]
	qs := a.qs[e0 : e0+a.cols]
	bsums := a.bsums[e0/16 : e0/16+nb*16]
	ds := a.d[e0/qkK : e0/qkK+nb]
	pw, py, pbs := ptr(w), ptr(qs), ptr(bsums)
	mask := archsimd.BroadcastUint8x64(0x0f)
	i0 := archsimd.LoadInt8x64(&k4Idx512[0])
	i1 := archsimd.LoadInt8x64(&k4Idx512[1])
	i2 := archsimd.LoadInt8x64(&k4Idx512[2])
	i3 := archsimd.LoadInt8x64(&k4Idx512[3])
	for r := 0; r < nrows; r++ {
		pr := unsafe.Add(pw, r*rb)
		var sum float32
		for b := 0; b < nb; b++ {
			p := unsafe.Add(pr, b*bytesQ4_K)
			y := unsafe.Add(py, b*qkK)
			scv, mins := q4KScaleVecs(unsafe.Add(p, 4))
			imin := hsumI32x4(mins.DotProductPairs(bsumPairs(pbs, b*32)))
			sc := archsimd.Int16x32{}.SetLo(scv).SetHi(scv).AsInt8x64()
			q := unsafe.Add(p, 16)
			q01 := archsimd.LoadUint8x64((*[64]uint8)(q))
			q23 := archsimd.LoadUint8x64((*[64]uint8)(unsafe.Add(q, 64)))
			lo01 := q01.And(mask)
			hi01 := q01.AsUint16x32().ShiftAllRight(4).AsUint8x64().And(mask)
			lo23 := q23.And(mask)
			hi23 := q23.AsUint16x32().ShiftAllRight(4).AsUint8x64().And(mask)
			acc := lo01.DotProductPairsSaturated(ldI8Pair(y, 0)).DotProductPairs(sc.PermuteOrZeroGrouped(i0).AsInt16x32())
			acc = acc.Add(hi01.DotProductPairsSaturated(ldI8Pair(y, 32)).DotProductPairs(sc.PermuteOrZeroGrouped(i1).AsInt16x32()))
			acc = acc.Add(lo23.DotProductPairsSaturated(ldI8Pair(y, 128)).DotProductPairs(sc.PermuteOrZeroGrouped(i2).AsInt16x32()))
			acc = acc.Add(hi23.DotProductPairsSaturated(ldI8Pair(y, 160)).DotProductPairs(sc.PermuteOrZeroGrouped(i3).AsInt16x32()))
			isum := hsumI32(acc.GetLo().Add(acc.GetHi()))
			d := ds[b] * f16ToF32(ldU16(p, 0))
			dmin := ds[b] * f16ToF32(ldU16(p, 2))
			sum = kAcc(sum, d, isum, dmin, imin)
		}
		out[r] = sum
	}
}
