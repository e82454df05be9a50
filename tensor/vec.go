package tensor

import (
	"fmt"
	"math"
)

// Implementations of the vector ops; SIMD builds replace them at init. The
// pure-Go versions are always compiled (tests compare the two bit for bit).
var (
	dotImpl    = dotGeneric32
	axpyImpl   = axpyGeneric
	scaleImpl  = scaleGeneric
	addImpl    = addGeneric
	mulImpl    = mulGeneric
	expImpl    = expGeneric
	swigluImpl = swigluGeneric

	dotRowsImpl  = dotRowsGeneric
	axpyRowsImpl = axpyRowsGeneric
	subMaxImpl   = subMaxGeneric
	mulScaleImpl = mulScaleGeneric
)

func checkLen(op string, a, b int) {
	if a != b {
		panic(fmt.Sprintf("tensor: %s: length mismatch %d != %d", op, a, b))
	}
}

// Dot returns the dot product of a and b (len(a) == len(b)), accumulated in
// float32 over 32 lanes (see dotGeneric32 for the exact order).
func Dot(a, b []float32) float32 {
	checkLen("Dot", len(a), len(b))
	return dotImpl(a, b)
}

// Axpy computes y += a*x.
func Axpy(a float32, x, y []float32) {
	checkLen("Axpy", len(x), len(y))
	axpyImpl(a, x, y)
}

// DotRows sets out[j] = Dot(q, k[j*stride:j*stride+len(q)]) for every j
// < len(out) (e.g. attention scores of one query against a run of keys),
// bit-identical to the separate Dot calls.
func DotRows(q, k []float32, stride int, out []float32) {
	if len(out) == 0 {
		return
	}
	if stride < len(q) || len(k) < (len(out)-1)*stride+len(q) {
		panic(fmt.Sprintf("tensor: DotRows: %d rows of %d at stride %d, k has %d elements", len(out), len(q), stride, len(k)))
	}
	dotRowsImpl(q, k, stride, out)
}

// AxpyRows computes y += a[j] * x[j*stride:j*stride+len(y)] for j = 0, 1,
// ..., len(a)-1 in that order (e.g. attention's weighted sum of values),
// bit-identical to the separate Axpy calls.
func AxpyRows(a, x []float32, stride int, y []float32) {
	if len(a) == 0 {
		return
	}
	if stride < len(y) || len(x) < (len(a)-1)*stride+len(y) {
		panic(fmt.Sprintf("tensor: AxpyRows: %d rows of %d at stride %d, x has %d elements", len(a), len(y), stride, len(x)))
	}
	axpyRowsImpl(a, x, stride, y)
}

func dotRowsGeneric(q, k []float32, stride int, out []float32) {
	for j := range out {
		out[j] = dotImpl(q, k[j*stride:j*stride+len(q)])
	}
}

func axpyRowsGeneric(a, x []float32, stride int, y []float32) {
	for j, aj := range a {
		axpyImpl(aj, x[j*stride:j*stride+len(y)], y)
	}
}

// Scale computes x *= a.
func Scale(x []float32, a float32) { scaleImpl(x, a) }

// Add computes dst += src.
func Add(dst, src []float32) {
	checkLen("Add", len(dst), len(src))
	addImpl(dst, src)
}

// Mul computes dst *= src element-wise.
func Mul(dst, src []float32) {
	checkLen("Mul", len(dst), len(src))
	mulImpl(dst, src)
}

// RMSNorm computes dst = x / sqrt(mean(x^2) + eps) * w, as ggml's rms_norm
// followed by a multiplication: the squares are rounded to float32 and summed
// in float64, the mean and scale are float32, and dst[i] = (x[i]*scale)*w[i].
// dst may alias x.
func RMSNorm(dst, x, w []float32, eps float32) {
	checkLen("RMSNorm", len(dst), len(x))
	checkLen("RMSNorm", len(w), len(x))
	var sum float64
	for _, v := range x {
		sum += float64(float32(v * v))
	}
	mean := float32(sum / float64(len(x)))
	scale := 1 / float32(math.Sqrt(float64(mean+eps)))
	mulScaleImpl(dst, x, w, scale)
}

// mulScaleGeneric sets dst[i] = (x[i]*scale)*w[i] (dst may alias x).
func mulScaleGeneric(dst, x, w []float32, scale float32) {
	x, w = x[:len(dst)], w[:len(dst)]
	for i, v := range x {
		dst[i] = float32(v*scale) * w[i]
	}
}

// Softmax replaces x by softmax(x), in place: exp(x - max(x)) (with ggml's
// float32 exp approximation, see Exp), summed in float64, then scaled by
// float32(1/sum).
func Softmax(x []float32) {
	if len(x) == 0 {
		return
	}
	subMaxImpl(x)
	expImpl(x)
	var sum float64
	for _, v := range x {
		sum += float64(v)
	}
	scaleImpl(x, float32(1/sum))
}

// Exp replaces x[i] by e^x[i] in place, computed like ggml's ggml_v_expf (a
// float32 range reduction and polynomial, about 1 ulp; multiplies and adds are
// rounded separately).
func Exp(x []float32) { expImpl(x) }

// SwiGLU computes gate = silu(gate) * up, where silu(g) = g / (1 + e^-g).
func SwiGLU(gate, up []float32) {
	checkLen("SwiGLU", len(gate), len(up))
	swigluImpl(gate, up)
}

// subMaxGeneric subtracts max(x) (Go's max: NaN if any is NaN, +0 over
// -0) from every element of x (len(x) > 0).
func subMaxGeneric(x []float32) {
	m := float32(math.Inf(-1))
	for _, v := range x {
		m = max(m, v)
	}
	for i := range x {
		x[i] -= m
	}
}

func axpyGeneric(a float32, x, y []float32) {
	y = y[:len(x)]
	for i, v := range x {
		y[i] += float32(a * v)
	}
}

func scaleGeneric(x []float32, a float32) {
	for i := range x {
		x[i] *= a
	}
}

func addGeneric(dst, src []float32) {
	src = src[:len(dst)]
	for i := range dst {
		dst[i] += src[i]
	}
}

func mulGeneric(dst, src []float32) {
	src = src[:len(dst)]
	for i := range dst {
		dst[i] *= src[i]
	}
}

func expGeneric(x []float32) {
	for i, v := range x {
		x[i] = expf(v)
	}
}

func swigluGeneric(gate, up []float32) {
	up = up[:len(gate)]
	for i, g := range gate {
		gate[i] = g / (1 + expf(-g)) * up[i]
	}
}

// expf is ggml_v_expf for one lane, without fused multiply-adds.
func expf(x float32) float32 {
	const r = 0x1.8p23
	z := float32(x*0x1.715476p+0) + r
	n := z - r
	b := x - float32(n*0x1.62e4p-1)
	b -= float32(n * 0x1.7f7d1cp-20)
	e := math.Float32bits(z) << 23
	k := math.Float32frombits(e + 0x3f800000)
	u := b * b
	p1 := float32(0x1.0e4020p-7*b) + 0x1.573e2ep-5
	p2 := float32(0x1.555e66p-3*b) + 0x1.fffdb6p-2
	j := float32(float32(float32(p1*u)+p2)*u) + float32(0x1.ffffecp-1*b)
	an := float32(math.Abs(float64(n)))
	if !(an > 126) {
		return float32(j*k) + k
	}
	var g uint32
	if n <= 0 {
		g = 0x82000000
	}
	s1 := math.Float32frombits(g + 0x7f000000)
	if an > 192 {
		return s1 * s1
	}
	s2 := math.Float32frombits(e - g)
	return float32(float32(float32(s2*j)+s2) * s1)
}
