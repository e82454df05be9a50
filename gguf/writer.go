package gguf

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
)

// Writer builds a GGUF file in memory (metadata and tensors) and writes it
// out. It is meant for tests and small tools: tensor data is held in memory.
//
// The layout is canonical: tensors are stored in the order they were added,
// each at the next multiple of the alignment, and the file is padded to the
// alignment after the tensor infos and after every tensor. A file without
// tensors ends right after its metadata, like llama.cpp's vocab-only files.
type Writer struct {
	version   uint32
	alignment int
	kvs       []KV
	keys      map[string]bool
	tensors   []writerTensor
	names     map[string]bool
}

type writerTensor struct {
	info TensorInfo
	data []byte
}

// NewWriter returns a Writer for a version 3 file with the default alignment.
func NewWriter() *Writer {
	return &Writer{
		version:   3,
		alignment: DefaultAlignment,
		keys:      map[string]bool{},
		names:     map[string]bool{},
	}
}

// SetVersion sets the version number written in the header (default 3).
// Versions 2 and 3 share one encoding; other numbers are written as given,
// which is useful only for testing readers.
func (w *Writer) SetVersion(v uint32) { w.version = v }

// SetAlignment sets the data alignment, which must be a power of two (the
// default is 32). Unless general.alignment was added explicitly with AddKV, a
// non-default alignment is recorded by appending a uint32 general.alignment
// key when the file is written. An explicit key is written as given, even if
// it disagrees with the alignment used for the layout.
func (w *Writer) SetAlignment(n int) { w.alignment = n }

// AddKV adds a metadata key. v may be a Value, a Go scalar (uint8, int8,
// uint16, int16, uint32, int32, uint64, int64, float32, float64, bool,
// string; int is stored as int32, as gguf-py does), or a slice of one of
// those, stored as an array; []Value holding arrays is stored as an array of
// arrays. Keys must be non-empty and unique.
func (w *Writer) AddKV(key string, v any) error {
	if key == "" {
		return errors.New("gguf: AddKV: empty key")
	}
	if w.keys[key] {
		return fmt.Errorf("gguf: AddKV: duplicate key %q", key)
	}
	val, err := toValue(v)
	if err != nil {
		return fmt.Errorf("gguf: AddKV %q: %w", key, err)
	}
	if err := checkValue(val, 1); err != nil {
		return fmt.Errorf("gguf: AddKV %q: %w", key, err)
	}
	w.keys[key] = true
	w.kvs = append(w.kvs, KV{Key: key, Value: val})
	return nil
}

// AddTensor adds a tensor of type t with the given ggml-order shape; data
// must hold exactly the bytes the shape needs. The data is not copied.
func (w *Writer) AddTensor(name string, t Type, shape []uint64, data []byte) error {
	switch {
	case name == "":
		return errors.New("gguf: AddTensor: empty name")
	case len(name) > MaxNameLen:
		return fmt.Errorf("gguf: AddTensor %q: name longer than %d bytes", name, MaxNameLen)
	case w.names[name]:
		return fmt.Errorf("gguf: AddTensor: duplicate tensor name %q", name)
	case !t.Known():
		return fmt.Errorf("gguf: AddTensor %q: unknown tensor type %d", name, uint32(t))
	case len(shape) == 0 || len(shape) > MaxDims:
		return fmt.Errorf("gguf: AddTensor %q: %d dimensions, want 1 to %d", name, len(shape), MaxDims)
	}
	elems := uint64(1)
	for _, d := range shape {
		if d != 0 && elems > math.MaxInt64/d {
			return fmt.Errorf("gguf: AddTensor %q: shape %v overflows", name, shape)
		}
		elems *= d
	}
	bs := uint64(t.BlockSize())
	if shape[0]%bs != 0 {
		return fmt.Errorf("gguf: AddTensor %q: ne[0] = %d is not a multiple of the %s block size %d", name, shape[0], t, bs)
	}
	size := elems / bs * uint64(t.BlockBytes())
	if uint64(len(data)) != size {
		return fmt.Errorf("gguf: AddTensor %q: %d data bytes, shape %v of %s needs %d", name, len(data), shape, t, size)
	}
	w.names[name] = true
	w.tensors = append(w.tensors, writerTensor{
		info: TensorInfo{Name: name, Shape: append([]uint64(nil), shape...), Type: t, Size: size},
		data: data,
	})
	return nil
}

// WriteFile writes the file to path.
func (w *Writer) WriteFile(path string) error {
	fh, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("gguf: %w", err)
	}
	if _, err := w.WriteTo(fh); err != nil {
		fh.Close()
		return err
	}
	if err := fh.Close(); err != nil {
		return fmt.Errorf("gguf: %w", err)
	}
	return nil
}

// WriteTo writes the file to out and returns the number of bytes written.
func (w *Writer) WriteTo(out io.Writer) (int64, error) {
	a := w.alignment
	if a <= 0 || a&(a-1) != 0 || int64(a) > math.MaxUint32 {
		return 0, fmt.Errorf("gguf: alignment %d is not a power of two", a)
	}
	kvs := w.kvs
	if a != DefaultAlignment && !w.keys[KeyAlignment] {
		kvs = append(kvs[:len(kvs):len(kvs)], KV{Key: KeyAlignment, Value: Value{Type: Uint32, V: uint32(a)}})
	}

	e := &encoder{w: bufio.NewWriterSize(out, 1<<16)}
	e.raw([]byte(Magic))
	e.u32(w.version)
	e.u64(uint64(len(w.tensors)))
	e.u64(uint64(len(kvs)))
	for _, kv := range kvs {
		e.str(kv.Key)
		e.u32(uint32(kv.Value.Type))
		e.value(kv.Value)
	}
	off := uint64(0)
	for i := range w.tensors {
		t := &w.tensors[i].info
		t.Offset = off
		e.str(t.Name)
		e.u32(uint32(len(t.Shape)))
		for _, d := range t.Shape {
			e.u64(d)
		}
		e.u32(uint32(t.Type))
		e.u64(t.Offset)
		off = alignUp(off+t.Size, a)
	}
	if len(w.tensors) > 0 {
		e.pad(a) // a file without tensors has no data section to align
	}
	for _, t := range w.tensors {
		e.raw(t.data)
		e.pad(a)
	}
	if e.err == nil {
		e.err = e.w.Flush()
	}
	if e.err != nil {
		return e.n, fmt.Errorf("gguf: write: %w", e.err)
	}
	return e.n, nil
}

func alignUp(n uint64, a int) uint64 {
	return (n + uint64(a) - 1) &^ (uint64(a) - 1)
}

// toValue converts a Go value accepted by AddKV to a Value.
func toValue(v any) (Value, error) {
	switch x := v.(type) {
	case Value:
		return x, nil
	case uint8:
		return Value{Type: Uint8, V: x}, nil
	case int8:
		return Value{Type: Int8, V: x}, nil
	case uint16:
		return Value{Type: Uint16, V: x}, nil
	case int16:
		return Value{Type: Int16, V: x}, nil
	case uint32:
		return Value{Type: Uint32, V: x}, nil
	case int32:
		return Value{Type: Int32, V: x}, nil
	case float32:
		return Value{Type: Float32, V: x}, nil
	case bool:
		return Value{Type: Bool, V: x}, nil
	case string:
		return Value{Type: String, V: x}, nil
	case uint64:
		return Value{Type: Uint64, V: x}, nil
	case int64:
		return Value{Type: Int64, V: x}, nil
	case float64:
		return Value{Type: Float64, V: x}, nil
	case int:
		if x < math.MinInt32 || x > math.MaxInt32 {
			return Value{}, fmt.Errorf("int %d does not fit int32; use int64", x)
		}
		return Value{Type: Int32, V: int32(x)}, nil
	case []int:
		s := make([]int32, len(x))
		for i, e := range x {
			if e < math.MinInt32 || e > math.MaxInt32 {
				return Value{}, fmt.Errorf("element %d: int %d does not fit int32; use []int64", i, e)
			}
			s[i] = int32(e)
		}
		return Value{Type: Array, ElemType: Int32, V: s}, nil
	}
	if et, ok := sliceElemType(v); ok {
		return Value{Type: Array, ElemType: et, V: v}, nil
	}
	return Value{}, fmt.Errorf("unsupported Go type %T", v)
}

// sliceElemType returns the element type of a typed slice held in an array
// Value.
func sliceElemType(v any) (ValueType, bool) {
	switch v.(type) {
	case []uint8:
		return Uint8, true
	case []int8:
		return Int8, true
	case []uint16:
		return Uint16, true
	case []int16:
		return Int16, true
	case []uint32:
		return Uint32, true
	case []int32:
		return Int32, true
	case []float32:
		return Float32, true
	case []bool:
		return Bool, true
	case []string:
		return String, true
	case []uint64:
		return Uint64, true
	case []int64:
		return Int64, true
	case []float64:
		return Float64, true
	case []Value:
		return Array, true
	}
	return 0, false
}

// checkValue verifies that v's Go representation matches its type tags.
func checkValue(v Value, depth int) error {
	if v.Type != Array {
		if !v.Type.Known() {
			return fmt.Errorf("unknown value type %d", uint32(v.Type))
		}
		got, err := toValue(v.V)
		if _, isInt := v.V.(int); err != nil || isInt || got.Type != v.Type {
			return fmt.Errorf("value of Go type %T does not match type %s", v.V, v.Type)
		}
		return nil
	}
	et, ok := sliceElemType(v.V)
	if !ok || et != v.ElemType {
		return fmt.Errorf("array value of Go type %T does not match element type %s", v.V, v.ElemType)
	}
	if et == Array {
		if depth >= MaxArrayDepth {
			return fmt.Errorf("arrays nested more than %d deep", MaxArrayDepth)
		}
		for i, e := range v.V.([]Value) {
			if e.Type != Array {
				return fmt.Errorf("element %d of an array of arrays has type %s", i, e.Type)
			}
			if err := checkValue(e, depth+1); err != nil {
				return fmt.Errorf("element %d: %w", i, err)
			}
		}
	}
	return nil
}

// encoder writes little-endian values, remembering the first error.
type encoder struct {
	w   *bufio.Writer
	n   int64
	err error
	buf [8]byte
}

func (e *encoder) raw(b []byte) {
	if e.err != nil {
		return
	}
	n, err := e.w.Write(b)
	e.n += int64(n)
	e.err = err
}

func (e *encoder) u8(v uint8)   { e.raw([]byte{v}) }
func (e *encoder) u16(v uint16) { binary.LittleEndian.PutUint16(e.buf[:], v); e.raw(e.buf[:2]) }
func (e *encoder) u32(v uint32) { binary.LittleEndian.PutUint32(e.buf[:], v); e.raw(e.buf[:4]) }
func (e *encoder) u64(v uint64) { binary.LittleEndian.PutUint64(e.buf[:], v); e.raw(e.buf[:8]) }

func (e *encoder) str(s string) {
	e.u64(uint64(len(s)))
	if e.err == nil {
		n, err := e.w.WriteString(s)
		e.n += int64(n)
		e.err = err
	}
}

func (e *encoder) pad(a int) {
	var zero [64]byte
	for k := int(alignUp(uint64(e.n), a) - uint64(e.n)); k > 0; {
		c := min(k, len(zero))
		e.raw(zero[:c])
		k -= c
	}
}

// value writes v's payload (not its type tag). v must have passed checkValue.
func (e *encoder) value(v Value) {
	switch x := v.V.(type) {
	case uint8:
		e.u8(x)
	case int8:
		e.u8(uint8(x))
	case bool:
		if x {
			e.u8(1)
		} else {
			e.u8(0)
		}
	case uint16:
		e.u16(x)
	case int16:
		e.u16(uint16(x))
	case uint32:
		e.u32(x)
	case int32:
		e.u32(uint32(x))
	case float32:
		e.u32(math.Float32bits(x))
	case uint64:
		e.u64(x)
	case int64:
		e.u64(uint64(x))
	case float64:
		e.u64(math.Float64bits(x))
	case string:
		e.str(x)
	default:
		e.u32(uint32(v.ElemType))
		e.u64(uint64(v.Len()))
		e.array(v.V)
	}
}

func (e *encoder) array(s any) {
	switch x := s.(type) {
	case []uint8:
		e.raw(x)
	case []int8:
		for _, v := range x {
			e.u8(uint8(v))
		}
	case []bool:
		for _, v := range x {
			e.value(Value{V: v})
		}
	case []uint16:
		for _, v := range x {
			e.u16(v)
		}
	case []int16:
		for _, v := range x {
			e.u16(uint16(v))
		}
	case []uint32:
		for _, v := range x {
			e.u32(v)
		}
	case []int32:
		for _, v := range x {
			e.u32(uint32(v))
		}
	case []float32:
		for _, v := range x {
			e.u32(math.Float32bits(v))
		}
	case []uint64:
		for _, v := range x {
			e.u64(v)
		}
	case []int64:
		for _, v := range x {
			e.u64(uint64(v))
		}
	case []float64:
		for _, v := range x {
			e.u64(math.Float64bits(v))
		}
	case []string:
		for _, v := range x {
			e.str(v)
		}
	case []Value:
		for _, v := range x {
			e.u32(uint32(v.ElemType))
			e.u64(uint64(v.Len()))
			e.array(v.V)
		}
	}
}
