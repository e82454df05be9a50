//go:build goexperiment.simd && amd64

package tensor

// cvtF16x8 converts n binary16 values at src (n a positive multiple of 8)
// to float32 at dst with VCVTPH2PS (f16cvt_amd64.s).
//
//go:noescape
func cvtF16x8(dst *float32, src *byte, n int)

// roundF16x8 sets dst[i] = roundF16(src[i]) for n values (n a positive
// multiple of 8) with F16C's VCVTPS2PH and VCVTPH2PS (f16cvt_amd64.s).
//
//go:noescape
func roundF16x8(dst, src *float32, n int)

// roundF16RowsF16C is roundF16Rows with roundF16x8.
func roundF16RowsF16C(dst, src []float32) {
	src = src[:len(dst)]
	n8 := len(dst) &^ 7
	if n8 > 0 {
		roundF16x8(&dst[0], &src[0], n8)
	}
	for i := n8; i < len(dst); i++ {
		dst[i] = roundF16(src[i])
	}
}

// cpuHasF16C reports CPUID leaf 1's F16C bit (ECX bit 29); VCVTPH2PS also
// needs the AVX state the OS enables, which hasSIMD (AVX2) already implies.
func cpuHasF16C() bool {
	_, _, ecx, _ := cpuid(1, 0)
	return ecx&(1<<29) != 0
}

// cpuIsIntel reports whether CPUID's vendor string starts "Genu"
// (GenuineIntel).
func cpuIsIntel() bool {
	_, ebx, _, _ := cpuid(0, 0)
	return ebx == 0x756e6547
}

// cvtF16Blocks converts k blocks of m binary16 values (m a positive
// multiple of 32, 1 <= k <= kvStreams) from srcs[i] to dst[i*m:] with
// AVX-512's VCVTPH2PS on 16 values, reading the blocks side by side
// (f16cvt_amd64.s).
//
//go:noescape
func cvtF16Blocks(dst *float32, srcs *[kvStreams]*byte, k, m int)
