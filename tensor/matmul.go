package tensor

import (
	"fmt"
	"sync"
)

var actPool = sync.Pool{New: func() any { return new(act) }}

// minParallelWork is the number of multiply-adds below which MatMul runs on
// the calling goroutine only (waking the workers costs a few microseconds).
const minParallelWork = 1 << 15

// rowBlockBytes is the size of the block of weight rows that batched MatMul
// multiplies with every input vector while it is hot in the L1/L2 cache (a
// variable so tests can shrink it).
var rowBlockBytes = 32 << 10

// MatMul computes out[j*m.Rows + r] = dot(row r of m, x[j*m.Cols : (j+1)*m.Cols])
// for j in [0,n). n == 1 is mat-vec (decode); n > 1 is mat-mat (prefill),
// where each weight row is reused across the inputs while it is in cache.
// The activations are first converted to the weight type's vec_dot_type, as
// llama.cpp does. p may be nil (single-threaded).
func MatMul(p *Pool, m Matrix, x []float32, n int, out []float32) {
	if n <= 0 {
		return
	}
	if len(x) < n*m.Cols || len(out) < n*m.Rows {
		panic(fmt.Sprintf("tensor: MatMul %v %dx%d by %d vectors: x has %d elements, out %d", m.Type, m.Rows, m.Cols, n, len(x), len(out)))
	}
	dot := kernels[m.Type]
	if dot == nil {
		panic(fmt.Sprintf("tensor: MatMul: unsupported weight type %v", m.Type))
	}
	rb := m.RowBytes()
	if len(m.Data) < m.Rows*rb {
		panic("tensor: MatMul: matrix data too short")
	}
	a := actPool.Get().(*act)
	defer actPool.Put(a)
	a.prepare(vecDotKind(m.Type), m.Cols, n)
	parallel := p.Threads() > 1 && m.Rows*m.Cols*n >= minParallelWork

	// Quantize the activations (in parallel for large batches).
	if parallel && n >= 4 {
		p.For(n, func(lo, hi int) { a.quantize(x, lo*m.Cols, hi*m.Cols) })
	} else {
		a.quantize(x, 0, n*m.Cols)
	}
	a.transposeScales(n)
	dot4 := kernels4[m.Type]
	dotN := kernelsN[m.Type]
	if n < 4 {
		dotN = nil
	}
	if dotN != nil {
		a.expandPairScales(n)
	}

	rows, cols, data := m.Rows, m.Cols, m.Data
	rblk := max(1, rowBlockBytes/max(rb, 1))
	work := func(lo, hi int) {
		if n == 1 {
			dot(data[lo*rb:hi*rb], hi-lo, a, 0, out[lo:hi])
			return
		}
		// Blocks of rows stay in cache while all n vectors pass over them.
		for r0 := lo; r0 < hi; r0 += rblk {
			r1 := min(r0+rblk, hi)
			w := data[r0*rb : r1*rb]
			j := 0
			if dotN != nil {
				j = n &^ 3
				dotN(w, r1-r0, a, j, out[r0:], rows)
			}
			if dot4 != nil {
				for ; j+4 <= n; j += 4 {
					dot4(w, r1-r0, a, j, out[j*rows+r0:], rows)
				}
			}
			for ; j < n; j++ {
				dot(w, r1-r0, a, j*cols, out[j*rows+r0:j*rows+r1])
			}
		}
	}
	if !parallel {
		work(0, rows)
		return
	}
	p.For(rows, work)
}
