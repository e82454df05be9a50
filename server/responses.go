package server

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/stepflash/stepflash/api"
	"github.com/stepflash/stepflash/backend"
	"github.com/stepflash/stepflash/sse"
)

// POST /v1/responses: OpenAI's Responses API, translated to a chat
// completion request for the same backends (as /v1/messages is), and their
// chunks translated back into a Response or its typed stream events. Errors
// are OpenAI error objects whose params name the Responses fields
// (input[2].content[0].image_url), not the translated chat ones.
//
// Without a ResponseStore (Config.Responses) the server is stateless:
// nothing is stored, the response says store: false, and
// previous_response_id is a 400 asking for the whole input.

func (s *Server) handleResponses(w http.ResponseWriter, r *http.Request) *api.Error {
	var req api.ResponsesRequest
	if e := s.decodeBody(w, r, &req); e != nil {
		return e
	}
	prev, e := s.previousResponse(r, &req)
	if e != nil {
		return e
	}
	tr, e := translateResponsesRequest(&req, prev)
	if e != nil {
		return e
	}
	m, e := s.lookup(req.Model)
	if e != nil {
		return e
	}
	if e := backend.CheckChat(tr.chat, s.limitsFor(m)); e != nil {
		return tr.remap(e)
	}
	r = r.WithContext(backend.WithEndpoint(r.Context(), backend.EndpointResponses)) // the ledger's label
	c := s.newCall(w, r, m, req.Model, tr.chat.ReasoningEffort, "resp_")
	defer c.end()
	run := &responsesRun{c: c, tr: tr, open: -1, resp: tr.head(c)}
	if s.cfg.Responses != nil && (req.Store == nil || *req.Store) {
		run.store = s.cfg.Responses
	}
	if req.Stream {
		run.out = sse.NewWriter(w)
	}
	err := m.Backend.Chat(c.ctx, tr.chat, run.chunk)
	if err == nil && !run.done {
		err = run.end(nil)
	}
	switch {
	case err == nil:
		if run.out == nil {
			writeJSON(w, http.StatusOK, run.resp)
		}
		return nil
	case run.out != nil && (run.out.Err() != nil || r.Context().Err() != nil):
		return nil // the client went away
	case run.out == nil || !run.out.Started():
		return tr.remap(c.fail(err))
	}
	// The stream began: it ends with response.failed.
	fe := tr.remap(c.fail(err))
	run.resp.Status = "failed"
	run.resp.Error = &api.ResponsesError{Code: cmp.Or(fe.CodeString(), "server_error"), Message: fe.Message}
	run.event("response.failed", &api.ResponsesLifecycleEvent{Type: "response.failed", Response: run.resp})
	return nil
}

// ResponseStore keeps responses, so that a later request can continue one
// (previous_response_id) and GET and DELETE /v1/responses/{id} find it.
// Config.Responses nil: the server is stateless.
type ResponseStore interface {
	// Put keeps a response under its id.
	Put(ctx context.Context, r StoredResponse) error
	// Get returns the response with this id, or ErrResponseNotFound.
	Get(ctx context.Context, id string) (*StoredResponse, error)
	// Delete removes the response with this id, or returns
	// ErrResponseNotFound.
	Delete(ctx context.Context, id string) error
}

// ErrResponseNotFound is a ResponseStore's answer for an unknown id.
var ErrResponseNotFound = errors.New("response not found")

// StoredResponse is a response as a ResponseStore keeps it.
type StoredResponse struct {
	ID string
	// KeyID is the id of the API key that made it ("" without keys): only
	// the same key finds it.
	KeyID     string
	CreatedAt time.Time
	// Response is the Response object as it was sent (JSON).
	Response json.RawMessage
	// Conversation is what a request continuing it starts from: the chat
	// messages of its input (earlier responses' included, its
	// instructions not) and of its output, as JSON ([]api.Message).
	Conversation json.RawMessage
}

// previousResponse is the conversation of the response a request
// continues (previous_response_id), if any.
func (s *Server) previousResponse(r *http.Request, req *api.ResponsesRequest) ([]api.Message, *api.Error) {
	id := req.PreviousResponseID
	if id == nil || *id == "" {
		return nil, nil
	}
	st := s.cfg.Responses
	if st == nil {
		return nil, api.Unsupported("previous_response_id", "'previous_response_id' is not supported: this server does not store responses (it is stateless, and every response says store: false), so %q cannot be found. Send the whole conversation in 'input' instead: the earlier input items followed by the earlier response's output items.", *id)
	}
	sr, e := s.storedResponse(r, *id)
	if e != nil {
		e.Param = &[]string{"previous_response_id"}[0]
		e.Status = http.StatusBadRequest
		e.Type = api.TypeInvalidRequest
		e.Code = &[]string{"previous_response_not_found"}[0]
		return nil, e
	}
	var prev []api.Message
	if err := json.Unmarshal(sr.Conversation, &prev); err != nil {
		return nil, api.Internal("reading the stored response %q: %v", *id, err)
	}
	return prev, nil
}

// storedResponse finds a stored response of the caller's key.
func (s *Server) storedResponse(r *http.Request, id string) (*StoredResponse, *api.Error) {
	notFound := api.NewError(http.StatusNotFound, api.TypeNotFound, api.CodeNotFound, "id", "Response with id %q not found.", id)
	if s.cfg.Responses == nil {
		notFound.Message += " This server does not store responses (every response says store: false)."
		return nil, notFound
	}
	sr, err := s.cfg.Responses.Get(r.Context(), id)
	switch {
	case errors.Is(err, ErrResponseNotFound):
		return nil, notFound
	case err != nil:
		return nil, api.Internal("reading the response store: %v", err)
	case sr.KeyID != backend.CallerFrom(r.Context()).KeyID:
		return nil, notFound // another key's: not found, as OpenAI answers
	}
	return sr, nil
}

// routeStoredResponses serves GET and DELETE /v1/responses/{id} (one path,
// two methods: route takes one).
func (s *Server) routeStoredResponses() {
	const path = "/v1/responses/{id}"
	for method, h := range map[string]func(http.ResponseWriter, *http.Request) *api.Error{"GET": s.handleGetResponse, "DELETE": s.handleDeleteResponse} {
		s.mux.HandleFunc(method+" "+path, func(w http.ResponseWriter, r *http.Request) {
			if err := h(w, r); err != nil {
				writeError(w, err)
			}
		})
	}
	s.paths.HandleFunc(path, func(w http.ResponseWriter, _ *http.Request) { w.Header().Set("Allow", "GET, HEAD, DELETE") })
}

// handleGetResponse is GET /v1/responses/{id}: a stored response.
func (s *Server) handleGetResponse(w http.ResponseWriter, r *http.Request) *api.Error {
	sr, e := s.storedResponse(r, r.PathValue("id"))
	if e != nil {
		return e
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	w.Write(append(bytes.TrimSpace(sr.Response), '\n'))
	return nil
}

// handleDeleteResponse is DELETE /v1/responses/{id}.
func (s *Server) handleDeleteResponse(w http.ResponseWriter, r *http.Request) *api.Error {
	id := r.PathValue("id")
	if _, e := s.storedResponse(r, id); e != nil {
		return e
	}
	if err := s.cfg.Responses.Delete(r.Context(), id); err != nil && !errors.Is(err, ErrResponseNotFound) {
		return api.Internal("deleting from the response store: %v", err)
	}
	writeJSON(w, http.StatusOK, map[string]any{"id": id, "object": "response", "deleted": true})
	return nil
}

// responsesRequest is a translated Responses request: the chat request,
// what the response echoes, and where each chat message came from.
type responsesRequest struct {
	req   *api.ResponsesRequest
	chat  *api.ChatCompletionRequest
	paths *msgPaths
	tools []api.ResponsesTool
	// format is text.format as echoed; toolChoice tool_choice.
	format     api.ResponsesTextFormat
	toolChoice json.RawMessage
	truncation string
	// prev is the conversation of the response it continues; instructions
	// is the number of messages before it (1 with instructions).
	prev         []api.Message
	instructions int
}

// head is the response object before any output: the id, the model, the
// echo of the request's settings.
func (tr *responsesRequest) head(c *call) *api.ResponsesObject {
	req := tr.req
	parallel := req.ParallelToolCalls == nil || *req.ParallelToolCalls
	meta := req.Metadata
	if meta == nil {
		meta = map[string]string{}
	}
	tools := tr.tools
	if tools == nil {
		tools = []api.ResponsesTool{}
	}
	effort := string(backend.EffortLevel(tr.chat.ReasoningEffort))
	prev := req.PreviousResponseID
	if prev != nil && *prev == "" {
		prev = nil
	}
	return &api.ResponsesObject{ID: c.id, Object: "response", CreatedAt: c.created, Status: "in_progress", Model: c.model,
		Output: []api.ResponsesOutputItem{}, Instructions: req.Instructions, MaxOutputTokens: req.MaxOutputTokens,
		ParallelToolCalls: parallel, Reasoning: api.ResponsesReasoningOut{Effort: &effort}, Temperature: req.Temperature,
		Text: api.ResponsesTextOut{Format: tr.format, Verbosity: "medium"}, ToolChoice: tr.toolChoice, Tools: tools, TopP: req.TopP,
		Truncation: tr.truncation, User: req.User, Metadata: meta, PreviousResponseID: prev}
}

// responsesRun writes a backend's chunks as a Response: into resp, and as
// stream events when out is set.
type responsesRun struct {
	c    *call
	tr   *responsesRequest
	out  *sse.Writer // nil: not streamed
	resp *api.ResponsesObject
	seq  int
	// store keeps the finished response (nil: not kept).
	store ResponseStore

	started bool
	done    bool
	open    int // the index in resp.Output of the open item, -1 when none
	tool    int // the chat tool-call index of the open function_call item
	finish  string
}

func (run *responsesRun) event(name string, v any) error {
	if run.out == nil {
		return nil
	}
	// Every event has its sequence number in the same place.
	reflect.ValueOf(v).Elem().FieldByName("SequenceNumber").SetInt(int64(run.seq))
	run.seq++
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return run.out.Event(name, b)
}

func (run *responsesRun) lifecycle(name string) error {
	return run.event(name, &api.ResponsesLifecycleEvent{Type: name, Response: run.resp})
}

func (run *responsesRun) chunk(ch *api.ChatCompletionChunk) error {
	c := run.c
	if err := c.seen(); err != nil {
		return err
	}
	c.observeChunk(ch)
	c.stamp(ch.Head(), ch.Ext())
	if ext := ch.Stepflash; ext != nil && run.resp.Stepflash == nil {
		run.resp.Stepflash = ext
		if ext.Effort.Applied != "" {
			applied := ext.Effort.Applied
			run.resp.Reasoning.Effort = &applied
		}
	}
	if !run.started {
		run.started = true
		if err := run.lifecycle("response.created"); err != nil {
			return err
		}
		if err := run.lifecycle("response.in_progress"); err != nil {
			return err
		}
	}
	if u := ch.FinalUsage(); u != nil {
		c.observeUsage(u)
		return run.end(u)
	}
	for i := range ch.Choices {
		choice := &ch.Choices[i]
		if choice.Index != 0 {
			continue
		}
		d := &choice.Delta
		if reasoning := d.ReasoningText(); reasoning != "" {
			if err := run.text(api.ItemReasoning, reasoning); err != nil {
				return err
			}
		}
		if d.Content != nil && *d.Content != "" {
			if err := run.text(api.ItemMessage, *d.Content); err != nil {
				return err
			}
		}
		for _, tc := range d.ToolCalls {
			if err := run.toolCall(tc); err != nil {
				return err
			}
		}
		if choice.FinishReason != nil {
			run.finish = *choice.FinishReason
		}
	}
	return nil
}

// openItem adds an output item and announces it (with its empty content
// part, for a message or reasoning item).
func (run *responsesRun) openItem(it api.ResponsesOutputItem) error {
	if err := run.closeItem("completed"); err != nil {
		return err
	}
	it.Status = "in_progress"
	run.resp.Output = append(run.resp.Output, it)
	run.open = len(run.resp.Output) - 1
	if err := run.event("response.output_item.added", &api.ResponsesItemEvent{Type: "response.output_item.added", OutputIndex: run.open, Item: it}); err != nil {
		return err
	}
	part := ""
	switch it.Type {
	case api.ItemMessage:
		part = "output_text"
	case api.ItemReasoning:
		part = "reasoning_text"
	default:
		return nil
	}
	p := api.ResponsesOutputContent{Type: part}
	run.resp.Output[run.open].Content = []api.ResponsesOutputContent{p}
	return run.event("response.content_part.added", &api.ResponsesPartEvent{Type: "response.content_part.added", ItemID: it.ID, OutputIndex: run.open, Part: p})
}

// text adds text to the open item of its kind (a message or the
// reasoning), opening one when another kind is open.
func (run *responsesRun) text(kind, s string) error {
	if run.open < 0 || run.resp.Output[run.open].Type != kind {
		it := api.ResponsesOutputItem{Type: kind}
		if kind == api.ItemMessage {
			it.ID, it.Role = randomID("msg_", 24), "assistant"
		} else {
			it.ID = randomID("rs_", 24)
		}
		if err := run.openItem(it); err != nil {
			return err
		}
	}
	it := &run.resp.Output[run.open]
	it.Content[0].Text += s
	name := "response.output_text.delta"
	ev := &api.ResponsesTextEvent{ItemID: it.ID, OutputIndex: run.open, Delta: &s}
	if kind == api.ItemReasoning {
		name = "response.reasoning_text.delta"
	} else {
		ev.Logprobs = &[]any{}
	}
	ev.Type = name
	return run.event(name, ev)
}

// toolCall adds a chat tool-call delta: a new function_call item at a new
// call index, else arguments for the open one.
func (run *responsesRun) toolCall(tc api.ToolCall) error {
	k := run.tool
	if tc.Index != nil {
		k = *tc.Index
	}
	if run.open < 0 || run.resp.Output[run.open].Type != api.ItemFunctionCall || k != run.tool {
		if err := run.openItem(api.ResponsesOutputItem{Type: api.ItemFunctionCall, ID: randomID("fc_", 24), CallID: tc.ID, Name: tc.Function.Name}); err != nil {
			return err
		}
		run.tool = k
	}
	args := tc.Function.Arguments
	if args == "" {
		return nil
	}
	it := &run.resp.Output[run.open]
	it.Arguments += args
	return run.event("response.function_call_arguments.delta", &api.ResponsesArgumentsEvent{Type: "response.function_call_arguments.delta", ItemID: it.ID, OutputIndex: run.open, Delta: &args})
}

// closeItem finishes the open item with status and announces its end.
func (run *responsesRun) closeItem(status string) error {
	if run.open < 0 {
		return nil
	}
	i := run.open
	run.open = -1
	it := &run.resp.Output[i]
	it.Status = status
	switch it.Type {
	case api.ItemMessage, api.ItemReasoning:
		p := it.Content[0]
		name, ev := "response.output_text.done", &api.ResponsesTextEvent{ItemID: it.ID, OutputIndex: i, Text: &p.Text}
		if it.Type == api.ItemReasoning {
			name = "response.reasoning_text.done"
		} else {
			ev.Logprobs = &[]any{}
		}
		ev.Type = name
		if err := run.event(name, ev); err != nil {
			return err
		}
		if err := run.event("response.content_part.done", &api.ResponsesPartEvent{Type: "response.content_part.done", ItemID: it.ID, OutputIndex: i, Part: p}); err != nil {
			return err
		}
	case api.ItemFunctionCall:
		args := it.Arguments
		if err := run.event("response.function_call_arguments.done", &api.ResponsesArgumentsEvent{Type: "response.function_call_arguments.done", ItemID: it.ID, OutputIndex: i, Arguments: &args, Name: it.Name}); err != nil {
			return err
		}
	}
	return run.event("response.output_item.done", &api.ResponsesItemEvent{Type: "response.output_item.done", OutputIndex: i, Item: *it})
}

// end closes the open item and finishes the response with its status and
// usage: incomplete when the output was cut (max_output_tokens).
func (run *responsesRun) end(u *api.Usage) error {
	run.done = true
	resp := run.resp
	status, reason := "completed", ""
	switch run.finish {
	case "length":
		status, reason = "incomplete", "max_output_tokens"
	case "content_filter":
		status, reason = "incomplete", "content_filter"
	}
	itemStatus := "completed"
	if status == "incomplete" {
		itemStatus = "incomplete"
	}
	if err := run.closeItem(itemStatus); err != nil {
		return err
	}
	resp.Status = status
	if reason != "" {
		resp.IncompleteDetails = &api.IncompleteDetails{Reason: reason}
	} else {
		now := time.Now().Unix()
		resp.CompletedAt = &now
	}
	resp.Usage = api.NewResponsesUsage(u)
	run.keep()
	return run.lifecycle("response." + status)
}

// keep stores the finished response when the request asked for it (and
// says whether it was: store: true only once it is kept).
func (run *responsesRun) keep() {
	if run.store == nil {
		return
	}
	conv := slices.Clone(run.tr.chat.Messages[run.tr.instructions:])
	conv = append(conv, assistantMessage(run.resp.Output))
	cb, err := json.Marshal(conv)
	if err != nil {
		return
	}
	run.resp.Store = true
	rb, err := json.Marshal(run.resp)
	if err == nil {
		err = run.store.Put(run.c.ctx, StoredResponse{ID: run.resp.ID, KeyID: backend.CallerFrom(run.c.r.Context()).KeyID,
			CreatedAt: time.Unix(run.resp.CreatedAt, 0), Response: rb, Conversation: cb})
	}
	if err != nil {
		run.resp.Store = false
		if l := run.c.s.cfg.Logger; l != nil {
			l.Warn("responses: the response could not be stored", "id", run.resp.ID, "err", err)
		}
	}
}

// assistantMessage is the chat message of a response's output, for a
// conversation that continues it.
func assistantMessage(out []api.ResponsesOutputItem) api.Message {
	m := api.Message{Role: "assistant", Content: api.MessageContent{IsNull: true}}
	var text, reasoning strings.Builder
	for _, it := range out {
		switch it.Type {
		case api.ItemMessage:
			for _, c := range it.Content {
				text.WriteString(c.Text)
			}
		case api.ItemReasoning:
			for _, c := range it.Content {
				reasoning.WriteString(c.Text)
			}
		case api.ItemFunctionCall:
			m.ToolCalls = append(m.ToolCalls, api.ToolCall{ID: it.CallID, Type: "function", Function: api.FunctionCall{Name: it.Name, Arguments: it.Arguments}})
		}
	}
	if text.Len() > 0 || len(m.ToolCalls) == 0 {
		m.Content = api.MessageContent{Text: text.String()}
	}
	if reasoning.Len() > 0 {
		r := reasoning.String()
		m.ReasoningContent = &r
	}
	return m
}

// translateResponsesRequest is the chat completion request a Responses
// request asks for.
func translateResponsesRequest(req *api.ResponsesRequest, prev []api.Message) (*responsesRequest, *api.Error) {
	if e := refuseResponsesFields(req); e != nil {
		return nil, e
	}
	out := &api.ChatCompletionRequest{Model: req.Model, Temperature: req.Temperature, TopP: req.TopP, TopK: req.TopK, MinP: req.MinP,
		Seed: req.Seed, Stream: req.Stream, MaxCompletionTokens: req.MaxOutputTokens, ParallelToolCalls: req.ParallelToolCalls,
		Metadata: req.Metadata, PromptCacheKey: req.PromptCacheKey, SafetyIdentifier: req.SafetyIdentifier, ServiceTier: req.ServiceTier,
		Advisor: req.Advisor}
	if req.User != nil {
		out.User = *req.User
	}
	tr := &responsesRequest{req: req, chat: out, paths: &msgPaths{}, format: api.ResponsesTextFormat{Type: "text"},
		toolChoice: json.RawMessage(`"auto"`), truncation: "disabled", prev: prev}
	if t := req.Truncation; t != nil {
		switch *t {
		case "disabled", "auto":
		default:
			return nil, api.InvalidRequest(api.CodeInvalidValue, "truncation", "Invalid value for 'truncation': expected 'auto' or 'disabled', but got %q.", *t)
		}
	}
	if len(req.StreamOptions) > 0 && string(req.StreamOptions) != "null" {
		var so api.ResponsesStreamOptions
		if e := decodeObject(req.StreamOptions, &so, "stream_options"); e != nil {
			return nil, e
		}
		out.StreamOptions = &api.StreamOptions{IncludeObfuscation: so.IncludeObfuscation}
	}
	if e := tr.reasoning(); e != nil {
		return nil, e
	}
	if e := tr.text(); e != nil {
		return nil, e
	}
	if e := tr.translateTools(); e != nil {
		return nil, e
	}
	if e := tr.input(); e != nil {
		return nil, e
	}
	return tr, nil
}

// refuseResponsesFields refuses the known fields whose meaning this server
// cannot honour (rather than ignore them).
func refuseResponsesFields(req *api.ResponsesRequest) *api.Error {
	if req.Background != nil && *req.Background {
		return api.Unsupported("background", "'background': true is not supported: responses are not stored, so a background response could not be retrieved. Use stream: true for long responses.")
	}
	if len(req.Conversation) > 0 && string(req.Conversation) != "null" {
		return api.Unsupported("conversation", "'conversation' is not supported: this server does not store conversations. Send the whole conversation in 'input'.")
	}
	if len(req.Prompt) > 0 && string(req.Prompt) != "null" {
		return api.Unsupported("prompt", "'prompt' (stored prompt templates) is not supported: send 'instructions' and 'input' instead.")
	}
	if req.TopLogprobs != nil && *req.TopLogprobs != 0 {
		return api.Unsupported("top_logprobs", "'top_logprobs' is not supported on /v1/responses; /v1/chat/completions returns log-probabilities (logprobs, top_logprobs).")
	}
	if req.MaxToolCalls != nil {
		return api.Unsupported("max_tool_calls", "'max_tool_calls' is not supported: no built-in tools run here, and function calls are returned to the client, which decides how many to run.")
	}
	for i, inc := range req.Include {
		switch inc {
		case "reasoning.encrypted_content":
			// The reasoning comes back in plain text (reasoning_text
			// content), so there is nothing to encrypt: accepted.
		default:
			p := fmt.Sprintf("include[%d]", i)
			return api.Unsupported(p, "Invalid '%s': %q is not supported (only \"reasoning.encrypted_content\", which is accepted: the reasoning comes back as plain reasoning_text content).", p, inc)
		}
	}
	if pr := req.PromptCacheRetention; pr != nil && *pr != "in_memory" && *pr != "24h" {
		return api.InvalidRequest(api.CodeInvalidValue, "prompt_cache_retention", "Invalid value for 'prompt_cache_retention': expected 'in_memory' or '24h', but got %q.", *pr)
	}
	return nil
}

func (tr *responsesRequest) reasoning() *api.Error {
	raw := tr.req.Reasoning
	if len(raw) == 0 || string(raw) == "null" {
		return nil
	}
	var r api.ResponsesReasoning
	if e := decodeObject(raw, &r, "reasoning"); e != nil {
		return e
	}
	for _, s := range []struct {
		name string
		v    *string
	}{{"summary", r.Summary}, {"generate_summary", r.GenerateSummary}} {
		if s.v == nil {
			continue
		}
		switch *s.v {
		case "auto", "concise", "detailed":
		default:
			return api.InvalidRequest(api.CodeInvalidValue, "reasoning."+s.name, "Invalid value for 'reasoning.%s': expected 'auto', 'concise' or 'detailed', but got %q.", s.name, *s.v)
		}
	}
	tr.chat.ReasoningEffort = r.Effort
	return nil
}

func (tr *responsesRequest) text() *api.Error {
	raw := tr.req.Text
	if len(raw) == 0 || string(raw) == "null" {
		return nil
	}
	var t api.ResponsesText
	if e := decodeObject(raw, &t, "text"); e != nil {
		return e
	}
	if v := t.Verbosity; v != nil && *v != "medium" {
		return api.Unsupported("text.verbosity", "'text.verbosity' %q is not supported: the model writes as it writes (only \"medium\", the default, is accepted).", *v)
	}
	if len(t.Format) == 0 || string(t.Format) == "null" {
		return nil
	}
	var f api.ResponsesTextFormat
	if e := decodeObject(t.Format, &f, "text.format"); e != nil {
		return e
	}
	switch f.Type {
	case "text":
		f = api.ResponsesTextFormat{Type: "text"}
	case "json_object":
		f = api.ResponsesTextFormat{Type: "json_object"}
		tr.chat.ResponseFormat = &api.ResponseFormat{Type: "json_object"}
	case "json_schema":
		js, _ := json.Marshal(backend.JSONSchemaFormat{Name: f.Name, Description: f.Description, Schema: f.Schema, Strict: f.Strict})
		tr.chat.ResponseFormat = &api.ResponseFormat{Type: "json_schema", JSONSchema: js}
	case "":
		return api.InvalidRequest(api.CodeMissingParameter, "text.format.type", "Missing required parameter: 'text.format.type'.")
	default:
		return api.InvalidRequest(api.CodeInvalidValue, "text.format.type", "Invalid value for 'text.format.type': expected 'text', 'json_object' or 'json_schema', but got %q.", f.Type)
	}
	tr.format = f
	return nil
}

func (tr *responsesRequest) translateTools() *api.Error {
	for i, raw := range tr.req.Tools {
		p := fmt.Sprintf("tools[%d]", i)
		var t api.ResponsesTool
		if e := decodeToolObject(raw, &t, p); e != nil {
			return e
		}
		switch t.Type {
		case "function":
		case "":
			return api.InvalidRequest(api.CodeMissingParameter, p+".type", "Missing required parameter: '%s.type'.", p)
		default:
			return api.Unsupported(p+".type", "Invalid '%s.type': tools of type %q (built-in tools) are not supported; function tools ({\"type\": \"function\", \"name\", \"parameters\"}) are.", p, t.Type)
		}
		if strings.TrimSpace(t.Name) == "" {
			return api.InvalidRequest(api.CodeMissingParameter, p+".name", "Missing required parameter: '%s.name'.", p)
		}
		desc := ""
		if t.Description != nil {
			desc = *t.Description
		}
		tr.tools = append(tr.tools, t)
		tr.chat.Tools = append(tr.chat.Tools, api.Tool{Type: "function", Function: api.ToolFunction{Name: t.Name, Description: desc, Parameters: t.Parameters, Strict: t.Strict}})
	}
	raw := tr.req.ToolChoice
	if len(raw) == 0 || string(raw) == "null" {
		return nil
	}
	tr.toolChoice = raw
	var mode string
	if json.Unmarshal(raw, &mode) == nil {
		switch mode {
		case "auto", "none", "required":
			tr.chat.ToolChoice = &api.ToolChoice{Mode: mode}
			return nil
		}
		return api.InvalidRequest(api.CodeInvalidValue, "tool_choice", "Invalid value for 'tool_choice': expected 'none', 'auto', 'required' or an object, but got %q.", mode)
	}
	var obj struct {
		Type string `json:"type"`
		Name string `json:"name"`
	}
	var keys map[string]json.RawMessage
	if json.Unmarshal(raw, &keys) != nil || keys == nil {
		return api.InvalidRequest(api.CodeInvalidType, "tool_choice", "Invalid type for 'tool_choice': expected a string or an object, but got %s.", article(api.JSONKind(raw)))
	}
	json.Unmarshal(keys["type"], &obj.Type)
	switch obj.Type {
	case "function":
		for _, k := range sortedKeys(keys) {
			if k != "type" && k != "name" {
				return api.Unsupported("tool_choice."+k, "Unrecognized request argument supplied: tool_choice.%s. stepflash does not support this parameter.", k)
			}
		}
		if json.Unmarshal(keys["name"], &obj.Name) != nil || obj.Name == "" {
			return api.InvalidRequest(api.CodeMissingParameter, "tool_choice.name", "Missing required parameter: 'tool_choice.name'.")
		}
		tr.chat.ToolChoice = &api.ToolChoice{Mode: "function", Function: obj.Name}
		return nil
	case "":
		return api.InvalidRequest(api.CodeMissingParameter, "tool_choice.type", "Missing required parameter: 'tool_choice.type'.")
	}
	return api.Unsupported("tool_choice.type", "Invalid 'tool_choice.type': %q is not supported; use 'none', 'auto', 'required' or {\"type\": \"function\", \"name\": ...}.", obj.Type)
}

// input translates the input (and the instructions before it) into chat
// messages: the assistant's side of a turn (reasoning, message and
// function_call items in a row) becomes one assistant message.
func (tr *responsesRequest) input() *api.Error {
	out, paths := tr.chat, tr.paths
	if in := tr.req.Instructions; in != nil && *in != "" {
		paths.add("instructions", nil)
		out.Messages = append(out.Messages, api.Message{Role: "system", Content: api.MessageContent{Text: *in}})
		tr.instructions = 1
	}
	for _, m := range tr.prev {
		paths.add("previous_response_id", nil)
		out.Messages = append(out.Messages, m)
	}
	raw := bytes.TrimSpace(tr.req.Input)
	switch {
	case len(raw) == 0 || string(raw) == "null":
		return api.InvalidRequest(api.CodeMissingParameter, "input", "Missing required parameter: 'input'.")
	case raw[0] == '"':
		var s string
		json.Unmarshal(raw, &s)
		paths.add("input", nil)
		out.Messages = append(out.Messages, api.Message{Role: "user", Content: api.MessageContent{Text: s}})
		return nil
	case raw[0] != '[':
		return api.InvalidRequest(api.CodeInvalidType, "input", "Invalid type for 'input': expected a string or an array of input items, but got %s.", article(api.JSONKind(raw)))
	}
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil {
		return api.InvalidRequest(api.CodeInvalidType, "input", "Invalid 'input': %v.", err)
	}
	if len(items) == 0 {
		return api.InvalidRequest(api.CodeInvalidValue, "input", "Invalid 'input': empty array. Expected at least one input item.")
	}
	asst := -1 // the index of the open assistant message, -1 when none
	var reasoning strings.Builder
	openAssistant := func(p string) *api.Message {
		if asst < 0 {
			paths.add(p, nil)
			out.Messages = append(out.Messages, api.Message{Role: "assistant", Content: api.MessageContent{IsNull: true}})
			asst = len(out.Messages) - 1
		}
		return &out.Messages[asst]
	}
	closeAssistant := func() {
		if asst >= 0 && reasoning.Len() > 0 {
			r := reasoning.String()
			out.Messages[asst].ReasoningContent = &r
		}
		asst = -1
		reasoning.Reset()
	}
	for i, rawItem := range items {
		p := fmt.Sprintf("input[%d]", i)
		var it api.ResponsesInputItem
		if e := decodeObject(rawItem, &it, p); e != nil {
			return e
		}
		typ := it.Type
		if typ == "" && it.Role != "" {
			typ = "message"
		}
		switch typ {
		case "message":
			if it.Role == "assistant" {
				text, e := assistantText(it.Content, p)
				if e != nil {
					return e
				}
				m := openAssistant(p)
				if m.Content.IsNull {
					m.Content = api.MessageContent{}
				}
				m.Content.Text += text
				continue
			}
			closeAssistant()
			msg, parts, e := inputMessage(it, p)
			if e != nil {
				return e
			}
			paths.add(p, parts)
			out.Messages = append(out.Messages, msg)
		case "function_call":
			if it.CallID == "" {
				return api.InvalidRequest(api.CodeMissingParameter, p+".call_id", "Missing required parameter: '%s.call_id'.", p)
			}
			if it.Name == "" {
				return api.InvalidRequest(api.CodeMissingParameter, p+".name", "Missing required parameter: '%s.name'.", p)
			}
			if it.Arguments == nil {
				return api.InvalidRequest(api.CodeMissingParameter, p+".arguments", "Missing required parameter: '%s.arguments'.", p)
			}
			m := openAssistant(p)
			m.ToolCalls = append(m.ToolCalls, api.ToolCall{ID: it.CallID, Type: "function", Function: api.FunctionCall{Name: it.Name, Arguments: *it.Arguments}})
		case "function_call_output":
			closeAssistant()
			if it.CallID == "" {
				return api.InvalidRequest(api.CodeMissingParameter, p+".call_id", "Missing required parameter: '%s.call_id'.", p)
			}
			text, e := outputText(it.Output, p+".output")
			if e != nil {
				return e
			}
			paths.add(p, nil)
			out.Messages = append(out.Messages, api.Message{Role: "tool", ToolCallID: it.CallID, Content: api.MessageContent{Text: text}})
		case "reasoning":
			// The model's own reasoning from an earlier turn goes back
			// with the assistant message it preceded (chat templates keep
			// or drop it as the model was trained); encrypted reasoning of
			// another server cannot be read and is left out.
			text, e := reasoningText(it, p)
			if e != nil {
				return e
			}
			openAssistant(p)
			reasoning.WriteString(text)
		case "item_reference":
			if strings.HasPrefix(it.ID, "rs_") {
				continue // a reasoning item: left out as encrypted reasoning is
			}
			return api.Unsupported(p, "Invalid '%s': item references (%q) are not supported: this server does not store responses. Send the item itself.", p, it.ID)
		case "":
			return api.InvalidRequest(api.CodeMissingParameter, p+".type", "Missing required parameter: '%s.type' (or '%s.role' for a message).", p, p)
		default:
			return api.Unsupported(p+".type", "Invalid '%s.type': input items of type %q are not supported (message, function_call, function_call_output, reasoning and item_reference to a reasoning item are).", p, typ)
		}
	}
	closeAssistant()
	return nil
}

// inputMessage translates a user, system or developer message item.
func inputMessage(it api.ResponsesInputItem, p string) (api.Message, []string, *api.Error) {
	role := it.Role
	switch role {
	case "user", "system", "developer":
	case "":
		return api.Message{}, nil, api.InvalidRequest(api.CodeMissingParameter, p+".role", "Missing required parameter: '%s.role'.", p)
	default:
		return api.Message{}, nil, api.InvalidRequest(api.CodeInvalidValue, p+".role", "Invalid value for '%s.role': expected 'user', 'system', 'developer' or 'assistant', but got %q.", p, role)
	}
	msg := api.Message{Role: role}
	raw := bytes.TrimSpace(it.Content)
	switch {
	case len(raw) == 0 || string(raw) == "null":
		return msg, nil, api.InvalidRequest(api.CodeMissingParameter, p+".content", "Missing required parameter: '%s.content'.", p)
	case raw[0] == '"':
		json.Unmarshal(raw, &msg.Content.Text)
		return msg, nil, nil
	case raw[0] != '[':
		return msg, nil, api.InvalidRequest(api.CodeInvalidType, p+".content", "Invalid type for '%s.content': expected a string or an array of content parts, but got %s.", p, article(api.JSONKind(raw)))
	}
	parts, e := contentParts(raw, p+".content")
	if e != nil {
		return msg, nil, e
	}
	msg.Content = api.MessageContent{IsParts: true}
	var partPaths []string
	for k, part := range parts {
		pp := fmt.Sprintf("%s.content[%d]", p, k)
		switch part.Type {
		case "input_text":
			if part.Text == nil {
				return msg, nil, api.InvalidRequest(api.CodeMissingParameter, pp+".text", "Missing required parameter: '%s.text'.", pp)
			}
			msg.Content.Parts = append(msg.Content.Parts, api.ContentPart{Type: "text", Text: *part.Text})
		case "input_image":
			url, e := inputImageURL(part, pp)
			if e != nil {
				return msg, nil, e
			}
			ref := map[string]string{"url": url}
			if part.Detail != nil {
				switch *part.Detail {
				case "auto", "low", "high":
					ref["detail"] = *part.Detail
				case "original":
					ref["detail"] = "high"
				default:
					return msg, nil, api.InvalidRequest(api.CodeInvalidValue, pp+".detail", "Invalid value for '%s.detail': expected 'auto', 'low', 'high' or 'original', but got %q.", pp, *part.Detail)
				}
			}
			b, _ := json.Marshal(ref)
			msg.Content.Parts = append(msg.Content.Parts, api.ContentPart{Type: "image_url", ImageURL: b})
		case "input_file":
			if part.FileData == nil || !strings.HasPrefix(*part.FileData, "data:image/") {
				return msg, nil, api.Unsupported(pp, "Invalid '%s': input_file parts are supported only as images (file_data holding a data:image/... URL); files (PDF, text) are not read. Send text as input_text.", pp)
			}
			b, _ := json.Marshal(map[string]string{"url": *part.FileData})
			msg.Content.Parts = append(msg.Content.Parts, api.ContentPart{Type: "image_url", ImageURL: b})
		case "":
			return msg, nil, api.InvalidRequest(api.CodeMissingParameter, pp+".type", "Missing required parameter: '%s.type'.", pp)
		default:
			return msg, nil, api.Unsupported(pp+".type", "Invalid '%s.type': content parts of type %q are not supported in %s messages (input_text, input_image and input_file images are).", pp, part.Type, role)
		}
		partPaths = append(partPaths, pp)
	}
	return msg, partPaths, nil
}

// inputImageURL is the URL of an input_image part: its image_url (an
// http(s) URL or a data URL).
func inputImageURL(part api.ResponsesContentPart, pp string) (string, *api.Error) {
	if part.ImageURL != nil && *part.ImageURL != "" {
		return *part.ImageURL, nil
	}
	if part.FileID != nil && *part.FileID != "" {
		return "", api.Unsupported(pp+".file_id", "Invalid '%s.file_id': file ids are not supported (this server has no Files API); send the image as image_url, an https URL or a data: URL.", pp)
	}
	return "", api.InvalidRequest(api.CodeMissingParameter, pp+".image_url", "Missing required parameter: '%s.image_url'.", pp)
}

// contentParts decodes a list of content parts, checking each one's keys.
func contentParts(raw json.RawMessage, p string) ([]api.ResponsesContentPart, *api.Error) {
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil {
		return nil, api.InvalidRequest(api.CodeInvalidType, p, "Invalid type for '%s': expected a string or an array of content parts.", p)
	}
	parts := make([]api.ResponsesContentPart, len(items))
	for k, it := range items {
		if e := decodeObject(it, &parts[k], fmt.Sprintf("%s[%d]", p, k)); e != nil {
			return nil, e
		}
	}
	return parts, nil
}

// assistantText is the text of an assistant message item sent back: a
// string, or output_text (and refusal) parts.
func assistantText(raw json.RawMessage, p string) (string, *api.Error) {
	raw = bytes.TrimSpace(raw)
	switch {
	case len(raw) == 0 || string(raw) == "null":
		return "", api.InvalidRequest(api.CodeMissingParameter, p+".content", "Missing required parameter: '%s.content'.", p)
	case raw[0] == '"':
		var s string
		json.Unmarshal(raw, &s)
		return s, nil
	case raw[0] != '[':
		return "", api.InvalidRequest(api.CodeInvalidType, p+".content", "Invalid type for '%s.content': expected a string or an array of content parts, but got %s.", p, article(api.JSONKind(raw)))
	}
	parts, e := contentParts(raw, p+".content")
	if e != nil {
		return "", e
	}
	var b strings.Builder
	for k, part := range parts {
		pp := fmt.Sprintf("%s.content[%d]", p, k)
		switch part.Type {
		case "output_text", "input_text":
			if part.Text == nil {
				return "", api.InvalidRequest(api.CodeMissingParameter, pp+".text", "Missing required parameter: '%s.text'.", pp)
			}
			b.WriteString(*part.Text)
		case "refusal":
			if part.Refusal == nil {
				return "", api.InvalidRequest(api.CodeMissingParameter, pp+".refusal", "Missing required parameter: '%s.refusal'.", pp)
			}
			b.WriteString(*part.Refusal)
		case "":
			return "", api.InvalidRequest(api.CodeMissingParameter, pp+".type", "Missing required parameter: '%s.type'.", pp)
		default:
			return "", api.Unsupported(pp+".type", "Invalid '%s.type': content parts of type %q are not supported in assistant messages (output_text and refusal are).", pp, part.Type)
		}
	}
	return b.String(), nil
}

// outputText is a function_call_output's output: a string, or text parts.
func outputText(raw json.RawMessage, p string) (string, *api.Error) {
	raw = bytes.TrimSpace(raw)
	switch {
	case len(raw) == 0 || string(raw) == "null":
		return "", api.InvalidRequest(api.CodeMissingParameter, p, "Missing required parameter: '%s'.", p)
	case raw[0] == '"':
		var s string
		json.Unmarshal(raw, &s)
		return s, nil
	case raw[0] != '[':
		return "", api.InvalidRequest(api.CodeInvalidType, p, "Invalid type for '%s': expected a string or an array of content parts, but got %s.", p, article(api.JSONKind(raw)))
	}
	parts, e := contentParts(raw, p)
	if e != nil {
		return "", e
	}
	var texts []string
	for k, part := range parts {
		pp := fmt.Sprintf("%s[%d]", p, k)
		switch part.Type {
		case "input_text", "output_text":
			if part.Text == nil {
				return "", api.InvalidRequest(api.CodeMissingParameter, pp+".text", "Missing required parameter: '%s.text'.", pp)
			}
			texts = append(texts, *part.Text)
		case "":
			return "", api.InvalidRequest(api.CodeMissingParameter, pp+".type", "Missing required parameter: '%s.type'.", pp)
		default:
			return "", api.Unsupported(pp+".type", "Invalid '%s.type': function call outputs of type %q are not supported (only text: a string or input_text parts).", pp, part.Type)
		}
	}
	return strings.Join(texts, "\n"), nil
}

// reasoningText is the readable text of a reasoning item: its
// reasoning_text content, else its summary.
func reasoningText(it api.ResponsesInputItem, p string) (string, *api.Error) {
	for _, f := range []struct {
		name, typ string
		raw       json.RawMessage
	}{{"content", "reasoning_text", it.Content}, {"summary", "summary_text", it.Summary}} {
		raw := bytes.TrimSpace(f.raw)
		if len(raw) == 0 || string(raw) == "null" {
			continue
		}
		parts, e := contentParts(raw, p+"."+f.name)
		if e != nil {
			return "", e
		}
		var b strings.Builder
		for k, part := range parts {
			pp := fmt.Sprintf("%s.%s[%d]", p, f.name, k)
			if part.Type != f.typ {
				return "", api.InvalidRequest(api.CodeInvalidValue, pp+".type", "Invalid value for '%s.type': expected '%s', but got %q.", pp, f.typ, part.Type)
			}
			if part.Text != nil {
				b.WriteString(*part.Text)
			}
		}
		if b.Len() > 0 {
			return b.String(), nil
		}
	}
	return "", nil
}

// decodeObject decodes the JSON object raw at path p into dst (a pointer
// to a struct): keys dst does not declare are 400 unsupported_parameter, as
// decodeBody's are, and a value of the wrong type is a 400 naming it.
func decodeObject(raw json.RawMessage, dst any, p string) *api.Error {
	var obj map[string]json.RawMessage
	if json.Unmarshal(raw, &obj) != nil || obj == nil {
		return api.InvalidRequest(api.CodeInvalidType, p, "Invalid type for '%s': expected an object, but got %s.", p, article(api.JSONKind(raw)))
	}
	known := jsonKeys(reflect.TypeOf(dst).Elem())
	for _, k := range sortedKeys(obj) {
		if _, ok := known[k]; !ok {
			return api.Unsupported(p+"."+k, "Unrecognized request argument supplied: %s.%s. stepflash does not support this parameter.", p, k)
		}
	}
	if err := json.Unmarshal(raw, dst); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			fp := p + "." + te.Field
			return api.InvalidRequest(api.CodeInvalidType, fp, "Invalid type for '%s': expected %s, but got %s.", fp, api.TypeName(te.Type), article(te.Value))
		}
		return api.InvalidRequest(api.CodeInvalidType, p, "Invalid '%s': %v.", p, err)
	}
	return nil
}

// decodeToolObject decodes a tool: a function tool's keys are checked;
// other tool types (built-in tools, with keys of their own) are refused by
// type afterwards.
func decodeToolObject(raw json.RawMessage, t *api.ResponsesTool, p string) *api.Error {
	var head struct {
		Type string `json:"type"`
	}
	if json.Unmarshal(raw, &head) == nil && head.Type != "function" && head.Type != "" {
		t.Type = head.Type
		return nil
	}
	return decodeObject(raw, t, p)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// responsesParams are the chat request's field names that have other
// names (or places) in a Responses request, longest first.
var responsesParams = strings.NewReplacer(
	"response_format.json_schema.schema", "text.format.schema",
	"response_format.json_schema.name", "text.format.name",
	"response_format.json_schema", "text.format",
	"response_format.type", "text.format.type",
	"response_format", "text.format",
	"max_completion_tokens", "max_output_tokens",
	"reasoning_effort", "reasoning.effort",
	".function.parameters", ".parameters",
	".function.name", ".name",
	".image_url.url", ".image_url",
	"'messages'", "'input'",
)

// remap rewrites the field names of an error about the translated chat
// request to the Responses request's.
func (tr *responsesRequest) remap(e *api.Error) *api.Error {
	if e == nil {
		return nil
	}
	out := *e
	out.Message = responsesParams.Replace(tr.paths.rewrite(e.Message))
	if e.Param != nil {
		p := strings.Trim(responsesParams.Replace("'"+tr.paths.rewrite(*e.Param)+"'"), "'")
		out.Param = &p
	}
	if out.CodeString() == api.CodeContextLengthExceeded && tr.req.Truncation != nil && *tr.req.Truncation == "auto" {
		out.Message += " (truncation: \"auto\" is accepted but nothing is dropped here: shorten the input.)"
	}
	return &out
}
