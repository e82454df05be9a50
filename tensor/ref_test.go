package tensor

import (
	"encoding/binary"
	"math"
	"math/rand/v2"

	"github.com/stepflash/stepflash/gguf"
)

// This file holds an independent, element-at-a-time reference decoder of the
// ggml block layouts (ggml-common.h), written from the format description
// rather than from the dequantizers, plus random test data generators.

var allTypes = []gguf.Type{
	gguf.TypeF32, gguf.TypeF16, gguf.TypeBF16, gguf.TypeQ8_0, gguf.TypeQ4_0,
	gguf.TypeQ4_1, gguf.TypeQ5_0, gguf.TypeQ5_1, gguf.TypeQ2_K, gguf.TypeQ3_K,
	gguf.TypeQ4_K, gguf.TypeQ5_K, gguf.TypeQ6_K,
}

// refHalf decodes binary16 with float64 arithmetic.
func refHalf(h uint16) float64 {
	s := 1.0
	if h&0x8000 != 0 {
		s = -1
	}
	e := int(h>>10) & 31
	m := float64(h & 0x3ff)
	switch e {
	case 0:
		return s * m * math.Pow(2, -24)
	case 31:
		if m == 0 {
			return s * math.Inf(1)
		}
		return math.NaN()
	}
	return s * (1 + m/1024) * math.Pow(2, float64(e-15))
}

func bit(b []byte, i int) int { return int(b[i/8]>>(i%8)) & 1 }

// refK4ScaleMin returns the 6-bit scale and min of sub-block j of a Q4_K/Q5_K
// 12-byte scales field: j < 4 in the low 6 bits of bytes j and j+4; j >= 4 in
// the nibbles of byte j+4 with the top two bits of bytes j-4 and j.
func refK4ScaleMin(s []byte, j int) (int, int) {
	if j < 4 {
		return int(s[j] & 63), int(s[j+4] & 63)
	}
	sc := int(s[j+4]&15) | int(s[j-4]>>6)<<4
	mn := int(s[j+4]>>4) | int(s[j]>>6)<<4
	return sc, mn
}

// refQ3Scale returns the signed 6-bit scale g (0..15) of a Q3_K block: low 4
// bits are nibble g%8 of bytes 0..7 (low nibbles for g < 8), high 2 bits are
// bit pair g/4... of bytes 8..11.
func refQ3Scale(s []byte, g int) int {
	var lo int
	if g < 8 {
		lo = int(s[g] & 15)
	} else {
		lo = int(s[g-8] >> 4)
	}
	hi := int(s[8+g%4]>>(2*(g/4))) & 3
	return lo | hi<<4 - 32
}

// refValue decodes element i of the block blk of type t.
func refValue(t gguf.Type, blk []byte, i int) float64 {
	h := func(off int) float64 { return refHalf(binary.LittleEndian.Uint16(blk[off:])) }
	nib := func(qs []byte, i int) int { // element i of a 32-block: low nibbles first
		if i < 16 {
			return int(qs[i] & 15)
		}
		return int(qs[i-16] >> 4)
	}
	switch t {
	case gguf.TypeF32:
		return float64(math.Float32frombits(binary.LittleEndian.Uint32(blk)))
	case gguf.TypeF16:
		return h(0)
	case gguf.TypeBF16:
		return float64(math.Float32frombits(uint32(binary.LittleEndian.Uint16(blk)) << 16))
	case gguf.TypeQ8_0:
		return h(0) * float64(int8(blk[2+i]))
	case gguf.TypeQ4_0:
		return h(0) * float64(nib(blk[2:], i)-8)
	case gguf.TypeQ4_1:
		return h(0)*float64(nib(blk[4:], i)) + h(2)
	case gguf.TypeQ5_0:
		return h(0) * float64(nib(blk[6:], i)|bit(blk[2:6], i)<<4-16)
	case gguf.TypeQ5_1:
		return h(0)*float64(nib(blk[8:], i)|bit(blk[4:8], i)<<4) + h(2)
	case gguf.TypeQ2_K:
		// 2-bit quants: element i = 128*n + 32*j + l sits in byte 32*n + l
		// of qs at bit 2*j; group of 16 i/16 has scale (low) and min (high)
		// nibbles in scales[i/16].
		n, j, l := i/128, i%128/32, i%32
		q := int(blk[16+32*n+l]>>(2*j)) & 3
		sc := blk[i/16]
		return h(80)*float64(sc&15)*float64(q) - h(82)*float64(sc>>4)
	case gguf.TypeQ3_K:
		n, j, l := i/128, i%128/32, i%32
		q := int(blk[32+32*n+l]>>(2*j)) & 3
		if bit(blk[0:32], 8*l+4*n+j) == 0 {
			q -= 4
		}
		return h(108) * float64(refQ3Scale(blk[96:108], i/16)) * float64(q)
	case gguf.TypeQ4_K:
		c, hi, l := i/64, i%64/32, i%32
		q := int(blk[16+32*c+l]>>(4*hi)) & 15
		sc, mn := refK4ScaleMin(blk[4:16], i/32)
		return h(0)*float64(sc)*float64(q) - h(2)*float64(mn)
	case gguf.TypeQ5_K:
		c, hi, l := i/64, i%64/32, i%32
		q := int(blk[48+32*c+l]>>(4*hi))&15 | bit(blk[16:48], 8*l+i/32)<<4
		sc, mn := refK4ScaleMin(blk[4:16], i/32)
		return h(0)*float64(sc)*float64(q) - h(2)*float64(mn)
	case gguf.TypeQ6_K:
		// 128-element halves n; within a half, element 32*k + l: low 4 bits
		// from ql[64*n + l + 32*(k%2)] (nibble k/2), high 2 bits from
		// qh[32*n + l] bits 2k..2k+1.
		n, k, l := i/128, i%128/32, i%32
		lo := int(blk[64*n+l+32*(k%2)]>>(4*(k/2))) & 15
		hi := int(blk[128+32*n+l]>>(2*k)) & 3
		return h(208) * float64(int8(blk[192+i/16])) * float64(lo|hi<<4-32)
	}
	panic("refValue: type " + t.String())
}

// refDequant decodes a whole row with refValue.
func refDequant(t gguf.Type, src []byte, n int) []float64 {
	bs, bb := t.BlockSize(), t.BlockBytes()
	out := make([]float64, n)
	for i := range out {
		b := i / bs
		out[i] = refValue(t, src[b*bb:(b+1)*bb], i%bs)
	}
	return out
}

// randRow returns random data for n elements of type t: random quant bits,
// with the fp16 scales set to sensible magnitudes (as a quantizer would).
func randRow(rng *rand.Rand, t gguf.Type, n int) []byte {
	rb, err := t.RowBytes(n)
	if err != nil {
		panic(err)
	}
	buf := make([]byte, rb)
	for i := range buf {
		buf[i] = byte(rng.Uint32())
	}
	put := func(off int, v float32) { binary.LittleEndian.PutUint16(buf[off:], f32ToF16(v)) }
	sc := func() float32 { return float32(rng.NormFloat64()) * 0.02 }
	pos := func() float32 { return float32(rng.Float64()) * 0.02 }
	bb := t.BlockBytes()
	switch t {
	case gguf.TypeF32:
		for i := 0; i < n; i++ {
			binary.LittleEndian.PutUint32(buf[4*i:], math.Float32bits(float32(rng.NormFloat64())))
		}
	case gguf.TypeF16:
		for i := 0; i < n; i++ {
			put(2*i, float32(rng.NormFloat64()))
		}
	case gguf.TypeBF16:
		for i := 0; i < n; i++ {
			binary.LittleEndian.PutUint16(buf[2*i:], f32ToBF16(float32(rng.NormFloat64())))
		}
	}
	for b := 0; b < rb/bb && t.BlockSize() > 1; b++ {
		o := b * bb
		switch t {
		case gguf.TypeQ8_0, gguf.TypeQ4_0, gguf.TypeQ5_0:
			put(o, sc())
		case gguf.TypeQ4_1, gguf.TypeQ5_1:
			put(o, pos())
			put(o+2, -pos()*8)
		case gguf.TypeQ2_K:
			put(o+80, pos())
			put(o+82, pos())
		case gguf.TypeQ3_K:
			put(o+108, sc())
		case gguf.TypeQ4_K, gguf.TypeQ5_K:
			put(o, pos())
			put(o+2, pos())
		case gguf.TypeQ6_K:
			put(o+208, sc())
		}
	}
	return buf
}

func randFloats(rng *rand.Rand, n int) []float32 {
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(rng.NormFloat64())
	}
	return x
}
