package gguf

import (
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"sort"
	"testing"
	"unsafe"

	"github.com/stepflash/stepflash/internal/testmodels"
)

// typeCounts is the "type counts" column of shared/models/README.md.
var typeCounts = map[string]map[Type]int{
	"stories260K.gguf":          {TypeF32: 48},
	"tiny-llama-F32.gguf":       {TypeF32: 21},
	"tiny-llama-F16.gguf":       {TypeF16: 16, TypeF32: 5},
	"tiny-llama-BF16.gguf":      {TypeBF16: 16, TypeF32: 5},
	"tiny-llama-Q8_0.gguf":      {TypeQ8_0: 16, TypeF32: 5},
	"tiny-llama-Q4_0.gguf":      {TypeQ4_0: 15, TypeF32: 5, TypeQ6_K: 1},
	"tiny-llama-Q4_1.gguf":      {TypeQ4_1: 15, TypeF32: 5, TypeQ6_K: 1},
	"tiny-llama-Q5_0.gguf":      {TypeQ5_0: 15, TypeF32: 5, TypeQ6_K: 1},
	"tiny-llama-Q5_1.gguf":      {TypeQ5_1: 15, TypeF32: 5, TypeQ6_K: 1},
	"tiny-llama-Q4_K_M.gguf":    {TypeQ4_K: 13, TypeF32: 5, TypeQ6_K: 3},
	"tiny-llama-Q5_K_M.gguf":    {TypeQ5_K: 13, TypeF32: 5, TypeQ6_K: 3},
	"tiny-llama-Q6_K.gguf":      {TypeQ6_K: 16, TypeF32: 5},
	"tiny-llama-Q2_K.gguf":      {TypeQ2_K: 9, TypeF32: 5, TypeQ3_K: 4, TypeQ4_K: 2, TypeQ6_K: 1},
	"tiny-llama-Q3_K_M.gguf":    {TypeQ3_K: 9, TypeF32: 5, TypeQ4_K: 4, TypeQ5_K: 2, TypeQ6_K: 1},
	"tiny-qwen3-F32.gguf":       {TypeF32: 24},
	"tiny-qwen3-Q8_0.gguf":      {TypeQ8_0: 15, TypeF32: 9},
	"tiny-qwen3-Q4_K_M.gguf":    {TypeQ4_K: 12, TypeF32: 9, TypeQ6_K: 3},
	"tiny-qwen3moe-F32.gguf":    {TypeF32: 27},
	"tiny-qwen3moe-Q8_0.gguf":   {TypeQ8_0: 16, TypeF32: 11},
	"tiny-qwen3moe-Q4_K_M.gguf": {TypeF32: 11, TypeQ4_K: 7, TypeQ8_0: 5, TypeQ5_K: 2, TypeQ6_K: 1, TypeQ5_0: 1},
	"tiny-vlm-text-F32.gguf":    {TypeF32: 21},
	"tiny-vlm-mmproj-F32.gguf":  {TypeF32: 38},
}

// TestRealFiles opens every shared model and checks its tensor types and
// layout: the tensors must tile the data section exactly (each at the next
// aligned offset, the last one ending the file), which checks the size
// computation for every tensor type in the files.
func TestRealFiles(t *testing.T) {
	dir := testmodels.Models(t)
	files, _ := filepath.Glob(filepath.Join(dir, "*.gguf"))
	if len(files) != len(typeCounts) {
		t.Errorf("%d .gguf files under %s, want %d", len(files), dir, len(typeCounts))
	}
	for name, want := range typeCounts {
		f, err := Open(testmodels.Path(t, name))
		if err != nil {
			t.Errorf("%v", err)
			continue
		}
		got := map[Type]int{}
		for i := range f.Tensors {
			got[f.Tensors[i].Type]++
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: type counts %v, want %v", name, got, want)
		}
		if f.Version != 3 || f.Alignment != 32 || f.DataOffset%32 != 0 {
			t.Errorf("%s: version %d, alignment %d, data offset %d", name, f.Version, f.Alignment, f.DataOffset)
		}
		order := make([]*TensorInfo, len(f.Tensors))
		for i := range f.Tensors {
			order[i] = &f.Tensors[i]
		}
		sort.Slice(order, func(a, b int) bool { return order[a].Offset < order[b].Offset })
		next := uint64(0)
		for _, ti := range order {
			if ti.Offset != next {
				t.Errorf("%s: %s at offset %d, want %d", name, ti.Name, ti.Offset, next)
			}
			rb, err := ti.Type.RowBytes(int(ti.Shape[0]))
			if err != nil || uint64(rb)*(ti.Elements()/ti.Shape[0]) != ti.Size {
				t.Errorf("%s: %s: size %d does not match %d rows of %d bytes (%v)", name, ti.Name, ti.Size, ti.Elements()/ti.Shape[0], rb, err)
			}
			next = (ti.Offset + ti.Size + 31) &^ 31
		}
		st, err := os.Stat(testmodels.Path(t, name))
		if err != nil {
			t.Fatal(err)
		}
		if end := uint64(f.DataOffset) + next; end != uint64(st.Size()) {
			t.Errorf("%s: tensors end at %d, file size %d", name, end, st.Size())
		}
		f.Close()
	}
}

// TestRealFacts checks facts stated in shared/models/README.md.
func TestRealFacts(t *testing.T) {
	open := func(name string) *File {
		t.Helper()
		f, err := Open(testmodels.Path(t, name))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		return f
	}
	u := func(f *File, key string, want uint64) {
		t.Helper()
		if got, ok := f.Uint(key); !ok || got != want {
			t.Errorf("%s = %d, %v; want %d", key, got, ok, want)
		}
	}
	shape := func(f *File, name string, typ Type, want ...uint64) {
		t.Helper()
		ti, ok := f.Tensor(name)
		if !ok {
			t.Errorf("no tensor %s", name)
			return
		}
		if !reflect.DeepEqual(ti.Shape, want) || ti.Type != typ {
			t.Errorf("%s: %s %v, want %s %v", name, ti.Type, ti.Shape, typ, want)
		}
	}

	t.Run("stories260K", func(t *testing.T) {
		f := open("stories260K.gguf")
		if a := f.Architecture(); a != "llama" {
			t.Errorf("architecture %q", a)
		}
		if len(f.Tensors) != 48 {
			t.Errorf("%d tensors", len(f.Tensors))
		}
		if _, ok := f.Get("llama.rope.freq_base"); ok {
			t.Error("has llama.rope.freq_base")
		}
		if _, ok := f.Get("general.file_type"); ok {
			t.Error("has general.file_type")
		}
		toks, ok := f.Strings("tokenizer.ggml.tokens")
		if !ok || len(toks) != 512 || toks[0] != "<unk>" || toks[1] != "<s>" || toks[2] != "</s>" || toks[3] != "<0x00>" {
			t.Errorf("tokens: %d, %v", len(toks), ok)
		}
		if sc, ok := f.Float32s("tokenizer.ggml.scores"); !ok || len(sc) != 512 {
			t.Errorf("scores: %d, %v", len(sc), ok)
		}
		if tt, ok := f.Int32s("tokenizer.ggml.token_type"); !ok || len(tt) != 512 {
			t.Errorf("token_type: %d, %v", len(tt), ok)
		}
		if m, _ := f.String("tokenizer.ggml.model"); m != "llama" {
			t.Errorf("tokenizer model %q", m)
		}
		u(f, "llama.block_count", 5)
		u(f, "llama.embedding_length", 64)
		u(f, "llama.feed_forward_length", 172)
		u(f, "llama.attention.head_count", 8)
		u(f, "llama.attention.head_count_kv", 4)
		u(f, "llama.context_length", 2048)
		u(f, "llama.rope.dimension_count", 8)
		u(f, "tokenizer.ggml.bos_token_id", 1)
		u(f, "tokenizer.ggml.eos_token_id", 2)
		u(f, "tokenizer.ggml.unknown_token_id", 0)
		u(f, "tokenizer.ggml.seperator_token_id", 4294967295)
		u(f, "tokenizer.ggml.padding_token_id", 4294967295)
		if eps, ok := f.Float("llama.attention.layer_norm_rms_epsilon"); !ok || float32(eps) != 1e-5 {
			t.Errorf("rms eps %v, %v", eps, ok)
		}
		var params uint64
		for i := range f.Tensors {
			params += f.Tensors[i].Elements()
		}
		if params != 292800 {
			t.Errorf("%d parameters, want 292800", params)
		}
		shape(f, "output.weight", TypeF32, 64, 512)
		shape(f, "blk.0.ffn_down.weight", TypeF32, 172, 64)
	})
	t.Run("tiny-llama-Q4_K_M", func(t *testing.T) {
		f := open("tiny-llama-Q4_K_M.gguf")
		shape(f, "token_embd.weight", TypeQ4_K, 256, 512)
		shape(f, "blk.0.attn_k.weight", TypeQ4_K, 256, 64)
		shape(f, "blk.1.attn_v.weight", TypeQ6_K, 256, 64)
		shape(f, "output.weight", TypeQ6_K, 256, 512)
		shape(f, "output_norm.weight", TypeF32, 256)
		if fb, ok := f.Float("llama.rope.freq_base"); !ok || fb != 10000 {
			t.Errorf("freq_base %v, %v", fb, ok)
		}
	})
	t.Run("tiny-qwen3", func(t *testing.T) {
		f := open("tiny-qwen3-F32.gguf")
		if a := f.Architecture(); a != "qwen3" {
			t.Errorf("architecture %q", a)
		}
		u(f, "qwen3.attention.key_length", 64)
		shape(f, "blk.0.attn_q.weight", TypeF32, 256, 512)
		shape(f, "blk.0.attn_output.weight", TypeF32, 512, 256)
		shape(f, "blk.0.attn_q_norm.weight", TypeF32, 64)
		if _, ok := f.Tensor("output.weight"); ok {
			t.Error("tied model has output.weight")
		}
		if p, _ := f.String("tokenizer.ggml.pre"); p != "gpt-2" {
			t.Errorf("pre %q", p)
		}
		if toks, _ := f.Strings("tokenizer.ggml.tokens"); len(toks) != 1024 || toks[1023] != "<|endoftext|>" {
			t.Errorf("%d tokens", len(toks))
		}
	})
	t.Run("tiny-qwen3moe", func(t *testing.T) {
		for _, name := range []string{"tiny-qwen3moe-F32.gguf", "tiny-qwen3moe-Q4_K_M.gguf"} {
			f := open(name)
			if a := f.Architecture(); a != "qwen3moe" {
				t.Errorf("architecture %q", a)
			}
			u(f, "qwen3moe.expert_count", 8)
			u(f, "qwen3moe.expert_used_count", 2)
			u(f, "qwen3moe.expert_feed_forward_length", 64)
			if fb, ok := f.Float("qwen3moe.rope.freq_base"); !ok || fb != 1e6 {
				t.Errorf("freq_base %v, %v", fb, ok)
			}
			if name == "tiny-qwen3moe-F32.gguf" {
				shape(f, "blk.0.ffn_gate_exps.weight", TypeF32, 256, 64, 8)
				shape(f, "blk.0.ffn_up_exps.weight", TypeF32, 256, 64, 8)
				shape(f, "blk.1.ffn_down_exps.weight", TypeF32, 64, 256, 8)
				shape(f, "blk.0.ffn_gate_inp.weight", TypeF32, 256, 8)
			} else {
				shape(f, "blk.0.ffn_down_exps.weight", TypeQ5_0, 64, 256, 8)
				shape(f, "blk.1.ffn_down_exps.weight", TypeQ8_0, 64, 256, 8)
				shape(f, "blk.0.ffn_gate_exps.weight", TypeQ4_K, 256, 64, 8)
			}
		}
	})
	t.Run("tiny-vlm-mmproj", func(t *testing.T) {
		f := open("tiny-vlm-mmproj-F32.gguf")
		if a := f.Architecture(); a != "clip" {
			t.Errorf("architecture %q", a)
		}
		if p, _ := f.String("clip.projector_type"); p != "idefics3" {
			t.Errorf("projector_type %q", p)
		}
		if g, ok := f.Bool("clip.use_gelu"); !ok || !g {
			t.Errorf("use_gelu %v, %v", g, ok)
		}
		shape(f, "v.patch_embd.weight", TypeF32, 4, 4, 3, 64)
		shape(f, "mm.model.fc.weight", TypeF32, 256, 128)
	})
}

// TestVocabFiles opens the vocab-only files: no tensors, and they end right
// after the metadata.
func TestVocabFiles(t *testing.T) {
	dir := testmodels.Models(t)
	vocabs := map[string]struct {
		model  string
		tokens int
	}{
		"ggml-vocab-gpt-2.gguf":     {"gpt2", 50257},
		"ggml-vocab-llama-spm.gguf": {"llama", 32000},
		"ggml-vocab-bert-bge.gguf":  {"bert", 30522},
		"ggml-vocab-phi-3.gguf":     {"llama", 32064},
	}
	files, _ := filepath.Glob(filepath.Join(dir, "vocab", "*.gguf"))
	if len(files) != 12 {
		t.Errorf("%d vocab files, want 12", len(files))
	}
	unpadded := 0
	for _, p := range files {
		f, err := Open(p)
		if err != nil {
			t.Errorf("%v", err)
			continue
		}
		st, _ := os.Stat(p)
		if len(f.Tensors) != 0 || f.DataOffset > st.Size() {
			t.Errorf("%s: %d tensors, data offset %d of %d", p, len(f.Tensors), f.DataOffset, st.Size())
		}
		if st.Size()%32 != 0 {
			unpadded++
		}
		toks, ok := f.Strings("tokenizer.ggml.tokens")
		types, ok2 := f.Int32s("tokenizer.ggml.token_type")
		if !ok || !ok2 || len(toks) == 0 || len(types) != len(toks) {
			t.Errorf("%s: %d tokens (%v), %d token types (%v)", p, len(toks), ok, len(types), ok2)
		}
		if want, ok := vocabs[filepath.Base(p)]; ok {
			m, _ := f.String("tokenizer.ggml.model")
			if m != want.model || len(toks) != want.tokens {
				t.Errorf("%s: model %q with %d tokens, want %q with %d", p, m, len(toks), want.model, want.tokens)
			}
		}
		f.Close()
	}
	if unpadded == 0 {
		t.Error("no vocab file ends unaligned; the unpadded case is not exercised")
	}
}

// TestOpenMaps checks that Open does not copy tensor data into the Go heap:
// the data lies outside the heap's allocations (TensorData aliases the
// mapping) and opening allocates far less than the file size.
func TestOpenMaps(t *testing.T) {
	path := testmodels.Path(t, "tiny-qwen3moe-F32.gguf")
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	runtime.ReadMemStats(&after)
	defer f.Close()
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > uint64(st.Size())/8 {
		t.Errorf("Open allocated %d bytes for a %d-byte file", alloc, st.Size())
	}
	if f.unmap == nil {
		t.Fatal("file was not mapped")
	}
	ti, ok := f.Tensor("token_embd.weight")
	if !ok {
		t.Fatal("no token_embd.weight")
	}
	d := f.TensorData(ti)
	base := uintptr(unsafe.Pointer(unsafe.SliceData(f.data)))
	p := uintptr(unsafe.Pointer(unsafe.SliceData(d)))
	if want := base + uintptr(f.DataOffset) + uintptr(ti.Offset); p != want || len(f.data) != int(st.Size()) {
		t.Errorf("TensorData at %#x, want %#x inside the %d-byte mapping", p, want, len(f.data))
	}
}
