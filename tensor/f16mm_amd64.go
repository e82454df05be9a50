//go:build goexperiment.simd && amd64

package tensor

import (
	"sync"
	"unsafe"
)

// F16 weights on CPUs with F16C: rows are converted to float32 with
// VCVTPH2PS (cvtF16x8, exact) and multiplied by dotF32Ptr, whose lanes and
// order are dotF16SIMD's (and dotF16Generic's: 32 lanes, finishAcc4, the
// tail in order), so the results are bit-identical. dotF16SIMD converts in
// archsimd code (about ten operations for eight values, where VCVTPH2PS
// takes one), and a batch converted every row once per vector: bench-dense
// F16 ran at 0.10× llama.cpp's prefill and 0.28× its decode (BENCHMARKS).

// f16BlockFloats is the size of the float32 block of converted rows that
// every vector of a batch passes over while it is in the L1/L2 cache.
const f16BlockFloats = 8192

var f16ScratchPool = sync.Pool{New: func() any { return new([]float32) }}

// dotF16C is dotF16SIMD with F16C conversion, one row at a time.
func dotF16C(w []byte, nrows int, a *act, e0 int, out []float32) {
	n := a.cols
	if n%8 != 0 {
		dotF16SIMD(w, nrows, a, e0, out)
		return
	}
	x := a.f[e0 : e0+n]
	w = w[:nrows*2*n]
	out = out[:nrows]
	sp := f16ScratchPool.Get().(*[]float32)
	buf := grow(*sp, n)
	for r := range out {
		cvtF16x8(&buf[0], &w[2*n*r], n)
		out[r] = dotF32Ptr(ptr(buf), ptr(x), buf, x, n)
	}
	*sp = buf
	f16ScratchPool.Put(sp)
}

// mmF16C multiplies nrows F16 rows with vectors 0..ncols-1 into
// out[j*ostride + r]: a block of rows is converted once for all vectors.
func mmF16C(w []byte, nrows int, a *act, ncols int, out []float32, ostride int) {
	n := a.cols
	if n%8 != 0 {
		for j := 0; j < ncols; j++ {
			dotF16SIMD(w, nrows, a, j*n, out[j*ostride:j*ostride+nrows])
		}
		return
	}
	w = w[:nrows*2*n]
	xs := a.f[:ncols*n]
	out = out[:(ncols-1)*ostride+nrows]
	rblk := max(1, f16BlockFloats/n)
	sp := f16ScratchPool.Get().(*[]float32)
	buf := grow(*sp, rblk*n)
	for r0 := 0; r0 < nrows; r0 += rblk {
		r1 := min(r0+rblk, nrows)
		cvtF16x8(&buf[0], &w[2*n*r0], (r1-r0)*n)
		for j := 0; j < ncols; j++ {
			x := xs[j*n : (j+1)*n]
			o := out[j*ostride+r0 : j*ostride+r1]
			for r := range o {
				row := buf[r*n : (r+1)*n]
				o[r] = dotF32Ptr(unsafe.Pointer(&row[0]), ptr(x), row, x, n)
			}
		}
	}
	*sp = buf
	f16ScratchPool.Put(sp)
}
