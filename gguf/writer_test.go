package gguf

import (
	"bytes"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// encode writes w to memory, failing the test on error.
func encode(t testing.TB, w *Writer) []byte {
	t.Helper()
	var buf bytes.Buffer
	n, err := w.WriteTo(&buf)
	if err != nil {
		t.Fatalf("WriteTo: %v", err)
	}
	if n != int64(buf.Len()) {
		t.Fatalf("WriteTo returned %d, wrote %d bytes", n, buf.Len())
	}
	return buf.Bytes()
}

func mustAddKV(t testing.TB, w *Writer, key string, v any) {
	t.Helper()
	if err := w.AddKV(key, v); err != nil {
		t.Fatalf("AddKV(%q): %v", key, err)
	}
}

func mustAddTensor(t testing.TB, w *Writer, name string, typ Type, shape []uint64, data []byte) {
	t.Helper()
	if err := w.AddTensor(name, typ, shape, data); err != nil {
		t.Fatalf("AddTensor(%q): %v", name, err)
	}
}

// pattern returns n bytes of a recognisable pattern seeded by seed.
func pattern(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7) + seed
	}
	return b
}

// TestRoundTripValues writes one key of every scalar and array type and
// reads it back.
func TestRoundTripValues(t *testing.T) {
	nested := []Value{
		{Type: Array, ElemType: Uint32, V: []uint32{1, 2, 3}},
		{Type: Array, ElemType: String, V: []string{"a", ""}},
		{Type: Array, ElemType: Array, V: []Value{{Type: Array, ElemType: Int8, V: []int8{-1}}}},
	}
	cases := []struct {
		key      string
		in       any
		typ, elt ValueType
		want     any // V read back; nil means same as in
	}{
		{"u8", uint8(200), Uint8, 0, nil},
		{"i8", int8(-100), Int8, 0, nil},
		{"u16", uint16(60000), Uint16, 0, nil},
		{"i16", int16(-30000), Int16, 0, nil},
		{"u32", uint32(4294967295), Uint32, 0, nil},
		{"i32", int32(-2147483648), Int32, 0, nil},
		{"f32", float32(1e-5), Float32, 0, nil},
		{"bool.t", true, Bool, 0, nil},
		{"bool.f", false, Bool, 0, nil},
		{"str", "héllo ▁wörld", String, 0, nil},
		{"str.empty", "", String, 0, nil},
		{"u64", uint64(math.MaxUint64), Uint64, 0, nil},
		{"i64", int64(math.MinInt64), Int64, 0, nil},
		{"f64", math.Pi, Float64, 0, nil},
		{"int", 7, Int32, 0, int32(7)},
		{"value", Value{Type: Uint16, V: uint16(9)}, Uint16, 0, uint16(9)},
		{"a.u8", []uint8{0, 1, 255}, Array, Uint8, nil},
		{"a.i8", []int8{-128, 0, 127}, Array, Int8, nil},
		{"a.u16", []uint16{0, 65535}, Array, Uint16, nil},
		{"a.i16", []int16{-32768, 32767}, Array, Int16, nil},
		{"a.u32", []uint32{0, 1 << 31, math.MaxUint32}, Array, Uint32, nil},
		{"a.i32", []int32{math.MinInt32, -1, math.MaxInt32}, Array, Int32, nil},
		{"a.f32", []float32{-1.5, 0, float32(math.Inf(1))}, Array, Float32, nil},
		{"a.bool", []bool{true, false, true}, Array, Bool, nil},
		{"a.str", []string{"<unk>", "", "▁t", "\x00\xff"}, Array, String, nil},
		{"a.u64", []uint64{0, math.MaxUint64}, Array, Uint64, nil},
		{"a.i64", []int64{math.MinInt64, math.MaxInt64}, Array, Int64, nil},
		{"a.f64", []float64{math.SmallestNonzeroFloat64, -2}, Array, Float64, nil},
		{"a.empty", []string{}, Array, String, nil},
		{"a.int", []int{1, -2}, Array, Int32, []int32{1, -2}},
		{"a.nested", nested, Array, Array, nil},
	}
	for _, version := range []uint32{2, 3} {
		w := NewWriter()
		w.SetVersion(version)
		for _, c := range cases {
			mustAddKV(t, w, c.key, c.in)
		}
		f, err := Read(encode(t, w))
		if err != nil {
			t.Fatalf("v%d: Read: %v", version, err)
		}
		if f.Version != version {
			t.Errorf("Version = %d, want %d", f.Version, version)
		}
		if len(f.KV) != len(cases) {
			t.Fatalf("v%d: %d kvs, want %d", version, len(f.KV), len(cases))
		}
		for i, c := range cases {
			want := c.want
			if want == nil {
				want = c.in
			}
			kv := f.KV[i]
			if kv.Key != c.key {
				t.Errorf("kv %d key %q, want %q (file order)", i, kv.Key, c.key)
			}
			if kv.Value.Type != c.typ || kv.Value.ElemType != c.elt {
				t.Errorf("%s: type %s/%s, want %s/%s", c.key, kv.Value.Type, kv.Value.ElemType, c.typ, c.elt)
			}
			if !reflect.DeepEqual(kv.Value.V, want) {
				t.Errorf("%s: read %#v, want %#v", c.key, kv.Value.V, want)
			}
			if got, ok := f.Get(c.key); !ok || !reflect.DeepEqual(got, kv.Value) {
				t.Errorf("Get(%q) = %v, %v", c.key, got, ok)
			}
		}
	}
}

// TestAccessors checks the typed getters, including the conversions they
// must and must not make.
func TestAccessors(t *testing.T) {
	w := NewWriter()
	mustAddKV(t, w, "general.architecture", "llama")
	mustAddKV(t, w, "u32", uint32(4294967295))
	mustAddKV(t, w, "i8neg", int8(-3))
	mustAddKV(t, w, "u64big", uint64(1<<63))
	mustAddKV(t, w, "f32", float32(0.5))
	mustAddKV(t, w, "b", true)
	mustAddKV(t, w, "s", "x")
	mustAddKV(t, w, "toks", []string{"a", "b"})
	mustAddKV(t, w, "f32s", []float32{1, 2})
	mustAddKV(t, w, "f64s", []float64{0.25, -1})
	mustAddKV(t, w, "u8s", []uint8{1, 255})
	mustAddKV(t, w, "u32s.fit", []uint32{0, math.MaxInt32})
	mustAddKV(t, w, "u32s.big", []uint32{0, math.MaxInt32 + 1})
	mustAddKV(t, w, "i64s", []int64{-1 << 31, 1<<31 - 1})
	mustAddKV(t, w, "i64s.big", []int64{-1<<31 - 1})
	f, err := Read(encode(t, w))
	if err != nil {
		t.Fatal(err)
	}
	if a := f.Architecture(); a != "llama" {
		t.Errorf("Architecture = %q", a)
	}
	check := func(name string, got any, ok bool, want any, wantOK bool) {
		t.Helper()
		if ok != wantOK || (ok && !reflect.DeepEqual(got, want)) {
			t.Errorf("%s = %v, %v; want %v, %v", name, got, ok, want, wantOK)
		}
	}
	u, ok := f.Uint("u32")
	check("Uint(u32)", u, ok, uint64(4294967295), true)
	u, ok = f.Uint("i8neg")
	check("Uint(i8neg)", u, ok, nil, false)
	u, ok = f.Uint("u64big")
	check("Uint(u64big)", u, ok, uint64(1<<63), true)
	u, ok = f.Uint("f32")
	check("Uint(f32)", u, ok, nil, false)
	u, ok = f.Uint("missing")
	check("Uint(missing)", u, ok, nil, false)
	i, ok := f.Int("i8neg")
	check("Int(i8neg)", i, ok, int64(-3), true)
	i, ok = f.Int("u32")
	check("Int(u32)", i, ok, int64(4294967295), true)
	i, ok = f.Int("u64big")
	check("Int(u64big)", i, ok, nil, false)
	x, ok := f.Float("f32")
	check("Float(f32)", x, ok, 0.5, true)
	x, ok = f.Float("u64big")
	check("Float(u64big)", x, ok, float64(1<<63), true)
	x, ok = f.Float("i8neg")
	check("Float(i8neg)", x, ok, -3.0, true)
	x, ok = f.Float("s")
	check("Float(s)", x, ok, nil, false)
	b, ok := f.Bool("b")
	check("Bool(b)", b, ok, true, true)
	b, ok = f.Bool("u32")
	check("Bool(u32)", b, ok, nil, false)
	s, ok := f.String("s")
	check("String(s)", s, ok, "x", true)
	s, ok = f.String("toks")
	check("String(toks)", s, ok, nil, false)
	ss, ok := f.Strings("toks")
	check("Strings(toks)", ss, ok, []string{"a", "b"}, true)
	ss, ok = f.Strings("s")
	check("Strings(s)", ss, ok, nil, false)
	fs, ok := f.Float32s("f32s")
	check("Float32s(f32s)", fs, ok, []float32{1, 2}, true)
	fs, ok = f.Float32s("f64s")
	check("Float32s(f64s)", fs, ok, []float32{0.25, -1}, true)
	fs, ok = f.Float32s("u8s")
	check("Float32s(u8s)", fs, ok, nil, false)
	is, ok := f.Int32s("u8s")
	check("Int32s(u8s)", is, ok, []int32{1, 255}, true)
	is, ok = f.Int32s("u32s.fit")
	check("Int32s(u32s.fit)", is, ok, []int32{0, math.MaxInt32}, true)
	is, ok = f.Int32s("u32s.big")
	check("Int32s(u32s.big)", is, ok, nil, false)
	is, ok = f.Int32s("i64s")
	check("Int32s(i64s)", is, ok, []int32{math.MinInt32, math.MaxInt32}, true)
	is, ok = f.Int32s("i64s.big")
	check("Int32s(i64s.big)", is, ok, nil, false)
	is, ok = f.Int32s("f32s")
	check("Int32s(f32s)", is, ok, nil, false)
}

// TestRoundTripTensors writes tensors of every type, with several
// alignments, and reads back their infos and data.
func TestRoundTripTensors(t *testing.T) {
	type tensor struct {
		name  string
		typ   Type
		shape []uint64
	}
	var tensors []tensor
	for typ := range typeInfos {
		bs := uint64(typ.BlockSize())
		tensors = append(tensors, tensor{"t." + typ.String(), typ, []uint64{2 * bs, 3}})
	}
	tensors = append(tensors,
		tensor{"experts", TypeF32, []uint64{4, 3, 2}},
		tensor{"four", TypeF16, []uint64{1, 2, 3, 4}},
		tensor{"odd", TypeI8, []uint64{5}},
		tensor{"empty", TypeF32, []uint64{0, 3}},
	)
	for _, align := range []int{1, 8, 32, 64, 4096} {
		w := NewWriter()
		w.SetAlignment(align)
		mustAddKV(t, w, "general.architecture", "test")
		datas := map[string][]byte{}
		for i, tt := range tensors {
			n := 1
			for _, d := range tt.shape {
				n *= int(d)
			}
			size := n / tt.typ.BlockSize() * tt.typ.BlockBytes()
			datas[tt.name] = pattern(size, byte(i))
			mustAddTensor(t, w, tt.name, tt.typ, tt.shape, datas[tt.name])
		}
		raw := encode(t, w)
		f, err := Read(raw)
		if err != nil {
			t.Fatalf("align %d: %v", align, err)
		}
		if f.Alignment != align {
			t.Errorf("Alignment = %d, want %d", f.Alignment, align)
		}
		if _, ok := f.Get(KeyAlignment); ok != (align != DefaultAlignment) {
			t.Errorf("align %d: general.alignment present = %v", align, ok)
		}
		if f.DataOffset%int64(align) != 0 {
			t.Errorf("DataOffset %d not aligned to %d", f.DataOffset, align)
		}
		if len(f.Tensors) != len(tensors) {
			t.Fatalf("%d tensors, want %d", len(f.Tensors), len(tensors))
		}
		for i, tt := range tensors {
			ti := &f.Tensors[i]
			if ti.Name != tt.name || ti.Type != tt.typ || !reflect.DeepEqual(ti.Shape, tt.shape) {
				t.Errorf("tensor %d = %q %s %v, want %q %s %v", i, ti.Name, ti.Type, ti.Shape, tt.name, tt.typ, tt.shape)
			}
			if ti.Offset%uint64(align) != 0 {
				t.Errorf("%s: offset %d not aligned", tt.name, ti.Offset)
			}
			if p, ok := f.Tensor(tt.name); !ok || p != ti {
				t.Errorf("Tensor(%q) = %v, %v", tt.name, p, ok)
			}
			got := f.TensorData(ti)
			if !bytes.Equal(got, datas[tt.name]) || uint64(len(got)) != ti.Size {
				t.Errorf("%s: data mismatch (len %d, size %d, want len %d)", tt.name, len(got), ti.Size, len(datas[tt.name]))
			}
		}
		if _, ok := f.Tensor("nope"); ok {
			t.Error("Tensor(nope) found")
		}
		// Writing what was read gives the same bytes.
		if again := rewrite(t, f); !bytes.Equal(again, raw) {
			t.Errorf("align %d: rewrite differs from the original", align)
		}
	}
}

// rewrite copies a parsed file through the Writer.
func rewrite(t testing.TB, f *File) []byte {
	t.Helper()
	w := NewWriter()
	w.SetVersion(f.Version)
	w.SetAlignment(f.Alignment)
	for _, kv := range f.KV {
		mustAddKV(t, w, kv.Key, kv.Value)
	}
	for i := range f.Tensors {
		ti := &f.Tensors[i]
		mustAddTensor(t, w, ti.Name, ti.Type, ti.Shape, f.TensorData(ti))
	}
	return encode(t, w)
}

func TestElements(t *testing.T) {
	for _, c := range []struct {
		shape []uint64
		want  uint64
	}{{[]uint64{256, 64, 8}, 131072}, {[]uint64{5}, 5}, {[]uint64{3, 0}, 0}} {
		ti := TensorInfo{Shape: c.shape}
		if got := ti.Elements(); got != c.want {
			t.Errorf("Elements(%v) = %d, want %d", c.shape, got, c.want)
		}
	}
}

// TestWriterRejects checks the writer's own validation.
func TestWriterRejects(t *testing.T) {
	w := NewWriter()
	mustAddKV(t, w, "k", uint8(1))
	mustAddTensor(t, w, "t", TypeF32, []uint64{2}, make([]byte, 8))
	deep := Value{Type: Array, ElemType: Uint8, V: []uint8{1}}
	for range MaxArrayDepth {
		deep = Value{Type: Array, ElemType: Array, V: []Value{deep}}
	}
	kvCases := []struct {
		key  string
		v    any
		want string
	}{
		{"", uint8(1), "empty key"},
		{"k", uint8(2), "duplicate key"},
		{"x", struct{}{}, "unsupported Go type"},
		{"x", 1 << 40, "does not fit int32"},
		{"x", []int{1 << 40}, "does not fit int32"},
		{"x", Value{Type: Uint32, V: "s"}, "does not match"},
		{"x", Value{Type: Int32, V: 7}, "value of Go type int does not match type int32"},
		{"x", Value{Type: Array, ElemType: Int32, V: []int{1}}, "does not match"},
		{"x", Value{Type: Array, ElemType: Uint32, V: []int32{1}}, "does not match"},
		{"x", Value{Type: 42, V: 1}, "unknown value type 42"},
		{"x", []Value{{Type: Uint8, V: uint8(1)}}, "has type uint8"},
		{"x", deep, "nested more than"},
	}
	for _, c := range kvCases {
		if err := w.AddKV(c.key, c.v); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("AddKV(%q, %#v) = %v, want error containing %q", c.key, c.v, err, c.want)
		}
	}
	tCases := []struct {
		name  string
		typ   Type
		shape []uint64
		n     int
		want  string
	}{
		{"", TypeF32, []uint64{1}, 4, "empty name"},
		{strings.Repeat("n", 64), TypeF32, []uint64{1}, 4, "longer than"},
		{"t", TypeF32, []uint64{1}, 4, "duplicate tensor name"},
		{"u", 99, []uint64{1}, 4, "unknown tensor type"},
		{"u", TypeF32, nil, 0, "0 dimensions"},
		{"u", TypeF32, []uint64{1, 1, 1, 1, 1}, 4, "5 dimensions"},
		{"u", TypeQ8_0, []uint64{16}, 17, "not a multiple of the Q8_0 block size 32"},
		{"u", TypeF32, []uint64{3}, 8, "8 data bytes"},
		{"u", TypeF32, []uint64{1 << 40, 1 << 40}, 0, "overflows"},
	}
	for _, c := range tCases {
		if err := w.AddTensor(c.name, c.typ, c.shape, make([]byte, c.n)); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("AddTensor(%q, %s, %v) = %v, want error containing %q", c.name, c.typ, c.shape, err, c.want)
		}
	}
	w.SetAlignment(48)
	if _, err := w.WriteTo(&bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), "alignment 48") {
		t.Errorf("WriteTo with alignment 48: %v", err)
	}
}

// TestWriteFileOpen writes a file to disk and opens it (through mmap).
func TestWriteFileOpen(t *testing.T) {
	w := NewWriter()
	mustAddKV(t, w, "general.architecture", "llama")
	data := pattern(64*4, 3)
	mustAddTensor(t, w, "token_embd.weight", TypeF32, []uint64{8, 8}, data)
	path := filepath.Join(t.TempDir(), "m.gguf")
	if err := w.WriteFile(path); err != nil {
		t.Fatal(err)
	}
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	ti, ok := f.Tensor("token_embd.weight")
	if !ok || !bytes.Equal(f.TensorData(ti), data) {
		t.Fatalf("tensor data mismatch")
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if f.TensorData(ti) != nil {
		t.Error("TensorData after Close is not nil")
	}
	if err := f.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if err := w.WriteFile(filepath.Join(t.TempDir(), "no", "such", "dir")); err == nil {
		t.Error("WriteFile into a missing directory succeeded")
	}
}

// TestOpenErrors checks Open on paths that are not GGUF files.
func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty.gguf")
	if err := os.WriteFile(empty, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(dir, "bad.gguf")
	if err := os.WriteFile(bad, []byte("GGUF\x01\x00\x00\x00"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ path, want string }{
		{filepath.Join(dir, "missing.gguf"), "no such file"},
		{empty, "empty.gguf: gguf: not a GGUF file"},
		{bad, "bad.gguf: gguf: GGUF version 1 is not supported"},
		{dir, "is a directory"},
	} {
		f, err := Open(c.path)
		if err == nil {
			f.Close()
			t.Errorf("Open(%s) succeeded", c.path)
		} else if !strings.Contains(err.Error(), c.want) {
			t.Errorf("Open(%s): %v, want %q", c.path, err, c.want)
		}
	}
}
