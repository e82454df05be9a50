package tokenizer

import (
	"strings"
	"unicode/utf8"
)

// buildPieces computes every token's text as llama.cpp's token_to_piece does
// with special rendering on (the cache llama.cpp builds at load time).
func (t *Tokenizer) buildPieces() {
	t.pieces = make([]string, len(t.text))
	var buf []byte
	for id, text := range t.text {
		attr := t.attrs[id]
		switch {
		case attr&(attrUnknown|attrControl|attrUserDefined) != 0:
			t.pieces[id] = text
		case attr&attrNormal != 0:
			if t.kind == kindBPE && !t.escapeSpaces {
				buf = decodeByteLevel(buf[:0], text)
				t.pieces[id] = string(buf)
			} else {
				t.pieces[id] = strings.ReplaceAll(text, "\u2581", " ")
			}
		case attr&attrByte != 0 && t.kind != kindWPM:
			t.pieces[id] = string([]byte{tokenByte(text)})
		}
	}
}

// tokenByte is the byte a <0xXX> byte token stands for (strtol of the two
// characters after "<0x", as llama.cpp reads it).
func tokenByte(text string) byte {
	var v byte
	for i := 3; i < 5 && i < len(text); i++ {
		c := text[i]
		switch {
		case c >= '0' && c <= '9':
			v = v<<4 | (c - '0')
		case c >= 'a' && c <= 'f':
			v = v<<4 | (c - 'a' + 10)
		case c >= 'A' && c <= 'F':
			v = v<<4 | (c - 'A' + 10)
		default:
			return v
		}
	}
	return v
}

// decodeByteLevel undoes GPT-2's byte-to-unicode mapping (llama.cpp's
// llama_decode_text), marking characters outside the mapping as it does.
func decodeByteLevel(dst []byte, text string) []byte {
	for _, r := range decodeCpts(text, nil) {
		if b, ok := runeToByte[r]; ok {
			dst = append(dst, b)
			continue
		}
		dst = append(dst, "[UNK_BYTE_0x"...)
		for _, c := range appendCpt(nil, r) {
			dst = append(dst, hexDigits[c>>4]|0x20, hexDigits[c&15]|0x20)
		}
		dst = append(dst, text...)
		dst = append(dst, ']')
	}
	return dst
}

// Piece returns the bytes one token stands for, as llama.cpp's
// llama_token_to_piece without special rendering: SentencePiece's ▁ becomes a
// space, byte tokens <0xNN> that byte, byte-level BPE symbols their bytes;
// control and unknown tokens give nothing. A piece can be part of a UTF-8
// sequence; see StreamDecoder.
func (t *Tokenizer) Piece(id int32) []byte {
	if id < 0 || int(id) >= len(t.pieces) || t.attrs[id]&(attrUnknown|attrControl) != 0 {
		return nil
	}
	return []byte(t.pieces[id])
}

// PieceSpecial is Piece with special rendering: control and unknown tokens
// give their text (e.g. "<|im_end|>").
func (t *Tokenizer) PieceSpecial(id int32) []byte {
	if id < 0 || int(id) >= len(t.pieces) {
		return nil
	}
	return []byte(t.pieces[id])
}

func (t *Tokenizer) piece(id int32, special bool) string {
	if id < 0 || int(id) >= len(t.pieces) {
		return ""
	}
	if !special && t.attrs[id]&(attrUnknown|attrControl) != 0 {
		return ""
	}
	return t.pieces[id]
}

// Decode turns token ids back into text as llama.cpp's detokenizer does
// (without special rendering): the pieces concatenated, the space a
// SentencePiece vocab prefixes removed from the first one, and the
// "clean up tokenization spaces" rules applied where the vocab asks for them.
// The result holds whatever bytes the tokens stand for, which need not be
// valid UTF-8.
func (t *Tokenizer) Decode(ids []int32) string {
	return t.Detokenize(ids, false, false)
}

// Detokenize is llama_detokenize: with removeSpecial a leading BOS and a
// trailing EOS are dropped (when the vocab adds them); with unparseSpecial
// control tokens are rendered as their text.
func (t *Tokenizer) Detokenize(ids []int32, removeSpecial, unparseSpecial bool) string {
	removeSpace := t.addSpacePrefix
	if removeSpecial && t.addBOS && len(ids) > 0 && ids[0] == t.bos {
		removeSpace = false
		ids = ids[1:]
	}
	if removeSpecial && t.addEOS && len(ids) > 0 && ids[len(ids)-1] == t.eos {
		ids = ids[:len(ids)-1]
	}
	var b []byte
	for _, id := range ids {
		p := t.piece(id, unparseSpecial)
		if removeSpace && strings.HasPrefix(p, " ") {
			p = p[1:]
		}
		removeSpace = false
		b = append(b, p...)
	}
	if t.cleanSpaces {
		b = cleanSpaces(b)
	}
	return string(b)
}

// cleanSpaces applies llama.cpp's three clean-up passes (HF's
// clean_up_tokenization_spaces): drop the space before ? ! . , ; drop the
// spaces around a lone apostrophe; drop the space before 's 'm 're 've.
func cleanSpaces(text []byte) []byte {
	if len(text) == 0 {
		return text
	}
	// pass 1: " ?", " !", " .", " ,"
	n := 1
	for i := 1; i < len(text); i++ {
		x := text[i]
		if text[i-1] == ' ' && (x == '?' || x == '!' || x == '.' || x == ',') {
			n--
		}
		text[n] = x
		n++
	}
	text = text[:n]
	// pass 2: " ' " -> "'"
	n = 1
	for i := 1; i < len(text); i++ {
		x := text[i]
		if x == '\'' && i+1 < len(text) && text[i-1] == ' ' && text[i+1] == ' ' {
			n--         // drop the space before
			i++         // and skip the one after,
			text[i] = 0 // which llama.cpp blanks so that it cannot match again
		}
		text[n] = x
		n++
	}
	text = text[:n]
	// pass 3: " 's", " 'm", " 're", " 've"
	n = 1
	for i := 1; i < len(text); i++ {
		x := text[i]
		if text[i-1] == ' ' && x == '\'' && i+1 < len(text) {
			x1 := text[i+1]
			switch {
			case x1 == 's' || x1 == 'm':
				n--
			case x1 == 't' || x1 == 'd':
			case i+2 < len(text):
				x2 := text[i+2]
				if (x1 == 'r' && x2 == 'e') || (x1 == 'v' && x2 == 'e') {
					n--
				}
			}
		}
		text[n] = x
		n++
	}
	return text[:n]
}

// StreamDecoder turns generated tokens into text one at a time without ever
// emitting a broken UTF-8 sequence: bytes that may still become a valid
// character are held until they do; bytes that cannot are replaced by U+FFFD.
// It renders tokens as Piece does and, unlike Decode, keeps every space (the
// tokens follow a prompt, so no leading space is removed) and applies no
// clean-up rules.
type StreamDecoder struct {
	t       *Tokenizer
	pending []byte
}

// NewStreamDecoder returns a StreamDecoder for tokens of this vocabulary.
func (t *Tokenizer) NewStreamDecoder() *StreamDecoder {
	return &StreamDecoder{t: t}
}

// Push adds one token and returns the text it completes (possibly empty).
func (d *StreamDecoder) Push(id int32) string {
	d.pending = append(d.pending, d.t.piece(id, false)...)
	return d.drain(false)
}

// Flush returns whatever is held (an incomplete sequence as U+FFFD) and
// resets the decoder.
func (d *StreamDecoder) Flush() string {
	return d.drain(true)
}

// drain returns the valid text at the front of pending, with invalid
// sequences replaced by U+FFFD (one per maximal ill-formed subpart), keeping
// an incomplete sequence at the end unless final is set.
func (d *StreamDecoder) drain(final bool) string {
	p := d.pending
	var out strings.Builder
	i := 0
	for i < len(p) {
		if p[i] < utf8.RuneSelf {
			out.WriteByte(p[i])
			i++
			continue
		}
		r, size := utf8.DecodeRune(p[i:])
		if r != utf8.RuneError || size > 1 {
			out.Write(p[i : i+size])
			i += size
			continue
		}
		k := incompleteLen(p[i:])
		if k > 0 && i+k == len(p) && !final {
			break // may still be completed by the next token
		}
		out.WriteRune(utf8.RuneError)
		i += max(k, 1)
	}
	n := copy(d.pending, p[i:])
	d.pending = d.pending[:n]
	return out.String()
}

// incompleteLen returns how many leading bytes of p form a proper prefix of
// a valid UTF-8 sequence (0 if p[0] cannot start one).
func incompleteLen(p []byte) int {
	k := 0
	for k < len(p) && k < utf8.UTFMax-1 && !utf8.FullRune(p[:k+1]) {
		k++
	}
	return k
}
