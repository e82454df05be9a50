//go:build !goexperiment.simd

package tensor

// kernelPath: built without GOEXPERIMENT=simd, the binary has only the
// pure-Go kernels.
func kernelPath() string {
	return "pure Go (built without GOEXPERIMENT=simd)"
}

func kernelName() string { return "purego" }

// simdBuildWouldHelp: a SIMD build would run its kernels on an amd64 CPU
// with AVX2 (and the OS saving the AVX state), as archsimd.X86.AVX2 checks.
func simdBuildWouldHelp() bool { return cpuHasAVX2 }
