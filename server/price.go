package server

import "github.com/stepflash/stepflash/api"

// Prices are USD per million tokens (DESIGN.md section 8). Reasoning tokens
// bill as output. This small table stands in until the billing package
// exists.
type Prices struct {
	InputMiss float64 // prompt tokens computed
	InputHit  float64 // prompt tokens reused from the prefix cache
	Output    float64 // generated tokens, reasoning included
}

// DefaultPrices are step-3.7-flash's list prices.
var DefaultPrices = Prices{InputMiss: 0.20, InputHit: 0.04, Output: 1.15}

// usage builds a usage object with its cost.
func (p Prices) usage(prompt, cached, completion, reasoning int) *api.Usage {
	u := &api.Usage{
		PromptTokens:            prompt,
		CompletionTokens:        completion,
		TotalTokens:             prompt + completion,
		PromptTokensDetails:     api.PromptTokensDetails{CachedTokens: cached},
		CompletionTokensDetails: api.CompletionTokensDetails{ReasoningTokens: reasoning},
		CachedTokens:            cached,
	}
	u.CostDetails.InputMiss = float64(prompt-cached) * p.InputMiss / 1e6
	u.CostDetails.InputHit = float64(cached) * p.InputHit / 1e6
	u.CostDetails.Output = float64(completion) * p.Output / 1e6
	u.Cost = u.CostDetails.InputMiss + u.CostDetails.InputHit + u.CostDetails.Output + u.CostDetails.Advisor
	return u
}
