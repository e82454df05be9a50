package tensor

// KernelPath describes which kernels this binary runs on this CPU, for
// `stepflash version` and logs: "SIMD (AVX-512, GFNI)", "SIMD (AVX-512)" or
// "SIMD (AVX2)" when the simd/archsimd kernels are in use, otherwise
// "pure Go (…)" with the reason: the binary was built without
// GOEXPERIMENT=simd, the architecture has no SIMD kernels, or the CPU lacks
// AVX2. The results are the same on every path (see the package comment).
func KernelPath() string {
	return kernelPath()
}
