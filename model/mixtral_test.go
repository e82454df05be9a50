package model_test

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/stepflash/stepflash/engine"
	"github.com/stepflash/stepflash/internal/synthmodels"
	"github.com/stepflash/stepflash/model"
	"github.com/stepflash/stepflash/tokenizer"
)

// TestMixtralStyleLlamaMoE checks the llama architecture's MoE path against
// llama.cpp on a synthetic Mixtral-style model.
func TestMixtralStyleLlamaMoE(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tiny-mixtral-F32.gguf")
	if p := os.Getenv("STEPFLASH_WRITE_MIXTRAL"); p != "" {
		path = p // to regenerate the reference, see testdata/gen_synthetic_ref.py
	}
	synthmodels.Mixtral(t, path)
	checkSyntheticRef(t, path, "testdata/tiny-mixtral-ref.json", func(m model.Model) bool {
		_, ok := m.(*model.Llama)
		return ok && m.Config().NExpert == 8
	})
}

// checkSyntheticRef loads the synthetic model at path, checks it is the
// one the reference golden was recorded on and the architecture isArch
// expects, and compares its log-probs over every case of the reference
// (prompt and generated tokens in one batch) with llama.cpp's.
func checkSyntheticRef(t *testing.T, path, golden string, isArch func(model.Model) bool) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var ref struct {
		SHA256 string    `json:"model_sha256"`
		Cases  []refCase `json:"cases"`
	}
	js, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(js, &ref); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(raw)
	if got := hex.EncodeToString(sum[:]); got != ref.SHA256 {
		t.Fatalf("synthetic model sha256 %s, reference made on %s: regenerate the reference", got, ref.SHA256)
	}
	m, f, err := model.Open(path, model.Options{Threads: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	defer m.Close()
	if !isArch(m) {
		t.Fatalf("loaded %T (%s, %d experts): not the architecture the reference is for", m, m.Config().Arch, m.Config().NExpert)
	}
	tok, err := tokenizer.FromGGUF(f)
	if err != nil {
		t.Fatal(err)
	}
	cfg := m.Config()
	for _, c := range ref.Cases {
		if got := tok.Encode(c.Prompt, true, true); len(got) != len(c.PromptIDs) {
			t.Fatalf("%s: prompt tokens %v, reference %v", c.Name, got, c.PromptIDs)
		}
		full := append(append([]int32{}, c.PromptIDs...), c.Generated[:len(c.Generated)-1]...)
		cache := engine.NewKVCache(cfg, len(full), 0)
		if err := cache.Reserve(0, len(full)); err != nil {
			t.Fatal(err)
		}
		b := &model.Batch{Tokens: full, Pos: make([]int, len(full)), Seq: make([]int, len(full)), Output: make([]bool, len(full))}
		for i := range full {
			b.Pos[i] = i
			b.Output[i] = i >= len(c.PromptIDs)-1
		}
		logits := make([]float32, len(c.Generated)*cfg.NVocab)
		if err := m.Forward(b, cache, logits); err != nil {
			t.Fatal(err)
		}
		dev := compareSteps(t, cfg.Arch+" "+c.Name, &c, logits, cfg.NVocab, 0, 1e-3)
		t.Logf("%s: max |Δlogprob| %.2g", c.Name, dev)
	}
}
