package model_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stepflash/stepflash/engine"
	"github.com/stepflash/stepflash/internal/synthmodels"
	"github.com/stepflash/stepflash/model"
)

// TestQwen2VLRefs checks the qwen2vl architecture against llama.cpp on a
// synthetic Qwen2-VL language model (synthmodels.Qwen2VL): the q/k/v
// biases and NeoX-paired M-RoPE with every section at the text position,
// over the prompts of refs/tiny-vlm-text-F32.json read as text.
func TestQwen2VLRefs(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tiny-qwen2vl-F32.gguf")
	if p := os.Getenv("STEPFLASH_WRITE_QWEN2VL"); p != "" {
		path = p // to regenerate the reference, see testdata/gen_synthetic_ref.py
	}
	synthmodels.Qwen2VL(t, path)
	checkSyntheticRef(t, path, "testdata/tiny-qwen2vl-ref.json", func(m model.Model) bool {
		q, ok := m.(*model.Qwen2VL)
		return ok && m.Config().RopeSections == [4]int{4, 6, 6, 0} && q.Blocks[1].Bias.K != nil
	})
}

// TestQwen2VLRopePos checks Batch.RopePos through the model: rotary
// positions equal to the cache positions in the temporal, height and width
// sections give the same logits as none, bit for bit, whatever the extra
// section holds (the model's has no pairs); other positions change them;
// and a RopePos of the wrong length or with a negative position is an
// error.
func TestQwen2VLRopePos(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tiny-qwen2vl-F32.gguf")
	synthmodels.Qwen2VL(t, path)
	m, f, err := model.Open(path, model.Options{Threads: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	defer m.Close()
	cfg := m.Config()
	toks := []int32{1025, 46, 77, 344, 510, 261, 257, 640, 198}
	n := len(toks)
	run := func(ropePos [][4]int) ([]float32, error) {
		cache := engine.NewKVCache(cfg, n, 0)
		if err := cache.Reserve(0, n); err != nil {
			t.Fatal(err)
		}
		b := &model.Batch{Tokens: toks, Pos: make([]int, n), Seq: make([]int, n), Output: make([]bool, n), RopePos: ropePos}
		for i := range b.Pos {
			b.Pos[i], b.Output[i] = i, true
		}
		logits := make([]float32, n*cfg.NVocab)
		return logits, m.Forward(b, cache, logits)
	}
	want, err := run(nil)
	if err != nil {
		t.Fatal(err)
	}
	positions := func(f func(i int) [4]int) [][4]int {
		p := make([][4]int, n)
		for i := range p {
			p[i] = f(i)
		}
		return p
	}
	for _, tc := range []struct {
		name string
		pos  [][4]int
		same bool
	}{
		{"text positions", positions(func(i int) [4]int { return [4]int{i, i, i, 0} }), true},
		{"all four equal", positions(func(i int) [4]int { return [4]int{i, i, i, i} }), true},
		{"a 3x3 image's", positions(func(i int) [4]int { return [4]int{0, i / 3, i % 3, 0} }), false},
		{"width one ahead", positions(func(i int) [4]int { return [4]int{i, i, i + 1, 0} }), false},
	} {
		got, err := run(tc.pos)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if slices.Equal(got, want) != tc.same {
			t.Errorf("%s: logits equal to those without RopePos: %v, want %v", tc.name, !tc.same, tc.same)
		}
	}
	for _, tc := range []struct {
		name string
		pos  [][4]int
		err  string
	}{
		{"short", make([][4]int, n-1), "different lengths"},
		{"negative", positions(func(i int) [4]int { return [4]int{i, i, i - 1, 0} }), "negative rotary position [0 0 -1 0] at batch index 0"},
	} {
		if _, err := run(tc.pos); err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("%s: error %v, want %q", tc.name, err, tc.err)
		}
	}
}
