package upstream_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/stepflash/stepflash/upstream"
)

// These fakes copy what the public services do that cannot be run here
// (their documented and commonly reported behaviour): StepFun answers a key
// of the other region with a 401 and an empty body and reports cached
// tokens at the top level of usage; OpenRouter names the model
// stepfun/step-3.7-flash, refuses other ids with its numeric error code,
// takes effort as reasoning: {effort}, streams reasoning in "reasoning",
// keeps the connection alive with SSE comments and puts its own cost in
// usage.

const stepfunKey = "sk-global-key"

func fakeStepFun(t *testing.T) (string, *[]byte, *http.Header) {
	var hdr http.Header
	srv, last := upstreamOf(t, func(w http.ResponseWriter, r *http.Request, _ []byte) {
		hdr = r.Header.Clone()
		if r.Header.Get("Authorization") != "Bearer "+stepfunKey {
			w.WriteHeader(http.StatusUnauthorized) // no body at all
			return
		}
		sseOut(w,
			`{"id":"x","object":"chat.completion.chunk","created":1,"model":"step-3.7-flash","choices":[{"index":0,"delta":{"role":"assistant","reasoning_content":"Adding."},"finish_reason":null}]}`,
			`{"id":"x","object":"chat.completion.chunk","created":1,"model":"step-3.7-flash","choices":[{"index":0,"delta":{"content":"4"},"finish_reason":null}]}`,
			`{"id":"x","object":"chat.completion.chunk","created":1,"model":"step-3.7-flash","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}`,
			`{"id":"x","object":"chat.completion.chunk","created":1,"model":"step-3.7-flash","choices":[],"usage":{"prompt_tokens":1000,"completion_tokens":20,"total_tokens":1020,"cached_tokens":800}}`,
			"[DONE]")
	})
	return srv.URL + "/v1", last, &hdr
}

func TestStepFun(t *testing.T) {
	base, last, hdr := fakeStepFun(t)
	ask := func(key string) (int, map[string]any, http.Header) {
		gw, _ := poolServer(t, upstream.Ordered, []upstream.Config{{BaseURL: base, Provider: "stepfun-global", APIKey: key, KeyEnv: "STEP_API_KEY"}}, nil)
		resp := post(t, gw.URL, "/v1/chat/completions", `{"model":"x","messages":[{"role":"user","content":"2+2?"}]}`)
		defer resp.Body.Close()
		var v map[string]any
		if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
			t.Fatalf("the body is not JSON: %v", err)
		}
		return resp.StatusCode, v, resp.Header
	}
	status, v, h := ask("sk-cn-key")
	e, _ := v["error"].(map[string]any)
	msg, _ := e["message"].(string)
	if status != 401 || e["type"] != "authentication_error" || e["code"] != "upstream_unauthorized" || h.Get("WWW-Authenticate") == "" ||
		!strings.Contains(msg, "empty body") || !strings.Contains(msg, "other region") || !strings.Contains(msg, "https://api.stepfun.com/v1") || !strings.Contains(msg, "$STEP_API_KEY") {
		t.Errorf("wrong-region key: %d %v %v", status, v, h)
	}
	status, v, _ = ask(stepfunKey)
	if status != 200 {
		t.Fatalf("right key: %d %v", status, v)
	}
	var sent map[string]any
	json.Unmarshal(*last, &sent)
	if sent["model"] != "x" || sent["reasoning_effort"] != "medium" || sent["stream"] != true || hdr.Get("X-Request-Id") == "" {
		t.Errorf("sent %s with headers %v", *last, *hdr)
	}
	u := v["usage"].(map[string]any)
	det := u["prompt_tokens_details"].(map[string]any)
	wantCost := (200*0.20 + 800*0.04 + 20*1.15) / 1e6
	if u["cached_tokens"] != float64(800) || det["cached_tokens"] != float64(800) || abs(u["cost"].(float64)-wantCost) > 1e-12 {
		t.Errorf("usage %v, want 800 cached tokens in both places and cost %g", u, wantCost)
	}
	m := v["choices"].([]any)[0].(map[string]any)["message"].(map[string]any)
	if m["content"] != "4" || m["reasoning_content"] != "Adding." || m["reasoning"] != "Adding." {
		t.Errorf("message %v", m)
	}
}

func abs(x float64) float64 {
	if x < 0 {
		return -x
	}
	return x
}

func fakeOpenRouter(t *testing.T) (string, *[]byte) {
	srv, last := upstreamOf(t, func(w http.ResponseWriter, r *http.Request, body []byte) {
		var req struct {
			Model string `json:"model"`
		}
		json.Unmarshal(body, &req)
		if req.Model != "stepfun/step-3.7-flash" {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(400)
			io.WriteString(w, `{"error":{"code":400,"message":"`+req.Model+` is not a valid model ID"},"user_id":"user_1"}`)
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, ": OPENROUTER PROCESSING\n\n")
		sseOut(w,
			`{"id":"gen-1","provider":"StepFun","model":"stepfun/step-3.7-flash","object":"chat.completion.chunk","created":1,"choices":[{"index":0,"delta":{"role":"assistant","content":"","reasoning":"Think.","reasoning_details":[{"type":"reasoning.text","text":"Think."}]},"finish_reason":null,"native_finish_reason":null,"logprobs":null}]}`,
			`{"id":"gen-1","provider":"StepFun","model":"stepfun/step-3.7-flash","object":"chat.completion.chunk","created":1,"choices":[{"index":0,"delta":{"role":"assistant","content":"Hi","reasoning":null},"finish_reason":null,"native_finish_reason":null,"logprobs":null}]}`,
			`{"id":"gen-1","provider":"StepFun","model":"stepfun/step-3.7-flash","object":"chat.completion.chunk","created":1,"choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":"stop","native_finish_reason":"stop","logprobs":null}]}`,
			`{"id":"gen-1","provider":"StepFun","model":"stepfun/step-3.7-flash","object":"chat.completion.chunk","created":1,"choices":[],"usage":{"prompt_tokens":50,"completion_tokens":3,"total_tokens":53,"cost":0.5,"is_byok":false,"prompt_tokens_details":{"cached_tokens":10},"completion_tokens_details":{"reasoning_tokens":1}}}`,
			"[DONE]")
	})
	return srv.URL + "/api/v1", last
}

func TestOpenRouter(t *testing.T) {
	base, last := fakeOpenRouter(t)
	flag, err := upstream.ParseFlag(base)
	if err != nil {
		t.Fatal(err)
	}
	flag.Provider = "openrouter"
	gw, _ := poolServer(t, upstream.Ordered, []upstream.Config{flag}, nil)
	resp, err := gw.Client.Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{Model: "x",
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Hi")}, ReasoningEffort: "high"})
	if err != nil {
		t.Fatal(err)
	}
	var sent map[string]any
	json.Unmarshal(*last, &sent)
	if sent["model"] != "stepfun/step-3.7-flash" || sent["reasoning"] == nil || sent["reasoning"].(map[string]any)["effort"] != "high" || sent["reasoning_effort"] != nil {
		t.Errorf("sent %s", *last)
	}
	m := resp.Choices[0].Message
	if m.Content != "Hi" || m.JSON.ExtraFields["reasoning"].Raw() != `"Think."` || m.JSON.ExtraFields["reasoning_content"].Raw() != `"Think."` {
		t.Errorf("message %s", m.RawJSON())
	}
	u := resp.Usage
	wantCost := (40*0.20 + 10*0.04 + 3*1.15) / 1e6
	if u.PromptTokensDetails.CachedTokens != 10 || u.CompletionTokensDetails.ReasoningTokens != 1 {
		t.Errorf("usage %s", u.RawJSON())
	}
	var cost float64
	json.Unmarshal([]byte(u.JSON.ExtraFields["cost"].Raw()), &cost)
	if abs(cost-wantCost) > 1e-12 {
		t.Errorf("cost %g (OpenRouter's own was 0.5), want this server's price %g", cost, wantCost)
	}
	if !strings.Contains(resp.RawJSON(), `"param":"reasoning.effort","sent":"high","verified":false`) {
		t.Errorf("effort echo: %s", resp.RawJSON())
	}

	// An id OpenRouter does not know: its 400, with the id it wants.
	gw2, _ := poolServer(t, upstream.Ordered, []upstream.Config{{BaseURL: base, Provider: "openrouter", Model: "step-3.7-flash"}}, nil)
	status, body := readAll(t, gw2.URL, chatBody(false))
	if status != 400 || !strings.Contains(body, "step-3.7-flash is not a valid model ID") || !strings.Contains(body, `id for Step 3.7 Flash is \"stepfun/step-3.7-flash\"`) {
		t.Errorf("%d %s", status, body)
	}
}
