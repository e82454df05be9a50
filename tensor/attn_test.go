package tensor

import (
	"math"
	"math/rand"
	"testing"

	"github.com/stepflash/stepflash/gguf"
)

func randF32s(r *rand.Rand, n int) []float32 {
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(r.NormFloat64())
	}
	return x
}

// The attention kernels in use and every SIMD variant the CPU has give the
// generic kernels' bits, for tile shapes with every remainder, and the
// generic scores are the dot products.
func TestAttnKernelsMatchGeneric(t *testing.T) {
	r := rand.New(rand.NewSource(7))
	type impl struct {
		name   string
		scores func(q []float32, M, d int, k []float32, nk int, s []float32, lds int)
		pv     func(p []float32, ldp int, cnt []int, v []float32, dv int, out []float32)
	}
	impls := []impl{{"active", attnScoresImpl, attnPVImpl}}
	for _, v := range attnVariants {
		if v.ok && v.scores != nil {
			impls = append(impls, impl{v.name, v.scores, v.pv})
		}
	}
	for _, d := range []int{16, 64, 128, 80, 24, 7} {
		for M := 1; M <= 9; M++ {
			for _, nk := range []int{1, 2, 3, 4, 5, 8, 31, 32, 37} {
				q, k := randF32s(r, M*d), randF32s(r, nk*d)
				lds := nk + 3
				want := make([]float32, M*lds)
				attnScoresGeneric(q, M, d, k, nk, want, lds)
				for m := 0; m < M; m++ {
					for j := 0; j < nk; j++ {
						var e float64
						for i := 0; i < d; i++ {
							e += float64(q[m*d+i]) * float64(k[j*d+i])
						}
						if g := float64(want[m*lds+j]); math.Abs(g-e) > 1e-5*(1+math.Abs(e))*float64(d) {
							t.Fatalf("d %d M %d nk %d: generic score (%d,%d) = %v, the dot product is %v", d, M, nk, m, j, g, e)
						}
					}
				}
				cnt := make([]int, M)
				for m := range cnt {
					cnt[m] = r.Intn(nk + 1)
					if r.Intn(2) == 0 {
						cnt[m] = nk
					}
				}
				p := randF32s(r, M*lds)
				v := randF32s(r, nk*d)
				out0 := randF32s(r, M*d)
				wantPV := append([]float32(nil), out0...)
				attnPVGeneric(p, lds, cnt, v, d, wantPV)
				for m, c := range cnt { // AttnPV is AxpyRows per query
					y := append([]float32(nil), out0[m*d:(m+1)*d]...)
					if c > 0 {
						AxpyRows(p[m*lds:m*lds+c], v, d, y)
					}
					for i := range y {
						if math.Float32bits(y[i]) != math.Float32bits(wantPV[m*d+i]) {
							t.Fatalf("d %d M %d nk %d: generic AttnPV query %d element %d = %v, AxpyRows gives %v", d, M, nk, m, i, wantPV[m*d+i], y[i])
						}
					}
				}
				for _, f := range impls {
					got := make([]float32, M*lds)
					f.scores(q, M, d, k, nk, got, lds)
					for m := 0; m < M; m++ {
						for j := 0; j < nk; j++ {
							if math.Float32bits(got[m*lds+j]) != math.Float32bits(want[m*lds+j]) {
								t.Fatalf("%s: d %d M %d nk %d: score (%d,%d) = %v, generic %v", f.name, d, M, nk, m, j, got[m*lds+j], want[m*lds+j])
							}
						}
					}
					gotPV := append([]float32(nil), out0...)
					f.pv(p, lds, cnt, v, d, gotPV)
					for i := range gotPV {
						if math.Float32bits(gotPV[i]) != math.Float32bits(wantPV[i]) {
							t.Fatalf("%s: d %d M %d nk %d cnt %v: AttnPV element %d = %v, generic %v", f.name, d, M, nk, cnt, i, gotPV[i], wantPV[i])
						}
					}
				}
			}
		}
	}
}

// KVRowsF32 converts every binary16 value exactly (the F16C path as the
// table), dequantizes Q8_0 rows as Dequantize, and returns F32 rows in place.
func TestKVRowsF32(t *testing.T) {
	const n = 1 << 16
	h := make([]byte, 2*n)
	for i := 0; i < n; i++ {
		h[2*i], h[2*i+1] = byte(i), byte(i>>8)
	}
	impls := map[string]func([]byte, []float32){"active": cvtF16Impl}
	for _, v := range attnVariants {
		if v.ok && v.cvtF16 != nil {
			impls[v.name] = v.cvtF16
		}
	}
	for name, f := range impls {
		for _, cnt := range []int{n, 8, 13, 40, 1} {
			got := make([]float32, cnt)
			f(h[:2*cnt], got)
			for i, g := range got {
				want := f16ToF32(uint16(i))
				if math.IsNaN(float64(want)) {
					if !math.IsNaN(float64(g)) {
						t.Fatalf("%s: %#04x gives %v, want a NaN", name, i, g)
					}
					continue
				}
				if math.Float32bits(g) != math.Float32bits(want) {
					t.Fatalf("%s: %#04x gives %v, want %v", name, i, g, want)
				}
			}
		}
	}
	r := rand.New(rand.NewSource(3))
	src := randF32s(r, 4*64)
	q8 := make([]byte, 4*KVRowBytes(gguf.TypeQ8_0, 64))
	for row := 0; row < 4; row++ {
		StoreKV(gguf.TypeQ8_0, src[row*64:(row+1)*64], q8[row*KVRowBytes(gguf.TypeQ8_0, 64):])
	}
	var buf []float32
	got := KVRowsF32(gguf.TypeQ8_0, q8, 4, 64, &buf)
	want := make([]float32, 4*64)
	if err := Dequantize(gguf.TypeQ8_0, q8, want); err != nil {
		t.Fatal(err)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("Q8_0 element %d = %v, Dequantize gives %v", i, got[i], want[i])
		}
	}
	f32 := make([]byte, 4*2*16)
	rows := KVRowsF32(gguf.TypeF32, f32, 2, 16, &buf)
	rows[5] = 1
	if F32s(f32)[5] != 1 {
		t.Fatal("F32 rows were copied, not returned in place")
	}
}

// ExpSum in use gives the generic kernel's results, and those are the
// softmax's numerator and denominator.
// KVBlocksF32 gives each block exactly what KVRowsF32 gives it alone, for
// every conversion variant, one to KVStreams blocks, every binary16 value,
// block sizes that the side-by-side kernel takes and ones it hands back to
// the block-by-block loop, and Q8_0 blocks.
func TestKVBlocksF32(t *testing.T) {
	impls := map[string]func([][]byte, int, []float32){"generic": cvtF16BlocksGeneric, "active": cvtF16BlocksImpl}
	for _, v := range attnVariants {
		if v.ok && v.cvtF16Blocks != nil {
			impls[v.name] = v.cvtF16Blocks
		}
	}
	defer func(f func([][]byte, int, []float32)) { cvtF16BlocksImpl = f }(cvtF16BlocksImpl)
	r := rand.New(rand.NewSource(5))
	for name, f := range impls {
		cvtF16BlocksImpl = f
		for _, tc := range []struct {
			typ     gguf.Type
			rows, n int
		}{
			{gguf.TypeF16, 32, 128}, // 4,096 values a block: with 4 blocks, 2^14 of the 2^16
			{gguf.TypeF16, 128, 128},
			{gguf.TypeF16, 3, 32},
			{gguf.TypeF16, 5, 24}, // 120 values: not a multiple of 32
			{gguf.TypeF16, 1, 8},
			{gguf.TypeQ8_0, 7, 64},
		} {
			for k := 1; k <= KVStreams; k++ {
				rb := KVRowBytes(tc.typ, tc.n)
				kvs := make([][]byte, k)
				for i := range kvs {
					kvs[i] = make([]byte, tc.rows*rb+3) // a longer slice: only rows*rb bytes count
					if tc.typ == gguf.TypeF16 {
						for j := 0; j+1 < len(kvs[i]); j += 2 {
							h := uint16(r.Intn(1 << 16))
							kvs[i][j], kvs[i][j+1] = byte(h), byte(h>>8)
						}
					} else {
						for row := 0; row < tc.rows; row++ {
							StoreKV(tc.typ, randF32s(r, tc.n), kvs[i][row*rb:])
						}
					}
				}
				var buf, one []float32
				got := KVBlocksF32(tc.typ, kvs, tc.rows, tc.n, &buf)
				m := tc.rows * tc.n
				if len(got) != k*m {
					t.Fatalf("%s %v %dx%d k=%d: %d values, want %d", name, tc.typ, tc.rows, tc.n, k, len(got), k*m)
				}
				for i, kv := range kvs {
					want := KVRowsF32(tc.typ, kv, tc.rows, tc.n, &one)
					for j, w := range want {
						g := got[i*m+j]
						if math.Float32bits(g) != math.Float32bits(w) && !(math.IsNaN(float64(g)) && math.IsNaN(float64(w))) {
							t.Fatalf("%s %v %dx%d k=%d: block %d value %d is %v, want %v", name, tc.typ, tc.rows, tc.n, k, i, j, g, w)
						}
					}
				}
			}
		}
	}
	for _, bad := range []struct {
		typ gguf.Type
		k   int
	}{{gguf.TypeF32, 1}, {gguf.TypeF16, 0}, {gguf.TypeF16, KVStreams + 1}} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("KVBlocksF32 of %d %v blocks did not panic", bad.k, bad.typ)
				}
			}()
			var buf []float32
			KVBlocksF32(bad.typ, make([][]byte, bad.k), 1, 32, &buf)
		}()
	}
}

func TestExpSum(t *testing.T) {
	r := rand.New(rand.NewSource(11))
	for _, n := range []int{1, 5, 8, 9, 16, 31, 64, 1000, 1024} {
		for _, bigTail := range []bool{false, true} {
			x := randF32s(r, n)
			for i := range x {
				x[i] *= 4
			}
			if bigTail {
				x[n-1] = 20 // the maximum in the tail
			}
			a, b := append([]float32(nil), x...), append([]float32(nil), x...)
			ma, sa := ExpSum(a)
			mb, sb := expSumGeneric(b)
			if ma != mb || sa != sb {
				t.Fatalf("n %d: ExpSum gives max %v sum %v, generic %v %v", n, ma, sa, mb, sb)
			}
			var want float64
			wm := x[0]
			for _, v := range x {
				wm = max(wm, v)
			}
			for i, v := range x {
				e := math.Exp(float64(v - wm))
				want += e
				if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
					t.Fatalf("n %d: element %d = %v, generic %v", n, i, a[i], b[i])
				}
				if math.Abs(float64(a[i])-e) > 2e-7*e+1e-30 {
					t.Fatalf("n %d: exp element %d = %v, want %v", n, i, a[i], e)
				}
			}
			if mb != wm || math.Abs(sb-want) > 1e-6*want {
				t.Fatalf("n %d: generic max %v sum %v, want %v %v", n, mb, sb, wm, want)
			}
		}
	}
}

// KVScratch.DotTile gives, bit for bit, what SetQuery and Dot give for each
// query alone, for every cache type, head size and tile shape.
func TestKVDotTile(t *testing.T) {
	r := rand.New(rand.NewSource(5))
	for _, typ := range []gguf.Type{gguf.TypeQ8_0, gguf.TypeF16, gguf.TypeF32} {
		for _, d := range []int{32, 64, 96, 128} {
			for _, M := range []int{1, 2, 3, 4, 5, 8, 9, 16} {
				for _, nk := range []int{1, 7, 32} {
					rb := KVRowBytes(typ, d)
					k := make([]byte, nk*rb)
					for j := 0; j < nk; j++ {
						StoreKV(typ, randF32s(r, d), k[j*rb:(j+1)*rb])
					}
					q := randF32s(r, M*d)
					lds := nk + 2
					got := make([]float32, M*lds)
					var s KVScratch
					s.SetQueries(typ, q, M, d)
					s.DotTile(k, nk, got, lds)
					for m := 0; m < M; m++ {
						var one KVScratch
						one.SetQuery(typ, q[m*d:(m+1)*d])
						want := make([]float32, nk)
						one.Dot(k, want)
						for j := range want {
							if math.Float32bits(got[m*lds+j]) != math.Float32bits(want[j]) {
								t.Fatalf("%v d %d M %d nk %d: query %d key %d = %v, alone %v", typ, d, M, nk, m, j, got[m*lds+j], want[j])
							}
						}
					}
				}
			}
		}
	}
}
