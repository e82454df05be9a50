package tokenizer

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stepflash/stepflash/gguf"
)

// benchText is about 64 KiB of the vector texts (English, code, CJK, emoji,
// whitespace runs), repeated.
func benchText(b *testing.B) string {
	b.Helper()
	inp, err := os.ReadFile(filepath.Join(vocabDir(b), "ggml-vocab-llama-spm.gguf.inp"))
	if err != nil {
		b.Fatal(err)
	}
	unit := strings.ReplaceAll(string(inp), "\n__ggml_vocab_test__\n", " ")
	return strings.Repeat(unit, 64<<10/len(unit)+1)
}

func BenchmarkEncode(b *testing.B) {
	dir := vocabDir(b)
	text := benchText(b)
	for _, tc := range []struct{ name, file, pre string }{
		{"llama-spm", "llama-spm", ""},
		{"gpt-2", "gpt-2", ""},
		{"llama3-pre", "gpt-2", "llama-bpe"}, // a byte-level vocab with the Llama 3 / Qwen2 splitters
		{"qwen2-pre", "gpt-2", "qwen2"},
		{"deepseek-llm", "deepseek-llm", ""}, // 102k tokens, regexp2 pre-tokenizer
		{"falcon", "falcon", ""},
		{"bert-bge", "bert-bge", ""},
	} {
		b.Run(tc.name, func(b *testing.B) {
			tok := loadTokenizer(b, filepath.Join(dir, "ggml-vocab-"+tc.file+".gguf"))
			if tc.pre != "" {
				f, err := gguf.Open(filepath.Join(dir, "ggml-vocab-"+tc.file+".gguf"))
				if err != nil {
					b.Fatal(err)
				}
				v, err := VocabFromGGUF(f)
				f.Close()
				if err != nil {
					b.Fatal(err)
				}
				v.Pre = tc.pre
				if tok, err = New(v); err != nil {
					b.Fatal(err)
				}
			}
			b.SetBytes(int64(len(text)))
			b.ReportAllocs()
			n := 0
			for b.Loop() {
				n = len(tok.Encode(text, true, true))
			}
			b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "tokens/s")
		})
	}
}

func BenchmarkNew(b *testing.B) {
	f, err := gguf.Open(filepath.Join(vocabDir(b), "ggml-vocab-deepseek-llm.gguf"))
	if err != nil {
		b.Fatal(err)
	}
	v, err := VocabFromGGUF(f)
	f.Close()
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := New(v); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecode(b *testing.B) {
	tok := loadTokenizer(b, filepath.Join(vocabDir(b), "ggml-vocab-gpt-2.gguf"))
	ids := tok.Encode(benchText(b), false, false)
	b.ReportAllocs()
	for b.Loop() {
		d := tok.NewStreamDecoder()
		for _, id := range ids {
			d.Push(id)
		}
		d.Flush()
	}
	b.ReportMetric(float64(len(ids))*float64(b.N)/b.Elapsed().Seconds(), "tokens/s")
}
