//go:build !(goexperiment.simd && amd64)

package tensor

import "github.com/stepflash/stepflash/gguf"

// Pure-Go builds have no SIMD kernel variants.

type kernelVariant struct {
	typ   gguf.Type
	name  string
	ok    bool
	rows  rowsFunc
	rows4 rows4Func
	rowsN rowsNFunc
}

var kernelVariants []kernelVariant
