package tokenizer

// VocabSize returns the number of tokens in the vocabulary.
func (t *Tokenizer) VocabSize() int { return len(t.text) }

// Model returns the tokenizer model (tokenizer.ggml.model), e.g. "llama" or "gpt2".
func (t *Tokenizer) Model() string { return t.model }

// Pre returns the pre-tokenizer family a BPE vocabulary uses ("" for others).
func (t *Tokenizer) Pre() string {
	if t.pre == nil {
		return ""
	}
	return t.pre.cfg.name
}

// BOS returns the beginning-of-sequence token, or NoToken (-1).
func (t *Tokenizer) BOS() int32 { return t.bos }

// EOS returns the end-of-sequence token, or NoToken (-1).
func (t *Tokenizer) EOS() int32 { return t.eos }

// EOT returns the end-of-turn token, or NoToken (-1).
func (t *Tokenizer) EOT() int32 { return t.eot }

// UNK returns the unknown token, or NoToken (-1).
func (t *Tokenizer) UNK() int32 { return t.unk }

// SEP returns the separator token, or NoToken (-1).
func (t *Tokenizer) SEP() int32 { return t.sep }

// PAD returns the padding token, or NoToken (-1).
func (t *Tokenizer) PAD() int32 { return t.pad }

// AddBOS reports whether Encode with addSpecial prepends BOS.
func (t *Tokenizer) AddBOS() bool { return t.addBOS || t.kind == kindWPM }

// AddEOS reports whether Encode with addSpecial appends EOS.
func (t *Tokenizer) AddEOS() bool { return t.addEOS }

// IsEOG reports whether id ends generation: EOS, EOT, EOM and the other
// tokens llama.cpp treats so (e.g. <|im_end|>, <|endoftext|>, <|eot_id|>,
// <end_of_turn>, and the FIM pad/repo/file-separator tokens).
func (t *Tokenizer) IsEOG(id int32) bool { return id != NoToken && t.eog[id] }

// EOGs returns the end-of-generation tokens in increasing order.
func (t *Tokenizer) EOGs() []int32 {
	var out []int32
	for id := range t.text {
		if t.eog[int32(id)] {
			out = append(out, int32(id))
		}
	}
	return out
}

// IsControl reports whether id is a control token (rendered empty by Piece).
func (t *Tokenizer) IsControl(id int32) bool {
	return id >= 0 && int(id) < len(t.attrs) && t.attrs[id]&attrControl != 0
}

// TokenText returns the vocabulary string of a token ("" if out of range).
func (t *Tokenizer) TokenText(id int32) string {
	if id < 0 || int(id) >= len(t.text) {
		return ""
	}
	return t.text[id]
}

// Lookup returns the token whose vocabulary string is exactly text (for
// special tokens such as "<think>").
func (t *Tokenizer) Lookup(text string) (int32, bool) {
	id, ok := t.ids[text]
	return id, ok
}
