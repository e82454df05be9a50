package server

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/stepflash/stepflash/api"
	"github.com/stepflash/stepflash/chat"
	"github.com/stepflash/stepflash/engine"
)

// job is one validated generation request: n choices per prompt, run
// concurrently on the engine, assembled into a response or a stream.
type job struct {
	s         *Server
	m         *Model
	isChat    bool
	id        string
	created   int64
	model     string // the name the client asked for
	prompts   [][]int32
	echo      []string // completions: text prepended to each prompt's choices
	base      engine.Request
	sp        sampling
	effort    engine.AppliedEffort
	stream    bool
	usage     bool // stream_options.include_usage
	start     time.Time
	chatSetup chatSetup
}

// chatSetup is how a chat reply is parsed.
type chatSetup struct {
	family           chat.Family
	startsInThinking bool
	prefill          string // text the prompt already holds of the reply (forced tool call)
	singleCall       bool   // parallel_tool_calls false: stop after the first call
	newID            func() string
}

// event is what one choice reports to the response writer.
type event struct {
	choice   int
	deltas   []chat.Delta
	logprobs []engine.Token
	final    bool
	finish   string
	res      *engine.Result
	err      error
}

// processor turns one choice's tokens into deltas: stop strings first, then
// (for chat) reasoning and tool-call parsing.
type processor struct {
	j      *job
	stop   stopMatcher
	parser *chat.StreamParser
	hit    bool // a stop string (or the single allowed tool call) ended the reply
	calls  int
}

func (j *job) newProcessor() *processor {
	p := &processor{j: j, stop: stopMatcher{stops: j.sp.stops}}
	if j.isChat {
		p.parser = chat.NewStreamParser(j.chatSetup.family, j.chatSetup.startsInThinking)
		p.parser.NewID = j.chatSetup.newID
		if j.chatSetup.prefill != "" {
			p.parser.Push(j.chatSetup.prefill) // nothing complete yet: no deltas
		}
	}
	return p
}

func (p *processor) text(ev *event, s string, final bool) {
	if !p.j.isChat {
		if s != "" {
			ev.deltas = append(ev.deltas, chat.Delta{Content: s})
		}
		return
	}
	var ds []chat.Delta
	if s != "" {
		ds = p.parser.Push(s)
	}
	if final {
		ds = append(ds, p.parser.Finish()...)
	}
	for _, d := range ds {
		if tc := d.ToolCall; tc != nil {
			if p.j.chatSetup.singleCall && tc.Index > 0 {
				continue
			}
			if tc.Index+1 > p.calls {
				p.calls = tc.Index + 1
			}
			if p.j.chatSetup.singleCall && tc.Arguments != "" {
				p.hit = true
			}
		}
		ev.deltas = append(ev.deltas, d)
	}
}

// token handles one generated token and reports whether to stop.
func (p *processor) token(t engine.Token, ev *event) bool {
	eog := t.ID >= 0 && !p.j.sp.ignoreEOS && p.j.m.Tok.IsEOG(t.ID)
	if p.j.sp.logprobs && t.ID >= 0 && !eog {
		ev.logprobs = append(ev.logprobs, t)
	}
	if p.hit {
		return true
	}
	out, hit := p.stop.push(t.Text)
	if hit {
		p.hit = true
	}
	p.text(ev, out, false)
	return p.hit
}

// finish ends the choice.
func (p *processor) finish(res *engine.Result, ev *event) {
	if !p.hit {
		p.text(ev, p.stop.flush(), true)
	} else {
		p.text(ev, "", true)
	}
	reason := res.FinishReason
	if p.hit || reason == "cancelled" {
		reason = "stop"
	}
	if p.calls > 0 && reason == "stop" {
		reason = "tool_calls"
	}
	ev.finish = reason
}

// stopMatcher finds stop strings in streamed text, holding back a suffix
// that may be the start of one.
type stopMatcher struct {
	stops []string
	held  string
}

func (m *stopMatcher) push(s string) (string, bool) {
	if len(m.stops) == 0 {
		return s, false
	}
	buf := m.held + s
	at := -1
	for _, st := range m.stops {
		if i := strings.Index(buf, st); i >= 0 && (at < 0 || i < at) {
			at = i
		}
	}
	if at >= 0 {
		m.held = ""
		return buf[:at], true
	}
	keep := 0
	for _, st := range m.stops {
		for n := min(len(st)-1, len(buf)); n > keep; n-- {
			if strings.HasSuffix(buf, st[:n]) {
				keep = n
				break
			}
		}
	}
	m.held = buf[len(buf)-keep:]
	return buf[:len(buf)-keep], false
}

func (m *stopMatcher) flush() string {
	s := m.held
	m.held = ""
	return s
}

func (j *job) choices() int { return len(j.prompts) * j.sp.n }

// run starts every choice and returns their events. cancel stops them all;
// wait returns when all have ended.
func (j *job) run(ctx context.Context) (events <-chan event, wait func()) {
	ch := make(chan event, 64)
	var wg sync.WaitGroup
	for c := range j.choices() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			j.runChoice(ctx, c, ch)
		}()
	}
	return ch, wg.Wait
}

func (j *job) runChoice(ctx context.Context, c int, out chan<- event) {
	p := j.newProcessor()
	req := j.base
	req.Prompt = j.prompts[c/j.sp.n]
	req.Sampling.Seed = j.sp.seedFor(c)
	send := func(ev event) bool {
		select {
		case out <- ev:
			return true
		case <-ctx.Done():
			return false
		}
	}
	res, err := j.m.Engine.Generate(ctx, req, func(t engine.Token) bool {
		ev := event{choice: c}
		stop := p.token(t, &ev)
		if len(ev.deltas) > 0 || len(ev.logprobs) > 0 {
			if !send(ev) {
				return false
			}
		}
		return !stop
	})
	ev := event{choice: c, final: true, res: res, err: err}
	if err == nil {
		p.finish(res, &ev)
	}
	send(ev)
}

// ext is the stepflash extension object of responses.
func (j *job) ext() *api.Extension {
	return &api.Extension{Effort: effortEcho(j.effort), Backend: "local", Region: j.s.cfg.Region}
}

// collectUsage builds the usage of finished choices.
func (j *job) collectUsage(results []*engine.Result) *api.Usage {
	prompt, cached, completion, reasoning := 0, 0, 0, 0
	for i, toks := range j.prompts {
		prompt += len(toks)
		if r := results[i*j.sp.n]; r != nil {
			cached += r.CachedTokens
		}
	}
	for _, r := range results {
		if r == nil {
			continue
		}
		for _, t := range r.Tokens {
			if t.ID >= 0 {
				completion++
			}
		}
		reasoning += r.ReasoningTokens
	}
	return j.m.Prices.usage(prompt, cached, completion, reasoning)
}

func (j *job) observe(results []*engine.Result, finishes []string, u *api.Usage) {
	mt := j.s.metrics
	mt.promptTokens.Add(float64(u.PromptTokens), j.m.Name)
	mt.completionTokens.Add(float64(u.CompletionTokens), j.m.Name)
	mt.cachedTokens.Add(float64(u.PromptTokensDetails.CachedTokens), j.m.Name)
	mt.reasoningTokens.Add(float64(u.CompletionTokensDetails.ReasoningTokens), j.m.Name)
	for _, f := range finishes {
		mt.generations.Add(1, j.m.Name, f)
	}
}

// setHeaders sets the per-response headers of DESIGN.md section 3.
func (j *job) setHeaders(w http.ResponseWriter) {
	w.Header().Set("X-Reasoning-Effort", string(j.effort.Applied))
}

// serve runs the job and writes the response (JSON or SSE).
func (j *job) serve(w http.ResponseWriter, r *http.Request) *api.Error {
	j.setHeaders(w)
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	events, wait := j.run(ctx)
	defer func() {
		cancel()
		wait()
	}()
	if j.stream {
		return j.writeStream(ctx, w, events)
	}
	return j.writeWhole(ctx, w, events)
}

// choiceAcc accumulates one choice of a non-streamed response.
type choiceAcc struct {
	deltas   []chat.Delta
	logprobs []engine.Token
	finish   string
}

func (j *job) writeWhole(ctx context.Context, w http.ResponseWriter, events <-chan event) *api.Error {
	n := j.choices()
	acc := make([]choiceAcc, n)
	results := make([]*engine.Result, n)
	firstTok := false
	for done := 0; done < n; {
		var ev event
		select {
		case ev = <-events:
		case <-ctx.Done():
			return j.s.engineError(ctx.Err(), 0, 0)
		}
		if !firstTok && len(ev.deltas)+len(ev.logprobs) > 0 {
			firstTok = true
			j.s.metrics.ttft.Observe(time.Since(j.start).Seconds(), j.m.Name)
		}
		a := &acc[ev.choice]
		a.deltas = append(a.deltas, ev.deltas...)
		a.logprobs = append(a.logprobs, ev.logprobs...)
		if ev.final {
			if ev.err != nil {
				return j.s.engineError(ev.err, j.m.Engine.Context(), len(j.prompts[ev.choice/j.sp.n]))
			}
			a.finish = ev.finish
			results[ev.choice] = ev.res
			done++
		}
	}
	u := j.collectUsage(results)
	finishes := make([]string, n)
	for i := range acc {
		finishes[i] = acc[i].finish
	}
	j.observe(results, finishes, u)
	if j.isChat {
		resp := api.ChatCompletion{ID: j.id, Object: "chat.completion", Created: j.created, Model: j.model,
			SystemFingerprint: j.m.Fingerprint, Usage: u, Stepflash: j.ext()}
		for i, a := range acc {
			resp.Choices = append(resp.Choices, api.ChatChoice{Index: i, Message: chatMessage(chat.Collect(a.deltas)),
				Logprobs: j.chatLogprobs(a.logprobs), FinishReason: a.finish})
		}
		writeJSON(w, http.StatusOK, resp)
		return nil
	}
	resp := api.Completion{ID: j.id, Object: "text_completion", Created: j.created, Model: j.model,
		SystemFingerprint: j.m.Fingerprint, Usage: u, Stepflash: j.ext()}
	for i, a := range acc {
		text := j.echoText(i)
		offset := len(text)
		for _, d := range a.deltas {
			text += d.Content
		}
		fin := a.finish
		resp.Choices = append(resp.Choices, api.CompletionChoice{Text: text, Index: i, Logprobs: j.completionLogprobs(a.logprobs, offset), FinishReason: &fin})
	}
	writeJSON(w, http.StatusOK, resp)
	return nil
}

func (j *job) echoText(choice int) string {
	if j.echo == nil {
		return ""
	}
	return j.echo[choice/j.sp.n]
}

// chatMessage makes the assistant message of a parsed reply.
func chatMessage(r chat.Result) api.ResponseMessage {
	m := api.ResponseMessage{Role: "assistant"}
	if r.Content != "" || len(r.ToolCalls) == 0 {
		c := r.Content
		m.Content = &c
	}
	if r.Reasoning != "" {
		rc := r.Reasoning
		m.ReasoningContent, m.Reasoning = &rc, &rc
	}
	for _, tc := range r.ToolCalls {
		m.ToolCalls = append(m.ToolCalls, api.ToolCall{ID: tc.ID, Type: "function", Function: api.FunctionCall{Name: tc.Name, Arguments: tc.Arguments}})
	}
	return m
}

func bytesOf(b []byte) []int {
	out := make([]int, len(b))
	for i, c := range b {
		out[i] = int(c)
	}
	return out
}

func (j *job) chatLogprobs(toks []engine.Token) *api.ChatLogprobs {
	if !j.sp.logprobs {
		return nil
	}
	lp := &api.ChatLogprobs{Content: []api.TokenLogprob{}}
	for _, t := range toks {
		piece := j.m.Tok.PieceSpecial(t.ID)
		e := api.TokenLogprob{Token: string(piece), Logprob: float64(t.Logprob), Bytes: bytesOf(piece), TopLogprobs: []api.TopLogprob{}}
		for _, a := range t.Top {
			ap := j.m.Tok.PieceSpecial(a.ID)
			e.TopLogprobs = append(e.TopLogprobs, api.TopLogprob{Token: string(ap), Logprob: float64(a.Logprob), Bytes: bytesOf(ap)})
		}
		lp.Content = append(lp.Content, e)
	}
	return lp
}

func (j *job) completionLogprobs(toks []engine.Token, offset int) *api.CompletionLogprobs {
	if !j.sp.logprobs {
		return nil
	}
	lp := &api.CompletionLogprobs{Tokens: []string{}, TokenLogprobs: []float64{}, TopLogprobs: []map[string]float64{}, TextOffset: []int{}}
	for _, t := range toks {
		piece := string(j.m.Tok.PieceSpecial(t.ID))
		lp.Tokens = append(lp.Tokens, piece)
		lp.TokenLogprobs = append(lp.TokenLogprobs, float64(t.Logprob))
		top := map[string]float64{}
		for _, a := range t.Top {
			ap := string(j.m.Tok.PieceSpecial(a.ID))
			if _, dup := top[ap]; !dup {
				top[ap] = float64(a.Logprob)
			}
		}
		lp.TopLogprobs = append(lp.TopLogprobs, top)
		lp.TextOffset = append(lp.TextOffset, offset)
		offset += len(piece)
	}
	return lp
}

// sse writes server-sent events.
type sse struct {
	w       http.ResponseWriter
	rc      *http.ResponseController
	started bool
	err     error
}

func (e *sse) start() {
	if e.started {
		return
	}
	e.started = true
	h := e.w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("Connection", "keep-alive")
	h.Set("X-Accel-Buffering", "no")
	e.w.WriteHeader(http.StatusOK)
}

func (e *sse) send(v any) {
	if e.err != nil {
		return
	}
	e.start()
	b, err := json.Marshal(v)
	if err != nil {
		e.err = err
		return
	}
	if _, err := e.w.Write([]byte("data: " + string(b) + "\n\n")); err != nil {
		e.err = err
		return
	}
	e.err = e.rc.Flush()
}

func (e *sse) done() {
	if e.err != nil {
		return
	}
	if _, err := e.w.Write([]byte("data: [DONE]\n\n")); err != nil {
		e.err = err
		return
	}
	e.err = e.rc.Flush()
}

func strp(s string) *string { return &s }

// writeStream writes the choices as SSE chunks. Headers wait for the first
// event, so that an error before any token (queue full, context too long)
// is still an HTTP error response.
func (j *job) writeStream(ctx context.Context, w http.ResponseWriter, events <-chan event) *api.Error {
	out := &sse{w: w, rc: http.NewResponseController(w)}
	n := j.choices()
	results := make([]*engine.Result, n)
	finishes := make([]string, n)
	pendingLP := make([][]engine.Token, n)
	offsets := make([]int, n)
	// The first chunk carries the stepflash object (the applied effort), so a
	// stream says what it got without stream_options.include_usage.
	ext := j.ext()
	sendChat := func(c int, d api.ChunkDelta, finish *string) {
		ch := api.ChatCompletionChunk{ID: j.id, Object: "chat.completion.chunk", Created: j.created, Model: j.model, SystemFingerprint: j.m.Fingerprint, Stepflash: ext}
		ext = nil
		choice := api.ChunkChoice{Index: c, Delta: d, FinishReason: finish}
		if j.sp.logprobs {
			choice.Logprobs = j.chatLogprobs(pendingLP[c])
			pendingLP[c] = nil
		}
		ch.Choices = []api.ChunkChoice{choice}
		if j.usage {
			out.send(withNullUsage(ch))
			return
		}
		out.send(ch)
	}
	sendText := func(c int, text string, finish *string) {
		ch := api.Completion{ID: j.id, Object: "text_completion", Created: j.created, Model: j.model, SystemFingerprint: j.m.Fingerprint, Stepflash: ext}
		ext = nil
		choice := api.CompletionChoice{Text: text, Index: c, FinishReason: finish}
		if j.sp.logprobs {
			choice.Logprobs = j.completionLogprobs(pendingLP[c], offsets[c])
			for _, t := range pendingLP[c] {
				offsets[c] += len(j.m.Tok.PieceSpecial(t.ID))
			}
			pendingLP[c] = nil
		}
		ch.Choices = []api.CompletionChoice{choice}
		if j.usage {
			out.send(withNullUsage(ch))
			return
		}
		out.send(ch)
	}
	opening := func() {
		j.s.metrics.ttft.Observe(time.Since(j.start).Seconds(), j.m.Name)
		for c := range n {
			if j.isChat {
				sendChat(c, api.ChunkDelta{Role: "assistant", Content: strp("")}, nil)
			} else if e := j.echoText(c); e != "" {
				offsets[c] = len(e)
				sendText(c, e, nil)
			}
		}
	}
	for done := 0; done < n; {
		var ev event
		select {
		case ev = <-events:
		case <-ctx.Done():
			return nil // the client went away
		}
		if ev.final && ev.err != nil {
			e := j.s.engineError(ev.err, j.m.Engine.Context(), len(j.prompts[ev.choice/j.sp.n]))
			if !out.started {
				return e
			}
			out.send(api.ErrorResponse{Error: e})
			return nil
		}
		if !out.started {
			opening()
		}
		pendingLP[ev.choice] = append(pendingLP[ev.choice], ev.logprobs...)
		for _, group := range groupDeltas(ev.deltas) {
			if j.isChat {
				sendChat(ev.choice, group, nil)
			} else {
				sendText(ev.choice, *group.Content, nil)
			}
		}
		if ev.final {
			done++
			results[ev.choice] = ev.res
			finishes[ev.choice] = ev.finish
			fin := ev.finish
			if j.isChat {
				sendChat(ev.choice, api.ChunkDelta{}, &fin)
			} else {
				sendText(ev.choice, "", &fin)
			}
		}
		if out.err != nil {
			return nil // write failed: the client is gone; cancel frees the slots
		}
	}
	usage := j.collectUsage(results)
	j.observe(results, finishes, usage)
	if j.usage {
		if j.isChat {
			out.send(api.ChatCompletionChunk{ID: j.id, Object: "chat.completion.chunk", Created: j.created, Model: j.model,
				SystemFingerprint: j.m.Fingerprint, Choices: []api.ChunkChoice{}, Usage: usage, Stepflash: j.ext()})
		} else {
			out.send(api.Completion{ID: j.id, Object: "text_completion", Created: j.created, Model: j.model,
				SystemFingerprint: j.m.Fingerprint, Choices: []api.CompletionChoice{}, Usage: usage, Stepflash: j.ext()})
		}
	}
	out.done()
	return nil
}

// withNullUsage renders a chunk with "usage": null, as OpenAI does on every
// chunk but the last when include_usage is set.
func withNullUsage(v any) json.RawMessage {
	b, _ := json.Marshal(v)
	return append(b[:len(b)-1], []byte(`,"usage":null}`)...)
}

// groupDeltas merges consecutive deltas of one kind into chunk deltas, in
// order. Tool-call deltas of one call are merged into one.
func groupDeltas(ds []chat.Delta) []api.ChunkDelta {
	var out []api.ChunkDelta
	kind := func(d chat.Delta) int {
		switch {
		case d.ToolCall != nil:
			return 2
		case d.Reasoning != "":
			return 1
		}
		return 0
	}
	for i := 0; i < len(ds); {
		k := kind(ds[i])
		var b strings.Builder
		var calls []api.ToolCall
		for ; i < len(ds) && kind(ds[i]) == k; i++ {
			d := ds[i]
			switch k {
			case 0:
				b.WriteString(d.Content)
			case 1:
				b.WriteString(d.Reasoning)
			case 2:
				tc := d.ToolCall
				if n := len(calls); n > 0 && *calls[n-1].Index == tc.Index {
					calls[n-1].Function.Name += tc.Name
					calls[n-1].Function.Arguments += tc.Arguments
					if tc.ID != "" {
						calls[n-1].ID = tc.ID
					}
					continue
				}
				idx := tc.Index
				calls = append(calls, api.ToolCall{Index: &idx, ID: tc.ID, Type: tc.Type, Function: api.FunctionCall{Name: tc.Name, Arguments: tc.Arguments}})
			}
		}
		switch k {
		case 0:
			out = append(out, api.ChunkDelta{Content: strp(b.String())})
		case 1:
			s := b.String()
			out = append(out, api.ChunkDelta{ReasoningContent: &s, Reasoning: &s})
		case 2:
			out = append(out, api.ChunkDelta{ToolCalls: calls})
		}
	}
	return out
}
