package gguf

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// adviseHugePages asks the kernel to back b with transparent huge pages. It
// is only advice: with THP disabled the pages stay 4 KiB, and that is fine.
func adviseHugePages(b []byte) { _ = syscall.Madvise(b, syscall.MADV_HUGEPAGE) }

// availableMemory returns the memory this process can still take without
// swapping or meeting its container's limit: /proc/meminfo's MemAvailable,
// lowered to what the process's memory cgroup (v1 or v2) has left.
func availableMemory() (int64, bool) {
	avail, ok := memInfoAvailable("/proc/meminfo")
	if !ok {
		return 0, false
	}
	if c, ok := cgroupAvailable("/proc/self/cgroup", "/sys/fs/cgroup"); ok && c < avail {
		avail = c
	}
	return avail, true
}

// memInfoAvailable reads MemAvailable (page cache included) from a
// /proc/meminfo file, in bytes.
func memInfoAvailable(path string) (int64, bool) {
	fh, err := os.Open(path)
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

// cgroupAvailable returns the room left under the memory limit of the
// cgroup named in procCgroup (a /proc/self/cgroup file), with the cgroup
// filesystem mounted at root: limit - (usage - inactive file pages, which
// the kernel reclaims first). It reports false when there is no limit or
// the files cannot be read. Inside a cgroup namespace the process's cgroup
// is the mount's root, which is tried when the named path is absent.
func cgroupAvailable(procCgroup, root string) (int64, bool) {
	b, err := os.ReadFile(procCgroup)
	if err != nil {
		return 0, false
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.SplitN(line, ":", 3)
		if len(f) != 3 {
			continue
		}
		switch {
		case f[0] == "0" && f[1] == "": // v2
			for _, dir := range []string{filepath.Join(root, f[2]), root} {
				limit, ok1 := readCgroupInt(filepath.Join(dir, "memory.max"))
				usage, ok2 := readCgroupInt(filepath.Join(dir, "memory.current"))
				if ok1 && ok2 {
					return roomLeft(limit, usage, statValue(filepath.Join(dir, "memory.stat"), "inactive_file"))
				}
			}
		case hasController(f[1], "memory"): // v1
			for _, dir := range []string{filepath.Join(root, "memory", f[2]), filepath.Join(root, "memory")} {
				limit, ok1 := readCgroupInt(filepath.Join(dir, "memory.limit_in_bytes"))
				usage, ok2 := readCgroupInt(filepath.Join(dir, "memory.usage_in_bytes"))
				if ok1 && ok2 {
					return roomLeft(limit, usage, statValue(filepath.Join(dir, "memory.stat"), "total_inactive_file"))
				}
			}
		}
	}
	return 0, false
}

func hasController(list, name string) bool {
	for _, c := range strings.Split(list, ",") {
		if c == name {
			return true
		}
	}
	return false
}

// noLimit is where a cgroup limit counts as none (v1 writes 2^63 rounded
// down to a page; v2 writes "max", read as -1).
const noLimit = 1 << 60

func roomLeft(limit, usage, inactive int64) (int64, bool) {
	if limit < 0 || limit >= noLimit {
		return 0, false
	}
	used := max(0, usage-max(0, inactive))
	return max(0, limit-used), true
}

// readCgroupInt reads a cgroup file holding one integer, or "max" (-1).
func readCgroupInt(path string) (int64, bool) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, false
	}
	s := strings.TrimSpace(string(b))
	if s == "max" {
		return -1, true
	}
	v, err := strconv.ParseInt(s, 10, 64)
	return v, err == nil
}

// statValue returns key's value in a memory.stat file, 0 if absent.
func statValue(path, key string) int64 {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, " "); ok && k == key {
			n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			return n
		}
	}
	return 0
}
