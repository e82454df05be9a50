package tokenizer

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/stepflash/stepflash/gguf"
	"github.com/stepflash/stepflash/internal/testmodels"
)

// vocabDir returns the directory of llama.cpp's vocab-only GGUFs and test
// vectors, skipping the test when the shared models are absent.
func vocabDir(t testing.TB) string {
	t.Helper()
	return filepath.Join(testmodels.Models(t), "vocab")
}

var (
	tokCacheMu sync.Mutex
	tokCache   = map[string]*Tokenizer{}
)

// loadTokenizer builds (once per test binary) the tokenizer of a GGUF file.
func loadTokenizer(t testing.TB, path string) *Tokenizer {
	t.Helper()
	tokCacheMu.Lock()
	defer tokCacheMu.Unlock()
	if tok, ok := tokCache[path]; ok {
		return tok
	}
	f, err := gguf.Open(path)
	if err != nil {
		t.Fatalf("open %s: %v", path, err)
	}
	defer f.Close()
	tok, err := FromGGUF(f)
	if err != nil {
		t.Fatalf("tokenizer from %s: %v", path, err)
	}
	tokCache[path] = tok
	return tok
}

// readVectors reads llama.cpp's tokenizer test vectors: the .inp file holds
// the texts separated by "\n__ggml_vocab_test__\n" (the file ends with a
// separator), each line of the .out file the expected ids of one text.
func readVectors(t testing.TB, inp, out string) (texts []string, want [][]int32) {
	t.Helper()
	ib, err := os.ReadFile(inp)
	if err != nil {
		t.Fatal(err)
	}
	ob, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	texts = strings.Split(string(ib), "\n__ggml_vocab_test__\n")
	if last := texts[len(texts)-1]; last != "" {
		t.Fatalf("%s: expected to end with a separator, ends with %q", inp, last)
	}
	texts = texts[:len(texts)-1]
	lines := strings.Split(strings.TrimSuffix(string(ob), "\n"), "\n")
	if len(lines) != len(texts) {
		t.Fatalf("%s has %d texts, %s %d lines", inp, len(texts), out, len(lines))
	}
	for _, l := range lines {
		ids := []int32{}
		for _, f := range strings.Fields(l) {
			n, err := strconv.ParseInt(f, 10, 32)
			if err != nil {
				t.Fatalf("%s: %v", out, err)
			}
			ids = append(ids, int32(n))
		}
		want = append(want, ids)
	}
	return texts, want
}

// vocabsWithVectors are the vocab GGUFs for which llama.cpp's
// test-tokenizer-0 passed at the commit the files come from.
var vocabsWithVectors = []string{
	"bert-bge", "deepseek-coder", "deepseek-llm", "falcon", "gpt-2",
	"llama-spm", "mpt", "phi-3", "refact", "starcoder",
}

func TestVocabVectors(t *testing.T) {
	dir := vocabDir(t)
	for _, name := range vocabsWithVectors {
		t.Run(name, func(t *testing.T) {
			base := filepath.Join(dir, "ggml-vocab-"+name+".gguf")
			tok := loadTokenizer(t, base)
			texts, want := readVectors(t, base+".inp", base+".out")
			bad := 0
			for i, text := range texts {
				got := tok.Encode(text, false, false)
				if !slices.Equal(got, want[i]) {
					bad++
					if bad <= 5 {
						t.Errorf("text %d %q:\n got  %v\n want %v", i, text, got, want[i])
					}
				}
			}
			if bad > 0 {
				t.Errorf("%s: %d of %d vectors differ", name, bad, len(texts))
			} else {
				t.Logf("%s: %d/%d vectors pass", name, len(texts), len(texts))
			}
		})
	}
}

// TestEveryVocabFile makes sure no vocab GGUF in the shared directory goes
// untested: each one loads, those with vectors are in vocabsWithVectors, and
// the others round-trip the test texts.
func TestEveryVocabFile(t *testing.T) {
	dir := vocabDir(t)
	files, err := filepath.Glob(filepath.Join(dir, "ggml-vocab-*.gguf"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no vocab files in %s (%v)", dir, err)
	}
	texts, _ := readVectors(t, filepath.Join(dir, "ggml-vocab-llama-spm.gguf.inp"), filepath.Join(dir, "ggml-vocab-llama-spm.gguf.out"))
	for _, path := range files {
		name := strings.TrimSuffix(strings.TrimPrefix(filepath.Base(path), "ggml-vocab-"), ".gguf")
		t.Run(name, func(t *testing.T) {
			tok := loadTokenizer(t, path)
			_, err := os.Stat(path + ".out")
			hasVectors := err == nil
			if hasVectors != slices.Contains(vocabsWithVectors, name) {
				t.Fatalf("%s: has vectors = %v but is listed = %v", name, hasVectors, !hasVectors)
			}
			if tok.kind == kindWPM {
				return // lowercases and strips accents: no round trip
			}
			for _, text := range texts {
				ids := tok.Encode(text, false, false)
				want := text
				if tok.cleanSpaces {
					want = string(cleanSpaces([]byte(text)))
				}
				if got := tok.Decode(ids); got != want {
					t.Errorf("round trip of %q: got %q", text, got)
				}
			}
		})
	}
}

// TestVocabSpecials pins the special tokens llama.cpp derives for each vocab
// file: its per-model defaults, the metadata, and its text-based detection of
// end-of-generation tokens.
func TestVocabSpecials(t *testing.T) {
	dir := vocabDir(t)
	tests := []struct {
		name          string
		bos, eos, unk int32
		addBOS        bool
		eogs          []string
	}{
		{"llama-spm", 1, 2, 0, true, []string{"</s>"}},
		{"baichuan", 1, 2, 0, true, []string{"</s>"}},
		{"phi-3", 1, 32000, 0, true, []string{"</s>", "<|endoftext|>", "<|end|>"}},
		{"gpt-2", 50256, 50256, NoToken, false, []string{"<|endoftext|>"}},
		{"falcon", 11, 11, NoToken, false, []string{"<|endoftext|>"}},
		{"mpt", 0, 0, 0, false, []string{"<|endoftext|>"}},
		{"gpt-neox", 0, 0, 0, false, []string{"<|endoftext|>"}},
		{"starcoder", 0, 0, 0, false, []string{"<|endoftext|>", "<fim_pad>"}},
		{"refact", 0, 0, 0, false, []string{"<|endoftext|>", "<fim_pad>", "<reponame>"}},
		{"deepseek-coder", 32013, 32014, NoToken, true, []string{"<｜end▁of▁sentence｜>"}},
		{"deepseek-llm", 100000, 100001, NoToken, true, []string{"<｜end▁of▁sentence｜>"}},
		// BERT: CLS as BOS; "[PAD]" is in llama.cpp's FIM-pad name list, so it is EOG too
		{"bert-bge", 101, NoToken, 100, true, []string{"[PAD]"}},
	}
	for _, tc := range tests {
		tok := loadTokenizer(t, filepath.Join(dir, "ggml-vocab-"+tc.name+".gguf"))
		var eogs []string
		for _, id := range tok.EOGs() {
			eogs = append(eogs, tok.TokenText(id))
			if !tok.IsEOG(id) {
				t.Errorf("%s: IsEOG(%d) = false for an EOG", tc.name, id)
			}
		}
		if tok.BOS() != tc.bos || tok.EOS() != tc.eos || tok.UNK() != tc.unk || tok.AddBOS() != tc.addBOS || !slices.Equal(eogs, tc.eogs) {
			t.Errorf("%s: bos %d eos %d unk %d addBOS %v eogs %q; want %d %d %d %v %q", tc.name,
				tok.BOS(), tok.EOS(), tok.UNK(), tok.AddBOS(), eogs, tc.bos, tc.eos, tc.unk, tc.addBOS, tc.eogs)
		}
		if tc.addBOS {
			if ids := tok.Encode("Hello", true, false); len(ids) == 0 || ids[0] != tc.bos {
				t.Errorf("%s: Encode with addSpecial = %v, want BOS first", tc.name, ids)
			}
		}
	}
}

// TestVocabSpecialParsing checks special-token handling on real vocabs:
// phi-3 (its special tokens strip the whitespace after them, as llama.cpp
// sets for models named phi-3/phi3), BERT's CLS/SEP, and Lookup.
func TestVocabSpecialParsing(t *testing.T) {
	dir := vocabDir(t)
	phi := loadTokenizer(t, filepath.Join(dir, "ggml-vocab-phi-3.gguf"))
	user, _ := phi.Lookup("<|user|>")
	end, _ := phi.Lookup("<|end|>")
	asst, _ := phi.Lookup("<|assistant|>")
	hello := phi.Encode("Hello", false, false) // "▁Hello"
	tests := []struct {
		text         string
		parseSpecial bool
		want         []int32
	}{
		{"<|user|>\nHello<|end|>\n<|assistant|>", true, slices.Concat([]int32{1, user}, hello, []int32{end, asst})},
		// "</s>" is user-defined here, but llama.cpp's EOG detection also makes
		// it a control token: parsed only with parseSpecial, then rstripped
		{"</s>\n Hello", true, slices.Concat([]int32{1, 2}, hello)},
		{"</s>", false, []int32{1, 1533, 29879, 29958}},
	}
	for _, tc := range tests {
		if got := phi.Encode(tc.text, true, tc.parseSpecial); !slices.Equal(got, tc.want) {
			t.Errorf("phi-3 Encode(%q, parseSpecial=%v) = %v, want %v", tc.text, tc.parseSpecial, got, tc.want)
		}
	}
	if got := phi.Encode("<|user|>", false, false); slices.Contains(got, user) {
		t.Errorf("control token parsed without parseSpecial: %v", got)
	}
	if got := phi.Decode([]int32{user, end}); got != "" {
		t.Errorf("control tokens decode to %q, want nothing", got)
	}
	if got := phi.Detokenize([]int32{user, end}, false, true); got != "<|user|><|end|>" {
		t.Errorf("control tokens with special rendering: %q", got)
	}

	bert := loadTokenizer(t, filepath.Join(dir, "ggml-vocab-bert-bge.gguf"))
	ids := bert.Encode("Hello World!", true, false)
	if len(ids) < 3 || ids[0] != 101 || ids[len(ids)-1] != 102 {
		t.Errorf("bert Encode with addSpecial = %v, want [CLS] ... [SEP]", ids)
	}
	if got := bert.Decode(ids[1 : len(ids)-1]); got != " hello world!" {
		t.Errorf("bert Decode = %q", got)
	}
	if _, ok := bert.Lookup("nonexistent-token-text"); ok {
		t.Error("Lookup found a token that does not exist")
	}
}
