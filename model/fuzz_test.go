package model_test

import (
	"bytes"
	"encoding/binary"
	"math"
	"testing"

	"github.com/stepflash/stepflash/engine"
	"github.com/stepflash/stepflash/gguf"
	"github.com/stepflash/stepflash/model"
)

// FuzzLoad feeds mutated model files to the loader and, when one loads, runs
// a token through it: a hostile file must fail with an error, never panic.
// Run: make fuzz (or go test ./model -run '^$' -fuzz FuzzLoad -fuzztime 1m
// -fuzzminimizetime 2s: model-sized inputs make the default minimization crawl).
func FuzzLoad(f *testing.F) {
	// Small seeds keep the fuzzer fast (it minimizes every new input): a
	// minimal llama and qwen3moe made here rather than the shared files.
	f.Add(miniModel(f, "llama", gguf.TypeF32))
	f.Add(miniModel(f, "qwen3moe", gguf.TypeQ8_0))
	f.Fuzz(func(t *testing.T, data []byte) {
		gf, err := gguf.Read(data)
		if err != nil {
			return
		}
		m, err := model.Load(gf, model.Options{Threads: 1})
		if err != nil {
			return
		}
		defer m.Close()
		cfg := m.Config()
		cache := engine.NewKVCache(cfg, 4, 0)
		if err := cache.Reserve(0, 2); err != nil {
			t.Fatal(err)
		}
		logits := make([]float32, cfg.NVocab)
		b := &model.Batch{Tokens: []int32{0}, Pos: []int{0}, Seq: []int{0}}
		_ = m.Forward(b, cache, logits)
	})
}

// miniModel writes a 1-layer model of width 32 with 16 tokens in memory.
func miniModel(t testing.TB, arch string, wt gguf.Type) []byte {
	const d, vocab, ff, heads = 32, 16, 32, 2
	w := gguf.NewWriter()
	kv := func(k string, v any) {
		if err := w.AddKV(k, v); err != nil {
			t.Fatal(err)
		}
	}
	kv("general.architecture", arch)
	kv(arch+".block_count", uint32(1))
	kv(arch+".embedding_length", uint32(d))
	kv(arch+".feed_forward_length", uint32(ff))
	kv(arch+".attention.head_count", uint32(heads))
	kv(arch+".attention.head_count_kv", uint32(1))
	kv(arch+".attention.layer_norm_rms_epsilon", float32(1e-5))
	toks := make([]string, vocab)
	for i := range toks {
		toks[i] = string(rune('a' + i))
	}
	kv("tokenizer.ggml.model", "gpt2")
	kv("tokenizer.ggml.tokens", toks)
	moe := arch == "qwen3moe"
	if moe {
		kv(arch+".expert_count", uint32(4))
		kv(arch+".expert_used_count", uint32(2))
		kv(arch+".expert_feed_forward_length", uint32(ff))
	}
	hd := d / heads
	n := 0
	add := func(name string, typ gguf.Type, shape ...uint64) {
		elems := uint64(1)
		for _, s := range shape {
			elems *= s
		}
		vals := make([]float32, elems)
		for i := range vals {
			n++
			vals[i] = float32((n*7919)%97)/97 - 0.5
		}
		var data []byte
		if typ == gguf.TypeF32 {
			data = make([]byte, 4*len(vals))
			for i, v := range vals {
				binary.LittleEndian.PutUint32(data[4*i:], math.Float32bits(v))
			}
		} else { // Q8_0: fp16 scale 1/127 ≈ 0x2008, then quants
			for b := 0; b < len(vals)/32; b++ {
				data = append(data, 0x08, 0x20)
				for _, v := range vals[b*32 : b*32+32] {
					data = append(data, byte(int8(v*127)))
				}
			}
		}
		if err := w.AddTensor(name, typ, shape, data); err != nil {
			t.Fatal(err)
		}
	}
	add("token_embd.weight", wt, d, vocab)
	add("output_norm.weight", gguf.TypeF32, d)
	add("output.weight", wt, d, vocab)
	add("blk.0.attn_norm.weight", gguf.TypeF32, d)
	add("blk.0.attn_q.weight", wt, d, d)
	add("blk.0.attn_k.weight", wt, d, uint64(hd))
	add("blk.0.attn_v.weight", wt, d, uint64(hd))
	add("blk.0.attn_output.weight", wt, d, d)
	add("blk.0.ffn_norm.weight", gguf.TypeF32, d)
	if moe {
		add("blk.0.attn_q_norm.weight", gguf.TypeF32, uint64(hd))
		add("blk.0.attn_k_norm.weight", gguf.TypeF32, uint64(hd))
		add("blk.0.ffn_gate_inp.weight", gguf.TypeF32, d, 4)
		add("blk.0.ffn_gate_exps.weight", wt, d, ff, 4)
		add("blk.0.ffn_up_exps.weight", wt, d, ff, 4)
		add("blk.0.ffn_down_exps.weight", wt, ff, d, 4)
	} else {
		add("blk.0.ffn_gate.weight", wt, d, ff)
		add("blk.0.ffn_up.weight", wt, d, ff)
		add("blk.0.ffn_down.weight", wt, ff, d)
	}
	var buf bytes.Buffer
	if _, err := w.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestMiniModels checks that the fuzz seeds load and run, so the fuzzer
// starts from models that reach the forward pass.
func TestMiniModels(t *testing.T) {
	for _, arch := range []string{"llama", "qwen3moe"} {
		gf, err := gguf.Read(miniModel(t, arch, gguf.TypeQ8_0))
		if err != nil {
			t.Fatal(err)
		}
		m, err := model.Load(gf, model.Options{Threads: 1})
		if err != nil {
			t.Fatalf("%s: %v", arch, err)
		}
		cache := engine.NewKVCache(m.Config(), 4, 0)
		if err := cache.Reserve(0, 1); err != nil {
			t.Fatal(err)
		}
		logits := make([]float32, 16)
		if err := m.Forward(&model.Batch{Tokens: []int32{3}, Pos: []int{0}, Seq: []int{0}}, cache, logits); err != nil {
			t.Fatalf("%s: %v", arch, err)
		}
		for _, l := range logits {
			if math.IsNaN(float64(l)) || math.IsInf(float64(l), 0) {
				t.Fatalf("%s: non-finite logits %v", arch, logits)
			}
		}
		m.Close()
	}
}
