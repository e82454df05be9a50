package main

import (
	"runtime"

	"github.com/stepflash/stepflash/server"
	"github.com/stepflash/stepflash/tensor"
)

// serveBuildInfo puts stepflash_build_info on srv's /metrics: always 1, with
// the kernel path (tensor.KernelName: avx512-gfni, avx512, avx2 or purego,
// the last many times slower), the Go version and the stepflash version as
// labels, so that a dashboard can tell a slow build from a slow machine.
func serveBuildInfo(srv *server.Server) {
	v := readVersion()
	srv.Gauge("stepflash_build_info", "Always 1; the labels describe the binary: kernels is the kernel path "+
		"(avx512-gfni, avx512, avx2, or purego: the pure-Go kernels, many times slower), go the Go version, version the stepflash version.",
		func() []server.GaugeSample {
			return []server.GaugeSample{{Labels: []string{tensor.KernelName(), runtime.Version(), v.Version, v.Commit}, Value: 1}}
		}, "kernels", "go", "version", "commit")
}
