package doctor

import "strings"

// defaultModel is the name checked when --model is not given and the
// endpoint serves it (DESIGN.md: serve's alias for its first model).
const defaultModel = "step-3.7-flash"

// closest returns the served name that name most likely meant, or "" when
// none is close: the same name in another case; the same name with or
// without a vendor prefix ("stepfun/step-3.7-flash" against
// "step-3.7-flash", OpenRouter's form against StepFun's); a name that
// starts with the other; else the nearest by edit distance, when it is
// within a quarter of the name's length (at least 2 edits). Ties go to the
// name nearest as written (vendor prefix and all), then to the one listed
// first.
func closest(name string, served []string) string {
	if name == "" || len(served) == 0 {
		return ""
	}
	lower := strings.ToLower(name)
	for _, s := range served {
		if strings.ToLower(s) == lower {
			return s
		}
	}
	bare := stripVendor(lower)
	for _, s := range served {
		if stripVendor(strings.ToLower(s)) == bare {
			return s
		}
	}
	if len(bare) >= 3 {
		best := ""
		for _, s := range served {
			b := stripVendor(strings.ToLower(s))
			if (strings.HasPrefix(b, bare) || strings.HasPrefix(bare, b)) && len(b) >= 3 &&
				(best == "" || absDiff(len(b), len(bare)) < absDiff(len(stripVendor(strings.ToLower(best))), len(bare))) {
				best = s
			}
		}
		if best != "" {
			return best
		}
	}
	// Nearest without vendor prefixes; between equals, nearest as written.
	best, bestD, bestFull := "", -1, 0
	for _, s := range served {
		d := editDistance(bare, stripVendor(strings.ToLower(s)))
		full := editDistance(lower, strings.ToLower(s))
		if bestD < 0 || d < bestD || (d == bestD && full < bestFull) {
			best, bestD, bestFull = s, d, full
		}
	}
	if bestD <= max(2, len(bare)/4) {
		return best
	}
	return ""
}

// stripVendor drops a "vendor/" prefix.
func stripVendor(s string) string {
	if i := strings.LastIndexByte(s, '/'); i >= 0 {
		return s[i+1:]
	}
	return s
}

func absDiff(a, b int) int {
	if a > b {
		return a - b
	}
	return b - a
}

// editDistance is the Levenshtein distance of a and b, in bytes.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
