package tensor

import (
	"encoding/binary"
	"math"
)

// Block geometry of the ggml formats (see ggml-common.h).
const (
	qk        = 32  // elements per block of the 32-element formats
	qkK       = 256 // elements per K-quant super-block
	bytesQ4_0 = 2 + 16
	bytesQ4_1 = 2 + 2 + 16
	bytesQ5_0 = 2 + 4 + 16
	bytesQ5_1 = 2 + 2 + 4 + 16
	bytesQ8_0 = 2 + 32
	bytesQ2_K = 16 + 64 + 2 + 2
	bytesQ3_K = 32 + 64 + 12 + 2
	bytesQ4_K = 2 + 2 + 12 + 128
	bytesQ5_K = 2 + 2 + 12 + 32 + 128
	bytesQ6_K = 128 + 64 + 16 + 2
)

func float32frombits(b uint32) float32 { return math.Float32frombits(b) }

func le16(b []byte) uint16 { return binary.LittleEndian.Uint16(b) }

// The dequantizers below follow ggml's dequantize_row_* formulas and operation
// order; explicit float32 conversions keep the compiler from fusing a
// multiply and an add.

func dequantQ8_0(src []byte, dst []float32) {
	for b := 0; b < len(dst)/qk; b++ {
		blk := src[b*bytesQ8_0 : (b+1)*bytesQ8_0]
		d := f16ToF32(le16(blk))
		y := dst[b*qk : (b+1)*qk]
		for j := range y {
			y[j] = float32(int8(blk[2+j])) * d
		}
	}
}

func dequantQ4_0(src []byte, dst []float32) {
	for b := 0; b < len(dst)/qk; b++ {
		blk := src[b*bytesQ4_0 : (b+1)*bytesQ4_0]
		d := f16ToF32(le16(blk))
		qs := blk[2:18]
		y := dst[b*qk : (b+1)*qk]
		for j := 0; j < 16; j++ {
			y[j] = float32(int(qs[j]&0xf)-8) * d
			y[j+16] = float32(int(qs[j]>>4)-8) * d
		}
	}
}

func dequantQ4_1(src []byte, dst []float32) {
	for b := 0; b < len(dst)/qk; b++ {
		blk := src[b*bytesQ4_1 : (b+1)*bytesQ4_1]
		d := f16ToF32(le16(blk))
		m := f16ToF32(le16(blk[2:]))
		qs := blk[4:20]
		y := dst[b*qk : (b+1)*qk]
		for j := 0; j < 16; j++ {
			y[j] = float32(float32(qs[j]&0xf)*d) + m
			y[j+16] = float32(float32(qs[j]>>4)*d) + m
		}
	}
}

func dequantQ5_0(src []byte, dst []float32) {
	for b := 0; b < len(dst)/qk; b++ {
		blk := src[b*bytesQ5_0 : (b+1)*bytesQ5_0]
		d := f16ToF32(le16(blk))
		qh := binary.LittleEndian.Uint32(blk[2:])
		qs := blk[6:22]
		y := dst[b*qk : (b+1)*qk]
		for j := 0; j < 16; j++ {
			h0 := byte(qh>>j<<4) & 0x10
			h1 := byte(qh>>(j+12)) & 0x10
			y[j] = float32(int(qs[j]&0xf|h0)-16) * d
			y[j+16] = float32(int(qs[j]>>4|h1)-16) * d
		}
	}
}

func dequantQ5_1(src []byte, dst []float32) {
	for b := 0; b < len(dst)/qk; b++ {
		blk := src[b*bytesQ5_1 : (b+1)*bytesQ5_1]
		d := f16ToF32(le16(blk))
		m := f16ToF32(le16(blk[2:]))
		qh := binary.LittleEndian.Uint32(blk[4:])
		qs := blk[8:24]
		y := dst[b*qk : (b+1)*qk]
		for j := 0; j < 16; j++ {
			h0 := byte(qh>>j<<4) & 0x10
			h1 := byte(qh>>(j+12)) & 0x10
			y[j] = float32(float32(qs[j]&0xf|h0)*d) + m
			y[j+16] = float32(float32(qs[j]>>4|h1)*d) + m
		}
	}
}

func dequantQ2_K(src []byte, dst []float32) {
	for b := 0; b < len(dst)/qkK; b++ {
		blk := src[b*bytesQ2_K : (b+1)*bytesQ2_K]
		scales := blk[0:16]
		d := f16ToF32(le16(blk[80:]))
		dmin := f16ToF32(le16(blk[82:]))
		y := dst[b*qkK : (b+1)*qkK]
		is := 0
		for n := 0; n < 2; n++ {
			q := blk[16+32*n : 16+32*n+32]
			for j := 0; j < 4; j++ {
				shift := uint(2 * j)
				for half := 0; half < 2; half++ {
					sc := scales[is]
					is++
					dl := d * float32(sc&0xf)
					ml := dmin * float32(sc>>4)
					for l := 0; l < 16; l++ {
						y[128*n+32*j+16*half+l] = float32(dl*float32((q[16*half+l]>>shift)&3)) - ml
					}
				}
			}
		}
	}
}

// q3Scales unpacks Q3_K's sixteen 6-bit scales (minus 32).
func q3Scales(s []byte) [16]int8 {
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

func dequantQ3_K(src []byte, dst []float32) {
	for b := 0; b < len(dst)/qkK; b++ {
		blk := src[b*bytesQ3_K : (b+1)*bytesQ3_K]
		hm := blk[0:32]
		sc := q3Scales(blk[96:108])
		d := f16ToF32(le16(blk[108:]))
		y := dst[b*qkK : (b+1)*qkK]
		is := 0
		m := byte(1)
		for n := 0; n < 2; n++ {
			q := blk[32+32*n : 32+32*n+32]
			for j := 0; j < 4; j++ {
				shift := uint(2 * j)
				for half := 0; half < 2; half++ {
					dl := d * float32(sc[is])
					is++
					for l := 16 * half; l < 16*half+16; l++ {
						v := int8((q[l] >> shift) & 3)
						if hm[l]&m == 0 {
							v -= 4
						}
						y[128*n+32*j+l] = dl * float32(v)
					}
				}
				m <<= 1
			}
		}
	}
}

// q4Scales unpacks the 6-bit scales and mins of Q4_K and Q5_K
// (get_scale_min_k4 for j = 0..7).
func q4Scales(s []byte) (sc, mn [8]uint8) {
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

func dequantQ4_K(src []byte, dst []float32) {
	for b := 0; b < len(dst)/qkK; b++ {
		blk := src[b*bytesQ4_K : (b+1)*bytesQ4_K]
		d := f16ToF32(le16(blk))
		dmin := f16ToF32(le16(blk[2:]))
		sc, mn := q4Scales(blk[4:16])
		qs := blk[16:144]
		y := dst[b*qkK : (b+1)*qkK]
		for c := 0; c < 4; c++ {
			q := qs[32*c : 32*c+32]
			d1, m1 := d*float32(sc[2*c]), dmin*float32(mn[2*c])
			d2, m2 := d*float32(sc[2*c+1]), dmin*float32(mn[2*c+1])
			for l := 0; l < 32; l++ {
				y[64*c+l] = float32(d1*float32(q[l]&0xf)) - m1
				y[64*c+32+l] = float32(d2*float32(q[l]>>4)) - m2
			}
		}
	}
}

func dequantQ5_K(src []byte, dst []float32) {
	for b := 0; b < len(dst)/qkK; b++ {
		blk := src[b*bytesQ5_K : (b+1)*bytesQ5_K]
		d := f16ToF32(le16(blk))
		dmin := f16ToF32(le16(blk[2:]))
		sc, mn := q4Scales(blk[4:16])
		qh := blk[16:48]
		qs := blk[48:176]
		y := dst[b*qkK : (b+1)*qkK]
		for c := 0; c < 4; c++ {
			q := qs[32*c : 32*c+32]
			d1, m1 := d*float32(sc[2*c]), dmin*float32(mn[2*c])
			d2, m2 := d*float32(sc[2*c+1]), dmin*float32(mn[2*c+1])
			u1, u2 := byte(1)<<(2*c), byte(2)<<(2*c)
			for l := 0; l < 32; l++ {
				lo, hi := q[l]&0xf, q[l]>>4
				if qh[l]&u1 != 0 {
					lo += 16
				}
				if qh[l]&u2 != 0 {
					hi += 16
				}
				y[64*c+l] = float32(d1*float32(lo)) - m1
				y[64*c+32+l] = float32(d2*float32(hi)) - m2
			}
		}
	}
}

func dequantQ6_K(src []byte, dst []float32) {
	for b := 0; b < len(dst)/qkK; b++ {
		blk := src[b*bytesQ6_K : (b+1)*bytesQ6_K]
		d := f16ToF32(le16(blk[208:]))
		y := dst[b*qkK : (b+1)*qkK]
		for n := 0; n < 2; n++ {
			ql := blk[64*n : 64*n+64]
			qh := blk[128+32*n : 128+32*n+32]
			sc := blk[192+8*n : 192+8*n+8]
			for l := 0; l < 32; l++ {
				is := l / 16
				q1 := int8(ql[l]&0xf|(qh[l]>>0&3)<<4) - 32
				q2 := int8(ql[l+32]&0xf|(qh[l]>>2&3)<<4) - 32
				q3 := int8(ql[l]>>4|(qh[l]>>4&3)<<4) - 32
				q4 := int8(ql[l+32]>>4|(qh[l]>>6&3)<<4) - 32
				y[128*n+l] = d * float32(int8(sc[is])) * float32(q1)
				y[128*n+l+32] = d * float32(int8(sc[is+2])) * float32(q2)
				y[128*n+l+64] = d * float32(int8(sc[is+4])) * float32(q3)
				y[128*n+l+96] = d * float32(int8(sc[is+6])) * float32(q4)
			}
		}
	}
}
