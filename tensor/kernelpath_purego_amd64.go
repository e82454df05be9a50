//go:build !goexperiment.simd && amd64

package tensor

// xgetbv is in kernelpath_purego_amd64.s (cpuid in cpuid_amd64.s): a pure-Go
// build cannot import simd/archsimd, and the standard library exports no CPU
// features.
func xgetbv() (eax, edx uint32)

// cpuHasAVX2 is the check archsimd.X86.AVX2 (and Go's internal/cpu) makes:
// the CPU has AVX and AVX2, and the OS enabled XSAVE with the SSE and AVX
// state (XCR0 bits 1 and 2).
var cpuHasAVX2 = func() bool {
	maxID, _, _, _ := cpuid(0, 0)
	if maxID < 7 {
		return false
	}
	_, _, ecx1, _ := cpuid(1, 0)
	const osxsave, avx = 1 << 27, 1 << 28
	if ecx1&osxsave == 0 || ecx1&avx == 0 {
		return false
	}
	if xcr0, _ := xgetbv(); xcr0&6 != 6 {
		return false
	}
	_, ebx7, _, _ := cpuid(7, 0)
	return ebx7&(1<<5) != 0
}()
