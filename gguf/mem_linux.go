package gguf

import (
	"bufio"
	"bytes"
	"os"
	"strconv"
	"syscall"
)

// adviseHugePages asks the kernel to back b with transparent huge pages. It
// is only advice: with THP disabled the pages stay 4 KiB, and that is fine.
func adviseHugePages(b []byte) { _ = syscall.Madvise(b, syscall.MADV_HUGEPAGE) }

// availableMemory returns /proc/meminfo's MemAvailable in bytes: memory
// that can be handed out without swapping, page cache included.
func availableMemory() (int64, bool) {
	fh, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0, false
	}
	defer fh.Close()
	sc := bufio.NewScanner(fh)
	for sc.Scan() {
		rest, ok := bytes.CutPrefix(sc.Bytes(), []byte("MemAvailable:"))
		if !ok {
			continue
		}
		f := bytes.Fields(rest)
		if len(f) != 2 || string(f[1]) != "kB" {
			return 0, false
		}
		kb, err := strconv.ParseInt(string(f[0]), 10, 64)
		if err != nil || kb < 0 || kb > 1<<50 {
			return 0, false
		}
		return kb << 10, true
	}
	return 0, false
}
