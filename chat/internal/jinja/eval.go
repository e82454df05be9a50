package jinja

import (
	"errors"
	"fmt"
	"math"
	"strings"
)

// Template is a compiled template. It is safe for concurrent use.
type Template struct {
	nodes []node
}

// Compile parses src.
func Compile(src string) (t *Template, err error) {
	defer func() {
		if r := recover(); r != nil {
			t, err = nil, fmt.Errorf("template compile panic: %v", r)
		}
	}()
	nodes, err := compile(src)
	if err != nil {
		return nil, err
	}
	return &Template{nodes: nodes}, nil
}

// Render renders the template with the given top-level variables. Globals
// (functions such as raise_exception) may be overridden by vars. Template
// errors, including failures that would panic, are returned as errors.
func (t *Template) Render(vars map[string]Value) (out string, err error) {
	defer func() {
		if r := recover(); r != nil {
			out, err = "", fmt.Errorf("template panic: %v", r)
		}
	}()
	root := &scope{vars: map[string]Value{}}
	for k, v := range defaultGlobals {
		root.vars[k] = v
	}
	top := &scope{vars: map[string]Value{}, parent: root}
	for k, v := range vars {
		top.vars[k] = v
	}
	r := &renderer{}
	var b strings.Builder
	if err := r.exec(t.nodes, top, &b); err != nil {
		if errors.Is(err, errBreak) || errors.Is(err, errContinue) {
			return "", fmt.Errorf("break or continue outside a loop")
		}
		return "", err
	}
	return b.String(), nil
}

// ReferencesName reports whether the template mentions the variable name
// anywhere (in any branch), e.g. to find out whether it reads
// enable_thinking.
func (t *Template) ReferencesName(name string) bool {
	found := false
	walk(t.nodes, func(e expr) {
		if n, ok := e.(*nameE); ok && n.name == name {
			found = true
		}
	})
	return found
}

type scope struct {
	vars   map[string]Value
	parent *scope
}

func (s *scope) lookup(name string) (Value, bool) {
	for ; s != nil; s = s.parent {
		if v, ok := s.vars[name]; ok {
			return v, true
		}
	}
	return nil, false
}

type renderer struct {
	depth int
	steps int // loop iterations and output writes, bounded by maxSteps
	out   int // bytes written, bounded by maxOutput
}

// Limits that stop a hostile template from hanging a render (variables so
// tests can lower them).
var (
	maxSteps  = 2_000_000
	maxOutput = 64 << 20
)

func (r *renderer) write(b *strings.Builder, s string) error {
	r.out += len(s)
	if r.out > maxOutput {
		return fmt.Errorf("template output exceeds %d bytes", maxOutput)
	}
	b.WriteString(s)
	return nil
}

func (r *renderer) step() error {
	r.steps++
	if r.steps > maxSteps {
		return fmt.Errorf("template exceeds %d loop iterations", maxSteps)
	}
	return nil
}

var (
	errBreak    = errors.New("break")
	errContinue = errors.New("continue")
)

const maxDepth = 200

func (r *renderer) exec(nodes []node, s *scope, b *strings.Builder) error {
	for _, n := range nodes {
		if err := r.execNode(n, s, b); err != nil {
			return err
		}
	}
	return nil
}

func (r *renderer) execNode(n node, s *scope, b *strings.Builder) error {
	switch n := n.(type) {
	case *textNode:
		return r.write(b, n.s)
	case *outputNode:
		v, err := r.eval(n.e, s)
		if err != nil {
			return err
		}
		return r.write(b, toStr(v))
	case *ifNode:
		for i, c := range n.conds {
			v, err := r.eval(c, s)
			if err != nil {
				return err
			}
			if truthy(v) {
				return r.exec(n.bodies[i], s, b)
			}
		}
		return r.exec(n.els, s, b)
	case *forNode:
		return r.execFor(n, s, b)
	case *setNode:
		return r.execSet(n, s)
	case *macroNode:
		s.vars[n.name] = r.makeMacro(n.name, n.params, n.body, s)
	case *callBlockNode:
		caller := r.makeMacro("caller", n.params, n.body, s)
		fn, err := r.eval(n.call.fn, s)
		if err != nil {
			return err
		}
		args, kw, err := r.evalArgs(n.call.args, n.call.kwargs, s)
		if err != nil {
			return err
		}
		kw.Set("caller", caller)
		v, err := callValue(fn, args, kw)
		if err != nil {
			return err
		}
		b.WriteString(toStr(v))
	case *filterBlockNode:
		var inner strings.Builder
		if err := r.exec(n.body, s, &inner); err != nil {
			return err
		}
		var v Value = inner.String()
		for _, f := range n.filters {
			var err error
			if v, err = r.applyFilter(f, v, s); err != nil {
				return err
			}
		}
		b.WriteString(toStr(v))
	case *withNode:
		inner := &scope{vars: map[string]Value{}, parent: s}
		for i, t := range n.targets {
			v, err := r.eval(n.values[i], s)
			if err != nil {
				return err
			}
			inner.vars[t] = v
		}
		return r.exec(n.body, inner, b)
	case *bodyNode:
		return r.exec(n.body, s, b)
	case *breakNode:
		return errBreak
	case *continueNode:
		return errContinue
	default:
		return fmt.Errorf("unknown node %T", n)
	}
	return nil
}

func assign(s *scope, targets []string, v Value) error {
	if len(targets) == 1 {
		s.vars[targets[0]] = v
		return nil
	}
	items, err := iterate(v)
	if err != nil {
		return err
	}
	if len(items) != len(targets) {
		return fmt.Errorf("cannot unpack %d values into %d names", len(items), len(targets))
	}
	for i, t := range targets {
		s.vars[t] = items[i]
	}
	return nil
}

func (r *renderer) execSet(n *setNode, s *scope) error {
	var v Value
	if n.body != nil {
		var inner strings.Builder
		if err := r.exec(n.body, s, &inner); err != nil {
			return err
		}
		v = inner.String()
		for _, f := range n.filters {
			var err error
			if v, err = r.applyFilter(f, v, s); err != nil {
				return err
			}
		}
	} else {
		var err error
		if v, err = r.eval(n.value, s); err != nil {
			return err
		}
	}
	if n.nsAttr != "" {
		obj, _ := s.lookup(n.targets[0])
		ns, ok := obj.(*Namespace)
		if !ok {
			return fmt.Errorf("cannot assign attribute on non-namespace object %s", n.targets[0])
		}
		ns.d.Set(n.nsAttr, v)
		return nil
	}
	return assign(s, n.targets, v)
}

func (r *renderer) execFor(n *forNode, s *scope, b *strings.Builder) error {
	seq, err := r.eval(n.iter, s)
	if err != nil {
		return err
	}
	return r.loop(n, seq, s, b, 0)
}

func (r *renderer) loop(n *forNode, seq Value, s *scope, b *strings.Builder, depth int) error {
	items, err := iterate(seq)
	if err != nil {
		return err
	}
	inner := &scope{vars: map[string]Value{}, parent: s}
	if n.cond != nil {
		var kept []Value
		for _, it := range items {
			if err := assign(inner, n.targets, it); err != nil {
				return err
			}
			c, err := r.eval(n.cond, inner)
			if err != nil {
				return err
			}
			if truthy(c) {
				kept = append(kept, it)
			}
		}
		items = kept
		inner = &scope{vars: map[string]Value{}, parent: s}
	}
	if len(items) == 0 {
		return r.exec(n.els, s, b)
	}
	loopD := NewDict()
	var lastChanged []Value
	changedInit := false
	for i, it := range items {
		if err := r.step(); err != nil {
			return err
		}
		total := int64(len(items))
		idx := int64(i)
		loopD.Set("index", idx+1)
		loopD.Set("index0", idx)
		loopD.Set("revindex", total-idx)
		loopD.Set("revindex0", total-idx-1)
		loopD.Set("first", i == 0)
		loopD.Set("last", i == len(items)-1)
		loopD.Set("length", total)
		loopD.Set("depth", int64(depth+1))
		loopD.Set("depth0", int64(depth))
		if i > 0 {
			loopD.Set("previtem", items[i-1])
		} else {
			loopD.Set("previtem", Undefined{Hint: "'previtem'"})
		}
		if i+1 < len(items) {
			loopD.Set("nextitem", items[i+1])
		} else {
			loopD.Set("nextitem", Undefined{Hint: "'nextitem'"})
		}
		ci := i
		loopD.Set("cycle", &Func{Name: "loop.cycle", Fn: func(args []Value, _ *Dict) (Value, error) {
			if len(args) == 0 {
				return nil, fmt.Errorf("no items for cycling given")
			}
			return args[ci%len(args)], nil
		}})
		loopD.Set("changed", &Func{Name: "loop.changed", Fn: func(args []Value, _ *Dict) (Value, error) {
			if changedInit && equal(NewList(args...), NewList(lastChanged...)) {
				return false, nil
			}
			changedInit = true
			lastChanged = args
			return true, nil
		}})
		if n.recursive {
			loopD.Set("__call__", &Func{Name: "loop", Fn: func(args []Value, _ *Dict) (Value, error) {
				if len(args) != 1 {
					return nil, fmt.Errorf("loop() takes one argument")
				}
				if depth+1 > maxDepth {
					return nil, fmt.Errorf("recursion too deep")
				}
				var sub strings.Builder
				if err := r.loop(n, args[0], s, &sub, depth+1); err != nil {
					return nil, err
				}
				return sub.String(), nil
			}})
		}
		inner = &scope{vars: map[string]Value{"loop": loopD}, parent: s}
		if err := assign(inner, n.targets, it); err != nil {
			return err
		}
		err := r.exec(n.body, inner, b)
		if errors.Is(err, errBreak) {
			break
		}
		if errors.Is(err, errContinue) {
			continue
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func (r *renderer) makeMacro(name string, params []param, body []node, defScope *scope) *Func {
	return &Func{Name: name, Fn: func(args []Value, kw *Dict) (Value, error) {
		if r.depth >= maxDepth {
			return nil, fmt.Errorf("maximum macro recursion depth exceeded in %s", name)
		}
		r.depth++
		defer func() { r.depth-- }()
		s := &scope{vars: map[string]Value{}, parent: defScope}
		var extra []Value
		if len(args) > len(params) {
			extra = args[len(params):]
		}
		for i, p := range params {
			switch {
			case i < len(args):
				s.vars[p.name] = args[i]
			case kw != nil && hasKey(kw, p.name):
				v, _ := kw.Get(p.name)
				s.vars[p.name] = v
			case p.def != nil:
				v, err := r.eval(p.def, s)
				if err != nil {
					return nil, err
				}
				s.vars[p.name] = v
			default:
				s.vars[p.name] = Undefined{Hint: "'" + p.name + "'"}
			}
		}
		kwargs := NewDict()
		if kw != nil {
			for _, k := range kw.Keys() {
				if k == "caller" {
					s.vars["caller"], _ = kw.Get(k)
					continue
				}
				known := false
				for _, p := range params {
					if p.name == k {
						known = true
					}
				}
				if !known {
					v, _ := kw.Get(k)
					kwargs.Set(k, v)
				}
			}
		}
		s.vars["varargs"] = &List{Items: extra, Tuple: true}
		s.vars["kwargs"] = kwargs
		var b strings.Builder
		err := r.exec(body, s, &b)
		if errors.Is(err, errBreak) || errors.Is(err, errContinue) {
			err = fmt.Errorf("break or continue outside a loop")
		}
		if err != nil {
			return nil, err
		}
		return b.String(), nil
	}}
}

func hasKey(d *Dict, k string) bool {
	_, ok := d.Get(k)
	return ok
}

// ---------------------------------------------------------------------------
// Expressions

func (r *renderer) eval(e expr, s *scope) (Value, error) {
	switch e := e.(type) {
	case *constE:
		return e.v, nil
	case *nameE:
		if v, ok := s.lookup(e.name); ok {
			return v, nil
		}
		return Undefined{Hint: "'" + e.name + "'"}, nil
	case *getattrE:
		obj, err := r.eval(e.obj, s)
		if err != nil {
			return nil, err
		}
		return getAttr(obj, e.attr)
	case *getitemE:
		obj, err := r.eval(e.obj, s)
		if err != nil {
			return nil, err
		}
		key, err := r.eval(e.key, s)
		if err != nil {
			return nil, err
		}
		return getItem(obj, key)
	case *sliceE:
		return r.evalSlice(e, s)
	case *callE:
		fn, err := r.eval(e.fn, s)
		if err != nil {
			return nil, err
		}
		args, kw, err := r.evalArgs(e.args, e.kwargs, s)
		if err != nil {
			return nil, err
		}
		return callValue(fn, args, kw)
	case *filterE:
		v, err := r.eval(e.obj, s)
		if err != nil {
			return nil, err
		}
		return r.applyFilter(e, v, s)
	case *testE:
		v, err := r.eval(e.obj, s)
		if err != nil {
			return nil, err
		}
		args, _, err := r.evalArgs(e.args, nil, s)
		if err != nil {
			return nil, err
		}
		res, err := runTest(e.name, v, args)
		if err != nil {
			return nil, err
		}
		return res != e.negate, nil
	case *unaryE:
		x, err := r.eval(e.x, s)
		if err != nil {
			return nil, err
		}
		return unary(e.op, x)
	case *binE:
		switch e.op {
		case "and":
			l, err := r.eval(e.l, s)
			if err != nil || !truthy(l) {
				return l, err
			}
			return r.eval(e.r, s)
		case "or":
			l, err := r.eval(e.l, s)
			if err != nil || truthy(l) {
				return l, err
			}
			return r.eval(e.r, s)
		}
		l, err := r.eval(e.l, s)
		if err != nil {
			return nil, err
		}
		rv, err := r.eval(e.r, s)
		if err != nil {
			return nil, err
		}
		return binary(e.op, l, rv)
	case *compareE:
		l, err := r.eval(e.first, s)
		if err != nil {
			return nil, err
		}
		for i, op := range e.ops {
			rv, err := r.eval(e.rest[i], s)
			if err != nil {
				return nil, err
			}
			ok, err := compareOp(op, l, rv)
			if err != nil {
				return nil, err
			}
			if !ok {
				return false, nil
			}
			l = rv
		}
		return true, nil
	case *condE:
		c, err := r.eval(e.cond, s)
		if err != nil {
			return nil, err
		}
		if truthy(c) {
			return r.eval(e.then, s)
		}
		if e.els == nil {
			return Undefined{Hint: "conditional expression"}, nil
		}
		return r.eval(e.els, s)
	case *listE:
		l := &List{Items: make([]Value, 0, len(e.items)), Tuple: e.tuple}
		for _, it := range e.items {
			v, err := r.eval(it, s)
			if err != nil {
				return nil, err
			}
			l.Items = append(l.Items, v)
		}
		return l, nil
	case *dictE:
		d := NewDict()
		for i := range e.keys {
			k, err := r.eval(e.keys[i], s)
			if err != nil {
				return nil, err
			}
			v, err := r.eval(e.vals[i], s)
			if err != nil {
				return nil, err
			}
			ks, ok := k.(string)
			if !ok {
				return nil, fmt.Errorf("dict keys must be strings, got %s", typeName(k))
			}
			d.Set(ks, v)
		}
		return d, nil
	}
	return nil, fmt.Errorf("unknown expression %T", e)
}

func (r *renderer) evalArgs(args []expr, kwargs []kwarg, s *scope) ([]Value, *Dict, error) {
	out := make([]Value, 0, len(args))
	for _, a := range args {
		if st, ok := a.(*starE); ok {
			v, err := r.eval(st.x, s)
			if err != nil {
				return nil, nil, err
			}
			items, err := iterate(v)
			if err != nil {
				return nil, nil, err
			}
			out = append(out, items...)
			continue
		}
		v, err := r.eval(a, s)
		if err != nil {
			return nil, nil, err
		}
		out = append(out, v)
	}
	kw := NewDict()
	for _, k := range kwargs {
		v, err := r.eval(k.v, s)
		if err != nil {
			return nil, nil, err
		}
		if k.name == "" {
			d, ok := v.(*Dict)
			if !ok {
				return nil, nil, fmt.Errorf("argument after ** must be a mapping, not %s", typeName(v))
			}
			for _, key := range d.Keys() {
				dv, _ := d.Get(key)
				kw.Set(key, dv)
			}
			continue
		}
		kw.Set(k.name, v)
	}
	return out, kw, nil
}

func callValue(fn Value, args []Value, kw *Dict) (Value, error) {
	switch f := fn.(type) {
	case *Func:
		if kw == nil {
			kw = NewDict()
		}
		return f.Fn(args, kw)
	case *Dict:
		if c, ok := f.Get("__call__"); ok {
			return callValue(c, args, kw)
		}
	case Undefined:
		return nil, f.err()
	}
	return nil, fmt.Errorf("'%s' object is not callable", typeName(fn))
}

func (r *renderer) applyFilter(f *filterE, v Value, s *scope) (Value, error) {
	fn, ok := filters[f.name]
	if !ok {
		return nil, fmt.Errorf("no filter named '%s'", f.name)
	}
	args, kw, err := r.evalArgs(f.args, f.kwargs, s)
	if err != nil {
		return nil, err
	}
	return fn(v, args, kw)
}

func (r *renderer) evalSlice(e *sliceE, s *scope) (Value, error) {
	obj, err := r.eval(e.obj, s)
	if err != nil {
		return nil, err
	}
	var bounds [3]*int64
	for i, x := range []expr{e.start, e.stop, e.step} {
		if x == nil {
			continue
		}
		v, err := r.eval(x, s)
		if err != nil {
			return nil, err
		}
		if v == nil {
			continue
		}
		n, ok := v.(int64)
		if !ok {
			if b, isBool := v.(bool); isBool {
				n = map[bool]int64{false: 0, true: 1}[b]
			} else {
				return nil, fmt.Errorf("slice indices must be integers or None")
			}
		}
		bounds[i] = &n
	}
	var items []Value
	isStr := false
	switch o := obj.(type) {
	case *List:
		items = o.Items
	case string:
		isStr = true
		for _, r := range o {
			items = append(items, string(r))
		}
	case Undefined:
		return nil, o.err()
	default:
		return nil, fmt.Errorf("'%s' object is not subscriptable", typeName(obj))
	}
	idx, err := sliceIndices(len(items), bounds[0], bounds[1], bounds[2])
	if err != nil {
		return nil, err
	}
	if isStr {
		var b strings.Builder
		for _, i := range idx {
			b.WriteString(items[i].(string))
		}
		return b.String(), nil
	}
	out := &List{Items: make([]Value, 0, len(idx)), Tuple: obj.(*List).Tuple}
	for _, i := range idx {
		out.Items = append(out.Items, items[i])
	}
	return out, nil
}

// sliceIndices implements Python's slice.indices.
func sliceIndices(n int, start, stop, step *int64) ([]int, error) {
	st := int64(1)
	if step != nil {
		st = *step
	}
	if st == 0 {
		return nil, fmt.Errorf("slice step cannot be zero")
	}
	ln := int64(n)
	clamp := func(p *int64, def int64, lo, hi int64) int64 {
		if p == nil {
			return def
		}
		v := *p
		if v < 0 {
			v += ln
			if v < lo {
				v = lo
			}
		} else if v > hi {
			v = hi
		}
		return v
	}
	var out []int
	if st > 0 {
		a := clamp(start, 0, 0, ln)
		b := clamp(stop, ln, 0, ln)
		for i := a; i < b; i += st {
			out = append(out, int(i))
		}
	} else {
		a := clamp(start, ln-1, -1, ln-1)
		b := clamp(stop, -1, -1, ln-1)
		for i := a; i > b; i += st {
			out = append(out, int(i))
		}
	}
	return out, nil
}

func getAttr(obj Value, name string) (Value, error) {
	switch o := obj.(type) {
	case Undefined:
		return nil, o.err()
	case *Dict:
		if m := dictMethod(o, name); m != nil {
			return m, nil
		}
		if v, ok := o.Get(name); ok {
			return v, nil
		}
		return Undefined{Hint: fmt.Sprintf("'dict object' has no attribute '%s'; it", name)}, nil
	case *Namespace:
		if v, ok := o.d.Get(name); ok {
			return v, nil
		}
	case string:
		if m := strMethod(o, name); m != nil {
			return m, nil
		}
	case *List:
		if m := listMethod(o, name); m != nil {
			return m, nil
		}
	}
	return Undefined{Hint: fmt.Sprintf("'%s object' has no attribute '%s'; it", typeName(obj), name)}, nil
}

func getItem(obj Value, key Value) (Value, error) {
	switch o := obj.(type) {
	case Undefined:
		return nil, o.err()
	case *Dict:
		if k, ok := key.(string); ok {
			if v, ok := o.Get(k); ok {
				return v, nil
			}
			if m := dictMethod(o, k); m != nil {
				return m, nil
			}
		}
		return Undefined{Hint: fmt.Sprintf("'dict object' has no attribute %s; it", repr(key))}, nil
	case *Namespace:
		if k, ok := key.(string); ok {
			if v, ok := o.d.Get(k); ok {
				return v, nil
			}
		}
	case *List:
		if i, _, isFloat, ok := numeric(key); ok && !isFloat {
			if i < 0 {
				i += int64(len(o.Items))
			}
			if i >= 0 && i < int64(len(o.Items)) {
				return o.Items[i], nil
			}
			return Undefined{Hint: fmt.Sprintf("'%s object' has no element %s; it", typeName(obj), repr(key))}, nil
		}
		if k, ok := key.(string); ok {
			return getAttr(obj, k)
		}
	case string:
		if i, _, isFloat, ok := numeric(key); ok && !isFloat {
			rs := []rune(o)
			if i < 0 {
				i += int64(len(rs))
			}
			if i >= 0 && i < int64(len(rs)) {
				return string(rs[i]), nil
			}
			return Undefined{Hint: fmt.Sprintf("'str object' has no element %s; it", repr(key))}, nil
		}
		if k, ok := key.(string); ok {
			return getAttr(obj, k)
		}
	}
	return Undefined{Hint: fmt.Sprintf("'%s object' has no attribute %s; it", typeName(obj), repr(key))}, nil
}

func unary(op string, x Value) (Value, error) {
	if op == "not" {
		return !truthy(x), nil
	}
	if u, ok := x.(Undefined); ok {
		return nil, u.err()
	}
	i, f, isFloat, ok := numeric(x)
	if !ok {
		return nil, fmt.Errorf("bad operand type for unary %s: '%s'", op, typeName(x))
	}
	if op == "-" {
		if isFloat {
			return -f, nil
		}
		return -i, nil
	}
	if isFloat {
		return f, nil
	}
	return i, nil
}

func compareOp(op string, l, r Value) (bool, error) {
	switch op {
	case "==":
		return equal(l, r), nil
	case "!=":
		return !equal(l, r), nil
	case "in":
		return contains(r, l)
	case "notin":
		c, err := contains(r, l)
		return !c, err
	}
	c, err := compare(l, r)
	if err != nil {
		return false, err
	}
	switch op {
	case "<":
		return c < 0, nil
	case "<=":
		return c <= 0, nil
	case ">":
		return c > 0, nil
	case ">=":
		return c >= 0, nil
	}
	return false, fmt.Errorf("unknown comparison %s", op)
}

func binary(op string, l, r Value) (Value, error) {
	if op == "~" {
		return toStr(l) + toStr(r), nil
	}
	if u, ok := l.(Undefined); ok {
		return nil, u.err()
	}
	if u, ok := r.(Undefined); ok {
		return nil, u.err()
	}
	li, lf, lFloat, lok := numeric(l)
	ri, rf, rFloat, rok := numeric(r)
	if lok && rok {
		anyFloat := lFloat || rFloat
		switch op {
		case "+":
			if anyFloat {
				return lf + rf, nil
			}
			return li + ri, nil
		case "-":
			if anyFloat {
				return lf - rf, nil
			}
			return li - ri, nil
		case "*":
			if anyFloat {
				return lf * rf, nil
			}
			return li * ri, nil
		case "/":
			if rf == 0 {
				return nil, fmt.Errorf("division by zero")
			}
			return lf / rf, nil
		case "//":
			if rf == 0 {
				return nil, fmt.Errorf("integer division or modulo by zero")
			}
			if anyFloat {
				return math.Floor(lf / rf), nil
			}
			q := li / ri
			if (li%ri != 0) && ((li < 0) != (ri < 0)) {
				q--
			}
			return q, nil
		case "%":
			if rf == 0 {
				return nil, fmt.Errorf("integer division or modulo by zero")
			}
			if anyFloat {
				m := math.Mod(lf, rf)
				if m != 0 && (m < 0) != (rf < 0) {
					m += rf
				}
				return m, nil
			}
			m := li % ri
			if m != 0 && (m < 0) != (ri < 0) {
				m += ri
			}
			return m, nil
		case "**":
			if !anyFloat && ri >= 0 {
				res := int64(1)
				for k := int64(0); k < ri; k++ {
					res *= li
				}
				return res, nil
			}
			return math.Pow(lf, rf), nil
		}
	}
	switch op {
	case "+":
		if ls, ok := l.(string); ok {
			if rs, ok := r.(string); ok {
				return ls + rs, nil
			}
		}
		if ll, ok := l.(*List); ok {
			if rl, ok := r.(*List); ok && ll.Tuple == rl.Tuple {
				items := append(append([]Value{}, ll.Items...), rl.Items...)
				return &List{Items: items, Tuple: ll.Tuple}, nil
			}
		}
	case "*":
		if _, ok := r.(string); ok && lok && !lFloat {
			return binary("*", r, l)
		}
		if _, ok := r.(*List); ok && lok && !lFloat {
			return binary("*", r, l)
		}
		if ls, ok := l.(string); ok && rok && !rFloat {
			return strings.Repeat(ls, int(max(ri, 0))), nil
		}
		if ll, ok := l.(*List); ok && rok && !rFloat {
			out := &List{Tuple: ll.Tuple}
			for k := int64(0); k < ri; k++ {
				out.Items = append(out.Items, ll.Items...)
			}
			return out, nil
		}
	case "%":
		if ls, ok := l.(string); ok {
			return printfFormat(ls, r)
		}
	}
	return nil, fmt.Errorf("unsupported operand type(s) for %s: '%s' and '%s'", op, typeName(l), typeName(r))
}

// walk calls fn for every expression in nodes.
func walk(nodes []node, fn func(expr)) {
	var we func(e expr)
	we = func(e expr) {
		if e == nil {
			return
		}
		fn(e)
		switch e := e.(type) {
		case *getattrE:
			we(e.obj)
		case *getitemE:
			we(e.obj)
			we(e.key)
		case *sliceE:
			we(e.obj)
			we(e.start)
			we(e.stop)
			we(e.step)
		case *callE:
			we(e.fn)
			for _, a := range e.args {
				we(a)
			}
			for _, k := range e.kwargs {
				we(k.v)
			}
		case *filterE:
			we(e.obj)
			for _, a := range e.args {
				we(a)
			}
			for _, k := range e.kwargs {
				we(k.v)
			}
		case *testE:
			we(e.obj)
			for _, a := range e.args {
				we(a)
			}
		case *unaryE:
			we(e.x)
		case *binE:
			we(e.l)
			we(e.r)
		case *compareE:
			we(e.first)
			for _, x := range e.rest {
				we(x)
			}
		case *starE:
			we(e.x)
		case *condE:
			we(e.cond)
			we(e.then)
			we(e.els)
		case *listE:
			for _, x := range e.items {
				we(x)
			}
		case *dictE:
			for i := range e.keys {
				we(e.keys[i])
				we(e.vals[i])
			}
		}
	}
	for _, n := range nodes {
		switch n := n.(type) {
		case *outputNode:
			we(n.e)
		case *ifNode:
			for i, c := range n.conds {
				we(c)
				walk(n.bodies[i], fn)
			}
			walk(n.els, fn)
		case *forNode:
			we(n.iter)
			we(n.cond)
			walk(n.body, fn)
			walk(n.els, fn)
		case *setNode:
			we(n.value)
			walk(n.body, fn)
			for _, f := range n.filters {
				we(f)
			}
		case *macroNode:
			for _, p := range n.params {
				we(p.def)
			}
			walk(n.body, fn)
		case *callBlockNode:
			we(n.call)
			walk(n.body, fn)
		case *filterBlockNode:
			for _, f := range n.filters {
				we(f)
			}
			walk(n.body, fn)
		case *withNode:
			for _, v := range n.values {
				we(v)
			}
			walk(n.body, fn)
		case *bodyNode:
			walk(n.body, fn)
		}
	}
}
