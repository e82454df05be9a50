package tokenizer

import (
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/dlclark/regexp2"
)

// preConfig describes one of llama.cpp's BPE pre-tokenizers
// (llama_vocab_pre_type) and the vocabulary flags it implies.
type preConfig struct {
	name  string   // the pre-tokenizer family, e.g. "llama3"
	exprs []string // regexes applied in turn, each refining the pieces of the previous one

	rawUTF8       bool // BPE on raw UTF-8 (spaces as ▁, <0xXX> byte fallback) instead of GPT-2 byte encoding
	escapeSpaces  bool
	noCleanSpaces bool
	ignoreMerges  bool
	addBOS        bool
	addSep        bool
	noBOS         bool
}

// Contraction alternatives as llama.cpp writes (?i:'s|'t|...) for std::regex.
const contractions = `(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])`

// The regexes of llama.cpp's llm_tokenizer_bpe, by pre-tokenizer family.
var (
	reGPT2   = `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)`
	reLlama3 = contractions + `|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
	reQwen2  = contractions + `|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
	reQwen35 = contractions + `|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
	reJais2  = contractions + `|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|` +
		`\s{512}(?!\S)|\s{256}(?!\S)|\s{128}(?!\S)|\s{64}(?!\S)|\s{32}(?!\S)|\s{16}(?!\S)|\s{8}(?!\S)|\s{4}(?!\S)|\s{1,2}(?!\S)|\s{1}`
	// \s? followed by the cased letters (HF's \p{LC} of the DeepSeek tokenizer).
	reDeepseekLetters = `\s?[A-Za-z\x{B5}\x{C0}-\x{D6}\x{D8}-\x{F6}\x{F8}-\x{1BA}\x{1BC}-\x{1BF}\x{1C4}-\x{293}\x{295}-\x{2AF}` +
		`\x{370}-\x{373}\x{376}\x{377}\x{37B}-\x{37D}\x{37F}\x{386}\x{388}-\x{38A}\x{38C}\x{38E}-\x{3A1}\x{3A3}-\x{3F5}` +
		`\x{3F7}-\x{481}\x{48A}-\x{52F}\x{531}-\x{556}\x{10A0}-\x{10C5}\x{13A0}-\x{13F5}\x{13F8}-\x{13FD}\x{1C90}-\x{1CBA}` +
		`\x{1CBD}-\x{1CBF}\x{1D00}-\x{1D2B}\x{1D6B}-\x{1D77}\x{1D79}-\x{1D9A}\x{1E00}-\x{1F15}\x{1F18}-\x{1F1D}\x{1F20}-\x{1F45}` +
		`\x{1F48}-\x{1F4D}\x{1F50}-\x{1F57}\x{1F59}\x{1F5B}\x{1F5D}\x{1F5F}-\x{1F7D}\x{1F80}-\x{1FB4}\x{1FB6}-\x{1FBC}\x{1FBE}` +
		`\x{1FC2}-\x{1FC4}\x{1FC6}-\x{1FCC}\x{1FD0}-\x{1FD3}\x{1FD6}-\x{1FDB}\x{1FE0}-\x{1FEC}\x{1FF2}-\x{1FF4}\x{1FF6}-\x{1FFC}` +
		`\x{2102}\x{2107}\x{210A}-\x{2113}\x{2115}\x{2119}-\x{211D}\x{2124}\x{2126}\x{2128}\x{212A}-\x{212D}\x{212F}-\x{2134}` +
		`\x{2139}\x{213C}-\x{213F}\x{2145}-\x{2149}\x{214E}\x{2183}\x{2184}\x{2C00}-\x{2C7B}\x{2C7E}-\x{2CE4}\x{2CEB}-\x{2CEE}` +
		`\x{2CF2}\x{2CF3}\x{A640}-\x{A66D}\x{A680}-\x{A69B}\x{A722}-\x{A76F}\x{A771}-\x{A787}\x{A78B}-\x{A78E}\x{AB70}-\x{ABBF}` +
		`\x{FB00}-\x{FB06}\x{FB13}-\x{FB17}\x{FF21}-\x{FF3A}\x{FF41}-\x{FF5A}\x{10400}-\x{1044F}\x{104B0}-\x{104D3}` +
		`\x{104D8}-\x{104FB}\x{10C80}-\x{10CB2}\x{10CC0}-\x{10CF2}\x{118A0}-\x{118DF}\x{1E900}-\x{1E943}]+`
	reDeepseekPunct = `\s?[!-/:-~\x{FF01}-\x{FF0F}\x{FF1A}-\x{FF5E}\x{2018}-\x{201F}\x{3000}-\x{3002}]+`
	reCJK           = `[\x{4E00}-\x{9FA5}\x{800}-\x{4E00}\x{AC00}-\x{D7FF}]+`
	reKana          = `[\x{4E00}-\x{9FA5}\x{3040}-\x{309F}\x{30A0}-\x{30FF}]+`
	rePunctLetters  = `[!"#$%&'()*+,\-./:;<=>?@\[\\\]^_` + "`" + `{|}~][A-Za-z]+`
	rePoro          = ` ?[^(\s|.,!?\x{2026}\x{3002}\x{FF0C}\x{3001}\x{964}\x{6D4}\x{60C})]+`
	reUpperLower    = `((?=[\p{L}])([^a-z]))*((?=[\p{L}])([^A-Z]))+`
	reUpperLower2   = `((?=[\p{L}])([^a-z]))+((?=[\p{L}])([^A-Z]))*`
)

// preFamilies maps a pre-tokenizer family to its settings.
var preFamilies = map[string]preConfig{
	"default": {exprs: []string{`[\p{P}\$\+<=>\^~\|]+`, reGPT2, `\p{N}+`, `[0-9][0-9][0-9]`}},
	"llama3":  {exprs: []string{reLlama3}, ignoreMerges: true, addBOS: true},
	"dbrx":    {exprs: []string{reLlama3}},
	"jais2":   {exprs: []string{reJais2}},
	"deepseek-llm": {exprs: []string{`[\r\n]`, reDeepseekLetters, reDeepseekPunct, `\s+$`, reCJK, `\p{N}+`},
		noCleanSpaces: true},
	"deepseek-coder": {exprs: []string{`[\r\n]`, `\s?\p{L}+`, `\s?\p{P}+`, reCJK, `\p{N}`}, noCleanSpaces: true},
	"deepseek-v3": {exprs: []string{`\p{N}{1,3}`, reKana,
		rePunctLetters + `|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+| ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`},
		noCleanSpaces: true},
	"spark2_5": {exprs: []string{`\p{N}{1,3}`, reKana,
		rePunctLetters + `|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+| ?[\p{P}\p{S}]+|[\r\n]|\s+(?!\S)|\s+`, `\p{N}`},
		noCleanSpaces: true},
	"falcon":    {exprs: []string{`[\p{P}\$\+<=>\^~\|` + "`" + `]+`, reGPT2, `[0-9][0-9][0-9]`}},
	"starcoder": {exprs: []string{`\p{N}`, reGPT2}},
	"gpt2":      {exprs: []string{reGPT2}},
	"qwen2":     {exprs: []string{reQwen2}},
	"qwen35":    {exprs: []string{reQwen35}},
	"poro":      {exprs: []string{rePoro}},
	"viking":    {exprs: []string{rePoro, `\p{N}`}, noCleanSpaces: true},
	"tekken": {exprs: []string{`[^\r\n\p{L}\p{N}]?` + reUpperLower + `|[^\r\n\p{L}\p{N}]?` + reUpperLower2 +
		`|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+`},
		noCleanSpaces: true, ignoreMerges: true, addBOS: true},
	"chameleon": {exprs: []string{`<sentinel:[0-9]+>`, `(IMGIMG)((A|B|C|D|E|F|G|H|I){1,4})Z`, `([\t\n]|    |  )`, `\p{N}`,
		`[\p{P}!-/:-@\[-` + "`" + `{-~]`, reGPT2}, addBOS: true, noCleanSpaces: true},
	"gpt-4o": {exprs: []string{`[^\r\n\p{L}\p{N}]?` + reUpperLower + `(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?` +
		`|[^\r\n\p{L}\p{N}]?` + reUpperLower2 + `(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?` +
		`|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+`}, noCleanSpaces: true},
	"granite-embed-multi-97m": {exprs: []string{
		`[^\r\n\p{L}\p{N}]?((?=[\p{L}\p{M}])([^a-z]))*((?=[\p{L}\p{M}])([^A-Z]))+(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?` +
			`|[^\r\n\p{L}\p{N}]?((?=[\p{L}\p{M}])([^a-z]))+((?=[\p{L}\p{M}])([^A-Z]))*(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?` +
			`|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+`},
		noCleanSpaces: true, ignoreMerges: true},
	"tiny_aya": {exprs: []string{`\d{1,3}(?=(?:\d{3})*\b)`,
		`[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?` +
			`|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?` +
			`|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+`}, noCleanSpaces: true},
	"superbpe":   {exprs: []string{`\p{N}+`, `(?=(\d{3})+(?!\d))`}, noCleanSpaces: true},
	"bailingmoe": {exprs: []string{`'(?:[sSdDmMtT]|[lL][lL]|[vV][eE]|[rR][eE])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]|\s+(?!\S)|\s+`}, noCleanSpaces: true},
	"seed-coder": {exprs: []string{contractions + `|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1}| ?[^\s\p{L}\p{N}\r\n]+|\s*[\r\n]+|\s+(?!\S)|\s+`}, noCleanSpaces: true},
	"ufakzeka":   {exprs: []string{`[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`}, noCleanSpaces: true},
	"laguna":     {exprs: []string{`[^\n]+|[\n]+`, reQwen2}, noCleanSpaces: true},
	"exaone-moe": {exprs: []string{contractions + `|[^\r\n\p{L}\p{N}]?(?:\p{L}\p{M}*(?: \p{L}\p{M}*)*)+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]?|\s*[\r\n]|\s+(?!\S)|\s+`}},
	"gemma4":     {exprs: []string{`[^\n]+|[\n]+`}, rawUTF8: true, escapeSpaces: true},
	"minicpm5": {exprs: []string{`\p{N}{1,3}`, contractions + `|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}+| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`},
		ignoreMerges: true},
}

// preNames maps tokenizer.ggml.pre to a family and the flag changes that name
// carries on top of the family's (llama_vocab::impl::load).
var preNames = map[string]struct {
	family string
	adjust func(*preConfig)
}{}

func init() {
	noClean := func(c *preConfig) { c.noCleanSpaces = true }
	add := func(family string, adjust func(*preConfig), names ...string) {
		for _, n := range names {
			preNames[n] = struct {
				family string
				adjust func(*preConfig)
			}{family, adjust}
		}
	}
	add("default", nil, "", "default")
	add("llama3", nil, "llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral", "midm-2.0", "lfm2", "jina-v5-nano")
	add("dbrx", nil, "dbrx", "smaug-bpe")
	add("dbrx", func(c *preConfig) { c.noBOS = true }, "glm4", "chatglm-bpe")
	add("jais2", nil, "jais-2")
	add("deepseek-llm", nil, "deepseek-llm")
	add("deepseek-coder", nil, "deepseek-coder")
	add("deepseek-v3", nil, "deepseek-v3", "hunyuan-dense", "hy_v4", "joyai-llm")
	add("spark2_5", nil, "spark2_5")
	add("falcon", nil, "falcon")
	add("gpt2", nil, "mpt", "gpt-2", "phi-2", "jina-es", "jina-de", "gigachat", "jina-v2-es", "jina-v2-de", "a.x-4.0",
		"mellum", "modern-bert", "exaone4", "olmo", "jais")
	add("gpt2", func(c *preConfig) { c.addSep = true }, "jina-v1-en", "jina-v2-code", "roberta-bpe")
	add("gpt2", noClean, "trillion", "granite-docling")
	add("starcoder", nil, "starcoder", "refact", "codeshell", "exaone", "minerva-7b", "mellum2")
	add("starcoder", noClean, "command-r", "smollm")
	add("qwen2", noClean, "qwen2", "deepseek-r1-qwen", "kormo", "f2llmv2", "hunyuan", "solar-open", "grok-2")
	add("qwen2", nil, "megrez", "stablelm2")
	add("qwen35", noClean, "qwen35")
	add("poro", noClean, "poro-chat")
	add("poro", nil, "bloom", "gpt3-finnish")
	add("viking", nil, "viking")
	add("tekken", nil, "tekken")
	add("chameleon", nil, "chameleon")
	add("gpt-4o", nil, "gpt-4o", "llama4", "kanana2", "talkie", "minimax-m2")
	add("granite-embed-multi-97m", nil, "granite-embed-multi-97m")
	add("tiny_aya", nil, "tiny_aya", "cohere2moe")
	add("superbpe", nil, "superbpe")
	add("bailingmoe", nil, "bailingmoe", "bailingmoe2", "llada-moe")
	add("seed-coder", nil, "seed-coder")
	add("ufakzeka", nil, "ufakzeka")
	add("laguna", nil, "laguna")
	add("exaone-moe", nil, "exaone-moe")
	add("gemma4", nil, "gemma4", "granite-embed-multi-311m")
	add("gemma4", func(c *preConfig) { c.noCleanSpaces = true }, "sarvam-moe")
	add("minicpm5", nil, "minicpm5")
}

// Pre-tokenizers llama.cpp knows that this package does not implement.
var unsupportedPre = map[string]string{
	"kimi-k2":    "needs llama.cpp's hand-written \\p{Han} splitter",
	"afmoe":      "needs llama.cpp's hand-written digit splitter and its CJK ranges",
	"youtu":      "its CJK/Hangul punctuation ranges are not transcribed",
	"whitespace": "the whitespace tokenizer model is not implemented",
}

func lookupPre(pre string) (preConfig, error) {
	if why, ok := unsupportedPre[pre]; ok {
		return preConfig{}, fmt.Errorf("tokenizer: pre-tokenizer %q is not supported: %s", pre, why)
	}
	p, ok := preNames[pre]
	if !ok {
		return preConfig{}, fmt.Errorf("tokenizer: unknown pre-tokenizer type %q", pre)
	}
	cfg := preFamilies[p.family]
	cfg.name = p.family
	cfg.exprs = append([]string(nil), cfg.exprs...)
	if p.adjust != nil {
		p.adjust(&cfg)
	}
	return cfg, nil
}

// PreTokenizers lists the tokenizer.ggml.pre values this package accepts.
func PreTokenizers() []string {
	out := make([]string, 0, len(preNames))
	for n := range preNames {
		if n != "" {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return out
}

// A splitStep is one regex of a pre-tokenizer: either one of the hand-written
// splitters (for the regexes llama.cpp also hand-writes, and qwen2's) or a
// regexp2 program run as llama.cpp runs std::regex.
type splitStep struct {
	custom    func(cpts []rune, start, end int, out []int) []int
	re        *regexp2.Regexp
	collapsed bool // run on the category-collapsed text rather than the code points
}

type preTokenizer struct {
	cfg           preConfig
	steps         []splitStep
	needCollapsed bool
	needWide      bool
}

func newPreTokenizer(cfg preConfig) (*preTokenizer, error) {
	p := &preTokenizer{cfg: cfg}
	for _, e := range cfg.exprs {
		var st splitStep
		switch e {
		case reGPT2:
			st.custom = splitGPT2
		case reLlama3:
			st.custom = splitLlama3
		case reQwen2:
			st.custom = splitQwen2
		default:
			pat, collapsed, err := translateRegex(e)
			if err != nil {
				return nil, err
			}
			re, err := regexp2.Compile(pat, regexp2.None)
			if err != nil {
				return nil, fmt.Errorf("tokenizer: pre-tokenizer %q: regex %q: %w", cfg.name, e, err)
			}
			st.re, st.collapsed = re, collapsed
			if collapsed {
				p.needCollapsed = true
			} else {
				p.needWide = true
			}
		}
		p.steps = append(p.steps, st)
	}
	return p, nil
}

// Stand-ins for the code point classes in the collapsed text (llama.cpp uses
// the bytes 0xD0..0xD5; private-use code points keep them clear of \w).
const (
	collapsedOther rune = 0xE0D0 + iota
	collapsedNumber
	collapsedLetter
	collapsedPunct
	collapsedMark
	collapsedSymbol
)

// ucat lists the \p{..} classes llama.cpp collapses: the stand-in, and the
// ASCII characters of the class (llama.cpp keeps ASCII as is; its symbol
// list leaves out '~').
var ucat = map[string]string{
	`\p{N}`:  string(collapsedNumber) + `0-9`,
	`\p{L}`:  string(collapsedLetter) + `A-Za-z`,
	`\p{P}`:  string(collapsedPunct) + `!-#%-*,-/:-;?-@\[-\]_\{\}`,
	`\p{M}`:  string(collapsedMark),
	`\p{S}`:  string(collapsedSymbol) + `\$\+<->\^` + "`" + `\|`,
	`\p{Lu}`: string(collapsedLetter) + `A-Za-z`,
	`\p{Ll}`: string(collapsedLetter) + `A-Za-z`,
	`\p{Lt}`: string(collapsedLetter) + `A-Za-z`,
	`\p{Lm}`: string(collapsedLetter) + `A-Za-z`,
	`\p{Lo}`: string(collapsedLetter) + `A-Za-z`,
}

// translateRegex turns one of llama.cpp's std::regex (ECMAScript) patterns
// into a regexp2 pattern with the same matches on the text llama.cpp feeds
// it. A pattern with Unicode classes is rewritten the way llama.cpp rewrites
// it for its "collapsed" text (every code point >= 128 replaced by a stand-in
// for its class); others run on the code points with non-ASCII whitespace
// replaced by \v, as llama.cpp's std::wregex path does. Then the .NET-isms
// that differ from ECMAScript are neutralised: $ only at the very end, \d
// only ASCII digits.
func translateRegex(expr string) (pattern string, collapsed bool, err error) {
	for k := range ucat {
		if strings.Contains(expr, k) {
			collapsed = true
			break
		}
	}
	if collapsed {
		for _, r := range expr {
			if r >= 128 {
				return "", false, fmt.Errorf("tokenizer: regex %q mixes Unicode classes and non-ASCII characters", expr)
			}
		}
		var b strings.Builder
		inside := false
		for i := 0; i < len(expr); i++ {
			c := expr[i]
			if c == '[' && (i == 0 || expr[i-1] != '\\') {
				b.WriteByte('[')
				inside = true
				continue
			}
			if inside && c == ']' && expr[i-1] != '\\' {
				b.WriteByte(']')
				inside = false
				continue
			}
			if c == '\\' && i+3 < len(expr) && expr[i+1] == 'p' && expr[i+2] == '{' {
				if j := strings.IndexByte(expr[i+3:], '}'); j >= 0 && i+3+j <= i+10 {
					if cls, ok := ucat[expr[i:i+3+j+1]]; ok {
						if !inside {
							b.WriteByte('[')
						}
						b.WriteString(cls)
						if !inside {
							b.WriteByte(']')
						}
						i += 3 + j
						continue
					}
				}
			}
			b.WriteByte(c)
		}
		expr = b.String()
	}
	// ECMAScript vs .NET: rewrite \d and $ outside escapes.
	var b strings.Builder
	inClass := false
	for i := 0; i < len(expr); i++ {
		c := expr[i]
		switch {
		case c == '\\' && i+1 < len(expr):
			switch expr[i+1] {
			case 'd':
				if inClass {
					b.WriteString("0-9")
				} else {
					b.WriteString("[0-9]")
				}
			case 'D':
				if inClass {
					b.WriteString(`\D`)
				} else {
					b.WriteString("[^0-9]")
				}
			default:
				b.WriteByte(c)
				b.WriteByte(expr[i+1])
			}
			i++
			continue
		case c == '[' && !inClass:
			inClass = true
			b.WriteByte(c)
			continue
		case c == ']' && inClass:
			inClass = false
		case c == '$' && !inClass:
			b.WriteString(`\z`)
			continue
		}
		b.WriteByte(c)
	}
	return b.String(), collapsed, nil
}

// split cuts text into the pieces BPE merges within (llama.cpp's
// unicode_regex_split without the byte encoding): each regex in turn splits
// every piece so far into its matches and the text between them.
func (p *preTokenizer) split(text string, cpts []rune, fn func(piece []rune)) {
	cpts = decodeCpts(text, cpts[:0])
	var collapsed, wide []rune
	if p.needCollapsed {
		collapsed = make([]rune, len(cpts))
		for i, r := range cpts {
			collapsed[i] = collapse(r)
		}
	}
	if p.needWide {
		wide = make([]rune, len(cpts))
		for i, r := range cpts {
			if r > 0x7F && isWhitespace(r) {
				r = 0x0B
			}
			wide[i] = r
		}
	}
	chunks := []int{len(cpts)}
	var next []int
	for _, st := range p.steps {
		next = next[:0]
		start := 0
		for _, n := range chunks {
			if n == 0 {
				continue
			}
			switch {
			case st.custom != nil:
				next = st.custom(cpts, start, start+n, next)
			case st.collapsed:
				next = regexSplit(st.re, collapsed[start:start+n], next)
			default:
				next = regexSplit(st.re, wide[start:start+n], next)
			}
			start += n
		}
		chunks, next = next, chunks
	}
	start := 0
	for _, n := range chunks {
		if n > 0 {
			fn(cpts[start : start+n])
		}
		start += n
	}
}

func collapse(r rune) rune {
	if r < 128 {
		return r
	}
	f := cptFlags(r)
	switch {
	case f&cfWhitespace != 0:
		return 0x0B
	case f&cfNumber != 0:
		return collapsedNumber
	case f&cfLetter != 0:
		return collapsedLetter
	case f&cfPunctuation != 0:
		return collapsedPunct
	case f&cfAccentMark != 0:
		return collapsedMark
	case f&cfSymbol != 0:
		return collapsedSymbol
	}
	return collapsedOther
}

// regexSplit appends the lengths of the matches of re in text and of the
// stretches between them.
func regexSplit(re *regexp2.Regexp, text []rune, out []int) []int {
	pos := 0
	m, err := re.FindRunesMatch(text)
	for err == nil && m != nil {
		if m.Index > pos {
			out = append(out, m.Index-pos)
		}
		if m.Length > 0 {
			out = append(out, m.Length)
		}
		pos = m.Index + m.Length
		m, err = re.FindNextMatch(m)
	}
	if pos < len(text) {
		out = append(out, len(text)-pos)
	}
	return out
}

// splitGPT2 is GPT-2's regex
//
//	's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)
//
// written out by hand, as llama.cpp does; text no alternative matches becomes
// a piece of its own, as between regex matches.
func splitGPT2(cpts []rune, start, end int, out []int) []int {
	flags := func(p int) uint16 {
		if p < start || p >= end {
			return 0
		}
		return cptFlags(cpts[p])
	}
	prev := start
	emit := func(e int) {
		if e > prev {
			out = append(out, e-prev)
		}
		prev = e
	}
	for pos := start; pos < end; {
		c := cpts[pos]
		if c == '\'' && pos+1 < end {
			n := cpts[pos+1]
			if n == 's' || n == 't' || n == 'm' || n == 'd' {
				pos += 2
				emit(pos)
				continue
			}
			if pos+2 < end {
				nn := cpts[pos+2]
				if (n == 'r' && nn == 'e') || (n == 'v' && nn == 'e') || (n == 'l' && nn == 'l') {
					pos += 3
					emit(pos)
					continue
				}
			}
		}
		f2 := flags(pos)
		if c == ' ' {
			f2 = flags(pos + 1)
		}
		const lnw = cfLetter | cfNumber | cfWhitespace
		switch {
		case f2&cfLetter != 0:
			if c == ' ' {
				pos++
			}
			for flags(pos)&cfLetter != 0 {
				pos++
			}
			emit(pos)
			continue
		case f2&cfNumber != 0:
			if c == ' ' {
				pos++
			}
			for flags(pos)&cfNumber != 0 {
				pos++
			}
			emit(pos)
			continue
		case f2&lnw == 0 && f2 != 0:
			if c == ' ' {
				pos++
			}
			for f := flags(pos); f&lnw == 0 && f != 0; f = flags(pos) {
				pos++
			}
			emit(pos)
			continue
		}
		nws := 0
		for flags(pos+nws)&cfWhitespace != 0 {
			nws++
		}
		switch {
		case nws > 1 && pos+nws < end:
			pos += nws - 1 // \s+(?!\S): leave the last one to the next word
		case nws > 0:
			pos += nws
		default:
			pos++
		}
		emit(pos)
	}
	return out
}

// splitLlama3 and splitQwen2 are the Llama 3 and Qwen2 regexes
//
//	(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
//
// (Qwen2 with \p{N} for \p{N}{1,3}) written out by hand.
func splitLlama3(cpts []rune, start, end int, out []int) []int {
	return splitLlama3Digits(cpts, start, end, out, 3)
}

func splitQwen2(cpts []rune, start, end int, out []int) []int {
	return splitLlama3Digits(cpts, start, end, out, 1)
}

func splitLlama3Digits(cpts []rune, start, end int, out []int, maxDigits int) []int {
	flags := func(p int) uint16 {
		if p < start || p >= end {
			return 0
		}
		return cptFlags(cpts[p])
	}
	cpt := func(p int) rune {
		if p < start || p >= end {
			return -1
		}
		return cpts[p]
	}
	prev := start
	emit := func(e int) {
		if e > prev {
			out = append(out, e-prev)
		}
		prev = e
	}
	for pos := start; pos < end; {
		c := cpts[pos]
		f := flags(pos)
		if c == '\'' && pos+1 < end {
			n := toLower(cpts[pos+1])
			if n == 's' || n == 't' || n == 'm' || n == 'd' {
				pos += 2
				emit(pos)
				continue
			}
			if pos+2 < end {
				nn := toLower(cpts[pos+2])
				if (n == 'r' && nn == 'e') || (n == 'v' && nn == 'e') || (n == 'l' && nn == 'l') {
					pos += 3
					emit(pos)
					continue
				}
			}
		}
		// [^\r\n\p{L}\p{N}]?\p{L}+
		if !(c == '\r' || c == '\n' || f&cfNumber != 0) && (f&cfLetter != 0 || flags(pos+1)&cfLetter != 0) {
			pos++
			for flags(pos)&cfLetter != 0 {
				pos++
			}
			emit(pos)
			continue
		}
		// \p{N}{1,maxDigits}
		if f&cfNumber != 0 {
			ini := pos
			for flags(pos)&cfNumber != 0 {
				pos++
				if pos-ini >= maxDigits {
					emit(pos)
					ini = pos
				}
			}
			emit(pos)
			continue
		}
		// ' ?[^\s\p{L}\p{N}]+[\r\n]*'
		f2 := f
		if c == ' ' {
			f2 = flags(pos + 1)
		}
		const lnw = cfLetter | cfNumber | cfWhitespace
		if f2&lnw == 0 && f2 != 0 {
			if c == ' ' {
				pos++
			}
			for g := flags(pos); g&lnw == 0 && g != 0; g = flags(pos) {
				pos++
			}
			for r := cpt(pos); r == '\r' || r == '\n'; r = cpt(pos) {
				pos++
			}
			emit(pos)
			continue
		}
		nws, lastNL := 0, -1
		for flags(pos+nws)&cfWhitespace != 0 {
			if r := cpts[pos+nws]; r == '\r' || r == '\n' {
				lastNL = pos + nws + 1
			}
			nws++
		}
		switch {
		case lastNL >= 0: // \s*[\r\n]+
			pos = lastNL
		case nws > 1 && pos+nws < end: // \s+(?!\S)
			pos += nws - 1
		case nws > 0: // \s+
			pos += nws
		default:
			pos++
		}
		emit(pos)
	}
	return out
}

// appendPiece appends the UTF-8 text of the code points, byte-encoded
// GPT-2-style when byteEncode is set.
func appendPiece(dst []byte, piece []rune, byteEncode bool) []byte {
	if !byteEncode {
		for _, r := range piece {
			dst = appendCpt(dst, r)
		}
		return dst
	}
	var tmp [4]byte
	for _, r := range piece {
		for _, b := range appendCpt(tmp[:0], r) {
			dst = utf8.AppendRune(dst, byteToRune[b])
		}
	}
	return dst
}
