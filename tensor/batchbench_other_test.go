//go:build !(goexperiment.simd && amd64)

package tensor

import "testing"

func batchKernels(b *testing.B) { b.Skip("the batch kernels need a GOEXPERIMENT=simd build on amd64") }
