package jinja

import (
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

type tokKind int

const (
	tEOF tokKind = iota
	tText
	tVarBegin
	tVarEnd
	tBlockBegin
	tBlockEnd
	tName
	tString
	tInt
	tFloat
	tOp
)

type token struct {
	kind tokKind
	val  string // text, name, decoded string, operator
	num  Value  // int64 or float64 for numbers
	line int
}

// lex splits a template into tokens the way jinja2's lexer does with
// trim_blocks=True, lstrip_blocks=True and keep_trailing_newline=False.
func lex(src string) ([]token, error) {
	src = strings.ReplaceAll(src, "\r\n", "\n")
	src = strings.ReplaceAll(src, "\r", "\n")
	src = strings.TrimSuffix(src, "\n")

	lx := &lexer{src: src, line: 1}
	if err := lx.run(); err != nil {
		return nil, err
	}
	return lx.toks, nil
}

type lexer struct {
	src  string
	pos  int
	line int
	toks []token
}

func (lx *lexer) emit(k tokKind, v string) {
	lx.toks = append(lx.toks, token{kind: k, val: v, line: lx.line})
}

func (lx *lexer) errorf(format string, args ...any) error {
	return fmt.Errorf("line %d: %s", lx.line, fmt.Sprintf(format, args...))
}

func (lx *lexer) advance(n int) {
	lx.line += strings.Count(lx.src[lx.pos:lx.pos+n], "\n")
	lx.pos += n
}

func isSpace(r rune) bool { return unicode.IsSpace(r) }

// lstripText applies a tag's left whitespace control to the text before it.
func lstripText(text string, sign byte, lstrip, lineStarting bool) string {
	switch {
	case sign == '-':
		return strings.TrimRightFunc(text, isSpace)
	case sign != '+' && lstrip:
		l := strings.LastIndexByte(text, '\n') + 1
		if l > 0 || lineStarting {
			if strings.Trim(text[l:], " \t") == "" {
				return text[:l]
			}
		}
	}
	return text
}

func (lx *lexer) run() error {
	lineStarting := true
	for lx.pos < len(lx.src) {
		rest := lx.src[lx.pos:]
		start := -1
		for i := 0; i+1 < len(rest); i++ {
			if rest[i] == '{' && (rest[i+1] == '{' || rest[i+1] == '%' || rest[i+1] == '#') {
				start = i
				break
			}
		}
		if start < 0 {
			lx.emit(tText, rest)
			lx.advance(len(rest))
			return nil
		}
		text := rest[:start]
		kind := rest[start+1]
		var sign byte
		if start+2 < len(rest) && (rest[start+2] == '-' || rest[start+2] == '+') {
			sign = rest[start+2]
		}
		// {% raw %} ... {% endraw %}
		if kind == '%' {
			if n, ok := matchRawTag(rest[start:], "raw"); ok {
				if t := lstripText(text, sign, true, lineStarting); t != "" {
					lx.emit(tText, t)
				}
				lx.advance(start + n)
				if err := lx.raw(); err != nil {
					return err
				}
				lineStarting = lx.pos > 0 && lx.src[lx.pos-1] == '\n'
				continue
			}
		}
		if t := lstripText(text, sign, kind != '{', lineStarting); t != "" {
			lx.emit(tText, t)
		}
		n := 2
		if sign != 0 {
			n = 3
		}
		lx.advance(start + n)
		var err error
		switch kind {
		case '#':
			err = lx.comment()
		case '%':
			lx.emit(tBlockBegin, "")
			err = lx.tag('%')
		case '{':
			lx.emit(tVarBegin, "")
			err = lx.tag('}')
		}
		if err != nil {
			return err
		}
		lineStarting = lx.pos > 0 && lx.src[lx.pos-1] == '\n'
	}
	return nil
}

// matchRawTag matches "{%[-+]? <word> [-]?%}" at the start of s and returns
// its length (without trailing whitespace control consumption).
func matchRawTag(s, word string) (int, bool) {
	i := 2
	if i < len(s) && (s[i] == '-' || s[i] == '+') {
		i++
	}
	for i < len(s) && isSpaceByte(s[i]) {
		i++
	}
	if !strings.HasPrefix(s[i:], word) {
		return 0, false
	}
	i += len(word)
	if i < len(s) && (isIdentByte(s[i])) {
		return 0, false
	}
	for i < len(s) && isSpaceByte(s[i]) {
		i++
	}
	if strings.HasPrefix(s[i:], "-%}") {
		i += 3
		for i < len(s) && isSpaceByte(s[i]) {
			i++
		}
		return i, true
	}
	if strings.HasPrefix(s[i:], "%}") {
		return i + 2, true
	}
	return 0, false
}

func isSpaceByte(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'
}

func isIdentByte(c byte) bool {
	return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

func (lx *lexer) raw() error {
	rest := lx.src[lx.pos:]
	for i := 0; i+1 < len(rest); i++ {
		if rest[i] != '{' || rest[i+1] != '%' {
			continue
		}
		s := rest[i:]
		j := 2
		var sign byte
		if j < len(s) && (s[j] == '-' || s[j] == '+') {
			sign = s[j]
			j++
		}
		for j < len(s) && isSpaceByte(s[j]) {
			j++
		}
		if !strings.HasPrefix(s[j:], "endraw") {
			continue
		}
		j += len("endraw")
		for j < len(s) && isSpaceByte(s[j]) {
			j++
		}
		switch {
		case strings.HasPrefix(s[j:], "+%}"):
			j += 3
		case strings.HasPrefix(s[j:], "-%}"):
			j += 3
			for j < len(s) && isSpaceByte(s[j]) {
				j++
			}
		case strings.HasPrefix(s[j:], "%}"):
			j += 2
			if j < len(s) && s[j] == '\n' {
				j++
			}
		default:
			continue
		}
		body := lstripText(rest[:i], sign, true, false)
		if body != "" {
			lx.emit(tText, body)
		}
		lx.advance(i + j)
		return nil
	}
	return lx.errorf("missing end of raw directive")
}

func (lx *lexer) comment() error {
	rest := lx.src[lx.pos:]
	i := strings.Index(rest, "#}")
	if i < 0 {
		return lx.errorf("missing end of comment tag")
	}
	end := i + 2
	switch {
	case i > 0 && rest[i-1] == '-':
		for end < len(rest) {
			r, n := utf8.DecodeRuneInString(rest[end:])
			if !isSpace(r) {
				break
			}
			end += n
		}
	case i > 0 && rest[i-1] == '+':
	default:
		if end < len(rest) && rest[end] == '\n' {
			end++
		}
	}
	lx.advance(end)
	return nil
}

var operators = []string{"//", "**", "==", "!=", "<=", ">=", "+", "-", "/", "*", "%", "~", "[", "]", "(", ")", "{", "}", "<", ">", "=", ".", ":", "|", ",", ";"}

// tag tokenizes the inside of {% ... %} (end '%') or {{ ... }} (end '}').
func (lx *lexer) tag(end byte) error {
	depth := 0
	for {
		// Skip whitespace.
		for lx.pos < len(lx.src) {
			r, n := utf8.DecodeRuneInString(lx.src[lx.pos:])
			if !isSpace(r) {
				break
			}
			lx.advance(n)
		}
		if lx.pos >= len(lx.src) {
			if end == '%' {
				return lx.errorf("unexpected end of template, expected end of block statement")
			}
			return lx.errorf("unexpected end of template, expected end of print statement")
		}
		rest := lx.src[lx.pos:]
		closer := string([]byte{end, '}'})
		if depth == 0 {
			switch {
			case strings.HasPrefix(rest, "-"+closer):
				n := 3
				for n < len(rest) {
					r, sz := utf8.DecodeRuneInString(rest[n:])
					if !isSpace(r) {
						break
					}
					n += sz
				}
				lx.advance(n)
				lx.emitEnd(end)
				return nil
			case end == '%' && strings.HasPrefix(rest, "+%}"):
				lx.advance(3)
				lx.emitEnd(end)
				return nil
			case strings.HasPrefix(rest, closer):
				n := 2
				if end == '%' && len(rest) > 2 && rest[2] == '\n' {
					n = 3
				}
				lx.advance(n)
				lx.emitEnd(end)
				return nil
			}
		}
		c := rest[0]
		switch {
		case c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z':
			n := 1
			for n < len(rest) && isIdentByte(rest[n]) {
				n++
			}
			lx.emit(tName, rest[:n])
			lx.advance(n)
		case c >= '0' && c <= '9':
			afterDot := lx.pos > 0 && lx.src[lx.pos-1] == '.'
			if err := lx.number(rest, afterDot); err != nil {
				return err
			}
		case c == '\'' || c == '"':
			if err := lx.str(rest, c); err != nil {
				return err
			}
		default:
			op := ""
			for _, o := range operators {
				if strings.HasPrefix(rest, o) {
					op = o
					break
				}
			}
			if op == "" {
				return lx.errorf("unexpected char %q", c)
			}
			switch op {
			case "(", "[", "{":
				depth++
			case ")", "]", "}":
				if depth == 0 {
					return lx.errorf("unexpected %q", op)
				}
				depth--
			}
			lx.emit(tOp, op)
			lx.advance(len(op))
		}
	}
}

func (lx *lexer) emitEnd(end byte) {
	if end == '%' {
		lx.emit(tBlockEnd, "")
	} else {
		lx.emit(tVarEnd, "")
	}
}

func scanDigits(s string, i int) int {
	start := i
	for i < len(s) && (s[i] >= '0' && s[i] <= '9' || s[i] == '_' && i > start && i+1 < len(s) && s[i+1] >= '0' && s[i+1] <= '9') {
		i++
	}
	return i
}

func (lx *lexer) number(rest string, afterDot bool) error {
	// Prefixed integers.
	if len(rest) > 2 && rest[0] == '0' && strings.ContainsRune("bBoOxX", rune(rest[1])) {
		n := 2
		for n < len(rest) && (isIdentByte(rest[n])) {
			n++
		}
		v, err := strconv.ParseInt(strings.ReplaceAll(rest[:n], "_", ""), 0, 64)
		if err != nil {
			return lx.errorf("bad integer %q", rest[:n])
		}
		lx.toks = append(lx.toks, token{kind: tInt, val: rest[:n], num: v, line: lx.line})
		lx.advance(n)
		return nil
	}
	n := scanDigits(rest, 0)
	isFloat := false
	if !afterDot {
		m := n
		if m+1 < len(rest) && rest[m] == '.' && rest[m+1] >= '0' && rest[m+1] <= '9' {
			m = scanDigits(rest, m+1)
			isFloat = true
		}
		if m < len(rest) && (rest[m] == 'e' || rest[m] == 'E') {
			k := m + 1
			if k < len(rest) && (rest[k] == '+' || rest[k] == '-') {
				k++
			}
			if k < len(rest) && rest[k] >= '0' && rest[k] <= '9' {
				m = scanDigits(rest, k)
				isFloat = true
			}
		}
		if isFloat {
			n = m
		}
	}
	lit := strings.ReplaceAll(rest[:n], "_", "")
	if isFloat {
		f, err := strconv.ParseFloat(lit, 64)
		if err != nil {
			return lx.errorf("bad float %q", lit)
		}
		lx.toks = append(lx.toks, token{kind: tFloat, val: lit, num: f, line: lx.line})
	} else {
		v, err := strconv.ParseInt(lit, 10, 64)
		if err != nil {
			return lx.errorf("bad integer %q", lit)
		}
		lx.toks = append(lx.toks, token{kind: tInt, val: lit, num: v, line: lx.line})
	}
	lx.advance(n)
	return nil
}

// str lexes a quoted string literal and decodes Python escapes.
func (lx *lexer) str(rest string, q byte) error {
	var b strings.Builder
	i := 1
	for {
		if i >= len(rest) {
			return lx.errorf("unterminated string")
		}
		c := rest[i]
		if c == q {
			i++
			break
		}
		if c != '\\' {
			b.WriteByte(c)
			i++
			continue
		}
		if i+1 >= len(rest) {
			return lx.errorf("unterminated string")
		}
		e := rest[i+1]
		i += 2
		switch e {
		case '\n':
		case '\\', '\'', '"':
			b.WriteByte(e)
		case 'n':
			b.WriteByte('\n')
		case 't':
			b.WriteByte('\t')
		case 'r':
			b.WriteByte('\r')
		case 'a':
			b.WriteByte('\a')
		case 'b':
			b.WriteByte('\b')
		case 'f':
			b.WriteByte('\f')
		case 'v':
			b.WriteByte('\v')
		case 'x', 'u', 'U':
			w := map[byte]int{'x': 2, 'u': 4, 'U': 8}[e]
			if i+w > len(rest) {
				return lx.errorf("truncated \\%c escape", e)
			}
			r, err := strconv.ParseUint(rest[i:i+w], 16, 32)
			if err != nil {
				return lx.errorf("bad \\%c escape", e)
			}
			b.WriteRune(rune(r))
			i += w
		case '0', '1', '2', '3', '4', '5', '6', '7':
			j := i - 1
			k := j
			for k < len(rest) && k < j+3 && rest[k] >= '0' && rest[k] <= '7' {
				k++
			}
			r, _ := strconv.ParseUint(rest[j:k], 8, 32)
			b.WriteRune(rune(r))
			i = k
		default:
			b.WriteByte('\\')
			b.WriteByte(e)
		}
	}
	lx.emit(tString, b.String())
	lx.advance(i)
	return nil
}
