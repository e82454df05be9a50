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
