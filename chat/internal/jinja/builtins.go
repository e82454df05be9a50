package jinja

import (
	"fmt"
	"html"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// ---------------------------------------------------------------------------
// Globals

var defaultGlobals = map[string]Value{
	"range":           &Func{Name: "range", Fn: fnRange},
	"dict":            &Func{Name: "dict", Fn: fnDict},
	"namespace":       &Func{Name: "namespace", Fn: fnNamespace},
	"raise_exception": &Func{Name: "raise_exception", Fn: fnRaise},
	"strftime_now":    StrftimeNow(time.Now),
	"joiner":          &Func{Name: "joiner", Fn: fnJoiner},
	"cycler":          &Func{Name: "cycler", Fn: fnCycler},
}

// TemplateError is the error raise_exception returns.
type TemplateError struct{ Msg string }

func (e *TemplateError) Error() string { return e.Msg }

func fnRaise(args []Value, _ *Dict) (Value, error) {
	msg := "raise_exception called"
	if len(args) > 0 {
		msg = toStr(args[0])
	}
	return nil, &TemplateError{Msg: msg}
}

func fnRange(args []Value, _ *Dict) (Value, error) {
	var ns []int64
	for _, a := range args {
		i, _, isFloat, ok := numeric(a)
		if !ok || isFloat {
			return nil, fmt.Errorf("range() integer argument expected, got %s", typeName(a))
		}
		ns = append(ns, i)
	}
	var start, stop, step int64 = 0, 0, 1
	switch len(ns) {
	case 1:
		stop = ns[0]
	case 2:
		start, stop = ns[0], ns[1]
	case 3:
		start, stop, step = ns[0], ns[1], ns[2]
	default:
		return nil, fmt.Errorf("range expected 1 to 3 arguments, got %d", len(ns))
	}
	if step == 0 {
		return nil, fmt.Errorf("range() arg 3 must not be zero")
	}
	out := &List{}
	for i := start; (step > 0 && i < stop) || (step < 0 && i > stop); i += step {
		if len(out.Items) >= 100000 {
			return nil, fmt.Errorf("range too big")
		}
		out.Items = append(out.Items, i)
	}
	return out, nil
}

func fnDict(args []Value, kw *Dict) (Value, error) {
	d := NewDict()
	if len(args) > 1 {
		return nil, fmt.Errorf("dict expected at most 1 argument")
	}
	if len(args) == 1 {
		switch a := args[0].(type) {
		case *Dict:
			d = a.clone()
		case *List:
			for _, it := range a.Items {
				pair, ok := it.(*List)
				if !ok || len(pair.Items) != 2 {
					return nil, fmt.Errorf("dictionary update sequence element has wrong length")
				}
				k, ok := pair.Items[0].(string)
				if !ok {
					return nil, fmt.Errorf("dict keys must be strings")
				}
				d.Set(k, pair.Items[1])
			}
		default:
			return nil, fmt.Errorf("'%s' object is not iterable", typeName(a))
		}
	}
	for _, k := range kw.Keys() {
		v, _ := kw.Get(k)
		d.Set(k, v)
	}
	return d, nil
}

func fnNamespace(args []Value, kw *Dict) (Value, error) {
	d, err := fnDict(args, kw)
	if err != nil {
		return nil, err
	}
	return &Namespace{d: d.(*Dict)}, nil
}

func fnJoiner(args []Value, _ *Dict) (Value, error) {
	sep := ", "
	if len(args) > 0 {
		sep = toStr(args[0])
	}
	used := false
	return &Func{Name: "joiner", Fn: func([]Value, *Dict) (Value, error) {
		if !used {
			used = true
			return "", nil
		}
		return sep, nil
	}}, nil
}

func fnCycler(args []Value, _ *Dict) (Value, error) {
	d := NewDict()
	pos := 0
	items := args
	d.Set("next", &Func{Name: "cycler.next", Fn: func([]Value, *Dict) (Value, error) {
		if len(items) == 0 {
			return nil, nil
		}
		v := items[pos%len(items)]
		pos++
		return v, nil
	}})
	d.Set("reset", &Func{Name: "cycler.reset", Fn: func([]Value, *Dict) (Value, error) { pos = 0; return nil, nil }})
	return d, nil
}

// StrftimeNow returns a strftime_now(format) global that formats now() with
// Python's strftime directives.
func StrftimeNow(now func() time.Time) *Func {
	return &Func{Name: "strftime_now", Fn: func(args []Value, _ *Dict) (Value, error) {
		if len(args) != 1 {
			return nil, fmt.Errorf("strftime_now() takes one argument")
		}
		return Strftime(now(), toStr(args[0])), nil
	}}
}

// Strftime formats t with Python strftime directives (C locale).
func Strftime(t time.Time, format string) string {
	var b strings.Builder
	for i := 0; i < len(format); i++ {
		c := format[i]
		if c != '%' || i+1 >= len(format) {
			b.WriteByte(c)
			continue
		}
		i++
		switch format[i] {
		case 'a':
			b.WriteString(t.Format("Mon"))
		case 'A':
			b.WriteString(t.Format("Monday"))
		case 'b', 'h':
			b.WriteString(t.Format("Jan"))
		case 'B':
			b.WriteString(t.Format("January"))
		case 'd':
			fmt.Fprintf(&b, "%02d", t.Day())
		case 'e':
			fmt.Fprintf(&b, "%2d", t.Day())
		case 'm':
			fmt.Fprintf(&b, "%02d", int(t.Month()))
		case 'y':
			fmt.Fprintf(&b, "%02d", t.Year()%100)
		case 'Y':
			fmt.Fprintf(&b, "%d", t.Year())
		case 'H':
			fmt.Fprintf(&b, "%02d", t.Hour())
		case 'I':
			h := t.Hour() % 12
			if h == 0 {
				h = 12
			}
			fmt.Fprintf(&b, "%02d", h)
		case 'M':
			fmt.Fprintf(&b, "%02d", t.Minute())
		case 'S':
			fmt.Fprintf(&b, "%02d", t.Second())
		case 'p':
			b.WriteString(t.Format("PM"))
		case 'j':
			fmt.Fprintf(&b, "%03d", t.YearDay())
		case 'f':
			fmt.Fprintf(&b, "%06d", t.Nanosecond()/1000)
		case 'z':
			b.WriteString(t.Format("-0700"))
		case 'Z':
			b.WriteString(t.Format("MST"))
		case 'w':
			fmt.Fprintf(&b, "%d", int(t.Weekday()))
		case 'u':
			wd := int(t.Weekday())
			if wd == 0 {
				wd = 7
			}
			fmt.Fprintf(&b, "%d", wd)
		case 'F':
			b.WriteString(t.Format("2006-01-02"))
		case 'T':
			b.WriteString(t.Format("15:04:05"))
		case '%':
			b.WriteByte('%')
		default:
			b.WriteByte('%')
			b.WriteByte(format[i])
		}
	}
	return b.String()
}

// ---------------------------------------------------------------------------
// Methods of str, dict and list

func method(name string, fn func(args []Value, kw *Dict) (Value, error)) *Func {
	return &Func{Name: name, Fn: fn}
}

func argStr(args []Value, i int, def string) (string, bool, error) {
	if i >= len(args) || args[i] == nil {
		return def, false, nil
	}
	s, ok := args[i].(string)
	if !ok {
		return "", false, fmt.Errorf("expected str argument, got %s", typeName(args[i]))
	}
	return s, true, nil
}

func argInt(args []Value, i int, def int64) (int64, error) {
	if i >= len(args) || args[i] == nil {
		return def, nil
	}
	n, _, isFloat, ok := numeric(args[i])
	if !ok || isFloat {
		return 0, fmt.Errorf("expected int argument, got %s", typeName(args[i]))
	}
	return n, nil
}

func pyStrip(s string, chars string, hasChars bool, left, right bool) string {
	f := isSpace
	if hasChars {
		f = func(r rune) bool { return strings.ContainsRune(chars, r) }
	}
	if left {
		s = strings.TrimLeftFunc(s, f)
	}
	if right {
		s = strings.TrimRightFunc(s, f)
	}
	return s
}

func strList(parts []string) *List {
	l := &List{Items: make([]Value, len(parts))}
	for i, p := range parts {
		l.Items[i] = p
	}
	return l
}

func pySplit(s, sep string, hasSep bool, maxsplit int64) []string {
	if hasSep {
		if maxsplit < 0 {
			return strings.Split(s, sep)
		}
		return strings.SplitN(s, sep, int(maxsplit)+1)
	}
	var out []string
	rest := strings.TrimLeftFunc(s, isSpace)
	for rest != "" {
		if maxsplit >= 0 && int64(len(out)) == maxsplit {
			out = append(out, strings.TrimRightFunc(rest, isSpace))
			break
		}
		i := strings.IndexFunc(rest, isSpace)
		if i < 0 {
			out = append(out, rest)
			break
		}
		out = append(out, rest[:i])
		rest = strings.TrimLeftFunc(rest[i:], isSpace)
	}
	if out == nil {
		out = []string{}
	}
	return out
}

func prefixTest(s string, args []Value, fn func(string, string) bool) (Value, error) {
	if len(args) == 0 {
		return nil, fmt.Errorf("missing argument")
	}
	switch a := args[0].(type) {
	case string:
		return fn(s, a), nil
	case *List:
		for _, it := range a.Items {
			p, ok := it.(string)
			if !ok {
				return nil, fmt.Errorf("tuple items must be str")
			}
			if fn(s, p) {
				return true, nil
			}
		}
		return false, nil
	}
	return nil, fmt.Errorf("argument must be str or a tuple of str, not %s", typeName(args[0]))
}

func pyCapitalize(s string) string {
	if s == "" {
		return s
	}
	r, n := utf8.DecodeRuneInString(s)
	return string(unicode.ToUpper(r)) + strings.ToLower(s[n:])
}

func pyTitle(s string) string {
	var b strings.Builder
	prevCased := false
	for _, r := range s {
		if prevCased {
			b.WriteRune(unicode.ToLower(r))
		} else {
			b.WriteRune(unicode.ToTitle(r))
		}
		prevCased = unicode.IsLetter(r)
	}
	return b.String()
}

func strMethod(s, name string) *Func {
	switch name {
	case "strip", "lstrip", "rstrip":
		return method(name, func(args []Value, _ *Dict) (Value, error) {
			chars, has, err := argStr(args, 0, "")
			if err != nil {
				return nil, err
			}
			return pyStrip(s, chars, has, name != "rstrip", name != "lstrip"), nil
		})
	case "split", "rsplit":
		return method(name, func(args []Value, kw *Dict) (Value, error) {
			if v, ok := kw.Get("sep"); ok {
				args = append([]Value{v}, args...)
			}
			sep, has, err := argStr(args, 0, "")
			if err != nil {
				return nil, err
			}
			if has && sep == "" {
				return nil, fmt.Errorf("empty separator")
			}
			maxsplit, err := argInt(args, 1, -1)
			if err != nil {
				return nil, err
			}
			if v, ok := kw.Get("maxsplit"); ok {
				if maxsplit, err = argInt([]Value{v}, 0, -1); err != nil {
					return nil, err
				}
			}
			if name == "rsplit" && maxsplit >= 0 && has {
				parts := strings.Split(s, sep)
				if int64(len(parts)) > maxsplit+1 {
					k := len(parts) - int(maxsplit)
					head := strings.Join(parts[:k], sep)
					parts = append([]string{head}, parts[k:]...)
				}
				return strList(parts), nil
			}
			return strList(pySplit(s, sep, has, maxsplit)), nil
		})
	case "splitlines":
		return method(name, func(args []Value, _ *Dict) (Value, error) {
			lines := strings.Split(strings.NewReplacer("\r\n", "\n", "\r", "\n").Replace(s), "\n")
			if len(lines) > 0 && lines[len(lines)-1] == "" {
				lines = lines[:len(lines)-1]
			}
			return strList(lines), nil
		})
	case "startswith":
		return method(name, func(args []Value, _ *Dict) (Value, error) { return prefixTest(s, args, strings.HasPrefix) })
	case "endswith":
		return method(name, func(args []Value, _ *Dict) (Value, error) { return prefixTest(s, args, strings.HasSuffix) })
	case "upper":
		return method(name, func([]Value, *Dict) (Value, error) { return strings.ToUpper(s), nil })
	case "lower":
		return method(name, func([]Value, *Dict) (Value, error) { return strings.ToLower(s), nil })
	case "title":
		return method(name, func([]Value, *Dict) (Value, error) { return pyTitle(s), nil })
	case "capitalize":
		return method(name, func([]Value, *Dict) (Value, error) { return pyCapitalize(s), nil })
	case "replace":
		return method(name, func(args []Value, _ *Dict) (Value, error) {
			old, _, err := argStr(args, 0, "")
			if err != nil {
				return nil, err
			}
			nw, _, err := argStr(args, 1, "")
			if err != nil {
				return nil, err
			}
			n, err := argInt(args, 2, -1)
			if err != nil {
				return nil, err
			}
			return strings.Replace(s, old, nw, int(n)), nil
		})
	case "find", "rfind", "index", "rindex", "count":
		return method(name, func(args []Value, _ *Dict) (Value, error) {
			sub, _, err := argStr(args, 0, "")
			if err != nil {
				return nil, err
			}
			var i int
			switch name {
			case "count":
				return int64(strings.Count(s, sub)), nil
			case "find", "index":
				i = strings.Index(s, sub)
			default:
				i = strings.LastIndex(s, sub)
			}
			if i < 0 {
				if name == "index" || name == "rindex" {
					return nil, fmt.Errorf("substring not found")
				}
				return int64(-1), nil
			}
			return int64(utf8.RuneCountInString(s[:i])), nil
		})
	case "join":
		return method(name, func(args []Value, _ *Dict) (Value, error) {
			if len(args) != 1 {
				return nil, fmt.Errorf("join() takes exactly one argument")
			}
			items, err := iterate(args[0])
			if err != nil {
				return nil, err
			}
			parts := make([]string, len(items))
			for i, it := range items {
				str, ok := it.(string)
				if !ok {
					return nil, fmt.Errorf("sequence item %d: expected str instance, %s found", i, typeName(it))
				}
				parts[i] = str
			}
			return strings.Join(parts, s), nil
		})
	case "format":
		return method(name, func(args []Value, kw *Dict) (Value, error) { return pyFormat(s, args, kw) })
	case "isdigit", "isnumeric", "isdecimal":
		return method(name, func([]Value, *Dict) (Value, error) {
			return s != "" && strings.IndexFunc(s, func(r rune) bool { return !unicode.IsDigit(r) }) < 0, nil
		})
	case "isalpha":
		return method(name, func([]Value, *Dict) (Value, error) {
			return s != "" && strings.IndexFunc(s, func(r rune) bool { return !unicode.IsLetter(r) }) < 0, nil
		})
	case "isalnum":
		return method(name, func([]Value, *Dict) (Value, error) {
			return s != "" && strings.IndexFunc(s, func(r rune) bool { return !unicode.IsLetter(r) && !unicode.IsDigit(r) }) < 0, nil
		})
	case "isspace":
		return method(name, func([]Value, *Dict) (Value, error) {
			return s != "" && strings.IndexFunc(s, func(r rune) bool { return !isSpace(r) }) < 0, nil
		})
	case "isupper", "islower":
		return method(name, func([]Value, *Dict) (Value, error) {
			cased := false
			for _, r := range s {
				if unicode.IsUpper(r) || unicode.IsLower(r) || unicode.IsTitle(r) {
					cased = true
					if name == "isupper" && !unicode.IsUpper(r) || name == "islower" && !unicode.IsLower(r) {
						return false, nil
					}
				}
			}
			return cased, nil
		})
	}
	return nil
}

func dictMethod(d *Dict, name string) *Func {
	switch name {
	case "items":
		return method(name, func([]Value, *Dict) (Value, error) { return dictItems(d), nil })
	case "keys":
		return method(name, func([]Value, *Dict) (Value, error) {
			l := &List{}
			for _, k := range d.keys {
				l.Items = append(l.Items, k)
			}
			return l, nil
		})
	case "values":
		return method(name, func([]Value, *Dict) (Value, error) {
			l := &List{}
			for _, k := range d.keys {
				l.Items = append(l.Items, d.m[k])
			}
			return l, nil
		})
	case "get":
		return method(name, func(args []Value, _ *Dict) (Value, error) {
			if len(args) == 0 {
				return nil, fmt.Errorf("get expected at least 1 argument")
			}
			if k, ok := args[0].(string); ok {
				if v, ok := d.Get(k); ok {
					return v, nil
				}
			}
			if len(args) > 1 {
				return args[1], nil
			}
			return nil, nil
		})
	case "copy":
		return method(name, func([]Value, *Dict) (Value, error) { return d.clone(), nil })
	}
	return nil
}

func dictItems(d *Dict) *List {
	l := &List{Items: make([]Value, 0, d.Len())}
	for _, k := range d.keys {
		l.Items = append(l.Items, &List{Items: []Value{k, d.m[k]}, Tuple: true})
	}
	return l
}

func listMethod(l *List, name string) *Func {
	switch name {
	case "index":
		return method(name, func(args []Value, _ *Dict) (Value, error) {
			if len(args) == 0 {
				return nil, fmt.Errorf("index expected 1 argument")
			}
			for i, it := range l.Items {
				if equal(it, args[0]) {
					return int64(i), nil
				}
			}
			return nil, fmt.Errorf("%s is not in list", repr(args[0]))
		})
	case "count":
		return method(name, func(args []Value, _ *Dict) (Value, error) {
			if len(args) == 0 {
				return nil, fmt.Errorf("count expected 1 argument")
			}
			n := int64(0)
			for _, it := range l.Items {
				if equal(it, args[0]) {
					n++
				}
			}
			return n, nil
		})
	}
	return nil
}

// pyFormat implements a subset of str.format: {}, {0}, {name}.
func pyFormat(s string, args []Value, kw *Dict) (Value, error) {
	var b strings.Builder
	auto := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '{' && i+1 < len(s) && s[i+1] == '{' {
			b.WriteByte('{')
			i++
			continue
		}
		if c == '}' && i+1 < len(s) && s[i+1] == '}' {
			b.WriteByte('}')
			i++
			continue
		}
		if c != '{' {
			b.WriteByte(c)
			continue
		}
		j := strings.IndexByte(s[i:], '}')
		if j < 0 {
			return nil, fmt.Errorf("single '{' encountered in format string")
		}
		field := s[i+1 : i+j]
		i += j
		if k := strings.IndexAny(field, "!:"); k >= 0 {
			field = field[:k]
		}
		var v Value
		switch {
		case field == "":
			if auto >= len(args) {
				return nil, fmt.Errorf("replacement index %d out of range", auto)
			}
			v = args[auto]
			auto++
		case field[0] >= '0' && field[0] <= '9':
			n, _ := strconv.Atoi(field)
			if n >= len(args) {
				return nil, fmt.Errorf("replacement index %d out of range", n)
			}
			v = args[n]
		default:
			var ok bool
			if v, ok = kw.Get(field); !ok {
				return nil, fmt.Errorf("KeyError: %s", repr(field))
			}
		}
		b.WriteString(toStr(v))
	}
	return b.String(), nil
}

// printfFormat implements "fmt" % args for %s, %d, %r and %%.
func printfFormat(f string, arg Value) (Value, error) {
	var args []Value
	if l, ok := arg.(*List); ok && l.Tuple {
		args = l.Items
	} else {
		args = []Value{arg}
	}
	var b strings.Builder
	n := 0
	for i := 0; i < len(f); i++ {
		if f[i] != '%' || i+1 >= len(f) {
			b.WriteByte(f[i])
			continue
		}
		i++
		if f[i] == '%' {
			b.WriteByte('%')
			continue
		}
		if n >= len(args) {
			return nil, fmt.Errorf("not enough arguments for format string")
		}
		a := args[n]
		n++
		switch f[i] {
		case 's':
			b.WriteString(toStr(a))
		case 'r':
			b.WriteString(repr(a))
		case 'd', 'i':
			iv, _, _, ok := numeric(a)
			if !ok {
				return nil, fmt.Errorf("%%d format: a real number is required, not %s", typeName(a))
			}
			b.WriteString(strconv.FormatInt(iv, 10))
		default:
			return nil, fmt.Errorf("unsupported format character %q", f[i])
		}
	}
	if n < len(args) {
		return nil, fmt.Errorf("not all arguments converted during string formatting")
	}
	return b.String(), nil
}

// ---------------------------------------------------------------------------
// Tests

func runTest(name string, v Value, args []Value) (bool, error) {
	arg := func() (Value, error) {
		if len(args) < 1 {
			return nil, fmt.Errorf("test '%s' needs an argument", name)
		}
		return args[0], nil
	}
	switch name {
	case "defined":
		_, u := v.(Undefined)
		return !u, nil
	case "undefined":
		_, u := v.(Undefined)
		return u, nil
	case "none":
		return v == nil, nil
	case "boolean":
		_, ok := v.(bool)
		return ok, nil
	case "true":
		b, ok := v.(bool)
		return ok && b, nil
	case "false":
		b, ok := v.(bool)
		return ok && !b, nil
	case "integer":
		_, ok := v.(int64)
		return ok, nil
	case "float":
		_, ok := v.(float64)
		return ok, nil
	case "number":
		_, _, _, ok := numeric(v)
		return ok, nil
	case "string":
		_, ok := v.(string)
		return ok, nil
	case "mapping":
		_, ok := v.(*Dict)
		return ok, nil
	case "sequence":
		switch v.(type) {
		case string, *List, *Dict:
			return true, nil
		}
		return false, nil
	case "iterable":
		switch v.(type) {
		case string, *List, *Dict, Undefined:
			return true, nil
		}
		return false, nil
	case "callable":
		switch x := v.(type) {
		case *Func:
			return true, nil
		case *Dict:
			_, ok := x.Get("__call__")
			return ok, nil
		}
		return false, nil
	case "odd", "even":
		i, _, isFloat, ok := numeric(v)
		if !ok || isFloat {
			return false, fmt.Errorf("test '%s' needs an integer", name)
		}
		return (i%2 != 0) == (name == "odd"), nil
	case "divisibleby":
		a, err := arg()
		if err != nil {
			return false, err
		}
		r, err := binary("%", v, a)
		if err != nil {
			return false, err
		}
		return equal(r, int64(0)), nil
	case "lower":
		s, ok := v.(string)
		return ok && s == strings.ToLower(s), nil
	case "upper":
		s, ok := v.(string)
		return ok && s == strings.ToUpper(s), nil
	case "eq", "equalto", "==", "ne", "!=", "lt", "lessthan", "<", "le", "<=", "gt", "greaterthan", ">", "ge", ">=", "in":
		a, err := arg()
		if err != nil {
			return false, err
		}
		op := map[string]string{"eq": "==", "equalto": "==", "ne": "!=", "lt": "<", "lessthan": "<", "le": "<=",
			"gt": ">", "greaterthan": ">", "ge": ">=", "in": "in"}[name]
		if op == "" {
			op = name
		}
		return compareOp(op, v, a)
	case "sameas":
		a, err := arg()
		if err != nil {
			return false, err
		}
		switch x := v.(type) {
		case *List, *Dict, *Namespace, *Func:
			return v == a, nil
		case nil, bool:
			return v == a, nil
		default:
			_ = x
			return equal(v, a) && typeName(v) == typeName(a), nil
		}
	case "escaped":
		return false, nil
	case "filter":
		s, _ := v.(string)
		_, ok := filters[s]
		return ok, nil
	case "test":
		s, _ := v.(string)
		_, err := runTest(s, nil, []Value{nil})
		return err == nil || !strings.HasPrefix(err.Error(), "no test named"), nil
	}
	return false, fmt.Errorf("no test named '%s'", name)
}

// ---------------------------------------------------------------------------
// Filters

type filterFn func(v Value, args []Value, kw *Dict) (Value, error)

var filters map[string]filterFn

func init() {
	filters = map[string]filterFn{
		"abs":        fAbs,
		"attr":       fAttr,
		"batch":      fBatch,
		"capitalize": strFilter(pyCapitalize),
		"center":     fCenter,
		"count":      fLength,
		"d":          fDefault,
		"default":    fDefault,
		"dictsort":   fDictsort,
		"e":          fEscape,
		"escape":     fEscape,
		"first":      fFirst,
		"float":      fFloat,
		"forceescape": func(v Value, a []Value, kw *Dict) (Value, error) {
			return fEscape(v, a, kw)
		},
		"format": fFormat,
		"indent": fIndent,
		"int":    fInt,
		"items":  fItems,
		"join":   fJoin,
		"last":   fLast,
		"length": fLength,
		"list":   fList,
		"lower":  strFilter(strings.ToLower),
		"map":    fMap,
		"max":    func(v Value, a []Value, kw *Dict) (Value, error) { return fMinMax(v, a, kw, 1) },
		"min":    func(v Value, a []Value, kw *Dict) (Value, error) { return fMinMax(v, a, kw, -1) },
		"pprint": func(v Value, _ []Value, _ *Dict) (Value, error) { return repr(v), nil },
		"reject": func(v Value, a []Value, kw *Dict) (Value, error) { return fSelect(v, a, false, false) },
		"rejectattr": func(v Value, a []Value, kw *Dict) (Value, error) {
			return fSelect(v, a, false, true)
		},
		"replace": fReplace,
		"reverse": fReverse,
		"round":   fRound,
		"safe":    func(v Value, _ []Value, _ *Dict) (Value, error) { return v, nil },
		"select":  func(v Value, a []Value, kw *Dict) (Value, error) { return fSelect(v, a, true, false) },
		"selectattr": func(v Value, a []Value, kw *Dict) (Value, error) {
			return fSelect(v, a, true, true)
		},
		"sort":      fSort,
		"string":    func(v Value, _ []Value, _ *Dict) (Value, error) { return toStr(v), nil },
		"striptags": fStriptags,
		"sum":       fSum,
		"title":     strFilter(pyTitle),
		"tojson":    fToJSON,
		"trim":      fTrim,
		"truncate":  fTruncate,
		"unique":    fUnique,
		"upper":     strFilter(strings.ToUpper),
		"wordcount": func(v Value, _ []Value, _ *Dict) (Value, error) {
			return int64(len(strings.FieldsFunc(toStr(v), func(r rune) bool {
				return !(unicode.IsLetter(r) || unicode.IsDigit(r) || r == '_')
			}))), nil
		},
	}
}

// kwParam returns positional argument i, or keyword name, or def.
func kwParam(args []Value, kw *Dict, i int, name string, def Value) Value {
	if kw != nil {
		if v, ok := kw.Get(name); ok {
			return v
		}
	}
	if i < len(args) {
		return args[i]
	}
	return def
}

func strFilter(f func(string) string) filterFn {
	return func(v Value, _ []Value, _ *Dict) (Value, error) { return f(toStr(v)), nil }
}

func fAbs(v Value, _ []Value, _ *Dict) (Value, error) {
	i, f, isFloat, ok := numeric(v)
	if !ok {
		return nil, fmt.Errorf("bad operand type for abs(): '%s'", typeName(v))
	}
	if isFloat {
		return math.Abs(f), nil
	}
	if i < 0 {
		return -i, nil
	}
	return i, nil
}

func fAttr(v Value, args []Value, _ *Dict) (Value, error) {
	if len(args) != 1 {
		return nil, fmt.Errorf("attr filter needs one argument")
	}
	return getAttr(v, toStr(args[0]))
}

func fBatch(v Value, args []Value, kw *Dict) (Value, error) {
	items, err := iterate(v)
	if err != nil {
		return nil, err
	}
	n, err := argInt([]Value{kwParam(args, kw, 0, "linecount", nil)}, 0, 0)
	if err != nil || n <= 0 {
		return nil, fmt.Errorf("batch needs a positive line count")
	}
	fill := kwParam(args, kw, 1, "fill_with", nil)
	out := &List{}
	for i := 0; i < len(items); i += int(n) {
		end := min(i+int(n), len(items))
		row := &List{Items: append([]Value{}, items[i:end]...)}
		if fill != nil {
			for len(row.Items) < int(n) {
				row.Items = append(row.Items, fill)
			}
		}
		out.Items = append(out.Items, row)
	}
	return out, nil
}

func fCenter(v Value, args []Value, kw *Dict) (Value, error) {
	s := toStr(v)
	w, err := argInt([]Value{kwParam(args, kw, 0, "width", int64(80))}, 0, 80)
	if err != nil {
		return nil, err
	}
	n := int(w) - utf8.RuneCountInString(s)
	if n <= 0 {
		return s, nil
	}
	left := n / 2
	if n%2 == 1 && int(w)%2 == 1 {
		left++
	}
	return strings.Repeat(" ", left) + s + strings.Repeat(" ", n-left), nil
}

func fDefault(v Value, args []Value, kw *Dict) (Value, error) {
	def := kwParam(args, kw, 0, "default_value", "")
	boolean := truthy(kwParam(args, kw, 1, "boolean", false))
	if _, u := v.(Undefined); u || (boolean && !truthy(v)) {
		return def, nil
	}
	return v, nil
}

func sortKey(v Value, caseSensitive bool) Value {
	if s, ok := v.(string); ok && !caseSensitive {
		return strings.ToLower(s)
	}
	return v
}

func sortValues(items []Value, key func(Value) (Value, error), reverse bool) error {
	keys := make([]Value, len(items))
	for i, it := range items {
		k, err := key(it)
		if err != nil {
			return err
		}
		keys[i] = k
	}
	idx := make([]int, len(items))
	for i := range idx {
		idx[i] = i
	}
	var cmpErr error
	sort.SliceStable(idx, func(a, b int) bool {
		c, err := compare(keys[idx[a]], keys[idx[b]])
		if err != nil && cmpErr == nil {
			cmpErr = err
		}
		if reverse {
			return c > 0
		}
		return c < 0
	})
	if cmpErr != nil {
		return cmpErr
	}
	sorted := make([]Value, len(items))
	for i, j := range idx {
		sorted[i] = items[j]
	}
	copy(items, sorted)
	return nil
}

func fDictsort(v Value, args []Value, kw *Dict) (Value, error) {
	d, ok := v.(*Dict)
	if !ok {
		return nil, fmt.Errorf("dictsort requires a mapping, got %s", typeName(v))
	}
	cs := truthy(kwParam(args, kw, 0, "case_sensitive", false))
	by := toStr(kwParam(args, kw, 1, "by", "key"))
	rev := truthy(kwParam(args, kw, 2, "reverse", false))
	pos := 0
	switch by {
	case "key":
	case "value":
		pos = 1
	default:
		return nil, fmt.Errorf("you can only sort by either \"key\" or \"value\"")
	}
	items := dictItems(d).Items
	err := sortValues(items, func(it Value) (Value, error) {
		return sortKey(it.(*List).Items[pos], cs), nil
	}, rev)
	return &List{Items: items}, err
}

func fEscape(v Value, _ []Value, _ *Dict) (Value, error) {
	s := toStr(v)
	s = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&#34;", "'", "&#39;").Replace(s)
	return s, nil
}

func fFirst(v Value, _ []Value, _ *Dict) (Value, error) {
	items, err := iterate(v)
	if err != nil {
		return nil, err
	}
	if len(items) == 0 {
		return Undefined{Hint: "first item of empty sequence"}, nil
	}
	return items[0], nil
}

func fLast(v Value, _ []Value, _ *Dict) (Value, error) {
	items, err := iterate(v)
	if err != nil {
		return nil, err
	}
	if len(items) == 0 {
		return Undefined{Hint: "last item of empty sequence"}, nil
	}
	return items[len(items)-1], nil
}

func parseFloat(v Value) (float64, bool) {
	switch x := v.(type) {
	case string:
		f, err := strconv.ParseFloat(strings.TrimSpace(strings.ReplaceAll(x, "_", "")), 64)
		return f, err == nil
	}
	_, f, _, ok := numeric(v)
	return f, ok
}

func fFloat(v Value, args []Value, kw *Dict) (Value, error) {
	if f, ok := parseFloat(v); ok {
		return f, nil
	}
	return kwParam(args, kw, 0, "default", 0.0), nil
}

func fInt(v Value, args []Value, kw *Dict) (Value, error) {
	def := kwParam(args, kw, 0, "default", int64(0))
	base, err := argInt([]Value{kwParam(args, kw, 1, "base", int64(10))}, 0, 10)
	if err != nil {
		return nil, err
	}
	switch x := v.(type) {
	case string:
		s := strings.ReplaceAll(strings.TrimSpace(x), "_", "")
		if p := map[int64]string{2: "0b", 8: "0o", 16: "0x"}[base]; p != "" {
			t := strings.TrimLeft(s, "+-")
			if len(t) > 2 && strings.EqualFold(t[:2], p) {
				s = s[:len(s)-len(t)] + t[2:]
			}
		}
		if i, err := strconv.ParseInt(s, int(base), 64); err == nil {
			return i, nil
		}
		if base == 10 {
			if f, err := strconv.ParseFloat(s, 64); err == nil && !math.IsInf(f, 0) && !math.IsNaN(f) {
				return int64(f), nil
			}
		}
		return def, nil
	}
	i, f, isFloat, ok := numeric(v)
	if !ok {
		return def, nil
	}
	if isFloat {
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return def, nil
		}
		return int64(f), nil
	}
	return i, nil
}

func fFormat(v Value, args []Value, kw *Dict) (Value, error) {
	if kw.Len() > 0 && len(args) > 0 {
		return nil, fmt.Errorf("can't handle positional and keyword arguments at the same time")
	}
	if len(args) == 1 {
		if _, isTuple := args[0].(*List); !isTuple {
			return printfFormat(toStr(v), args[0])
		}
	}
	return printfFormat(toStr(v), &List{Items: args, Tuple: true})
}

func fIndent(v Value, args []Value, kw *Dict) (Value, error) {
	s := toStr(v)
	width := kwParam(args, kw, 0, "width", int64(4))
	first := truthy(kwParam(args, kw, 1, "first", false))
	blank := truthy(kwParam(args, kw, 2, "blank", false))
	var pad string
	if ws, ok := width.(string); ok {
		pad = ws
	} else {
		n, err := argInt([]Value{width}, 0, 4)
		if err != nil {
			return nil, err
		}
		pad = strings.Repeat(" ", int(max(n, 0)))
	}
	nl := "\n"
	s += nl
	lines := strings.Split(s, "\n")
	lines = lines[:len(lines)-1]
	var b strings.Builder
	for i, line := range lines {
		if i > 0 {
			b.WriteString(nl)
			if blank || line != "" {
				b.WriteString(pad)
			}
		} else if first {
			b.WriteString(pad)
		}
		b.WriteString(line)
	}
	return b.String(), nil
}

func fItems(v Value, _ []Value, _ *Dict) (Value, error) {
	switch x := v.(type) {
	case Undefined:
		return &List{}, nil
	case *Dict:
		return dictItems(x), nil
	}
	return nil, fmt.Errorf("can only get item pairs from a mapping")
}

func attrGetter(path string, def Value) func(Value) (Value, error) {
	parts := strings.Split(path, ".")
	return func(v Value) (Value, error) {
		for _, p := range parts {
			var key Value = p
			if n, err := strconv.Atoi(p); err == nil {
				key = int64(n)
			}
			var err error
			if v, err = getItem(v, key); err != nil {
				return nil, err
			}
			if _, u := v.(Undefined); u && def != nil {
				return def, nil
			}
		}
		return v, nil
	}
}

func fJoin(v Value, args []Value, kw *Dict) (Value, error) {
	items, err := iterate(v)
	if err != nil {
		return nil, err
	}
	sep := toStr(kwParam(args, kw, 0, "d", ""))
	attr := kwParam(args, kw, 1, "attribute", nil)
	parts := make([]string, len(items))
	for i, it := range items {
		if attr != nil {
			if it, err = attrGetter(toStr(attr), nil)(it); err != nil {
				return nil, err
			}
		}
		parts[i] = toStr(it)
	}
	return strings.Join(parts, sep), nil
}

func fLength(v Value, _ []Value, _ *Dict) (Value, error) {
	n, err := length(v)
	return int64(n), err
}

func fList(v Value, _ []Value, _ *Dict) (Value, error) {
	items, err := iterate(v)
	if err != nil {
		return nil, err
	}
	return &List{Items: append([]Value{}, items...)}, nil
}

func fMap(v Value, args []Value, kw *Dict) (Value, error) {
	items, err := iterate(v)
	if err != nil {
		return nil, err
	}
	out := &List{Items: make([]Value, 0, len(items))}
	if a, ok := kw.Get("attribute"); ok {
		def, _ := kw.Get("default")
		get := attrGetter(toStr(a), def)
		for _, it := range items {
			x, err := get(it)
			if err != nil {
				return nil, err
			}
			out.Items = append(out.Items, x)
		}
		return out, nil
	}
	if len(args) == 0 {
		return nil, fmt.Errorf("map requires a filter argument")
	}
	name := toStr(args[0])
	f, ok := filters[name]
	if !ok {
		return nil, fmt.Errorf("no filter named '%s'", name)
	}
	for _, it := range items {
		x, err := f(it, args[1:], kw)
		if err != nil {
			return nil, err
		}
		out.Items = append(out.Items, x)
	}
	return out, nil
}

func fMinMax(v Value, args []Value, kw *Dict, dir int) (Value, error) {
	items, err := iterate(v)
	if err != nil {
		return nil, err
	}
	if len(items) == 0 {
		return Undefined{Hint: "no items"}, nil
	}
	cs := truthy(kwParam(args, kw, 0, "case_sensitive", false))
	attr := kwParam(args, kw, 1, "attribute", nil)
	key := func(x Value) (Value, error) {
		if attr != nil {
			var err error
			if x, err = attrGetter(toStr(attr), nil)(x); err != nil {
				return nil, err
			}
		}
		return sortKey(x, cs), nil
	}
	best := items[0]
	bk, err := key(best)
	if err != nil {
		return nil, err
	}
	for _, it := range items[1:] {
		k, err := key(it)
		if err != nil {
			return nil, err
		}
		c, err := compare(k, bk)
		if err != nil {
			return nil, err
		}
		if c*dir > 0 {
			best, bk = it, k
		}
	}
	return best, nil
}

func fSelect(v Value, args []Value, want, byAttr bool) (Value, error) {
	items, err := iterate(v)
	if err != nil {
		return nil, err
	}
	var get func(Value) (Value, error)
	if byAttr {
		if len(args) == 0 {
			return nil, fmt.Errorf("missing parameter for attribute name")
		}
		get = attrGetter(toStr(args[0]), nil)
		args = args[1:]
	}
	test := func(x Value) (bool, error) { return truthy(x), nil }
	if len(args) > 0 {
		name := toStr(args[0])
		targs := args[1:]
		test = func(x Value) (bool, error) { return runTest(name, x, targs) }
	}
	out := &List{}
	for _, it := range items {
		x := it
		if get != nil {
			if x, err = get(it); err != nil {
				return nil, err
			}
		}
		ok, err := test(x)
		if err != nil {
			return nil, err
		}
		if ok == want {
			out.Items = append(out.Items, it)
		}
	}
	return out, nil
}

func fReplace(v Value, args []Value, kw *Dict) (Value, error) {
	if len(args) < 2 {
		return nil, fmt.Errorf("replace needs two arguments")
	}
	n, err := argInt([]Value{kwParam(args, kw, 2, "count", nil)}, 0, -1)
	if err != nil {
		return nil, err
	}
	return strings.Replace(toStr(v), toStr(args[0]), toStr(args[1]), int(n)), nil
}

func fReverse(v Value, _ []Value, _ *Dict) (Value, error) {
	if s, ok := v.(string); ok {
		r := []rune(s)
		for i, j := 0, len(r)-1; i < j; i, j = i+1, j-1 {
			r[i], r[j] = r[j], r[i]
		}
		return string(r), nil
	}
	items, err := iterate(v)
	if err != nil {
		return nil, err
	}
	out := &List{Items: make([]Value, len(items))}
	for i, it := range items {
		out.Items[len(items)-1-i] = it
	}
	return out, nil
}

func fRound(v Value, args []Value, kw *Dict) (Value, error) {
	prec, err := argInt([]Value{kwParam(args, kw, 0, "precision", int64(0))}, 0, 0)
	if err != nil {
		return nil, err
	}
	m := toStr(kwParam(args, kw, 1, "method", "common"))
	_, f, _, ok := numeric(v)
	if !ok {
		return nil, fmt.Errorf("round needs a number")
	}
	p := math.Pow(10, float64(prec))
	switch m {
	case "common":
		r, err := strconv.ParseFloat(strconv.FormatFloat(f, 'f', int(max(prec, 0)), 64), 64)
		if err != nil || prec < 0 {
			return math.RoundToEven(f*p) / p, nil
		}
		return r, nil
	case "ceil":
		return math.Ceil(f*p) / p, nil
	case "floor":
		return math.Floor(f*p) / p, nil
	}
	return nil, fmt.Errorf("method must be 'common', 'ceil' or 'floor'")
}

func fSort(v Value, args []Value, kw *Dict) (Value, error) {
	items, err := iterate(v)
	if err != nil {
		return nil, err
	}
	rev := truthy(kwParam(args, kw, 0, "reverse", false))
	cs := truthy(kwParam(args, kw, 1, "case_sensitive", false))
	attr := kwParam(args, kw, 2, "attribute", nil)
	out := append([]Value{}, items...)
	err = sortValues(out, func(x Value) (Value, error) {
		if attr != nil {
			var err error
			if x, err = attrGetter(toStr(attr), nil)(x); err != nil {
				return nil, err
			}
		}
		return sortKey(x, cs), nil
	}, rev)
	return &List{Items: out}, err
}

func fStriptags(v Value, _ []Value, _ *Dict) (Value, error) {
	s := toStr(v)
	var b strings.Builder
	in := false
	for _, r := range s {
		switch {
		case r == '<':
			in = true
		case r == '>' && in:
			in = false
		case !in:
			b.WriteRune(r)
		}
	}
	return strings.Join(strings.Fields(html.UnescapeString(b.String())), " "), nil
}

func fSum(v Value, args []Value, kw *Dict) (Value, error) {
	items, err := iterate(v)
	if err != nil {
		return nil, err
	}
	attr := kwParam(args, kw, 0, "attribute", nil)
	total := kwParam(args, kw, 1, "start", int64(0))
	for _, it := range items {
		if attr != nil {
			if it, err = attrGetter(toStr(attr), nil)(it); err != nil {
				return nil, err
			}
		}
		if total, err = binary("+", total, it); err != nil {
			return nil, err
		}
	}
	return total, nil
}

func fToJSON(v Value, args []Value, kw *Dict) (Value, error) {
	o := jsonOpts{itemSep: ", ", keySep: ": "}
	o.ensureASCII = truthy(kwParam(args, kw, 0, "ensure_ascii", false))
	if ind := kwParam(args, kw, 1, "indent", nil); ind != nil {
		switch x := ind.(type) {
		case string:
			o.indent = &x
		default:
			n, err := argInt([]Value{x}, 0, 0)
			if err != nil {
				return nil, err
			}
			s := strings.Repeat(" ", int(max(n, 0)))
			o.indent = &s
		}
		o.itemSep = ","
	}
	if sep := kwParam(args, kw, 2, "separators", nil); sep != nil {
		l, ok := sep.(*List)
		if !ok || len(l.Items) != 2 {
			return nil, fmt.Errorf("separators must be a pair of strings")
		}
		o.itemSep, o.keySep = toStr(l.Items[0]), toStr(l.Items[1])
	}
	o.sortKeys = truthy(kwParam(args, kw, 3, "sort_keys", false))
	return toJSON(v, o)
}

func fTrim(v Value, args []Value, kw *Dict) (Value, error) {
	chars := kwParam(args, kw, 0, "chars", nil)
	if chars == nil {
		return pyStrip(toStr(v), "", false, true, true), nil
	}
	return pyStrip(toStr(v), toStr(chars), true, true, true), nil
}

func fTruncate(v Value, args []Value, kw *Dict) (Value, error) {
	s := toStr(v)
	n, err := argInt([]Value{kwParam(args, kw, 0, "length", int64(255))}, 0, 255)
	if err != nil {
		return nil, err
	}
	killwords := truthy(kwParam(args, kw, 1, "killwords", false))
	end := toStr(kwParam(args, kw, 2, "end", "..."))
	leeway, err := argInt([]Value{kwParam(args, kw, 3, "leeway", int64(5))}, 0, 5)
	if err != nil {
		return nil, err
	}
	r := []rune(s)
	if int64(len(r)) <= n+leeway {
		return s, nil
	}
	cut := int(n) - utf8.RuneCountInString(end)
	if cut < 0 {
		cut = 0
	}
	if killwords {
		return string(r[:cut]) + end, nil
	}
	head := string(r[:cut])
	if i := strings.LastIndex(head, " "); i >= 0 {
		head = head[:i]
	}
	return head + end, nil
}

func fUnique(v Value, args []Value, kw *Dict) (Value, error) {
	items, err := iterate(v)
	if err != nil {
		return nil, err
	}
	cs := truthy(kwParam(args, kw, 0, "case_sensitive", false))
	attr := kwParam(args, kw, 1, "attribute", nil)
	var seen []Value
	out := &List{}
	for _, it := range items {
		k := it
		if attr != nil {
			if k, err = attrGetter(toStr(attr), nil)(it); err != nil {
				return nil, err
			}
		}
		k = sortKey(k, cs)
		dup := false
		for _, s := range seen {
			if equal(s, k) {
				dup = true
				break
			}
		}
		if !dup {
			seen = append(seen, k)
			out.Items = append(out.Items, it)
		}
	}
	return out, nil
}
