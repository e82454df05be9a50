//go:build !goexperiment.simd && !amd64

package tensor

// cpuHasAVX2: the SIMD kernels are amd64 only.
const cpuHasAVX2 = false
