package chat

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func mustTemplate(t *testing.T, file string) *Template {
	t.Helper()
	src, err := os.ReadFile(filepath.Join("testdata/templates", file))
	if err != nil {
		t.Fatal(err)
	}
	tmpl, err := NewTemplate(string(src))
	if err != nil {
		t.Fatal(err)
	}
	return tmpl
}

func TestFamilyAndThinkingSwitch(t *testing.T) {
	for _, c := range []struct {
		file     string
		family   Family
		thinking bool
	}{
		{"qwen3.jinja", FamilyHermes, true},
		{"chatml.jinja", FamilyHermes, false},
		{"qwen3.6.jinja", FamilyHermes, true},
		{"llama3.2.jinja", FamilyLlama3, false},
		{"ministral3.jinja", FamilyMistral, false},
		{"mistral-medium-3.5.jinja", FamilyMistral, false},
		{"gemma3.jinja", FamilyNone, false},
	} {
		tmpl := mustTemplate(t, c.file)
		if got := tmpl.Family(); got != c.family {
			t.Errorf("%s: family %v, want %v", c.file, got, c.family)
		}
		if got := tmpl.SupportsThinkingSwitch(); got != c.thinking {
			t.Errorf("%s: SupportsThinkingSwitch %v, want %v", c.file, got, c.thinking)
		}
	}
	if FallbackTemplate().Family() != FamilyHermes || FallbackTemplate().Source() != ChatMLTemplate {
		t.Error("fallback template")
	}
	for f, s := range map[Family]string{FamilyNone: "none", FamilyHermes: "hermes", FamilyLlama3: "llama3", FamilyMistral: "mistral"} {
		if f.String() != s {
			t.Errorf("%d.String() = %q", f, f.String())
		}
	}
}

func TestQwen3ThinkingSwitch(t *testing.T) {
	tmpl := mustTemplate(t, "qwen3.jinja")
	msgs := []Message{{Role: "user", Content: "hi"}}
	off := false
	for _, c := range []struct {
		think *bool
		want  string
	}{
		{nil, "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"},
		{&off, "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"},
	} {
		got, err := tmpl.Render(msgs, RenderOptions{AddGenerationPrompt: true, EnableThinking: c.think})
		if err != nil || got != c.want {
			t.Errorf("got %q, %v; want %q", got, err, c.want)
		}
		if PromptStartsInThinking(got) {
			t.Errorf("%q starts in thinking", got)
		}
	}
}

func TestPromptStartsInThinking(t *testing.T) {
	for s, want := range map[string]bool{
		"<|im_start|>assistant\n<think>\n":               true,
		"<｜Assistant｜><think>":                           true,
		"<|im_start|>assistant\n<think>\n\n</think>\n\n": false,
		"<|im_start|>assistant\n":                        false,
		"":                                               false,
	} {
		if got := PromptStartsInThinking(s); got != want {
			t.Errorf("%q: %v", s, got)
		}
	}
}

func TestRenderErrors(t *testing.T) {
	bad := []struct {
		name, src string
		opts      RenderOptions
		want      string
	}{
		{"raise", `{{ raise_exception("no " ~ messages[0].role) }}`, RenderOptions{}, "chat template raised: no user"},
		{"undefined object", `{{ foo.bar }}`, RenderOptions{}, "'foo' is undefined"},
		{"type error", `{{ messages[0].content + 1 }}`, RenderOptions{}, "unsupported operand"},
		{"extra messages", `x`, RenderOptions{Extra: map[string]any{"messages": 1}}, "may not set"},
		{"bad tool schema", `x`, RenderOptions{Tools: []Tool{{Function: ToolFunction{Name: "f", Parameters: []byte("{")}}}}, "tool f"},
	}
	for _, c := range bad {
		tmpl, err := NewTemplate(c.src)
		if err != nil {
			t.Fatal(err)
		}
		_, err = tmpl.Render([]Message{{Role: "user", Content: "x"}}, c.opts)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want %q", c.name, err, c.want)
		}
	}
	if _, err := NewTemplate("{% if %}"); err == nil {
		t.Error("syntax error not reported")
	}
}

// Rendering odd conversations must return errors, never panic.
func TestRenderOddInputsNoPanic(t *testing.T) {
	files, err := filepath.Glob("testdata/templates/*.jinja")
	if err != nil || len(files) < 10 {
		t.Fatal(files, err)
	}
	convs := [][]Message{
		nil,
		{{Role: "assistant"}},
		{{Role: "tool", Content: "x"}},
		{{Role: "weird", Parts: []Part{{Type: "image"}}}},
		{{Role: "user", Content: "a"}, {Role: "assistant", ToolCalls: []ToolCall{{Name: "f", Arguments: "not json"}}}},
	}
	for _, f := range files {
		tmpl := mustTemplate(t, filepath.Base(f))
		for _, msgs := range convs {
			_, _ = tmpl.Render(msgs, RenderOptions{AddGenerationPrompt: true, Tools: []Tool{{Function: ToolFunction{Name: "f"}}}})
		}
	}
}

func TestRenderExtraAndParts(t *testing.T) {
	tmpl, err := NewTemplate(`{{ bos_token }}{% for m in messages %}[{{ m.content }}]{% endfor %}{{ flag }}{{ n + 1 }}{{ obj.k }}{{ enable_thinking }}`)
	if err != nil {
		t.Fatal(err)
	}
	on := true
	got, err := tmpl.Render([]Message{{Role: "user", Parts: []Part{{Type: "text", Text: "a"}, {Type: "image"}, {Type: "text", Text: "b"}}}},
		RenderOptions{BOS: "<s>", EnableThinking: &on, Extra: map[string]any{"flag": "F", "n": 41, "obj": map[string]any{"k": "v"}}})
	if want := "<s>[a\nb]F42vTrue"; err != nil || got != want {
		t.Fatalf("got %q, %v; want %q", got, err, want)
	}
	// A template that loops over content gets the parts list.
	tmpl, err = NewTemplate(`{% for m in messages %}{% for p in m.content %}<{{ p.type }}:{{ p.text }}>{% endfor %}{% endfor %}`)
	if err != nil {
		t.Fatal(err)
	}
	got, err = tmpl.Render([]Message{{Role: "user", Parts: []Part{{Type: "text", Text: "a"}, {Type: "image"}}}}, RenderOptions{})
	if want := "<text:a><image:>"; err != nil || got != want {
		t.Fatalf("got %q, %v; want %q", got, err, want)
	}
}

func TestRenderConcurrent(t *testing.T) {
	tmpl := mustTemplate(t, "gemma4.jinja")
	msgs := []Message{{Role: "system", Content: "s"}, {Role: "user", Content: "u"}}
	opts := RenderOptions{AddGenerationPrompt: true, Tools: []Tool{{Function: ToolFunction{Name: "f", Parameters: []byte(`{"type": "object", "properties": {"a": {"type": "string"}}}`)}}}}
	want, err := tmpl.Render(msgs, opts)
	if err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 8)
	for range 8 {
		go func() {
			got, err := tmpl.Render(msgs, opts)
			if err == nil && got != want {
				err = fmt.Errorf("concurrent render differs")
			}
			errs <- err
		}()
	}
	for range 8 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}
