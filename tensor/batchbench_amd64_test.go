//go:build goexperiment.simd && amd64

package tensor

import (
	"fmt"
	"math/rand/v2"
	"simd/archsimd"
	"testing"

	"github.com/stepflash/stepflash/gguf"
)

func batchKernels(b *testing.B) {
	if !hasSIMD || !archsimd.X86.AVX512() {
		b.Skip("the batch kernels need AVX-512")
	}
	const rows, cols = 1024, 1024
	type path struct {
		name string
		run  func(w []byte, a *act, n int, out []float32)
	}
	for _, typ := range []gguf.Type{gguf.TypeQ4_K, gguf.TypeQ6_K} {
		rb := cols / qkK * typ.BlockBytes()
		paths := []path{
			{"rows", func(w []byte, a *act, n int, out []float32) {
				if typ == gguf.TypeQ4_K {
					dot4Rows(dot4Q4_KAVX512, dot8Q4_KAVX512, w, rb, rows, a, n, out, rows)
				} else {
					dot4Rows(dot4Q6_KAVX512, dot8Q6_KAVX512, w, rb, rows, a, n, out, rows)
				}
			}},
			{"tiled", func(w []byte, a *act, n int, out []float32) {
				if typ == gguf.TypeQ4_K {
					mmQ4_KTiled(w, rows, a, n, out, rows)
				} else {
					mmQ6_KTiled(w, rows, a, n, out, rows)
				}
			}},
		}
		for _, n := range []int{16, 24, 32, 48, 64} {
			for _, p := range paths {
				b.Run(fmt.Sprintf("%v/%s/%d", typ, p.name, n), func(b *testing.B) {
					rng := rand.New(rand.NewPCG(1, 2))
					m := randMatrix(rng, typ, rows, cols)
					x := randFloats(rng, n*cols)
					var a act
					a.prepare(vecDotKind(typ), cols, n)
					a.quantize(x, 0, n*cols)
					a.transposeScales(n)
					a.expandPairScales(n)
					out := make([]float32, n*rows)
					for b.Loop() {
						p.run(m.Data, &a, n, out)
					}
					b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(rows*cols/qkK*n), "ns/blk")
				})
			}
		}
	}
}

// BenchmarkFloatTile measures mmF32Rows, the float batches' register tile,
// on one block of rows as mmConverted hands it over (64 Ki floats, in the L2
// cache) by 512 vectors, at row lengths 1,024, 2,048 and 3,072 (bench-dense's
// q/k/v/gate/up, attention output and down projections): GMAC/s on one core.
//
//	GOEXPERIMENT=simd go test ./tensor -run XXX -bench FloatTile -benchtime 30x
func BenchmarkFloatTile(b *testing.B) {
	if !useF32Tile {
		b.Skip("the float tile needs AVX-512")
	}
	for _, n := range []int{1024, 2048, 3072} {
		b.Run(fmt.Sprintf("n%d", n), func(b *testing.B) {
			const nv = 512
			rng := rand.New(rand.NewPCG(1, 2))
			nr := convBlockFloats / n
			rows, xs := randFloats(rng, nr*n), randFloats(rng, nv*n)
			out := make([]float32, nv*nr)
			for b.Loop() {
				mmF32Rows(rows, nr, xs, nv, n, out, nr)
			}
			b.ReportMetric(float64(nr*n*nv)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GMAC/s")
		})
	}
}
