package tokenizer

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/dlclark/regexp2"
)

// pythonSplitter runs the pre-tokenizer regexes with Python's regex module,
// the engine Hugging Face tokenizers' regexes are written for, with
// llama.cpp's framing: each regex in turn splits every piece so far into its
// matches and the text between them, on the text with non-ASCII whitespace
// replaced by \v (what llama.cpp's std::regex sees; for \s and the Unicode
// classes this changes nothing). \x{...} escapes become the characters.
const pythonSplitter = `
import json, sys, regex
req = json.load(sys.stdin)
ws = regex.compile(r'\s')
hexesc = regex.compile(r'\\x\{([0-9A-Fa-f]+)\}')
cache = {}
def compile_(e):
    if e not in cache:
        cache[e] = regex.compile(hexesc.sub(lambda m: chr(int(m.group(1), 16)), e))
    return cache[e]
out = []
for case in req:
    text = case['text']
    t = ''.join('\x0b' if ord(c) > 0x7f and ws.match(c) else c for c in text)
    chunks = [(0, len(t))]
    for e in case['exprs']:
        r = compile_(e)
        nxt = []
        for s, n in chunks:
            sub = t[s:s+n]
            pos = 0
            for m in r.finditer(sub):
                if m.start() > pos:
                    nxt.append((s+pos, m.start()-pos))
                if m.end() > m.start():
                    nxt.append((s+m.start(), m.end()-m.start()))
                pos = m.end()
            if pos < len(sub):
                nxt.append((s+pos, len(sub)-pos))
        chunks = nxt
    out.append([text[s:s+n] for s, n in chunks])
json.dump(out, sys.stdout)
`

// findPython returns a python3 that has the regex module, or skips.
func findPython(t *testing.T) string {
	t.Helper()
	for _, p := range []string{"/usr/bin/python3", "python3"} {
		if exec.Command(p, "-c", "import regex").Run() == nil {
			return p
		}
	}
	t.Skip("python3 with the regex module not found (Debian: apt-get install python3-regex); skipping the comparison with Python's regex")
	return ""
}

type pyCase struct {
	Exprs []string `json:"exprs"`
	Text  string   `json:"text"`
}

func runPython(t *testing.T, py string, cases []pyCase) [][]string {
	t.Helper()
	in, err := json.Marshal(cases)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(py, "-c", pythonSplitter)
	cmd.Stdin = bytes.NewReader(in)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("python: %v\n%s", err, stderr.String())
	}
	var res [][]string
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("python output: %v", err)
	}
	if len(res) != len(cases) {
		t.Fatalf("python returned %d results for %d cases", len(res), len(cases))
	}
	return res
}

func goSplit(p *preTokenizer, text string) []string {
	var pieces []string
	p.split(text, nil, func(piece []rune) {
		pieces = append(pieces, string(appendPiece(nil, piece, false)))
	})
	return pieces
}

// vectorTexts returns every test text of every .inp file in the vocab
// directory (deduplicated, in a stable order).
func vectorTexts(t *testing.T) []string {
	t.Helper()
	dir := vocabDir(t)
	inps, err := filepath.Glob(filepath.Join(dir, "*.inp"))
	if err != nil || len(inps) == 0 {
		t.Fatalf("no .inp files in %s", dir)
	}
	seen := map[string]bool{}
	var texts []string
	for _, inp := range inps {
		b, err := os.ReadFile(inp)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range strings.Split(string(b), "\n__ggml_vocab_test__\n") {
			if !seen[s] {
				seen[s] = true
				texts = append(texts, s)
			}
		}
	}
	slices.Sort(texts)
	return texts
}

// pyFamilies are the pre-tokenizer families whose regexes mean the same in
// Python's regex module as in llama.cpp's collapsed std::regex. (The others
// use \p{S}, which llama.cpp maps without '~', \p{Lu}-style classes, which it
// widens to \p{L}, or \d/\b.)
var pyFamilies = []string{
	"default", "gpt2", "llama3", "qwen2", "qwen35", "starcoder", "falcon", "deepseek-llm", "deepseek-coder",
	"gemma4", "jais2", "poro", "viking", "tekken", "chameleon", "gpt-4o", "granite-embed-multi-97m", "bailingmoe",
	"seed-coder", "ufakzeka", "laguna", "exaone-moe", "minicpm5",
}

// TestPreTokenizerMatchesPython compares the pre-tokenizer splits with
// Python's regex module on every vector text (including those of the
// vocabularies whose GGUF is not here: qwen2, llama-bpe, qwen35, command-r,
// gemma-4) and on random strings.
func TestPreTokenizerMatchesPython(t *testing.T) {
	py := findPython(t)
	texts := append(vectorTexts(t), randomTexts(300, 40, 7)...)
	var cases []pyCase
	var want [][]string
	for _, fam := range pyFamilies {
		cfg := preFamilies[fam]
		cfg.name = fam
		p, err := newPreTokenizer(cfg)
		if err != nil {
			t.Fatalf("%s: %v", fam, err)
		}
		for _, text := range texts {
			cases = append(cases, pyCase{Exprs: cfg.exprs, Text: text})
			want = append(want, goSplit(p, text))
		}
	}
	got := runPython(t, py, cases)
	bad := 0
	for i := range cases {
		if !slices.Equal(got[i], want[i]) {
			bad++
			if bad <= 10 {
				fam := pyFamilies[i/len(texts)]
				t.Errorf("%s: %q\n go     %q\n python %q", fam, cases[i].Text, want[i], got[i])
			}
		}
	}
	t.Logf("%d splits compared (%d families x %d texts), %d differ", len(cases), len(pyFamilies), len(texts), bad)
}

// randomTexts returns n strings of up to maxLen characters drawn from an
// alphabet of characters that exercise every branch of the splitters.
func randomTexts(n, maxLen int, seed uint64) []string {
	alphabet := []rune("aAzZ sS'tTmMdDrReEvVlL" + "0123456789" + "\r\n\t\v\f  " + "!?.,;:-_~$+<=>^`|\"#%&*()[]{}/@\\" +
		"\u00a0\u2003\u3000\u0085\u2028" + "éÀßΣσж中文한国" + "\u0301\u0308" + "½²٣" + "€©😀" + "\u200d\ufeff\u00ad" + "\ufffd\U000e0001")
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	out := make([]string, n)
	for i := range out {
		k := 1 + r.IntN(maxLen)
		b := make([]rune, k)
		for j := range b {
			b[j] = alphabet[r.IntN(len(alphabet))]
		}
		out[i] = string(b)
	}
	return out
}

// TestCustomSplittersMatchRegex checks the hand-written GPT-2, Llama 3 and
// Qwen2 splitters against the same regexes run by regexp2 the way every
// other pre-tokenizer regex runs.
func TestCustomSplittersMatchRegex(t *testing.T) {
	texts := append(randomTexts(3000, 30, 1), randomTexts(200, 300, 2)...)
	for _, expr := range []string{reGPT2, reLlama3, reQwen2} {
		custom, err := newPreTokenizer(preConfig{exprs: []string{expr}})
		if err != nil {
			t.Fatal(err)
		}
		if custom.steps[0].custom == nil {
			t.Fatalf("%q: no hand-written splitter", expr)
		}
		pat, collapsed, err := translateRegex(expr)
		if err != nil {
			t.Fatal(err)
		}
		general := &preTokenizer{steps: []splitStep{{re: mustCompile(t, pat), collapsed: collapsed}}, needCollapsed: collapsed, needWide: !collapsed}
		for _, text := range texts {
			a, b := goSplit(custom, text), goSplit(general, text)
			if !slices.Equal(a, b) {
				t.Fatalf("%q on %q:\n custom %q\n regex  %q", expr, text, a, b)
			}
		}
	}
}

func mustCompile(t *testing.T, pat string) *regexp2.Regexp {
	t.Helper()
	re, err := regexp2.Compile(pat, regexp2.None)
	if err != nil {
		t.Fatal(err)
	}
	return re
}

// TestEveryPreTokenizer builds every pre-tokenizer name llama.cpp accepts
// and this package supports, and splits the vector texts with it: every
// regex compiles, every family is reachable, and the pieces cover the text.
func TestEveryPreTokenizer(t *testing.T) {
	texts := append(vectorTexts(t), randomTexts(50, 40, 3)...)
	reached := map[string]bool{}
	for _, name := range PreTokenizers() {
		cfg, err := lookupPre(name)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		reached[cfg.name] = true
		p, err := newPreTokenizer(cfg)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		for _, text := range texts {
			if !utf8.ValidString(text) {
				continue
			}
			if got := strings.Join(goSplit(p, text), ""); got != text {
				t.Fatalf("%s: pieces of %q join to %q", name, text, got)
			}
		}
	}
	for fam := range preFamilies {
		if !reached[fam] {
			t.Errorf("pre-tokenizer family %q has no name", fam)
		}
	}
	for name := range unsupportedPre {
		if _, err := lookupPre(name); err == nil || !strings.Contains(err.Error(), "not supported") {
			t.Errorf("%s: err = %v", name, err)
		}
	}
	t.Logf("%d names, %d families", len(PreTokenizers()), len(preFamilies))
}
