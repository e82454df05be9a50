package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/stepflash/stepflash/internal/testmodels"
)

// TestBenchPrefixHit: bench --prefix-hit reports every round's time to
// first token cold and cached, the cached request's reused tokens, and the
// ratio of the medians; flags it cannot take are refused.
func TestBenchPrefixHit(t *testing.T) {
	path := testmodels.Path(t, "stories260K.gguf")
	stdout, stderr, code := runMain(t, "bench", "-m", path, "-p", "100", "--prefix-hit", "0.9", "-r", "3", "-t", "1", "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var got prefixHitReport
	if err := json.Unmarshal([]byte(stdout), &got); err != nil {
		t.Fatalf("bad JSON %q: %v", stdout, err)
	}
	if got.Prompt != 100 || got.Cached != 90 || len(got.ColdMS) != 3 || len(got.HitMS) != 3 || got.ColdMedMS <= 0 || got.HitMedMS <= 0 ||
		got.Ratio != got.HitMedMS/got.ColdMedMS {
		t.Fatalf("%+v", got)
	}
	stdout, stderr, code = runMain(t, "bench", "-m", path, "-p", "64", "--prefix-hit", "0.5", "-r", "1", "-t", "1")
	if code != 0 || !strings.Contains(stdout, "32 tokens cached") || !strings.Contains(stdout, "cached ÷ cold") {
		t.Fatalf("text output: exit %d, %q, %s", code, stdout, stderr)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--prefix-hit", "1"}, "between 0 and 1"},
		{[]string{"--prefix-hit", "0"}, "between 0 and 1"},
		{[]string{"--prefix-hit", "0.5", "-p", "1"}, "-p at least 2"},
		{[]string{"--prefix-hit", "0.5", "-n", "8"}, "-n, -d and --probe do not apply"},
		{[]string{"--prefix-hit", "0.001", "-p", "100"}, "no cached prefix"},
		{[]string{"--prefix-hit", "0.5", "--base-url", "http://127.0.0.1:1/v1"}, "not of the load mode"},
	} {
		_, stderr, code := runMain(t, append([]string{"bench", "-m", path, "-r", "1"}, tc.args...)...)
		if code == 0 || !strings.Contains(stderr, tc.want) {
			t.Errorf("%v: exit %d, %q; want an error saying %q", tc.args, code, stderr, tc.want)
		}
	}
}
