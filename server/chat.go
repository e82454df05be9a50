package server

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/stepflash/stepflash/api"
	"github.com/stepflash/stepflash/chat"
	"github.com/stepflash/stepflash/engine"
)

func (s *Server) handleChat(w http.ResponseWriter, r *http.Request) *api.Error {
	start := time.Now()
	var req api.ChatCompletionRequest
	if e := s.decodeBody(w, r, &req); e != nil {
		return e
	}
	m, e := s.lookup(req.Model)
	if e != nil {
		return e
	}
	maxTok, maxParam := req.MaxTokens, "max_tokens"
	if req.MaxCompletionTokens != nil {
		maxTok, maxParam = req.MaxCompletionTokens, "max_completion_tokens"
	}
	sp, e := s.validateCommon(commonFields{
		MaxTokens: maxTok, MaxTokensParam: maxParam, Temperature: req.Temperature, TopP: req.TopP, TopK: req.TopK, MinP: req.MinP,
		Seed: req.Seed, Stop: req.Stop, N: req.N, PresencePenalty: req.PresencePenalty, FrequencyPenalty: req.FrequencyPenalty,
		LogitBias: req.LogitBias, Stream: req.Stream, StreamOptions: req.StreamOptions, Advisor: req.Advisor, IgnoreEOS: req.IgnoreEOS,
	}, m.Tok.VocabSize())
	if e != nil {
		return e
	}
	if req.TopLogprobs != nil {
		if *req.TopLogprobs < 0 || *req.TopLogprobs > 20 {
			return api.InvalidRequest(api.CodeInvalidValue, "top_logprobs", "Invalid 'top_logprobs': expected a value in [0, 20], but got %d instead.", *req.TopLogprobs)
		}
		if !req.Logprobs && *req.TopLogprobs > 0 {
			return api.InvalidRequest(api.CodeInvalidValue, "top_logprobs", "Invalid 'top_logprobs': 'logprobs' must be true when 'top_logprobs' is set.")
		}
		sp.topLogprobs = *req.TopLogprobs
	}
	sp.logprobs = req.Logprobs
	if e := checkChatExtras(&req); e != nil {
		return e
	}
	effort, e := resolveEffort(m, req.ReasoningEffort)
	if e != nil {
		return e
	}
	w.Header().Set("X-Reasoning-Effort", string(effort.Applied))
	msgs, e := convertMessages(req.Messages)
	if e != nil {
		return e
	}
	tools, e := convertTools(req.Tools)
	if e != nil {
		return e
	}
	tmpl := m.template()
	setup := chatSetup{family: chat.FamilyNone, singleCall: req.ParallelToolCalls != nil && !*req.ParallelToolCalls}
	mode, forced := "auto", ""
	if req.ToolChoice != nil && req.ToolChoice.Mode != "" {
		mode = req.ToolChoice.Mode
	}
	switch mode {
	case "auto", "none":
	case "required":
		if len(tools) == 0 {
			return api.InvalidRequest(api.CodeInvalidValue, "tool_choice", "Invalid 'tool_choice': \"required\" needs at least one tool in 'tools'.")
		}
	case "function":
		forced = req.ToolChoice.Function
		found := false
		for _, t := range tools {
			found = found || t.Function.Name == forced
		}
		if !found {
			return api.InvalidRequest(api.CodeInvalidValue, "tool_choice", "Invalid 'tool_choice': function %q is not among the 'tools'.", forced)
		}
	default:
		return api.InvalidRequest(api.CodeInvalidValue, "tool_choice", "Invalid 'tool_choice' %q: allowed values are none, auto, required or a named function.", mode)
	}
	opts := chat.RenderOptions{AddGenerationPrompt: true, BOS: m.Tok.TokenText(m.Tok.BOS()), EOS: m.Tok.TokenText(m.Tok.EOS())}
	if len(tools) > 0 && mode != "none" {
		opts.Tools = tools
		setup.family = tmpl.Family()
	}
	forcing := mode == "required" || mode == "function"
	if forcing && setup.family != chat.FamilyHermes && setup.family != chat.FamilyLlama3 {
		return api.Unsupported("tool_choice", "'tool_choice' %q needs a chat template with a Hermes (<tool_call>) or Llama-3 JSON tool-call format; this model's template has %s.", mode, setup.family)
	}
	// Thinking: off when the effort tier grants no budget (where the template
	// has a switch) or when a tool call is forced; chat_template_kwargs wins.
	if tmpl.SupportsThinkingSwitch() && (effort.ThinkingBudget == 0 || forcing) {
		off := false
		opts.EnableThinking = &off
		effort.ThinkingBudget = 0 // what is applied, and echoed
	}
	if len(req.ChatTemplateKwargs) > 0 {
		opts.Extra = req.ChatTemplateKwargs
		for _, k := range []string{"messages", "tools", "add_generation_prompt"} {
			if _, bad := opts.Extra[k]; bad {
				return api.InvalidRequest(api.CodeInvalidValue, "chat_template_kwargs", "Invalid 'chat_template_kwargs': %q may not be set there.", k)
			}
		}
	}
	text, err := tmpl.Render(msgs, opts)
	if err != nil {
		return api.InvalidRequest(api.CodeInvalidValue, "messages", "The chat template rejected the conversation: %v", err)
	}
	setup.startsInThinking = chat.PromptStartsInThinking(text)
	if forcing {
		setup.prefill = toolPrefill(setup.family, forced, setup.startsInThinking)
		text += setup.prefill
	}
	prompt := m.Tok.Encode(text, false, true)
	if bos := m.Tok.BOS(); m.Tok.AddBOS() && bos >= 0 && (len(prompt) == 0 || prompt[0] != bos) {
		prompt = append([]int32{bos}, prompt...)
	}
	if e := checkContext(m, prompt, sp.maxTokens, "messages"); e != nil {
		return e
	}
	// The template's end of turn (e.g. ChatML's <|im_end|>): a vocabulary
	// without the special token writes it as plain text.
	sp.stops = append(sp.stops, tmpl.EOTStrings()...)
	j := &job{s: s, m: m, isChat: true, id: randomID("chatcmpl-", 24), created: time.Now().Unix(), model: req.Model,
		prompts: [][]int32{prompt}, sp: sp, effort: effort, stream: req.Stream,
		usage: req.StreamOptions != nil && req.StreamOptions.IncludeUsage, start: start, chatSetup: setup}
	limit, budget := thinkingLimit(effort.ThinkingBudget)
	j.base = engine.Request{MaxTokens: sp.maxTokens, Sampling: sp.params, Logprobs: sp.logprobs, TopLogprobs: sp.topLogprobs, IgnoreEOS: sp.ignoreEOS,
		LimitThinking: limit, ThinkingBudget: budget}
	if effort.ExpertsPerToken != nil {
		j.base.ExpertsUsed = *effort.ExpertsPerToken
	}
	j.base.JSONObject = req.ResponseFormat != nil && req.ResponseFormat.Type == "json_object"
	return j.serve(w, r)
}

// toolPrefill is the start of a forced tool call, written into the prompt.
func toolPrefill(f chat.Family, name string, inThinking bool) string {
	p := ""
	if inThinking {
		p = "</think>\n\n"
	}
	switch f {
	case chat.FamilyHermes:
		p += "<tool_call>\n{\"name\": \""
		if name != "" {
			p += name + "\", \"arguments\": "
		}
	case chat.FamilyLlama3:
		p += "{\"name\": \""
		if name != "" {
			p += name + "\", \"parameters\": "
		}
	}
	return p
}

// checkContext rejects a prompt that does not fit the context, or does not
// leave room for max_tokens.
func checkContext(m *Model, prompt []int32, maxTokens int, param string) *api.Error {
	ctx := m.Engine.Context()
	if len(prompt) >= ctx {
		return api.ContextLengthExceeded(param, ctx, len(prompt), 0)
	}
	if maxTokens > 0 && len(prompt)+maxTokens > ctx {
		return api.ContextLengthExceeded(param, ctx, len(prompt), maxTokens)
	}
	return nil
}

// checkChatExtras validates the fields that have no engine counterpart.
func checkChatExtras(req *api.ChatCompletionRequest) *api.Error {
	if rf := req.ResponseFormat; rf != nil {
		switch rf.Type {
		case "text", "":
		case "json_object":
		case "json_schema":
			return api.Unsupported("response_format", "'response_format' of type %q (a JSON Schema) is not supported yet; json_object is.", rf.Type)
		default:
			return api.InvalidRequest(api.CodeInvalidValue, "response_format.type", "Invalid 'response_format.type' %q: allowed values are text, json_object, json_schema.", rf.Type)
		}
	}
	if req.Store != nil && *req.Store {
		return api.Unsupported("store", "'store': true is not supported (stepflash does not store completions).")
	}
	if req.ServiceTier != nil {
		switch *req.ServiceTier {
		case "auto", "default":
		default:
			return api.Unsupported("service_tier", "'service_tier' %q is not supported (only auto and default).", *req.ServiceTier)
		}
	}
	for _, mod := range req.Modalities {
		if mod != "text" {
			return api.Unsupported("modalities", "'modalities' %q is not supported (only text).", mod)
		}
	}
	return nil
}

var roles = map[string]string{"system": "system", "developer": "system", "user": "user", "assistant": "assistant", "tool": "tool"}

// convertMessages validates request messages and turns them into chat messages.
func convertMessages(in []api.Message) ([]chat.Message, *api.Error) {
	if in == nil {
		return nil, api.InvalidRequest(api.CodeMissingParameter, "messages", "Missing required parameter: 'messages'.")
	}
	if len(in) == 0 {
		return nil, api.InvalidRequest(api.CodeInvalidValue, "messages", "Invalid 'messages': empty array. Expected an array with minimum length 1, but got an empty array instead.")
	}
	out := make([]chat.Message, 0, len(in))
	for i, m := range in {
		p := fmt.Sprintf("messages[%d]", i)
		role, ok := roles[m.Role]
		if !ok {
			if m.Role == "" {
				return nil, api.InvalidRequest(api.CodeMissingParameter, p+".role", "Missing required parameter: '%s.role'.", p)
			}
			return nil, api.InvalidRequest(api.CodeInvalidValue, p+".role", "Invalid value %q for '%s.role': supported values are system, developer, user, assistant and tool.", m.Role, p)
		}
		cm := chat.Message{Role: role, Name: m.Name, ToolCallID: m.ToolCallID}
		switch {
		case m.Content.IsParts:
			cm.Parts = []chat.Part{}
			for k, part := range m.Content.Parts {
				if part.Type != "text" {
					return nil, api.Unsupported(fmt.Sprintf("%s.content[%d].type", p, k), "Content parts of type %q are not supported (only text).", part.Type)
				}
				cm.Parts = append(cm.Parts, chat.Part{Type: "text", Text: part.Text})
			}
		case m.Content.IsNull:
			if role != "assistant" {
				return nil, api.InvalidRequest(api.CodeMissingParameter, p+".content", "Missing required parameter: '%s.content'.", p)
			}
		default:
			cm.Content = m.Content.Text
		}
		if len(m.ToolCalls) > 0 && role != "assistant" {
			return nil, api.InvalidRequest(api.CodeInvalidValue, p+".tool_calls", "Invalid '%s.tool_calls': only assistant messages make tool calls.", p)
		}
		for k, tc := range m.ToolCalls {
			if tc.Type != "" && tc.Type != "function" {
				return nil, api.Unsupported(fmt.Sprintf("%s.tool_calls[%d].type", p, k), "Tool calls of type %q are not supported (only function).", tc.Type)
			}
			cm.ToolCalls = append(cm.ToolCalls, chat.ToolCall{ID: tc.ID, Type: "function", Name: tc.Function.Name, Arguments: tc.Function.Arguments})
		}
		if role == "tool" && m.ToolCallID == "" {
			return nil, api.InvalidRequest(api.CodeMissingParameter, p+".tool_call_id", "Missing required parameter: '%s.tool_call_id'.", p)
		}
		switch {
		case m.ReasoningContent != nil:
			cm.Reasoning = *m.ReasoningContent
		case m.Reasoning != nil:
			cm.Reasoning = *m.Reasoning
		}
		out = append(out, cm)
	}
	return out, nil
}

func convertTools(in []api.Tool) ([]chat.Tool, *api.Error) {
	var out []chat.Tool
	for i, t := range in {
		p := fmt.Sprintf("tools[%d]", i)
		if t.Type != "function" {
			if t.Type == "" {
				return nil, api.InvalidRequest(api.CodeMissingParameter, p+".type", "Missing required parameter: '%s.type'.", p)
			}
			return nil, api.Unsupported(p+".type", "Tools of type %q are not supported (only function).", t.Type)
		}
		if strings.TrimSpace(t.Function.Name) == "" {
			return nil, api.InvalidRequest(api.CodeMissingParameter, p+".function.name", "Missing required parameter: '%s.function.name'.", p)
		}
		params := t.Function.Parameters
		if len(params) > 0 {
			var obj map[string]json.RawMessage
			if json.Unmarshal(params, &obj) != nil {
				return nil, api.InvalidRequest(api.CodeInvalidType, p+".function.parameters", "Invalid type for '%s.function.parameters': expected a JSON Schema object.", p)
			}
		}
		out = append(out, chat.Tool{Type: "function", Function: chat.ToolFunction{Name: t.Function.Name, Description: t.Function.Description, Parameters: params}})
	}
	return out, nil
}
