package tensor

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/stepflash/stepflash/gguf"
)

var benchShapes = [][2]int{{1024, 1024}, {3072, 1024}}

// benchMatrices returns copies of a random rows x cols matrix totalling at
// least 128 MiB, so a benchmark cycling through them reads from memory as
// decoding does, not from the last-level cache.
func benchMatrices(typ gguf.Type, rows, cols int) []Matrix {
	rng := rand.New(rand.NewPCG(1, uint64(typ)))
	m := randMatrix(rng, typ, rows, cols)
	copies := max(1, (128<<20)/len(m.Data))
	ms := []Matrix{m}
	for i := 1; i < copies; i++ {
		c := m
		c.Data = append([]byte(nil), m.Data...)
		ms = append(ms, c)
	}
	return ms
}

func benchMatMul(b *testing.B, n int) {
	for _, typ := range allTypes {
		for _, sh := range benchShapes {
			ms := benchMatrices(typ, sh[0], sh[1])
			x := randFloats(rand.New(rand.NewPCG(3, 4)), n*sh[1])
			out := make([]float32, n*sh[0])
			for _, threads := range []int{1, 2} {
				b.Run(fmt.Sprintf("%v/%dx%d/t%d", typ, sh[0], sh[1], threads), func(b *testing.B) {
					p := NewPool(threads)
					defer p.Close()
					b.SetBytes(int64(len(ms[0].Data)))
					i := 0
					for b.Loop() {
						MatMul(p, ms[i%len(ms)], x, n, out)
						i++
					}
				})
			}
		}
	}
}

// BenchmarkMatVec measures decode-style products (one input vector); the
// MB/s column is weight bytes streamed per second.
func BenchmarkMatVec(b *testing.B) { benchMatMul(b, 1) }

// BenchmarkMatMul measures prefill-style products of 64 input vectors; MB/s
// counts each weight byte once per product.
func BenchmarkMatMul(b *testing.B) { benchMatMul(b, 64) }

func BenchmarkDot(b *testing.B) {
	rng := rand.New(rand.NewPCG(5, 6))
	x, y := randFloats(rng, 4096), randFloats(rng, 4096)
	b.SetBytes(2 * 4 * 4096)
	for b.Loop() {
		Dot(x, y)
	}
}

func BenchmarkSoftmax(b *testing.B) {
	x := randFloats(rand.New(rand.NewPCG(7, 8)), 4096)
	y := make([]float32, len(x))
	b.SetBytes(4 * 4096)
	for b.Loop() {
		copy(y, x)
		Softmax(y)
	}
}

func BenchmarkSwiGLU(b *testing.B) {
	rng := rand.New(rand.NewPCG(9, 10))
	g, u := randFloats(rng, 3072), randFloats(rng, 3072)
	y := make([]float32, len(g))
	b.SetBytes(4 * 3072)
	for b.Loop() {
		copy(y, g)
		SwiGLU(y, u)
	}
}

func BenchmarkPoolFor(b *testing.B) {
	p := NewPool(2)
	defer p.Close()
	for b.Loop() {
		p.For(2, func(lo, hi int) {})
	}
}

// BenchmarkKernels measures every SIMD kernel variant (and the pure-Go
// kernel) on a weight block that stays in the L2 cache: the compute cost,
// reported per weight block and input vector (ns/blk).
func BenchmarkKernels(b *testing.B) {
	const rows, cols = 128, 1024
	type variant struct {
		name string
		v    kernelVariant
	}
	var vs []variant
	for _, v := range kernelVariants {
		if v.ok {
			vs = append(vs, variant{v.typ.String() + "/" + v.name, v})
		}
	}
	for _, typ := range []gguf.Type{gguf.TypeQ4_K, gguf.TypeQ6_K, gguf.TypeQ8_0} {
		vs = append(vs, variant{typ.String() + "/generic", kernelVariant{typ: typ, rows: rowsOf(genericKernels[typ])}})
	}
	for _, v := range vs {
		b.Run(v.name, func(b *testing.B) {
			nvec := 16
			if v.v.rowsN != nil {
				nvec = 256 // the batched kernels amortize work over the batch
			}
			rng := rand.New(rand.NewPCG(1, 2))
			m := randMatrix(rng, v.v.typ, rows, cols)
			x := randFloats(rng, nvec*cols)
			var a act
			a.prepare(vecDotKind(v.v.typ), cols, nvec)
			a.quantize(x, 0, nvec*cols)
			a.transposeScales(nvec)
			a.expandPairScales(nvec)
			out := make([]float32, nvec*rows)
			for b.Loop() {
				switch {
				case v.v.rows != nil:
					for j := 0; j < nvec; j++ {
						v.v.rows(m.Data, rows, &a, j*cols, out[j*rows:(j+1)*rows])
					}
				case v.v.rows4 != nil:
					for j := 0; j < nvec; j += 4 {
						v.v.rows4(m.Data, rows, &a, j, out[j*rows:], rows)
					}
				default:
					v.v.rowsN(m.Data, rows, &a, nvec, out, rows)
				}
			}
			blocks := float64(rows * cols / v.v.typ.BlockSize() * nvec)
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/blocks, "ns/blk")
		})
	}
}

// BenchmarkExperts measures one MoE expert's decode step as the model runs
// it: gate and up (768x2048) through MatMulMany, then down (2048x768), on
// weights in the cache: the per-call costs around the kernels.
func BenchmarkExperts(b *testing.B) {
	for _, typ := range []gguf.Type{gguf.TypeQ4_K, gguf.TypeQ8_0} {
		for _, threads := range []int{1, 2} {
			b.Run(fmt.Sprintf("%v/t%d", typ, threads), func(b *testing.B) {
				rng := rand.New(rand.NewPCG(7, 9))
				gate, up := randMatrix(rng, typ, 768, 2048), randMatrix(rng, typ, 768, 2048)
				down := randMatrix(rng, typ, 2048, 768)
				x := randFloats(rng, 2048)
				g, u, o := make([]float32, 768), make([]float32, 768), make([]float32, 2048)
				p := NewPool(threads)
				defer p.Close()
				b.ReportAllocs()
				for b.Loop() {
					MatMulMany(p, []Matrix{gate, up}, x, 1, [][]float32{g, u})
					MatMul(p, down, g, 1, o)
				}
			})
		}
	}
}

// BenchmarkAttentionRows compares one query's attention over 512 keys of
// 128 (KV rows 1024 apart) done with Dot/Axpy per key and with
// DotRows/AxpyRows.
func BenchmarkAttentionRows(b *testing.B) {
	const keys, hd, stride = 512, 128, 1024
	rng := rand.New(rand.NewPCG(1, 1))
	q, kv := randFloats(rng, hd), randFloats(rng, keys*stride)
	s, out := make([]float32, keys), make([]float32, hd)
	b.Run("per-key", func(b *testing.B) {
		for b.Loop() {
			for j := range s {
				s[j] = Dot(q, kv[j*stride:j*stride+hd])
			}
			for j, a := range s {
				Axpy(a*1e-3, kv[j*stride:j*stride+hd], out)
			}
		}
	})
	b.Run("rows", func(b *testing.B) {
		for b.Loop() {
			DotRows(q, kv, stride, s)
			for j := range s {
				s[j] *= 1e-3
			}
			AxpyRows(s, kv, stride, out)
		}
	})
}

// BenchmarkBatchKernels compares, for the K-quants, the repacking tile
// kernels with the eight- and four-vector kernels (dot4Rows) at the batch
// sizes around tileMinVecsQ4K/Q6K, on 1024×1024 weights in cache: ns per
// block and vector.
func BenchmarkBatchKernels(b *testing.B) {
	batchKernels(b)
}
