package eval

import (
	"bytes"
	"encoding/base64"
	"encoding/xml"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"io"
	"math"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
)

func TestScore(t *testing.T) {
	for _, tc := range []struct {
		task   Task
		answer string
		want   bool
	}{
		{Task{Answer: "9965"}, "9965", true},
		{Task{Answer: "9965"}, " 9965 ", true},
		{Task{Answer: "9965"}, "9966", false},
		{Task{Answer: "9965"}, "The answer is 9965", false},
		{Task{Answer: "3.14", Check: CheckNumeric, Tolerance: 0.01}, "about 3.141", true},
		{Task{Answer: "3.14", Check: CheckNumeric, Tolerance: 0.001}, "about 3.2", false},
		{Task{Answer: "1200", Check: CheckNumeric}, "1,200 apples", true},
		{Task{Answer: "5", Check: CheckNumeric}, "no number", false},
		{Task{Answer: `{"city":"Paris","n":2}`, Check: CheckJSON}, "```json\n{\"city\": \"Paris\", \"n\": 2, \"extra\": true}\n```", true},
		{Task{Answer: `{"city":"Paris"}`, Check: CheckJSON}, `{"city": "Lyon"}`, false},
		{Task{Answer: `{"city":"Paris"}`, Check: CheckJSON}, `not json {`, false},
	} {
		if got := tc.task.Score(tc.answer); got != tc.want {
			t.Errorf("%+v on %q: %v, want %v", tc.task, tc.answer, got, tc.want)
		}
	}
}

func TestFinalAnswer(t *testing.T) {
	for in, want := range map[string]string{
		"9965": "9965",
		"<think>\n12 0 5\n</think>\n\n9965<|im_end|>": "9965",
		"a</think>b</think> c ":                       "c",
	} {
		if got := FinalAnswer(in); got != want {
			t.Errorf("FinalAnswer(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestReadTasks(t *testing.T) {
	ts, err := ReadTasks(strings.NewReader(`{"question":"What is 1 + 2?","answer":"3"}

{"id":"x","question":"pi?","answer":"3.14","check":"numeric","tolerance":0.01}
{"question":"json?","answer":{"a":1},"check":"json"}
`), "t.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	if len(ts) != 3 || ts[0].ID != "line-1" || ts[0].Check != CheckExact || ts[1].ID != "x" || ts[2].Answer != `{"a":1}` {
		t.Errorf("%+v", ts)
	}
	for _, tc := range []struct{ in, want string }{
		{`{"question":"q"}`, `t.jsonl:1: no "answer"`},
		{`{"answer":"a"}`, `t.jsonl:1: no "question"`},
		{`not json`, "t.jsonl:1: not a JSON object"},
		{`{"question":"q","answer":"a","check":"fuzzy"}`, `check "fuzzy"`},
		{`{"question":"q","answer":"a","check":"numeric"}`, "not a number"},
		{`{"id":"a","question":"q","answer":"1"}` + "\n" + `{"id":"a","question":"q","answer":"1"}`, `t.jsonl:2: id "a" already used on line 1`},
		{"", "no tasks"},
	} {
		if _, err := ReadTasks(strings.NewReader(tc.in), "t.jsonl"); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want %q", tc.in, err, tc.want)
		}
	}
}

// TestAdditionTasks: the trained models' distribution (2–5 digits, no
// leading zero, every length drawn), the same for the same seed.
func TestAdditionTasks(t *testing.T) {
	a, b := AdditionTasks(400, 7), AdditionTasks(400, 7)
	lengths := map[int]int{}
	for i, tk := range a {
		if !reflect.DeepEqual(tk, b[i]) {
			t.Fatalf("task %d differs for the same seed", i)
		}
		var x, y int
		if _, err := fmtSscanf(tk.Question, &x, &y); err != nil {
			t.Fatalf("%q: %v", tk.Question, err)
		}
		for _, v := range []int{x, y} {
			l := len(strconv.Itoa(v))
			if l < 2 || l > 5 {
				t.Errorf("%q: %d digits", tk.Question, l)
			}
			lengths[l]++
		}
		if tk.Answer != strconv.Itoa(x+y) {
			t.Errorf("%q: answer %s", tk.Question, tk.Answer)
		}
	}
	for l := 2; l <= 5; l++ {
		if lengths[l] < 150 { // 200 expected of 800
			t.Errorf("length %d drawn %d times of 800", l, lengths[l])
		}
	}
	if reflect.DeepEqual(AdditionTasks(5, 8)[0], a[0]) {
		t.Error("another seed gives the same first task")
	}
}

func fmtSscanf(q string, x, y *int) (int, error) {
	var err error
	q = strings.TrimSuffix(strings.TrimPrefix(q, "What is "), "?")
	parts := strings.Split(q, " + ")
	if len(parts) != 2 {
		return 0, io.ErrUnexpectedEOF
	}
	if *x, err = strconv.Atoi(parts[0]); err != nil {
		return 0, err
	}
	*y, err = strconv.Atoi(parts[1])
	return 2, err
}

func TestPairedBootstrap(t *testing.T) {
	for _, tc := range []struct {
		name        string
		d           []float64
		excludeZero bool
	}{
		{"all ties", make([]float64, 40), false},
		{"8 wins, 1 loss of 40", append([]float64{1, 1, 1, 1, 1, 1, 1, 1, -1}, make([]float64, 31)...), true},
		{"balanced", []float64{1, -1, 1, -1, 0, 0, 1, -1}, false},
		{"4 wins of 5", []float64{1, 1, 1, 1, 0}, true},
	} {
		lo, hi := PairedBootstrap(tc.d)
		m := mean(tc.d)
		if lo > m || hi < m {
			t.Errorf("%s: mean %g outside [%g, %g]", tc.name, m, lo, hi)
		}
		if ex := lo > 0 || hi < 0; ex != tc.excludeZero {
			t.Errorf("%s: [%g, %g] excludes 0: %v, want %v", tc.name, lo, hi, ex, tc.excludeZero)
		}
	}
}

// TestPlotDegenerate: values equal up to rounding (two arms with the same
// cost) draw a plot instead of looping forever, and it is well-formed.
func TestPlotDegenerate(t *testing.T) {
	for _, xs := range [][2]float64{{0.000142, 0.000142 + 1e-20}, {0, 0}, {5, 5}, {-1, 1e300}} {
		p := plot{ID: "p", Series: []string{"a", "b"}, Points: []point{{X: xs[0], Y: 0.5}, {Series: 1, X: xs[1], Y: 0.5, Bar: true, Lo: 0.5, Hi: 0.5}}}
		s := p.svg()
		if n := strings.Count(s, `class="point"`); n != 2 {
			t.Errorf("%v: %d points", xs, n)
		}
		if err := wellFormed(s); err != nil {
			t.Errorf("%v: %v", xs, err)
		}
		for _, v := range niceTicks(xs[0], xs[1], 5) {
			if math.IsNaN(v) || math.IsInf(v, 0) {
				t.Errorf("%v: tick %g", xs, v)
			}
		}
	}
}

func wellFormed(s string) error {
	dec := xml.NewDecoder(strings.NewReader(s))
	for {
		_, err := dec.Token()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// TestHTMLWellFormed: a report with awkward labels (markup, quotes) parses
// as XML and has one point per arm and pass.
func TestHTMLWellFormed(t *testing.T) {
	cfg := Config{Suite: SuiteHead2Head, Passes: 2, Endpoints: []Endpoint{{BaseURL: "http://a/v1", Model: `<m&"1">`}, {BaseURL: "http://b/v1", Model: "m2"}},
		Tasks: []Task{{ID: "t1", Answer: "1"}, {ID: "t2", Answer: "2"}}, Prices: DefaultPrices}
	var calls []Call
	for pass := 1; pass <= 2; pass++ {
		for _, arm := range []string{ArmA, ArmB} {
			for _, task := range []string{"t1", "t2"} {
				calls = append(calls, Call{Arm: arm, Pass: pass, Task: task, Correct: arm == ArmA || task == "t1", Cost: 1e-4, CostSource: "prices"})
			}
		}
	}
	res := &Results{Config: cfg, Calls: calls, Complete: true, Notes: []string{"a <note> & more"}}
	res.Summary = summarize(&res.Config, calls)
	b, err := res.HTML()
	if err != nil {
		t.Fatal(err)
	}
	if err := wellFormed(string(b)); err != nil {
		t.Fatalf("%v\n%s", err, b)
	}
	if n := strings.Count(string(b), `class="point"`); n != 2+2+4+3 {
		t.Errorf("%d points, want 11", n)
	}
	if p := res.Summary.Paired; p.MeanDiff != 0.5 || p.AWins != 1 || p.BWins != 0 {
		t.Errorf("paired %+v", p)
	}
}

// TestVisionTasks: the embedded vision set is made as the trained VLM's
// test set (64x64, four flat quadrants, each channel of the named colour's
// base within ±20), the right cell or count is the answer, and the same
// seed gives the same tasks whatever other kinds are asked.
func TestVisionTasks(t *testing.T) {
	all, err := VisionTasks(VisionKinds, 0, DefaultSeed)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 200 {
		t.Fatalf("%d tasks, want 200", len(all))
	}
	grids, err := VisionTasks([]string{KindGrid}, 3, DefaultSeed)
	if err != nil || len(grids) != 3 || !reflect.DeepEqual(grids[0], all[100]) {
		t.Errorf("grid tasks alone differ from the grid tasks of the full set: %v", err)
	}
	if _, err := VisionTasks([]string{"pie"}, 0, 1); err == nil || !strings.Contains(err.Error(), `unknown vision task kind "pie"`) {
		t.Errorf("unknown kind: %v", err)
	}
	near := func(c color.Color, name string) bool {
		i := slices.Index(colourNames, name)
		r, g, b, _ := c.RGBA()
		for k, v := range []uint32{r >> 8, g >> 8, b >> 8} {
			if d := int(v) - colourBases[i][k]; d < -20 || d > 20 {
				return false
			}
		}
		return true
	}
	decode := func(tk Task) image.Image {
		b, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(tk.Image, "data:image/png;base64,"))
		if err != nil {
			t.Fatal(err)
		}
		img, err := png.Decode(bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		return img
	}
	kinds := map[string]int{}
	for _, tk := range all {
		kinds[kindOf(tk.ID)]++
		img := decode(tk)
		switch kindOf(tk.ID) {
		case KindQuadrant:
			q := slices.Index(quadrantNames, strings.TrimSuffix(strings.TrimPrefix(tk.Question, "What colour is the "), " quadrant?"))
			if img.Bounds().Dx() != 64 || img.Bounds().Dy() != 64 || q < 0 || tk.Check != CheckChoice {
				t.Fatalf("%s: %v, %q", tk.ID, img.Bounds(), tk.Question)
			}
			x, y := 32*(q%2), 32*(q/2)
			for _, p := range [][2]int{{x, y}, {x + 31, y + 31}, {x + 16, y + 5}} {
				if !near(img.At(p[0], p[1]), tk.Answer) {
					t.Fatalf("%s: pixel %v is %v, not %s", tk.ID, p, img.At(p[0], p[1]), tk.Answer)
				}
			}
		case KindGrid:
			var row, col int
			if _, err := fmt.Sscanf(strings.SplitN(tk.Question, "row ", 2)[1], "%d, column %d", &row, &col); err != nil {
				t.Fatalf("%s: %q: %v", tk.ID, tk.Question, err)
			}
			if c := img.At(64*(col-1)+32, 64*(row-1)+32); !near(c, tk.Answer) {
				t.Fatalf("%s: cell (%d,%d) is %v, not %s", tk.ID, row, col, c, tk.Answer)
			}
		case KindCount:
			name := strings.Fields(strings.TrimPrefix(tk.Question, "How many "))[0]
			n := 0
			for s := range 16 {
				if near(img.At(48*(s%4)+24, 48*(s/4)+24), name) {
					n++
				}
			}
			if strconv.Itoa(n) != tk.Answer || n < 1 || n > 6 {
				t.Fatalf("%s: %d %s squares drawn, answer %s", tk.ID, n, name, tk.Answer)
			}
		}
	}
	if kinds[KindQuadrant] != 100 || kinds[KindGrid] != 50 || kinds[KindCount] != 50 {
		t.Errorf("kinds %v", kinds)
	}
}

// TestChoice: a choice answer is right when it names the expected option
// and no other.
func TestChoice(t *testing.T) {
	task := Task{Answer: "red", Check: CheckChoice, Options: colourNames}
	for answer, want := range map[string]bool{
		"red": true, " Red.": true, "The top left quadrant is red.": true, "RED": true,
		"red or blue": false, "reddish": false, "blue": false, "": false, "bl black": false,
	} {
		if got := task.Score(answer); got != want {
			t.Errorf("%q: %v, want %v", answer, got, want)
		}
	}
	if _, err := ReadTasks(strings.NewReader(`{"question":"q","answer":"pink","check":"choice","options":["red","blue"]}`), "t.jsonl"); err == nil || !strings.Contains(err.Error(), `"pink" is not one of "options"`) {
		t.Errorf("an answer outside the options: %v", err)
	}
}
