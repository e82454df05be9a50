package tokenizer

import (
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

func ptr[T any](v T) *T { return &v }

// toySPM is a small SentencePiece vocab: <unk> <s> </s>, the 256 byte
// tokens (ids 3..258), then scored pieces, a user-defined and a control token.
func toySPM(t *testing.T) (*Tokenizer, map[string]int32) {
	t.Helper()
	tokens := []string{"<unk>", "<s>", "</s>"}
	types := []int32{TypeUnknown, TypeControl, TypeControl}
	scores := []float32{0, 0, 0}
	for b := 0; b < 256; b++ {
		tokens = append(tokens, byteTokenText(byte(b)))
		types = append(types, TypeByte)
		scores = append(scores, 0)
	}
	for _, p := range []struct {
		s     string
		score float32
		typ   int32
	}{
		{"▁", -1, TypeNormal}, {"h", -2, TypeNormal}, {"e", -2, TypeNormal}, {"l", -2, TypeNormal}, {"o", -2, TypeNormal},
		{"▁h", -3, TypeNormal}, {"he", -1, TypeNormal}, {"ll", -0.5, TypeNormal}, {"lo", -4, TypeNormal},
		{"llo", -0.2, TypeNormal}, {"▁he", -0.1, TypeNormal}, {"hello", -5, TypeNormal},
		{"<user>", 0, TypeUserDefined}, {"<ctrl>", 0, TypeControl}, {"<ctrl>x", 0, TypeControl},
	} {
		tokens = append(tokens, p.s)
		scores = append(scores, p.score)
		types = append(types, p.typ)
	}
	v := NewVocab("llama", tokens)
	v.Scores, v.Types = scores, types
	tok, err := New(v)
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]int32{}
	for i, s := range tokens {
		ids[s] = int32(i)
	}
	return tok, ids
}

func TestSPMEncode(t *testing.T) {
	tok, id := toySPM(t)
	b := func(c byte) int32 { return 3 + int32(c) }
	tests := []struct {
		text                     string
		addSpecial, parseSpecial bool
		want                     []int32
	}{
		// ll (-0.5) first, then llo (-0.2), he (-1), ▁he (-0.1): the
		// highest-scoring pair present at each step, not the best final split.
		{"hello", false, false, []int32{id["▁he"], id["llo"]}},
		{"hello", true, false, []int32{1, id["▁he"], id["llo"]}},
		{"", true, false, []int32{1}},
		{"", false, false, []int32{}},
		// é is not a piece: its two bytes fall back to byte tokens
		{"hé", false, false, []int32{id["▁h"], b(0xC3), b(0xA9)}},
		{"h h", false, false, []int32{id["▁h"], id["▁h"]}},
		// control tokens are text unless parseSpecial; then the longest wins
		// and the text after a special token gets the space prefix again
		{"<ctrl>xhe", false, true, []int32{id["<ctrl>x"], id["▁he"]}},
		{"o<ctrl>", false, true, []int32{id["▁"], id["o"], id["<ctrl>"]}},
		{"</s>", false, true, []int32{2}},
		{"</s>", false, false, []int32{id["▁"], b('<'), b('/'), b('s'), b('>')}},
		// user-defined tokens are split out even without parseSpecial
		{"he<user>he", false, false, []int32{id["▁he"], id["<user>"], id["▁he"]}},
	}
	for _, tc := range tests {
		got := tok.Encode(tc.text, tc.addSpecial, tc.parseSpecial)
		if !slices.Equal(got, tc.want) {
			t.Errorf("Encode(%q, %v, %v) = %v, want %v", tc.text, tc.addSpecial, tc.parseSpecial, got, tc.want)
		}
	}
}

func TestSPMPieceAndDecode(t *testing.T) {
	tok, id := toySPM(t)
	pieces := []struct {
		id             int32
		piece, special string
	}{
		{id["▁he"], " he", " he"},
		{id["llo"], "llo", "llo"},
		{3 + 0x41, "A", "A"},
		{3 + 0xC3, "\xC3", "\xC3"},
		{1, "", "<s>"},
		{0, "", "<unk>"},
		{id["<user>"], "<user>", "<user>"},
		{-1, "", ""},
		{int32(tok.VocabSize()), "", ""},
	}
	for _, p := range pieces {
		if got := string(tok.Piece(p.id)); got != p.piece {
			t.Errorf("Piece(%d) = %q, want %q", p.id, got, p.piece)
		}
		if got := string(tok.PieceSpecial(p.id)); got != p.special {
			t.Errorf("PieceSpecial(%d) = %q, want %q", p.id, got, p.special)
		}
	}
	decodes := []struct {
		ids  []int32
		want string
	}{
		// the first piece loses the space prefix Encode added
		{[]int32{id["▁he"], id["llo"]}, "hello"},
		// as in llama.cpp, only the first token's space is removed, even when
		// that token is a control token rendering as nothing
		{[]int32{1, id["▁he"], id["llo"], 2}, " hello"},
		{[]int32{id["▁h"], 3 + 0xC3, 3 + 0xA9}, "hé"},
		{[]int32{id["llo"], id["▁he"]}, "llo he"},
		{nil, ""},
	}
	for _, d := range decodes {
		if got := tok.Decode(d.ids); got != d.want {
			t.Errorf("Decode(%v) = %q, want %q", d.ids, got, d.want)
		}
	}
	if got := tok.Detokenize([]int32{1, id["▁he"]}, true, true); got != " he" {
		t.Errorf("Detokenize with removeSpecial = %q, want %q (BOS dropped, space kept)", got, " he")
	}
	if got := tok.Detokenize([]int32{1, id["▁he"], 2}, false, true); got != "<s> he</s>" {
		t.Errorf("Detokenize with unparseSpecial = %q", got)
	}
}

func TestStreamDecoder(t *testing.T) {
	tok, id := toySPM(t)
	b := func(c byte) int32 { return 3 + int32(c) }
	euro := []byte("€")  // 3 bytes
	emoji := []byte("😀") // 4 bytes
	tests := []struct {
		name  string
		ids   []int32
		steps []string // text returned by each Push
		flush string
	}{
		{"ascii", []int32{id["▁he"], id["llo"]}, []string{" he", "llo"}, ""},
		{"2-byte split", []int32{b(0xC3), b(0xA9), id["o"]}, []string{"", "é", "o"}, ""},
		{"3-byte split", []int32{b(euro[0]), b(euro[1]), b(euro[2])}, []string{"", "", "€"}, ""},
		{"4-byte split", []int32{id["h"], b(emoji[0]), b(emoji[1]), b(emoji[2]), b(emoji[3])}, []string{"h", "", "", "", "😀"}, ""},
		{"invalid byte", []int32{b(0xFF), id["o"]}, []string{"\uFFFD", "o"}, ""},
		{"interrupted", []int32{b(0xE2), b(0x82), id["o"]}, []string{"", "", "\uFFFDo"}, ""},
		{"bad continuation", []int32{b(0xF0), b(0x41)}, []string{"", "\uFFFDA"}, ""},
		{"incomplete at end", []int32{id["o"], b(0xF0), b(0x9F)}, []string{"o", "", ""}, "\uFFFD"},
		{"control token", []int32{1, id["o"]}, []string{"", "o"}, ""},
	}
	for _, tc := range tests {
		d := tok.NewStreamDecoder()
		for i, x := range tc.ids {
			got := d.Push(x)
			if !utf8.ValidString(got) {
				t.Errorf("%s: Push %d returned invalid UTF-8 %q", tc.name, i, got)
			}
			if got != tc.steps[i] {
				t.Errorf("%s: Push %d = %q, want %q", tc.name, i, got, tc.steps[i])
			}
		}
		if got := d.Flush(); got != tc.flush {
			t.Errorf("%s: Flush = %q, want %q", tc.name, got, tc.flush)
		}
		if got := d.Flush(); got != "" {
			t.Errorf("%s: second Flush = %q", tc.name, got)
		}
	}
}

func TestCleanSpaces(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", ""},
		{"a", "a"},
		{"Hello , world !", "Hello, world!"},
		{"what ? . end", "what?. end"},
		{"rock ' n ' roll", "rock'n'roll"},
		{"it 's he 'll we 're you 've I 'm don 't he 'd", "it's he 'll we're you've I'm don 't he 'd"},
		{" 's", "'s"}, // llama.cpp removes even a leading space
		{" ?", "?"},
		{"x '", "x '"},
	}
	for _, tc := range tests {
		if got := string(cleanSpaces([]byte(tc.in))); got != tc.want {
			t.Errorf("cleanSpaces(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestNewErrors(t *testing.T) {
	base := func(model string) Vocab { return NewVocab(model, []string{"a", "b"}) }
	tests := []struct {
		name string
		v    Vocab
		want string
	}{
		{"empty", NewVocab("llama", nil), "empty vocabulary"},
		{"no model", base(""), "no tokenizer model"},
		{"unknown model", base("nonsense"), "unknown tokenizer model"},
		{"unigram", base("t5"), "not supported"},
		{"unknown pre", func() Vocab { v := base("gpt2"); v.Pre = "nonsense"; v.Merges = []string{}; return v }(), "unknown pre-tokenizer"},
		{"unsupported pre", func() Vocab { v := base("gpt2"); v.Pre = "kimi-k2"; v.Merges = []string{}; return v }(), "not supported"},
		{"duplicate", NewVocab("llama", []string{"a", "a"}), "duplicate token"},
		{"no merges", base("gpt2"), "no merges"},
		{"short scores", func() Vocab { v := base("llama"); v.Scores = []float32{0}; return v }(), "scores"},
		// SPM's default BOS (1) exists; a vocab of 1 token has none to add
		{"add_bos without bos", NewVocab("llama", []string{"a"}), "bos_token_id is not set"},
		{"add_eos without eos", func() Vocab { v := base("gpt2"); v.Merges = []string{}; v.AddEOS = ptr(true); return v }(), "eos_token_id"},
	}
	for _, tc := range tests {
		_, err := New(tc.v)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want one containing %q", tc.name, err, tc.want)
		}
	}
}

// toyBPE is a byte-level BPE vocab: the 256 byte symbols, merges, and the
// special tokens.
func toyBPE(t *testing.T, pre string, merges []string, extra ...string) *Tokenizer {
	t.Helper()
	var tokens []string
	for b := 0; b < 256; b++ {
		tokens = append(tokens, string(byteToRune[b]))
	}
	for _, m := range merges {
		tokens = append(tokens, strings.Replace(m, " ", "", 1))
	}
	tokens = append(tokens, extra...)
	types := make([]int32, len(tokens))
	for i := range types {
		types[i] = TypeNormal
		if i >= len(tokens)-len(extra) {
			types[i] = TypeControl
		}
	}
	v := NewVocab("gpt2", tokens)
	v.Pre, v.Merges, v.Types = pre, merges, types
	v.BOS = int32(len(tokens) - 1)
	tok, err := New(v)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestBPEEncode(t *testing.T) {
	merges := []string{"Ġ t", "h e", "t h", "Ġt he", "Ġ w", "o r", "l d", "Ġw or", "Ġwor ld", "e r"}
	tok := toyBPE(t, "gpt-2", merges, "<|endoftext|>", "<|im_end|>")
	id := func(s string) int32 {
		x, ok := tok.Lookup(s)
		if !ok {
			t.Fatalf("no token %q", s)
		}
		return x
	}
	tests := []struct {
		text string
		want []int32
	}{
		// rank order: "Ġ t" (0) before "t h" (2); then "h e" (1), then "Ġt he" (3)
		{" the", []int32{id("Ġthe")}},
		// "th"+"e": "h e" (1) outranks "t h" (2), so t + he, with no "the" merge
		{"the", []int32{id("t"), id("he")}},
		{" world", []int32{id("Ġworld")}},
		{"the world", []int32{id("t"), id("he"), id("Ġworld")}},
		{"<|endoftext|>", []int32{id("<|endoftext|>")}},
	}
	for _, tc := range tests {
		if got := tok.Encode(tc.text, true, true); !slices.Equal(got, tc.want) {
			t.Errorf("Encode(%q) = %v, want %v", tc.text, got, tc.want)
		}
	}
	// gpt2 vocabs add no BOS unless the metadata says so; without an
	// eos_token_id the EOS is llama.cpp's default 11
	if tok.AddBOS() || tok.EOS() != 11 {
		t.Errorf("AddBOS %v EOS %d, want false 11", tok.AddBOS(), tok.EOS())
	}
	// <|endoftext|> and <|im_end|> end generation; EOT is the first of them
	for _, s := range []string{"<|endoftext|>", "<|im_end|>"} {
		if !tok.IsEOG(id(s)) {
			t.Errorf("IsEOG(%s) = false", s)
		}
	}
	if tok.IsEOG(id("Ġthe")) || tok.IsEOG(NoToken) {
		t.Error("IsEOG true for a normal token / NoToken")
	}
	if tok.EOT() != id("<|endoftext|>") {
		t.Errorf("EOT = %d", tok.EOT())
	}
	if got := tok.Decode(tok.Encode("the world, it 's", false, false)); got != "the world, it's" {
		t.Errorf("Decode = %q (clean-up rules)", got)
	}
	if got := string(tok.Piece(id("Ġworld"))); got != " world" {
		t.Errorf("Piece(Ġworld) = %q", got)
	}
}

func TestGemma4Encode(t *testing.T) {
	tokens := []string{"<pad>", "<eos>", "<bos>"}
	types := []int32{TypeControl, TypeControl, TypeControl}
	for b := 0; b < 256; b++ {
		tokens = append(tokens, byteTokenText(byte(b)))
		types = append(types, TypeByte)
	}
	for _, s := range []string{"▁", "h", "i", "▁h", "▁hi", "\n", "\n\n"} {
		tokens = append(tokens, s)
		types = append(types, TypeNormal)
	}
	v := NewVocab("gemma4", tokens)
	v.Types, v.Merges = types, []string{"▁ h", "▁h i"}
	v.BOS, v.EOS = 2, 1
	tok, err := New(v)
	if err != nil {
		t.Fatal(err)
	}
	id := func(s string) int32 { x, _ := tok.Lookup(s); return x }
	tests := []struct {
		text string
		add  bool
		want []int32
	}{
		// spaces become ▁, BPE runs on raw UTF-8 between newlines
		{"hi hi\n\nh", false, []int32{id("h"), id("i"), id("▁hi"), id("\n\n"), id("h")}},
		// gemma4 always adds BOS
		{"hi", true, []int32{2, id("h"), id("i")}},
		// characters without a token fall back to <0xXX> tokens
		{"é", false, []int32{3 + 0xC3, 3 + 0xA9}},
	}
	for _, tc := range tests {
		if got := tok.Encode(tc.text, tc.add, false); !slices.Equal(got, tc.want) {
			t.Errorf("Encode(%q) = %v, want %v", tc.text, got, tc.want)
		}
	}
	if got := tok.Decode(tok.Encode("hi hi é\n\nh", false, false)); got != "hi hi é\n\nh" {
		t.Errorf("round trip: %q", got)
	}
}

func TestIgnoreMerges(t *testing.T) {
	// "abc" is a token that the merges cannot build: the Llama 3 family
	// (ignore_merges) takes whole-word tokens directly, GPT-2 merges.
	for _, tc := range []struct {
		pre    string
		want   []string
		addBOS bool
	}{
		{"llama-bpe", []string{"abc"}, true},
		{"gpt-2", []string{"ab", "c"}, false},
	} {
		tok := toyBPE(t, tc.pre, []string{"a b"}, "abc")
		var want []int32
		for _, s := range tc.want {
			x, _ := tok.Lookup(s)
			want = append(want, x)
		}
		if got := tok.Encode("abc", false, false); !slices.Equal(got, want) {
			t.Errorf("%s: Encode(abc) = %v, want %v", tc.pre, got, want)
		}
		if tok.AddBOS() != tc.addBOS {
			t.Errorf("%s: AddBOS = %v", tc.pre, tok.AddBOS())
		}
	}
}
