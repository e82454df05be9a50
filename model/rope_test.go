package model

import (
	"math"
	"testing"
)

// ropeRunner is a runner with only what ropeTables reads.
func ropeRunner(cfg *Config, freqs []float32) *runner {
	return &runner{cfg: cfg, ropeFreq: freqs}
}

func tables(r *runner, pos ...int) (cos, sin []float32) {
	r.n = len(pos)
	r.ropeTables(&Batch{Pos: pos})
	return append([]float32(nil), r.cos...), append([]float32(nil), r.sin...)
}

func ropeConfig(t *testing.T, o RopeOptions) *Config {
	t.Helper()
	c := &Config{RopeDims: 64, RopeBase: 10000, NCtxTrain: 2048, RopeScale: 1, Rope: RopeScaling{Type: RopeScalingLinear, AttnFactor: 1}}
	if err := c.ApplyRope(o); err != nil {
		t.Fatal(err)
	}
	return c
}

// TestRopeLinearAndFreqs pins linear scaling and llama 3's rope_freqs
// exactly: halving every angle (a factor of 2, or every rope_freqs divisor
// 2) at position 2p gives the unscaled angles of position p, bit for bit
// (the angles are float32 products; scaling by 2 is exact).
func TestRopeLinearAndFreqs(t *testing.T) {
	plain := ropeRunner(ropeConfig(t, RopeOptions{}), nil)
	linear := ropeRunner(ropeConfig(t, RopeOptions{Type: "linear", Scale: 2}), nil)
	twos := make([]float32, 32)
	for i := range twos {
		twos[i] = 2
	}
	freqs := ropeRunner(ropeConfig(t, RopeOptions{}), twos)
	for _, p := range []int{1, 7, 300, 1999} {
		wc, ws := tables(plain, p)
		for name, r := range map[string]*runner{"linear factor 2": linear, "rope_freqs 2": freqs} {
			gc, gs := tables(r, 2*p)
			for i := range wc {
				if gc[i] != wc[i] || gs[i] != ws[i] {
					t.Fatalf("%s: position %d pair %d: (%v, %v), want position %d's (%v, %v)", name, 2*p, i, gc[i], gs[i], p, wc[i], ws[i])
				}
			}
		}
		if oc, _ := tables(plain, 2*p); oc[0] == wc[0] {
			t.Fatalf("position %d and %d have the same angle: the test proves nothing", p, 2*p)
		}
	}
	none := ropeRunner(ropeConfig(t, RopeOptions{Type: "none", Scale: 2}), nil)
	if gc, _ := tables(none, 40); gc[0] != func() float32 { c, _ := tables(plain, 40); return c[0] }() {
		t.Error("rope scaling none still scaled")
	}
}

// TestRopeYaRN checks YaRN's angles against its definition (ggml's
// rope_yarn): pairs below the correction range keep the unscaled angle
// (extrapolation), pairs above it take the scaled one (interpolation),
// pairs inside ramp linearly between the two, and the magnitude is
// 1 + 0.1 ln(factor).
func TestRopeYaRN(t *testing.T) {
	const factor, orig = 4, 1024
	c := ropeConfig(t, RopeOptions{Type: "yarn", Scale: factor, OrigCtx: orig})
	if c.ContextLimit() != factor*orig || c.Rope.ExtFactor != 1 || c.Rope.YarnAttn != 1 {
		t.Fatalf("limit %d, ext %v, attn %v", c.ContextLimit(), c.Rope.ExtFactor, c.Rope.YarnAttn)
	}
	low, high := yarnCorrDims(64, orig, 10000, 32, 1)
	// ggml_rope_yarn_corr_dim, in float64: n_dims ln(orig / (2π β)) / (2 ln base)
	dim := func(beta float64) float64 { return 64 * math.Log(orig/(beta*2*math.Pi)) / (2 * math.Log(10000)) }
	if low != float32(math.Floor(dim(32))) || high != float32(math.Ceil(dim(1))) || !(0 < low && low < high && high < 31) {
		t.Fatalf("correction dims %v..%v, want %v..%v inside the 32 pairs", low, high, math.Floor(dim(32)), math.Ceil(dim(1)))
	}
	r := ropeRunner(c, nil)
	const pos = 3000
	gc, gs := tables(r, pos)
	mscale := 1 + 0.1*math.Log(factor)
	for i := range 32 {
		theta := pos * math.Pow(10000, -2*float64(i)/64)
		mix := 1 - math.Min(1, math.Max(0, (float64(i)-float64(low))/float64(high-low)))
		want := theta/factor*(1-mix) + theta*mix
		switch {
		case float32(i) < low && mix != 1, float32(i) > high && mix != 0:
			t.Fatalf("pair %d: mix %v", i, mix)
		}
		// Angles of thousands of radians in float32 differ by ~1e-4 rad
		// from float64's; cos and sin by as much.
		if d := math.Abs(float64(gc[i]) - mscale*math.Cos(want)); d > 2e-3 {
			t.Errorf("pair %d: cos %v, want %v", i, gc[i], mscale*math.Cos(want))
		}
		if d := math.Abs(float64(gs[i]) - mscale*math.Sin(want)); d > 2e-3 {
			t.Errorf("pair %d: sin %v, want %v", i, gs[i], mscale*math.Sin(want))
		}
	}
}

func TestApplyRope(t *testing.T) {
	for _, tc := range []struct {
		name  string
		o     RopeOptions
		limit int
		scale float32
		err   bool
	}{
		{"none given", RopeOptions{}, 2048, 1, false},
		{"linear 2", RopeOptions{Type: "linear", Scale: 2}, 4096, 0.5, false},
		{"factor alone: the GGUF's type (linear by default)", RopeOptions{Scale: 4}, 8192, 0.25, false},
		{"yarn from orig", RopeOptions{Type: "yarn", Scale: 8, OrigCtx: 512}, 4096, 0.125, false},
		{"none ignores the factor", RopeOptions{Type: "none", Scale: 8}, 2048, 1, false},
		{"unknown type", RopeOptions{Type: "longrope"}, 0, 0, true},
		{"negative scale", RopeOptions{Scale: -1}, 0, 0, true},
	} {
		c := &Config{RopeDims: 64, RopeBase: 10000, NCtxTrain: 2048, RopeScale: 1, Rope: RopeScaling{Type: RopeScalingLinear, AttnFactor: 1}}
		err := c.ApplyRope(tc.o)
		if (err != nil) != tc.err {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if err == nil && (c.ContextLimit() != tc.limit || c.RopeScale != tc.scale) {
			t.Errorf("%s: limit %d scale %v, want %d %v", tc.name, c.ContextLimit(), c.RopeScale, tc.limit, tc.scale)
		}
	}
}
