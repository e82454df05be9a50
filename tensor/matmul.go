package tensor

import (
	"fmt"
	"sync"
)

var actPool = sync.Pool{New: func() any { return new(act) }}

// minParallelWork is the number of multiply-adds below which MatMul runs on
// the calling goroutine only (waking the workers costs a few microseconds).
const minParallelWork = 1 << 15

// colTile is how many activation vectors a weight row is multiplied with while
// it is hot in cache.
const colTile = 16

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

	rows, cols, data := m.Rows, m.Cols, m.Data
	work := func(lo, hi int) {
		if n == 1 {
			for r := lo; r < hi; r++ {
				out[r] = dot(data[r*rb:(r+1)*rb], a, 0)
			}
			return
		}
		var o4 [4]float32
		for c0 := 0; c0 < n; c0 += colTile {
			c1 := min(c0+colTile, n)
			for r := lo; r < hi; r++ {
				w := data[r*rb : (r+1)*rb]
				j := c0
				if dot4 != nil {
					for ; j+4 <= c1; j += 4 {
						dot4(w, a, j, &o4)
						out[j*rows+r] = o4[0]
						out[(j+1)*rows+r] = o4[1]
						out[(j+2)*rows+r] = o4[2]
						out[(j+3)*rows+r] = o4[3]
					}
				}
				for ; j < c1; j++ {
					out[j*rows+r] = dot(w, a, j*cols)
				}
			}
		}
	}
	if !parallel {
		work(0, rows)
		return
	}
	p.For(rows, work)
}
