//go:build goexperiment.simd && amd64

package tensor

import (
	"math"
	"simd/archsimd"
	"slices"
	"unsafe"
)

// The tiled attention kernels with AVX-512 (16 lanes) and AVX2 (8 lanes,
// two vectors for the 16 lanes of one product): the lane layout and float
// operation order of attnScoresGeneric and attnPVGeneric. The F16 rows of a
// KV cache are converted with F16C's VCVTPH2PS (f16cvt_amd64.s), which
// archsimd does not have.

type attnVariant struct {
	name   string
	ok     bool
	scores func(q []float32, M, d int, k []float32, nk int, s []float32, lds int)
	pv     func(p []float32, ldp int, cnt []int, v []float32, dv int, out []float32)
	cvtF16 func(h []byte, out []float32)
	// cvtF16Blocks, if set, replaces cvtF16BlocksImpl.
	cvtF16Blocks func(hs [][]byte, m int, out []float32)
}

var hasF16C = hasSIMD && cpuHasF16C()

var attnVariants = []attnVariant{
	{name: "avx2", ok: hasSIMD, scores: attnScoresAVX2, pv: attnPVAVX2},
	{name: "avx512", ok: hasSIMD && archsimd.X86.AVX512(), scores: attnScoresAVX512, pv: attnPVAVX512},
	// Whole tiles in Go assembly (attntile_amd64.s), the rest as avx512.
	{name: "avx512-tile", ok: hasSIMD && archsimd.X86.AVX512(), scores: attnScoresAsm, pv: attnPVAsm},
	{name: "f16c", ok: hasF16C, cvtF16: cvtF16F16C},
	// cvtF16Blocks converts 16 values per instruction (EVEX VCVTPH2PS).
	{name: "f16c-avx512", ok: hasF16C && hasSIMD && archsimd.X86.AVX512(), cvtF16Blocks: cvtF16BlocksAVX512},
}

func init() {
	for _, v := range attnVariants {
		if !v.ok {
			continue
		}
		if v.scores != nil {
			attnScoresImpl, attnPVImpl = v.scores, v.pv
		}
		if v.cvtF16 != nil {
			cvtF16Impl = v.cvtF16
		}
		if v.cvtF16Blocks != nil {
			cvtF16BlocksImpl = v.cvtF16Blocks
		}
	}
	if hasSIMD {
		expSumImpl = expSumSIMD
	}
}

// cvtF16F16C is cvtF16Generic with VCVTPH2PS for each 8 elements (exact,
// as f16ToF32, but for a signalling NaN, which it quiets).
func cvtF16F16C(h []byte, out []float32) {
	n := len(out)
	h = h[:2*n]
	n8 := n &^ 7
	if n8 > 0 {
		cvtF16x8(&out[0], &h[0], n8)
	}
	for i := n8; i < n; i++ {
		out[i] = f16ToF32(le16(h[2*i:]))
	}
}

// cvtF16BlocksAVX512 is cvtF16BlocksGeneric reading the blocks side by
// side (cvtF16Blocks) when m is a multiple of 32, as a cache block of a
// head size of 32, 64, 128 or 256 is.
func cvtF16BlocksAVX512(hs [][]byte, m int, out []float32) {
	if m%32 != 0 || m == 0 {
		cvtF16BlocksGeneric(hs, m, out)
		return
	}
	var ps [kvStreams]*byte
	for i, h := range hs {
		ps[i] = &h[:2*m][0]
	}
	out = out[:len(hs)*m]
	cvtF16Blocks(&out[0], &ps, len(hs), m)
}

// reduce8 folds eight 8-lane sums at once, each in hsum8's order, into
// [r0 r2 r4 r6 r1 r3 r5 r7] where ri is hsum8 of vi.
func reduce8(v0, v1, v2, v3, v4, v5, v6, v7 f32x8) f32x8 {
	// [v0 lo+hi | v1 lo+hi]: lanes a b c d of each (a = lane 0 + lane 4, ...).
	w01 := v0.Select128FromPair(0, 2, v1).Add(v0.Select128FromPair(1, 3, v1))
	w23 := v2.Select128FromPair(0, 2, v3).Add(v2.Select128FromPair(1, 3, v3))
	w45 := v4.Select128FromPair(0, 2, v5).Add(v4.Select128FromPair(1, 3, v5))
	w67 := v6.Select128FromPair(0, 2, v7).Add(v6.Select128FromPair(1, 3, v7))
	// [a0+c0 b0+d0 a2+c2 b2+d2 | a1+c1 b1+d1 a3+c3 b3+d3], and 4..7.
	z0 := w01.SelectFromPairGrouped(0, 1, 4, 5, w23).Add(w01.SelectFromPairGrouped(2, 3, 6, 7, w23))
	z1 := w45.SelectFromPairGrouped(0, 1, 4, 5, w67).Add(w45.SelectFromPairGrouped(2, 3, 6, 7, w67))
	// (a+c) + (b+d) of each.
	return z0.SelectFromPairGrouped(0, 2, 4, 6, z1).Add(z0.SelectFromPairGrouped(1, 3, 5, 7, z1))
}

// store2x4 writes r (from reduce8 of v0 = q0k0, v1 = q1k0, v2 = q0k1, ...,
// v7 = q1k3) as q0's four scores at p0 and q1's at p1, through integer
// registers (see doc.go).
func store2x4(r f32x8, p0, p1 unsafe.Pointer) {
	u := r.AsUint64x4()
	*(*uint64)(p0) = u.GetLo().GetElem(0)
	*(*uint64)(unsafe.Add(p0, 8)) = u.GetLo().GetElem(1)
	if p1 != nil {
		*(*uint64)(p1) = u.GetHi().GetElem(0)
		*(*uint64)(unsafe.Add(p1, 8)) = u.GetHi().GetElem(1)
	}
}

// attnScoresTile computes the scores of two queries (q, q+stride bytes)
// against eight keys (k, k+stride, ..., k+7·stride) over their first d16
// elements (a positive multiple of 16) in dot16's lanes and order: query i
// by key j to s + i·lds + 4j bytes (attntile_amd64.s).
//
//go:noescape
func attnScoresTile(q, k *float32, stride, d16 int, s *float32, lds int)

// attnPVTile adds, for the four queries with weights at p + i·ldp and 64
// output elements at y + i·ldy (bytes), weight j times the value row at v +
// j·ldv for j = 0, ..., c-1 (c > 0) in order, as AttnPV
// (attntile_amd64.s).
//
//go:noescape
func attnPVTile(p *float32, ldp int, v *float32, ldv, c int, y *float32, ldy int)

// attnPVTile2 is attnPVTile for two queries and 128 output elements each.
//
//go:noescape
func attnPVTile2(p *float32, ldp int, v *float32, ldv, c int, y *float32, ldy int)

// attnScoresAsm is attnScoresAVX512 with its tiles of two queries by eight
// keys in Go assembly, which keeps all sixteen sums in registers (Go gives
// archsimd code 15); the remaining keys and queries go to attnScoresAVX512.
// Every score is summed in the same order either way.
func attnScoresAsm(q []float32, M, d int, k []float32, nk int, s []float32, lds int) {
	if d%16 != 0 || M < 2 || nk < 8 {
		attnScoresAVX512(q, M, d, k, nk, s, lds)
		return
	}
	nk8, m := nk&^7, 0
	for ; m+2 <= M; m += 2 {
		for j := 0; j < nk8; j += 8 {
			attnScoresTile(&q[m*d], &k[j*d], 4*d, d, &s[m*lds+j], 4*lds)
		}
	}
	if nk8 < nk {
		attnScoresAVX512(q, m, d, k[nk8*d:], nk-nk8, s[nk8:], lds)
	}
	if m < M {
		attnScoresAVX512(q[m*d:], M-m, d, k, nk, s[m*lds:], lds)
	}
}

// attnPVAsm is attnPVAVX512 with the rows that four queries share added
// by attnPVTile, 64 elements at a time (two queries with 128-element
// multiples: attnPVTile2, the decoding case); each query's rows past the
// shared count follow in order (onePart), and the last queries go to
// attnPVAVX512.
func attnPVAsm(p []float32, ldp int, cnt []int, v []float32, dv int, out []float32) {
	M := len(cnt)
	if dv%64 != 0 || M < 2 || (M < 4 && dv%128 != 0) {
		attnPVAVX512(p, ldp, cnt, v, dv, out)
		return
	}
	pp, pv, po := ptr(p), ptr(v), ptr(out)
	m := 0
	// tiles adds the rows that the q queries from m share, width elements
	// at a time, then each one's own rows, and moves m past them.
	tiles := func(q, width int, kernel func(p *float32, ldp int, v *float32, ldv, c int, y *float32, ldy int)) {
		c := slices.Min(cnt[m : m+q])
		if c > 0 {
			for i := 0; i < dv; i += width {
				kernel(&p[m*ldp], 4*ldp, &v[i], 4*dv, c, &out[m*dv+i], 4*dv)
			}
		}
		for r := m; r < m+q; r++ {
			if cnt[r] > c {
				onePart(pp, pv, po, ldp, dv, r, c, cnt[r], 0)
			}
		}
		m += q
	}
	for m+4 <= M {
		tiles(4, 64, attnPVTile)
	}
	if m+2 <= M && dv%128 == 0 {
		tiles(2, 128, attnPVTile2)
	}
	if m < M {
		attnPVAVX512(p[m*ldp:], ldp, cnt[m:], v, dv, out[m*dv:])
	}
	archsimd.ClearAVXUpperBits()
}

func fold16(a archsimd.Float32x16) f32x8 { return a.GetLo().Add(a.GetHi()) }

func attnScoresAVX512(q []float32, M, d int, k []float32, nk int, s []float32, lds int) {
	if d%16 != 0 {
		attnScoresGeneric(q, M, d, k, nk, s, lds)
		return
	}
	pq, pk, ps := ptr(q), ptr(k), ptr(s)
	nk4 := nk &^ 3
	for m := 0; m < M; m += 2 {
		q0 := unsafe.Add(pq, 4*m*d)
		q1 := q0
		var s1 unsafe.Pointer
		if m+1 < M {
			q1 = unsafe.Add(q0, 4*d)
			s1 = unsafe.Add(ps, 4*(m+1)*lds)
		}
		s0 := unsafe.Add(ps, 4*m*lds)
		for j := 0; j < nk4; j += 4 {
			k0 := unsafe.Add(pk, 4*j*d)
			k1, k2, k3 := unsafe.Add(k0, 4*d), unsafe.Add(k0, 8*d), unsafe.Add(k0, 12*d)
			var a00, a01, a02, a03, a10, a11, a12, a13 archsimd.Float32x16
			for i := 0; i < d; i += 16 {
				x0, x1 := ldF32x16(q0, i), ldF32x16(q1, i)
				y := ldF32x16(k0, i)
				a00, a10 = a00.Add(x0.Mul(y)), a10.Add(x1.Mul(y))
				y = ldF32x16(k1, i)
				a01, a11 = a01.Add(x0.Mul(y)), a11.Add(x1.Mul(y))
				y = ldF32x16(k2, i)
				a02, a12 = a02.Add(x0.Mul(y)), a12.Add(x1.Mul(y))
				y = ldF32x16(k3, i)
				a03, a13 = a03.Add(x0.Mul(y)), a13.Add(x1.Mul(y))
			}
			r := reduce8(fold16(a00), fold16(a10), fold16(a01), fold16(a11), fold16(a02), fold16(a12), fold16(a03), fold16(a13))
			var p1 unsafe.Pointer
			if s1 != nil {
				p1 = unsafe.Add(s1, 4*j)
			}
			store2x4(r, unsafe.Add(s0, 4*j), p1)
		}
		for j := nk4; j < nk; j++ {
			kj := unsafe.Add(pk, 4*j*d)
			var a0, a1 archsimd.Float32x16
			for i := 0; i < d; i += 16 {
				y := ldF32x16(kj, i)
				a0, a1 = a0.Add(ldF32x16(q0, i).Mul(y)), a1.Add(ldF32x16(q1, i).Mul(y))
			}
			r := reduce8(fold16(a0), fold16(a1), fold16(a0), fold16(a1), fold16(a0), fold16(a1), fold16(a0), fold16(a1))
			u := r.AsUint32x8()
			*(*uint32)(unsafe.Add(s0, 4*j)) = u.GetLo().GetElem(0)
			if s1 != nil {
				*(*uint32)(unsafe.Add(s1, 4*j)) = u.GetHi().GetElem(0)
			}
		}
	}
	archsimd.ClearAVXUpperBits()
}

func attnScoresAVX2(q []float32, M, d int, k []float32, nk int, s []float32, lds int) {
	if d%16 != 0 {
		attnScoresGeneric(q, M, d, k, nk, s, lds)
		return
	}
	pq, pk, ps := ptr(q), ptr(k), ptr(s)
	nk4 := nk &^ 3
	// pair2x2 sums the products of two queries and two keys, lanes 0-7 and
	// 8-15 of each in two vectors, and folds them (lane l + lane l+8).
	pair2x2 := func(q0, q1, k0, k1 unsafe.Pointer) (f32x8, f32x8, f32x8, f32x8) {
		var a00, b00, a01, b01, a10, b10, a11, b11 f32x8
		for i := 0; i < d; i += 16 {
			x0, x1 := ldF32(q0, i), ldF32(q1, i)
			y0, y1 := ldF32(k0, i), ldF32(k1, i)
			a00, a01 = a00.Add(x0.Mul(y0)), a01.Add(x0.Mul(y1))
			a10, a11 = a10.Add(x1.Mul(y0)), a11.Add(x1.Mul(y1))
			x0, x1 = ldF32(q0, i+8), ldF32(q1, i+8)
			y0, y1 = ldF32(k0, i+8), ldF32(k1, i+8)
			b00, b01 = b00.Add(x0.Mul(y0)), b01.Add(x0.Mul(y1))
			b10, b11 = b10.Add(x1.Mul(y0)), b11.Add(x1.Mul(y1))
		}
		return a00.Add(b00), a10.Add(b10), a01.Add(b01), a11.Add(b11)
	}
	for m := 0; m < M; m += 2 {
		q0 := unsafe.Add(pq, 4*m*d)
		q1 := q0
		var s1 unsafe.Pointer
		if m+1 < M {
			q1 = unsafe.Add(q0, 4*d)
			s1 = unsafe.Add(ps, 4*(m+1)*lds)
		}
		s0 := unsafe.Add(ps, 4*m*lds)
		for j := 0; j < nk4; j += 4 {
			k0 := unsafe.Add(pk, 4*j*d)
			v0, v1, v2, v3 := pair2x2(q0, q1, k0, unsafe.Add(k0, 4*d))
			v4, v5, v6, v7 := pair2x2(q0, q1, unsafe.Add(k0, 8*d), unsafe.Add(k0, 12*d))
			var p1 unsafe.Pointer
			if s1 != nil {
				p1 = unsafe.Add(s1, 4*j)
			}
			store2x4(reduce8(v0, v1, v2, v3, v4, v5, v6, v7), unsafe.Add(s0, 4*j), p1)
		}
		for j := nk4; j < nk; j++ {
			kj := unsafe.Add(pk, 4*j*d)
			v0, v1, _, _ := pair2x2(q0, q1, kj, kj)
			u := reduce8(v0, v1, v0, v1, v0, v1, v0, v1).AsUint32x8()
			*(*uint32)(unsafe.Add(s0, 4*j)) = u.GetLo().GetElem(0)
			if s1 != nil {
				*(*uint32)(unsafe.Add(s1, 4*j)) = u.GetHi().GetElem(0)
			}
		}
	}
	archsimd.ClearAVXUpperBits()
}

func attnPVAVX512(p []float32, ldp int, cnt []int, v []float32, dv int, out []float32) {
	if dv%16 != 0 {
		attnPVGeneric(p, ldp, cnt, v, dv, out)
		return
	}
	pp, pv, po := ptr(p), ptr(v), ptr(out)
	M := len(cnt)
	// one adds rows [j0, j1) of query m: 64 elements at a time (four
	// independent chains), then 16.
	one := func(m, j0, j1 int) {
		y := unsafe.Add(po, 4*m*dv)
		pm := unsafe.Add(pp, 4*m*ldp)
		i := 0
		for ; i+64 <= dv; i += 64 {
			a, b, c, d := ldF32x16(y, i), ldF32x16(y, i+16), ldF32x16(y, i+32), ldF32x16(y, i+48)
			for j := j0; j < j1; j++ {
				w := archsimd.BroadcastFloat32x16(*(*float32)(unsafe.Add(pm, 4*j)))
				r := unsafe.Add(pv, 4*(j*dv+i))
				a, b = a.Add(w.Mul(ldF32x16(r, 0))), b.Add(w.Mul(ldF32x16(r, 16)))
				c, d = c.Add(w.Mul(ldF32x16(r, 32))), d.Add(w.Mul(ldF32x16(r, 48)))
			}
			a.Store((*[16]float32)(unsafe.Add(y, 4*i)))
			b.Store((*[16]float32)(unsafe.Add(y, 4*i+64)))
			c.Store((*[16]float32)(unsafe.Add(y, 4*i+128)))
			d.Store((*[16]float32)(unsafe.Add(y, 4*i+192)))
		}
		for ; i < dv; i += 16 {
			acc := ldF32x16(y, i)
			for j := j0; j < j1; j++ {
				acc = acc.Add(archsimd.BroadcastFloat32x16(*(*float32)(unsafe.Add(pm, 4*j))).Mul(ldF32x16(pv, j*dv+i)))
			}
			acc.Store((*[16]float32)(unsafe.Add(y, 4*i)))
		}
	}
	// two adds rows [0, c) of queries m and m+1, 64 elements at a time.
	two := func(m, c int) int {
		y0 := unsafe.Add(po, 4*m*dv)
		y1 := unsafe.Add(y0, 4*dv)
		p0 := unsafe.Add(pp, 4*m*ldp)
		p1 := unsafe.Add(p0, 4*ldp)
		i := 0
		for ; i+64 <= dv; i += 64 {
			a0, b0, c0, d0 := ldF32x16(y0, i), ldF32x16(y0, i+16), ldF32x16(y0, i+32), ldF32x16(y0, i+48)
			a1, b1, c1, d1 := ldF32x16(y1, i), ldF32x16(y1, i+16), ldF32x16(y1, i+32), ldF32x16(y1, i+48)
			for j := 0; j < c; j++ {
				r := unsafe.Add(pv, 4*(j*dv+i))
				va, vb, vc, vd := ldF32x16(r, 0), ldF32x16(r, 16), ldF32x16(r, 32), ldF32x16(r, 48)
				w := archsimd.BroadcastFloat32x16(*(*float32)(unsafe.Add(p0, 4*j)))
				a0, b0, c0, d0 = a0.Add(w.Mul(va)), b0.Add(w.Mul(vb)), c0.Add(w.Mul(vc)), d0.Add(w.Mul(vd))
				w = archsimd.BroadcastFloat32x16(*(*float32)(unsafe.Add(p1, 4*j)))
				a1, b1, c1, d1 = a1.Add(w.Mul(va)), b1.Add(w.Mul(vb)), c1.Add(w.Mul(vc)), d1.Add(w.Mul(vd))
			}
			a0.Store((*[16]float32)(unsafe.Add(y0, 4*i)))
			b0.Store((*[16]float32)(unsafe.Add(y0, 4*i+64)))
			c0.Store((*[16]float32)(unsafe.Add(y0, 4*i+128)))
			d0.Store((*[16]float32)(unsafe.Add(y0, 4*i+192)))
			a1.Store((*[16]float32)(unsafe.Add(y1, 4*i)))
			b1.Store((*[16]float32)(unsafe.Add(y1, 4*i+64)))
			c1.Store((*[16]float32)(unsafe.Add(y1, 4*i+128)))
			d1.Store((*[16]float32)(unsafe.Add(y1, 4*i+192)))
		}
		return i // the elements done; the caller finishes the rest per query
	}
	m := 0
	for ; m+4 <= M; m += 4 {
		c := min(cnt[m], cnt[m+1], cnt[m+2], cnt[m+3])
		y0 := unsafe.Add(po, 4*m*dv)
		y1, y2, y3 := unsafe.Add(y0, 4*dv), unsafe.Add(y0, 8*dv), unsafe.Add(y0, 12*dv)
		p0 := unsafe.Add(pp, 4*m*ldp)
		p1, p2, p3 := unsafe.Add(p0, 4*ldp), unsafe.Add(p0, 8*ldp), unsafe.Add(p0, 12*ldp)
		i := 0
		for ; i+32 <= dv; i += 32 {
			a0, b0 := ldF32x16(y0, i), ldF32x16(y0, i+16)
			a1, b1 := ldF32x16(y1, i), ldF32x16(y1, i+16)
			a2, b2 := ldF32x16(y2, i), ldF32x16(y2, i+16)
			a3, b3 := ldF32x16(y3, i), ldF32x16(y3, i+16)
			for j := 0; j < c; j++ {
				va, vb := ldF32x16(pv, j*dv+i), ldF32x16(pv, j*dv+i+16)
				w := archsimd.BroadcastFloat32x16(*(*float32)(unsafe.Add(p0, 4*j)))
				a0, b0 = a0.Add(w.Mul(va)), b0.Add(w.Mul(vb))
				w = archsimd.BroadcastFloat32x16(*(*float32)(unsafe.Add(p1, 4*j)))
				a1, b1 = a1.Add(w.Mul(va)), b1.Add(w.Mul(vb))
				w = archsimd.BroadcastFloat32x16(*(*float32)(unsafe.Add(p2, 4*j)))
				a2, b2 = a2.Add(w.Mul(va)), b2.Add(w.Mul(vb))
				w = archsimd.BroadcastFloat32x16(*(*float32)(unsafe.Add(p3, 4*j)))
				a3, b3 = a3.Add(w.Mul(va)), b3.Add(w.Mul(vb))
			}
			a0.Store((*[16]float32)(unsafe.Add(y0, 4*i)))
			b0.Store((*[16]float32)(unsafe.Add(y0, 4*i+64)))
			a1.Store((*[16]float32)(unsafe.Add(y1, 4*i)))
			b1.Store((*[16]float32)(unsafe.Add(y1, 4*i+64)))
			a2.Store((*[16]float32)(unsafe.Add(y2, 4*i)))
			b2.Store((*[16]float32)(unsafe.Add(y2, 4*i+64)))
			a3.Store((*[16]float32)(unsafe.Add(y3, 4*i)))
			b3.Store((*[16]float32)(unsafe.Add(y3, 4*i+64)))
		}
		for ; i < dv; i += 16 {
			a0, a1, a2, a3 := ldF32x16(y0, i), ldF32x16(y1, i), ldF32x16(y2, i), ldF32x16(y3, i)
			for j := 0; j < c; j++ {
				va := ldF32x16(pv, j*dv+i)
				a0 = a0.Add(archsimd.BroadcastFloat32x16(*(*float32)(unsafe.Add(p0, 4*j))).Mul(va))
				a1 = a1.Add(archsimd.BroadcastFloat32x16(*(*float32)(unsafe.Add(p1, 4*j))).Mul(va))
				a2 = a2.Add(archsimd.BroadcastFloat32x16(*(*float32)(unsafe.Add(p2, 4*j))).Mul(va))
				a3 = a3.Add(archsimd.BroadcastFloat32x16(*(*float32)(unsafe.Add(p3, 4*j))).Mul(va))
			}
			a0.Store((*[16]float32)(unsafe.Add(y0, 4*i)))
			a1.Store((*[16]float32)(unsafe.Add(y1, 4*i)))
			a2.Store((*[16]float32)(unsafe.Add(y2, 4*i)))
			a3.Store((*[16]float32)(unsafe.Add(y3, 4*i)))
		}
		// Each query's rows past the common count, continuing in order.
		for r := m; r < m+4; r++ {
			if cnt[r] > c {
				one(r, c, cnt[r])
			}
		}
	}
	for ; m+2 <= M; m += 2 {
		c := min(cnt[m], cnt[m+1])
		if done := two(m, c); done < dv {
			// The last elements of both (dv not a multiple of 64): one
			// query at a time over [0, c), which is the same order.
			for r := m; r < m+2; r++ {
				onePart(pp, pv, po, ldp, dv, r, 0, c, done)
			}
		}
		for r := m; r < m+2; r++ {
			if cnt[r] > c {
				one(r, c, cnt[r])
			}
		}
	}
	for ; m < M; m++ {
		one(m, 0, cnt[m])
	}
	archsimd.ClearAVXUpperBits()
}

// onePart adds rows [j0, j1) of query m to its elements from i0 on, 16 at
// a time (AVX-512).
func onePart(pp, pv, po unsafe.Pointer, ldp, dv, m, j0, j1, i0 int) {
	y := unsafe.Add(po, 4*m*dv)
	pm := unsafe.Add(pp, 4*m*ldp)
	for i := i0; i < dv; i += 16 {
		acc := ldF32x16(y, i)
		for j := j0; j < j1; j++ {
			acc = acc.Add(archsimd.BroadcastFloat32x16(*(*float32)(unsafe.Add(pm, 4*j))).Mul(ldF32x16(pv, j*dv+i)))
		}
		acc.Store((*[16]float32)(unsafe.Add(y, 4*i)))
	}
}

func attnPVAVX2(p []float32, ldp int, cnt []int, v []float32, dv int, out []float32) {
	if dv%16 != 0 {
		attnPVGeneric(p, ldp, cnt, v, dv, out)
		return
	}
	pp, pv, po := ptr(p), ptr(v), ptr(out)
	M := len(cnt)
	one := func(m, j0, j1 int) {
		y := unsafe.Add(po, 4*m*dv)
		pm := unsafe.Add(pp, 4*m*ldp)
		i := 0
		for ; i+32 <= dv; i += 32 {
			a, b, c, d := ldF32(y, i), ldF32(y, i+8), ldF32(y, i+16), ldF32(y, i+24)
			for j := j0; j < j1; j++ {
				w := archsimd.BroadcastFloat32x8(*(*float32)(unsafe.Add(pm, 4*j)))
				r := unsafe.Add(pv, 4*(j*dv+i))
				a, b = a.Add(w.Mul(ldF32(r, 0))), b.Add(w.Mul(ldF32(r, 8)))
				c, d = c.Add(w.Mul(ldF32(r, 16))), d.Add(w.Mul(ldF32(r, 24)))
			}
			stF32(a, y, i)
			stF32(b, y, i+8)
			stF32(c, y, i+16)
			stF32(d, y, i+24)
		}
		for ; i < dv; i += 16 {
			a, b := ldF32(y, i), ldF32(y, i+8)
			for j := j0; j < j1; j++ {
				w := archsimd.BroadcastFloat32x8(*(*float32)(unsafe.Add(pm, 4*j)))
				a, b = a.Add(w.Mul(ldF32(pv, j*dv+i))), b.Add(w.Mul(ldF32(pv, j*dv+i+8)))
			}
			stF32(a, y, i)
			stF32(b, y, i+8)
		}
	}
	m := 0
	for ; m+4 <= M; m += 4 {
		c := min(cnt[m], cnt[m+1], cnt[m+2], cnt[m+3])
		y0 := unsafe.Add(po, 4*m*dv)
		y1, y2, y3 := unsafe.Add(y0, 4*dv), unsafe.Add(y0, 8*dv), unsafe.Add(y0, 12*dv)
		p0 := unsafe.Add(pp, 4*m*ldp)
		p1, p2, p3 := unsafe.Add(p0, 4*ldp), unsafe.Add(p0, 8*ldp), unsafe.Add(p0, 12*ldp)
		for i := 0; i < dv; i += 16 {
			a0, b0 := ldF32(y0, i), ldF32(y0, i+8)
			a1, b1 := ldF32(y1, i), ldF32(y1, i+8)
			a2, b2 := ldF32(y2, i), ldF32(y2, i+8)
			a3, b3 := ldF32(y3, i), ldF32(y3, i+8)
			for j := 0; j < c; j++ {
				va, vb := ldF32(pv, j*dv+i), ldF32(pv, j*dv+i+8)
				w := archsimd.BroadcastFloat32x8(*(*float32)(unsafe.Add(p0, 4*j)))
				a0, b0 = a0.Add(w.Mul(va)), b0.Add(w.Mul(vb))
				w = archsimd.BroadcastFloat32x8(*(*float32)(unsafe.Add(p1, 4*j)))
				a1, b1 = a1.Add(w.Mul(va)), b1.Add(w.Mul(vb))
				w = archsimd.BroadcastFloat32x8(*(*float32)(unsafe.Add(p2, 4*j)))
				a2, b2 = a2.Add(w.Mul(va)), b2.Add(w.Mul(vb))
				w = archsimd.BroadcastFloat32x8(*(*float32)(unsafe.Add(p3, 4*j)))
				a3, b3 = a3.Add(w.Mul(va)), b3.Add(w.Mul(vb))
			}
			stF32(a0, y0, i)
			stF32(b0, y0, i+8)
			stF32(a1, y1, i)
			stF32(b1, y1, i+8)
			stF32(a2, y2, i)
			stF32(b2, y2, i+8)
			stF32(a3, y3, i)
			stF32(b3, y3, i+8)
		}
		for r := m; r < m+4; r++ {
			if cnt[r] > c {
				one(r, c, cnt[r])
			}
		}
	}
	for ; m < M; m++ {
		one(m, 0, cnt[m])
	}
	archsimd.ClearAVXUpperBits()
}

// expSumSIMD is expSumGeneric with 8 lanes: the maximum with VMAXPS (lane
// by lane as the generic comparison; the maximum is exact, so the order of
// the final reduction does not matter), the exponential with expx8 (as
// expf), the sums in two float64x4 vectors (lanes 0-3 and 4-7).
func expSumSIMD(x []float32) (float32, float64) {
	n := len(x)
	n8 := n &^ 7
	if n8 == 0 {
		return expSumGeneric(x)
	}
	px := ptr(x)
	mv := archsimd.BroadcastFloat32x8(float32(math.Inf(-1)))
	for i := 0; i < n8; i += 8 {
		mv = ldF32(px, i).Max(mv)
	}
	m4 := mv.GetLo().Max(mv.GetHi())
	m4 = m4.Max(m4.SelectFromPair(2, 3, 2, 3, m4))
	m4 = m4.Max(m4.SelectFromPair(1, 1, 1, 1, m4))
	mb := m4.AsUint32x4().GetElem(0)
	archsimd.ClearAVXUpperBits()
	for _, v := range x[n8:] {
		if v > math.Float32frombits(mb) {
			mb = math.Float32bits(v)
		}
	}
	mv = archsimd.BroadcastUint32x8(mb).AsFloat32x8()
	var lo, hi archsimd.Float64x4
	for i := 0; i < n8; i += 8 {
		e := expx8(ldF32(px, i).Sub(mv))
		stF32(e, px, i)
		lo, hi = lo.Add(e.GetLo().ConvertToFloat64()), hi.Add(e.GetHi().ConvertToFloat64())
	}
	s := lo.Add(hi).AsUint64x4() // [a0+a4 a1+a5 a2+a6 a3+a7]
	s0, s1, s2, s3 := s.GetLo().GetElem(0), s.GetLo().GetElem(1), s.GetHi().GetElem(0), s.GetHi().GetElem(1)
	archsimd.ClearAVXUpperBits()
	m := math.Float32frombits(mb)
	sum := (math.Float64frombits(s0) + math.Float64frombits(s2)) + (math.Float64frombits(s1) + math.Float64frombits(s3))
	for i := n8; i < n; i++ {
		x[i] = expf(x[i] - m)
		sum += float64(x[i])
	}
	return m, sum
}
