package upstream

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/stepflash/stepflash/api"
	"github.com/stepflash/stepflash/backend"
	"github.com/stepflash/stepflash/internal/httpclient"
	"github.com/stepflash/stepflash/sse"
)

// Client talks to one upstream endpoint. It always streams from the
// upstream (with usage), whatever the client asked, so that the first-byte
// and idle timeouts bound every request and a non-streamed answer is the
// stream joined, as for the local engine.
type Client struct {
	cfg   Config
	hc    *http.Client
	route Route
	known bool
	// noUsage, when set, is told of a stream that carried no usage.
	noUsage func()
}

// NewClient checks cfg and returns its client. servedName is the name the
// model is served under (the default upstream model id).
func NewClient(cfg Config, servedName string) (*Client, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults(servedName)
	c := &Client{cfg: cfg, hc: httpclient.NewClient(cfg.Timeouts)}
	c.route, c.known = cfg.routeOf()
	return c, nil
}

// Config returns the client's configuration, defaults filled in.
func (c *Client) Config() Config { return c.cfg }

// Label names the client in the stepflash extension: "upstream:NAME".
func (c *Client) Label() string { return "upstream:" + c.cfg.Name }

// Failure is an upstream's failure: the error object the client gets, and
// what a pool does about it.
type Failure struct {
	// Err is the answer for the client.
	Err *api.Error
	// Retry says another upstream may answer the same request (if nothing
	// has reached the client yet).
	Retry bool
	// Unhealthy says the failure counts against this upstream's health.
	Unhealthy bool
	// Refused says the upstream could not be reached at all (connect
	// failure): it is taken out at once.
	Refused bool
}

func (f *Failure) Error() string { return f.Err.Message }

// Unwrap returns the error object, so errors.As finds it.
func (f *Failure) Unwrap() error { return f.Err }

// Chat sends a chat request upstream and emits its chunks, normalised.
func (c *Client) Chat(ctx context.Context, req *api.ChatCompletionRequest, emit func(*api.ChatCompletionChunk) error) error {
	return relay(c, ctx, "/chat/completions", req, req.ReasoningEffort, emit, func(fp string, choices []upChoice, usage *api.Usage, tm *api.Timings, ext *api.Extension) (*api.ChatCompletionChunk, error) {
		out := &api.ChatCompletionChunk{Envelope: api.Envelope{Object: "chat.completion.chunk", SystemFingerprint: fp}, Usage: usage, Timings: tm, Stepflash: ext}
		out.Choices = []api.ChunkChoice{}
		for _, uc := range choices {
			cc, err := uc.chat()
			if err != nil {
				return nil, err
			}
			out.Choices = append(out.Choices, cc)
		}
		return out, nil
	})
}

// Complete sends a legacy completion request upstream and emits its chunks,
// normalised.
func (c *Client) Complete(ctx context.Context, req *api.CompletionRequest, emit func(*api.Completion) error) error {
	return relay(c, ctx, "/completions", req, req.ReasoningEffort, emit, func(fp string, choices []upChoice, usage *api.Usage, tm *api.Timings, ext *api.Extension) (*api.Completion, error) {
		out := &api.Completion{Envelope: api.Envelope{Object: "text_completion", SystemFingerprint: fp}, Usage: usage, Timings: tm, Stepflash: ext}
		out.Choices = []api.CompletionChoice{}
		for _, uc := range choices {
			cc, err := uc.text()
			if err != nil {
				return nil, err
			}
			out.Choices = append(out.Choices, cc)
		}
		return out, nil
	})
}

// relay sends req to path and emits the upstream's chunks, made
// from their normalised parts by build: the first carries the stepflash object, and
// a last one with no choices carries the usage (the upstream's, normalised),
// the upstream's timings when it sent them (llama-server does) and the
// stepflash object again.
func relay[C any](c *Client, ctx context.Context, path string, req any, requested *string, emit func(C) error,
	build func(fp string, choices []upChoice, usage *api.Usage, tm *api.Timings, ext *api.Extension) (C, error)) error {
	body, ext, err := c.body(req, requested)
	if err != nil {
		return err
	}
	resp, err := c.post(ctx, path, body, "text/event-stream")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	first := ext
	var usage *api.Usage
	var timings *api.Timings
	fp := ""
	err = c.read(ctx, resp.Body, func(ch *upChunk) error {
		if ch.SystemFingerprint != nil {
			fp = *ch.SystemFingerprint
		}
		if ch.Usage != nil {
			usage = ch.Usage.normalize()
		}
		if ch.Timings != nil {
			timings = ch.Timings
		}
		if len(ch.Choices) == 0 {
			return nil
		}
		out, err := build(fp, ch.Choices, nil, nil, first)
		if err != nil {
			return c.protocolFailure(fmt.Sprintf("a chunk's logprobs do not parse: %v", err))
		}
		first = nil
		return emit(out)
	})
	if err != nil {
		return err
	}
	last, _ := build(fp, nil, c.usageOrZero(usage), timings, ext)
	return emit(last)
}

// usageOrZero is the stream's usage, or zeros for an upstream that sent none
// (it then cannot be billed by token; the log says so).
func (c *Client) usageOrZero(u *api.Usage) *api.Usage {
	if u == nil {
		if c.noUsage != nil {
			c.noUsage()
		}
		u := api.NewUsage(0, 0, 0, 0)
		u.Unknown = true
		return u
	}
	return u
}

// dropIfZero are request fields whose zero value means "not given" (they
// are not pointers in the request types): they are left out upstream.
var dropIfZero = map[string]string{"user": `""`, "logprobs": "false", "ignore_eos": "false", "echo": "false",
	"prompt_cache_key": `""`, "safety_identifier": `""`}

// body is the request as the upstream gets it: the client's fields (nulls
// and unset fields left out), the upstream's model id, always streamed with
// usage, and the effort tier sent the way the upstream takes it. stepflash's
// own extension ("advisor") stays here. It also returns the effort echo.
func (c *Client) body(req any, requested *string) ([]byte, *api.Extension, error) {
	b, err := json.Marshal(req)
	if err != nil {
		return nil, nil, api.Internal("encoding the upstream request: %v", err)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, nil, api.Internal("encoding the upstream request: %v", err)
	}
	for k, v := range m {
		if string(v) == "null" || dropIfZero[k] == string(v) {
			delete(m, k)
		}
	}
	delete(m, "advisor")
	delete(m, "reasoning_effort")
	m["model"], _ = json.Marshal(c.cfg.Model)
	m["stream"] = json.RawMessage("true")
	m["stream_options"] = json.RawMessage(`{"include_usage":true}`)
	level := string(backend.EffortLevel(requested))
	echo := api.EffortEcho{Requested: requested, Applied: level}
	switch c.cfg.EffortParam {
	case "reasoning_effort":
		m["reasoning_effort"], _ = json.Marshal(level)
		echo.Upstream = &api.UpstreamEffort{Param: "reasoning_effort", Sent: level}
	case "reasoning.effort":
		m["reasoning"], _ = json.Marshal(map[string]string{"effort": level})
		echo.Upstream = &api.UpstreamEffort{Param: "reasoning.effort", Sent: level}
	default:
		echo.Upstream = &api.UpstreamEffort{Param: "none", Sent: ""}
	}
	out, err := json.Marshal(m)
	if err != nil {
		return nil, nil, api.Internal("encoding the upstream request: %v", err)
	}
	return out, &api.Extension{Effort: echo, Backend: c.Label()}, nil
}

// post sends a request and returns a 200 response, or the failure.
func (c *Client) post(ctx context.Context, path string, body []byte, accept string) (*http.Response, error) {
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, c.cfg.BaseURL+path, bytes.NewReader(body))
	if err != nil {
		return nil, api.Internal("building the upstream request: %v", err)
	}
	hr.Header.Set("Content-Type", "application/json")
	hr.Header.Set("Accept", accept)
	if c.cfg.APIKey != "" {
		hr.Header.Set("Authorization", "Bearer "+c.cfg.APIKey)
	}
	if id := backend.RequestID(ctx); id != "" {
		hr.Header.Set("X-Request-Id", id)
	}
	for k, v := range c.cfg.Headers {
		hr.Header.Set(k, v)
	}
	resp, err := c.hc.Do(hr)
	if err != nil {
		return nil, c.transportFailure(ctx, err, false)
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		return nil, c.httpFailure(resp.StatusCode, resp.Header, b)
	}
	return resp, nil
}

// read reads the event stream, calling on with each chunk, until [DONE].
func (c *Client) read(ctx context.Context, body io.Reader, on func(*upChunk) error) error {
	r := sse.NewReader(body, 0)
	finished, sent := false, false
	for {
		ev, err := r.Next()
		if err == io.EOF {
			if finished {
				return nil // all there but the [DONE]
			}
			return c.cut(sent, "closed the stream before it finished")
		}
		if err != nil {
			if errors.Is(err, io.ErrUnexpectedEOF) {
				return c.cut(sent, "closed the stream before it finished (the connection ended mid-response)")
			}
			if errors.Is(err, sse.ErrLineTooLong) {
				return c.protocolFailure(err.Error())
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			f := c.transportFailure(ctx, err, sent)
			return f
		}
		if ev.Data == sse.Done {
			return nil
		}
		if ev.Name == "error" || strings.HasPrefix(ev.Data, `{"error"`) {
			if f := c.streamError(ev.Data, sent); f != nil {
				return f
			}
		}
		var ch upChunk
		if err := json.Unmarshal([]byte(ev.Data), &ch); err != nil {
			return c.protocolFailure(fmt.Sprintf("a stream event is not a JSON chunk (%v): %.120q", err, ev.Data))
		}
		if len(ch.Error) > 0 && string(ch.Error) != "null" {
			if f := c.streamError(ev.Data, sent); f != nil {
				return f
			}
		}
		for _, uc := range ch.Choices {
			if uc.FinishReason != nil && *uc.FinishReason != "" {
				finished = true
			}
		}
		if err := on(&ch); err != nil {
			return err
		}
		sent = sent || len(ch.Choices) > 0
	}
}

// cut is the failure of a stream that ended early.
func (c *Client) cut(sent bool, what string) *Failure {
	return &Failure{Err: api.NewError(http.StatusBadGateway, api.TypeServer, CodeUpstreamError, "",
		"upstream %s (%s) %s.", c.cfg.Name, c.cfg.BaseURL, what), Retry: !sent, Unhealthy: true}
}

// protocolFailure is a stream stepflash cannot read.
func (c *Client) protocolFailure(what string) *Failure {
	return &Failure{Err: api.NewError(http.StatusBadGateway, api.TypeServer, CodeUpstreamError, "",
		"upstream %s (%s) sent a stream stepflash cannot read: %s", c.cfg.Name, c.cfg.BaseURL, what), Unhealthy: true}
}

// streamError is an error event inside a 200 stream (OpenRouter, vLLM).
func (c *Client) streamError(data string, sent bool) *Failure {
	msg, _, _ := errorMessage([]byte(data))
	if msg == "" {
		return nil
	}
	return &Failure{Err: api.NewError(http.StatusBadGateway, api.TypeServer, CodeUpstreamError, "",
		"upstream %s (%s) reported an error in its stream: %s", c.cfg.Name, c.cfg.BaseURL, msg), Retry: !sent, Unhealthy: true}
}

// Error codes of upstream failures (DESIGN.md section 4), and of the
// gateway's own credential being refused.
const (
	CodeUpstreamError        = "upstream_error"
	CodeUpstreamTimeout      = "upstream_timeout"
	CodeUpstreamUnauthorized = "upstream_unauthorized"
)

// transportFailure maps a failure to reach or read the upstream.
func (c *Client) transportFailure(ctx context.Context, err error, sent bool) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	where := fmt.Sprintf("upstream %s (%s)", c.cfg.Name, c.cfg.BaseURL)
	var he *httpclient.Error
	if errors.As(err, &he) {
		switch {
		case he.Phase == httpclient.PhaseConnect:
			return &Failure{Err: api.NewError(http.StatusBadGateway, api.TypeServer, CodeUpstreamError, "", "%s: %v", where, he),
				Retry: true, Unhealthy: true, Refused: true}
		case he.Timeout():
			return &Failure{Err: api.NewError(http.StatusGatewayTimeout, api.TypeServer, CodeUpstreamTimeout, "", "%s: %v", where, he),
				Retry: !sent, Unhealthy: true}
		}
	}
	return &Failure{Err: api.NewError(http.StatusBadGateway, api.TypeServer, CodeUpstreamError, "", "%s failed: %v", where, err),
		Retry: !sent, Unhealthy: true}
}

// httpFailure maps an upstream's error response.
func (c *Client) httpFailure(status int, h http.Header, body []byte) *Failure {
	where := fmt.Sprintf("upstream %s (%s)", c.cfg.Name, c.cfg.BaseURL)
	msg, code, param := errorMessage(body)
	if msg == "" {
		msg = "(an empty body)"
	}
	switch {
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		e := api.NewError(status, api.TypeAuthentication, CodeUpstreamUnauthorized, "", "%s refused this server's API key (%d): %s", where, status, msg)
		if len(bytes.TrimSpace(body)) == 0 {
			e.Message = c.emptyUnauthorized(status)
		} else if c.cfg.APIKey == "" {
			e.Message += " " + c.noKeyHint()
		}
		return &Failure{Err: e, Retry: true}
	case status == http.StatusTooManyRequests || status == http.StatusPaymentRequired:
		code := "rate_limit_exceeded"
		if status == http.StatusPaymentRequired {
			code = "insufficient_quota"
		}
		e := api.NewError(http.StatusTooManyRequests, api.TypeRateLimit, code, "", "%s is limiting requests (%d): %s", where, status, msg)
		e.RetryAfter = retryAfter(h, 1)
		return &Failure{Err: e, Retry: true}
	case status == http.StatusRequestTimeout || status == http.StatusGatewayTimeout:
		return &Failure{Err: api.NewError(http.StatusGatewayTimeout, api.TypeServer, CodeUpstreamTimeout, "", "%s timed out (%d): %s", where, status, msg),
			Retry: true, Unhealthy: true}
	case status >= 500:
		e := api.NewError(http.StatusBadGateway, api.TypeServer, CodeUpstreamError, "", "%s failed (%d): %s", where, status, msg)
		if status == http.StatusServiceUnavailable {
			e.RetryAfter = retryAfter(h, 0)
		}
		return &Failure{Err: e, Retry: true, Unhealthy: true}
	case status == http.StatusNotFound:
		// An unknown model (or path) on this upstream: another may serve it.
		return &Failure{Err: api.NewError(http.StatusBadGateway, api.TypeServer, CodeUpstreamError, "", "%s answered 404 for model %q: %s", where, c.cfg.Model, msg+c.modelHint(msg)),
			Retry: true}
	}
	// The request itself was refused (400, 413, 422): the client's to fix.
	if status == http.StatusUnprocessableEntity {
		status = http.StatusBadRequest
	}
	if status < 400 || status >= 500 {
		status = http.StatusBadGateway
	}
	return &Failure{Err: api.NewError(status, api.TypeInvalidRequest, code, param, "%s rejected the request (%d): %s", where, status, msg+c.modelHint(msg))}
}

// emptyUnauthorized explains a 401 with an empty body: StepFun's answer to a
// key of the other region.
func (c *Client) emptyUnauthorized(status int) string {
	where := fmt.Sprintf("upstream %s (%s)", c.cfg.Name, c.cfg.BaseURL)
	if c.known && c.route.Region != "" {
		return fmt.Sprintf("%s answered %d with an empty body. StepFun does this when the API key belongs to the other region: "+
			"keys from StepFun's %s platform work only at %s, and keys from the other platform only at %s. "+
			"Check the key in %s against this base URL, or point the upstream at %s.",
			where, status, c.route.Region, c.cfg.BaseURL, c.route.Other, c.keySource(), c.route.Other)
	}
	if c.cfg.APIKey == "" {
		return fmt.Sprintf("%s answered %d with an empty body. %s", where, status, c.noKeyHint())
	}
	return fmt.Sprintf("%s answered %d with an empty body: it refused the key in %s (wrong key, or one for another deployment or region).", where, status, c.keySource())
}

func (c *Client) keySource() string {
	if c.cfg.KeyEnv != "" {
		return "$" + c.cfg.KeyEnv
	}
	return "the upstream's api_key"
}

func (c *Client) noKeyHint() string {
	env := c.cfg.KeyEnv
	if env == "" && c.known {
		env = c.route.KeyEnv
	}
	if env == "" {
		return "No API key is configured for this upstream: set api_key_env in its config."
	}
	return fmt.Sprintf("No API key is configured for this upstream: set $%s (or api_key_env in its config).", env)
}

// modelHint adds the known model id when an upstream refuses the one sent.
func (c *Client) modelHint(msg string) string {
	if c.known && c.route.Model != "" && c.route.Model != c.cfg.Model && strings.Contains(msg, c.cfg.Model) {
		return fmt.Sprintf(" (stepflash sent model %q; %s's id for Step 3.7 Flash is %q: set \"model\" on the upstream)", c.cfg.Model, c.route.Name, c.route.Model)
	}
	return ""
}

func retryAfter(h http.Header, def int) int {
	if n, err := strconv.Atoi(strings.TrimSpace(h.Get("Retry-After"))); err == nil && n > 0 {
		return n
	}
	return def
}

// errorMessage reads the error bodies servers send: OpenAI's {"error":
// {"message","type","code","param"}} (OpenRouter's code is a number),
// {"error": "text"}, vLLM's older top-level {"message",...}, FastAPI's
// {"detail": ...}, or plain text.
func errorMessage(body []byte) (msg, code, param string) {
	body = bytes.TrimSpace(body)
	if len(body) == 0 {
		return "", "", ""
	}
	var env struct {
		Error   json.RawMessage `json:"error"`
		Message string          `json:"message"`
		Detail  json.RawMessage `json:"detail"`
	}
	if json.Unmarshal(body, &env) == nil {
		if len(env.Error) > 0 && string(env.Error) != "null" {
			var obj struct {
				Message string          `json:"message"`
				Code    json.RawMessage `json:"code"`
				Param   *string         `json:"param"`
			}
			if json.Unmarshal(env.Error, &obj) == nil && obj.Message != "" {
				var s string
				if json.Unmarshal(obj.Code, &s) == nil {
					code = s
				}
				if obj.Param != nil {
					param = *obj.Param
				}
				return obj.Message, code, param
			}
			var s string
			if json.Unmarshal(env.Error, &s) == nil && s != "" {
				return s, "", ""
			}
		}
		if env.Message != "" {
			return env.Message, "", ""
		}
		if len(env.Detail) > 0 {
			var s string
			if json.Unmarshal(env.Detail, &s) == nil {
				return s, "", ""
			}
			return string(env.Detail), "", ""
		}
	}
	t := string(body)
	if len(t) > 300 {
		t = t[:300] + "…"
	}
	return t, "", ""
}

// maxEmbeddingBody bounds an upstream's embeddings answer (2048 inputs of
// 4096 floats as JSON text is some 200 MB; base64 would be a third).
const maxEmbeddingBody = 256 << 20

// Embed sends an embeddings request to the upstream's /embeddings and
// returns its answer, the model named as served here.
func (c *Client) Embed(ctx context.Context, req *api.EmbeddingRequest) (*api.EmbeddingResponse, error) {
	up := *req
	up.Model = c.cfg.Model
	body, err := json.Marshal(&up)
	if err != nil {
		return nil, api.Internal("encoding the upstream request: %v", err)
	}
	resp, err := c.post(ctx, "/embeddings", body, "application/json")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxEmbeddingBody+1))
	if err != nil {
		return nil, c.transportFailure(ctx, err, false)
	}
	if len(raw) > maxEmbeddingBody {
		return nil, c.protocolFailure(fmt.Sprintf("its embeddings answer is larger than %d bytes", maxEmbeddingBody))
	}
	var out struct {
		Object string          `json:"object"`
		Data   []api.Embedding `json:"data"`
		Usage  *struct {
			PromptTokens int `json:"prompt_tokens"`
			TotalTokens  int `json:"total_tokens"`
		} `json:"usage"`
	}
	if err := json.Unmarshal(raw, &out); err != nil {
		return nil, c.protocolFailure(fmt.Sprintf("its embeddings answer is not JSON: %v", err))
	}
	if len(out.Data) == 0 {
		return nil, c.protocolFailure("its embeddings answer has no data")
	}
	r := &api.EmbeddingResponse{Object: "list", Data: out.Data, Stepflash: &api.Extension{Backend: c.Label()}}
	if out.Usage != nil {
		r.Usage = api.NewUsage(out.Usage.PromptTokens, 0, 0, 0)
	} else {
		r.Usage = c.usageOrZero(nil)
	}
	return r, nil
}
