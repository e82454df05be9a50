package doctor

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// fake is an OpenAI-compatible endpoint whose behaviour each test sets, to
// copy one real service's trap at a time. Its defaults copy a healthy
// stepflash as docs/api.md specifies it (and as `stepflash serve` answers on
// the trained flash model: see cmd/stepflash/doctor_test.go for the real
// one): the stepflash echo and X-Reasoning-Effort, reasoning tokens only
// above low, reasoning text in both reasoning_content and reasoning, a
// usage chunk and [DONE], cached_tokens in both placements, JSON errors.
type fake struct {
	models []string
	// unauthorized, when set, answers every /v1 request: StepFun's
	// wrong-region answer is a 401 with an empty body (DESIGN.md 7b,
	// docs/api.md "A 401 with an empty body — what StepFun's APIs answer to
	// a key of the other region").
	unauthorized func(w http.ResponseWriter)
	// effort: "honour" (default), "ignore" (the issue's "accepted but
	// ignored": same answer whatever the tier, as a server that drops the
	// field), "ignore_slow_high" (ignored, but high happens to be slower),
	// "echo_only" (a stepflash gateway echoes the tier it passed to an
	// upstream that ignores it: same tokens), "reject" (a 400 unsupported_parameter naming reasoning_effort, as
	// stepflash answers any field it does not take, docs/api.md).
	effort string
	// noStepflash leaves out the stepflash object and X-Reasoning-Effort
	// (any other OpenAI-compatible server).
	noStepflash bool
	// upstream makes the echo a stepflash gateway's for an upstream
	// (docs/api.md: effort.upstream, verified false).
	upstream bool
	// reasoning: "both" (default), "reasoning_content" (DeepSeek's name),
	// "reasoning" (OpenRouter's), "inline" (<think> in content, a server
	// without a reasoning parser), "hidden" (counted, no text: OpenAI).
	reasoning string
	// noThinking: a model that never thinks (no reasoning at any tier).
	noThinking bool
	// stream: "ok" (default), "no_usage" (include_usage ignored),
	// "no_done" (a stream that just stops), "error_event".
	stream string
	// cached: "both" (default), "openai" (prompt_tokens_details only),
	// "top" (StepFun's top level only), "none".
	cached string
	// errorBody: "json" (default), "empty", "text".
	errorBody string
	// streams counts the streamed requests (the second one is a cache hit).
	streams int
}

func (f *fake) start(t *testing.T) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(srv.Close)
	return srv.URL + "/v1"
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func apiError(w http.ResponseWriter, status int, typ, code, param, msg string) {
	writeJSON(w, status, map[string]any{"error": map[string]any{"message": msg, "type": typ, "code": code, "param": param}})
}

func (f *fake) serve(w http.ResponseWriter, r *http.Request) {
	if !strings.HasPrefix(r.URL.Path, "/v1/") {
		apiError(w, 404, "invalid_request_error", "not_found", "", "Unknown request URL: "+r.URL.Path)
		return
	}
	if f.unauthorized != nil {
		f.unauthorized(w)
		return
	}
	switch r.URL.Path {
	case "/v1/models":
		var data []map[string]any
		for _, m := range f.models {
			data = append(data, map[string]any{"id": m, "object": "model", "owned_by": "test", "max_model_len": 4096})
		}
		writeJSON(w, 200, map[string]any{"object": "list", "data": data})
	case "/v1/chat/completions":
		f.chat(w, r)
	default:
		apiError(w, 404, "invalid_request_error", "not_found", "", "Unknown request URL: "+r.URL.Path)
	}
}

func (f *fake) chat(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	var req struct {
		Model         string   `json:"model"`
		Effort        *string  `json:"reasoning_effort"`
		Temperature   *float64 `json:"temperature"`
		Stream        bool     `json:"stream"`
		StreamOptions *struct {
			IncludeUsage bool `json:"include_usage"`
		} `json:"stream_options"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		f.badRequest(w, "invalid_json", "", "We could not parse the JSON body of your request.")
		return
	}
	if req.Temperature != nil && *req.Temperature > 2 {
		f.badRequest(w, "invalid_value", "temperature", fmt.Sprintf("Invalid 'temperature': expected a value in [0, 2], but got %g instead.", *req.Temperature))
		return
	}
	found := false
	for _, m := range f.models {
		found = found || m == req.Model
	}
	if !found {
		apiError(w, 404, "not_found_error", "model_not_found", "model", fmt.Sprintf("The model %q does not exist.", req.Model))
		return
	}
	requested := req.Effort
	switch f.effort {
	case "reject":
		if req.Effort != nil {
			apiError(w, 400, "invalid_request_error", "unsupported_parameter", "reasoning_effort", "Unsupported parameter: 'reasoning_effort' is not supported with this model.")
			return
		}
	case "ignore", "ignore_slow_high":
		if f.effort == "ignore_slow_high" && req.Effort != nil && *req.Effort == "high" {
			time.Sleep(400 * time.Millisecond)
		}
		requested = nil
	}
	applied := "medium"
	if requested != nil {
		applied = *requested
	}
	reasoningTokens := map[string]int{"low": 0, "medium": 6, "high": 12}[applied]
	if f.effort == "echo_only" {
		reasoningTokens = 6
	}
	if f.noThinking {
		reasoningTokens = 0
	}
	thinking := strings.Repeat("think ", reasoningTokens)
	if !f.noStepflash {
		w.Header().Set("X-Reasoning-Effort", applied)
	}
	ext := f.ext(requested, applied)
	if req.Stream {
		f.streamChat(w, req.StreamOptions != nil && req.StreamOptions.IncludeUsage, thinking, reasoningTokens, ext)
		return
	}
	msg := map[string]any{"role": "assistant", "content": "46"}
	if thinking != "" {
		switch f.reasoning {
		case "", "both":
			msg["reasoning_content"], msg["reasoning"] = thinking, thinking
		case "reasoning_content", "reasoning":
			msg[f.reasoning] = thinking
		case "inline":
			msg["content"] = "<think>" + thinking + "</think>46"
		}
	}
	resp := map[string]any{"id": "chatcmpl-1", "object": "chat.completion", "model": req.Model,
		"choices": []any{map[string]any{"index": 0, "message": msg, "finish_reason": "stop"}},
		"usage":   f.usage(20, 0, 2+reasoningTokens, reasoningTokens)}
	if ext != nil {
		resp["stepflash"] = ext
	}
	writeJSON(w, 200, resp)
}

func (f *fake) badRequest(w http.ResponseWriter, code, param, msg string) {
	switch f.errorBody {
	case "empty":
		w.WriteHeader(400)
	case "text":
		w.Header().Set("Content-Type", "text/plain")
		w.WriteHeader(400)
		io.WriteString(w, "Bad Request")
	default:
		apiError(w, 400, "invalid_request_error", code, param, msg)
	}
}

func (f *fake) ext(requested *string, applied string) map[string]any {
	if f.noStepflash {
		return nil
	}
	effort := map[string]any{"requested": requested, "applied": applied, "experts_per_token": nil,
		"thinking_budget": map[string]int{"low": 0, "medium": 1024, "high": 8192}[applied]}
	backend := "local"
	if f.upstream {
		effort["thinking_budget"] = nil
		effort["upstream"] = map[string]any{"param": "reasoning_effort", "sent": applied, "verified": false}
		backend = "upstream:stepfun-global"
	}
	return map[string]any{"effort": effort, "backend": backend, "region": "global"}
}

func (f *fake) usage(prompt, cached, completion, reasoning int) map[string]any {
	u := map[string]any{"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
		"completion_tokens_details": map[string]any{"reasoning_tokens": reasoning}}
	switch f.cached {
	case "", "both":
		u["prompt_tokens_details"] = map[string]any{"cached_tokens": cached}
		u["cached_tokens"] = cached
	case "openai":
		u["prompt_tokens_details"] = map[string]any{"cached_tokens": cached}
	case "top":
		u["cached_tokens"] = cached
	}
	return u
}

func (f *fake) streamChat(w http.ResponseWriter, includeUsage bool, thinking string, reasoningTokens int, ext map[string]any) {
	f.streams++
	w.Header().Set("Content-Type", "text/event-stream")
	w.WriteHeader(200)
	send := func(v any) {
		b, _ := json.Marshal(v)
		fmt.Fprintf(w, "data: %s\n\n", b)
	}
	chunk := func(delta map[string]any, finish any) map[string]any {
		c := map[string]any{"id": "chatcmpl-1", "object": "chat.completion.chunk",
			"choices": []any{map[string]any{"index": 0, "delta": delta, "finish_reason": finish}}}
		if includeUsage {
			c["usage"] = nil
		}
		return c
	}
	first := chunk(map[string]any{"role": "assistant", "content": ""}, nil)
	if ext != nil {
		first["stepflash"] = ext
	}
	send(first)
	if thinking != "" && (f.reasoning == "" || f.reasoning == "both") {
		send(chunk(map[string]any{"reasoning_content": thinking, "reasoning": thinking}, nil))
	}
	send(chunk(map[string]any{"content": "OK"}, nil))
	if f.stream == "error_event" {
		send(map[string]any{"error": map[string]any{"message": "upstream died", "type": "server_error", "code": "upstream_error"}})
		fmt.Fprint(w, "data: [DONE]\n\n")
		return
	}
	send(chunk(map[string]any{}, "stop"))
	if f.stream == "no_done" {
		return
	}
	if includeUsage && f.stream != "no_usage" {
		cached := 0
		if f.streams > 1 {
			cached = 128
		}
		last := map[string]any{"id": "chatcmpl-1", "object": "chat.completion.chunk", "choices": []any{},
			"usage": f.usage(150, cached, 2+reasoningTokens, reasoningTokens)}
		if ext != nil {
			last["stepflash"] = ext
		}
		send(last)
	}
	fmt.Fprint(w, "data: [DONE]\n\n")
}
