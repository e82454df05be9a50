package main

import (
	"encoding/json"
	"io"
	"net/http"
	"runtime"
	"strings"
	"testing"

	"github.com/stepflash/stepflash/internal/testmodels"
	"github.com/stepflash/stepflash/tensor"
)

// TestKernelsReported: run and bench print the kernel path (with the
// pure-Go build's cost or warning) as their first stderr line, bench --json
// names it, and serve logs it and puts it on /metrics as
// stepflash_build_info's kernels label.
func TestKernelsReported(t *testing.T) {
	path := testmodels.Path(t, "stories260K.gguf")
	notice := tensor.KernelNotice()
	if !strings.Contains(notice, tensor.KernelPath()) {
		t.Fatalf("notice %q lacks the kernel path %q", notice, tensor.KernelPath())
	}
	for _, c := range []struct {
		name string
		args []string
	}{
		{"run", []string{"run", "-m", path, "-t", "1", "--temp", "0", "-n", "2", "--", "Once"}},
		{"run --json", []string{"run", "-m", path, "-t", "1", "--temp", "0", "-n", "2", "--json", "--", "Once"}},
		{"bench", []string{"bench", "-m", path, "-t", "1", "-p", "4", "-n", "2", "-r", "1", "--probe=false", "--warmup=false"}},
		{"bench --json", []string{"bench", "-m", path, "-t", "1", "-p", "0", "-n", "2", "-r", "1", "--probe=false", "--warmup=false", "--json"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			stdout, stderr, code := runMain(t, c.args...)
			if code != 0 {
				t.Fatalf("exit %d: %s", code, stderr)
			}
			if first, _, _ := strings.Cut(stderr, "\n"); first != notice {
				t.Errorf("first stderr line %q, want %q", first, notice)
			}
			if c.name == "bench --json" {
				var got struct {
					Kernels string `json:"kernels"`
				}
				if err := json.Unmarshal([]byte(stdout), &got); err != nil || got.Kernels != tensor.KernelName() {
					t.Errorf("kernels %q (%v), want %q", got.Kernels, err, tensor.KernelName())
				}
			}
		})
	}
	t.Run("serve", func(t *testing.T) {
		base, log, _ := startServe(t, "-m", path)
		if !strings.Contains(log.String(), "stepflash serve: "+notice+"\n") {
			t.Errorf("serve log lacks %q:\n%s", notice, log.String())
		}
		resp, err := http.Get(base + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		want := `stepflash_build_info{kernels="` + tensor.KernelName() + `",go="` + runtime.Version() + `",`
		var line string
		for l := range strings.Lines(string(body)) {
			if strings.HasPrefix(l, want) {
				line = l
			}
		}
		if !strings.HasSuffix(line, "} 1\n") || !strings.Contains(string(body), "# TYPE stepflash_build_info gauge\n") {
			t.Errorf("/metrics has no %s...} 1 gauge:\n%s", want, body)
		}
	})
}
