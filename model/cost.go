package model

// The compute cost of running tokens through a model, in floating-point
// operations, for a scheduler that must keep a forward pass short: a
// prompt token deep in a long context costs far more than one at its
// start, because it attends over every earlier position.

// MatmulParams is the number of weights one token is multiplied by: the
// attention projections and the feed-forward network (for an MoE, the
// router and the trained count of experts) of every layer, and the
// vocabulary projection. The token embedding is a row lookup, not a
// product, and norms are negligible.
func (c *Config) MatmulParams() float64 {
	d := float64(c.NEmbd)
	attn := d*float64(c.QDim()) + // q
		d*float64(c.KVDim()) + d*float64(c.VDim()) + // k, v
		float64(c.NHead*c.HeadDimV)*d // output
	var ffn float64
	if c.NExpert > 0 {
		ffn = d*float64(c.NExpert) + float64(c.NExpertUse)*3*d*float64(c.ExpertFF)
	} else {
		ffn = 3 * d * float64(c.NFF) // gate, up, down
	}
	return float64(c.NLayer)*(attn+ffn) + d*float64(c.NVocab)
}

// TokenCost is the cost of one token at position pos (0-based): 2 FLOPs
// per weight (a multiply and an add), plus attention over the pos+1
// positions it sees: per layer and query head, a dot product with each key
// and a weighted sum of each value, 2 × head_dim FLOPs each.
func (c *Config) TokenCost(pos int) float64 {
	return 2*c.MatmulParams() + c.attnCost()*float64(pos+1)
}

// SpanCost is the cost of positions from..to-1 of one sequence run in one
// pass (a prompt chunk): the sum of TokenCost over them, in closed form.
func (c *Config) SpanCost(from, to int) float64 {
	if to <= from {
		return 0
	}
	n := float64(to - from)
	// Σ_{p=from}^{to-1} (p+1) = n(from+1) + n(n-1)/2
	return n*2*c.MatmulParams() + c.attnCost()*(n*float64(from+1)+n*(n-1)/2)
}

// attnCost is attention's FLOPs per visible position for one token:
// 2 × head_dim for the score and 2 × head_dim for the value sum, per head
// and layer.
func (c *Config) attnCost() float64 {
	return 2 * float64(c.NLayer*c.NHead) * float64(c.HeadDim+c.HeadDimV)
}
