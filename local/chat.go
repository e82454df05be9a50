package local

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/stepflash/stepflash/api"
	"github.com/stepflash/stepflash/backend"
	"github.com/stepflash/stepflash/chat"
	"github.com/stepflash/stepflash/effort"
	"github.com/stepflash/stepflash/engine"
)

// Chat answers a chat completion request (checked by backend.CheckChat).
func (b *Backend) Chat(ctx context.Context, req *api.ChatCompletionRequest, emit func(*api.ChatCompletionChunk) error) error {
	p, err := b.prepareChat(ctx, req)
	if err != nil {
		return err
	}
	if e := b.checkContext(p.img.Tokens, p.sp.maxTokens, "messages"); e != nil {
		return e
	}
	j := &job{b: b, isChat: true, prompts: [][]int32{p.img.Tokens}, sp: p.sp, effort: p.applied, chatSetup: p.setup, imageTokens: p.img.ImageTokens}
	j.base = b.engineRequest(p.sp, p.applied)
	p.img.Apply(&j.base)
	j.base.JSONObject = req.ResponseFormat != nil && req.ResponseFormat.Type == "json_object"
	j.base.JSONSchema = p.schema
	if p.forcing && p.schema != nil {
		// The call is the whole reply: no thinking block may open before
		// it (the constraint would wait for it to close).
		j.base.Thinking = nil
	}
	return j.stream(ctx, emit, nil)
}

// chatPrompt is a chat request made ready for the engine: its sampling,
// the applied effort, the rendered and tokenized prompt (with any images'
// embeddings) and the answer's constraints.
type chatPrompt struct {
	sp      sampling
	applied effort.Applied
	setup   chatSetup
	// img is the tokenized prompt with its images' fields (none for a
	// text-only chat).
	img     *ImagePrompt
	schema  *engine.Schema
	forcing bool
}

// prepareChat checks a chat request's parameters, renders its
// conversation with the chat template and tokenizes it (encoding its
// images): everything before generation, shared by Chat and CountChat.
func (b *Backend) prepareChat(ctx context.Context, req *api.ChatCompletionRequest) (*chatPrompt, error) {
	m := &b.m
	maxTok := req.MaxTokens
	if req.MaxCompletionTokens != nil {
		maxTok = req.MaxCompletionTokens
	}
	sp, e := b.sampling(common{MaxTokens: maxTok, Temperature: req.Temperature, TopP: req.TopP, TopK: req.TopK, MinP: req.MinP,
		Seed: req.Seed, Stop: req.Stop, N: req.N, PresencePenalty: req.PresencePenalty, FrequencyPenalty: req.FrequencyPenalty,
		LogitBias: req.LogitBias, IgnoreEOS: req.IgnoreEOS})
	if e != nil {
		return nil, e
	}
	if e := b.checkChoices(sp.n, 1); e != nil {
		return nil, e
	}
	if req.TopLogprobs != nil {
		sp.topLogprobs = *req.TopLogprobs
	}
	sp.logprobs = req.Logprobs
	applied, e := b.applyEffort(req.ReasoningEffort)
	if e != nil {
		return nil, e
	}
	msgs, images, e := convertMessages(req.Messages)
	if e != nil {
		return nil, e
	}
	if len(images) > 0 && m.Vision == nil {
		return nil, noImages(images[0])
	}
	tools := convertTools(req.Tools)
	tmpl := b.tmpl
	setup := chatSetup{family: chat.FamilyNone, singleCall: req.ParallelToolCalls != nil && !*req.ParallelToolCalls}
	mode, forced := "auto", ""
	if req.ToolChoice != nil && req.ToolChoice.Mode != "" {
		mode = req.ToolChoice.Mode
	}
	if mode == "function" {
		forced = req.ToolChoice.Function
	}
	opts := chat.RenderOptions{AddGenerationPrompt: true, BOS: m.Tok.TokenText(m.Tok.BOS()), EOS: m.Tok.TokenText(m.Tok.EOS())}
	if len(tools) > 0 && mode != "none" {
		opts.Tools = tools
		setup.family = tmpl.Family()
	}
	forcing := mode == "required" || mode == "function"
	var schema *engine.Schema
	if rf := req.ResponseFormat; rf != nil && rf.Type == "json_schema" {
		if forcing {
			return nil, api.Unsupported("response_format", "'response_format' of type json_schema cannot be combined with a forced 'tool_choice' %q.", mode)
		}
		f, e := backend.ParseJSONSchemaFormat(rf.JSONSchema)
		if e != nil {
			return nil, e
		}
		var err error
		if schema, err = engine.CompileSchema(f.Schema, f.Strict != nil && *f.Strict); err != nil {
			return nil, api.InvalidRequest(api.CodeInvalidValue, "response_format.json_schema.schema", "Invalid schema for response_format %q: %v.", f.Name, err)
		}
	}
	if forcing && setup.family != chat.FamilyHermes && setup.family != chat.FamilyLlama3 {
		return nil, api.Unsupported("tool_choice", "'tool_choice' %q needs a chat template with a Hermes (<tool_call>) or Llama-3 JSON tool-call format; this model's template has %s.", mode, setup.family)
	}
	// Thinking: off when the effort tier grants no budget (where the template
	// has a switch) or when a tool call is forced; chat_template_kwargs wins.
	if tmpl.SupportsThinkingSwitch() && (applied.ThinkingBudget == 0 || forcing) {
		off := false
		opts.EnableThinking = &off
		applied.ThinkingBudget = 0 // what is applied, and echoed
	}
	if len(req.ChatTemplateKwargs) > 0 {
		opts.Extra = req.ChatTemplateKwargs
	}
	text, err := tmpl.Render(msgs, opts)
	if err != nil {
		return nil, api.InvalidRequest(api.CodeInvalidValue, "messages", "The chat template rejected the conversation: %v", err)
	}
	setup.startsInThinking = chat.PromptStartsInThinking(text)
	if forcing {
		// The call is written under a JSON Schema of the declared tools
		// (a declared name and arguments that validate against its
		// parameters); a tool whose parameters cannot be compiled falls
		// back to a prefilled call the model completes unconstrained.
		if sc, ok := toolCallSchema(setup.family, req.Tools, forced); ok {
			schema = sc
			setup.prefill, setup.closing = toolCallOpening(b.thinking, setup.family, setup.startsInThinking)
		} else {
			setup.prefill = toolPrefill(b.thinking, setup.family, forced, setup.startsInThinking)
		}
		text += setup.prefill
	}
	ip := &ImagePrompt{}
	if len(images) > 0 {
		encoded, e := b.loadImages(ctx, images)
		if e != nil {
			return nil, e
		}
		var err error
		if ip, err = PromptWithImages(m.Tok, text, mediaMarker, false, encoded); err != nil {
			return nil, api.InvalidRequest(api.CodeInvalidValue, "messages", "The chat template did not place every image: %v (images are read in user messages only).", err)
		}
	} else {
		ip.Tokens = m.Tok.Encode(text, false, true)
	}
	if bos := m.Tok.BOS(); m.Tok.AddBOS() && bos >= 0 && (len(ip.Tokens) == 0 || ip.Tokens[0] != bos) {
		ip.Prepend(bos)
	}
	// The template's end of turn (e.g. ChatML's <|im_end|>): a vocabulary
	// without the special token writes it as plain text.
	sp.stops = append(sp.stops, tmpl.EOTStrings()...)
	return &chatPrompt{sp: sp, applied: applied, setup: setup, img: ip, schema: schema, forcing: forcing}, nil
}

// toolCallSchema is the JSON Schema of a forced tool call's object in the
// template family's format: {"name": one of the callable tools, "arguments"
// (Hermes) or "parameters" (Llama 3): that tool's parameters}. ok is false
// when a tool's parameters do not compile.
func toolCallSchema(f chat.Family, tools []api.Tool, forced string) (*engine.Schema, bool) {
	args := "arguments"
	if f == chat.FamilyLlama3 {
		args = "parameters"
	}
	var branches []any
	for _, t := range tools {
		if forced != "" && t.Function.Name != forced {
			continue
		}
		params := map[string]any{"type": "object"}
		if len(t.Function.Parameters) > 0 && string(t.Function.Parameters) != "null" {
			if err := json.Unmarshal(t.Function.Parameters, &params); err != nil {
				return nil, false
			}
		}
		if _, ok := params["additionalProperties"]; !ok {
			// Arguments are the declared parameters only (as OpenAI's
			// strict tools): an open object would let a model write
			// keys until max_tokens.
			params["additionalProperties"] = false
		}
		branches = append(branches, map[string]any{"type": "object", "additionalProperties": false, "required": []string{"name", args},
			"properties": map[string]any{"name": map[string]any{"const": t.Function.Name}, args: params}})
	}
	if len(branches) == 0 {
		return nil, false
	}
	raw, err := json.Marshal(map[string]any{"anyOf": branches})
	if err != nil {
		return nil, false
	}
	sc, err := engine.CompileSchema(raw, false)
	return sc, err == nil
}

// toolCallOpening is what the prompt holds of a forced call written under
// toolCallSchema (the thinking block closed, Hermes's opening tag), and the
// text that closes the call once its object is complete.
func toolCallOpening(th chat.Thinking, f chat.Family, inThinking bool) (prefill, closing string) {
	if inThinking {
		prefill = th.Close + "\n\n"
	}
	if f == chat.FamilyHermes {
		return prefill + "<tool_call>\n", "\n</tool_call>"
	}
	return prefill, ""
}

// toolPrefill is the start of a forced tool call, written into the prompt
// (after closing the thinking block the prompt left open).
func toolPrefill(th chat.Thinking, f chat.Family, name string, inThinking bool) string {
	p := ""
	if inThinking {
		p = th.Close + "\n\n"
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
func (b *Backend) checkContext(prompt []int32, maxTokens int, param string) *api.Error {
	ctx := b.m.Engine.Context()
	if len(prompt) >= ctx {
		return api.ContextLengthExceeded(param, ctx, len(prompt), 0)
	}
	if maxTokens > 0 && len(prompt)+maxTokens > ctx {
		return api.ContextLengthExceeded(param, ctx, len(prompt), maxTokens)
	}
	return nil
}

// convertMessages turns checked request messages into chat messages, with
// each image part as a text part holding mediaMarker, and returns the
// images in order.
func convertMessages(in []api.Message) ([]chat.Message, []imageRef, *api.Error) {
	out := make([]chat.Message, 0, len(in))
	var images []imageRef
	for i, m := range in {
		p := fmt.Sprintf("messages[%d]", i)
		cm := chat.Message{Role: backend.Roles[m.Role], Name: m.Name, ToolCallID: m.ToolCallID}
		switch {
		case m.Content.IsParts:
			cm.Parts = []chat.Part{}
			for k, part := range m.Content.Parts {
				switch part.Type {
				case "text":
					cm.Parts = append(cm.Parts, chat.Part{Type: "text", Text: part.Text})
				case "image_url":
					param := fmt.Sprintf("%s.content[%d].image_url", p, k)
					if cm.Role != "user" {
						return nil, nil, api.InvalidRequest(api.CodeInvalidValue, param, "Invalid '%s': images are only allowed in user messages.", param)
					}
					url, ok := imageURL(part.ImageURL)
					if !ok {
						return nil, nil, api.InvalidRequest(api.CodeMissingParameter, param+".url", "Missing required parameter: '%s.url'.", param)
					}
					images = append(images, imageRef{message: i, part: k, url: url})
					cm.Parts = append(cm.Parts, chat.Part{Type: "text", Text: mediaMarker})
				default:
					return nil, nil, api.Unsupported(fmt.Sprintf("%s.content[%d].type", p, k), "Content parts of type %q are not supported (only text and image_url).", part.Type)
				}
			}
		case m.Content.IsNull:
		default:
			cm.Content = m.Content.Text
		}
		for _, tc := range m.ToolCalls {
			cm.ToolCalls = append(cm.ToolCalls, chat.ToolCall{ID: tc.ID, Type: "function", Name: tc.Function.Name, Arguments: tc.Function.Arguments})
		}
		switch {
		case m.ReasoningContent != nil:
			cm.Reasoning = *m.ReasoningContent
		case m.Reasoning != nil:
			cm.Reasoning = *m.Reasoning
		}
		out = append(out, cm)
	}
	return out, images, nil
}

func convertTools(in []api.Tool) []chat.Tool {
	var out []chat.Tool
	for _, t := range in {
		out = append(out, chat.Tool{Type: "function", Function: chat.ToolFunction{Name: t.Function.Name, Description: t.Function.Description, Parameters: t.Function.Parameters}})
	}
	return out
}

// engineRequest is the engine request of a job, but for its prompt.
func (b *Backend) engineRequest(sp sampling, applied effort.Applied) engine.Request {
	r := engine.Request{MaxTokens: sp.maxTokens, Sampling: sp.params, Logprobs: sp.logprobs, TopLogprobs: sp.topLogprobs, IgnoreEOS: sp.ignoreEOS,
		Thinking: b.thinkingFor(applied.ThinkingBudget)}
	if applied.ExpertsPerToken != nil {
		r.ExpertsUsed = *applied.ExpertsPerToken
	}
	return r
}
