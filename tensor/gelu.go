package tensor

import (
	"math"
	"sync"
)

// ggml's CPU backend evaluates GELU, GEGLU and quick GELU by looking up
// the fp16 value of the input in a table of fp16 results (GGML_GELU_FP16,
// GGML_GELU_QUICK_FP16); the tables here are built the same way, so that
// models and encoders using them match llama.cpp to float32 rounding
// (exact tanh-GELU differs by up to the fp16 resolution of the result).
var (
	actOnce    sync.Once
	geluTable  []float32 // indexed by the fp16 bits of the input
	quickTable []float32
)

func actTables() {
	actOnce.Do(func() {
		geluTable = make([]float32, 1<<16)
		quickTable = make([]float32, 1<<16)
		for i := range geluTable {
			x := f16ToF32(uint16(i))
			geluTable[i] = f16ToF32(f32ToF16(geluF32(x)))
			quickTable[i] = f16ToF32(f32ToF16(quickGELUF32(x)))
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

// GELU applies tanh-approximated GELU in place as ggml's CPU backend does:
// inputs at or below -10 give 0, at or above 10 themselves, the others the
// fp16 table entry of their fp16 rounding.
func GELU(x []float32) {
	actTables()
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

// GeGLU sets gate = GELU(gate) ⊙ up, as ggml_vec_geglu_f32 (the gated
// feed-forward of Gemma): the table GELU of GELU, times up in float32.
func GeGLU(gate, up []float32) {
	checkLen("GeGLU", len(gate), len(up))
	actTables()
	t := geluTable
	for i, v := range gate {
		switch {
		case v <= -10:
			gate[i] = 0
		case v >= 10:
			gate[i] = v * up[i]
		default:
			gate[i] = t[f32ToF16(v)] * up[i]
		}
	}
}

// QuickGELU applies x·sigmoid(1.702x) in place through ggml's fp16 table.
func QuickGELU(x []float32) {
	actTables()
	t := quickTable
	for i, v := range x {
		x[i] = t[f32ToF16(v)]
	}
}
