package tensor_test

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/stepflash/stepflash/tensor"
)

// BenchmarkAttnKernels times the tiled attention kernels alone on one
// thread: a tile of M queries against nk keys of 128 dimensions (scores),
// and the same tile's weights times nk value rows (PV), with everything in
// the caches, as attention at depth runs them per work item.
func BenchmarkAttnKernels(b *testing.B) {
	const d = 128
	rnd := rand.New(rand.NewPCG(1, 2))
	for _, tc := range []struct{ M, nk int }{{16, 128}, {2, 128}} {
		q := make([]float32, tc.M*d)
		k := make([]float32, tc.nk*d)
		s := make([]float32, tc.M*tc.nk)
		out := make([]float32, tc.M*d)
		cnt := make([]int, tc.M)
		for i := range q {
			q[i] = rnd.Float32() - 0.5
		}
		for i := range k {
			k[i] = rnd.Float32() - 0.5
		}
		for i := range s {
			s[i] = rnd.Float32()
		}
		for i := range cnt {
			cnt[i] = tc.nk
		}
		flops := 2 * float64(tc.M*tc.nk*d)
		b.Run(fmt.Sprintf("scores/M%d/nk%d", tc.M, tc.nk), func(b *testing.B) {
			for b.Loop() {
				tensor.AttnScores(q, tc.M, d, k, tc.nk, s, tc.nk)
			}
			b.ReportMetric(flops*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
		})
		b.Run(fmt.Sprintf("pv/M%d/nk%d", tc.M, tc.nk), func(b *testing.B) {
			for b.Loop() {
				tensor.AttnPV(s, tc.nk, cnt, k, d, out)
			}
			b.ReportMetric(flops*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
		})
	}
}
