package tensor

import (
	"encoding/binary"
)

// The pure-Go kernels as they were before they were unrolled and stripped
// of bounds checks (issue 15): the plain statement of each kernel's
// arithmetic, kept as the specification that the fast ones must match bit
// for bit (TestGenericMatchesSpec). Only the names differ.

func specDotQ8_0Generic(w []byte, a *act, e0 int) float32 {
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
		specLaneDot(&q, qs[b*qk:], &lane)
		specAccLanes(&acc[b&1], f16ToF32(le16(blk))*ds[b], &lane)
	}
	return specFinishAcc2(&acc)
}

func specDotQ4_0Generic(w []byte, a *act, e0 int) float32 {
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
		specLaneDot(&q, qs[b*qk:], &lane)
		specAccLanes(&acc[b&1], f16ToF32(le16(blk))*ds[b], &lane)
	}
	return specFinishAcc2(&acc)
}

func specDotQ5_0Generic(w []byte, a *act, e0 int) float32 {
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
		specLaneDot(&q, qs[b*qk:], &lane)
		specAccLanes(&acc[b&1], f16ToF32(le16(blk))*ds[b], &lane)
	}
	return specFinishAcc2(&acc)
}

func specDotQ4_1Generic(w []byte, a *act, e0 int) float32 {
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
		specLaneDot(&q, qs[b*qk:], &lane)
		specAccLanes(&acc[b&1], f16ToF32(le16(blk))*ds[b], &lane)
		summs += float32(f16ToF32(le16(blk[2:])) * ss[b])
	}
	return specFinishAcc2(&acc) + summs
}

func specDotQ5_1Generic(w []byte, a *act, e0 int) float32 {
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
		specLaneDot(&q, qs[b*qk:], &lane)
		specAccLanes(&acc[b&1], f16ToF32(le16(blk))*ds[b], &lane)
		summs += float32(f16ToF32(le16(blk[2:])) * ss[b])
	}
	return specFinishAcc2(&acc) + summs
}

func specDotQ2_KGeneric(w []byte, a *act, e0 int) float32 {
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
		sum = specKAcc(sum, d, isum, dmin, imin)
	}
	return sum
}

func specDotQ3_KGeneric(w []byte, a *act, e0 int) float32 {
	nb := a.cols / qkK
	w = w[:nb*bytesQ3_K]
	qs := a.qs[e0 : e0+a.cols]
	var sum float32
	for b := 0; b < nb; b++ {
		blk := w[b*bytesQ3_K : (b+1)*bytesQ3_K]
		y := qs[b*qkK : (b+1)*qkK]
		yd := a.d[(e0+b*qkK)/qkK]
		hm := blk[0:32]
		sc := specQ3Scales(blk[96:108])
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
		sum = specKAcc(sum, yd*f16ToF32(le16(blk[108:])), isum, 0, 0)
	}
	return sum
}

func specDotQ4_KGeneric(w []byte, a *act, e0 int) float32 {
	nb := a.cols / qkK
	w = w[:nb*bytesQ4_K]
	qs := a.qs[e0 : e0+a.cols]
	var sum float32
	for b := 0; b < nb; b++ {
		blk := w[b*bytesQ4_K : (b+1)*bytesQ4_K]
		y := qs[b*qkK : (b+1)*qkK]
		bs := a.bsums[(e0+b*qkK)/16:][:16]
		yd := a.d[(e0+b*qkK)/qkK]
		sc, mn := specQ4Scales(blk[4:16])
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
		sum = specKAcc(sum, d, isum, dmin, imin)
	}
	return sum
}

func specDotQ5_KGeneric(w []byte, a *act, e0 int) float32 {
	nb := a.cols / qkK
	w = w[:nb*bytesQ5_K]
	qs := a.qs[e0 : e0+a.cols]
	var sum float32
	for b := 0; b < nb; b++ {
		blk := w[b*bytesQ5_K : (b+1)*bytesQ5_K]
		y := qs[b*qkK : (b+1)*qkK]
		bs := a.bsums[(e0+b*qkK)/16:][:16]
		yd := a.d[(e0+b*qkK)/qkK]
		sc, mn := specQ4Scales(blk[4:16])
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
		sum = specKAcc(sum, d, isum, dmin, imin)
	}
	return sum
}

func specDotQ6_KGeneric(w []byte, a *act, e0 int) float32 {
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
		sum = specKAcc(sum, yd*f16ToF32(le16(blk[208:])), isum, 0, 0)
	}
	return sum
}

func specDotF32Generic(w []byte, a *act, e0 int) float32 {
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
	return specFinishAcc4(&acc) + tail
}

func specDotF16Generic(w []byte, a *act, e0 int) float32 {
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
	return specFinishAcc4(&acc) + tail
}

func specDotBF16Generic(w []byte, a *act, e0 int) float32 {
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
	return specFinishAcc4(&acc) + tail
}

func specDotGeneric32(a, b []float32) float32 {
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
	return specFinishAcc4(&acc) + tail
}

func specLaneDot(w *[32]int8, y []int8, lane *[8]int32) {
	y = y[:32]
	for l := 0; l < 8; l++ {
		lane[l] = int32(w[4*l])*int32(y[4*l]) + int32(w[4*l+1])*int32(y[4*l+1]) +
			int32(w[4*l+2])*int32(y[4*l+2]) + int32(w[4*l+3])*int32(y[4*l+3])
	}
}

func specAccLanes(acc *[8]float32, d float32, lane *[8]int32) {
	for l := range lane {
		acc[l] += float32(d * float32(lane[l]))
	}
}

func specFinishAcc2(acc *[2][8]float32) float32 {
	var v [8]float32
	for l := range v {
		v[l] = acc[0][l] + acc[1][l]
	}
	return hsum8(&v)
}

func specFinishAcc4(acc *[32]float32) float32 {
	var v [8]float32
	for l := range v {
		v[l] = (acc[l] + acc[8+l]) + (acc[16+l] + acc[24+l])
	}
	return hsum8(&v)
}

func specKAcc(sum, d float32, isum int32, dmin float32, imin int32) float32 {
	sum += float32(d * float32(isum))
	sum -= float32(dmin * float32(imin))
	return sum
}

func specQ3Scales(s []byte) [16]int8 {
	const kmask1, kmask2 = 0x03030303, 0x0f0f0f0f
	a0 := binary.LittleEndian.Uint32(s[0:])
	a1 := binary.LittleEndian.Uint32(s[4:])
	tmp := binary.LittleEndian.Uint32(s[8:])
	var aux [4]uint32
	aux[2] = ((a0 >> 4) & kmask2) | (((tmp >> 4) & kmask1) << 4)
	aux[3] = ((a1 >> 4) & kmask2) | (((tmp >> 6) & kmask1) << 4)
	aux[0] = (a0 & kmask2) | (((tmp >> 0) & kmask1) << 4)
	aux[1] = (a1 & kmask2) | (((tmp >> 2) & kmask1) << 4)
	var out [16]int8
	for i := 0; i < 16; i++ {
		out[i] = int8(byte(aux[i/4]>>(8*(i%4)))) - 32
	}
	return out
}

func specQ4Scales(s []byte) (sc, mn [8]uint8) {
	for j := 0; j < 8; j++ {
		if j < 4 {
			sc[j] = s[j] & 63
			mn[j] = s[j+4] & 63
		} else {
			sc[j] = s[j+4]&0xf | (s[j-4]>>6)<<4
			mn[j] = s[j+4]>>4 | (s[j]>>6)<<4
		}
	}
	return
}
