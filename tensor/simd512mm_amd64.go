//go:build goexperiment.simd && amd64

package tensor

import (
	"simd/archsimd"
	"sync"
	"unsafe"
)

// Batched (prefill) K-quant kernels on repacked groups of 16 weight rows.
//
// A group's quants are unpacked to bytes and interleaved so that one 64-byte
// vector holds 8 consecutive quants of each of 8 rows (see above scaleSlot); a product
// with an activation vector multiplies it by the 8 matching activations
// broadcast to every lane, and each pair of int32 lanes accumulates one row:
// no horizontal sums over a block, just one pairwise gather at its end. The
// VPMADDUBSW pair sums of 16 elements are added in int16, then multiplied by
// the rows' sub-block scales (VPMADDWD). The float steps of kAcc then run on
// the 16 row lanes (the same operations in the same order per row as the
// generic kernels). The repacking costs about as much as a few vectors'
// products, so the kernels want large batches: below tileMinVecsQ4K and
// tileMinVecsQ6K vectors the eight- and four-vector kernels (dot4Rows) are
// faster.

// tileRows is the number of weight rows in a repacked group.
const tileRows = 16

// The batch sizes from which the repacking kernels pay, measured on 1024×1024
// weights in cache (BenchmarkKernels' shape) against dot4Rows with the
// eight-vector kernels: ns per block and vector at 16/24/32/48/64 vectors,
// Q4_K tiled 7.8/6.3/5.4/4.5/4.2 vs 4.8/4.7/4.7/4.7/4.8, Q6_K tiled
// 7.8/6.2/5.3/4.6/4.4 vs 5.4/5.5/5.7/5.8/5.8 (2026-12-07, Xeon VM;
// BenchmarkBatchKernels).
const (
	tileMinVecsQ4K = 40
	tileMinVecsQ6K = 32
)

// kPack is one repacked group of 16 rows of nb blocks (rows past the end of
// the matrix are zero).
type kPack struct {
	q       []byte    // [b][256*16 quants, see the layout above scaleSlot]: Q4_K 0..15, Q6_K 0..63
	sc      []int16   // [b][16*64, see scaleSlot]: scales of 16 elements
	mn      []int16   // Q4_K: [b][4 pairs][16 rows][2]: mins 2i and 2i+1 (Q6_K: see packQ6K)
	dx, dmx []float32 // [b][16 rows]
}

func (pk *kPack) size(nb int) {
	pk.q = grow(pk.q, nb*qkK*tileRows)
	pk.sc = grow(pk.sc, nb*16*4*tileRows)
	pk.mn = grow(pk.mn, nb*8*2*tileRows)
	pk.dx = grow(pk.dx, nb*tileRows)
	pk.dmx = grow(pk.dmx, nb*tileRows)
}

// packQ4K repacks rows r0..r0+nr-1 (nr <= 16) of the Q4_K rows in w.
func packQ4K(w []byte, rb, r0, nr, nb int, pk *kPack) {
	mask := archsimd.BroadcastUint8x64(0x0f)
	if nr < tileRows {
		clear(pk.q)
		clear(pk.sc)
		clear(pk.mn)
		clear(pk.dx)
		clear(pk.dmx)
	}
	// Declared here, not in the loop: zeroing it there would take
	// legacy-SSE MOVUPS stores between vector instructions (see doc.go).
	var t [4][8]uint64
	for r := 0; r < nr; r++ {
		row := w[(r0+r)*rb : (r0+r+1)*rb]
		for b := 0; b < nb; b++ {
			blk := row[b*bytesQ4_K : (b+1)*bytesQ4_K]
			scU, mnU := q4KScales64(ptr(blk[4:16]))
			s := unsafe.Slice((*uint64)(ptr(pk.sc[b*1024:])), 256)
			for h := 0; h < 16; h++ {
				s[scaleSlot(h, r)/4] = uint64(uint8(scU>>(8*(h/2)))) * 0x0001000100010001
			}
			m := unsafe.Slice((*uint32)(ptr(pk.mn[b*128:])), 64)
			for i := 0; i < 4; i++ {
				m[i*16+r] = uint32(uint8(mnU>>(16*i))) | uint32(uint8(mnU>>(16*i+8)))<<16
			}
			f16Store(&pk.dx[b*tileRows+r], le16(blk))
			f16Store(&pk.dmx[b*tileRows+r], le16(blk[2:]))
			q := unsafe.Slice((*uint64)(ptr(pk.q[b*qkK*tileRows:])), 32*tileRows)
			// Low nibbles of bytes 0..63: sub-blocks 0 and 2 (quads 0..7
			// and 16..23), high nibbles: 1 and 3; bytes 64..127: 4 to 7.
			q01 := archsimd.LoadUint8x64((*[64]uint8)(blk[16:80]))
			q23 := archsimd.LoadUint8x64((*[64]uint8)(blk[80:144]))
			q01.And(mask).AsUint64x8().Store(&t[0])
			q01.AsInt16x32().ShiftAllRight(4).AsUint8x64().And(mask).AsUint64x8().Store(&t[1])
			q23.And(mask).AsUint64x8().Store(&t[2])
			q23.AsInt16x32().ShiftAllRight(4).AsUint8x64().And(mask).AsUint64x8().Store(&t[3])
			// Quads Q and Q+1 (Q even) of row r: uint64 Q*8 + r (see above scaleSlot).
			for k, base := range [4]int{0, 8, 32, 40} {
				for i, v := range t[k][:4] {
					q[(base+2*i)*8+r] = v
				}
				for i, v := range t[k][4:] {
					q[(base+16+2*i)*8+r] = v
				}
			}
		}
	}
}

// A packed block holds its quads (4 elements) in steps of 8 elements: for
// each step, rows 0-7 then rows 8-15, two quads per row; quad Q of row r is
// uint32 number ((Q>>1*2 + r/8)*8 + r%8)*2 + Q&1, so quads Q, Q+1 (Q even)
// are uint64 number Q*8 + r. One activation broadcast of 8 bytes then serves
// a whole vector of quads.

// scaleSlot is the first of the four int16 copies of row r's scale for
// elements 16h..16h+15 (matching the quads' lanes) in a packed block.
func scaleSlot(h, r int) int { return ((h*2+r/8)*8 + r%8) * 4 }

// pairIdx gathers the per-row sums of the two-quad lanes of a packed
// block's accumulators (rows 0-7, rows 8-15): even and odd lanes.
var pairIdx = func() (p [2][16]uint32) {
	for i := range p[0] {
		p[0][i] = uint32(2 * i)
		p[1][i] = uint32(2*i + 1)
	}
	return
}()

// storeRows16 writes the first nr lanes of v to out[r0:].
func storeRows16(v archsimd.Float32x16, out []float32, r0, nr int) {
	if nr == tileRows {
		v.Store((*[16]float32)(out[r0 : r0+16]))
		return
	}
	var o [16]float32
	v.Store(&o)
	copy(out[r0:r0+nr], o[:nr])
}

// dot4Rows runs a four-vector kernel over ncols vectors (a multiple of 4)
// a block of rows at a time, so that the batch's vector groups all pass
// over a block while it is in the L1/L2 cache: group by group over all the
// rows, a batch of 16 decoding sequences read the weights from memory four
// times a step. dot8, if not nil, does eight vectors from j0 and is used
// while eight are left.
func dot4Rows(dot4, dot8 rows4Func, w []byte, rb, nrows int, a *act, ncols int, out []float32, ostride int) {
	rblk := max(1, rowBlockBytes/rb)
	for r0 := 0; r0 < nrows; r0 += rblk {
		r1 := min(r0+rblk, nrows)
		for j := 0; j < ncols; {
			if dot8 != nil && j+8 <= ncols {
				dot8(w[r0*rb:r1*rb], r1-r0, a, j, out[j*ostride+r0:], ostride)
				j += 8
				continue
			}
			dot4(w[r0*rb:r1*rb], r1-r0, a, j, out[j*ostride+r0:], ostride)
			j += 4
		}
	}
}

// tileSet holds the repacked groups and the vector sums of a tiled product.
type tileSet struct {
	packs []kPack
	sums  []archsimd.Float32x16
}

var tileSetPool = sync.Pool{New: func() any { return new(tileSet) }}

// Cache budgets of the tiled products: the repacked groups of a set of rows
// and a chunk of activation vectors stay in the L2 cache while every vector
// of the chunk passes over every group, and a run of blocks of one packed
// group stays in the L1 cache while the chunk's vectors pass over it.
const (
	tilePackBytes  = 256 << 10
	tileVecBytes   = 192 << 10
	tileBlockBytes = 24 << 10
)

// tiledK runs a repacking batched kernel: rows in sets of groups of 16
// (pack repacks a group), activation vectors in chunks, blocks in runs;
// dot(pk, j, b0, b1, sum) adds blocks b0..b1-1 of the 16 rows of a group
// times vector j to *sum, in block order.
func tiledK(nrows, cols, ncols int, out []float32, ostride int, pack func(r0, nr int, pk *kPack), dot func(pk *kPack, j, b0, b1 int, sum *archsimd.Float32x16)) {
	nb := cols / qkK
	groups := max(1, tilePackBytes/(tileRows*cols))
	vecs := max(8, tileVecBytes/cols)
	run := max(1, tileBlockBytes/(tileRows*qkK*3/2)) // quants and scales
	ts := tileSetPool.Get().(*tileSet)
	if len(ts.packs) < groups {
		ts.packs = append(ts.packs, make([]kPack, groups-len(ts.packs))...)
	}
	ts.sums = grow(ts.sums, vecs)
	packs, sums := ts.packs[:groups], ts.sums
	for rs := 0; rs < nrows; rs += groups * tileRows {
		ng := min(groups, (nrows-rs+tileRows-1)/tileRows)
		for g := range packs[:ng] {
			packs[g].size(nb)
			pack(rs+g*tileRows, min(tileRows, nrows-rs-g*tileRows), &packs[g])
		}
		for j0 := 0; j0 < ncols; j0 += vecs {
			j1 := min(j0+vecs, ncols)
			for g := range packs[:ng] {
				clear(sums[:j1-j0])
				for b0 := 0; b0 < nb; b0 += run {
					b1 := min(b0+run, nb)
					for j := j0; j < j1; j++ {
						dot(&packs[g], j, b0, b1, &sums[j-j0])
					}
				}
				r0 := rs + g*tileRows
				nr := min(tileRows, nrows-r0)
				for j := j0; j < j1; j++ {
					storeRows16(sums[j-j0], out[j*ostride:], r0, nr)
				}
			}
		}
	}
	// The upper state clean before the runtime code of Put and the caller's
	// (see doc.go).
	archsimd.ClearAVXUpperBits()
	tileSetPool.Put(ts)
}

func mmQ4_KAVX512(w []byte, nrows int, a *act, ncols int, out []float32, ostride int) {
	if ncols < tileMinVecsQ4K {
		dot4Rows(dot4Q4_KAVX512, dot8Q4_KAVX512, w, a.cols/qkK*bytesQ4_K, nrows, a, ncols, out, ostride)
		return
	}
	mmQ4_KTiled(w, nrows, a, ncols, out, ostride)
}

// mmQ4_KTiled is mmQ4_KAVX512's repacking path (any ncols a multiple of 4).
func mmQ4_KTiled(w []byte, nrows int, a *act, ncols int, out []float32, ostride int) {
	nb := a.cols / qkK
	rb := nb * bytesQ4_K
	w = w[:nrows*rb]
	out = out[:(ncols-1)*ostride+nrows]
	qs := a.qs[:ncols*a.cols]
	bsp := a.bsp[:ncols*a.cols/32]
	ds := a.d[:ncols*nb]
	tiledK(nrows, a.cols, ncols, out, ostride,
		func(r0, nr int, pk *kPack) { packQ4K(w, rb, r0, nr, nb, pk) },
		func(pk *kPack, j, b0, b1 int, sum *archsimd.Float32x16) {
			e := j*a.cols + b0*qkK
			q4KPackedDot(pk, b0, ptr(qs[e:]), ptr(bsp[e/32:]), ds[j*nb+b0:j*nb+b1], sum)
		})
}

// kMinsStep is one Q4_K block's float step for 16 packed rows: the mins'
// dot with the pair sums at bs, then kAcc's two steps on the row lanes.
func kMinsStep(sum archsimd.Float32x16, acc archsimd.Int32x16, pmn, bs, pdx, pdm unsafe.Pointer, d float32) archsimd.Float32x16 {
	mn := archsimd.LoadInt16x32((*[32]int16)(pmn)).DotProductPairs(archsimd.BroadcastInt32x16(*(*int32)(bs)).AsInt16x32())
	mn = mn.Add(archsimd.LoadInt16x32((*[32]int16)(unsafe.Add(pmn, 64))).DotProductPairs(archsimd.BroadcastInt32x16(*(*int32)(unsafe.Add(bs, 4))).AsInt16x32()))
	mn = mn.Add(archsimd.LoadInt16x32((*[32]int16)(unsafe.Add(pmn, 128))).DotProductPairs(archsimd.BroadcastInt32x16(*(*int32)(unsafe.Add(bs, 8))).AsInt16x32()))
	mn = mn.Add(archsimd.LoadInt16x32((*[32]int16)(unsafe.Add(pmn, 192))).DotProductPairs(archsimd.BroadcastInt32x16(*(*int32)(unsafe.Add(bs, 12))).AsInt16x32()))
	dy := archsimd.BroadcastFloat32x16(d)
	sum = sum.Add(dy.Mul(archsimd.LoadFloat32x16((*[16]float32)(pdx))).Mul(acc.ConvertToFloat32()))
	return sum.Sub(dy.Mul(archsimd.LoadFloat32x16((*[16]float32)(pdm))).Mul(mn.ConvertToFloat32()))
}

// packedBlockDot returns the integer dots of a packed block (quants at q,
// scales at sc, see the layout above scaleSlot and scaleSlot) with the activation block at y
// as one int32 lane per row. The VPMADDUBSW sums of two 8-element steps are
// added in int16 (at most 2 * 2*63*127 = 32004 in magnitude) and scaled.
func packedBlockDot(q, y, sc unsafe.Pointer) archsimd.Int32x16 {
	var lo, hi archsimd.Int32x16 // rows 0-7 and 8-15, two lanes each
	for end := unsafe.Add(q, qkK*tileRows); q != end; {
		// Written out in order (see q6KChunk512): 16 elements, two steps
		// of 8 (with more values live at a time the compiler spills).
		v := archsimd.BroadcastUint64x8(*(*uint64)(y)).AsInt8x64()
		s := archsimd.LoadUint8x64((*[64]uint8)(q)).DotProductPairsSaturated(v)
		t := archsimd.LoadUint8x64((*[64]uint8)(unsafe.Add(q, 64))).DotProductPairsSaturated(v)
		v = archsimd.BroadcastUint64x8(*(*uint64)(unsafe.Add(y, 8))).AsInt8x64()
		s = s.Add(archsimd.LoadUint8x64((*[64]uint8)(unsafe.Add(q, 128))).DotProductPairsSaturated(v))
		t = t.Add(archsimd.LoadUint8x64((*[64]uint8)(unsafe.Add(q, 192))).DotProductPairsSaturated(v))
		lo = lo.Add(s.DotProductPairs(archsimd.LoadInt16x32((*[32]int16)(sc))))
		hi = hi.Add(t.DotProductPairs(archsimd.LoadInt16x32((*[32]int16)(unsafe.Add(sc, 64)))))
		q, y, sc = unsafe.Add(q, 256), unsafe.Add(y, 16), unsafe.Add(sc, 128)
	}
	return lo.ConcatPermute(hi, archsimd.LoadUint32x16(&pairIdx[0])).Add(lo.ConcatPermute(hi, archsimd.LoadUint32x16(&pairIdx[1])))
}

// q4KPackedDot returns the dots of the 16 packed rows with the activation
// vector whose quants are at y and pair sums at bs, with block scales ds.
func q4KPackedDot(pk *kPack, b0 int, y, bs unsafe.Pointer, ds []float32, psum *archsimd.Float32x16) {
	pq, psc, pmn := ptr(pk.q[b0*qkK*tileRows:]), ptr(pk.sc[b0*1024:]), ptr(pk.mn[b0*128:])
	pdx, pdm := ptr(pk.dx[b0*tileRows:]), ptr(pk.dmx[b0*tileRows:])
	sum := *psum
	for _, d := range ds {
		acc := packedBlockDot(pq, y, psc)
		sum = kMinsStep(sum, acc, pmn, bs, pdx, pdm, d)
		pq, psc, pmn = unsafe.Add(pq, qkK*tileRows), unsafe.Add(psc, 1024*2), unsafe.Add(pmn, 4*2*tileRows*2)
		pdx, pdm = unsafe.Add(pdx, tileRows*4), unsafe.Add(pdm, tileRows*4)
		y, bs = unsafe.Add(y, qkK), unsafe.Add(bs, 16)
	}
	*psum = sum
}

// packQ6K repacks rows r0..r0+nr-1 (nr <= 16) of the Q6_K rows in w: quants
// 0..63 (the -32 offset is subtracted through the block sums), scales
// sign-extended, and the scale pairs for the offset ([b][8 pairs][16
// rows][2], in mn).
func packQ6K(w []byte, rb, r0, nr, nb int, pk *kPack) {
	m4 := archsimd.BroadcastUint8x64(0x0f)
	m30 := archsimd.BroadcastUint8x64(0x30)
	shlA := archsimd.LoadUint16x32(&q6ShlA)
	shrB := archsimd.LoadUint16x32(&q6ShrB)
	if nr < tileRows {
		clear(pk.q)
		clear(pk.sc)
		clear(pk.mn)
		clear(pk.dx)
	}
	var t [2][8]uint64 // see packQ4K
	for r := 0; r < nr; r++ {
		row := w[(r0+r)*rb : (r0+r+1)*rb]
		for b := 0; b < nb; b++ {
			blk := row[b*bytesQ6_K : (b+1)*bytesQ6_K]
			s := unsafe.Slice((*uint64)(ptr(pk.sc[b*1024:])), 256)
			m := pk.mn[b*256:]
			for g := 0; g < 16; g++ {
				v := int16(int8(blk[192+g]))
				s[scaleSlot(g, r)/4] = uint64(uint16(v)) * 0x0001000100010001
				m[(g/2)*32+2*r+g%2] = v
			}
			f16Store(&pk.dx[b*tileRows+r], le16(blk[208:]))
			q := unsafe.Slice((*uint64)(ptr(pk.q[b*qkK*tileRows:])), 32*tileRows)
			for n := 0; n < 2; n++ {
				// Elements 128n..128n+63 and 128n+64..128n+127, in order;
				// quads Q and Q+1 (Q even) of row r: uint64 Q*8 + r.
				x, z := q6Half512(ptr(blk), n, m4, m30, shlA, shrB)
				x.AsUint64x8().Store(&t[0])
				z.AsUint64x8().Store(&t[1])
				// Ranging over slices: a range over the arrays copies them
				// with legacy-SSE MOVUPS.
				for i, v := range t[0][:] {
					q[(32*n+2*i)*8+r] = v
				}
				for i, v := range t[1][:] {
					q[(32*n+16+2*i)*8+r] = v
				}
			}
		}
	}
}

func mmQ6_KAVX512(w []byte, nrows int, a *act, ncols int, out []float32, ostride int) {
	if ncols < tileMinVecsQ6K {
		dot4Rows(dot4Q6_KAVX512, dot8Q6_KAVX512, w, a.cols/qkK*bytesQ6_K, nrows, a, ncols, out, ostride)
		return
	}
	mmQ6_KTiled(w, nrows, a, ncols, out, ostride)
}

// mmQ6_KTiled is mmQ6_KAVX512's repacking path (any ncols a multiple of 4).
func mmQ6_KTiled(w []byte, nrows int, a *act, ncols int, out []float32, ostride int) {
	nb := a.cols / qkK
	rb := nb * bytesQ6_K
	w = w[:nrows*rb]
	out = out[:(ncols-1)*ostride+nrows]
	qs := a.qs[:ncols*a.cols]
	bsums := a.bsums[:ncols*a.cols/16]
	ds := a.d[:ncols*nb]
	tiledK(nrows, a.cols, ncols, out, ostride,
		func(r0, nr int, pk *kPack) { packQ6K(w, rb, r0, nr, nb, pk) },
		func(pk *kPack, j, b0, b1 int, sum *archsimd.Float32x16) {
			e := j*a.cols + b0*qkK
			q6KPackedDot(pk, b0, ptr(qs[e:]), ptr(bsums[e/16:]), ds[j*nb+b0:j*nb+b1], sum)
		})
}

// q6KPackedDot is q4KPackedDot for Q6_K: the -32 offset is subtracted as
// 32 * sum of scale * block sum (bs: the 16 block sums).
func q6KPackedDot(pk *kPack, b0 int, y, bs unsafe.Pointer, ds []float32, psum *archsimd.Float32x16) {
	pq, psc, pmn, pdx := ptr(pk.q[b0*qkK*tileRows:]), ptr(pk.sc[b0*1024:]), ptr(pk.mn[b0*256:]), ptr(pk.dx[b0*tileRows:])
	sum := *psum
	for _, d := range ds {
		acc := packedBlockDot(pq, y, psc)
		m, b := pmn, bs
		var bias archsimd.Int32x16
		for i := 0; i < 8; i++ {
			bias = bias.Add(archsimd.LoadInt16x32((*[32]int16)(m)).DotProductPairs(archsimd.BroadcastInt32x16(*(*int32)(b)).AsInt16x32()))
			m, b = unsafe.Add(m, 64), unsafe.Add(b, 4)
		}
		acc = acc.Sub(bias.ShiftAllLeft(5))
		sum = sum.Add(archsimd.BroadcastFloat32x16(d).Mul(archsimd.LoadFloat32x16((*[16]float32)(pdx))).Mul(acc.ConvertToFloat32()))
		pq, psc, pmn, pdx = unsafe.Add(pq, qkK*tileRows), unsafe.Add(psc, 1024*2), unsafe.Add(pmn, 8*2*tileRows*2), unsafe.Add(pdx, tileRows*4)
		y, bs = unsafe.Add(y, qkK), unsafe.Add(bs, 32)
	}
	*psum = sum
}
