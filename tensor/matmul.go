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
	MatMulMany(p, []Matrix{m}, x, n, [][]float32{out})
}

// MatMulMany computes MatMul(p, ms[i], x, n, outs[i]) for every i; the
// matrices share the input x (so all have the same Cols), e.g. attention's
// q, k and v projections or a feed-forward gate and up. The input is
// converted once per activation format and all rows are spread over the pool
// in one pass, which saves wake-ups in decoding. Results are identical to
// separate MatMul calls.
func MatMulMany(p *Pool, ms []Matrix, x []float32, n int, outs [][]float32) {
	if n <= 0 || len(ms) == 0 {
		return
	}
	if len(outs) != len(ms) {
		panic(fmt.Sprintf("tensor: MatMulMany: %d matrices, %d outputs", len(ms), len(outs)))
	}
	cols := ms[0].Cols
	jobs := make([]mmJob, len(ms))
	var acts [actQ8_K + 1]*act
	totalRows, work := 0, 0
	for i, m := range ms {
		if m.Cols != cols {
			panic(fmt.Sprintf("tensor: MatMulMany: matrix %d has %d columns, want %d", i, m.Cols, cols))
		}
		if len(x) < n*m.Cols || len(outs[i]) < n*m.Rows {
			panic(fmt.Sprintf("tensor: MatMul %v %dx%d by %d vectors: x has %d elements, out %d", m.Type, m.Rows, m.Cols, n, len(x), len(outs[i])))
		}
		dot := kernels[m.Type]
		if dot == nil {
			panic(fmt.Sprintf("tensor: MatMul: unsupported weight type %v", m.Type))
		}
		rb := m.RowBytes()
		if len(m.Data) < m.Rows*rb {
			panic("tensor: MatMul: matrix data too short")
		}
		kind := vecDotKind(m.Type)
		if acts[kind] == nil {
			acts[kind] = actPool.Get().(*act)
			acts[kind].prepare(kind, cols, n)
		}
		jobs[i] = mmJob{m: m, rb: rb, a: acts[kind], out: outs[i], row0: totalRows, dot: dot, dot4: kernels4[m.Type]}
		if n >= 4 {
			jobs[i].dotN = kernelsN[m.Type]
		}
		totalRows += m.Rows
		work += m.Rows * m.Cols * n
	}
	parallel := p.Threads() > 1 && work >= minParallelWork
	for _, a := range acts {
		if a == nil {
			continue
		}
		// Quantize the activations (in parallel for large batches).
		if parallel && n >= 4 {
			p.For(n, func(lo, hi int) { a.quantize(x, lo*cols, hi*cols) })
		} else {
			a.quantize(x, 0, n*cols)
		}
		a.transposeScales(n)
		a.expandPairScales(n)
	}
	run := func(lo, hi int) {
		for i := range jobs {
			j := &jobs[i]
			if l, h := max(lo, j.row0), min(hi, j.row0+j.m.Rows); l < h {
				j.rows(l-j.row0, h-j.row0, n)
			}
		}
	}
	if parallel {
		p.For(totalRows, run)
	} else {
		run(0, totalRows)
	}
	for _, a := range acts {
		if a != nil {
			actPool.Put(a)
		}
	}
}

// mmJob is one matrix of a MatMulMany call.
type mmJob struct {
	m    Matrix
	rb   int
	a    *act
	out  []float32
	row0 int // first row in the combined row range
	dot  rowsFunc
	dot4 rows4Func
	dotN rowsNFunc
}

// rows computes output rows [lo, hi) of the job for all n vectors.
func (j *mmJob) rows(lo, hi, n int) {
	rows, cols, data, rb, a, out := j.m.Rows, j.m.Cols, j.m.Data, j.rb, j.a, j.out
	if n == 1 {
		j.dot(data[lo*rb:hi*rb], hi-lo, a, 0, out[lo:hi])
		return
	}
	// Blocks of rows stay in cache while all n vectors pass over them. The
	// whole-batch kernels block for the cache themselves and want many rows
	// (whole groups of 16 for the repacking ones).
	rblk := max(1, rowBlockBytes/max(rb, 1))
	if j.dotN != nil && n >= 4 {
		rblk = hi - lo
	}
	for r0 := lo; r0 < hi; r0 += rblk {
		r1 := min(r0+rblk, hi)
		w := data[r0*rb : r1*rb]
		c := 0
		if j.dotN != nil {
			c = n &^ 3
			j.dotN(w, r1-r0, a, c, out[r0:], rows)
		}
		if j.dot4 != nil {
			for ; c+4 <= n; c += 4 {
				j.dot4(w, r1-r0, a, c, out[c*rows+r0:], rows)
			}
		}
		for ; c < n; c++ {
			j.dot(w, r1-r0, a, c*cols, out[c*rows+r0:c*rows+r1])
		}
	}
}
