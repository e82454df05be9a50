package vision

import "math"

// silu applies x*sigmoid(x) in place. (GELU and quick GELU are the tensor
// package's, which look them up in ggml's fp16 tables.)
func silu(x []float32) {
	for i, v := range x {
		x[i] = v / (1 + float32(math.Exp(float64(-v))))
	}
}
