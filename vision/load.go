package vision

import (
	"fmt"

	"github.com/stepflash/stepflash/gguf"
	"github.com/stepflash/stepflash/tensor"
)

// weights reads a projector's tensors, checking each one's type and shape
// against what the hyperparameters say before its data is used; it
// remembers the first error.
type weights struct {
	f   *gguf.File
	err error
}

func (w *weights) fail(format string, args ...any) {
	if w.err == nil {
		w.err = fmt.Errorf("vision: "+format, args...)
	}
}

// info returns the tensor called name after checking that its ggml shape is
// want (trailing 1s in the file are allowed); nil if it is absent.
func (w *weights) info(name string, want []int, optional bool) *gguf.TensorInfo {
	if w.err != nil {
		return nil
	}
	ti, ok := w.f.Tensor(name)
	if !ok {
		if !optional {
			w.fail("tensor %q is missing", name)
		}
		return nil
	}
	shape := ti.Shape
	for len(shape) > len(want) && shape[len(shape)-1] == 1 {
		shape = shape[:len(shape)-1]
	}
	same := len(shape) == len(want)
	for i := 0; same && i < len(want); i++ {
		same = shape[i] == uint64(want[i])
	}
	if !same {
		w.fail("tensor %q has ggml shape %v, want %v", name, ti.Shape, want)
		return nil
	}
	return ti
}

// matrix loads a weight of ggml shape [cols, rows] (or any shape whose
// leading dimensions multiply to cols, given in shape) as rows x cols,
// without copying its data.
func (w *weights) matrix(name string, rows, cols int, optional bool, shape ...int) tensor.Matrix {
	if shape == nil {
		shape = []int{cols, rows}
	}
	ti := w.info(name, shape, optional)
	if ti == nil {
		return tensor.Matrix{}
	}
	m, err := tensor.NewMatrix(ti.Type, rows, cols, w.f.TensorData(ti))
	if err != nil {
		w.fail("tensor %q: %v", name, err)
		return tensor.Matrix{}
	}
	return m
}

// vector loads a tensor of the given ggml shape (default [n]) as n float32s.
func (w *weights) vector(name string, n int, optional bool, shape ...int) []float32 {
	if shape == nil {
		shape = []int{n}
	}
	ti := w.info(name, shape, optional)
	if ti == nil {
		return nil
	}
	if n > maxElements {
		w.fail("tensor %q has %d elements, too many", name, n)
		return nil
	}
	out := make([]float32, n)
	if err := tensor.Dequantize(ti.Type, w.f.TensorData(ti), out); err != nil {
		w.fail("tensor %q: %v", name, err)
		return nil
	}
	return out
}
