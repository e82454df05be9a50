package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/stepflash/stepflash/internal/testmodels"
)

// TestBenchDepth: -d fills the cache before each test, as llama-bench's -d:
// the tests are named as llama-bench names them, the context grows to hold
// the depth, and a depth the cache cannot hold is an error, not a silent
// benchmark of an empty cache.
func TestBenchDepth(t *testing.T) {
	path := testmodels.Path(t, "tiny-llama-F32.gguf")
	stdout, stderr, code := runMain(t, "bench", "-m", path, "-p", "16", "-n", "4", "-d", "300", "-r", "2", "--json", "--probe=false")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var got struct {
		Results []benchStat `json:"results"`
	}
	if err := json.Unmarshal([]byte(stdout), &got); err != nil {
		t.Fatal(err)
	}
	if len(got.Results) != 2 || got.Results[0].Test != "pp16 @ d300" || got.Results[1].Test != "tg4 @ d300" {
		t.Fatalf("results %+v", got.Results)
	}
	_, stderr, code = runMain(t, "bench", "-m", path, "-p", "16", "-n", "4", "-d", "300", "-c", "64", "-r", "1", "--probe=false")
	if code == 0 || !strings.Contains(stderr, "KV cache full") {
		t.Fatalf("a depth past the context: exit %d, %s", code, stderr)
	}
	_, stderr, code = runMain(t, "bench", "-m", path, "-d", "-1")
	if code == 0 || !strings.Contains(stderr, "must not be negative") {
		t.Fatalf("-d -1: exit %d, %s", code, stderr)
	}
}
