package chat

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Delta is one piece of parsed model output, in OpenAI streaming terms.
// Exactly one of its fields is set.
type Delta struct {
	// Content is answer text.
	Content string
	// Reasoning is reasoning text (reasoning_content).
	Reasoning string
	// ToolCall is a piece of a tool call.
	ToolCall *ToolCallDelta
}

// ToolCallDelta is a piece of a tool call. The first delta of a call carries
// its Index, ID, Type and Name; later ones carry the same Index and a
// fragment of Arguments (a JSON string once all fragments are joined).
type ToolCallDelta struct {
	Index     int
	ID        string
	Type      string
	Name      string
	Arguments string
}

// Result is a whole parsed reply.
type Result struct {
	Content   string
	Reasoning string
	ToolCalls []ToolCall
}

// Parse parses a complete model reply. startsInThinking says the prompt
// left the model inside a <think> block (see PromptStartsInThinking).
func Parse(text string, family Family, startsInThinking bool) Result {
	p := NewStreamParser(family, startsInThinking)
	ds := p.Push(text)
	ds = append(ds, p.Finish()...)
	return Collect(ds)
}

// Collect joins deltas into a Result.
func Collect(ds []Delta) Result {
	var r Result
	var content, reasoning strings.Builder
	for _, d := range ds {
		content.WriteString(d.Content)
		reasoning.WriteString(d.Reasoning)
		if tc := d.ToolCall; tc != nil {
			for len(r.ToolCalls) <= tc.Index {
				r.ToolCalls = append(r.ToolCalls, ToolCall{})
			}
			c := &r.ToolCalls[tc.Index]
			if tc.ID != "" {
				c.ID = tc.ID
			}
			if tc.Type != "" {
				c.Type = tc.Type
			}
			c.Name += tc.Name
			c.Arguments += tc.Arguments
		}
	}
	r.Content = content.String()
	r.Reasoning = reasoning.String()
	return r
}

type mode int

const (
	modeContent   mode = iota
	modeReasoning      // inside <think> ... </think>
	modeToolXML        // inside <tool_call> ... </tool_call>
	modeToEnd          // tool calls that run to the end of the reply
)

const (
	thinkOpen     = "<think>"  // DefaultThinking.Open
	thinkClose    = "</think>" // DefaultThinking.Close
	toolCallOpen  = "<tool_call>"
	toolCallClose = "</tool_call>"
	pythonTag     = "<|python_tag|>"
	mistralTag    = "[TOOL_CALLS]"
)

// StreamParser splits streamed model output into content, reasoning and
// tool calls. It never emits text that may still turn out to be part of a
// tag: a possible tag prefix at the end of the input is held back until the
// next Push or Finish decides. Tool calls are emitted once complete; a tool
// call whose JSON does not parse is emitted as content, tags included.
// Whitespace around tags (after <think>, before </think>, between content
// and a tool call, at the end of the reply) is dropped.
type StreamParser struct {
	// NewID returns tool call ids; nil uses "call_" + 24 random
	// alphanumerics (9 alphanumerics for FamilyMistral, whose templates
	// require that).
	NewID func() string

	family  Family
	mode    mode
	buf     string          // input not yet decided
	partial string          // incomplete UTF-8 sequence at the end of input
	pending string          // trailing whitespace held back
	gap     string          // whitespace dropped before the current tag
	body    strings.Builder // tool call text being collected
	tag     string          // opening tag of the current tool call section
	trim    bool            // drop leading whitespace of the next text
	fresh   bool            // reasoning started without an explicit <think>
	started bool            // some content has been emitted
	ncalls  int
	done    bool
}

// NewStreamParser returns a parser for a reply in the given family's format.
// startsInThinking says the prompt ended inside a <think> block.
func NewStreamParser(family Family, startsInThinking bool) *StreamParser {
	p := &StreamParser{family: family}
	if startsInThinking {
		p.mode = modeReasoning
		p.trim = true
		p.fresh = true
	}
	return p
}

// Push adds streamed text and returns the deltas it decides.
func (p *StreamParser) Push(text string) []Delta {
	if p.done {
		return nil
	}
	p.buf += p.partial + text
	p.partial = ""
	if n := incompleteRune(p.buf); n > 0 {
		// Wait for the rest of a UTF-8 sequence split across pushes.
		p.partial = p.buf[len(p.buf)-n:]
		p.buf = p.buf[:len(p.buf)-n]
	}
	return p.process(false, nil)
}

// incompleteRune returns the length of an incomplete UTF-8 sequence at the
// end of s.
func incompleteRune(s string) int {
	for n := 1; n <= 3 && n <= len(s); n++ {
		c := s[len(s)-n]
		if c < 0x80 {
			return 0
		}
		if c >= 0xC0 { // leading byte
			if utf8.FullRuneInString(s[len(s)-n:]) {
				return 0
			}
			return n
		}
	}
	return 0
}

// Finish ends the reply and returns the remaining deltas.
func (p *StreamParser) Finish() []Delta {
	if p.done {
		return nil
	}
	p.buf += p.partial
	p.partial = ""
	ds := p.process(true, nil)
	p.done = true
	return ds
}

func (p *StreamParser) contentTags() []string {
	switch p.family {
	case FamilyHermes:
		return []string{thinkOpen, toolCallOpen}
	case FamilyLlama3:
		return []string{thinkOpen, pythonTag}
	case FamilyMistral:
		return []string{thinkOpen, mistralTag}
	}
	return []string{thinkOpen}
}

// partialSuffix returns the length of the longest suffix of s that is a
// proper prefix of one of tags.
func partialSuffix(s string, tags ...string) int {
	best := 0
	for _, t := range tags {
		for n := min(len(t)-1, len(s)); n > best; n-- {
			if strings.HasSuffix(s, t[:n]) {
				best = n
				break
			}
		}
	}
	return best
}

func splitTrailingSpace(s string) (string, string) {
	t := strings.TrimRightFunc(s, unicode.IsSpace)
	return t, s[len(t):]
}

// emitText emits content or reasoning text. At a tag boundary the held
// whitespace is moved to p.gap instead of being emitted.
func (p *StreamParser) emitText(ds []Delta, s string, reasoning, boundary bool) []Delta {
	if p.trim {
		s = strings.TrimLeftFunc(s, unicode.IsSpace)
		if s == "" {
			if boundary {
				p.gap = ""
			}
			return ds
		}
		p.trim = false
	}
	s = p.pending + s
	p.pending = ""
	var ws string
	s, ws = splitTrailingSpace(s)
	if boundary {
		p.gap = ws
	} else {
		p.pending = ws
	}
	if s == "" {
		return ds
	}
	if reasoning {
		p.fresh = false
		return append(ds, Delta{Reasoning: s})
	}
	p.started = true
	return append(ds, Delta{Content: s})
}

func (p *StreamParser) process(final bool, ds []Delta) []Delta {
	for {
		switch p.mode {
		case modeContent:
			if p.family == FamilyLlama3 && !p.started {
				t := strings.TrimLeftFunc(p.pending+p.buf, unicode.IsSpace)
				if t == "" && !final {
					if !p.trim {
						p.pending += p.buf
					}
					p.buf = ""
					return ds
				}
				if strings.HasPrefix(t, "{") {
					p.gap = ""
					p.pending = ""
					p.tag = ""
					p.body.Reset()
					p.buf = t
					p.mode = modeToEnd
					continue
				}
				if !final && strings.HasPrefix(pythonTag, t) {
					// Could still be <|python_tag|>.
					return ds
				}
			}
			tags := p.contentTags()
			at, tag := -1, ""
			for _, t := range tags {
				if i := strings.Index(p.buf, t); i >= 0 && (at < 0 || i < at) {
					at, tag = i, t
				}
			}
			if at >= 0 {
				ds = p.emitText(ds, p.buf[:at], false, true)
				p.buf = p.buf[at+len(tag):]
				p.tag = tag
				p.body.Reset()
				switch tag {
				case thinkOpen:
					p.mode = modeReasoning
					p.trim = true
				case toolCallOpen:
					p.mode = modeToolXML
				default:
					p.mode = modeToEnd
				}
				continue
			}
			keep := 0
			if !final {
				keep = partialSuffix(p.buf, tags...)
			}
			ds = p.emitText(ds, p.buf[:len(p.buf)-keep], false, false)
			p.buf = p.buf[len(p.buf)-keep:]
			if final {
				p.pending = ""
			}
			return ds

		case modeReasoning:
			if p.fresh {
				// A reply that starts in thinking may still repeat <think>.
				t := strings.TrimLeftFunc(p.buf, unicode.IsSpace)
				if strings.HasPrefix(t, thinkOpen) {
					p.buf = t[len(thinkOpen):]
					p.fresh = false
				} else if !final && strings.HasPrefix(thinkOpen, t) {
					return ds
				} else if t != "" {
					p.fresh = false
				}
			}
			if i := strings.Index(p.buf, thinkClose); i >= 0 {
				ds = p.emitText(ds, p.buf[:i], true, true)
				p.buf = p.buf[i+len(thinkClose):]
				p.mode = modeContent
				p.trim = true
				p.gap = ""
				continue
			}
			keep := 0
			if !final {
				keep = partialSuffix(p.buf, thinkClose)
			}
			ds = p.emitText(ds, p.buf[:len(p.buf)-keep], true, false)
			p.buf = p.buf[len(p.buf)-keep:]
			if final {
				p.pending = ""
			}
			return ds

		case modeToolXML:
			if i := strings.Index(p.buf, toolCallClose); i >= 0 {
				p.body.WriteString(p.buf[:i])
				p.buf = p.buf[i+len(toolCallClose):]
				ds = p.finishCalls(ds, toolCallClose)
				p.mode = modeContent
				continue
			}
			if final {
				p.body.WriteString(p.buf)
				p.buf = ""
				ds = p.finishCalls(ds, "")
				p.mode = modeContent
				continue
			}
			keep := partialSuffix(p.buf, toolCallClose)
			p.body.WriteString(p.buf[:len(p.buf)-keep])
			p.buf = p.buf[len(p.buf)-keep:]
			return ds

		case modeToEnd:
			p.body.WriteString(p.buf)
			p.buf = ""
			if final {
				ds = p.finishCalls(ds, "")
				p.mode = modeContent
				continue
			}
			return ds
		}
	}
}

// finishCalls parses the collected tool call text; on failure it is emitted
// as content, with its tags and the whitespace before it.
func (p *StreamParser) finishCalls(ds []Delta, closeTag string) []Delta {
	body := p.body.String()
	p.body.Reset()
	var calls []ToolCall
	ok := false
	switch p.tag {
	case toolCallOpen:
		var c ToolCall
		if c, ok = parseNameArgs([]byte(strings.TrimSpace(body))); ok {
			calls = []ToolCall{c}
		}
	case mistralTag:
		calls, ok = parseMistral(body)
	case pythonTag, "":
		calls, ok = parseJSONCalls(body)
	}
	if !ok {
		raw := p.gap + p.tag + body + closeTag
		p.gap = ""
		p.trim = false
		return p.emitText(ds, raw, false, false)
	}
	p.gap = ""
	p.trim = true
	for _, c := range calls {
		id := c.ID
		if id == "" {
			id = p.newID()
		}
		idx := p.ncalls
		p.ncalls++
		ds = append(ds,
			Delta{ToolCall: &ToolCallDelta{Index: idx, ID: id, Type: "function", Name: c.Name}},
			Delta{ToolCall: &ToolCallDelta{Index: idx, Arguments: c.Arguments}})
	}
	return ds
}

const idChars = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"

func randomID(n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = idChars[rand.IntN(len(idChars))]
	}
	return string(b)
}

func (p *StreamParser) newID() string {
	if p.NewID != nil {
		return p.NewID()
	}
	if p.family == FamilyMistral {
		return randomID(9)
	}
	return "call_" + randomID(24)
}

// argsString turns a decoded "arguments" value into the JSON string OpenAI
// returns: objects are kept as written; a string holding JSON is unwrapped.
func argsString(raw json.RawMessage) (string, bool) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return "{}", true
	}
	if raw[0] == '"' {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return "", false
		}
		s = strings.TrimSpace(s)
		if s == "" {
			return "{}", true
		}
		if !json.Valid([]byte(s)) {
			return "", false
		}
		return s, true
	}
	if raw[0] != '{' {
		return "", false
	}
	return string(raw), true
}

// parseNameArgs parses {"name": ..., "arguments"|"parameters": {...}}.
func parseNameArgs(data []byte) (ToolCall, bool) {
	var obj struct {
		Name       string          `json:"name"`
		Arguments  json.RawMessage `json:"arguments"`
		Parameters json.RawMessage `json:"parameters"`
		ID         string          `json:"id"`
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&obj); err != nil || obj.Name == "" || dec.More() {
		return ToolCall{}, false
	}
	if _, err := dec.Token(); err == nil {
		return ToolCall{}, false
	}
	a := obj.Arguments
	if a == nil {
		a = obj.Parameters
	}
	args, ok := argsString(a)
	if !ok {
		return ToolCall{}, false
	}
	return ToolCall{ID: obj.ID, Type: "function", Name: obj.Name, Arguments: args}, true
}

// parseJSONCalls parses Llama-3 style calls: one JSON object, a JSON array
// of objects, or objects separated by ';' or whitespace.
func parseJSONCalls(body string) ([]ToolCall, bool) {
	body = strings.TrimSpace(body)
	if body == "" {
		return nil, false
	}
	var raws []json.RawMessage
	if body[0] == '[' {
		if err := json.Unmarshal([]byte(body), &raws); err != nil || len(raws) == 0 {
			return nil, false
		}
	} else {
		dec := json.NewDecoder(strings.NewReader(body))
		for {
			var r json.RawMessage
			if err := dec.Decode(&r); err != nil {
				return nil, false
			}
			raws = append(raws, r)
			rest := strings.TrimLeft(body[dec.InputOffset():], " \t\r\n;")
			if rest == "" {
				break
			}
			dec = json.NewDecoder(strings.NewReader(rest))
			body = rest
		}
	}
	var calls []ToolCall
	for _, r := range raws {
		c, ok := parseNameArgs(r)
		if !ok {
			return nil, false
		}
		c.ID = ""
		calls = append(calls, c)
	}
	return calls, true
}

// parseMistral parses what follows [TOOL_CALLS]: a JSON array (or object)
// of {"name", "arguments"[, "id"]}, or name[ARGS]{...} / name[CALL_ID]id[ARGS]{...},
// with further calls each introduced by [TOOL_CALLS].
func parseMistral(body string) ([]ToolCall, bool) {
	var calls []ToolCall
	for _, seg := range strings.Split(body, mistralTag) {
		seg = strings.TrimSpace(seg)
		if seg == "" {
			return nil, false
		}
		switch seg[0] {
		case '[':
			var raws []json.RawMessage
			if err := json.Unmarshal([]byte(seg), &raws); err != nil || len(raws) == 0 {
				return nil, false
			}
			for _, r := range raws {
				c, ok := parseNameArgs(r)
				if !ok {
					return nil, false
				}
				calls = append(calls, c)
			}
		case '{':
			c, ok := parseNameArgs([]byte(seg))
			if !ok {
				return nil, false
			}
			calls = append(calls, c)
		default:
			name, args, found := strings.Cut(seg, "[ARGS]")
			if !found {
				return nil, false
			}
			id := ""
			if n, i, ok := strings.Cut(name, "[CALL_ID]"); ok {
				name, id = n, strings.TrimSpace(i)
			}
			name = strings.TrimSpace(name)
			if name == "" || strings.ContainsAny(name, " \t\n{}[]\"") {
				return nil, false
			}
			a, ok := argsString(json.RawMessage(args))
			if !ok || !json.Valid([]byte(a)) {
				return nil, false
			}
			calls = append(calls, ToolCall{ID: id, Type: "function", Name: name, Arguments: a})
		}
	}
	return calls, len(calls) > 0
}
