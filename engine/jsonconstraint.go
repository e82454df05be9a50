package engine

// jsonState is an incremental JSON checker: fed bytes one at a time, it says
// whether they can still be the prefix of a single JSON object (what
// response_format {"type":"json_object"} promises). It is a small value type
// so that trying a token on a copy is cheap.
type jsonState struct {
	stack [maxJSONDepth]byte // '{' or '[' per open container
	depth int
	mode  jsonMode
	lit   string // remaining letters of true/false/null
	esc   int    // 0: none; 1: after backslash; 2..5: \u hex digits left +1
	num   numState
	done  bool // the top-level object is closed
	err   bool
	ws    int // bytes of the current whitespace run outside strings
	wsNL  bool
}

// Whitespace between tokens follows llama.cpp's JSON grammar (ws ::= "" |
// " " | "\n" [ \t]{0,20}), so a model cannot pad forever.
const maxIndent = 20

const maxJSONDepth = 64

type jsonMode uint8

const (
	jmStart    jsonMode = iota // before the top-level value
	jmValue                    // expecting a value (after ':' or '[' or ',' in an array)
	jmKeyOrEnd                 // after '{': a key or '}'
	jmKey                      // after ',' in an object: a key
	jmColon                    // after a key
	jmAfter                    // after a value: ',' or the closing bracket
	jmString                   // inside a value string
	jmKeyStr                   // inside a key string
	jmNumber
	jmLiteral
	jmElemOrEnd // after '[': a value or ']'
)

type numState uint8

const (
	nsSign    numState = iota // after '-'
	nsZero                    // a leading 0
	nsInt                     // integer digits
	nsDot                     // after '.'
	nsFrac                    // fraction digits
	nsExp                     // after e/E
	nsExpSign                 // after the exponent sign
	nsExpDigits
)

func isWS(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

// feed advances the checker by one byte; it sets err when the byte cannot continue a JSON object.
func (s *jsonState) feed(c byte) {
	if s.err {
		return
	}
	if s.mode != jmString && s.mode != jmKeyStr && isWS(c) {
		ok := s.mode != jmStart // the object starts at once
		switch {
		case s.ws == 0:
			ok = ok && (c == ' ' || c == '\n')
			s.wsNL = c == '\n'
		default:
			ok = ok && s.wsNL && (c == ' ' || c == '\t') && s.ws <= maxIndent
		}
		s.ws++
		if !ok {
			s.err = true
			return
		}
	} else {
		s.ws = 0
	}
	switch s.mode {
	case jmStart:
		if c != '{' {
			s.err = true
			return
		}
		s.push('{')
		s.mode = jmKeyOrEnd
	case jmKeyOrEnd, jmKey:
		switch {
		case isWS(c):
		case c == '"':
			s.mode = jmKeyStr
		case c == '}' && s.mode == jmKeyOrEnd:
			s.pop()
		default:
			s.err = true
		}
	case jmColon:
		switch {
		case isWS(c):
		case c == ':':
			s.mode = jmValue
		default:
			s.err = true
		}
	case jmValue, jmElemOrEnd:
		if isWS(c) {
			return
		}
		if c == ']' && s.mode == jmElemOrEnd {
			s.pop()
			return
		}
		s.startValue(c)
	case jmAfter:
		switch {
		case isWS(c):
		case c == ',':
			if s.stack[s.depth-1] == '{' {
				s.mode = jmKey
			} else {
				s.mode = jmValue
			}
		case c == '}' && s.stack[s.depth-1] == '{', c == ']' && s.stack[s.depth-1] == '[':
			s.pop()
		default:
			s.err = true
		}
	case jmString, jmKeyStr:
		s.stringByte(c)
	case jmNumber:
		s.numberByte(c)
	case jmLiteral:
		if s.lit == "" || c != s.lit[0] {
			s.err = true
			return
		}
		s.lit = s.lit[1:]
		if s.lit == "" {
			s.mode = jmAfter
		}
	}
}

func (s *jsonState) push(c byte) {
	if s.depth == maxJSONDepth {
		s.err = true
		return
	}
	s.stack[s.depth] = c
	s.depth++
}

func (s *jsonState) pop() {
	s.depth--
	if s.depth == 0 {
		s.done, s.mode = true, jmAfter
		return
	}
	s.mode = jmAfter
}

func (s *jsonState) startValue(c byte) {
	switch {
	case c == '{':
		s.push('{')
		s.mode = jmKeyOrEnd
	case c == '[':
		s.push('[')
		s.mode = jmElemOrEnd
	case c == '"':
		s.mode = jmString
	case c == '-':
		s.mode, s.num = jmNumber, nsSign
	case c == '0':
		s.mode, s.num = jmNumber, nsZero
	case c >= '1' && c <= '9':
		s.mode, s.num = jmNumber, nsInt
	case c == 't':
		s.mode, s.lit = jmLiteral, "rue"
	case c == 'f':
		s.mode, s.lit = jmLiteral, "alse"
	case c == 'n':
		s.mode, s.lit = jmLiteral, "ull"
	default:
		s.err = true
	}
}

func isHex(c byte) bool { return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' }

func (s *jsonState) stringByte(c byte) {
	switch {
	case s.esc == 1:
		switch c {
		case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			s.esc = 0
		case 'u':
			s.esc = 5
		default:
			s.err = true
		}
	case s.esc > 1:
		if !isHex(c) {
			s.err = true
		}
		s.esc--
		if s.esc == 1 {
			s.esc = 0
		}
	case c == '\\':
		s.esc = 1
	case c == '"':
		if s.mode == jmKeyStr {
			s.mode = jmColon
		} else {
			s.mode = jmAfter
		}
	case c < 0x20:
		s.err = true // control characters must be escaped
	}
}

func (s *jsonState) numberByte(c byte) {
	digit := c >= '0' && c <= '9'
	switch s.num {
	case nsSign:
		switch {
		case c == '0':
			s.num = nsZero
		case digit:
			s.num = nsInt
		default:
			s.err = true
		}
		return
	case nsZero, nsInt:
		switch {
		case digit && s.num == nsInt:
			return
		case c == '.':
			s.num = nsDot
			return
		case c == 'e' || c == 'E':
			s.num = nsExp
			return
		}
	case nsDot:
		if digit {
			s.num = nsFrac
		} else {
			s.err = true
		}
		return
	case nsFrac:
		switch {
		case digit:
			return
		case c == 'e' || c == 'E':
			s.num = nsExp
			return
		}
	case nsExp:
		switch {
		case c == '+' || c == '-':
			s.num = nsExpSign
		case digit:
			s.num = nsExpDigits
		default:
			s.err = true
		}
		return
	case nsExpSign:
		if digit {
			s.num = nsExpDigits
		} else {
			s.err = true
		}
		return
	case nsExpDigits:
		if digit {
			return
		}
	}
	// The number ended at a complete state; c continues after the value.
	s.mode = jmAfter
	s.ws = 0 // c is counted again by the re-feed
	s.feed(c)
}

// accepts reports whether piece can follow the text so far, without changing s.
func (s *jsonState) accepts(piece []byte) bool {
	if len(piece) == 0 {
		return false
	}
	t := *s
	for _, c := range piece {
		if t.done && !isWS(c) {
			return false
		}
		t.feed(c)
		if t.err {
			return false
		}
	}
	return true
}

// advance commits piece.
func (s *jsonState) advance(piece []byte) {
	for _, c := range piece {
		s.feed(c)
	}
}
