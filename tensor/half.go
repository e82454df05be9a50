package tensor

import "math"

// f16ToF32 converts an IEEE 754 binary16 value to float32 exactly. It is
// small enough to inline (a call in a SIMD loop would spill every vector
// register): normal values are rebiased with integer arithmetic; zeros and
// subnormals are rescaled by 2^112 (exact); infinities and NaNs get the
// all-ones exponent.
func f16ToF32(h uint16) float32 { return f16Table[h] }

// f16Table holds f16ToF32Calc of every binary16 value: one load replaces the
// branches in the kernels' scale conversions (ggml keeps the same table).
var f16Table = func() *[1 << 16]float32 {
	var t [1 << 16]float32
	for i := range t {
		t[i] = f16ToF32Calc(uint16(i))
	}
	return &t
}()

// f16ToF32Calc converts an IEEE 754 binary16 value to float32 exactly.
func f16ToF32Calc(h uint16) float32 {
	em := uint32(h&0x7fff) << 13
	bits := em + 0x38000000
	if em < 0x00800000 {
		bits = math.Float32bits(math.Float32frombits(em) * 0x1p112)
	} else if em >= 0x0f800000 {
		bits = em | 0x7f800000
	}
	return math.Float32frombits(bits | uint32(h&0x8000)<<16)
}

// f32ToF16 converts a float32 to binary16 with round-to-nearest-even, as the
// F16C instruction VCVTPS2PH (and ggml's GGML_FP32_TO_FP16) does.
func f32ToF16(f float32) uint16 {
	b := math.Float32bits(f)
	sign := uint16(b>>16) & 0x8000
	if a := b & 0x7fffffff; a-0x38800000 < 0x47800000-0x38800000 {
		// Normal half range: round the mantissa to 10 bits (ties to even);
		// a carry correctly bumps the exponent, up to Inf.
		a += 0xfff + (a>>13)&1
		return sign | uint16((a-0x38000000)>>13)
	}
	e := int32(b>>23) & 0xff
	m := b & 0x7fffff
	if e == 0xff { // Inf or NaN
		if m != 0 {
			return sign | 0x7e00 | uint16(m>>13)
		}
		return sign | 0x7c00
	}
	e -= 127 - 15
	if e >= 0x1f {
		return sign | 0x7c00
	}
	if e <= 0 {
		if e < -10 {
			return sign // rounds to zero
		}
		m |= 0x800000
		shift := uint32(14 - e)
		half := uint32(1) << (shift - 1)
		rest := m & (1<<shift - 1)
		r := m >> shift
		if rest > half || (rest == half && r&1 == 1) {
			r++
		}
		return sign | uint16(r)
	}
	r := uint32(e)<<10 | m>>13
	rest := m & 0x1fff
	if rest > 0x1000 || (rest == 0x1000 && r&1 == 1) {
		r++ // may carry into the exponent, which is correct (up to Inf)
	}
	return sign | uint16(r)
}

// bf16ToF32 converts a bfloat16 to float32 exactly.
func bf16ToF32(h uint16) float32 { return math.Float32frombits(uint32(h) << 16) }

// f32ToBF16 rounds a float32 to bfloat16 with round-to-nearest-even, as ggml's
// GGML_FP32_TO_BF16 does (NaNs are kept quiet).
func f32ToBF16(f float32) uint16 {
	u := math.Float32bits(f)
	if u&0x7fffffff > 0x7f800000 {
		return uint16(u>>16) | 64
	}
	u += 0x7fff + (u>>16)&1
	return uint16(u >> 16)
}

// roundF16 returns f rounded to the nearest binary16 value, as float32.
func roundF16(f float32) float32 { return f16ToF32(f32ToF16(f)) }

// roundBF16 returns f rounded to the nearest bfloat16 value, as float32.
func roundBF16(f float32) float32 { return bf16ToF32(f32ToBF16(f)) }
