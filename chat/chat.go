// Package chat renders conversations with a model's chat template and parses
// what the model writes back: reasoning blocks and tool calls.
//
// Templates are the Jinja sources found in a GGUF's tokenizer.chat_template.
// They are rendered by a small Jinja engine (chat/internal/jinja) that
// follows Python Jinja2 as Hugging Face transformers configures it
// (trim_blocks, lstrip_blocks, loop controls, a tojson filter with
// ensure_ascii=False, raise_exception and strftime_now globals); golden tests
// compare it byte for byte with Python renders of real templates.
package chat

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/stepflash/stepflash/chat/internal/jinja"
)

// Message is one conversation turn in OpenAI chat format.
type Message struct {
	// Role is "system", "user", "assistant" or "tool".
	Role string
	// Content is the text of the message. It is ignored when Parts is set.
	// (A JSON null content, as clients send with tool calls, is "".)
	Content string
	// Parts is the list form of content ([{type:"text", text:...}]). As in
	// vLLM, templates that loop over message content receive the list;
	// for the others the text parts are joined with "\n" into a string.
	Parts []Part
	// ToolCalls are the calls an assistant message made.
	ToolCalls []ToolCall
	// ToolCallID is the id of the call a tool message answers.
	ToolCallID string
	// Name is the function name of a tool message (or a participant name).
	Name string
	// Reasoning is an assistant message's reasoning text; it is passed to
	// templates as reasoning_content when non-empty.
	Reasoning string
}

// Part is one element of list-form message content.
type Part struct {
	// Type is the part type; "text" is the only one supported so far.
	Type string
	// Text is the text of a "text" part.
	Text string
}

// ToolCall is a function call made by the assistant.
type ToolCall struct {
	// ID identifies the call; tool messages refer to it.
	ID string
	// Type is "function".
	Type string
	// Name is the function name.
	Name string
	// Arguments is the JSON-encoded argument object.
	Arguments string
}

// Tool is an OpenAI function tool definition.
type Tool struct {
	// Type is "function" (the default when empty).
	Type string
	// Function describes the function.
	Function ToolFunction
}

// ToolFunction is the function part of a Tool.
type ToolFunction struct {
	Name        string
	Description string
	// Parameters is the JSON Schema of the arguments, passed to templates
	// with its key order intact.
	Parameters json.RawMessage
}

// RenderOptions are the variables a render passes besides the messages.
type RenderOptions struct {
	// Tools are offered to the model; nil renders tools as None.
	Tools []Tool
	// AddGenerationPrompt appends the opening of an assistant turn.
	AddGenerationPrompt bool
	// EnableThinking sets enable_thinking (Qwen3-style switch); nil leaves
	// it undefined, so the template's default applies.
	EnableThinking *bool
	// BOS and EOS are the bos_token and eos_token strings.
	BOS, EOS string
	// Extra holds further template variables (chat_template_kwargs):
	// Go values of the kinds encoding/json produces. They override BOS, EOS
	// and EnableThinking but may not set messages, tools or
	// add_generation_prompt.
	Extra map[string]any
	// Now is the time strftime_now formats; zero means time.Now().
	Now time.Time
}

// Template is a compiled chat template. It is safe for concurrent use.
type Template struct {
	src         string
	tmpl        *jinja.Template
	family      Family
	partsAsList bool
	eot         []string // see EOTStrings
}

// loopsOverContent matches a for loop over message content, the sign that a
// template accepts list-form content (vLLM's content format detection).
var loopsOverContent = regexp.MustCompile(`\{%[-+]?\s*for\s+\w+\s+in\s+[^%]*content`)

// NewTemplate compiles a chat template source.
func NewTemplate(src string) (*Template, error) {
	t, err := jinja.Compile(src)
	if err != nil {
		return nil, fmt.Errorf("chat template: %w", err)
	}
	tpl := &Template{src: src, tmpl: t, family: detectFamily(src), partsAsList: loopsOverContent.MatchString(src)}
	tpl.eot = tpl.findEOT()
	return tpl, nil
}

// ChatMLTemplate is the template FallbackTemplate uses: ChatML
// (<|im_start|>role\ncontent<|im_end|>\n), with Hermes-style tool calls
// rendered as <tool_call> blocks and tool results as <tool_response> blocks.
const ChatMLTemplate = `{%- if tools %}
{{- '<|im_start|>system\n' }}
{%- if messages[0].role == 'system' %}
{{- messages[0].content + '\n\n' }}
{%- endif %}
{{- "# Tools\n\nYou may call one or more functions to assist with the user query.\n\nYou are provided with function signatures within <tools></tools> XML tags:\n<tools>" }}
{%- for tool in tools %}
{{- "\n" }}
{{- tool | tojson }}
{%- endfor %}
{{- "\n</tools>\n\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n" }}
{%- elif messages[0].role == 'system' %}
{{- '<|im_start|>system\n' + messages[0].content + '<|im_end|>\n' }}
{%- endif %}
{%- for message in messages %}
{%- if message.role == 'system' and loop.first %}
{%- elif message.role == 'tool' %}
{%- if loop.first or messages[loop.index0 - 1].role != 'tool' %}
{{- '<|im_start|>user' }}
{%- endif %}
{{- '\n<tool_response>\n' + message.content + '\n</tool_response>' }}
{%- if loop.last or messages[loop.index0 + 1].role != 'tool' %}
{{- '<|im_end|>\n' }}
{%- endif %}
{%- else %}
{{- '<|im_start|>' + message.role + '\n' + message.content }}
{%- for tool_call in message.tool_calls or [] %}
{%- if not loop.first or message.content %}
{{- '\n' }}
{%- endif %}
{{- '<tool_call>\n{"name": "' + tool_call.function.name + '", "arguments": ' + (tool_call.function.arguments | tojson) + '}\n</tool_call>' }}
{%- endfor %}
{{- '<|im_end|>\n' }}
{%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
{{- '<|im_start|>assistant\n' }}
{%- endif %}
`

var fallback = func() *Template {
	t, err := NewTemplate(ChatMLTemplate)
	if err != nil {
		panic(err)
	}
	return t
}()

// FallbackTemplate returns the ChatML template (ChatMLTemplate), for models
// whose GGUF has no tokenizer.chat_template.
func FallbackTemplate() *Template { return fallback }

// Source returns the template source.
func (t *Template) Source() string { return t.src }

// Family returns the tool-call format the template teaches the model,
// detected from the template source.
func (t *Template) Family() Family { return t.family }

// SupportsThinkingSwitch reports whether the template reads enable_thinking.
func (t *Template) SupportsThinkingSwitch() bool { return t.tmpl.ReferencesName("enable_thinking") }

// Render renders a conversation. Errors raised by the template
// (raise_exception, using an undefined value as an object, type errors) are
// returned, never panics.
func (t *Template) Render(msgs []Message, opts RenderOptions) (string, error) {
	vars := map[string]jinja.Value{
		"bos_token": opts.BOS,
		"eos_token": opts.EOS,
	}
	if opts.EnableThinking != nil {
		vars["enable_thinking"] = *opts.EnableThinking
	}
	for k, v := range opts.Extra {
		switch k {
		case "messages", "tools", "add_generation_prompt":
			return "", fmt.Errorf("chat template: Extra may not set %q", k)
		}
		vars[k] = jinja.FromGo(v)
	}
	ml := &jinja.List{Items: make([]jinja.Value, 0, len(msgs))}
	for _, m := range msgs {
		ml.Items = append(ml.Items, messageValue(m, t.partsAsList))
	}
	vars["messages"] = ml
	vars["add_generation_prompt"] = opts.AddGenerationPrompt
	if opts.Tools != nil {
		tl := &jinja.List{}
		for _, tool := range opts.Tools {
			tv, err := toolValue(tool)
			if err != nil {
				return "", err
			}
			tl.Items = append(tl.Items, tv)
		}
		vars["tools"] = tl
	} else {
		vars["tools"] = nil
	}
	now := time.Now
	if !opts.Now.IsZero() {
		now = func() time.Time { return opts.Now }
	}
	vars["strftime_now"] = jinja.StrftimeNow(now)
	out, err := t.tmpl.Render(vars)
	if err != nil {
		var te *jinja.TemplateError
		if errors.As(err, &te) {
			return "", fmt.Errorf("chat template raised: %s", te.Msg)
		}
		return "", fmt.Errorf("chat template: %w", err)
	}
	return out, nil
}

func messageValue(m Message, partsAsList bool) *jinja.Dict {
	d := jinja.NewDict()
	d.Set("role", m.Role)
	switch {
	case m.Parts != nil && !partsAsList:
		var texts []string
		for _, p := range m.Parts {
			if p.Type == "text" {
				texts = append(texts, p.Text)
			}
		}
		d.Set("content", strings.Join(texts, "\n"))
	case m.Parts != nil:
		l := &jinja.List{Items: make([]jinja.Value, 0, len(m.Parts))}
		for _, p := range m.Parts {
			pd := jinja.NewDict()
			pd.Set("type", p.Type)
			if p.Type == "text" {
				pd.Set("text", p.Text)
			}
			l.Items = append(l.Items, pd)
		}
		d.Set("content", l)
	default:
		d.Set("content", m.Content)
	}
	if len(m.ToolCalls) > 0 {
		l := &jinja.List{}
		for _, tc := range m.ToolCalls {
			cd := jinja.NewDict()
			cd.Set("id", tc.ID)
			typ := tc.Type
			if typ == "" {
				typ = "function"
			}
			cd.Set("type", typ)
			fd := jinja.NewDict()
			fd.Set("name", tc.Name)
			// Like vLLM: templates expect arguments as a mapping.
			var args jinja.Value = tc.Arguments
			if v, err := jinja.FromJSON([]byte(tc.Arguments)); err == nil {
				args = v
			}
			fd.Set("arguments", args)
			cd.Set("function", fd)
			l.Items = append(l.Items, cd)
		}
		d.Set("tool_calls", l)
	}
	if m.ToolCallID != "" {
		d.Set("tool_call_id", m.ToolCallID)
	}
	if m.Name != "" {
		d.Set("name", m.Name)
	}
	if m.Reasoning != "" {
		d.Set("reasoning_content", m.Reasoning)
	}
	return d
}

func toolValue(t Tool) (*jinja.Dict, error) {
	typ := t.Type
	if typ == "" {
		typ = "function"
	}
	d := jinja.NewDict()
	d.Set("type", typ)
	f := jinja.NewDict()
	f.Set("name", t.Function.Name)
	if t.Function.Description != "" {
		f.Set("description", t.Function.Description)
	}
	if len(t.Function.Parameters) > 0 {
		p, err := jinja.FromJSON(t.Function.Parameters)
		if err != nil {
			return nil, fmt.Errorf("tool %s: parameters: %w", t.Function.Name, err)
		}
		f.Set("parameters", p)
	}
	d.Set("function", f)
	return d, nil
}
