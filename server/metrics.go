package server

import (
	"cmp"
	"fmt"
	"io"
	"math"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/stepflash/stepflash/backend"
)

// metrics is a small Prometheus text-format (0.0.4) registry: counters,
// gauges read at scrape time, and histograms, each with labels. Hand-written
// rather than client_golang to keep the binary's dependency tree to the
// standard library; it covers exactly what /metrics exposes.
type metrics struct {
	mu     sync.Mutex
	fams   []*family
	gauges []gaugeFunc
}

type family struct {
	name, help, typ string
	labels          []string
	buckets         []float64 // histograms
	series          map[string]*series
}

type series struct {
	labels []string
	value  float64  // counter
	counts []uint64 // histogram: per bucket (non-cumulative)
	sum    float64  // histogram
	count  uint64   // histogram
}

// gaugeFunc is a gauge (or, with typ "counter", a counter kept elsewhere)
// whose values are read when /metrics is scraped.
type gaugeFunc struct {
	name, help string
	typ        string // "" is a gauge
	labels     []string
	read       func() []sample
}

type sample struct {
	labels []string
	value  float64
}

func (m *metrics) counter(name, help string, labels ...string) *family {
	return m.add(&family{name: name, help: help, typ: "counter", labels: labels})
}

func (m *metrics) histogram(name, help string, buckets []float64, labels ...string) *family {
	return m.add(&family{name: name, help: help, typ: "histogram", labels: labels, buckets: buckets})
}

func (m *metrics) gauge(name, help string, read func() []sample, labels ...string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.gauges = append(m.gauges, gaugeFunc{name: name, help: help, labels: labels, read: read})
}

func (m *metrics) add(f *family) *family {
	f.series = map[string]*series{}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.fams = append(m.fams, f)
	return f
}

// family methods lock the registry; they are cheap and rare (per request).
var registryMu sync.Mutex

func (f *family) get(vals []string) *series {
	key := strings.Join(vals, "\xff")
	s := f.series[key]
	if s == nil {
		s = &series{labels: append([]string(nil), vals...)}
		if f.typ == "histogram" {
			s.counts = make([]uint64, len(f.buckets))
		}
		f.series[key] = s
	}
	return s
}

// Add adds v to a counter.
func (f *family) Add(v float64, labels ...string) {
	registryMu.Lock()
	f.get(labels).value += v
	registryMu.Unlock()
}

// Observe records one histogram observation.
func (f *family) Observe(v float64, labels ...string) {
	registryMu.Lock()
	s := f.get(labels)
	for i, b := range f.buckets {
		if v <= b {
			s.counts[i]++
			break
		}
	}
	s.sum += v
	s.count++
	registryMu.Unlock()
}

func (m *metrics) write(w io.Writer) {
	m.mu.Lock()
	fams := append([]*family(nil), m.fams...)
	gauges := append([]gaugeFunc(nil), m.gauges...)
	m.mu.Unlock()
	var b strings.Builder
	for _, g := range gauges {
		fmt.Fprintf(&b, "# HELP %s %s\n# TYPE %s %s\n", g.name, g.help, g.name, cmp.Or(g.typ, "gauge"))
		for _, s := range g.read() {
			fmt.Fprintf(&b, "%s%s %s\n", g.name, labelString(g.labels, s.labels, "", ""), num(s.value))
		}
	}
	registryMu.Lock()
	for _, f := range fams {
		fmt.Fprintf(&b, "# HELP %s %s\n# TYPE %s %s\n", f.name, f.help, f.name, f.typ)
		keys := make([]string, 0, len(f.series))
		for k := range f.series {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			s := f.series[k]
			if f.typ == "counter" {
				fmt.Fprintf(&b, "%s%s %s\n", f.name, labelString(f.labels, s.labels, "", ""), num(s.value))
				continue
			}
			var cum uint64
			for i, ub := range f.buckets {
				cum += s.counts[i]
				fmt.Fprintf(&b, "%s_bucket%s %d\n", f.name, labelString(f.labels, s.labels, "le", num(ub)), cum)
			}
			fmt.Fprintf(&b, "%s_bucket%s %d\n", f.name, labelString(f.labels, s.labels, "le", "+Inf"), s.count)
			fmt.Fprintf(&b, "%s_sum%s %s\n", f.name, labelString(f.labels, s.labels, "", ""), num(s.sum))
			fmt.Fprintf(&b, "%s_count%s %d\n", f.name, labelString(f.labels, s.labels, "", ""), s.count)
		}
	}
	registryMu.Unlock()
	io.WriteString(w, b.String())
}

func labelString(names, vals []string, extraName, extraVal string) string {
	if len(names) == 0 && extraName == "" {
		return ""
	}
	var b strings.Builder
	b.WriteByte('{')
	for i, n := range names {
		if i > 0 {
			b.WriteByte(',')
		}
		v := ""
		if i < len(vals) {
			v = vals[i]
		}
		fmt.Fprintf(&b, "%s=%s", n, escapeLabel(v))
	}
	if extraName != "" {
		if len(names) > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "%s=%s", extraName, escapeLabel(extraVal))
	}
	b.WriteByte('}')
	return b.String()
}

func escapeLabel(v string) string {
	r := strings.NewReplacer(`\`, `\\`, "\n", `\n`, `"`, `\"`)
	return `"` + r.Replace(v) + `"`
}

func num(v float64) string {
	switch {
	case math.IsInf(v, 1):
		return "+Inf"
	case math.IsInf(v, -1):
		return "-Inf"
	case math.IsNaN(v):
		return "NaN"
	}
	return strconv.FormatFloat(v, 'g', -1, 64)
}

// latencyBuckets are seconds, from 5 ms to 5 minutes.
var latencyBuckets = []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300}

// serverMetrics are the series /metrics exposes.
type serverMetrics struct {
	reg              *metrics
	requests         *family // route, code
	requestDuration  *family // route
	ttft             *family // model
	promptTokens     *family // model
	completionTokens *family // model
	cachedTokens     *family // model
	reasoningTokens  *family // model
	generations      *family // model, finish_reason
}

func newServerMetrics(s *Server) *serverMetrics {
	reg := &metrics{}
	m := &serverMetrics{
		reg:              reg,
		requests:         reg.counter("stepflash_http_requests_total", "HTTP requests by route and status code.", "route", "code"),
		requestDuration:  reg.histogram("stepflash_http_request_duration_seconds", "HTTP request latency (to the end of the response or stream).", latencyBuckets, "route"),
		ttft:             reg.histogram("stepflash_time_to_first_token_seconds", "Time from request arrival to the first generated token.", latencyBuckets, "model"),
		promptTokens:     reg.counter("stepflash_prompt_tokens_total", "Prompt tokens processed (cached ones included).", "model"),
		completionTokens: reg.counter("stepflash_completion_tokens_total", "Tokens generated.", "model"),
		cachedTokens:     reg.counter("stepflash_cached_prompt_tokens_total", "Prompt tokens reused from the prefix cache.", "model"),
		reasoningTokens:  reg.counter("stepflash_reasoning_tokens_total", "Generated tokens inside thinking blocks.", "model"),
		generations:      reg.counter("stepflash_generations_total", "Finished choices by finish reason.", "model", "finish_reason"),
	}
	reg.gauge("stepflash_queue_depth", "Requests waiting for a decode slot.", func() []sample {
		var out []sample
		for _, md := range s.modelList() {
			if q, ok := md.Backend.(backend.Queuer); ok {
				out = append(out, sample{labels: []string{md.Name}, value: float64(q.QueueDepth())})
			}
		}
		return out
	}, "model")
	reg.gauge("stepflash_requests_in_flight", "HTTP requests being served.", func() []sample {
		return []sample{{value: float64(s.inFlight.Load())}}
	})
	reg.gauge("stepflash_ready", "1 when every model is loaded.", func() []sample {
		v := 0.0
		if s.Ready() {
			v = 1
		}
		return []sample{{value: v}}
	})
	return m
}

// Counter registers a counter on /metrics and returns the function that
// adds to it, for the parts of a server that live outside this package
// (upstream pools, say).
func (s *Server) Counter(name, help string, labels ...string) func(v float64, labelValues ...string) {
	f := s.metrics.reg.counter(name, help, labels...)
	return f.Add
}

// CounterFunc registers a counter on /metrics whose values read returns
// at each scrape: a count kept elsewhere (an engine's, say), never falling.
func (s *Server) CounterFunc(name, help string, read func() []GaugeSample, labels ...string) {
	s.metrics.reg.mu.Lock()
	defer s.metrics.reg.mu.Unlock()
	s.metrics.reg.gauges = append(s.metrics.reg.gauges, gaugeFunc{name: name, help: help, typ: "counter", labels: labels, read: func() []sample {
		var out []sample
		for _, g := range read() {
			out = append(out, sample{labels: g.Labels, value: g.Value})
		}
		return out
	}})
}

// GaugeSample is one value of a gauge, with its label values.
type GaugeSample struct {
	Labels []string
	Value  float64
}

// Gauge registers a gauge on /metrics whose values read returns at each
// scrape.
func (s *Server) Gauge(name, help string, read func() []GaugeSample, labels ...string) {
	s.metrics.reg.gauge(name, help, func() []sample {
		var out []sample
		for _, g := range read() {
			out = append(out, sample{labels: g.Labels, value: g.Value})
		}
		return out
	}, labels...)
}
