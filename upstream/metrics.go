package upstream

// Metrics receives a pool's events, for the server's /metrics; a nil
// *Metrics, or a nil field, records nothing.
type Metrics struct {
	// Request counts requests by upstream and outcome: "ok", "retried"
	// (failed before answering; another upstream was tried) or "failed".
	Request func(model, upstream, outcome string)
	// Ejected counts upstreams taken out after failures.
	Ejected func(model, upstream string)
}

func (m *Metrics) request(model, upstream, outcome string) {
	if m != nil && m.Request != nil {
		m.Request(model, upstream, outcome)
	}
}

func (m *Metrics) ejected(model, upstream string) {
	if m != nil && m.Ejected != nil {
		m.Ejected(model, upstream)
	}
}
