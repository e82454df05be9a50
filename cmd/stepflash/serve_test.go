package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stepflash/stepflash/internal/testmodels"
	"github.com/stepflash/stepflash/internal/testserve"
)

// syncBuffer is the shared goroutine-safe log buffer.
type syncBuffer = testserve.Buffer

// startServe runs `stepflash serve ARGS` on a loopback port and waits until
// it is ready. stop shuts it down and returns runServe's error; the test's
// cleanup calls it too.
func startServe(t *testing.T, args ...string) (base string, log *syncBuffer, stop func() error) {
	t.Helper()
	log = &syncBuffer{}
	o, err := parseServe(append([]string{"--addr", "127.0.0.1:0", "-t", "1"}, args...), log)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	addr := make(chan net.Addr, 1)
	done := make(chan error, 1)
	go func() { done <- runServe(ctx, o, log, func(a net.Addr) { addr <- a }) }()
	var once sync.Once
	var stopErr error
	stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case stopErr = <-done:
			case <-time.After(60 * time.Second):
				stopErr = errors.New("serve did not shut down within 60s")
			}
		})
		return stopErr
	}
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	select {
	case a := <-addr:
		base = "http://" + a.String()
	case err := <-done:
		t.Fatalf("serve ended: %v\n%s", err, log.String())
	case <-time.After(20 * time.Second):
		t.Fatalf("serve did not listen within 20s\n%s", log.String())
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get(base + "/health/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
			if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" {
				t.Fatalf("ready: %d", resp.StatusCode)
			}
		}
		select {
		case err := <-done:
			t.Fatalf("serve ended while loading: %v\n%s", err, log.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("not ready within 20s: %v\n%s", err, log.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return base, log, stop
}

// TestServeCompletionMatchesRun: over HTTP, a greedy completion of
// stories260K gives the same text as `stepflash run`.
func TestServeCompletionMatchesRun(t *testing.T) {
	path := testmodels.Path(t, "stories260K.gguf")
	base, _, _ := startServe(t, "-m", path, "--alias", "tiny")
	out, errOut, code := runMain(t, "run", "-m", path, "-t", "1", "--temp", "0", "-n", "32", "--json", "--", "Once upon a time")
	if code != 0 {
		t.Fatalf("run: %d %s", code, errOut)
	}
	var want runOutput
	if err := json.Unmarshal([]byte(out), &want); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"stories260K", "tiny", "step-3.7-flash"} {
		resp, err := http.Post(base+"/v1/completions", "application/json",
			strings.NewReader(`{"model":"`+name+`","prompt":"Once upon a time","max_tokens":32,"temperature":0}`))
		if err != nil {
			t.Fatal(err)
		}
		var got struct {
			Choices []struct {
				Text string `json:"text"`
			} `json:"choices"`
		}
		json.NewDecoder(resp.Body).Decode(&got)
		resp.Body.Close()
		if resp.StatusCode != 200 || len(got.Choices) != 1 || got.Choices[0].Text != want.Text {
			t.Errorf("%s: %d %+v, want %q", name, resp.StatusCode, got, want.Text)
		}
	}
}

func TestServeFlags(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "serve.json")
	os.WriteFile(cfg, []byte(`{"addr":"127.0.0.1:9","parallel":3,"models":[{"model":"a.gguf","aliases":["x"]},{"model":"o/r:b.gguf","ctx":128,"effort":{"medium":{"thinking_budget":5},"high":{"thinking_budget":-1}}}]}`), 0o644)
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(body), 0o644)
		return p
	}
	badEffort := func(name, effort string) string {
		p := filepath.Join(dir, name+".json")
		os.WriteFile(p, []byte(`{"models":[{"model":"a.gguf","effort":`+effort+`}]}`), 0o644)
		return p
	}
	cases := []struct {
		name    string
		args    []string
		check   func(*serveOptions) bool
		wantErr bool
	}{
		{"aliases follow their -m", []string{"-m", "a.gguf", "--alias", "x", "--alias", "y", "-m", "b.gguf", "--alias", "z"}, func(o *serveOptions) bool {
			return len(o.specs) == 2 && strings.Join(o.specs[0].Aliases, ",") == "x,y" && strings.Join(o.specs[1].Aliases, ",") == "z" && o.addr == "0.0.0.0:8000"
		}, false},
		{"alias before -m", []string{"--alias", "x"}, nil, true},
		{"config", []string{"--config", cfg}, func(o *serveOptions) bool {
			e := o.specs[1].Effort
			return len(o.specs) == 2 && o.specs[1].Ctx == 128 && o.parallel == 3 && o.addr == "127.0.0.1:9" && o.specs[0].Effort == nil &&
				e != nil && e.Low == nil && *e.Medium.ThinkingBudget == 5 && e.Medium.ExpertsPerToken == nil && *e.High.ThinkingBudget == -1
		}, false},
		{"effort: unknown tier", []string{"--config", badEffort("tier", `{"extreme":{}}`)}, nil, true},
		{"effort: budget below -1", []string{"--config", badEffort("budget", `{"low":{"thinking_budget":-2}}`)}, nil, true},
		{"effort: zero experts", []string{"--config", badEffort("experts", `{"low":{"experts_per_token":0}}`)}, nil, true},
		{"effort: unknown field", []string{"--config", badEffort("field", `{"low":{"budget":1}}`)}, nil, true},
		{"flags beat config", []string{"--config", cfg, "--parallel", "5", "--addr", ":1"}, func(o *serveOptions) bool {
			return o.parallel == 5 && o.addr == ":1"
		}, false},
		{"positional", []string{"model.gguf"}, nil, true},
		{"upstream flags", []string{"--upstream", "http://a:8000/v1#m1", "--alias", "fast", "--upstream", "http://b:8000/v1", "--routing", "ordered", "-m", "x.gguf"}, func(o *serveOptions) bool {
			u := o.specs[0]
			return len(o.specs) == 2 && u.Name == "step-3.7-flash" && strings.Join(u.Aliases, ",") == "fast" && u.Routing == "ordered" && len(u.Upstreams) == 2 &&
				u.Upstreams[0].BaseURL == "http://a:8000/v1" && u.Upstreams[0].Model == "m1" && u.Upstreams[1].Model == "" && o.specs[1].Model == "x.gguf"
		}, false},
		{"upstream config", []string{"--config", write("up.json", `{"models":[{"name":"s","routing":"round_robin","upstreams":[{"base_url":"http://a/v1","api_key_env":"K","timeouts":{"connect":"2s","idle":"1m"},"discover":"dns","health":"models"}]}]}`)}, func(o *serveOptions) bool {
			u := o.specs[0].Upstreams[0]
			return o.specs[0].Routing == "round_robin" && u.APIKeyEnv == "K" && u.Timeouts.Connect == duration(2*time.Second) && u.Timeouts.Idle == duration(time.Minute) && u.Discover == "dns"
		}, false},
		{"upstream: model and upstreams", []string{"--config", write("both.json", `{"models":[{"name":"s","model":"a.gguf","upstreams":[{"base_url":"http://a/v1"}]}]}`)}, nil, true},
		{"upstream: no name", []string{"--config", write("noname.json", `{"models":[{"upstreams":[{"base_url":"http://a/v1"}]}]}`)}, nil, true},
		{"upstream: effort", []string{"--config", write("eff.json", `{"models":[{"name":"s","effort":{},"upstreams":[{"base_url":"http://a/v1"}]}]}`)}, nil, true},
		{"upstream: bad duration", []string{"--config", write("dur.json", `{"models":[{"name":"s","upstreams":[{"base_url":"http://a/v1","timeouts":{"idle":"soon"}}]}]}`)}, nil, true},
		{"upstream: unknown field", []string{"--config", write("field.json", `{"models":[{"name":"s","upstreams":[{"base_url":"http://a/v1","key":"x"}]}]}`)}, nil, true},
		{"upstream: bad routing", []string{"--config", write("route.json", `{"models":[{"name":"s","routing":"random","upstreams":[{"base_url":"http://a/v1"}]}]}`)}, nil, true},
		{"upstream: no base_url", []string{"--config", write("nourl.json", `{"models":[{"name":"s","upstreams":[{"model":"m"}]}]}`)}, nil, true},
		{"upstream: bad URL", []string{"--upstream", "ftp://a/v1"}, nil, true},
		{"routing without upstream", []string{"-m", "a.gguf", "--routing", "ordered"}, nil, true},
		{"bad parallel", []string{"--parallel", "0"}, nil, true},
		{"cache-ram", []string{"--cache-ram", "512"}, func(o *serveOptions) bool { return o.cacheRAM == 512 }, false},
		{"no prefix cache", []string{"--cache-ram", "-1"}, func(o *serveOptions) bool { return o.cacheRAM == -1 }, false},
		{"bad cache-ram", []string{"--cache-ram", "-2"}, nil, true},
		{"one region on --addr", []string{"--region", "cn", "--addr", ":9"}, func(o *serveOptions) bool {
			l, err := o.listeners(o.addr)
			return err == nil && len(l) == 1 && l[0] == regionFlag{"cn", ":9"}
		}, false},
		{"regions", []string{"--region", "global=:8000", "--region", "cn", "--addr", ":9", "--region-url", "cn=https://cn.example/v1/", "--require-keys"}, func(o *serveOptions) bool {
			l, err := o.listeners(o.addr)
			return err == nil && len(l) == 2 && l[0] == regionFlag{"global", ":8000"} && l[1] == regionFlag{"cn", ":9"} &&
				o.regionURLs["cn"] == "https://cn.example/v1" && o.requireKeys
		}, false},
		{"no default region", nil, func(o *serveOptions) bool {
			l, err := o.listeners(o.addr)
			return err == nil && len(l) == 1 && l[0] == regionFlag{"global", "0.0.0.0:8000"} && !o.requireKeys
		}, false},
		{"two regions on --addr", []string{"--region", "global", "--region", "cn"}, nil, true},
		{"region twice", []string{"--region", "cn=:1", "--region", "cn=:2"}, nil, true},
		{"bad region name", []string{"--region", "CN"}, nil, true},
		{"empty region address", []string{"--region", "cn="}, nil, true},
		{"advisor config", []string{"--config", write("adv.json", `{"models":[{"model":"a.gguf","advisor":{"model":"b.gguf","ctx":256,"mode":"advise","low_confidence":-0.5}}]}`)}, func(o *serveOptions) bool {
			a := o.specs[0].Advisor
			return a != nil && a.Model == "b.gguf" && a.Ctx == 256 && a.Mode == "advise" && *a.LowConfidence == -0.5
		}, false},
		{"advisor with aliases", []string{"--config", write("adva.json", `{"models":[{"model":"a.gguf","advisor":{"model":"b.gguf","aliases":["x"]}}]}`)}, nil, true},
		{"advisor mode", []string{"--config", write("advm.json", `{"models":[{"model":"a.gguf","advisor":{"model":"b.gguf","mode":"relay"}}]}`)}, nil, true},
		{"region-url not a URL", []string{"--region-url", "cn=cn.example"}, nil, true},
	}
	for _, tc := range cases {
		var log bytes.Buffer
		o, err := parseServe(tc.args, &log)
		if (err != nil) != tc.wantErr || (err == nil && !tc.check(o)) {
			t.Errorf("%s: err %v, opts %+v", tc.name, err, o)
		}
	}
}

// TestServeDefaultOffline: with no -m, no cached default and no network,
// serve fails with a message saying how to pass -m.
func TestServeDefaultOffline(t *testing.T) {
	var log bytes.Buffer
	o, err := parseServe([]string{"--addr", "127.0.0.1:0", "--cache-dir", t.TempDir()}, &log)
	if err != nil {
		t.Fatal(err)
	}
	o.hub.Endpoint = "http://127.0.0.1:1" // nothing listens: offline
	o.hub.Retries = 1
	err = runServe(context.Background(), o, &log, nil)
	if err == nil || !strings.Contains(err.Error(), "-m FILE.gguf") || !strings.Contains(err.Error(), "Qwen/Qwen3-0.6B-GGUF:Qwen3-0.6B-Q8_0.gguf") {
		t.Errorf("error %v", err)
	}
	o.offline = true
	if err := runServe(context.Background(), o, &log, nil); err == nil || !strings.Contains(err.Error(), "--offline") {
		t.Errorf("offline error %v", err)
	}
}

// TestServeCachedRef serves a model given as a hub reference already in the cache.
func TestServeCachedRef(t *testing.T) {
	src := testmodels.Path(t, "stories260K.gguf")
	cache := t.TempDir()
	dst := filepath.Join(cache, "someone", "tiny-GGUF", "stories.gguf")
	os.MkdirAll(filepath.Dir(dst), 0o755)
	b, _ := os.ReadFile(src)
	os.WriteFile(dst, b, 0o644)
	base, _, _ := startServe(t, "--cache-dir", cache, "--offline", "-m", "someone/tiny-GGUF:stories.gguf")
	resp, err := http.Get(base + "/v1/models")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var list struct {
		Data []struct {
			ID string `json:"id"`
		} `json:"data"`
	}
	json.NewDecoder(resp.Body).Decode(&list)
	if len(list.Data) != 2 || list.Data[0].ID != "stories" || list.Data[1].ID != "step-3.7-flash" {
		t.Errorf("models %+v", list)
	}
}

func TestPullCommand(t *testing.T) {
	data := []byte("GGUF fake model bytes")
	hubSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/o/r/resolve/main/m.gguf" {
			http.NotFound(w, r)
			return
		}
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(data))
	}))
	defer hubSrv.Close()
	cache := t.TempDir()
	out, errOut, code := runMain(t, "pull", "--endpoint", hubSrv.URL, "--cache-dir", cache, "--quiet", "o/r:m.gguf")
	want := filepath.Join(cache, "o", "r", "m.gguf")
	if code != 0 || strings.TrimSpace(out) != want {
		t.Fatalf("pull: %d %q %q", code, out, errOut)
	}
	if got, _ := os.ReadFile(want); !bytes.Equal(got, data) {
		t.Errorf("pulled %q", got)
	}
	if _, errOut, code := runMain(t, "pull", "--endpoint", hubSrv.URL, "--cache-dir", cache, "o/r:missing.gguf"); code != 1 || !strings.Contains(errOut, "not found") {
		t.Errorf("missing: %d %q", code, errOut)
	}
	if _, _, code := runMain(t, "pull"); code != 2 {
		t.Errorf("no argument: exit %d", code)
	}
}

// TestServeGracefulShutdown: a stream in flight when the server is told to
// stop still runs to its end ([DONE]); new connections are refused.
func TestServeGracefulShutdown(t *testing.T) {
	path := testmodels.Path(t, "stories260K.gguf")
	base, _, stop := startServe(t, "-m", path, "--quiet")
	resp, err := http.Post(base+"/v1/completions", "application/json",
		strings.NewReader(`{"model":"stories260K","prompt":"Once","max_tokens":400,"ignore_eos":true,"stream":true}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	buf := make([]byte, 1)
	if _, err := resp.Body.Read(buf); err != nil { // the stream has begun
		t.Fatal(err)
	}
	stopped := make(chan error, 1)
	go func() { stopped <- stop() }()
	rest, err := io.ReadAll(resp.Body)
	if err != nil || !strings.HasSuffix(string(rest), "data: [DONE]\n\n") || strings.Count(string(rest), `"text":`) < 300 {
		t.Errorf("stream cut by shutdown: err %v, %d bytes, ends %q", err, len(rest), string(rest[max(0, len(rest)-40):]))
	}
	if err := <-stopped; err != nil {
		t.Errorf("serve: %v", err)
	}
	if _, err := http.Get(base + "/health"); err == nil {
		t.Errorf("server still accepts connections after shutdown")
	}
}

// TestServeEffortConfigNeedsExperts: experts_per_token for a dense model,
// or above a MoE model's trained count, stops serve with an error naming
// the model and the allowed range.
func TestServeEffortConfigNeedsExperts(t *testing.T) {
	cases := []struct {
		model, effort, want string
	}{
		{"stories260K.gguf", `{"low":{"experts_per_token":1}}`, "dense model (llama, no experts), so only thinking_budget can be configured"},
		{"tiny-qwen3moe-F32.gguf", `{"high":{"experts_per_token":99}}`, "allowed 1.."},
	}
	for _, tc := range cases {
		cfg := filepath.Join(t.TempDir(), "serve.json")
		os.WriteFile(cfg, []byte(`{"models":[{"model":"`+testmodels.Path(t, tc.model)+`","effort":`+tc.effort+`}]}`), 0o644)
		var log syncBuffer
		o, err := parseServe([]string{"--config", cfg, "--addr", "127.0.0.1:0", "-t", "1", "--quiet"}, &log)
		if err != nil {
			t.Fatal(err)
		}
		err = runServe(context.Background(), o, &log, nil)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), tc.model) {
			t.Errorf("%s %s: error %v, want %q", tc.model, tc.effort, err, tc.want)
		}
	}
}
