package tensor

import (
	"encoding/binary"
	"fmt"

	"github.com/stepflash/stepflash/gguf"
)

// Matrix is a 2-D weight in ggml layout: Rows rows (ggml ne[1]) of Cols
// elements (ne[0]) each, row-major, each row RowBytes() long.
type Matrix struct {
	Type       gguf.Type
	Rows, Cols int
	Data       []byte
}

// Supported reports whether t is a weight type this package can dequantize
// and multiply.
func Supported(t gguf.Type) bool {
	switch t {
	case gguf.TypeF32, gguf.TypeF16, gguf.TypeBF16, gguf.TypeQ8_0, gguf.TypeQ4_0,
		gguf.TypeQ4_1, gguf.TypeQ5_0, gguf.TypeQ5_1, gguf.TypeQ2_K, gguf.TypeQ3_K,
		gguf.TypeQ4_K, gguf.TypeQ5_K, gguf.TypeQ6_K:
		return true
	}
	return false
}

// NewMatrix checks the shape against the data and returns the matrix. It
// fails if the type is unsupported, cols is not a multiple of the type's block
// size, or len(data) != rows*RowBytes.
func NewMatrix(t gguf.Type, rows, cols int, data []byte) (Matrix, error) {
	if !Supported(t) {
		return Matrix{}, fmt.Errorf("tensor: unsupported weight type %v", t)
	}
	if rows < 0 || cols < 0 {
		return Matrix{}, fmt.Errorf("tensor: negative shape %dx%d", rows, cols)
	}
	rb, err := t.RowBytes(cols)
	if err != nil {
		return Matrix{}, fmt.Errorf("tensor: %v", err)
	}
	if len(data) != rows*rb {
		return Matrix{}, fmt.Errorf("tensor: %v matrix %dx%d needs %d bytes, have %d", t, rows, cols, rows*rb, len(data))
	}
	return Matrix{Type: t, Rows: rows, Cols: cols, Data: data}, nil
}

// RowBytes is the number of bytes one row occupies.
func (m Matrix) RowBytes() int {
	return m.Cols / m.Type.BlockSize() * m.Type.BlockBytes()
}

// Row returns the raw bytes of row r.
func (m Matrix) Row(r int) []byte {
	rb := m.RowBytes()
	return m.Data[r*rb : (r+1)*rb]
}

// DequantizeRow writes row r, converted to float32, into dst
// (len(dst) == Cols); this is an embedding lookup.
func (m Matrix) DequantizeRow(r int, dst []float32) {
	if len(dst) != m.Cols {
		panic(fmt.Sprintf("tensor: DequantizeRow: dst has %d elements, want %d", len(dst), m.Cols))
	}
	if err := Dequantize(m.Type, m.Row(r), dst); err != nil {
		panic(err)
	}
}

// Slice returns the matrix made of rows [r0, r1), sharing m's data.
func (m Matrix) Slice(r0, r1 int) Matrix {
	if r0 < 0 || r1 < r0 || r1 > m.Rows {
		panic(fmt.Sprintf("tensor: Slice(%d, %d) of %d rows", r0, r1, m.Rows))
	}
	rb := m.RowBytes()
	return Matrix{Type: m.Type, Rows: r1 - r0, Cols: m.Cols, Data: m.Data[r0*rb : r1*rb]}
}

// Dequantize converts len(dst) elements of type t from src to float32. It
// fails if t is unsupported, len(dst) is not a whole number of blocks, or src
// is too short.
func Dequantize(t gguf.Type, src []byte, dst []float32) error {
	if !Supported(t) {
		return fmt.Errorf("tensor: cannot dequantize type %v", t)
	}
	need, err := t.RowBytes(len(dst))
	if err != nil {
		return fmt.Errorf("tensor: %v", err)
	}
	if len(src) < need {
		return fmt.Errorf("tensor: %d %v elements need %d bytes, have %d", len(dst), t, need, len(src))
	}
	src = src[:need]
	switch t {
	case gguf.TypeF32:
		for i := range dst {
			dst[i] = float32frombits(binary.LittleEndian.Uint32(src[4*i:]))
		}
	case gguf.TypeF16:
		for i := range dst {
			dst[i] = f16ToF32(binary.LittleEndian.Uint16(src[2*i:]))
		}
	case gguf.TypeBF16:
		for i := range dst {
			dst[i] = bf16ToF32(binary.LittleEndian.Uint16(src[2*i:]))
		}
	case gguf.TypeQ8_0:
		dequantQ8_0(src, dst)
	case gguf.TypeQ4_0:
		dequantQ4_0(src, dst)
	case gguf.TypeQ4_1:
		dequantQ4_1(src, dst)
	case gguf.TypeQ5_0:
		dequantQ5_0(src, dst)
	case gguf.TypeQ5_1:
		dequantQ5_1(src, dst)
	case gguf.TypeQ2_K:
		dequantQ2_K(src, dst)
	case gguf.TypeQ3_K:
		dequantQ3_K(src, dst)
	case gguf.TypeQ4_K:
		dequantQ4_K(src, dst)
	case gguf.TypeQ5_K:
		dequantQ5_K(src, dst)
	case gguf.TypeQ6_K:
		dequantQ6_K(src, dst)
	}
	return nil
}
