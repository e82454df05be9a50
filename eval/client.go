package eval

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/stepflash/stepflash/api"
	"github.com/stepflash/stepflash/internal/httpclient"
	"github.com/stepflash/stepflash/sse"
)

// Endpoint is one OpenAI-compatible API and the model asked there.
type Endpoint struct {
	// BaseURL ends in /v1, as OpenAI's SDKs take it.
	BaseURL string `json:"base_url"`
	APIKey  string `json:"-"`
	Model   string `json:"model"`
}

// Label names the endpoint in reports: the model, with the host when two
// endpoints serve the same name.
func (e Endpoint) Label() string { return e.Model }

// client sends chat requests to one endpoint.
type client struct {
	ep      Endpoint
	base    string
	http    *http.Client
	timeout time.Duration
	// models is the endpoint's /models list, read by check.
	models []api.Model
}

func newClient(ep Endpoint, hc *http.Client, timeout time.Duration) *client {
	if hc == nil {
		hc = httpclient.NewClient(httpclient.Timeouts{Connect: 10 * time.Second, FirstByte: timeout, Idle: timeout})
	}
	return &client{ep: ep, base: strings.TrimRight(ep.BaseURL, "/"), http: hc, timeout: timeout}
}

// check reads /models: an endpoint that cannot be reached, refuses the key
// or does not serve the model is an error that says so (with the served
// names). An empty model is set to step-3.7-flash when served, else the
// first served name.
func (c *client) check(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/models", nil)
	if err != nil {
		return fmt.Errorf("base URL %q: %v", c.ep.BaseURL, err)
	}
	c.authorize(req)
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("cannot reach %s: %v (is the server running, and does the base URL end in /v1? `stepflash doctor --base-url %s` checks it)", c.base, err, c.ep.BaseURL)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s/models answered %s (check --api-key / $STEP_API_KEY and the base URL; `stepflash doctor` diagnoses it)", c.base, describe(resp.StatusCode, body))
	}
	var list struct {
		Data []api.Model `json:"data"`
	}
	if err := json.Unmarshal(body, &list); err != nil {
		return fmt.Errorf("%s/models is not an OpenAI model list (%v): is the base URL right?", c.base, err)
	}
	c.models = list.Data
	names := c.modelNames()
	if c.ep.Model == "" {
		switch {
		case slices.Contains(names, "step-3.7-flash"):
			c.ep.Model = "step-3.7-flash"
		case len(names) > 0:
			c.ep.Model = names[0]
		default:
			return fmt.Errorf("%s serves no models; pass --model", c.base)
		}
		return nil
	}
	if len(names) > 0 && !slices.Contains(names, c.ep.Model) {
		return fmt.Errorf("model %q is not served by %s; it serves: %s", c.ep.Model, c.base, strings.Join(names, ", "))
	}
	return nil
}

func (c *client) modelNames() []string {
	var names []string
	for _, m := range c.models {
		names = append(names, m.ID)
	}
	return names
}

func (c *client) authorize(req *http.Request) {
	if c.ep.APIKey != "" {
		req.Header.Set("Authorization", "Bearer "+c.ep.APIKey)
	}
}

// chatResult is what one streamed chat request gave.
type chatResult struct {
	Status    int
	Content   string
	Reasoning string
	ToolCalls []api.ToolCall
	Finish    string
	Usage     json.RawMessage
	Ext       *api.Extension
	Advisor   string // X-Advisor header
	TTFT      time.Duration
	Total     time.Duration
	Err       error
}

// chat sends body (the model is set here) streamed with usage and reads
// the stream to its end. TTFT is the time to the first chunk carrying
// content, reasoning or a tool call.
func (c *client) chat(ctx context.Context, body map[string]any) chatResult {
	body["model"] = c.ep.Model
	body["stream"] = true
	body["stream_options"] = map[string]any{"include_usage": true}
	var r chatResult
	b, err := json.Marshal(body)
	if err != nil {
		r.Err = err
		return r
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+"/chat/completions", bytes.NewReader(b))
	if err != nil {
		r.Err = err
		return r
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "text/event-stream")
	c.authorize(req)
	start := time.Now()
	resp, err := c.http.Do(req)
	if err != nil {
		r.Err, r.Total = err, time.Since(start)
		return r
	}
	defer resp.Body.Close()
	r.Status, r.Advisor = resp.StatusCode, resp.Header.Get("X-Advisor")
	if resp.StatusCode != http.StatusOK {
		raw, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		r.Err, r.Total = errors.New(describe(resp.StatusCode, raw)), time.Since(start)
		return r
	}
	var content, reasoning strings.Builder
	tools := map[int]*api.ToolCall{}
	rd := sse.NewReader(resp.Body, 0)
	done := false
	for {
		ev, err := rd.Next()
		if err != nil {
			if !errors.Is(err, io.EOF) {
				r.Err = fmt.Errorf("reading the stream: %w", err)
			}
			break
		}
		data := strings.TrimSpace(ev.Data)
		if data == sse.Done {
			done = true
			break
		}
		if e := errorObject([]byte(data)); e != nil || ev.Name == "error" {
			msg := data
			if e != nil {
				msg = e.Message
			}
			r.Err = fmt.Errorf("error event in the stream: %s", msg)
			continue
		}
		var raw struct {
			Usage json.RawMessage `json:"usage"`
		}
		var ch api.ChatCompletionChunk
		if json.Unmarshal([]byte(data), &ch) != nil || json.Unmarshal([]byte(data), &raw) != nil {
			r.Err = fmt.Errorf("a chunk is not JSON: %.200s", data)
			continue
		}
		if ch.Stepflash != nil && r.Ext == nil {
			r.Ext = ch.Stepflash
		}
		if len(raw.Usage) > 0 && string(raw.Usage) != "null" {
			r.Usage = raw.Usage
		}
		for _, choice := range ch.Choices {
			if choice.Index != 0 {
				continue
			}
			d := choice.Delta
			got := false
			if d.Content != nil && *d.Content != "" {
				content.WriteString(*d.Content)
				got = true
			}
			if d.ReasoningContent != nil && *d.ReasoningContent != "" {
				reasoning.WriteString(*d.ReasoningContent)
				got = true
			} else if d.Reasoning != nil && *d.Reasoning != "" {
				reasoning.WriteString(*d.Reasoning)
				got = true
			}
			for _, tc := range d.ToolCalls {
				got = true
				idx := 0
				if tc.Index != nil {
					idx = *tc.Index
				}
				t := tools[idx]
				if t == nil {
					t = &api.ToolCall{ID: tc.ID, Type: tc.Type}
					tools[idx] = t
				}
				t.Function.Name += tc.Function.Name
				t.Function.Arguments += tc.Function.Arguments
			}
			if got && r.TTFT == 0 {
				r.TTFT = time.Since(start)
			}
			if choice.FinishReason != nil {
				r.Finish = *choice.FinishReason
			}
		}
	}
	r.Total = time.Since(start)
	if r.TTFT == 0 {
		r.TTFT = r.Total
	}
	r.Content, r.Reasoning = content.String(), reasoning.String()
	for i := 0; i < len(tools); i++ {
		if t := tools[i]; t != nil {
			r.ToolCalls = append(r.ToolCalls, *t)
		}
	}
	if r.Err == nil && !done {
		r.Err = errors.New("the stream ended without data: [DONE]")
	}
	return r
}

// errorObject reads an OpenAI error object; nil when body is not one.
func errorObject(body []byte) *api.Error {
	var er struct {
		Error *api.Error `json:"error"`
	}
	if json.Unmarshal(body, &er) != nil || er.Error == nil || er.Error.Message == "" {
		return nil
	}
	return er.Error
}

// describe says what an HTTP error answer was: the status with the error
// object's code and message, or the start of the body.
func describe(status int, body []byte) string {
	if e := errorObject(body); e != nil {
		code := e.CodeString()
		if code == "" {
			code = e.Type
		}
		return fmt.Sprintf("%d %s: %s", status, code, e.Message)
	}
	s := strings.Join(strings.Fields(string(body)), " ")
	if s == "" {
		return fmt.Sprintf("%d with an empty body", status)
	}
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return fmt.Sprintf("%d: %s", status, s)
}
