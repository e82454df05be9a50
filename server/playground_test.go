package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/stepflash/stepflash/advisor"
	"github.com/stepflash/stepflash/auth"
	"github.com/stepflash/stepflash/chat"
	"github.com/stepflash/stepflash/engine"
	"github.com/stepflash/stepflash/internal/testmodels"
	"github.com/stepflash/stepflash/internal/testserve"
	"github.com/stepflash/stepflash/local"
	"github.com/stepflash/stepflash/media"
	"github.com/stepflash/stepflash/server"
	"github.com/stepflash/stepflash/vision"
)

// TestPlaygroundHTTP: the playground's files are served at / and
// /playground/ with a strict CSP and nosniff, revalidated by ETag, without
// an API key when keys are on (the API itself still wants one); other
// paths stay 404 error objects, and a server that does not serve the
// playground answers / with 404 too.
func TestPlaygroundHTTP(t *testing.T) {
	authn := auth.New(auth.Options{Require: true})
	s := startServer(t, server.Config{Middleware: []server.Middleware{authn.Middleware}}, nil, echoModel("m"))
	s.Srv.ServePlayground()
	plain := startServer(t, server.Config{}, nil, echoModel("m"))

	get := func(method, url string, hdr ...string) (*http.Response, string) {
		t.Helper()
		req, _ := http.NewRequest(method, url, nil)
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	for _, tc := range []struct {
		method, url  string
		status       int
		ctype, inner string // Content-Type prefix; a string the body holds
		playground   bool   // carries the playground's security headers
	}{
		{"GET", s.URL + "/", 200, "text/html", `<script src="/playground/app.js" defer></script>`, true},
		{"HEAD", s.URL + "/", 200, "text/html", "", true},
		{"GET", s.URL + "/playground/app.js", 200, "text/javascript", "AbortController", true},
		{"GET", s.URL + "/playground/markdown.js", 200, "text/javascript", "textContent", true},
		{"GET", s.URL + "/playground/style.css", 200, "text/css", "@media (max-width: 700px)", true},
		{"GET", s.URL + "/playground/icon.svg", 200, "image/svg+xml", "<svg", true},
		{"GET", s.URL + "/playground/nope.js", 404, "application/json", `"code":"not_found"`, false},
		{"GET", s.URL + "/playground/index.html", 404, "application/json", `"code":"not_found"`, false},
		{"GET", s.URL + "/playground/", 404, "application/json", `"code":"not_found"`, false},
		{"GET", s.URL + "/index.html", 404, "application/json", `"code":"not_found"`, false},
		{"POST", s.URL + "/", 404, "application/json", `"code":"not_found"`, false},
		{"GET", s.URL + "/v1/models", 401, "application/json", `"code":"missing_api_key"`, false},
		{"GET", plain.URL + "/", 404, "application/json", `"code":"not_found"`, false},
		{"GET", plain.URL + "/playground/app.js", 404, "application/json", `"code":"not_found"`, false},
	} {
		resp, body := get(tc.method, tc.url)
		name := tc.method + " " + strings.TrimPrefix(strings.TrimPrefix(tc.url, s.URL), plain.URL)
		if resp.StatusCode != tc.status || !strings.HasPrefix(resp.Header.Get("Content-Type"), tc.ctype) || !strings.Contains(body, tc.inner) {
			t.Errorf("%s: %d %q, want %d %s holding %q; body %.200s", name, resp.StatusCode, resp.Header.Get("Content-Type"), tc.status, tc.ctype, tc.inner, body)
		}
		csp := resp.Header.Get("Content-Security-Policy")
		if tc.playground != (csp != "") {
			t.Errorf("%s: Content-Security-Policy %q", name, csp)
		}
		if tc.playground {
			for _, want := range []string{"default-src 'none'", "script-src 'self'", "connect-src 'self'", "frame-ancestors 'none'"} {
				if !strings.Contains(csp, want) {
					t.Errorf("%s: Content-Security-Policy %q lacks %s", name, csp, want)
				}
			}
			if strings.Contains(csp, "unsafe") {
				t.Errorf("%s: Content-Security-Policy %q allows unsafe sources", name, csp)
			}
			if resp.Header.Get("X-Content-Type-Options") != "nosniff" || resp.Header.Get("ETag") == "" {
				t.Errorf("%s: X-Content-Type-Options %q, ETag %q", name, resp.Header.Get("X-Content-Type-Options"), resp.Header.Get("ETag"))
			}
			if again, _ := get("GET", tc.url, "If-None-Match", resp.Header.Get("ETag")); again.StatusCode != http.StatusNotModified {
				t.Errorf("%s with its ETag: %d, want 304", name, again.StatusCode)
			}
		}
	}
	// The page's own files are all it references.
	_, page := get("GET", s.URL+"/")
	for _, ref := range []string{"/playground/style.css", "/playground/markdown.js", "/playground/icon.svg"} {
		if !strings.Contains(page, ref) {
			t.Errorf("the page does not reference %s", ref)
		}
	}
	if strings.Contains(page, "http://") || strings.Contains(page, "https://") || strings.Contains(page, "<script>") || strings.Contains(page, "style=") {
		t.Errorf("the page loads something from elsewhere or has inline script or style")
	}
}

// chromium finds a Chromium or Chrome binary.
func chromium() string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// playgroundVLMTemplate renders the trained VLM's raw prompt format (its
// file has no template; ../shared/models/trained/vision/README.md).
const playgroundVLMTemplate = `{%- for m in messages %}<|im_start|>User:{% if m.content is string %}{{ m.content }}{% else %}{% for p in m.content %}{{ p.text }}{% endfor %}{% endif %}<end_of_utterance>
{% endfor %}Assistant:`

// vlmModel serves the trained vision pair as "vlm".
func vlmModel(t *testing.T) *server.Model {
	dir := filepath.Join(testmodels.Models(t), "trained", "vision")
	l := testserve.LoadPath(t, filepath.Join(dir, "vlm-text-F32.gguf"))
	enc, err := vision.Open(filepath.Join(dir, "vlm-mmproj-F32.gguf"), vision.Options{Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { enc.Close() })
	tmpl, err := chat.NewTemplate(playgroundVLMTemplate)
	if err != nil {
		t.Fatal(err)
	}
	e := engine.New(l.Model, l.Tok, engine.Options{Context: 512})
	t.Cleanup(e.Close)
	return testserve.LocalModel(t, "vlm", nil, local.Model{Engine: e, Tok: l.Tok, Config: l.Model.Config(), Template: tmpl,
		Vision: local.VisionEncoder{Encoder: enc}, Images: media.New(media.Options{})})
}

// reply is what the page shows of its last assistant message.
type reply struct {
	State, Content, Reasoning, Error     string
	Prompt, Cached, Completion, RTokens  string
	Effort, EffortText, Cost, Advisor    string
	Strong, Code                         string
	Dangerous, ReasoningBlocks, Messages int
}

const lastReplyJS = `(() => {
  const all = document.querySelectorAll('#messages article');
  const a = [...document.querySelectorAll('#messages article.assistant')].pop();
  if (!a) return {Messages: all.length};
  const q = (s) => { const e = a.querySelector(s); return e ? e.textContent : ""; };
  const eff = a.querySelector('.stat.effort');
  return {State: a.dataset.state || "", Content: q('.content'), Reasoning: q('.reasoning-text'), Error: q('.error'),
    Prompt: q('.stat.prompt .v'), Cached: q('.stat.cached .v'), Completion: q('.stat.completion .v'), RTokens: q('.stat.reasoning .v'),
    Effort: eff ? eff.dataset.applied : "", EffortText: q('.stat.effort .v'), Cost: q('.stat.cost .v'), Advisor: q('.badge.advisor'),
    Strong: q('.content strong'), Code: q('.content pre.code'),
    Dangerous: document.querySelectorAll('#messages script, #messages img:not(.images img), #messages iframe, #messages [onerror]').length,
    ReasoningBlocks: a.querySelectorAll('details.reasoning').length, Messages: all.length};
})()`

// TestPlaygroundBrowser drives the playground in headless Chromium against
// a real server: a reply streams in with its tokens, cost and effort echo;
// switching the effort changes the echo; the vision model answers about
// an attached image; Esc stops a generation; a reply holding <script> and
// an onerror image shows as text; reasoning is collapsible; a tool defined
// in the editor is called and its result sent back; the advisor
// field is sent and its badge shown; the exported curl command reproduces
// the request; conversations survive a reload; the page fits a phone.
// Screenshots go to $STEPFLASH_SCREENSHOTS (docs/img for the README).
func TestPlaygroundBrowser(t *testing.T) {
	bin := chromium()
	if bin == "" {
		t.Skip("no chromium binary (apt-get install chromium): the playground's browser test needs one")
	}
	if testing.Short() {
		t.Skip("browser test in -short mode")
	}
	shots := os.Getenv("STEPFLASH_SCREENSHOTS")
	if shots == "" {
		shots = t.TempDir()
	}

	const injection = "Here: <script>window.__pwned=1</script>"
	words := make([]string, 200)
	for i := range words {
		words[i] = fmt.Sprintf("w%d ", i)
	}
	fast := &testserve.Scripted{Scripts: []testserve.Script{
		{Key: "inject", Pieces: []string{injection, " <img src=x onerror=\"window.__pwned=2\">", " and **bold** and `code`\n\n", "```html\n<script>alert(1)</script>\n```"}},
		{Key: "Think", Pieces: []string{"<think>", "2+2 is 4", "</think>", "The answer", " is 4."}, Reasoning: 3},
		{Key: "Stream", Pieces: words[:25]},
	}}
	slow := &testserve.Scripted{Delay: 40 * time.Millisecond, Scripts: []testserve.Script{{Key: "Count", Pieces: words}, {Key: "Stream", Pieces: words[:25]}}}
	big := testserve.ScriptedModel(t, "big", &testserve.Scripted{Scripts: []testserve.Script{{Key: "", Pieces: []string{"The advisor's answer."}}}}, nil)
	advised := scriptedModel(t, "advised", &testserve.Scripted{})
	mw, err := advisor.New(advisor.Config{Advisor: big.Backend, Model: "big"})
	if err != nil {
		t.Fatal(err)
	}
	advised.Backend = mw(advised.Backend)
	s := startServer(t, server.Config{}, []realModel{{File: "stories260K.gguf", Name: "stories"}},
		scriptedModel(t, "scripted", fast), scriptedModel(t, "slow", slow), advised, vlmModel(t), scriptedModel(t, "tools", &testserve.Scripted{Scripts: toolScripts()}))
	s.Srv.ServePlayground()

	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(bin), chromedp.NoSandbox, chromedp.Flag("disable-gpu", true), chromedp.WindowSize(1100, 760))...)
	defer cancelAlloc()
	ctx, cancel := chromedp.NewContext(actx, chromedp.WithLogf(t.Logf))
	defer cancel()
	ctx, cancelTimeout := context.WithTimeout(ctx, 4*time.Minute)
	defer cancelTimeout()

	var exMu sync.Mutex
	var exceptions []string
	thrown := chromedp.Events(ctx, runtime.ExceptionThrown)
	go func() {
		for ev, err := range thrown {
			if err != nil {
				return
			}
			exMu.Lock()
			exceptions = append(exceptions, ev.ExceptionDetails.Text+" "+fmt.Sprint(ev.ExceptionDetails.Exception))
			exMu.Unlock()
		}
	}()

	do := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(ctx, steps...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	last := func() reply {
		t.Helper()
		r, err := chromedp.Run(ctx, chromedp.Evaluate[reply](lastReplyJS))
		if err != nil {
			t.Fatalf("reading the page: %v", err)
		}
		return r
	}
	// finished waits for the last reply to end (done, stopped or error).
	finished := func() reply {
		t.Helper()
		_, err := chromedp.Run(ctx, chromedp.Poll[bool](`(() => { const a = [...document.querySelectorAll('#messages article.assistant')].pop();
			return !!a && a.dataset.state !== "streaming" && !document.body.classList.contains("busy"); })()`,
			chromedp.WithPollingInterval(20*time.Millisecond), chromedp.WithPollingTimeout(90*time.Second)))
		if err != nil {
			t.Fatalf("waiting for the reply: %v (page: %+v)", err, last())
		}
		return last()
	}
	choose := func(id, value string) {
		t.Helper()
		do("setting #"+id+" to "+value, chromedp.Evaluate[chromedp.Void](`(() => { const e = document.getElementById(`+strconv.Quote(id)+`);
			e.value = `+strconv.Quote(value)+`; e.dispatchEvent(new Event("change")); })()`))
	}
	// send types a message and presses Enter in a new conversation.
	send := func(text string) {
		t.Helper()
		do("sending "+text, chromedp.Click(chromedp.ID("new-chat")), chromedp.SendKeys(chromedp.ID("input"), text+kb.Enter))
	}
	shot := func(name string) {
		t.Helper()
		png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
		if err != nil {
			t.Fatalf("screenshot %s: %v", name, err)
		}
		if err := os.WriteFile(filepath.Join(shots, name), png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// direct asks the API the same as the page, for the numbers to compare.
	direct := func(body string) map[string]any {
		t.Helper()
		resp, err := http.Post(s.URL+"/v1/chat/completions", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var v map[string]any
		if err := json.NewDecoder(resp.Body).Decode(&v); err != nil || resp.StatusCode != 200 {
			t.Fatalf("direct request: %d %v %v", resp.StatusCode, v, err)
		}
		return v
	}

	do("loading the page", chromedp.Navigate(s.URL+"/"), chromedp.WaitReady(chromedp.CSS(`#model option[value="vlm"]`)),
		chromedp.Evaluate[chromedp.Void](`window.__csp = []; document.addEventListener("securitypolicyviolation", (e) => window.__csp.push(e.violatedDirective + " " + e.blockedURI))`))

	t.Run("stream", func(t *testing.T) {
		choose("model", "slow")
		send("Stream please")
		// Watch the reply grow: several partial texts before the end.
		seen := map[string]bool{}
		for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(15 * time.Millisecond) {
			r := last()
			if r.State != "streaming" && r.State != "" {
				break
			}
			if r.Content != "" {
				seen[r.Content] = true
			}
		}
		r := finished()
		want := strings.Join(words[:25], "")
		if r.State != "done" || strings.TrimSpace(r.Content) != strings.TrimSpace(want) || len(seen) < 3 {
			t.Fatalf("state %q, %d partial texts seen, content %q; want done, several partials, %q", r.State, len(seen), r.Content, want)
		}
		api := direct(`{"model": "slow", "messages": [{"role": "user", "content": "Stream please"}]}`)
		usage := api["usage"].(map[string]any)
		if r.Prompt != fmt.Sprint(usage["prompt_tokens"]) || r.Completion != "25" || r.Cached == "" || r.RTokens != "0" || !strings.HasPrefix(r.Cost, "$") || r.Cost == "$0" {
			t.Errorf("stats prompt %s cached %s completion %s reasoning %s cost %s; the API says prompt %v, completion 25", r.Prompt, r.Cached, r.Completion, r.RTokens, r.Cost, usage["prompt_tokens"])
		}
		if r.Effort != "medium" || r.EffortText != "default → medium" {
			t.Errorf("effort echo %q (%q), want medium, requested by default", r.Effort, r.EffortText)
		}
	})

	t.Run("effort", func(t *testing.T) {
		choose("model", "stories")
		do("max tokens", chromedp.SetValue(chromedp.ID("max-tokens"), "12"))
		for _, tier := range []string{"high", "low", "medium"} {
			choose("effort", tier)
			send("Once upon a time")
			r := finished()
			api := direct(`{"model": "stories", "max_tokens": 12, "reasoning_effort": "` + tier + `", "messages": [{"role": "user", "content": "Once upon a time"}]}`)
			applied := api["stepflash"].(map[string]any)["effort"].(map[string]any)["applied"]
			if r.State != "done" || r.Content == "" || r.Effort != tier || r.Effort != applied || r.EffortText != tier {
				t.Errorf("effort %s: state %q, content %q, echo %q (%q); the API applies %v", tier, r.State, r.Content, r.Effort, r.EffortText, applied)
			}
			if r.Completion == "" || r.Completion == "0" || r.Prompt == "" {
				t.Errorf("effort %s: prompt %q, completion %q tokens", tier, r.Prompt, r.Completion)
			}
		}
		shot("playground-chat.png")
		choose("effort", "")
	})

	t.Run("vision", func(t *testing.T) {
		choose("model", "stories")
		if hidden, _ := chromedp.Run(ctx, chromedp.Evaluate[bool](`document.getElementById("attach-label").hidden`)); !hidden {
			t.Errorf("the image button is offered for a text-only model")
		}
		choose("model", "vlm")
		do("temperature", chromedp.SetValue(chromedp.ID("temperature"), "0"))
		img := filepath.Join(testmodels.Models(t), "test-image-quadrants-64.png")
		do("attaching the image", chromedp.Click(chromedp.ID("new-chat")), chromedp.WaitVisible(chromedp.ID("attach-label")),
			chromedp.SetUploadFiles(chromedp.ID("attach"), []string{img}), chromedp.WaitVisible(chromedp.CSS("#attachments img")),
			chromedp.SendKeys(chromedp.ID("input"), "What colour is the top left quadrant?"+kb.Enter))
		r := finished()
		if r.State != "done" || strings.TrimSpace(r.Content) != "red" {
			t.Errorf("vision: state %q, answer %q (error %q), want red", r.State, r.Content, r.Error)
		}
		if n, _ := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll('#messages article.user .images img[src^="data:image/png;base64,"]').length`)); n != 1 {
			t.Errorf("%d attached images shown in the user message, want 1", n)
		}
		shot("playground-vision.png")
		do("temperature", chromedp.SetValue(chromedp.ID("temperature"), ""))
	})

	t.Run("stop", func(t *testing.T) {
		choose("model", "slow")
		send("Count to two hundred")
		if _, err := chromedp.Run(ctx, chromedp.Poll[bool](`(() => { const a = [...document.querySelectorAll('#messages article.assistant')].pop();
			return !!a && a.querySelector('.content').textContent.length > 10; })()`, chromedp.WithPollingTimeout(60*time.Second))); err != nil {
			t.Fatalf("no text before stopping: %v", err)
		}
		do("pressing Esc", chromedp.KeyEvent(kb.Escape))
		r := finished()
		full := strings.Join(words, "")
		if r.State != "stopped" || len(r.Content) == 0 || len(r.Content) >= len(strings.TrimSpace(full)) {
			t.Fatalf("after Esc: state %q, %d of %d characters", r.State, len(r.Content), len(full))
		}
		time.Sleep(300 * time.Millisecond)
		if again := last(); again.Content != r.Content || again.State != "stopped" {
			t.Errorf("the reply went on after the stop: %q then %q", r.Content, again.Content)
		}
		if visible, _ := chromedp.Run(ctx, chromedp.Evaluate[bool](`!document.getElementById("send").hidden && document.getElementById("stop").hidden`)); !visible {
			t.Errorf("Send is not back after the stop")
		}
	})

	t.Run("no HTML from the model", func(t *testing.T) {
		choose("model", "scripted")
		send("please inject")
		r := finished()
		if r.State != "done" || !strings.Contains(r.Content, injection) || !strings.Contains(r.Content, `<img src=x onerror="window.__pwned=2">`) {
			t.Errorf("state %q, content %q: want the markup shown as text", r.State, r.Content)
		}
		if user, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`[...document.querySelectorAll('#messages article.user')].pop().textContent`)); user != "userplease inject" {
			t.Errorf("the user message shows as %q", user)
		}
		if r.Dangerous != 0 || r.Strong != "bold" || !strings.Contains(r.Code, "<script>alert(1)</script>") {
			t.Errorf("%d script/img/iframe elements in the messages, bold %q, code block %q", r.Dangerous, r.Strong, r.Code)
		}
		if pwned, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`window.__pwned !== undefined`)); err != nil || pwned {
			t.Errorf("the model's script ran: %v %v", pwned, err)
		}
	})

	t.Run("reasoning", func(t *testing.T) {
		choose("model", "scripted")
		send("Think about 2+2")
		r := finished()
		if r.ReasoningBlocks != 1 || strings.TrimSpace(r.Reasoning) != "2+2 is 4" || strings.TrimSpace(r.Content) != "The answer is 4." || r.RTokens != "3" {
			t.Errorf("reasoning blocks %d %q, content %q, reasoning tokens %q", r.ReasoningBlocks, r.Reasoning, r.Content, r.RTokens)
		}
		if open, _ := chromedp.Run(ctx, chromedp.Evaluate[bool](`[...document.querySelectorAll('details.reasoning')].pop().open`)); open {
			t.Errorf("the reasoning block is open after the reply, want it collapsed")
		}
	})

	t.Run("tools", func(t *testing.T) {
		choose("model", "tools")
		tools := `[{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]`
		do("defining a tool", chromedp.Evaluate[chromedp.Void](`(() => { const e = document.getElementById("tools");
			e.value = `+strconv.Quote(tools)+`; e.dispatchEvent(new Event("input")); })()`))
		if status, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.getElementById("tools-status").textContent`)); status != "1 tool: get_weather" {
			t.Errorf("tools status %q", status)
		}
		send("Weather in Paris?")
		finished()
		call, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.querySelector("#messages .tool-call code").textContent`))
		if err != nil || call != `get_weather({"city": "Paris"})` {
			t.Fatalf("tool call shown as %q (%v)", call, err)
		}
		do("answering the call", chromedp.SendKeys(chromedp.CSS(".tool-answer input"), `{"sky": "clear"}`+kb.Enter))
		if r := finished(); r.State != "done" || r.Content != "It is sunny in Paris." {
			t.Errorf("after the tool result: %+v", r)
		}
		do("clearing the tools", chromedp.Evaluate[chromedp.Void](`(() => { const e = document.getElementById("tools"); e.value = ""; e.dispatchEvent(new Event("input")); })()`))
	})

	t.Run("advisor", func(t *testing.T) {
		for _, tc := range []struct {
			model, mode, content, badge, errCode string
		}{
			{"advised", "always", "The advisor's answer.", "advisor: always → big $", ""},
			{"advised", "off", "ok", "advisor: not needed", ""},
			{"scripted", "always", "", "", "invalid_advisor"},
		} {
			choose("model", tc.model)
			choose("advisor", tc.mode)
			send("Hello there")
			r := finished()
			if r.Content != tc.content || !strings.HasPrefix(r.Advisor, tc.badge) || !strings.Contains(r.Error, tc.errCode) || (tc.errCode == "") != (r.Error == "") {
				t.Errorf("%s with advisor %s: content %q, badge %q, error %q; want %q, %q…, %q", tc.model, tc.mode, r.Content, r.Advisor, r.Error, tc.content, tc.badge, tc.errCode)
			}
			if tc.mode == "always" && tc.errCode == "" {
				shot("playground-advisor.png")
			}
		}
		choose("advisor", "")
	})

	t.Run("export", func(t *testing.T) {
		choose("model", "scripted")
		choose("effort", "high")
		send("please inject")
		finished()
		do("opening the export", chromedp.Click(chromedp.ID("export")), chromedp.WaitVisible(chromedp.ID("export-code")))
		code := map[string]string{}
		for _, lang := range []string{"python", "node", "curl"} {
			text, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.querySelector('#export-dialog button[data-lang="`+lang+`"]').click(), document.getElementById("export-code").textContent`))
			if err != nil {
				t.Fatal(err)
			}
			code[lang] = text
		}
		shot("playground-export.png")
		do("closing the export", chromedp.Click(chromedp.ID("close-export")))
		for lang, wants := range map[string][]string{
			"curl":   {"curl " + s.URL + "/v1/chat/completions", `"model": "scripted"`, `"content": "please inject"`, `"reasoning_effort": "high"`, "Bearer $STEPFLASH_API_KEY"},
			"python": {"from openai import OpenAI", `base_url="` + s.URL + `/v1"`, `model="scripted"`, `"content": "please inject"`, `reasoning_effort="high"`},
			"node":   {`import OpenAI from "openai"`, `baseURL: "` + s.URL + `/v1"`, `"model": "scripted"`, `"content": "please inject"`, `"reasoning_effort": "high"`},
		} {
			for _, w := range wants {
				if !strings.Contains(code[lang], w) {
					t.Errorf("%s export lacks %s:\n%s", lang, w, code[lang])
				}
			}
			if strings.Contains(code[lang], "Here: ") {
				t.Errorf("%s export holds the reply, want only the request that made it:\n%s", lang, code[lang])
			}
		}
		// The curl command, run, gets the same reply.
		if _, err := exec.LookPath("curl"); err != nil {
			t.Log("no curl binary: the exported command is checked as text only")
			return
		}
		cmd := exec.Command("sh", "-c", code["curl"])
		cmd.Env = append(os.Environ(), "STEPFLASH_API_KEY=sk-test")
		out, err := cmd.Output()
		var resp struct {
			Choices []struct{ Message struct{ Content string } }
		}
		if err != nil || json.Unmarshal(out, &resp) != nil || len(resp.Choices) != 1 || !strings.HasPrefix(resp.Choices[0].Message.Content, injection) {
			t.Errorf("the exported curl command: %v, %s", err, out)
		}
		choose("effort", "")
	})

	t.Run("kept across a reload", func(t *testing.T) {
		titles, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`[...document.querySelectorAll('#conversations .open')].map((b) => b.textContent)`))
		if err != nil {
			t.Fatal(err)
		}
		do("reloading", chromedp.Reload(), chromedp.WaitReady(chromedp.CSS(`#model option[value="vlm"]`)))
		after, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`[...document.querySelectorAll('#conversations .open')].map((b) => b.textContent)`))
		if err != nil {
			t.Fatal(err)
		}
		if len(titles) < 8 || strings.Join(after, "|") != strings.Join(titles, "|") {
			t.Errorf("conversations before the reload %q, after %q", titles, after)
		}
		if r := last(); !strings.Contains(r.Content, injection) || r.Effort != "high" {
			t.Errorf("the last conversation after the reload: %+v", r)
		}
	})

	t.Run("phone", func(t *testing.T) {
		do("phone viewport", chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile))
		overflow, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.documentElement.scrollWidth - window.innerWidth`))
		if err != nil || overflow > 0 {
			t.Errorf("the page is %d px wider than a phone's screen (%v)", overflow, err)
		}
		if _, err := chromedp.Run(ctx, chromedp.Poll[bool](`document.getElementById("sidebar").getBoundingClientRect().right <= 0`, chromedp.WithPollingTimeout(5*time.Second))); err != nil {
			t.Errorf("the conversation list covers the chat on a phone: %v", err)
		}
		shot("playground-phone.png")
		// ☰ opens it over the chat.
		do("opening the list", chromedp.Click(chromedp.ID("toggle-sidebar")))
		if _, err := chromedp.Run(ctx, chromedp.Poll[bool](`document.getElementById("sidebar").getBoundingClientRect().left >= 0`, chromedp.WithPollingTimeout(5*time.Second))); err != nil {
			t.Errorf("☰ does not show the conversation list: %v", err)
		}
		shot("playground-phone-list.png")
		do("closing the list", chromedp.Click(chromedp.ID("toggle-sidebar")))
		do("desktop viewport", chromedp.EmulateViewport(1100, 760))
	})

	csp, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`window.__csp || []`))
	if err != nil || len(csp) > 0 {
		t.Errorf("Content-Security-Policy violations: %q %v", csp, err)
	}
	exMu.Lock()
	defer exMu.Unlock()
	if len(exceptions) > 0 {
		t.Errorf("exceptions in the page: %q", exceptions)
	}
}
