package main

import (
	"encoding/json"
	"os"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/stepflash/stepflash/tensor"
)

// wantKernels returns the kernels line for this test binary: SIMD when
// built with GOEXPERIMENT=simd for amd64 on a CPU with AVX2 (Linux's
// /proc/cpuinfo tells the features), the pure-Go path otherwise.
func wantKernels(t *testing.T) string {
	t.Helper()
	simd := false
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "GOEXPERIMENT" && strings.Contains(s.Value, "simd") {
				simd = true
			}
		}
	}
	switch {
	case !simd:
		return "pure Go (built without GOEXPERIMENT=simd)"
	case runtime.GOARCH != "amd64":
		return "pure Go (no SIMD kernels for " + runtime.GOARCH + ")"
	}
	cpuinfo, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		t.Skipf("cannot tell the CPU's features: %v", err)
	}
	has := map[string]bool{}
	for line := range strings.Lines(string(cpuinfo)) {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "flags" {
			for _, f := range strings.Fields(v) {
				has[f] = true
			}
			break
		}
	}
	switch {
	case !has["avx2"]:
		return "pure Go (CPU lacks AVX2)"
	case !(has["avx512f"] && has["avx512cd"] && has["avx512bw"] && has["avx512dq"] && has["avx512vl"]):
		return "SIMD (AVX2)"
	}
	p := "SIMD (AVX-512"
	if has["gfni"] {
		p += ", GFNI"
	}
	if has["avx512_vnni"] {
		p += ", VNNI"
	}
	if has["avx512_bf16"] {
		p += ", BF16"
	}
	return p + ")"
}

func TestVersionCommand(t *testing.T) {
	kernels := wantKernels(t)
	for _, args := range [][]string{{"version"}, {"--version"}, {"-version"}} {
		out, errOut, code := runMain(t, args...)
		if code != 0 || errOut != "" {
			t.Fatalf("%v: exit %d, stderr %q", args, code, errOut)
		}
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if !strings.HasPrefix(lines[0], "stepflash ") {
			t.Errorf("%v: first line %q, want \"stepflash VERSION\"", args, lines[0])
		}
		for _, want := range []string{
			"\ncommit:      ",
			"\ngo:          " + runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH + "\n",
			"\ncgo:         ",
			"\nkernels:     " + kernels + "\n",
		} {
			if !strings.Contains(out, want) {
				t.Errorf("%v: output lacks %q:\n%s", args, want, out)
			}
		}
	}
	if _, _, code := runMain(t, "version", "extra"); code != 2 {
		t.Errorf("version with an argument: exit %d, want 2", code)
	}
}

func TestVersionJSON(t *testing.T) {
	for _, args := range [][]string{{"version", "--json"}, {"--version", "--json"}} {
		out, errOut, code := runMain(t, args...)
		if code != 0 {
			t.Fatalf("%v: exit %d, stderr %q", args, code, errOut)
		}
		var got map[string]any
		if err := json.Unmarshal([]byte(out), &got); err != nil {
			t.Fatalf("%v: %v in %q", args, err, out)
		}
		types := map[string]string{"version": "string", "commit": "string", "modified": "bool", "build_time": "string",
			"go": "string", "os": "string", "arch": "string", "cgo": "bool", "kernels": "string"}
		for k, typ := range types {
			v, ok := got[k]
			_, isBool := v.(bool)
			if !ok || (typ == "bool") != isBool {
				t.Errorf("%v: key %q = %v (present %v), want a %s", args, k, v, ok, typ)
			}
		}
		if len(got) != len(types) {
			t.Errorf("%v: %d keys, want %d: %v", args, len(got), len(types), got)
		}
		if got["go"] != runtime.Version() || got["kernels"] != wantKernels(t) {
			t.Errorf("%v: go %v, kernels %v", args, got["go"], got["kernels"])
		}
	}
}

func TestBuildVersion(t *testing.T) {
	rev := "0123456789abcdef0123456789abcdef01234567"
	cases := []struct {
		name string
		bi   *debug.BuildInfo
		want versionInfo // only version, commit, modified, build_time and cgo are compared
	}{
		{"no build info", nil, versionInfo{Version: "devel", Commit: "unknown"}},
		{"go test", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: []debug.BuildSetting{{Key: "CGO_ENABLED", Value: "1"}}},
			versionInfo{Version: "devel", Commit: "unknown", CGO: true}},
		{"make build, clean tree", &debug.BuildInfo{Main: debug.Module{Version: "v1.2.3"}, Settings: []debug.BuildSetting{
			{Key: "CGO_ENABLED", Value: "0"}, {Key: "vcs.revision", Value: rev}, {Key: "vcs.time", Value: "2025-01-02T03:04:05Z"}, {Key: "vcs.modified", Value: "false"}}},
			versionInfo{Version: "v1.2.3", Commit: "0123456789ab", BuildTime: "2025-01-02T03:04:05Z"}},
		{"modified tree", &debug.BuildInfo{Main: debug.Module{Version: "v0.0.0-20250102030405-0123456789ab+dirty"}, Settings: []debug.BuildSetting{
			{Key: "vcs.revision", Value: rev}, {Key: "vcs.modified", Value: "true"}}},
			versionInfo{Version: "v0.0.0-20250102030405-0123456789ab+dirty", Commit: "0123456789ab", Modified: true}},
	}
	for _, tc := range cases {
		got := buildVersion(tc.bi)
		if got.Version != tc.want.Version || got.Commit != tc.want.Commit || got.Modified != tc.want.Modified ||
			got.BuildTime != tc.want.BuildTime || got.CGO != tc.want.CGO {
			t.Errorf("%s: got %+v, want %+v", tc.name, got, tc.want)
		}
		if got.Go != runtime.Version() || got.OS != runtime.GOOS || got.Arch != runtime.GOARCH || got.Kernels != tensor.KernelPath() {
			t.Errorf("%s: runtime fields %+v", tc.name, got)
		}
	}
}

// TestVersionBuildCommit: a build without VCS information (a container
// build) reports the commit passed with -ldflags, cut to 12 digits; VCS
// information wins when there is some.
func TestVersionBuildCommit(t *testing.T) {
	old := buildCommit
	defer func() { buildCommit = old }()
	buildCommit = "0123456789abcdef0123"
	if v := buildVersion(nil); v.Commit != "0123456789ab" {
		t.Errorf("commit %q", v.Commit)
	}
	bi := &debug.BuildInfo{Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "fedcba9876543210"}}}
	if v := buildVersion(bi); v.Commit != "fedcba987654" {
		t.Errorf("commit %q", v.Commit)
	}
}
