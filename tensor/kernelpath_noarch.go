//go:build goexperiment.simd && !amd64

package tensor

import "runtime"

// kernelPath: the SIMD kernels are written for amd64 only.
func kernelPath() string {
	return "pure Go (no SIMD kernels for " + runtime.GOARCH + ")"
}

func kernelName() string { return "purego" }

func simdBuildWouldHelp() bool { return false }
