package local

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/stepflash/stepflash/api"
	"github.com/stepflash/stepflash/chat"
	"github.com/stepflash/stepflash/effort"
	"github.com/stepflash/stepflash/engine"
)

// job is one request: n choices per prompt, run concurrently on the engine
// and streamed as chunks.
type job struct {
	b         *Backend
	isChat    bool
	prompts   [][]int32
	echo      []string // completions: text prepended to each prompt's choices
	base      engine.Request
	sp        sampling
	effort    effort.Applied
	chatSetup chatSetup
	// imageTokens is how many prompt positions are images' (usage's
	// prompt_tokens_details.image_tokens).
	imageTokens int
}

// chatSetup is how a chat reply is parsed.
type chatSetup struct {
	family           chat.Family
	startsInThinking bool
	prefill          string // text the prompt already holds of the reply (forced tool call)
	// closing ends a forced tool call written under a schema once its
	// object is complete (Hermes's "\n</tool_call>").
	closing    string
	singleCall bool // parallel_tool_calls false: stop after the first call
}

// event is what one choice reports.
type event struct {
	choice   int
	deltas   []chat.Delta
	logprobs []engine.Token
	final    bool
	finish   string
	stopped  string // the request's stop string that ended the choice
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
	eog := t.ID >= 0 && !p.j.sp.ignoreEOS && p.j.b.m.Tok.IsEOG(t.ID)
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
		tail := p.stop.flush()
		if res.FinishReason == "stop" && p.j.chatSetup.closing != "" {
			tail += p.j.chatSetup.closing // the constrained call's object is complete
		}
		p.text(ev, tail, true)
	} else {
		p.text(ev, "", true)
	}
	reason := res.FinishReason
	if p.hit || reason == "cancelled" {
		reason = "stop"
	}
	if m := p.stop.matched; m != "" && slices.Contains(p.j.sp.stops[:p.j.sp.userStops], m) {
		ev.stopped = m
	}
	if p.calls > 0 && reason == "stop" {
		reason = "tool_calls"
	}
	ev.finish = reason
}

// stopMatcher finds stop strings in streamed text, holding back a suffix
// that may be the start of one.
type stopMatcher struct {
	stops   []string
	held    string
	matched string // the stop string found
}

func (m *stopMatcher) push(s string) (string, bool) {
	if len(m.stops) == 0 {
		return s, false
	}
	buf := m.held + s
	at := -1
	for _, st := range m.stops {
		if i := strings.Index(buf, st); i >= 0 && (at < 0 || i < at) {
			at, m.matched = i, st
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

// run starts every choice and returns their events; wait returns when all
// have ended (cancel ctx to end them early).
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
	res, err := j.b.m.Engine.Generate(ctx, req, func(t engine.Token) bool {
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
	return &api.Extension{Effort: EffortEcho(j.effort), Backend: "local"}
}

// EffortEcho is the wire form of an applied effort.
func EffortEcho(a effort.Applied) api.EffortEcho {
	budget := a.ThinkingBudget
	return api.EffortEcho{Requested: a.Requested, Applied: string(a.Level), ExpertsPerToken: a.ExpertsPerToken, ThinkingBudget: &budget}
}

// collect builds the usage and llama-server's timings of finished
// choices. The usage counts each prompt once (cached tokens as its first
// choice found them); the timings count what every choice computed, and
// take the longest choice's times, since the choices run side by side in
// one batch.
func (j *job) collect(results []*engine.Result) (*api.Usage, *api.Timings) {
	prompt, cached, completion, reasoning, drafted, accepted := 0, 0, 0, 0, 0, 0
	for i, toks := range j.prompts {
		prompt += len(toks)
		if r := results[i*j.sp.n]; r != nil {
			cached += r.CachedTokens
		}
	}
	allCached, computed := 0, 0
	var promptTime, decodeTime time.Duration
	for i, r := range results {
		if r == nil {
			continue
		}
		for _, t := range r.Tokens {
			if t.ID >= 0 {
				completion++
			}
		}
		reasoning += r.ReasoningTokens
		drafted += r.DraftTokens
		accepted += r.AcceptedTokens
		allCached += r.CachedTokens
		computed += len(j.prompts[i/j.sp.n]) - r.CachedTokens
		promptTime, decodeTime = max(promptTime, r.PromptTime), max(decodeTime, r.DecodeTime)
	}
	u := api.NewUsage(prompt, cached, completion, reasoning)
	u.CompletionTokensDetails.AcceptedPredictionTokens = accepted
	u.CompletionTokensDetails.RejectedPredictionTokens = drafted - accepted
	u.PromptTokensDetails.ImageTokens = j.imageTokens
	t := api.NewTimings(allCached, computed, ms(promptTime), completion, ms(decodeTime))
	t.DraftN, t.DraftNAccepted = drafted, accepted
	return u, t
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// stream runs the job and emits its chunks. Nothing is emitted before the
// first token of some choice, so that an error before it (queue full,
// context too long) is still the request's answer.
func (j *job) stream(ctx context.Context, emitChat func(*api.ChatCompletionChunk) error, emitText func(*api.Completion) error) error {
	ctx, cancel := context.WithCancel(ctx)
	events, wait := j.run(ctx)
	defer func() {
		cancel()
		wait()
	}()
	tok := j.b.m.Tok
	n := j.choices()
	results := make([]*engine.Result, n)
	pendingLP := make([][]engine.Token, n)
	offsets := make([]int, n)
	fp := j.b.m.Fingerprint
	// The first chunk carries the stepflash object (the applied effort), so a
	// stream says what it got without stream_options.include_usage.
	ext := j.ext()
	started := false
	sendChat := func(c int, d api.ChunkDelta, finish, stopped *string) error {
		ch := &api.ChatCompletionChunk{Envelope: api.Envelope{Object: "chat.completion.chunk", SystemFingerprint: fp}, Stepflash: ext}
		ext = nil
		choice := api.ChunkChoice{Index: c, Delta: d, FinishReason: finish, StopReason: stopped}
		if j.sp.logprobs {
			choice.Logprobs = chatLogprobs(tok, pendingLP[c])
			pendingLP[c] = nil
		}
		ch.Choices = []api.ChunkChoice{choice}
		return emitChat(ch)
	}
	sendText := func(c int, text string, finish, stopped *string) error {
		ch := &api.Completion{Envelope: api.Envelope{Object: "text_completion", SystemFingerprint: fp}, Stepflash: ext}
		ext = nil
		choice := api.CompletionChoice{Text: text, Index: c, FinishReason: finish, StopReason: stopped}
		if j.sp.logprobs {
			choice.Logprobs = completionLogprobs(tok, pendingLP[c], offsets[c])
			for _, t := range pendingLP[c] {
				offsets[c] += len(tok.PieceSpecial(t.ID))
			}
			pendingLP[c] = nil
		}
		ch.Choices = []api.CompletionChoice{choice}
		return emitText(ch)
	}
	opening := func() error {
		for c := range n {
			var err error
			if j.isChat {
				err = sendChat(c, api.ChunkDelta{Role: "assistant", Content: strp("")}, nil, nil)
			} else if e := j.echoText(c); e != "" {
				offsets[c] = len(e)
				err = sendText(c, e, nil, nil)
			}
			if err != nil {
				return err
			}
		}
		return nil
	}
	for done := 0; done < n; {
		var ev event
		select {
		case ev = <-events:
		case <-ctx.Done():
			return ctx.Err()
		}
		if ev.final && ev.err != nil {
			return j.engineError(ev.err, len(j.prompts[ev.choice/j.sp.n]))
		}
		if !started {
			started = true
			if err := opening(); err != nil {
				return err
			}
		}
		pendingLP[ev.choice] = append(pendingLP[ev.choice], ev.logprobs...)
		for _, group := range groupDeltas(ev.deltas) {
			var err error
			if j.isChat {
				err = sendChat(ev.choice, group, nil, nil)
			} else {
				err = sendText(ev.choice, *group.Content, nil, nil)
			}
			if err != nil {
				return err
			}
		}
		if ev.final {
			done++
			results[ev.choice] = ev.res
			fin := ev.finish
			var stopped *string
			if ev.stopped != "" {
				stopped = &ev.stopped
			}
			var err error
			if j.isChat {
				err = sendChat(ev.choice, api.ChunkDelta{}, &fin, stopped)
			} else {
				err = sendText(ev.choice, "", &fin, stopped)
			}
			if err != nil {
				return err
			}
		}
	}
	usage, timings := j.collect(results)
	if j.isChat {
		return emitChat(&api.ChatCompletionChunk{Envelope: api.Envelope{Object: "chat.completion.chunk", SystemFingerprint: fp}, Choices: []api.ChunkChoice{}, Usage: usage, Timings: timings, Stepflash: j.ext()})
	}
	return emitText(&api.Completion{Envelope: api.Envelope{Object: "text_completion", SystemFingerprint: fp}, Choices: []api.CompletionChoice{}, Usage: usage, Timings: timings, Stepflash: j.ext()})
}

func (j *job) echoText(choice int) string {
	if j.echo == nil {
		return ""
	}
	return j.echo[choice/j.sp.n]
}

// engineError maps an engine error to an error object.
func (j *job) engineError(err error, promptLen int) error {
	switch {
	case errors.Is(err, engine.ErrOverloaded):
		return api.Overloaded(1)
	case errors.Is(err, engine.ErrContextLength):
		return api.ContextLengthExceeded("messages", j.b.m.Engine.Context(), promptLen, 0)
	case errors.Is(err, engine.ErrClosed):
		e := api.NewError(http.StatusServiceUnavailable, api.TypeServer, api.CodeOverloaded, "", "The server is shutting down. Retry after %d second(s).", 1)
		e.RetryAfter = 1
		return e
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return err
	}
	return api.Internal("generation failed: %v", err)
}

func bytesOf(b []byte) []int {
	out := make([]int, len(b))
	for i, c := range b {
		out[i] = int(c)
	}
	return out
}

type pieceSource interface{ PieceSpecial(int32) []byte }

func chatLogprobs(tok pieceSource, toks []engine.Token) *api.ChatLogprobs {
	lp := &api.ChatLogprobs{Content: []api.TokenLogprob{}}
	for _, t := range toks {
		piece := tok.PieceSpecial(t.ID)
		e := api.TokenLogprob{Token: string(piece), Logprob: float64(t.Logprob), Bytes: bytesOf(piece), TopLogprobs: []api.TopLogprob{}}
		for _, a := range t.Top {
			ap := tok.PieceSpecial(a.ID)
			e.TopLogprobs = append(e.TopLogprobs, api.TopLogprob{Token: string(ap), Logprob: float64(a.Logprob), Bytes: bytesOf(ap)})
		}
		lp.Content = append(lp.Content, e)
	}
	return lp
}

func completionLogprobs(tok pieceSource, toks []engine.Token, offset int) *api.CompletionLogprobs {
	lp := &api.CompletionLogprobs{Tokens: []string{}, TokenLogprobs: []float64{}, TopLogprobs: []map[string]float64{}, TextOffset: []int{}}
	for _, t := range toks {
		piece := string(tok.PieceSpecial(t.ID))
		lp.Tokens = append(lp.Tokens, piece)
		lp.TokenLogprobs = append(lp.TokenLogprobs, float64(t.Logprob))
		top := map[string]float64{}
		for _, a := range t.Top {
			ap := string(tok.PieceSpecial(a.ID))
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

func strp(s string) *string { return &s }

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
