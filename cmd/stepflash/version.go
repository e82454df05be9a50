package main

import (
	"cmp"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"

	"github.com/stepflash/stepflash/tensor"
)

// versionInfo is what `stepflash version` reports; the JSON keys are stable.
type versionInfo struct {
	Version   string `json:"version"`    // the main module's version, "devel" for a local build
	Commit    string `json:"commit"`     // the first 12 digits of the VCS revision, "unknown" without one
	Modified  bool   `json:"modified"`   // the working tree had uncommitted changes
	BuildTime string `json:"build_time"` // the time of the commit built (vcs.time), "" when unknown
	Go        string `json:"go"`
	OS        string `json:"os"`
	Arch      string `json:"arch"`
	CGO       bool   `json:"cgo"`
	Kernels   string `json:"kernels"` // tensor.KernelPath()
}

// buildCommit is the commit of a build without VCS information (a
// container build, whose context has no .git): -ldflags "-X
// main.buildCommit=...".
var buildCommit string

// readVersion collects the version from the build information the Go
// toolchain embeds in the binary.
func readVersion() versionInfo {
	bi, _ := debug.ReadBuildInfo()
	return buildVersion(bi)
}

// buildVersion reads a versionInfo from bi (nil: none available).
func buildVersion(bi *debug.BuildInfo) versionInfo {
	v := versionInfo{Version: "devel", Commit: cmp.Or(buildCommit, "unknown"), Go: runtime.Version(), OS: runtime.GOOS, Arch: runtime.GOARCH, Kernels: tensor.KernelPath()}
	v.Commit = v.Commit[:min(12, len(v.Commit))]
	if bi == nil {
		return v
	}
	if bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		v.Version = bi.Main.Version
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			v.Commit = s.Value[:min(12, len(s.Value))]
		case "vcs.modified":
			v.Modified = s.Value == "true"
		case "vcs.time":
			v.BuildTime = s.Value
		case "CGO_ENABLED":
			v.CGO = s.Value == "1"
		}
	}
	return v
}

func cmdVersion(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("version", flag.ContinueOnError)
	fs.SetOutput(stderr)
	asJSON := fs.Bool("json", false, "print one JSON object (keys: version, commit, modified, build_time, go, os, arch, cgo, kernels)")
	fs.Usage = func() {
		fmt.Fprint(stderr, `Usage: stepflash version [--json]

Print the version, commit and build of this binary, and which kernels it
runs on this CPU: SIMD ones need a build with GOEXPERIMENT=simd ("make build")
and a CPU with AVX2; otherwise the pure-Go ones run, slower but with the same
results. Also: stepflash --version.

Flags:
`)
		fs.PrintDefaults()
	}
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		fs.Usage()
		return errUsage
	}
	v := readVersion()
	if *asJSON {
		enc := json.NewEncoder(stdout)
		return enc.Encode(v)
	}
	commit := v.Commit
	if v.Modified {
		commit += " (modified)"
	}
	cgo := "off"
	if v.CGO {
		cgo = "on"
	}
	fmt.Fprintf(stdout, "stepflash %s\n", v.Version)
	fmt.Fprintf(stdout, "commit:      %s\n", commit)
	if v.BuildTime != "" {
		fmt.Fprintf(stdout, "commit time: %s\n", v.BuildTime)
	}
	fmt.Fprintf(stdout, "go:          %s %s/%s\n", v.Go, v.OS, v.Arch)
	fmt.Fprintf(stdout, "cgo:         %s\n", cgo)
	fmt.Fprintf(stdout, "kernels:     %s\n", v.Kernels)
	return nil
}
