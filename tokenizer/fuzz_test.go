package tokenizer

import (
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"unicode/utf8"
)

// FuzzEncode checks, on every vocab with test vectors, that Encode never
// panics or returns an id outside the vocabulary, and that decoding gives
// the text back for valid UTF-8: exactly for SentencePiece (byte fallback),
// up to the clean-up rules for byte-level BPE. (With invalid UTF-8 llama.cpp
// loses the round trip too: SPM cuts characters by their lead byte alone, so
// a stray lead byte swallows the ▁ after it; BPE turns bad bytes into U+FFFD.)
func FuzzEncode(f *testing.F) {
	for _, s := range []string{"", " ", "Hello world", "  x\n\n\t y", "éÀ中文😀", "\xff\xfe", "'s 'LL 123456", "<s></s>"} {
		f.Add(s)
	}
	dir := vocabDir(f)
	var toks []*Tokenizer
	for _, name := range []string{"llama-spm", "gpt-2", "deepseek-llm", "falcon", "bert-bge", "phi-3"} {
		toks = append(toks, loadTokenizer(f, filepath.Join(dir, "ggml-vocab-"+name+".gguf")))
	}
	f.Fuzz(func(t *testing.T, text string) {
		for _, tok := range toks {
			for _, parse := range []bool{false, true} {
				ids := tok.Encode(text, true, parse)
				for _, id := range ids {
					if id < 0 || int(id) >= tok.VocabSize() {
						t.Fatalf("%s: id %d out of range for %q", tok.Model(), id, text)
					}
				}
			}
			ids := tok.Encode(text, false, false)
			got := tok.Decode(ids)
			switch {
			case tok.kind == kindSPM && utf8.ValidString(text) && !strings.Contains(text, "\u2581") && len(tok.special) <= 3:
				if got != text {
					t.Fatalf("SPM round trip of %q: %q", text, got)
				}
			case tok.kind == kindBPE && utf8.ValidString(text) && !slices.Contains(tok.byteTokens[:], NoToken):
				// (falcon lacks 28 byte symbols: llama.cpp drops those bytes)
				want := text
				if tok.cleanSpaces {
					want = string(cleanSpaces([]byte(text)))
				}
				if got != want {
					t.Fatalf("%s round trip of %q: %q, want %q", tok.Pre(), text, got, want)
				}
			}
			d := tok.NewStreamDecoder()
			var sb strings.Builder
			for _, id := range ids {
				s := d.Push(id)
				if !utf8.ValidString(s) {
					t.Fatalf("stream emitted invalid UTF-8 %q", s)
				}
				sb.WriteString(s)
			}
			sb.WriteString(d.Flush())
			// token by token = all at once; exact when the bytes are valid
			all := piecesOf(tok, ids)
			want := string(all)
			if !utf8.Valid(all) {
				batch := &StreamDecoder{t: tok, pending: all}
				want = batch.Flush()
			}
			if sb.String() != want {
				t.Fatalf("streamed %q, want %q", sb.String(), want)
			}
		}
	})
}

func piecesOf(tok *Tokenizer, ids []int32) []byte {
	var b []byte
	for _, id := range ids {
		b = append(b, tok.Piece(id)...)
	}
	return b
}

// TestConcurrentEncode runs Encode from several goroutines on one Tokenizer
// (run with -race to check the word cache and the regexp2 programs).
func TestConcurrentEncode(t *testing.T) {
	dir := vocabDir(t)
	texts, _ := readVectors(t, filepath.Join(dir, "ggml-vocab-llama-spm.gguf.inp"), filepath.Join(dir, "ggml-vocab-llama-spm.gguf.out"))
	for _, name := range []string{"gpt-2", "deepseek-llm"} {
		tok := loadTokenizer(t, filepath.Join(dir, "ggml-vocab-"+name+".gguf"))
		want := make([][]int32, len(texts))
		for i, s := range texts {
			want[i] = tok.Encode(s, false, false)
		}
		var wg sync.WaitGroup
		for g := 0; g < 4; g++ {
			wg.Go(func() {
				for k := 0; k < 20; k++ {
					i := (g*7 + k) % len(texts)
					if got := tok.Encode(texts[i], false, false); !slices.Equal(got, want[i]) {
						t.Errorf("%s: concurrent Encode(%q) = %v, want %v", name, texts[i], got, want[i])
					}
				}
			})
		}
		wg.Wait()
	}
}
