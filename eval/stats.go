package eval

import (
	"math"
	"math/rand/v2"
	"slices"
)

func mean(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := 0.0
	for _, x := range xs {
		s += x
	}
	return s / float64(len(xs))
}

func minMax(xs []float64) (lo, hi float64) {
	if len(xs) == 0 {
		return 0, 0
	}
	return slices.Min(xs), slices.Max(xs)
}

// BootstrapResamples is how many resamples the paired bootstrap draws.
const BootstrapResamples = 10000

// PairedBootstrap is the 95% percentile interval of the mean of d (one
// value per task: the task's difference averaged over passes) under
// resampling tasks with replacement. The resampling is seeded, so the
// same data give the same interval.
func PairedBootstrap(d []float64) (lo, hi float64) {
	n := len(d)
	if n == 0 {
		return 0, 0
	}
	r := rand.New(rand.NewPCG(1, 2))
	means := make([]float64, BootstrapResamples)
	for i := range means {
		s := 0.0
		for range n {
			s += d[r.IntN(n)]
		}
		means[i] = s / float64(n)
	}
	slices.Sort(means)
	return quantile(means, 0.025), quantile(means, 0.975)
}

// quantile of sorted xs, linear between order statistics.
func quantile(xs []float64, q float64) float64 {
	if len(xs) == 1 {
		return xs[0]
	}
	pos := q * float64(len(xs)-1)
	i := int(math.Floor(pos))
	if i >= len(xs)-1 {
		return xs[len(xs)-1]
	}
	f := pos - float64(i)
	return xs[i]*(1-f) + xs[i+1]*f
}
