package server_test

import (
	"encoding/json"
	"io"
	"math"
	"net/http"
	"strings"
	"testing"

	"github.com/stepflash/stepflash/api"
)

// TestTimings: every local chat and legacy completion carries llama-server's
// timings, whose counts agree with the usage and whose rates with the
// times; a repeated prompt shows the prefix cache's share in cache_n, and a
// stream carries them on its usage chunk.
func TestTimings(t *testing.T) {
	s := wireServer(t)
	const prompt = `"prompt":"Once upon a time there was a little girl who liked to play","max_tokens":12,"temperature":0,"ignore_eos":true`
	post := func(body string) (*api.Usage, *api.Timings) {
		t.Helper()
		resp, err := http.Post(s.URL+"/v1/completions", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out api.Completion
		if resp.StatusCode != 200 || json.NewDecoder(resp.Body).Decode(&out) != nil || out.Usage == nil || out.Timings == nil {
			t.Fatalf("status %d: no usage or no timings: %+v", resp.StatusCode, out)
		}
		return out.Usage, out.Timings
	}
	check := func(name string, u *api.Usage, tm *api.Timings) {
		t.Helper()
		if tm.PromptN+tm.CacheN != u.PromptTokens || tm.CacheN != u.PromptTokensDetails.CachedTokens || tm.PredictedN != u.CompletionTokens {
			t.Errorf("%s: timings %+v do not add up to the usage %+v", name, tm, u)
		}
		if tm.PromptMS <= 0 || tm.PredictedMS <= 0 {
			t.Errorf("%s: a prompt pass or %d tokens took no time: %+v", name, tm.PredictedN, tm)
		}
		near := func(a, b float64) bool { return math.Abs(a-b) <= 1e-9*b }
		if !near(tm.PromptPerSecond, 1e3*float64(tm.PromptN)/tm.PromptMS) || !near(tm.PredictedPerSecond, 1e3*float64(tm.PredictedN)/tm.PredictedMS) ||
			!near(tm.PromptPerTokenMS, tm.PromptMS/float64(tm.PromptN)) || !near(tm.PredictedPerTokenMS, tm.PredictedMS/float64(tm.PredictedN)) {
			t.Errorf("%s: rates disagree with counts and times: %+v", name, tm)
		}
	}
	u, tm := post(`{"model":"stories",` + prompt + `}`)
	check("cold", u, tm)
	if tm.CacheN != 0 || tm.PredictedN != 12 {
		t.Errorf("cold: cache_n %d predicted_n %d, want 0 and 12", tm.CacheN, tm.PredictedN)
	}
	u, tm = post(`{"model":"stories",` + prompt + `}`)
	check("warm", u, tm)
	if tm.CacheN == 0 || tm.PromptN < 1 {
		t.Errorf("repeated prompt: cache_n %d prompt_n %d, want part cached and the last token run", tm.CacheN, tm.PromptN)
	}

	resp, err := http.Post(s.URL+"/v1/completions", "application/json",
		strings.NewReader(`{"model":"stories",`+prompt+`,"stream":true,"stream_options":{"include_usage":true}}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var last api.Completion
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(body), "\n") {
		if data, ok := strings.CutPrefix(line, "data: "); ok && data != "[DONE]" {
			last = api.Completion{}
			if err := json.Unmarshal([]byte(data), &last); err != nil {
				t.Fatal(err)
			}
		}
	}
	if last.Usage == nil || last.Timings == nil {
		t.Fatalf("the stream's last chunk has no usage or timings: %s", body)
	}
	check("stream", last.Usage, last.Timings)
}
