package chat

import "strings"

// Thinking is a model family's reasoning block as text: its tags, and what
// is written to close a block early when a thinking budget runs out. An
// engine that enforces budgets gets these from the template (as tokens),
// never from a constant of its own.
type Thinking struct {
	// Open and Close are the tags, e.g. <think> and </think>.
	Open, Close string
	// HandOver is written when a budget is spent after some thinking; it
	// ends with Close and leaves the model to answer.
	HandOver string
	// CloseEmpty is written when the budget is 0: no thinking to hand over
	// from, so just the empty block's ending. It ends with Close.
	CloseEmpty string
}

// DefaultThinking is the Qwen3 / DeepSeek-R1 block: <think>…</think>, with
// Qwen3's recommended hand-over sentence, and the ending of an empty block as
// Qwen3's template writes it with thinking off.
var DefaultThinking = Thinking{
	Open:       "<think>",
	Close:      "</think>",
	HandOver:   "\n\nConsidering the limited time, I have to give the solution based on the thinking directly now.\n</think>\n\n",
	CloseEmpty: "\n\n</think>\n\n",
}

// Thinking returns the reasoning block of the template's model family. Every
// family stepflash parses writes <think> blocks, so this is DefaultThinking
// for now; a family with other tags gets its own value here, and the stream
// parser follows it.
func (t *Template) Thinking() Thinking { return DefaultThinking }

// PromptStartsInThinking reports whether a rendered prompt leaves the model
// inside a reasoning block: it ends with an opened <think> tag (some
// templates put it in the generation prompt), so the model's output begins
// with reasoning and only closes it with </think>.
func PromptStartsInThinking(prompt string) bool {
	p := strings.TrimRight(prompt, " \t\r\n")
	return strings.HasSuffix(p, DefaultThinking.Open)
}
