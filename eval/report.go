package eval

import (
	"bytes"
	"fmt"
	"html"
	"io"
	"math"
	"strconv"
	"strings"
	"text/tabwriter"
)

// pct formats a share as a percentage.
func pct(x float64) string { return strconv.FormatFloat(100*x, 'f', 1, 64) + "%" }

// usd formats a cost.
func usd(x float64) string {
	if x == 0 {
		return "$0"
	}
	return "$" + strconv.FormatFloat(x, 'g', 3, 64)
}

// costNote says where the costs come from.
func (res *Results) costNote() string {
	switch res.Summary.CostSource {
	case "usage":
		return "costs: the endpoint's usage.cost"
	case "prices":
		p := res.Config.Prices
		return fmt.Sprintf("costs: computed from the token counts at %s (USD per 1M tokens: input %g, cached input %g, output %g; reasoning bills as output); the endpoint reports no usage.cost",
			res.Config.PricesSource, p.InputMiss, p.InputHit, p.Output)
	case "mixed":
		return "costs: the endpoint's usage.cost where it reported one, else computed from the token counts"
	}
	return "costs: none (no usage came back)"
}

// header is the run's one-line description.
func (res *Results) header() string {
	c := res.Config
	var eps []string
	for _, e := range c.Endpoints {
		eps = append(eps, e.Model+" at "+e.BaseURL)
	}
	temp := "the endpoint's default temperature"
	if c.Temperature != nil {
		temp = "temperature " + strconv.FormatFloat(*c.Temperature, 'g', -1, 64)
	}
	if c.Seed != nil {
		temp += fmt.Sprintf(", seed %d+pass-1", *c.Seed)
	}
	items := ""
	if len(res.Summary.Arms) > 0 {
		unit := "tasks"
		if c.Suite == SuiteAdvisor {
			unit = "steps of one agent loop (score: steps solved)"
		}
		items = fmt.Sprintf(" x %d %s", res.Summary.Arms[0].Items, unit)
	}
	s := fmt.Sprintf("%s: %s; %d passes%s; %s", c.Suite, strings.Join(eps, " vs "), c.Passes, items, temp)
	if !res.Complete {
		s += " (INCOMPLETE: the run stopped early; rerun with the same --out to finish it)"
	}
	return s
}

// WriteText prints the plain-text summary table.
func (res *Results) WriteText(w io.Writer) {
	s := res.Summary
	fmt.Fprintln(w, res.header())
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	first := "arm"
	if res.Config.Suite == SuiteEffort {
		first = "tier"
	}
	fmt.Fprintf(tw, "%s\tscore\tmin–max\tper pass\tttft ms\ttotal ms\tprompt\tcached\tcompletion\treasoning\tcost/item\tcost total\terrors\t", first)
	if res.Config.Suite == SuiteAdvisor {
		fmt.Fprint(tw, "escalations\t")
	}
	if res.Config.Suite == SuiteVision {
		fmt.Fprint(tw, "image\t")
	}
	fmt.Fprintln(tw)
	for _, a := range s.Arms {
		var pp []string
		for _, x := range a.PassScores {
			pp = append(pp, strconv.FormatFloat(100*x, 'f', 0, 64))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s–%s\t%s\t%.0f\t%.0f\t%.1f\t%.1f\t%.1f\t%.1f\t%s\t%s\t%d\t", a.Label, pct(a.Mean), pct(a.Min), pct(a.Max),
			strings.Join(pp, " "), a.TTFTMs, a.TotalMs, a.Prompt, a.Cached, a.Completion, a.Reasoning, usd(a.CostPerItem), usd(a.CostTotal), a.Errors)
		if res.Config.Suite == SuiteAdvisor {
			fmt.Fprintf(tw, "%d\t", a.Escalations)
		}
		if res.Config.Suite == SuiteVision {
			fmt.Fprintf(tw, "%.1f\t", a.Image)
		}
		fmt.Fprintln(tw)
	}
	tw.Flush()
	if res.Config.Suite == SuiteVision {
		fmt.Fprintln(w, "latency and tokens are per task (the tool-chained arm's captioning call and answer added); score by kind:")
		for _, a := range s.Arms {
			fmt.Fprintf(w, "  %s: %s\n", a.Label, kindsText(a.Kinds))
		}
	}
	if p := s.Paired; p != nil {
		fmt.Fprintln(w, p.sentence())
	}
	if len(s.Steps) > 0 {
		fmt.Fprintln(w, "cost per step (mean over loops), by arm:")
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprint(tw, "step\t")
		arms, _ := armOrder(&res.Config)
		for _, a := range res.Summary.Arms {
			fmt.Fprintf(tw, "%s\tesc.\t", a.Label)
		}
		fmt.Fprintln(tw)
		for step := 1; step <= res.Config.Steps; step++ {
			fmt.Fprintf(tw, "%d\t", step)
			for _, arm := range arms {
				for _, sc := range s.Steps {
					if sc.Arm == arm && sc.Step == step {
						fmt.Fprintf(tw, "%s\t%.2f\t", usd(sc.Cost), sc.Escalations)
					}
				}
			}
			fmt.Fprintln(tw)
		}
		tw.Flush()
	}
	fmt.Fprintln(w, res.costNote())
	for _, n := range res.Notes {
		fmt.Fprintln(w, "note: "+n)
	}
	fmt.Fprintf(w, "%d calls recorded (%d made now, %d from an earlier run)\n", len(res.Calls), res.Made, res.Skipped)
}

// kindsText is "quadrant 100.0% (40/40), grid ...".
func kindsText(ks []KindScore) string {
	var parts []string
	for _, k := range ks {
		parts = append(parts, fmt.Sprintf("%s %s (%d/%d)", k.Kind, pct(k.Score), k.Right, k.Asked))
	}
	return strings.Join(parts, ", ")
}

// sentence states the comparison.
func (p *Paired) sentence() string {
	sig := "the interval includes 0: no significant difference"
	if p.Significant {
		better := p.A
		if p.MeanDiff < 0 {
			better = p.B
		}
		sig = "the interval excludes 0: " + better + " is better"
	}
	return fmt.Sprintf("%s − %s: mean paired difference %+.1f points, 95%% CI [%+.1f, %+.1f] (%s, %d tasks; tasks better for %s: %d, for %s: %d); %s",
		p.A, p.B, 100*p.MeanDiff, 100*p.CILow, 100*p.CIHigh, p.Method, p.Tasks, p.A, p.AWins, p.B, p.BWins, sig)
}

// point is one datum of a plot.
type point struct {
	Series int
	X, Y   float64
	// Lo, Hi draw a vertical bar when Bar is set.
	Lo, Hi float64
	Bar    bool
	Label  string
}

// plot is a scatter plot drawn as inline SVG.
type plot struct {
	ID, Title, XLabel, YLabel string
	Series                    []string
	Points                    []point
	// XCats labels integer x positions 1..n instead of a numeric axis.
	XCats []string
	// YPct formats the y axis as percentages; Zero draws y = 0.
	YPct, Zero bool
	XFmt       func(float64) string
}

var palette = []string{"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"}

// niceTicks returns about n round tick values covering [lo, hi].
func niceTicks(lo, hi float64, n int) []float64 {
	if span := math.Max(math.Abs(lo), math.Abs(hi)); hi-lo <= 1e-9*span || hi <= lo {
		// A range too narrow to divide (equal values, rounding noise).
		d := math.Max(span*0.1, 1e-12)
		lo, hi = lo-d, hi+d
	}
	step := (hi - lo) / float64(n)
	mag := math.Pow(10, math.Floor(math.Log10(step)))
	for _, m := range []float64{1, 2, 2.5, 5, 10} {
		if step <= m*mag {
			step = m * mag
			break
		}
	}
	start := math.Floor(lo/step) * step
	var ts []float64
	for i := 0; i <= 4*n; i++ {
		v := start + float64(i)*step
		if v > hi+step*1e-9 {
			break
		}
		ts = append(ts, v)
	}
	return ts
}

func fmtTick(v float64) string {
	if v == 0 {
		return "0"
	}
	return strconv.FormatFloat(v, 'g', 3, 64)
}

// svg draws the plot.
func (p plot) svg() string {
	const W, H, L, R, T, B = 560.0, 320.0, 70.0, 150.0, 30.0, 50.0
	var xlo, xhi, ylo, yhi float64
	first := true
	for _, pt := range p.Points {
		lo, hi := pt.Y, pt.Y
		if pt.Bar {
			lo, hi = math.Min(lo, pt.Lo), math.Max(hi, pt.Hi)
		}
		if first {
			xlo, xhi, ylo, yhi, first = pt.X, pt.X, lo, hi, false
			continue
		}
		xlo, xhi = math.Min(xlo, pt.X), math.Max(xhi, pt.X)
		ylo, yhi = math.Min(ylo, lo), math.Max(yhi, hi)
	}
	if p.YPct {
		ylo, yhi = 0, math.Max(1, yhi)
	}
	if p.Zero {
		ylo, yhi = math.Min(ylo, 0), math.Max(yhi, 0)
	}
	if len(p.XCats) > 0 {
		xlo, xhi = 0.5, float64(len(p.XCats))+0.5
	} else {
		pad := (xhi - xlo) * 0.1
		if pad <= 1e-9*math.Abs(xhi) {
			pad = math.Max(math.Abs(xhi)*0.1, 1e-12)
		}
		xlo, xhi = math.Max(0, xlo-pad), xhi+pad
		if xlo < 0 {
			xlo = 0
		}
	}
	if yhi-ylo <= 1e-9*math.Max(math.Abs(ylo), math.Abs(yhi)) {
		d := math.Max(math.Abs(yhi)*0.1, 1e-12)
		ylo, yhi = ylo-d, yhi+d
	}
	yticks := niceTicks(ylo, yhi, 5)
	ylo, yhi = math.Min(ylo, yticks[0]), math.Max(yhi, yticks[len(yticks)-1])
	sx := func(x float64) float64 { return L + (x-xlo)/(xhi-xlo)*(W-L-R) }
	sy := func(y float64) float64 { return H - B - (y-ylo)/(yhi-ylo)*(H-T-B) }
	var b strings.Builder
	e := html.EscapeString
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" class="plot" id="%s" width="%g" height="%g" viewBox="0 0 %g %g" role="img">`+"\n", e(p.ID), W, H, W, H)
	fmt.Fprintf(&b, `<title>%s</title>`+"\n", e(p.Title))
	fmt.Fprintf(&b, `<text x="%g" y="18" class="ptitle">%s</text>`+"\n", L, e(p.Title))
	fmt.Fprintf(&b, `<line class="axis" x1="%g" y1="%g" x2="%g" y2="%g"/>`+"\n", L, H-B, W-R, H-B)
	fmt.Fprintf(&b, `<line class="axis" x1="%g" y1="%g" x2="%g" y2="%g"/>`+"\n", L, T, L, H-B)
	for _, t := range yticks {
		lbl := fmtTick(t)
		if p.YPct {
			lbl = strconv.FormatFloat(100*t, 'f', 0, 64) + "%"
		}
		fmt.Fprintf(&b, `<line class="grid" x1="%g" y1="%.1f" x2="%g" y2="%.1f"/><text class="tick" x="%g" y="%.1f" text-anchor="end">%s</text>`+"\n",
			L, sy(t), W-R, sy(t), L-6, sy(t)+4, e(lbl))
	}
	if len(p.XCats) > 0 {
		for i, c := range p.XCats {
			fmt.Fprintf(&b, `<text class="tick" x="%.1f" y="%g" text-anchor="middle">%s</text>`+"\n", sx(float64(i+1)), H-B+16, e(c))
		}
	} else {
		f := p.XFmt
		if f == nil {
			f = fmtTick
		}
		for _, t := range niceTicks(xlo, xhi, 5) {
			if t < xlo || t > xhi {
				continue
			}
			fmt.Fprintf(&b, `<text class="tick" x="%.1f" y="%g" text-anchor="middle">%s</text>`+"\n", sx(t), H-B+16, e(f(t)))
		}
	}
	if p.Zero {
		fmt.Fprintf(&b, `<line class="zero" x1="%g" y1="%.1f" x2="%g" y2="%.1f"/>`+"\n", L, sy(0), W-R, sy(0))
	}
	fmt.Fprintf(&b, `<text class="label" x="%g" y="%g" text-anchor="middle">%s</text>`+"\n", (L+W-R)/2, H-10, e(p.XLabel))
	fmt.Fprintf(&b, `<text class="label" x="16" y="%g" text-anchor="middle" transform="rotate(-90 16 %g)">%s</text>`+"\n", (T+H-B)/2, (T+H-B)/2, e(p.YLabel))
	for _, pt := range p.Points {
		col := palette[pt.Series%len(palette)]
		if pt.Bar {
			fmt.Fprintf(&b, `<line class="errbar" x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s"/>`+"\n", sx(pt.X), sy(pt.Lo), sx(pt.X), sy(pt.Hi), col)
		}
		fmt.Fprintf(&b, `<circle class="point" data-series="%s" data-x="%g" data-y="%g" cx="%.1f" cy="%.1f" r="5" fill="%s"><title>%s</title></circle>`+"\n",
			e(p.Series[pt.Series]), pt.X, pt.Y, sx(pt.X), sy(pt.Y), col, e(pt.Label))
	}
	for i, s := range p.Series {
		y := T + 10 + float64(i)*18
		fmt.Fprintf(&b, `<rect class="key" x="%g" y="%g" width="10" height="10" fill="%s"/><text class="keytext" x="%g" y="%g">%s</text>`+"\n",
			W-R+12, y-9, palette[i%len(palette)], W-R+28, y, e(s))
	}
	b.WriteString("</svg>\n")
	return b.String()
}

// plots are the report's plots for the suite.
func (res *Results) plots() []plot {
	s := res.Summary
	var labels []string
	for _, a := range s.Arms {
		labels = append(labels, a.Label)
	}
	var passCats []string
	for i := 1; i <= res.Config.Passes; i++ {
		passCats = append(passCats, strconv.Itoa(i))
	}
	lat := plot{ID: "score-latency", Title: "Score vs latency (mean over passes; bar: min–max over passes)", XLabel: "mean total latency per call (ms)",
		YLabel: "score", Series: labels, YPct: true}
	cost := plot{ID: "score-cost", Title: "Score vs cost (mean over passes; bar: min–max over passes)", XLabel: "cost per item (USD)",
		YLabel: "score", Series: labels, YPct: true, XFmt: func(v float64) string { return strconv.FormatFloat(v, 'g', 2, 64) }}
	passes := plot{ID: "pass-scores", Title: "Score of each pass (the spread one run hides)", XLabel: "pass", YLabel: "score",
		Series: labels, YPct: true, XCats: passCats}
	for i, a := range s.Arms {
		lbl := fmt.Sprintf("%s: %s (%s–%s)", a.Label, pct(a.Mean), pct(a.Min), pct(a.Max))
		lat.Points = append(lat.Points, point{Series: i, X: a.TotalMs, Y: a.Mean, Lo: a.Min, Hi: a.Max, Bar: true, Label: lbl + fmt.Sprintf(", %.0f ms", a.TotalMs)})
		cost.Points = append(cost.Points, point{Series: i, X: a.CostPerItem, Y: a.Mean, Lo: a.Min, Hi: a.Max, Bar: true, Label: lbl + ", " + usd(a.CostPerItem)})
		for p, sc := range a.PassScores {
			passes.Points = append(passes.Points, point{Series: i, X: float64(p+1) + 0.08*float64(i) - 0.04*float64(len(s.Arms)-1), Y: sc,
				Label: fmt.Sprintf("%s pass %d: %s", a.Label, p+1, pct(sc))})
		}
	}
	out := []plot{lat, cost, passes}
	if res.Config.Suite == SuiteVision && len(res.Config.Kinds) > 0 {
		kp := plot{ID: "score-kinds", Title: "Score by kind of image task (over every pass)", XLabel: "task kind", YLabel: "score",
			Series: labels, YPct: true, XCats: res.Config.Kinds}
		for i, a := range s.Arms {
			for j, k := range a.Kinds {
				kp.Points = append(kp.Points, point{Series: i, X: float64(j+1) + 0.08*float64(i) - 0.04*float64(len(s.Arms)-1), Y: k.Score,
					Label: fmt.Sprintf("%s, %s: %s (%d/%d)", a.Label, k.Kind, pct(k.Score), k.Right, k.Asked)})
			}
		}
		out = append(out, kp)
	}
	if p := s.Paired; p != nil {
		d := plot{ID: "paired-diffs", Title: "Paired difference " + p.A + " − " + p.B + " (points: passes; last: mean with 95% CI)",
			XLabel: "pass", YLabel: "difference in score", Series: []string{"per pass", "mean, 95% CI"}, Zero: true,
			XCats: append(append([]string{}, passCats[:len(p.PassDiffs)]...), "mean")}
		for i, v := range p.PassDiffs {
			d.Points = append(d.Points, point{Series: 0, X: float64(i + 1), Y: v, Label: fmt.Sprintf("pass %d: %+.1f points", i+1, 100*v)})
		}
		d.Points = append(d.Points, point{Series: 1, X: float64(len(p.PassDiffs) + 1), Y: p.MeanDiff, Lo: p.CILow, Hi: p.CIHigh, Bar: true,
			Label: fmt.Sprintf("mean %+.1f points, 95%% CI [%+.1f, %+.1f]", 100*p.MeanDiff, 100*p.CILow, 100*p.CIHigh)})
		d.YPct = false
		out = append(out, d)
	}
	if len(s.Steps) > 0 {
		arms, _ := armOrder(&res.Config)
		var cats []string
		for i := 1; i <= res.Config.Steps; i++ {
			cats = append(cats, strconv.Itoa(i))
		}
		st := plot{ID: "cost-per-step", Title: "Cost per loop step (mean over loops and passes)", XLabel: "step", YLabel: "cost (USD)",
			Series: labels, XCats: cats}
		for _, sc := range s.Steps {
			i := 0
			for j, a := range arms {
				if a == sc.Arm {
					i = j
				}
			}
			st.Points = append(st.Points, point{Series: i, X: float64(sc.Step) + 0.1*float64(i) - 0.1, Y: sc.Cost,
				Label: fmt.Sprintf("%s step %d: %s, %.2f escalations, %.2f calls", labels[i], sc.Step, usd(sc.Cost), sc.Escalations, sc.Calls)})
		}
		out = append(out, st)
	}
	return out
}

const css = `body{font:14px/1.4 system-ui,sans-serif;margin:2em;max-width:1100px;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}
th:first-child,td:first-child{text-align:left}svg.plot{display:inline-block;margin:.5em;background:#fff;border:1px solid #eee}
.axis{stroke:#333}.grid{stroke:#eee}.zero{stroke:#888;stroke-dasharray:4 3}.errbar{stroke-width:2}
.tick{font-size:11px;fill:#555}.label{font-size:12px;fill:#333}.ptitle{font-size:13px;font-weight:600}.keytext{font-size:12px}
.note{color:#555}code{background:#f4f4f4;padding:0 3px}`

// HTML is the self-contained report: tables and inline SVG plots, no
// scripts or outside resources, well-formed XML (XHTML) so that it can be
// checked with an XML parser.
func (res *Results) HTML() ([]byte, error) {
	var b bytes.Buffer
	e := html.EscapeString
	b.WriteString("<!DOCTYPE html>\n<html xmlns=\"http://www.w3.org/1999/xhtml\" lang=\"en\">\n<head><meta charset=\"utf-8\"/>\n")
	fmt.Fprintf(&b, "<title>stepflash eval %s</title>\n<style>%s</style>\n</head>\n<body>\n", e(res.Config.Suite), css)
	fmt.Fprintf(&b, "<h1>stepflash eval: %s</h1>\n<p>%s</p>\n", e(res.Config.Suite), e(res.header()))
	fmt.Fprintf(&b, "<p>tasks: %s; %s.</p>\n", e(res.Config.TasksSource), e(res.costNote()))
	b.WriteString(`<table id="summary"><tr><th>arm</th><th>score</th><th>min–max</th><th>per pass</th><th>TTFT ms</th><th>total ms</th><th>prompt</th><th>cached</th><th>completion</th><th>reasoning</th><th>cost/item</th><th>cost total</th><th>errors</th><th>escalations</th><th>image tokens</th></tr>` + "\n")
	for _, a := range res.Summary.Arms {
		var pp []string
		for _, x := range a.PassScores {
			pp = append(pp, pct(x))
		}
		fmt.Fprintf(&b, "<tr><td>%s</td><td>%s</td><td>%s–%s</td><td>%s</td><td>%.0f</td><td>%.0f</td><td>%.1f</td><td>%.1f</td><td>%.1f</td><td>%.1f</td><td>%s</td><td>%s</td><td>%d</td><td>%d</td><td>%.1f</td></tr>\n",
			e(a.Label), pct(a.Mean), pct(a.Min), pct(a.Max), e(strings.Join(pp, " ")), a.TTFTMs, a.TotalMs, a.Prompt, a.Cached, a.Completion, a.Reasoning,
			usd(a.CostPerItem), usd(a.CostTotal), a.Errors, a.Escalations, a.Image)
	}
	b.WriteString("</table>\n")
	if res.Config.Suite == SuiteVision {
		b.WriteString("<p>Latency and tokens are per task: the tool-chained arm's captioning call and its answer added; its time to first token is the caption's whole time plus the answer's first token.</p>\n<table id=\"kinds\"><tr><th>arm</th>")
		for _, k := range res.Config.Kinds {
			fmt.Fprintf(&b, "<th>%s</th>", e(k))
		}
		b.WriteString("</tr>\n")
		for _, a := range res.Summary.Arms {
			fmt.Fprintf(&b, "<tr><td>%s</td>", e(a.Label))
			for _, k := range a.Kinds {
				fmt.Fprintf(&b, "<td>%s (%d/%d)</td>", pct(k.Score), k.Right, k.Asked)
			}
			b.WriteString("</tr>\n")
		}
		b.WriteString("</table>\n")
	}
	if p := res.Summary.Paired; p != nil {
		fmt.Fprintf(&b, "<p id=\"paired\">%s</p>\n", e(p.sentence()))
	}
	for _, n := range res.Notes {
		fmt.Fprintf(&b, "<p class=\"note\">note: %s</p>\n", e(n))
	}
	b.WriteString("<div id=\"plots\">\n")
	for _, p := range res.plots() {
		b.WriteString(p.svg())
	}
	b.WriteString("</div>\n")
	fmt.Fprintf(&b, "<p class=\"note\">%d calls recorded; every call is in results.json. Written by stepflash eval.</p>\n</body>\n</html>\n", len(res.Calls))
	return b.Bytes(), nil
}
