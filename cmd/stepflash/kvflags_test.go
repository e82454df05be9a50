package main

import (
	"strings"
	"testing"

	"github.com/stepflash/stepflash/internal/testmodels"
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
