package tensor

import (
	"fmt"
	"math"

	"github.com/stepflash/stepflash/gguf"
)

// Attention's tiled kernels. A work item of attention holds M queries that
// read the same cached keys and values (the query heads of one KV head, for
// one or several consecutive tokens of a sequence); a block of cached rows is
// converted to float32 once (KVRowsF32) and then used by all M queries:
// AttnScores multiplies the queries with the block's keys, AttnPV adds the
// weighted value rows to each query's output. Each query's result depends on
// that query alone, never on the others in the tile, so a token's attention
// is the same in any batch.

// Set to the SIMD kernels where the CPU has them (attn_amd64.go).
var (
	attnScoresImpl = attnScoresGeneric
	attnPVImpl     = attnPVGeneric
	cvtF16Impl     = cvtF16Generic
	// cvtF16BlocksImpl converts len(hs) blocks of m binary16 values,
	// hs[i] to out[i*m:(i+1)*m].
	cvtF16BlocksImpl = cvtF16BlocksGeneric
)

// KVRowsF32 returns rows rows of n elements of type t (KVRowBytes(t, n)
// bytes each) from kv as float32s: F32 rows in place, F16 rows converted
// exactly and Q8_0 rows dequantized (as Dequantize) into *buf, which grows
// as needed.
func KVRowsF32(t gguf.Type, kv []byte, rows, n int, buf *[]float32) []float32 {
	m := rows * n
	if t == gguf.TypeF32 {
		return F32s(kv[:4*m])[:m]
	}
	*buf = grow(*buf, m)
	out := (*buf)[:m]
	switch t {
	case gguf.TypeF16:
		cvtF16Impl(kv[:2*m], out)
	default:
		if err := Dequantize(t, kv[:rows*KVRowBytes(t, n)], out); err != nil {
			panic(err)
		}
	}
	return out
}

// KVStreams is the most blocks KVBlocksF32 takes at once.
const KVStreams = kvStreams

const kvStreams = 4

// KVBlocksF32 is KVRowsF32 for up to KVStreams blocks of a cache at once:
// kvs[i] holds rows rows of n elements of type t (not F32, whose rows are
// used in place), and block i's float32s are out[i*rows*n:(i+1)*rows*n].
// Decoding at depth reads every cached row from memory once per token;
// F16 blocks are converted side by side, 32 values of each in turn, so
// memory serves len(kvs) streams at once instead of one (model's
// BenchmarkAttendLayers, 28 layers 4,096 deep on 2 threads, on the Xeon VM
// of BENCHMARKS.md: 10.2 -> 11.9 GB/s). The values are KVRowsF32's, block
// by block.
func KVBlocksF32(t gguf.Type, kvs [][]byte, rows, n int, buf *[]float32) []float32 {
	if len(kvs) == 0 || len(kvs) > KVStreams || t == gguf.TypeF32 {
		panic(fmt.Sprintf("tensor: KVBlocksF32 of %d %v blocks", len(kvs), t))
	}
	m := rows * n
	*buf = grow(*buf, len(kvs)*m)
	out := (*buf)[:len(kvs)*m]
	if t == gguf.TypeF16 {
		var hs [kvStreams][]byte
		for i, kv := range kvs {
			hs[i] = kv[:2*m]
		}
		cvtF16BlocksImpl(hs[:len(kvs)], m, out)
		return out
	}
	for i, kv := range kvs {
		o := out[i*m : (i+1)*m]
		if err := Dequantize(t, kv[:rows*KVRowBytes(t, n)], o); err != nil {
			panic(err)
		}
	}
	return out
}

func cvtF16BlocksGeneric(hs [][]byte, m int, out []float32) {
	for i, h := range hs {
		cvtF16Impl(h[:2*m], out[i*m:(i+1)*m])
	}
}

func cvtF16Generic(h []byte, out []float32) {
	h = h[:2*len(out)]
	for i := range out {
		out[i] = f16ToF32(le16(h[2*i:]))
	}
}

// AttnScores sets s[m*lds+j] to the dot product of query m (q[m*d:(m+1)*d])
// and key j (k[j*d:(j+1)*d]) for m < M and j < nk. Each product is summed
// in 16 lanes (element i in lane i%16, multiplies and adds rounded
// separately), the lanes folded to 8 (lane l + lane l+8) and reduced in
// hsum8's order, then the elements past the last multiple of 16 added in
// order.
func AttnScores(q []float32, M, d int, k []float32, nk int, s []float32, lds int) {
	if M == 0 || nk == 0 {
		return
	}
	if len(q) < M*d || len(k) < nk*d || lds < nk || len(s) < (M-1)*lds+nk {
		panic(fmt.Sprintf("tensor: AttnScores: %d queries and %d keys of %d, q %d, k %d, scores %d at stride %d", M, nk, d, len(q), len(k), len(s), lds))
	}
	attnScoresImpl(q, M, d, k, nk, s, lds)
}

func attnScoresGeneric(q []float32, M, d int, k []float32, nk int, s []float32, lds int) {
	for m := 0; m < M; m++ {
		qm := q[m*d : (m+1)*d]
		for j := 0; j < nk; j++ {
			s[m*lds+j] = dot16(qm, k[j*d:(j+1)*d])
		}
	}
}

// dot16 is one product of AttnScores.
func dot16(a, b []float32) float32 {
	var acc [16]float32
	n := len(a) &^ 15
	b = b[:len(a)]
	for i := 0; i < n; i += 16 {
		x, y := a[i:i+16], b[i:i+16]
		for l := range acc {
			acc[l] += float32(x[l] * y[l])
		}
	}
	var v [8]float32
	for l := range v {
		v[l] = acc[l] + acc[l+8]
	}
	sum := hsum8(&v)
	for i := n; i < len(a); i++ {
		sum += float32(a[i] * b[i])
	}
	return sum
}

// AttnPV adds the weighted value rows to each query's output: for m <
// len(cnt), out[m*dv:(m+1)*dv] += p[m*ldp+j] * v[j*dv:(j+1)*dv] for j = 0,
// 1, ..., cnt[m]-1 in that order, each element multiplied and added with
// separate roundings (as Axpy and AxpyRows add).
func AttnPV(p []float32, ldp int, cnt []int, v []float32, dv int, out []float32) {
	M := len(cnt)
	if M == 0 {
		return
	}
	most := 0
	for _, c := range cnt {
		if c < 0 || c > ldp {
			panic(fmt.Sprintf("tensor: AttnPV: a count of %d rows at stride %d", c, ldp))
		}
		most = max(most, c)
	}
	if len(p) < (M-1)*ldp+most || len(v) < most*dv || len(out) < M*dv {
		panic(fmt.Sprintf("tensor: AttnPV: %d queries, up to %d rows of %d, p %d at stride %d, v %d, out %d", M, most, dv, len(p), ldp, len(v), len(out)))
	}
	attnPVImpl(p, ldp, cnt, v, dv, out)
}

func attnPVGeneric(p []float32, ldp int, cnt []int, v []float32, dv int, out []float32) {
	for m, c := range cnt {
		y := out[m*dv : (m+1)*dv]
		for j, pj := range p[m*ldp : m*ldp+c] {
			row := v[j*dv : (j+1)*dv]
			for i := range y {
				y[i] += float32(pj * row[i])
			}
		}
	}
}

// KVQuery writes q into dst as attention multiplies it with keys of type t
// through AttnScores: F16 keys take the query rounded to F16 (llama.cpp
// converts it to the keys' vec_dot_type), F32 keys take it as it is.
func KVQuery(t gguf.Type, q, dst []float32) {
	dst = dst[:len(q)]
	if t != gguf.TypeF16 {
		copy(dst, q)
		return
	}
	for i, v := range q {
		dst[i] = roundF16(v)
	}
}

var expSumImpl = expSumGeneric

// ExpSum replaces x by exp(x - m), m the largest element (a NaN is passed
// over), and returns m and the sum of the results: attention's softmax
// before its scaling by 1/sum. The elements are summed in float64, in 8
// lanes (element i in lane i%8) reduced in hsum8's order, then the elements
// past the last multiple of 8 in order. The exponential is Exp's.
func ExpSum(x []float32) (m float32, sum float64) {
	if len(x) == 0 {
		return float32(math.Inf(-1)), 0
	}
	return expSumImpl(x)
}

func expSumGeneric(x []float32) (float32, float64) {
	n8 := len(x) &^ 7
	var mx [8]float32
	for l := range mx {
		mx[l] = float32(math.Inf(-1))
	}
	for i := 0; i < n8; i += 8 {
		for l, v := range x[i : i+8] {
			if v > mx[l] {
				mx[l] = v
			}
		}
	}
	m := float32(math.Inf(-1))
	for _, v := range mx {
		if v > m {
			m = v
		}
	}
	for _, v := range x[n8:] {
		if v > m {
			m = v
		}
	}
	var acc [8]float64
	for i := 0; i < n8; i += 8 {
		for l := range acc {
			e := expf(x[i+l] - m)
			x[i+l] = e
			acc[l] += float64(e)
		}
	}
	a, b := acc[0]+acc[4], acc[1]+acc[5]
	c, d := acc[2]+acc[6], acc[3]+acc[7]
	sum := (a + c) + (b + d)
	for i := n8; i < len(x); i++ {
		x[i] = expf(x[i] - m)
		sum += float64(x[i])
	}
	return m, sum
}
