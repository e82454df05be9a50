// Package thinkmodel writes test models that can think: copies of a shared
// tiny model whose tokens 1000 and 1001 (the last two, in a vocabulary that
// small) are renamed <think> and </think> (user-defined tokens, as in
// Qwen3), optionally with a chat template, so that the thinking-budget logic
// runs on a real model and tokenizer.
package thinkmodel

import (
	"path/filepath"
	"testing"

	"github.com/stepflash/stepflash/gguf"
	"github.com/stepflash/stepflash/internal/testmodels"
)

// Write writes a thinking copy of the shared model base (e.g.
// "tiny-qwen3-F32.gguf") into a test temporary directory and returns its
// path. A non-empty template replaces tokenizer.chat_template. The test is
// skipped when the shared models are absent.
func Write(t testing.TB, base, template string) string {
	t.Helper()
	in, err := gguf.Open(testmodels.Path(t, base))
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	toks, _ := in.Strings("tokenizer.ggml.tokens")
	if len(toks) < 4 {
		t.Fatalf("%s: a vocabulary of %d tokens is too small to rename two", base, len(toks))
	}
	open, closeID := 1000, 1001
	if len(toks) <= closeID {
		open, closeID = len(toks)-2, len(toks)-1
	}
	w := gguf.NewWriter()
	for _, kv := range in.KV {
		v := any(kv.Value)
		switch kv.Key {
		case "tokenizer.ggml.tokens":
			toks = append([]string(nil), toks...)
			toks[open], toks[closeID] = "<think>", "</think>"
			v = toks
		case "tokenizer.ggml.token_type":
			types, _ := in.Int32s(kv.Key)
			types = append([]int32(nil), types...)
			types[open], types[closeID] = 4, 4 // user-defined, as in Qwen3
			v = types
		case "tokenizer.chat_template":
			if template != "" {
				continue
			}
		}
		if err := w.AddKV(kv.Key, v); err != nil {
			t.Fatal(err)
		}
	}
	if template != "" {
		if err := w.AddKV("tokenizer.chat_template", template); err != nil {
			t.Fatal(err)
		}
	}
	for i := range in.Tensors {
		ti := &in.Tensors[i]
		if err := w.AddTensor(ti.Name, ti.Type, ti.Shape, in.TensorData(ti)); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(t.TempDir(), "think-"+base)
	if err := w.WriteFile(path); err != nil {
		t.Fatal(err)
	}
	return path
}
