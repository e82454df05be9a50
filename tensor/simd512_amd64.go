//go:build goexperiment.simd && amd64

package tensor

import (
	"os"
	"simd/archsimd"
	"unsafe"
)

// AVX-512 variants of the hottest kernels (registered in simd_amd64.go):
// same integer sums, same float steps, fewer vector instructions than the
// AVX2 versions.

// k4Idx512[2p+h] broadcasts, per 128-bit lane, the Q4_K sub-block scale for
// chunk pair p and nibble half h (see init).
var k4Idx512 [4][64]int8

func init() {
	// For chunk pair p (chunks 2p, 2p+1) and nibble half h (0 low, 1 high):
	// lanes 0-1 (chunk 2p) use sub-block 4p+h, lanes 2-3 (chunk 2p+1) use
	// sub-block 4p+2+h.
	for p := 0; p < 2; p++ {
		for h := 0; h < 2; h++ {
			for i := 0; i < 64; i++ {
				j := 4*p + h
				if i >= 32 {
					j += 2
				}
				k4Idx512[2*p+h][i] = int8(2*j + i%2)
			}
		}
	}
}

// k4Byte512 is k4Idx512 for scales held as bytes (in each 64-bit lane):
// each int16 gets the scale byte and a zero high byte.
var k4Byte512 [4][64]int8

func init() {
	for i := range k4Byte512 {
		for j := 0; j < 64; j += 2 {
			k4Byte512[i][j] = k4Idx512[i][j] / 2
			k4Byte512[i][j+1] = -1
		}
	}
}

// q4KUnpack512 returns the four 64-element quant vectors of a Q4_K block's
// qs at q, in the qsP element order: (0..31, 64..95), (32..63, 96..127),
// (128..159, 192..223), (160..191, 224..255).
func q4KUnpack512(q unsafe.Pointer, mask archsimd.Uint8x64) (lo01, hi01, lo23, hi23 archsimd.Uint8x64) {
	q01 := archsimd.LoadUint8x64((*[64]uint8)(q))
	q23 := archsimd.LoadUint8x64((*[64]uint8)(unsafe.Add(q, 64)))
	lo01 = q01.And(mask)
	hi01 = q01.AsInt16x32().ShiftAllRight(4).AsUint8x64().And(mask)
	lo23 = q23.And(mask)
	hi23 = q23.AsInt16x32().ShiftAllRight(4).AsUint8x64().And(mask)
	return
}

// q4KDot512 returns the scaled integer dot of the unpacked block with the
// activation block at y (qsP order) as 16 int32 lanes.
func q4KDot512(lo01, hi01, lo23, hi23 archsimd.Uint8x64, s0, s1, s2, s3 archsimd.Int16x32, y unsafe.Pointer) archsimd.Int32x16 {
	acc := lo01.DotProductPairsSaturated(ldI8x64(y, 0)).DotProductPairs(s0)
	acc = acc.Add(hi01.DotProductPairsSaturated(ldI8x64(y, 64)).DotProductPairs(s1))
	acc = acc.Add(lo23.DotProductPairsSaturated(ldI8x64(y, 128)).DotProductPairs(s2))
	return acc.Add(hi23.DotProductPairsSaturated(ldI8x64(y, 192)).DotProductPairs(s3))
}

func ldI8x64(p unsafe.Pointer, off int) archsimd.Int8x64 {
	return archsimd.LoadInt8x64((*[64]int8)(unsafe.Add(p, off)))
}

// kChunk is the number of blocks per row that the four-row K-quant decode
// kernels multiply before their float steps (bounded stack buffers).
const kChunk = 16

// dotQ4_KAVX512 works on groups of four rows. Each row's blocks are read in
// order (a sequential stream for the prefetchers), keeping every block's
// integer sums as vectors; the integer sums are exact whatever the
// reduction order, so they are then reduced four rows at once, and the
// float steps of kAcc run on the four rows' lanes together (the same
// operations in the same order per row).
func dotQ4_KAVX512(w []byte, nrows int, a *act, e0 int, out []float32) {
	dotQ4_K512(w, nrows, a, e0, out, false)
}

// dotQ4_K512 is dotQ4_KAVX512 with the block loop in q4KChunkVNNI if vnni.
func dotQ4_K512(w []byte, nrows int, a *act, e0 int, out []float32, vnni bool) {
	nb := a.cols / qkK
	rb := nb * bytesQ4_K
	w = w[:nrows*rb]
	out = out[:nrows]
	qs := a.qsP[e0 : e0+a.cols]
	bsp := a.bsp[e0/32 : e0/32+nb*8]
	ds := a.d[e0/qkK : e0/qkK+nb]
	pw, py, pbs := ptr(w), ptr(qs), ptr(bsp)
	var accs [4][kChunk]archsimd.Int32x16
	var ms [4][kChunk]archsimd.Int32x4
	var dms [kChunk][4]uint32
	q, ls, gs := streamRows(nrows)
	for g := 0; g < q; g++ {
		ps := groupRows(pw, g, ls, gs, nrows, rb)
		// 256 bits, lanes 0-3 used: a zero Float32x4 is a legacy-SSE
		// MOVUPS from X15, here after the vector work of the last group.
		var sum8 f32x8
		for b0 := 0; b0 < nb; b0 += kChunk {
			n := min(kChunk, nb-b0)
			// Not a range over ps: copying the array reloads its pointers
			// with wide loads just after their stores (a store-forwarding
			// stall per group).
			o, y, bs := b0*bytesQ4_K, unsafe.Add(py, b0*qkK), unsafe.Add(pbs, 16*b0)
			q4KChunk(vnni, unsafe.Add(ps[0], o), y, bs, n, &accs[0], &ms[0], unsafe.Pointer(&dms[0][0]))
			q4KChunk(vnni, unsafe.Add(ps[1], o), y, bs, n, &accs[1], &ms[1], unsafe.Pointer(&dms[0][1]))
			q4KChunk(vnni, unsafe.Add(ps[2], o), y, bs, n, &accs[2], &ms[2], unsafe.Pointer(&dms[0][2]))
			q4KChunk(vnni, unsafe.Add(ps[3], o), y, bs, n, &accs[3], &ms[3], unsafe.Pointer(&dms[0][3]))
			kFinish4(&accs, &ms, &dms, ds[b0:b0+n], &sum8)
		}
		storeStreams4(sum8.GetLo(), out, g*gs, ls, nrows)
	}
	// Return with the upper state clean (see doc.go): the caller's Go
	// code may run legacy-SSE instructions next.
	archsimd.ClearAVXUpperBits()
}

// q4KChunk512 computes, for the n Q4_K blocks at p and the activation
// blocks at y (qsP order) with pair sums at bs, each block's scaled quant
// sums as 16 int32 lanes (acc) and its mins' dot with the pair sums as 4
// int32 lanes (m), and copies its fp16 d and dmin (one uint32) to dm, 16
// bytes apart (a row's column of kFinish4's dm). (A function of its own:
// the register allocator does better on a small loop.)
func q4KChunk512(p, y, bs unsafe.Pointer, n int, acc *[kChunk]archsimd.Int32x16, m *[kChunk]archsimd.Int32x4, dm unsafe.Pointer) {
	mask := archsimd.BroadcastUint8x64(0x0f)
	i0 := archsimd.LoadInt8x64(&k4Byte512[0])
	i1 := archsimd.LoadInt8x64(&k4Byte512[1])
	i2 := archsimd.LoadInt8x64(&k4Byte512[2])
	i3 := archsimd.LoadInt8x64(&k4Byte512[3])
	sA, kA := archsimd.LoadInt32x4(&q4KSA), archsimd.LoadInt32x4(&q4KKA)
	sC, kC := archsimd.LoadInt32x4(&q4KSC), archsimd.LoadInt32x4(&q4KKC)
	for i := range acc[:n] {
		// Written out in order (see q6KChunk512).
		x := q4KScalesVec(archsimd.LoadInt32x4((*[4]int32)(unsafe.Add(p, 4))), sA, kA, sC, kC)
		sc := x.AsInt64x2().Broadcast1To8().AsInt8x64()
		q := archsimd.LoadUint8x64((*[64]uint8)(unsafe.Add(p, 16)))
		v := q.And(mask).DotProductPairsSaturated(archsimd.LoadInt8x64((*[64]int8)(y))).DotProductPairs(sc.PermuteOrZeroGrouped(i0).AsInt16x32())
		v = v.Add(q.AsInt16x32().ShiftAllRight(4).AsUint8x64().And(mask).DotProductPairsSaturated(archsimd.LoadInt8x64((*[64]int8)(unsafe.Add(y, 64)))).DotProductPairs(sc.PermuteOrZeroGrouped(i1).AsInt16x32()))
		q = archsimd.LoadUint8x64((*[64]uint8)(unsafe.Add(p, 80)))
		v = v.Add(q.And(mask).DotProductPairsSaturated(archsimd.LoadInt8x64((*[64]int8)(unsafe.Add(y, 128)))).DotProductPairs(sc.PermuteOrZeroGrouped(i2).AsInt16x32()))
		v = v.Add(q.AsInt16x32().ShiftAllRight(4).AsUint8x64().And(mask).DotProductPairsSaturated(archsimd.LoadInt8x64((*[64]int8)(unsafe.Add(y, 192)))).DotProductPairs(sc.PermuteOrZeroGrouped(i3).AsInt16x32()))
		acc[i] = v
		mins := x.PermuteScalars(2, 3, 2, 3).AsUint8x16().ExtendLo8ToUint16().AsInt16x8()
		m[i] = mins.DotProductPairs(archsimd.LoadInt16x8((*[8]int16)(bs)))
		*(*uint32)(unsafe.Add(dm, 16*i)) = *(*uint32)(p)
		p, y, bs = unsafe.Add(p, bytesQ4_K), unsafe.Add(y, qkK), unsafe.Add(bs, 16)
	}
}

// q4KScales64 is q4KScalesU64 in 64-bit steps: the low 6 bits of bytes 0-7
// are scales 0-3 and mins 0-3; scales and mins 4-7 are the nibbles of bytes
// 8-11 with the top 2 bits of bytes 0-7 above them.
func q4KScales64(s unsafe.Pointer) (sc, mn uint64) {
	a := *(*uint64)(s)
	c := uint64(*(*uint32)(unsafe.Add(s, 8)))
	lo := a & 0x3f3f3f3f3f3f3f3f
	hi := (c|c<<28)&0x0f0f0f0f0f0f0f0f | a>>2&0x3030303030303030
	return lo&0xffffffff | hi<<32, lo>>32 | hi&0xffffffff00000000
}

// q4KScalesVec is q4KScalesU64 in a vector: from the scales field's
// words v = (a0, a1, c, -), scales 0-7 in bytes 0-7 and mins 0-7 in bytes
// 8-15 of the result. Words 0 and 2 are a0 and a1's low 6 bits; words 1 and
// 3 are the nibbles of c (low, high) with the top 2 bits of a0 and a1's
// bytes above them. (Arithmetic shifts: the bits they shift in are masked.)
func q4KScalesVec(v, sA, kA, sC, kC archsimd.Int32x4) archsimd.Int32x4 {
	t := v.PermuteScalars(2, 2, 2, 2).ShiftRight(sC).And(kC)
	return v.PermuteScalars(0, 0, 1, 1).ShiftRight(sA).And(kA).Or(t)
}

// Shifts and masks of q4KScalesVec.
var (
	q4KSA = [4]int32{0, 2, 0, 2}
	q4KKA = [4]int32{0x3f3f3f3f, 0x30303030, 0x3f3f3f3f, 0x30303030}
	q4KSC = [4]int32{0, 0, 0, 4}
	q4KKC = [4]int32{0, 0x0f0f0f0f, 0, 0x0f0f0f0f}
)

// kFinish4 adds the contributions of len(ds) blocks of four rows to sum
// (lanes 0-3), as
// kAcc does per row: the integer sums acc (16 lanes) and mins m (4 lanes)
// are reduced per row, and the float steps use the activation scales ds and
// the rows' fp16 d and dmin, dm[i][row] (copied by q4KChunk512: no row
// pointers to keep in registers). Blocks go in pairs, as in kFinish4d: a
// pair's products in the low and high lanes of 8, its d and dmin converted
// in one 16-lane f16x16 (the adds and subtractions to sum stay in block
// order).
func kFinish4(acc *[4][kChunk]archsimd.Int32x16, m *[4][kChunk]archsimd.Int32x4, dm *[kChunk][4]uint32, ds []float32, sum *f32x8) {
	sum4 := sum.GetLo()
	ds = ds[:min(len(ds), kChunk)]
	dup := archsimd.LoadUint32x8(&dupPairIdx)
	deint := archsimd.LoadUint16x16(&deint16Idx)
	i := 0
	for ; i+2 <= len(ds); i += 2 {
		isum := transposeSum4x2(&acc[0], &acc[1], &acc[2], &acc[3], i)
		imin := ldI32x8(&m[0][i]).AddPairsGrouped(ldI32x8(&m[1][i])).AddPairsGrouped(ldI32x8(&m[2][i]).AddPairsGrouped(ldI32x8(&m[3][i])))
		// d, then dmin, of blocks i (rows 0-3) and i+1 (rows 0-3).
		h := archsimd.LoadUint16x16((*[16]uint16)(unsafe.Pointer(&dm[i])))
		f := f16x16(h.Permute(deint).ExtendToUint32())
		dy := archsimd.BroadcastUint64x4(*(*uint64)(unsafe.Pointer(&ds[i]))).AsFloat32x8().Permute(dup)
		t := dy.Mul(f.GetLo()).Mul(isum.ConvertToFloat32())
		u := dy.Mul(f.GetHi()).Mul(imin.ConvertToFloat32())
		sum4 = sum4.Add(t.GetLo())
		sum4 = sum4.Sub(u.GetLo())
		sum4 = sum4.Add(t.GetHi())
		sum4 = sum4.Sub(u.GetHi())
	}
	if i < len(ds) {
		isum := transposeSum4(acc[0][i], acc[1][i], acc[2][i], acc[3][i])
		imin := reduce4x4(m[0][i], m[1][i], m[2][i], m[3][i])
		h := archsimd.LoadUint16x8((*[8]uint16)(unsafe.Pointer(&dm[i])))
		f := f16x8(h.Permute(archsimd.LoadUint16x8(&deintIdx)).ExtendToUint32())
		dy := archsimd.BroadcastFloat32x4(ds[i])
		sum4 = sum4.Add(dy.Mul(f.GetLo()).Mul(isum.ConvertToFloat32()))
		sum4 = sum4.Sub(dy.Mul(f.GetHi()).Mul(imin.ConvertToFloat32()))
	}
	*sum = sum.SetLo(sum4)
}

// ldI32x8 loads the Int32x4 at p and the one after it (a block pair's mins).
func ldI32x8(p *archsimd.Int32x4) archsimd.Int32x8 {
	return archsimd.LoadInt32x8((*[8]int32)(unsafe.Pointer(p)))
}

// deint16Idx moves the even uint16 elements to the low half.
var deint16Idx = [16]uint16{0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15}

// f16x16 is f16x8 in 16 lanes.
func f16x16(h archsimd.Uint32x16) archsimd.Float32x16 {
	em := h.And(archsimd.BroadcastUint32x16(0x7fff)).ShiftAllLeft(13)
	sign := h.And(archsimd.BroadcastUint32x16(0x8000)).ShiftAllLeft(16)
	f := em.AsFloat32x16().Mul(archsimd.BroadcastFloat32x16(0x1p112))
	inf := em.AsInt32x16().Greater(archsimd.BroadcastInt32x16(0x0f7fffff))
	bits := f.AsUint32x16().Or(sign).Or(archsimd.BroadcastUint32x16(0x7f800000).Masked(inf))
	return bits.AsFloat32x16()
}

// deintIdx moves the even uint16 elements to the low half.
var deintIdx = [8]uint16{0, 2, 4, 6, 1, 3, 5, 7}

// streamRows says in which order a single-vector kernel reads its nrows
// rows, four at a time: q groups, and lane i of group g reads row
// i*ls + g*gs (a row past the end stands for the last one, its result
// dropped). Decode reads every weight from memory once per token, and a
// quantized kernel's compute per byte can leave one sequential stream's
// misses waiting. With rowStreams4 the rows are read as four streams,
// [0,q), [q,2q), [2q,3q) and [3q,nrows), one row of each in turn (ls = q,
// gs = 1): on the Intel Xeon VM of BENCHMARKS.md one thread's Q4_K kernel
// over 256 MiB went from 8.5 to 10.2 GB/s, and decode on bench-dense
// Q4_K_M / Q8_0 / BF16 and bench-moe gained 16-32%. On the AMD EPYC VM the
// same order made bench-dense Q8_0 decode 24% slower (50.2 -> 38.2 tok/s;
// Q4_K_M within noise), so there the rows are read in order (ls = 1,
// gs = 4). Rows are independent: either
// order gives the same bits. The F32 and F16 (F16C) kernels always read in
// order: their light compute already reads near memory speed, and four
// streams measured 2-7% slower there on the Xeon.
func streamRows(nrows int) (q, ls, gs int) {
	q = (nrows + 3) / 4
	if rowStreams4 {
		return q, q, 1
	}
	return q, 1, 4
}

// rowStreams4 selects streamRows' four-stream order: on Intel CPUs, unless
// the environment variable STEPFLASH_ROW_STREAMS says 1 (in order) or 4.
var rowStreams4 = rowStreamsDefault()

func rowStreamsDefault() bool {
	switch os.Getenv("STEPFLASH_ROW_STREAMS") {
	case "1":
		return false
	case "4":
		return true
	}
	return cpuIsIntel()
}

// groupRows returns the starts of group g's four rows (streamRows: lane i
// reads row i*ls + g*gs), rb bytes a row from pw; rows past the end repeat
// the last row, their results dropped.
func groupRows(pw unsafe.Pointer, g, ls, gs, nrows, rb int) [4]unsafe.Pointer {
	r := g * gs
	return [4]unsafe.Pointer{unsafe.Add(pw, r*rb), unsafe.Add(pw, min(ls+r, nrows-1)*rb),
		unsafe.Add(pw, min(2*ls+r, nrows-1)*rb), unsafe.Add(pw, min(3*ls+r, nrows-1)*rb)}
}

// storeStreams4 stores lane i of v to out[i*q+g] for the rows below nrows
// (streamRows), lane by lane through integer registers: a zeroed array and
// copy (runtime.memmove) would be legacy-SSE stores while the upper vector
// state is dirty (see doc.go).
func storeStreams4(v archsimd.Float32x4, out []float32, g, q, nrows int) {
	u := v.AsUint32x4()
	o := unsafe.Slice((*uint32)(ptr(out)), nrows)
	o[g] = u.GetElem(0)
	if r := q + g; r < nrows {
		o[r] = u.GetElem(1)
	}
	if r := 2*q + g; r < nrows {
		o[r] = u.GetElem(2)
	}
	if r := 3*q + g; r < nrows {
		o[r] = u.GetElem(3)
	}
}

// transposeSum4 returns the lane sums of a, b, c and d in lanes 0..3.
func transposeSum4(a, b, c, d archsimd.Int32x16) archsimd.Int32x4 {
	ab := a.InterleaveLoGrouped(b).Add(a.InterleaveHiGrouped(b)).AsInt64x8()
	cd := c.InterleaveLoGrouped(d).Add(c.InterleaveHiGrouped(d)).AsInt64x8()
	s := ab.InterleaveLoGrouped(cd).AsInt32x16().Add(ab.InterleaveHiGrouped(cd).AsInt32x16())
	t := s.GetLo().Add(s.GetHi())
	return t.GetLo().Add(t.GetHi())
}

// dot4Q4_KAVX512 is dot4Q4_KSIMD with 512-bit integer work.
func dot4Q4_KAVX512(w []byte, nrows int, a *act, j0 int, out []float32, ostride int) {
	nb := a.cols / qkK
	rb := nb * bytesQ4_K
	w = w[:nrows*rb]
	out = out[:3*ostride+nrows]
	e0 := j0 * a.cols
	qs := a.qsP[e0 : e0+4*a.cols]
	bsums := a.bsums[e0/16 : (e0+4*a.cols)/16]
	d4 := a.d4[j0/4*nb*4 : (j0/4+1)*nb*4]
	pw, py, pbs, pd := ptr(w), ptr(qs), ptr(bsums), ptr(d4)
	st, sb := a.cols, a.cols/16*2
	mask := archsimd.BroadcastUint8x64(0x0f)
	i0 := archsimd.LoadInt8x64(&k4Idx512[0])
	i1 := archsimd.LoadInt8x64(&k4Idx512[1])
	i2 := archsimd.LoadInt8x64(&k4Idx512[2])
	i3 := archsimd.LoadInt8x64(&k4Idx512[3])
	for r := 0; r < nrows; r++ {
		pr := unsafe.Add(pw, r*rb)
		// sum4 is carried in the low half of a 256-bit value: Go spills and
		// moves 128-bit values in X0-X15 with legacy-SSE MOVUPS (see doc.go).
		var sum8 f32x8
		for b := 0; b < nb; b++ {
			p := unsafe.Add(pr, b*bytesQ4_K)
			// Scales and mins stay in one 256-bit value until the mins are
			// used, after the dots: a 128-bit value live across them would
			// be spilled with legacy-SSE MOVUPS (see doc.go).
			e := q4KScaleE(unsafe.Add(p, 4))
			scv := e.SetHi(e.GetLo())
			sc := archsimd.Int16x32{}.SetLo(scv).SetHi(scv).AsInt8x64()
			s0, s1 := sc.PermuteOrZeroGrouped(i0).AsInt16x32(), sc.PermuteOrZeroGrouped(i1).AsInt16x32()
			s2, s3 := sc.PermuteOrZeroGrouped(i2).AsInt16x32(), sc.PermuteOrZeroGrouped(i3).AsInt16x32()
			lo01, hi01, lo23, hi23 := q4KUnpack512(unsafe.Add(p, 16), mask)
			y := unsafe.Add(py, b*qkK)
			acc0 := q4KDot512(lo01, hi01, lo23, hi23, s0, s1, s2, s3, y)
			acc1 := q4KDot512(lo01, hi01, lo23, hi23, s0, s1, s2, s3, unsafe.Add(y, st))
			acc2 := q4KDot512(lo01, hi01, lo23, hi23, s0, s1, s2, s3, unsafe.Add(y, 2*st))
			acc3 := q4KDot512(lo01, hi01, lo23, hi23, s0, s1, s2, s3, unsafe.Add(y, 3*st))
			isum := transposeSum4(acc0, acc1, acc2, acc3)
			mins, bo := e.GetHi(), b*32
			imin := reduce4x4(mins.DotProductPairs(bsumPairs(pbs, bo)), mins.DotProductPairs(bsumPairs(pbs, bo+sb)),
				mins.DotProductPairs(bsumPairs(pbs, bo+2*sb)), mins.DotProductPairs(bsumPairs(pbs, bo+3*sb)))
			dy := archsimd.LoadFloat32x4((*[4]float32)(unsafe.Add(pd, 16*b)))
			d := dy.Mul(archsimd.BroadcastFloat32x4(f16ToF32(ldU16(p, 0))))
			dmin := dy.Mul(archsimd.BroadcastFloat32x4(f16ToF32(ldU16(p, 2))))
			sum4 := sum8.GetLo()
			sum4 = sum4.Add(d.Mul(isum.ConvertToFloat32()))
			sum4 = sum4.Sub(dmin.Mul(imin.ConvertToFloat32()))
			sum8 = sum8.SetLo(sum4)
		}
		store4(sum8.GetLo(), out, r, ostride)
	}
	// Return with the upper state clean (see doc.go): the caller's Go
	// code may run legacy-SSE instructions next.
	archsimd.ClearAVXUpperBits()
}

// dot8Q4_KAVX512 is dot4Q4_KAVX512 for vectors j0..j0+7: each block's
// scales and quants are decoded once for eight vectors. The float steps of
// vectors j0..j0+3 run in the low half of 256-bit values and those of
// j0+4..j0+7 in the high half: per lane the same operations in the same
// order as dot4Q4_KAVX512's. The block decode is written out again rather
// than shared with dot4Q4_KAVX512 through a helper: inlined, such a helper
// made the eight-vector loop 17% slower (bench -p 16 on bench-dense, the
// compiler's register allocation), so the copy stays.
func dot8Q4_KAVX512(w []byte, nrows int, a *act, j0 int, out []float32, ostride int) {
	nb := a.cols / qkK
	rb := nb * bytesQ4_K
	w = w[:nrows*rb]
	out = out[:7*ostride+nrows]
	e0 := j0 * a.cols
	qs := a.qsP[e0 : e0+8*a.cols]
	bsums := a.bsums[e0/16 : (e0+8*a.cols)/16]
	d4 := a.d4[j0/4*nb*4 : (j0/4+2)*nb*4]
	pw, py, pbs, pd := ptr(w), ptr(qs), ptr(bsums), ptr(d4)
	st, sb, sd := a.cols, a.cols/16*2, nb*16
	mask := archsimd.BroadcastUint8x64(0x0f)
	i0 := archsimd.LoadInt8x64(&k4Idx512[0])
	i1 := archsimd.LoadInt8x64(&k4Idx512[1])
	i2 := archsimd.LoadInt8x64(&k4Idx512[2])
	i3 := archsimd.LoadInt8x64(&k4Idx512[3])
	for r := 0; r < nrows; r++ {
		pr := unsafe.Add(pw, r*rb)
		var sum8 f32x8
		for b := 0; b < nb; b++ {
			p := unsafe.Add(pr, b*bytesQ4_K)
			e := q4KScaleE(unsafe.Add(p, 4))
			scv := e.SetHi(e.GetLo())
			sc := archsimd.Int16x32{}.SetLo(scv).SetHi(scv).AsInt8x64()
			s0, s1 := sc.PermuteOrZeroGrouped(i0).AsInt16x32(), sc.PermuteOrZeroGrouped(i1).AsInt16x32()
			s2, s3 := sc.PermuteOrZeroGrouped(i2).AsInt16x32(), sc.PermuteOrZeroGrouped(i3).AsInt16x32()
			lo01, hi01, lo23, hi23 := q4KUnpack512(unsafe.Add(p, 16), mask)
			y := unsafe.Add(py, b*qkK)
			acc0 := q4KDot512(lo01, hi01, lo23, hi23, s0, s1, s2, s3, y)
			acc1 := q4KDot512(lo01, hi01, lo23, hi23, s0, s1, s2, s3, unsafe.Add(y, st))
			acc2 := q4KDot512(lo01, hi01, lo23, hi23, s0, s1, s2, s3, unsafe.Add(y, 2*st))
			acc3 := q4KDot512(lo01, hi01, lo23, hi23, s0, s1, s2, s3, unsafe.Add(y, 3*st))
			// Widened at once: a 128-bit value live across the next dots
			// would be spilled with legacy-SSE MOVUPS (see doc.go).
			isum := archsimd.Int32x8{}.SetLo(transposeSum4(acc0, acc1, acc2, acc3))
			acc0 = q4KDot512(lo01, hi01, lo23, hi23, s0, s1, s2, s3, unsafe.Add(y, 4*st))
			acc1 = q4KDot512(lo01, hi01, lo23, hi23, s0, s1, s2, s3, unsafe.Add(y, 5*st))
			acc2 = q4KDot512(lo01, hi01, lo23, hi23, s0, s1, s2, s3, unsafe.Add(y, 6*st))
			acc3 = q4KDot512(lo01, hi01, lo23, hi23, s0, s1, s2, s3, unsafe.Add(y, 7*st))
			isum = isum.SetHi(transposeSum4(acc0, acc1, acc2, acc3))
			// The mins' dots for vectors k and k+4 in the two 128-bit
			// halves (a 128-bit value live across them would be spilled
			// with legacy-SSE MOVUPS, see doc.go).
			mins, bo := e.SetLo(e.GetHi()), b*32
			bp := func(k int) archsimd.Int16x16 {
				return archsimd.Int16x16{}.SetLo(bsumPairs(pbs, bo+k*sb)).SetHi(bsumPairs(pbs, bo+(k+4)*sb))
			}
			imin := mins.DotProductPairs(bp(0)).AddPairsGrouped(mins.DotProductPairs(bp(1))).
				AddPairsGrouped(mins.DotProductPairs(bp(2)).AddPairsGrouped(mins.DotProductPairs(bp(3))))
			dy := f32x8{}.SetLo(archsimd.LoadFloat32x4((*[4]float32)(unsafe.Add(pd, 16*b)))).
				SetHi(archsimd.LoadFloat32x4((*[4]float32)(unsafe.Add(pd, sd+16*b))))
			d := dy.Mul(archsimd.BroadcastFloat32x8(f16ToF32(ldU16(p, 0))))
			dmin := dy.Mul(archsimd.BroadcastFloat32x8(f16ToF32(ldU16(p, 2))))
			sum8 = sum8.Add(d.Mul(isum.ConvertToFloat32()))
			sum8 = sum8.Sub(dmin.Mul(imin.ConvertToFloat32()))
		}
		store4(sum8.GetLo(), out, r, ostride)
		store4(sum8.GetHi(), out[4*ostride:], r, ostride)
	}
	// Return with the upper state clean (see doc.go).
	archsimd.ClearAVXUpperBits()
}

// pairF32 returns [d0 x8 | d1 x8]: the per-lane scales of an even/odd block
// pair in the 16-lane layout.
func pairF32(d0, d1 float32) archsimd.Float32x16 {
	return archsimd.Float32x16{}.SetLo(archsimd.BroadcastFloat32x8(d0)).SetHi(archsimd.BroadcastFloat32x8(d1))
}

// ldQ8Pair loads the quants of Q8_0 blocks b and b+1 at p (block b's start).
func ldQ8Pair(p unsafe.Pointer) archsimd.Int8x64 {
	return archsimd.Int8x64{}.SetLo(ldI8(p, 2)).SetHi(ldI8(p, 2+bytesQ8_0))
}

func finish16(acc archsimd.Float32x16) float32 { return storeHsum8(acc.GetLo().Add(acc.GetHi())) }

// Weight formats of the batched 32-element block kernel.
const (
	fmtQ8_0 = iota
	fmtQ4_0
	fmtQ5_0
	fmtQ4_1
	fmtQ5_1
)

func mmQ8_0AVX512(w []byte, nrows int, a *act, ncols int, out []float32, ostride int) {
	mm32AVX512(fmtQ8_0, w, nrows, a, ncols, out, ostride)
}

func mmQ4_0AVX512(w []byte, nrows int, a *act, ncols int, out []float32, ostride int) {
	mm32AVX512(fmtQ4_0, w, nrows, a, ncols, out, ostride)
}

func mmQ5_0AVX512(w []byte, nrows int, a *act, ncols int, out []float32, ostride int) {
	mm32AVX512(fmtQ5_0, w, nrows, a, ncols, out, ostride)
}

func mmQ4_1AVX512(w []byte, nrows int, a *act, ncols int, out []float32, ostride int) {
	mm32AVX512(fmtQ4_1, w, nrows, a, ncols, out, ostride)
}

func mmQ5_1AVX512(w []byte, nrows int, a *act, ncols int, out []float32, ostride int) {
	mm32AVX512(fmtQ5_1, w, nrows, a, ncols, out, ostride)
}

// nibblePair returns the 64 4-bit quants of the 16-byte qs fields at p0 and
// p1 (two blocks), each block's low nibbles before its high nibbles.
func nibblePair(p0, p1 unsafe.Pointer, mask archsimd.Uint8x64) archsimd.Uint8x64 {
	v0 := archsimd.LoadUint8x16((*[16]uint8)(p0))
	v1 := archsimd.LoadUint8x16((*[16]uint8)(p1))
	h0 := v0.AsInt16x8().ShiftAllRight(4).AsUint8x16()
	h1 := v1.AsInt16x8().ShiftAllRight(4).AsUint8x16()
	return archsimd.Uint8x64{}.SetLo(u8x32{}.SetLo(v0).SetHi(h0)).SetHi(u8x32{}.SetLo(v1).SetHi(h1)).And(mask)
}

// pair32Consts are blockPair32's constants, made once per kernel call.
type pair32Consts struct {
	mask             archsimd.Uint8x64
	eight, sixteen   archsimd.Int8x64
	h10              archsimd.Int8x64
	shuf             archsimd.Int8x32
	bitmask, allOnes archsimd.Uint8x32
}

func newPair32Consts() pair32Consts {
	return pair32Consts{
		mask:    archsimd.BroadcastUint8x64(0x0f),
		eight:   archsimd.BroadcastInt8x64(8),
		sixteen: archsimd.BroadcastInt8x64(16),
		h10:     archsimd.BroadcastInt8x64(0x10),
		shuf:    archsimd.LoadInt8x32(&bitShuf),
		bitmask: archsimd.BroadcastUint64x4(0x7fbfdfeff7fbfdfe).AsUint8x32(),
		allOnes: archsimd.BroadcastUint8x32(0xff),
	}
}

// blockPair32 returns the 64 quants of blocks b and b+1 of a 32-element
// block format f (bpb bytes a block) whose block b starts at p, in element
// order: signed values for Q8_0, Q4_0 and Q5_0, unsigned bytes (0..31) for
// Q4_1 and Q5_1. The constants are its callers' loop invariants (k: see
// pair32Consts), passed as values: read through a pointer, Go 1.26 fused
// the Q5 formats' Or(And(load)) into a VPTERNLOGD with a memory operand
// that its assembler rejects.
func blockPair32(f int, p unsafe.Pointer, bpb int, k pair32Consts) archsimd.Int8x64 {
	switch f {
	case fmtQ4_0:
		return nibblePair(unsafe.Add(p, 2), unsafe.Add(p, 2+bpb), k.mask).AsInt8x64().Sub(k.eight)
	case fmtQ5_0:
		hb := archsimd.Int8x64{}.SetLo(bits32(unsafe.Add(p, 2), k.shuf, k.bitmask, k.allOnes)).SetHi(bits32(unsafe.Add(p, 2+bpb), k.shuf, k.bitmask, k.allOnes))
		// (q | h<<4) - 16. Not q | (h ? 0 : 0xf0) as in the AVX2 kernel: Go
		// 1.26 fuses a 512-bit x.Or(y.AndNot(z)) into a VPTERNLOGD with
		// the AndNot operands swapped (computes z &^ y).
		return nibblePair(unsafe.Add(p, 6), unsafe.Add(p, 6+bpb), k.mask).AsInt8x64().Or(hb.And(k.h10)).Sub(k.sixteen)
	case fmtQ4_1:
		return nibblePair(unsafe.Add(p, 4), unsafe.Add(p, 4+bpb), k.mask).AsInt8x64()
	case fmtQ5_1:
		hb := archsimd.Int8x64{}.SetLo(bits32(unsafe.Add(p, 4), k.shuf, k.bitmask, k.allOnes)).SetHi(bits32(unsafe.Add(p, 4+bpb), k.shuf, k.bitmask, k.allOnes))
		return nibblePair(unsafe.Add(p, 8), unsafe.Add(p, 8+bpb), k.mask).AsInt8x64().Or(hb.And(k.h10))
	}
	return ldQ8Pair(p)
}

// mm32Row4 computes one decoded row's (ax, neg: |x| and x<0 of each block
// pair; dx: block scales) accumulators with activation vectors 0..3 at y
// (cst bytes apart; expanded scales at dv, dst bytes apart) over np block
// pairs: the scaled products of each block pair (|x| times y with the sign of x) written out in order, four accumulators live (a 2-row tile
// makes the compiler spill).
func mm32Row4(ax *[256][64]uint8, neg *[256]uint64, dx *[512]float32, np int, y unsafe.Pointer, cst int, dv unsafe.Pointer, dst int, acc *[4]archsimd.Float32x16) {
	ones := archsimd.BroadcastInt16x32(1)
	var a0, a1, a2, a3 archsimd.Float32x16
	for p := 0; p < np; p++ {
		x := archsimd.LoadUint8x64(&ax[p])
		n := archsimd.Mask8x64FromBits(neg[p])
		d := pairF32(dx[2*p], dx[2*p+1])
		v := archsimd.LoadInt8x64((*[64]int8)(y))
		v = archsimd.Int8x64{}.Sub(v).Merge(v, n)
		a0 = a0.Add(x.DotProductPairsSaturated(v).DotProductPairs(ones).ConvertToFloat32().Mul(d.Mul(ldF32x16(dv, 16*p))))
		v = archsimd.LoadInt8x64((*[64]int8)(unsafe.Add(y, cst)))
		v = archsimd.Int8x64{}.Sub(v).Merge(v, n)
		a1 = a1.Add(x.DotProductPairsSaturated(v).DotProductPairs(ones).ConvertToFloat32().Mul(d.Mul(ldF32x16(unsafe.Add(dv, dst), 16*p))))
		v = archsimd.LoadInt8x64((*[64]int8)(unsafe.Add(y, 2*cst)))
		v = archsimd.Int8x64{}.Sub(v).Merge(v, n)
		a2 = a2.Add(x.DotProductPairsSaturated(v).DotProductPairs(ones).ConvertToFloat32().Mul(d.Mul(ldF32x16(unsafe.Add(dv, 2*dst), 16*p))))
		v = archsimd.LoadInt8x64((*[64]int8)(unsafe.Add(y, 3*cst)))
		v = archsimd.Int8x64{}.Sub(v).Merge(v, n)
		a3 = a3.Add(x.DotProductPairsSaturated(v).DotProductPairs(ones).ConvertToFloat32().Mul(d.Mul(ldF32x16(unsafe.Add(dv, 3*dst), 16*p))))
		y = unsafe.Add(y, 64)
	}
	acc[0], acc[1], acc[2], acc[3] = a0, a1, a2, a3
}

// mm32AVX512 multiplies nrows rows of a 32-element block format with
// activation vectors 0..ncols-1 (ncols a multiple of 4) into
// out[j*ostride + r], in tiles of 2 rows by 4 vectors; each (row, vector)
// dot is computed exactly as the format's generic kernel (dot.go): block
// pairs fill the even (lanes 0-7) and odd (lanes 8-15) accumulators, and the
// Q4_1/Q5_1 min terms are summed in block order. a.d16 must hold the
// expanded activation scales (act.expandPairScales).
func mm32AVX512(f int, w []byte, nrows int, a *act, ncols int, out []float32, ostride int) {
	nb := a.cols / qk
	var bpb int // bytes per block
	var single rowsFunc
	switch f {
	case fmtQ8_0:
		bpb, single = bytesQ8_0, dotQ8_0SIMD
	case fmtQ4_0:
		bpb, single = bytesQ4_0, dotQ4_0SIMD
	case fmtQ5_0:
		bpb, single = bytesQ5_0, dotQ5_0SIMD
	case fmtQ4_1:
		bpb, single = bytesQ4_1, dotQ4_1SIMD
	case fmtQ5_1:
		bpb, single = bytesQ5_1, dotQ5_1SIMD
	}
	if nb%2 != 0 || nb > 512 {
		// Odd block counts need a half-width tail; not worth a special path.
		// (nb > 512: rows longer than the stack buffers below.)
		for j := 0; j < ncols; j++ {
			single(w, nrows, a, j*a.cols, out[j*ostride:j*ostride+nrows])
		}
		return
	}
	signed := f <= fmtQ5_0
	np := nb / 2
	rb := nb * bpb
	w = w[:nrows*rb]
	qs := a.qs[:ncols*a.cols]
	d16 := a.d16[:ncols*np*16]
	var ss []float32
	if !signed {
		ss = a.s[:ncols*nb]
	}
	out = out[:(ncols-1)*ostride+nrows]
	pw, py, pd := ptr(w), ptr(qs), ptr(d16)
	cst := a.cols      // bytes between activation vectors in qs
	dst := np * 16 * 4 // bytes between vectors in d16
	k := newPair32Consts()
	var zero archsimd.Int8x64
	var dx0, dx1, mx0, mx1 [512]float32
	// load returns block pair (b, b+1) of the row at p as |x| and the mask
	// of negative x (unsigned formats: x and none).
	load := func(p unsafe.Pointer) (archsimd.Uint8x64, archsimd.Mask8x64) {
		x := blockPair32(f, p, bpb, k)
		if !signed {
			return x.AsUint8x64(), zero.Less(zero)
		}
		return x.Abs().AsUint8x64(), x.Less(zero)
	}
	// The row pair's unpacked quants, decoded once for all vectors.
	var ax [2][256][64]uint8
	var neg [2][256]uint64
	for r := 0; r < nrows; r += 2 {
		two := r+1 < nrows
		p0 := unsafe.Add(pw, r*rb)
		p1 := p0
		if two {
			p1 = unsafe.Add(p0, rb)
		}
		// Scalar code follows the previous row pair's vector work.
		archsimd.ClearAVXUpperBits()
		for b := 0; b < nb; b++ {
			dx0[b] = f16ToF32(ldU16(p0, b*bpb))
			dx1[b] = f16ToF32(ldU16(p1, b*bpb))
			if !signed {
				mx0[b] = f16ToF32(ldU16(p0, b*bpb+2))
				mx1[b] = f16ToF32(ldU16(p1, b*bpb+2))
			}
		}
		for p := 0; p < np; p++ {
			v, n := load(unsafe.Add(p0, 2*p*bpb))
			v.Store(&ax[0][p])
			neg[0][p] = n.ToBits()
			v, n = load(unsafe.Add(p1, 2*p*bpb))
			v.Store(&ax[1][p])
			neg[1][p] = n.ToBits()
		}
		for j := 0; j < ncols; j += 4 {
			y := unsafe.Add(py, j*cst)
			dv := unsafe.Add(pd, j*dst)
			var acc0, acc1 [4]archsimd.Float32x16
			mm32Row4(&ax[0], &neg[0], &dx0, np, y, cst, dv, dst, &acc0)
			if two {
				mm32Row4(&ax[1], &neg[1], &dx1, np, y, cst, dv, dst, &acc1)
			}
			// The horizontal sums first: finish16 clears the upper state
			// before the scalar code below (see doc.go).
			f00, f01, f02, f03 := finish16(acc0[0]), finish16(acc0[1]), finish16(acc0[2]), finish16(acc0[3])
			var f10, f11, f12, f13 float32
			if two {
				f10, f11, f12, f13 = finish16(acc1[0]), finish16(acc1[1]), finish16(acc1[2]), finish16(acc1[3])
			}
			// The Q4_1/Q5_1 min terms, summed in block order (kept out of the
			// loop above: eight scalar accumulators would crowd the vector
			// registers).
			var m00, m01, m02, m03, m10, m11, m12, m13 float32
			if !signed {
				for b := 0; b < nb; b++ {
					s0, s1, s2, s3 := ss[j*nb+b], ss[(j+1)*nb+b], ss[(j+2)*nb+b], ss[(j+3)*nb+b]
					m00 += float32(mx0[b] * s0)
					m01 += float32(mx0[b] * s1)
					m02 += float32(mx0[b] * s2)
					m03 += float32(mx0[b] * s3)
					m10 += float32(mx1[b] * s0)
					m11 += float32(mx1[b] * s1)
					m12 += float32(mx1[b] * s2)
					m13 += float32(mx1[b] * s3)
				}
			}
			// For signed formats the m are +0, and adding +0 changes nothing:
			// the accumulators start at +0 and so never hold -0.
			o := j*ostride + r
			out[o] = f00 + m00
			out[o+ostride] = f01 + m01
			out[o+2*ostride] = f02 + m02
			out[o+3*ostride] = f03 + m03
			if two {
				out[o+1] = f10 + m10
				out[o+ostride+1] = f11 + m11
				out[o+2*ostride+1] = f12 + m12
				out[o+3*ostride+1] = f13 + m13
			}
		}
	}
	// Return with the upper state clean (see doc.go): the caller's Go
	// code may run legacy-SSE instructions next.
	archsimd.ClearAVXUpperBits()
}

// q6Idx512[2n+h] maps the 32 int16 products of Q6_K half n, 64-element
// half h, to their 16-element group's scale: group 8n + 4h + i/8.
var q6Idx512 [4][32]uint16

// q6ShlA and q6ShrB hold per-256-bit-half shifts that move Q6_K qh bit pairs
// to bits 4-5: left 4 and 2 for the first 64 elements of a half, right 0 and
// 2 for the next 64.
var q6ShlA, q6ShrB [32]uint16

func init() {
	for n := 0; n < 2; n++ {
		for h := 0; h < 2; h++ {
			for i := range q6Idx512[2*n+h] {
				q6Idx512[2*n+h][i] = uint16(8*n + 4*h + i/8)
			}
		}
	}
	for i := 0; i < 32; i++ {
		q6ShlA[i], q6ShrB[i] = 4, 0
		if i >= 16 {
			q6ShlA[i], q6ShrB[i] = 2, 2
		}
	}
}

// q6Half512 returns the quants (0..63) of elements 0..63 and 64..127 of half
// n of the Q6_K block at p.
func q6Half512(p unsafe.Pointer, n int, m4, m30 archsimd.Uint8x64, shlA, shrB archsimd.Uint16x32) (x, y archsimd.Uint8x64) {
	ql := archsimd.LoadUint8x64((*[64]uint8)(unsafe.Add(p, 64*n)))
	qh32 := ldU8(p, 128+32*n)
	qh := archsimd.Uint8x64{}.SetLo(qh32).SetHi(qh32).AsUint16x32()
	x = ql.And(m4).Or(qh.ShiftLeft(shlA).AsUint8x64().And(m30))
	y = ql.AsInt16x32().ShiftAllRight(4).AsUint8x64().And(m4).Or(qh.ShiftRight(shrB).AsUint8x64().And(m30))
	return
}

// dotQ6_KAVX512 works on groups of four rows, as dotQ4_KAVX512.
func dotQ6_KAVX512(w []byte, nrows int, a *act, e0 int, out []float32) {
	dotQ6_K512(w, nrows, a, e0, out, false)
}

// dotQ6_K512 is dotQ6_KAVX512 with the block loop in q6KChunkVNNI if vnni.
func dotQ6_K512(w []byte, nrows int, a *act, e0 int, out []float32, vnni bool) {
	nb := a.cols / qkK
	rb := nb * bytesQ6_K
	w = w[:nrows*rb]
	out = out[:nrows]
	qs := a.qs[e0 : e0+a.cols]
	bsums := a.bsums[e0/16 : e0/16+nb*16]
	ds := a.d[e0/qkK : e0/qkK+nb]
	pw, py, pbs := ptr(w), ptr(qs), ptr(bsums)
	var accs [4][kChunk]archsimd.Int32x16
	q, ls, gs := streamRows(nrows)
	for g := 0; g < q; g++ {
		ps := groupRows(pw, g, ls, gs, nrows, rb)
		// 256 bits, lanes 0-3 used: a zero Float32x4 is a legacy-SSE
		// MOVUPS from X15, here after the vector work of the last group.
		var sum8 f32x8
		for b0 := 0; b0 < nb; b0 += kChunk {
			n := min(kChunk, nb-b0)
			// Not a range over ps: copying the array reloads its pointers
			// with wide loads just after their stores (a store-forwarding
			// stall per group).
			o, y, bs := b0*bytesQ6_K, unsafe.Add(py, b0*qkK), unsafe.Add(pbs, 32*b0)
			q6KChunk(vnni, unsafe.Add(ps[0], o), y, bs, n, &accs[0])
			q6KChunk(vnni, unsafe.Add(ps[1], o), y, bs, n, &accs[1])
			q6KChunk(vnni, unsafe.Add(ps[2], o), y, bs, n, &accs[2])
			q6KChunk(vnni, unsafe.Add(ps[3], o), y, bs, n, &accs[3])
			kFinish4d(&accs, &ps, b0*bytesQ6_K+208, bytesQ6_K, ds[b0:b0+n], &sum8)
		}
		storeStreams4(sum8.GetLo(), out, g*gs, ls, nrows)
	}
	// Return with the upper state clean (see doc.go): the caller's Go
	// code may run legacy-SSE instructions next.
	archsimd.ClearAVXUpperBits()
}

// dotQ6_KAVX512Shift is dotQ6_KAVX512 for AVX-512 CPUs without GFNI
// (Skylake-X, Cascade Lake): the high bits are unpacked with variable
// shifts and masks instead (q6KChunk512Shift). It is written out rather
// than sharing a walk that takes the chunk kernel as a function value: an
// indirect call makes the accumulators escape to the heap, and the shared
// version ran at 5.8 ns per block instead of 4.4.
func dotQ6_KAVX512Shift(w []byte, nrows int, a *act, e0 int, out []float32) {
	nb := a.cols / qkK
	rb := nb * bytesQ6_K
	w = w[:nrows*rb]
	out = out[:nrows]
	qs := a.qs[e0 : e0+a.cols]
	bsums := a.bsums[e0/16 : e0/16+nb*16]
	ds := a.d[e0/qkK : e0/qkK+nb]
	pw, py, pbs := ptr(w), ptr(qs), ptr(bsums)
	var accs [4][kChunk]archsimd.Int32x16
	q, ls, gs := streamRows(nrows)
	for g := 0; g < q; g++ {
		ps := groupRows(pw, g, ls, gs, nrows, rb)
		// 256 bits, lanes 0-3 used: a zero Float32x4 is a legacy-SSE
		// MOVUPS from X15, here after the vector work of the last group.
		var sum8 f32x8
		for b0 := 0; b0 < nb; b0 += kChunk {
			n := min(kChunk, nb-b0)
			// Not a range over ps: copying the array reloads its pointers
			// with wide loads just after their stores (a store-forwarding
			// stall per group).
			o, y, bs := b0*bytesQ6_K, unsafe.Add(py, b0*qkK), unsafe.Add(pbs, 32*b0)
			q6KChunk512Shift(unsafe.Add(ps[0], o), y, bs, n, &accs[0])
			q6KChunk512Shift(unsafe.Add(ps[1], o), y, bs, n, &accs[1])
			q6KChunk512Shift(unsafe.Add(ps[2], o), y, bs, n, &accs[2])
			q6KChunk512Shift(unsafe.Add(ps[3], o), y, bs, n, &accs[3])
			kFinish4d(&accs, &ps, b0*bytesQ6_K+208, bytesQ6_K, ds[b0:b0+n], &sum8)
		}
		storeStreams4(sum8.GetLo(), out, g*gs, ls, nrows)
	}
	// Return with the upper state clean (see doc.go): the caller's Go
	// code may run legacy-SSE instructions next.
	archsimd.ClearAVXUpperBits()
}

// q6KChunk512 computes, for the n Q6_K blocks at p and the activation
// blocks at y with block sums at bs, each block's integer dot (the -32
// offset included) as 16 int32 lanes.
//
// Each qh bit pair goes to bits 4-5 with one GF2P8AFFINEQB (a bit matrix per
// 64-bit lane, so each 256-bit half picks its own pair), and the masked
// nibble is merged in with one VPTERNLOGD: the compiler fuses an And/Or of
// three Int vectors, not of Uint ones, hence the Int8x64 views.
//
// The loop body is written out in the order it should run, without helper
// calls: the compiler schedules ready values by source position (inlined
// helpers keep theirs), and a bad order makes it spill vectors.
func q6KChunk512(p, y, bs unsafe.Pointer, n int, acc *[kChunk]archsimd.Int32x16) {
	m4 := archsimd.BroadcastInt8x64(0x0f)
	gx := archsimd.LoadUint64x8(&q6GFx)
	gz := archsimd.LoadUint64x8(&q6GFz)
	for i := range acc[:n] {
		sc16 := archsimd.LoadInt8x16((*[16]int8)(unsafe.Add(p, 192))).ExtendToInt16()
		// Half 0: elements 0..63 (x) and 64..127 (z). qh holds both
		// halves' high bits; h has half 0's in both 256-bit halves.
		ql := archsimd.LoadUint8x64((*[64]uint8)(p))
		qh := archsimd.LoadUint8x64((*[64]uint8)(unsafe.Add(p, 128)))
		h := qh.SetHi(qh.GetLo())
		// VPERMW reads only lanes 0..15 of sc: its upper half may hold anything.
		sc := ql.AsInt16x32().SetLo(sc16)
		x := ql.AsInt8x64().And(m4).Or(h.GaloisFieldAffineTransform(gx, 0).AsInt8x64()).AsUint8x64()
		v := x.DotProductPairsSaturated(archsimd.LoadInt8x64((*[64]int8)(y))).DotProductPairs(sc.Permute(archsimd.LoadUint16x32(&q6Idx512[0])))
		z := ql.AsInt16x32().ShiftAllRight(4).AsInt8x64().And(m4).Or(h.GaloisFieldAffineTransform(gz, 0).AsInt8x64()).AsUint8x64()
		v = v.Add(z.DotProductPairsSaturated(archsimd.LoadInt8x64((*[64]int8)(unsafe.Add(y, 64)))).DotProductPairs(sc.Permute(archsimd.LoadUint16x32(&q6Idx512[1]))))
		// Half 1: elements 128..191 and 192..255.
		ql = archsimd.LoadUint8x64((*[64]uint8)(unsafe.Add(p, 64)))
		h = qh.SetLo(qh.GetHi())
		x = ql.AsInt8x64().And(m4).Or(h.GaloisFieldAffineTransform(gx, 0).AsInt8x64()).AsUint8x64()
		v = v.Add(x.DotProductPairsSaturated(archsimd.LoadInt8x64((*[64]int8)(unsafe.Add(y, 128)))).DotProductPairs(sc.Permute(archsimd.LoadUint16x32(&q6Idx512[2]))))
		z = ql.AsInt16x32().ShiftAllRight(4).AsInt8x64().And(m4).Or(h.GaloisFieldAffineTransform(gz, 0).AsInt8x64()).AsUint8x64()
		v = v.Add(z.DotProductPairsSaturated(archsimd.LoadInt8x64((*[64]int8)(unsafe.Add(y, 192)))).DotProductPairs(sc.Permute(archsimd.LoadUint16x32(&q6Idx512[3]))))
		// The -32 offset: 32 * sum of scale * block sum.
		bias := archsimd.LoadInt16x16((*[16]int16)(bs)).DotProductPairs(sc16).ShiftAllLeft(5)
		acc[i] = v.Sub(archsimd.Int32x16{}.SetLo(bias))
		p, y, bs = unsafe.Add(p, bytesQ6_K), unsafe.Add(y, qkK), unsafe.Add(bs, 32)
	}
}

// q6KChunk512Shift is q6KChunk512 without GFNI: each qh bit pair is moved
// to bits 4-5 with a per-256-bit-half variable shift and a mask.
func q6KChunk512Shift(p, y, bs unsafe.Pointer, n int, acc *[kChunk]archsimd.Int32x16) {
	m4 := archsimd.BroadcastUint8x64(0x0f)
	m30 := archsimd.BroadcastUint8x64(0x30)
	shlA := archsimd.LoadUint16x32(&q6ShlA)
	shrB := archsimd.LoadUint16x32(&q6ShrB)
	for i := range acc[:n] {
		sc16 := archsimd.LoadInt8x16((*[16]int8)(unsafe.Add(p, 192))).ExtendToInt16()
		sc := archsimd.Int16x32{}.SetLo(sc16)
		// Half 0: elements 0..63 (x) and 64..127 (z).
		ql := archsimd.LoadUint8x64((*[64]uint8)(p))
		qh32 := archsimd.LoadUint8x32((*[32]uint8)(unsafe.Add(p, 128)))
		qh := archsimd.Uint8x64{}.SetLo(qh32).SetHi(qh32).AsUint16x32()
		x := ql.And(m4).Or(qh.ShiftLeft(shlA).AsUint8x64().And(m30))
		v := x.DotProductPairsSaturated(archsimd.LoadInt8x64((*[64]int8)(y))).DotProductPairs(sc.Permute(archsimd.LoadUint16x32(&q6Idx512[0])))
		z := ql.AsInt16x32().ShiftAllRight(4).AsUint8x64().And(m4).Or(qh.ShiftRight(shrB).AsUint8x64().And(m30))
		v = v.Add(z.DotProductPairsSaturated(archsimd.LoadInt8x64((*[64]int8)(unsafe.Add(y, 64)))).DotProductPairs(sc.Permute(archsimd.LoadUint16x32(&q6Idx512[1]))))
		// Half 1: elements 128..191 and 192..255.
		ql = archsimd.LoadUint8x64((*[64]uint8)(unsafe.Add(p, 64)))
		qh32 = archsimd.LoadUint8x32((*[32]uint8)(unsafe.Add(p, 160)))
		qh = archsimd.Uint8x64{}.SetLo(qh32).SetHi(qh32).AsUint16x32()
		x = ql.And(m4).Or(qh.ShiftLeft(shlA).AsUint8x64().And(m30))
		v = v.Add(x.DotProductPairsSaturated(archsimd.LoadInt8x64((*[64]int8)(unsafe.Add(y, 128)))).DotProductPairs(sc.Permute(archsimd.LoadUint16x32(&q6Idx512[2]))))
		z = ql.AsInt16x32().ShiftAllRight(4).AsUint8x64().And(m4).Or(qh.ShiftRight(shrB).AsUint8x64().And(m30))
		v = v.Add(z.DotProductPairsSaturated(archsimd.LoadInt8x64((*[64]int8)(unsafe.Add(y, 192)))).DotProductPairs(sc.Permute(archsimd.LoadUint16x32(&q6Idx512[3]))))
		// The -32 offset: 32 * sum of scale * block sum.
		bias := archsimd.LoadInt16x16((*[16]int16)(bs)).DotProductPairs(sc16).ShiftAllLeft(5)
		acc[i] = v.Sub(archsimd.Int32x16{}.SetLo(bias))
		p, y, bs = unsafe.Add(p, bytesQ6_K), unsafe.Add(y, qkK), unsafe.Add(bs, 32)
	}
}

// q6GFx and q6GFz are GF2P8AFFINEQB bit matrices that move a Q6_K qh bit
// pair to bits 4-5 (all other bits 0): for x, bits 0-1 in the first 256
// bits and bits 2-3 in the second; for z, bits 4-5 and 6-7.
var q6GFx, q6GFz [8]uint64

func init() {
	// Output bit o takes input bit j: bit j of the matrix's byte 7-o.
	mv := func(j int) uint64 { return 1<<(8*(7-4)+j) | 1<<(8*(7-5)+j+1) }
	for i := 0; i < 8; i++ {
		q6GFx[i], q6GFz[i] = mv(0), mv(4)
		if i >= 4 {
			q6GFx[i], q6GFz[i] = mv(2), mv(6)
		}
	}
}

// kFinish4d is kFinish4 for formats without mins: sum += (dy*dx)*isum per
// row (kAcc's subtraction of +0 changes nothing), with the rows' fp16 d at
// offset off+i*bpb. Blocks go in pairs, the products of a pair in the low
// and high lanes of 8 (the adds to sum stay in block order).
func kFinish4d(acc *[4][kChunk]archsimd.Int32x16, ps *[4]unsafe.Pointer, off, bpb int, ds []float32, sum *f32x8) {
	sum4 := sum.GetLo()
	p0, p1, p2, p3 := unsafe.Add(ps[0], off), unsafe.Add(ps[1], off), unsafe.Add(ps[2], off), unsafe.Add(ps[3], off)
	ds = ds[:min(len(ds), kChunk)]
	dup := archsimd.LoadUint32x8(&dupPairIdx)
	i := 0
	for ; i+2 <= len(ds); i += 2 {
		isum := transposeSum4x2(&acc[0], &acc[1], &acc[2], &acc[3], i)
		h0 := uint64(ldU16(p0, 0)) | uint64(ldU16(p1, 0))<<16 | uint64(ldU16(p2, 0))<<32 | uint64(ldU16(p3, 0))<<48
		h1 := uint64(ldU16(p0, bpb)) | uint64(ldU16(p1, bpb))<<16 | uint64(ldU16(p2, bpb))<<32 | uint64(ldU16(p3, bpb))<<48
		dx := f16x8(archsimd.BroadcastUint64x2(h0).SetElem(1, h1).AsUint16x8().ExtendToUint32())
		dy := archsimd.BroadcastUint64x4(*(*uint64)(unsafe.Pointer(&ds[i]))).AsFloat32x8().Permute(dup)
		t := dy.Mul(dx).Mul(isum.ConvertToFloat32())
		sum4 = sum4.Add(t.GetLo())
		sum4 = sum4.Add(t.GetHi())
		p0, p1, p2, p3 = unsafe.Add(p0, 2*bpb), unsafe.Add(p1, 2*bpb), unsafe.Add(p2, 2*bpb), unsafe.Add(p3, 2*bpb)
	}
	if i < len(ds) {
		isum := transposeSum4(acc[0][i], acc[1][i], acc[2][i], acc[3][i])
		h := uint64(ldU16(p0, 0)) | uint64(ldU16(p1, 0))<<16 | uint64(ldU16(p2, 0))<<32 | uint64(ldU16(p3, 0))<<48
		dx := f16x8(archsimd.BroadcastUint64x2(h).AsUint16x8().ExtendToUint32()).GetLo()
		sum4 = sum4.Add(archsimd.BroadcastFloat32x4(ds[i]).Mul(dx).Mul(isum.ConvertToFloat32()))
	}
	*sum = sum.SetLo(sum4)
}

// dupPairIdx spreads float32s 0 and 1 over lanes 0-3 and 4-7.
var dupPairIdx = [8]uint32{0, 0, 0, 0, 1, 1, 1, 1}

// transposeSum4x2 is transposeSum4 of blocks i (lanes 0-3) and i+1 (lanes
// 4-7) of a, b, c and d.
func transposeSum4x2(a, b, c, d *[kChunk]archsimd.Int32x16, i int) archsimd.Int32x8 {
	ab := a[i].InterleaveLoGrouped(b[i]).Add(a[i].InterleaveHiGrouped(b[i])).AsInt64x8()
	cd := c[i].InterleaveLoGrouped(d[i]).Add(c[i].InterleaveHiGrouped(d[i])).AsInt64x8()
	s := ab.InterleaveLoGrouped(cd).AsInt32x16().Add(ab.InterleaveHiGrouped(cd).AsInt32x16())
	ab = a[i+1].InterleaveLoGrouped(b[i+1]).Add(a[i+1].InterleaveHiGrouped(b[i+1])).AsInt64x8()
	cd = c[i+1].InterleaveLoGrouped(d[i+1]).Add(c[i+1].InterleaveHiGrouped(d[i+1])).AsInt64x8()
	u := ab.InterleaveLoGrouped(cd).AsInt32x16().Add(ab.InterleaveHiGrouped(cd).AsInt32x16())
	s2, u2 := s.GetLo().Add(s.GetHi()), u.GetLo().Add(u.GetHi())
	return s2.Select128FromPair(0, 2, u2).Add(s2.Select128FromPair(1, 3, u2))
}

// dot4Q6_KAVX512 is dot4Q6_KSIMD with 512-bit integer work.
func dot4Q6_KAVX512(w []byte, nrows int, a *act, j0 int, out []float32, ostride int) {
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
	m4 := archsimd.BroadcastUint8x64(0x0f)
	m30 := archsimd.BroadcastUint8x64(0x30)
	shlA := archsimd.LoadUint16x32(&q6ShlA)
	shrB := archsimd.LoadUint16x32(&q6ShrB)
	for r := 0; r < nrows; r++ {
		pr := unsafe.Add(pw, r*rb)
		// sum4 is carried in the low half of a 256-bit value: Go spills and
		// moves 128-bit values in X0-X15 with legacy-SSE MOVUPS (see doc.go).
		var sum8 f32x8
		for b := 0; b < nb; b++ {
			p := unsafe.Add(pr, b*bytesQ6_K)
			y := unsafe.Add(py, b*qkK)
			sc16 := archsimd.LoadInt8x16((*[16]int8)(unsafe.Add(p, 192))).ExtendToInt16()
			sc := archsimd.Int16x32{}.SetLo(sc16)
			bo := b * 32
			acc0 := archsimd.Int32x8{}.Sub(ldI16(pbs, bo).DotProductPairs(sc16).ShiftAllLeft(5))
			acc1 := archsimd.Int32x8{}.Sub(ldI16(pbs, bo+sb).DotProductPairs(sc16).ShiftAllLeft(5))
			acc2 := archsimd.Int32x8{}.Sub(ldI16(pbs, bo+2*sb).DotProductPairs(sc16).ShiftAllLeft(5))
			acc3 := archsimd.Int32x8{}.Sub(ldI16(pbs, bo+3*sb).DotProductPairs(sc16).ShiftAllLeft(5))
			for n := 0; n < 2; n++ {
				xq, yq := q6Half512(p, n, m4, m30, shlA, shrB)
				sx := sc.Permute(archsimd.LoadUint16x32(&q6Idx512[2*n]))
				sy := sc.Permute(archsimd.LoadUint16x32(&q6Idx512[2*n+1]))
				o := 128 * n
				v0 := xq.DotProductPairsSaturated(ldI8x64(y, o)).DotProductPairs(sx).Add(yq.DotProductPairsSaturated(ldI8x64(y, o+64)).DotProductPairs(sy))
				v1 := xq.DotProductPairsSaturated(ldI8x64(y, st+o)).DotProductPairs(sx).Add(yq.DotProductPairsSaturated(ldI8x64(y, st+o+64)).DotProductPairs(sy))
				v2 := xq.DotProductPairsSaturated(ldI8x64(y, 2*st+o)).DotProductPairs(sx).Add(yq.DotProductPairsSaturated(ldI8x64(y, 2*st+o+64)).DotProductPairs(sy))
				v3 := xq.DotProductPairsSaturated(ldI8x64(y, 3*st+o)).DotProductPairs(sx).Add(yq.DotProductPairsSaturated(ldI8x64(y, 3*st+o+64)).DotProductPairs(sy))
				acc0 = acc0.Add(v0.GetLo().Add(v0.GetHi()))
				acc1 = acc1.Add(v1.GetLo().Add(v1.GetHi()))
				acc2 = acc2.Add(v2.GetLo().Add(v2.GetHi()))
				acc3 = acc3.Add(v3.GetLo().Add(v3.GetHi()))
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

// dot8Q6_KAVX512 is dot4Q6_KAVX512 for vectors j0..j0+7 (see
// dot8Q4_KAVX512): each half block is decoded once for eight vectors, and
// the float steps of vectors j0+4..j0+7 run in the high half of 256-bit
// values.
func dot8Q6_KAVX512(w []byte, nrows int, a *act, j0 int, out []float32, ostride int) {
	nb := a.cols / qkK
	rb := nb * bytesQ6_K
	w = w[:nrows*rb]
	out = out[:7*ostride+nrows]
	e0 := j0 * a.cols
	qs := a.qs[e0 : e0+8*a.cols]
	bsums := a.bsums[e0/16 : (e0+8*a.cols)/16]
	d4 := a.d4[j0/4*nb*4 : (j0/4+2)*nb*4]
	pw, py, pbs, pd := ptr(w), ptr(qs), ptr(bsums), ptr(d4)
	st, sb, sd := a.cols, a.cols/16*2, nb*16
	m4 := archsimd.BroadcastUint8x64(0x0f)
	m30 := archsimd.BroadcastUint8x64(0x30)
	shlA := archsimd.LoadUint16x32(&q6ShlA)
	shrB := archsimd.LoadUint16x32(&q6ShrB)
	for r := 0; r < nrows; r++ {
		pr := unsafe.Add(pw, r*rb)
		var sum8 f32x8
		for b := 0; b < nb; b++ {
			p := unsafe.Add(pr, b*bytesQ6_K)
			y := unsafe.Add(py, b*qkK)
			sc16 := archsimd.LoadInt8x16((*[16]int8)(unsafe.Add(p, 192))).ExtendToInt16()
			sc := archsimd.Int16x32{}.SetLo(sc16)
			bo := b * 32
			bias := func(k int) archsimd.Int32x8 {
				return archsimd.Int32x8{}.Sub(ldI16(pbs, bo+k*sb).DotProductPairs(sc16).ShiftAllLeft(5))
			}
			acc0, acc1, acc2, acc3 := bias(0), bias(1), bias(2), bias(3)
			acc4, acc5, acc6, acc7 := bias(4), bias(5), bias(6), bias(7)
			for n := 0; n < 2; n++ {
				xq, yq := q6Half512(p, n, m4, m30, shlA, shrB)
				sx := sc.Permute(archsimd.LoadUint16x32(&q6Idx512[2*n]))
				sy := sc.Permute(archsimd.LoadUint16x32(&q6Idx512[2*n+1]))
				o := 128 * n
				dot := func(k int) archsimd.Int32x8 {
					v := xq.DotProductPairsSaturated(ldI8x64(y, k*st+o)).DotProductPairs(sx).Add(yq.DotProductPairsSaturated(ldI8x64(y, k*st+o+64)).DotProductPairs(sy))
					return v.GetLo().Add(v.GetHi())
				}
				acc0 = acc0.Add(dot(0))
				acc1 = acc1.Add(dot(1))
				acc2 = acc2.Add(dot(2))
				acc3 = acc3.Add(dot(3))
				acc4 = acc4.Add(dot(4))
				acc5 = acc5.Add(dot(5))
				acc6 = acc6.Add(dot(6))
				acc7 = acc7.Add(dot(7))
			}
			isum := archsimd.Int32x8{}.SetLo(reduce4(acc0, acc1, acc2, acc3))
			isum = isum.SetHi(reduce4(acc4, acc5, acc6, acc7))
			dy := f32x8{}.SetLo(archsimd.LoadFloat32x4((*[4]float32)(unsafe.Add(pd, 16*b)))).
				SetHi(archsimd.LoadFloat32x4((*[4]float32)(unsafe.Add(pd, sd+16*b))))
			d := dy.Mul(archsimd.BroadcastFloat32x8(f16ToF32(ldU16(p, 208))))
			sum8 = sum8.Add(d.Mul(isum.ConvertToFloat32()))
		}
		store4(sum8.GetLo(), out, r, ostride)
		store4(sum8.GetHi(), out[4*ostride:], r, ostride)
	}
	// Return with the upper state clean (see doc.go).
	archsimd.ClearAVXUpperBits()
}

// q5KUnpack512 is q4KUnpack512 plus the fifth bits from the 32-byte qh at h
// (ch: q5KShiftH). The shifts of the fifth bits to bit 4 are 16-bit: the
// bits that cross a byte boundary land outside the 0x10 mask; the right
// shift is arithmetic for its immediate form (see doc.go).
func q5KUnpack512(q, h unsafe.Pointer, mask, m10 archsimd.Uint8x64, ch archsimd.Uint16x32) (lo01, hi01, lo23, hi23 archsimd.Uint8x64) {
	lo01, hi01, lo23, hi23 = q4KUnpack512(q, mask)
	h32 := ldU8(h, 0)
	qh := archsimd.Uint8x64{}.SetLo(h32).SetHi(h32).AsUint16x32().ShiftRight(ch)
	lo01 = lo01.Or(qh.ShiftAllLeft(4).AsUint8x64().And(m10))
	hi01 = hi01.Or(qh.ShiftAllLeft(3).AsUint8x64().And(m10))
	lo23 = lo23.Or(qh.AsUint8x64().And(m10))
	hi23 = hi23.Or(qh.AsInt16x32().ShiftAllRight(1).AsUint8x64().And(m10))
	return
}

// dotQ5_KAVX512 works on groups of four rows, as dotQ4_KAVX512: each row's
// blocks are multiplied in order into integer sums (q5KChunk512), and the
// float steps of kAcc run on the four rows' lanes together (kFinish4), so
// no scalar float code runs between vector instructions (see doc.go).
func dotQ5_KAVX512(w []byte, nrows int, a *act, e0 int, out []float32) {
	nb := a.cols / qkK
	rb := nb * bytesQ5_K
	w = w[:nrows*rb]
	out = out[:nrows]
	qs := a.qsP[e0 : e0+a.cols]
	bsp := a.bsp[e0/32 : e0/32+nb*8]
	ds := a.d[e0/qkK : e0/qkK+nb]
	pw, py, pbs := ptr(w), ptr(qs), ptr(bsp)
	var accs [4][kChunk]archsimd.Int32x16
	var ms [4][kChunk]archsimd.Int32x4
	var dms [kChunk][4]uint32
	q, ls, gs := streamRows(nrows)
	for g := 0; g < q; g++ {
		ps := groupRows(pw, g, ls, gs, nrows, rb)
		// 256 bits, lanes 0-3 used: a zero Float32x4 is a legacy-SSE
		// MOVUPS from X15, here after the vector work of the last group.
		var sum8 f32x8
		for b0 := 0; b0 < nb; b0 += kChunk {
			n := min(kChunk, nb-b0)
			o, y, bs := b0*bytesQ5_K, unsafe.Add(py, b0*qkK), unsafe.Add(pbs, 16*b0)
			q5KChunk512(unsafe.Add(ps[0], o), y, bs, n, &accs[0], &ms[0], unsafe.Pointer(&dms[0][0]))
			q5KChunk512(unsafe.Add(ps[1], o), y, bs, n, &accs[1], &ms[1], unsafe.Pointer(&dms[0][1]))
			q5KChunk512(unsafe.Add(ps[2], o), y, bs, n, &accs[2], &ms[2], unsafe.Pointer(&dms[0][2]))
			q5KChunk512(unsafe.Add(ps[3], o), y, bs, n, &accs[3], &ms[3], unsafe.Pointer(&dms[0][3]))
			kFinish4(&accs, &ms, &dms, ds[b0:b0+n], &sum8)
		}
		storeStreams4(sum8.GetLo(), out, g*gs, ls, nrows)
	}
	// Return with the upper state clean (see doc.go): the caller's Go
	// code may run legacy-SSE instructions next.
	archsimd.ClearAVXUpperBits()
}

// q5KShiftH shifts the duplicated qh words right by 0 (low 256 bits) or 2
// (high 256 bits): then the fifth bits of the four unpacked vectors (see
// q4KUnpack512: qh bits (0,2), (1,3), (4,6), (5,7)) are at bits 0, 1, 4 and
// 5 of each byte in both halves.
var q5KShiftH = func() (c [32]uint16) {
	for j := 16; j < 32; j++ {
		c[j] = 2
	}
	return
}()

// q5KChunk512 is q4KChunk512 for Q5_K blocks: the same scales and d/dmin
// fields, qs at 48 and the fifth bits (qh, 32 bytes at 16) moved to bit 4
// of each quant.
func q5KChunk512(p, y, bs unsafe.Pointer, n int, acc *[kChunk]archsimd.Int32x16, m *[kChunk]archsimd.Int32x4, dm unsafe.Pointer) {
	mask := archsimd.BroadcastUint8x64(0x0f)
	m10 := archsimd.BroadcastUint8x64(0x10)
	ch := archsimd.LoadUint16x32(&q5KShiftH)
	for i := range acc[:n] {
		// Written out in order (see q6KChunk512). The shifts of the fifth
		// bits to bit 4 are 16-bit: the bits that cross a byte boundary
		// land outside the 0x10 mask; the right shift is arithmetic for
		// its immediate form (see doc.go). The shuffle indices and the
		// scales' shifts and masks are loaded where they are used: one
		// more vector kept in a register makes the compiler spill, and
		// move a 128-bit value with legacy-SSE MOVUPS.
		x := q4KScalesVec(archsimd.LoadInt32x4((*[4]int32)(unsafe.Add(p, 4))),
			archsimd.LoadInt32x4(&q4KSA), archsimd.LoadInt32x4(&q4KKA), archsimd.LoadInt32x4(&q4KSC), archsimd.LoadInt32x4(&q4KKC))
		sc := x.AsInt64x2().Broadcast1To8().AsInt8x64()
		h32 := archsimd.LoadUint8x32((*[32]uint8)(unsafe.Add(p, 16)))
		h := archsimd.Uint8x64{}.SetLo(h32).SetHi(h32).AsUint16x32().ShiftRight(ch)
		q := archsimd.LoadUint8x64((*[64]uint8)(unsafe.Add(p, 48)))
		u := q.And(mask).Or(h.ShiftAllLeft(4).AsUint8x64().And(m10))
		v := u.DotProductPairsSaturated(archsimd.LoadInt8x64((*[64]int8)(y))).DotProductPairs(sc.PermuteOrZeroGrouped(archsimd.LoadInt8x64(&k4Byte512[0])).AsInt16x32())
		u = q.AsInt16x32().ShiftAllRight(4).AsUint8x64().And(mask).Or(h.ShiftAllLeft(3).AsUint8x64().And(m10))
		v = v.Add(u.DotProductPairsSaturated(archsimd.LoadInt8x64((*[64]int8)(unsafe.Add(y, 64)))).DotProductPairs(sc.PermuteOrZeroGrouped(archsimd.LoadInt8x64(&k4Byte512[1])).AsInt16x32()))
		q = archsimd.LoadUint8x64((*[64]uint8)(unsafe.Add(p, 112)))
		u = q.And(mask).Or(h.AsUint8x64().And(m10))
		v = v.Add(u.DotProductPairsSaturated(archsimd.LoadInt8x64((*[64]int8)(unsafe.Add(y, 128)))).DotProductPairs(sc.PermuteOrZeroGrouped(archsimd.LoadInt8x64(&k4Byte512[2])).AsInt16x32()))
		u = q.AsInt16x32().ShiftAllRight(4).AsUint8x64().And(mask).Or(h.AsInt16x32().ShiftAllRight(1).AsUint8x64().And(m10))
		v = v.Add(u.DotProductPairsSaturated(archsimd.LoadInt8x64((*[64]int8)(unsafe.Add(y, 192)))).DotProductPairs(sc.PermuteOrZeroGrouped(archsimd.LoadInt8x64(&k4Byte512[3])).AsInt16x32()))
		acc[i] = v
		mins := x.PermuteScalars(2, 3, 2, 3).AsUint8x16().ExtendLo8ToUint16().AsInt16x8()
		m[i] = mins.DotProductPairs(archsimd.LoadInt16x8((*[8]int16)(bs)))
		*(*uint32)(unsafe.Add(dm, 16*i)) = *(*uint32)(p)
		p, y, bs = unsafe.Add(p, bytesQ5_K), unsafe.Add(y, qkK), unsafe.Add(bs, 16)
	}
}

// q5KDmShift moves a block's fp16 d (lanes 0-3) or dmin (lanes 4-7) to the
// low 16 bits of a uint32 holding both.
var q5KDmShift = [8]uint32{0, 0, 0, 0, 16, 16, 16, 16}

// dot4Q5_KAVX512 is dotQ5_KAVX512 for activation vectors j0..j0+3.
func dot4Q5_KAVX512(w []byte, nrows int, a *act, j0 int, out []float32, ostride int) {
	nb := a.cols / qkK
	rb := nb * bytesQ5_K
	w = w[:nrows*rb]
	out = out[:3*ostride+nrows]
	e0 := j0 * a.cols
	qs := a.qsP[e0 : e0+4*a.cols]
	bsp := a.bsp[e0/32 : (e0+4*a.cols)/32]
	d4 := a.d4[j0/4*nb*4 : (j0/4+1)*nb*4]
	pw, py, pbs, pd := ptr(w), ptr(qs), ptr(bsp), ptr(d4)
	st, sb := a.cols, a.cols/32*2
	mask := archsimd.BroadcastUint8x64(0x0f)
	m10 := archsimd.BroadcastUint8x64(0x10)
	ch := archsimd.LoadUint16x32(&q5KShiftH)
	for r := 0; r < nrows; r++ {
		pr := unsafe.Add(pw, r*rb)
		// sum4 is carried in the low half of a 256-bit value: Go spills and
		// moves 128-bit values in X0-X15 with legacy-SSE MOVUPS (see doc.go).
		var sum8 f32x8
		for b := 0; b < nb; b++ {
			p := unsafe.Add(pr, b*bytesQ5_K)
			// Scales and mins in one 256-bit value, as in dot4Q4_KAVX512.
			e := q4KScaleE(unsafe.Add(p, 4))
			scv := e.SetHi(e.GetLo())
			sc := archsimd.Int16x32{}.SetLo(scv).SetHi(scv).AsInt8x64()
			s0 := sc.PermuteOrZeroGrouped(archsimd.LoadInt8x64(&k4Idx512[0])).AsInt16x32()
			s1 := sc.PermuteOrZeroGrouped(archsimd.LoadInt8x64(&k4Idx512[1])).AsInt16x32()
			s2 := sc.PermuteOrZeroGrouped(archsimd.LoadInt8x64(&k4Idx512[2])).AsInt16x32()
			s3 := sc.PermuteOrZeroGrouped(archsimd.LoadInt8x64(&k4Idx512[3])).AsInt16x32()
			lo01, hi01, lo23, hi23 := q5KUnpack512(unsafe.Add(p, 48), unsafe.Add(p, 16), mask, m10, ch)
			y := unsafe.Add(py, b*qkK)
			acc0 := q4KDot512(lo01, hi01, lo23, hi23, s0, s1, s2, s3, y)
			acc1 := q4KDot512(lo01, hi01, lo23, hi23, s0, s1, s2, s3, unsafe.Add(y, st))
			acc2 := q4KDot512(lo01, hi01, lo23, hi23, s0, s1, s2, s3, unsafe.Add(y, 2*st))
			acc3 := q4KDot512(lo01, hi01, lo23, hi23, s0, s1, s2, s3, unsafe.Add(y, 3*st))
			isum := transposeSum4(acc0, acc1, acc2, acc3)
			mins, bo := e.GetHi(), 16*b
			ld8 := func(off int) archsimd.Int16x8 { return archsimd.LoadInt16x8((*[8]int16)(unsafe.Add(pbs, off))) }
			imin := reduce4x4(mins.DotProductPairs(ld8(bo)), mins.DotProductPairs(ld8(bo+sb)),
				mins.DotProductPairs(ld8(bo+2*sb)), mins.DotProductPairs(ld8(bo+3*sb)))
			// The float step in 256-bit values (this kernel's register
			// pressure makes the compiler spill what it can, see above):
			// lanes 0-3 of t are (dy*d)*isum, lanes 4-7 (dy*dmin)*imin;
			// sum8's lanes 4-7 are scratch.
			dy := archsimd.LoadFloat32x4((*[4]float32)(unsafe.Add(pd, 16*b)))
			dd := archsimd.BroadcastUint32x8(*(*uint32)(p)).ShiftRight(archsimd.LoadUint32x8(&q5KDmShift))
			dd = dd.And(archsimd.BroadcastUint32x8(0xffff))
			t := archsimd.Float32x8{}.SetLo(dy).SetHi(dy).Mul(f16x8(dd))
			t = t.Mul(archsimd.Int32x8{}.SetLo(isum).SetHi(imin).ConvertToFloat32())
			sum8 = sum8.Add(t).Sub(t.Select128FromPair(1, 0, t))
		}
		store4(sum8.GetLo(), out, r, ostride)
	}
	// Return with the upper state clean (see doc.go): the caller's Go
	// code may run legacy-SSE instructions next.
	archsimd.ClearAVXUpperBits()
}

// q23Shift holds per-256-bit-half right shifts for the Q2_K/Q3_K 2-bit
// quants of a 128-element half: (0, 2) for elements 0..63, (4, 6) for
// 64..127.
var q23Shift [2][32]uint16

func init() {
	for i := 0; i < 32; i++ {
		q23Shift[0][i], q23Shift[1][i] = 0, 4
		if i >= 16 {
			q23Shift[0][i], q23Shift[1][i] = 2, 6
		}
	}
}

// dup32 returns the 32 bytes at p in both halves of a 512-bit vector.
func dup32(p unsafe.Pointer) archsimd.Uint16x32 {
	v := ldU8(p, 0)
	return archsimd.Uint8x64{}.SetLo(v).SetHi(v).AsUint16x32()
}

// dotQ2_KAVX512 works on groups of four rows, as dotQ4_KAVX512 (the float
// steps in kFinish4: Q2_K's d and dmin are one uint32 at 80).
func dotQ2_KAVX512(w []byte, nrows int, a *act, e0 int, out []float32) {
	dotQ2_K512(w, nrows, a, e0, out, false)
}

// dotQ2_K512 is dotQ2_KAVX512 with the block loop in q2KChunkVNNI if vnni
// (a flag, not the loop as a func value: that would move the accumulators
// to the heap).
func dotQ2_K512(w []byte, nrows int, a *act, e0 int, out []float32, vnni bool) {
	nb := a.cols / qkK
	rb := nb * bytesQ2_K
	w = w[:nrows*rb]
	out = out[:nrows]
	qs := a.qs[e0 : e0+a.cols]
	bsums := a.bsums[e0/16 : e0/16+nb*16]
	ds := a.d[e0/qkK : e0/qkK+nb]
	pw, py, pbs := ptr(w), ptr(qs), ptr(bsums)
	var accs [4][kChunk]archsimd.Int32x16
	var ms [4][kChunk]archsimd.Int32x4
	var dms [kChunk][4]uint32
	q, ls, gs := streamRows(nrows)
	for g := 0; g < q; g++ {
		ps := groupRows(pw, g, ls, gs, nrows, rb)
		// 256 bits, lanes 0-3 used: a zero Float32x4 is a legacy-SSE
		// MOVUPS from X15, here after the vector work of the last group.
		var sum8 f32x8
		for b0 := 0; b0 < nb; b0 += kChunk {
			n := min(kChunk, nb-b0)
			o, y, bs := b0*bytesQ2_K, unsafe.Add(py, b0*qkK), unsafe.Add(pbs, 32*b0)
			q2KChunk(vnni, unsafe.Add(ps[0], o), y, bs, n, &accs[0], &ms[0], unsafe.Pointer(&dms[0][0]))
			q2KChunk(vnni, unsafe.Add(ps[1], o), y, bs, n, &accs[1], &ms[1], unsafe.Pointer(&dms[0][1]))
			q2KChunk(vnni, unsafe.Add(ps[2], o), y, bs, n, &accs[2], &ms[2], unsafe.Pointer(&dms[0][2]))
			q2KChunk(vnni, unsafe.Add(ps[3], o), y, bs, n, &accs[3], &ms[3], unsafe.Pointer(&dms[0][3]))
			kFinish4(&accs, &ms, &dms, ds[b0:b0+n], &sum8)
		}
		storeStreams4(sum8.GetLo(), out, g*gs, ls, nrows)
	}
	// Return with the upper state clean (see doc.go): the caller's Go
	// code may run legacy-SSE instructions next.
	archsimd.ClearAVXUpperBits()
}

// q2KChunk512 computes, for the n Q2_K blocks at p and the activation
// blocks at y with block sums at bs, each block's scaled quant sums (acc),
// its mins' dot with the block sums (m) and copies its fp16 d and dmin to
// dm, as q4KChunk512.
func q2KChunk512(p, y, bs unsafe.Pointer, n int, acc *[kChunk]archsimd.Int32x16, m *[kChunk]archsimd.Int32x4, dm unsafe.Pointer) {
	m3 := archsimd.BroadcastUint8x64(3)
	m15 := archsimd.BroadcastInt16x16(15)
	c0, c1 := archsimd.LoadUint16x32(&q23Shift[0]), archsimd.LoadUint16x32(&q23Shift[1])
	for i := range acc[:n] {
		// The 16 scale bytes as int16: scales in the low nibbles, mins
		// in the high ones (256-bit values: see doc.go on 128-bit ones).
		raw := archsimd.LoadUint8x16((*[16]uint8)(p)).ExtendToUint16().AsInt16x16()
		sc16 := raw.And(m15)
		sc := archsimd.Int16x32{}.SetLo(sc16)
		h0, h1 := dup32(unsafe.Add(p, 16)), dup32(unsafe.Add(p, 48))
		v := h0.ShiftRight(c0).AsUint8x64().And(m3).DotProductPairsSaturated(ldI8x64(y, 0)).DotProductPairs(sc.Permute(archsimd.LoadUint16x32(&q6Idx512[0])))
		v = v.Add(h0.ShiftRight(c1).AsUint8x64().And(m3).DotProductPairsSaturated(ldI8x64(y, 64)).DotProductPairs(sc.Permute(archsimd.LoadUint16x32(&q6Idx512[1]))))
		v = v.Add(h1.ShiftRight(c0).AsUint8x64().And(m3).DotProductPairsSaturated(ldI8x64(y, 128)).DotProductPairs(sc.Permute(archsimd.LoadUint16x32(&q6Idx512[2]))))
		v = v.Add(h1.ShiftRight(c1).AsUint8x64().And(m3).DotProductPairsSaturated(ldI8x64(y, 192)).DotProductPairs(sc.Permute(archsimd.LoadUint16x32(&q6Idx512[3]))))
		acc[i] = v
		mn16 := raw.ShiftAllRight(4)
		mp := archsimd.LoadInt16x16((*[16]int16)(bs)).DotProductPairs(mn16)
		m[i] = mp.GetLo().Add(mp.GetHi())
		*(*uint32)(unsafe.Add(dm, 16*i)) = *(*uint32)(unsafe.Add(p, 80))
		p, y, bs = unsafe.Add(p, bytesQ2_K), unsafe.Add(y, qkK), unsafe.Add(bs, 32)
	}
}

// q3Shift[2n+h] moves, per 256-bit half, the Q3_K hmask bit of 32-element
// group j = 2h (low half) or 2h+1 (high half) of 128-element half n to bit 0.
var q3Shift [4][32]uint16

func init() {
	for n := 0; n < 2; n++ {
		for h := 0; h < 2; h++ {
			for i := 0; i < 32; i++ {
				q3Shift[2*n+h][i] = uint16(4*n + 2*h + i/16)
			}
		}
	}
}

// dotQ3_KAVX512 works on groups of four rows, as dotQ6_KAVX512 (the float
// steps in kFinish4d).
func dotQ3_KAVX512(w []byte, nrows int, a *act, e0 int, out []float32) {
	dotQ3_K512(w, nrows, a, e0, out, false)
}

// dotQ3_K512 is dotQ3_KAVX512 with the block loop in q3KChunkVNNI if vnni.
func dotQ3_K512(w []byte, nrows int, a *act, e0 int, out []float32, vnni bool) {
	nb := a.cols / qkK
	rb := nb * bytesQ3_K
	w = w[:nrows*rb]
	out = out[:nrows]
	qs := a.qs[e0 : e0+a.cols]
	bsums := a.bsums[e0/16 : e0/16+nb*16]
	ds := a.d[e0/qkK : e0/qkK+nb]
	pw, py, pbs := ptr(w), ptr(qs), ptr(bsums)
	var accs [4][kChunk]archsimd.Int32x16
	q, ls, gs := streamRows(nrows)
	for g := 0; g < q; g++ {
		ps := groupRows(pw, g, ls, gs, nrows, rb)
		// 256 bits, lanes 0-3 used: a zero Float32x4 is a legacy-SSE
		// MOVUPS from X15, here after the vector work of the last group.
		var sum8 f32x8
		for b0 := 0; b0 < nb; b0 += kChunk {
			n := min(kChunk, nb-b0)
			o, y, bs := b0*bytesQ3_K, unsafe.Add(py, b0*qkK), unsafe.Add(pbs, 32*b0)
			q3KChunk(vnni, unsafe.Add(ps[0], o), y, bs, n, &accs[0])
			q3KChunk(vnni, unsafe.Add(ps[1], o), y, bs, n, &accs[1])
			q3KChunk(vnni, unsafe.Add(ps[2], o), y, bs, n, &accs[2])
			q3KChunk(vnni, unsafe.Add(ps[3], o), y, bs, n, &accs[3])
			kFinish4d(&accs, &ps, b0*bytesQ3_K+108, bytesQ3_K, ds[b0:b0+n], &sum8)
		}
		storeStreams4(sum8.GetLo(), out, g*gs, ls, nrows)
	}
	// Return with the upper state clean (see doc.go): the caller's Go
	// code may run legacy-SSE instructions next.
	archsimd.ClearAVXUpperBits()
}

// q3KChunk512 computes, for the n Q3_K blocks at p and the activation
// blocks at y with block sums at bs, each block's integer dot (the -4
// offset included) as 16 int32 lanes.
func q3KChunk512(p, y, bs unsafe.Pointer, n int, acc *[kChunk]archsimd.Int32x16) {
	m3 := archsimd.BroadcastUint8x64(3)
	m4 := archsimd.BroadcastUint8x64(4)
	c0, c1 := archsimd.LoadUint16x32(&q23Shift[0]), archsimd.LoadUint16x32(&q23Shift[1])
	for i := range acc[:n] {
		sc16 := q3KScales(unsafe.Add(p, 96)).ExtendToInt16()
		sc := archsimd.Int16x32{}.SetLo(sc16)
		hm := dup32(p)
		q0, q1 := dup32(unsafe.Add(p, 32)), dup32(unsafe.Add(p, 64))
		// The quants are u-4 with u = q | h<<2 in 0..7.
		u := q0.ShiftRight(c0).AsUint8x64().And(m3).Or(hm.ShiftRight(archsimd.LoadUint16x32(&q3Shift[0])).ShiftAllLeft(2).AsUint8x64().And(m4))
		v := u.DotProductPairsSaturated(ldI8x64(y, 0)).DotProductPairs(sc.Permute(archsimd.LoadUint16x32(&q6Idx512[0])))
		u = q0.ShiftRight(c1).AsUint8x64().And(m3).Or(hm.ShiftRight(archsimd.LoadUint16x32(&q3Shift[1])).ShiftAllLeft(2).AsUint8x64().And(m4))
		v = v.Add(u.DotProductPairsSaturated(ldI8x64(y, 64)).DotProductPairs(sc.Permute(archsimd.LoadUint16x32(&q6Idx512[1]))))
		u = q1.ShiftRight(c0).AsUint8x64().And(m3).Or(hm.ShiftRight(archsimd.LoadUint16x32(&q3Shift[2])).ShiftAllLeft(2).AsUint8x64().And(m4))
		v = v.Add(u.DotProductPairsSaturated(ldI8x64(y, 128)).DotProductPairs(sc.Permute(archsimd.LoadUint16x32(&q6Idx512[2]))))
		u = q1.ShiftRight(c1).AsUint8x64().And(m3).Or(hm.ShiftRight(archsimd.LoadUint16x32(&q3Shift[3])).ShiftAllLeft(2).AsUint8x64().And(m4))
		v = v.Add(u.DotProductPairsSaturated(ldI8x64(y, 192)).DotProductPairs(sc.Permute(archsimd.LoadUint16x32(&q6Idx512[3]))))
		// The -4 offset: 4 * sum of scale * block sum.
		bias := archsimd.LoadInt16x16((*[16]int16)(bs)).DotProductPairs(sc16).ShiftAllLeft(2)
		acc[i] = v.Sub(archsimd.Int32x16{}.SetLo(bias))
		p, y, bs = unsafe.Add(p, bytesQ3_K), unsafe.Add(y, qkK), unsafe.Add(bs, 32)
	}
}

// dotSIMD512 is dotSIMD32 with 16-lane vectors: accumulator 0|1 holds the
// AVX2 accumulators 0 and 1 in its halves, 2|3 accumulators 2 and 3.
func dotSIMD512(a, b []float32) float32 {
	n := len(a)
	b = b[:n]
	pa, pb := ptr(a), ptr(b)
	var acc01, acc23 archsimd.Float32x16
	i := 0
	for ; i+32 <= n; i += 32 {
		acc01 = acc01.Add(ldF32x16(pa, i).Mul(ldF32x16(pb, i)))
		acc23 = acc23.Add(ldF32x16(pa, i+16).Mul(ldF32x16(pb, i+16)))
	}
	sum := storeHsum8(acc01.GetLo().Add(acc01.GetHi()).Add(acc23.GetLo().Add(acc23.GetHi())))
	var tail float32
	for ; i < n; i++ {
		tail += float32(a[i] * b[i])
	}
	return sum + tail
}

// axpySIMD512 is axpySIMD with 16-lane vectors.
func axpySIMD512(a float32, x, y []float32) {
	n := len(x)
	y = y[:n]
	px, py := ptr(x), ptr(y)
	va := archsimd.BroadcastFloat32x16(a)
	i := 0
	for ; i+16 <= n; i += 16 {
		ldF32x16(py, i).Add(va.Mul(ldF32x16(px, i))).Store((*[16]float32)(unsafe.Add(py, 4*i)))
	}
	archsimd.ClearAVXUpperBits()
	for ; i < n; i++ {
		y[i] += float32(a * x[i])
	}
}

// dotRowsSIMD512 is dotRowsGeneric with dotSIMD512's steps written out.
// Rows shorter than 32 have no vector part: their dots are the scalar
// tail alone (added to the +0 of the empty accumulators, as dotGeneric32).
func dotRowsSIMD512(q, k []float32, stride int, out []float32) {
	n := len(q)
	k = k[:(len(out)-1)*stride+n]
	if n < 32 {
		for j := range out {
			kj := k[j*stride : j*stride+n]
			var tail float32
			for i, qi := range q {
				tail += float32(qi * kj[i])
			}
			out[j] = 0 + tail
		}
		return
	}
	pq, pk := ptr(q), ptr(k)
	n32 := n &^ 31
	for j := range out {
		var acc01, acc23 archsimd.Float32x16
		for i := 0; i < n32; i += 32 {
			acc01 = acc01.Add(ldF32x16(pq, i).Mul(ldF32x16(pk, i)))
			acc23 = acc23.Add(ldF32x16(pq, i+16).Mul(ldF32x16(pk, i+16)))
		}
		sum := storeHsum8(acc01.GetLo().Add(acc01.GetHi()).Add(acc23.GetLo().Add(acc23.GetHi())))
		var tail float32
		for i := n32; i < n; i++ {
			tail += float32(q[i] * k[j*stride+i])
		}
		out[j] = sum + tail
		pk = unsafe.Add(pk, 4*stride)
	}
}

// axpyRowsSIMD512 is axpyRowsGeneric keeping chunks of 64 elements of y in
// registers across the rows (every element gets the same operations in the
// same order).
func axpyRowsSIMD512(a, x []float32, stride int, y []float32) {
	n := len(y)
	x = x[:(len(a)-1)*stride+n]
	px, py := ptr(x), ptr(y)
	i := 0
	for ; i+64 <= n; i += 64 {
		y0, y1, y2, y3 := ldF32x16(py, i), ldF32x16(py, i+16), ldF32x16(py, i+32), ldF32x16(py, i+48)
		p := unsafe.Add(px, 4*i)
		for _, aj := range a {
			va := archsimd.BroadcastFloat32x16(aj)
			y0 = y0.Add(va.Mul(ldF32x16(p, 0)))
			y1 = y1.Add(va.Mul(ldF32x16(p, 16)))
			y2 = y2.Add(va.Mul(ldF32x16(p, 32)))
			y3 = y3.Add(va.Mul(ldF32x16(p, 48)))
			p = unsafe.Add(p, 4*stride)
		}
		y0.Store((*[16]float32)(unsafe.Add(py, 4*i)))
		y1.Store((*[16]float32)(unsafe.Add(py, 4*i+64)))
		y2.Store((*[16]float32)(unsafe.Add(py, 4*i+128)))
		y3.Store((*[16]float32)(unsafe.Add(py, 4*i+192)))
	}
	for ; i+16 <= n; i += 16 {
		y0 := ldF32x16(py, i)
		p := unsafe.Add(px, 4*i)
		for _, aj := range a {
			y0 = y0.Add(archsimd.BroadcastFloat32x16(aj).Mul(ldF32x16(p, 0)))
			p = unsafe.Add(p, 4*stride)
		}
		y0.Store((*[16]float32)(unsafe.Add(py, 4*i)))
	}
	archsimd.ClearAVXUpperBits()
	for ; i < n; i++ {
		for j, aj := range a {
			y[i] += float32(aj * x[j*stride+i])
		}
	}
}

// subMaxSIMD512 is subMaxGeneric: the vector maximum equals Go's max unless
// x holds a NaN or the maximum is zero (whose sign the vector order may
// change); those cases take the generic path.
func subMaxSIMD512(x []float32) {
	n := len(x)
	if n < 16 {
		subMaxGeneric(x)
		return
	}
	px := ptr(x)
	m := ldF32x16(px, 0)
	nan := m.IsNaN().ToBits()
	i := 16
	for ; i+16 <= n; i += 16 {
		v := ldF32x16(px, i)
		nan |= v.IsNaN().ToBits()
		m = m.Max(v)
	}
	mx := hmax16(m)
	for _, v := range x[i:] {
		if v != v {
			nan = 1
		}
		mx = max(mx, v)
	}
	if nan != 0 || mx == 0 {
		subMaxGeneric(x)
		return
	}
	vm := archsimd.BroadcastFloat32x16(mx)
	for i = 0; i+16 <= n; i += 16 {
		ldF32x16(px, i).Sub(vm).Store((*[16]float32)(unsafe.Add(px, 4*i)))
	}
	archsimd.ClearAVXUpperBits()
	for ; i < n; i++ {
		x[i] -= mx
	}
}

// mulScaleSIMD512 is mulScaleGeneric with 16-lane vectors.
func mulScaleSIMD512(dst, x, w []float32, scale float32) {
	n := len(dst)
	x, w = x[:n], w[:n]
	pd, px, pw := ptr(dst), ptr(x), ptr(w)
	vs := archsimd.BroadcastFloat32x16(scale)
	i := 0
	for ; i+16 <= n; i += 16 {
		ldF32x16(px, i).Mul(vs).Mul(ldF32x16(pw, i)).Store((*[16]float32)(unsafe.Add(pd, 4*i)))
	}
	archsimd.ClearAVXUpperBits()
	for ; i < n; i++ {
		dst[i] = float32(x[i]*scale) * w[i]
	}
}

// sumWordsSIMD512 is sumWordsGeneric with four 512-bit accumulators, so a
// thread keeps 256 bytes of loads in flight per iteration (wrapping 32-bit
// lane sums; their total equals the generic sum modulo 2^32).
func sumWordsSIMD512(b []byte) uint32 {
	n := len(b) &^ 255
	var a0, a1, a2, a3 archsimd.Uint32x16
	if n > 0 {
		p := ptr(b)
		for i := 0; i < n; i += 256 {
			a0 = a0.Add(archsimd.LoadUint32x16((*[16]uint32)(unsafe.Add(p, i))))
			a1 = a1.Add(archsimd.LoadUint32x16((*[16]uint32)(unsafe.Add(p, i+64))))
			a2 = a2.Add(archsimd.LoadUint32x16((*[16]uint32)(unsafe.Add(p, i+128))))
			a3 = a3.Add(archsimd.LoadUint32x16((*[16]uint32)(unsafe.Add(p, i+192))))
		}
	}
	// Reduced in vectors: a zeroed array to store the lanes to would be
	// cleared with a legacy-SSE MOVUPS while the upper state is dirty.
	v := a0.Add(a1).Add(a2.Add(a3))
	h := v.GetLo().Add(v.GetHi())
	q := h.GetLo().Add(h.GetHi())
	s := q.GetElem(0) + q.GetElem(1) + q.GetElem(2) + q.GetElem(3)
	archsimd.ClearAVXUpperBits()
	return s + sumWordsGeneric(b[n:])
}
