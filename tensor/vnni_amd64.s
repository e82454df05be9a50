//go:build goexperiment.simd && amd64

#include "textflag.h"
#include "tile_amd64.h"

// The 4×4 tile of the 32-element block formats with AVX-512 VNNI's
// VPDPBUSD, which Go's simd/archsimd does not offer (see vnni_amd64.go for
// the record layout and why the result is bit-identical to the generic
// kernels).
//
// Registers: Z0-Z15 the accumulators of (row r, vector j) at Z(4r+j);
// Z16-Z19 the four vectors' quants of the block pair as unsigned bytes
// (y XOR 0x80 = y+128); Z20-Z23 their expanded scales; Z24 a row's quants,
// Z25 its scales, Z26 its bias; Z27 and Z28 temporaries; Z29 the 0x80 bytes.

// CELL adds one (row, vector) block pair to ACC: the lane sums
// bias + Σ(y+128)·x = Σ x·y (exact int32), converted, times d = dx·dy (one
// float32 product, as the generic kernels' d), added to the accumulator.
#define CELL(Y, DY, ACC) \
	VMOVDQA32 Z26, Z27; \
	VPDPBUSD  Z24, Y, Z27; \
	VCVTDQ2PS Z27, Z27; \
	VMULPS    DY, Z25, Z28; \
	VMULPS    Z28, Z27, Z27; \
	VADDPS    Z27, ACC, ACC

// ROW loads row R's record of this block pair (at AX + 192·R) and adds its
// four cells.
#define ROW(OFF, A0, A1, A2, A3) \
	VMOVDQU8  OFF(AX), Z24; \
	VMOVDQU32 OFF+64(AX), Z26; \
	VMOVUPS   OFF+128(AX), Z25; \
	CELL(Z16, Z20, A0); \
	CELL(Z17, Z21, A1); \
	CELL(Z18, Z22, A2); \
	CELL(Z19, Z23, A3)

// HSUM writes hsum8(lo + hi) of ACC (the generic finishAcc2 order: the
// even and odd blocks' lanes added, then ((v0+v4)+(v2+v6)) +
// ((v1+v5)+(v3+v7))) to OFF(R12).
#define HSUM(ACC, YACC, OFF) \
	VEXTRACTF64X4 $1, ACC, Y27; \
	VADDPS        Y27, YACC, Y27; \
	VEXTRACTF32X4 $1, Y27, X28; \
	VADDPS        X28, X27, X27; \
	VMOVHLPS      X27, X27, X28; \
	VADDPS        X28, X27, X27; \
	VMOVSHDUP     X27, X28; \
	VADDSS        X28, X27, X27; \
	VMOVSS        X27, OFF(R12)

// func vnniTile4x4(rec *byte, np int, y *int8, cst int, dv *float32, dst int, res *[16]float32)
TEXT ·vnniTile4x4(SB), NOSPLIT, $0-56
	MOVQ rec+0(FP), AX
	MOVQ np+8(FP), R11
	MOVQ y+16(FP), BX
	MOVQ cst+24(FP), R13
	MOVQ dv+32(FP), DI
	MOVQ dst+40(FP), R12
	LEAQ (BX)(R13*1), CX
	LEAQ (CX)(R13*1), DX
	LEAQ (DX)(R13*1), SI
	LEAQ (DI)(R12*1), R8
	LEAQ (R8)(R12*1), R9
	LEAQ (R9)(R12*1), R10
	MOVQ res+48(FP), R12
	MOVL    $0x80808080, R13
	VPBROADCASTD R13, Z29
	ZERO_Z0_Z15
	TESTQ   R11, R11
	JLE     done

loop:
	VPXORD  (BX), Z29, Z16
	VPXORD  (CX), Z29, Z17
	VPXORD  (DX), Z29, Z18
	VPXORD  (SI), Z29, Z19
	VMOVUPS (DI), Z20
	VMOVUPS (R8), Z21
	VMOVUPS (R9), Z22
	VMOVUPS (R10), Z23
	ROW(0, Z0, Z1, Z2, Z3)
	ROW(192, Z4, Z5, Z6, Z7)
	ROW(384, Z8, Z9, Z10, Z11)
	ROW(576, Z12, Z13, Z14, Z15)
	ADDQ $768, AX
	ADDQ $64, BX
	ADDQ $64, CX
	ADDQ $64, DX
	ADDQ $64, SI
	ADDQ $64, DI
	ADDQ $64, R8
	ADDQ $64, R9
	ADDQ $64, R10
	DECQ R11
	JNZ  loop

done:
	HSUM(Z0, Y0, 0)
	HSUM(Z1, Y1, 4)
	HSUM(Z2, Y2, 8)
	HSUM(Z3, Y3, 12)
	HSUM(Z4, Y4, 16)
	HSUM(Z5, Y5, 20)
	HSUM(Z6, Y6, 24)
	HSUM(Z7, Y7, 28)
	HSUM(Z8, Y8, 32)
	HSUM(Z9, Y9, 36)
	HSUM(Z10, Y10, 40)
	HSUM(Z11, Y11, 44)
	HSUM(Z12, Y12, 48)
	HSUM(Z13, Y13, 52)
	HSUM(Z14, Y14, 56)
	HSUM(Z15, Y15, 60)
	VZEROUPPER
	RET
