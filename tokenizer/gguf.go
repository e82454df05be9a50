package tokenizer

import (
	"errors"
	"math"

	"github.com/stepflash/stepflash/gguf"
)

// GGUF metadata keys of the vocabulary (llama.cpp's LLM_KV_TOKENIZER_*; the
// separator key really is spelled "seperator").
const (
	keyModel          = "tokenizer.ggml.model"
	keyPre            = "tokenizer.ggml.pre"
	keyTokens         = "tokenizer.ggml.tokens"
	keyScores         = "tokenizer.ggml.scores"
	keyTypes          = "tokenizer.ggml.token_type"
	keyMerges         = "tokenizer.ggml.merges"
	keyAddBOS         = "tokenizer.ggml.add_bos_token"
	keyAddEOS         = "tokenizer.ggml.add_eos_token"
	keyAddSep         = "tokenizer.ggml.add_sep_token"
	keyAddSpacePrefix = "tokenizer.ggml.add_space_prefix"
	keyLowercase      = "tokenizer.ggml.normalizer.lowercase"
	keyStripAccents   = "tokenizer.ggml.normalizer.strip_accents"
)

// VocabFromGGUF reads the tokenizer metadata of a GGUF file.
func VocabFromGGUF(f *gguf.File) (Vocab, error) {
	model, _ := f.String(keyModel)
	tokens, ok := f.Strings(keyTokens)
	if !ok {
		return Vocab{}, errors.New("tokenizer: no vocabulary (" + keyTokens + ") in the GGUF file")
	}
	v := NewVocab(model, tokens)
	v.Pre, _ = f.String(keyPre)
	v.Name, _ = f.String("general.name")
	v.Arch = f.Architecture()
	if s, ok := f.Float32s(keyScores); ok {
		v.Scores = s
	} else if s, ok := f.Int32s(keyScores); ok {
		v.Scores = make([]float32, len(s))
		for i, x := range s {
			v.Scores[i] = float32(x)
		}
	}
	v.Types, _ = f.Int32s(keyTypes)
	v.Merges, _ = f.Strings(keyMerges)
	for _, s := range []struct {
		key string
		dst *int32
	}{
		{"tokenizer.ggml.bos_token_id", &v.BOS},
		{"tokenizer.ggml.eos_token_id", &v.EOS},
		{"tokenizer.ggml.eot_token_id", &v.EOT},
		{"tokenizer.ggml.eom_token_id", &v.EOM},
		{"tokenizer.ggml.unknown_token_id", &v.UNK},
		{"tokenizer.ggml.seperator_token_id", &v.SEP},
		{"tokenizer.ggml.padding_token_id", &v.PAD},
		{"tokenizer.ggml.mask_token_id", &v.Mask},
		{"tokenizer.ggml.fim_pre_token_id", &v.FIMPre},
		{"tokenizer.ggml.fim_suf_token_id", &v.FIMSuf},
		{"tokenizer.ggml.fim_mid_token_id", &v.FIMMid},
		{"tokenizer.ggml.fim_pad_token_id", &v.FIMPad},
		{"tokenizer.ggml.fim_rep_token_id", &v.FIMRep},
		{"tokenizer.ggml.fim_sep_token_id", &v.FIMSep},
		// deprecated spellings of the FIM ids
		{"tokenizer.ggml.prefix_token_id", &v.FIMPre},
		{"tokenizer.ggml.suffix_token_id", &v.FIMSuf},
		{"tokenizer.ggml.middle_token_id", &v.FIMMid},
	} {
		// An id outside the vocabulary (e.g. 4294967295) counts as absent,
		// as llama.cpp ignores it.
		if id, ok := f.Uint(s.key); ok && id < uint64(len(tokens)) && id <= math.MaxInt32 {
			*s.dst = int32(id)
		}
	}
	for _, s := range []struct {
		key string
		dst **bool
	}{
		{keyAddBOS, &v.AddBOS}, {keyAddEOS, &v.AddEOS}, {keyAddSep, &v.AddSep},
		{keyAddSpacePrefix, &v.AddSpacePrefix},
		{keyLowercase, &v.Lowercase}, {keyStripAccents, &v.StripAccents},
	} {
		if b, ok := f.Bool(s.key); ok {
			*s.dst = &b
		}
	}
	return v, nil
}

// FromGGUF builds the tokenizer described by a GGUF file's metadata.
func FromGGUF(f *gguf.File) (*Tokenizer, error) {
	v, err := VocabFromGGUF(f)
	if err != nil {
		return nil, err
	}
	return New(v)
}
