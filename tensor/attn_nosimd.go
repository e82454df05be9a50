//go:build !(goexperiment.simd && amd64)

package tensor

// Pure-Go builds have no SIMD attention kernels.

type attnVariant struct {
	name   string
	ok     bool
	scores func(q []float32, M, d int, k []float32, nk int, s []float32, lds int)
	pv     func(p []float32, ldp int, cnt []int, v []float32, dv int, out []float32)
	cvtF16 func(h []byte, out []float32)
	// cvtF16Blocks, if set, replaces cvtF16BlocksImpl.
	cvtF16Blocks func(hs [][]byte, m int, out []float32)
}

var attnVariants []attnVariant
