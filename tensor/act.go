package tensor

import (
	"math"

	"github.com/stepflash/stepflash/gguf"
)

// actKind is the format activations are converted to before a product with
// a weight matrix: ggml's vec_dot_type of the weight type.
type actKind int

const (
	actF32  actKind = iota // plain float32
	actF16                 // float32 values rounded to binary16
	actBF16                // float32 values rounded to bfloat16
	actQ8_0                // int8 blocks of 32 with an fp16 scale
	actQ8_1                // Q8_0 plus s = fp16(d * sum(qs)) per block
	actQ8_K                // int8 blocks of 256, float32 scale, 16 block sums
)

// vecDotKind returns the activation format llama.cpp uses for weights of type t.
func vecDotKind(t gguf.Type) actKind {
	switch t {
	case gguf.TypeF16:
		return actF16
	case gguf.TypeBF16:
		return actBF16
	case gguf.TypeQ8_0, gguf.TypeQ4_0, gguf.TypeQ5_0:
		return actQ8_0
	case gguf.TypeQ4_1, gguf.TypeQ5_1:
		return actQ8_1
	case gguf.TypeQ2_K, gguf.TypeQ3_K, gguf.TypeQ4_K, gguf.TypeQ5_K, gguf.TypeQ6_K:
		return actQ8_K
	}
	return actF32
}

// Activation converters; SIMD builds replace them at init.
var (
	quantQ8_0Impl = quantizeBlockQ8_0
	quantQ8_KImpl = quantizeBlockQ8_K
	roundF16Rows  = roundF16RowsGeneric
)

// roundF16RowsGeneric sets dst[i] = roundF16(src[i]) (roundF16Rows, which
// SIMD builds replace with F16C's conversions on CPUs that have them).
func roundF16RowsGeneric(dst, src []float32) {
	src = src[:len(dst)]
	for i := range dst {
		dst[i] = roundF16(src[i])
	}
}

// act holds n quantized activation vectors of cols elements each, stored
// back to back (vector j starts at element j*cols).
type act struct {
	kind  actKind
	cols  int
	f     []float32 // actF32, actF16, actBF16 (rounded values)
	h     []uint16  // actBF16 with packBF16: the bfloat16 bits of f
	qs    []int8    // Q8 kinds
	d     []float32 // Q8 kinds: per-block scale (fp16-rounded for Q8_0/Q8_1)
	s     []float32 // actQ8_1: fp16(d * sum(qs)) per block
	bsums []int16   // actQ8_K: sums of 16 consecutive qs
	qsP   []int8    // actQ8_K with permuteQ8K: qs in the AVX-512 pair order
	bsp   []int16   // actQ8_K: sums of 32 consecutive qs (adjacent bsums pairs)
	d4    []float32 // actQ8_K with n >= 4: d of vectors 4g..4g+3 at block b in d4[(g*nb+b)*4+k]
	d16   []float32 // actQ8_0/actQ8_1 batches: for vector j and block pair p, [d[2p] x8, d[2p+1] x8] at d16[(j*nb/2+p)*16:]
}

// expandPairScales fills d16 from d (for the 2-block-wide batched kernels).
func (a *act) expandPairScales(n int) {
	if a.kind != actQ8_0 && a.kind != actQ8_1 {
		return
	}
	nb := a.cols / qk
	np := nb / 2
	a.d16 = grow(a.d16, n*np*16)
	for j := 0; j < n; j++ {
		for p := 0; p < np; p++ {
			v := a.d16[(j*np+p)*16 : (j*np+p)*16+16]
			for l := 0; l < 8; l++ {
				v[l] = a.d[j*nb+2*p]
				v[8+l] = a.d[j*nb+2*p+1]
			}
		}
	}
}

// grow returns s resized to n, reusing its storage when it is large enough.
func grow[T any](s []T, n int) []T {
	if cap(s) < n {
		return make([]T, n)
	}
	return s[:n]
}

// prepare sizes a for n vectors of cols elements of the given kind.
func (a *act) prepare(kind actKind, cols, n int) {
	a.kind, a.cols = kind, cols
	total := cols * n
	switch kind {
	case actF32, actF16:
		a.f = grow(a.f, total)
	case actBF16:
		a.f = grow(a.f, total)
		if packBF16 {
			a.h = grow(a.h, total)
		}
	case actQ8_0:
		a.qs = grow(a.qs, total)
		a.d = grow(a.d, total/qk)
	case actQ8_1:
		a.qs = grow(a.qs, total)
		a.d = grow(a.d, total/qk)
		a.s = grow(a.s, total/qk)
	case actQ8_K:
		a.qs = grow(a.qs, total)
		a.d = grow(a.d, total/qkK)
		a.bsums = grow(a.bsums, total/16)
		a.bsp = grow(a.bsp, total/32)
		a.d4 = grow(a.d4, n/4*4*(cols/qkK))
		if permuteQ8K {
			a.qsP = grow(a.qsP, total)
		}
	}
}

// permuteQ8K makes actQ8_K activations also keep qsP, a copy of qs with each
// 256-block's 32-byte quarters reordered 0,2,1,3,4,6,5,7: then the element
// pairs the AVX-512 K-quant kernels multiply together (elements j and j+64
// of each 128) are one contiguous 64-byte load. Set at init by SIMD builds.
var permuteQ8K bool

// packBF16 makes actBF16 activations also keep h, their bfloat16 bits, for
// the AVX512_BF16 kernels (bf16dp_amd64.go). Set at init by SIMD builds
// on CPUs that have it.
var packBF16 bool

// permuteBlockK writes the qsP order of one 256-block.
func permuteBlockK(dst, src []int8) {
	dst, src = dst[:qkK], src[:qkK]
	for k, q := range [8]int{0, 2, 1, 3, 4, 6, 5, 7} {
		copy(dst[32*k:32*k+32], src[32*q:32*q+32])
	}
}

// transposeScales fills d4 from d after quantization.
func (a *act) transposeScales(n int) {
	if a.kind != actQ8_K {
		return
	}
	nb := a.cols / qkK
	for g := 0; g < n/4; g++ {
		for b := 0; b < nb; b++ {
			for k := 0; k < 4; k++ {
				a.d4[(g*nb+b)*4+k] = a.d[(4*g+k)*nb+b]
			}
		}
	}
}

// quantize converts elements [lo, hi) of x (block aligned) into a.
func (a *act) quantize(x []float32, lo, hi int) {
	switch a.kind {
	case actF32:
		copy(a.f[lo:hi], x[lo:hi])
	case actF16:
		roundF16Rows(a.f[lo:hi], x[lo:hi])
	case actBF16:
		if packBF16 {
			for i := lo; i < hi; i++ {
				a.h[i] = f32ToBF16(x[i])
				a.f[i] = bf16ToF32(a.h[i])
			}
			break
		}
		for i := lo; i < hi; i++ {
			a.f[i] = roundBF16(x[i])
		}
	case actQ8_0, actQ8_1:
		var s []float32
		if a.kind == actQ8_1 {
			s = a.s
		}
		for b := lo / qk; b < hi/qk; b++ {
			quantQ8_0Impl(x[b*qk:b*qk+qk], a.qs[b*qk:b*qk+qk], a.d, s, b)
		}
	case actQ8_K:
		for b := lo / qkK; b < hi/qkK; b++ {
			quantQ8_KImpl(x[b*qkK:b*qkK+qkK], a.qs[b*qkK:b*qkK+qkK], a.d, a.bsums[b*16:b*16+16], b)
			if permuteQ8K {
				permuteBlockK(a.qsP[b*qkK:], a.qs[b*qkK:])
			}
			for j := 0; j < 8; j++ {
				a.bsp[b*8+j] = a.bsums[b*16+2*j] + a.bsums[b*16+2*j+1]
			}
		}
	}
}

// quantizeBlockQ8_0 quantizes one block of 32 as ggml's x86
// quantize_row_q8_0 / quantize_row_q8_1 do: d = amax/127, q = round-half-even
// (x * 127/amax), scale stored as fp16. If s is non-nil (Q8_1) it also stores
// fp16(d * sum(q)).
func quantizeBlockQ8_0(x []float32, q []int8, d, s []float32, b int) {
	x = x[:qk]
	q = q[:qk]
	var amax float32
	for _, v := range x {
		if av := abs32(v); av > amax {
			amax = av
		}
	}
	dd := amax / 127
	d[b] = roundF16(dd)
	var id float32
	if amax != 0 {
		id = 127 / amax
	}
	sum := 0
	for j, v := range x {
		r := int(math.RoundToEven(float64(v * id)))
		q[j] = int8(r)
		sum += r
	}
	if s != nil {
		s[b] = roundF16(dd * float32(sum))
	}
}

func abs32(v float32) float32 { return math.Float32frombits(math.Float32bits(v) &^ (1 << 31)) }

// nearestInt rounds to the nearest integer, ties to even, as ggml's
// nearest_int does for |f| < 2^22.
func nearestInt(f float32) int {
	return int(math.RoundToEven(float64(f)))
}

// quantizeBlockQ8_K quantizes one block of 256 as quantize_row_q8_K_ref:
// the element of largest magnitude maps to -127 via iscale = -127/max,
// d = 1/iscale (float32), plus the 16 sums of 16 consecutive quants.
func quantizeBlockQ8_K(x []float32, q []int8, d []float32, bsums []int16, b int) {
	x = x[:qkK]
	q = q[:qkK]
	var amax, vmax float32
	for _, v := range x {
		if av := abs32(v); av > amax {
			amax, vmax = av, v
		}
	}
	if amax == 0 {
		d[b] = 0
		clear(q)
		clear(bsums)
		return
	}
	iscale := -127 / vmax
	for j, v := range x {
		q[j] = int8(min(127, nearestInt(iscale*v)))
	}
	for j := 0; j < 16; j++ {
		sum := 0
		for _, v := range q[16*j : 16*j+16] {
			sum += int(v)
		}
		bsums[j] = int16(sum)
	}
	d[b] = 1 / iscale
}
