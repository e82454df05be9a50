package engine

import "sort"

// constraint restricts the answer's bytes (after any thinking block).
type constraint interface {
	// accepts reports whether piece can follow the text so far.
	accepts(piece []byte) bool
	// advance commits piece.
	advance(piece []byte)
	// finished reports that the value is complete.
	finished() bool
	// begun reports that the value has started.
	begun() bool
}

func (s *jsonState) finished() bool { return s.done }
func (s *jsonState) begun() bool    { return s.mode != jmStart }

// jmEnum: inside an enum/const value, matching literals [lo,hi) at pos.
const jmEnum = jmElemOrEnd + 1

// maxSchemaPaths bounds the parses followed at once (anyOf branches that
// the text so far does not tell apart).
const maxSchemaPaths = 64

// maxUnionNesting bounds the expansion of unions of unions.
const maxUnionNesting = 16

// schemaState follows an answer against a Schema: each path is one
// deterministic parse (a choice of anyOf branches), and the text is valid
// while some path accepts it. Every state a path accepts can still be
// completed into a valid instance, so that constrained sampling cannot get
// stuck.
type schemaState struct {
	paths []spath
	next  []spath
}

// frame is an open object or array.
type frame struct {
	node *snode
	seen uint64 // object: the properties written
	n    int32  // array: the items written
	obj  bool
}

// frameLink is the immutable rest of a path's stack, shared by copies.
type frameLink struct {
	f    frame
	next *frameLink
}

// spath is one parse: a small value, cheap to copy per candidate token.
type spath struct {
	top   frame      // the innermost open container (depth > 0)
	up    *frameLink // the containers around it
	depth int32
	mode  jsonMode
	val   *snode // the schema of the value expected or being read
	// key and enum matching: candidates [lo,hi) share the first pos bytes
	lo, hi, pos int32
	free        bool // a key may still be an additional property's name
	esc         int8 // 0: none; 1: after '\'; 2..5: \u hex digits left +1
	utf         int8 // UTF-8 continuation bytes left
	utfLo       byte // range of the next continuation byte
	utfHi       byte
	slen        int32 // characters of the current string
	num         numState
	intOnly     bool
	lit         string // remaining letters of true/false/null
	done        bool   // the top-level value is complete
	ws          int8
	wsNL        bool
}

func newSchemaState(sc *Schema) *schemaState {
	s := &schemaState{}
	s.paths = expandPath(spath{mode: jmStart, val: sc.root}, s.paths, 0)
	return s
}

func (s *schemaState) finished() bool { return len(s.paths) > 0 && s.paths[0].done }
func (s *schemaState) begun() bool    { return len(s.paths) == 0 || s.paths[0].mode != jmStart }

func (s *schemaState) accepts(piece []byte) bool {
	if len(piece) == 0 {
		return false
	}
	for i := range s.paths {
		if pathAccepts(s.paths[i], piece) {
			return true
		}
	}
	return false
}

func (s *schemaState) advance(piece []byte) {
	out := s.next[:0]
	for _, p := range s.paths {
		out = advancePath(p, piece, out)
	}
	if len(out) > maxSchemaPaths {
		clear(out[maxSchemaPaths:])
		out = out[:maxSchemaPaths]
	}
	clear(s.paths)
	s.paths, s.next = out, s.paths[:0]
}

func pathAccepts(p spath, piece []byte) bool {
	for i, c := range piece {
		if !p.feed(c) {
			return false
		}
		if p.forks() {
			rest := piece[i+1:]
			for _, q := range expandPath(p, nil, 0) {
				if len(rest) == 0 || pathAccepts(q, rest) {
					return true
				}
			}
			return false
		}
	}
	return true
}

func advancePath(p spath, piece []byte, out []spath) []spath {
	for i, c := range piece {
		if !p.feed(c) {
			return out
		}
		if p.forks() {
			for _, q := range expandPath(p, nil, 0) {
				out = advancePath(q, piece[i+1:], out)
			}
			return out
		}
	}
	return append(out, p)
}

// forks reports that p expects a value whose schema is a union.
func (p *spath) forks() bool {
	return p.val != nil && p.val.union != nil && p.val.sat && (p.mode == jmColon || p.mode == jmValue || p.mode == jmElemOrEnd || p.mode == jmStart)
}

// expandPath appends p once per satisfiable branch of its expected value's union.
func expandPath(p spath, out []spath, nest int) []spath {
	if p.val.union == nil || nest > maxUnionNesting {
		if p.val.union == nil && p.val.sat {
			out = append(out, p)
		}
		return out
	}
	for _, b := range p.val.union {
		if b.sat {
			q := p
			q.val = b
			out = expandPath(q, out, nest+1)
		}
	}
	return out
}

// feed advances p by one byte and reports whether the text is still a prefix of a valid instance.
func (p *spath) feed(c byte) bool {
	if p.done && !isWS(c) {
		return false
	}
	switch p.mode {
	case jmString:
		return p.stringByte(c)
	case jmKeyStr:
		return p.keyByte(c)
	case jmNumber:
		return p.numberByte(c)
	case jmEnum:
		return p.enumByte(c)
	case jmLiteral:
		if p.lit == "" || c != p.lit[0] {
			return false
		}
		p.lit = p.lit[1:]
		if p.lit == "" {
			p.valueDone()
		}
		return true
	}
	if isWS(c) {
		if p.mode == jmStart {
			return false
		}
		if p.ws == 0 {
			if c != ' ' && c != '\n' {
				return false
			}
			p.wsNL = c == '\n'
		} else if !p.wsNL || (c != ' ' && c != '\t') || p.ws > maxIndent {
			return false
		}
		p.ws++
		return true
	}
	p.ws = 0
	switch p.mode {
	case jmStart, jmValue:
		return p.startValue(c)
	case jmElemOrEnd:
		if c == ']' {
			if p.top.node.minItems > 0 {
				return false
			}
			p.pop()
			return true
		}
		if n := p.top.node; n.maxItems == 0 || !n.items.sat {
			return false
		}
		return p.startValue(c)
	case jmKeyOrEnd, jmKey:
		switch {
		case c == '"':
			n := p.top.node
			p.mode, p.lo, p.hi, p.pos = jmKeyStr, 0, int32(len(n.keys)), 0
			p.free = n.extra != nil && n.extra.sat
			p.utf = 0
			return p.free || n.usable&^p.top.seen != 0
		case c == '}' && p.mode == jmKeyOrEnd:
			if p.top.node.required&^p.top.seen != 0 {
				return false
			}
			p.pop()
			return true
		}
		return false
	case jmColon:
		if c != ':' {
			return false
		}
		p.mode = jmValue
		return true
	case jmAfter:
		if p.depth == 0 {
			return false
		}
		n := p.top.node
		if p.top.obj {
			switch c {
			case ',':
				if n.usable&^p.top.seen == 0 && (n.extra == nil || !n.extra.sat) {
					return false
				}
				p.mode = jmKey
				return true
			case '}':
				if n.required&^p.top.seen != 0 {
					return false
				}
				p.pop()
				return true
			}
			return false
		}
		switch c {
		case ',':
			if n.maxItems >= 0 && int(p.top.n) >= n.maxItems {
				return false
			}
			p.mode, p.val = jmValue, n.items
			return true
		case ']':
			if int(p.top.n) < n.minItems {
				return false
			}
			p.pop()
			return true
		}
	}
	return false
}

func (p *spath) push(n *snode, obj bool) bool {
	if p.depth == maxJSONDepth {
		return false
	}
	if p.depth > 0 {
		p.up = &frameLink{p.top, p.up}
	}
	p.top = frame{node: n, obj: obj}
	p.depth++
	return true
}

// pop closes the innermost container, a complete value of the one around it.
func (p *spath) pop() {
	p.depth--
	if p.depth > 0 {
		p.top, p.up = p.up.f, p.up.next
	} else {
		p.top = frame{}
	}
	p.valueDone()
}

// valueDone: a value is complete.
func (p *spath) valueDone() {
	p.mode, p.val = jmAfter, nil
	if p.depth == 0 {
		p.done = true
	} else if !p.top.obj {
		p.top.n++
	}
}

func (p *spath) startValue(c byte) bool {
	n := p.val
	if n.lits != nil {
		lo, hi := narrow(n.lits, 0, int32(len(n.lits)), 0, c)
		if lo == hi {
			return false
		}
		p.mode, p.lo, p.hi, p.pos = jmEnum, lo, hi, 1
		p.enumCheckDone()
		return true
	}
	switch {
	case c == '{' && n.ok&tObj != 0:
		if !p.push(n, true) {
			return false
		}
		p.mode = jmKeyOrEnd
	case c == '[' && n.ok&tArr != 0:
		if !p.push(n, false) {
			return false
		}
		p.mode, p.val = jmElemOrEnd, n.items
	case c == '"' && n.ok&tStr != 0:
		p.mode, p.slen, p.esc, p.utf = jmString, 0, 0, 0
	case (c == '-' || c >= '0' && c <= '9') && n.ok&(tInt|tNum) != 0:
		p.mode, p.intOnly = jmNumber, n.ok&tNum == 0
		switch {
		case c == '-':
			p.num = nsSign
		case c == '0':
			p.num = nsZero
		default:
			p.num = nsInt
		}
	case c == 't' && n.ok&tBool != 0:
		p.mode, p.lit = jmLiteral, "rue"
	case c == 'f' && n.ok&tBool != 0:
		p.mode, p.lit = jmLiteral, "alse"
	case c == 'n' && n.ok&tNull != 0:
		p.mode, p.lit = jmLiteral, "ull"
	default:
		return false
	}
	return true
}

// narrow returns the range of lits[lo:hi] (all sharing their first pos bytes) whose byte pos is c.
func narrow(lits []string, lo, hi, pos int32, c byte) (int32, int32) {
	if lo < hi && int32(len(lits[lo])) == pos {
		lo++ // the literal that ends here sorts first
	}
	sub := lits[lo:hi]
	a := sort.Search(len(sub), func(i int) bool { return sub[i][pos] >= c })
	b := a + sort.Search(len(sub)-a, func(i int) bool { return sub[a+i][pos] > c })
	return lo + int32(a), lo + int32(b)
}

// enumCheckDone ends the value when a literal is complete and no longer one can follow.
func (p *spath) enumCheckDone() {
	// A complete number may go on ("1" and "10"): the next byte tells.
	if l := p.val.lits[p.lo]; int32(len(l)) == p.pos && !isNumStart(l[0]) {
		p.valueDone()
	}
}

func isNumStart(c byte) bool { return c == '-' || c >= '0' && c <= '9' }

func (p *spath) enumByte(c byte) bool {
	lits := p.val.lits
	lo, hi := narrow(lits, p.lo, p.hi, p.pos, c)
	if lo == hi {
		// A complete number ends where the next byte cannot continue it.
		if int32(len(lits[p.lo])) == p.pos && isNumStart(lits[p.lo][0]) {
			p.valueDone()
			return p.feed(c)
		}
		return false
	}
	p.lo, p.hi, p.pos = lo, hi, p.pos+1
	p.enumCheckDone()
	return true
}

// utf8Byte checks c within a string's UTF-8 (well-formed, no surrogates or overlongs).
func (p *spath) utf8Byte(c byte) bool {
	if p.utf > 0 {
		if c < p.utfLo || c > p.utfHi {
			return false
		}
		p.utf--
		p.utfLo, p.utfHi = 0x80, 0xBF
		return true
	}
	switch {
	case c < 0x80:
		return c >= 0x20
	case c >= 0xC2 && c <= 0xDF:
		p.utf, p.utfLo, p.utfHi = 1, 0x80, 0xBF
	case c == 0xE0:
		p.utf, p.utfLo, p.utfHi = 2, 0xA0, 0xBF
	case c == 0xED:
		p.utf, p.utfLo, p.utfHi = 2, 0x80, 0x9F
	case c >= 0xE1 && c <= 0xEF:
		p.utf, p.utfLo, p.utfHi = 2, 0x80, 0xBF
	case c == 0xF0:
		p.utf, p.utfLo, p.utfHi = 3, 0x90, 0xBF
	case c >= 0xF1 && c <= 0xF3:
		p.utf, p.utfLo, p.utfHi = 3, 0x80, 0xBF
	case c == 0xF4:
		p.utf, p.utfLo, p.utfHi = 3, 0x80, 0x8F
	default:
		return false
	}
	return true
}

// stringByte reads one byte of a value string: characters are counted
// against minLength and maxLength, and \u escapes of surrogates (which
// would count as two) are refused.
func (p *spath) stringByte(c byte) bool {
	n := p.val
	switch {
	case p.esc == 1:
		switch c {
		case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			p.esc = 0
		case 'u':
			p.esc = 5
		default:
			return false
		}
		return true
	case p.esc > 1:
		if !isHex(c) {
			return false
		}
		if p.esc == 4 && (p.lit == "d" && (c >= '8' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F')) {
			return false // a surrogate
		}
		p.lit = ""
		if p.esc == 5 && (c == 'd' || c == 'D') {
			p.lit = "d"
		}
		p.esc--
		if p.esc == 1 {
			p.esc = 0
		}
		return true
	case c == '"' && p.utf == 0:
		if int(p.slen) < n.minLen {
			return false
		}
		p.valueDone()
		return true
	}
	if p.utf == 0 {
		// A new character.
		if n.maxLen >= 0 && int(p.slen) >= n.maxLen {
			return false
		}
		if c == '\\' {
			p.slen++
			p.esc = 1
			return true
		}
	}
	if !p.utf8Byte(c) {
		return false
	}
	if c < 0x80 || c >= 0xC0 {
		p.slen++
	}
	return true
}

// keyByte reads one byte of an object key: a declared property not yet
// written, or (when additional properties are allowed) another name, written
// without escapes.
func (p *spath) keyByte(c byte) bool {
	n := p.top.node
	if c == '"' {
		// In canonical JSON a quote either ends every candidate name or
		// none (then it follows a backslash, inside a declared name).
		if p.lo < p.hi && int32(len(n.keys[p.lo])) == p.pos {
			if p.top.seen&(1<<p.lo) != 0 || n.usable&(1<<p.lo) == 0 {
				return false // written already (not again as another name)
			}
			p.top.seen |= 1 << p.lo
			p.mode, p.val = jmColon, n.props[p.lo]
			return true
		}
		if p.free && p.utf == 0 {
			p.mode, p.val = jmColon, n.extra
			return true
		}
	}
	if p.lo < p.hi {
		p.lo, p.hi = narrow(n.keys, p.lo, p.hi, p.pos, c)
	}
	p.pos++
	if p.free && (c == '\\' || c == '"' || !p.utf8Byte(c)) {
		p.free = false
	}
	return p.free || p.lo < p.hi && n.usable&^p.top.seen&rangeBits(p.lo, p.hi) != 0
}

// rangeBits has bits lo..hi-1 set.
func rangeBits(lo, hi int32) uint64 {
	var h uint64 = ^uint64(0)
	if hi < 64 {
		h = 1<<hi - 1
	}
	return h &^ (1<<lo - 1)
}

func (p *spath) numberByte(c byte) bool {
	digit := c >= '0' && c <= '9'
	switch p.num {
	case nsSign:
		switch {
		case c == '0':
			p.num = nsZero
		case digit:
			p.num = nsInt
		default:
			return false
		}
		return true
	case nsZero, nsInt:
		switch {
		case digit && p.num == nsInt:
			return true
		case digit:
			return false // no leading zeros
		case c == '.' && !p.intOnly:
			p.num = nsDot
			return true
		case (c == 'e' || c == 'E') && !p.intOnly:
			p.num = nsExp
			return true
		}
	case nsDot:
		if digit {
			p.num = nsFrac
			return true
		}
		return false
	case nsFrac:
		switch {
		case digit:
			return true
		case c == 'e' || c == 'E':
			p.num = nsExp
			return true
		}
	case nsExp:
		switch {
		case c == '+' || c == '-':
			p.num = nsExpSign
		case digit:
			p.num = nsExpDigits
		default:
			return false
		}
		return true
	case nsExpSign:
		if digit {
			p.num = nsExpDigits
			return true
		}
		return false
	case nsExpDigits:
		if digit {
			return true
		}
	}
	// The number ended; c continues after it.
	p.valueDone()
	return p.feed(c)
}
