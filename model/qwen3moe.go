package model

// Qwen3-MoE (GGUF architecture "qwen3moe", e.g. Qwen3-30B-A3B) is Qwen3 with
// every MLP replaced by routed experts: p = softmax(router · h) over all
// experts, take the top k (per token: Batch.ExpertsUsed, default the trained
// expert_used_count), renormalise their p to sum to 1, and add
// Σ w_e · down_e(silu(gate_e h) ⊙ up_e h). Expert weights are 3-D
// ffn_{gate,up,down}_exps tensors; only the chosen experts' rows are read,
// and in prefill the tokens routed to one expert run through it together
// (runner.moe). The layers are otherwise Qwen3's, so the Qwen3 type serves
// both; this file only registers the name.
func init() { Register("qwen3moe", newQwen3) }
