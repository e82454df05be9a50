package advisor

import (
	"math"
	"regexp"
	"slices"
	"strings"

	"github.com/stepflash/stepflash/api"
)

// failure matches the text of a tool result that reports a failure: a
// non-zero exit status, a traceback or panic, or an "error:"-style line.
// It looks for what tools and shells print, not for the word "error"
// anywhere ("0 errors" and "no error" do not match).
var failure = regexp.MustCompile(`(?im)` + strings.Join([]string{
	`\bexit(ed)?( with)?( code| status)?[:= ]+\s*[1-9][0-9]*\b`,
	`"(exit_?code|returncode|exitCode)"\s*:\s*[1-9]`,
	`"(status_?code|statusCode|http_status)"\s*:\s*[45][0-9][0-9]\b`,
	`^\s*traceback \(most recent call last\)`,
	`^\s*(error|fatal|panic|exception)\b\s*[:!]`,
	`^\s*[A-Za-z_.]*(Error|Exception)\s*:`,
	`\bcommand not found\b`,
	`^\s*FAIL\b`,
	`\bfailed with\b`,
	`"(is_)?error"\s*:\s*(true|"[^"]+")`,
}, "|"))

// Failing reports whether a tool result's text reports a failure.
func Failing(text string) bool { return failure.MatchString(text) }

// text is a message's content as plain text (text parts joined).
func text(c api.MessageContent) string {
	if !c.IsParts {
		return c.Text
	}
	var b strings.Builder
	for _, p := range c.Parts {
		if p.Type == "text" {
			b.WriteString(p.Text)
			b.WriteByte('\n')
		}
	}
	return b.String()
}

// TrailingFailures counts the tool results at the end of the conversation
// (since its last user message) that report a failure, going back from the
// latest until one succeeded: the agent's current run of failures. A tool
// call repeated with the same arguments and the same failing result counts
// each time, so a loop that repeats itself escalates as soon as it repeats.
func TrailingFailures(msgs []api.Message) int {
	n := 0
	for i := len(msgs) - 1; i >= 0; i-- {
		m := msgs[i]
		switch m.Role {
		case "user":
			return n
		case "tool", "function":
			if !Failing(text(m.Content)) {
				return n
			}
			n++
		}
	}
	return n
}

// Quantile is the q-quantile (0 ≤ q ≤ 1) of xs by the nearest-rank method
// (the smallest x with at least q of the values at or below it); NaN for
// no values.
func Quantile(xs []float64, q float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	k := int(math.Ceil(q*float64(len(s)))) - 1
	return s[max(0, min(k, len(s)-1))]
}
