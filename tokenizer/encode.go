package tokenizer

import "strings"

// fragment is a piece of the input: a special token already recognised, or
// raw text still to be tokenized.
type fragment struct {
	tok  int32 // NoToken for raw text
	text string
}

// asciiSpace is what C's isspace accepts (llama.cpp strips it around
// special tokens with the lstrip/rstrip attributes).
const asciiSpace = " \t\n\v\f\r"

// partition splits text on the special tokens it contains, longest token
// first (llama.cpp's tokenizer_st_partition). User-defined tokens are always
// split out; control and unknown tokens only with parseSpecial.
func (t *Tokenizer) partition(text string, parseSpecial bool) []fragment {
	if text == "" {
		return nil
	}
	frags := []fragment{{tok: NoToken, text: text}}
	var next []fragment
	for _, id := range t.special {
		attr := t.attrs[id]
		if !parseSpecial && attr&(attrControl|attrUnknown) != 0 {
			continue
		}
		st := t.text[id]
		if !strings.Contains(text, st) {
			continue // every raw fragment is a substring of text
		}
		next = next[:0]
		for _, f := range frags {
			if f.tok != NoToken {
				next = append(next, f)
				continue
			}
			rest := f.text
			for {
				i := strings.Index(rest, st)
				if i < 0 {
					if rest != "" {
						next = append(next, fragment{tok: NoToken, text: rest})
					}
					break
				}
				left := rest[:i]
				if attr&attrLStrip != 0 {
					left = strings.TrimRight(left, asciiSpace)
				}
				if left != "" {
					next = append(next, fragment{tok: NoToken, text: left})
				}
				next = append(next, fragment{tok: id})
				rest = rest[i+len(st):]
				if attr&attrRStrip != 0 {
					rest = strings.TrimLeft(rest, asciiSpace)
				}
			}
		}
		frags, next = next, frags
	}
	return frags
}

// Encode tokenizes text as llama.cpp's llama_tokenize does. With addSpecial
// the BOS/EOS tokens are added as the vocabulary asks (for WordPiece: the
// CLS and SEP tokens); with parseSpecial the text of control tokens (such as
// "<|im_start|>") is recognised as those tokens rather than tokenized as
// text. User-defined tokens are recognised either way.
func (t *Tokenizer) Encode(text string, addSpecial, parseSpecial bool) []int32 {
	frags := t.partition(text, parseSpecial)
	out := make([]int32, 0, len(text)/3+4)
	var s session
	switch t.kind {
	case kindSPM:
		if addSpecial && t.addBOS {
			out = append(out, t.bos)
		}
		prevSpecial := true // the first fragment gets the space prefix
		for _, f := range frags {
			if f.tok != NoToken {
				out = append(out, f.tok)
				prevSpecial = true
				continue
			}
			s.piece = s.piece[:0]
			if t.addSpacePrefix && prevSpecial {
				s.piece = append(s.piece, "\u2581"...)
			}
			s.piece = appendEscaped(s.piece, f.text)
			out = t.spm(&s, s.piece, out)
			prevSpecial = false
		}
		if addSpecial && t.addEOS {
			out = append(out, t.eos)
		}
	case kindBPE:
		if addSpecial && t.addBOS {
			out = append(out, t.bos)
		}
		var buf []byte
		for _, f := range frags {
			if f.tok != NoToken {
				out = append(out, f.tok)
				continue
			}
			text := f.text
			if t.escapeSpaces {
				text = string(appendEscaped(buf[:0], text))
			}
			t.pre.split(text, s.cpts, func(piece []rune) {
				s.piece = appendPiece(s.piece[:0], piece, !t.pre.cfg.rawUTF8)
				out = t.bpeWordCached(&s, s.piece, out)
			})
		}
		if addSpecial && t.addEOS {
			out = append(out, t.eos)
		}
	case kindWPM:
		if addSpecial {
			out = append(out, t.bos)
		}
		for _, f := range frags {
			if f.tok != NoToken {
				out = append(out, f.tok)
				continue
			}
			out = t.wpm(f.text, out)
		}
		if addSpecial {
			out = append(out, t.sep)
		}
	}
	return out
}

// appendEscaped appends text with every space replaced by ▁ (U+2581).
func appendEscaped(dst []byte, text string) []byte {
	for {
		i := strings.IndexByte(text, ' ')
		if i < 0 {
			return append(dst, text...)
		}
		dst = append(dst, text[:i]...)
		dst = append(dst, "\u2581"...)
		text = text[i+1:]
	}
}

// wpm tokenizes one fragment with WordPiece as llama.cpp's llm_tokenizer_wpm
// does: normalise and split into words, then take the longest token at each
// position of "▁"+word; a word with any position no token starts at becomes
// the unknown token.
func (t *Tokenizer) wpm(text string, out []int32) []int32 {
	for _, word := range t.wpmWords(text) {
		w := "\u2581" + word
		n := len(w)
		mark := len(out)
		for i := 0; i < n; i++ {
			match := false
			for j := min(n, i+t.maxTokenLen+1); j > i; j-- {
				if id, ok := t.ids[w[i:j]]; ok {
					out = append(out, id)
					match = true
					i = j - 1
					break
				}
			}
			if !match {
				out = out[:mark]
				break
			}
		}
		if len(out) == mark && t.unk != NoToken {
			out = append(out, t.unk)
		}
	}
	return out
}

// wpmWords is llama.cpp's WPM preprocessing (BERT's normaliser and
// pre-tokenizer): optionally strip accents (first code point of the NFD
// form, dropping combining marks) and lowercase, drop control characters,
// split on whitespace, and make each punctuation character, ASCII symbol and
// CJK ideograph a word of its own.
func (t *Tokenizer) wpmWords(text string) []string {
	cpts := decodeCpts(text, nil)
	var words []string
	var cur []byte
	flush := func() {
		if len(cur) > 0 {
			words = append(words, string(cur))
			cur = cur[:0]
		}
	}
	for _, r := range cpts {
		if t.stripAccents {
			r = nfdFirst(r)
		}
		f := cptFlags(r)
		if f&cfWhitespace != 0 {
			flush()
			continue
		}
		if r == 0 || r == 0xFFFD || f&cfControl != 0 {
			continue
		}
		if t.stripAccents && f&cfAccentMark != 0 {
			continue
		}
		lr := r
		if t.lowercase {
			lr = toLower(r)
		}
		if f&cfPunctuation != 0 || (r < 0x7F && f&cfSymbol != 0) || isChineseChar(r) {
			flush()
			words = append(words, string(appendCpt(nil, lr)))
			continue
		}
		cur = appendCpt(cur, lr)
	}
	flush()
	return words
}

// isChineseChar reports whether r is in the CJK ranges BERT splits into
// single-character words (with the same 0x2B920 typo as HF's Rust code).
func isChineseChar(r rune) bool {
	return (r >= 0x4E00 && r <= 0x9FFF) ||
		(r >= 0x3400 && r <= 0x4DBF) ||
		(r >= 0x20000 && r <= 0x2A6DF) ||
		(r >= 0x2A700 && r <= 0x2B73F) ||
		(r >= 0x2B740 && r <= 0x2B81F) ||
		(r >= 0x2B920 && r <= 0x2CEAF) ||
		(r >= 0xF900 && r <= 0xFAFF) ||
		(r >= 0x2F800 && r <= 0x2FA1F)
}
