//go:build goexperiment.simd && amd64

#include "textflag.h"

// func cvtF16x8(dst *float32, src *byte, n int)
// Converts n binary16 values (n a positive multiple of 8) to float32 with
// F16C's VCVTPH2PS, 32 per iteration while that many are left.
TEXT ·cvtF16x8(SB), NOSPLIT, $0-24
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ n+16(FP), CX
loop32:
	CMPQ CX, $32
	JLT  loop8
	VCVTPH2PS (SI), Y0
	VCVTPH2PS 16(SI), Y1
	VCVTPH2PS 32(SI), Y2
	VCVTPH2PS 48(SI), Y3
	VMOVUPS Y0, (DI)
	VMOVUPS Y1, 32(DI)
	VMOVUPS Y2, 64(DI)
	VMOVUPS Y3, 96(DI)
	ADDQ $64, SI
	ADDQ $128, DI
	SUBQ $32, CX
	JMP  loop32
loop8:
	CMPQ CX, $8
	JLT  done
	VCVTPH2PS (SI), Y0
	VMOVUPS Y0, (DI)
	ADDQ $16, SI
	ADDQ $32, DI
	SUBQ $8, CX
	JMP  loop8
done:
	VZEROUPPER
	RET

// func cvtF16Blocks(dst *float32, srcs *[kvStreams]*byte, k, m int)
// Converts k blocks of m binary16 values (m a positive multiple of 32,
// 1 <= k <= kvStreams), srcs[i] to dst[i*m:], 32 values of each block in
// turn: the blocks are read side by side, k streams at once.
TEXT ·cvtF16Blocks(SB), NOSPLIT, $0-32
	MOVQ dst+0(FP), DI
	MOVQ srcs+8(FP), SI
	MOVQ k+16(FP), R12
	MOVQ m+24(FP), CX
	MOVQ CX, DX
	SHLQ $2, DX // bytes between the blocks in dst
	XORQ BX, BX // offset into every source
next32:
	MOVQ DI, AX
	MOVQ R12, R13
	MOVQ SI, R14
block:
	MOVQ (R14), R8
	VCVTPH2PS (R8)(BX*1), Z0
	VCVTPH2PS 32(R8)(BX*1), Z1
	VMOVUPS Z0, (AX)
	VMOVUPS Z1, 64(AX)
	ADDQ DX, AX
	ADDQ $8, R14
	DECQ R13
	JNZ  block
	ADDQ $64, BX
	ADDQ $128, DI
	SUBQ $32, CX
	JNZ  next32
	VZEROUPPER
	RET

// func roundF16x8(dst, src *float32, n int)
// Rounds n float32 values (n a positive multiple of 8) to the nearest
// binary16 value (ties to even: VCVTPS2PH's immediate 0) and back, at dst.
TEXT ·roundF16x8(SB), NOSPLIT, $0-24
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ n+16(FP), CX
loop:
	VMOVUPS   (SI), Y0
	VCVTPS2PH $0, Y0, X1
	VCVTPH2PS X1, Y1
	VMOVUPS   Y1, (DI)
	ADDQ      $32, SI
	ADDQ      $32, DI
	SUBQ      $8, CX
	JNZ       loop
	VZEROUPPER
	RET
