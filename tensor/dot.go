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

// accLanes adds d*lane to acc lane by lane (multiply, round, add, round).
func accLanes(acc *[8]float32, d float32, lane *[8]int32) {
	for l := range lane {
		acc[l] += float32(d * float32(lane[l]))
	}
}

func finishAcc2(acc *[2][8]float32) float32 {
	var v [8]float32
	for l := range v {
		v[l] = acc[0][l] + acc[1][l]
	}
	return hsum8(&v)
}

// laneDot4 computes the 8 lane sums of a 32-element int8 block product.
func laneDot(w *[32]int8, y []int8, lane *[8]int32) {
	y = y[:32]
	for l := 0; l < 8; l++ {
		lane[l] = int32(w[4*l])*int32(y[4*l]) + int32(w[4*l+1])*int32(y[4*l+1]) +
			int32(w[4*l+2])*int32(y[4*l+2]) + int32(w[4*l+3])*int32(y[4*l+3])
	}
}

func dotQ8_0Generic(w []byte, a *act, e0 int) float32 {
	nb := a.cols / qk
	w = w[:nb*bytesQ8_0]
	qs := a.qs[e0 : e0+a.cols]
	ds := a.d[e0/qk : e0/qk+nb]
	var acc [2][8]float32
	var q [32]int8
	var lane [8]int32
	for b := 0; b < nb; b++ {
		blk := w[b*bytesQ8_0 : (b+1)*bytesQ8_0]
		for j := range q {
			q[j] = int8(blk[2+j])
		}
		laneDot(&q, qs[b*qk:], &lane)
		accLanes(&acc[b&1], f16ToF32(le16(blk))*ds[b], &lane)
	}
	return finishAcc2(&acc)
}

func dotQ4_0Generic(w []byte, a *act, e0 int) float32 {
	nb := a.cols / qk
	w = w[:nb*bytesQ4_0]
	qs := a.qs[e0 : e0+a.cols]
	ds := a.d[e0/qk : e0/qk+nb]
	var acc [2][8]float32
	var q [32]int8
	var lane [8]int32
	for b := 0; b < nb; b++ {
		blk := w[b*bytesQ4_0 : (b+1)*bytesQ4_0]
		for j := 0; j < 16; j++ {
			q[j] = int8(blk[2+j]&0xf) - 8
			q[j+16] = int8(blk[2+j]>>4) - 8
		}
		laneDot(&q, qs[b*qk:], &lane)
		accLanes(&acc[b&1], f16ToF32(le16(blk))*ds[b], &lane)
	}
	return finishAcc2(&acc)
}

func dotQ5_0Generic(w []byte, a *act, e0 int) float32 {
	nb := a.cols / qk
	w = w[:nb*bytesQ5_0]
	qs := a.qs[e0 : e0+a.cols]
	ds := a.d[e0/qk : e0/qk+nb]
	var acc [2][8]float32
	var q [32]int8
	var lane [8]int32
	for b := 0; b < nb; b++ {
		blk := w[b*bytesQ5_0 : (b+1)*bytesQ5_0]
		qh := binary.LittleEndian.Uint32(blk[2:])
		for j := 0; j < 16; j++ {
			h0 := byte(qh>>j<<4) & 0x10
			h1 := byte(qh>>(j+12)) & 0x10
			q[j] = int8(blk[6+j]&0xf|h0) - 16
			q[j+16] = int8(blk[6+j]>>4|h1) - 16
		}
		laneDot(&q, qs[b*qk:], &lane)
		accLanes(&acc[b&1], f16ToF32(le16(blk))*ds[b], &lane)
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
	var q [32]int8
	var lane [8]int32
	var summs float32
	for b := 0; b < nb; b++ {
		blk := w[b*bytesQ4_1 : (b+1)*bytesQ4_1]
		for j := 0; j < 16; j++ {
			q[j] = int8(blk[4+j] & 0xf)
			q[j+16] = int8(blk[4+j] >> 4)
		}
		laneDot(&q, qs[b*qk:], &lane)
		accLanes(&acc[b&1], f16ToF32(le16(blk))*ds[b], &lane)
		summs += float32(f16ToF32(le16(blk[2:])) * ss[b])
	}
	return finishAcc2(&acc) + summs
}

func dotQ5_1Generic(w []byte, a *act, e0 int) float32 {
	nb := a.cols / qk
	w = w[:nb*bytesQ5_1]
	qs := a.qs[e0 : e0+a.cols]
	ds := a.d[e0/qk : e0/qk+nb]
	ss := a.s[e0/qk : e0/qk+nb]
	var acc [2][8]float32
	var q [32]int8
	var lane [8]int32
	var summs float32
	for b := 0; b < nb; b++ {
		blk := w[b*bytesQ5_1 : (b+1)*bytesQ5_1]
		qh := binary.LittleEndian.Uint32(blk[4:])
		for j := 0; j < 16; j++ {
			h0 := byte(qh>>j<<4) & 0x10
			h1 := byte(qh>>(j+12)) & 0x10
			q[j] = int8(blk[8+j]&0xf | h0)
			q[j+16] = int8(blk[8+j]>>4 | h1)
		}
		laneDot(&q, qs[b*qk:], &lane)
		accLanes(&acc[b&1], f16ToF32(le16(blk))*ds[b], &lane)
		summs += float32(f16ToF32(le16(blk[2:])) * ss[b])
	}
	return finishAcc2(&acc) + summs
}

// K-quant kernels: each super-block's integer sums are exact; the float part
// is, per super-block in order, sum += d*isum then sum -= dmin*imin, with
// d = y.d * x.d and dmin = y.d * x.dmin.

// kAcc adds one super-block's contribution to sum.
func kAcc(sum, d float32, isum int32, dmin float32, imin int32) float32 {
	sum += float32(d * float32(isum))
	sum -= float32(dmin * float32(imin))
	return sum
}

func dotQ2_KGeneric(w []byte, a *act, e0 int) float32 {
	nb := a.cols / qkK
	w = w[:nb*bytesQ2_K]
	qs := a.qs[e0 : e0+a.cols]
	var sum float32
	for b := 0; b < nb; b++ {
		blk := w[b*bytesQ2_K : (b+1)*bytesQ2_K]
		y := qs[b*qkK : (b+1)*qkK]
		bs := a.bsums[(e0+b*qkK)/16:][:16]
		yd := a.d[(e0+b*qkK)/qkK]
		var isum, imin int32
		for g := 0; g < 16; g++ {
			sc := blk[g]
			imin += int32(sc>>4) * int32(bs[g])
			n, j, half := g/8, (g%8)/2, g%2
			q := blk[16+32*n+16*half:][:16]
			shift := uint(2 * j)
			yy := y[128*n+32*j+16*half:][:16]
			var s int32
			for l := 0; l < 16; l++ {
				s += int32((q[l]>>shift)&3) * int32(yy[l])
			}
			isum += int32(sc&0xf) * s
		}
		d := yd * f16ToF32(le16(blk[80:]))
		dmin := yd * f16ToF32(le16(blk[82:]))
		sum = kAcc(sum, d, isum, dmin, imin)
	}
	return sum
}

func dotQ3_KGeneric(w []byte, a *act, e0 int) float32 {
	nb := a.cols / qkK
	w = w[:nb*bytesQ3_K]
	qs := a.qs[e0 : e0+a.cols]
	var sum float32
	for b := 0; b < nb; b++ {
		blk := w[b*bytesQ3_K : (b+1)*bytesQ3_K]
		y := qs[b*qkK : (b+1)*qkK]
		yd := a.d[(e0+b*qkK)/qkK]
		hm := blk[0:32]
		sc := q3Scales(blk[96:108])
		var isum int32
		for g := 0; g < 16; g++ {
			n, j, half := g/8, (g%8)/2, g%2
			q := blk[32+32*n+16*half:][:16]
			h := hm[16*half:][:16]
			shift := uint(2 * j)
			m := byte(1) << (4*n + j)
			yy := y[128*n+32*j+16*half:][:16]
			var s int32
			for l := 0; l < 16; l++ {
				v := int32((q[l] >> shift) & 3)
				if h[l]&m == 0 {
					v -= 4
				}
				s += v * int32(yy[l])
			}
			isum += int32(sc[g]) * s
		}
		sum = kAcc(sum, yd*f16ToF32(le16(blk[108:])), isum, 0, 0)
	}
	return sum
}

func dotQ4_KGeneric(w []byte, a *act, e0 int) float32 {
	nb := a.cols / qkK
	w = w[:nb*bytesQ4_K]
	qs := a.qs[e0 : e0+a.cols]
	var sum float32
	for b := 0; b < nb; b++ {
		blk := w[b*bytesQ4_K : (b+1)*bytesQ4_K]
		y := qs[b*qkK : (b+1)*qkK]
		bs := a.bsums[(e0+b*qkK)/16:][:16]
		yd := a.d[(e0+b*qkK)/qkK]
		sc, mn := q4Scales(blk[4:16])
		q := blk[16:144]
		var isum, imin int32
		for c := 0; c < 4; c++ {
			var s1, s2 int32
			for l := 0; l < 32; l++ {
				s1 += int32(q[32*c+l]&0xf) * int32(y[64*c+l])
				s2 += int32(q[32*c+l]>>4) * int32(y[64*c+32+l])
			}
			isum += int32(sc[2*c])*s1 + int32(sc[2*c+1])*s2
		}
		for j := 0; j < 8; j++ {
			imin += int32(mn[j]) * (int32(bs[2*j]) + int32(bs[2*j+1]))
		}
		d := yd * f16ToF32(le16(blk))
		dmin := yd * f16ToF32(le16(blk[2:]))
		sum = kAcc(sum, d, isum, dmin, imin)
	}
	return sum
}

func dotQ5_KGeneric(w []byte, a *act, e0 int) float32 {
	nb := a.cols / qkK
	w = w[:nb*bytesQ5_K]
	qs := a.qs[e0 : e0+a.cols]
	var sum float32
	for b := 0; b < nb; b++ {
		blk := w[b*bytesQ5_K : (b+1)*bytesQ5_K]
		y := qs[b*qkK : (b+1)*qkK]
		bs := a.bsums[(e0+b*qkK)/16:][:16]
		yd := a.d[(e0+b*qkK)/qkK]
		sc, mn := q4Scales(blk[4:16])
		qh := blk[16:48]
		q := blk[48:176]
		var isum, imin int32
		for c := 0; c < 4; c++ {
			var s1, s2 int32
			for l := 0; l < 32; l++ {
				lo := int32(q[32*c+l]&0xf) | int32(qh[l]>>(2*c)&1)<<4
				hi := int32(q[32*c+l]>>4) | int32(qh[l]>>(2*c+1)&1)<<4
				s1 += lo * int32(y[64*c+l])
				s2 += hi * int32(y[64*c+32+l])
			}
			isum += int32(sc[2*c])*s1 + int32(sc[2*c+1])*s2
		}
		for j := 0; j < 8; j++ {
			imin += int32(mn[j]) * (int32(bs[2*j]) + int32(bs[2*j+1]))
		}
		d := yd * f16ToF32(le16(blk))
		dmin := yd * f16ToF32(le16(blk[2:]))
		sum = kAcc(sum, d, isum, dmin, imin)
	}
	return sum
}

func dotQ6_KGeneric(w []byte, a *act, e0 int) float32 {
	nb := a.cols / qkK
	w = w[:nb*bytesQ6_K]
	qs := a.qs[e0 : e0+a.cols]
	var sum float32
	for b := 0; b < nb; b++ {
		blk := w[b*bytesQ6_K : (b+1)*bytesQ6_K]
		y := qs[b*qkK : (b+1)*qkK]
		yd := a.d[(e0+b*qkK)/qkK]
		var isum int32
		for n := 0; n < 2; n++ {
			ql := blk[64*n : 64*n+64]
			qh := blk[128+32*n : 128+32*n+32]
			sc := blk[192+8*n : 192+8*n+8]
			yy := y[128*n : 128*n+128]
			var s [8]int32
			for l := 0; l < 32; l++ {
				is := l / 16
				q1 := int32(ql[l]&0xf|(qh[l]>>0&3)<<4) - 32
				q2 := int32(ql[l+32]&0xf|(qh[l]>>2&3)<<4) - 32
				q3 := int32(ql[l]>>4|(qh[l]>>4&3)<<4) - 32
				q4 := int32(ql[l+32]>>4|(qh[l]>>6&3)<<4) - 32
				s[is] += q1 * int32(yy[l])
				s[is+2] += q2 * int32(yy[l+32])
				s[is+4] += q3 * int32(yy[l+64])
				s[is+6] += q4 * int32(yy[l+96])
			}
			for g := 0; g < 8; g++ {
				isum += int32(int8(sc[g])) * s[g]
			}
		}
		sum = kAcc(sum, yd*f16ToF32(le16(blk[208:])), isum, 0, 0)
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
		for l := 0; l < 32; l++ {
			acc[l] += float32(float32frombits(binary.LittleEndian.Uint32(w[4*(i+l):])) * x[i+l])
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
		for l := 0; l < 32; l++ {
			acc[l] += float32(f16ToF32(le16(w[2*(i+l):])) * x[i+l])
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
		for l := 0; l < 32; l++ {
			acc[l] += float32(bf16ToF32(le16(w[2*(i+l):])) * x[i+l])
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
		for l := 0; l < 32; l++ {
			acc[l] += float32(a[i+l] * b[i+l])
		}
	}
	var tail float32
	for ; i < n; i++ {
		tail += float32(a[i] * b[i])
	}
	return finishAcc4(&acc) + tail
}
