package chat

import (
	"regexp"
	"strings"
)

// eotProbe is the assistant text rendered to find a template's end of turn.
const (
	eotProbe     = "stepflashprobeanswer"
	eotProbeUser = "stepflashprobequestion"
	eotEOS       = "\x00eos\x00" // stands for eos_token: the vocabulary's own end token
)

// specialTag matches a special-token-like marker: <|im_end|>, <end_of_turn>,
// <turn|>, </s>, <｜end▁of▁sentence｜> (no whitespace, at most 64 bytes).
var specialTag = regexp.MustCompile(`<[^<>\s]{1,62}>`)

// EOTStrings returns the marker the template writes to end an assistant
// turn, e.g. "<|im_end|>" (ChatML, Qwen), "<|eot_id|>" (Llama 3),
// "<end_of_turn>" (Gemma 3), "<|return|>" (gpt-oss), "<|user|>" (GLM, whose
// turns end where the next begins). It is found by rendering a short
// conversation: the last tag after the final assistant message, or, when
// nothing follows it, the first tag after an assistant message followed by
// a user one. It is nil when the template ends turns with eos_token (the
// vocabulary's end-of-generation token) or writes no tag.
//
// A server stops generation at these strings as text, for vocabularies that
// lack the special token (so a model writes the marker as plain text); where
// the token exists it is an end-of-generation token and renders as nothing.
func (t *Template) EOTStrings() []string {
	if t.eot == nil {
		return nil
	}
	return append([]string(nil), t.eot...)
}

// findEOT computes EOTStrings' result for a compiled template.
func (t *Template) findEOT() []string {
	opts := RenderOptions{EOS: eotEOS}
	user := Message{Role: "user", Content: eotProbeUser}
	asst := Message{Role: "assistant", Content: eotProbe}
	after := func(msgs []Message) (string, bool) {
		out, err := t.Render(msgs, opts)
		if err != nil {
			return "", false
		}
		i := strings.Index(out, eotProbe)
		if i < 0 {
			return "", false
		}
		return out[i+len(eotProbe):], true
	}
	keep := func(tag string) []string {
		if tag == "" || strings.Contains(tag, eotEOS) {
			return nil
		}
		return []string{tag}
	}
	rest, ok := after([]Message{user, asst})
	if !ok {
		return nil
	}
	if rest = strings.TrimSpace(rest); rest != "" {
		if strings.HasPrefix(rest, eotEOS) {
			return nil
		}
		tags := specialTag.FindAllString(rest, -1)
		if len(tags) == 0 {
			return nil
		}
		return keep(tags[len(tags)-1])
	}
	rest, ok = after([]Message{user, asst, {Role: "user", Content: eotProbeUser + "2"}})
	if !ok {
		return nil
	}
	if j := strings.Index(rest, eotProbeUser); j >= 0 {
		rest = rest[:j]
	}
	return keep(specialTag.FindString(rest))
}
