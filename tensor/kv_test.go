package tensor

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stepflash/stepflash/gguf"
)

// TestKVKernels checks the KV cache's storage and products for every cache
// type against float64 references built from their definitions: a stored
// row dequantizes to the value ggml's copy would store (F16: nearest even;
// Q8_0: the activation quantizer's blocks), the query's dot product with
// each key row is Σ conv(q)_i · k_i with the query converted as llama.cpp
// converts it for that key type, and the weighted sum of value rows is
// Σ_j a_j v_j. Rows sit at an offset and in a run, as in a cache block.
func TestKVKernels(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	const hd, rows = 64, 7
	for _, typ := range []gguf.Type{gguf.TypeF32, gguf.TypeF16, gguf.TypeQ8_0} {
		rb := KVRowBytes(typ, hd)
		block := make([]byte, (rows+2)*rb) // two rows of another head first
		keys := make([][]float32, rows)
		for j := range keys {
			keys[j] = make([]float32, hd)
			for i := range keys[j] {
				keys[j][i] = float32(r.NormFloat64() * 3)
			}
			StoreKV(typ, keys[j], block[(2+j)*rb:(3+j)*rb])
		}
		stored := make([]float32, rows*hd)
		if err := Dequantize(typ, block[2*rb:], stored); err != nil {
			t.Fatal(err)
		}
		for j := range keys {
			for i, v := range keys[j] {
				want := v
				switch typ {
				case gguf.TypeF16:
					want = roundF16(v)
				case gguf.TypeQ8_0:
					var q [qk]int8
					var d [1]float32
					b := i / qk
					quantizeBlockQ8_0(keys[j][b*qk:b*qk+qk], q[:], d[:], nil, 0)
					want = float32(q[i%qk]) * d[0]
				}
				if got := stored[j*hd+i]; got != want {
					t.Fatalf("%v: stored row %d element %d = %v, want %v", typ, j, i, got, want)
				}
			}
		}

		q := make([]float32, hd)
		for i := range q {
			q[i] = float32(r.NormFloat64())
		}
		conv := make([]float64, hd) // the query as the product sees it
		for i, v := range q {
			switch typ {
			case gguf.TypeF32:
				conv[i] = float64(v)
			case gguf.TypeF16:
				conv[i] = float64(roundF16(v))
			case gguf.TypeQ8_0:
				var qq [qk]int8
				var d [1]float32
				b := i / qk
				quantizeBlockQ8_0(q[b*qk:b*qk+qk], qq[:], d[:], nil, 0)
				conv[i] = float64(qq[i%qk]) * float64(d[0])
			}
		}
		var s KVScratch
		s.SetQuery(typ, q)
		got := make([]float32, rows)
		s.Dot(block[2*rb:], got)
		for j := range got {
			want := 0.0
			for i := range conv {
				want += conv[i] * float64(stored[j*hd+i])
			}
			if math.Abs(float64(got[j])-want) > 1e-4*(1+math.Abs(want)) {
				t.Errorf("%v: q·k_%d = %v, want %v", typ, j, got[j], want)
			}
		}

		a := make([]float32, rows)
		for j := range a {
			a[j] = float32(r.Float64())
		}
		y := make([]float32, hd)
		var buf []float32
		AxpyRows(a, KVRowsF32(typ, block[2*rb:], rows, hd, &buf), hd, y)
		for i := range y {
			want := 0.0
			for j := range a {
				want += float64(a[j]) * float64(stored[j*hd+i])
			}
			if math.Abs(float64(y[i])-want) > 1e-5*(1+math.Abs(want)) {
				t.Errorf("%v: Σ a_j v_j[%d] = %v, want %v", typ, i, y[i], want)
			}
		}
	}
}
