package gguf

import "fmt"

// Type is a ggml tensor element type as stored in a GGUF tensor info.
// The numeric values are fixed by the file format.
type Type uint32

// Tensor types. Values not listed here are rejected by the reader.
const (
	TypeF32  Type = 0
	TypeF16  Type = 1
	TypeQ4_0 Type = 2
	TypeQ4_1 Type = 3
	TypeQ5_0 Type = 6
	TypeQ5_1 Type = 7
	TypeQ8_0 Type = 8
	TypeQ8_1 Type = 9
	TypeQ2_K Type = 10
	TypeQ3_K Type = 11
	TypeQ4_K Type = 12
	TypeQ5_K Type = 13
	TypeQ6_K Type = 14
	TypeQ8_K Type = 15
	TypeI8   Type = 24
	TypeI16  Type = 25
	TypeI32  Type = 26
	TypeI64  Type = 27
	TypeF64  Type = 28
	TypeBF16 Type = 30
)

type typeInfo struct {
	name       string
	blockSize  int // elements per block
	blockBytes int // bytes per block
}

var typeInfos = map[Type]typeInfo{
	TypeF32:  {"F32", 1, 4},
	TypeF16:  {"F16", 1, 2},
	TypeQ4_0: {"Q4_0", 32, 2 + 16},
	TypeQ4_1: {"Q4_1", 32, 2 + 2 + 16},
	TypeQ5_0: {"Q5_0", 32, 2 + 4 + 16},
	TypeQ5_1: {"Q5_1", 32, 2 + 2 + 4 + 16},
	TypeQ8_0: {"Q8_0", 32, 2 + 32},
	TypeQ8_1: {"Q8_1", 32, 2 + 2 + 32},
	TypeQ2_K: {"Q2_K", 256, 16 + 64 + 2 + 2},
	TypeQ3_K: {"Q3_K", 256, 32 + 64 + 12 + 2},
	TypeQ4_K: {"Q4_K", 256, 2 + 2 + 12 + 128},
	TypeQ5_K: {"Q5_K", 256, 2 + 2 + 12 + 32 + 128},
	TypeQ6_K: {"Q6_K", 256, 128 + 64 + 16 + 2},
	TypeQ8_K: {"Q8_K", 256, 4 + 256 + 32},
	TypeI8:   {"I8", 1, 1},
	TypeI16:  {"I16", 1, 2},
	TypeI32:  {"I32", 1, 4},
	TypeI64:  {"I64", 1, 8},
	TypeF64:  {"F64", 1, 8},
	TypeBF16: {"BF16", 1, 2},
}

// Known reports whether t is a tensor type this package understands.
func (t Type) Known() bool { _, ok := typeInfos[t]; return ok }

// String returns ggml's name for t, e.g. "Q4_K".
func (t Type) String() string {
	if ti, ok := typeInfos[t]; ok {
		return ti.name
	}
	return fmt.Sprintf("type(%d)", uint32(t))
}

// BlockSize is the number of elements in one block of t (1 for plain types).
// It is 0 for an unknown type.
func (t Type) BlockSize() int { return typeInfos[t].blockSize }

// BlockBytes is the number of bytes one block of t occupies.
// It is 0 for an unknown type.
func (t Type) BlockBytes() int { return typeInfos[t].blockBytes }

// RowBytes returns the bytes needed for n consecutive elements of t, or an
// error if the type is unknown or n is not a whole number of blocks.
func (t Type) RowBytes(n int) (int, error) {
	ti, ok := typeInfos[t]
	if !ok {
		return 0, fmt.Errorf("gguf: unknown tensor type %d", uint32(t))
	}
	if n < 0 || n%ti.blockSize != 0 {
		return 0, fmt.Errorf("gguf: %d elements is not a whole number of %s blocks of %d", n, ti.name, ti.blockSize)
	}
	return n / ti.blockSize * ti.blockBytes, nil
}
