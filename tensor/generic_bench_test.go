package tensor

import (
	"math/rand/v2"
	"testing"
)

// BenchmarkGeneric measures the pure-Go kernels, which are all a build
// without GOEXPERIMENT=simd has (and the fallback of a CPU without AVX2):
// every weight type's dot product over rows that stay in the L2 cache, for
// one activation vector as in decoding (ns/256el: per 256 weights), and the
// vector ops on attention-sized rows.
func BenchmarkGeneric(b *testing.B) {
	const rows, cols = 64, 2048
	for _, typ := range allTypes {
		b.Run("dot/"+typ.String(), func(b *testing.B) {
			rng := rand.New(rand.NewPCG(1, 2))
			m := randMatrix(rng, typ, rows, cols)
			x := randFloats(rng, cols)
			var a act
			a.prepare(vecDotKind(typ), cols, 1)
			a.quantize(x, 0, cols)
			dot := genericKernels[typ]
			rb := m.RowBytes()
			out := make([]float32, rows)
			for b.Loop() {
				for r := range out {
					out[r] = dot(m.Data[r*rb:(r+1)*rb], &a, 0)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(rows*cols/256), "ns/256el")
		})
	}
	for _, typ := range allTypes {
		b.Run("dequant/"+typ.String(), func(b *testing.B) {
			rng := rand.New(rand.NewPCG(3, 4))
			w := randRow(rng, typ, cols)
			dst := make([]float32, cols)
			for b.Loop() {
				if err := Dequantize(typ, w, dst); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(cols/256), "ns/256el")
		})
	}
	for _, kind := range []actKind{actQ8_0, actQ8_K} {
		name := map[actKind]string{actQ8_0: "Q8_0", actQ8_K: "Q8_K"}[kind]
		b.Run("quantize/"+name, func(b *testing.B) {
			x := randFloats(rand.New(rand.NewPCG(5, 6)), cols)
			var a act
			a.prepare(kind, cols, 1)
			for b.Loop() {
				a.quantize(x, 0, cols)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(cols/256), "ns/256el")
		})
	}
	const hd, keys = 128, 256
	rng := rand.New(rand.NewPCG(7, 8))
	q, k := randFloats(rng, hd), randFloats(rng, keys*hd)
	s := make([]float32, keys)
	y := make([]float32, hd)
	b.Run("dot32/128", func(b *testing.B) {
		for b.Loop() {
			for j := range s {
				s[j] = dotGeneric32(q, k[j*hd:(j+1)*hd])
			}
		}
	})
	b.Run("axpy/128", func(b *testing.B) {
		for b.Loop() {
			for j := range s {
				axpyGeneric(1e-3, k[j*hd:(j+1)*hd], y)
			}
		}
	})
	big := randFloats(rng, 4096)
	tmp := make([]float32, len(big))
	b.Run("exp/4096", func(b *testing.B) {
		for b.Loop() {
			copy(tmp, big)
			expGeneric(tmp)
		}
	})
	b.Run("swiglu/4096", func(b *testing.B) {
		for b.Loop() {
			copy(tmp, big)
			swigluGeneric(tmp, big)
		}
	})
	b.Run("mulScale/4096", func(b *testing.B) {
		for b.Loop() {
			mulScaleGeneric(tmp, big, big, 0.5)
		}
	})
}
