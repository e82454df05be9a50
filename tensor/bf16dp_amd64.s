//go:build goexperiment.simd && amd64

#include "textflag.h"
#include "tile_amd64.h"

// AVX512_BF16's VDPBF16PS zacc, zrow, zvec (Intel operand order: zacc +=
// the products of zrow's and zvec's 32 bfloat16 values, pairs summed into 16
// float32 lanes). Go's assembler has no AVX512_BF16 mnemonics, so each one is
// written as the six bytes GNU as emits for it (EVEX.512.F3.0F38.W0 52 /r).

// DP_RiVj: VDPBF16PS Z(16+j), Z(20+i), Z(4i+j): row i (Z20-Z23) times vector j
// (Z16-Z19) into accumulator 4i+j.
#define DP_R0V0 BYTE $0x62; BYTE $0xb2; BYTE $0x5e; BYTE $0x40; BYTE $0x52; BYTE $0xc0
#define DP_R0V1 BYTE $0x62; BYTE $0xb2; BYTE $0x5e; BYTE $0x40; BYTE $0x52; BYTE $0xc9
#define DP_R0V2 BYTE $0x62; BYTE $0xb2; BYTE $0x5e; BYTE $0x40; BYTE $0x52; BYTE $0xd2
#define DP_R0V3 BYTE $0x62; BYTE $0xb2; BYTE $0x5e; BYTE $0x40; BYTE $0x52; BYTE $0xdb
#define DP_R1V0 BYTE $0x62; BYTE $0xb2; BYTE $0x56; BYTE $0x40; BYTE $0x52; BYTE $0xe0
#define DP_R1V1 BYTE $0x62; BYTE $0xb2; BYTE $0x56; BYTE $0x40; BYTE $0x52; BYTE $0xe9
#define DP_R1V2 BYTE $0x62; BYTE $0xb2; BYTE $0x56; BYTE $0x40; BYTE $0x52; BYTE $0xf2
#define DP_R1V3 BYTE $0x62; BYTE $0xb2; BYTE $0x56; BYTE $0x40; BYTE $0x52; BYTE $0xfb
#define DP_R2V0 BYTE $0x62; BYTE $0x32; BYTE $0x4e; BYTE $0x40; BYTE $0x52; BYTE $0xc0
#define DP_R2V1 BYTE $0x62; BYTE $0x32; BYTE $0x4e; BYTE $0x40; BYTE $0x52; BYTE $0xc9
#define DP_R2V2 BYTE $0x62; BYTE $0x32; BYTE $0x4e; BYTE $0x40; BYTE $0x52; BYTE $0xd2
#define DP_R2V3 BYTE $0x62; BYTE $0x32; BYTE $0x4e; BYTE $0x40; BYTE $0x52; BYTE $0xdb
#define DP_R3V0 BYTE $0x62; BYTE $0x32; BYTE $0x46; BYTE $0x40; BYTE $0x52; BYTE $0xe0
#define DP_R3V1 BYTE $0x62; BYTE $0x32; BYTE $0x46; BYTE $0x40; BYTE $0x52; BYTE $0xe9
#define DP_R3V2 BYTE $0x62; BYTE $0x32; BYTE $0x46; BYTE $0x40; BYTE $0x52; BYTE $0xf2
#define DP_R3V3 BYTE $0x62; BYTE $0x32; BYTE $0x46; BYTE $0x40; BYTE $0x52; BYTE $0xfb

#define DP_ROW0 DP_R0V0; DP_R0V1; DP_R0V2; DP_R0V3
#define DP_ROW1 DP_R1V0; DP_R1V1; DP_R1V2; DP_R1V3
#define DP_ROW2 DP_R2V0; DP_R2V1; DP_R2V2; DP_R2V3
#define DP_ROW3 DP_R3V0; DP_R3V1; DP_R3V2; DP_R3V3

// One accumulator's 16 lanes summed into the float32 at dst.
#define HSUM(z, y, x, dst) \
	VEXTRACTF64X4 $1, z, Y24; \
	VADDPS        Y24, y, y; \
	VEXTRACTF32X4 $1, y, X24; \
	VADDPS        X24, x, x; \
	VPERMILPS     $0xEE, x, X24; \
	VADDPS        X24, x, x; \
	VPERMILPS     $0x55, x, X24; \
	VADDSS        X24, x, x; \
	VMOVSS        x, dst

// The rows' 32 values at offset AX: rows 0-3 (SI, DI, R9, R10) into Z20-Z23.
#define LOAD_ROWS \
	VMOVDQU32 (SI)(AX*1), Z20; \
	VMOVDQU32 (DI)(AX*1), Z21; \
	VMOVDQU32 (R9)(AX*1), Z22; \
	VMOVDQU32 (R10)(AX*1), Z23

// One vector's four dots (rows 0-3: accumulators a, b, c, d) to the four
// float32s at BX.
#define HSUM4(a, ay, ax, b, by, bx, c, cy, cx, d, dy, dx) \
	HSUM(a, ay, ax, (BX)); \
	HSUM(b, by, bx, 4(BX)); \
	HSUM(c, cy, cx, 8(BX)); \
	HSUM(d, dy, dx, 12(BX))

// func bf16Tile4x4(r *uint16, rstride uintptr, x *uint16, xstride uintptr, n32 int, out *float32, ostride uintptr)
// The dots of the bfloat16 rows r + i·rstride bytes (i = 0..3) with the
// bfloat16 vectors x + j·xstride bytes (j = 0..3) over their first n32
// elements (a positive multiple of 32), with VDPBF16PS: row i times vector
// j goes to out + j·ostride + 4i (bytes).
TEXT ·bf16Tile4x4(SB), NOSPLIT, $0-56
	MOVQ r+0(FP), SI
	MOVQ rstride+8(FP), DX
	MOVQ x+16(FP), R8
	MOVQ xstride+24(FP), BX
	MOVQ n32+32(FP), CX
	SHLQ $1, CX
	LEAQ (SI)(DX*1), DI
	LEAQ (DI)(DX*1), R9
	LEAQ (R9)(DX*1), R10
	LEAQ (R8)(BX*1), R11
	LEAQ (R11)(BX*1), R12
	LEAQ (R12)(BX*1), R13
	ZERO_Z0_Z15
	XORQ AX, AX
loop:
	VMOVDQU32 (R8)(AX*1), Z16
	VMOVDQU32 (R11)(AX*1), Z17
	VMOVDQU32 (R12)(AX*1), Z18
	VMOVDQU32 (R13)(AX*1), Z19
	LOAD_ROWS
	DP_ROW0
	DP_ROW1
	DP_ROW2
	DP_ROW3
	ADDQ $64, AX
	CMPQ AX, CX
	JLT  loop

	MOVQ out+40(FP), BX
	MOVQ ostride+48(FP), DX
	HSUM4(Z0, Y0, X0, Z4, Y4, X4, Z8, Y8, X8, Z12, Y12, X12)
	ADDQ DX, BX
	HSUM4(Z1, Y1, X1, Z5, Y5, X5, Z9, Y9, X9, Z13, Y13, X13)
	ADDQ DX, BX
	HSUM4(Z2, Y2, X2, Z6, Y6, X6, Z10, Y10, X10, Z14, Y14, X14)
	ADDQ DX, BX
	HSUM4(Z3, Y3, X3, Z7, Y7, X7, Z11, Y11, X11, Z15, Y15, X15)
	VZEROUPPER
	RET

// func bf16Tile4x1(r *uint16, rstride uintptr, x *uint16, n32 int, out *float32)
// bf16Tile4x4 for one vector: the dots of rows r + i·rstride bytes with x,
// each in bf16Tile4x4's lanes and order, to out[0..3].
TEXT ·bf16Tile4x1(SB), NOSPLIT, $0-40
	MOVQ r+0(FP), SI
	MOVQ rstride+8(FP), DX
	MOVQ x+16(FP), R8
	MOVQ n32+24(FP), CX
	SHLQ $1, CX
	LEAQ (SI)(DX*1), DI
	LEAQ (DI)(DX*1), R9
	LEAQ (R9)(DX*1), R10
	VPXORD Z0, Z0, Z0
	VPXORD Z4, Z4, Z4
	VPXORD Z8, Z8, Z8
	VPXORD Z12, Z12, Z12
	XORQ AX, AX
loop1:
	VMOVDQU32 (R8)(AX*1), Z16
	LOAD_ROWS
	DP_R0V0
	DP_R1V0
	DP_R2V0
	DP_R3V0
	ADDQ $64, AX
	CMPQ AX, CX
	JLT  loop1

	MOVQ out+32(FP), BX
	HSUM4(Z0, Y0, X0, Z4, Y4, X4, Z8, Y8, X8, Z12, Y12, X12)
	VZEROUPPER
	RET

// func bf16Dot(r *uint16, x *uint16, n32 int) float32
// One row's dot with one vector in bf16Tile4x4's lanes and order.
TEXT ·bf16Dot(SB), NOSPLIT, $0-28
	MOVQ r+0(FP), SI
	MOVQ x+8(FP), R8
	MOVQ n32+16(FP), CX
	SHLQ $1, CX
	VPXORD Z0, Z0, Z0
	XORQ AX, AX
loop2:
	VMOVDQU32 (R8)(AX*1), Z16
	VMOVDQU32 (SI)(AX*1), Z20
	DP_R0V0
	ADDQ $64, AX
	CMPQ AX, CX
	JLT  loop2

	HSUM(Z0, Y0, X0, ret+24(FP))
	VZEROUPPER
	RET
