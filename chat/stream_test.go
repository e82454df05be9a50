package chat

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
)

type parseCase struct {
	name     string
	family   Family
	thinking bool
	in       string
	want     Result
}

func call(i int, name, args string) ToolCall {
	return ToolCall{ID: fmt.Sprintf("id%d", i), Type: "function", Name: name, Arguments: args}
}

var parseCases = []parseCase{
	{name: "plain", family: FamilyHermes, in: "Hello world", want: Result{Content: "Hello world"}},
	{name: "angle brackets", family: FamilyHermes, in: "a < b and <b>bold</b> <tool", want: Result{Content: "a < b and <b>bold</b> <tool"}},
	{name: "trailing whitespace", family: FamilyNone, in: "  Hi there\n\n", want: Result{Content: "  Hi there"}},
	{name: "multibyte", family: FamilyHermes, in: "<think>é 日本\u00a0</think>\u00a0🎉 done\u2028", want: Result{Reasoning: "é 日本", Content: "🎉 done"}},
	{name: "think block", family: FamilyHermes, in: "<think>\nreason\nmore\n</think>\n\nAnswer.", want: Result{Reasoning: "reason\nmore", Content: "Answer."}},
	{name: "empty think", family: FamilyHermes, in: "<think>\n\n</think>\n\nAnswer", want: Result{Content: "Answer"}},
	{name: "starts in thinking", family: FamilyHermes, thinking: true, in: "reason here\n</think>\n\nAnswer", want: Result{Reasoning: "reason here", Content: "Answer"}},
	{name: "starts in thinking, repeats tag", family: FamilyNone, thinking: true, in: "<think>\nr\n</think>a", want: Result{Reasoning: "r", Content: "a"}},
	{name: "starts in thinking, truncated", family: FamilyNone, thinking: true, in: "partial reasoning <", want: Result{Reasoning: "partial reasoning <"}},
	{name: "starts in thinking, text like tag", family: FamilyNone, thinking: true, in: "<thin>x</think>y", want: Result{Reasoning: "<thin>x", Content: "y"}},
	{name: "hermes call", family: FamilyHermes,
		in:   "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>",
		want: Result{ToolCalls: []ToolCall{call(0, "get_weather", `{"city": "Paris"}`)}}},
	{name: "hermes content and two calls", family: FamilyHermes,
		in:   "Let me check.\n<tool_call>\n{\"name\": \"f\", \"arguments\": {\"a\": [1, {\"b\": \"</tool\"}]}}\n</tool_call>\n<tool_call>\n{\"name\": \"g\", \"arguments\": {}}\n</tool_call>\n",
		want: Result{Content: "Let me check.", ToolCalls: []ToolCall{call(0, "f", `{"a": [1, {"b": "</tool"}]}`), call(1, "g", "{}")}}},
	{name: "hermes think then call", family: FamilyHermes,
		in:   "<think>\nI need the tool.\n</think>\n\n<tool_call>\n{\"name\": \"f\", \"arguments\": {\"x\": 1}}\n</tool_call>",
		want: Result{Reasoning: "I need the tool.", ToolCalls: []ToolCall{call(0, "f", `{"x": 1}`)}}},
	{name: "hermes malformed stays content", family: FamilyHermes,
		in:   "Sure.\n<tool_call>\n{\"name\": oops}\n</tool_call> after",
		want: Result{Content: "Sure.\n<tool_call>\n{\"name\": oops}\n</tool_call> after"}},
	{name: "hermes missing name stays content", family: FamilyHermes,
		in:   "<tool_call>{\"arguments\": {}}</tool_call>",
		want: Result{Content: "<tool_call>{\"arguments\": {}}</tool_call>"}},
	{name: "hermes unclosed valid", family: FamilyHermes,
		in:   "<tool_call>\n{\"name\":\"f\",\"arguments\":{}}\n",
		want: Result{ToolCalls: []ToolCall{call(0, "f", "{}")}}},
	{name: "hermes unclosed invalid", family: FamilyHermes,
		in:   "x <tool_call>\n{\"name\":\"f\",\"argu",
		want: Result{Content: "x <tool_call>\n{\"name\":\"f\",\"argu"}},
	{name: "hermes string arguments", family: FamilyHermes,
		in:   `<tool_call>{"name": "f", "arguments": "{\"a\": 1}"}</tool_call>`,
		want: Result{ToolCalls: []ToolCall{call(0, "f", `{"a": 1}`)}}},
	{name: "hermes text after call", family: FamilyHermes,
		in:   "<tool_call>{\"name\": \"f\"}</tool_call>\n\nDone.",
		want: Result{Content: "Done.", ToolCalls: []ToolCall{call(0, "f", "{}")}}},
	{name: "none ignores tool tags", family: FamilyNone,
		in:   "<tool_call>{\"name\": \"f\"}</tool_call>",
		want: Result{Content: "<tool_call>{\"name\": \"f\"}</tool_call>"}},
	{name: "llama3 bare json", family: FamilyLlama3,
		in:   " {\"name\": \"get_weather\", \"parameters\": {\"city\": \"Paris\"}}",
		want: Result{ToolCalls: []ToolCall{call(0, "get_weather", `{"city": "Paris"}`)}}},
	{name: "llama3 python tag", family: FamilyLlama3,
		in:   "<|python_tag|>{\"name\": \"f\", \"parameters\": {\"q\": \"x\"}}",
		want: Result{ToolCalls: []ToolCall{call(0, "f", `{"q": "x"}`)}}},
	{name: "llama3 several calls", family: FamilyLlama3,
		in:   "{\"name\": \"f\", \"parameters\": {}}; {\"name\": \"g\", \"arguments\": {\"a\": 2}}",
		want: Result{ToolCalls: []ToolCall{call(0, "f", "{}"), call(1, "g", `{"a": 2}`)}}},
	{name: "llama3 json that is not a call", family: FamilyLlama3,
		in: "{\"answer\": 42}", want: Result{Content: "{\"answer\": 42}"}},
	{name: "llama3 broken json", family: FamilyLlama3,
		in: "{not json} hi", want: Result{Content: "{not json} hi"}},
	{name: "llama3 text", family: FamilyLlama3,
		in: "Sure, {\"name\": \"f\"} is JSON.", want: Result{Content: "Sure, {\"name\": \"f\"} is JSON."}},
	{name: "llama3 think then json", family: FamilyLlama3,
		in:   "<think>plan</think>\n{\"name\": \"f\", \"parameters\": {}}",
		want: Result{Reasoning: "plan", ToolCalls: []ToolCall{call(0, "f", "{}")}}},
	{name: "mistral array", family: FamilyMistral,
		in:   "[TOOL_CALLS][{\"name\": \"f\", \"arguments\": {\"a\": 1}}, {\"name\": \"g\", \"arguments\": {}, \"id\": \"abcDEF123\"}]",
		want: Result{ToolCalls: []ToolCall{call(0, "f", `{"a": 1}`), {ID: "abcDEF123", Type: "function", Name: "g", Arguments: "{}"}}}},
	{name: "mistral args form", family: FamilyMistral,
		in:   "Checking.[TOOL_CALLS]get_weather[ARGS]{\"city\": \"Paris\"}[TOOL_CALLS]search[ARGS]{\"query\": \"x\"}",
		want: Result{Content: "Checking.", ToolCalls: []ToolCall{call(0, "get_weather", `{"city": "Paris"}`), call(1, "search", `{"query": "x"}`)}}},
	{name: "mistral call id form", family: FamilyMistral,
		in:   "[TOOL_CALLS]f[CALL_ID]a1b2c3d4e[ARGS]{}",
		want: Result{ToolCalls: []ToolCall{{ID: "a1b2c3d4e", Type: "function", Name: "f", Arguments: "{}"}}}},
	{name: "mistral malformed", family: FamilyMistral,
		in: "Hi [TOOL_CALLS]f[ARGS]{bad", want: Result{Content: "Hi [TOOL_CALLS]f[ARGS]{bad"}},
	{name: "mistral text with bracket", family: FamilyMistral,
		in: "[1, 2] and [TOOL", want: Result{Content: "[1, 2] and [TOOL"}},
}

func runParser(c parseCase, chunks []string) Result {
	p := NewStreamParser(c.family, c.thinking)
	n := 0
	p.NewID = func() string { n++; return fmt.Sprintf("id%d", n-1) }
	var ds []Delta
	for _, ch := range chunks {
		ds = append(ds, p.Push(ch)...)
	}
	ds = append(ds, p.Finish()...)
	return Collect(ds)
}

func TestParse(t *testing.T) {
	for _, c := range parseCases {
		t.Run(c.name, func(t *testing.T) {
			got := runParser(c, []string{c.in})
			if !reflect.DeepEqual(got, c.want) {
				t.Fatalf("got  %#v\nwant %#v", got, c.want)
			}
			// Parse (random ids) agrees apart from the ids.
			r := Parse(c.in, c.family, c.thinking)
			for i := range r.ToolCalls {
				if !strings.HasPrefix(r.ToolCalls[i].ID, "call_") && c.family != FamilyMistral {
					t.Errorf("id %q", r.ToolCalls[i].ID)
				}
				if c.want.ToolCalls[i].ID == fmt.Sprintf("id%d", i) {
					r.ToolCalls[i].ID = c.want.ToolCalls[i].ID
				}
			}
			if !reflect.DeepEqual(r, c.want) {
				t.Errorf("Parse: got %#v", r)
			}
		})
	}
}

// TestStreamSplits feeds every case split at every byte position (and byte
// by byte) and checks the joined deltas equal the whole-text parse.
func TestStreamSplits(t *testing.T) {
	for _, c := range parseCases {
		t.Run(c.name, func(t *testing.T) {
			for i := 0; i <= len(c.in); i++ {
				for _, j := range []int{i, (i + len(c.in)) / 2} {
					got := runParser(c, []string{c.in[:i], c.in[i:j], c.in[j:]})
					if !reflect.DeepEqual(got, c.want) {
						t.Fatalf("split at %d,%d: got %#v\nwant %#v", i, j, got, c.want)
					}
				}
			}
			bytes := make([]string, len(c.in))
			for i := 0; i < len(c.in); i++ {
				bytes[i] = c.in[i : i+1]
			}
			if got := runParser(c, bytes); !reflect.DeepEqual(got, c.want) {
				t.Fatalf("byte by byte: got %#v\nwant %#v", got, c.want)
			}
		})
	}
}

func TestStreamHoldsBackTags(t *testing.T) {
	p := NewStreamParser(FamilyHermes, false)
	if ds := p.Push("Hi <tool"); len(ds) != 1 || ds[0].Content != "Hi" {
		t.Fatalf("first push: %#v", ds)
	}
	if ds := p.Push("_call>\n{\"name\": \"f\", "); len(ds) != 0 {
		t.Fatalf("inside tool call: %#v", ds)
	}
	ds := p.Push("\"arguments\": {\"a\": 1}}\n</tool_call>")
	if len(ds) != 2 || ds[0].ToolCall == nil || ds[0].ToolCall.Name != "f" || ds[0].ToolCall.Index != 0 ||
		!strings.HasPrefix(ds[0].ToolCall.ID, "call_") || len(ds[0].ToolCall.ID) != 29 || ds[0].ToolCall.Type != "function" ||
		ds[1].ToolCall == nil || ds[1].ToolCall.Arguments != `{"a": 1}` || ds[1].ToolCall.Name != "" || ds[1].ToolCall.ID != "" {
		t.Fatalf("call deltas: %#v", ds)
	}
	if ds := p.Push(" <thi"); len(ds) != 0 {
		t.Fatalf("partial think tag: %#v", ds)
	}
	if ds := p.Push("s is fine"); len(ds) != 1 || ds[0].Content != "<this is fine" {
		// The whitespace after a tool call is dropped.
		t.Fatalf("released prefix: %#v", ds)
	}
	if ds := p.Finish(); len(ds) != 0 {
		t.Fatalf("finish: %#v", ds)
	}
	if ds := p.Push("more"); ds != nil {
		t.Fatalf("push after finish: %#v", ds)
	}
}

func TestStreamReasoningIsIncremental(t *testing.T) {
	p := NewStreamParser(FamilyNone, true)
	var got []string
	for _, s := range []string{"Let me ", "think", " about it.\n", "</thi", "nk>\n\nAns", "wer"} {
		for _, d := range p.Push(s) {
			got = append(got, "R:"+d.Reasoning+"|C:"+d.Content)
		}
	}
	want := []string{"R:Let me|C:", "R: think|C:", "R: about it.|C:", "R:|C:Ans", "R:|C:wer"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %q\nwant %q", got, want)
	}
}

func TestMistralIDs(t *testing.T) {
	r := Parse("[TOOL_CALLS]f[ARGS]{}", FamilyMistral, false)
	if len(r.ToolCalls) != 1 || len(r.ToolCalls[0].ID) != 9 {
		t.Fatalf("%#v", r)
	}
}

// FuzzStreamSplit checks split invariance on arbitrary replies.
func FuzzStreamSplit(f *testing.F) {
	for _, c := range parseCases {
		f.Add(c.in, uint(len(c.in)/2), uint8(c.family), c.thinking)
	}
	f.Fuzz(func(t *testing.T, in string, at uint, fam uint8, thinking bool) {
		c := parseCase{family: Family(fam % 4), thinking: thinking, in: in}
		i := int(at % uint(len(in)+1))
		whole := runParser(c, []string{in})
		if got := runParser(c, []string{in[:i], in[i:]}); !reflect.DeepEqual(got, whole) {
			t.Fatalf("split at %d: %#v\nwhole: %#v", i, got, whole)
		}
	})
}
