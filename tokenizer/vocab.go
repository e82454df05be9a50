package tokenizer

import (
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
)

// NoToken is the id that stands for "no such token" (llama.cpp's LLAMA_TOKEN_NULL).
const NoToken int32 = -1

// Token types, as stored in tokenizer.ggml.token_type.
const (
	TypeUndefined   int32 = 0
	TypeNormal      int32 = 1
	TypeUnknown     int32 = 2
	TypeControl     int32 = 3
	TypeUserDefined int32 = 4
	TypeUnused      int32 = 5
	TypeByte        int32 = 6
)

// Token attributes (llama.cpp's llama_token_attr bit set).
const (
	attrUnknown     uint16 = 1 << 0
	attrUnused      uint16 = 1 << 1
	attrNormal      uint16 = 1 << 2
	attrControl     uint16 = 1 << 3
	attrUserDefined uint16 = 1 << 4
	attrByte        uint16 = 1 << 5
	attrLStrip      uint16 = 1 << 7
	attrRStrip      uint16 = 1 << 8
)

// Vocab is the tokenizer metadata of a model, as found under the
// tokenizer.ggml.* keys of a GGUF file. Special token ids hold NoToken (-1)
// where the key is absent (New then applies llama.cpp's default for the model
// type), and the optional flags are nil where absent.
type Vocab struct {
	Model string // tokenizer.ggml.model: "llama", "gpt2", "bert", "gemma4", ...
	Pre   string // tokenizer.ggml.pre: the pre-tokenizer of a BPE vocab ("" = default)
	Name  string // general.name (llama.cpp keys a few token attribute fixes on it)
	Arch  string // general.architecture

	Tokens []string  // tokenizer.ggml.tokens
	Scores []float32 // tokenizer.ggml.scores (nil: all 0)
	Types  []int32   // tokenizer.ggml.token_type (nil: all TypeNormal)
	Merges []string  // tokenizer.ggml.merges ("left right", by rank)

	BOS, EOS, EOT, EOM, UNK, SEP, PAD, Mask        int32
	FIMPre, FIMSuf, FIMMid, FIMPad, FIMRep, FIMSep int32

	AddBOS, AddEOS, AddSep  *bool // tokenizer.ggml.add_bos_token / add_eos_token / add_sep_token
	AddSpacePrefix          *bool // tokenizer.ggml.add_space_prefix
	Lowercase, StripAccents *bool // tokenizer.ggml.normalizer.lowercase / strip_accents (WPM)
}

// NewVocab returns a Vocab for the given model with every special token id
// unset (NoToken), ready to be filled in.
func NewVocab(model string, tokens []string) Vocab {
	return Vocab{
		Model: model, Tokens: tokens,
		BOS: NoToken, EOS: NoToken, EOT: NoToken, EOM: NoToken, UNK: NoToken, SEP: NoToken, PAD: NoToken, Mask: NoToken,
		FIMPre: NoToken, FIMSuf: NoToken, FIMMid: NoToken, FIMPad: NoToken, FIMRep: NoToken, FIMSep: NoToken,
	}
}

type kind int

const (
	kindSPM kind = iota
	kindBPE
	kindWPM
)

// Tokenizer encodes and decodes text with one vocabulary. It is safe for
// concurrent use.
type Tokenizer struct {
	kind  kind
	model string
	pre   *preTokenizer // BPE only

	text   []string
	scores []float32
	attrs  []uint16
	ids    map[string]int32

	// BPE merge ranks: by the ids of both sides when both are tokens, else by text.
	ranks     map[uint64]int32
	textRanks map[string]int32

	bos, eos, eot, eom, unk, sep, pad, mask int32
	fim                                     [6]int32

	addBOS, addEOS, addSep  bool
	addSpacePrefix          bool
	cleanSpaces             bool
	ignoreMerges            bool
	escapeSpaces            bool // BPE on raw UTF-8 with ▁ for spaces (gemma4)
	lowercase, stripAccents bool // WPM normalizer
	maxTokenLen             int
	byteTokens              [256]int32 // SPM/gemma4: <0xXX>; gpt2: the byte's mapped symbol
	eog                     map[int32]bool
	special                 []int32  // control, user-defined and unknown tokens, longest text first
	pieces                  []string // token_to_piece with special rendering

	cacheMu sync.Mutex
	cache   map[string][]int32 // BPE: tokens of recently seen pre-tokenized words
}

func boolOr(p *bool, def bool) bool {
	if p == nil {
		return def
	}
	return *p
}

// New builds a Tokenizer from vocabulary metadata, applying llama.cpp's
// defaults and fixes (llama_vocab::load) for whatever the metadata leaves out.
func New(v Vocab) (*Tokenizer, error) {
	n := len(v.Tokens)
	if n == 0 {
		return nil, errors.New("tokenizer: empty vocabulary")
	}
	if v.Scores != nil && len(v.Scores) < n {
		return nil, fmt.Errorf("tokenizer: %d scores for %d tokens", len(v.Scores), n)
	}
	if v.Types != nil && len(v.Types) < n {
		return nil, fmt.Errorf("tokenizer: %d token types for %d tokens", len(v.Types), n)
	}
	t := &Tokenizer{
		model: v.Model,
		eot:   NoToken, eom: NoToken, sep: NoToken, pad: NoToken, mask: NoToken,
		fim: [6]int32{NoToken, NoToken, NoToken, NoToken, NoToken, NoToken},
	}
	// Per-model defaults (llama_vocab::impl::load).
	switch v.Model {
	case "llama":
		t.kind = kindSPM
		t.bos, t.eos, t.unk = 1, 2, 0
		t.addSpacePrefix, t.addBOS = true, true
	case "bert":
		t.kind = kindWPM
		t.bos, t.eos, t.unk, t.sep, t.pad, t.mask = 101, NoToken, 100, 102, 0, 103
		t.addBOS, t.addSep, t.cleanSpaces = true, true, true
		t.lowercase = true
	case "gpt2", "gemma4":
		t.kind = kindBPE
		t.bos, t.eos, t.unk = 11, 11, NoToken
		pre := v.Pre
		if v.Model == "gemma4" {
			t.bos, t.eos = NoToken, NoToken
			pre = "gemma4"
		}
		cfg, err := lookupPre(pre)
		if err != nil {
			return nil, err
		}
		t.cleanSpaces = !cfg.noCleanSpaces
		t.ignoreMerges = cfg.ignoreMerges
		t.addBOS = cfg.addBOS
		t.addSep = cfg.addSep
		t.escapeSpaces = cfg.escapeSpaces
		if cfg.noBOS {
			t.bos = NoToken
		}
		p, err := newPreTokenizer(cfg)
		if err != nil {
			return nil, err
		}
		t.pre = p
	case "":
		return nil, errors.New("tokenizer: no tokenizer model (tokenizer.ggml.model)")
	case "t5", "rwkv", "plamo2", "hybriddna", "whitespace", "no_vocab", "none":
		return nil, fmt.Errorf("tokenizer: tokenizer model %q is not supported", v.Model)
	default:
		return nil, fmt.Errorf("tokenizer: unknown tokenizer model %q", v.Model)
	}
	t.addSpacePrefix = boolOr(v.AddSpacePrefix, t.addSpacePrefix)

	// Tokens, scores and attributes.
	t.text = make([]string, n)
	t.scores = make([]float32, n)
	t.attrs = make([]uint16, n)
	t.ids = make(map[string]int32, n)
	for i, s := range v.Tokens {
		if s == "" {
			s = "[EMPTY_" + strconv.Itoa(i) + "]"
		}
		if prev, dup := t.ids[s]; dup {
			return nil, fmt.Errorf("tokenizer: duplicate token %q has ids %d and %d", s, prev, i)
		}
		t.ids[s] = int32(i)
		t.text[i] = s
		t.maxTokenLen = max(t.maxTokenLen, len(s))
		if v.Scores != nil {
			t.scores[i] = v.Scores[i]
		}
		t.attrs[i] = attrNormal
		if v.Types != nil {
			switch v.Types[i] {
			case TypeNormal:
				t.attrs[i] = attrNormal
			case TypeUnknown:
				t.attrs[i] = attrUnknown
			case TypeControl:
				t.attrs[i] = attrControl
			case TypeUserDefined:
				t.attrs[i] = attrUserDefined
			case TypeUnused:
				t.attrs[i] = attrUnused
			case TypeByte:
				t.attrs[i] = attrByte
			default:
				t.attrs[i] = 0
			}
		}
	}
	if t.kind == kindBPE {
		if v.Merges == nil {
			return nil, errors.New("tokenizer: no merges (tokenizer.ggml.merges) for a BPE vocabulary")
		}
		t.buildRanks(v.Merges)
	}
	t.buildByteTokens()

	// Special tokens from the metadata; an id outside the vocabulary keeps the default.
	for _, s := range []struct {
		dst *int32
		v   int32
	}{
		{&t.bos, v.BOS}, {&t.eos, v.EOS}, {&t.eot, v.EOT}, {&t.eom, v.EOM}, {&t.unk, v.UNK},
		{&t.sep, v.SEP}, {&t.pad, v.PAD}, {&t.mask, v.Mask},
		{&t.fim[0], v.FIMPre}, {&t.fim[1], v.FIMSuf}, {&t.fim[2], v.FIMMid},
		{&t.fim[3], v.FIMPad}, {&t.fim[4], v.FIMRep}, {&t.fim[5], v.FIMSep},
	} {
		if *s.dst >= int32(n) {
			*s.dst = NoToken
		}
		if s.v >= 0 && s.v < int32(n) {
			*s.dst = s.v
		}
	}
	t.addBOS = boolOr(v.AddBOS, t.addBOS)
	t.addEOS = boolOr(v.AddEOS, t.addEOS)
	t.addSep = boolOr(v.AddSep, t.addSep)
	if t.pre != nil && t.pre.cfg.name == "gemma4" {
		t.addBOS = true
	}
	if t.addBOS && t.bos == NoToken {
		return nil, errors.New("tokenizer: add_bos_token is true, but bos_token_id is not set")
	}
	if t.addEOS && t.eos == NoToken {
		return nil, errors.New("tokenizer: add_eos_token is true, but eos_token_id is not set")
	}
	if t.addSep && t.sep == NoToken {
		return nil, errors.New("tokenizer: add_sep_token is true, but seperator_token_id is not set")
	}
	t.lowercase = boolOr(v.Lowercase, t.lowercase)
	t.stripAccents = boolOr(v.StripAccents, t.lowercase)

	t.detectSpecial(v)
	t.buildPieces()
	return t, nil
}

// buildRanks indexes the merges: rank i for the pair "left right" (split at
// the first space after the first byte); the first occurrence of a pair wins.
func (t *Tokenizer) buildRanks(merges []string) {
	t.ranks = make(map[uint64]int32, len(merges))
	for i, m := range merges {
		var left, right string
		if p := strings.IndexByte(m[min(1, len(m)):], ' '); p >= 0 {
			p += min(1, len(m))
			left, right = m[:p], m[p+1:]
		}
		l, okl := t.ids[left]
		r, okr := t.ids[right]
		if okl && okr {
			k := pairKey(l, r)
			if _, dup := t.ranks[k]; !dup {
				t.ranks[k] = int32(i)
			}
			continue
		}
		if t.textRanks == nil {
			t.textRanks = map[string]int32{}
		}
		k := left + "\x00" + right
		if _, dup := t.textRanks[k]; !dup {
			t.textRanks[k] = int32(i)
		}
	}
}

func pairKey(l, r int32) uint64 { return uint64(uint32(l))<<32 | uint64(uint32(r)) }

const hexDigits = "0123456789ABCDEF"

func byteTokenText(b byte) string {
	return string([]byte{'<', '0', 'x', hexDigits[b>>4], hexDigits[b&15], '>'})
}

// buildByteTokens finds, for each byte, the token byte fallback emits:
// <0xXX> (or the bare byte) for SPM and raw-UTF-8 BPE, the byte's mapped
// symbol for byte-level BPE, and nothing for WPM.
func (t *Tokenizer) buildByteTokens() {
	for b := 0; b < 256; b++ {
		id := NoToken
		switch {
		case t.kind == kindSPM:
			if x, ok := t.ids[byteTokenText(byte(b))]; ok {
				id = x
			} else if x, ok := t.ids[string([]byte{byte(b)})]; ok {
				id = x
			}
		case t.kind == kindBPE && t.escapeSpaces:
			if x, ok := t.ids[byteTokenText(byte(b))]; ok {
				id = x
			}
		case t.kind == kindBPE:
			if x, ok := t.ids[string(byteToRune[b])]; ok {
				id = x
			}
		}
		t.byteTokens[b] = id
	}
}

var (
	eotTexts = []string{"<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|end_of_text|>",
		"<EOT>", "_<EOT>", "[EOT]", "<｜end▁of▁sentence｜>", "<end_of_utterance>"}
	eomTexts    = []string{"<|eom_id|>"}
	fimPreTexts = []string{"<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>", "<｜fim▁begin｜>", "<PRE>", "▁<PRE>", "<|code_prefix|>", "<|prefix|>"}
	fimSufTexts = []string{"<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>", "<｜fim▁hole｜>", "<SUF>", "▁<SUF>", "<|code_suffix|>", "<|suffix|>"}
	fimMidTexts = []string{"<|fim_middle|>", "<fim-middle>", "<fim_middle>", "<｜fim▁end｜>", "<MID>", "▁<MID>", "<|code_middle|>", "<|middle|>"}
	fimPadTexts = []string{"<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"}
	fimRepTexts = []string{"<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>"}
	fimSepTexts = []string{"<|file_sep|>"}
	eogTexts    = []string{"<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<|flush|>", "<|calls|>",
		"<end_of_turn>", "<|endoftext|>", "</s>", "<|eom_id|>", "<EOT>", "_<EOT>", "[EOT]", "[EOS]", "<|end_of_text|>",
		"<end_of_utterance>", "<eos>", "<turn|>", "<|tool_response>", "<｜end▁of▁sentence｜>", "[e~["}
)

// detectSpecial finds the end-of-turn, FIM and end-of-generation tokens by
// their text, marks them as control tokens, and applies llama.cpp's other
// per-token attribute fixes, then builds the special-token cache used to
// partition input text.
func (t *Tokenizer) detectSpecial(v Vocab) {
	// llama.cpp walks an unordered map here: when several candidate texts are
	// present, which one becomes EOT is unspecified. Walk the ids in order
	// (the lowest id wins) so that at least the choice is stable.
	byText := func(dst *int32, texts []string) {
		if *dst != NoToken {
			return
		}
		for _, c := range texts {
			if id, ok := t.ids[c]; ok && (*dst == NoToken || id < *dst) {
				*dst = id
			}
		}
		if *dst != NoToken {
			t.attrs[*dst] |= attrControl
		}
	}
	byText(&t.eot, eotTexts)
	byText(&t.eom, eomTexts)
	byText(&t.fim[0], fimPreTexts)
	byText(&t.fim[1], fimSufTexts)
	byText(&t.fim[2], fimMidTexts)
	byText(&t.fim[3], fimPadTexts)
	byText(&t.fim[4], fimRepTexts)
	byText(&t.fim[5], fimSepTexts)

	for id, s := range t.text {
		if t.attrs[id]&attrControl != 0 && strings.Contains(s, "unused") {
			t.attrs[id] |= attrUnused
		}
	}

	t.eog = map[int32]bool{}
	for _, id := range t.fim[3:] {
		if id != NoToken {
			t.eog[id] = true
		}
	}
	for _, s := range eogTexts {
		if id, ok := t.ids[s]; ok {
			t.eog[id] = true
			t.attrs[id] |= attrControl
		}
	}
	for _, s := range []string{"<|channel|>", "<|message|>", "<|start|>", "<|constrain|>"} {
		if id, ok := t.ids[s]; ok {
			t.attrs[id] = attrUserDefined
		}
	}
	for _, id := range []int32{t.eos, t.eot, t.eom} {
		if id != NoToken {
			t.eog[id] = true
		}
	}
	// o200k_harmony / solar-open: "<|end|>" ends a message, not the generation.
	has := map[string]int32{}
	for id := range t.eog {
		has[t.text[id]] = id
	}
	_, hasReturn := has["<|return|>"]
	_, hasCall := has["<|call|>"]
	_, hasCalls := has["<|calls|>"]
	_, hasFlush := has["<|flush|>"]
	if endID, hasEnd := has["<|end|>"]; hasEnd && ((hasReturn && (hasCall || hasCalls)) || ((hasCall || hasCalls) && hasFlush)) {
		delete(t.eog, endID)
		t.attrs[endID] = attrUserDefined
	}
	// gemma4 / paddleocr: "</s>" is not an end-of-generation token there.
	if sID, hasS := has["</s>"]; hasS {
		if _, ok := has["<|tool_response>"]; ok {
			delete(t.eog, sID)
			t.attrs[sID] = attrNormal
		}
	}

	for id := range t.text {
		if t.attrs[id]&(attrControl|attrUserDefined|attrUnknown) != 0 {
			t.special = append(t.special, int32(id))
		}
	}
	sort.SliceStable(t.special, func(i, j int) bool {
		return len(t.text[t.special[i]]) > len(t.text[t.special[j]])
	})

	// Per-model attribute fixes (model name / pre-tokenizer / architecture).
	setAttr := func(text string, a uint16, on bool) {
		if id, ok := t.ids[text]; ok {
			if on {
				t.attrs[id] |= a
			} else {
				t.attrs[id] &^= a
			}
		}
	}
	name := strings.ToLower(v.Name)
	containsAny := func(s string, subs ...string) bool {
		for _, x := range subs {
			if strings.Contains(s, x) {
				return true
			}
		}
		return false
	}
	switch {
	case containsAny(v.Pre, "jina-v2-de", "jina-v2-es", "jina-v2-code") || containsAny(v.Arch, "nomic-bert-moe", "jina-bert-v3"):
		setAttr("<mask>", attrLStrip, true)
	case containsAny(name, "phi-3", "phi3"):
		for _, id := range t.special {
			t.attrs[id] |= attrRStrip
		}
		setAttr("</s>", attrRStrip, true)
		for _, s := range []string{"<unk>", "<s>", "<|endoftext|>"} {
			setAttr(s, attrRStrip, false)
		}
	case containsAny(name, "modern-bert"):
		setAttr("[MASK]", attrLStrip, true)
	}
}
