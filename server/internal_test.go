package server

import (
	"strings"
	"testing"
)

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
