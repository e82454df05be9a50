package tensor

import (
	"os"
	"runtime"
	"strings"
	"testing"
)

// TestKernelPathReport: the short name, the words and the start-up notice
// describe the same path, and a pure-Go build warns exactly when the CPU
// has AVX2 (checked against the kernel's view of the CPU, /proc/cpuinfo).
func TestKernelPathReport(t *testing.T) {
	name, path, notice := KernelName(), KernelPath(), KernelNotice()
	words := map[string]string{
		"avx512-gfni": "SIMD (AVX-512, GFNI)",
		"avx512":      "SIMD (AVX-512)",
		"avx2":        "SIMD (AVX2)",
	}
	if want, ok := words[name]; ok && strings.HasPrefix(name, "avx512") && cpuInfoHas(t, "avx512_vnni") {
		words[name] = strings.TrimSuffix(want, ")") + ", VNNI)"
	}
	if want, ok := words[name]; ok && strings.HasPrefix(name, "avx512") && cpuInfoHas(t, "avx512_bf16") {
		words[name] = strings.TrimSuffix(want, ")") + ", BF16)"
	}
	if want, ok := words[name]; ok {
		if path != want || notice != "kernels: "+want {
			t.Errorf("name %q: path %q, notice %q; want %q", name, path, notice, want)
		}
	} else if name != "purego" || !strings.HasPrefix(path, "pure Go (") {
		t.Errorf("name %q, path %q", name, path)
	}
	if name == "purego" {
		if !strings.Contains(notice, "kernels: "+path) || !strings.Contains(notice, pureGoSlowdown) {
			t.Errorf("pure-Go notice %q does not give the path %q and the cost %q", notice, path, pureGoSlowdown)
		}
		if warn := strings.HasPrefix(notice, "warning: "); warn != SIMDBuildWouldHelp() || warn != strings.Contains(notice, "GOEXPERIMENT=simd build") {
			t.Errorf("notice %q: warning %v, SIMD build would help %v", notice, warn, SIMDBuildWouldHelp())
		}
	} else if SIMDBuildWouldHelp() {
		t.Errorf("SIMD kernels (%s) in use, yet a SIMD build would help", name)
	}
	if runtime.GOARCH != "amd64" {
		if SIMDBuildWouldHelp() || name != "purego" {
			t.Errorf("%s: name %q, SIMD build would help %v", runtime.GOARCH, name, SIMDBuildWouldHelp())
		}
		return
	}
	info, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		t.Skipf("no /proc/cpuinfo to check the CPU's AVX2 against: %v", err)
	}
	var flags []string
	for line := range strings.Lines(string(info)) {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "flags" {
			flags = strings.Fields(v)
			break
		}
	}
	avx2 := false
	for _, f := range flags {
		avx2 = avx2 || f == "avx2"
	}
	if strings.Contains(path, "built without GOEXPERIMENT=simd") {
		if SIMDBuildWouldHelp() != avx2 {
			t.Errorf("pure-Go build: SIMD build would help %v, but /proc/cpuinfo says AVX2 %v", SIMDBuildWouldHelp(), avx2)
		}
	} else if simd := name != "purego"; simd != avx2 {
		t.Errorf("SIMD build: kernels %q, but /proc/cpuinfo says AVX2 %v", name, avx2)
	}
	t.Logf("%s (%s): %s", name, path, notice)
}

// cpuInfoHas reports whether the kernel lists flag in /proc/cpuinfo (false
// where it cannot be read).
func cpuInfoHas(t *testing.T, flag string) bool {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		t.Logf("no /proc/cpuinfo: %v", err)
		return false
	}
	for _, f := range strings.Fields(string(b)) {
		if f == flag {
			return true
		}
	}
	return false
}
