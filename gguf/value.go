package gguf

import "fmt"

// ValueType is the type tag of a GGUF metadata value. The numeric values are
// fixed by the file format.
type ValueType uint32

// Metadata value types.
const (
	Uint8   ValueType = 0
	Int8    ValueType = 1
	Uint16  ValueType = 2
	Int16   ValueType = 3
	Uint32  ValueType = 4
	Int32   ValueType = 5
	Float32 ValueType = 6
	Bool    ValueType = 7
	String  ValueType = 8
	Array   ValueType = 9
	Uint64  ValueType = 10
	Int64   ValueType = 11
	Float64 ValueType = 12
)

var valueTypeNames = [...]string{
	Uint8: "uint8", Int8: "int8", Uint16: "uint16", Int16: "int16",
	Uint32: "uint32", Int32: "int32", Float32: "float32", Bool: "bool",
	String: "string", Array: "array", Uint64: "uint64", Int64: "int64",
	Float64: "float64",
}

// String returns the lower-case name of t, e.g. "uint32".
func (t ValueType) String() string {
	if int(t) < len(valueTypeNames) {
		return valueTypeNames[t]
	}
	return fmt.Sprintf("valuetype(%d)", uint32(t))
}

// Known reports whether t is a value type defined by the format.
func (t ValueType) Known() bool { return t <= Float64 }

// fixedSize returns the encoded size of a scalar of type t, or 0 for strings,
// arrays and unknown types.
func (t ValueType) fixedSize() int {
	switch t {
	case Uint8, Int8, Bool:
		return 1
	case Uint16, Int16:
		return 2
	case Uint32, Int32, Float32:
		return 4
	case Uint64, Int64, Float64:
		return 8
	}
	return 0
}

// minSize returns the smallest number of bytes a value of type t can occupy
// in a file (the bound used to reject absurd counts before allocating).
func (t ValueType) minSize() int {
	switch t {
	case String:
		return 8 // length
	case Array:
		return 4 + 8 // element type + count
	}
	return t.fixedSize()
}

// Value is one metadata value.
//
// Scalars are held as the matching Go type (uint8, int8, uint16, int16,
// uint32, int32, float32, bool, string, uint64, int64, float64). Arrays have
// Type Array, ElemType set to the element type, and V holding a typed Go
// slice ([]uint8, []int8, []uint16, []int16, []uint32, []int32, []float32,
// []bool, []string, []uint64, []int64, []float64); nested arrays are held as
// []Value whose elements are themselves arrays.
type Value struct {
	Type     ValueType
	ElemType ValueType // element type, for arrays only
	V        any
}

// KV is one metadata key/value pair.
type KV struct {
	Key   string
	Value Value
}

// Len returns the number of elements of an array value, or -1 for a scalar.
func (v Value) Len() int {
	if v.Type != Array {
		return -1
	}
	switch s := v.V.(type) {
	case []uint8:
		return len(s)
	case []int8:
		return len(s)
	case []uint16:
		return len(s)
	case []int16:
		return len(s)
	case []uint32:
		return len(s)
	case []int32:
		return len(s)
	case []float32:
		return len(s)
	case []bool:
		return len(s)
	case []string:
		return len(s)
	case []uint64:
		return len(s)
	case []int64:
		return len(s)
	case []float64:
		return len(s)
	case []Value:
		return len(s)
	}
	return -1
}

// asUint converts an integer scalar to uint64 if it is non-negative.
func asUint(x any) (uint64, bool) {
	switch v := x.(type) {
	case uint8:
		return uint64(v), true
	case uint16:
		return uint64(v), true
	case uint32:
		return uint64(v), true
	case uint64:
		return v, true
	case int8:
		return uint64(v), v >= 0
	case int16:
		return uint64(v), v >= 0
	case int32:
		return uint64(v), v >= 0
	case int64:
		return uint64(v), v >= 0
	}
	return 0, false
}

// asInt converts an integer scalar to int64 if it fits.
func asInt(x any) (int64, bool) {
	switch v := x.(type) {
	case int8:
		return int64(v), true
	case int16:
		return int64(v), true
	case int32:
		return int64(v), true
	case int64:
		return v, true
	case uint8:
		return int64(v), true
	case uint16:
		return int64(v), true
	case uint32:
		return int64(v), true
	case uint64:
		return int64(v), v <= 1<<63-1
	}
	return 0, false
}

// asFloat converts any numeric scalar to float64.
func asFloat(x any) (float64, bool) {
	switch v := x.(type) {
	case float32:
		return float64(v), true
	case float64:
		return v, true
	case uint64:
		return float64(v), true
	}
	if i, ok := asInt(x); ok {
		return float64(i), true
	}
	return 0, false
}

// Uint returns v as a uint64 if it is an integer scalar holding a
// non-negative value.
func (v Value) Uint() (uint64, bool) { return asUint(v.V) }

// Int returns v as an int64 if it is an integer scalar that fits.
func (v Value) Int() (int64, bool) { return asInt(v.V) }

// Float returns v as a float64 if it is a numeric scalar.
func (v Value) Float() (float64, bool) { return asFloat(v.V) }

// Strings returns the elements of a string array. The slice is shared with
// the File: do not modify it.
func (v Value) Strings() ([]string, bool) {
	s, ok := v.V.([]string)
	return s, ok && v.Type == Array
}

// Float32s returns the elements of a float32 array, or of a float64 array
// converted to float32. A float32 slice is shared with the File: do not
// modify it.
func (v Value) Float32s() ([]float32, bool) {
	if v.Type != Array {
		return nil, false
	}
	switch s := v.V.(type) {
	case []float32:
		return s, true
	case []float64:
		out := make([]float32, len(s))
		for i, x := range s {
			out[i] = float32(x)
		}
		return out, true
	}
	return nil, false
}

// Int32s returns the elements of an integer array as int32s if every element
// fits. An int32 slice is shared with the File: do not modify it.
func (v Value) Int32s() ([]int32, bool) {
	if v.Type != Array {
		return nil, false
	}
	switch s := v.V.(type) {
	case []int32:
		return s, true
	case []uint8:
		return convInts(s, func(x uint8) (int32, bool) { return int32(x), true })
	case []int8:
		return convInts(s, func(x int8) (int32, bool) { return int32(x), true })
	case []uint16:
		return convInts(s, func(x uint16) (int32, bool) { return int32(x), true })
	case []int16:
		return convInts(s, func(x int16) (int32, bool) { return int32(x), true })
	case []uint32:
		return convInts(s, func(x uint32) (int32, bool) { return int32(x), x <= 1<<31-1 })
	case []uint64:
		return convInts(s, func(x uint64) (int32, bool) { return int32(x), x <= 1<<31-1 })
	case []int64:
		return convInts(s, func(x int64) (int32, bool) { return int32(x), x >= -1<<31 && x <= 1<<31-1 })
	}
	return nil, false
}

func convInts[T any](s []T, conv func(T) (int32, bool)) ([]int32, bool) {
	out := make([]int32, len(s))
	for i, x := range s {
		v, ok := conv(x)
		if !ok {
			return nil, false
		}
		out[i] = v
	}
	return out, true
}
