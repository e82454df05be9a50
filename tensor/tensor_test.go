package tensor

import (
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stepflash/stepflash/gguf"
)

func TestHalfConversions(t *testing.T) {
	// Every binary16 value round-trips through float32, and agrees with the
	// float64 reference decoder.
	for h := 0; h < 1<<16; h++ {
		f := f16ToF32(uint16(h))
		ref := refHalf(uint16(h))
		if math.IsNaN(ref) {
			if !math.IsNaN(float64(f)) {
				t.Fatalf("f16 %#04x: got %v, want NaN", h, f)
			}
			continue
		}
		if float64(f) != ref {
			t.Fatalf("f16 %#04x: got %v, want %v", h, f, ref)
		}
		if back := f32ToF16(f); back != uint16(h) {
			t.Fatalf("f16 %#04x round trip gave %#04x", h, back)
		}
	}
	// Rounding: compare with the nearest of the two neighbouring halves.
	rng := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 200000; i++ {
		f := math.Float32frombits(rng.Uint32())
		if math.IsNaN(float64(f)) || math.Abs(float64(f)) >= 65504 {
			continue
		}
		h := f32ToF16(f)
		got := float64(f16ToF32(h))
		// Check no other half is closer (ties must be even).
		for _, nb := range []uint16{h - 1, h + 1, h ^ 0x8000} {
			o := refHalf(nb)
			if math.IsNaN(o) || math.IsInf(o, 0) {
				continue
			}
			dg, do := math.Abs(got-float64(f)), math.Abs(o-float64(f))
			if do < dg || (do == dg && h&1 == 1 && nb&1 == 0) {
				t.Fatalf("f32ToF16(%v) = %#04x (%v), but %#04x (%v) is nearer", f, h, got, nb, o)
			}
		}
	}
	if got := f32ToBF16(1.00390625); got != 0x3f80 { // tie, rounds to even
		t.Errorf("bf16 tie: got %#04x", got)
	}
	if got := f32ToBF16(1.01171875); got != 0x3f82 { // tie, rounds up to even
		t.Errorf("bf16 tie up: got %#04x", got)
	}
}

// TestDequantizeReference compares Dequantize with the independent
// element-wise decoder on random blocks of every type.
func TestDequantizeReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, typ := range allTypes {
		t.Run(typ.String(), func(t *testing.T) {
			n := 3 * 256
			src := randRow(rng, typ, n)
			got := make([]float32, n)
			if err := Dequantize(typ, src, got); err != nil {
				t.Fatal(err)
			}
			want := refDequant(typ, src, n)
			for i := range got {
				if d := math.Abs(float64(got[i]) - want[i]); d > 1e-6*math.Max(1, math.Abs(want[i])) {
					t.Fatalf("element %d: got %v, want %v", i, got[i], want[i])
				}
			}
		})
	}
}

func TestDequantizeErrors(t *testing.T) {
	if err := Dequantize(gguf.TypeQ4_0, make([]byte, 17), make([]float32, 32)); err == nil {
		t.Error("short src: no error")
	}
	if err := Dequantize(gguf.TypeQ4_0, make([]byte, 18), make([]float32, 31)); err == nil {
		t.Error("partial block: no error")
	}
	if err := Dequantize(gguf.TypeQ8_K, make([]byte, 292), make([]float32, 256)); err == nil {
		t.Error("unsupported type: no error")
	}
	if _, err := NewMatrix(gguf.TypeQ4_K, 2, 128, make([]byte, 144)); err == nil {
		t.Error("NewMatrix: cols not a block multiple: no error")
	}
	if _, err := NewMatrix(gguf.TypeQ4_K, 2, 256, make([]byte, 144)); err == nil {
		t.Error("NewMatrix: short data: no error")
	}
	if _, err := NewMatrix(gguf.TypeI8, 2, 256, make([]byte, 512)); err == nil {
		t.Error("NewMatrix: unsupported type: no error")
	}
	m, err := NewMatrix(gguf.TypeQ4_K, 3, 512, make([]byte, 3*288))
	if err != nil {
		t.Fatal(err)
	}
	if m.RowBytes() != 288 || m.Slice(1, 3).Rows != 2 || len(m.Slice(1, 3).Data) != 576 {
		t.Errorf("RowBytes/Slice wrong: %d %+v", m.RowBytes(), m.Slice(1, 3))
	}
}

// TestActivationQuantizers checks the Q8 activation formats.
func TestActivationQuantizers(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	x := randFloats(rng, 512)
	x[3] = 0
	copy(x[256:288], make([]float32, 32)) // an all-zero block
	for _, kind := range []actKind{actQ8_0, actQ8_1, actQ8_K} {
		var a act
		a.prepare(kind, len(x), 1)
		a.quantize(x, 0, len(x))
		bs := qk
		if kind == actQ8_K {
			bs = qkK
		}
		for b := 0; b < len(x)/bs; b++ {
			amax := 0.0
			for _, v := range x[b*bs : (b+1)*bs] {
				amax = math.Max(amax, math.Abs(float64(v)))
			}
			d := float64(a.d[b])
			if math.Abs(math.Abs(d)-amax/127) > amax/127*1e-3 {
				t.Fatalf("kind %d block %d: scale %v, want ±%v", kind, b, d, amax/127)
			}
			sum := 0
			for j := b * bs; j < (b+1)*bs; j++ {
				q := int(a.qs[j])
				sum += q
				if amax == 0 {
					if q != 0 {
						t.Fatalf("zero block gave q=%d", q)
					}
					continue
				}
				if err := math.Abs(d*float64(q) - float64(x[j])); err > math.Abs(d)*0.57+1e-7 {
					t.Fatalf("kind %d elem %d: q=%d d=%v x=%v", kind, j, q, d, x[j])
				}
			}
			if kind == actQ8_1 {
				want := float64(roundF16(float32(amax/127) * float32(sum)))
				if math.Abs(float64(a.s[b])-want) > math.Abs(want)*1e-3+1e-6 {
					t.Fatalf("q8_1 s: got %v want %v", a.s[b], want)
				}
			}
		}
		if kind == actQ8_K {
			for g := 0; g < len(x)/16; g++ {
				s := 0
				for _, q := range a.qs[16*g : 16*g+16] {
					s += int(q)
				}
				if int(a.bsums[g]) != s {
					t.Fatalf("bsums[%d] = %d, want %d", g, a.bsums[g], s)
				}
			}
		}
	}
}

// activationValues dequantizes activation vector 0 of a to float64.
func activationValues(a *act) []float64 {
	out := make([]float64, a.cols)
	for i := range out {
		switch a.kind {
		case actF32, actF16, actBF16:
			out[i] = float64(a.f[i])
		case actQ8_0, actQ8_1:
			out[i] = float64(a.d[i/qk]) * float64(a.qs[i])
		case actQ8_K:
			out[i] = float64(a.d[i/qkK]) * float64(a.qs[i])
		}
	}
	return out
}

var testCols = []int{256, 512, 1280, 2304}

// TestFusedDot checks each weight type's fused kernel against the float64 dot
// of the reference-dequantized row with the dequantized activation.
func TestFusedDot(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	for _, typ := range allTypes {
		for _, cols := range testCols {
			t.Run(fmt.Sprintf("%v/%d", typ, cols), func(t *testing.T) {
				w := randRow(rng, typ, cols)
				x := randFloats(rng, cols)
				var a act
				a.prepare(vecDotKind(typ), cols, 1)
				a.quantize(x, 0, cols)
				wv := refDequant(typ, w, cols)
				av := activationValues(&a)
				var want, mag float64
				for i := range wv {
					want += wv[i] * av[i]
					mag += math.Abs(wv[i] * av[i])
				}
				if a.kind == actQ8_1 {
					// Q8_1 carries s = fp16(d*sum(q)) for the min term instead
					// of the exact sum of the dequantized activations.
					for b := 0; b < cols/qk; b++ {
						mb := refHalf(uint16(w[b*typ.BlockBytes()+2]) | uint16(w[b*typ.BlockBytes()+3])<<8)
						var ysum float64
						for _, v := range av[b*qk : (b+1)*qk] {
							ysum += v
						}
						want += mb * (float64(a.s[b]) - ysum)
					}
				}
				for name, k := range map[string]rowsFunc{"active": kernels[typ], "generic": rowsOf(genericKernels[typ])} {
					var o [1]float32
					k(w, 1, &a, 0, o[:])
					got := float64(o[0])
					if math.Abs(got-want) > 1e-5*mag+1e-6 {
						t.Errorf("%s: got %v, want %v (sum |terms| %v)", name, got, want, mag)
					}
				}
			})
		}
	}
}

// TestKernelsBitExact compares the active (SIMD when available) kernels with
// the pure-Go ones bit for bit (within approxBound where approxKernels says
// so), at odd sizes and activation offsets.
func TestKernelsBitExact(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	for _, typ := range allTypes {
		sizes := []int{256, 768, 1280, 4096}
		if typ.BlockSize() == 32 {
			sizes = append(sizes, 32, 96, 160, 224)
		}
		if typ.BlockSize() == 1 {
			sizes = append(sizes, 1, 7, 31, 33, 100, 257)
		}
		for _, cols := range sizes {
			for rep := 0; rep < 3; rep++ {
				const nrows = 3
				var w []byte
				for r := 0; r < nrows; r++ {
					w = append(w, randRow(rng, typ, cols)...)
				}
				rb := len(w) / nrows
				x := randFloats(rng, 3*cols)
				if rep == 2 {
					for i := range x {
						x[i] *= 1e-3 * float32(i%7)
					}
				}
				var a act
				a.prepare(vecDotKind(typ), cols, 3)
				a.quantize(x, 0, 3*cols)
				for j := 0; j < 3; j++ {
					var outs [nrows]float32
					kernels[typ](w, nrows, &a, j*cols, outs[:])
					for r, got := range outs {
						want := genericKernels[typ](w[r*rb:(r+1)*rb], &a, j*cols)
						if approxKernels(typ) {
							if bound := approxBound(typ, w[r*rb:(r+1)*rb], a.f[j*cols:(j+1)*cols]); math.Abs(float64(got)-float64(want)) > bound {
								t.Fatalf("%v cols %d vec %d row %d: active %v, generic %v: differ by more than %g", typ, cols, j, r, got, want, bound)
							}
							continue
						}
						if math.Float32bits(got) != math.Float32bits(want) {
							t.Fatalf("%v cols %d vec %d row %d: active %v (%#x) != generic %v (%#x)", typ, cols, j, r, got, math.Float32bits(got), want, math.Float32bits(want))
						}
					}
				}
			}
		}
	}
}

// TestQuantizersBitExact compares the active activation quantizers with the
// pure-Go ones, including zero blocks, ties and repeated maxima.
func TestQuantizersBitExact(t *testing.T) {
	rng := rand.New(rand.NewPCG(17, 18))
	x := randFloats(rng, 8*256)
	clear(x[256:512])              // zero block
	x[600], x[700] = -3.5, 3.5     // equal magnitudes: the first one wins
	x[900], x[901] = 0.5, -0.5     // ties
	for i := 1024; i < 1280; i++ { // values on exact .5 boundaries after scaling
		x[i] = float32(i%9-4) * 0.5
	}
	for i := 1280; i < 1536; i++ {
		x[i] *= 1e-30
	}
	for _, kind := range []actKind{actQ8_0, actQ8_1, actQ8_K} {
		var a1, a2 act
		a1.prepare(kind, 256, 8)
		a2.prepare(kind, 256, 8)
		a1.quantize(x, 0, len(x))
		saved0, savedK := quantQ8_0Impl, quantQ8_KImpl
		quantQ8_0Impl, quantQ8_KImpl = quantizeBlockQ8_0, quantizeBlockQ8_K
		a2.quantize(x, 0, len(x))
		quantQ8_0Impl, quantQ8_KImpl = saved0, savedK
		for i := range a1.qs {
			if a1.qs[i] != a2.qs[i] {
				t.Fatalf("kind %d: qs[%d] = %d, want %d", kind, i, a1.qs[i], a2.qs[i])
			}
		}
		for i := range a1.d {
			if math.Float32bits(a1.d[i]) != math.Float32bits(a2.d[i]) {
				t.Fatalf("kind %d: d[%d] = %v, want %v", kind, i, a1.d[i], a2.d[i])
			}
		}
		for i := range a1.s {
			if math.Float32bits(a1.s[i]) != math.Float32bits(a2.s[i]) {
				t.Fatalf("kind %d: s[%d] = %v, want %v", kind, i, a1.s[i], a2.s[i])
			}
		}
		for i := range a1.bsums {
			if a1.bsums[i] != a2.bsums[i] {
				t.Fatalf("kind %d: bsums[%d] = %d, want %d", kind, i, a1.bsums[i], a2.bsums[i])
			}
		}
	}
}

func TestVectorOpsBitExact(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	for _, n := range []int{0, 1, 7, 8, 15, 16, 31, 32, 33, 63, 64, 100, 1024, 1031} {
		a, b := randFloats(rng, n), randFloats(rng, n)
		if got, want := Dot(a, b), dotGeneric32(a, b); math.Float32bits(got) != math.Float32bits(want) {
			t.Errorf("Dot n=%d: %v != %v", n, got, want)
		}
		type op struct {
			name       string
			simd, pure func(x, y []float32)
		}
		ops := []op{
			{"Axpy", func(x, y []float32) { Axpy(0.37, x, y) }, func(x, y []float32) { axpyGeneric(0.37, x, y) }},
			{"Scale", func(x, y []float32) { Scale(y, -1.3) }, func(x, y []float32) { scaleGeneric(y, -1.3) }},
			{"Add", func(x, y []float32) { Add(y, x) }, func(x, y []float32) { addGeneric(y, x) }},
			{"Mul", func(x, y []float32) { Mul(y, x) }, func(x, y []float32) { mulGeneric(y, x) }},
			{"Exp", func(x, y []float32) { Exp(y) }, func(x, y []float32) { expGeneric(y) }},
			{"SwiGLU", func(x, y []float32) { SwiGLU(y, x) }, func(x, y []float32) { swigluGeneric(y, x) }},
		}
		for _, o := range ops {
			y1 := append([]float32(nil), b...)
			y2 := append([]float32(nil), b...)
			if o.name == "Exp" || o.name == "SwiGLU" {
				for i := range y1 {
					y1[i] *= 40 // exercise the overflow / underflow paths too
					y2[i] = y1[i]
				}
			}
			o.simd(a, y1)
			o.pure(a, y2)
			for i := range y1 {
				if math.Float32bits(y1[i]) != math.Float32bits(y2[i]) {
					t.Fatalf("%s n=%d elem %d: %v != %v", o.name, n, i, y1[i], y2[i])
				}
			}
		}
	}
}

func TestVectorOps(t *testing.T) {
	rng := rand.New(rand.NewPCG(13, 14))
	n := 1000
	a, b := randFloats(rng, n), randFloats(rng, n)
	var want float64
	for i := range a {
		want += float64(a[i]) * float64(b[i])
	}
	if got := Dot(a, b); math.Abs(float64(got)-want) > 1e-4 {
		t.Errorf("Dot: %v want %v", got, want)
	}
	// Exp accuracy over a wide range, including the special cases.
	xs := []float32{0, 1, -1, 10, -10, 88, 88.7, 89, -87, -103, -150, float32(math.Inf(-1)), 0.5, -0.5}
	for i := 0; i < 2000; i++ {
		xs = append(xs, float32(rng.Float64()*200-100))
	}
	ys := append([]float32(nil), xs...)
	Exp(ys)
	for i, x := range xs {
		want := math.Exp(float64(x))
		if want > math.MaxFloat32 {
			if !math.IsInf(float64(ys[i]), 1) {
				t.Errorf("Exp(%v) = %v, want +Inf", x, ys[i])
			}
			continue
		}
		tol := 4e-7*want + 1e-44
		if math.Abs(float64(ys[i])-want) > tol {
			t.Errorf("Exp(%v) = %v, want %v", x, ys[i], want)
		}
	}
	// Softmax sums to 1 and matches float64.
	s := randFloats(rng, 777)
	s[5] = float32(math.Inf(-1))
	ref := make([]float64, len(s))
	m := math.Inf(-1)
	for _, v := range s {
		m = math.Max(m, float64(v))
	}
	var sum float64
	for i, v := range s {
		ref[i] = math.Exp(float64(v) - m)
		sum += ref[i]
	}
	Softmax(s)
	for i := range s {
		if math.Abs(float64(s[i])-ref[i]/sum) > 1e-6 {
			t.Fatalf("Softmax[%d] = %v, want %v", i, s[i], ref[i]/sum)
		}
	}
	// RMSNorm, aliasing dst and x.
	x := randFloats(rng, 256)
	w := randFloats(rng, 256)
	var ss float64
	for _, v := range x {
		ss += float64(v) * float64(v)
	}
	sc := 1 / math.Sqrt(ss/256+1e-5)
	exp := make([]float64, 256)
	for i := range x {
		exp[i] = float64(x[i]) * sc * float64(w[i])
	}
	RMSNorm(x, x, w, 1e-5)
	for i := range x {
		if math.Abs(float64(x[i])-exp[i]) > 1e-5*math.Abs(exp[i])+1e-6 {
			t.Fatalf("RMSNorm[%d] = %v, want %v", i, x[i], exp[i])
		}
	}
	// SwiGLU.
	g, u := randFloats(rng, 100), randFloats(rng, 100)
	g0 := append([]float32(nil), g...)
	SwiGLU(g, u)
	for i := range g {
		want := float64(g0[i]) / (1 + math.Exp(-float64(g0[i]))) * float64(u[i])
		if math.Abs(float64(g[i])-want) > 1e-6*math.Abs(want)+1e-7 {
			t.Fatalf("SwiGLU[%d] = %v, want %v", i, g[i], want)
		}
	}
	// Elementwise ops.
	y := []float32{1, 2, 3}
	Axpy(2, []float32{1, 1, 1}, y)
	Add(y, []float32{1, 0, 0})
	Mul(y, []float32{2, 2, 1})
	Scale(y, 0.5)
	if y[0] != 4 || y[1] != 4 || y[2] != 2.5 {
		t.Errorf("elementwise ops: %v", y)
	}
}

func randMatrix(rng *rand.Rand, typ gguf.Type, rows, cols int) Matrix {
	var data []byte
	for r := 0; r < rows; r++ {
		data = append(data, randRow(rng, typ, cols)...)
	}
	m, err := NewMatrix(typ, rows, cols, data)
	if err != nil {
		panic(err)
	}
	return m
}

type matMulCase struct {
	typ  gguf.Type
	cols int
}

// matMulCases lists every type at 512 columns, plus an odd number of blocks
// for the 32-element formats (the batched kernels work on block pairs).
func matMulCases() []matMulCase {
	var cs []matMulCase
	for _, typ := range allTypes {
		cs = append(cs, matMulCase{typ, 512})
		if typ.BlockSize() == 32 {
			cs = append(cs, matMulCase{typ, 160})
		}
		if typ.BlockSize() == 1 {
			// float rows of lengths that are not multiples of 8 or 32
			// (Qwen2.5-VL's 14-pixel patches: 588; its feed-forward: 3420)
			cs = append(cs, matMulCase{typ, 588}, matMulCase{typ, 3420}, matMulCase{typ, 13})
		}
	}
	return cs
}

// approxKernels says whether typ's kernels on this CPU are not bit-exact
// with the generic ones (kernelVariant.approx): then results are held to
// approxBound of the generic kernel's, and to each other's bits.
func approxKernels(typ gguf.Type) bool {
	for _, v := range kernelVariants {
		if v.typ == typ && v.ok && v.approx {
			return true
		}
	}
	return false
}

// TestMatMul checks that MatMul with n inputs, single- and multi-threaded,
// equals n separate mat-vecs and the fused kernel on each row, bit for bit
// (the mat-vecs within approxBound of it where approxKernels says so).
func TestMatMul(t *testing.T) {
	rng := rand.New(rand.NewPCG(15, 16))
	pool := NewPool(3)
	defer pool.Close()
	defer func(v int) { rowBlockBytes = v }(rowBlockBytes)
	rowBlockBytes = 3000 // several row blocks per chunk
	for _, tc := range matMulCases() {
		typ, rows, cols, n := tc.typ, 37, tc.cols, 21
		m := randMatrix(rng, typ, rows, cols)
		x := randFloats(rng, n*cols)
		multi := make([]float32, n*rows)
		MatMul(pool, m, x, n, multi)
		single := make([]float32, n*rows)
		MatMul(nil, m, x, n, single)
		for j := 0; j < n; j++ {
			vec := make([]float32, rows)
			MatMul(pool, m, x[j*cols:(j+1)*cols], 1, vec)
			var a act
			a.prepare(vecDotKind(typ), cols, 1)
			a.quantize(x[j*cols:], 0, cols)
			for r := 0; r < rows; r++ {
				want := genericKernels[typ](m.Row(r), &a, 0)
				if approxKernels(typ) {
					// Not the generic kernel's bits, but one result in every
					// shape: batch, threads and decode agree bit for bit.
					if bound := approxBound(typ, m.Row(r), a.f[:cols]); math.Abs(float64(vec[r])-float64(want)) > bound {
						t.Fatalf("%v: out[%d][%d] = %v, want %v within %g", typ, j, r, vec[r], want, bound)
					}
					want = vec[r]
				}
				for _, got := range []float32{multi[j*rows+r], single[j*rows+r], vec[r]} {
					if math.Float32bits(got) != math.Float32bits(want) {
						t.Fatalf("%v: out[%d][%d] = %v, want %v", typ, j, r, got, want)
					}
				}
			}
		}
	}
}

// TestMatMulMany checks that shared-input products equal separate MatMuls.
func TestMatMulMany(t *testing.T) {
	rng := rand.New(rand.NewPCG(23, 24))
	pool := NewPool(2)
	defer pool.Close()
	cols := 512
	ms := []Matrix{
		randMatrix(rng, gguf.TypeQ4_K, 40, cols),
		randMatrix(rng, gguf.TypeQ6_K, 17, cols),
		randMatrix(rng, gguf.TypeQ8_0, 33, cols),
		randMatrix(rng, gguf.TypeF32, 9, cols),
		randMatrix(rng, gguf.TypeQ4_K, 64, cols),
	}
	for _, n := range []int{1, 6} {
		x := randFloats(rng, n*cols)
		outs := make([][]float32, len(ms))
		for i, m := range ms {
			outs[i] = make([]float32, n*m.Rows)
		}
		MatMulMany(pool, ms, x, n, outs)
		for i, m := range ms {
			want := make([]float32, n*m.Rows)
			MatMul(nil, m, x, n, want)
			for k := range want {
				if math.Float32bits(outs[i][k]) != math.Float32bits(want[k]) {
					t.Fatalf("n=%d matrix %d (%v) elem %d: %v != %v", n, i, m.Type, k, outs[i][k], want[k])
				}
			}
		}
	}
}

func TestPool(t *testing.T) {
	for _, threads := range []int{1, 2, 3, 8} {
		p := NewPool(threads)
		if p.Threads() != threads {
			t.Fatalf("Threads() = %d", p.Threads())
		}
		for _, n := range []int{0, 1, 2, 5, 17, 1000} {
			hits := make([]int32, n)
			var calls atomic.Int32
			p.For(n, func(lo, hi int) {
				calls.Add(1)
				if lo >= hi {
					t.Errorf("empty chunk [%d,%d)", lo, hi)
				}
				for i := lo; i < hi; i++ {
					atomic.AddInt32(&hits[i], 1)
				}
			})
			for i, h := range hits {
				if h != 1 {
					t.Fatalf("threads %d n %d: index %d run %d times", threads, n, i, h)
				}
			}
		}
		// After an idle spell the workers have parked; they must wake up.
		time.Sleep(3 * spinTime)
		var sum atomic.Int64
		p.For(64, func(lo, hi int) {
			time.Sleep(50 * time.Microsecond) // long enough for everyone to join
			for i := lo; i < hi; i++ {
				sum.Add(int64(i))
			}
		})
		if sum.Load() != 2016 {
			t.Fatalf("threads %d: sum after parking %d", threads, sum.Load())
		}
		// Concurrent callers are serialized and each gets its own result.
		var wg sync.WaitGroup
		for g := 0; g < 4; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for it := 0; it < 50; it++ {
					var sum atomic.Int64
					p.For(100, func(lo, hi int) {
						for i := lo; i < hi; i++ {
							sum.Add(int64(i))
						}
					})
					if sum.Load() != 4950 {
						t.Errorf("sum %d", sum.Load())
					}
				}
			}()
		}
		wg.Wait()
		if threads == 3 {
			time.Sleep(3 * spinTime) // close with parked workers
		}
		p.Close()
		p.Close()
	}
	var nilPool *Pool
	ran := false
	nilPool.For(3, func(lo, hi int) { ran = lo == 0 && hi == 3 })
	if !ran || nilPool.Threads() != 1 {
		t.Error("nil pool")
	}
}
