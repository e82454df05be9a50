// Macros shared by the register-tiled kernels (f32tile_amd64.s,
// attntile_amd64.s, vnni_amd64.s, bf16dp_amd64.s) and kvnni_amd64.s.

// ZERO_Z0_Z15 clears the sixteen accumulators Z0-Z15.
#define ZERO_Z0_Z15 \
	VPXORD Z0, Z0, Z0; \
	VPXORD Z1, Z1, Z1; \
	VPXORD Z2, Z2, Z2; \
	VPXORD Z3, Z3, Z3; \
	VPXORD Z4, Z4, Z4; \
	VPXORD Z5, Z5, Z5; \
	VPXORD Z6, Z6, Z6; \
	VPXORD Z7, Z7, Z7; \
	VPXORD Z8, Z8, Z8; \
	VPXORD Z9, Z9, Z9; \
	VPXORD Z10, Z10, Z10; \
	VPXORD Z11, Z11, Z11; \
	VPXORD Z12, Z12, Z12; \
	VPXORD Z13, Z13, Z13; \
	VPXORD Z14, Z14, Z14; \
	VPXORD Z15, Z15, Z15

// LOAD4 and STORE4 move four consecutive zmm values (256 bytes) at base.
#define LOAD4(base, a, b, c, d) \
	VMOVUPS (base), a; \
	VMOVUPS 64(base), b; \
	VMOVUPS 128(base), c; \
	VMOVUPS 192(base), d

#define STORE4(base, a, b, c, d) \
	VMOVUPS a, (base); \
	VMOVUPS b, 64(base); \
	VMOVUPS c, 128(base); \
	VMOVUPS d, 192(base)

// LOAD8 and STORE8 move eight consecutive zmm values (512 bytes) at base.
#define LOAD8(base, a, b, c, d, e, f, g, h) \
	VMOVUPS (base), a; \
	VMOVUPS 64(base), b; \
	VMOVUPS 128(base), c; \
	VMOVUPS 192(base), d; \
	VMOVUPS 256(base), e; \
	VMOVUPS 320(base), f; \
	VMOVUPS 384(base), g; \
	VMOVUPS 448(base), h

#define STORE8(base, a, b, c, d, e, f, g, h) \
	VMOVUPS a, (base); \
	VMOVUPS b, 64(base); \
	VMOVUPS c, 128(base); \
	VMOVUPS d, 192(base); \
	VMOVUPS e, 256(base); \
	VMOVUPS f, 320(base); \
	VMOVUPS g, 384(base); \
	VMOVUPS h, 448(base)
