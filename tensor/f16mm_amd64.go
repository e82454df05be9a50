//go:build goexperiment.simd && amd64

package tensor

import (
	"simd/archsimd"
	"sync"
	"unsafe"
)

// Float weights (F16, BF16, F32). Rows are converted to float32 exactly
// (F16 with F16C's VCVTPH2PS, cvtF16x8; BF16 by a shift) and multiplied by
// dotF32Ptr, whose lanes and order are dotF16SIMD's and dotBF16SIMD's (and
// the generic kernels': 32 lanes, finishAcc4, the tail in order), so the
// results are bit-identical. A batch converts a block of rows once and
// multiplies it with every vector in register tiles of two rows by four
// vectors (mmF32Rows, f32tile_amd64.s): multiply and add rounded
// separately, as the pure-Go kernels, which bounds a core at 16
// multiply-adds a cycle, where llama.cpp's FMA kernels have 32.
// History (BENCHMARKS): dotF16SIMD converted in archsimd code (about ten
// operations for eight values) and a batch converted every row once per
// vector: bench-dense F16 ran at 0.10× llama.cpp's prefill and 0.28× its
// decode; with VCVTPH2PS and one dot per row and vector, 0.32× and 1.00×.

var f16ScratchPool = sync.Pool{New: func() any { return new([]float32) }}

// dotF16C is dotF16SIMD with F16C conversion, one row at a time: with
// AVX-512 straight from the row in the dot's loop (dotF16Row), else into a
// scratch row first.
func dotF16C(w []byte, nrows int, a *act, e0 int, out []float32) {
	n := a.cols
	if n%8 != 0 {
		dotF16SIMD(w, nrows, a, e0, out)
		return
	}
	x := a.f[e0 : e0+n]
	w = w[:nrows*2*n]
	out = out[:nrows]
	if hasAVX512 && n%32 == 0 {
		for r := range out {
			out[r] = dotF16Row(&w[2*n*r], &x[0], n)
		}
		return
	}
	sp := f16ScratchPool.Get().(*[]float32)
	buf := grow(*sp, n)
	for r := range out {
		cvtF16x8(&buf[0], &w[2*n*r], n)
		out[r] = dotF32Ptr(ptr(buf), ptr(x), buf, x, n)
	}
	*sp = buf
	f16ScratchPool.Put(sp)
}

// dotF16Row is one F16 row's dot with x over its first n32 elements (a
// positive multiple of 32), converted with VCVTPH2PS inside the loop, in
// dotF32Ptr's lanes and order (f32tile_amd64.s; AVX-512).
//
//go:noescape
func dotF16Row(w *byte, x *float32, n32 int) float32

// mmF16C multiplies nrows F16 rows with vectors 0..ncols-1 into
// out[j*ostride + r]: a block of rows is converted once for all vectors
// and multiplied by mmF32Rows, whatever the row length (Qwen2.5-VL's
// feed-forward length, 3420, and 14-pixel patches, 588, are not multiples
// of 8: they took one dot per row and vector before, 4x slower).
func mmF16C(w []byte, nrows int, a *act, ncols int, out []float32, ostride int) {
	n := a.cols
	w = w[:nrows*2*n]
	mmConverted(nrows, a, ncols, out, ostride, func(r0, r1 int, buf []float32) {
		cvtF16F16C(w[2*n*r0:2*n*r1], buf[:(r1-r0)*n]) // rows are contiguous: any n
	})
}

// mmBF16 is mmF16C for BF16 rows (converted by bf16Rows): the lanes and
// order of dotBF16SIMD, which are dotF32Ptr's, so bit-identical to it.
func mmBF16(w []byte, nrows int, a *act, ncols int, out []float32, ostride int) {
	n := a.cols
	w = w[:nrows*2*n]
	mmConverted(nrows, a, ncols, out, ostride, func(r0, r1 int, buf []float32) {
		bf16Rows(w[2*n*r0:2*n*r1], buf[:(r1-r0)*n])
	})
}

// mmF32 is the batched product of F32 rows, multiplied in place by
// mmF32Rows a block of convBlockFloats at a time (the block stays in the L2
// cache while all vectors pass it): bit-identical to dotF32SIMD, which is
// dotF32Ptr per row.
func mmF32(w []byte, nrows int, a *act, ncols int, out []float32, ostride int) {
	n := a.cols
	rows := unsafe.Slice((*float32)(ptr(w)), len(w)/4)[:nrows*n]
	xs := a.f[:ncols*n]
	out = out[:(ncols-1)*ostride+nrows]
	rblk := max(2, convBlockFloats/n)
	for r0 := 0; r0 < nrows; r0 += rblk {
		r1 := min(r0+rblk, nrows)
		mmF32Rows(rows[r0*n:r1*n], r1-r0, xs, ncols, n, out[r0:], ostride)
	}
}

// bf16Rows converts the bfloat16 values of h to float32 (exact: the 16 bits
// above 16 zero bits).
func bf16Rows(h []byte, out []float32) {
	h = h[:2*len(out)]
	i := 0
	for ; i+16 <= len(out); i += 16 {
		v := archsimd.LoadUint16x16((*[16]uint16)(unsafe.Pointer(&h[2*i]))).ExtendToUint32().ShiftAllLeft(16)
		v.Store((*[16]uint32)(unsafe.Pointer(&out[i])))
	}
	for ; i < len(out); i++ {
		out[i] = bf16ToF32(le16(h[2*i:]))
	}
	archsimd.ClearAVXUpperBits()
}

// convBlockFloats is the size of the float32 block of converted rows that
// mmConverted multiplies with every vector while it is in the L2 cache.
const convBlockFloats = 64 << 10

// mmConverted runs a batched product over rows converted to float32 a block
// at a time by conv(r0, r1, buf) (rows r0..r1-1 into buf): each block is
// converted once and multiplied with all ncols vectors (a.f) by mmF32Rows.
func mmConverted(nrows int, a *act, ncols int, out []float32, ostride int, conv func(r0, r1 int, buf []float32)) {
	n := a.cols
	xs := a.f[:ncols*n]
	out = out[:(ncols-1)*ostride+nrows]
	rblk := max(2, convBlockFloats/n)
	sp := f16ScratchPool.Get().(*[]float32)
	buf := grow(*sp, min(rblk, nrows)*n)
	for r0 := 0; r0 < nrows; r0 += rblk {
		r1 := min(r0+rblk, nrows)
		conv(r0, r1, buf)
		mmF32Rows(buf[:(r1-r0)*n], r1-r0, xs, ncols, n, out[r0:], ostride)
	}
	*sp = buf
	f16ScratchPool.Put(sp)
}

// f32Tile2x4 computes eight dots, rows r and r+stride bytes by the vectors
// x, x+stride, x+2·stride, x+3·stride, over their first n32 elements (a
// positive multiple of 32) in dotF32Ptr's lanes and order (no FMA). The
// accumulators start from acc with tileLoad in mode, else from zero; with
// tileFinish row i by vector j goes to out + j·ostride + 4i bytes, else the
// accumulators go to acc, so a long dot can be run in stretches with the
// same bits (f32tile_amd64.s).
//
//go:noescape
func f32Tile2x4(r *float32, x *float32, stride, n32 int, out *float32, ostride int, acc *[256]float32, mode int)

// f32Tile2x4's modes.
const (
	tileLoad   = 1 // start from the accumulators in acc
	tileFinish = 2 // finish the dots into out (else store them to acc)
)

// f32TileK is the stretch of a dot that f32Tile2x4 runs at a time when rows
// are longer: four vectors' stretches (16 KiB) stay in the L1 cache while
// every row pair of a block passes them. Whole rows of 2,048 and 3,072
// elements did not fit beside the rows' stream and ran at 32-34 GMAC/s on
// one EPYC core, against 49 at 1,024 (BenchmarkFloatTile; BENCHMARKS.md).
const f32TileK = 1024

var tileAccPool = sync.Pool{New: func() any { return new([][256]float32) }}

// hasAVX512 says whether the CPU runs the AVX-512 assembly of this file
// (f32Tile2x4, dotF16Row).
var hasAVX512 = hasSIMD && archsimd.X86.AVX512()

// useF32Tile says whether mmF32Rows uses f32Tile2x4 (hasAVX512; a variable
// for the tests).
var useF32Tile = hasAVX512

// mmF32Rows sets out[j*ostride+r] = dotF32Ptr(row r, vector j) for the nr
// rows of n floats in rows and the ncols vectors of n floats in xs. With
// AVX-512 it runs tiles of two rows by four vectors with their 16 sums of
// 16 lanes in registers (f32Tile2x4: the vectors of a tile stay in the L1
// cache while every row pair of the block passes; rows longer than f32TileK
// in stretches of it, the accumulators kept in between), then adds the tail
// elements past the last multiple of 32 in order, as dotF32Ptr does; the
// remaining rows and vectors go one dot at a time.
func mmF32Rows(rows []float32, nr int, xs []float32, ncols, n int, out []float32, ostride int) {
	rows, xs = rows[:nr*n], xs[:ncols*n]
	out = out[:(ncols-1)*ostride+nr]
	n32 := n &^ 31
	j := 0
	if useF32Tile && n32 > 0 && nr >= 2 {
		var accs [][256]float32
		if n32 > f32TileK {
			ap := tileAccPool.Get().(*[][256]float32)
			defer tileAccPool.Put(ap)
			*ap = grow(*ap, nr/2)
			accs = *ap
		}
		for ; j+4 <= ncols; j += 4 {
			for k0 := 0; k0 < n32; k0 += f32TileK {
				k1 := min(k0+f32TileK, n32)
				mode := 0
				if k0 > 0 {
					mode |= tileLoad
				}
				if k1 == n32 {
					mode |= tileFinish
				}
				for i := 0; i+2 <= nr; i += 2 {
					var acc *[256]float32
					if accs != nil {
						acc = &accs[i/2]
					}
					f32Tile2x4(&rows[i*n+k0], &xs[j*n+k0], 4*n, k1-k0, &out[j*ostride+i], 4*ostride, acc, mode)
				}
			}
			i := 0
			for ; i+2 <= nr; i += 2 {
				if n32 < n {
					for c := 0; c < 8; c++ {
						row, x := rows[(i+c%2)*n:(i+c%2+1)*n], xs[(j+c/2)*n:(j+c/2+1)*n]
						var tail float32
						for k := n32; k < n; k++ {
							tail += float32(row[k] * x[k])
						}
						out[(j+c/2)*ostride+i+c%2] += tail
					}
				}
			}
			for ; i < nr; i++ {
				row := rows[i*n : (i+1)*n]
				for jj := j; jj < j+4; jj++ {
					x := xs[jj*n : (jj+1)*n]
					out[jj*ostride+i] = dotF32Ptr(ptr(row), ptr(x), row, x, n)
				}
			}
		}
	}
	for ; j < ncols; j++ {
		x := xs[j*n : (j+1)*n]
		o := out[j*ostride : j*ostride+nr]
		for i := range o {
			row := rows[i*n : (i+1)*n]
			o[i] = dotF32Ptr(ptr(row), ptr(x), row, x, n)
		}
	}
}
