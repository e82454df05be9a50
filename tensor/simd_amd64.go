//go:build goexperiment.simd && amd64

package tensor

import (
	"math"
	"simd/archsimd"
	"unsafe"

	"github.com/stepflash/stepflash/gguf"
)

// The SIMD kernels need AVX2 only (256-bit vectors); each reproduces the lane
// layout and float operation order of its pure-Go twin in dot.go / vec.go.

// hasSIMD reports whether the SIMD kernels are in use.
var hasSIMD = archsimd.X86.AVX2()

// kernelVariant is one SIMD implementation of a weight type's kernel; tests
// check every variant the CPU can run against the pure-Go kernel, including
// those that a faster variant replaces in the dispatch table.
type kernelVariant struct {
	typ   gguf.Type
	name  string
	ok    bool // the CPU supports it
	rows  rowsFunc
	rows4 rows4Func // or a 4-vector kernel
	rowsN rowsNFunc // or a whole-batch kernel
	// approx: results within a rounding bound of the generic kernel's
	// instead of bit-identical (mmBF16DP only; see doc.go).
	approx bool
}

var kernelVariants []kernelVariant

// vecVariant is one SIMD implementation of Dot (dot) or Axpy (axpy), for
// the tests (see kernelVariant).
type vecVariant struct {
	name     string
	ok       bool
	dot      func(a, b []float32) float32
	axpy     func(a float32, x, y []float32)
	dotRows  func(q, k []float32, stride int, out []float32)
	axpyRows func(a, x []float32, stride int, y []float32)
	subMax   func(x []float32)
	mulScale func(dst, x, w []float32, scale float32)
	sumWords func(b []byte) uint32
}

var vecVariants = []vecVariant{
	{name: "dot/avx2", ok: hasSIMD, dot: dotSIMD32},
	{name: "dot/avx512", ok: hasSIMD && archsimd.X86.AVX512(), dot: dotSIMD512},
	{name: "axpy/avx2", ok: hasSIMD, axpy: axpySIMD},
	{name: "axpy/avx512", ok: hasSIMD && archsimd.X86.AVX512(), axpy: axpySIMD512},
	{name: "dotRows/avx512", ok: hasSIMD && archsimd.X86.AVX512(), dotRows: dotRowsSIMD512},
	{name: "axpyRows/avx512", ok: hasSIMD && archsimd.X86.AVX512(), axpyRows: axpyRowsSIMD512},
	{name: "subMax/avx512", ok: hasSIMD && archsimd.X86.AVX512(), subMax: subMaxSIMD512},
	{name: "mulScale/avx512", ok: hasSIMD && archsimd.X86.AVX512(), mulScale: mulScaleSIMD512},
	{name: "sumWords/avx512", ok: hasSIMD && archsimd.X86.AVX512(), sumWords: sumWordsSIMD512},
}

func addVariant4(t gguf.Type, name string, ok bool, f rows4Func) {
	kernelVariants = append(kernelVariants, kernelVariant{typ: t, name: name, ok: ok, rows4: f})
	if ok {
		kernels4[t] = f
	}
}

func addVariantN(t gguf.Type, name string, ok bool, f rowsNFunc) {
	kernelVariants = append(kernelVariants, kernelVariant{typ: t, name: name, ok: ok, rowsN: f})
	if ok {
		kernelsN[t] = f
	}
}

func addVariant(t gguf.Type, name string, ok bool, f rowsFunc) {
	kernelVariants = append(kernelVariants, kernelVariant{typ: t, name: name, ok: ok, rows: f})
	if ok {
		kernels[t] = f
	}
}

func init() {
	avx512 := hasSIMD && archsimd.X86.AVX512()
	addVariant(gguf.TypeF32, "avx2", hasSIMD, dotF32SIMD)
	addVariantN(gguf.TypeF32, "avx2", hasSIMD, mmF32)
	addVariant(gguf.TypeF16, "avx2", hasSIMD, dotF16SIMD)
	// F16C's VCVTPH2PS (Go assembly) where the CPU has it: f16mm_amd64.go.
	addVariant(gguf.TypeF16, "f16c", hasF16C, dotF16C)
	addVariantN(gguf.TypeF16, "f16c", hasF16C, mmF16C)
	addVariant(gguf.TypeBF16, "avx2", hasSIMD, dotBF16SIMD)
	addVariantN(gguf.TypeBF16, "avx2", hasSIMD, mmBF16)
	// AVX512_BF16's VDPBF16PS (Go assembly; not bit-exact): bf16dp_amd64.go.
	addVariant(gguf.TypeBF16, "avx512bf16", hasBF16DP, dotBF16DP)
	kernelVariants[len(kernelVariants)-1].approx = true
	addVariantN(gguf.TypeBF16, "avx512bf16", hasBF16DP, mmBF16DP)
	kernelVariants[len(kernelVariants)-1].approx = true
	packBF16 = hasBF16DP
	addVariant(gguf.TypeQ8_0, "avx2", hasSIMD, dotQ8_0SIMD)
	addVariant(gguf.TypeQ4_0, "avx2", hasSIMD, dotQ4_0SIMD)
	addVariant(gguf.TypeQ4_1, "avx2", hasSIMD, dotQ4_1SIMD)
	addVariant(gguf.TypeQ5_0, "avx2", hasSIMD, dotQ5_0SIMD)
	addVariant(gguf.TypeQ5_1, "avx2", hasSIMD, dotQ5_1SIMD)
	addVariant(gguf.TypeQ2_K, "avx2", hasSIMD, dotQ2_KSIMD)
	addVariant(gguf.TypeQ2_K, "avx512", avx512, dotQ2_KAVX512)
	addVariant(gguf.TypeQ3_K, "avx2", hasSIMD, dotQ3_KSIMD)
	addVariant(gguf.TypeQ3_K, "avx512", avx512, dotQ3_KAVX512)
	// GFNI and VPDPWSSD in Go assembly (kvnni_amd64.go); registered
	// last, they win where the CPU has both.
	addVariant(gguf.TypeQ2_K, "avx512vnni", hasKVNNI, dotQ2_KVNNI)
	addVariant(gguf.TypeQ3_K, "avx512vnni", hasKVNNI, dotQ3_KVNNI)
	addVariant(gguf.TypeQ4_K, "avx2", hasSIMD, dotQ4_KSIMD)
	addVariant(gguf.TypeQ4_K, "avx512", avx512, dotQ4_KAVX512)
	addVariant(gguf.TypeQ4_K, "avx512vnni", hasKVNNI, dotQ4_KVNNI)
	addVariant(gguf.TypeQ5_K, "avx2", hasSIMD, dotQ5_KSIMD)
	addVariant(gguf.TypeQ5_K, "avx512", avx512, dotQ5_KAVX512)
	addVariant4(gguf.TypeQ5_K, "avx512x4", avx512, dot4Q5_KAVX512)
	addVariant4(gguf.TypeQ2_K, "avx512x4", avx512, dot4Q2_KAVX512)
	addVariant4(gguf.TypeQ3_K, "avx512x4", avx512, dot4Q3_KAVX512)
	addVariant(gguf.TypeQ6_K, "avx2", hasSIMD, dotQ6_KSIMD)
	addVariant(gguf.TypeQ6_K, "avx512", avx512, dotQ6_KAVX512Shift)
	// dotQ6_KAVX512 unpacks the high bits with GF2P8AFFINEQB; registered
	// last, it wins where the CPU has GFNI.
	addVariant(gguf.TypeQ6_K, "avx512gfni", avx512 && archsimd.X86.AVX512GFNI(), dotQ6_KAVX512)
	addVariant(gguf.TypeQ6_K, "avx512vnni", hasKVNNI, dotQ6_KVNNI)
	addVariant4(gguf.TypeQ4_K, "avx2x4", hasSIMD, dot4Q4_KSIMD)
	addVariant4(gguf.TypeQ4_K, "avx512x4", avx512, dot4Q4_KAVX512)
	addVariantN(gguf.TypeQ4_K, "avx512tile", avx512, mmQ4_KAVX512)
	addVariant4(gguf.TypeQ6_K, "avx2x4", hasSIMD, dot4Q6_KSIMD)
	addVariant4(gguf.TypeQ6_K, "avx512x4", avx512, dot4Q6_KAVX512)
	addVariantN(gguf.TypeQ6_K, "avx512tile", avx512, mmQ6_KAVX512)
	addVariantN(gguf.TypeQ8_0, "avx512tile", avx512, mmQ8_0AVX512)
	addVariantN(gguf.TypeQ4_0, "avx512tile", avx512, mmQ4_0AVX512)
	addVariantN(gguf.TypeQ5_0, "avx512tile", avx512, mmQ5_0AVX512)
	addVariantN(gguf.TypeQ4_1, "avx512tile", avx512, mmQ4_1AVX512)
	addVariantN(gguf.TypeQ5_1, "avx512tile", avx512, mmQ5_1AVX512)
	// VPDPBUSD (Go assembly: archsimd lacks it) for the signed formats;
	// registered after their avx512tile kernels, it wins where the CPU has
	// AVX-512 VNNI.
	vnni := avx512 && archsimd.X86.AVX512VNNI()
	addVariantN(gguf.TypeQ8_0, "avx512vnni", vnni, mmQ8_0VNNI)
	addVariantN(gguf.TypeQ4_0, "avx512vnni", vnni, mmQ4_0VNNI)
	addVariantN(gguf.TypeQ5_0, "avx512vnni", vnni, mmQ5_0VNNI)
	if !hasSIMD {
		return
	}
	dotImpl = dotSIMD32
	axpyImpl = axpySIMD
	if avx512 {
		dotImpl = dotSIMD512
		axpyImpl = axpySIMD512
		dotRowsImpl = dotRowsSIMD512
		axpyRowsImpl = axpyRowsSIMD512
		subMaxImpl = subMaxSIMD512
		mulScaleImpl = mulScaleSIMD512
		sumWordsImpl = sumWordsSIMD512
	}
	scaleImpl = scaleSIMD
	addImpl = addSIMD
	mulImpl = mulSIMD
	expImpl = expSIMD
	swigluImpl = swigluSIMD
	if hasF16C {
		roundF16Rows = roundF16RowsF16C
	}
	if avx512 {
		permuteQ8K = true
		quantQ8_0Impl = quantQ8_0SIMD
		quantQ8_KImpl = quantQ8_KSIMD
	}
}

type (
	f32x8  = archsimd.Float32x8
	i32x8  = archsimd.Int32x8
	u32x8  = archsimd.Uint32x8
	i16x16 = archsimd.Int16x16
	i8x32  = archsimd.Int8x32
	u8x32  = archsimd.Uint8x32
	i8x16  = archsimd.Int8x16
)

// Unchecked loads: callers check bounds once per row.

func ldF32(p unsafe.Pointer, i int) f32x8 {
	return archsimd.LoadFloat32x8((*[8]float32)(unsafe.Add(p, 4*i)))
}
func stF32(v f32x8, p unsafe.Pointer, i int) { v.Store((*[8]float32)(unsafe.Add(p, 4*i))) }
func ldI8(p unsafe.Pointer, off int) i8x32 {
	return archsimd.LoadInt8x32((*[32]int8)(unsafe.Add(p, off)))
}
func ldU8(p unsafe.Pointer, off int) u8x32 {
	return archsimd.LoadUint8x32((*[32]uint8)(unsafe.Add(p, off)))
}
func ldI16(p unsafe.Pointer, off int) i16x16 {
	return archsimd.LoadInt16x16((*[16]int16)(unsafe.Add(p, off)))
}
func ldU16(p unsafe.Pointer, off int) uint16 { return *(*uint16)(unsafe.Add(p, off)) }

func ptr[T any](s []T) unsafe.Pointer { return unsafe.Pointer(unsafe.SliceData(s)) }

// storeHsum8 is hsum8 on a vector: [v0+v4, v1+v5, v2+v6, v3+v7], then
// (a+c) and (b+d) in lanes 0 and 1, then their sum. It clears the upper
// vector state before returning (see doc.go), so callers do their scalar
// finishing after it. The final add is a vector add too (the same single
// float32 add) and the sum leaves through an integer register: written as
// a scalar add after ClearAVXUpperBits, the compiler scheduled the add (a
// legacy-SSE ADDSS) and a spill before the VZEROUPPER. The float bits are
// combined with hsumZero, a load, so that the move back to a float register
// cannot be scheduled before the VZEROUPPER either.
func storeHsum8(v f32x8) float32 {
	s := v.GetLo().Add(v.GetHi())
	t := s.Add(s.SelectFromPair(2, 3, 2, 3, s))
	u := t.Add(t.SelectFromPair(1, 1, 1, 1, t)).AsUint32x4().GetElem(0)
	archsimd.ClearAVXUpperBits()
	return math.Float32frombits(u | hsumZero)
}

// hsumZero is 0; see storeHsum8.
var hsumZero uint32

// f16Store sets *dst = f16ToF32(h) through an integer register (a float32
// load and store would be legacy-SSE MOVSS, see doc.go).
func f16Store(dst *float32, h uint16) {
	*(*uint32)(unsafe.Pointer(dst)) = *(*uint32)(unsafe.Pointer(&f16Table[h]))
}

// store4 writes the lanes of v to out[r], out[ostride+r], out[2*ostride+r]
// and out[3*ostride+r] through integer registers: storing them from a
// zeroed float32 array would take legacy-SSE MOVUPS/MOVSS while the upper
// vector state is dirty (see doc.go).
func store4(v archsimd.Float32x4, out []float32, r, ostride int) {
	u := v.AsUint32x4()
	o := unsafe.Slice((*uint32)(ptr(out)), len(out))
	o[r], o[ostride+r], o[2*ostride+r], o[3*ostride+r] = u.GetElem(0), u.GetElem(1), u.GetElem(2), u.GetElem(3)
}

func hsumI32(v i32x8) int32 {
	s := v.GetLo().Add(v.GetHi())
	s = s.AddPairs(s)
	s = s.AddPairs(s)
	return s.GetElem(0)
}

// ---- float dots: 4 accumulators x 8 lanes, as dotGeneric32 ----

func dotSIMD32(a, b []float32) float32 {
	n := len(a)
	b = b[:n]
	return dotF32Ptr(ptr(a), ptr(b), a, b, n)
}

func dotF32Ptr(pa, pb unsafe.Pointer, a, b []float32, n int) float32 {
	var acc0, acc1, acc2, acc3 f32x8
	i := 0
	for ; i+32 <= n; i += 32 {
		acc0 = acc0.Add(ldF32(pa, i).Mul(ldF32(pb, i)))
		acc1 = acc1.Add(ldF32(pa, i+8).Mul(ldF32(pb, i+8)))
		acc2 = acc2.Add(ldF32(pa, i+16).Mul(ldF32(pb, i+16)))
		acc3 = acc3.Add(ldF32(pa, i+24).Mul(ldF32(pb, i+24)))
	}
	sum := storeHsum8(acc0.Add(acc1).Add(acc2.Add(acc3)))
	var tail float32
	for ; i < n; i++ {
		tail += float32(a[i] * b[i])
	}
	return sum + tail
}

func dotF32SIMD(w []byte, nrows int, a *act, e0 int, out []float32) {
	n := a.cols
	x := a.f[e0 : e0+n]
	wf := unsafe.Slice((*float32)(ptr(w)), len(w)/4)[:nrows*n]
	out = out[:nrows]
	for r := range out {
		row := wf[r*n : (r+1)*n]
		out[r] = dotF32Ptr(ptr(row), ptr(x), row, x, n)
	}
}

// f16x8 converts 8 binary16 values (zero-extended to 32 bits) to float32,
// exactly as f16ToF32.
func f16x8(h u32x8) f32x8 {
	em := h.And(archsimd.BroadcastUint32x8(0x7fff)).ShiftAllLeft(13)
	sign := h.And(archsimd.BroadcastUint32x8(0x8000)).ShiftAllLeft(16)
	f := em.AsFloat32x8().Mul(archsimd.BroadcastFloat32x8(0x1p112))
	inf := em.AsInt32x8().Greater(archsimd.BroadcastInt32x8(0x0f7fffff))
	bits := f.AsUint32x8().Or(sign).Or(archsimd.BroadcastUint32x8(0x7f800000).Masked(inf))
	return bits.AsFloat32x8()
}

func ldF16(p unsafe.Pointer, i int) f32x8 {
	return f16x8(archsimd.LoadUint16x8((*[8]uint16)(unsafe.Add(p, 2*i))).ExtendToUint32())
}

func ldBF16(p unsafe.Pointer, i int) f32x8 {
	return archsimd.LoadUint16x8((*[8]uint16)(unsafe.Add(p, 2*i))).ExtendToUint32().ShiftAllLeft(16).AsFloat32x8()
}

func dotF16SIMD(w []byte, nrows int, a *act, e0 int, out []float32) {
	n := a.cols
	x := a.f[e0 : e0+n]
	w = w[:nrows*2*n]
	out = out[:nrows]
	pw0, px := ptr(w), ptr(x)
	for r := range out {
		pw := unsafe.Add(pw0, 2*n*r)
		var acc0, acc1, acc2, acc3 f32x8
		i := 0
		for ; i+32 <= n; i += 32 {
			acc0 = acc0.Add(ldF16(pw, i).Mul(ldF32(px, i)))
			acc1 = acc1.Add(ldF16(pw, i+8).Mul(ldF32(px, i+8)))
			acc2 = acc2.Add(ldF16(pw, i+16).Mul(ldF32(px, i+16)))
			acc3 = acc3.Add(ldF16(pw, i+24).Mul(ldF32(px, i+24)))
		}
		sum := storeHsum8(acc0.Add(acc1).Add(acc2.Add(acc3)))
		var tail float32
		for ; i < n; i++ {
			tail += float32(f16ToF32(le16(w[2*(r*n+i):])) * x[i])
		}
		out[r] = sum + tail
	}
}

func dotBF16SIMD(w []byte, nrows int, a *act, e0 int, out []float32) {
	n := a.cols
	x := a.f[e0 : e0+n]
	w = w[:nrows*2*n]
	out = out[:nrows]
	pw0, px := ptr(w), ptr(x)
	nrows = len(out)
	q, ls, gs := streamRows(nrows)
	for k := 0; k < 4*q; k++ {
		// Rows in the four-row kernels' order (streamRows).
		r := k&3*ls + k>>2*gs
		if r >= nrows {
			continue
		}
		pw := unsafe.Add(pw0, 2*n*r)
		var acc0, acc1, acc2, acc3 f32x8
		i := 0
		for ; i+32 <= n; i += 32 {
			acc0 = acc0.Add(ldBF16(pw, i).Mul(ldF32(px, i)))
			acc1 = acc1.Add(ldBF16(pw, i+8).Mul(ldF32(px, i+8)))
			acc2 = acc2.Add(ldBF16(pw, i+16).Mul(ldF32(px, i+16)))
			acc3 = acc3.Add(ldBF16(pw, i+24).Mul(ldF32(px, i+24)))
		}
		sum := storeHsum8(acc0.Add(acc1).Add(acc2.Add(acc3)))
		var tail float32
		for ; i < n; i++ {
			tail += float32(bf16ToF32(le16(w[2*(r*n+i):])) * x[i])
		}
		out[r] = sum + tail
	}
}

// ---- 32-element block formats ----

// mulSumI8 returns the 8 int32 lane sums of x*y for signed int8 x, y (x may
// be -128, y may not), as VPMADDUBSW + VPMADDWD.
func mulSumI8(x, y i8x32, ones i16x16) i32x8 {
	return x.Abs().AsUint8x32().DotProductPairsSaturated(y.CopySign(x)).DotProductPairs(ones)
}

func dotQ8_0SIMD(w []byte, nrows int, a *act, e0 int, out []float32) {
	nb := a.cols / qk
	rb := nb * bytesQ8_0
	w = w[:nrows*rb]
	out = out[:nrows]
	qs := a.qs[e0 : e0+a.cols]
	ds := a.d[e0/qk : e0/qk+nb]
	pw, py := ptr(w), ptr(qs)
	ones := archsimd.BroadcastInt16x16(1)
	q, ls, gs := streamRows(nrows)
	for k := 0; k < 4*q; k++ {
		// Rows in the four-row kernels' order (streamRows).
		r := k&3*ls + k>>2*gs
		if r >= nrows {
			continue
		}
		pr := unsafe.Add(pw, r*rb)
		var acc0, acc1 f32x8
		b := 0
		for ; b+2 <= nb; b += 2 {
			p0 := unsafe.Add(pr, b*bytesQ8_0)
			p1 := unsafe.Add(p0, bytesQ8_0)
			s0 := mulSumI8(ldI8(p0, 2), ldI8(py, b*qk), ones).ConvertToFloat32()
			s1 := mulSumI8(ldI8(p1, 2), ldI8(py, b*qk+qk), ones).ConvertToFloat32()
			acc0 = acc0.Add(s0.Mul(mulBc8(f16ToF32(ldU16(p0, 0)), ds[b])))
			acc1 = acc1.Add(s1.Mul(mulBc8(f16ToF32(ldU16(p1, 0)), ds[b+1])))
		}
		if b < nb {
			p0 := unsafe.Add(pr, b*bytesQ8_0)
			s0 := mulSumI8(ldI8(p0, 2), ldI8(py, b*qk), ones).ConvertToFloat32()
			acc0 = acc0.Add(s0.Mul(mulBc8(f16ToF32(ldU16(p0, 0)), ds[b])))
		}
		out[r] = storeHsum8(acc0.Add(acc1))
	}
}

var bitShuf = [32]int8{0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3}

// nibbles returns the 32 4-bit quants of the 16-byte qs field at p: low
// nibbles in elements 0..15, high nibbles in 16..31.
func nibbles(p unsafe.Pointer, mask u8x32) u8x32 {
	v := archsimd.LoadUint8x16((*[16]uint8)(p))
	hi := v.AsInt16x8().ShiftAllRight(4).AsUint8x16()
	return u8x32{}.SetLo(v).SetHi(hi).And(mask)
}

// bits32 returns 0xff in byte j where bit j of the 32-bit field at p is set
// (ggml's bytes_from_bits_32).
func bits32(p unsafe.Pointer, shuf i8x32, bitmask, allOnes u8x32) i8x32 {
	v := archsimd.BroadcastUint32x8(*(*uint32)(p)).AsUint8x32().PermuteOrZeroGrouped(shuf)
	return v.Or(bitmask).Equal(allOnes).ToInt8x32()
}

// scaled returns the lanes s (int32) as float32 multiplied by d.
func scaled(s i32x8, d f32x8) f32x8 {
	return s.ConvertToFloat32().Mul(d)
}

// mulBc8 returns a*b in 8 lanes. a and b are each broadcast (loads fold
// into VEX VBROADCASTSS) and multiplied as vectors, the same float32
// product as a scalar MULSS, which would be legacy SSE between the
// kernels' vector instructions (see doc.go).
func mulBc8(a, b float32) f32x8 {
	return archsimd.BroadcastFloat32x8(a).Mul(archsimd.BroadcastFloat32x8(b))
}

func dotQ4_0SIMD(w []byte, nrows int, a *act, e0 int, out []float32) {
	nb := a.cols / qk
	rb := nb * bytesQ4_0
	w = w[:nrows*rb]
	out = out[:nrows]
	qs := a.qs[e0 : e0+a.cols]
	ds := a.d[e0/qk : e0/qk+nb]
	pw, py := ptr(w), ptr(qs)
	ones := archsimd.BroadcastInt16x16(1)
	mask := archsimd.BroadcastUint8x32(0x0f)
	eight := archsimd.BroadcastInt8x32(8)
	q, ls, gs := streamRows(nrows)
	for k := 0; k < 4*q; k++ {
		// Rows in the four-row kernels' order (streamRows).
		r := k&3*ls + k>>2*gs
		if r >= nrows {
			continue
		}
		pr := unsafe.Add(pw, r*rb)
		var acc0, acc1 f32x8
		for b := 0; b < nb; b++ {
			p := unsafe.Add(pr, b*bytesQ4_0)
			qx := nibbles(unsafe.Add(p, 2), mask).AsInt8x32().Sub(eight)
			v := scaled(mulSumI8(qx, ldI8(py, b*qk), ones), mulBc8(f16ToF32(ldU16(p, 0)), ds[b]))
			if b&1 == 0 {
				acc0 = acc0.Add(v)
			} else {
				acc1 = acc1.Add(v)
			}
		}
		out[r] = storeHsum8(acc0.Add(acc1))
	}
}

func dotQ5_0SIMD(w []byte, nrows int, a *act, e0 int, out []float32) {
	nb := a.cols / qk
	rb := nb * bytesQ5_0
	w = w[:nrows*rb]
	out = out[:nrows]
	qs := a.qs[e0 : e0+a.cols]
	ds := a.d[e0/qk : e0/qk+nb]
	pw, py := ptr(w), ptr(qs)
	ones := archsimd.BroadcastInt16x16(1)
	mask := archsimd.BroadcastUint8x32(0x0f)
	hi := archsimd.BroadcastInt8x32(-16)
	shuf := archsimd.LoadInt8x32(&bitShuf)
	bitmask := archsimd.BroadcastUint64x4(0x7fbfdfeff7fbfdfe).AsUint8x32()
	allOnes := archsimd.BroadcastUint8x32(0xff)
	q, ls, gs := streamRows(nrows)
	for k := 0; k < 4*q; k++ {
		// Rows in the four-row kernels' order (streamRows).
		r := k&3*ls + k>>2*gs
		if r >= nrows {
			continue
		}
		pr := unsafe.Add(pw, r*rb)
		var acc0, acc1 f32x8
		for b := 0; b < nb; b++ {
			p := unsafe.Add(pr, b*bytesQ5_0)
			// (q | h<<4) - 16 == q | (h ? 0 : 0xf0) in two's complement.
			qx := nibbles(unsafe.Add(p, 6), mask).AsInt8x32().Or(hi.AndNot(bits32(unsafe.Add(p, 2), shuf, bitmask, allOnes)))
			v := scaled(mulSumI8(qx, ldI8(py, b*qk), ones), mulBc8(f16ToF32(ldU16(p, 0)), ds[b]))
			if b&1 == 0 {
				acc0 = acc0.Add(v)
			} else {
				acc1 = acc1.Add(v)
			}
		}
		out[r] = storeHsum8(acc0.Add(acc1))
	}
}

func dotQ4_1SIMD(w []byte, nrows int, a *act, e0 int, out []float32) {
	nb := a.cols / qk
	rb := nb * bytesQ4_1
	w = w[:nrows*rb]
	out = out[:nrows]
	qs := a.qs[e0 : e0+a.cols]
	ds := a.d[e0/qk : e0/qk+nb]
	ss := a.s[e0/qk : e0/qk+nb]
	pw, py := ptr(w), ptr(qs)
	ones := archsimd.BroadcastInt16x16(1)
	mask := archsimd.BroadcastUint8x32(0x0f)
	q, ls, gs := streamRows(nrows)
	for k := 0; k < 4*q; k++ {
		// Rows in the four-row kernels' order (streamRows).
		r := k&3*ls + k>>2*gs
		if r >= nrows {
			continue
		}
		pr := unsafe.Add(pw, r*rb)
		var acc0, acc1 f32x8
		var summs f32x8
		for b := 0; b < nb; b++ {
			p := unsafe.Add(pr, b*bytesQ4_1)
			qx := nibbles(unsafe.Add(p, 4), mask)
			v := scaled(qx.DotProductPairsSaturated(ldI8(py, b*qk)).DotProductPairs(ones), mulBc8(f16ToF32(ldU16(p, 0)), ds[b]))
			if b&1 == 0 {
				acc0 = acc0.Add(v)
			} else {
				acc1 = acc1.Add(v)
			}
			summs = summs.Add(mulBc8(f16ToF32(ldU16(p, 2)), ss[b]))
		}
		// The min terms, summed in block order in every lane.
		sb := summs.GetLo().AsUint32x4().GetElem(0)
		out[r] = storeHsum8(acc0.Add(acc1)) + math.Float32frombits(sb)
	}
}

func dotQ5_1SIMD(w []byte, nrows int, a *act, e0 int, out []float32) {
	nb := a.cols / qk
	rb := nb * bytesQ5_1
	w = w[:nrows*rb]
	out = out[:nrows]
	qs := a.qs[e0 : e0+a.cols]
	ds := a.d[e0/qk : e0/qk+nb]
	ss := a.s[e0/qk : e0/qk+nb]
	pw, py := ptr(w), ptr(qs)
	ones := archsimd.BroadcastInt16x16(1)
	mask := archsimd.BroadcastUint8x32(0x0f)
	h10 := archsimd.BroadcastInt8x32(0x10)
	shuf := archsimd.LoadInt8x32(&bitShuf)
	bitmask := archsimd.BroadcastUint64x4(0x7fbfdfeff7fbfdfe).AsUint8x32()
	allOnes := archsimd.BroadcastUint8x32(0xff)
	q, ls, gs := streamRows(nrows)
	for k := 0; k < 4*q; k++ {
		// Rows in the four-row kernels' order (streamRows).
		r := k&3*ls + k>>2*gs
		if r >= nrows {
			continue
		}
		pr := unsafe.Add(pw, r*rb)
		var acc0, acc1 f32x8
		var summs f32x8
		for b := 0; b < nb; b++ {
			p := unsafe.Add(pr, b*bytesQ5_1)
			qx := nibbles(unsafe.Add(p, 8), mask).AsInt8x32().Or(bits32(unsafe.Add(p, 4), shuf, bitmask, allOnes).And(h10)).AsUint8x32()
			v := scaled(qx.DotProductPairsSaturated(ldI8(py, b*qk)).DotProductPairs(ones), mulBc8(f16ToF32(ldU16(p, 0)), ds[b]))
			if b&1 == 0 {
				acc0 = acc0.Add(v)
			} else {
				acc1 = acc1.Add(v)
			}
			summs = summs.Add(mulBc8(f16ToF32(ldU16(p, 2)), ss[b]))
		}
		// The min terms, summed in block order in every lane.
		sb := summs.GetLo().AsUint32x4().GetElem(0)
		out[r] = storeHsum8(acc0.Add(acc1)) + math.Float32frombits(sb)
	}
}

// ---- K-quants ----

// Byte-shuffle indices: k4Idx[j] picks int16 element j in each 128-bit lane
// (a Q4_K/Q5_K sub-block scale); q6Pair[g] gives 8 copies of byte g then 8 of
// byte g+1 (Q6_K scales of two 16-element groups).
var (
	k4Idx  [8][32]int8
	q6Pair [16][16]int8
)

func init() {
	for j := range k4Idx {
		for i := range k4Idx[j] {
			k4Idx[j][i] = int8(2*j + i%2)
		}
	}
	for g := 0; g < 15; g++ {
		for i := 0; i < 16; i++ {
			q6Pair[g][i] = int8(g + i/8)
		}
	}
}

func ldIdx(p *[16]int8) i8x16 { return archsimd.LoadInt8x16(p) }

// q4KScalesU64 unpacks Q4_K/Q5_K scales and mins into 8 bytes each.
func q4KScalesU64(s unsafe.Pointer) (sc, mn uint64) {
	const kmask1, kmask2, kmask3 = 0x3f3f3f3f, 0x0f0f0f0f, 0x03030303
	u0 := *(*uint32)(s)
	u1 := *(*uint32)(unsafe.Add(s, 4))
	u2 := *(*uint32)(unsafe.Add(s, 8))
	u3 := ((u2 >> 4) & kmask2) | (((u1 >> 6) & kmask3) << 4)
	uaux := u1 & kmask1
	u1 = (u2 & kmask2) | (((u0 >> 6) & kmask3) << 4)
	u2 = uaux
	u0 &= kmask1
	return uint64(u0) | uint64(u1)<<32, uint64(u2) | uint64(u3)<<32
}

// q4KScaleVecs returns the 8 sub-block scales as int16 in both 128-bit lanes
// and the 8 mins as int16, from the 12-byte scales field at p.
func q4KScaleVecs(p unsafe.Pointer) (scv i16x16, mins archsimd.Int16x8) {
	e := q4KScaleE(p)
	lo := e.GetLo()
	return e.SetHi(lo), e.GetHi()
}

// q4KScaleE returns the 8 sub-block scales (low half) and the 8 mins (high
// half) as int16, from the 12-byte scales field at p.
func q4KScaleE(p unsafe.Pointer) i16x16 {
	scU, mnU := q4KScalesU64(p)
	return archsimd.BroadcastUint64x2(scU).SetElem(1, mnU).AsInt8x16().ExtendToInt16()
}

// subScale broadcasts sub-block j's scale from scv to all 16 elements.
func subScale(scv i16x16, idx i8x32) i16x16 {
	return scv.AsInt8x32().PermuteOrZeroGrouped(idx).AsInt16x16()
}

// bsumPairs returns the 8 sums of adjacent Q8_K block sums (per 32 elements).
func bsumPairs(pbs unsafe.Pointer, off int) archsimd.Int16x8 {
	v := ldI16(pbs, off)
	return v.GetLo().AddPairs(v.GetHi())
}

func hsumI32x4(v archsimd.Int32x4) int32 {
	v = v.AddPairs(v)
	v = v.AddPairs(v)
	return v.GetElem(0)
}

// reduce4 returns the lane sums of four int32x8 accumulators.
func reduce4(a0, a1, a2, a3 i32x8) archsimd.Int32x4 {
	h := a0.AddPairsGrouped(a1).AddPairsGrouped(a2.AddPairsGrouped(a3))
	return h.GetLo().Add(h.GetHi())
}

func reduce4x4(a0, a1, a2, a3 archsimd.Int32x4) archsimd.Int32x4 {
	return a0.AddPairs(a1).AddPairs(a2.AddPairs(a3))
}

func dotQ4_KSIMD(w []byte, nrows int, a *act, e0 int, out []float32) {
	// Zeroed before any vector instruction (legacy-SSE MOVUPS X15).
	var isums, imins [kBuf]int32
	nb := a.cols / qkK
	rb := nb * bytesQ4_K
	w = w[:nrows*rb]
	out = out[:nrows]
	qs := a.qs[e0 : e0+a.cols]
	bsums := a.bsums[e0/16 : e0/16+nb*16]
	ds := a.d[e0/qkK : e0/qkK+nb]
	pw, py, pbs := ptr(w), ptr(qs), ptr(bsums)
	mask := archsimd.BroadcastUint8x32(0x0f)
	i0, i1, i2, i3 := archsimd.LoadInt8x32(&k4Idx[0]), archsimd.LoadInt8x32(&k4Idx[1]), archsimd.LoadInt8x32(&k4Idx[2]), archsimd.LoadInt8x32(&k4Idx[3])
	i4, i5, i6, i7 := archsimd.LoadInt8x32(&k4Idx[4]), archsimd.LoadInt8x32(&k4Idx[5]), archsimd.LoadInt8x32(&k4Idx[6]), archsimd.LoadInt8x32(&k4Idx[7])
	q, ls, gs := streamRows(nrows)
	for k := 0; k < 4*q; k++ {
		// Rows in the four-row kernels' order (streamRows).
		r := k&3*ls + k>>2*gs
		if r >= nrows {
			continue
		}
		pr := unsafe.Add(pw, r*rb)
		// The row's sum as float32 bits between the scalar loops: a float32
		// live across the vector loop is spilled with legacy-SSE MOVSS.
		var sum uint32
		for b0 := 0; b0 < nb; b0 += kBuf {
			nc := min(kBuf, nb-b0)
			for b := b0; b < b0+nc; b++ {
				p := unsafe.Add(pr, b*bytesQ4_K)
				y := unsafe.Add(py, b*qkK)
				// Scales and mins in one 256-bit value; the mins' dot after
				// the quants' (a 128-bit value live across them would be
				// spilled with legacy-SSE MOVUPS).
				e := q4KScaleE(unsafe.Add(p, 4))
				scv := e.SetHi(e.GetLo())
				q := unsafe.Add(p, 16)
				q0, q1, q2, q3 := ldU8(q, 0), ldU8(q, 32), ldU8(q, 64), ldU8(q, 96)
				acc := q0.And(mask).DotProductPairsSaturated(ldI8(y, 0)).DotProductPairs(subScale(scv, i0))
				acc = acc.Add(q0.AsInt16x16().ShiftAllRight(4).AsUint8x32().And(mask).DotProductPairsSaturated(ldI8(y, 32)).DotProductPairs(subScale(scv, i1)))
				acc = acc.Add(q1.And(mask).DotProductPairsSaturated(ldI8(y, 64)).DotProductPairs(subScale(scv, i2)))
				acc = acc.Add(q1.AsInt16x16().ShiftAllRight(4).AsUint8x32().And(mask).DotProductPairsSaturated(ldI8(y, 96)).DotProductPairs(subScale(scv, i3)))
				acc = acc.Add(q2.And(mask).DotProductPairsSaturated(ldI8(y, 128)).DotProductPairs(subScale(scv, i4)))
				acc = acc.Add(q2.AsInt16x16().ShiftAllRight(4).AsUint8x32().And(mask).DotProductPairsSaturated(ldI8(y, 160)).DotProductPairs(subScale(scv, i5)))
				acc = acc.Add(q3.And(mask).DotProductPairsSaturated(ldI8(y, 192)).DotProductPairs(subScale(scv, i6)))
				acc = acc.Add(q3.AsInt16x16().ShiftAllRight(4).AsUint8x32().And(mask).DotProductPairsSaturated(ldI8(y, 224)).DotProductPairs(subScale(scv, i7)))
				isums[b-b0], imins[b-b0] = hsumI32(acc), hsumI32x4(e.GetHi().DotProductPairs(bsumPairs(pbs, b*32)))
			}
			// The float steps (kAcc) after the vector work, see kBuf.
			archsimd.ClearAVXUpperBits()
			sf := math.Float32frombits(sum)
			for i := range nc {
				b := b0 + i
				p := unsafe.Add(pr, b*bytesQ4_K)
				sf = kAcc(sf, ds[b]*f16ToF32(ldU16(p, 0)), isums[i], ds[b]*f16ToF32(ldU16(p, 2)), imins[i])
			}
			sum = math.Float32bits(sf)
		}
		*(*uint32)(unsafe.Pointer(&out[r])) = sum
	}
}

// dot4Q4_KSIMD is dotQ4_KSIMD for activation vectors j0..j0+3, sharing the
// weight unpacking; the per-vector float steps are done 4 lanes wide with the
// same operations as kAcc.
func dot4Q4_KSIMD(w []byte, nrows int, a *act, j0 int, out []float32, ostride int) {
	nb := a.cols / qkK
	rb := nb * bytesQ4_K
	w = w[:nrows*rb]
	out = out[:3*ostride+nrows]
	e0 := j0 * a.cols
	qs := a.qs[e0 : e0+4*a.cols]
	bsums := a.bsums[e0/16 : (e0+4*a.cols)/16]
	d4 := a.d4[j0/4*nb*4 : (j0/4+1)*nb*4]
	pw, py, pbs, pd := ptr(w), ptr(qs), ptr(bsums), ptr(d4)
	st, sb := a.cols, a.cols/16*2 // byte strides between vectors in qs and bsums
	mask := archsimd.BroadcastUint8x32(0x0f)
	for r := 0; r < nrows; r++ {
		pr := unsafe.Add(pw, r*rb)
		// sum4 is carried in the low half of a 256-bit value: Go spills and
		// moves 128-bit values in X0-X15 with legacy-SSE MOVUPS (see doc.go).
		var sum8 f32x8
		for b := 0; b < nb; b++ {
			p := unsafe.Add(pr, b*bytesQ4_K)
			y := unsafe.Add(py, b*qkK)
			scv, mins := q4KScaleVecs(unsafe.Add(p, 4))
			bo := b * 32
			// Widened: a live 128-bit value is spilled with legacy-SSE MOVUPS.
			imin8 := archsimd.Int32x8{}.SetLo(reduce4x4(mins.DotProductPairs(bsumPairs(pbs, bo)), mins.DotProductPairs(bsumPairs(pbs, bo+sb)),
				mins.DotProductPairs(bsumPairs(pbs, bo+2*sb)), mins.DotProductPairs(bsumPairs(pbs, bo+3*sb))))
			q := unsafe.Add(p, 16)
			var acc0, acc1, acc2, acc3 i32x8
			for c := 0; c < 4; c++ {
				q4 := ldU8(q, 32*c)
				lo := q4.And(mask)
				hi := q4.AsInt16x16().ShiftAllRight(4).AsUint8x32().And(mask)
				s0 := subScale(scv, archsimd.LoadInt8x32(&k4Idx[2*c]))
				s1 := subScale(scv, archsimd.LoadInt8x32(&k4Idx[2*c+1]))
				o := 64 * c
				acc0 = acc0.Add(lo.DotProductPairsSaturated(ldI8(y, o)).DotProductPairs(s0)).Add(hi.DotProductPairsSaturated(ldI8(y, o+32)).DotProductPairs(s1))
				acc1 = acc1.Add(lo.DotProductPairsSaturated(ldI8(y, st+o)).DotProductPairs(s0)).Add(hi.DotProductPairsSaturated(ldI8(y, st+o+32)).DotProductPairs(s1))
				acc2 = acc2.Add(lo.DotProductPairsSaturated(ldI8(y, 2*st+o)).DotProductPairs(s0)).Add(hi.DotProductPairsSaturated(ldI8(y, 2*st+o+32)).DotProductPairs(s1))
				acc3 = acc3.Add(lo.DotProductPairsSaturated(ldI8(y, 3*st+o)).DotProductPairs(s0)).Add(hi.DotProductPairsSaturated(ldI8(y, 3*st+o+32)).DotProductPairs(s1))
			}
			isum := reduce4(acc0, acc1, acc2, acc3)
			dy := archsimd.LoadFloat32x4((*[4]float32)(unsafe.Add(pd, 16*b)))
			d := dy.Mul(archsimd.BroadcastFloat32x4(f16ToF32(ldU16(p, 0))))
			dmin := dy.Mul(archsimd.BroadcastFloat32x4(f16ToF32(ldU16(p, 2))))
			sum4 := sum8.GetLo()
			sum4 = sum4.Add(d.Mul(isum.ConvertToFloat32()))
			sum4 = sum4.Sub(dmin.Mul(imin8.GetLo().ConvertToFloat32()))
			sum8 = sum8.SetLo(sum4)
		}
		store4(sum8.GetLo(), out, r, ostride)
	}
	// Return with the upper state clean (see doc.go): the caller's Go
	// code may run legacy-SSE instructions next.
	archsimd.ClearAVXUpperBits()
}

func dotQ6_KSIMD(w []byte, nrows int, a *act, e0 int, out []float32) {
	// Zeroed before any vector instruction (legacy-SSE MOVUPS X15).
	var isums [kBuf]int32
	nb := a.cols / qkK
	rb := nb * bytesQ6_K
	w = w[:nrows*rb]
	out = out[:nrows]
	qs := a.qs[e0 : e0+a.cols]
	bsums := a.bsums[e0/16 : e0/16+nb*16]
	ds := a.d[e0/qkK : e0/qkK+nb]
	pw, py, pbs := ptr(w), ptr(qs), ptr(bsums)
	m4 := archsimd.BroadcastUint8x32(0x0f)
	m30 := archsimd.BroadcastUint8x32(0x30)
	q, ls, gs := streamRows(nrows)
	for k := 0; k < 4*q; k++ {
		// Rows in the four-row kernels' order (streamRows).
		r := k&3*ls + k>>2*gs
		if r >= nrows {
			continue
		}
		pr := unsafe.Add(pw, r*rb)
		// The row's sum as float32 bits between the scalar loops: a float32
		// live across the vector loop is spilled with legacy-SSE MOVSS.
		var sum uint32
		for b0 := 0; b0 < nb; b0 += kBuf {
			nc := min(kBuf, nb-b0)
			for b := b0; b < b0+nc; b++ {
				p := unsafe.Add(pr, b*bytesQ6_K)
				y := unsafe.Add(py, b*qkK)
				sc := archsimd.LoadInt8x16((*[16]int8)(unsafe.Add(p, 192)))
				// 32 * sum_g sc[g]*bsums[g]: the -32 offset of the quants.
				bias := ldI16(pbs, b*32).DotProductPairs(sc.ExtendToInt16())
				var acc i32x8
				for n := 0; n < 2; n++ {
					ql0 := ldU8(p, 64*n)
					ql1 := ldU8(p, 64*n+32)
					qh := ldU8(p, 128+32*n).AsUint16x16()
					q1 := ql0.And(m4).Or(qh.ShiftAllLeft(4).AsUint8x32().And(m30))
					q2 := ql1.And(m4).Or(qh.ShiftAllLeft(2).AsUint8x32().And(m30))
					q3 := ql0.AsInt16x16().ShiftAllRight(4).AsUint8x32().And(m4).Or(qh.AsUint8x32().And(m30))
					q4 := ql1.AsInt16x16().ShiftAllRight(4).AsUint8x32().And(m4).Or(qh.AsInt16x16().ShiftAllRight(2).AsUint8x32().And(m30))
					yy := unsafe.Add(y, 128*n)
					g := 8 * n
					acc = acc.Add(q1.DotProductPairsSaturated(ldI8(yy, 0)).DotProductPairs(sc.PermuteOrZero(ldIdx(&q6Pair[g])).ExtendToInt16()))
					acc = acc.Add(q2.DotProductPairsSaturated(ldI8(yy, 32)).DotProductPairs(sc.PermuteOrZero(ldIdx(&q6Pair[g+2])).ExtendToInt16()))
					acc = acc.Add(q3.DotProductPairsSaturated(ldI8(yy, 64)).DotProductPairs(sc.PermuteOrZero(ldIdx(&q6Pair[g+4])).ExtendToInt16()))
					acc = acc.Add(q4.DotProductPairsSaturated(ldI8(yy, 96)).DotProductPairs(sc.PermuteOrZero(ldIdx(&q6Pair[g+6])).ExtendToInt16()))
				}
				isums[b-b0] = hsumI32(acc.Sub(bias.ShiftAllLeft(5)))
			}
			// The float steps (kAcc) after the vector work, see kBuf.
			archsimd.ClearAVXUpperBits()
			sf := math.Float32frombits(sum)
			for i := range nc {
				b := b0 + i
				p := unsafe.Add(pr, b*bytesQ6_K)
				sf = kAcc(sf, ds[b]*f16ToF32(ldU16(p, 208)), isums[i], 0, 0)
			}
			sum = math.Float32bits(sf)
		}
		*(*uint32)(unsafe.Pointer(&out[r])) = sum
	}
}

// q6Quants returns the four 32-element quant vectors (0..63) of one 128-element
// half of a Q6_K block at p (ql at p+64n, qh at p+128+32n).
func q6Quants(p unsafe.Pointer, n int, m4, m30 u8x32) (q1, q2, q3, q4 u8x32) {
	ql0 := ldU8(p, 64*n)
	ql1 := ldU8(p, 64*n+32)
	qh := ldU8(p, 128+32*n).AsUint16x16()
	q1 = ql0.And(m4).Or(qh.ShiftAllLeft(4).AsUint8x32().And(m30))
	q2 = ql1.And(m4).Or(qh.ShiftAllLeft(2).AsUint8x32().And(m30))
	q3 = ql0.AsInt16x16().ShiftAllRight(4).AsUint8x32().And(m4).Or(qh.AsUint8x32().And(m30))
	q4 = ql1.AsInt16x16().ShiftAllRight(4).AsUint8x32().And(m4).Or(qh.AsInt16x16().ShiftAllRight(2).AsUint8x32().And(m30))
	return
}

// dot4Q6_KSIMD is dotQ6_KSIMD for activation vectors j0..j0+3.
func dot4Q6_KSIMD(w []byte, nrows int, a *act, j0 int, out []float32, ostride int) {
	nb := a.cols / qkK
	rb := nb * bytesQ6_K
	w = w[:nrows*rb]
	out = out[:3*ostride+nrows]
	e0 := j0 * a.cols
	qs := a.qs[e0 : e0+4*a.cols]
	bsums := a.bsums[e0/16 : (e0+4*a.cols)/16]
	d4 := a.d4[j0/4*nb*4 : (j0/4+1)*nb*4]
	pw, py, pbs, pd := ptr(w), ptr(qs), ptr(bsums), ptr(d4)
	st, sb := a.cols, a.cols/16*2
	m4 := archsimd.BroadcastUint8x32(0x0f)
	m30 := archsimd.BroadcastUint8x32(0x30)
	for r := 0; r < nrows; r++ {
		pr := unsafe.Add(pw, r*rb)
		// sum4 is carried in the low half of a 256-bit value: Go spills and
		// moves 128-bit values in X0-X15 with legacy-SSE MOVUPS (see doc.go).
		var sum8 f32x8
		for b := 0; b < nb; b++ {
			p := unsafe.Add(pr, b*bytesQ6_K)
			y := unsafe.Add(py, b*qkK)
			sc := archsimd.LoadInt8x16((*[16]int8)(unsafe.Add(p, 192)))
			sc16 := sc.ExtendToInt16()
			bo := b * 32
			acc0 := ldI16(pbs, bo).DotProductPairs(sc16).ShiftAllLeft(5)
			acc1 := ldI16(pbs, bo+sb).DotProductPairs(sc16).ShiftAllLeft(5)
			acc2 := ldI16(pbs, bo+2*sb).DotProductPairs(sc16).ShiftAllLeft(5)
			acc3 := ldI16(pbs, bo+3*sb).DotProductPairs(sc16).ShiftAllLeft(5)
			var zero i32x8
			acc0, acc1, acc2, acc3 = zero.Sub(acc0), zero.Sub(acc1), zero.Sub(acc2), zero.Sub(acc3)
			for n := 0; n < 2; n++ {
				q1, q2, q3, q4 := q6Quants(p, n, m4, m30)
				for k, q := range [4]u8x32{q1, q2, q3, q4} {
					s := sc.PermuteOrZero(ldIdx(&q6Pair[8*n+2*k])).ExtendToInt16()
					o := 128*n + 32*k
					acc0 = acc0.Add(q.DotProductPairsSaturated(ldI8(y, o)).DotProductPairs(s))
					acc1 = acc1.Add(q.DotProductPairsSaturated(ldI8(y, st+o)).DotProductPairs(s))
					acc2 = acc2.Add(q.DotProductPairsSaturated(ldI8(y, 2*st+o)).DotProductPairs(s))
					acc3 = acc3.Add(q.DotProductPairsSaturated(ldI8(y, 3*st+o)).DotProductPairs(s))
				}
			}
			isum := reduce4(acc0, acc1, acc2, acc3)
			dy := archsimd.LoadFloat32x4((*[4]float32)(unsafe.Add(pd, 16*b)))
			d := dy.Mul(archsimd.BroadcastFloat32x4(f16ToF32(ldU16(p, 208))))
			sum4 := sum8.GetLo()
			sum4 = sum4.Add(d.Mul(isum.ConvertToFloat32()))
			sum8 = sum8.SetLo(sum4)
		}
		store4(sum8.GetLo(), out, r, ostride)
	}
	// Return with the upper state clean (see doc.go): the caller's Go
	// code may run legacy-SSE instructions next.
	archsimd.ClearAVXUpperBits()
}

// shr32[k] holds the count k for the 32-bit variable shift of shrBytes.
var shr32 = func() (t [8][8]uint32) {
	for k := range t {
		for i := range t[k] {
			t[k][i] = uint32(k)
		}
	}
	return
}()

// shrBytes moves bits k..7 of every byte of v to bits 0..7-k (the bits
// above them are garbage; callers mask). A VPSRLVD by a count loaded from
// memory: Go passes the count of a shift by a variable (not constant)
// amount through a legacy-SSE MOVQ (see doc.go), and AVX2 has no 16-bit
// variable shift.
func shrBytes(v u8x32, k int) u8x32 {
	return v.AsUint32x8().ShiftRight(archsimd.LoadUint32x8(&shr32[k])).AsUint8x32()
}

// kBuf is the number of blocks per row whose integer sums the AVX2 K-quant
// decode kernels keep before their scalar float steps: one VZEROUPPER per
// kBuf blocks instead of a legacy-SSE/AVX transition per block.
const kBuf = 32

// lowNibbles masks the low nibble of each byte.
var lowNibbles = [16]uint8{15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15}

func dotQ5_KSIMD(w []byte, nrows int, a *act, e0 int, out []float32) {
	// Zeroed before any vector instruction (legacy-SSE MOVUPS X15).
	var isums, imins [kBuf]int32
	nb := a.cols / qkK
	rb := nb * bytesQ5_K
	w = w[:nrows*rb]
	out = out[:nrows]
	qs := a.qs[e0 : e0+a.cols]
	bsums := a.bsums[e0/16 : e0/16+nb*16]
	ds := a.d[e0/qkK : e0/qkK+nb]
	pw, py, pbs := ptr(w), ptr(qs), ptr(bsums)
	mask := archsimd.BroadcastUint8x32(0x0f)
	m10 := archsimd.BroadcastUint8x32(0x10)
	q, ls, gs := streamRows(nrows)
	for k := 0; k < 4*q; k++ {
		// Rows in the four-row kernels' order (streamRows).
		r := k&3*ls + k>>2*gs
		if r >= nrows {
			continue
		}
		pr := unsafe.Add(pw, r*rb)
		// The row's sum as float32 bits between the scalar loops: a float32
		// live across the vector loop is spilled with legacy-SSE MOVSS.
		var sum uint32
		for b0 := 0; b0 < nb; b0 += kBuf {
			nc := min(kBuf, nb-b0)
			for b := b0; b < b0+nc; b++ {
				p := unsafe.Add(pr, b*bytesQ5_K)
				y := unsafe.Add(py, b*qkK)
				scv, mins := q4KScaleVecs(unsafe.Add(p, 4))
				imin := hsumI32x4(mins.DotProductPairs(bsumPairs(pbs, b*32)))
				qh := ldU8(p, 16)
				var acc i32x8
				for c := 0; c < 4; c++ {
					q4 := ldU8(p, 48+32*c)
					h := shrBytes(qh, 2*c).AsUint16x16()
					lo := q4.And(mask).Or(h.ShiftAllLeft(4).AsUint8x32().And(m10))
					hi := q4.AsInt16x16().ShiftAllRight(4).AsUint8x32().And(mask).Or(h.ShiftAllLeft(3).AsUint8x32().And(m10))
					acc = acc.Add(lo.DotProductPairsSaturated(ldI8(y, 64*c)).DotProductPairs(subScale(scv, archsimd.LoadInt8x32(&k4Idx[2*c]))))
					acc = acc.Add(hi.DotProductPairsSaturated(ldI8(y, 64*c+32)).DotProductPairs(subScale(scv, archsimd.LoadInt8x32(&k4Idx[2*c+1]))))
				}
				isums[b-b0], imins[b-b0] = hsumI32(acc), imin
			}
			// The float steps (kAcc) after the vector work, see kBuf.
			archsimd.ClearAVXUpperBits()
			sf := math.Float32frombits(sum)
			for i := range nc {
				b := b0 + i
				p := unsafe.Add(pr, b*bytesQ5_K)
				sf = kAcc(sf, ds[b]*f16ToF32(ldU16(p, 0)), isums[i], ds[b]*f16ToF32(ldU16(p, 2)), imins[i])
			}
			sum = math.Float32bits(sf)
		}
		*(*uint32)(unsafe.Pointer(&out[r])) = sum
	}
}

// q3KScales returns Q3_K's 16 scales (minus 32) from the 12 bytes at p.
func q3KScales(p unsafe.Pointer) i8x16 {
	const kmask1, kmask2 = 0x03030303, 0x0f0f0f0f
	a0 := *(*uint32)(p)
	a1 := *(*uint32)(unsafe.Add(p, 4))
	tmp := *(*uint32)(unsafe.Add(p, 8))
	s2 := ((a0 >> 4) & kmask2) | (((tmp >> 4) & kmask1) << 4)
	s3 := ((a1 >> 4) & kmask2) | (((tmp >> 6) & kmask1) << 4)
	s0 := (a0 & kmask2) | (((tmp >> 0) & kmask1) << 4)
	s1 := (a1 & kmask2) | (((tmp >> 2) & kmask1) << 4)
	v := archsimd.BroadcastUint64x2(uint64(s0)|uint64(s1)<<32).SetElem(1, uint64(s2)|uint64(s3)<<32)
	return v.AsInt8x16().Sub(archsimd.BroadcastInt8x16(32))
}

func dotQ3_KSIMD(w []byte, nrows int, a *act, e0 int, out []float32) {
	// Zeroed before any vector instruction (legacy-SSE MOVUPS X15).
	var isums [kBuf]int32
	nb := a.cols / qkK
	rb := nb * bytesQ3_K
	w = w[:nrows*rb]
	out = out[:nrows]
	qs := a.qs[e0 : e0+a.cols]
	bsums := a.bsums[e0/16 : e0/16+nb*16]
	ds := a.d[e0/qkK : e0/qkK+nb]
	pw, py, pbs := ptr(w), ptr(qs), ptr(bsums)
	m3 := archsimd.BroadcastUint8x32(3)
	m4 := archsimd.BroadcastUint8x32(4)
	q, ls, gs := streamRows(nrows)
	for k := 0; k < 4*q; k++ {
		// Rows in the four-row kernels' order (streamRows).
		r := k&3*ls + k>>2*gs
		if r >= nrows {
			continue
		}
		pr := unsafe.Add(pw, r*rb)
		// The row's sum as float32 bits between the scalar loops: a float32
		// live across the vector loop is spilled with legacy-SSE MOVSS.
		var sum uint32
		for b0 := 0; b0 < nb; b0 += kBuf {
			nc := min(kBuf, nb-b0)
			for b := b0; b < b0+nc; b++ {
				p := unsafe.Add(pr, b*bytesQ3_K)
				y := unsafe.Add(py, b*qkK)
				sc := q3KScales(unsafe.Add(p, 96))
				// The quants are u-4 with u = q | h<<2 in 0..7: subtract 4*sum(sc*bsums).
				acc := archsimd.Int32x8{}.Sub(ldI16(pbs, b*32).DotProductPairs(sc.ExtendToInt16()).ShiftAllLeft(2))
				hm := ldU8(p, 0)
				for n := 0; n < 2; n++ {
					q := ldU8(p, 32+32*n)
					for j := 0; j < 4; j++ {
						u := shrBytes(q, 2*j).And(m3).Or(shrBytes(hm, 4*n+j).AsUint16x16().ShiftAllLeft(2).AsUint8x32().And(m4))
						s := sc.PermuteOrZero(ldIdx(&q6Pair[8*n+2*j])).ExtendToInt16()
						acc = acc.Add(u.DotProductPairsSaturated(ldI8(y, 128*n+32*j)).DotProductPairs(s))
					}
				}
				isums[b-b0] = hsumI32(acc)
			}
			// The float steps (kAcc) after the vector work, see kBuf.
			archsimd.ClearAVXUpperBits()
			sf := math.Float32frombits(sum)
			for i := range nc {
				b := b0 + i
				p := unsafe.Add(pr, b*bytesQ3_K)
				sf = kAcc(sf, ds[b]*f16ToF32(ldU16(p, 108)), isums[i], 0, 0)
			}
			sum = math.Float32bits(sf)
		}
		*(*uint32)(unsafe.Pointer(&out[r])) = sum
	}
}

func dotQ2_KSIMD(w []byte, nrows int, a *act, e0 int, out []float32) {
	// Zeroed before any vector instruction (legacy-SSE MOVUPS X15).
	var isums, imins [kBuf]int32
	nb := a.cols / qkK
	rb := nb * bytesQ2_K
	w = w[:nrows*rb]
	out = out[:nrows]
	qs := a.qs[e0 : e0+a.cols]
	bsums := a.bsums[e0/16 : e0/16+nb*16]
	ds := a.d[e0/qkK : e0/qkK+nb]
	pw, py, pbs := ptr(w), ptr(qs), ptr(bsums)
	m3 := archsimd.BroadcastUint8x32(3)
	q, ls, gs := streamRows(nrows)
	for k := 0; k < 4*q; k++ {
		// Rows in the four-row kernels' order (streamRows).
		r := k&3*ls + k>>2*gs
		if r >= nrows {
			continue
		}
		pr := unsafe.Add(pw, r*rb)
		// The row's sum as float32 bits between the scalar loops: a float32
		// live across the vector loop is spilled with legacy-SSE MOVSS.
		var sum uint32
		for b0 := 0; b0 < nb; b0 += kBuf {
			nc := min(kBuf, nb-b0)
			for b := b0; b < b0+nc; b++ {
				p := unsafe.Add(pr, b*bytesQ2_K)
				y := unsafe.Add(py, b*qkK)
				// The mask loaded where it is used: a 128-bit value kept
				// in a register across the loop is spilled with MOVUPS.
				raw := archsimd.LoadUint8x16((*[16]uint8)(p))
				m15 := archsimd.LoadUint8x16(&lowNibbles)
				sc := raw.And(m15).AsInt8x16()
				mn := raw.AsInt16x8().ShiftAllRight(4).AsUint8x16().And(m15).AsInt8x16()
				imin := hsumI32(ldI16(pbs, b*32).DotProductPairs(mn.ExtendToInt16()))
				var acc i32x8
				for n := 0; n < 2; n++ {
					q := ldU8(p, 16+32*n)
					for j := 0; j < 4; j++ {
						u := shrBytes(q, 2*j).And(m3)
						s := sc.PermuteOrZero(ldIdx(&q6Pair[8*n+2*j])).ExtendToInt16()
						acc = acc.Add(u.DotProductPairsSaturated(ldI8(y, 128*n+32*j)).DotProductPairs(s))
					}
				}
				isums[b-b0], imins[b-b0] = hsumI32(acc), imin
			}
			// The float steps (kAcc) after the vector work, see kBuf.
			archsimd.ClearAVXUpperBits()
			sf := math.Float32frombits(sum)
			for i := range nc {
				b := b0 + i
				p := unsafe.Add(pr, b*bytesQ2_K)
				sf = kAcc(sf, ds[b]*f16ToF32(ldU16(p, 80)), isums[i], ds[b]*f16ToF32(ldU16(p, 82)), imins[i])
			}
			sum = math.Float32bits(sf)
		}
		*(*uint32)(unsafe.Pointer(&out[r])) = sum
	}
}

// ---- element-wise vector ops ----

func axpySIMD(a float32, x, y []float32) {
	n := len(x)
	y = y[:n]
	px, py := ptr(x), ptr(y)
	va := archsimd.BroadcastFloat32x8(a)
	i := 0
	for ; i+8 <= n; i += 8 {
		stF32(ldF32(py, i).Add(va.Mul(ldF32(px, i))), py, i)
	}
	archsimd.ClearAVXUpperBits()
	for ; i < n; i++ {
		y[i] += float32(a * x[i])
	}
}

func scaleSIMD(x []float32, a float32) {
	n := len(x)
	px := ptr(x)
	va := archsimd.BroadcastFloat32x8(a)
	i := 0
	for ; i+8 <= n; i += 8 {
		stF32(ldF32(px, i).Mul(va), px, i)
	}
	archsimd.ClearAVXUpperBits()
	for ; i < n; i++ {
		x[i] *= a
	}
}

func addSIMD(dst, src []float32) {
	n := len(dst)
	src = src[:n]
	pd, ps := ptr(dst), ptr(src)
	i := 0
	for ; i+8 <= n; i += 8 {
		stF32(ldF32(pd, i).Add(ldF32(ps, i)), pd, i)
	}
	archsimd.ClearAVXUpperBits()
	for ; i < n; i++ {
		dst[i] += src[i]
	}
}

func mulSIMD(dst, src []float32) {
	n := len(dst)
	src = src[:n]
	pd, ps := ptr(dst), ptr(src)
	i := 0
	for ; i+8 <= n; i += 8 {
		stF32(ldF32(pd, i).Mul(ldF32(ps, i)), pd, i)
	}
	archsimd.ClearAVXUpperBits()
	for ; i < n; i++ {
		dst[i] *= src[i]
	}
}

// expx8 is expf on 8 lanes (ggml_v_expf without fused multiply-adds).
func expx8(x f32x8) f32x8 {
	bc := archsimd.BroadcastFloat32x8
	r := bc(0x1.8p23)
	z := x.Mul(bc(0x1.715476p+0)).Add(r)
	n := z.Sub(r)
	b := x.Sub(n.Mul(bc(0x1.62e4p-1)))
	b = b.Sub(n.Mul(bc(0x1.7f7d1cp-20)))
	e := z.AsUint32x8().ShiftAllLeft(23)
	k := e.Add(archsimd.BroadcastUint32x8(0x3f800000)).AsFloat32x8()
	u := b.Mul(b)
	p1 := bc(0x1.0e4020p-7).Mul(b).Add(bc(0x1.573e2ep-5))
	p2 := bc(0x1.555e66p-3).Mul(b).Add(bc(0x1.fffdb6p-2))
	j := p1.Mul(u).Add(p2).Mul(u).Add(bc(0x1.ffffecp-1).Mul(b))
	an := n.AsUint32x8().And(archsimd.BroadcastUint32x8(0x7fffffff)).AsFloat32x8()
	c := an.Greater(bc(126))
	normal := j.Mul(k).Add(k)
	if c.ToBits() == 0 {
		return normal
	}
	g := archsimd.BroadcastUint32x8(0x82000000).Masked(n.LessEqual(archsimd.Float32x8{}))
	s1 := g.Add(archsimd.BroadcastUint32x8(0x7f000000)).AsFloat32x8()
	s2 := e.Sub(g).AsFloat32x8()
	big := s1.Mul(s1)
	mid := s2.Mul(j).Add(s2).Mul(s1)
	d := an.Greater(bc(192))
	return big.Merge(mid.Merge(normal, c), d)
}

func expSIMD(x []float32) {
	n := len(x)
	px := ptr(x)
	i := 0
	for ; i+8 <= n; i += 8 {
		stF32(expx8(ldF32(px, i)), px, i)
	}
	archsimd.ClearAVXUpperBits()
	for ; i < n; i++ {
		x[i] = expf(x[i])
	}
}

func swigluSIMD(gate, up []float32) {
	n := len(gate)
	up = up[:n]
	pg, pu := ptr(gate), ptr(up)
	one := archsimd.BroadcastFloat32x8(1)
	var zero f32x8
	i := 0
	for ; i+8 <= n; i += 8 {
		g := ldF32(pg, i)
		e := expx8(zero.Sub(g))
		stF32(g.Div(one.Add(e)).Mul(ldF32(pu, i)), pg, i)
	}
	archsimd.ClearAVXUpperBits()
	for ; i < n; i++ {
		g := gate[i]
		gate[i] = g / (1 + expf(-g)) * up[i]
	}
}

// ---- activation quantizers (AVX-512), bit-identical to act.go ----

func absF32x16(v archsimd.Float32x16) archsimd.Float32x16 {
	return v.AsUint32x16().And(archsimd.BroadcastUint32x16(0x7fffffff)).AsFloat32x16()
}

// hmax16 returns the largest lane of v (no NaN lanes; where the largest is
// a zero its sign may be either, and callers that care check for zero). It
// reduces in vectors, moves the result out through an integer register and
// clears the upper vector state before returning (see doc.go): callers go
// on with scalar float code.
func hmax16(v archsimd.Float32x16) float32 {
	m8 := v.GetLo().Max(v.GetHi())
	m := m8.GetLo().Max(m8.GetHi())
	m = m.Max(m.SelectFromPair(2, 3, 2, 3, m))
	m = m.Max(m.SelectFromPair(1, 1, 1, 1, m))
	bits := m.AsUint32x4().GetElem(0)
	archsimd.ClearAVXUpperBits()
	// Combined with a load (hsumZero) to keep the move to a float register
	// after the VZEROUPPER, see storeHsum8.
	return math.Float32frombits(bits | hsumZero)
}

func hsumI32x16(v archsimd.Int32x16) int32 {
	return hsumI32(v.GetLo().Add(v.GetHi()))
}

func ldF32x16(p unsafe.Pointer, i int) archsimd.Float32x16 {
	return archsimd.LoadFloat32x16((*[16]float32)(unsafe.Add(p, 4*i)))
}

// roundI32 rounds v*s to the nearest integer (ties to even) as int32 lanes.
func roundI32(v archsimd.Float32x16, s archsimd.Float32x16) archsimd.Int32x16 {
	return v.Mul(s).RoundToEvenScaled(0).ConvertToInt32()
}

func quantQ8_0SIMD(x []float32, q []int8, d, s []float32, b int) {
	x = x[:qk]
	q = q[:qk]
	px, pq := ptr(x), ptr(q)
	v0, v1 := ldF32x16(px, 0), ldF32x16(px, 16)
	amax := hmax16(absF32x16(v0).Max(absF32x16(v1)))
	dd := amax / 127
	d[b] = roundF16(dd)
	var id float32
	if amax != 0 {
		id = 127 / amax
	}
	vid := archsimd.BroadcastFloat32x16(id)
	i0, i1 := roundI32(v0, vid), roundI32(v1, vid)
	i0.TruncateToInt8().Store((*[16]int8)(pq))
	i1.TruncateToInt8().Store((*[16]int8)(unsafe.Add(pq, 16)))
	var isum int32
	if s != nil {
		isum = hsumI32x16(i0.Add(i1))
	}
	archsimd.ClearAVXUpperBits()
	if s != nil {
		s[b] = roundF16(dd * float32(isum))
	}
}

func quantQ8_KSIMD(x []float32, q []int8, d []float32, bsums []int16, b int) {
	x = x[:qkK]
	q = q[:qkK]
	bsums = bsums[:16]
	px, pq := ptr(x), ptr(q)
	m := absF32x16(ldF32x16(px, 0))
	for k := 1; k < 16; k++ {
		m = m.Max(absF32x16(ldF32x16(px, 16*k)))
	}
	amax := hmax16(m)
	if amax == 0 {
		d[b] = 0
		clear(q)
		clear(bsums)
		return
	}
	// The first element of largest magnitude, as the scalar scan finds it.
	va := archsimd.BroadcastFloat32x16(amax)
	imax := 0
	for k := 0; k < 16; k++ {
		if bits := absF32x16(ldF32x16(px, 16*k)).Equal(va).ToBits(); bits != 0 {
			imax = 16*k + bits16TrailingZeros(bits)
			break
		}
	}
	archsimd.ClearAVXUpperBits()
	iscale := -127 / x[imax]
	// d[b] computed here, in scalar code, and stored through an integer
	// register after the loop: a float32 live across the loop was spilled
	// with legacy-SSE MOVSS before the final VZEROUPPER.
	db := math.Float32bits(1/iscale) | hsumZero // in an integer register (see storeHsum8)
	vs := archsimd.BroadcastFloat32x16(iscale)
	m127 := archsimd.BroadcastInt32x16(127)
	for k := 0; k < 16; k++ {
		iv := roundI32(ldF32x16(px, 16*k), vs).Min(m127)
		iv.TruncateToInt8().Store((*[16]int8)(unsafe.Add(pq, 16*k)))
		bsums[k] = int16(hsumI32x16(iv))
	}
	archsimd.ClearAVXUpperBits()
	*(*uint32)(unsafe.Pointer(&d[b])) = db
}

func bits16TrailingZeros(b uint16) int {
	n := 0
	for b&1 == 0 {
		b >>= 1
		n++
	}
	return n
}
