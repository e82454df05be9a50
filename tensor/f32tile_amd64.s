//go:build goexperiment.simd && amd64

#include "textflag.h"
#include "tile_amd64.h"

// One cell's 32 lanes (A: elements 0-15 of every 32, B: 16-31) finished as
// dotF32Ptr finishes its four 8-lane accumulators acc0..acc3 (A = acc0|acc1,
// B = acc2|acc3): (acc0+acc1) + (acc2+acc3), then hsum8, stored at dst.
#define FINISH(za, zb, ya, yb, xa, dst) \
	VEXTRACTF64X4 $1, za, Y26; \
	VADDPS        Y26, ya, ya; \
	VEXTRACTF64X4 $1, zb, Y27; \
	VADDPS        Y27, yb, yb; \
	VADDPS        yb, ya, ya; \
	VEXTRACTF32X4 $1, ya, X26; \
	VADDPS        X26, xa, xa; \
	VPERMILPS     $0xEE, xa, X26; \
	VADDPS        X26, xa, xa; \
	VPERMILPS     $0x55, xa, X26; \
	VADDSS        X26, xa, xa; \
	VMOVSS        xa, dst

// Products of the two rows' 32 elements (Z16-Z19) with one vector's
// (loaded into Z20, Z21 from base+AX), added to that vector's four
// accumulators: multiply, then add, each rounded (no FMA), as dotF32Ptr.
#define VEC(base, a0, b0, a1, b1) \
	VMOVUPS (base)(AX*1), Z20; \
	VMOVUPS 64(base)(AX*1), Z21; \
	VMULPS  Z20, Z16, Z22; \
	VMULPS  Z21, Z17, Z23; \
	VMULPS  Z20, Z18, Z24; \
	VMULPS  Z21, Z19, Z25; \
	VADDPS  Z22, a0, a0; \
	VADDPS  Z23, b0, b0; \
	VADDPS  Z24, a1, a1; \
	VADDPS  Z25, b1, b1

// func f32Tile2x4(r *float32, x *float32, stride, n32 int, out *float32, ostride int, acc *[256]float32, mode int)
// The dots of rows r and r+stride bytes with the vectors x, x+stride,
// x+2·stride, x+3·stride over their first n32 elements (n32 a positive
// multiple of 32), each summed in dotF32Ptr's lanes and order. The sixteen
// accumulators start from acc (mode bit 0, tileLoad) or zero; with mode bit
// 1 (tileFinish) each cell is finished and row i times vector j goes to
// out + j·ostride + 4i (bytes), else the accumulators are stored to acc for
// the next stretch of the same dots.
TEXT ·f32Tile2x4(SB), NOSPLIT, $0-64
	MOVQ r+0(FP), SI
	MOVQ x+8(FP), R8
	MOVQ stride+16(FP), DX
	MOVQ n32+24(FP), CX
	MOVQ acc+48(FP), R12
	MOVQ mode+56(FP), R13
	SHLQ $2, CX
	LEAQ (SI)(DX*1), DI
	LEAQ (R8)(DX*1), R9
	LEAQ (R9)(DX*1), R10
	LEAQ (R10)(DX*1), R11
	TESTQ $1, R13
	JZ    zero
	LOAD8(R12, Z0, Z1, Z2, Z3, Z4, Z5, Z6, Z7)
	LEAQ  512(R12), BX
	LOAD8(BX, Z8, Z9, Z10, Z11, Z12, Z13, Z14, Z15)
	JMP   start
zero:
	ZERO_Z0_Z15
start:
	XORQ AX, AX
loop:
	VMOVUPS (SI)(AX*1), Z16
	VMOVUPS 64(SI)(AX*1), Z17
	VMOVUPS (DI)(AX*1), Z18
	VMOVUPS 64(DI)(AX*1), Z19
	VEC(R8, Z0, Z1, Z2, Z3)
	VEC(R9, Z4, Z5, Z6, Z7)
	VEC(R10, Z8, Z9, Z10, Z11)
	VEC(R11, Z12, Z13, Z14, Z15)
	ADDQ $128, AX
	CMPQ AX, CX
	JLT  loop

	TESTQ $2, R13
	JZ    save
	MOVQ out+32(FP), BX
	MOVQ ostride+40(FP), DX
	FINISH(Z0, Z1, Y0, Y1, X0, (BX))
	FINISH(Z2, Z3, Y2, Y3, X2, 4(BX))
	ADDQ DX, BX
	FINISH(Z4, Z5, Y4, Y5, X4, (BX))
	FINISH(Z6, Z7, Y6, Y7, X6, 4(BX))
	ADDQ DX, BX
	FINISH(Z8, Z9, Y8, Y9, X8, (BX))
	FINISH(Z10, Z11, Y10, Y11, X10, 4(BX))
	ADDQ DX, BX
	FINISH(Z12, Z13, Y12, Y13, X12, (BX))
	FINISH(Z14, Z15, Y14, Y15, X14, 4(BX))
	VZEROUPPER
	RET

save:
	STORE8(R12, Z0, Z1, Z2, Z3, Z4, Z5, Z6, Z7)
	LEAQ   512(R12), BX
	STORE8(BX, Z8, Z9, Z10, Z11, Z12, Z13, Z14, Z15)
	VZEROUPPER
	RET

// func dotF16Row(w *byte, x *float32, n32 int) float32
// One F16 row's dot with x over the first n32 elements (a positive multiple
// of 32) in dotF32Ptr's lanes and order: each 32 elements converted exactly
// with VCVTPH2PS straight from the row, multiplied and added (no FMA) into
// the two accumulators of 16 lanes that FINISH reduces as dotF32Ptr does.
TEXT ·dotF16Row(SB), NOSPLIT, $0-28
	MOVQ   w+0(FP), SI
	MOVQ   x+8(FP), R8
	MOVQ   n32+16(FP), CX
	SHLQ   $1, CX
	VPXORD Z0, Z0, Z0
	VPXORD Z1, Z1, Z1
	XORQ   AX, AX
rowloop:
	VCVTPH2PS (SI)(AX*1), Z16
	VCVTPH2PS 32(SI)(AX*1), Z17
	VMULPS    (R8)(AX*2), Z16, Z16
	VMULPS    64(R8)(AX*2), Z17, Z17
	VADDPS    Z16, Z0, Z0
	VADDPS    Z17, Z1, Z1
	ADDQ      $64, AX
	CMPQ      AX, CX
	JLT       rowloop

	FINISH(Z0, Z1, Y0, Y1, X0, ret+24(FP))
	VZEROUPPER
	RET
