package engine

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/stepflash/stepflash/internal/testmodels"
)

// genSchemas force short answers, so that a model that knows nothing of
// JSON (random weights) must still finish them.
var genSchemas = []string{
	`{"type":"object","properties":{"color":{"enum":["red","green","blue"]},"n":{"type":"integer","enum":[1,2,10,-3]},"ok":{"type":"boolean"}},"required":["color","n","ok"],"additionalProperties":false}`,
	`{"type":"object","properties":{"tags":{"type":"array","items":{"type":"string","maxLength":4},"minItems":1,"maxItems":3},"note":{"anyOf":[{"type":"null"},{"type":"string","minLength":1,"maxLength":6}]}},"required":["tags","note"],"additionalProperties":false}`,
	`{"$defs":{"pt":{"type":"object","properties":{"x":{"enum":[0,1]},"y":{"const":"y"}},"required":["x","y"],"additionalProperties":false}},"type":"object","properties":{"pts":{"type":"array","items":{"$ref":"#/$defs/pt"},"maxItems":2},"kind":{"oneOf":[{"const":"a"},{"const":"b"}]}},"required":["pts","kind"],"additionalProperties":false}`,
	`{"anyOf":[{"type":"object","properties":{"t":{"const":"a"},"v":{"type":"string","maxLength":3}},"required":["t","v"],"additionalProperties":false},{"type":"object","properties":{"t":{"const":"b"},"w":{"type":"array","items":{"type":"null"},"maxItems":2}},"required":["t","w"],"additionalProperties":false}]}`,
}

func TestSchemaGeneration(t *testing.T) {
	for _, name := range []string{"tiny-llama-F32.gguf", "tiny-qwen3-F32.gguf"} {
		t.Run(name, func(t *testing.T) {
			m, tok := openModel(t, testmodels.Path(t, name), 2)
			e := New(m, tok, Options{Context: 512, Parallel: 4})
			t.Cleanup(e.Close)
			for si, schema := range genSchemas {
				sc := mustCompile(t, schema, true)
				seeds := 12
				if testing.Short() {
					seeds = 4
				}
				for seed := range seeds {
					t.Run(fmt.Sprintf("schema%d/seed%d", si, seed), func(t *testing.T) {
						t.Parallel()
						res, err := e.Generate(context.Background(), Request{
							Prompt:     tok.Encode("Answer in JSON:", true, true),
							MaxTokens:  400,
							Sampling:   SamplerParams{Temperature: 1.2, TopK: 40, TopP: 0.95, Seed: uint64(seed)},
							JSONSchema: sc,
						}, nil)
						if err != nil {
							t.Fatal(err)
						}
						var b strings.Builder
						for _, tk := range res.Tokens {
							b.WriteString(tk.Text)
						}
						if res.FinishReason != "stop" {
							t.Fatalf("finish %q after %d tokens: %q", res.FinishReason, len(res.Tokens), b.String())
						}
						if err := validateJSON([]byte(schema), []byte(b.String())); err != nil {
							t.Fatalf("%q: %v", b.String(), err)
						}
					})
				}
			}
		})
	}
}
