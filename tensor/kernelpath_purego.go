//go:build !goexperiment.simd

package tensor

// kernelPath: built without GOEXPERIMENT=simd, the binary has only the
// pure-Go kernels.
func kernelPath() string {
	return "pure Go (built without GOEXPERIMENT=simd)"
}
