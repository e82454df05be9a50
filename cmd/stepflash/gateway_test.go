package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/stepflash/stepflash/internal/testmodels"
	"github.com/stepflash/stepflash/internal/testserve"
)

// The test binary doubles as the stepflash binary: with STEPFLASH_TEST_ARGS
// set (a JSON array) it runs Main with those arguments and exits, so tests
// can start real `stepflash serve` processes and kill -9 them.
func TestMain(m *testing.M) {
	if a := os.Getenv("STEPFLASH_TEST_ARGS"); a != "" {
		var args []string
		if err := json.Unmarshal([]byte(a), &args); err != nil {
			fmt.Fprintln(os.Stderr, "STEPFLASH_TEST_ARGS:", err)
			os.Exit(2)
		}
		os.Exit(Main(args, os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

var listeningRE = regexp.MustCompile(`listening on (http://\S+) `)

// process is a `stepflash serve` in a process of its own.
type process struct {
	cmd  *exec.Cmd
	base string
	log  *syncBuffer
}

// startProcess runs `stepflash ARGS` as a separate process, waits until it
// is ready and stops it when the test ends.
func startProcess(t *testing.T, args ...string) *process {
	t.Helper()
	b, _ := json.Marshal(args)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "STEPFLASH_TEST_ARGS="+string(b))
	p := &process{cmd: cmd, log: &syncBuffer{}}
	pr, pw := io.Pipe()
	cmd.Stderr = pw
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		pw.Close()
	})
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			line := sc.Text()
			p.log.Write([]byte(line + "\n"))
			if m := listeningRE.FindStringSubmatch(line); m != nil {
				select {
				case found <- m[1]:
				default:
				}
			}
		}
	}()
	select {
	case p.base = <-found:
	case <-time.After(60 * time.Second):
		t.Fatalf("stepflash %v did not listen:\n%s", args, p.log.String())
	}
	waitReady(t, p.base, p.log)
	return p
}

func waitReady(t *testing.T, base string, log *syncBuffer) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get(base + "/health/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s not ready:\n%s", base, log.String())
}

// TestServeGateway: `stepflash serve --upstream` in front of a real
// `stepflash serve` gives the official client what the replica gives it
// directly, and a --config with upstreams does the same.
func TestServeGateway(t *testing.T) {
	path := testmodels.Path(t, "stories260K.gguf")
	replica, _, _ := startServe(t, "-m", path, "--quiet")
	gw, _, _ := startServe(t, "--upstream", replica+"/v1#stories260K", "--quiet")
	cfg := filepath.Join(t.TempDir(), "gw.json")
	os.WriteFile(cfg, []byte(`{"models":[{"name":"story","aliases":["s"],"routing":"ordered","prices":{"input_miss":1,"input_hit":1,"output":2},
		"upstreams":[{"name":"replica","base_url":"`+replica+`/v1","model":"stories260K","api_key_env":"STEPFLASH_TEST_UNSET_KEY","timeouts":{"first_byte":"30s"}}]}]}`), 0o644)
	gw2, gw2log, _ := startServe(t, "--config", cfg, "--quiet")
	ctx := context.Background()
	params := openai.ChatCompletionNewParams{Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Once upon a time")},
		MaxTokens: openai.Int(12), Temperature: openai.Float(0)}
	params.Model = "stories260K"
	dc := testserve.NewClient(replica)
	direct, err := dc.Chat.Completions.New(ctx, params)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ base, model, backend string }{{gw, "step-3.7-flash", "upstream:" + strings.TrimPrefix(replica, "http://")}, {gw2, "s", "upstream:replica"}} {
		params.Model = tc.model
		c := testserve.NewClient(tc.base)
		got, err := c.Chat.Completions.New(ctx, params)
		if err != nil {
			t.Fatal(err)
		}
		if got.Choices[0].Message.Content != direct.Choices[0].Message.Content || got.Usage.CompletionTokens != direct.Usage.CompletionTokens || got.Model != tc.model {
			t.Errorf("%s: %q (%d tokens), direct %q (%d)", tc.base, got.Choices[0].Message.Content, got.Usage.CompletionTokens, direct.Choices[0].Message.Content, direct.Usage.CompletionTokens)
		}
		if !strings.Contains(got.RawJSON(), `"backend":"`+tc.backend+`"`) {
			t.Errorf("%s: stepflash object %s", tc.base, got.JSON.ExtraFields["stepflash"].Raw())
		}
	}
	// A key named for a self-hosted server but empty is a warning.
	if !strings.Contains(gw2log.String(), "warning: model \"story\": upstreams[0] ("+replica+"/v1): $STEPFLASH_TEST_UNSET_KEY (api_key_env) is empty or unset: no API key is sent") {
		t.Errorf("no warning for the empty key:\n%s", gw2log.String())
	}
	// The config's prices bill the usage.
	params.Model = "story"
	c2 := testserve.NewClient(gw2)
	got, err := c2.Chat.Completions.New(ctx, params)
	if err != nil {
		t.Fatal(err)
	}
	var cost float64
	json.Unmarshal([]byte(got.Usage.JSON.ExtraFields["cost"].Raw()), &cost)
	if want := float64(got.Usage.PromptTokens+2*got.Usage.CompletionTokens) / 1e6; abs(cost-want) > 1e-12 {
		t.Errorf("cost %g, want %g from the configured prices", cost, want)
	}
	resp, err := http.Get(gw + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`stepflash_upstream_requests_total{model="step-3.7-flash",upstream="` + strings.TrimPrefix(replica, "http://") + `",outcome="ok"} 1`,
		`stepflash_upstream_up{model="step-3.7-flash",upstream="` + strings.TrimPrefix(replica, "http://") + `"} 1`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

// TestServeStartErrors: what serve can find wrong before it listens is the
// first and only thing it prints: no "listening on", no "shutting down".
func TestServeStartErrors(t *testing.T) {
	dir := t.TempDir()
	bad := func(name, body string) string {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(body), 0o644)
		return p
	}
	stories := testmodels.Path(t, "stories260K.gguf")
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	cases := []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"missing file", []string{"-m", filepath.Join(dir, "nope.gguf")}, nil, "no such file, and not a Hugging Face reference"},
		{"not a GGUF file", []string{"-m", bad("notgguf.gguf", "hello")}, nil, "notgguf.gguf"},
		{"effort for a dense model", []string{"--config", bad("e.json", `{"models":[{"model":"`+stories+`","effort":{"low":{"experts_per_token":1}}}]}`)}, nil, "dense model"},
		{"StepFun without a key", []string{"--upstream", "https://api.stepfun.ai/v1"}, map[string]string{}, "$STEP_API_KEY is empty or unset (stepfun-global needs an API key)"},
		{"OpenRouter key named but empty", []string{"--config", bad("k.json", `{"models":[{"name":"x","upstreams":[{"base_url":"https://openrouter.ai/api/v1","api_key_env":"NO_SUCH_KEY_VAR"}]}]}`)}, map[string]string{}, "$NO_SUCH_KEY_VAR is empty or unset (openrouter needs an API key)"},
		{"address in use", []string{"-m", stories, "--addr", busy.Addr().String()}, nil, "address already in use"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var log syncBuffer
			o, err := parseServe(append([]string{"--addr", "127.0.0.1:0", "-t", "1", "--quiet"}, tc.args...), &log)
			if err == nil {
				if tc.env != nil {
					o.getenv = func(k string) string { return tc.env[k] }
				}
				err = runServe(context.Background(), o, &log, nil)
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
			if out := log.String(); strings.Contains(out, "listening on") || strings.Contains(out, "shutting down") {
				t.Errorf("printed before the cause:\n%s", out)
			}
		})
	}
}

// TestGatewayFault: a gateway over two replica processes under 16
// concurrent streaming clients; one replica is killed with SIGKILL. Every
// request that had not begun streaming succeeds on the other replica; those
// cut mid-stream end with an error event and [DONE]; none hangs.
func TestGatewayFault(t *testing.T) {
	path := testmodels.Path(t, "stories260K.gguf")
	r1 := startProcess(t, "serve", "-m", path, "--addr", "127.0.0.1:0", "-t", "1", "--parallel", "8", "--quiet")
	r2 := startProcess(t, "serve", "-m", path, "--addr", "127.0.0.1:0", "-t", "1", "--parallel", "8", "--quiet")
	gw, gwLog, _ := startServe(t, "--upstream", r1.base+"/v1#stories260K", "--upstream", r2.base+"/v1#stories260K", "--routing", "round_robin", "--quiet")

	type outcome int
	const (
		completed outcome = iota
		cutMidStream
		broken
	)
	var mu sync.Mutex
	counts := map[outcome]int{}
	var brokenSamples []string
	var killed atomic.Bool
	var startedAfterKill, streaming atomic.Int32
	stream := func(first func()) (outcome, string) {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		body := `{"model":"step-3.7-flash","prompt":"Once upon a time","max_tokens":160,"ignore_eos":true,"temperature":0,"stream":true}`
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, gw+"/v1/completions", strings.NewReader(body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return broken, "request: " + err.Error()
		}
		defer resp.Body.Close()
		var b []byte
		buf := make([]byte, 4096)
		for {
			n, err := resp.Body.Read(buf)
			if n > 0 && len(b) == 0 {
				first()
			}
			b = append(b, buf[:n]...)
			if err == io.EOF {
				break
			}
			if err != nil {
				return broken, fmt.Sprintf("reading (hung or cut without [DONE]): %v", err)
			}
		}
		if resp.StatusCode != 200 {
			return broken, fmt.Sprintf("HTTP %d: %s", resp.StatusCode, b)
		}
		events := strings.Split(strings.TrimSpace(string(b)), "\n\n")
		if events[len(events)-1] != "data: [DONE]" {
			return broken, "no [DONE] at the end: " + string(b[max(0, len(b)-200):])
		}
		errEvent := len(events) >= 2 && strings.HasPrefix(events[len(events)-2], `data: {"error"`)
		texts := strings.Count(string(b), `"text":`)
		switch {
		case !errEvent && strings.Contains(string(b), `"finish_reason":"length"`):
			return completed, ""
		case errEvent && texts > 0:
			return cutMidStream, ""
		}
		return broken, string(b[max(0, len(b)-300):])
	}
	// Each client streams until one of its requests has started after the
	// kill and ended; the kill comes once all 16 first streams are flowing,
	// so both replicas are mid-stream when r1 dies, however fast the build.
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				after := killed.Load()
				o, why := stream(func() {
					if i == 0 {
						streaming.Add(1)
					}
				})
				mu.Lock()
				counts[o]++
				if o == broken {
					brokenSamples = append(brokenSamples, why)
				}
				if after {
					startedAfterKill.Add(1)
					if o != completed {
						brokenSamples = append(brokenSamples, "a request started after the kill failed: "+why)
					}
				}
				mu.Unlock()
				if after || o == broken {
					return
				}
			}
		}()
	}
	deadline := time.Now().Add(30 * time.Second)
	for streaming.Load() < 16 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if err := r1.cmd.Process.Kill(); err != nil { // SIGKILL
		t.Fatal(err)
	}
	killed.Store(true)
	wg.Wait()
	t.Logf("completed %d, cut mid-stream %d, broken %d, started after the kill %d (streaming at the kill: %d)", counts[completed], counts[cutMidStream], counts[broken], startedAfterKill.Load(), streaming.Load())
	if len(brokenSamples) > 0 {
		t.Errorf("%d requests went wrong, e.g.:\n%s\ngateway log:\n%s", len(brokenSamples), strings.Join(brokenSamples[:min(5, len(brokenSamples))], "\n"), gwLog.String())
	}
	if counts[cutMidStream] == 0 {
		t.Errorf("no stream was cut by the kill: the test did not test anything")
	}
	if startedAfterKill.Load() < 16 {
		t.Errorf("only %d requests started after the kill", startedAfterKill.Load())
	}
}

// TestFlagUpstreamKey: the flag form takes its key from --upstream-key-env,
// else the known service's variable, else STEP_API_KEY when the URL is
// $STEP_BASE_URL; another URL gets no key.
func TestFlagUpstreamKey(t *testing.T) {
	env := map[string]string{"STEP_BASE_URL": "http://step.local:9000/v1/", "STEP_API_KEY": "k"}
	getenv := func(k string) string { return env[k] }
	for _, tc := range []struct{ url, keyEnv, want string }{
		{"http://step.local:9000/v1", "", "STEP_API_KEY"},
		{"http://other:9000/v1", "", ""},
		{"http://other:9000/v1", "MY_KEY", "MY_KEY"},
		{"https://api.stepfun.com/v1", "", ""}, // the known route's variable is applied when the pool is made
	} {
		spec, err := flagUpstreams([]string{tc.url}, tc.keyEnv, "", getenv)
		if err != nil {
			t.Fatal(err)
		}
		if got := spec.Upstreams[0].APIKeyEnv; got != tc.want {
			t.Errorf("%s (key env %q): api_key_env %q, want %q", tc.url, tc.keyEnv, got, tc.want)
		}
		pc, _, err := spec.poolConfig(getenv)
		if tc.url == "https://api.stepfun.com/v1" && (err != nil || pc.Upstreams[0].APIKey != "k" || pc.Upstreams[0].KeyEnv != "STEP_API_KEY") {
			t.Errorf("StepFun: %+v %v", pc.Upstreams, err)
		}
	}
}
