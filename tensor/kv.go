package tensor

import (
	"fmt"
	"unsafe"

	"github.com/stepflash/stepflash/gguf"
)

// KVSupported reports whether a KV cache may store keys or values in type
// t: F32, F16 or Q8_0 (llama.cpp's --cache-type-k/-v f32, f16, q8_0).
func KVSupported(t gguf.Type) bool {
	return t == gguf.TypeF32 || t == gguf.TypeF16 || t == gguf.TypeQ8_0
}

// KVRowBytes is the storage of one cached row of n elements of type t.
func KVRowBytes(t gguf.Type, n int) int {
	return n / t.BlockSize() * t.BlockBytes()
}

// F32s views b (4-byte aligned, as every slice made by make([]byte) of
// at least 4 bytes is) as float32s.
func F32s(b []byte) []float32 {
	if len(b) < 4 {
		return nil
	}
	return unsafe.Slice((*float32)(unsafe.Pointer(&b[0])), len(b)/4)
}

// StoreKV writes src in type t into dst (KVRowBytes(t, len(src)) bytes),
// as ggml's copy into a cache of that type does: F16 rounds to nearest
// even, Q8_0 quantizes each block of 32 as quantize_row_q8_0.
func StoreKV(t gguf.Type, src []float32, dst []byte) {
	switch t {
	case gguf.TypeF32:
		copy(F32s(dst)[:len(src)], src)
	case gguf.TypeF16:
		dst = dst[:2*len(src)]
		for i, v := range src {
			h := f32ToF16(v)
			dst[2*i], dst[2*i+1] = byte(h), byte(h>>8)
		}
	case gguf.TypeQ8_0:
		var q [qk]int8
		var d [1]float32
		for b := 0; b < len(src)/qk; b++ {
			quantQ8_0Impl(src[b*qk:b*qk+qk], q[:], d[:], nil, 0)
			blk := dst[b*bytesQ8_0 : (b+1)*bytesQ8_0]
			h := f32ToF16(d[0]) // d is fp16-rounded: exact
			blk[0], blk[1] = byte(h), byte(h>>8)
			for j, v := range q {
				blk[2+j] = byte(v)
			}
		}
	default:
		panic(fmt.Sprintf("tensor: StoreKV: %v is not a KV cache type", t))
	}
}

// KVScratch is one attention worker's scratch space: a query converted for
// the keys' type.
type KVScratch struct {
	t    gguf.Type
	q    []float32 // the query (F32 keys)
	a    act       // the query as llama.cpp converts it for F16 or Q8_0 keys
	m, d int       // SetQueries' count and length
}

// SetQuery makes q the query that Dot multiplies keys of type t with. For
// F16 keys q is rounded to F16 and for Q8_0 keys quantized to Q8_0 blocks,
// as llama.cpp converts the query for the key type (vec_dot_type); the
// products are then the weight kernels' (SIMD where the CPU has it).
func (s *KVScratch) SetQuery(t gguf.Type, q []float32) {
	s.t, s.q = t, q
	if t != gguf.TypeF32 {
		s.a.prepare(vecDotKind(t), len(q), 1)
		s.a.quantize(q, 0, len(q))
	}
}

// Dot sets out[j] to the query's dot product with row j of k, which holds
// len(out) consecutive rows of the query's length in SetQuery's type.
func (s *KVScratch) Dot(k []byte, out []float32) {
	n := len(out)
	if n == 0 {
		return
	}
	if s.t == gguf.TypeF32 {
		DotRows(s.q, F32s(k), len(s.q), out)
		return
	}
	rb := KVRowBytes(s.t, len(s.q))
	kernels[s.t](k[:n*rb], n, &s.a, 0, out)
}

// SetQueries makes the M rows of q (each d long) the queries that DotTile
// multiplies keys of type t with, each converted as SetQuery converts one.
func (s *KVScratch) SetQueries(t gguf.Type, q []float32, M, d int) {
	s.t, s.q = t, q[:M*d]
	s.m, s.d = M, d
	if t != gguf.TypeF32 {
		s.a.prepare(vecDotKind(t), d, M)
		s.a.quantize(q, 0, M*d)
		s.a.transposeScales(M)
		s.a.expandPairScales(M)
	}
}

// DotTile sets out[m*lds+j] to query m's dot product with row j of k (nk
// rows in SetQueries' type) for every query: bit for bit what Dot gives
// for each query alone, with the weight kernels' batched forms where the
// CPU has them (each key row read once for four queries or more).
func (s *KVScratch) DotTile(k []byte, nk int, out []float32, lds int) {
	if nk == 0 || s.m == 0 {
		return
	}
	M, d := s.m, s.d
	if s.t == gguf.TypeF32 {
		for m := 0; m < M; m++ {
			DotRows(s.q[m*d:(m+1)*d], F32s(k), d, out[m*lds:m*lds+nk])
		}
		return
	}
	k = k[:nk*KVRowBytes(s.t, d)]
	c := 0
	if dotN := kernelsN[s.t]; dotN != nil && M >= 4 {
		c = M &^ 3
		dotN(k, nk, &s.a, c, out, lds)
	}
	if dot4 := kernels4[s.t]; dot4 != nil {
		for ; c+4 <= M; c += 4 {
			dot4(k, nk, &s.a, c, out[c*lds:], lds)
		}
	}
	for ; c < M; c++ {
		kernels[s.t](k, nk, &s.a, c*d, out[c*lds:c*lds+nk])
	}
}
