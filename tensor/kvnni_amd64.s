//go:build goexperiment.simd && amd64

#include "textflag.h"
#include "tile_amd64.h"

// The block loops of the Q2_K, Q3_K, Q4_K and Q6_K decode kernels with GFNI and AVX-512
// VNNI (see kvnni_amd64.go for why and what they compute).
//
// Registers: SI the weight block, DI the activation block, R8 its block
// sums, R9 the block's acc entry, CX the blocks left. Q2_K and Q3_K: Z16/Z17 the bit
// matrices that take the 2-bit quants of a 64-element chunk's two halves
// (shifts 0,2 and 4,6), Z18-Z21 those that take Q3_K's hmask bits to bit 2
// (chunks 0-3), Z22-Z25 the chunks' scale indices, Z26 zero, Z27 bytes 32;
// Z1 the block's 16 scales as int16 (VPERMW reads only words 0-15).

// CHUNK adds chunk C's scaled products to ACC: U holds its unsigned quants
// (0..7); their products with the activations at OFF(DI) summed in pairs
// (VPMADDUBSW; |sum| <= 1792, no saturation) and each pair times its
// 16-element group's scale, added in pairs (VPDPWSSD).
#define CHUNK(U, OFF, IDX, ACC) \
	VPMADDUBSW OFF(DI), U, U; \
	VPERMW     Z1, IDX, Z8; \
	VPDPWSSD   Z8, U, ACC

// Q3 makes chunk C's quants u = q | h<<2 from the 2-bit quants in Q and the
// hmask bytes in Z2, in U.
#define Q3(Q, GQ, GH, U) \
	VGF2P8AFFINEQB $0, GQ, Q, U; \
	VGF2P8AFFINEQB $0, GH, Z2, Z9; \
	VPORD          Z9, U, U

// LOADCONSTS fills Z16-Z25 from the kVNNIConsts at AX, Z26 and Z27.
#define LOADCONSTS \
	LOAD8(AX, Z16, Z17, Z18, Z19, Z20, Z21, Z22, Z23); \
	VMOVDQU64 512(AX), Z24; \
	VMOVDQU64 576(AX), Z25; \
	VPXORD    Z26, Z26, Z26; \
	MOVL      $0x20, DX; \
	VPBROADCASTB DX, Z27

// func q3KChunkVNNI(p, y, bs unsafe.Pointer, n int, acc *[kChunk]archsimd.Int32x16, k *kVNNIConsts)
TEXT ·q3KChunkVNNI(SB), NOSPLIT, $0-48
	MOVQ p+0(FP), SI
	MOVQ y+8(FP), DI
	MOVQ bs+16(FP), R8
	MOVQ n+24(FP), CX
	MOVQ acc+32(FP), R9
	MOVQ k+40(FP), AX
	LOADCONSTS
	MOVQ $0x0303030303030303, R12
	MOVQ $0x0f0f0f0f0f0f0f0f, R13
	TESTQ CX, CX
	JLE  q3done

q3loop:
	// The 16 6-bit scales (q3KScales): lo = s0|s1<<32, hi = s2|s3<<32 with
	// tmp's 2-bit pairs shifted by 0 and 2 (lo) and 4 and 6 (hi).
	MOVQ  96(SI), AX
	MOVL  104(SI), BX
	MOVQ  BX, DX
	SHRQ  $2, DX
	SHLQ  $32, DX
	ORQ   BX, DX
	MOVQ  BX, R10
	SHRQ  $4, R10
	SHRQ  $6, BX
	SHLQ  $32, BX
	ORQ   R10, BX
	ANDQ  R12, DX
	SHLQ  $4, DX
	ANDQ  R12, BX
	SHLQ  $4, BX
	MOVQ  AX, R11
	ANDQ  R13, R11
	ORQ   DX, R11
	SHRQ  $4, AX
	ANDQ  R13, AX
	ORQ   BX, AX
	VMOVQ R11, X0
	VPINSRQ $1, AX, X0, X0
	VPSUBB X27, X0, X0
	VPMOVSXBW X0, Y1

	// The -4 offset of every quant: acc starts at -4·Σ scale·block sum.
	VPMADDWD (R8), Y1, Y5
	VPSLLD   $2, Y5, Y5
	VPSUBD   Z5, Z26, Z6

	VBROADCASTI64X4 0(SI), Z2
	VBROADCASTI64X4 32(SI), Z3
	VBROADCASTI64X4 64(SI), Z4
	Q3(Z3, Z16, Z18, Z7)
	CHUNK(Z7, 0, Z22, Z6)
	Q3(Z3, Z17, Z19, Z7)
	CHUNK(Z7, 64, Z23, Z6)
	Q3(Z4, Z16, Z20, Z7)
	CHUNK(Z7, 128, Z24, Z6)
	Q3(Z4, Z17, Z21, Z7)
	CHUNK(Z7, 192, Z25, Z6)
	VMOVDQU32 Z6, (R9)

	ADDQ $110, SI
	ADDQ $256, DI
	ADDQ $32, R8
	ADDQ $64, R9
	DECQ CX
	JNZ  q3loop

q3done:
	RET

// func q2KChunkVNNI(p, y, bs unsafe.Pointer, n int, acc *[kChunk]archsimd.Int32x16, m *[kChunk]archsimd.Int32x4, dm unsafe.Pointer, k *kVNNIConsts)
TEXT ·q2KChunkVNNI(SB), NOSPLIT, $0-64
	MOVQ p+0(FP), SI
	MOVQ y+8(FP), DI
	MOVQ bs+16(FP), R8
	MOVQ n+24(FP), CX
	MOVQ acc+32(FP), R9
	MOVQ m+40(FP), R10
	MOVQ dm+48(FP), R11
	MOVQ k+56(FP), AX
	LOADCONSTS
	MOVL $15, DX
	VPBROADCASTW DX, Y28
	TESTQ CX, CX
	JLE  q2done

q2loop:
	// Scales in the low nibbles, mins in the high ones, as int16.
	VPMOVZXBW (SI), Y0
	VPANDD    Y28, Y0, Y1
	VPSRLW    $4, Y0, Y0
	// The mins' dot with the block sums, in four lanes (q2KChunk512's m).
	VPMADDWD  (R8), Y0, Y3
	VEXTRACTI128 $1, Y3, X4
	VPADDD    X4, X3, X3
	VMOVDQU   X3, (R10)
	MOVL      80(SI), AX
	MOVL      AX, (R11)

	VBROADCASTI64X4 16(SI), Z2
	VBROADCASTI64X4 48(SI), Z3
	VGF2P8AFFINEQB $0, Z16, Z2, Z7
	VPMADDUBSW 0(DI), Z7, Z7
	VPERMW     Z1, Z22, Z8
	VPMADDWD   Z8, Z7, Z6
	VGF2P8AFFINEQB $0, Z17, Z2, Z7
	CHUNK(Z7, 64, Z23, Z6)
	VGF2P8AFFINEQB $0, Z16, Z3, Z7
	CHUNK(Z7, 128, Z24, Z6)
	VGF2P8AFFINEQB $0, Z17, Z3, Z7
	CHUNK(Z7, 192, Z25, Z6)
	VMOVDQU32 Z6, (R9)

	ADDQ $84, SI
	ADDQ $256, DI
	ADDQ $32, R8
	ADDQ $64, R9
	ADDQ $16, R10
	ADDQ $16, R11
	DECQ CX
	JNZ  q2loop

q2done:
	RET

// Q4_K's constants (after idx in kVNNIConsts): Z16-Z19 the scale shuffles
// k4Byte512, X22-X25 q4KScalesVec's shifts and masks, Z20 the bit matrix
// that takes a byte's high nibble, Z21 bytes 0x0f.
#define Q4CHUNK(U, OFF, IDX) \
	VPMADDUBSW OFF(DI), U, U; \
	VPSHUFB    IDX, Z2, Z5; \
	VPDPWSSD   Z5, U, Z6

// func q4KChunkVNNI(p, y, bs unsafe.Pointer, n int, acc *[kChunk]archsimd.Int32x16, m *[kChunk]archsimd.Int32x4, dm unsafe.Pointer, k *kVNNIConsts)
TEXT ·q4KChunkVNNI(SB), NOSPLIT, $0-64
	MOVQ p+0(FP), SI
	MOVQ y+8(FP), DI
	MOVQ bs+16(FP), R8
	MOVQ n+24(FP), CX
	MOVQ acc+32(FP), R9
	MOVQ m+40(FP), R10
	MOVQ dm+48(FP), R11
	MOVQ k+56(FP), AX
	LEAQ 640(AX), DX
	LOAD4(DX, Z16, Z17, Z18, Z19)
	VMOVDQU32 896(AX), X22
	VMOVDQU32 912(AX), X23
	VMOVDQU32 928(AX), X24
	VMOVDQU32 944(AX), X25
	// Output bit o takes input bit o+4 (o = 0..3): bytes 7-o of the matrix.
	MOVQ $0x1020408000000000, DX
	VPBROADCASTQ DX, Z20
	MOVL $0x0f, DX
	VPBROADCASTB DX, Z21
	TESTQ CX, CX
	JLE  q4done

q4loop:
	// q4KScalesVec: scales 0-7 in bytes 0-7 of X1, mins 0-7 in 8-15.
	VMOVDQU   4(SI), X0
	VPSHUFD   $0xaa, X0, X1
	VPSRLVD   X24, X1, X1
	VPANDD    X25, X1, X1
	VPSHUFD   $0x50, X0, X2
	VPSRLVD   X22, X2, X2
	VPANDD    X23, X2, X2
	VPORD     X2, X1, X1
	VPBROADCASTQ X1, Z2

	VMOVDQU64 16(SI), Z3
	VPANDD    Z21, Z3, Z4
	VPMADDUBSW 0(DI), Z4, Z4
	VPSHUFB   Z16, Z2, Z5
	VPMADDWD  Z5, Z4, Z6
	VGF2P8AFFINEQB $0, Z20, Z3, Z4
	Q4CHUNK(Z4, 64, Z17)
	VMOVDQU64 80(SI), Z3
	VPANDD    Z21, Z3, Z4
	Q4CHUNK(Z4, 128, Z18)
	VGF2P8AFFINEQB $0, Z20, Z3, Z4
	Q4CHUNK(Z4, 192, Z19)
	VMOVDQU32 Z6, (R9)

	// The mins' dot with the pair sums, in four lanes.
	VPSHUFD   $0xee, X1, X7
	VPMOVZXBW X7, X7
	VPMADDWD  (R8), X7, X7
	VMOVDQU   X7, (R10)
	MOVL      (SI), AX
	MOVL      AX, (R11)

	ADDQ $144, SI
	ADDQ $256, DI
	ADDQ $16, R8
	ADDQ $64, R9
	ADDQ $16, R10
	ADDQ $16, R11
	DECQ CX
	JNZ  q4loop

q4done:
	RET

// Q6_K's constants: Z16/Z17 the bit matrices of q6GFx and q6GFz, Z22-Z25
// the scale indices (as Q2_K/Q3_K), Z20 the high-nibble matrix, Z21 bytes
// 0x0f, Z26 zero. Z2 holds the half's 32 qh bytes in both 256-bit halves,
// Z3 its 64 ql bytes.

// Q6HALF adds half N's two chunks (quants at OFF(SI), qh at QH(SI),
// activations at Y(DI)) to Z6: x = ql&15 | qh pair<<4 (VPTERNLOGD
// 0xf8: A | B&C), z = ql>>4 | next qh pair<<4.
#define Q6HALF(OFF, QH, Y, IDX0, IDX1) \
	VMOVDQU64       OFF(SI), Z3; \
	VBROADCASTI64X4 QH(SI), Z2; \
	VGF2P8AFFINEQB  $0, Z16, Z2, Z4; \
	VPTERNLOGD      $0xf8, Z21, Z3, Z4; \
	VPMADDUBSW      Y(DI), Z4, Z4; \
	VPERMW          Z1, IDX0, Z8; \
	VPDPWSSD        Z8, Z4, Z6; \
	VGF2P8AFFINEQB  $0, Z17, Z2, Z4; \
	VGF2P8AFFINEQB  $0, Z20, Z3, Z9; \
	VPORD           Z9, Z4, Z4; \
	VPMADDUBSW      Y+64(DI), Z4, Z4; \
	VPERMW          Z1, IDX1, Z8; \
	VPDPWSSD        Z8, Z4, Z6

// func q6KChunkVNNI(p, y, bs unsafe.Pointer, n int, acc *[kChunk]archsimd.Int32x16, k *kVNNIConsts)
TEXT ·q6KChunkVNNI(SB), NOSPLIT, $0-48
	MOVQ p+0(FP), SI
	MOVQ y+8(FP), DI
	MOVQ bs+16(FP), R8
	MOVQ n+24(FP), CX
	MOVQ acc+32(FP), R9
	MOVQ k+40(FP), AX
	VMOVDQU64 960(AX), Z16
	VMOVDQU64 1024(AX), Z17
	LEAQ 384(AX), DX
	LOAD4(DX, Z22, Z23, Z24, Z25)
	MOVQ $0x1020408000000000, DX
	VPBROADCASTQ DX, Z20
	MOVL $0x0f, DX
	VPBROADCASTB DX, Z21
	VPXORD Z26, Z26, Z26
	TESTQ CX, CX
	JLE  q6done

q6loop:
	// The -32 offset: acc starts at -32·Σ scale·block sum.
	VPMOVSXBW 192(SI), Y1
	VPMADDWD  (R8), Y1, Y5
	VPSLLD    $5, Y5, Y5
	VPSUBD    Z5, Z26, Z6
	Q6HALF(0, 128, 0, Z22, Z23)
	Q6HALF(64, 160, 128, Z24, Z25)
	VMOVDQU32 Z6, (R9)

	ADDQ $210, SI
	ADDQ $256, DI
	ADDQ $32, R8
	ADDQ $64, R9
	DECQ CX
	JNZ  q6loop

q6done:
	RET
