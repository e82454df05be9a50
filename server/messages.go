package server

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/stepflash/stepflash/api"
	"github.com/stepflash/stepflash/backend"
	"github.com/stepflash/stepflash/sse"
)

// POST /v1/messages: Anthropic's Messages API, translated to a chat
// completion request for the same backends, and their chunks translated
// back into a Message or its stream events. Every error on this path is
// Anthropic's error object (docs/api.md, "Anthropic Messages").

func (s *Server) handleMessages(w http.ResponseWriter, r *http.Request) *api.Error {
	if e := s.messages(w, r); e != nil {
		writeMessagesError(w, e)
	}
	return nil
}

func (s *Server) messages(w http.ResponseWriter, r *http.Request) *api.Error {
	if id := w.Header().Get("X-Request-Id"); id != "" {
		w.Header().Set("Request-Id", id) // where Anthropic's SDKs look for it
	}
	req, e := s.decodeMessages(w, r)
	if e != nil {
		return e
	}
	creq, paths, e := translateMessagesRequest(req)
	if e != nil {
		return e
	}
	m, e := s.lookup(req.Model)
	if e != nil {
		return e
	}
	if e := backend.CheckChat(creq, s.limitsFor(m)); e != nil {
		return paths.remap(e)
	}
	r = r.WithContext(backend.WithEndpoint(r.Context(), backend.EndpointMessages)) // the ledger's label
	c := s.newCall(w, r, m, req.Model, creq.ReasoningEffort, "msg_")
	defer c.end()
	omit := req.Thinking != nil && req.Thinking.Display == "omitted"
	if req.Stream {
		return paths.remap(serveMessagesStream(c, creq, omit))
	}
	resp, e := c.chat(creq)
	if e != nil {
		return paths.remap(e)
	}
	writeJSON(w, http.StatusOK, messageFromCompletion(resp, omit))
	return nil
}

// decodeMessages reads a Messages API body: decoded as any request, then
// every key at any depth checked against Anthropic's shapes.
func (s *Server) decodeMessages(w http.ResponseWriter, r *http.Request) (*api.MessagesRequest, *api.Error) {
	var body bytes.Buffer
	if r.Body != nil {
		r.Body = struct {
			io.Reader
			io.Closer
		}{io.TeeReader(r.Body, &body), r.Body}
	}
	var req api.MessagesRequest
	if e := s.decodeBody(w, r, &req); e != nil {
		return nil, e
	}
	if e := checkMessagesKeys(body.Bytes()); e != nil {
		return nil, e
	}
	return &req, nil
}

// messageFromCompletion is the Message of a joined chat completion: a
// thinking block (the reasoning), a text block, the tool_use blocks.
func messageFromCompletion(resp *api.ChatCompletion, omitThinking bool) *api.MessagesResponse {
	out := &api.MessagesResponse{ID: resp.ID, Type: "message", Role: "assistant", Model: resp.Model, Content: []api.ResponseBlock{},
		Usage: messagesUsage(resp.Usage), Stepflash: resp.Stepflash}
	finish := ""
	if len(resp.Choices) > 0 {
		ch := resp.Choices[0]
		finish = ch.FinishReason
		msg := ch.Message
		if msg.ReasoningContent != nil && *msg.ReasoningContent != "" {
			b := api.ResponseBlock{Type: "thinking"}
			if !omitThinking {
				b.Thinking = *msg.ReasoningContent
			}
			out.Content = append(out.Content, b)
		}
		if msg.Content != nil && *msg.Content != "" {
			out.Content = append(out.Content, api.ResponseBlock{Type: "text", Text: *msg.Content})
		}
		for _, tc := range msg.ToolCalls {
			out.Content = append(out.Content, api.ResponseBlock{Type: "tool_use", ID: tc.ID, Name: tc.Function.Name, Input: toolInput(tc.Function.Arguments)})
		}
	}
	reason := stopReason(finish)
	if len(resp.Choices) > 0 && resp.Choices[0].StopReason != nil {
		reason, out.StopSequence = api.StopSequence, resp.Choices[0].StopReason
	}
	out.StopReason = &reason
	return out
}

// toolInput is a tool call's arguments as the JSON object a tool_use
// block's input is; arguments that are not one (a call cut short by
// max_tokens) become {}.
func toolInput(args string) json.RawMessage {
	var obj map[string]json.RawMessage
	if json.Unmarshal([]byte(args), &obj) != nil || obj == nil {
		return json.RawMessage("{}")
	}
	return json.RawMessage(args)
}

// stopReason maps a finish reason to a Message's stop reason.
func stopReason(finish string) string {
	switch finish {
	case "length":
		return api.StopMaxTokens
	case "tool_calls", "function_call":
		return api.StopToolUse
	case "content_filter":
		return api.StopRefusal
	}
	return api.StopEndTurn
}

// messagesUsage is the usage in Anthropic's terms: input_tokens are the
// prompt tokens not read from the cache.
func messagesUsage(u *api.Usage) api.MessagesUsage {
	if u == nil {
		return api.MessagesUsage{}
	}
	cached := u.PromptTokensDetails.CachedTokens
	return api.MessagesUsage{InputTokens: max(0, u.PromptTokens-cached), OutputTokens: u.CompletionTokens, CacheReadInputTokens: cached,
		Advisor: u.Advisor, Cost: u.Cost}
}

// messagesStream writes a backend's chunks as Anthropic stream events.
type messagesStream struct {
	c            *call
	out          *sse.Writer
	omitThinking bool

	started bool
	done    bool
	next    int     // the index of the next content block
	open    string  // the open block's type, "" when none
	tool    int     // the chat tool-call index of the open tool_use block
	stopped *string // the stop sequence that ended the reply
	finish  string
}

func serveMessagesStream(c *call, req *api.ChatCompletionRequest, omitThinking bool) *api.Error {
	st := &messagesStream{c: c, out: sse.NewWriter(c.w), omitThinking: omitThinking}
	err := c.m.Backend.Chat(c.ctx, req, st.chunk)
	if err == nil && !st.done {
		err = st.end(nil)
	}
	switch {
	case err == nil:
		return nil
	case st.out.Err() != nil || c.r.Context().Err() != nil:
		return nil // the client went away
	case !st.out.Started():
		return c.fail(err)
	}
	st.event("error", messagesError(c.fail(err), c.w))
	return nil
}

func (st *messagesStream) event(name string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return st.out.Event(name, b)
}

func (st *messagesStream) chunk(ch *api.ChatCompletionChunk) error {
	c := st.c
	if err := c.seen(); err != nil {
		return err
	}
	c.observeChunk(ch)
	c.stamp(ch.Head(), ch.Ext())
	if !st.started {
		st.started = true
		msg := &api.MessagesResponse{ID: c.id, Type: "message", Role: "assistant", Model: c.model, Content: []api.ResponseBlock{}, Stepflash: ch.Stepflash}
		if err := st.event("message_start", api.MessageStartEvent{Type: "message_start", Message: msg}); err != nil {
			return err
		}
	}
	if u := ch.FinalUsage(); u != nil {
		c.observeUsage(u)
		return st.end(u)
	}
	for i := range ch.Choices {
		choice := &ch.Choices[i]
		if choice.Index != 0 {
			continue
		}
		d := &choice.Delta
		if reasoning := d.ReasoningText(); reasoning != "" {
			if err := st.openBlock(api.ResponseBlock{Type: "thinking"}, -1); err != nil {
				return err
			}
			if !st.omitThinking {
				if err := st.delta(api.BlockDelta{Type: "thinking_delta", Thinking: &reasoning}); err != nil {
					return err
				}
			}
		}
		if d.Content != nil && *d.Content != "" {
			if err := st.openBlock(api.ResponseBlock{Type: "text"}, -1); err != nil {
				return err
			}
			if err := st.delta(api.BlockDelta{Type: "text_delta", Text: d.Content}); err != nil {
				return err
			}
		}
		for _, tc := range d.ToolCalls {
			k := st.tool
			if tc.Index != nil {
				k = *tc.Index
			}
			if st.open != "tool_use" || k != st.tool {
				if err := st.openBlock(api.ResponseBlock{Type: "tool_use", ID: tc.ID, Name: tc.Function.Name, Input: json.RawMessage("{}")}, k); err != nil {
					return err
				}
			}
			if args := tc.Function.Arguments; args != "" {
				if err := st.delta(api.BlockDelta{Type: "input_json_delta", PartialJSON: &args}); err != nil {
					return err
				}
			}
		}
		if choice.FinishReason != nil {
			st.finish = *choice.FinishReason
			st.stopped = choice.StopReason
		}
	}
	return nil
}

// openBlock starts a block of b's type unless one is open (a tool_use
// block: the same call's); tool is the chat tool-call index of a tool_use
// block.
func (st *messagesStream) openBlock(b api.ResponseBlock, tool int) error {
	if st.open == b.Type && b.Type != "tool_use" {
		return nil
	}
	if err := st.closeBlock(); err != nil {
		return err
	}
	st.open, st.tool = b.Type, tool
	return st.event("content_block_start", api.ContentBlockStartEvent{Type: "content_block_start", Index: st.next, ContentBlock: b})
}

func (st *messagesStream) delta(d api.BlockDelta) error {
	return st.event("content_block_delta", api.ContentBlockDeltaEvent{Type: "content_block_delta", Index: st.next, Delta: d})
}

func (st *messagesStream) closeBlock() error {
	if st.open == "" {
		return nil
	}
	st.open = ""
	i := st.next
	st.next++
	return st.event("content_block_stop", api.ContentBlockStopEvent{Type: "content_block_stop", Index: i})
}

// end closes the open block and sends message_delta and message_stop.
func (st *messagesStream) end(u *api.Usage) error {
	st.done = true
	if err := st.closeBlock(); err != nil {
		return err
	}
	reason := stopReason(st.finish)
	if st.stopped != nil {
		reason = api.StopSequence
	}
	if err := st.event("message_delta", api.MessageDeltaEvent{Type: "message_delta", Delta: api.MessageDelta{StopReason: &reason, StopSequence: st.stopped}, Usage: messagesUsage(u)}); err != nil {
		return err
	}
	return st.event("message_stop", api.MessageStopEvent{Type: "message_stop"})
}

// translateMessagesRequest is the chat completion request a Messages
// request asks for, and where each translated message came from (for
// error messages).
func translateMessagesRequest(req *api.MessagesRequest) (*api.ChatCompletionRequest, *msgPaths, *api.Error) {
	out := &api.ChatCompletionRequest{Model: req.Model, Temperature: req.Temperature, TopP: req.TopP, TopK: req.TopK, Stream: req.Stream}
	paths := &msgPaths{}
	if req.MaxTokens == nil {
		return nil, nil, api.InvalidRequest(api.CodeMissingParameter, "max_tokens", "max_tokens: Field required.")
	}
	if st := req.ServiceTier; st != nil && *st != "auto" && *st != "standard_only" {
		return nil, nil, api.InvalidRequest(api.CodeInvalidValue, "service_tier", "service_tier: Input should be 'auto' or 'standard_only', got %q.", *st)
	}
	out.MaxTokens = req.MaxTokens
	if len(req.StopSequences) > 0 {
		out.Stop = api.Stop(req.StopSequences)
	}
	if sys := req.System; sys != nil {
		text, e := textOf(sys, "system")
		if e != nil {
			return nil, nil, e
		}
		if text != "" {
			paths.add("system", nil)
			out.Messages = append(out.Messages, api.Message{Role: "system", Content: api.MessageContent{Text: text}})
		}
	}
	if req.Messages == nil {
		return nil, nil, api.InvalidRequest(api.CodeMissingParameter, "messages", "messages: Field required.")
	}
	if len(req.Messages) == 0 {
		return nil, nil, api.InvalidRequest(api.CodeInvalidValue, "messages", "messages: at least one message is required.")
	}
	for i, m := range req.Messages {
		p := fmt.Sprintf("messages[%d]", i)
		var e *api.Error
		switch m.Role {
		case "user":
			e = translateUser(out, paths, m, p)
		case "assistant":
			if i == len(req.Messages)-1 {
				return nil, nil, api.Unsupported(p, "%s: a final assistant message (a prefill for the reply to continue) is not supported; end the conversation with a user message.", p)
			}
			e = translateAssistant(out, paths, m, p)
		case "":
			e = api.InvalidRequest(api.CodeMissingParameter, p+".role", "%s.role: Field required.", p)
		default:
			e = api.InvalidRequest(api.CodeInvalidValue, p+".role", "%s.role: Input should be 'user' or 'assistant', got %q.", p, m.Role)
		}
		if e != nil {
			return nil, nil, e
		}
	}
	if e := translateTools(out, req); e != nil {
		return nil, nil, e
	}
	if e := translateEffort(out, req); e != nil {
		return nil, nil, e
	}
	return out, paths, nil
}

// textOf joins text content (the system prompt, a tool result), refusing
// blocks of other types.
func textOf(c *api.BlockContent, p string) (string, *api.Error) {
	if !c.IsBlocks {
		return c.Text, nil
	}
	var parts []string
	for k, b := range c.Blocks {
		bp := fmt.Sprintf("%s[%d]", p, k)
		switch b.Type {
		case "text":
			if b.Text == nil {
				return "", api.InvalidRequest(api.CodeMissingParameter, bp+".text", "%s.text: Field required.", bp)
			}
			parts = append(parts, *b.Text)
		case "":
			return "", api.InvalidRequest(api.CodeMissingParameter, bp+".type", "%s.type: Field required.", bp)
		default:
			return "", api.Unsupported(bp+".type", "%s: content blocks of type %q are not supported here (only text).", bp, b.Type)
		}
	}
	return strings.Join(parts, "\n"), nil
}

func translateUser(out *api.ChatCompletionRequest, paths *msgPaths, m api.InputMessage, p string) *api.Error {
	if !m.Content.IsBlocks {
		paths.add(p, nil)
		out.Messages = append(out.Messages, api.Message{Role: "user", Content: api.MessageContent{Text: m.Content.Text}})
		return nil
	}
	var parts []api.ContentPart
	var partPaths []string
	for k, b := range m.Content.Blocks {
		bp := fmt.Sprintf("%s.content[%d]", p, k)
		switch b.Type {
		case "text":
			if b.Text == nil {
				return api.InvalidRequest(api.CodeMissingParameter, bp+".text", "%s.text: Field required.", bp)
			}
			parts, partPaths = append(parts, api.ContentPart{Type: "text", Text: *b.Text}), append(partPaths, bp)
		case "image":
			url, e := imageURL(b.Source, bp)
			if e != nil {
				return e
			}
			ref, _ := json.Marshal(map[string]string{"url": url})
			parts, partPaths = append(parts, api.ContentPart{Type: "image_url", ImageURL: ref}), append(partPaths, bp)
		case "tool_result":
			if b.ToolUseID == "" {
				return api.InvalidRequest(api.CodeMissingParameter, bp+".tool_use_id", "%s.tool_use_id: Field required.", bp)
			}
			text := ""
			if b.Content != nil {
				var e *api.Error
				if text, e = textOf(b.Content, bp+".content"); e != nil {
					return e
				}
			}
			if b.IsError != nil && *b.IsError {
				text = "Error: " + text
			}
			paths.add(bp, nil)
			out.Messages = append(out.Messages, api.Message{Role: "tool", ToolCallID: b.ToolUseID, Content: api.MessageContent{Text: text}})
		case "":
			return api.InvalidRequest(api.CodeMissingParameter, bp+".type", "%s.type: Field required.", bp)
		default:
			return api.Unsupported(bp+".type", "%s: content blocks of type %q are not supported in user messages (text, image and tool_result are).", bp, b.Type)
		}
	}
	if len(parts) > 0 {
		paths.add(p, partPaths)
		out.Messages = append(out.Messages, api.Message{Role: "user", Content: api.MessageContent{Parts: parts, IsParts: true}})
	}
	return nil
}

// imageURL is the image_url of an image block: a data: URL for a base64
// source, the URL of a url source.
func imageURL(src *api.ImageSource, bp string) (string, *api.Error) {
	if src == nil {
		return "", api.InvalidRequest(api.CodeMissingParameter, bp+".source", "%s.source: Field required.", bp)
	}
	switch src.Type {
	case "base64":
		switch src.MediaType {
		case "image/jpeg", "image/png", "image/gif", "image/webp":
		default:
			return "", api.InvalidRequest(api.CodeInvalidValue, bp+".source.media_type", "%s.source.media_type: Input should be 'image/jpeg', 'image/png', 'image/gif' or 'image/webp', got %q.", bp, src.MediaType)
		}
		if src.Data == "" {
			return "", api.InvalidRequest(api.CodeMissingParameter, bp+".source.data", "%s.source.data: Field required.", bp)
		}
		return "data:" + src.MediaType + ";base64," + src.Data, nil
	case "url":
		if src.URL == "" {
			return "", api.InvalidRequest(api.CodeMissingParameter, bp+".source.url", "%s.source.url: Field required.", bp)
		}
		return src.URL, nil
	case "":
		return "", api.InvalidRequest(api.CodeMissingParameter, bp+".source.type", "%s.source.type: Field required.", bp)
	}
	return "", api.Unsupported(bp+".source.type", "%s.source: image sources of type %q are not supported (base64 and url are).", bp, src.Type)
}

func translateAssistant(out *api.ChatCompletionRequest, paths *msgPaths, m api.InputMessage, p string) *api.Error {
	msg := api.Message{Role: "assistant"}
	if !m.Content.IsBlocks {
		msg.Content.Text = m.Content.Text
		paths.add(p, nil)
		out.Messages = append(out.Messages, msg)
		return nil
	}
	var text, reasoning strings.Builder
	for k, b := range m.Content.Blocks {
		bp := fmt.Sprintf("%s.content[%d]", p, k)
		switch b.Type {
		case "text":
			if b.Text == nil {
				return api.InvalidRequest(api.CodeMissingParameter, bp+".text", "%s.text: Field required.", bp)
			}
			text.WriteString(*b.Text)
		case "thinking":
			if b.Thinking != nil {
				reasoning.WriteString(*b.Thinking)
			}
		case "redacted_thinking":
			// Another model's encrypted reasoning: nothing here can read it.
		case "tool_use":
			if b.ID == "" || b.Name == "" {
				field := "id"
				if b.ID != "" {
					field = "name"
				}
				return api.InvalidRequest(api.CodeMissingParameter, bp+"."+field, "%s.%s: Field required.", bp, field)
			}
			args := "{}"
			if len(b.Input) > 0 {
				var obj map[string]json.RawMessage
				if json.Unmarshal(b.Input, &obj) != nil || obj == nil {
					return api.InvalidRequest(api.CodeInvalidType, bp+".input", "%s.input: Input should be an object.", bp)
				}
				args = string(b.Input)
			}
			msg.ToolCalls = append(msg.ToolCalls, api.ToolCall{ID: b.ID, Type: "function", Function: api.FunctionCall{Name: b.Name, Arguments: args}})
		case "":
			return api.InvalidRequest(api.CodeMissingParameter, bp+".type", "%s.type: Field required.", bp)
		default:
			return api.Unsupported(bp+".type", "%s: content blocks of type %q are not supported in assistant messages (text, thinking, redacted_thinking and tool_use are).", bp, b.Type)
		}
	}
	msg.Content.Text = text.String()
	if msg.Content.Text == "" && len(msg.ToolCalls) > 0 {
		msg.Content = api.MessageContent{IsNull: true}
	}
	if r := reasoning.String(); r != "" {
		msg.ReasoningContent = &r
	}
	paths.add(p, nil)
	out.Messages = append(out.Messages, msg)
	return nil
}

func translateTools(out *api.ChatCompletionRequest, req *api.MessagesRequest) *api.Error {
	for i, t := range req.Tools {
		p := fmt.Sprintf("tools[%d]", i)
		if t.Type != "" && t.Type != "custom" {
			return api.Unsupported(p+".type", "%s: tools of type %q (server tools) are not supported; client tools (name, description, input_schema) are.", p, t.Type)
		}
		if strings.TrimSpace(t.Name) == "" {
			return api.InvalidRequest(api.CodeMissingParameter, p+".name", "%s.name: Field required.", p)
		}
		if len(t.InputSchema) == 0 {
			return api.InvalidRequest(api.CodeMissingParameter, p+".input_schema", "%s.input_schema: Field required.", p)
		}
		var obj map[string]json.RawMessage
		if json.Unmarshal(t.InputSchema, &obj) != nil || obj == nil {
			return api.InvalidRequest(api.CodeInvalidType, p+".input_schema", "%s.input_schema: Input should be a JSON Schema object.", p)
		}
		out.Tools = append(out.Tools, api.Tool{Type: "function", Function: api.ToolFunction{Name: t.Name, Description: t.Description, Parameters: t.InputSchema, Strict: t.Strict}})
	}
	tc := req.ToolChoice
	if tc == nil {
		return nil
	}
	switch tc.Type {
	case "auto":
		out.ToolChoice = &api.ToolChoice{Mode: "auto"}
	case "any":
		out.ToolChoice = &api.ToolChoice{Mode: "required"}
	case "tool":
		if tc.Name == "" {
			return api.InvalidRequest(api.CodeMissingParameter, "tool_choice.name", "tool_choice.name: Field required.")
		}
		if !slices.ContainsFunc(req.Tools, func(t api.MessagesTool) bool { return t.Name == tc.Name }) {
			return api.InvalidRequest(api.CodeInvalidValue, "tool_choice.name", "tool_choice: tool %q is not among the tools.", tc.Name)
		}
		out.ToolChoice = &api.ToolChoice{Mode: "function", Function: tc.Name}
	case "none":
		out.ToolChoice = &api.ToolChoice{Mode: "none"}
	case "":
		return api.InvalidRequest(api.CodeMissingParameter, "tool_choice.type", "tool_choice.type: Field required.")
	default:
		return api.InvalidRequest(api.CodeInvalidValue, "tool_choice.type", "tool_choice.type: Input should be 'auto', 'any', 'tool' or 'none', got %q.", tc.Type)
	}
	if (tc.Type == "any" || tc.Type == "tool") && len(req.Tools) == 0 {
		return api.InvalidRequest(api.CodeInvalidValue, "tool_choice", "tool_choice: %q needs at least one tool in tools.", tc.Type)
	}
	if tc.DisableParallelToolUse != nil && *tc.DisableParallelToolUse {
		f := false
		out.ParallelToolCalls = &f
	}
	return nil
}

// Default thinking budgets of the tiers (effort.DefaultPolicy), to map a
// thinking budget to the nearest tier.
const (
	mediumBudget = 1024
	highBudget   = 8192
)

// translateEffort sets the reasoning_effort a request's output_config.effort
// or thinking asks for (output_config.effort wins when both are given).
func translateEffort(out *api.ChatCompletionRequest, req *api.MessagesRequest) *api.Error {
	tier := ""
	if th := req.Thinking; th != nil {
		switch th.Type {
		case "enabled":
			if th.BudgetTokens == nil {
				return api.InvalidRequest(api.CodeMissingParameter, "thinking.budget_tokens", "thinking.enabled.budget_tokens: Field required.")
			}
			b := *th.BudgetTokens
			switch {
			case b < 0:
				return api.InvalidRequest(api.CodeInvalidValue, "thinking.budget_tokens", "thinking.enabled.budget_tokens: Input should be greater than or equal to 0, got %d.", b)
			case b < mediumBudget/2:
				tier = "low"
			case b < (mediumBudget+highBudget)/2:
				tier = "medium"
			default:
				tier = "high"
			}
		case "disabled":
			tier = "low"
		case "adaptive":
		case "":
			return api.InvalidRequest(api.CodeMissingParameter, "thinking.type", "thinking.type: Field required.")
		default:
			return api.InvalidRequest(api.CodeInvalidValue, "thinking.type", "thinking.type: Input should be 'enabled', 'disabled' or 'adaptive', got %q.", th.Type)
		}
		switch th.Display {
		case "", "summarized", "omitted":
		default:
			return api.InvalidRequest(api.CodeInvalidValue, "thinking.display", "thinking.display: Input should be 'summarized' or 'omitted', got %q.", th.Display)
		}
	}
	if oc := req.OutputConfig; oc != nil {
		if len(oc.Format) > 0 && string(oc.Format) != "null" {
			return api.Unsupported("output_config.format", "output_config.format (structured outputs) is not supported yet.")
		}
		if oc.Effort != nil {
			switch *oc.Effort {
			case "low", "medium", "high":
				tier = *oc.Effort
			case "xhigh", "max":
				tier = "high"
			default:
				return api.InvalidRequest(api.CodeInvalidReasoning, "output_config.effort", "output_config.effort: Input should be 'low', 'medium', 'high', 'xhigh' or 'max', got %q.", *oc.Effort)
			}
		}
	}
	if tier != "" {
		out.ReasoningEffort = &tier
	}
	return nil
}

// msgPaths remembers which part of a Messages request each translated
// message (and content part) came from, so that an error about the chat
// request names the field the client sent.
type msgPaths struct {
	messages []string   // by translated message index
	parts    [][]string // by translated message index, then part index
}

func (mp *msgPaths) add(msg string, parts []string) {
	mp.messages = append(mp.messages, msg)
	mp.parts = append(mp.parts, parts)
}

var chatPathRE = regexp.MustCompile(`messages\[(\d+)\](\.content\[(\d+)\])?`)

func (mp *msgPaths) rewrite(s string) string {
	return chatPathRE.ReplaceAllStringFunc(s, func(m string) string {
		g := chatPathRE.FindStringSubmatch(m)
		i, _ := strconv.Atoi(g[1])
		if i >= len(mp.messages) {
			return m
		}
		if g[3] != "" {
			k, _ := strconv.Atoi(g[3])
			if k < len(mp.parts[i]) {
				return mp.parts[i][k]
			}
			return mp.messages[i] + g[2]
		}
		return mp.messages[i]
	})
}

// chatParams are the chat request's fields that have other names here.
var chatParams = strings.NewReplacer("'stop'", "'stop_sequences'", "'max_completion_tokens'", "'max_tokens'",
	".function.parameters", ".input_schema", ".function.name", ".name")

// remap rewrites the field names of an error about the translated request
// to the Messages request's.
func (mp *msgPaths) remap(e *api.Error) *api.Error {
	if e == nil || mp == nil {
		return e
	}
	out := *e
	out.Message = chatParams.Replace(mp.rewrite(e.Message))
	if e.Param != nil {
		p := chatParams.Replace("'" + mp.rewrite(*e.Param) + "'")
		p = strings.Trim(p, "'")
		if p == "stop" {
			p = "stop_sequences"
		}
		out.Param = &p
	}
	return &out
}

// checkMessagesKeys reports the first key, at any depth, that the Messages
// types do not declare (the top level is decodeBody's): nothing is
// accepted and silently ignored.
func checkMessagesKeys(body []byte) *api.Error {
	var raw map[string]json.RawMessage
	if json.Unmarshal(body, &raw) != nil {
		return nil
	}
	return checkValueKeys(raw, reflect.TypeFor[api.MessagesRequest](), "")
}

var (
	blockContentType = reflect.TypeFor[api.BlockContent]()
	blockType        = reflect.TypeFor[api.ContentBlock]()
	rawMessageType   = reflect.TypeFor[json.RawMessage]()
)

// checkValueKeys checks the keys of an object of struct type t, recursing
// into its struct, list and content fields.
func checkValueKeys(obj map[string]json.RawMessage, t reflect.Type, path string) *api.Error {
	known := jsonKeys(t)
	keys := make([]string, 0, len(obj))
	for k := range obj {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		p := k
		if path != "" {
			p = path + "." + k
		}
		ft, ok := known[k]
		if !ok {
			return api.Unsupported(p, "%s: Extra inputs are not permitted (stepflash does not support this parameter).", p)
		}
		if e := checkFieldKeys(obj[k], ft, p); e != nil {
			return e
		}
	}
	return nil
}

func checkFieldKeys(v json.RawMessage, t reflect.Type, p string) *api.Error {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch {
	case t == rawMessageType:
		return nil
	case t == blockContentType:
		t = reflect.SliceOf(blockType)
	}
	switch t.Kind() {
	case reflect.Slice:
		var items []json.RawMessage
		if json.Unmarshal(v, &items) != nil {
			return nil // a string, or the typed decode's error
		}
		for i, it := range items {
			if e := checkFieldKeys(it, t.Elem(), fmt.Sprintf("%s[%d]", p, i)); e != nil {
				return e
			}
		}
	case reflect.Struct:
		var obj map[string]json.RawMessage
		if json.Unmarshal(v, &obj) != nil {
			return nil
		}
		return checkValueKeys(obj, t, p)
	}
	return nil
}

// messagesErrorType is Anthropic's error type for an HTTP status.
func messagesErrorType(status int) string {
	switch status {
	case http.StatusUnauthorized:
		return api.AnthropicAuthentication
	case http.StatusPaymentRequired:
		return api.AnthropicBilling
	case http.StatusForbidden:
		return api.AnthropicPermission
	case http.StatusNotFound:
		return api.AnthropicNotFound
	case http.StatusRequestEntityTooLarge:
		return api.AnthropicRequestTooLarge
	case http.StatusTooManyRequests:
		return api.AnthropicRateLimit
	case http.StatusGatewayTimeout:
		return api.AnthropicTimeout
	case http.StatusServiceUnavailable, 529:
		return api.AnthropicOverloaded
	}
	if status >= 500 {
		return api.AnthropicAPIError
	}
	return api.AnthropicInvalidRequest
}

// messagesError is the Anthropic error object of e.
func messagesError(e *api.Error, w http.ResponseWriter) api.MessagesError {
	status := e.Status
	if status == 0 {
		status = http.StatusInternalServerError
	}
	return api.MessagesError{Type: "error", Error: api.MessagesErrorDetail{Type: messagesErrorType(status), Message: e.Message},
		RequestID: w.Header().Get("X-Request-Id")}
}

// writeMessagesError writes e as Anthropic's error object, with its status
// and the headers writeError sends.
func writeMessagesError(w http.ResponseWriter, e *api.Error) {
	writeErrorBody(w, e, messagesError(e, w))
}

// messagesErrors writes the errors that the layers in front of the Messages
// handler (the guard, the key check) write as OpenAI error objects as
// Anthropic's instead, on /v1/messages paths; other paths pass untouched.
func messagesErrors(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/messages" && !strings.HasPrefix(r.URL.Path, "/v1/messages/") {
			next.ServeHTTP(w, r)
			return
		}
		mw := &messagesErrorWriter{ResponseWriter: w}
		defer mw.flush()
		next.ServeHTTP(mw, r)
	})
}

// messagesErrorWriter holds back a JSON error response to rewrite it.
type messagesErrorWriter struct {
	http.ResponseWriter
	status int
	held   *bytes.Buffer // the body of a held error response
}

func (w *messagesErrorWriter) WriteHeader(status int) {
	if w.held == nil && w.status == 0 && status >= 400 && strings.HasPrefix(w.Header().Get("Content-Type"), "application/json") {
		w.status, w.held = status, &bytes.Buffer{}
		return
	}
	if w.status == 0 {
		w.status = status
	}
	w.ResponseWriter.WriteHeader(status)
}

func (w *messagesErrorWriter) Write(b []byte) (int, error) {
	if w.held != nil {
		return w.held.Write(b)
	}
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *messagesErrorWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// flush writes a held error: an OpenAI error object as Anthropic's, anything
// else (an Anthropic error already) as it was.
func (w *messagesErrorWriter) flush() {
	if w.held == nil {
		return
	}
	body := w.held.Bytes()
	var v struct {
		Type  string     `json:"type"`
		Error *api.Error `json:"error"`
	}
	if json.Unmarshal(body, &v) == nil && v.Type == "" && v.Error != nil {
		v.Error.Status = w.status
		b, _ := json.Marshal(messagesError(v.Error, w))
		body = append(b, '\n')
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	}
	w.ResponseWriter.WriteHeader(w.status)
	w.ResponseWriter.Write(body)
}
