package jinja

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// FuzzTemplate checks that arbitrary template sources compile and render
// without panicking or hanging (errors are fine). Seeds: the engine cases
// and the real chat templates.
func FuzzTemplate(f *testing.F) {
	var cases []struct{ Template string }
	if data, err := os.ReadFile("testdata/cases.json"); err == nil {
		_ = json.Unmarshal(data, &cases)
	}
	for _, c := range cases {
		f.Add(c.Template)
	}
	files, _ := filepath.Glob("../../testdata/templates/*.jinja")
	for _, file := range files {
		if src, err := os.ReadFile(file); err == nil {
			f.Add(string(src))
		}
	}
	msgs, _ := FromJSON([]byte(`[{"role": "system", "content": "s"}, {"role": "user", "content": "u"},
		{"role": "assistant", "content": "", "tool_calls": [{"id": "x", "type": "function", "function": {"name": "f", "arguments": {"a": 1}}}]},
		{"role": "tool", "content": "r"}]`))
	f.Fuzz(func(t *testing.T, src string) {
		tmpl, err := Compile(src)
		if err != nil {
			return
		}
		_, _ = tmpl.Render(map[string]Value{"messages": msgs, "add_generation_prompt": true, "tools": nil})
	})
}
