//go:build goexperiment.simd && amd64

package tensor

import "simd/archsimd"

// kernelPath follows the choice made in simd_amd64.go's init: the AVX2
// kernels need AVX2, the AVX-512 ones AVX-512 as well, the Q6_K decode
// kernel that wins with GFNI needs AVX512GFNI too, the batched Q8_0,
// Q4_0 and Q5_0 kernels with VPDPBUSD need AVX512VNNI, and the BF16 kernels
// with VDPBF16PS need AVX512_BF16 (hasBF16DP).
func kernelPath() string {
	switch {
	case !hasSIMD:
		return "pure Go (CPU lacks AVX2)"
	case archsimd.X86.AVX512():
		p := "SIMD (AVX-512"
		if archsimd.X86.AVX512GFNI() {
			p += ", GFNI"
		}
		if archsimd.X86.AVX512VNNI() {
			p += ", VNNI"
		}
		if hasBF16DP {
			p += ", BF16"
		}
		return p + ")"
	}
	return "SIMD (AVX2)"
}

func kernelName() string {
	switch {
	case !hasSIMD:
		return "purego"
	case archsimd.X86.AVX512() && archsimd.X86.AVX512GFNI():
		return "avx512-gfni"
	case archsimd.X86.AVX512():
		return "avx512"
	}
	return "avx2"
}

// simdBuildWouldHelp: this is a SIMD build; it runs the SIMD kernels
// wherever the CPU can.
func simdBuildWouldHelp() bool { return false }
