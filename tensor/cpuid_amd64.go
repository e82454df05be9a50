package tensor

// cpuid executes CPUID with leaf eaxArg and subleaf ecxArg (cpuid_amd64.s):
// archsimd reports ISA features but not the vendor, and a pure-Go build
// cannot import it at all.
func cpuid(eaxArg, ecxArg uint32) (eax, ebx, ecx, edx uint32)
