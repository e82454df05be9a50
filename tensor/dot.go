package tensor

import (
	"encoding/binary"

	"github.com/stepflash/stepflash/gguf"
)

// dotFunc multiplies one weight row w (a.cols elements) with the activation
// vector that starts at element e0 of a.
type dotFunc func(w []byte, a *act, e0 int) float32

// rowsFunc computes out[r] = dot(row r, activation vector at e0 of a) for
// r in [0, nrows), where w holds nrows consecutive rows of a.cols elements.
// Looping over rows inside the kernel matters: a call per short row costs as
// much as the row's arithmetic.
type rowsFunc func(w []byte, nrows int, a *act, e0 int, out []float32)

// kernels maps a weight type to its fused multi-row dot product; the table
// starts with the pure-Go kernels (genericKernels) and SIMD builds replace
// entries at init when the CPU supports them.
var kernels = map[gguf.Type]rowsFunc{}

// rowsOf turns a single-row kernel into a rowsFunc.
func rowsOf(f dotFunc) rowsFunc {
	return func(w []byte, nrows int, a *act, e0 int, out []float32) {
		rb := len(w) / max(nrows, 1)
		for r := range out[:nrows] {
			out[r] = f(w[r*rb:(r+1)*rb], a, e0)
		}
	}
}

// rows4Func computes the dots of nrows weight rows with the activation
// vectors j0..j0+3 of a (j0 a multiple of 4) into out[k*ostride + r],
// bit-identical to the single-vector kernels.
type rows4Func func(w []byte, nrows int, a *act, j0 int, out []float32, ostride int)

// kernels4 holds the multi-vector kernels (SIMD builds only); MatMul uses
// them for batches, else it runs the single-vector kernel per vector.
var kernels4 = map[gguf.Type]rows4Func{}

// rowsNFunc multiplies nrows weight rows with the activation vectors
// 0..ncols-1 of a (ncols a multiple of 4) into out[j*ostride + r],
// bit-identical to the single-vector kernels.
type rowsNFunc func(w []byte, nrows int, a *act, ncols int, out []float32, ostride int)

// kernelsN holds whole-batch tiled kernels (SIMD builds only). Their
// activations need d16 (act.expandPairScales).
var kernelsN = map[gguf.Type]rowsNFunc{}

// genericKernels are the pure-Go kernels, always compiled; tests compare the
// active kernels with them bit for bit.
var genericKernels = map[gguf.Type]dotFunc{
	gguf.TypeF32:  dotF32Generic,
	gguf.TypeF16:  dotF16Generic,
	gguf.TypeBF16: dotBF16Generic,
	gguf.TypeQ8_0: dotQ8_0Generic,
	gguf.TypeQ4_0: dotQ4_0Generic,
	gguf.TypeQ4_1: dotQ4_1Generic,
	gguf.TypeQ5_0: dotQ5_0Generic,
	gguf.TypeQ5_1: dotQ5_1Generic,
	gguf.TypeQ2_K: dotQ2_KGeneric,
	gguf.TypeQ3_K: dotQ3_KGeneric,
	gguf.TypeQ4_K: dotQ4_KGeneric,
	gguf.TypeQ5_K: dotQ5_KGeneric,
	gguf.TypeQ6_K: dotQ6_KGeneric,
}

func init() {
	for t, f := range genericKernels {
		kernels[t] = rowsOf(f)
	}
}

// hsum8 is the fixed horizontal reduction order of an 8-lane float32
// accumulator, shared by the SIMD kernels and their pure-Go twins.
func hsum8(v *[8]float32) float32 {
	a := v[0] + v[4]
	b := v[1] + v[5]
	c := v[2] + v[6]
	d := v[3] + v[7]
	return (a + c) + (b + d)
}

// Lane layout of the 32-element block formats (Q8_0, Q4_0, Q5_0 with Q8_0
// activations; Q4_1, Q5_1 with Q8_1): the products of block element j go to
// int32 lane j/4 (as VPMADDUBSW + VPMADDWD produce them); each block's lanes
// are converted to float32, multiplied by d = dx*dy and added to accumulator
// block%2; the result is hsum8(acc[0] + acc[1]) (+ the Q8_1 min terms,
// summed in block order).
//
// The pure-Go kernels below are written for the compiler: each block is
// reached through array pointers (one bounds check per block, none in the
// loops over its elements), loops have constant trip counts, and a lane's
// integer sum goes straight into its float step (acc[l] += float32(d *
// float32(s))) without an intermediate array. generic_spec_test.go keeps
// their plain form; TestGenericMatchesSpec compares the two bit for bit.

func finishAcc2(acc *[2][8]float32) float32 {
	var v [8]float32
	for l := range v {
		v[l] = acc[0][l] + acc[1][l]
	}
	return hsum8(&v)
}

func dotQ8_0Generic(w []byte, a *act, e0 int) float32 {
	nb := a.cols / qk
	w = w[:nb*bytesQ8_0]
	qs := a.qs[e0 : e0+a.cols]
	ds := a.d[e0/qk : e0/qk+nb]
	var acc [2][8]float32
	for b, dy := range ds {
		blk := (*[bytesQ8_0]byte)(w[b*bytesQ8_0:])
		x := (*[qk]byte)(blk[2:])
		y := (*[qk]int8)(qs[b*qk:])
		d := f16ToF32(uint16(blk[0])|uint16(blk[1])<<8) * dy
		ac := &acc[b&1]
		for l := 0; l < 8; l++ {
			s := int32(int8(x[4*l]))*int32(y[4*l]) + int32(int8(x[4*l+1]))*int32(y[4*l+1]) +
				int32(int8(x[4*l+2]))*int32(y[4*l+2]) + int32(int8(x[4*l+3]))*int32(y[4*l+3])
			ac[l] += float32(d * float32(s))
		}
	}
	return finishAcc2(&acc)
}

// Q4_0 and Q4_1: byte j of a block holds element j (low nibble, lane j/4)
// and element j+16 (high nibble, lane 4+j/4).

func dotQ4_0Generic(w []byte, a *act, e0 int) float32 {
	nb := a.cols / qk
	w = w[:nb*bytesQ4_0]
	qs := a.qs[e0 : e0+a.cols]
	ds := a.d[e0/qk : e0/qk+nb]
	var acc [2][8]float32
	for b, dy := range ds {
		blk := (*[bytesQ4_0]byte)(w[b*bytesQ4_0:])
		x := (*[16]byte)(blk[2:])
		y := (*[qk]int8)(qs[b*qk:])
		d := f16ToF32(uint16(blk[0])|uint16(blk[1])<<8) * dy
		ac := &acc[b&1]
		for l := 0; l < 4; l++ {
			x0, x1, x2, x3 := x[4*l], x[4*l+1], x[4*l+2], x[4*l+3]
			lo := (int32(x0&0xf)-8)*int32(y[4*l]) + (int32(x1&0xf)-8)*int32(y[4*l+1]) +
				(int32(x2&0xf)-8)*int32(y[4*l+2]) + (int32(x3&0xf)-8)*int32(y[4*l+3])
			hi := (int32(x0>>4)-8)*int32(y[16+4*l]) + (int32(x1>>4)-8)*int32(y[16+4*l+1]) +
				(int32(x2>>4)-8)*int32(y[16+4*l+2]) + (int32(x3>>4)-8)*int32(y[16+4*l+3])
			ac[l] += float32(d * float32(lo))
			ac[l+4] += float32(d * float32(hi))
		}
	}
	return finishAcc2(&acc)
}

func dotQ4_1Generic(w []byte, a *act, e0 int) float32 {
	nb := a.cols / qk
	w = w[:nb*bytesQ4_1]
	qs := a.qs[e0 : e0+a.cols]
	ds := a.d[e0/qk : e0/qk+nb]
	ss := a.s[e0/qk : e0/qk+nb]
	var acc [2][8]float32
	var summs float32
	for b, dy := range ds {
		blk := (*[bytesQ4_1]byte)(w[b*bytesQ4_1:])
		x := (*[16]byte)(blk[4:])
		y := (*[qk]int8)(qs[b*qk:])
		d := f16ToF32(uint16(blk[0])|uint16(blk[1])<<8) * dy
		ac := &acc[b&1]
		for l := 0; l < 4; l++ {
			x0, x1, x2, x3 := x[4*l], x[4*l+1], x[4*l+2], x[4*l+3]
			lo := int32(x0&0xf)*int32(y[4*l]) + int32(x1&0xf)*int32(y[4*l+1]) +
				int32(x2&0xf)*int32(y[4*l+2]) + int32(x3&0xf)*int32(y[4*l+3])
			hi := int32(x0>>4)*int32(y[16+4*l]) + int32(x1>>4)*int32(y[16+4*l+1]) +
				int32(x2>>4)*int32(y[16+4*l+2]) + int32(x3>>4)*int32(y[16+4*l+3])
			ac[l] += float32(d * float32(lo))
			ac[l+4] += float32(d * float32(hi))
		}
		summs += float32(f16ToF32(uint16(blk[2])|uint16(blk[3])<<8) * ss[b])
	}
	return finishAcc2(&acc) + summs
}

// Q5_0 and Q5_1: as Q4_0 and Q4_1, with element j's fifth bit at bit j of
// qh (j < 16: low nibbles; j >= 16: high nibbles).

// q5Lanes adds the 8 lane sums of a Q5 block, times d, to ac, with the
// quants offset by off (16 for Q5_0, 0 for Q5_1).
func q5Lanes(ac *[8]float32, d float32, x *[16]byte, qh uint32, y *[qk]int8, off int32) {
	for l := 0; l < 4; l++ {
		h := qh >> (4 * l) // element 4l+k's bit at k, element 16+4l+k's at 16+k
		x0, x1, x2, x3 := x[4*l], x[4*l+1], x[4*l+2], x[4*l+3]
		lo := (int32(x0&0xf|byte(h<<4)&0x10)-off)*int32(y[4*l]) + (int32(x1&0xf|byte(h<<3)&0x10)-off)*int32(y[4*l+1]) +
			(int32(x2&0xf|byte(h<<2)&0x10)-off)*int32(y[4*l+2]) + (int32(x3&0xf|byte(h<<1)&0x10)-off)*int32(y[4*l+3])
		hi := (int32(x0>>4|byte(h>>12)&0x10)-off)*int32(y[16+4*l]) + (int32(x1>>4|byte(h>>13)&0x10)-off)*int32(y[16+4*l+1]) +
			(int32(x2>>4|byte(h>>14)&0x10)-off)*int32(y[16+4*l+2]) + (int32(x3>>4|byte(h>>15)&0x10)-off)*int32(y[16+4*l+3])
		ac[l] += float32(d * float32(lo))
		ac[l+4] += float32(d * float32(hi))
	}
}

func dotQ5_0Generic(w []byte, a *act, e0 int) float32 {
	nb := a.cols / qk
	w = w[:nb*bytesQ5_0]
	qs := a.qs[e0 : e0+a.cols]
	ds := a.d[e0/qk : e0/qk+nb]
	var acc [2][8]float32
	for b, dy := range ds {
		blk := (*[bytesQ5_0]byte)(w[b*bytesQ5_0:])
		qh := uint32(blk[2]) | uint32(blk[3])<<8 | uint32(blk[4])<<16 | uint32(blk[5])<<24
		x := (*[16]byte)(blk[6:])
		y := (*[qk]int8)(qs[b*qk:])
		d := f16ToF32(uint16(blk[0])|uint16(blk[1])<<8) * dy
		q5Lanes(&acc[b&1], d, x, qh, y, 16)
	}
	return finishAcc2(&acc)
}

func dotQ5_1Generic(w []byte, a *act, e0 int) float32 {
	nb := a.cols / qk
	w = w[:nb*bytesQ5_1]
	qs := a.qs[e0 : e0+a.cols]
	ds := a.d[e0/qk : e0/qk+nb]
	ss := a.s[e0/qk : e0/qk+nb]
	var acc [2][8]float32
	var summs float32
	for b, dy := range ds {
		blk := (*[bytesQ5_1]byte)(w[b*bytesQ5_1:])
		qh := uint32(blk[4]) | uint32(blk[5])<<8 | uint32(blk[6])<<16 | uint32(blk[7])<<24
		x := (*[16]byte)(blk[8:])
		y := (*[qk]int8)(qs[b*qk:])
		d := f16ToF32(uint16(blk[0])|uint16(blk[1])<<8) * dy
		q5Lanes(&acc[b&1], d, x, qh, y, 0)
		summs += float32(f16ToF32(uint16(blk[2])|uint16(blk[3])<<8) * ss[b])
	}
	return finishAcc2(&acc) + summs
}

// K-quant kernels: each super-block's integer sums are exact; the float part
// is, per super-block in order, sum += d*isum then sum -= dmin*imin, with
// d = y.d * x.d and dmin = y.d * x.dmin. The integer sums may be taken in
// any order (int32 addition is exact here, and associative even if it
// wrapped), so the loops below split them however runs fastest.

// kAcc adds one super-block's contribution to sum.
func kAcc(sum, d float32, isum int32, dmin float32, imin int32) float32 {
	sum += float32(d * float32(isum))
	sum -= float32(dmin * float32(imin))
	return sum
}

// kMins is the Q4_K/Q5_K min term: sum over the 8 sub-blocks of min[j]
// times the sum of the sub-block's 32 activations.
func kMins(mn *[8]uint8, bs *[16]int16) int32 {
	var imin int32
	for j := 0; j < 8; j++ {
		imin += int32(mn[j]) * (int32(bs[2*j]) + int32(bs[2*j+1]))
	}
	return imin
}

func dotQ2_KGeneric(w []byte, a *act, e0 int) float32 {
	nb := a.cols / qkK
	w = w[:nb*bytesQ2_K]
	qs := a.qs[e0 : e0+a.cols]
	ds := a.d[e0/qkK : e0/qkK+nb]
	bsums := a.bsums[e0/16 : e0/16+16*nb]
	var sum float32
	for b, yd := range ds {
		blk := (*[bytesQ2_K]byte)(w[b*bytesQ2_K:])
		y := (*[qkK]int8)(qs[b*qkK:])
		bs := (*[16]int16)(bsums[16*b:])
		var isum, imin int32
		for g := 0; g < 16; g++ {
			imin += int32(blk[g]>>4) * int32(bs[g])
		}
		// Group g = 8n + 2j + half: 16 quants at bits 2j of bytes
		// 16+32n+16half.., against y[128n+32j+16half..].
		for n := 0; n < 2; n++ {
			for half := 0; half < 2; half++ {
				q := (*[16]byte)(blk[16+32*n+16*half:])
				yy := (*[112]int8)(y[128*n+16*half:])
				var s0, s1, s2, s3 int32
				for l := 0; l < 16; l++ {
					v := q[l]
					s0 += int32(v&3) * int32(yy[l])
					s1 += int32(v>>2&3) * int32(yy[32+l])
					s2 += int32(v>>4&3) * int32(yy[64+l])
					s3 += int32(v>>6) * int32(yy[96+l])
				}
				g := 8*n + half
				isum += int32(blk[g]&0xf)*s0 + int32(blk[g+2]&0xf)*s1 + int32(blk[g+4]&0xf)*s2 + int32(blk[g+6]&0xf)*s3
			}
		}
		d := yd * f16ToF32(uint16(blk[80])|uint16(blk[81])<<8)
		dmin := yd * f16ToF32(uint16(blk[82])|uint16(blk[83])<<8)
		sum = kAcc(sum, d, isum, dmin, imin)
	}
	return sum
}

func dotQ3_KGeneric(w []byte, a *act, e0 int) float32 {
	nb := a.cols / qkK
	w = w[:nb*bytesQ3_K]
	qs := a.qs[e0 : e0+a.cols]
	ds := a.d[e0/qkK : e0/qkK+nb]
	var sum float32
	for b, yd := range ds {
		blk := (*[bytesQ3_K]byte)(w[b*bytesQ3_K:])
		y := (*[qkK]int8)(qs[b*qkK:])
		sc := q3Scales(blk[96:108])
		var isum int32
		// Group g = 8n + 2j + half: 16 quants at bits 2j of bytes
		// 32+32n+16half.., high bit 4n+j of hm[16half..] (clear: -4),
		// against y[128n+32j+16half..].
		for n := 0; n < 2; n++ {
			for half := 0; half < 2; half++ {
				q := (*[16]byte)(blk[32+32*n+16*half:])
				h := (*[16]byte)(blk[16*half:])
				yy := (*[112]int8)(y[128*n+16*half:])
				hs := uint(4 * n)
				var s0, s1, s2, s3 int32
				for l := 0; l < 16; l++ {
					v := q[l]
					m := ^h[l] >> hs // bit j set: subtract 4 from quant j
					s0 += (int32(v&3) - int32(m<<2&4)) * int32(yy[l])
					s1 += (int32(v>>2&3) - int32(m<<1&4)) * int32(yy[32+l])
					s2 += (int32(v>>4&3) - int32(m&4)) * int32(yy[64+l])
					s3 += (int32(v>>6) - int32(m>>1&4)) * int32(yy[96+l])
				}
				g := 8*n + half
				isum += int32(sc[g])*s0 + int32(sc[g+2])*s1 + int32(sc[g+4])*s2 + int32(sc[g+6])*s3
			}
		}
		sum = kAcc(sum, yd*f16ToF32(uint16(blk[108])|uint16(blk[109])<<8), isum, 0, 0)
	}
	return sum
}

func dotQ4_KGeneric(w []byte, a *act, e0 int) float32 {
	nb := a.cols / qkK
	w = w[:nb*bytesQ4_K]
	qs := a.qs[e0 : e0+a.cols]
	ds := a.d[e0/qkK : e0/qkK+nb]
	bsums := a.bsums[e0/16 : e0/16+16*nb]
	var sum float32
	for b, yd := range ds {
		blk := (*[bytesQ4_K]byte)(w[b*bytesQ4_K:])
		y := (*[qkK]int8)(qs[b*qkK:])
		sc, mn := q4Scales(blk[4:16])
		var isum int32
		for c := 0; c < 4; c++ {
			q := (*[32]byte)(blk[16+32*c:])
			y1 := (*[32]int8)(y[64*c:])
			y2 := (*[32]int8)(y[64*c+32:])
			var s1, s2, t1, t2 int32
			for l := 0; l < 16; l += 2 {
				v0, v1 := q[l], q[l+16]
				u0, u1 := q[l+1], q[l+17]
				s1 += int32(v0&0xf)*int32(y1[l]) + int32(u0&0xf)*int32(y1[l+1])
				t1 += int32(v1&0xf)*int32(y1[l+16]) + int32(u1&0xf)*int32(y1[l+17])
				s2 += int32(v0>>4)*int32(y2[l]) + int32(u0>>4)*int32(y2[l+1])
				t2 += int32(v1>>4)*int32(y2[l+16]) + int32(u1>>4)*int32(y2[l+17])
			}
			isum += int32(sc[2*c])*(s1+t1) + int32(sc[2*c+1])*(s2+t2)
		}
		imin := kMins(&mn, (*[16]int16)(bsums[16*b:]))
		d := yd * f16ToF32(uint16(blk[0])|uint16(blk[1])<<8)
		dmin := yd * f16ToF32(uint16(blk[2])|uint16(blk[3])<<8)
		sum = kAcc(sum, d, isum, dmin, imin)
	}
	return sum
}

func dotQ5_KGeneric(w []byte, a *act, e0 int) float32 {
	nb := a.cols / qkK
	w = w[:nb*bytesQ5_K]
	qs := a.qs[e0 : e0+a.cols]
	ds := a.d[e0/qkK : e0/qkK+nb]
	bsums := a.bsums[e0/16 : e0/16+16*nb]
	var sum float32
	for b, yd := range ds {
		blk := (*[bytesQ5_K]byte)(w[b*bytesQ5_K:])
		y := (*[qkK]int8)(qs[b*qkK:])
		sc, mn := q4Scales(blk[4:16])
		qh := (*[32]byte)(blk[16:])
		var isum int32
		for c := 0; c < 4; c++ {
			q := (*[32]byte)(blk[48+32*c:])
			y1 := (*[32]int8)(y[64*c:])
			y2 := (*[32]int8)(y[64*c+32:])
			hs := uint(2 * c)
			var s1, s2, t1, t2 int32
			for l := 0; l < 16; l++ {
				v, h := q[l], qh[l]>>hs
				u, g := q[l+16], qh[l+16]>>hs
				s1 += int32(v&0xf|h<<4&0x10) * int32(y1[l])
				t1 += int32(u&0xf|g<<4&0x10) * int32(y1[l+16])
				s2 += int32(v>>4|h<<3&0x10) * int32(y2[l])
				t2 += int32(u>>4|g<<3&0x10) * int32(y2[l+16])
			}
			isum += int32(sc[2*c])*(s1+t1) + int32(sc[2*c+1])*(s2+t2)
		}
		imin := kMins(&mn, (*[16]int16)(bsums[16*b:]))
		d := yd * f16ToF32(uint16(blk[0])|uint16(blk[1])<<8)
		dmin := yd * f16ToF32(uint16(blk[2])|uint16(blk[3])<<8)
		sum = kAcc(sum, d, isum, dmin, imin)
	}
	return sum
}

func dotQ6_KGeneric(w []byte, a *act, e0 int) float32 {
	nb := a.cols / qkK
	w = w[:nb*bytesQ6_K]
	qs := a.qs[e0 : e0+a.cols]
	ds := a.d[e0/qkK : e0/qkK+nb]
	var sum float32
	for b, yd := range ds {
		blk := (*[bytesQ6_K]byte)(w[b*bytesQ6_K:])
		y := (*[qkK]int8)(qs[b*qkK:])
		var isum int32
		// Half n, sub-block is = l/16: quants l, l+32, l+64, l+96 of the
		// half from ql[l], ql[l+32] (nibbles) and qh[l] (2-bit fields),
		// with scales sc[is], sc[is+2], sc[is+4], sc[is+6].
		for n := 0; n < 2; n++ {
			ql := (*[64]byte)(blk[64*n:])
			qh := (*[32]byte)(blk[128+32*n:])
			sc := (*[8]byte)(blk[192+8*n:])
			yy := (*[128]int8)(y[128*n:])
			for is := 0; is < 2; is++ {
				var s1, s2, s3, s4 int32
				for i := 0; i < 16; i++ {
					l := 16*is + i
					a, c, h := ql[l], ql[l+32], qh[l]
					s1 += (int32(a&0xf|h<<4&0x30) - 32) * int32(yy[l])
					s2 += (int32(c&0xf|h<<2&0x30) - 32) * int32(yy[l+32])
					s3 += (int32(a>>4|h&0x30) - 32) * int32(yy[l+64])
					s4 += (int32(c>>4|h>>2&0x30) - 32) * int32(yy[l+96])
				}
				isum += int32(int8(sc[is]))*s1 + int32(int8(sc[is+2]))*s2 + int32(int8(sc[is+4]))*s3 + int32(int8(sc[is+6]))*s4
			}
		}
		sum = kAcc(sum, yd*f16ToF32(uint16(blk[208])|uint16(blk[209])<<8), isum, 0, 0)
	}
	return sum
}

// Float dots (F32 weights, and F16/BF16 weights with activations already
// rounded to that type): 4 accumulators of 8 lanes over chunks of 32
// elements, element i of a chunk in accumulator i/8 lane i%8, product rounded
// before the add; tail elements summed in order; result
// hsum8((acc0+acc1)+(acc2+acc3)) + tail.

func finishAcc4(acc *[32]float32) float32 {
	var v [8]float32
	for l := range v {
		v[l] = (acc[l] + acc[8+l]) + (acc[16+l] + acc[24+l])
	}
	return hsum8(&v)
}

// dotF32Generic is the pure-Go float32 dot product with the lane layout above.
func dotF32Generic(w []byte, a *act, e0 int) float32 {
	n := a.cols
	w = w[:4*n]
	x := a.f[e0 : e0+n]
	var acc [32]float32
	i := 0
	for ; i+32 <= n; i += 32 {
		wc := (*[128]byte)(w[4*i:])
		xc := (*[32]float32)(x[i:])
		for l := 0; l < 32; l++ {
			v := uint32(wc[4*l]) | uint32(wc[4*l+1])<<8 | uint32(wc[4*l+2])<<16 | uint32(wc[4*l+3])<<24
			acc[l] += float32(float32frombits(v) * xc[l])
		}
	}
	var tail float32
	for ; i < n; i++ {
		tail += float32(float32frombits(binary.LittleEndian.Uint32(w[4*i:])) * x[i])
	}
	return finishAcc4(&acc) + tail
}

func dotF16Generic(w []byte, a *act, e0 int) float32 {
	n := a.cols
	w = w[:2*n]
	x := a.f[e0 : e0+n]
	var acc [32]float32
	i := 0
	for ; i+32 <= n; i += 32 {
		wc := (*[64]byte)(w[2*i:])
		xc := (*[32]float32)(x[i:])
		for l := 0; l < 32; l++ {
			acc[l] += float32(f16ToF32(uint16(wc[2*l])|uint16(wc[2*l+1])<<8) * xc[l])
		}
	}
	var tail float32
	for ; i < n; i++ {
		tail += float32(f16ToF32(le16(w[2*i:])) * x[i])
	}
	return finishAcc4(&acc) + tail
}

func dotBF16Generic(w []byte, a *act, e0 int) float32 {
	n := a.cols
	w = w[:2*n]
	x := a.f[e0 : e0+n]
	var acc [32]float32
	i := 0
	for ; i+32 <= n; i += 32 {
		wc := (*[64]byte)(w[2*i:])
		xc := (*[32]float32)(x[i:])
		for l := 0; l < 32; l++ {
			acc[l] += float32(bf16ToF32(uint16(wc[2*l])|uint16(wc[2*l+1])<<8) * xc[l])
		}
	}
	var tail float32
	for ; i < n; i++ {
		tail += float32(bf16ToF32(le16(w[2*i:])) * x[i])
	}
	return finishAcc4(&acc) + tail
}

// dotGeneric32 is Dot's pure-Go implementation (same layout as dotF32Generic).
func dotGeneric32(a, b []float32) float32 {
	n := len(a)
	b = b[:n]
	var acc [32]float32
	i := 0
	for ; i+32 <= n; i += 32 {
		ac := (*[32]float32)(a[i:])
		bc := (*[32]float32)(b[i:])
		for l := 0; l < 32; l++ {
			acc[l] += float32(ac[l] * bc[l])
		}
	}
	var tail float32
	for ; i < n; i++ {
		tail += float32(a[i] * b[i])
	}
	return finishAcc4(&acc) + tail
}
