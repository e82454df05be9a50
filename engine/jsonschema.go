package engine

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// Schema is a compiled JSON Schema (the subset the engine enforces; see
// CompileSchema) constraining an answer, as response_format json_schema asks.
// It is immutable and may be shared by any number of requests.
type Schema struct {
	root *snode
}

// Value types a schema node admits (tNum admits integers too).
const (
	tNull uint8 = 1 << iota
	tBool
	tInt
	tNum
	tStr
	tArr
	tObj
	tAny = tNull | tBool | tInt | tNum | tStr | tArr | tObj
)

// snode is one compiled schema.
type snode struct {
	types uint8    // the types the keywords allow
	ok    uint8    // the allowed types that admit some value (after compile)
	sat   bool     // the node admits some value
	union []*snode // anyOf/oneOf branches; the node is only this union
	lits  []string // enum/const values as canonical JSON, sorted; nil: no enum

	// objects
	keys     []string // property names as JSON string contents, sorted
	props    []*snode // schemas of keys
	required uint64   // bits of keys that must appear
	usable   uint64   // bits of keys whose schema admits a value
	extra    *snode   // schema of other properties; nil: none allowed

	// arrays
	items              *snode
	minItems, maxItems int // maxItems < 0: no limit

	// strings (characters, i.e. code points)
	minLen, maxLen int // maxLen < 0: no limit
}

// maxSchemaProps is the most properties one object schema may declare.
const maxSchemaProps = 64

// SchemaError is a schema the engine cannot enforce.
type SchemaError struct {
	Path string // JSON pointer of the offending schema, "#" for the root
	Msg  string
}

func (e *SchemaError) Error() string { return e.Path + ": " + e.Msg }

// descriptive keywords carry no constraint.
var descriptive = map[string]bool{
	"title": true, "description": true, "default": true, "examples": true, "$schema": true,
	"$id": true, "$comment": true, "deprecated": true, "readOnly": true, "writeOnly": true,
	"$defs": true, "definitions": true, "name": true, "strict": true,
}

type schemaCompiler struct {
	doc    map[string]any
	strict bool
	refs   map[string]*snode
	nodes  []*snode
	anyN   *snode
}

// CompileSchema compiles a JSON Schema for constrained decoding. Supported:
// type (one or a list of object, array, string, number, integer, boolean,
// null), properties, required, additionalProperties (false, true or a
// schema), items, minItems, maxItems, minLength, maxLength, enum, const,
// anyOf and oneOf (as a union: oneOf branches are not checked to exclude one
// another), allOf of one schema, and $ref to "#", "#/$defs/…" or
// "#/definitions/…" (recursion included). Annotations (title, description,
// default, …) are ignored. Other keywords are an error when strict, and not
// enforced otherwise. The top-level value must be an object, an array or a
// string, so that its end is plain without reading past it.
func CompileSchema(schema []byte, strict bool) (*Schema, error) {
	d := json.NewDecoder(bytes.NewReader(schema))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return nil, &SchemaError{"#", "not JSON: " + err.Error()}
	}
	c := &schemaCompiler{strict: strict, refs: map[string]*snode{}}
	if m, ok := v.(map[string]any); ok {
		c.doc = m
	}
	c.anyN = &snode{types: tAny, maxItems: -1, maxLen: -1}
	c.anyN.extra, c.anyN.items = c.anyN, c.anyN
	c.nodes = append(c.nodes, c.anyN)
	root, err := c.compile(v, "#")
	if err != nil {
		return nil, err
	}
	c.solve()
	if !root.sat {
		return nil, &SchemaError{"#", "the schema admits no value"}
	}
	if !selfDelimiting(root, 0) {
		return nil, &SchemaError{"#", "the top-level schema must be an object, an array or a string (not a number, boolean or null)"}
	}
	return &Schema{root: root}, nil
}

func selfDelimiting(n *snode, depth int) bool {
	if depth > 16 {
		return false
	}
	if n.union != nil {
		for _, b := range n.union {
			if b.sat && !selfDelimiting(b, depth+1) {
				return false
			}
		}
		return true
	}
	if n.lits != nil {
		for _, l := range n.lits {
			if l[0] != '{' && l[0] != '[' && l[0] != '"' {
				return false
			}
		}
		return true
	}
	return n.ok&^(tStr|tArr|tObj) == 0
}

func (c *schemaCompiler) node() *snode {
	n := &snode{types: tAny, maxItems: -1, maxLen: -1}
	c.nodes = append(c.nodes, n)
	return n
}

func (c *schemaCompiler) unsupported(path, kw string) error {
	if c.strict {
		return &SchemaError{path, fmt.Sprintf("keyword %q is not supported (strict)", kw)}
	}
	return nil
}

func (c *schemaCompiler) compile(v any, path string) (*snode, error) {
	switch v := v.(type) {
	case bool:
		if v {
			return c.anyN, nil
		}
		n := c.node()
		n.types = 0
		return n, nil
	case map[string]any:
		return c.compileMap(v, path)
	}
	return nil, &SchemaError{path, "a schema must be an object or a boolean"}
}

func (c *schemaCompiler) compileMap(m map[string]any, path string) (*snode, error) {
	if ref, ok := m["$ref"]; ok {
		for k := range m {
			if k != "$ref" && !descriptive[k] {
				if err := c.unsupported(path, k+"\" beside \"$ref"); err != nil {
					return nil, err
				}
			}
		}
		s, _ := ref.(string)
		return c.ref(s, path)
	}
	for _, kw := range []string{"anyOf", "oneOf", "allOf"} {
		bs, ok := m[kw]
		if !ok {
			continue
		}
		list, _ := bs.([]any)
		if len(list) == 0 {
			return nil, &SchemaError{path, kw + " must be a non-empty array"}
		}
		for k := range m {
			if k != kw && !descriptive[k] {
				if err := c.unsupported(path, k+"\" beside \""+kw); err != nil {
					return nil, err
				}
			}
		}
		if kw == "allOf" {
			if len(list) != 1 {
				if err := c.unsupported(path, "allOf"); err != nil {
					return nil, err
				}
			}
			return c.compile(list[0], path+"/allOf/0")
		}
		n := c.node()
		for i, b := range list {
			bn, err := c.compile(b, fmt.Sprintf("%s/%s/%d", path, kw, i))
			if err != nil {
				return nil, err
			}
			n.union = append(n.union, bn)
		}
		return n, nil
	}
	n := c.node()
	for _, k := range slices.Sorted(func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}) {
		v := m[k]
		var err error
		switch k {
		case "type":
			err = n.setType(v, path)
		case "enum":
			list, ok := v.([]any)
			if !ok {
				return nil, &SchemaError{path, "enum must be an array"}
			}
			err = n.setEnum(list, path)
		case "const":
			err = n.setEnum([]any{v}, path)
		case "properties":
			props, ok := v.(map[string]any)
			if !ok {
				return nil, &SchemaError{path, "properties must be an object"}
			}
			if len(props) > maxSchemaProps {
				return nil, &SchemaError{path, fmt.Sprintf("at most %d properties per object are supported", maxSchemaProps)}
			}
			names := make([]string, 0, len(props))
			for name := range props {
				names = append(names, name)
			}
			enc := make(map[string]string, len(names))
			for _, name := range names {
				enc[name] = jsonStringContents(name)
			}
			sort.Slice(names, func(a, b int) bool { return enc[names[a]] < enc[names[b]] })
			for _, name := range names {
				pn, err := c.compile(props[name], path+"/properties/"+name)
				if err != nil {
					return nil, err
				}
				n.keys = append(n.keys, enc[name])
				n.props = append(n.props, pn)
			}
		case "required", "additionalProperties":
			// after properties, below
		case "items":
			if _, isList := v.([]any); isList {
				return nil, &SchemaError{path, "items as an array (tuple) is not supported"}
			}
			n.items, err = c.compile(v, path+"/items")
		case "minItems", "maxItems", "minLength", "maxLength":
			x, ok := nonNegInt(v)
			if !ok {
				return nil, &SchemaError{path, k + " must be a non-negative integer"}
			}
			switch k {
			case "minItems":
				n.minItems = x
			case "maxItems":
				n.maxItems = x
			case "minLength":
				n.minLen = x
			case "maxLength":
				n.maxLen = x
			}
		default:
			if !descriptive[k] {
				err = c.unsupported(path, k)
			}
		}
		if err != nil {
			return nil, err
		}
	}
	if n.items == nil {
		n.items = c.anyN
	}
	n.extra = c.anyN
	if ap, ok := m["additionalProperties"]; ok {
		e, err := c.compile(ap, path+"/additionalProperties")
		if err != nil {
			return nil, err
		}
		n.extra = e
		if b, ok := ap.(bool); ok && !b {
			n.extra = nil
		}
	}
	if req, ok := m["required"]; ok {
		list, ok := req.([]any)
		if !ok {
			return nil, &SchemaError{path, "required must be an array of strings"}
		}
		for _, r := range list {
			name, ok := r.(string)
			if !ok {
				return nil, &SchemaError{path, "required must be an array of strings"}
			}
			i := slices.Index(n.keys, jsonStringContents(name))
			if i < 0 {
				if n.extra == nil {
					return nil, &SchemaError{path, fmt.Sprintf("required property %q is not among properties, and additionalProperties is false", name)}
				}
				// Declare it with the additional properties' schema.
				if len(n.keys) == maxSchemaProps {
					return nil, &SchemaError{path, fmt.Sprintf("at most %d properties per object are supported", maxSchemaProps)}
				}
				enc := jsonStringContents(name)
				i, _ = slices.BinarySearch(n.keys, enc)
				n.keys = slices.Insert(n.keys, i, enc)
				n.props = slices.Insert(n.props, i, n.extra)
				n.required = insertBit(n.required, i)
			}
			n.required |= 1 << i
		}
	}
	if n.lits != nil {
		n.lits = filterLits(n.lits, n.types)
	}
	return n, nil
}

// insertBit shifts the bits at and above i up by one, leaving bit i clear.
func insertBit(m uint64, i int) uint64 {
	low := m & (1<<i - 1)
	return low | (m&^low)<<1
}

func nonNegInt(v any) (int, bool) {
	n, ok := v.(json.Number)
	if !ok {
		return 0, false
	}
	x, err := strconv.ParseInt(string(n), 10, 32)
	if err != nil {
		f, ferr := n.Float64()
		if ferr != nil || f != math.Trunc(f) || f < 0 || f > math.MaxInt32 {
			return 0, false
		}
		x = int64(f)
	}
	return int(x), x >= 0
}

func (n *snode) setType(v any, path string) error {
	var names []string
	switch v := v.(type) {
	case string:
		names = []string{v}
	case []any:
		for _, x := range v {
			s, ok := x.(string)
			if !ok {
				return &SchemaError{path, "type must be a string or an array of strings"}
			}
			names = append(names, s)
		}
	default:
		return &SchemaError{path, "type must be a string or an array of strings"}
	}
	n.types = 0
	for _, s := range names {
		switch s {
		case "null":
			n.types |= tNull
		case "boolean":
			n.types |= tBool
		case "integer":
			n.types |= tInt
		case "number":
			n.types |= tNum | tInt
		case "string":
			n.types |= tStr
		case "array":
			n.types |= tArr
		case "object":
			n.types |= tObj
		default:
			return &SchemaError{path, fmt.Sprintf("unknown type %q", s)}
		}
	}
	return nil
}

func (n *snode) setEnum(list []any, path string) error {
	var lits []string
	if n.lits != nil { // both enum and const: the values in both
		for _, v := range list {
			l, err := canonicalJSON(v)
			if err != nil {
				return &SchemaError{path, err.Error()}
			}
			if slices.Contains(n.lits, l) {
				lits = append(lits, l)
			}
		}
	} else {
		for _, v := range list {
			l, err := canonicalJSON(v)
			if err != nil {
				return &SchemaError{path, err.Error()}
			}
			lits = append(lits, l)
		}
	}
	slices.Sort(lits)
	n.lits = slices.Compact(lits)
	if n.lits == nil {
		n.lits = []string{}
	}
	return nil
}

// filterLits keeps the enum values of the allowed types.
func filterLits(lits []string, types uint8) []string {
	out := []string{}
	for _, l := range lits {
		var t uint8
		switch c := l[0]; {
		case c == 'n':
			t = tNull
		case c == 't' || c == 'f':
			t = tBool
		case c == '"':
			t = tStr
		case c == '[':
			t = tArr
		case c == '{':
			t = tObj
		case strings.ContainsAny(l, ".eE"):
			t = tNum
			if f, err := strconv.ParseFloat(l, 64); err == nil && f == math.Trunc(f) {
				t = tInt
			}
		default:
			t = tInt
		}
		if types&t != 0 {
			out = append(out, l)
		}
	}
	return out
}

// canonicalJSON writes v as the exact text the model must produce for it.
func canonicalJSON(v any) (string, error) {
	var b bytes.Buffer
	e := json.NewEncoder(&b)
	e.SetEscapeHTML(false)
	if err := e.Encode(v); err != nil {
		return "", err
	}
	return strings.TrimSuffix(b.String(), "\n"), nil
}

// jsonStringContents is s as a JSON string, without its quotes.
func jsonStringContents(s string) string {
	l, _ := canonicalJSON(s)
	return l[1 : len(l)-1]
}

func (c *schemaCompiler) ref(ref, path string) (*snode, error) {
	if n, ok := c.refs[ref]; ok {
		return n, nil
	}
	var target any
	switch {
	case ref == "#":
		target = c.doc
	case strings.HasPrefix(ref, "#/$defs/"), strings.HasPrefix(ref, "#/definitions/"):
		kw, name, _ := strings.Cut(ref[2:], "/")
		name = strings.ReplaceAll(strings.ReplaceAll(name, "~1", "/"), "~0", "~")
		defs, _ := c.doc[kw].(map[string]any)
		t, ok := defs[name]
		if !ok {
			return nil, &SchemaError{path, fmt.Sprintf("$ref %q names no definition", ref)}
		}
		target = t
	default:
		return nil, &SchemaError{path, fmt.Sprintf("$ref %q: only \"#\", \"#/$defs/…\" and \"#/definitions/…\" are supported", ref)}
	}
	if target == nil {
		return nil, &SchemaError{path, fmt.Sprintf("$ref %q names no schema", ref)}
	}
	n := c.node()
	n.types = 0 // a cycle of bare references admits nothing
	c.refs[ref] = n
	t, err := c.compile(target, ref)
	if err != nil {
		return nil, err
	}
	*n = *t
	return n, nil
}

// solve finds which nodes admit a value (least fixpoint: a recursive schema
// that must recurse forever admits none).
func (c *schemaCompiler) solve() {
	for changed := true; changed; {
		changed = false
		for _, n := range c.nodes {
			ok, sat := n.admits()
			if ok != n.ok || sat != n.sat {
				n.ok, n.sat, changed = ok, sat, true
			}
		}
	}
	for _, n := range c.nodes {
		for i, p := range n.props {
			if p.sat {
				n.usable |= 1 << i
			}
		}
	}
}

func (n *snode) admits() (ok uint8, sat bool) {
	if n.union != nil {
		for _, b := range n.union {
			sat = sat || b.sat
		}
		return 0, sat
	}
	if n.lits != nil {
		return 0, len(n.lits) > 0
	}
	ok = n.types & (tNull | tBool | tInt | tNum)
	if n.types&tStr != 0 && (n.maxLen < 0 || n.minLen <= n.maxLen) {
		ok |= tStr
	}
	if n.types&tArr != 0 && (n.maxItems < 0 || n.minItems <= n.maxItems) && (n.minItems == 0 || n.items.sat) {
		ok |= tArr
	}
	if n.types&tObj != 0 {
		good := true
		for i, p := range n.props {
			if n.required&(1<<i) != 0 && !p.sat {
				good = false
			}
		}
		if good {
			ok |= tObj
		}
	}
	return ok, ok != 0
}
