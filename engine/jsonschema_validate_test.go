package engine

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"strings"
	"unicode/utf8"
)

// validateJSON is a JSON Schema validator written apart from the
// constraint (on values parsed by encoding/json) for the keywords the
// constraint supports; the tests judge the constraint's output with it.
// (A validator module would add a dependency to go.mod for tests alone.)
func validateJSON(schema, doc []byte) error {
	var s any
	if err := json.Unmarshal(schema, &s); err != nil {
		return err
	}
	d := json.NewDecoder(bytes.NewReader(doc))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return fmt.Errorf("not JSON: %v", err)
	}
	if d.More() {
		return fmt.Errorf("text after the value")
	}
	root, _ := s.(map[string]any)
	return validateValue(s, v, root, "$")
}

func validateValue(s, v any, root map[string]any, at string) error {
	if b, ok := s.(bool); ok {
		if !b {
			return fmt.Errorf("%s: false schema", at)
		}
		return nil
	}
	m := s.(map[string]any)
	if ref, ok := m["$ref"].(string); ok {
		var t any = root
		if ref != "#" {
			parts := strings.Split(strings.TrimPrefix(ref, "#/"), "/")
			t = root[parts[0]].(map[string]any)[parts[1]]
		}
		return validateValue(t, v, root, at)
	}
	if bs, ok := m["anyOf"].([]any); ok {
		return validateAny(bs, v, root, at, false)
	}
	if bs, ok := m["oneOf"].([]any); ok {
		return validateAny(bs, v, root, at, true)
	}
	if bs, ok := m["allOf"].([]any); ok {
		for _, b := range bs {
			if err := validateValue(b, v, root, at); err != nil {
				return err
			}
		}
	}
	if t, ok := m["type"]; ok {
		var names []any
		if l, ok := t.([]any); ok {
			names = l
		} else {
			names = []any{t}
		}
		match := false
		for _, n := range names {
			match = match || hasType(v, n.(string))
		}
		if !match {
			return fmt.Errorf("%s: %v is not of type %v", at, v, t)
		}
	}
	if e, ok := m["enum"].([]any); ok {
		found := false
		for _, x := range e {
			found = found || jsonEqual(x, v)
		}
		if !found {
			return fmt.Errorf("%s: %v not in enum %v", at, v, e)
		}
	}
	if c, ok := m["const"]; ok && !jsonEqual(c, v) {
		return fmt.Errorf("%s: %v is not const %v", at, v, c)
	}
	switch v := v.(type) {
	case string:
		n := utf8.RuneCountInString(v)
		if x, ok := m["minLength"].(float64); ok && float64(n) < x {
			return fmt.Errorf("%s: %q shorter than %v", at, v, x)
		}
		if x, ok := m["maxLength"].(float64); ok && float64(n) > x {
			return fmt.Errorf("%s: %q longer than %v", at, v, x)
		}
	case []any:
		if x, ok := m["minItems"].(float64); ok && float64(len(v)) < x {
			return fmt.Errorf("%s: fewer than %v items", at, x)
		}
		if x, ok := m["maxItems"].(float64); ok && float64(len(v)) > x {
			return fmt.Errorf("%s: more than %v items", at, x)
		}
		if it, ok := m["items"]; ok {
			for i, e := range v {
				if err := validateValue(it, e, root, fmt.Sprintf("%s[%d]", at, i)); err != nil {
					return err
				}
			}
		}
	case map[string]any:
		props, _ := m["properties"].(map[string]any)
		if req, ok := m["required"].([]any); ok {
			for _, r := range req {
				if _, ok := v[r.(string)]; !ok {
					return fmt.Errorf("%s: required %q missing", at, r)
				}
			}
		}
		for k, x := range v {
			ps, declared := props[k]
			if !declared {
				ap, ok := m["additionalProperties"]
				if !ok {
					continue
				}
				ps = ap
			}
			if err := validateValue(ps, x, root, at+"."+k); err != nil {
				return err
			}
		}
	}
	return nil
}

func validateAny(bs []any, v any, root map[string]any, at string, one bool) error {
	n := 0
	var errs []string
	for _, b := range bs {
		if err := validateValue(b, v, root, at); err != nil {
			errs = append(errs, err.Error())
		} else {
			n++
		}
	}
	switch {
	case n == 0:
		return fmt.Errorf("%s: no branch matches: %s", at, strings.Join(errs, "; "))
	case one && n > 1:
		return fmt.Errorf("%s: %d oneOf branches match", at, n)
	}
	return nil
}

func hasType(v any, t string) bool {
	switch v := v.(type) {
	case nil:
		return t == "null"
	case bool:
		return t == "boolean"
	case string:
		return t == "string"
	case []any:
		return t == "array"
	case map[string]any:
		return t == "object"
	case json.Number:
		if t == "number" {
			return true
		}
		f, err := v.Float64()
		return t == "integer" && err == nil && f == math.Trunc(f)
	}
	return false
}

// jsonEqual compares a schema value (float64 numbers) with an instance value (json.Number).
func jsonEqual(a, b any) bool {
	norm := func(x any) any {
		bs, _ := json.Marshal(x)
		var y any
		_ = json.Unmarshal(bs, &y)
		return y
	}
	return reflect.DeepEqual(norm(a), norm(b))
}
