package engine

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
)

func TestJSONState(t *testing.T) {
	valid := []string{
		`{}`, `{"a": 1}`, `{"a":[1,2.5,-3e+2,true,false,null,{"b":"x\"\\u00e9"}],"c":{}}`,
		`{"k": [] , "z": 0.0E-1}`, "{\n  \"a\": [\n    1\n  ]\n}",
	}
	for _, v := range valid {
		if !json.Valid([]byte(v)) {
			t.Fatalf("test case %q is not valid JSON", v)
		}
		var s jsonState
		for i := 0; i < len(v); i++ {
			if !s.accepts([]byte{v[i]}) {
				t.Fatalf("%q: byte %d (%q) rejected", v, i, v[i])
			}
			s.advance([]byte{v[i]})
		}
		if !s.done {
			t.Fatalf("%q: not done at the end", v)
		}
		if s.accepts([]byte("x")) || !s.accepts([]byte("\n ")) {
			t.Fatalf("%q: after the object only whitespace may follow", v)
		}
	}
	invalid := []string{` {}`, "{\"a\":  1}", "{\n\n\"a\":1}", "{\t\"a\":1}", `{"a":` + strings.Repeat(" ", 30) + `1}`, `[1]`, `{a:1}`, `{"a" 1}`, `{"a":01}`, `{"a":1,}`, `{"a":tru}`, `{"a":"` + "\x01" + `"}`, `{"a":1]`, `{"a":-}`, `{"a":1.}`, `{"a":"\x"}`}
	for _, v := range invalid {
		var s jsonState
		ok := true
		for i := 0; i < len(v) && ok; i++ {
			ok = s.accepts([]byte{v[i]})
			s.advance([]byte{v[i]})
		}
		if ok && s.done {
			t.Errorf("%q accepted as a complete JSON object", v)
		}
	}
}

// TestJSONObjectGeneration constrains a real model (which knows nothing of
// JSON) and checks that the answer parses as one JSON object.
func TestJSONObjectGeneration(t *testing.T) {
	m, tok := openStories(t)
	e := New(m, tok, Options{Context: 512})
	defer e.Close()
	for _, sp := range []SamplerParams{{}, {Temperature: 1, TopK: 40, Seed: 7}} {
		res, err := e.Generate(context.Background(), Request{
			Prompt: tok.Encode("Once upon a time", true, true), MaxTokens: 300, Sampling: sp, JSONObject: true,
		}, nil)
		if err != nil {
			t.Fatal(err)
		}
		var text string
		for _, tk := range res.Tokens {
			text += tk.Text
		}
		t.Logf("%+v: finish %s, %d tokens: %.300q", sp, res.FinishReason, len(res.Tokens), text)
		var obj map[string]any
		if res.FinishReason == "stop" {
			if err := json.Unmarshal([]byte(text), &obj); err != nil {
				t.Fatalf("%+v: finished output is not a JSON object: %v\n%s", sp, err, text)
			}
		} else {
			var st jsonState
			if !st.accepts([]byte(text)) {
				t.Fatalf("%+v: cut-off output is not a JSON prefix: %q", sp, text)
			}
		}
	}
}
