//go:build !(goexperiment.simd && amd64)

package tensor

import "github.com/stepflash/stepflash/gguf"

// Pure-Go builds have no SIMD kernel variants.

type kernelVariant struct {
	typ    gguf.Type
	name   string
	ok     bool
	rows   rowsFunc
	rows4  rows4Func
	rowsN  rowsNFunc
	approx bool
}

var kernelVariants []kernelVariant

type vecVariant struct {
	name     string
	ok       bool
	dot      func(a, b []float32) float32
	axpy     func(a float32, x, y []float32)
	dotRows  func(q, k []float32, stride int, out []float32)
	axpyRows func(a, x []float32, stride int, y []float32)
	subMax   func(x []float32)
	mulScale func(dst, x, w []float32, scale float32)
	sumWords func(b []byte) uint32
}

var vecVariants []vecVariant
