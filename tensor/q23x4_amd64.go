//go:build goexperiment.simd && amd64

package tensor

import (
	"simd/archsimd"
	"unsafe"
)

// The four-vector Q2_K and Q3_K kernels (batches: prefill, and decoding
// several sequences at once). Each block of a row is decoded once for four
// activation vectors, where the single-vector kernels decode it once per
// vector; the integer sums are the single-vector chunk kernels' for each
// vector and the float steps are kFinish4's / kFinish4d's per vector, so
// every result is bit for bit dotQ2_KAVX512's / dotQ3_KAVX512's
// (TestKernelVariantsBitExact).

// k4Acc holds a group of four rows' block sums for four vectors: [vector][row].
type k4Acc [4][4][kChunk]archsimd.Int32x16

// dot4Q3_KAVX512 is dotQ3_KAVX512 for activation vectors j0..j0+3.
func dot4Q3_KAVX512(w []byte, nrows int, a *act, j0 int, out []float32, ostride int) {
	nb := a.cols / qkK
	rb := nb * bytesQ3_K
	w = w[:nrows*rb]
	out = out[:3*ostride+nrows]
	e0 := j0 * a.cols
	qs := a.qs[e0 : e0+4*a.cols]
	bsums := a.bsums[e0/16 : (e0+4*a.cols)/16]
	ds := a.d[e0/qkK : (e0+4*a.cols)/qkK]
	pw, py, pbs := ptr(w), ptr(qs), ptr(bsums)
	// Bytes from one vector's quants (block sums) to the next's.
	st, sb := a.cols, a.cols/16*2
	var accs k4Acc
	for r := 0; r < nrows; r += 4 {
		// Rows past the end repeat the last row; their results are dropped.
		ps := [4]unsafe.Pointer{unsafe.Add(pw, r*rb), unsafe.Add(pw, min(r+1, nrows-1)*rb),
			unsafe.Add(pw, min(r+2, nrows-1)*rb), unsafe.Add(pw, min(r+3, nrows-1)*rb)}
		var sums [4]f32x8
		for b0 := 0; b0 < nb; b0 += kChunk {
			n := min(kChunk, nb-b0)
			o, y, bs := b0*bytesQ3_K, unsafe.Add(py, b0*qkK), unsafe.Add(pbs, 32*b0)
			q3KChunk512x4(unsafe.Add(ps[0], o), y, bs, st, sb, n, &accs, 0)
			q3KChunk512x4(unsafe.Add(ps[1], o), y, bs, st, sb, n, &accs, 1)
			q3KChunk512x4(unsafe.Add(ps[2], o), y, bs, st, sb, n, &accs, 2)
			q3KChunk512x4(unsafe.Add(ps[3], o), y, bs, st, sb, n, &accs, 3)
			for j := 0; j < 4; j++ {
				kFinish4d(&accs[j], &ps, o+108, bytesQ3_K, ds[j*nb+b0:j*nb+b0+n], &sums[j])
			}
		}
		for j := 0; j < 4; j++ {
			storeRows4(sums[j].GetLo(), out[j*ostride:], r, nrows)
		}
	}
	// Return with the upper state clean (see doc.go): the caller's Go
	// code may run legacy-SSE instructions next.
	archsimd.ClearAVXUpperBits()
}

// q3KChunk512x4 is q3KChunk512 for four activation vectors (quants st
// bytes apart, block sums sb bytes apart): block i's integer dot with
// vector j goes to acc[j][row][i].
func q3KChunk512x4(p, y, bs unsafe.Pointer, st, sb, n int, acc *k4Acc, row int) {
	m3 := archsimd.BroadcastUint8x64(3)
	m4 := archsimd.BroadcastUint8x64(4)
	c0, c1 := archsimd.LoadUint16x32(&q23Shift[0]), archsimd.LoadUint16x32(&q23Shift[1])
	for i := 0; i < n; i++ {
		sc16 := q3KScales(unsafe.Add(p, 96)).ExtendToInt16()
		sc := archsimd.Int16x32{}.SetLo(sc16)
		s0 := sc.Permute(archsimd.LoadUint16x32(&q6Idx512[0]))
		s1 := sc.Permute(archsimd.LoadUint16x32(&q6Idx512[1]))
		s2 := sc.Permute(archsimd.LoadUint16x32(&q6Idx512[2]))
		s3 := sc.Permute(archsimd.LoadUint16x32(&q6Idx512[3]))
		hm := dup32(p)
		q0, q1 := dup32(unsafe.Add(p, 32)), dup32(unsafe.Add(p, 64))
		// The quants are u-4 with u = q | h<<2 in 0..7.
		u0 := q0.ShiftRight(c0).AsUint8x64().And(m3).Or(hm.ShiftRight(archsimd.LoadUint16x32(&q3Shift[0])).ShiftAllLeft(2).AsUint8x64().And(m4))
		u1 := q0.ShiftRight(c1).AsUint8x64().And(m3).Or(hm.ShiftRight(archsimd.LoadUint16x32(&q3Shift[1])).ShiftAllLeft(2).AsUint8x64().And(m4))
		u2 := q1.ShiftRight(c0).AsUint8x64().And(m3).Or(hm.ShiftRight(archsimd.LoadUint16x32(&q3Shift[2])).ShiftAllLeft(2).AsUint8x64().And(m4))
		u3 := q1.ShiftRight(c1).AsUint8x64().And(m3).Or(hm.ShiftRight(archsimd.LoadUint16x32(&q3Shift[3])).ShiftAllLeft(2).AsUint8x64().And(m4))
		yj, bj := y, bs
		for j := 0; j < 4; j++ {
			v := u0.DotProductPairsSaturated(ldI8x64(yj, 0)).DotProductPairs(s0)
			v = v.Add(u1.DotProductPairsSaturated(ldI8x64(yj, 64)).DotProductPairs(s1))
			v = v.Add(u2.DotProductPairsSaturated(ldI8x64(yj, 128)).DotProductPairs(s2))
			v = v.Add(u3.DotProductPairsSaturated(ldI8x64(yj, 192)).DotProductPairs(s3))
			// The -4 offset: 4 * sum of scale * block sum.
			bias := archsimd.LoadInt16x16((*[16]int16)(bj)).DotProductPairs(sc16).ShiftAllLeft(2)
			acc[j][row][i] = v.Sub(archsimd.Int32x16{}.SetLo(bias))
			yj, bj = unsafe.Add(yj, st), unsafe.Add(bj, sb)
		}
		p, y, bs = unsafe.Add(p, bytesQ3_K), unsafe.Add(y, qkK), unsafe.Add(bs, 32)
	}
}

// dot4Q2_KAVX512 is dotQ2_KAVX512 for activation vectors j0..j0+3.
func dot4Q2_KAVX512(w []byte, nrows int, a *act, j0 int, out []float32, ostride int) {
	nb := a.cols / qkK
	rb := nb * bytesQ2_K
	w = w[:nrows*rb]
	out = out[:3*ostride+nrows]
	e0 := j0 * a.cols
	qs := a.qs[e0 : e0+4*a.cols]
	bsums := a.bsums[e0/16 : (e0+4*a.cols)/16]
	ds := a.d[e0/qkK : (e0+4*a.cols)/qkK]
	pw, py, pbs := ptr(w), ptr(qs), ptr(bsums)
	st, sb := a.cols, a.cols/16*2
	var accs k4Acc
	var ms [4][4][kChunk]archsimd.Int32x4
	var dms [kChunk][4]uint32
	for r := 0; r < nrows; r += 4 {
		// Rows past the end repeat the last row; their results are dropped.
		ps := [4]unsafe.Pointer{unsafe.Add(pw, r*rb), unsafe.Add(pw, min(r+1, nrows-1)*rb),
			unsafe.Add(pw, min(r+2, nrows-1)*rb), unsafe.Add(pw, min(r+3, nrows-1)*rb)}
		var sums [4]f32x8
		for b0 := 0; b0 < nb; b0 += kChunk {
			n := min(kChunk, nb-b0)
			o, y, bs := b0*bytesQ2_K, unsafe.Add(py, b0*qkK), unsafe.Add(pbs, 32*b0)
			q2KChunk512x4(unsafe.Add(ps[0], o), y, bs, st, sb, n, &accs, &ms, 0, unsafe.Pointer(&dms[0][0]))
			q2KChunk512x4(unsafe.Add(ps[1], o), y, bs, st, sb, n, &accs, &ms, 1, unsafe.Pointer(&dms[0][1]))
			q2KChunk512x4(unsafe.Add(ps[2], o), y, bs, st, sb, n, &accs, &ms, 2, unsafe.Pointer(&dms[0][2]))
			q2KChunk512x4(unsafe.Add(ps[3], o), y, bs, st, sb, n, &accs, &ms, 3, unsafe.Pointer(&dms[0][3]))
			for j := 0; j < 4; j++ {
				kFinish4(&accs[j], &ms[j], &dms, ds[j*nb+b0:j*nb+b0+n], &sums[j])
			}
		}
		for j := 0; j < 4; j++ {
			storeRows4(sums[j].GetLo(), out[j*ostride:], r, nrows)
		}
	}
	// Return with the upper state clean (see doc.go): the caller's Go
	// code may run legacy-SSE instructions next.
	archsimd.ClearAVXUpperBits()
}

// q2KChunk512x4 is q2KChunk512 for four activation vectors (quants st
// bytes apart, block sums sb bytes apart): block i's sums with vector j go
// to acc[j][row][i] and m[j][row][i]; its d and dmin to dm as there.
func q2KChunk512x4(p, y, bs unsafe.Pointer, st, sb, n int, acc *k4Acc, m *[4][4][kChunk]archsimd.Int32x4, row int, dm unsafe.Pointer) {
	m3 := archsimd.BroadcastUint8x64(3)
	m15 := archsimd.BroadcastInt16x16(15)
	c0, c1 := archsimd.LoadUint16x32(&q23Shift[0]), archsimd.LoadUint16x32(&q23Shift[1])
	for i := 0; i < n; i++ {
		// The 16 scale bytes as int16: scales in the low nibbles, mins
		// in the high ones (256-bit values: see doc.go on 128-bit ones).
		raw := archsimd.LoadUint8x16((*[16]uint8)(p)).ExtendToUint16().AsInt16x16()
		sc := archsimd.Int16x32{}.SetLo(raw.And(m15))
		s0 := sc.Permute(archsimd.LoadUint16x32(&q6Idx512[0]))
		s1 := sc.Permute(archsimd.LoadUint16x32(&q6Idx512[1]))
		s2 := sc.Permute(archsimd.LoadUint16x32(&q6Idx512[2]))
		s3 := sc.Permute(archsimd.LoadUint16x32(&q6Idx512[3]))
		h0, h1 := dup32(unsafe.Add(p, 16)), dup32(unsafe.Add(p, 48))
		u0 := h0.ShiftRight(c0).AsUint8x64().And(m3)
		u1 := h0.ShiftRight(c1).AsUint8x64().And(m3)
		u2 := h1.ShiftRight(c0).AsUint8x64().And(m3)
		u3 := h1.ShiftRight(c1).AsUint8x64().And(m3)
		mn16 := raw.ShiftAllRight(4)
		yj, bj := y, bs
		for j := 0; j < 4; j++ {
			v := u0.DotProductPairsSaturated(ldI8x64(yj, 0)).DotProductPairs(s0)
			v = v.Add(u1.DotProductPairsSaturated(ldI8x64(yj, 64)).DotProductPairs(s1))
			v = v.Add(u2.DotProductPairsSaturated(ldI8x64(yj, 128)).DotProductPairs(s2))
			v = v.Add(u3.DotProductPairsSaturated(ldI8x64(yj, 192)).DotProductPairs(s3))
			acc[j][row][i] = v
			mp := archsimd.LoadInt16x16((*[16]int16)(bj)).DotProductPairs(mn16)
			m[j][row][i] = mp.GetLo().Add(mp.GetHi())
			yj, bj = unsafe.Add(yj, st), unsafe.Add(bj, sb)
		}
		*(*uint32)(unsafe.Add(dm, 16*i)) = *(*uint32)(unsafe.Add(p, 80))
		p, y, bs = unsafe.Add(p, bytesQ2_K), unsafe.Add(y, qkK), unsafe.Add(bs, 32)
	}
}

// storeRows4 stores the lanes of v to out[r:r+4], dropping rows >= nrows,
// lane by lane through integer registers where the group is partial (see
// storeStreams4).
func storeRows4(v archsimd.Float32x4, out []float32, r, nrows int) {
	if r+4 <= nrows {
		v.Store((*[4]float32)(out[r : r+4]))
		return
	}
	u := v.AsUint32x4()
	o := unsafe.Slice((*uint32)(ptr(out)), len(out))[r:nrows]
	o[0] = u.GetElem(0)
	if len(o) > 1 {
		o[1] = u.GetElem(1)
	}
	if len(o) > 2 {
		o[2] = u.GetElem(2)
	}
}
