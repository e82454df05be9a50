package doctor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/stepflash/stepflash/api"
)

// effortPrompt is the small question of the effort check: one a reasoning
// model thinks about, in the form the trained flash model of
// ../shared/models/trained answers (so that its thinking is real).
const effortPrompt = "What is 12 + 34?"

// effortMaxTokens bounds each effort request: enough for a model that thinks
// to show it (reasoning tokens), small enough to be cheap.
const effortMaxTokens = 32

// streamSystem is the system message of the streaming check: long enough
// (about 150 tokens of English, more on a byte-level vocabulary) that a
// prefix cache with blocks of 16 to 64 tokens can reuse it on the second,
// identical request.
const streamSystem = "You are a careful assistant for a diagnostic check. Answer briefly and plainly. " +
	"This message is sent twice, unchanged, so that a server with a prefix cache can reuse the work of the first request " +
	"for the second one and report the reused prompt tokens as cached tokens in the usage object, where OpenAI puts them " +
	"(prompt_tokens_details.cached_tokens) or at the top level, where StepFun puts them (cached_tokens). " +
	"Nothing in this message needs an answer; the question follows in the user's message. " +
	"Keep the answer short: a few words are enough, and the request allows only a handful of tokens."

// slowerFactor and slowerBy are how much longer the high-effort request must
// take than the low one for its latency alone to count as a sign that the
// tier was applied (and even then only as a warning: latency is noisy).
const (
	slowerFactor = 1.5
	slowerBy     = 250 * time.Millisecond
)

func (p *probe) chat(ctx context.Context, body map[string]any) *exchange {
	body["model"] = p.model
	return p.do(ctx, http.MethodPost, "/chat/completions", body)
}

func userMessage(text string) []map[string]string {
	return []map[string]string{{"role": "user", "content": text}}
}

// refused reports whether ex is an authentication refusal.
func refused(ex *exchange) bool {
	return ex.Status == http.StatusUnauthorized || ex.Status == http.StatusForbidden
}

// checkReach: the base URL answers, and GET /models lists the served names.
func checkReach(ctx context.Context, p *probe) Result {
	u, err := url.Parse(p.base)
	if p.base == "" || err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		p.blocked = "no usable base URL"
		return fail("pass --base-url http(s)://HOST[:PORT]/v1 or set $STEP_BASE_URL", "base URL %q is not an http(s) URL", p.base)
	}
	ex := p.do(ctx, http.MethodGet, "/models", nil)
	p.modelList = ex
	if ex.Status == 0 {
		p.blocked = "the endpoint is unreachable"
		fix := fmt.Sprintf("is a server running at %s? start one with `stepflash serve`, or point --base-url / $STEP_BASE_URL at the right host", u.Host)
		if _, ok := errors.AsType[*net.DNSError](ex.Err); ok {
			fix = fmt.Sprintf("the host name %s does not resolve here: check --base-url / $STEP_BASE_URL, DNS, or $HTTPS_PROXY", u.Hostname())
		}
		return fail(fix, "GET %s/models: %v", p.base, errText(ex.Err))
	}
	if ex.Status == http.StatusNotFound && !strings.HasSuffix(p.base, "/v1") {
		// The commonest base-URL slip: the /v1 left off.
		alt := *p
		alt.base = p.base + "/v1"
		if ex2 := alt.do(ctx, http.MethodGet, "/models", nil); ex2.ok() || refused(ex2) {
			p.base = alt.base
			p.modelList = ex2
			r := fail("add /v1 to the base URL: --base-url "+p.base, "GET /models is 404 here, but %s/models answers: the base URL lacks /v1 (the checks below use it)", p.base)
			if ex2.ok() {
				p.models = modelNames(ex2.Body)
			}
			p.pickModel()
			return r
		}
	}
	defer p.pickModel()
	switch {
	case refused(ex):
		return pass("reachable: GET /models answered %d in %s (the key is refused: see region)", ex.Status, ms(ex.Latency))
	case ex.Status == http.StatusNotFound:
		return warn("the model string cannot be checked against a list; make sure it is exactly the provider's model id",
			"reachable, but GET /models is %s: the endpoint does not list its models", describe(ex))
	case !ex.ok():
		return fail("", "GET /models: %s", describe(ex))
	}
	var list api.ModelList
	if err := json.Unmarshal(ex.Body, &list); err != nil || list.Data == nil {
		return fail("the base URL must be an OpenAI-compatible API root (…/v1)", "GET /models answered %d but not a model list: %s", ex.Status, clip(string(ex.Body), 120))
	}
	p.models = modelNames(ex.Body)
	return pass("GET /models: %d in %s, %d served: %s", ex.Status, ms(ex.Latency), len(p.models), strings.Join(p.models, ", ")).
		with("models", p.models).with("latency_ms", ex.Latency.Milliseconds())
}

// errText is err without net/url's "Get \"URL\": " prefix (the message names
// the request already).
func errText(err error) string {
	if ue, ok := errors.AsType[*url.Error](err); ok {
		return ue.Err.Error()
	}
	return err.Error()
}

func modelNames(body []byte) []string {
	var list api.ModelList
	if json.Unmarshal(body, &list) != nil {
		return nil
	}
	names := []string{}
	for _, m := range list.Data {
		names = append(names, m.ID)
	}
	return names
}

// pickModel sets the model the later requests use: --model when it is
// served (or when nothing lists the served names), else its closest served
// name; with no --model, step-3.7-flash when served, else the first name.
func (p *probe) pickModel() {
	want := p.cfg.Model
	switch {
	case want == "" && slices.Contains(p.models, defaultModel):
		p.model = defaultModel
	case want == "" && len(p.models) > 0:
		p.model = p.models[0]
	case want == "":
		p.model = defaultModel
	case p.models == nil || slices.Contains(p.models, want):
		p.model = want
	default:
		p.model = closest(want, p.models)
	}
}

func ms(d time.Duration) string {
	if d < time.Millisecond {
		return d.Round(time.Microsecond).String()
	}
	return d.Round(time.Millisecond).String()
}

// checkRegion: the key's region against the endpoint's, before any request
// (the sk-<region>- tag against StepFun's two domains), then the answers: a
// 401 with an empty body is the region trap; a JSON 401 is said with its
// message; a key accepted is a pass.
func checkRegion(ctx context.Context, p *probe) Result {
	ki := parseKey(p.cfg.APIKey)
	if msg, fix := staticRegionMismatch(ki, p.base); msg != "" {
		p.blocked = "the key's region does not match the endpoint (see region)"
		r := fail(fix, "%s", msg).with("key_region", ki.Region).with("trap", "region")
		if ml := p.modelList; ml != nil && ml.Status != 0 {
			r.Message += fmt.Sprintf(" (GET /models: %s)", describe(ml))
		}
		return r
	}
	if p.modelList == nil || p.modelList.Status == 0 {
		return skip("skipped: %s", p.blocked)
	}
	if refused(p.modelList) {
		p.blocked = "the endpoint refuses the key (see region)"
		return p.unauthorized(p.modelList)
	}
	if p.model == "" {
		return skip("skipped: no served model to send a request to")
	}
	// /models may be open while the API is not: one token of chat.
	ex := p.chat(ctx, map[string]any{"messages": userMessage("Say OK."), "max_tokens": 1})
	if refused(ex) {
		p.blocked = "the endpoint refuses the key (see region)"
		return p.unauthorized(ex)
	}
	if ex.Status == 0 {
		p.blocked = "the endpoint stopped answering"
		return fail("", "POST /chat/completions: %v", errText(ex.Err))
	}
	var what string
	switch {
	case p.cfg.APIKey == "":
		what = "no key sent, none needed"
	case ki.Region != "":
		what = fmt.Sprintf("key of region %s accepted", ki.Region)
	default:
		what = "key accepted"
	}
	r := pass("%s", what).with("key_region", ki.Region)
	if hr, host := hostRegion(p.base); hr != "" {
		r.Message += fmt.Sprintf(" by %s (StepFun %s)", host, regionName(hr))
		r = r.with("endpoint_region", hr)
	}
	if ext := extension(ex.Body); ext != nil {
		p.ext = ext
		if ext.Region != "" {
			r.Message += fmt.Sprintf("; stepflash region %s", ext.Region)
			r = r.with("endpoint_region", ext.Region)
			if ki.Region != "" && ki.Region != ext.Region {
				r.Message += fmt.Sprintf(" (it takes a %s key because it holds no keys of its own region: anyone who reaches it may use it)", ki.Region)
			}
		}
	}
	if !ex.ok() {
		r.Message += fmt.Sprintf(" (the request itself: %s)", describe(ex))
	}
	return r
}

// checkModel: the model string is exactly a name /models lists; else the
// closest served name is suggested ("did you mean").
func checkModel(_ context.Context, p *probe) Result {
	want := p.cfg.Model
	switch {
	case p.modelList == nil || p.modelList.Status == 0 || (p.models == nil && p.blocked != ""):
		return skip("skipped: %s", p.blocked)
	case p.models == nil && want == "":
		return skip("skipped: the endpoint lists no models and no --model was given; the checks below use %q", p.model)
	case p.models == nil:
		return skip("skipped: the endpoint lists no models to compare %q with", want)
	case len(p.models) == 0:
		p.blocked = "the endpoint serves no models"
		return fail("load a model on the server (stepflash serve -m MODEL.gguf)", "GET /models lists no models")
	case want == "":
		return pass("no --model given: checking %q, of %d served", p.model, len(p.models)).with("model", p.model)
	case slices.Contains(p.models, want):
		return pass("%q is served (exactly as GET /models lists it)", want).with("model", want)
	}
	r := Result{Status: Fail}.with("model", want).with("served", p.models)
	if p.model != "" {
		r.Message = fmt.Sprintf("%q is not served here; did you mean %q? (the model string must match GET /models exactly; the checks below use %q)", want, p.model, p.model)
		r.Fix = fmt.Sprintf("--model %s", p.model)
		return r.with("suggestion", p.model)
	}
	p.blocked = fmt.Sprintf("model %q is not served", want)
	r.Message = fmt.Sprintf("%q is not served here, nor anything close; served: %s", want, strings.Join(p.models, ", "))
	r.Fix = "use one of the served names, exactly as listed"
	return r
}

// chatResult is what the checks read from a non-streamed chat answer.
type chatResult struct {
	ok         bool
	header     string // X-Reasoning-Effort
	ext        *api.Extension
	reasoning  int // usage.completion_tokens_details.reasoning_tokens
	fields     []string
	thinkTag   bool // "<think>" in content
	latency    time.Duration
	completion int
}

func readChat(ex *exchange) chatResult {
	cr := chatResult{header: ex.Header.Get("X-Reasoning-Effort"), latency: ex.Latency}
	var c api.ChatCompletion
	if !ex.ok() || json.Unmarshal(ex.Body, &c) != nil {
		return cr
	}
	cr.ok = true
	cr.ext = c.Stepflash
	if c.Usage != nil {
		cr.reasoning = c.Usage.CompletionTokensDetails.ReasoningTokens
		cr.completion = c.Usage.CompletionTokens
	}
	for _, ch := range c.Choices {
		m := ch.Message
		if m.ReasoningContent != nil && *m.ReasoningContent != "" && !slices.Contains(cr.fields, "reasoning_content") {
			cr.fields = append(cr.fields, "reasoning_content")
		}
		if m.Reasoning != nil && *m.Reasoning != "" && !slices.Contains(cr.fields, "reasoning") {
			cr.fields = append(cr.fields, "reasoning")
		}
		if m.Content != nil && strings.Contains(*m.Content, "<think>") {
			cr.thinkTag = true
		}
	}
	return cr
}

// mentionsEffort reports whether an error answer is about reasoning_effort.
func mentionsEffort(ex *exchange) bool {
	if e := errorObject(ex.Body); e != nil {
		return e.ParamString() == "reasoning_effort" || strings.Contains(e.Message, "reasoning_effort")
	}
	return strings.Contains(string(ex.Body), "reasoning_effort")
}

// checkEffort: the same small request at reasoning_effort low and high must
// differ in the stepflash effort echo, the X-Reasoning-Effort header, the
// reasoning tokens or (weakly) the latency; identical on all is a tier that
// was accepted but ignored.
func checkEffort(ctx context.Context, p *probe) Result {
	if p.blocked != "" {
		return skip("skipped: %s", p.blocked)
	}
	res := map[string]chatResult{}
	for _, tier := range []string{"low", "high"} {
		ex := p.chat(ctx, map[string]any{"messages": userMessage(effortPrompt), "max_tokens": effortMaxTokens,
			"temperature": 0, "reasoning_effort": tier})
		p.effort[tier] = ex
		switch {
		case refused(ex):
			p.blocked = "the endpoint refuses the key (see effort)"
			return p.unauthorized(ex)
		case ex.Status == 0:
			return fail("", "reasoning_effort %s: %v", tier, errText(ex.Err))
		case ex.Status == http.StatusBadRequest && mentionsEffort(ex):
			return warn("do not send reasoning_effort to this endpoint, or use one that takes it (OpenRouter takes reasoning: {\"effort\": …})",
				"the endpoint rejects reasoning_effort=%s: %s", tier, describe(ex))
		case !ex.ok():
			return fail("", "reasoning_effort %s: %s", tier, describe(ex))
		}
		res[tier] = readChat(ex)
		if e := res[tier].ext; e != nil {
			p.ext = e
		}
	}
	lo, hi := res["low"], res["high"]
	r := Result{}.with("low", effortData(lo)).with("high", effortData(hi))

	// A stepflash gateway echoes the tier it passed to an upstream, which
	// says nothing about what the upstream did with it.
	unverified := false
	for _, c := range []chatResult{lo, hi} {
		if c.ext != nil && c.ext.Effort.Upstream != nil && !c.ext.Effort.Upstream.Verified {
			unverified = true
		}
	}
	var signs []string
	echoLo, echoHi := appliedEcho(lo.ext), appliedEcho(hi.ext)
	if !unverified {
		if echoLo != echoHi {
			signs = append(signs, fmt.Sprintf("echo %s→%s", echoLo, echoHi))
		}
		if lo.header != hi.header {
			signs = append(signs, fmt.Sprintf("X-Reasoning-Effort %s→%s", orNone(lo.header), orNone(hi.header)))
		}
	}
	if lo.reasoning != hi.reasoning {
		signs = append(signs, fmt.Sprintf("reasoning tokens %d→%d", lo.reasoning, hi.reasoning))
	}
	slower := hi.latency >= time.Duration(float64(lo.latency)*slowerFactor) && hi.latency-lo.latency >= slowerBy
	same := fmt.Sprintf("echo %s, X-Reasoning-Effort %s, reasoning tokens %d, latency %s vs %s",
		echoLo, orNone(lo.header), lo.reasoning, ms(lo.latency), ms(hi.latency))
	switch {
	case len(signs) > 0:
		r.Status, r.Message = Pass, "low and high differ: "+strings.Join(signs, ", ")
		if unverified {
			r.Message += " (an upstream behind a stepflash gateway: its echo is not evidence and was not counted)"
		}
	case slower:
		r.Status = Warn
		r.Message = fmt.Sprintf("low and high differ only in latency (%s vs %s), which may be noise; %s", ms(lo.latency), ms(hi.latency), same)
		r.Fix = "check with a prompt that needs thinking, or an endpoint that reports reasoning tokens"
	case lo.ext != nil && hi.ext != nil && lo.ext.Effort.Requested == nil && hi.ext.Effort.Requested == nil:
		r.Status = Fail
		r.Message = "accepted but ignored: the stepflash behind this endpoint saw no reasoning_effort in either request (its echo says requested null): something in between drops the field; " + same
		r.Fix = "make the proxy or gateway in front of it pass reasoning_effort through"
	default:
		r.Status = Fail
		r.Message = "accepted but ignored: reasoning_effort low and high gave the same " + same
		r.Fix = "this endpoint does not apply reasoning_effort: do not rely on effort tiers here (a proxy may drop the field; OpenRouter takes reasoning: {\"effort\": …})"
		if unverified {
			r.Message += " (a stepflash gateway passed the tier on; the upstream shows no sign of applying it)"
		}
	}
	return r
}

func effortData(c chatResult) map[string]any {
	return map[string]any{"echo": appliedEcho(c.ext), "header": c.header, "reasoning_tokens": c.reasoning,
		"completion_tokens": c.completion, "latency_ms": c.latency.Milliseconds()}
}

func appliedEcho(e *api.Extension) string {
	if e == nil {
		return "none"
	}
	return orNone(e.Effort.Applied)
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}
