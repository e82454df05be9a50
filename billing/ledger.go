package billing

import (
	"cmp"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/stepflash/stepflash/api"
	"github.com/stepflash/stepflash/backend"
)

// Record is one request in the usage ledger: who asked, what answered,
// what it used and cost, and how it ended.
type Record struct {
	// RequestID is the request's X-Request-Id, unique per request.
	RequestID string
	// Time is when the request reached the backend (UTC in the ledger).
	Time time.Time
	// KeyID and Region are the caller's (backend.CallerFrom); "" when keys
	// are not enforced or the server has no regions.
	KeyID, Region string
	// Model is the served model's name; Backend its backend's label
	// ("local", "upstream:NAME").
	Model, Backend string
	// Endpoint is the API the request came in by: "chat" (chat
	// completions), "responses" (the Responses API), "messages"
	// (Anthropic's Messages API), "completions" or "embeddings".
	Endpoint string
	// Effort is the applied reasoning_effort tier.
	Effort string
	// Stream is whether the client asked for a stream.
	Stream bool

	PromptTokens, CachedTokens, CompletionTokens, ReasoningTokens int
	// The advisor's share (zero until Advisor Mode exists): its tokens and
	// its cost, which CostUSD includes.
	AdvisorPromptTokens, AdvisorCompletionTokens int
	AdvisorCostUSD                               float64
	// CostUSD is the request's whole cost, as its usage said.
	CostUSD float64
	// Latency is from the request reaching the backend to its final usage
	// (or its end, for a request that failed).
	Latency time.Duration
	// Status is the HTTP status the client got: 200 for a stream that was
	// cut after it started (ErrorCode says why).
	Status int
	// ErrorCode is the error's code ("" for a success): an OpenAI error
	// code, "client_closed" when the client went away, "missing_usage"
	// when a backend ended without reporting usage.
	ErrorCode string
}

// Error codes the ledger writes or answers with.
const (
	// CodeLedgerUnavailable: the request's record could not be made
	// durable, so its usage is withheld (500, or an error event mid-stream).
	CodeLedgerUnavailable = "ledger_unavailable"
	// CodeClientClosed: the client went away before the request ended.
	CodeClientClosed = "client_closed"
	// CodeMissingUsage: the backend ended without a usage chunk.
	CodeMissingUsage = "missing_usage"
)

// Ledger keeps one Record per request.
type Ledger interface {
	// Append adds r. When it returns nil, r is durable: it survives the
	// process being killed (what more, the implementation documents).
	Append(ctx context.Context, r Record) error
	// Spent is the total CostUSD of keyID's requests since a time.
	Spent(ctx context.Context, keyID string, since time.Time) (float64, error)
}

// AppendTimeout bounds how long a request waits for its record to become
// durable before it gets ledger_unavailable instead of its usage.
var AppendTimeout = 10 * time.Second

// Recording is the middleware that writes every request into l, for the
// model served as model.
//
// A request that reaches its final usage chunk is appended, and Recording
// waits until the record is durable BEFORE passing that chunk on: a client
// that received usage (the non-streamed body, or a stream's usage chunk and
// [DONE]) always has its row. It fails closed: when the append fails the
// usage is withheld and the client gets a 500 ledger_unavailable instead
// (a non-streamed request), or an error event after the chunks it already
// had (a stream). The record is written even when the client has gone away
// by then: the tokens were spent.
//
// Requests that fail before their first chunk, or are cut mid-stream (by
// the client or the backend), are recorded after the backend returns, with
// their status and error code and the tokens known: no usage came, so the
// prompt tokens are 0, the completion tokens count the chunks of text
// delivered, and the cost is what the request spent on the way that is
// known without usage (an advisor's turn, through backend.Spend).
//
// Recording must see the priced usage, so it goes outside Pricing:
// backend.Chain(b, Recording(l, name), Pricing(p)), where the first
// middleware is the outermost and sees each chunk after the inner ones.
func Recording(l Ledger, model string) backend.Middleware {
	return func(next backend.Backend) backend.Backend {
		return &backend.Funcs{
			Next: next,
			ChatFunc: func(ctx context.Context, req *api.ChatCompletionRequest, emit func(*api.ChatCompletionChunk) error) error {
				ctx, spend := backend.WithSpend(ctx)
				// /v1/responses and /v1/messages are Chat calls too: the
				// server names them in the context.
				endpoint := cmp.Or(backend.EndpointFrom(ctx), "chat")
				r := newRecorder(ctx, l, model, endpoint, req.Stream, req.ReasoningEffort, next)
				r.spend = spend
				err := next.Chat(ctx, req, func(ch *api.ChatCompletionChunk) error {
					return r.pass(ch, chatPieces(ch), func() error { return emit(ch) })
				})
				r.end(err)
				return err
			},
			CompleteFunc: func(ctx context.Context, req *api.CompletionRequest, emit func(*api.Completion) error) error {
				ctx, spend := backend.WithSpend(ctx)
				r := newRecorder(ctx, l, model, "completions", req.Stream, req.ReasoningEffort, next)
				r.spend = spend
				err := next.Complete(ctx, req, func(ch *api.Completion) error {
					return r.pass(ch, textPieces(ch), func() error { return emit(ch) })
				})
				r.end(err)
				return err
			},
			EmbedFunc: func(ctx context.Context, req *api.EmbeddingRequest) (*api.EmbeddingResponse, error) {
				r := newRecorder(ctx, l, model, "embeddings", false, nil, next)
				resp, err := backend.Embed(ctx, next, req)
				if err != nil {
					r.end(err)
					return nil, err
				}
				// Durable before the client sees its usage, as a chat's.
				if err := r.pass(embedding{resp}, 0, func() error { return nil }); err != nil {
					r.end(err)
					return nil, err
				}
				return resp, nil
			},
		}
	}
}

// embedding is an embeddings response as Recording reads a chunk.
type embedding struct{ *api.EmbeddingResponse }

func (e embedding) FinalUsage() *api.Usage { return e.Usage }
func (e embedding) Ext() *api.Extension    { return e.Stepflash }

// chunk is what Recording reads of a chunk of either endpoint.
type chunk interface {
	FinalUsage() *api.Usage
	Ext() *api.Extension
}

// recorder follows one request through the backend.
type recorder struct {
	ctx    context.Context
	l      Ledger
	rec    Record
	start  time.Time
	next   backend.Backend
	passed bool // a chunk reached the client side
	pieces int  // choice deltas with text that reached it
	// appended is set once the final record was tried: nothing more is
	// recorded for this request.
	appended bool
	// spend is what the request spent besides its final usage (an
	// advisor's turn), billed in the row of a request that ends without
	// usage.
	spend *backend.Spend
}

func newRecorder(ctx context.Context, l Ledger, model, endpoint string, stream bool, effort *string, next backend.Backend) *recorder {
	c := backend.CallerFrom(ctx)
	now := time.Now()
	return &recorder{ctx: ctx, l: l, start: now, next: next, rec: Record{
		RequestID: backend.RequestID(ctx), Time: now, KeyID: c.KeyID, Region: c.Region, Model: model,
		Endpoint: endpoint, Stream: stream, Effort: string(backend.EffortLevel(effort)),
	}}
}

// pass handles one chunk: the final one is appended (and withheld when that
// fails) before send passes it on.
func (r *recorder) pass(ch chunk, pieces int, send func() error) error {
	if ext := ch.Ext(); ext != nil {
		if ext.Effort.Applied != "" {
			r.rec.Effort = ext.Effort.Applied
		}
		if ext.Backend != "" {
			r.rec.Backend = ext.Backend
		}
	}
	if u := ch.FinalUsage(); u != nil && !r.appended {
		if err := r.ctx.Err(); err != nil {
			// The client went away before its usage: whether the backend
			// noticed first (and still reported usage) or the write did,
			// the row is the same, a cut stream (see end).
			return err
		}
		r.appended = true
		r.rec.PromptTokens = u.PromptTokens
		r.rec.CachedTokens = u.PromptTokensDetails.CachedTokens
		r.rec.CompletionTokens = u.CompletionTokens
		r.rec.ReasoningTokens = u.CompletionTokensDetails.ReasoningTokens
		r.rec.AdvisorCostUSD = u.CostDetails.Advisor
		if a := u.Advisor; a != nil {
			r.rec.AdvisorPromptTokens, r.rec.AdvisorCompletionTokens = a.PromptTokens, a.CompletionTokens
		}
		r.rec.CostUSD = u.Cost
		r.rec.Status = http.StatusOK
		if err := r.append(); err != nil {
			return api.NewError(http.StatusInternalServerError, api.TypeServer, CodeLedgerUnavailable, "",
				"The request was served but its usage could not be recorded, so it is withheld: %v", err)
		}
		return send()
	}
	if err := send(); err != nil {
		return err
	}
	r.passed = true
	r.pieces += pieces
	return nil
}

// append writes the record, waiting until it is durable; the client going
// away does not stop it.
func (r *recorder) append() error {
	r.rec.Latency = time.Since(r.start)
	if r.rec.Backend == "" {
		r.rec.Backend = r.next.Info().Label
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.ctx), AppendTimeout)
	defer cancel()
	return r.l.Append(ctx, r.rec)
}

// end records a request that ended without its final usage chunk.
func (r *recorder) end(err error) {
	if r.appended {
		return
	}
	r.appended = true
	r.rec.CompletionTokens = r.pieces
	if r.spend != nil {
		// No usage came, so nothing else carries the advisor's part.
		p, c, cost := r.spend.Advisor()
		r.rec.AdvisorPromptTokens, r.rec.AdvisorCompletionTokens, r.rec.AdvisorCostUSD = p, c, cost
		r.rec.CostUSD += cost
	}
	var e *api.Error
	switch {
	case err == nil:
		r.rec.Status, r.rec.ErrorCode = http.StatusOK, CodeMissingUsage
	case errors.As(err, &e):
		r.rec.Status, r.rec.ErrorCode = e.Status, e.CodeString()
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		r.rec.Status, r.rec.ErrorCode = 499, CodeClientClosed
	default:
		r.rec.Status, r.rec.ErrorCode = http.StatusInternalServerError, api.CodeInternal
	}
	if r.rec.Status == 0 {
		r.rec.Status = http.StatusInternalServerError
	}
	if r.rec.ErrorCode == "" && err != nil {
		r.rec.ErrorCode = api.CodeInternal
	}
	if r.rec.Stream && r.passed {
		// The stream had started: its status line said 200.
		r.rec.Status = http.StatusOK
	}
	if aerr := r.append(); aerr != nil {
		// The client's answer is the error already; only the log can
		// tell that its record is missing.
		slog.Default().Error("ledger: a failed request could not be recorded", "request_id", r.rec.RequestID,
			"model", r.rec.Model, "status", r.rec.Status, "code", r.rec.ErrorCode, "err", aerr)
	}
}

// chatPieces counts a chat chunk's choice deltas that carry text.
func chatPieces(ch *api.ChatCompletionChunk) int {
	n := 0
	for _, c := range ch.Choices {
		d := &c.Delta
		if (d.Content != nil && *d.Content != "") || (d.ReasoningContent != nil && *d.ReasoningContent != "") ||
			(d.Reasoning != nil && *d.Reasoning != "") || len(d.ToolCalls) > 0 {
			n++
		}
	}
	return n
}

// textPieces counts a completion chunk's choices that carry text.
func textPieces(ch *api.Completion) int {
	n := 0
	for _, c := range ch.Choices {
		if c.Text != "" {
			n++
		}
	}
	return n
}

// Metered is l that also hands every record it made durable to count (a
// server's Prometheus counters, say): what the metrics show is what the
// ledger holds, never a request it lost.
func Metered(l Ledger, count func(Record)) Ledger {
	return &metered{Ledger: l, count: count}
}

type metered struct {
	Ledger
	count func(Record)
}

func (m *metered) Append(ctx context.Context, r Record) error {
	if err := m.Ledger.Append(ctx, r); err != nil {
		return err
	}
	m.count(r)
	return nil
}
