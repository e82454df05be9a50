package local

import (
	"strings"
	"testing"

	"github.com/stepflash/stepflash/chat"
)

func TestStopMatcher(t *testing.T) {
	cases := []struct {
		name   string
		stops  []string
		pieces []string
		want   string
		hit    bool
	}{
		{"none", nil, []string{"ab", "cd"}, "abcd", false},
		{"inside one piece", []string{"c"}, []string{"abcd"}, "ab", true},
		{"across pieces", []string{"END"}, []string{"xE", "N", "Dy"}, "x", true},
		{"false start released", []string{"END"}, []string{"xEN", "o"}, "xENo", false},
		{"earliest wins", []string{"cd", "b"}, []string{"abcd"}, "a", true},
		{"held at the end is flushed", []string{"END"}, []string{"abE"}, "abE", false},
		{"overlapping prefix", []string{"aab"}, []string{"a", "a", "a", "b"}, "a", true},
		{"unicode", []string{"é!"}, []string{"caf", "é", "!"}, "caf", true},
	}
	for _, tc := range cases {
		m := stopMatcher{stops: tc.stops}
		var out strings.Builder
		hit := false
		for _, p := range tc.pieces {
			s, h := m.push(p)
			out.WriteString(s)
			if h {
				hit = true
				break
			}
		}
		if !hit {
			out.WriteString(m.flush())
		}
		if out.String() != tc.want || hit != tc.hit {
			t.Errorf("%s: %q hit %v, want %q hit %v", tc.name, out.String(), hit, tc.want, tc.hit)
		}
	}
}

func TestGroupDeltas(t *testing.T) {
	ds := []chat.Delta{
		{Reasoning: "a"}, {Reasoning: "b"}, {Content: "c"},
		{ToolCall: &chat.ToolCallDelta{Index: 0, ID: "call_1", Type: "function", Name: "f"}},
		{ToolCall: &chat.ToolCallDelta{Index: 0, Arguments: "{}"}},
		{ToolCall: &chat.ToolCallDelta{Index: 1, ID: "call_2", Type: "function", Name: "g"}},
		{Content: "d"},
	}
	got := groupDeltas(ds)
	if len(got) != 4 {
		t.Fatalf("%d groups: %+v", len(got), got)
	}
	if *got[0].ReasoningContent != "ab" || *got[0].Reasoning != "ab" || got[0].Content != nil {
		t.Errorf("reasoning group %+v", got[0])
	}
	if *got[1].Content != "c" {
		t.Errorf("content group %+v", got[1])
	}
	calls := got[2].ToolCalls
	if len(calls) != 2 || *calls[0].Index != 0 || calls[0].ID != "call_1" || calls[0].Function.Name != "f" || calls[0].Function.Arguments != "{}" ||
		*calls[1].Index != 1 || calls[1].Function.Name != "g" {
		t.Errorf("tool call group %+v", calls)
	}
	if *got[3].Content != "d" {
		t.Errorf("last group %+v", got[3])
	}
}
