package server

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

func TestPricesUsage(t *testing.T) {
	u := DefaultPrices.usage(1200, 1024, 300, 120)
	if u.TotalTokens != 1500 || u.CachedTokens != 1024 || u.PromptTokensDetails.CachedTokens != 1024 || u.CompletionTokensDetails.ReasoningTokens != 120 {
		t.Errorf("usage %+v", u)
	}
	want := (176*0.20 + 1024*0.04 + 300*1.15) / 1e6
	if d := u.Cost - want; d > 1e-15 || d < -1e-15 {
		t.Errorf("cost %v, want %v", u.Cost, want)
	}
}

func TestMetricsExposition(t *testing.T) {
	reg := &metrics{}
	c := reg.counter("x_total", "Help.", "a")
	h := reg.histogram("y_seconds", "Help.", []float64{1, 2}, "b")
	c.Add(2, `q"\`)
	h.Observe(0.5, "k")
	h.Observe(1.5, "k")
	h.Observe(9, "k")
	var b strings.Builder
	reg.write(&b)
	for _, want := range []string{
		"# TYPE x_total counter\n", `x_total{a="q\"\\"} 2` + "\n",
		`y_seconds_bucket{b="k",le="1"} 1`, `y_seconds_bucket{b="k",le="2"} 2`, `y_seconds_bucket{b="k",le="+Inf"} 3`,
		`y_seconds_sum{b="k"} 11`, `y_seconds_count{b="k"} 3`,
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("exposition lacks %q:\n%s", want, b.String())
		}
	}
}
