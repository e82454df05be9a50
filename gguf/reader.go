// Package gguf reads and writes GGUF model files (v2 and v3).
//
// Open maps a file read-only into memory: tensor data is never copied into
// the Go heap, and TensorData returns slices of the mapping. Read parses a
// file already in memory. Both validate the whole header (metadata, tensor
// infos, data layout) and return an error naming what is wrong and where for
// any malformed or hostile input.
package gguf

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/bits"
	"sort"
)

// Magic is the four bytes every GGUF file starts with.
const Magic = "GGUF"

// DefaultAlignment is the data alignment used when a file has no
// general.alignment key.
const DefaultAlignment = 32

// MaxDims is the largest number of tensor dimensions accepted
// (GGML_MAX_DIMS).
const MaxDims = 4

// MaxNameLen is the longest tensor name accepted, in bytes (GGML_MAX_NAME
// minus the terminating NUL).
const MaxNameLen = 63

// MaxArrayDepth is how deeply arrays may nest (an array of arrays has depth 2).
const MaxArrayDepth = 4

// prealloc caps how many entries are allocated ahead of parsing them.
// (Arrays are sized exactly, after a validating pass.)
const prealloc = 1024

// KeyAlignment is the metadata key holding the data alignment.
const KeyAlignment = "general.alignment"

// TensorInfo describes one tensor of a file.
type TensorInfo struct {
	Name   string
	Shape  []uint64 // ggml order: Shape[0] (ne[0]) is the contiguous dimension
	Type   Type
	Offset uint64 // relative to the start of the data section
	Size   uint64 // bytes
}

// Elements returns the number of elements of t (the product of its shape).
func (t *TensorInfo) Elements() uint64 {
	n := uint64(1)
	for _, d := range t.Shape {
		n *= d
	}
	return n
}

// File is a parsed GGUF file.
type File struct {
	Version    uint32
	KV         []KV         // file order
	Tensors    []TensorInfo // file order
	Alignment  int
	DataOffset int64 // absolute file offset of the data section

	data    []byte // the whole file
	unmap   func() error
	loaded  Loading
	kvIndex map[string]int
	tIndex  map[string]int
}

// Read parses a GGUF file held in memory. Tensor data returned by
// TensorData aliases data; metadata (keys, values, names) is copied.
func Read(data []byte) (*File, error) {
	d := &decoder{b: data}
	f := &File{data: data}
	if err := f.parse(d); err != nil {
		return nil, err
	}
	return f, nil
}

// Close releases the file's mapping, if any. TensorData returns nil after
// Close, and slices it returned before must no longer be used; metadata and
// tensor infos stay valid. Calling Close more than once is harmless.
func (f *File) Close() error {
	f.data = nil
	if f.unmap != nil {
		u := f.unmap
		f.unmap = nil
		return u()
	}
	return nil
}

// Get returns the metadata value stored under key.
func (f *File) Get(key string) (Value, bool) {
	i, ok := f.kvIndex[key]
	if !ok {
		return Value{}, false
	}
	return f.KV[i].Value, true
}

// String returns the string value stored under key.
func (f *File) String(key string) (string, bool) {
	v, ok := f.Get(key)
	if !ok || v.Type != String {
		return "", false
	}
	s, ok := v.V.(string)
	return s, ok
}

// Uint returns the value under key if it is an integer of any type holding a
// non-negative value.
func (f *File) Uint(key string) (uint64, bool) {
	v, ok := f.Get(key)
	if !ok {
		return 0, false
	}
	return v.Uint()
}

// Int returns the value under key if it is an integer of any type that fits
// an int64.
func (f *File) Int(key string) (int64, bool) {
	v, ok := f.Get(key)
	if !ok {
		return 0, false
	}
	return v.Int()
}

// Float returns the value under key if it is a number of any type.
func (f *File) Float(key string) (float64, bool) {
	v, ok := f.Get(key)
	if !ok {
		return 0, false
	}
	return v.Float()
}

// Bool returns the value under key if it is a bool.
func (f *File) Bool(key string) (bool, bool) {
	v, ok := f.Get(key)
	if !ok || v.Type != Bool {
		return false, false
	}
	b, ok := v.V.(bool)
	return b, ok
}

// Strings returns the value under key if it is an array of strings. The
// slice is shared with f: do not modify it.
func (f *File) Strings(key string) ([]string, bool) {
	v, ok := f.Get(key)
	if !ok {
		return nil, false
	}
	return v.Strings()
}

// Float32s returns the value under key if it is an array of float32 or
// float64 (converted). A float32 slice is shared with f: do not modify it.
func (f *File) Float32s(key string) ([]float32, bool) {
	v, ok := f.Get(key)
	if !ok {
		return nil, false
	}
	return v.Float32s()
}

// Int32s returns the value under key if it is an array of integers that all
// fit an int32. An int32 slice is shared with f: do not modify it.
func (f *File) Int32s(key string) ([]int32, bool) {
	v, ok := f.Get(key)
	if !ok {
		return nil, false
	}
	return v.Int32s()
}

// Architecture returns general.architecture, or "" when absent.
func (f *File) Architecture() string {
	s, _ := f.String("general.architecture")
	return s
}

// Tensor returns the info of the tensor called name. The pointer refers into
// f.Tensors.
func (f *File) Tensor(name string) (*TensorInfo, bool) {
	i, ok := f.tIndex[name]
	if !ok {
		return nil, false
	}
	return &f.Tensors[i], true
}

// TensorData returns the bytes of t's data: a slice of the mapped (or
// in-memory) file of length t.Size, which must not be modified. It returns
// nil if t does not lie inside the file or f has been closed.
func (f *File) TensorData(t *TensorInfo) []byte {
	if t == nil || f.DataOffset < 0 {
		return nil
	}
	start, c1 := bits.Add64(uint64(f.DataOffset), t.Offset, 0)
	end, c2 := bits.Add64(start, t.Size, 0)
	if c1 != 0 || c2 != 0 || end > uint64(len(f.data)) {
		return nil
	}
	return f.data[start:end:end]
}

// clip quotes s for an error message, shortened if long.
func clip(s string) string {
	if len(s) > 32 {
		return fmt.Sprintf("%q...", s[:32])
	}
	return fmt.Sprintf("%q", s)
}

// describe formats v briefly for an error message.
func describe(v Value) string {
	switch v.Type {
	case Array:
		return fmt.Sprintf("array of %d %s", v.Len(), v.ElemType)
	case String:
		s, _ := v.V.(string)
		if len(s) > 40 {
			s = s[:40] + "..."
		}
		return fmt.Sprintf("string %q", s)
	}
	return fmt.Sprintf("%s %v", v.Type, v.V)
}

// decoder reads little-endian values from b, tracking the offset.
type decoder struct {
	b   []byte
	off int
}

func (d *decoder) remaining() int { return len(d.b) - d.off }

// need fails unless n more bytes are available.
func (d *decoder) need(n uint64, what string) error {
	if n > uint64(d.remaining()) {
		return fmt.Errorf("%s at offset %d: file truncated (need %d bytes, %d remain)", what, d.off, n, d.remaining())
	}
	return nil
}

func (d *decoder) bytes(n int) []byte {
	s := d.b[d.off : d.off+n]
	d.off += n
	return s
}

func (d *decoder) u32(what string) (uint32, error) {
	if err := d.need(4, what); err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint32(d.bytes(4)), nil
}

func (d *decoder) u64(what string) (uint64, error) {
	if err := d.need(8, what); err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint64(d.bytes(8)), nil
}

// str reads a string (uint64 length + bytes), copying it.
func (d *decoder) str(what string) (string, error) {
	b, err := d.strBytes(what)
	return string(b), err
}

// skipStr validates and skips a string.
func (d *decoder) skipStr(what string) error {
	_, err := d.strBytes(what)
	return err
}

// strBytes reads a string's bytes without copying them.
func (d *decoder) strBytes(what string) ([]byte, error) {
	at := d.off
	if d.remaining() < 8 {
		return nil, fmt.Errorf("%s length at offset %d: file truncated (need 8 bytes, %d remain)", what, d.off, d.remaining())
	}
	n := binary.LittleEndian.Uint64(d.bytes(8))
	if n > uint64(d.remaining()) {
		return nil, fmt.Errorf("%s at offset %d: length %d exceeds the %d bytes remaining", what, at, n, d.remaining())
	}
	return d.bytes(int(n)), nil
}

func (f *File) parse(d *decoder) error {
	if len(d.b) < 4 || string(d.b[:4]) != Magic {
		n := min(len(d.b), 4)
		return fmt.Errorf("gguf: not a GGUF file (magic %q, want %q)", d.b[:n], Magic)
	}
	d.off = 4
	v, err := d.u32("version")
	if err != nil {
		return fmt.Errorf("gguf: %w", err)
	}
	switch {
	case v == 2 || v == 3:
	case v == 1:
		return fmt.Errorf("gguf: GGUF version 1 is not supported (only versions 2 and 3)")
	case v&0xffff == 0 && bits.ReverseBytes32(v) <= 3 && v != 0:
		return fmt.Errorf("gguf: big-endian GGUF file (version %d byte-swapped) is not supported", bits.ReverseBytes32(v))
	default:
		return fmt.Errorf("gguf: unsupported GGUF version %d (only versions 2 and 3)", v)
	}
	f.Version = v

	nTensors, err := d.u64("tensor count")
	if err != nil {
		return fmt.Errorf("gguf: %w", err)
	}
	nKV, err := d.u64("metadata kv count")
	if err != nil {
		return fmt.Errorf("gguf: %w", err)
	}
	// Smallest possible kv: key length 8 + 1 key byte + type 4 + 1 value byte.
	const minKV = 8 + 1 + 4 + 1
	if nKV > uint64(d.remaining()/minKV) {
		return fmt.Errorf("gguf: metadata kv count %d is impossible: %d kvs need at least %d bytes each, only %d bytes remain after the header", nKV, nKV, minKV, d.remaining())
	}
	// Smallest possible tensor info: name length 8 + 1 name byte + n_dims 4
	// + one dim 8 + type 4 + offset 8 (checked again after the metadata).
	const minTensor = 8 + 1 + 4 + 8 + 4 + 8
	if nTensors > uint64(d.remaining()/minTensor) {
		return fmt.Errorf("gguf: tensor count %d is impossible: %d tensor infos need at least %d bytes each, only %d bytes remain after the header", nTensors, nTensors, minTensor, d.remaining())
	}

	// Counts are only bounded by the file size here: grow the tables as
	// entries are actually parsed rather than preallocating by the count.
	f.KV = make([]KV, 0, min(nKV, prealloc))
	f.kvIndex = make(map[string]int, min(nKV, prealloc))
	for i := range int(nKV) {
		kv, err := f.readKV(d, i)
		if err != nil {
			return err
		}
		if j, dup := f.kvIndex[kv.Key]; dup {
			return fmt.Errorf("gguf: kv %d: duplicate key %s (first defined by kv %d)", i, clip(kv.Key), j)
		}
		f.kvIndex[kv.Key] = len(f.KV)
		f.KV = append(f.KV, kv)
	}

	f.Alignment = DefaultAlignment
	if v, ok := f.Get(KeyAlignment); ok {
		a, ok := v.Uint()
		if !ok {
			return fmt.Errorf("gguf: %s must be a positive integer, got %s", KeyAlignment, describe(v))
		}
		if a == 0 || a&(a-1) != 0 || a > math.MaxUint32 {
			return fmt.Errorf("gguf: %s = %d is not a non-zero power of two that fits uint32", KeyAlignment, a)
		}
		f.Alignment = int(a)
	}

	if nTensors > uint64(d.remaining()/minTensor) {
		return fmt.Errorf("gguf: tensor count %d is impossible: %d tensor infos need at least %d bytes each, only %d bytes remain after the metadata", nTensors, nTensors, minTensor, d.remaining())
	}
	f.Tensors = make([]TensorInfo, 0, min(nTensors, prealloc))
	f.tIndex = make(map[string]int, min(nTensors, prealloc))
	for i := range int(nTensors) {
		t, err := f.readTensorInfo(d, i)
		if err != nil {
			return err
		}
		if j, dup := f.tIndex[t.Name]; dup {
			return fmt.Errorf("gguf: tensor %d: duplicate tensor name %q (first defined by tensor %d)", i, t.Name, j)
		}
		f.tIndex[t.Name] = len(f.Tensors)
		f.Tensors = append(f.Tensors, t)
	}

	// The data section starts at the next multiple of the alignment.
	infoEnd := uint64(d.off)
	align := uint64(f.Alignment)
	dataOff := (infoEnd + align - 1) &^ (align - 1) // infoEnd < 2^63, align <= 2^32: no overflow
	if len(f.Tensors) == 0 {
		// Vocab-only files may end right after the metadata, unpadded.
		f.DataOffset = int64(min(dataOff, uint64(len(d.b))))
		return nil
	}
	if dataOff > uint64(len(d.b)) {
		return fmt.Errorf("gguf: data section at offset %d (tensor infos end at %d, alignment %d) starts past end of file (size %d)", dataOff, infoEnd, align, len(d.b))
	}
	f.DataOffset = int64(dataOff)
	return f.checkLayout()
}

func (f *File) readKV(d *decoder, i int) (KV, error) {
	at := d.off
	key, err := d.str("key")
	if err != nil {
		return KV{}, fmt.Errorf("gguf: kv %d: %w", i, err)
	}
	if key == "" {
		return KV{}, fmt.Errorf("gguf: kv %d at offset %d: empty key", i, at)
	}
	vt, err := d.u32("value type")
	if err != nil {
		return KV{}, fmt.Errorf("gguf: kv %d %s: %w", i, clip(key), err)
	}
	val, err := readValue(d, ValueType(vt), 1)
	if err != nil {
		return KV{}, fmt.Errorf("gguf: kv %d %s: %w", i, clip(key), err)
	}
	return KV{Key: key, Value: val}, nil
}

// readValue reads one value of type t; depth is the array nesting level the
// value would have if it were an array (1 for a top-level value). Top-level
// values are validated by a first pass that allocates nothing (build false),
// so that the second pass can size every slice exactly.
func readValue(d *decoder, t ValueType, depth int) (Value, error) {
	if depth == 1 && t == Array {
		dry := *d
		if _, err := parseValue(&dry, t, depth, false); err != nil {
			return Value{}, err
		}
	}
	return parseValue(d, t, depth, true)
}

// parseValue reads one value; with build false it only validates and skips.
func parseValue(d *decoder, t ValueType, depth int, build bool) (Value, error) {
	if !t.Known() {
		return Value{}, fmt.Errorf("unknown value type %d at offset %d", uint32(t), d.off-4)
	}
	if t == String {
		if !build {
			return Value{}, d.skipStr("string")
		}
		s, err := d.str("string")
		return Value{Type: String, V: s}, err
	}
	if t != Array {
		n := t.fixedSize()
		if d.remaining() < n {
			return Value{}, fmt.Errorf("%s value at offset %d: file truncated (need %d bytes, %d remain)", t, d.off, n, d.remaining())
		}
		b := d.bytes(n)
		if !build {
			return Value{}, nil
		}
		return Value{Type: t, V: scalar(t, b)}, nil
	}

	at := d.off
	et32, err := d.u32("array element type")
	if err != nil {
		return Value{}, err
	}
	et := ValueType(et32)
	if !et.Known() {
		return Value{}, fmt.Errorf("array at offset %d: unknown element type %d", at, et32)
	}
	if et == Array && depth >= MaxArrayDepth {
		return Value{}, fmt.Errorf("array at offset %d: arrays nested more than %d deep", at, MaxArrayDepth)
	}
	n, err := d.u64("array length")
	if err != nil {
		return Value{}, err
	}
	ms := uint64(et.minSize())
	if n > uint64(d.remaining())/ms {
		return Value{}, fmt.Errorf("array at offset %d: %d %s elements need at least %d bytes each, only %d bytes remain", at, n, et, ms, d.remaining())
	}
	cnt := int(n)
	val := Value{Type: Array, ElemType: et}
	if cnt == 0 {
		if build {
			val.V = emptyArrays[et]
		}
		return val, nil
	}
	switch et {
	case String:
		var s []string
		if build {
			s = make([]string, cnt)
		}
		for i := range cnt {
			var err error
			if build {
				s[i], err = d.str("string")
			} else {
				err = d.skipStr("string")
			}
			if err != nil {
				return Value{}, fmt.Errorf("array element %d: %w", i, err)
			}
		}
		val.V = s
	case Array:
		var s []Value
		if build {
			s = make([]Value, cnt)
		}
		for i := range cnt {
			e, err := parseValue(d, Array, depth+1, build)
			if err != nil {
				return Value{}, fmt.Errorf("array element %d: %w", i, err)
			}
			if build {
				s[i] = e
			}
		}
		val.V = s
	default:
		b := d.bytes(cnt * int(ms))
		if build {
			val.V = fixedArray(et, b, cnt)
		}
	}
	return val, nil
}

// emptyArrays holds an empty slice of each element type, boxed once, so that
// empty arrays cost no allocation (a hostile file can hold many).
var emptyArrays = [...]any{
	Uint8: []uint8{}, Int8: []int8{}, Uint16: []uint16{}, Int16: []int16{},
	Uint32: []uint32{}, Int32: []int32{}, Float32: []float32{}, Bool: []bool{},
	String: []string{}, Array: []Value{}, Uint64: []uint64{}, Int64: []int64{},
	Float64: []float64{},
}

// scalar decodes one fixed-size value.
func scalar(t ValueType, b []byte) any {
	le := binary.LittleEndian
	switch t {
	case Uint8:
		return b[0]
	case Int8:
		return int8(b[0])
	case Bool:
		return b[0] != 0
	case Uint16:
		return le.Uint16(b)
	case Int16:
		return int16(le.Uint16(b))
	case Uint32:
		return le.Uint32(b)
	case Int32:
		return int32(le.Uint32(b))
	case Float32:
		return math.Float32frombits(le.Uint32(b))
	case Uint64:
		return le.Uint64(b)
	case Int64:
		return int64(le.Uint64(b))
	case Float64:
		return math.Float64frombits(le.Uint64(b))
	}
	panic("gguf: scalar: not a fixed-size type") // unreachable: callers check
}

// fixedArray decodes n fixed-size values of type t from b into a typed slice.
func fixedArray(t ValueType, b []byte, n int) any {
	le := binary.LittleEndian
	switch t {
	case Uint8:
		return append(make([]uint8, 0, n), b...)
	case Int8:
		return decodeSlice(b, n, 1, func(p []byte) int8 { return int8(p[0]) })
	case Bool:
		return decodeSlice(b, n, 1, func(p []byte) bool { return p[0] != 0 })
	case Uint16:
		return decodeSlice(b, n, 2, le.Uint16)
	case Int16:
		return decodeSlice(b, n, 2, func(p []byte) int16 { return int16(le.Uint16(p)) })
	case Uint32:
		return decodeSlice(b, n, 4, le.Uint32)
	case Int32:
		return decodeSlice(b, n, 4, func(p []byte) int32 { return int32(le.Uint32(p)) })
	case Float32:
		return decodeSlice(b, n, 4, func(p []byte) float32 { return math.Float32frombits(le.Uint32(p)) })
	case Uint64:
		return decodeSlice(b, n, 8, le.Uint64)
	case Int64:
		return decodeSlice(b, n, 8, func(p []byte) int64 { return int64(le.Uint64(p)) })
	case Float64:
		return decodeSlice(b, n, 8, func(p []byte) float64 { return math.Float64frombits(le.Uint64(p)) })
	}
	panic("gguf: fixedArray: not a fixed-size type") // unreachable: callers check
}

func decodeSlice[T any](b []byte, n, size int, dec func([]byte) T) []T {
	out := make([]T, n)
	for i := range out {
		out[i] = dec(b[i*size : i*size+size])
	}
	return out
}

func (f *File) readTensorInfo(d *decoder, i int) (TensorInfo, error) {
	at := d.off
	name, err := d.str("tensor name")
	if err != nil {
		return TensorInfo{}, fmt.Errorf("gguf: tensor %d: %w", i, err)
	}
	if name == "" {
		return TensorInfo{}, fmt.Errorf("gguf: tensor %d at offset %d: empty name", i, at)
	}
	if len(name) > MaxNameLen {
		return TensorInfo{}, fmt.Errorf("gguf: tensor %d at offset %d: name %s is %d bytes long, the limit is %d", i, at, clip(name), len(name), MaxNameLen)
	}
	fail := func(format string, args ...any) (TensorInfo, error) {
		return TensorInfo{}, fmt.Errorf("gguf: tensor %q: "+format, append([]any{name}, args...)...)
	}
	nd, err := d.u32("n_dims")
	if err != nil {
		return fail("%w", err)
	}
	if nd == 0 || nd > MaxDims {
		return fail("n_dims %d at offset %d out of range [1, %d]", nd, d.off-4, MaxDims)
	}
	t := TensorInfo{Name: name, Shape: make([]uint64, nd)}
	elems := uint64(1)
	for j := range t.Shape {
		if t.Shape[j], err = d.u64("dimension"); err != nil {
			return fail("%d-D shape: %w", nd, err)
		}
		if t.Shape[j] > math.MaxInt64 {
			return fail("dimension %d is %d, larger than int64", j, t.Shape[j])
		}
		hi, lo := bits.Mul64(elems, t.Shape[j])
		if hi != 0 || lo > math.MaxInt64 {
			return fail("shape %v: element count overflows int64", t.Shape[:j+1])
		}
		elems = lo
	}
	tt, err := d.u32("type")
	if err != nil {
		return fail("%w", err)
	}
	t.Type = Type(tt)
	if !t.Type.Known() {
		return fail("unknown tensor type %d at offset %d", tt, d.off-4)
	}
	if t.Offset, err = d.u64("data offset"); err != nil {
		return fail("%w", err)
	}
	bs, bb := uint64(t.Type.BlockSize()), uint64(t.Type.BlockBytes())
	if t.Shape[0]%bs != 0 {
		return fail("shape %v: ne[0] = %d is not a multiple of the %s block size %d", t.Shape, t.Shape[0], t.Type, bs)
	}
	// elems/bs blocks of bb bytes each; elems < 2^63 and bb < 2^9.
	hi, size := bits.Mul64(elems/bs, bb)
	if hi != 0 || size > math.MaxInt64 {
		return fail("shape %v: %s data size overflows int64", t.Shape, t.Type)
	}
	t.Size = size
	if t.Offset%uint64(f.Alignment) != 0 {
		return fail("data offset %d is not a multiple of the alignment %d", t.Offset, f.Alignment)
	}
	return t, nil
}

// checkLayout verifies that every tensor's data lies inside the file and that
// no two tensors overlap.
func (f *File) checkLayout() error {
	fileSize := uint64(len(f.data))
	base := uint64(f.DataOffset)
	for i := range f.Tensors {
		t := &f.Tensors[i]
		start, c1 := bits.Add64(base, t.Offset, 0)
		end, c2 := bits.Add64(start, t.Size, 0)
		if c1 != 0 || c2 != 0 {
			return fmt.Errorf("gguf: tensor %q: data offset %d + size %d overflows", t.Name, t.Offset, t.Size)
		}
		if end > fileSize {
			return fmt.Errorf("gguf: tensor %q: data [%d, %d) extends past end of file (size %d)", t.Name, start, end, fileSize)
		}
	}
	order := make([]int, 0, len(f.Tensors))
	for i := range f.Tensors {
		if f.Tensors[i].Size > 0 {
			order = append(order, i)
		}
	}
	sort.Slice(order, func(a, b int) bool {
		return f.Tensors[order[a]].Offset < f.Tensors[order[b]].Offset
	})
	for k := 1; k < len(order); k++ {
		p, q := &f.Tensors[order[k-1]], &f.Tensors[order[k]]
		if p.Offset+p.Size > q.Offset {
			return fmt.Errorf("gguf: tensor %q: data [%d, %d) overlaps tensor %q at [%d, %d) (offsets relative to the data section)",
				q.Name, q.Offset, q.Offset+q.Size, p.Name, p.Offset, p.Offset+p.Size)
		}
	}
	return nil
}
