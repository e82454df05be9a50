package chat

import "strings"

// Family is a model family's tool-call output format.
type Family int

const (
	// FamilyNone: the template teaches no tool-call format; output is
	// content (and <think> reasoning) only.
	FamilyNone Family = iota
	// FamilyHermes: Qwen / Hermes style,
	// <tool_call>\n{"name": ..., "arguments": {...}}\n</tool_call>, possibly
	// several.
	FamilyHermes
	// FamilyLlama3: Llama 3.x JSON, {"name": ..., "parameters": {...}} as the
	// whole reply, or after <|python_tag|>.
	FamilyLlama3
	// FamilyMistral: [TOOL_CALLS][{"name": ..., "arguments": {...}}] or the
	// newer [TOOL_CALLS]name[ARGS]{...} form.
	FamilyMistral
)

// String returns the family name.
func (f Family) String() string {
	switch f {
	case FamilyHermes:
		return "hermes"
	case FamilyLlama3:
		return "llama3"
	case FamilyMistral:
		return "mistral"
	}
	return "none"
}

// detectFamily guesses the tool-call format from markers in the template.
func detectFamily(src string) Family {
	switch {
	case strings.Contains(src, "<tool_call>"):
		return FamilyHermes
	case strings.Contains(src, "[TOOL_CALLS]"):
		return FamilyMistral
	case strings.Contains(src, "<|python_tag|>"),
		strings.Contains(src, "<|start_header_id|>") && strings.Contains(src, `"parameters"`):
		return FamilyLlama3
	}
	return FamilyNone
}
