package model_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/stepflash/stepflash/engine"
	"github.com/stepflash/stepflash/internal/testmodels"
	"github.com/stepflash/stepflash/model"
)

// TestBatchEmbeds: a token given as its own embedding row (behind a
// placeholder token) computes exactly what the token does, and malformed
// embeddings are errors.
func TestBatchEmbeds(t *testing.T) {
	m, f, err := model.Open(testmodels.Path(t, "tiny-llama-F32.gguf"), model.Options{Threads: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	defer m.Close()
	cfg := m.Config()
	toks := []int32{1, 45, 499, 173, 170, 43}
	run := func(b *model.Batch) ([]float32, error) {
		cache := engine.NewKVCache(cfg, len(b.Tokens), 0)
		if err := cache.Reserve(0, len(b.Tokens)); err != nil {
			t.Fatal(err)
		}
		b.Pos, b.Seq, b.Output = make([]int, len(b.Tokens)), make([]int, len(b.Tokens)), make([]bool, len(b.Tokens))
		for i := range b.Pos {
			b.Pos[i], b.Output[i] = i, true
		}
		logits := make([]float32, len(b.Tokens)*cfg.NVocab)
		return logits, m.Forward(b, cache, logits)
	}
	want, err := run(&model.Batch{Tokens: slices.Clone(toks)})
	if err != nil {
		t.Fatal(err)
	}
	embeds := make([][]float32, len(toks))
	placeholders := slices.Clone(toks)
	for _, i := range []int{2, 3} {
		embeds[i] = make([]float32, cfg.NEmbd)
		m.(*model.Llama).Out.TokenEmbd.DequantizeRow(int(toks[i]), embeds[i])
		placeholders[i] = 0
	}
	got, err := run(&model.Batch{Tokens: placeholders, Embeds: embeds})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, want) {
		t.Error("logits with the embeddings given differ from the tokens'")
	}
	for _, tc := range []struct {
		name   string
		embeds [][]float32
		err    string
	}{
		{"short embedding", [][]float32{nil, make([]float32, cfg.NEmbd-1), nil, nil, nil, nil}, "width"},
		{"wrong count", [][]float32{nil}, "different lengths"},
	} {
		if _, err := run(&model.Batch{Tokens: slices.Clone(toks), Embeds: tc.embeds}); err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
}
