package model

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/stepflash/stepflash/gguf"
	"github.com/stepflash/stepflash/tensor"
)

// typedCache is a one-sequence model.Cache of any KV types, filled with
// random rows (for the attention benchmarks).
type typedCache struct {
	bs, heads, hd int
	kt, vt        gguf.Type
	k, v          [][]byte // [block]: one layer, reused for all
}

func (c *typedCache) BlockSize() int          { return c.bs }
func (c *typedCache) Types() (k, v gguf.Type) { return c.kt, c.vt }
func (c *typedCache) Block(_, _, pos int) (k, v []byte) {
	return c.k[pos/c.bs], c.v[pos/c.bs]
}

func newTypedCache(r *rand.Rand, kt, vt gguf.Type, heads, hd, positions int) *typedCache {
	c := &typedCache{bs: 32, heads: heads, hd: hd, kt: kt, vt: vt}
	row := make([]float32, hd)
	fill := func(t gguf.Type) []byte {
		rb := tensor.KVRowBytes(t, hd)
		b := make([]byte, heads*c.bs*rb)
		for i := 0; i < heads*c.bs; i++ {
			for j := range row {
				row[j] = float32(r.NormFloat64())
			}
			tensor.StoreKV(t, row, b[i*rb:(i+1)*rb])
		}
		return b
	}
	for p := 0; p < positions; p += c.bs {
		c.k = append(c.k, fill(kt))
		c.v = append(c.v, fill(vt))
	}
	return c
}

// BenchmarkAttend: one layer's attention (Qwen3-0.6B's 16 query heads over
// 8 KV heads of 128) for a prefill chunk or one decoding token at depth,
// without the projections; b.N layers.
func BenchmarkAttend(b *testing.B) {
	for _, tc := range []struct {
		kt       gguf.Type
		depth, n int
		threads  int
	}{
		{gguf.TypeF16, 1024, 64, 2},
		{gguf.TypeF16, 1024, 64, 1},
		{gguf.TypeF16, 1024, 1, 2},
		{gguf.TypeF16, 4096, 1, 2},
		{gguf.TypeF32, 1024, 64, 2},
		{gguf.TypeQ8_0, 1024, 64, 2},
	} {
		b.Run(fmt.Sprintf("%v/d%d/n%d/t%d", tc.kt, tc.depth, tc.n, tc.threads), func(b *testing.B) {
			cfg := &Config{NHead: 16, NHeadKV: 8, HeadDim: 128, HeadDimV: 128}
			rnd := rand.New(rand.NewPCG(1, 2))
			c := newTypedCache(rnd, tc.kt, tc.kt, cfg.NHeadKV, cfg.HeadDim, tc.depth+tc.n)
			pool := tensor.NewPool(tc.threads)
			defer pool.Close()
			r := &runner{cfg: cfg, pool: pool, n: tc.n}
			r.q = make([]float32, tc.n*cfg.NHead*cfg.HeadDim)
			for i := range r.q {
				r.q[i] = float32(rnd.NormFloat64())
			}
			r.att = make([]float32, tc.n*cfg.NHead*cfg.HeadDimV)
			batch := &Batch{Pos: make([]int, tc.n), Seq: make([]int, tc.n)}
			for i := range batch.Pos {
				batch.Pos[i] = tc.depth + i
			}
			b.ResetTimer()
			for b.Loop() {
				r.attend(0, c, batch)
			}
			flops := 4 * float64(cfg.NHead*cfg.HeadDim) * float64(tc.n) * float64(tc.depth+tc.n/2)
			b.ReportMetric(flops*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
		})
	}
}

// BenchmarkAttendLayers: one decoding token's attention over every layer
// of a Qwen3-0.6B-shaped model (28 layers, 8 KV heads of 128) with an F16
// cache 4,096 deep: 448 MiB of cached rows, more than the caches hold, so
// it measures how fast attention reads the cache from memory (GB/s); b.N
// tokens.
func BenchmarkAttendLayers(b *testing.B) {
	const layers, depth = 28, 4096
	cfg := &Config{NHead: 16, NHeadKV: 8, HeadDim: 128, HeadDimV: 128}
	rnd := rand.New(rand.NewPCG(1, 2))
	// Two blocks of random rows, copied into every layer's own blocks.
	src := newTypedCache(rnd, gguf.TypeF16, gguf.TypeF16, cfg.NHeadKV, cfg.HeadDim, 64)
	cs := make([]*typedCache, layers)
	for l := range cs {
		c := &typedCache{bs: src.bs, heads: src.heads, hd: src.hd, kt: src.kt, vt: src.vt}
		for p := 0; p <= depth; p += c.bs {
			c.k = append(c.k, append([]byte(nil), src.k[p/c.bs%2]...))
			c.v = append(c.v, append([]byte(nil), src.v[p/c.bs%2]...))
		}
		cs[l] = c
	}
	pool := tensor.NewPool(2)
	defer pool.Close()
	r := &runner{cfg: cfg, pool: pool, n: 1}
	r.q = make([]float32, cfg.NHead*cfg.HeadDim)
	for i := range r.q {
		r.q[i] = float32(rnd.NormFloat64())
	}
	r.att = make([]float32, cfg.NHead*cfg.HeadDimV)
	batch := &Batch{Pos: []int{depth}, Seq: []int{0}}
	b.ResetTimer()
	for b.Loop() {
		for l, c := range cs {
			r.attend(l, c, batch)
		}
	}
	bytes := float64(layers * (depth + 1) * cfg.NHeadKV * 2 * tensor.KVRowBytes(gguf.TypeF16, cfg.HeadDim))
	b.ReportMetric(bytes*float64(b.N)/b.Elapsed().Seconds()/1e9, "GB/s")
}
