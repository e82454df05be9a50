package gguf

import (
	"bytes"
	"fmt"
	"math"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stepflash/stepflash/internal/testmodels"
)

// fuzzSeeds returns small valid files made by the writer.
func fuzzSeeds(t testing.TB) [][]byte {
	var seeds [][]byte

	w := NewWriter()
	mustAddKV(t, w, "general.architecture", "llama")
	mustAddKV(t, w, "llama.block_count", uint32(1))
	mustAddKV(t, w, "tokenizer.ggml.tokens", []string{"<unk>", "a", "▁b"})
	mustAddKV(t, w, "tokenizer.ggml.scores", []float32{0, -1, float32(math.NaN())})
	mustAddKV(t, w, "tokenizer.ggml.token_type", []int32{2, 1, 1})
	mustAddKV(t, w, "b", true)
	mustAddKV(t, w, "f64", math.Copysign(0, -1))
	mustAddTensor(t, w, "token_embd.weight", TypeF32, []uint64{4, 3}, pattern(48, 1))
	mustAddTensor(t, w, "blk.0.attn_q.weight", TypeQ8_0, []uint64{32, 1}, pattern(34, 2))
	mustAddTensor(t, w, "output_norm.weight", TypeF16, []uint64{4}, pattern(8, 3))
	seeds = append(seeds, encode(t, w))

	w = NewWriter()
	w.SetVersion(2)
	w.SetAlignment(8)
	for i, v := range []any{uint8(1), int8(-1), uint16(2), int16(-2), uint32(3), int32(-3), uint64(4), int64(-4),
		float32(0.5), 1.5, "s", []uint8{1}, []int8{-1}, []uint16{2}, []int16{-2}, []uint32{3}, []int32{-3},
		[]uint64{4}, []int64{-4}, []float32{0.5}, []float64{1.5}, []bool{true, false}, []string{"x", ""},
		[]Value{{Type: Array, ElemType: Array, V: []Value{{Type: Array, ElemType: Uint8, V: []uint8{7}}}}}} {
		mustAddKV(t, w, fmt.Sprintf("k.%d.%T", i, v), v)
	}
	mustAddTensor(t, w, "q4k", TypeQ4_K, []uint64{256}, pattern(144, 4))
	mustAddTensor(t, w, "i8", TypeI8, []uint64{3, 1, 1, 2}, pattern(6, 5))
	seeds = append(seeds, encode(t, w))

	w = NewWriter()
	mustAddKV(t, w, "tokenizer.ggml.merges", []string{"a b", "ab c"})
	full := encode(t, w)
	seeds = append(seeds, full, append(bytes.Clone(full), 0, 0, 0, 0)) // vocab-only, unpadded and padded

	for _, c := range hostileCases(t) {
		seeds = append(seeds, c.data)
	}
	return append(seeds, realSeeds(t)...)
}

// realSeeds shrinks each shared model (when present) into a small valid
// file: its metadata with arrays cut to 8 elements, and up to 6 of its
// tensors, each reduced to one block of the original type.
func realSeeds(t testing.TB) [][]byte {
	dir, ok := testmodels.ModelsDir()
	if !ok {
		return nil
	}
	names := []string{"stories260K.gguf", "tiny-qwen3moe-Q4_K_M.gguf", "tiny-llama-Q2_K.gguf",
		"tiny-llama-Q3_K_M.gguf", "tiny-llama-Q4_1.gguf", "tiny-llama-Q5_1.gguf", "tiny-llama-BF16.gguf",
		"tiny-vlm-mmproj-F32.gguf", filepath.Join("vocab", "ggml-vocab-gpt-2.gguf")}
	var seeds [][]byte
	for _, name := range names {
		f, err := Open(filepath.Join(dir, name))
		if err != nil {
			continue
		}
		w := NewWriter()
		for _, kv := range f.KV {
			mustAddKV(t, w, kv.Key, shrink(kv.Value, 8))
		}
		for i := range min(len(f.Tensors), 6) {
			ti := &f.Tensors[i]
			n := ti.Type.BlockBytes()
			mustAddTensor(t, w, ti.Name, ti.Type, []uint64{uint64(ti.Type.BlockSize())}, f.TensorData(ti)[:n])
		}
		seeds = append(seeds, encode(t, w))
		f.Close()
	}
	return seeds
}

// shrink cuts an array value to at most n elements.
func shrink(v Value, n int) Value {
	if v.Type != Array || v.Len() <= n {
		return v
	}
	switch s := v.V.(type) {
	case []string:
		v.V = s[:n]
	case []float32:
		v.V = s[:n]
	case []int32:
		v.V = s[:n]
	case []uint32:
		v.V = s[:n]
	case []uint8:
		v.V = s[:n]
	case []float64:
		v.V = s[:n]
	case []int64:
		v.V = s[:n]
	case []uint64:
		v.V = s[:n]
	case []bool:
		v.V = s[:n]
	case []int8:
		v.V = s[:n]
	case []int16:
		v.V = s[:n]
	case []uint16:
		v.V = s[:n]
	case []Value:
		v.V = s[:n]
	}
	return v
}

// FuzzRead parses arbitrary bytes. Read must never panic; a rejected input
// must get a "gguf: " error; an accepted one must satisfy the reader's
// invariants and survive a write/read round trip unchanged.
func FuzzRead(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		gf, err := Read(data)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "gguf: ") {
				t.Fatalf("error without gguf prefix: %v", err)
			}
			return
		}
		checkInvariants(t, gf, data)
		once := rewrite(t, gf)
		gf2, err := Read(once)
		if err != nil {
			t.Fatalf("rewritten file rejected: %v", err)
		}
		checkInvariants(t, gf2, once)
		if len(gf2.KV) != len(gf.KV) || len(gf2.Tensors) != len(gf.Tensors) {
			t.Fatalf("round trip changed counts: %d/%d kvs, %d/%d tensors", len(gf.KV), len(gf2.KV), len(gf.Tensors), len(gf2.Tensors))
		}
		for i := range gf.Tensors {
			if !bytes.Equal(gf.TensorData(&gf.Tensors[i]), gf2.TensorData(&gf2.Tensors[i])) {
				t.Fatalf("round trip changed the data of %q", gf.Tensors[i].Name)
			}
		}
		if twice := rewrite(t, gf2); !bytes.Equal(once, twice) {
			t.Fatalf("write/read/write is not stable")
		}
	})
}

// checkInvariants verifies what Read promises about an accepted file.
func checkInvariants(t *testing.T, f *File, data []byte) {
	t.Helper()
	if f.Version != 2 && f.Version != 3 {
		t.Fatalf("accepted version %d", f.Version)
	}
	if f.Alignment <= 0 || f.Alignment&(f.Alignment-1) != 0 {
		t.Fatalf("alignment %d", f.Alignment)
	}
	if f.DataOffset < 0 || f.DataOffset > int64(len(data)) {
		t.Fatalf("data offset %d outside the %d-byte file", f.DataOffset, len(data))
	}
	for i, kv := range f.KV {
		if kv.Key == "" {
			t.Fatalf("kv %d: empty key", i)
		}
		if v, ok := f.Get(kv.Key); !ok || v.Type != kv.Value.Type {
			t.Fatalf("Get(%q) inconsistent", kv.Key)
		}
		if err := checkValue(kv.Value, 1); err != nil {
			t.Fatalf("kv %q: %v", kv.Key, err)
		}
		// The accessors must not panic on any value.
		f.Uint(kv.Key)
		f.Int(kv.Key)
		f.Float(kv.Key)
		f.Bool(kv.Key)
		f.String(kv.Key)
		f.Strings(kv.Key)
		f.Float32s(kv.Key)
		f.Int32s(kv.Key)
	}
	for i := range f.Tensors {
		ti := &f.Tensors[i]
		if p, ok := f.Tensor(ti.Name); !ok || p != ti {
			t.Fatalf("Tensor(%q) inconsistent", ti.Name)
		}
		if ti.Name == "" || len(ti.Shape) == 0 || len(ti.Shape) > MaxDims || !ti.Type.Known() {
			t.Fatalf("tensor %d accepted with name %q, shape %v, type %s", i, ti.Name, ti.Shape, ti.Type)
		}
		if ti.Offset%uint64(f.Alignment) != 0 {
			t.Fatalf("tensor %q: misaligned offset %d", ti.Name, ti.Offset)
		}
		if d := f.TensorData(ti); uint64(len(d)) != ti.Size {
			t.Fatalf("tensor %q: TensorData has %d bytes, size %d", ti.Name, len(d), ti.Size)
		}
		rb, err := ti.Type.RowBytes(int(ti.Shape[0]))
		if err != nil || uint64(rb)*(ti.Elements()/max(ti.Shape[0], 1)) != ti.Size && ti.Shape[0] != 0 {
			t.Fatalf("tensor %q: size %d inconsistent with shape %v of %s", ti.Name, ti.Size, ti.Shape, ti.Type)
		}
	}
}
