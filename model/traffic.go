package model

import (
	"strings"

	"github.com/stepflash/stepflash/gguf"
)

// WeightBytesPerToken is the number of weight bytes one decoded token reads
// from f with experts experts per token (0: the trained count): every dense
// tensor once, the chosen share of each expert tensor, one row of the token
// embedding — or all of it when the output is tied to it. Decode speed on a
// memory-bound machine is at most bandwidth / this number.
func WeightBytesPerToken(f *gguf.File, cfg *Config, experts int) int64 {
	if experts <= 0 {
		experts = cfg.NExpertUse
	}
	_, untied := f.Tensor("output.weight")
	var total int64
	for i := range f.Tensors {
		t := &f.Tensors[i]
		switch {
		case t.Name == "token_embd.weight":
			if untied {
				rows := int64(1)
				if len(t.Shape) == 2 && t.Shape[1] > 0 {
					rows = int64(t.Shape[1])
				}
				total += int64(t.Size) / rows
			} else {
				total += int64(t.Size)
			}
		case strings.HasSuffix(t.Name, "_exps.weight") && cfg.NExpert > 0:
			total += int64(t.Size) * int64(experts) / int64(cfg.NExpert)
		default:
			total += int64(t.Size)
		}
	}
	return total
}
