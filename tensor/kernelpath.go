package tensor

import "fmt"

// KernelPath describes which kernels this binary runs on this CPU, for
// `stepflash version` and logs: "SIMD (AVX-512, GFNI, VNNI, BF16)" (the
// AVX-512 extensions in use listed), "SIMD (AVX-512)" or "SIMD (AVX2)" when
// the simd/archsimd kernels are in use, otherwise "pure Go (…)" with the
// reason: the binary was built without GOEXPERIMENT=simd, the architecture
// has no SIMD kernels, or the CPU lacks AVX2. The results are the same on
// every path, but for BF16 weights with AVX512_BF16 (see the package
// comment).
func KernelPath() string {
	return kernelPath()
}

// KernelName is the kernel path as a short, stable token for metric labels
// and JSON: "avx512-gfni", "avx512", "avx2" or "purego".
func KernelName() string {
	return kernelName()
}

// SIMDBuildWouldHelp reports whether this binary runs the pure-Go kernels
// only because it was built without GOEXPERIMENT=simd, on a CPU (amd64 with
// AVX2) whose SIMD kernels a GOEXPERIMENT=simd build would use.
func SIMDBuildWouldHelp() bool {
	return simdBuildWouldHelp()
}

// pureGoSlowdown is the measured cost of the pure-Go kernels: a
// GOEXPERIMENT=simd build decodes the shared tiny models and bench-dense
// Q4_K_M 3-10x faster on an AVX-512 CPU, and prefills them up to 20x
// faster (issue 15; the report of the commit that set it has the commands).
const pureGoSlowdown = "3–20×"

// KernelNotice is the line `run`, `bench` and `serve` print at start: the
// kernel path and, for the pure-Go kernels, what they cost; a pure-Go build
// on a CPU that could run the SIMD kernels gets a warning to rebuild.
func KernelNotice() string {
	switch {
	case KernelName() != "purego":
		return "kernels: " + KernelPath()
	case SIMDBuildWouldHelp():
		return fmt.Sprintf("warning: kernels: %s, but this CPU has AVX2: a GOEXPERIMENT=simd build (make build) runs %s faster; see README", KernelPath(), pureGoSlowdown)
	}
	return fmt.Sprintf("kernels: %s: expect %s slower than the SIMD kernels on an AVX2 CPU; see README", KernelPath(), pureGoSlowdown)
}
