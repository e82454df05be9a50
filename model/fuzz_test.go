package model_test

import (
	"bytes"
	"encoding/binary"
	"math"
	"strings"
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
	f.Add(miniModel(f, "qwen2vl", gguf.TypeF32))
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
		b.RopePos = [][4]int{{1, 2, 3, 4}} // M-RoPE positions (ignored without sections)
		_ = m.Forward(b, cache, logits)
	})
}

// miniModel writes a 1-layer model of width 32 with 16 tokens in memory
// (qwen2vl: with M-RoPE sections [2, 3, 3, 0] over its 8 pairs and q/k/v
// biases).
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
	if arch == "qwen2vl" {
		kv(arch+".rope.dimension_sections", []int32{2, 3, 3, 0})
	}
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
	if arch == "qwen2vl" {
		add("blk.0.attn_q.bias", gguf.TypeF32, d)
		add("blk.0.attn_k.bias", gguf.TypeF32, uint64(hd))
		add("blk.0.attn_v.bias", gguf.TypeF32, uint64(hd))
	}
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
	for _, arch := range []string{"llama", "qwen3moe", "qwen2vl"} {
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

// TestQwen2VLHostileMetadata checks that bad M-RoPE sections and shapes
// fail to load with an error, not a panic (llama.cpp reads the sections
// with get_key_or_arr: 4 integers or one for all, and ggml asserts that
// the first three take some pair and that all fit the head).
func TestQwen2VLHostileMetadata(t *testing.T) {
	base, err := gguf.Read(miniModel(t, "qwen2vl", gguf.TypeF32))
	if err != nil {
		t.Fatal(err)
	}
	const key = "qwen2vl.rope.dimension_sections"
	for _, tc := range []struct {
		name  string
		key   string
		value any    // nil: drop the key
		drop  string // a tensor to leave out
		short string // a tensor to write with half its elements
		want  string // "": loads
	}{
		{name: "the seed", key: key, value: []int32{2, 3, 3, 0}},
		{name: "one integer for all four", key: key, value: uint32(2)},
		{name: "no q/k/v biases", drop: "blk.0.attn_k.bias"},
		{name: "missing", key: key, want: "rope.dimension_sections is missing"},
		{name: "three sections", key: key, value: []int32{2, 3, 3}, want: "has 3 values, want 4"},
		{name: "negative", key: key, value: []int32{-2, 3, 3, 4}, want: "section 0 is outside 0..16"},
		{name: "huge", key: key, value: []uint32{2, 3, 1 << 31, 0}, want: "want 4 integers"},
		{name: "past int32", key: key, value: []int64{2, 3, 1 << 40, 0}, want: "want 4 integers"},
		{name: "larger than the head", key: key, value: []int32{2, 3, 3, 100}, want: "section 3 is outside 0..16"},
		{name: "sum 0", key: key, value: []int32{0, 0, 0, 0}, want: "must take some pairs"},
		{name: "only extra", key: key, value: []int32{0, 0, 0, 8}, want: "must take some pairs"},
		{name: "sum past the head", key: key, value: []int32{8, 8, 8, 0}, want: "at most the head dimension 16"},
		{name: "floats", key: key, value: []float32{2, 3, 3, 0}, want: "is an array of float32, want 4 integers"},
		{name: "a string", key: key, value: "2,3,3,0", want: "is string, want 4 integers"},
		{name: "partial rotation", key: "qwen2vl.rope.dimension_count", value: uint32(8), want: "rope.dimension_count 8"},
		{name: "short bias", short: "blk.0.attn_v.bias", want: "blk.0.attn_v.bias has 8 elements, want 16"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := gguf.NewWriter()
			seen := false
			for _, kv := range base.KV {
				var v any = kv.Value
				if kv.Key == tc.key {
					seen = true
					if tc.value == nil {
						continue
					}
					v = tc.value
				}
				if err := w.AddKV(kv.Key, v); err != nil {
					t.Fatal(err)
				}
			}
			if !seen && tc.value != nil {
				if err := w.AddKV(tc.key, tc.value); err != nil {
					t.Fatal(err)
				}
			}
			for i := range base.Tensors {
				ti := &base.Tensors[i]
				if ti.Name == tc.drop {
					continue
				}
				shape, data := ti.Shape, base.TensorData(ti)
				if ti.Name == tc.short {
					shape, data = []uint64{ti.Shape[0] / 2}, data[:len(data)/2]
				}
				if err := w.AddTensor(ti.Name, ti.Type, shape, data); err != nil {
					t.Fatal(err)
				}
			}
			var buf bytes.Buffer
			if _, err := w.WriteTo(&buf); err != nil {
				t.Fatal(err)
			}
			gf, err := gguf.Read(buf.Bytes())
			if err != nil {
				t.Fatal(err)
			}
			m, err := model.Load(gf, model.Options{Threads: 1})
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				m.Close()
				return
			}
			if err == nil {
				m.Close()
				t.Fatalf("loaded; want an error containing %q", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not contain %q", err, tc.want)
			}
		})
	}
}
