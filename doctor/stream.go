package doctor

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"
	"time"

	"github.com/stepflash/stepflash/api"
	"github.com/stepflash/stepflash/sse"
)

// streamResult is what a streamed chat answer showed.
type streamResult struct {
	ex          *exchange // status, headers, latency; Body only for an error answer
	contentType string
	chunks      int
	done        bool // data: [DONE] came
	afterDone   int  // events after [DONE]
	badJSON     int  // events that are not JSON
	errEvent    string
	readErr     error
	// usage is the raw usage of the final chunk (choices empty); usageWith
	// is set when usage came on a chunk that also had choices instead.
	usage     map[string]json.RawMessage
	usageWith bool
	fields    map[string]bool // reasoning field names seen in deltas
	firstExt  *api.Extension
}

// stream sends a streamed chat request and reads it to its end.
func (p *probe) stream(ctx context.Context, body map[string]any) streamResult {
	body["model"] = p.model
	sr := streamResult{ex: &exchange{Method: http.MethodPost, Path: "/chat/completions"}, fields: map[string]bool{}}
	b, _ := json.Marshal(body)
	ctx, cancel := context.WithTimeout(ctx, p.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.base+"/chat/completions", bytes.NewReader(b))
	if err != nil {
		sr.ex.Err = err
		return sr
	}
	req.Header.Set("Content-Type", "application/json")
	p.authorize(req)
	req.Header.Set("Accept", "text/event-stream")
	start := time.Now()
	resp, err := p.client.Do(req)
	if err != nil {
		sr.ex.Err = err
		return sr
	}
	defer resp.Body.Close()
	sr.ex.Status, sr.ex.Header = resp.StatusCode, resp.Header
	sr.contentType, _, _ = mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		sr.ex.Body, sr.ex.Err = io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		sr.ex.Latency = time.Since(start)
		return sr
	}
	rd := sse.NewReader(resp.Body, 0)
	for {
		ev, err := rd.Next()
		if err != nil {
			if !errors.Is(err, io.EOF) {
				sr.readErr = err
			}
			break
		}
		if sr.done {
			sr.afterDone++
			continue
		}
		if strings.TrimSpace(ev.Data) == sse.Done {
			sr.done = true
			continue
		}
		var raw map[string]json.RawMessage
		if json.Unmarshal([]byte(ev.Data), &raw) != nil {
			sr.badJSON++
			continue
		}
		if e := errorObject([]byte(ev.Data)); e != nil || ev.Name == "error" {
			sr.errEvent = clip(ev.Data, 200)
			if e != nil {
				sr.errEvent = e.Message
			}
			continue
		}
		sr.chunks++
		var c api.ChatCompletionChunk
		if json.Unmarshal([]byte(ev.Data), &c) != nil {
			sr.badJSON++
			continue
		}
		if c.Stepflash != nil && sr.firstExt == nil {
			sr.firstExt = c.Stepflash
		}
		for _, ch := range c.Choices {
			if d := ch.Delta.ReasoningContent; d != nil && *d != "" {
				sr.fields["reasoning_content"] = true
			}
			if d := ch.Delta.Reasoning; d != nil && *d != "" {
				sr.fields["reasoning"] = true
			}
		}
		if u := raw["usage"]; len(u) > 0 && string(u) != "null" {
			var m map[string]json.RawMessage
			if json.Unmarshal(u, &m) == nil {
				sr.usage = m
				sr.usageWith = len(c.Choices) > 0
			}
		}
	}
	sr.ex.Latency = time.Since(start)
	return sr
}

// cachedPlacements reads the cached-token count from each placement a usage
// object has: OpenAI's prompt_tokens_details.cached_tokens, StepFun's
// top-level cached_tokens, DeepSeek's prompt_cache_hit_tokens.
func cachedPlacements(u map[string]json.RawMessage) map[string]int {
	out := map[string]int{}
	num := func(raw json.RawMessage) (int, bool) {
		var n *float64
		if json.Unmarshal(raw, &n) != nil || n == nil {
			return 0, false
		}
		return int(*n), true
	}
	if raw, ok := u["prompt_tokens_details"]; ok {
		var d map[string]json.RawMessage
		if json.Unmarshal(raw, &d) == nil {
			if n, ok := num(d["cached_tokens"]); ok {
				out["prompt_tokens_details.cached_tokens"] = n
			}
		}
	}
	if n, ok := num(u["cached_tokens"]); ok {
		out["cached_tokens"] = n
	}
	if n, ok := num(u["prompt_cache_hit_tokens"]); ok {
		out["prompt_cache_hit_tokens"] = n
	}
	return out
}

func usageInt(u map[string]json.RawMessage, path ...string) int {
	raw := u[path[0]]
	for _, k := range path[1:] {
		var m map[string]json.RawMessage
		if json.Unmarshal(raw, &m) != nil {
			return 0
		}
		raw = m[k]
	}
	var n float64
	json.Unmarshal(raw, &n)
	return int(n)
}

// checkStreaming: a stream with stream_options.include_usage ends in a
// usage chunk and data: [DONE]; where cached_tokens is placed; and a second
// identical request reports cached tokens (expected of a stepflash; a
// warning only).
func checkStreaming(ctx context.Context, p *probe) Result {
	if p.blocked != "" {
		return skip("skipped: %s", p.blocked)
	}
	body := func() map[string]any {
		return map[string]any{"messages": []map[string]string{{"role": "system", "content": streamSystem}, {"role": "user", "content": "Say OK."}},
			"max_tokens": 8, "temperature": 0, "stream": true, "stream_options": map[string]any{"include_usage": true}}
	}
	first := p.stream(ctx, body())
	ex := first.ex
	switch {
	case refused(ex):
		p.blocked = "the endpoint refuses the key (see streaming)"
		return p.unauthorized(ex)
	case ex.Status == 0:
		return fail("", "streamed request: %v", errText(ex.Err))
	case !ex.ok():
		fix := ""
		if ex.Status == http.StatusBadRequest && strings.Contains(string(ex.Body), "stream_options") {
			fix = "the endpoint does not take stream_options: count tokens client-side, or use one that does"
		}
		return fail(fix, "streamed request with stream_options.include_usage: %s", describe(ex))
	}
	if first.firstExt != nil {
		p.ext = first.firstExt
	}
	for f := range first.fields {
		p.streamReasoningFields[f] = true
	}
	p.streamReasoningTokens = max(p.streamReasoningTokens, usageInt(first.usage, "completion_tokens_details", "reasoning_tokens"))
	r := Result{}.with("chunks", first.chunks).with("done", first.done).with("content_type", first.contentType)
	var problems, notes []string
	fix := ""
	switch {
	case first.chunks == 0 && first.contentType != "text/event-stream":
		return fail("the endpoint must answer stream:true with text/event-stream events",
			"stream:true got %d %s with no events (Content-Type %q)", ex.Status, ms(ex.Latency), first.contentType)
	case first.errEvent != "":
		problems = append(problems, "the stream carried an error event: "+first.errEvent)
	}
	if first.badJSON > 0 {
		problems = append(problems, fmt.Sprintf("%d events were not JSON", first.badJSON))
	}
	if first.readErr != nil {
		problems = append(problems, "reading the stream failed: "+first.readErr.Error())
	}
	if !first.done {
		problems = append(problems, "it ended without data: [DONE] (OpenAI's SDKs may wait or report a broken stream)")
		fix = "the stream must end with data: [DONE]"
	}
	if first.afterDone > 0 {
		notes = append(notes, fmt.Sprintf("%d events came after [DONE]", first.afterDone))
	}
	if first.contentType != "text/event-stream" {
		notes = append(notes, fmt.Sprintf("Content-Type is %q, not text/event-stream", first.contentType))
	}
	if first.usage == nil {
		problems = append(problems, "no usage chunk: stream_options.include_usage was ignored, so a client sees no token counts for streamed requests")
		if fix == "" {
			fix = "use an endpoint that honours stream_options.include_usage, or count tokens client-side"
		}
	} else if first.usageWith {
		notes = append(notes, "usage came on a chunk with choices, not on a final chunk with choices []")
	}
	var cacheMsg string
	if first.usage != nil {
		place := cachedPlacements(first.usage)
		r = r.with("cached_placements", place)
		switch {
		case len(place) == 0:
			notes = append(notes, "usage has cached_tokens in no placement (OpenAI's prompt_tokens_details.cached_tokens, StepFun's top-level cached_tokens): cache hits are invisible")
		default:
			var names []string
			for _, k := range []string{"prompt_tokens_details.cached_tokens", "cached_tokens", "prompt_cache_hit_tokens"} {
				if _, ok := place[k]; ok {
					names = append(names, k)
				}
			}
			cacheMsg = "cached tokens in " + strings.Join(names, " and ")
			if len(names) == 1 {
				cacheMsg += " only"
			}
		}
		// The same request again: its prompt is the first one's.
		second := p.stream(ctx, body())
		if second.usage != nil {
			place2 := cachedPlacements(second.usage)
			prompt := usageInt(second.usage, "prompt_tokens")
			cached := 0
			for _, n := range place2 {
				cached = max(cached, n)
			}
			r = r.with("second_cached_tokens", cached).with("second_prompt_tokens", prompt)
			if len(place2) > 0 {
				cacheMsg += fmt.Sprintf("; an identical second request: %d of %d prompt tokens cached", cached, prompt)
			}
			vals := map[int]bool{}
			for _, n := range place2 {
				vals[n] = true
			}
			if len(vals) > 1 {
				notes = append(notes, fmt.Sprintf("the placements disagree: %v", place2))
			}
			if cached == 0 && p.isLocalStepflash(first.firstExt) {
				notes = append(notes, "a stepflash reported no cached tokens for an identical second request: is its prefix cache off (serve --cache-ram -1)?")
			}
		} else if second.ex.ok() {
			notes = append(notes, "the second stream had no usage chunk")
		}
	}
	switch {
	case len(problems) > 0:
		r.Status = Fail
		r.Message = strings.Join(append(problems, notes...), "; ")
		r.Fix = fix
	case len(notes) > 0:
		r.Status = Warn
		r.Message = fmt.Sprintf("usage chunk and [DONE] arrived (%d chunks), but: %s", first.chunks, strings.Join(notes, "; "))
		if cacheMsg != "" {
			r.Message += "; " + cacheMsg
		}
	default:
		r.Status = Pass
		r.Message = fmt.Sprintf("usage chunk and [DONE] arrived (%d chunks); %s", first.chunks, cacheMsg)
	}
	return r
}

// isLocalStepflash reports whether ext (or the last extension seen) says a
// stepflash answered from its own engine.
func (p *probe) isLocalStepflash(ext *api.Extension) bool {
	if ext == nil {
		ext = p.ext
	}
	return ext != nil && ext.Backend == "local"
}

// checkReasoningFields: when a response counts reasoning tokens, its
// reasoning text is in message.reasoning_content and/or message.reasoning
// (and the same fields of stream deltas), not inline in content.
func checkReasoningFields(_ context.Context, p *probe) Result {
	if len(p.effort) == 0 {
		if p.blocked != "" {
			return skip("skipped: %s", p.blocked)
		}
		return skip("skipped: the effort requests did not run")
	}
	tokens, inline := p.streamReasoningTokens, false
	fields := map[string]bool{}
	for _, ex := range p.effort {
		c := readChat(ex)
		tokens = max(tokens, c.reasoning)
		inline = inline || c.thinkTag
		for _, f := range c.fields {
			fields[f] = true
		}
	}
	var names []string
	for _, f := range []string{"reasoning_content", "reasoning"} {
		if fields[f] || p.streamReasoningFields[f] {
			names = append(names, f)
		}
	}
	r := Result{}.with("reasoning_tokens", tokens).with("fields", names).with("stream_fields", keys(p.streamReasoningFields))
	switch {
	case tokens == 0 && len(names) == 0 && inline:
		r.Status = Fail
		r.Message = "reasoning comes inline in content (<think>…</think>) and is not counted as reasoning tokens"
		r.Fix = "have the server parse it out (vLLM/SGLang: --reasoning-parser; llama.cpp: --reasoning-format), or strip it client-side"
	case tokens == 0 && len(names) == 0:
		return skip("no reasoning tokens and no reasoning text in any answer (the model did not think at the tiers tried): nothing to check").
			with("reasoning_tokens", 0)
	case len(names) == 0 && inline:
		r.Status = Fail
		r.Message = fmt.Sprintf("%d reasoning tokens, but the reasoning is inline in content (<think>…</think>), in neither reasoning_content nor reasoning", tokens)
		r.Fix = "have the server parse it out (vLLM/SGLang: --reasoning-parser; llama.cpp: --reasoning-format), or strip it client-side"
	case len(names) == 0:
		r.Status = Warn
		r.Message = fmt.Sprintf("%d reasoning tokens counted, but no reasoning text in reasoning_content or reasoning (some APIs hide it by design)", tokens)
	case tokens == 0:
		r.Status = Warn
		r.Message = fmt.Sprintf("reasoning text in %s, but usage reports 0 reasoning tokens: cost and budgets cannot tell them apart", strings.Join(names, " and "))
	case len(names) == 1:
		other := "reasoning"
		if names[0] == "reasoning" {
			other = "reasoning_content"
		}
		r.Status = Pass
		r.Message = fmt.Sprintf("%d reasoning tokens, text in %s only: a client that reads %s sees none", tokens, names[0], other)
		if p.isLocalStepflash(nil) {
			r.Status = Warn
			r.Message += " (a stepflash sends both)"
		}
	default:
		r.Status = Pass
		r.Message = fmt.Sprintf("%d reasoning tokens, text in both reasoning_content and reasoning", tokens)
	}
	if inline && r.Status != Fail {
		r.Message += "; content also holds a <think> tag"
	}
	if len(p.streamReasoningFields) > 0 && len(keys(p.streamReasoningFields)) != len(keys(fields)) && len(fields) > 0 {
		r.Message += fmt.Sprintf(" (stream deltas: %s)", strings.Join(keys(p.streamReasoningFields), ", "))
	}
	return r
}

func keys(m map[string]bool) []string {
	var out []string
	for _, k := range []string{"reasoning_content", "reasoning"} {
		if m[k] {
			out = append(out, k)
		}
	}
	return out
}

// checkErrorBodies: a request with a bad value (temperature 5, outside
// OpenAI's 0 to 2) gets a JSON error object with a message; an empty or
// non-JSON body leaves a client with nothing to say.
func checkErrorBodies(ctx context.Context, p *probe) Result {
	if p.blocked != "" {
		return skip("skipped: %s", p.blocked)
	}
	ex := p.chat(ctx, map[string]any{"messages": userMessage("Say OK."), "max_tokens": 1, "temperature": 5})
	what := "temperature 5"
	note := ""
	if ex.ok() {
		note = fmt.Sprintf("temperature 5 was accepted (%d); ", ex.Status)
		what = "a malformed JSON body"
		ex = p.do(ctx, http.MethodPost, "/chat/completions", json.RawMessage(`{"model": "`+p.model+`", "messages": [`))
	}
	switch {
	case ex.Status == 0:
		return fail("", "%s%s: %v", note, what, errText(ex.Err))
	case refused(ex):
		p.blocked = "the endpoint refuses the key (see error_bodies)"
		return p.unauthorized(ex)
	case ex.ok():
		return warn("", "%s%s was accepted too (%d): no error body to check", note, what, ex.Status)
	}
	r := Result{}.with("status", ex.Status).with("request", what)
	body := strings.TrimSpace(string(ex.Body))
	e := errorObject(ex.Body)
	switch {
	case body == "":
		r.Status, r.Message = Fail, fmt.Sprintf("%s%s got %d with an empty body: a client sees no reason", note, what, ex.Status)
		r.Fix = `errors must be JSON error objects, {"error": {"message": …, "type": …, "code": …}} (a proxy in front may be dropping bodies)`
	case e == nil:
		r.Status, r.Message = Fail, fmt.Sprintf("%s%s got %d without a JSON error object: %s", note, what, ex.Status, clip(body, 120))
		r.Fix = `errors must be JSON error objects, {"error": {"message": …}}`
	case ex.Status >= 500:
		r.Status, r.Message = Warn, fmt.Sprintf("%s%s got %s: a server error for bad input (a 4xx is due)", note, what, describe(ex))
	default:
		r.Status, r.Message = Pass, fmt.Sprintf("%s%s → %s", note, what, describe(ex))
		if ct, _, _ := mime.ParseMediaType(ex.Header.Get("Content-Type")); ct != "application/json" {
			r.Status = Warn
			r.Message += fmt.Sprintf(" (Content-Type %q, not application/json)", ct)
		}
	}
	return r
}

// checkStepflash: for a stepflash (a `stepflash` object in its answers),
// what its HTTP API tells about it: version (where exposed), backend,
// region, the served model and its context, and the effort policy it
// echoed per tier; and what HTTP cannot tell.
func checkStepflash(ctx context.Context, p *probe) Result {
	if p.ext == nil {
		if p.blocked != "" {
			return skip("skipped: %s", p.blocked)
		}
		return skip("not a stepflash (no `stepflash` object in its answers): nothing more to read")
	}
	var parts []string
	r := Result{Status: Pass}.with("backend", p.ext.Backend).with("region", p.ext.Region)
	version := p.version(ctx)
	if version != "" {
		parts = append(parts, "version "+version)
	} else {
		parts = append(parts, "version not exposed over HTTP")
	}
	r = r.with("version", version)
	parts = append(parts, fmt.Sprintf("backend %s, region %s", orNone(p.ext.Backend), orNone(p.ext.Region)))
	if m := p.modelEntry(); m != nil {
		s := "model " + m.ID
		if m.MaxModelLen > 0 {
			s += fmt.Sprintf(" (context %d)", m.MaxModelLen)
		}
		parts = append(parts, s)
		r = r.with("model", m.ID).with("context", m.MaxModelLen)
	}
	policy := map[string]any{}
	var tiers []string
	for _, tier := range []string{"low", "high"} {
		ex := p.effort[tier]
		if ex == nil {
			continue
		}
		e := extension(ex.Body)
		if e == nil {
			continue
		}
		ee := e.Effort
		s := fmt.Sprintf("%s→%s", tier, orNone(ee.Applied))
		if ee.ExpertsPerToken != nil {
			s += fmt.Sprintf(" %d experts/token", *ee.ExpertsPerToken)
		}
		if ee.ThinkingBudget != nil {
			s += fmt.Sprintf(" thinking budget %d", *ee.ThinkingBudget)
		}
		if ee.Upstream != nil {
			s += fmt.Sprintf(" (sent to the upstream as %s=%s, not verified)", ee.Upstream.Param, ee.Upstream.Sent)
		}
		tiers = append(tiers, s)
		policy[tier] = ee
	}
	if len(tiers) > 0 {
		parts = append(parts, "effort policy "+strings.Join(tiers, ", "))
	}
	r = r.with("effort_policy", policy)
	parts = append(parts, "not visible over HTTP: the model file, its chat template, threads and memory (see `stepflash serve`'s start log and `stepflash version` on that host)")
	r.Message = strings.Join(parts, "; ")
	return r
}

// modelEntry is the /models entry of the checked model.
func (p *probe) modelEntry() *api.Model {
	if p.modelList == nil || !p.modelList.ok() {
		return nil
	}
	var list api.ModelList
	if json.Unmarshal(p.modelList.Body, &list) != nil {
		return nil
	}
	for i := range list.Data {
		if list.Data[i].ID == p.model {
			return &list.Data[i]
		}
	}
	return nil
}

// version looks for a version where a stepflash could expose one: a
// "version" field of /health (at the root, beside /v1), or a Server header.
func (p *probe) version(ctx context.Context) string {
	root := strings.TrimSuffix(p.base, "/v1")
	alt := *p
	alt.base = root
	ex := alt.do(ctx, http.MethodGet, "/health", nil)
	if ex.ok() {
		var h struct {
			Version string `json:"version"`
		}
		if json.Unmarshal(ex.Body, &h) == nil && h.Version != "" {
			return h.Version
		}
	}
	for _, e := range []*exchange{ex, p.modelList} {
		if e != nil && e.Header != nil {
			if s := e.Header.Get("Server"); strings.HasPrefix(strings.ToLower(s), "stepflash") {
				return s
			}
		}
	}
	return ""
}
