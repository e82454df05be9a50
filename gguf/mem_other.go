//go:build !linux

package gguf

// adviseHugePages does nothing: huge-page advice is Linux's madvise flag.
func adviseHugePages([]byte) {}

// availableMemory is unknown here, so LoadAuto maps.
func availableMemory() (int64, bool) { return 0, false }
