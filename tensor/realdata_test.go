package tensor

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stepflash/stepflash/gguf"
	"github.com/stepflash/stepflash/internal/testmodels"
)

// maxRelRMS bounds the relative RMS error of llama-quantize's output against
// the F32 weights it was made from, per type (measured on the tiny-llama
// files, with margin). A decoder with a layout bug gives errors near 1 or
// more.
var maxRelRMS = map[gguf.Type]float64{
	gguf.TypeF16:  0.0005,
	gguf.TypeBF16: 0.004,
	gguf.TypeQ8_0: 0.007,
	gguf.TypeQ6_K: 0.023,
	gguf.TypeQ5_0: 0.054,
	gguf.TypeQ5_1: 0.048,
	gguf.TypeQ5_K: 0.045,
	gguf.TypeQ4_0: 0.11,
	gguf.TypeQ4_1: 0.1,
	gguf.TypeQ4_K: 0.09,
	gguf.TypeQ3_K: 0.19,
	gguf.TypeQ2_K: 0.35,
}

func openModel(t *testing.T, name string) *gguf.File {
	t.Helper()
	f, err := gguf.Open(testmodels.Path(t, name))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func tensorMatrix(t *testing.T, f *gguf.File, ti *gguf.TensorInfo) Matrix {
	t.Helper()
	rows := 1
	for _, d := range ti.Shape[1:] {
		rows *= int(d)
	}
	m, err := NewMatrix(ti.Type, rows, int(ti.Shape[0]), f.TensorData(ti))
	if err != nil {
		t.Fatalf("%s: %v", ti.Name, err)
	}
	return m
}

// TestRealWeights dequantizes every tensor of the quantized tiny-llama files
// and compares it with the F32 file the quantizer started from; it also runs
// MatMul on each matrix and compares with a float64 product of the
// dequantized weights.
func TestRealWeights(t *testing.T) {
	ref := openModel(t, "tiny-llama-F32.gguf")
	seen := map[gguf.Type]bool{}
	rng := rand.New(rand.NewPCG(21, 22))
	pool := NewPool(2)
	defer pool.Close()
	for _, name := range []string{"F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q4_K_M", "Q5_K_M", "Q6_K", "Q2_K", "Q3_K_M"} {
		t.Run(name, func(t *testing.T) {
			f := openModel(t, "tiny-llama-"+name+".gguf")
			for i := range f.Tensors {
				ti := &f.Tensors[i]
				if len(ti.Shape) < 2 || ti.Type == gguf.TypeF32 {
					continue
				}
				rt, ok := ref.Tensor(ti.Name)
				if !ok {
					t.Fatalf("%s missing from the F32 file", ti.Name)
				}
				m := tensorMatrix(t, f, ti)
				want := tensorMatrix(t, ref, rt)
				got := make([]float32, m.Rows*m.Cols)
				if err := Dequantize(m.Type, m.Data, got); err != nil {
					t.Fatal(err)
				}
				wantF := make([]float32, len(got))
				if err := Dequantize(gguf.TypeF32, want.Data, wantF); err != nil {
					t.Fatal(err)
				}
				var num, den float64
				for k := range got {
					d := float64(got[k]) - float64(wantF[k])
					num += d * d
					den += float64(wantF[k]) * float64(wantF[k])
				}
				rel := math.Sqrt(num / den)
				seen[m.Type] = true
				if testing.Verbose() {
					t.Logf("%s (%v): relative RMS error %.4g", ti.Name, m.Type, rel)
				}
				if rel > maxRelRMS[m.Type] {
					t.Errorf("%s (%v): relative RMS error %.4g > %.4g", ti.Name, m.Type, rel, maxRelRMS[m.Type])
				}
				// DequantizeRow agrees with Dequantize.
				row := make([]float32, m.Cols)
				r := m.Rows - 1
				m.DequantizeRow(r, row)
				for k := range row {
					if row[k] != got[r*m.Cols+k] {
						t.Fatalf("%s: DequantizeRow differs at %d", ti.Name, k)
					}
				}
				checkMatMulReal(t, pool, m, got, rng, fmt.Sprintf("%s %s", name, ti.Name))
			}
		})
	}
	for typ := range maxRelRMS {
		if !seen[typ] {
			t.Errorf("no %v tensor was checked", typ)
		}
	}
}

// checkMatMulReal compares MatMul (3 inputs) with a float64 product of the
// dequantized weights and unquantized inputs: the difference is the
// activation quantization error only, a few tenths of a percent of the output
// scale.
func checkMatMulReal(t *testing.T, p *Pool, m Matrix, wf []float32, rng *rand.Rand, what string) {
	const n = 3
	x := randFloats(rng, n*m.Cols)
	out := make([]float32, n*m.Rows)
	MatMul(p, m, x, n, out)
	var num, den float64
	for j := 0; j < n; j++ {
		for r := 0; r < m.Rows; r++ {
			var want float64
			for k := 0; k < m.Cols; k++ {
				want += float64(wf[r*m.Cols+k]) * float64(x[j*m.Cols+k])
			}
			d := float64(out[j*m.Rows+r]) - want
			num += d * d
			den += want * want
		}
	}
	tol := map[actKind]float64{actF32: 1e-6, actF16: 1e-3, actBF16: 8e-3}[vecDotKind(m.Type)]
	if tol == 0 {
		tol = 0.02 // 8-bit activations
	}
	if rel := math.Sqrt(num / den); rel > tol {
		t.Errorf("%s: MatMul relative RMS error %.3g > %.3g", what, rel, tol)
	}
}
