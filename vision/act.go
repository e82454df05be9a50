package vision

import (
	"encoding/binary"
	"math"
	"sync"

	"github.com/stepflash/stepflash/gguf"
	"github.com/stepflash/stepflash/tensor"
)

// ggml's CPU backend evaluates GELU and quick GELU by looking up the fp16
// value of the input in a table of fp16 results (GGML_GELU_FP16,
// GGML_GELU_QUICK_FP16); the tables here are built the same way.
var (
	actTablesOnce sync.Once
	geluTable     []float32 // indexed by the fp16 bits of the input
	quickTable    []float32
)

func actTables() {
	actTablesOnce.Do(func() {
		// The fp16 values of every bit pattern, converted by the tensor
		// package's F16 dequantization.
		raw := make([]byte, 2<<16)
		for i := 0; i < 1<<16; i++ {
			binary.LittleEndian.PutUint16(raw[2*i:], uint16(i))
		}
		f16 := make([]float32, 1<<16)
		if err := tensor.Dequantize(gguf.TypeF16, raw, f16); err != nil {
			panic("vision: fp16 table: " + err.Error())
		}
		geluTable = make([]float32, 1<<16)
		quickTable = make([]float32, 1<<16)
		for i, x := range f16 {
			geluTable[i] = f16[f32ToF16(geluF32(x))]
			quickTable[i] = f16[f32ToF16(quickGELUF32(x))]
		}
	})
}

// geluF32 is ggml_gelu_f32: 0.5x(1 + tanh(sqrt(2/pi) x (1 + 0.044715 x²))),
// in float32 with C's left-to-right order.
func geluF32(x float32) float32 {
	const sqrt2OverPi = float32(0.79788456080286535587989211986876)
	const coefA = float32(0.044715)
	inner := float32(sqrt2OverPi*x) * (1 + float32(float32(coefA*x)*x))
	t := float32(math.Tanh(float64(inner)))
	return float32(float32(0.5)*x) * (1 + t)
}

// quickGELUF32 is ggml_gelu_quick_f32: x / (1 + e^(-1.702x)).
func quickGELUF32(x float32) float32 {
	return x * float32(1/(1+float32(math.Exp(float64(float32(-1.702)*x)))))
}

// gelu applies ggml's table GELU in place: inputs at or below -10 give 0,
// at or above 10 themselves, the others the table entry of their fp16
// rounding.
func gelu(x []float32) {
	t := geluTable
	for i, v := range x {
		switch {
		case v <= -10:
			x[i] = 0
		case v >= 10:
		default:
			x[i] = t[f32ToF16(v)]
		}
	}
}

// quickGELU applies ggml's table quick GELU in place.
func quickGELU(x []float32) {
	t := quickTable
	for i, v := range x {
		x[i] = t[f32ToF16(v)]
	}
}

// silu applies x*sigmoid(x) in place.
func silu(x []float32) {
	for i, v := range x {
		x[i] = v / (1 + float32(math.Exp(float64(-v))))
	}
}

// f32ToF16 rounds a float32 to the nearest binary16 (ties to even), as
// VCVTPS2PH and ggml's GGML_FP32_TO_FP16 do, and returns its bits. (The
// tensor package has the same conversion unexported.)
func f32ToF16(f float32) uint16 {
	b := math.Float32bits(f)
	sign := uint16(b>>16) & 0x8000
	a := b & 0x7fffffff
	switch {
	case a >= 0x7f800000: // Inf or NaN
		if a > 0x7f800000 {
			return sign | 0x7e00 | uint16((a&0x7fffff)>>13)
		}
		return sign | 0x7c00
	case a >= 0x477ff000: // rounds to at least 65520: Inf
		return sign | 0x7c00
	case a >= 0x38800000: // normal half
		a += 0xfff + (a>>13)&1
		return sign | uint16((a-0x38000000)>>13)
	case a < 0x33000000: // below half the smallest subnormal: zero
		return sign
	}
	// Subnormal half: shift the full mantissa, round half to even.
	e := int(a >> 23)
	m := a&0x7fffff | 0x800000
	shift := uint(126 - e) // 14 - (e - 127 + 15) + ... places m at 2^-24 units
	r := m >> shift
	rest := m & (1<<shift - 1)
	half := uint32(1) << (shift - 1)
	if rest > half || (rest == half && r&1 == 1) {
		r++
	}
	return sign | uint16(r)
}
