package model

import (
	"strings"
	"testing"

	"github.com/stepflash/stepflash/gguf"
	"github.com/stepflash/stepflash/internal/testmodels"
)

// TestMatmulParams: the weights a token is multiplied by, from the
// configuration, agree with the file's tensors: every 2-D and 3-D weight
// (an expert tensor by the share of experts used), the token embedding
// only when it is also the output (tied), no 1-D norm. For tiny-llama
// that is the README's 984,320 parameters less the embedding (131,072)
// and the norms (1,280).
func TestMatmulParams(t *testing.T) {
	cases := []struct {
		file string
		want float64
	}{
		{"tiny-llama-F32.gguf", 851968},
		{"tiny-qwen3-F32.gguf", 1310720}, // tied: the embedding is the output projection
		{"tiny-qwen3moe-F32.gguf", 724992},
		{"stories260K.gguf", 0}, // only the file's count
	}
	for _, tc := range cases {
		f, err := gguf.Open(testmodels.Path(t, tc.file))
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := ReadConfig(f)
		if err != nil {
			t.Fatal(err)
		}
		_, untied := f.Tensor("output.weight")
		var fromFile float64
		for _, ti := range f.Tensors {
			if len(ti.Shape) < 2 || (ti.Name == "token_embd.weight" && untied) {
				continue
			}
			n := 1.0
			for _, d := range ti.Shape {
				n *= float64(d)
			}
			if strings.HasSuffix(ti.Name, "_exps.weight") {
				n = n * float64(cfg.NExpertUse) / float64(cfg.NExpert)
			}
			fromFile += n
		}
		f.Close()
		got := cfg.MatmulParams()
		if got != fromFile || (tc.want != 0 && got != tc.want) {
			t.Errorf("%s: MatmulParams %v, the file's tensors %v, want %v", tc.file, got, fromFile, tc.want)
		}
		// A token's cost: two FLOPs per weight, and attention over the
		// positions it sees; a span is the sum of its tokens.
		attn := 4 * float64(cfg.NLayer*cfg.NHead*cfg.HeadDim)
		if c := cfg.TokenCost(999); c != 2*got+1000*attn {
			t.Errorf("%s: TokenCost(999) = %v, want %v", tc.file, c, 2*got+1000*attn)
		}
		var sum float64
		for p := 300; p < 700; p++ {
			sum += cfg.TokenCost(p)
		}
		if s := cfg.SpanCost(300, 700); s != sum || cfg.SpanCost(5, 5) != 0 || cfg.SpanCost(6, 5) != 0 {
			t.Errorf("%s: SpanCost(300, 700) = %v, the sum of TokenCost %v", tc.file, s, sum)
		}
	}
}
