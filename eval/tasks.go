package eval

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode"
)

// Task is one question with a checkable answer.
type Task struct {
	ID       string `json:"id"`
	Question string `json:"question"`
	Answer   string `json:"answer"`
	// Check is how an answer is scored: exact (the default: the trimmed
	// text equals Answer), numeric (the last number in the text is within
	// Tolerance of Answer's) or json (the text holds a JSON object whose
	// fields include every field of Answer, a JSON object, with equal values)
	// or choice (the answer names Answer and no other of Options, as a word,
	// case ignored: "The top left quadrant is red." is right for red).
	Check     string  `json:"check,omitempty"`
	Tolerance float64 `json:"tolerance,omitempty"`
	// Options are a choice check's possible answers (Answer among them).
	Options []string `json:"options,omitempty"`
	// Image is a data: URL sent with the question (vision tasks).
	Image string `json:"image,omitempty"`
}

// The checks a task may name.
const (
	CheckExact   = "exact"
	CheckNumeric = "numeric"
	CheckJSON    = "json"
	CheckChoice  = "choice"
)

// AdditionTasks makes n problems "What is A + B?" as the trained addition
// models of ../shared/models/trained saw them: A and B independent, each
// 2 to 5 digits (the length uniform, then the number uniform among those
// of that length, so no leading zero). The same seed gives the same tasks.
func AdditionTasks(n int, seed uint64) []Task {
	r := rand.New(rand.NewPCG(seed, 0x5eed))
	num := func() int {
		l := 2 + r.IntN(4)
		lo := int(math.Pow10(l - 1))
		return lo + r.IntN(9*lo)
	}
	ts := make([]Task, n)
	for i := range ts {
		a, b := num(), num()
		ts[i] = Task{ID: fmt.Sprintf("add-%03d", i+1), Question: fmt.Sprintf("What is %d + %d?", a, b), Answer: strconv.Itoa(a + b)}
	}
	return ts
}

// DefaultSeed seeds the embedded addition task set.
const DefaultSeed = 13

// ReadTasks reads JSONL tasks: {"question","answer"[,"id","check","tolerance","image"]}
// per line (blank lines skipped). A line without an id gets its line number.
func ReadTasks(r io.Reader, name string) ([]Task, error) {
	var ts []Task
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	line := 0
	seen := map[string]int{}
	for sc.Scan() {
		line++
		s := strings.TrimSpace(sc.Text())
		if s == "" {
			continue
		}
		var raw map[string]json.RawMessage
		if err := json.Unmarshal([]byte(s), &raw); err != nil {
			return nil, fmt.Errorf("%s:%d: not a JSON object: %v", name, line, err)
		}
		var aux struct {
			Task
			Answer json.RawMessage `json:"answer"`
		}
		if err := json.Unmarshal([]byte(s), &aux); err != nil {
			return nil, fmt.Errorf("%s:%d: %v", name, line, err)
		}
		t := aux.Task
		// An answer may be a JSON value rather than a string (json checks).
		if a := aux.Answer; len(a) > 0 && a[0] != '"' {
			t.Answer = string(a)
		} else if len(a) > 0 {
			json.Unmarshal(a, &t.Answer)
		}
		if t.Question == "" {
			return nil, fmt.Errorf("%s:%d: no \"question\"", name, line)
		}
		if _, ok := raw["answer"]; !ok {
			return nil, fmt.Errorf("%s:%d: no \"answer\"", name, line)
		}
		switch t.Check {
		case "":
			t.Check = CheckExact
		case CheckExact:
		case CheckNumeric:
			if _, ok := parseNumber(t.Answer); !ok {
				return nil, fmt.Errorf("%s:%d: check numeric, but the answer %q is not a number", name, line, t.Answer)
			}
		case CheckJSON:
			var v map[string]any
			if json.Unmarshal([]byte(t.Answer), &v) != nil {
				return nil, fmt.Errorf("%s:%d: check json, but the answer is not a JSON object: %s", name, line, t.Answer)
			}
		case CheckChoice:
			if !slices.ContainsFunc(t.Options, func(o string) bool { return strings.EqualFold(o, t.Answer) }) {
				return nil, fmt.Errorf("%s:%d: check choice, but the answer %q is not one of \"options\" %q", name, line, t.Answer, t.Options)
			}
		default:
			return nil, fmt.Errorf("%s:%d: check %q: want exact, numeric, json or choice", name, line, t.Check)
		}
		if t.Tolerance < 0 {
			return nil, fmt.Errorf("%s:%d: tolerance %g is negative", name, line, t.Tolerance)
		}
		if t.ID == "" {
			t.ID = fmt.Sprintf("line-%d", line)
		}
		if prev, dup := seen[t.ID]; dup {
			return nil, fmt.Errorf("%s:%d: id %q already used on line %d", name, line, t.ID, prev)
		}
		seen[t.ID] = line
		ts = append(ts, t)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %v", name, err)
	}
	if len(ts) == 0 {
		return nil, fmt.Errorf("%s: no tasks", name)
	}
	return ts, nil
}

// ReadTasksFile reads a JSONL task file.
func ReadTasksFile(path string) ([]Task, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return ReadTasks(f, path)
}

// FinalAnswer is the answer part of a reply: the text after the last
// </think> (a model whose reasoning the endpoint did not split off), with
// <|im_end|> and surrounding space removed.
func FinalAnswer(content string) string {
	if i := strings.LastIndex(content, "</think>"); i >= 0 {
		content = content[i+len("</think>"):]
	}
	content = strings.ReplaceAll(content, "<|im_end|>", "")
	return strings.TrimSpace(content)
}

// Score reports whether answer (already FinalAnswer) is right for t.
func (t Task) Score(answer string) bool {
	switch t.Check {
	case CheckNumeric:
		want, _ := parseNumber(t.Answer)
		got, ok := lastNumber(answer)
		return ok && math.Abs(got-want) <= t.Tolerance
	case CheckJSON:
		var want map[string]any
		if json.Unmarshal([]byte(t.Answer), &want) != nil {
			return false
		}
		got := firstJSONObject(answer)
		if got == nil {
			return false
		}
		for k, v := range want {
			if !reflect.DeepEqual(got[k], v) {
				return false
			}
		}
		return true
	case CheckChoice:
		named := map[string]bool{}
		for _, w := range strings.FieldsFunc(strings.ToLower(answer), func(r rune) bool { return !unicode.IsLetter(r) && !unicode.IsDigit(r) }) {
			named[w] = true
		}
		for _, o := range t.Options {
			if named[strings.ToLower(o)] != strings.EqualFold(o, t.Answer) {
				return false
			}
		}
		return named[strings.ToLower(t.Answer)]
	}
	return strings.TrimSpace(answer) == strings.TrimSpace(t.Answer)
}

var numberRE = regexp.MustCompile(`-?\d[\d,]*(\.\d+)?([eE][-+]?\d+)?|-?\.\d+`)

func parseNumber(s string) (float64, bool) {
	v, err := strconv.ParseFloat(strings.ReplaceAll(strings.TrimSpace(s), ",", ""), 64)
	return v, err == nil
}

// lastNumber is the last number written in s (commas as thousands
// separators allowed).
func lastNumber(s string) (float64, bool) {
	m := numberRE.FindAllString(s, -1)
	if len(m) == 0 {
		return 0, false
	}
	return parseNumber(m[len(m)-1])
}

// firstJSONObject is the first JSON object in s (a reply may wrap it in
// prose or a code fence); nil when there is none.
func firstJSONObject(s string) map[string]any {
	for i := strings.IndexByte(s, '{'); i >= 0; {
		dec := json.NewDecoder(strings.NewReader(s[i:]))
		var v map[string]any
		if dec.Decode(&v) == nil {
			return v
		}
		j := strings.IndexByte(s[i+1:], '{')
		if j < 0 {
			break
		}
		i += 1 + j
	}
	return nil
}
