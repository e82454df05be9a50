package model

import (
	"fmt"
	"math"
	"math/rand/v2"
	"path/filepath"
	"testing"

	"github.com/stepflash/stepflash/gguf"
	"github.com/stepflash/stepflash/internal/synthmodels"
	"github.com/stepflash/stepflash/internal/testmodels"
)

// spanCache is a minimal F32 model.Cache for one sequence (the engine's
// cache would import this package).
type spanCache struct {
	bs, heads, hd int
	k, v          [][][]byte // [layer][block]
}

func (c *spanCache) BlockSize() int          { return c.bs }
func (c *spanCache) Types() (k, v gguf.Type) { return gguf.TypeF32, gguf.TypeF32 }
func (c *spanCache) Block(l, _, pos int) (k, v []byte) {
	b := pos / c.bs
	for len(c.k[l]) <= b {
		c.k[l] = append(c.k[l], make([]byte, c.heads*c.bs*c.hd*4))
		c.v[l] = append(c.v[l], make([]byte, c.heads*c.bs*c.hd*4))
	}
	return c.k[l][b], c.v[l][b]
}

// TestAttentionSpans: attention over a context split into spans worked on
// separately and merged by their maxima gives the one-span softmax's
// logits (to float32 rounding), in a prefill batch and token by token,
// with the context past several spans; also with a sliding window longer
// than a span (Gemma 3's local layers), where a query's spans start late.
func TestAttentionSpans(t *testing.T) {
	gemma := filepath.Join(t.TempDir(), "tiny-gemma3-F32.gguf")
	synthmodels.Gemma3(t, gemma)
	for _, tc := range []struct {
		path   string
		window int
	}{{testmodels.Path(t, "tiny-qwen3-F32.gguf"), 0}, {gemma, 100}, {gemma, 33}} {
		t.Run(fmt.Sprintf("%s/window=%d", filepath.Base(tc.path), tc.window), func(t *testing.T) {
			testAttentionSpans(t, tc.path, tc.window)
		})
	}
}

func testAttentionSpans(t *testing.T, path string, window int) {
	m, f, err := Open(path, Options{Threads: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	defer m.Close()
	if g, ok := m.(*Gemma3); ok {
		g.Window = window
	}
	cfg := m.Config()
	r := rand.New(rand.NewPCG(9, 9))
	toks := make([]int32, 300)
	for i := range toks {
		toks[i] = int32(r.IntN(cfg.NVocab))
	}
	run := func(span int, step bool) []float32 {
		defer func(s int) { attnSpan = s }(attnSpan)
		attnSpan = span
		c := &spanCache{bs: 32, heads: cfg.NHeadKV, hd: cfg.HeadDim, k: make([][][]byte, cfg.NLayer), v: make([][][]byte, cfg.NLayer)}
		logits := make([]float32, cfg.NVocab)
		feed := func(from, to int) {
			b := &Batch{Tokens: toks[from:to], Pos: make([]int, to-from), Seq: make([]int, to-from)}
			for i := range b.Pos {
				b.Pos[i] = from + i
			}
			if err := m.Forward(b, c, logits); err != nil {
				t.Fatal(err)
			}
		}
		if !step {
			feed(0, len(toks))
			return logits
		}
		feed(0, 250)
		for p := 250; p < len(toks); p++ {
			feed(p, p+1)
		}
		return logits
	}
	want := run(1<<20, false) // one span
	for _, tc := range []struct {
		span int
		step bool
	}{{64, false}, {96, false}, {64, true}, {1 << 20, true}} {
		got := run(tc.span, tc.step)
		worst := 0.0
		for i := range got {
			worst = max(worst, math.Abs(float64(got[i]-want[i])))
		}
		if worst > 1e-4 {
			t.Errorf("spans of %d (token by token: %v): logits differ by %.3g", tc.span, tc.step, worst)
		}
		if tc.span == 1<<20 && worst != 0 {
			t.Errorf("one span, token by token: logits differ by %.3g from the batch (must be bit-identical)", worst)
		}
	}
}
