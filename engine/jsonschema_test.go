package engine

import (
	"math/rand/v2"
	"strings"
	"testing"
)

// run feeds text byte by byte (as one piece too) and reports whether every
// byte was accepted and whether the value is complete at the end.
func runSchema(t *testing.T, sc *Schema, text string) (ok, done bool) {
	t.Helper()
	s := newSchemaState(sc)
	whole := s.accepts([]byte(text))
	for i := 0; i < len(text); i++ {
		if !s.accepts([]byte{text[i]}) {
			if whole {
				t.Fatalf("%q: accepted whole but byte %d rejected", text, i)
			}
			return false, false
		}
		s.advance([]byte{text[i]})
	}
	if !whole {
		t.Fatalf("%q: every byte accepted but not the whole text", text)
	}
	return true, s.finished()
}

func mustCompile(t *testing.T, schema string, strict bool) *Schema {
	t.Helper()
	sc, err := CompileSchema([]byte(schema), strict)
	if err != nil {
		t.Fatalf("%s: %v", schema, err)
	}
	return sc
}

var schemaCases = []struct {
	name, schema string
	valid        []string // complete instances
	invalid      []string // rejected, or incomplete at the end
	refused      []string // valid, but not the text the constraint lets a model write
}{
	{"object-required", `{"type":"object","properties":{"a":{"type":"integer"},"b":{"type":"string"}},"required":["a"],"additionalProperties":false}`,
		[]string{`{"a":1}`, `{"b":"x","a":-2}`, `{"a": 0, "b": ""}`, "{\n  \"a\": 10\n}"},
		[]string{`{}`, `{"b":"x"}`, `{"a":1,"c":2}`, `{"a":1.5}`, `{"a":"1"}`, `{"a":1,}`, `[]`, `"x"`, `{"a":01}`, `{"a":1`},
		[]string{`{"a":1,"a":2}`, `{"a":1.0}`, `{"a":1e3}`, ` {"a":1}`, "{\"a\":\t1}", `{"a"  :1}`}},
	{"additional-schema", `{"type":"object","properties":{"a":{"type":"boolean"}},"additionalProperties":{"type":"null"}}`,
		[]string{`{}`, `{"a":true}`, `{"x":null,"a":false}`, `{"ab":null}`, `{"é":null}`},
		[]string{`{"x":1}`, `{"a":null}`, `{"x":nul}`},
		[]string{`{"a":true,"a":true}`, `{"a\u0062":null}`}},
	{"additional-any", `{"type":"object"}`,
		[]string{`{}`, `{"k":[1,{"z":"\u00e9"}],"m":-0.5e-3}`},
		[]string{`{"k":}`, `{"k":1 2}`}, nil},
	{"numbers", `{"type":"object","properties":{"n":{"type":"number"}},"required":["n"],"additionalProperties":false}`,
		[]string{`{"n":0}`, `{"n":-0}`, `{"n":-1.25}`, `{"n":1e10}`, `{"n":1E+2}`, `{"n":2.5e-3}`, `{"n":0.0}`, `{"n":-0.1E1}`, `{"n":7}`},
		[]string{`{"n":01}`, `{"n":-}`, `{"n":1.}`, `{"n":.5}`, `{"n":1e}`, `{"n":1e+}`, `{"n":+1}`, `{"n":--1}`, `{"n":1.2.3}`, `{"n":0x1}`, `{"n":-01}`, `{"n":Infinity}`}, nil},
	{"strings-escapes", `{"type":"object","properties":{"s":{"type":"string"}},"required":["s"],"additionalProperties":false}`,
		[]string{`{"s":""}`, `{"s":"a\"b\\c\/d\b\f\n\r\t"}`, `{"s":"\u00e9\u0041\uFFFF\uabcd"}`, `{"s":"héllo ☃ 😀"}`},
		[]string{`{"s":"\u00e"}`, `{"s":"\u00eg"}`, `{"s":"\u12"}`, `{"s":"\x"}`, `{"s":"` + "\x01" + `"}`, `{"s":"` + "\n" + `"}`, `{"s":'x'}`},
		[]string{`{"s":"\ud83d\ude00"}`, "{\"s\":\"\xff\"}", "{\"s\":\"\xc3\"}", "{\"s\":\"\xe0\x80\x80\"}", "{\"s\":\"\xed\xa0\x80\"}"}},
	{"string-length", `{"type":"object","properties":{"s":{"type":"string","minLength":2,"maxLength":3}},"required":["s"],"additionalProperties":false}`,
		[]string{`{"s":"ab"}`, `{"s":"abc"}`, `{"s":"é☃"}`, `{"s":"\n\u0041x"}`},
		[]string{`{"s":"a"}`, `{"s":"abcd"}`, `{"s":""}`, `{"s":"\n\n\n\n"}`, `{"s":"ééé😀"}`}, nil},
	{"enum-const", `{"type":"object","properties":{"c":{"enum":["red","green","re",1,10,-2.5,true,null]},"k":{"const":"x"}},"required":["c","k"],"additionalProperties":false}`,
		[]string{`{"c":"red","k":"x"}`, `{"c":"re","k":"x"}`, `{"c":1,"k":"x"}`, `{"k":"x","c":10}`, `{"c":-2.5,"k":"x"}`, `{"c":true,"k":"x"}`, `{"c":null,"k":"x"}`, `{"c":"green", "k":"x"}`},
		[]string{`{"c":"r","k":"x"}`, `{"c":"redd","k":"x"}`, `{"c":100,"k":"x"}`, `{"c":false,"k":"x"}`, `{"c":"red","k":"y"}`, `{"c":2,"k":"x"}`, `{"c":"red"}`},
		[]string{`{"c":1.0,"k":"x"}`, `{"c":"r\u0065d","k":"x"}`}},
	{"enum-typed", `{"type":"object","properties":{"e":{"type":"string","enum":["a",1,"b"]}},"required":["e"],"additionalProperties":false}`,
		[]string{`{"e":"a"}`, `{"e":"b"}`},
		[]string{`{"e":1}`, `{"e":"c"}`}, nil},
	{"type-list", `{"type":"object","properties":{"v":{"type":["string","null","integer"]}},"required":["v"],"additionalProperties":false}`,
		[]string{`{"v":"x"}`, `{"v":null}`, `{"v":-3}`},
		[]string{`{"v":true}`, `{"v":1.5}`, `{"v":[]}`, `{"v":{}}`}, nil},
	{"arrays", `{"type":"object","properties":{"l":{"type":"array","items":{"type":"boolean"},"minItems":1,"maxItems":2}},"required":["l"],"additionalProperties":false}`,
		[]string{`{"l":[true]}`, `{"l":[false, true]}`, `{"l":[ true ]}`},
		[]string{`{"l":[]}`, `{"l":[true,true,true]}`, `{"l":[1]}`, `{"l":[true,]}`, `{"l":true}`}, nil},
	{"nested", `{"type":"object","properties":{"p":{"type":"object","properties":{"q":{"type":"array","items":{"type":"object","properties":{"r":{"type":"integer"}},"required":["r"],"additionalProperties":false}}},"required":["q"],"additionalProperties":false}},"required":["p"],"additionalProperties":false}`,
		[]string{`{"p":{"q":[]}}`, `{"p":{"q":[{"r":1},{"r":2}]}}`},
		[]string{`{"p":{"q":[{}]}}`, `{"p":{}}`, `{"p":{"q":[{"r":1,"s":2}]}}`, `{"p":{"q":[{"r":1}]}`}, nil},
	{"anyOf-objects", `{"anyOf":[{"type":"object","properties":{"kind":{"const":"a"},"x":{"type":"integer"}},"required":["kind","x"],"additionalProperties":false},{"type":"object","properties":{"kind":{"const":"b"},"y":{"type":"string"}},"required":["kind","y"],"additionalProperties":false}]}`,
		[]string{`{"kind":"a","x":1}`, `{"kind":"b","y":"z"}`, `{"x":2,"kind":"a"}`},
		[]string{`{"kind":"a","y":"z"}`, `{"kind":"b","x":1}`, `{"kind":"a"}`, `{"kind":"c","x":1}`}, nil},
	{"oneOf-nullable", `{"type":"object","properties":{"o":{"oneOf":[{"type":"string","maxLength":1},{"type":"null"},{"type":"array","items":{"type":"integer"},"maxItems":1}]}},"required":["o"],"additionalProperties":false}`,
		[]string{`{"o":"a"}`, `{"o":null}`, `{"o":[]}`, `{"o":[3]}`},
		[]string{`{"o":"ab"}`, `{"o":1}`, `{"o":[1,2]}`}, nil},
	{"refs", `{"$defs":{"item":{"type":"object","properties":{"id":{"type":"integer"},"tags":{"type":"array","items":{"$ref":"#/$defs/tag"},"maxItems":2}},"required":["id","tags"],"additionalProperties":false},"tag":{"enum":["x","y"]}},"type":"object","properties":{"items":{"type":"array","items":{"$ref":"#/$defs/item"}}},"required":["items"],"additionalProperties":false}`,
		[]string{`{"items":[]}`, `{"items":[{"id":1,"tags":["x","y"]},{"tags":[],"id":2}]}`},
		[]string{`{"items":[{"id":1}]}`, `{"items":[{"id":1,"tags":["z"]}]}`, `{"items":[{"id":1,"tags":["x","x","x"]}]}`}, nil},
	{"recursive", `{"definitions":{"node":{"type":"object","properties":{"v":{"type":"integer"},"kids":{"type":"array","items":{"$ref":"#/definitions/node"}}},"required":["v"],"additionalProperties":false}},"$ref":"#/definitions/node"}`,
		[]string{`{"v":1}`, `{"v":1,"kids":[{"v":2,"kids":[{"v":3}]},{"v":4}]}`},
		[]string{`{"v":1,"kids":[{}]}`, `{"kids":[]}`}, nil},
	{"root-array", `{"type":"array","items":{"enum":["a","b"]},"maxItems":3}`,
		[]string{`[]`, `["a","b","a"]`},
		[]string{`["a","b","a","b"]`, `["c"]`}, nil},
	{"escaped-key", `{"type":"object","properties":{"a\"b":{"type":"null"},"ü":{"type":"null"}},"required":["a\"b"],"additionalProperties":false}`,
		[]string{`{"a\"b":null}`, `{"ü":null,"a\"b":null}`},
		[]string{`{"ab":null}`},
		[]string{`{"a\u0022b":null}`}},
}

func TestSchemaChecker(t *testing.T) {
	for _, tc := range schemaCases {
		t.Run(tc.name, func(t *testing.T) {
			sc := mustCompile(t, tc.schema, true)
			for _, v := range tc.valid {
				if err := validateJSON([]byte(tc.schema), []byte(v)); err != nil {
					t.Fatalf("test case %q is not valid: %v", v, err)
				}
				ok, done := runSchema(t, sc, v)
				if !ok || !done {
					t.Errorf("%q: accepted %v, complete %v; want a complete instance", v, ok, done)
				}
			}
			for _, v := range tc.invalid {
				if validateJSON([]byte(tc.schema), []byte(v)) == nil {
					t.Fatalf("test case %q is valid", v)
				}
				if ok, done := runSchema(t, sc, v); ok && done {
					t.Errorf("%q accepted as a complete instance", v)
				}
			}
			for _, v := range tc.refused {
				if err := validateJSON([]byte(tc.schema), []byte(v)); err != nil {
					t.Fatalf("test case %q is not valid: %v", v, err)
				}
				if ok, done := runSchema(t, sc, v); ok && done {
					t.Errorf("%q accepted: the constraint should hold the model to one spelling", v)
				}
			}
		})
	}
}

// TestSchemaNoDeadEnds walks each schema at random, one byte at a time
// among the bytes the checker accepts: some byte must always be accepted
// until the value is complete, and every complete value must validate.
func TestSchemaNoDeadEnds(t *testing.T) {
	alphabet := []byte("{}[]\",:  \n\t-+.0123456789eEuabcdfnlrstxyzkindvgqpotemsABCDF\\/\x01\xc3\xa9\xe2\x98\x83")
	for _, tc := range schemaCases {
		t.Run(tc.name, func(t *testing.T) {
			sc := mustCompile(t, tc.schema, true)
			finished := 0
			for seed := range 300 {
				rng := rand.New(rand.NewPCG(uint64(seed), 7))
				s := newSchemaState(sc)
				var text []byte
				for step := 0; step < 400 && !s.finished(); step++ {
					var ok []byte
					for c := 0; c < 256; c++ {
						if s.accepts([]byte{byte(c)}) {
							ok = append(ok, byte(c))
						}
					}
					if len(ok) == 0 {
						t.Fatalf("seed %d: dead end after %q", seed, text)
					}
					// Prefer the alphabet, and closing bytes as the text grows.
					var c byte
					var pref []byte
					for _, b := range ok {
						if strings.IndexByte(string(alphabet), b) >= 0 {
							pref = append(pref, b)
						}
					}
					if len(pref) > 0 {
						ok = pref
					}
					c = ok[rng.IntN(len(ok))]
					if len(text) > 40 && rng.IntN(2) == 0 {
						for _, b := range ok {
							if b == '"' || b == '}' || b == ']' {
								c = b
							}
						}
					}
					s.advance([]byte{c})
					text = append(text, c)
				}
				if s.finished() {
					finished++
					if err := validateJSON([]byte(tc.schema), text); err != nil {
						t.Fatalf("seed %d: %q is complete but invalid: %v", seed, text, err)
					}
				}
			}
			if finished < 30 {
				t.Errorf("only %d of 300 walks finished", finished)
			}
		})
	}
}

func TestCompileSchemaErrors(t *testing.T) {
	for _, tc := range []struct{ schema, want string }{
		{`{"type":"object","properties":{"s":{"type":"string","pattern":"^a"}}}`, `"pattern"`},
		{`{"type":"object","properties":{"s":{"type":"string","format":"email"}}}`, `"format"`},
		{`{"type":"object","properties":{"n":{"type":"number","minimum":0}}}`, `"minimum"`},
		{`{"type":"integer"}`, "top-level"},
		{`{"type":"object","required":["a"],"additionalProperties":false}`, `"a"`},
		{`{"type":"object","properties":{"a":{"$ref":"#/$defs/missing"}}}`, "missing"},
		{`{"type":"object","properties":{"a":{"$ref":"http://x/y"}}}`, "$ref"},
		{`{"type":"object","properties":{"a":{"type":"array","minItems":3,"maxItems":2}},"required":["a"]}`, "admits no value"},
		{`{"type":"object","properties":{"a":{"type":"thing"}}}`, "thing"},
		{`{"type":"object","properties":{"a":{"enum":[]}},"required":["a"]}`, "admits no value"},
		{`{"$ref":"#/$defs/a","$defs":{"a":{"$ref":"#/$defs/a"}}}`, "admits no value"},
		{`{"type":"object","properties":{"a":{"$ref":"#/$defs/n"}},"required":["a"],"$defs":{"n":{"type":"object","properties":{"m":{"$ref":"#/$defs/n"}},"required":["m"]}}}`, "admits no value"},
	} {
		_, err := CompileSchema([]byte(tc.schema), true)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one naming %s", tc.schema, err, tc.want)
		}
	}
	// Not strict: unsupported keywords are not enforced, but the rest is.
	sc := mustCompile(t, `{"type":"object","properties":{"s":{"type":"string","pattern":"^a"}},"required":["s"],"additionalProperties":false}`, false)
	if ok, done := runSchema(t, sc, `{"s":"b"}`); !ok || !done {
		t.Errorf("non-strict: pattern should be ignored")
	}
}
