package main

import (
	"fmt"
	"strings"
	"testing"

	"github.com/stepflash/stepflash/engine"
	"github.com/stepflash/stepflash/gguf"
	"github.com/stepflash/stepflash/internal/testmodels"
	"github.com/stepflash/stepflash/model"
)

// TestContextFlags: the KV cache and RoPE flags of run (and serve, which
// shares them) refuse what cannot work with a message that says what to
// change, and accept the compact caches and a scaled context.
func TestContextFlags(t *testing.T) {
	llama := testmodels.Path(t, "tiny-llama-F32.gguf") // 2048 trained positions, head size 32
	stories := testmodels.Path(t, "stories260K.gguf")  // head size 8
	for _, tc := range []struct {
		name string
		args []string
		err  string // "" must succeed
	}{
		{"f16 cache", []string{"-m", llama, "-ctk", "f16", "-ctv", "f16"}, ""},
		{"q8_0 cache", []string{"-m", llama, "--cache-type-k", "q8_0", "--cache-type-v", "q8_0"}, ""},
		{"q8_0 on a head of 8", []string{"-m", stories, "-ctk", "q8_0"}, "needs a head size that is a multiple of 32; this model's is 8"},
		{"unknown cache type", []string{"-m", llama, "-ctv", "q4_0"}, `unknown KV cache type "q4_0"`},
		{"past the trained context", []string{"-m", llama, "-c", "4096"}, "longer than the 2048 this model's positions are trained for; pass -c 2048 or less, or scale RoPE to reach it: --rope-scaling yarn --rope-scale 2"},
		{"scaled with yarn", []string{"-m", llama, "-c", "4096", "--rope-scaling", "yarn", "--rope-scale", "2"}, ""},
		{"scaled linearly", []string{"-m", llama, "-c", "8192", "--rope-scaling", "linear", "--rope-scale", "4", "-ctk", "q8_0", "-ctv", "q8_0"}, ""},
		{"past the scaled context", []string{"-m", llama, "-c", "8192", "--rope-scaling", "yarn", "--rope-scale", "2"}, "longer than the 4096 this model's positions are scaled for"},
		{"unknown scaling", []string{"-m", llama, "--rope-scaling", "longrope"}, `RoPE scaling "longrope" is not supported`},
		{"KV budget", []string{"-m", llama, "-c", "2048", "--kv-memory", "1"}, "the KV cache needs 2.0 MiB (2048 positions: -c 2048 × --parallel 1, at 1024 bytes each with f32 keys and f32 values), more than --kv-memory (1.0 MiB)"},
		{"KV budget met by q8_0", []string{"-m", llama, "-c", "2048", "--kv-memory", "1", "-ctk", "q8_0", "-ctv", "q8_0"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"run"}, tc.args...)
			args = append(args, "--temp", "0", "-n", "2", "--", "Once")
			_, stderr, code := runMain(t, args...)
			switch {
			case tc.err == "" && code != 0:
				t.Fatalf("exit %d: %s", code, stderr)
			case tc.err != "" && (code == 0 || !strings.Contains(stderr, tc.err)):
				t.Fatalf("exit %d, stderr %q; want an error with %q", code, stderr, tc.err)
			}
		})
	}
}

// TestServeLogsKV: serve's load line says what the KV cache takes, per
// position from the model's shape and the cache types, and in all.
func TestServeLogsKV(t *testing.T) {
	path := testmodels.Path(t, "tiny-llama-F32.gguf")
	m, f, err := model.Open(path, model.Options{Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	per := engine.KVBytesPerTokenOf(m.Config(), gguf.TypeF16, gguf.TypeQ8_0)
	m.Close()
	f.Close()
	_, log, _ := startServe(t, "-m", path, "-c", "256", "--parallel", "2", "-ctk", "f16", "-ctv", "q8_0")
	want := fmt.Sprintf("; KV cache F16/Q8_0: %.1f KiB a position, up to ", float64(per)/1024)
	_, rest, ok := strings.Cut(log.String(), want)
	if !ok {
		t.Fatalf("serve log lacks %q:\n%s", want, log.String())
	}
	var mib float64
	if _, err := fmt.Sscanf(rest, "%f MiB (made as used)", &mib); err != nil || mib*(1<<20) < float64(per*256*2) {
		t.Errorf("the cache's whole size %.1f MiB (%v), want at least -c × --parallel positions (%d bytes)", mib, err, per*512)
	}
}
