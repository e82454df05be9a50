// Package billing prices and records what requests use: the per-model price
// table (USD per million tokens, ../shared/DESIGN.md section 8), the cost
// fields of every response's usage, whichever backend answered, and the
// usage ledger's record and the middleware that writes it.
package billing

import (
	"context"

	"github.com/stepflash/stepflash/api"
	"github.com/stepflash/stepflash/backend"
)

// Prices are USD per million tokens. Reasoning tokens bill as output.
type Prices struct {
	InputMiss float64 `json:"input_miss"` // prompt tokens computed
	InputHit  float64 `json:"input_hit"`  // prompt tokens reused from a prefix cache
	Output    float64 `json:"output"`     // generated tokens, reasoning included
}

// Default are step-3.7-flash's list prices.
var Default = Prices{InputMiss: 0.20, InputHit: 0.04, Output: 1.15}

// Price fills u's cost and cost_details from its token counts: prompt
// tokens not cached at the miss price, cached ones at the hit price,
// completion tokens at the output price, plus any advisor cost already in
// cost_details.
func (p Prices) Price(u *api.Usage) {
	cached := u.PromptTokensDetails.CachedTokens
	u.CostDetails.InputMiss = float64(u.PromptTokens-cached) * p.InputMiss / 1e6
	u.CostDetails.InputHit = float64(cached) * p.InputHit / 1e6
	u.CostDetails.Output = float64(u.CompletionTokens) * p.Output / 1e6
	u.Cost = u.CostDetails.InputMiss + u.CostDetails.InputHit + u.CostDetails.Output + u.CostDetails.Advisor
}

// Pricing is the middleware that prices the usage a backend reports, so
// that cost comes from this server's table for local and upstream backends
// alike. The zero Prices means Default.
func Pricing(p Prices) backend.Middleware {
	if p == (Prices{}) {
		p = Default
	}
	return func(next backend.Backend) backend.Backend {
		return &backend.Funcs{
			Next: next,
			ChatFunc: func(ctx context.Context, req *api.ChatCompletionRequest, emit func(*api.ChatCompletionChunk) error) error {
				return next.Chat(ctx, req, func(ch *api.ChatCompletionChunk) error {
					if ch.Usage != nil {
						p.Price(ch.Usage)
					}
					return emit(ch)
				})
			},
			CompleteFunc: func(ctx context.Context, req *api.CompletionRequest, emit func(*api.Completion) error) error {
				return next.Complete(ctx, req, func(ch *api.Completion) error {
					if ch.Usage != nil {
						p.Price(ch.Usage)
					}
					return emit(ch)
				})
			},
			EmbedFunc: func(ctx context.Context, req *api.EmbeddingRequest) (*api.EmbeddingResponse, error) {
				resp, err := backend.Embed(ctx, next, req)
				if err == nil && resp.Usage != nil {
					p.Price(resp.Usage) // prompt tokens, at the cache-miss price
				}
				return resp, err
			},
		}
	}
}
