package model

import (
	"math"
	"path/filepath"
	"testing"

	"github.com/stepflash/stepflash/internal/synthmodels"
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

// TestMRopePositions checks qwen2vl's M-RoPE against its definition
// (ggml_mrope_cache_init with NeoX pairing), in float64: every pair (x[i],
// x[i+d/2]) of every query head is rotated by pos·base^(-2i/d), where pos
// is the token's RopePos in the section that i mod the sections' sum falls
// in (temporal, height, width, extra, in that order); without RopePos a
// token has its position in the first three sections and 0 in the extra
// one, as llama.cpp gives a text token. The runner is the loaded
// synthetic model's (synthmodels.Qwen2VL), with its sections or others.
func TestMRopePositions(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tiny-qwen2vl-F32.gguf")
	synthmodels.Qwen2VL(t, path)
	mm, f, err := Open(path, Options{Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	defer mm.Close()
	m := mm.(*Qwen2VL)
	if m.cfg.RopeSections != [4]int{4, 6, 6, 0} || m.cfg.HeadDim != 32 || m.cfg.RopeDims != 32 {
		t.Fatalf("sections %v, head dim %d, rope dims %d: not the model this test is written for", m.cfg.RopeSections, m.cfg.HeadDim, m.cfg.RopeDims)
	}
	for _, tc := range []struct {
		name     string
		sections [4]int // zero: the file's
		pos      []int
		ropePos  [][4]int
		// section is the test's own reading of the sections: which one
		// rotates each of the 16 pairs.
		section [16]int
	}{
		{name: "file's sections", pos: []int{5, 6, 7}, ropePos: [][4]int{{5, 9, 13, 40}, {0, 2, 1, 0}, {97, 60, 3, 1}},
			section: [16]int{0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2}},
		{name: "file's sections, text", pos: []int{5, 61},
			section: [16]int{0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2}},
		{name: "sections summing to 8 repeat, extra used", sections: [4]int{2, 3, 1, 2}, pos: []int{3, 4}, ropePos: [][4]int{{3, 21, 8, 2}, {50, 1, 77, 30}},
			section: [16]int{0, 0, 1, 1, 1, 2, 3, 3, 0, 0, 1, 1, 1, 2, 3, 3}},
		{name: "extra of a text token is 0", sections: [4]int{2, 3, 1, 2}, pos: []int{3, 90},
			section: [16]int{0, 0, 1, 1, 1, 2, 3, 3, 0, 0, 1, 1, 1, 2, 3, 3}},
		{name: "sections past the pairs", sections: [4]int{1, 2, 20, 9}, pos: []int{0}, ropePos: [][4]int{{4, 8, 15, 16}},
			section: [16]int{0, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := *m.cfg
			if tc.sections != [4]int{} {
				cfg.RopeSections = tc.sections
			}
			r := m.run
			r.cfg = &cfg
			r.cos, r.sin = nil, nil
			n, heads, hd := len(tc.pos), cfg.NHead, cfg.HeadDim
			r.n = n
			r.ropeTables(&Batch{Pos: tc.pos, RopePos: tc.ropePos})
			rows := make([]float32, n*heads*hd)
			for i := range rows {
				rows[i] = float32(math.Sin(float64(7*i + 1))) // in [-1, 1], no pattern a pairing could hide in
			}
			in := append([]float32(nil), rows...)
			r.applyRope(rows, heads, r.cos, r.sin)
			for tok := 0; tok < n; tok++ {
				pos := [4]int{tc.pos[tok], tc.pos[tok], tc.pos[tok], 0}
				if tc.ropePos != nil {
					pos = tc.ropePos[tok]
				}
				for h := 0; h < heads; h++ {
					x, y := in[(tok*heads+h)*hd:][:hd], rows[(tok*heads+h)*hd:][:hd]
					for i := 0; i < hd/2; i++ {
						th := float64(pos[tc.section[i]]) * math.Pow(float64(cfg.RopeBase), -2*float64(i)/float64(hd))
						c, s := math.Cos(th), math.Sin(th)
						w0 := float64(x[i])*c - float64(x[i+hd/2])*s
						w1 := float64(x[i])*s + float64(x[i+hd/2])*c
						// float32 angles of up to 100 radians: ~1e-5 off.
						if math.Abs(float64(y[i])-w0) > 1e-4 || math.Abs(float64(y[i+hd/2])-w1) > 1e-4 {
							t.Fatalf("token %d head %d pair %d (section %d, position %d): (%.6f, %.6f), want (%.6f, %.6f)",
								tok, h, i, tc.section[i], pos[tc.section[i]], y[i], y[i+hd/2], w0, w1)
						}
					}
				}
			}
		})
	}
}
