package chat

import (
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"
)

// The goldens are Python Jinja2 renders made by testdata/gen_golden.py; see
// its header for how to regenerate them.

type goldenSpec struct {
	Templates map[string]struct {
		File string `json:"file"`
		BOS  string `json:"bos"`
		EOS  string `json:"eos"`
	} `json:"templates"`
	Now   time.Time `json:"now"`
	Tools []struct {
		Type     string `json:"type"`
		Function struct {
			Name        string          `json:"name"`
			Description string          `json:"description"`
			Parameters  json.RawMessage `json:"parameters"`
		} `json:"function"`
	} `json:"tools"`
	Cases []struct {
		Name                string          `json:"name"`
		AddGenerationPrompt bool            `json:"add_generation_prompt"`
		EnableThinking      *bool           `json:"enable_thinking"`
		UseTools            bool            `json:"use_tools"`
		Extra               map[string]any  `json:"extra"`
		Messages            []caseMessage   `json:"messages"`
		Raw                 json.RawMessage `json:"-"`
	} `json:"cases"`
}

type caseMessage struct {
	Role      string          `json:"role"`
	Content   json.RawMessage `json:"content"`
	ToolCalls []struct {
		ID       string `json:"id"`
		Type     string `json:"type"`
		Function struct {
			Name      string `json:"name"`
			Arguments string `json:"arguments"`
		} `json:"function"`
	} `json:"tool_calls"`
	ToolCallID string `json:"tool_call_id"`
	Name       string `json:"name"`
	Reasoning  string `json:"reasoning_content"`
}

// toMessage converts an OpenAI-format message the way a server would.
func (c caseMessage) toMessage(t *testing.T) Message {
	m := Message{Role: c.Role, ToolCallID: c.ToolCallID, Name: c.Name, Reasoning: c.Reasoning}
	switch {
	case len(c.Content) == 0 || string(c.Content) == "null":
	case c.Content[0] == '"':
		if err := json.Unmarshal(c.Content, &m.Content); err != nil {
			t.Fatal(err)
		}
	default:
		var parts []struct{ Type, Text string }
		if err := json.Unmarshal(c.Content, &parts); err != nil {
			t.Fatal(err)
		}
		m.Parts = []Part{}
		for _, p := range parts {
			m.Parts = append(m.Parts, Part{Type: p.Type, Text: p.Text})
		}
	}
	for _, tc := range c.ToolCalls {
		m.ToolCalls = append(m.ToolCalls, ToolCall{ID: tc.ID, Type: tc.Type, Name: tc.Function.Name, Arguments: tc.Function.Arguments})
	}
	return m
}

func loadSpec(t *testing.T) goldenSpec {
	t.Helper()
	data, err := os.ReadFile("testdata/cases.json")
	if err != nil {
		t.Fatal(err)
	}
	var spec goldenSpec
	if err := json.Unmarshal(data, &spec); err != nil {
		t.Fatal(err)
	}
	return spec
}

func TestGoldenRenders(t *testing.T) {
	spec := loadSpec(t)
	var tools []Tool
	for _, tl := range spec.Tools {
		tools = append(tools, Tool{Type: tl.Type, Function: ToolFunction{
			Name: tl.Function.Name, Description: tl.Function.Description, Parameters: tl.Function.Parameters}})
	}
	names := make([]string, 0, len(spec.Templates))
	for n := range spec.Templates {
		names = append(names, n)
	}
	sort.Strings(names)
	count := 0
	for _, name := range names {
		ts := spec.Templates[name]
		src, err := os.ReadFile(filepath.Join("testdata/templates", ts.File))
		if err != nil {
			t.Fatal(err)
		}
		tmpl, err := NewTemplate(string(src))
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		for _, c := range spec.Cases {
			t.Run(name+"/"+c.Name, func(t *testing.T) {
				want, err := os.ReadFile(filepath.Join("testdata/golden", name+"__"+c.Name+".txt"))
				if err != nil {
					t.Fatal(err)
				}
				var msgs []Message
				for _, m := range c.Messages {
					msgs = append(msgs, m.toMessage(t))
				}
				opts := RenderOptions{AddGenerationPrompt: c.AddGenerationPrompt, EnableThinking: c.EnableThinking,
					BOS: ts.BOS, EOS: ts.EOS, Extra: c.Extra, Now: spec.Now}
				if c.UseTools {
					opts.Tools = tools
				}
				got, err := tmpl.Render(msgs, opts)
				if wantErr, isErr := strings.CutPrefix(string(want), "ERROR: "); isErr {
					if err == nil {
						t.Fatalf("render succeeded, Python raised %q; got:\n%s", wantErr, got)
					}
					if strings.HasPrefix(err.Error(), "chat template raised: ") && !strings.Contains(err.Error(), wantErr) {
						t.Errorf("error %q, Python raised %q", err, wantErr)
					}
					return
				}
				if err != nil {
					t.Fatalf("render: %v", err)
				}
				if got != string(want) {
					t.Errorf("render differs from Python Jinja2 at byte %d\n--- got:\n%s\n--- want:\n%s", firstDiff(got, string(want)), got, want)
				}
			})
			count++
		}
	}
	if count < 50 {
		t.Errorf("only %d golden renders checked", count)
	}
}

func firstDiff(a, b string) int {
	for i := 0; i < len(a) && i < len(b); i++ {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

func TestChatMLTemplateFileMatchesConstant(t *testing.T) {
	src, err := os.ReadFile("testdata/templates/chatml.jinja")
	if err != nil {
		t.Fatal(err)
	}
	if string(src) != ChatMLTemplate {
		t.Fatal("testdata/templates/chatml.jinja differs from ChatMLTemplate; copy the constant into the file and regenerate the goldens")
	}
}
