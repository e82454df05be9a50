package gguf

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"runtime"
	"strings"
	"testing"
)

// raw assembles GGUF bytes field by field, so tests can write anything.
type raw struct{ b []byte }

func (r *raw) u32(v uint32) *raw { r.b = binary.LittleEndian.AppendUint32(r.b, v); return r }
func (r *raw) u64(v uint64) *raw { r.b = binary.LittleEndian.AppendUint64(r.b, v); return r }
func (r *raw) bytes(p ...byte) *raw {
	r.b = append(r.b, p...)
	return r
}
func (r *raw) str(s string) *raw { r.u64(uint64(len(s))); r.b = append(r.b, s...); return r }

// header writes magic, version 3 and the counts.
func (r *raw) header(nTensors, nKV uint64) *raw {
	r.b = append(r.b, Magic...)
	return r.u32(3).u64(nTensors).u64(nKV)
}

// kvU32 writes a uint32 kv.
func (r *raw) kvU32(key string, v uint32) *raw { return r.str(key).u32(uint32(Uint32)).u32(v) }

// tensor writes a tensor info.
func (r *raw) tensor(name string, shape []uint64, typ Type, off uint64) *raw {
	r.str(name).u32(uint32(len(shape)))
	for _, d := range shape {
		r.u64(d)
	}
	return r.u32(uint32(typ)).u64(off)
}

// pad zero-pads to a multiple of a.
func (r *raw) pad(a int) *raw {
	for len(r.b)%a != 0 {
		r.b = append(r.b, 0)
	}
	return r
}

// zeros appends n zero bytes.
func (r *raw) zeros(n int) *raw { r.b = append(r.b, make([]byte, n)...); return r }

// TestRawBuilderValid makes sure the builder writes what the reader accepts,
// so that the failures below are caused by the corruption alone.
func TestRawBuilderValid(t *testing.T) {
	r := (&raw{}).header(2, 2).kvU32("a", 1).str("b").u32(uint32(Array)).u32(uint32(String)).u64(1).str("x").
		tensor("w", []uint64{4, 2}, TypeF32, 0).tensor("v", []uint64{32}, TypeQ8_0, 32).pad(32).zeros(32 + 34)
	f, err := Read(r.b)
	if err != nil {
		t.Fatal(err)
	}
	if len(f.KV) != 2 || len(f.Tensors) != 2 || f.Tensors[1].Size != 34 {
		t.Fatalf("unexpected parse: %+v", f)
	}
}

// hostileCase is a corrupt file and a substring its error must contain.
type hostileCase struct {
	name string
	data []byte
	want string
}

// hostileCases builds the corrupt-file table (also used as fuzz seeds).
func hostileCases(t testing.TB) []hostileCase {
	hdr := func(nT, nKV uint64) *raw { return (&raw{}).header(nT, nKV) }
	deep := hdr(0, 1).str("deep").u32(uint32(Array))
	for range MaxArrayDepth {
		deep.u32(uint32(Array)).u64(1)
	}
	deep.u32(uint32(Uint8)).u64(1).bytes(1)
	okDepth := hdr(0, 1).str("deep").u32(uint32(Array))
	for range MaxArrayDepth - 1 {
		okDepth.u32(uint32(Array)).u64(1)
	}
	okDepth.u32(uint32(Uint8)).u64(1).bytes(1)
	if _, err := Read(okDepth.b); err != nil {
		t.Fatalf("arrays nested %d deep rejected: %v", MaxArrayDepth, err)
	}
	f32 := func(name string, shape []uint64, off uint64) *raw {
		return hdr(1, 0).tensor(name, shape, TypeF32, off)
	}
	longName := strings.Repeat("x", MaxNameLen+1)

	return []hostileCase{
		{"empty", nil, `not a GGUF file (magic "", want "GGUF")`},
		{"bad magic", []byte("GGML\x03\x00\x00\x00"), `not a GGUF file (magic "GGML"`},
		{"magic only", []byte("GGUF"), "version at offset 4: file truncated (need 4 bytes, 0 remain)"},
		{"version 1", (&raw{}).bytes('G', 'G', 'U', 'F').u32(1).u32(0).u32(0).b, "version 1 is not supported"},
		{"version 0", (&raw{}).bytes('G', 'G', 'U', 'F').u32(0).u64(0).u64(0).b, "unsupported GGUF version 0"},
		{"version 4", (&raw{}).bytes('G', 'G', 'U', 'F').u32(4).u64(0).u64(0).b, "unsupported GGUF version 4"},
		{"big-endian", (&raw{}).bytes('G', 'G', 'U', 'F', 0, 0, 0, 3).zeros(16).b, "big-endian GGUF file (version 3 byte-swapped)"},
		{"truncated counts", hdr(0, 0).b[:20], "metadata kv count at offset 16: file truncated (need 8 bytes, 4 remain)"},
		{"absurd kv count", hdr(0, math.MaxUint64).b, "metadata kv count 18446744073709551615 is impossible"},
		{"absurd tensor count", hdr(1<<40, 0).zeros(100).b, "tensor count 1099511627776 is impossible"},
		{"tensor count vs metadata", hdr(3, 1).kvU32("k", 1).zeros(90).b, "tensor count 3 is impossible: 3 tensor infos need at least 33 bytes each, only 90 bytes remain after the metadata"},
		{"truncated key", hdr(0, 1).u64(20).bytes('a').zeros(8).b, "kv 0: key at offset 24: length 20 exceeds the 9 bytes remaining"},
		{"absurd key length", hdr(0, 1).u64(math.MaxUint64).zeros(20).b, "kv 0: key at offset 24: length 18446744073709551615 exceeds"},
		{"empty key", hdr(0, 1).str("").u32(uint32(Uint8)).bytes(1).zeros(1).b, "kv 0 at offset 24: empty key"},
		{"duplicate key", hdr(0, 2).kvU32("general.name", 1).kvU32("general.name", 2).b, `kv 1: duplicate key "general.name" (first defined by kv 0)`},
		{"unknown value type", hdr(0, 1).str("k").u32(13).zeros(8).b, `kv 0 "k": unknown value type 13 at offset 33`},
		{"truncated value", hdr(0, 1).str("k").u32(uint32(Uint64)).zeros(4).b, `kv 0 "k": uint64 value at offset 37: file truncated (need 8 bytes, 4 remain)`},
		{"absurd string length", hdr(0, 1).str("k").u32(uint32(String)).u64(1 << 62).zeros(8).b, `kv 0 "k": string at offset 37: length 4611686018427387904 exceeds the 8 bytes remaining`},
		{"absurd u32 array", hdr(0, 1).str("k").u32(uint32(Array)).u32(uint32(Uint32)).u64(1 << 61).zeros(12).b, `kv 0 "k": array at offset 37: 2305843009213693952 uint32 elements need at least 4 bytes each, only 12 bytes remain`},
		{"u32 array one short", hdr(0, 1).str("k").u32(uint32(Array)).u32(uint32(Uint32)).u64(4).zeros(15).b, "4 uint32 elements need at least 4 bytes each, only 15 bytes remain"},
		{"absurd string array", hdr(0, 1).str("tokenizer.ggml.tokens").u32(uint32(Array)).u32(uint32(String)).u64(math.MaxUint64).zeros(64).b, "18446744073709551615 string elements need at least 8 bytes each"},
		{"string array element too long", hdr(0, 1).str("k").u32(uint32(Array)).u32(uint32(String)).u64(2).str("a").u64(100).zeros(10).b, `kv 0 "k": array element 1: string at offset 58: length 100 exceeds the 10 bytes remaining`},
		{"absurd nested array", hdr(0, 1).str("k").u32(uint32(Array)).u32(uint32(Array)).u64(1 << 40).zeros(100).b, "1099511627776 array elements need at least 12 bytes each"},
		{"unknown array element type", hdr(0, 1).str("k").u32(uint32(Array)).u32(99).u64(0).b, `kv 0 "k": array at offset 37: unknown element type 99`},
		{"nested too deep", deep.b, fmt.Sprintf("arrays nested more than %d deep", MaxArrayDepth)},
		{"alignment zero", hdr(0, 1).kvU32(KeyAlignment, 0).b, "general.alignment = 0 is not a non-zero power of two"},
		{"alignment 48", hdr(0, 1).kvU32(KeyAlignment, 48).b, "general.alignment = 48 is not a non-zero power of two"},
		{"alignment string", hdr(0, 1).str(KeyAlignment).u32(uint32(String)).str("32").b, `general.alignment must be a positive integer, got string "32"`},
		{"alignment negative", hdr(0, 1).str(KeyAlignment).u32(uint32(Int32)).u32(math.MaxUint32).b, "general.alignment must be a positive integer, got int32 -1"},
		{"alignment huge", hdr(0, 1).str(KeyAlignment).u32(uint32(Uint64)).u64(1 << 40).b, "general.alignment = 1099511627776 is not a non-zero power of two that fits uint32"},
		{"empty tensor name", f32("", []uint64{1}, 0).zeros(64).b, "tensor 0 at offset 24: empty name"},
		{"tensor name too long", f32(longName, []uint64{1}, 0).zeros(64).b, `name "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"... is 64 bytes long, the limit is 63`},
		{"truncated tensor info", f32("w", []uint64{8, 8}, 0).b[:60], `tensor "w": data offset at offset 57: file truncated (need 8 bytes, 3 remain)`},
		{"duplicate tensor", hdr(2, 0).tensor("w", []uint64{1}, TypeF32, 0).tensor("w", []uint64{1}, TypeF32, 32).pad(32).zeros(64).b, `tensor 1: duplicate tensor name "w" (first defined by tensor 0)`},
		{"n_dims 0", f32("w", nil, 0).zeros(64).b, `tensor "w": n_dims 0 at offset 33 out of range [1, 4]`},
		{"n_dims 5", f32("w", []uint64{1, 1, 1, 1, 1}, 0).zeros(64).b, `tensor "w": n_dims 5 at offset 33 out of range [1, 4]`},
		{"dim above int64", f32("w", []uint64{1 << 63}, 0).zeros(64).b, `tensor "w": dimension 0 is 9223372036854775808, larger than int64`},
		{"shape overflow", f32("w", []uint64{1 << 32, 1 << 30, 1 << 2}, 0).zeros(64).b, `tensor "w": shape [4294967296 1073741824 4]: element count overflows int64`},
		{"size overflow", hdr(1, 0).tensor("w", []uint64{1 << 31, 1 << 31}, TypeF64, 0).zeros(64).b, `tensor "w": shape [2147483648 2147483648]: F64 data size overflows int64`},
		{"unknown tensor type", hdr(1, 0).tensor("w", []uint64{4}, 99, 0).zeros(64).b, `tensor "w": unknown tensor type 99 at offset 45`},
		{"not whole blocks", hdr(1, 0).tensor("blk.0.attn_q.weight", []uint64{100, 2}, TypeQ4_K, 0).zeros(2048).b, `tensor "blk.0.attn_q.weight": shape [100 2]: ne[0] = 100 is not a multiple of the Q4_K block size 256`},
		{"misaligned offset", f32("w", []uint64{1}, 4).zeros(64).b, `tensor "w": data offset 4 is not a multiple of the alignment 32`},
		{"past end of file", hdr(1, 0).tensor("blk.0.attn_q.weight", []uint64{8, 8}, TypeF32, 0).pad(32).zeros(255).b, `tensor "blk.0.attn_q.weight": data [96, 352) extends past end of file (size 351)`},
		{"offset past end", f32("w", []uint64{1}, 1<<20).pad(32).zeros(64).b, `tensor "w": data [1048640, 1048644) extends past end of file (size 128)`},
		{"offset overflow", f32("w", []uint64{1 << 40}, math.MaxUint64&^31).pad(32).b, `tensor "w": data offset 18446744073709551584 + size 4398046511104 overflows`},
		{"data section past end", f32("w", []uint64{1}, 0).b, "data section at offset 64 (tensor infos end at 57, alignment 32) starts past end of file (size 57)"},
		{"overlap", hdr(2, 0).tensor("a", []uint64{16}, TypeF32, 0).tensor("b", []uint64{8}, TypeF32, 32).pad(32).zeros(128).b, `tensor "b": data [32, 64) overlaps tensor "a" at [0, 64)`},
		{"overlap reversed order", hdr(2, 0).tensor("a", []uint64{8}, TypeF32, 32).tensor("b", []uint64{16}, TypeF32, 0).pad(32).zeros(128).b, `tensor "a": data [32, 64) overlaps tensor "b" at [0, 64)`},
		{"same offset", hdr(2, 0).tensor("a", []uint64{1}, TypeF32, 0).tensor("b", []uint64{1}, TypeF32, 0).pad(32).zeros(64).b, "overlaps tensor"},
	}
}

// TestHostile feeds corrupt files to Read: each must fail with an error
// naming the problem, and never panic.
func TestHostile(t *testing.T) {
	for _, c := range hostileCases(t) {
		t.Run(c.name, func(t *testing.T) {
			f, err := Read(c.data)
			if err == nil {
				t.Fatalf("Read succeeded (%d kvs, %d tensors), want error containing %q", len(f.KV), len(f.Tensors), c.want)
			}
			if !strings.HasPrefix(err.Error(), "gguf: ") || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %q\nwant it to contain %q", err, c.want)
			}
		})
	}
}

// TestTruncatedEverywhere cuts a valid file at every length: each cut that
// removes tensor data or header bytes must fail cleanly.
func TestTruncatedEverywhere(t *testing.T) {
	w := NewWriter()
	mustAddKV(t, w, "general.architecture", "llama")
	mustAddKV(t, w, "tokens", []string{"a", "bc", ""})
	mustAddKV(t, w, "scores", []float32{1, 2, 3})
	mustAddKV(t, w, "nested", []Value{{Type: Array, ElemType: Int16, V: []int16{1, 2}}})
	mustAddTensor(t, w, "a", TypeQ8_0, []uint64{32, 2}, pattern(68, 1))
	mustAddTensor(t, w, "b", TypeF16, []uint64{3}, pattern(6, 2))
	full := encode(t, w)
	f, err := Read(full)
	if err != nil {
		t.Fatal(err)
	}
	last := &f.Tensors[len(f.Tensors)-1]
	needed := int(f.DataOffset) + int(last.Offset+last.Size)
	for n := range len(full) {
		_, err := Read(full[:n])
		if n < needed && err == nil {
			t.Errorf("file cut to %d of %d bytes (data ends at %d) was accepted", n, len(full), needed)
		}
		if n >= needed && err != nil {
			t.Errorf("file cut to %d bytes, after all tensor data, rejected: %v", n, err)
		}
	}
}

// TestVocabOnlyUnpadded: a file with no tensors may end right after its
// metadata, without padding to the alignment.
func TestVocabOnlyUnpadded(t *testing.T) {
	w := NewWriter()
	mustAddKV(t, w, "tokenizer.ggml.tokens", []string{"a", "b", "c", "dd"})
	meta := encode(t, w)
	want := (&raw{}).header(0, 1).str("tokenizer.ggml.tokens").u32(uint32(Array)).u32(uint32(String)).u64(4).
		str("a").str("b").str("c").str("dd").b
	if !bytes.Equal(meta, want) || len(meta)%DefaultAlignment == 0 {
		t.Fatalf("writer made %d bytes, want %d unpadded bytes (not a multiple of %d)", len(meta), len(want), DefaultAlignment)
	}
	padded := (&raw{b: bytes.Clone(meta)}).pad(DefaultAlignment).b
	for _, data := range [][]byte{meta, padded} {
		f, err := Read(data)
		if err != nil {
			t.Fatalf("%d-byte file: %v", len(data), err)
		}
		if f.DataOffset > int64(len(data)) {
			t.Errorf("DataOffset %d beyond the %d-byte file", f.DataOffset, len(data))
		}
		if toks, ok := f.Strings("tokenizer.ggml.tokens"); !ok || len(toks) != 4 {
			t.Errorf("tokens = %v, %v", toks, ok)
		}
	}
}

// TestTensorDataForeign: TensorData of an info that does not fit the file
// returns nil instead of panicking.
func TestTensorDataForeign(t *testing.T) {
	w := NewWriter()
	mustAddTensor(t, w, "a", TypeF32, []uint64{4}, pattern(16, 0))
	f, err := Read(encode(t, w))
	if err != nil {
		t.Fatal(err)
	}
	for _, ti := range []*TensorInfo{nil, {Offset: 1 << 20, Size: 4}, {Offset: math.MaxUint64, Size: 2}, {Size: math.MaxUint64}} {
		if d := f.TensorData(ti); d != nil {
			t.Errorf("TensorData(%+v) = %d bytes, want nil", ti, len(d))
		}
	}
}

// TestAllocationBounded: whatever counts a file claims, Read allocates
// memory proportional to the file's size, not to the counts: a count that
// the remaining bytes cannot hold is rejected before anything is allocated.
func TestAllocationBounded(t *testing.T) {
	const body = 1 << 20
	hdr := func(nT, nKV uint64) *raw { return (&raw{}).header(nT, nKV) }
	cases := map[string][]byte{
		"kv count":      hdr(0, body/14).zeros(body).b,
		"tensor count":  hdr(body/33, 0).zeros(body).b,
		"string array":  hdr(0, 1).str("k").u32(uint32(Array)).u32(uint32(String)).u64(body / 8).zeros(body - 8).b,
		"nested arrays": hdr(0, 1).str("k").u32(uint32(Array)).u32(uint32(Array)).u64(body / 12).u32(uint32(Array)).u64(body/12 - 2).zeros(body).b,
		"u64 array":     hdr(0, 1).str("k").u32(uint32(Array)).u32(uint32(Uint64)).u64(body / 8).zeros(body - 1).b,
		"valid strings": hdr(0, 1).str("k").u32(uint32(Array)).u32(uint32(String)).u64(body / 8).zeros(body).b,
	}
	nested := hdr(0, 1).str("k").u32(uint32(Array)).u32(uint32(Array)).u64(body / 12)
	cases["valid empty arrays"] = nested.zeros(body / 12 * 12).b
	many := hdr(body/34, 1).kvU32(KeyAlignment, 1)
	for i := range body / 34 {
		many.str(fmt.Sprintf("%05x", i)).u32(1).u64(1).u32(uint32(TypeI8)).u64(uint64(i))
	}
	cases["many tensors"] = many.zeros(body / 34).b
	kvs := hdr(0, body/16)
	for i := range body / 16 {
		kvs.str(fmt.Sprintf("%03x", i)).u32(uint32(Uint8)).bytes(0)
	}
	cases["many kvs"] = kvs.b
	for name, data := range cases {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		_, err := Read(data)
		runtime.ReadMemStats(&after)
		alloc := after.TotalAlloc - before.TotalAlloc
		t.Logf("%s: %d bytes allocated for a %d-byte file (err: %v)", name, alloc, len(data), err)
		// Tables of tiny entries (16-byte kvs, 34-byte tensor infos) cost
		// a few hundred bytes of Go memory per entry; everything else must
		// stay within a small multiple of the file.
		limit := 4 * uint64(len(data))
		if strings.HasPrefix(name, "many") {
			limit = 32 * uint64(len(data))
		}
		if alloc > limit {
			t.Errorf("%s: %d bytes allocated for a %d-byte file", name, alloc, len(data))
		}
	}
}
