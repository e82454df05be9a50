package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/shared"

	"github.com/stepflash/stepflash/api"
	"github.com/stepflash/stepflash/internal/testmodels"
)

// usageOf reads usage.advisor and usage.cost of a response body.
func usageOf(t *testing.T, raw string) (*api.AdvisorUsage, float64) {
	t.Helper()
	var r struct {
		Usage struct {
			Advisor *api.AdvisorUsage `json:"advisor"`
			Cost    float64           `json:"cost"`
		} `json:"usage"`
	}
	if err := json.Unmarshal([]byte(raw), &r); err != nil {
		t.Fatal(err)
	}
	return r.Usage.Advisor, r.Usage.Cost
}

// writeConfig writes a serve --config file.
func writeConfig(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "serve.json")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// ledgerTotals is `stepflash usage --json`'s total over dir's ledger.
func ledgerTotals(t *testing.T, dir string) (requests int64, cost float64) {
	t.Helper()
	rc, out, errs := run(t, "usage", "--data", dir, "--json")
	var rep usageReport
	if err := json.Unmarshal([]byte(out), &rep); rc != 0 || err != nil {
		t.Fatalf("usage: %d %v %s", rc, err, errs)
	}
	return rep.Total.Requests, rep.Total.CostUSD
}

// TestAdvisorAgentLoop: a scripted 12-step agent loop through the official
// OpenAI SDK against a served model with an advisor (the trained flash and
// advisor models): the tool results of steps 5 and 6 fail, so step 6, and
// no other, is escalated with reason repeated_errors; "always" escalates
// every step and "off" none; the costs the responses gave add up to the
// ledger's, which records the advisor's share.
func TestAdvisorAgentLoop(t *testing.T) {
	flash, adv := testmodels.Path(t, "trained/flash-Q8_0.gguf"), testmodels.Path(t, "trained/advisor-Q8_0.gguf")
	dir := t.TempDir()
	cfg := writeConfig(t, map[string]any{"models": []any{map[string]any{"model": flash, "name": "flash",
		"advisor": map[string]any{"model": adv, "name": "big", "mode": "handoff"}}}})
	base, _, stop := startServe(t, "--config", cfg, "--quiet", "--data", dir)
	client := openai.NewClient(option.WithBaseURL(base+"/v1"), option.WithAPIKey("none"), option.WithMaxRetries(0))
	tool := openai.ChatCompletionFunctionTool(shared.FunctionDefinitionParam{Name: "run_tests",
		Parameters: shared.FunctionParameters{"type": "object", "properties": map[string]any{"step": map[string]any{"type": "integer"}}}})

	// step s sends the conversation with the tool results of steps 1..s.
	total := 0.0
	requests := 0
	step := func(s int, setting string) (*api.AdvisorUsage, string) {
		t.Helper()
		msgs := []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Fix the build, then make the tests pass.")}
		for i := 1; i <= s; i++ {
			id := fmt.Sprintf("call_%d", i)
			msgs = append(msgs, openai.ChatCompletionMessageParamUnion{OfAssistant: &openai.ChatCompletionAssistantMessageParam{
				ToolCalls: []openai.ChatCompletionMessageToolCallUnionParam{{OfFunction: &openai.ChatCompletionMessageFunctionToolCallParam{
					ID: id, Function: openai.ChatCompletionMessageFunctionToolCallFunctionParam{Name: "run_tests", Arguments: fmt.Sprintf(`{"step": %d}`, i)}}}}}})
			result := fmt.Sprintf("ok: %d tests passed", 10+i)
			if i == 5 || i == 6 {
				result = "Traceback (most recent call last):\n  File \"test_app.py\", line 3\nAssertionError: expected 4, got 5\nexit code 1"
			}
			msgs = append(msgs, openai.ToolMessage(result, id))
		}
		var hr *http.Response
		opts := []option.RequestOption{option.WithResponseInto(&hr)}
		if setting != "" {
			opts = append(opts, option.WithJSONSet("advisor", setting))
		}
		c, err := client.Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{Model: "flash", Messages: msgs,
			Tools: []openai.ChatCompletionToolUnionParam{tool}, MaxTokens: openai.Int(8)}, opts...)
		if err != nil {
			t.Fatalf("step %d (%q): %v", s, setting, err)
		}
		au, cost := usageOf(t, c.RawJSON())
		if au == nil {
			t.Fatalf("step %d (%q): no usage.advisor in %s", s, setting, c.RawJSON())
		}
		if au.Escalated && (math.Abs(cost-au.Cost) > 1e-12 || au.Cost <= 0 || au.PromptTokens == 0 || au.Model != "big" || au.Mode != "handoff") {
			t.Errorf("step %d: escalated, but usage.cost %g and usage.advisor %+v", s, cost, au)
		}
		total += cost
		requests++
		return au, hr.Header.Get("X-Advisor")
	}
	for s := 1; s <= 12; s++ {
		au, header := step(s, "")
		want := s == 6
		if au.Escalated != want || (want && (au.Reason != "repeated_errors" || header != "repeated_errors")) || (!want && (au.Reason != "" || header != "none")) {
			t.Errorf("step %d: escalated %v reason %q, X-Advisor %q; want escalated only at step 6 for repeated_errors", s, au.Escalated, au.Reason, header)
		}
	}
	for _, s := range []int{1, 6, 12} {
		if au, header := step(s, "always"); !au.Escalated || au.Reason != "always" || header != "always" {
			t.Errorf("always, step %d: %+v, X-Advisor %q", s, au, header)
		}
		if au, header := step(s, "off"); au.Escalated || au.Reason != "" || header != "none" {
			t.Errorf("off, step %d: %+v, X-Advisor %q", s, au, header)
		}
	}
	// The legacy completions API: "always" hands off.
	for _, setting := range []string{"always", "auto"} {
		resp, err := http.Post(base+"/v1/completions", "application/json",
			strings.NewReader(`{"model":"flash","prompt":"What is","max_tokens":4,"advisor":"`+setting+`"}`))
		if err != nil {
			t.Fatal(err)
		}
		var body struct{ Usage api.Usage }
		json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		au := body.Usage.Advisor
		if resp.StatusCode != 200 || au == nil || au.Escalated != (setting == "always") || resp.Header.Get("X-Advisor") != map[bool]string{true: "always", false: "none"}[setting == "always"] {
			t.Errorf("completions, %s: %d, X-Advisor %q, usage %+v", setting, resp.StatusCode, resp.Header.Get("X-Advisor"), body.Usage)
		}
		total += body.Usage.Cost
		requests++
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	n, cost := ledgerTotals(t, dir)
	if n != int64(requests) || math.Abs(cost-total) > 1e-9 {
		t.Errorf("ledger: %d requests, $%g; the responses: %d, $%g", n, cost, requests, total)
	}
}

// TestAdvisorFallback: an advisor that never answers (an upstream that
// accepts and stays silent) costs the caller nothing but the wait: past
// the advisor's timeout the served model answers, streaming or not, and
// usage.advisor.error says why.
func TestAdvisorFallback(t *testing.T) {
	quit := make(chan struct{})
	silent := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-quit:
		}
	}))
	t.Cleanup(func() { close(quit); silent.Close() }) // after serve stops
	// An OpenAI-compatible server that streams an answer but no usage (as
	// servers without stream_options support do): its cost is unknown.
	noUsage := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprint(w, `data: {"id":"x","object":"chat.completion.chunk","created":1,"model":"big","choices":[{"index":0,"delta":{"role":"assistant","content":"46"},"finish_reason":null}]}`+"\n\n")
		fmt.Fprint(w, `data: {"id":"x","object":"chat.completion.chunk","created":1,"model":"big","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}`+"\n\n")
		fmt.Fprint(w, "data: [DONE]\n\n")
	}))
	t.Cleanup(noUsage.Close)
	flash := testmodels.Path(t, "trained/flash-Q8_0.gguf")
	cfg := writeConfig(t, map[string]any{"models": []any{map[string]any{"model": flash, "name": "flash",
		"advisor": map[string]any{"upstreams": []any{map[string]any{"base_url": silent.URL + "/v1", "model": "big", "health": "off"}},
			"name": "big", "timeout": "300ms"}},
		map[string]any{"model": flash, "name": "flash2",
			"advisor": map[string]any{"upstreams": []any{map[string]any{"base_url": noUsage.URL + "/v1", "model": "big", "health": "off"}}, "name": "big"}}}})
	base, _, _ := startServe(t, "--config", cfg, "--quiet", "--data", t.TempDir())
	resp, err := http.Post(base+"/v1/completions", "application/json", strings.NewReader(`{"model":"flash","prompt":"What is","max_tokens":4,"advisor":"always"}`))
	if err != nil {
		t.Fatal(err)
	}
	var cbody struct{ Usage api.Usage }
	json.NewDecoder(resp.Body).Decode(&cbody)
	resp.Body.Close()
	if au := cbody.Usage.Advisor; resp.StatusCode != 200 || au == nil || au.Escalated || !strings.Contains(au.Error, "did not answer") || cbody.Usage.CompletionTokens == 0 {
		t.Errorf("completions: %d, usage %+v", resp.StatusCode, cbody.Usage)
	}
	resp, err = http.Post(base+"/v1/chat/completions", "application/json", strings.NewReader(`{"model":"flash2","advisor":"always","max_tokens":200,"messages":[{"role":"user","content":"What is 12 + 34?"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	var nb struct{ Usage api.Usage }
	json.NewDecoder(resp.Body).Decode(&nb)
	resp.Body.Close()
	if au := nb.Usage.Advisor; resp.StatusCode != 200 || au == nil || au.Escalated || !strings.Contains(au.Error, "did not report its usage") || nb.Usage.CompletionTokens == 0 {
		t.Errorf("an advisor without usage: %d, usage %+v", resp.StatusCode, nb.Usage)
	}
	body := `{"model":"flash","advisor":"always","max_tokens":200,"messages":[{"role":"user","content":"What is 12 + 34?"}]`
	for _, stream := range []bool{false, true} {
		b := body + "}"
		if stream {
			b = body + `,"stream":true,"stream_options":{"include_usage":true}}`
		}
		resp, err := http.Post(base+"/v1/chat/completions", "application/json", strings.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		var last string
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(nil, 1<<20)
		content := ""
		for sc.Scan() {
			line := strings.TrimPrefix(sc.Text(), "data: ")
			if strings.Contains(line, `"usage":{`) {
				last = line
			}
			var ch struct {
				Choices []struct {
					Delta   struct{ Content string }
					Message struct{ Content string }
				}
			}
			if json.Unmarshal([]byte(line), &ch) == nil {
				for _, c := range ch.Choices {
					content += c.Delta.Content + c.Message.Content
				}
			}
		}
		resp.Body.Close()
		au, _ := usageOf(t, last)
		if resp.StatusCode != 200 || au == nil || au.Escalated || au.Reason != "always" || !strings.Contains(au.Error, "did not answer within 300ms") ||
			resp.Header.Get("X-Advisor") != "none" || strings.TrimSpace(content) == "" {
			t.Errorf("stream %v: %d, X-Advisor %q, content %q, usage.advisor %+v", stream, resp.StatusCode, resp.Header.Get("X-Advisor"), content, au)
		}
	}
}

// TestAdvisorConfidence: the low_confidence signal on real
// log-probabilities. Over trained test problems, a turn is escalated
// exactly when the minimum log-probability of the served model's whole
// draft (asked for directly with "advisor": "off") is under the threshold,
// usage.advisor.confidence reports that minimum, and the answer is then
// the advisor's own greedy answer (and otherwise the served model's);
// "always" answers as the advisor does.
func TestAdvisorConfidence(t *testing.T) {
	flash, adv := testmodels.Path(t, "trained/flash-Q8_0.gguf"), testmodels.Path(t, "trained/advisor-Q8_0.gguf")
	const threshold = -0.5
	cfg := writeConfig(t, map[string]any{"models": []any{
		map[string]any{"model": flash, "name": "flash", "advisor": map[string]any{"model": adv, "name": "big", "low_confidence": threshold}},
		map[string]any{"model": adv, "name": "big-direct"},
	}})
	base, _, _ := startServe(t, "--config", cfg, "--quiet", "--data", t.TempDir())
	client := openai.NewClient(option.WithBaseURL(base+"/v1"), option.WithAPIKey("none"), option.WithMaxRetries(0))
	ask := func(model, question, setting string, logprobs bool) (*openai.ChatCompletion, *api.AdvisorUsage) {
		t.Helper()
		p := openai.ChatCompletionNewParams{Model: model, Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage(question)},
			Temperature: openai.Float(0), MaxTokens: openai.Int(400)}
		if logprobs {
			p.Logprobs = openai.Bool(true)
		}
		var opts []option.RequestOption
		if setting != "" {
			opts = append(opts, option.WithJSONSet("advisor", setting))
		}
		c, err := client.Chat.Completions.New(context.Background(), p, opts...)
		if err != nil {
			t.Fatalf("%s %q: %v", model, question, err)
		}
		au, _ := usageOf(t, c.RawJSON())
		return c, au
	}
	f, err := os.Open(filepath.Join(testmodels.Models(t), "trained", "test-set.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	escalated, kept := 0, 0
	for i := 0; i < 24 && sc.Scan(); i++ {
		var p struct{ Question, Answer string }
		if err := json.Unmarshal(sc.Bytes(), &p); err != nil {
			t.Fatal(err)
		}
		draft, _ := ask("flash", p.Question, "off", true)
		low := math.Inf(1)
		for _, lp := range draft.Choices[0].Logprobs.Content {
			low = min(low, lp.Logprob)
		}
		direct, _ := ask("big-direct", p.Question, "", false)
		got, au := ask("flash", p.Question, "", false)
		if au == nil || au.Confidence == nil || math.Abs(*au.Confidence-low) > 1e-6 || au.DraftTokens != len(draft.Choices[0].Logprobs.Content) {
			t.Fatalf("%q: usage.advisor %+v; the draft's minimum log-probability is %g over %d tokens", p.Question, au, low, len(draft.Choices[0].Logprobs.Content))
		}
		want := draft.Choices[0].Message.Content
		if low < threshold {
			escalated++
			want = direct.Choices[0].Message.Content
			if !au.Escalated || au.Reason != "low_confidence" {
				t.Errorf("%q: confidence %g < %g but usage.advisor %+v", p.Question, low, threshold, au)
			}
		} else if kept++; au.Escalated || au.Reason != "" {
			t.Errorf("%q: confidence %g ≥ %g but usage.advisor %+v", p.Question, low, threshold, au)
		}
		if got.Choices[0].Message.Content != want {
			t.Errorf("%q: answer %q, want %q (escalated: %v)", p.Question, got.Choices[0].Message.Content, want, low < threshold)
		}
		// Streamed, the same turn: the same answer, usage.advisor in the
		// last chunk.
		st := client.Chat.Completions.NewStreaming(context.Background(), openai.ChatCompletionNewParams{Model: "flash",
			Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage(p.Question)}, Temperature: openai.Float(0), MaxTokens: openai.Int(400),
			StreamOptions: openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}})
		var acc openai.ChatCompletionAccumulator
		var streamed *api.AdvisorUsage
		for st.Next() {
			ch := st.Current()
			acc.AddChunk(ch)
			if len(ch.Choices) == 0 {
				streamed, _ = usageOf(t, ch.RawJSON())
			}
		}
		if err := st.Err(); err != nil || len(acc.Choices) != 1 || acc.Choices[0].Message.Content != want || streamed == nil || streamed.Escalated != au.Escalated {
			t.Errorf("%q streamed: %v, %+v, usage.advisor %+v", p.Question, err, acc.Choices, streamed)
		}
		if always, _ := ask("flash", p.Question, "always", false); always.Choices[0].Message.Content != direct.Choices[0].Message.Content ||
			always.Choices[0].Message.JSON.ExtraFields["reasoning_content"].Raw() != direct.Choices[0].Message.JSON.ExtraFields["reasoning_content"].Raw() {
			t.Errorf("%q: always answered %q, the advisor %q", p.Question, always.Choices[0].Message.Content, direct.Choices[0].Message.Content)
		}
	}
	if escalated == 0 || kept == 0 {
		t.Errorf("%d escalated and %d kept: the threshold tests only one side", escalated, kept)
	}
}

// TestAdvisorAdvise: in advise mode an escalated turn is written by the
// served model after the advisor's plan: both models' tokens are billed,
// the plan's cost is in usage.advisor and usage.cost, streamed or not.
func TestAdvisorAdvise(t *testing.T) {
	flash, adv := testmodels.Path(t, "trained/flash-Q8_0.gguf"), testmodels.Path(t, "trained/advisor-Q8_0.gguf")
	cfg := writeConfig(t, map[string]any{"models": []any{map[string]any{"model": flash, "name": "flash",
		"advisor": map[string]any{"model": adv, "name": "big", "mode": "advise", "plan_tokens": 24}}}})
	dir := t.TempDir()
	base, _, stop := startServe(t, "--config", cfg, "--quiet", "--data", dir)
	client := openai.NewClient(option.WithBaseURL(base+"/v1"), option.WithAPIKey("none"), option.WithMaxRetries(0))
	var hr *http.Response
	c, err := client.Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{Model: "flash",
		Messages:  []openai.ChatCompletionMessageParamUnion{openai.SystemMessage("You add numbers."), openai.UserMessage("What is 12 + 34?")},
		MaxTokens: openai.Int(200), Temperature: openai.Float(0)}, option.WithJSONSet("advisor", "always"), option.WithResponseInto(&hr))
	if err != nil {
		t.Fatal(err)
	}
	au, cost := usageOf(t, c.RawJSON())
	if au == nil {
		t.Fatalf("no usage.advisor: %s", c.RawJSON())
	}
	flashCost := cost - au.Cost
	if !au.Escalated || au.Mode != "advise" || au.Reason != "always" || au.CompletionTokens < 1 || au.CompletionTokens > 24 ||
		c.Usage.CompletionTokens == 0 || c.Usage.PromptTokens == 0 || au.Cost <= 0 || flashCost <= 0 || hr.Header.Get("X-Advisor") != "always" {
		t.Errorf("usage %+v, usage.advisor %+v, cost %g, X-Advisor %q", c.Usage, au, cost, hr.Header.Get("X-Advisor"))
	}
	// The plan went into the served model's system message: its prompt is
	// longer than the same request's without an advisor.
	off, err := client.Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{Model: "flash",
		Messages:  []openai.ChatCompletionMessageParamUnion{openai.SystemMessage("You add numbers."), openai.UserMessage("What is 12 + 34?")},
		MaxTokens: openai.Int(200), Temperature: openai.Float(0)}, option.WithJSONSet("advisor", "off"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Usage.PromptTokens <= off.Usage.PromptTokens {
		t.Errorf("prompt tokens %d with the plan, %d without", c.Usage.PromptTokens, off.Usage.PromptTokens)
	}
	// The plan is bought, then the served model refuses the request (more
	// tokens than its context): the 400's ledger row still bills the plan.
	_, err = client.Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{Model: "flash",
		Messages:  []openai.ChatCompletionMessageParamUnion{openai.UserMessage("What is 12 + 34?")},
		MaxTokens: openai.Int(1 << 20)}, option.WithJSONSet("advisor", "always"))
	var apiErr *openai.Error
	if !errors.As(err, &apiErr) || apiErr.StatusCode != 400 {
		t.Fatalf("max_tokens past the context: %v", err)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	rc, out, errs := run(t, "usage", "--data", dir, "--json")
	var rep usageReport
	if err := json.Unmarshal([]byte(out), &rep); rc != 0 || err != nil {
		t.Fatalf("usage: %d %v %s", rc, err, errs)
	}
	_, offCost := usageOf(t, off.RawJSON())
	if plan := rep.Total.CostUSD - cost - offCost; rep.Total.Requests != 3 || rep.Total.Errors != 1 || plan <= 1e-12 {
		t.Errorf("ledger: %d requests, %d errors, $%g in all; the failed request's plan: $%g", rep.Total.Requests, rep.Total.Errors, rep.Total.CostUSD, plan)
	}
}

// TestAdvisorMessages: Anthropic's Messages API goes through the same
// Advisor Mode: two failing tool results escalate the turn, and its usage
// carries usage.advisor and the cost, with the X-Advisor header.
func TestAdvisorMessages(t *testing.T) {
	flash, adv := testmodels.Path(t, "trained/flash-Q8_0.gguf"), testmodels.Path(t, "trained/advisor-Q8_0.gguf")
	cfg := writeConfig(t, map[string]any{"models": []any{map[string]any{"model": flash, "name": "flash",
		"advisor": map[string]any{"model": adv, "name": "big"}}}})
	base, _, _ := startServe(t, "--config", cfg, "--quiet", "--data", t.TempDir())
	call := func(id string) []any {
		return []any{
			map[string]any{"role": "assistant", "content": []any{map[string]any{"type": "tool_use", "id": id, "name": "run_tests", "input": map[string]any{}}}},
			map[string]any{"role": "user", "content": []any{map[string]any{"type": "tool_result", "tool_use_id": id, "content": "Traceback (most recent call last):\nexit code 1", "is_error": true}}},
		}
	}
	msgs := append([]any{map[string]any{"role": "user", "content": "Make the tests pass."}}, append(call("t1"), call("t2")...)...)
	body, _ := json.Marshal(map[string]any{"model": "flash", "max_tokens": 16, "messages": msgs,
		"tools": []any{map[string]any{"name": "run_tests", "input_schema": map[string]any{"type": "object"}}}})
	resp, err := http.Post(base+"/v1/messages", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m struct {
		Usage struct {
			Advisor *api.AdvisorUsage `json:"advisor"`
			Cost    float64           `json:"cost"`
		} `json:"usage"`
	}
	raw, _ := io.ReadAll(resp.Body)
	json.Unmarshal(raw, &m)
	if au := m.Usage.Advisor; resp.StatusCode != 200 || au == nil || !au.Escalated || au.Reason != "repeated_errors" ||
		resp.Header.Get("X-Advisor") != "repeated_errors" || m.Usage.Cost < au.Cost || au.Cost <= 0 {
		t.Errorf("%d, X-Advisor %q: %s", resp.StatusCode, resp.Header.Get("X-Advisor"), raw)
	}
}
