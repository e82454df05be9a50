//go:build goexperiment.simd && amd64

#include "textflag.h"
#include "tile_amd64.h"

// The register-tiled attention kernels (attnScoresTile, attnPVTile): Go's
// register allocator gives archsimd code 15 vector registers, and tiles
// this size need 30 of AVX-512's 32.

// One score's 16 lanes finished as dot16 does: lane l + lane l+8, then
// hsum8 ((v0+v4 + v2+v6) + (v1+v5 + v3+v7)), stored at dst.
#define FINISH16(za, ya, xa, dst) \
	VEXTRACTF64X4 $1, za, Y26; \
	VADDPS        Y26, ya, ya; \
	VEXTRACTF32X4 $1, ya, X26; \
	VADDPS        X26, xa, xa; \
	VPERMILPS     $0xEE, xa, X26; \
	VADDPS        X26, xa, xa; \
	VPERMILPS     $0x55, xa, X26; \
	VADDSS        X26, xa, xa; \
	VMOVSS        xa, dst

// One key's 16 elements (from base+AX into kz) times both queries' (Z16,
// Z17), added to the key's two accumulators: multiply, then add, each
// rounded (no FMA), as dot16.
#define KEY(base, kz, t0, t1, a0, a1) \
	VMOVUPS (base)(AX*1), kz; \
	VMULPS  kz, Z16, t0; \
	VMULPS  kz, Z17, t1; \
	VADDPS  t0, a0, a0; \
	VADDPS  t1, a1, a1

// func attnScoresTile(q *float32, k *float32, stride, d16 int, s *float32, lds int)
// The scores of queries q and q+stride bytes against the eight keys k,
// k+stride, ..., k+7·stride over their first d16 elements (a positive
// multiple of 16), each in dot16's lanes and order: query i by key j goes
// to s + i·lds + 4j (bytes).
TEXT ·attnScoresTile(SB), NOSPLIT, $0-48
	MOVQ q+0(FP), SI
	MOVQ k+8(FP), R8
	MOVQ stride+16(FP), DX
	MOVQ d16+24(FP), CX
	SHLQ $2, CX
	LEAQ (SI)(DX*1), DI
	LEAQ (R8)(DX*1), R9
	LEAQ (R9)(DX*1), R10
	LEAQ (R10)(DX*1), R11
	LEAQ (R11)(DX*1), R12
	LEAQ (R12)(DX*1), R13
	LEAQ (R13)(DX*1), BX
	ADDQ BX, DX
	ZERO_Z0_Z15
	XORQ AX, AX
scores:
	VMOVUPS (SI)(AX*1), Z16
	VMOVUPS (DI)(AX*1), Z17
	KEY(R8, Z18, Z26, Z27, Z0, Z1)
	KEY(R9, Z19, Z28, Z29, Z2, Z3)
	KEY(R10, Z20, Z26, Z27, Z4, Z5)
	KEY(R11, Z21, Z28, Z29, Z6, Z7)
	KEY(R12, Z22, Z26, Z27, Z8, Z9)
	KEY(R13, Z23, Z28, Z29, Z10, Z11)
	KEY(BX, Z24, Z26, Z27, Z12, Z13)
	KEY(DX, Z25, Z28, Z29, Z14, Z15)
	ADDQ $64, AX
	CMPQ AX, CX
	JLT  scores

	MOVQ s+32(FP), BX
	MOVQ lds+40(FP), DX
	ADDQ BX, DX
	FINISH16(Z0, Y0, X0, (BX))
	FINISH16(Z1, Y1, X1, (DX))
	FINISH16(Z2, Y2, X2, 4(BX))
	FINISH16(Z3, Y3, X3, 4(DX))
	FINISH16(Z4, Y4, X4, 8(BX))
	FINISH16(Z5, Y5, X5, 8(DX))
	FINISH16(Z6, Y6, X6, 12(BX))
	FINISH16(Z7, Y7, X7, 12(DX))
	FINISH16(Z8, Y8, X8, 16(BX))
	FINISH16(Z9, Y9, X9, 16(DX))
	FINISH16(Z10, Y10, X10, 20(BX))
	FINISH16(Z11, Y11, X11, 20(DX))
	FINISH16(Z12, Y12, X12, 24(BX))
	FINISH16(Z13, Y13, X13, 24(DX))
	FINISH16(Z14, Y14, X14, 28(BX))
	FINISH16(Z15, Y15, X15, 28(DX))
	VZEROUPPER
	RET

// One query's weight (w, broadcast) times the value row's 64 elements
// (Z16-Z19), added to the query's four accumulators: multiply, then add,
// each rounded, as AttnPV.
#define ROW(w, a, b, c, d) \
	VMULPS Z16, w, Z24; \
	VMULPS Z17, w, Z25; \
	VMULPS Z18, w, Z26; \
	VMULPS Z19, w, Z27; \
	VADDPS Z24, a, a; \
	VADDPS Z25, b, b; \
	VADDPS Z26, c, c; \
	VADDPS Z27, d, d

// func attnPVTile(p *float32, ldp int, v *float32, ldv, c int, y *float32, ldy int)
// For the four queries whose weights are at p + i·ldp and whose outputs'
// 64 elements are at y + i·ldy (bytes, i < 4): adds weight j times the
// value row at v + j·ldv for j = 0, 1, ..., c-1 (c > 0) in that order.
TEXT ·attnPVTile(SB), NOSPLIT, $0-56
	MOVQ p+0(FP), SI
	MOVQ ldp+8(FP), DX
	MOVQ v+16(FP), R8
	MOVQ ldv+24(FP), R9
	MOVQ c+32(FP), CX
	SHLQ $2, CX
	MOVQ y+40(FP), BX
	MOVQ ldy+48(FP), R10
	LEAQ (SI)(DX*1), DI
	LEAQ (DI)(DX*1), R11
	LEAQ (R11)(DX*1), R12
	LEAQ (BX)(R10*1), R13
	LOAD4(BX, Z0, Z1, Z2, Z3)
	LOAD4(R13, Z4, Z5, Z6, Z7)
	LEAQ (R13)(R10*1), AX
	LOAD4(AX, Z8, Z9, Z10, Z11)
	ADDQ R10, AX
	LOAD4(AX, Z12, Z13, Z14, Z15)
	XORQ AX, AX
pv:
	LOAD4(R8, Z16, Z17, Z18, Z19)
	VBROADCASTSS (SI)(AX*1), Z20
	VBROADCASTSS (DI)(AX*1), Z21
	VBROADCASTSS (R11)(AX*1), Z22
	VBROADCASTSS (R12)(AX*1), Z23
	ROW(Z20, Z0, Z1, Z2, Z3)
	ROW(Z21, Z4, Z5, Z6, Z7)
	ROW(Z22, Z8, Z9, Z10, Z11)
	ROW(Z23, Z12, Z13, Z14, Z15)
	ADDQ R9, R8
	ADDQ $4, AX
	CMPQ AX, CX
	JLT  pv

	STORE4(BX, Z0, Z1, Z2, Z3)
	STORE4(R13, Z4, Z5, Z6, Z7)
	LEAQ (R13)(R10*1), AX
	STORE4(AX, Z8, Z9, Z10, Z11)
	ADDQ R10, AX
	STORE4(AX, Z12, Z13, Z14, Z15)
	VZEROUPPER
	RET

// One query's weight (w, broadcast) times the value row's 128 elements
// (Z16-Z23), added to the query's eight accumulators a..a+7 (given as two
// groups of four), as ROW.
#define ROW8(w, a, b, c, d, e, f, g, h) \
	VMULPS Z16, w, Z26; \
	VMULPS Z17, w, Z27; \
	VMULPS Z18, w, Z28; \
	VMULPS Z19, w, Z29; \
	VADDPS Z26, a, a; \
	VADDPS Z27, b, b; \
	VADDPS Z28, c, c; \
	VADDPS Z29, d, d; \
	VMULPS Z20, w, Z26; \
	VMULPS Z21, w, Z27; \
	VMULPS Z22, w, Z28; \
	VMULPS Z23, w, Z29; \
	VADDPS Z26, e, e; \
	VADDPS Z27, f, f; \
	VADDPS Z28, g, g; \
	VADDPS Z29, h, h

// func attnPVTile2(p *float32, ldp int, v *float32, ldv, c int, y *float32, ldy int)
// attnPVTile for two queries and 128 output elements each.
TEXT ·attnPVTile2(SB), NOSPLIT, $0-56
	MOVQ p+0(FP), SI
	MOVQ ldp+8(FP), DX
	MOVQ v+16(FP), R8
	MOVQ ldv+24(FP), R9
	MOVQ c+32(FP), CX
	SHLQ $2, CX
	MOVQ y+40(FP), BX
	MOVQ ldy+48(FP), R10
	LEAQ (SI)(DX*1), DI
	LEAQ (BX)(R10*1), R13
	LOAD8(BX, Z0, Z1, Z2, Z3, Z4, Z5, Z6, Z7)
	LOAD8(R13, Z8, Z9, Z10, Z11, Z12, Z13, Z14, Z15)
	XORQ AX, AX
pv2:
	LOAD8(R8, Z16, Z17, Z18, Z19, Z20, Z21, Z22, Z23)
	VBROADCASTSS (SI)(AX*1), Z24
	VBROADCASTSS (DI)(AX*1), Z25
	ROW8(Z24, Z0, Z1, Z2, Z3, Z4, Z5, Z6, Z7)
	ROW8(Z25, Z8, Z9, Z10, Z11, Z12, Z13, Z14, Z15)
	ADDQ R9, R8
	ADDQ $4, AX
	CMPQ AX, CX
	JLT  pv2

	STORE8(BX, Z0, Z1, Z2, Z3, Z4, Z5, Z6, Z7)
	STORE8(R13, Z8, Z9, Z10, Z11, Z12, Z13, Z14, Z15)
	VZEROUPPER
	RET
