package jinja

import (
	"fmt"
	"strings"
)

// ---------------------------------------------------------------------------
// AST

type node interface{}

type (
	textNode   struct{ s string }
	outputNode struct{ e expr }
	ifNode     struct {
		conds  []expr
		bodies [][]node
		els    []node
	}
	forNode struct {
		targets   []string
		iter      expr
		cond      expr
		body, els []node
		recursive bool
		line      int
	}
	setNode struct {
		targets []string // one name, or several for tuple unpacking
		nsAttr  string   // set targets[0].nsAttr = value
		value   expr
		body    []node // block set
		filters []*filterE
	}
	macroNode struct {
		name   string
		params []param
		body   []node
	}
	callBlockNode struct {
		call   *callE
		params []param
		body   []node
	}
	filterBlockNode struct {
		filters []*filterE
		body    []node
	}
	withNode struct {
		targets []string
		values  []expr
		body    []node
	}
	bodyNode     struct{ body []node } // generation blocks and similar
	breakNode    struct{}
	continueNode struct{}
)

type param struct {
	name string
	def  expr
}

type expr interface{}

type (
	constE   struct{ v Value }
	nameE    struct{ name string }
	getattrE struct {
		obj  expr
		attr string
	}
	getitemE struct{ obj, key expr }
	sliceE   struct{ obj, start, stop, step expr }
	callE    struct {
		fn     expr
		args   []expr
		kwargs []kwarg // a kwarg with an empty name is **dict
	}
	filterE struct {
		obj    expr // nil in filter blocks and set blocks
		name   string
		args   []expr
		kwargs []kwarg
	}
	testE struct {
		obj    expr
		name   string
		args   []expr
		negate bool
	}
	unaryE struct {
		op string
		x  expr
	}
	binE struct {
		op   string
		l, r expr
	}
	compareE struct {
		first expr
		ops   []string
		rest  []expr
	}
	condE struct{ cond, then, els expr }
	starE struct{ x expr } // *args in a call
	listE struct {
		items []expr
		tuple bool
	}
	dictE struct{ keys, vals []expr }
)

type kwarg struct {
	name string
	v    expr
}

// ---------------------------------------------------------------------------
// Parser

type parser struct {
	toks []token
	pos  int
}

func parse(toks []token) ([]node, error) {
	p := &parser{toks: toks}
	body, end, err := p.parseBody()
	if err != nil {
		return nil, err
	}
	if end != "" {
		return nil, p.errorf("unexpected '%s'", end)
	}
	return body, nil
}

func (p *parser) peek() token {
	if p.pos < len(p.toks) {
		return p.toks[p.pos]
	}
	line := 0
	if len(p.toks) > 0 {
		line = p.toks[len(p.toks)-1].line
	}
	return token{kind: tEOF, line: line}
}

func (p *parser) peekAt(n int) token {
	if p.pos+n < len(p.toks) {
		return p.toks[p.pos+n]
	}
	return token{kind: tEOF}
}

func (p *parser) next() token {
	t := p.peek()
	if p.pos < len(p.toks) {
		p.pos++
	}
	return t
}

func (p *parser) errorf(format string, args ...any) error {
	return fmt.Errorf("line %d: %s", p.peek().line, fmt.Sprintf(format, args...))
}

func (p *parser) isOp(op string) bool {
	t := p.peek()
	return t.kind == tOp && t.val == op
}

func (p *parser) isName(name string) bool {
	t := p.peek()
	return t.kind == tName && t.val == name
}

func (p *parser) acceptOp(op string) bool {
	if p.isOp(op) {
		p.pos++
		return true
	}
	return false
}

func (p *parser) acceptName(name string) bool {
	if p.isName(name) {
		p.pos++
		return true
	}
	return false
}

func (p *parser) expectOp(op string) error {
	if !p.acceptOp(op) {
		return p.errorf("expected '%s', got %s", op, describe(p.peek()))
	}
	return nil
}

func (p *parser) expectName() (string, error) {
	t := p.peek()
	if t.kind != tName {
		return "", p.errorf("expected a name, got %s", describe(t))
	}
	p.pos++
	return t.val, nil
}

func (p *parser) expectBlockEnd() error {
	if p.peek().kind != tBlockEnd {
		return p.errorf("expected end of statement block, got %s", describe(p.peek()))
	}
	p.pos++
	return nil
}

func describe(t token) string {
	switch t.kind {
	case tEOF:
		return "end of template"
	case tText:
		return "template data"
	case tBlockEnd:
		return "end of statement block"
	case tVarEnd:
		return "end of print statement"
	case tBlockBegin:
		return "begin of statement block"
	case tVarBegin:
		return "begin of print statement"
	case tString:
		return "string"
	}
	return "'" + t.val + "'"
}

// parseBody parses nodes until an end keyword ({% endif %}, {% else %}...)
// or EOF. It returns the keyword that stopped it, with the parser positioned
// after that keyword (inside the block tag).
func (p *parser) parseBody() ([]node, string, error) {
	var body []node
	for {
		t := p.peek()
		switch t.kind {
		case tEOF:
			return body, "", nil
		case tText:
			p.pos++
			body = append(body, &textNode{s: t.val})
		case tVarBegin:
			p.pos++
			e, err := p.parseTuple(true)
			if err != nil {
				return nil, "", err
			}
			if p.peek().kind != tVarEnd {
				return nil, "", p.errorf("expected end of print statement, got %s", describe(p.peek()))
			}
			p.pos++
			body = append(body, &outputNode{e: e})
		case tBlockBegin:
			p.pos++
			kw := p.peek()
			if kw.kind != tName {
				return nil, "", p.errorf("expected statement name, got %s", describe(kw))
			}
			switch kw.val {
			case "endif", "else", "elif", "endfor", "endmacro", "endset", "endcall", "endfilter", "endwith", "endgeneration":
				p.pos++
				return body, kw.val, nil
			}
			n, err := p.parseStatement()
			if err != nil {
				return nil, "", err
			}
			if n != nil {
				body = append(body, n)
			}
		default:
			return nil, "", p.errorf("unexpected %s", describe(t))
		}
	}
}

func (p *parser) parseStatement() (node, error) {
	kw := p.next()
	switch kw.val {
	case "if":
		return p.parseIf()
	case "for":
		return p.parseFor(kw.line)
	case "set":
		return p.parseSet()
	case "macro":
		return p.parseMacro()
	case "call":
		return p.parseCallBlock()
	case "filter":
		return p.parseFilterBlock()
	case "with":
		return p.parseWith()
	case "generation":
		if err := p.expectBlockEnd(); err != nil {
			return nil, err
		}
		body, err := p.parseUntil("endgeneration")
		if err != nil {
			return nil, err
		}
		return &bodyNode{body: body}, nil
	case "break":
		return &breakNode{}, p.expectBlockEnd()
	case "continue":
		return &continueNode{}, p.expectBlockEnd()
	case "do":
		e, err := p.parseTuple(true)
		if err != nil {
			return nil, err
		}
		return &outputNode{e: &callE{fn: &constE{v: discard}, args: []expr{e}}}, p.expectBlockEnd()
	}
	return nil, fmt.Errorf("line %d: unknown statement '%s'", kw.line, kw.val)
}

var discard = &Func{Name: "do", Fn: func([]Value, *Dict) (Value, error) { return "", nil }}

// parseUntil parses a body that must end with the given keyword.
func (p *parser) parseUntil(end string) ([]node, error) {
	body, kw, err := p.parseBody()
	if err != nil {
		return nil, err
	}
	if kw != end {
		if kw == "" {
			return nil, p.errorf("unexpected end of template, expected '%s'", end)
		}
		return nil, p.errorf("unexpected '%s', expected '%s'", kw, end)
	}
	return body, p.expectBlockEnd()
}

func (p *parser) parseIf() (node, error) {
	n := &ifNode{}
	cond, err := p.parseTuple(false)
	if err != nil {
		return nil, err
	}
	if err := p.expectBlockEnd(); err != nil {
		return nil, err
	}
	for {
		body, kw, err := p.parseBody()
		if err != nil {
			return nil, err
		}
		n.conds = append(n.conds, cond)
		n.bodies = append(n.bodies, body)
		switch kw {
		case "elif":
			if cond, err = p.parseTuple(false); err != nil {
				return nil, err
			}
			if err := p.expectBlockEnd(); err != nil {
				return nil, err
			}
			continue
		case "else":
			if err := p.expectBlockEnd(); err != nil {
				return nil, err
			}
			if n.els, err = p.parseUntil("endif"); err != nil {
				return nil, err
			}
			return n, nil
		case "endif":
			return n, p.expectBlockEnd()
		case "":
			return nil, p.errorf("unexpected end of template, expected 'endif'")
		default:
			return nil, p.errorf("unexpected '%s', expected 'endif'", kw)
		}
	}
}

func (p *parser) parseTargets() ([]string, error) {
	var names []string
	paren := p.acceptOp("(")
	for {
		n, err := p.expectName()
		if err != nil {
			return nil, err
		}
		names = append(names, n)
		if !p.acceptOp(",") {
			break
		}
		if paren && p.isOp(")") || p.isName("in") || p.isOp("=") {
			break
		}
	}
	if paren {
		if err := p.expectOp(")"); err != nil {
			return nil, err
		}
	}
	return names, nil
}

func (p *parser) parseFor(line int) (node, error) {
	n := &forNode{line: line}
	var err error
	if n.targets, err = p.parseTargets(); err != nil {
		return nil, err
	}
	if !p.acceptName("in") {
		return nil, p.errorf("expected 'in', got %s", describe(p.peek()))
	}
	if n.iter, err = p.parseTupleNoCond(); err != nil {
		return nil, err
	}
	if p.acceptName("if") {
		if n.cond, err = p.parseTuple(true); err != nil {
			return nil, err
		}
	}
	n.recursive = p.acceptName("recursive")
	if err := p.expectBlockEnd(); err != nil {
		return nil, err
	}
	body, kw, err := p.parseBody()
	if err != nil {
		return nil, err
	}
	n.body = body
	switch kw {
	case "else":
		if err := p.expectBlockEnd(); err != nil {
			return nil, err
		}
		if n.els, err = p.parseUntil("endfor"); err != nil {
			return nil, err
		}
	case "endfor":
		if err := p.expectBlockEnd(); err != nil {
			return nil, err
		}
	case "":
		return nil, p.errorf("unexpected end of template, expected 'endfor'")
	default:
		return nil, p.errorf("unexpected '%s', expected 'endfor'", kw)
	}
	return n, nil
}

func (p *parser) parseSet() (node, error) {
	n := &setNode{}
	if p.peek().kind == tName && p.peekAt(1).kind == tOp && p.peekAt(1).val == "." {
		n.targets = []string{p.next().val}
		p.pos++
		attr, err := p.expectName()
		if err != nil {
			return nil, err
		}
		n.nsAttr = attr
	} else {
		var err error
		if n.targets, err = p.parseTargets(); err != nil {
			return nil, err
		}
	}
	if p.acceptOp("=") {
		v, err := p.parseTuple(true)
		if err != nil {
			return nil, err
		}
		n.value = v
		return n, p.expectBlockEnd()
	}
	// Block set, optionally filtered: {% set x | upper %}...{% endset %}
	for p.acceptOp("|") {
		f, err := p.parseFilterCall(nil)
		if err != nil {
			return nil, err
		}
		n.filters = append(n.filters, f)
	}
	if err := p.expectBlockEnd(); err != nil {
		return nil, err
	}
	body, err := p.parseUntil("endset")
	if err != nil {
		return nil, err
	}
	n.body = body
	if n.body == nil {
		n.body = []node{}
	}
	return n, nil
}

func (p *parser) parseParams() ([]param, error) {
	var params []param
	if err := p.expectOp("("); err != nil {
		return nil, err
	}
	for !p.isOp(")") {
		name, err := p.expectName()
		if err != nil {
			return nil, err
		}
		pr := param{name: name}
		if p.acceptOp("=") {
			if pr.def, err = p.parseExpr(true); err != nil {
				return nil, err
			}
		}
		params = append(params, pr)
		if !p.acceptOp(",") {
			break
		}
	}
	return params, p.expectOp(")")
}

func (p *parser) parseMacro() (node, error) {
	name, err := p.expectName()
	if err != nil {
		return nil, err
	}
	params, err := p.parseParams()
	if err != nil {
		return nil, err
	}
	if err := p.expectBlockEnd(); err != nil {
		return nil, err
	}
	body, err := p.parseUntil("endmacro")
	if err != nil {
		return nil, err
	}
	return &macroNode{name: name, params: params, body: body}, nil
}

func (p *parser) parseCallBlock() (node, error) {
	n := &callBlockNode{}
	if p.isOp("(") {
		params, err := p.parseParams()
		if err != nil {
			return nil, err
		}
		n.params = params
	}
	e, err := p.parseExpr(true)
	if err != nil {
		return nil, err
	}
	c, ok := e.(*callE)
	if !ok {
		return nil, p.errorf("expected call")
	}
	n.call = c
	if err := p.expectBlockEnd(); err != nil {
		return nil, err
	}
	if n.body, err = p.parseUntil("endcall"); err != nil {
		return nil, err
	}
	return n, nil
}

func (p *parser) parseFilterBlock() (node, error) {
	n := &filterBlockNode{}
	for {
		f, err := p.parseFilterCall(nil)
		if err != nil {
			return nil, err
		}
		n.filters = append(n.filters, f)
		if !p.acceptOp("|") {
			break
		}
	}
	if err := p.expectBlockEnd(); err != nil {
		return nil, err
	}
	var err error
	if n.body, err = p.parseUntil("endfilter"); err != nil {
		return nil, err
	}
	return n, nil
}

func (p *parser) parseWith() (node, error) {
	n := &withNode{}
	for p.peek().kind != tBlockEnd {
		if len(n.targets) > 0 {
			if err := p.expectOp(","); err != nil {
				return nil, err
			}
		}
		name, err := p.expectName()
		if err != nil {
			return nil, err
		}
		if err := p.expectOp("="); err != nil {
			return nil, err
		}
		v, err := p.parseExpr(true)
		if err != nil {
			return nil, err
		}
		n.targets = append(n.targets, name)
		n.values = append(n.values, v)
	}
	p.pos++
	var err error
	if n.body, err = p.parseUntil("endwith"); err != nil {
		return nil, err
	}
	return n, nil
}

// ---------------------------------------------------------------------------
// Expressions (precedence as in jinja2/parser.py)

// parseTuple parses an expression or an unparenthesized tuple "a, b".
func (p *parser) parseTuple(withCond bool) (expr, error) {
	return p.parseTupleMode(withCond)
}

func (p *parser) parseTupleNoCond() (expr, error) { return p.parseTupleMode(false) }

func (p *parser) parseTupleMode(withCond bool) (expr, error) {
	first, err := p.parseExpr(withCond)
	if err != nil {
		return nil, err
	}
	if !p.isOp(",") {
		return first, nil
	}
	items := []expr{first}
	for p.acceptOp(",") {
		if p.tupleEnds() {
			break
		}
		e, err := p.parseExpr(withCond)
		if err != nil {
			return nil, err
		}
		items = append(items, e)
	}
	return &listE{items: items, tuple: true}, nil
}

func (p *parser) tupleEnds() bool {
	t := p.peek()
	switch t.kind {
	case tBlockEnd, tVarEnd, tEOF:
		return true
	case tOp:
		return t.val == ")" || t.val == "]" || t.val == "}"
	case tName:
		return t.val == "in" || t.val == "if" || t.val == "recursive"
	}
	return false
}

func (p *parser) parseExpr(withCond bool) (expr, error) {
	if !withCond {
		return p.parseOr()
	}
	e, err := p.parseOr()
	if err != nil {
		return nil, err
	}
	for p.acceptName("if") {
		cond, err := p.parseOr()
		if err != nil {
			return nil, err
		}
		var els expr
		if p.acceptName("else") {
			if els, err = p.parseExpr(true); err != nil {
				return nil, err
			}
		}
		e = &condE{cond: cond, then: e, els: els}
	}
	return e, nil
}

func (p *parser) parseOr() (expr, error) {
	l, err := p.parseAnd()
	if err != nil {
		return nil, err
	}
	for p.acceptName("or") {
		r, err := p.parseAnd()
		if err != nil {
			return nil, err
		}
		l = &binE{op: "or", l: l, r: r}
	}
	return l, nil
}

func (p *parser) parseAnd() (expr, error) {
	l, err := p.parseNot()
	if err != nil {
		return nil, err
	}
	for p.acceptName("and") {
		r, err := p.parseNot()
		if err != nil {
			return nil, err
		}
		l = &binE{op: "and", l: l, r: r}
	}
	return l, nil
}

func (p *parser) parseNot() (expr, error) {
	if p.acceptName("not") {
		x, err := p.parseNot()
		if err != nil {
			return nil, err
		}
		return &unaryE{op: "not", x: x}, nil
	}
	return p.parseCompare()
}

func (p *parser) parseCompare() (expr, error) {
	first, err := p.parseMath1()
	if err != nil {
		return nil, err
	}
	c := &compareE{first: first}
	for {
		t := p.peek()
		var op string
		switch {
		case t.kind == tOp && (t.val == "==" || t.val == "!=" || t.val == "<" || t.val == "<=" || t.val == ">" || t.val == ">="):
			op = t.val
			p.pos++
		case t.kind == tName && t.val == "in":
			op = "in"
			p.pos++
		case t.kind == tName && t.val == "not" && p.peekAt(1).kind == tName && p.peekAt(1).val == "in":
			op = "notin"
			p.pos += 2
		default:
			if len(c.ops) == 0 {
				return first, nil
			}
			return c, nil
		}
		r, err := p.parseMath1()
		if err != nil {
			return nil, err
		}
		c.ops = append(c.ops, op)
		c.rest = append(c.rest, r)
	}
}

func (p *parser) parseMath1() (expr, error) {
	l, err := p.parseConcat()
	if err != nil {
		return nil, err
	}
	for p.isOp("+") || p.isOp("-") {
		op := p.next().val
		r, err := p.parseConcat()
		if err != nil {
			return nil, err
		}
		l = &binE{op: op, l: l, r: r}
	}
	return l, nil
}

func (p *parser) parseConcat() (expr, error) {
	l, err := p.parseMath2()
	if err != nil {
		return nil, err
	}
	for p.acceptOp("~") {
		r, err := p.parseMath2()
		if err != nil {
			return nil, err
		}
		l = &binE{op: "~", l: l, r: r}
	}
	return l, nil
}

func (p *parser) parseMath2() (expr, error) {
	l, err := p.parsePow()
	if err != nil {
		return nil, err
	}
	for p.isOp("*") || p.isOp("/") || p.isOp("//") || p.isOp("%") {
		op := p.next().val
		r, err := p.parsePow()
		if err != nil {
			return nil, err
		}
		l = &binE{op: op, l: l, r: r}
	}
	return l, nil
}

func (p *parser) parsePow() (expr, error) {
	l, err := p.parseUnary(true)
	if err != nil {
		return nil, err
	}
	for p.acceptOp("**") {
		r, err := p.parseUnary(true)
		if err != nil {
			return nil, err
		}
		l = &binE{op: "**", l: l, r: r}
	}
	return l, nil
}

func (p *parser) parseUnary(withFilter bool) (expr, error) {
	var e expr
	var err error
	switch {
	case p.isOp("-") || p.isOp("+"):
		op := p.next().val
		x, err := p.parseUnary(false)
		if err != nil {
			return nil, err
		}
		e = &unaryE{op: op, x: x}
	default:
		if e, err = p.parsePrimary(); err != nil {
			return nil, err
		}
	}
	if e, err = p.parsePostfix(e); err != nil {
		return nil, err
	}
	if withFilter {
		return p.parseFilterExpr(e)
	}
	return e, nil
}

func (p *parser) parsePrimary() (expr, error) {
	t := p.next()
	switch t.kind {
	case tName:
		switch t.val {
		case "true", "True":
			return &constE{v: true}, nil
		case "false", "False":
			return &constE{v: false}, nil
		case "none", "None":
			return &constE{v: nil}, nil
		}
		return &nameE{name: t.val}, nil
	case tString:
		s := t.val
		for p.peek().kind == tString {
			s += p.next().val
		}
		return &constE{v: s}, nil
	case tInt, tFloat:
		return &constE{v: t.num}, nil
	case tOp:
		switch t.val {
		case "(":
			if p.acceptOp(")") {
				return &listE{tuple: true}, nil
			}
			e, err := p.parseExpr(true)
			if err != nil {
				return nil, err
			}
			if p.isOp(",") {
				items := []expr{e}
				for p.acceptOp(",") {
					if p.isOp(")") {
						break
					}
					x, err := p.parseExpr(true)
					if err != nil {
						return nil, err
					}
					items = append(items, x)
				}
				e = &listE{items: items, tuple: true}
			}
			return e, p.expectOp(")")
		case "[":
			l := &listE{}
			for !p.isOp("]") {
				x, err := p.parseExpr(true)
				if err != nil {
					return nil, err
				}
				l.items = append(l.items, x)
				if !p.acceptOp(",") {
					break
				}
			}
			return l, p.expectOp("]")
		case "{":
			d := &dictE{}
			for !p.isOp("}") {
				k, err := p.parseExpr(true)
				if err != nil {
					return nil, err
				}
				if err := p.expectOp(":"); err != nil {
					return nil, err
				}
				v, err := p.parseExpr(true)
				if err != nil {
					return nil, err
				}
				d.keys = append(d.keys, k)
				d.vals = append(d.vals, v)
				if !p.acceptOp(",") {
					break
				}
			}
			return d, p.expectOp("}")
		}
	}
	p.pos--
	return nil, p.errorf("unexpected %s", describe(t))
}

func (p *parser) parsePostfix(e expr) (expr, error) {
	for {
		switch {
		case p.isOp("."):
			p.pos++
			t := p.next()
			switch t.kind {
			case tName:
				e = &getattrE{obj: e, attr: t.val}
			case tInt:
				e = &getitemE{obj: e, key: &constE{v: t.num}}
			default:
				p.pos--
				return nil, p.errorf("expected name or number after '.'")
			}
		case p.isOp("["):
			p.pos++
			var err error
			if e, err = p.parseSubscript(e); err != nil {
				return nil, err
			}
		case p.isOp("("):
			var err error
			if e, err = p.parseCall(e); err != nil {
				return nil, err
			}
		default:
			return e, nil
		}
	}
}

func (p *parser) parseSubscript(obj expr) (expr, error) {
	var parts [3]expr
	idx := 0
	isSlice := false
	for {
		if p.isOp(":") {
			p.pos++
			isSlice = true
			idx++
			if idx > 2 {
				return nil, p.errorf("too many ':' in subscript")
			}
			continue
		}
		if p.isOp("]") {
			break
		}
		if parts[idx] != nil {
			return nil, p.errorf("expected ':' or ']'")
		}
		x, err := p.parseExpr(true)
		if err != nil {
			return nil, err
		}
		parts[idx] = x
	}
	p.pos++
	if !isSlice {
		if parts[0] == nil {
			return nil, p.errorf("empty subscript")
		}
		return &getitemE{obj: obj, key: parts[0]}, nil
	}
	return &sliceE{obj: obj, start: parts[0], stop: parts[1], step: parts[2]}, nil
}

func (p *parser) parseArgs() ([]expr, []kwarg, error) {
	var args []expr
	var kwargs []kwarg
	if err := p.expectOp("("); err != nil {
		return nil, nil, err
	}
	for !p.isOp(")") {
		if p.acceptOp("**") {
			v, err := p.parseExpr(true)
			if err != nil {
				return nil, nil, err
			}
			kwargs = append(kwargs, kwarg{v: v})
		} else if p.acceptOp("*") {
			v, err := p.parseExpr(true)
			if err != nil {
				return nil, nil, err
			}
			args = append(args, &starE{x: v})
		} else if p.peek().kind == tName && p.peekAt(1).kind == tOp && p.peekAt(1).val == "=" {
			name := p.next().val
			p.pos++
			v, err := p.parseExpr(true)
			if err != nil {
				return nil, nil, err
			}
			kwargs = append(kwargs, kwarg{name: name, v: v})
		} else {
			if len(kwargs) > 0 {
				return nil, nil, p.errorf("positional argument after keyword argument")
			}
			v, err := p.parseExpr(true)
			if err != nil {
				return nil, nil, err
			}
			args = append(args, v)
		}
		if !p.acceptOp(",") {
			break
		}
	}
	return args, kwargs, p.expectOp(")")
}

func (p *parser) parseCall(fn expr) (expr, error) {
	args, kwargs, err := p.parseArgs()
	if err != nil {
		return nil, err
	}
	return &callE{fn: fn, args: args, kwargs: kwargs}, nil
}

func (p *parser) parseFilterCall(obj expr) (*filterE, error) {
	name, err := p.expectName()
	if err != nil {
		return nil, err
	}
	for p.isOp(".") && p.peekAt(1).kind == tName {
		p.pos++
		name += "." + p.next().val
	}
	f := &filterE{obj: obj, name: name}
	if p.isOp("(") {
		if f.args, f.kwargs, err = p.parseArgs(); err != nil {
			return nil, err
		}
	}
	return f, nil
}

func (p *parser) parseFilterExpr(e expr) (expr, error) {
	for {
		switch {
		case p.isOp("|"):
			p.pos++
			f, err := p.parseFilterCall(e)
			if err != nil {
				return nil, err
			}
			e = f
		case p.isName("is"):
			p.pos++
			t := &testE{obj: e}
			t.negate = p.acceptName("not")
			name, err := p.expectName()
			if err != nil {
				return nil, err
			}
			for p.isOp(".") && p.peekAt(1).kind == tName {
				p.pos++
				name += "." + p.next().val
			}
			t.name = name
			nt := p.peek()
			switch {
			case p.isOp("("):
				args, kwargs, err := p.parseArgs()
				if err != nil {
					return nil, err
				}
				if len(kwargs) > 0 {
					return nil, p.errorf("keyword arguments to tests are not supported")
				}
				t.args = args
			case nt.kind == tString || nt.kind == tInt || nt.kind == tFloat ||
				nt.kind == tOp && (nt.val == "[" || nt.val == "{") ||
				nt.kind == tName && nt.val != "else" && nt.val != "or" && nt.val != "and":
				if nt.kind == tName && nt.val == "is" {
					return nil, p.errorf("you cannot chain multiple tests with is")
				}
				arg, err := p.parsePrimary()
				if err != nil {
					return nil, err
				}
				if arg, err = p.parsePostfix(arg); err != nil {
					return nil, err
				}
				t.args = []expr{arg}
			}
			e = t
		case p.isOp("("):
			var err error
			if e, err = p.parseCall(e); err != nil {
				return nil, err
			}
		default:
			return e, nil
		}
	}
}

// compile lexes and parses src.
func compile(src string) ([]node, error) {
	toks, err := lex(src)
	if err != nil {
		return nil, err
	}
	nodes, err := parse(toks)
	if err != nil {
		return nil, err
	}
	return nodes, nil
}

var _ = strings.TrimSpace
