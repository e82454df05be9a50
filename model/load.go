package model

import (
	"fmt"
	"reflect"
	"strings"

	"github.com/stepflash/stepflash/gguf"
	"github.com/stepflash/stepflash/tensor"
)

// Experts is a stack of same-shaped expert matrices, stored in GGUF as one
// 3-D tensor of ggml shape [Cols, Rows, N].
type Experts struct {
	Type       gguf.Type
	N          int
	Rows, Cols int
	Data       []byte
	stride     int
}

// Expert returns expert e as a matrix; only its bytes are touched when it is used.
func (x Experts) Expert(e int) tensor.Matrix {
	return tensor.Matrix{Type: x.Type, Rows: x.Rows, Cols: x.Cols, Data: x.Data[e*x.stride : (e+1)*x.stride]}
}

var (
	matrixType  = reflect.TypeOf(tensor.Matrix{})
	vectorType  = reflect.TypeOf([]float32(nil))
	expertsType = reflect.TypeOf(Experts{})
)

// tensorName resolves a field tag to a GGUF tensor name: a tag without a dot
// names a weight ("attn_q" → "attn_q.weight"); with a dot it is used as is.
func tensorName(prefix, tag string) string {
	if !strings.Contains(tag, ".") {
		tag += ".weight"
	}
	return prefix + tag
}

// loadTensors fills the fields of the struct pointed to by dst from f. Fields
// carry `gguf:"name"` or `gguf:"name,optional"` tags; their Go type says what
// the tensor must be: tensor.Matrix (2-D), []float32 (1-D, dequantized into
// memory) or Experts (3-D). Tensor data is not copied for matrices.
func loadTensors(f *gguf.File, prefix string, dst any) error {
	v := reflect.ValueOf(dst).Elem()
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		sf := t.Field(i)
		if !sf.IsExported() {
			continue
		}
		tag, ok := sf.Tag.Lookup("gguf")
		if !ok {
			// An untagged struct field groups tensors under the same prefix.
			if sf.Type.Kind() == reflect.Struct && sf.Type != matrixType && sf.Type != expertsType {
				if err := loadTensors(f, prefix, v.Field(i).Addr().Interface()); err != nil {
					return err
				}
			}
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		optional := opts == "optional"
		full := tensorName(prefix, name)
		ti, found := f.Tensor(full)
		if !found {
			if optional {
				continue
			}
			return fmt.Errorf("model: tensor %q is missing", full)
		}
		data := f.TensorData(ti)
		switch sf.Type {
		case matrixType:
			if len(ti.Shape) != 2 && !(len(ti.Shape) == 3 && ti.Shape[2] == 1) {
				return fmt.Errorf("model: tensor %q has %d dimensions %v, want 2", full, len(ti.Shape), ti.Shape)
			}
			m, err := tensor.NewMatrix(ti.Type, int(ti.Shape[1]), int(ti.Shape[0]), data)
			if err != nil {
				return fmt.Errorf("model: tensor %q: %w", full, err)
			}
			v.Field(i).Set(reflect.ValueOf(m))
		case vectorType:
			n := ti.Elements()
			if len(ti.Shape) != 1 || n > 1<<26 {
				return fmt.Errorf("model: tensor %q has shape %v, want a vector", full, ti.Shape)
			}
			out := make([]float32, n)
			if err := tensor.Dequantize(ti.Type, data, out); err != nil {
				return fmt.Errorf("model: tensor %q: %w", full, err)
			}
			v.Field(i).Set(reflect.ValueOf(out))
		case expertsType:
			if len(ti.Shape) != 3 {
				return fmt.Errorf("model: tensor %q has shape %v, want 3 dimensions [in, out, experts]", full, ti.Shape)
			}
			rows, cols, n := int(ti.Shape[1]), int(ti.Shape[0]), int(ti.Shape[2])
			if n == 0 {
				return fmt.Errorf("model: tensor %q has no experts", full)
			}
			stride := len(data) / n
			if _, err := tensor.NewMatrix(ti.Type, rows, cols, data[:stride]); err != nil || stride*n != len(data) {
				if err == nil {
					err = fmt.Errorf("size %d is not %d experts", len(data), n)
				}
				return fmt.Errorf("model: tensor %q: %w", full, err)
			}
			v.Field(i).Set(reflect.ValueOf(Experts{Type: ti.Type, N: n, Rows: rows, Cols: cols, Data: data, stride: stride}))
		default:
			return fmt.Errorf("model: internal: field %s has unsupported type %s", sf.Name, sf.Type)
		}
	}
	return nil
}

// shapeCheck collects shape errors for a model's tensors.
type shapeCheck struct{ err error }

func (s *shapeCheck) mat(name string, m tensor.Matrix, rows, cols int) {
	if s.err == nil && m.Data != nil && (m.Rows != rows || m.Cols != cols) {
		s.err = fmt.Errorf("model: tensor %s is %dx%d (ggml [%d,%d]), want %d rows of %d", name, m.Rows, m.Cols, m.Cols, m.Rows, rows, cols)
	}
}

func (s *shapeCheck) vec(name string, v []float32, n int) {
	if s.err == nil && v != nil && len(v) != n {
		s.err = fmt.Errorf("model: tensor %s has %d elements, want %d", name, len(v), n)
	}
}

func (s *shapeCheck) experts(name string, x Experts, n, rows, cols int) {
	if s.err == nil && x.Data != nil && (x.N != n || x.Rows != rows || x.Cols != cols) {
		s.err = fmt.Errorf("model: tensor %s is ggml [%d,%d,%d], want [%d,%d,%d]", name, x.Cols, x.Rows, x.N, cols, rows, n)
	}
}
