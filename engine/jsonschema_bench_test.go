package engine

import (
	"context"
	"testing"

	"github.com/stepflash/stepflash/internal/testmodels"
	"github.com/stepflash/stepflash/model"
	"github.com/stepflash/stepflash/tokenizer"
)

// BenchmarkSchemaDecode compares decode speed (tok/s) on tiny-llama without
// a constraint, with json_object, and with two JSON Schemas: one mostly
// free text (a long string) and one mostly structure (every token checked
// against enums and keys).
func BenchmarkSchemaDecode(b *testing.B) {
	m, f, err := model.Open(testmodels.Path(b, "tiny-llama-F32.gguf"), model.Options{Threads: 1})
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	defer m.Close()
	tok, err := tokenizer.FromGGUF(f)
	if err != nil {
		b.Fatal(err)
	}
	compile := func(s string) *Schema {
		sc, err := CompileSchema([]byte(s), true)
		if err != nil {
			b.Fatal(err)
		}
		return sc
	}
	text := compile(`{"type":"object","properties":{"s":{"type":"string"}},"required":["s"],"additionalProperties":false}`)
	structure := compile(`{"type":"object","properties":{"rows":{"type":"array","items":{"type":"object","properties":{"k":{"enum":["alpha","beta","gamma"]},"v":{"type":"integer"},"f":{"type":"boolean"}},"required":["k","v","f"],"additionalProperties":false}}},"required":["rows"],"additionalProperties":false}`)
	e := New(m, tok, Options{Context: 1024, Parallel: 1, CacheBytes: -1})
	defer e.Close()
	for _, bc := range []struct {
		name   string
		schema *Schema
		object bool
	}{{"none", nil, false}, {"json_object", nil, true}, {"schema-text", text, false}, {"schema-structure", structure, false}} {
		b.Run(bc.name, func(b *testing.B) {
			var toks, secs float64
			for i := 0; b.Loop(); i++ {
				res, err := e.Generate(context.Background(), Request{
					Prompt: tok.Encode("Once upon a time", true, true), MaxTokens: 256, IgnoreEOS: true,
					Sampling:   SamplerParams{Temperature: 0.8, TopK: 40, TopP: 0.95, Seed: uint64(i)},
					JSONObject: bc.object, JSONSchema: bc.schema,
				}, nil)
				if err != nil {
					b.Fatal(err)
				}
				toks += float64(res.Decoded)
				secs += res.DecodeTime.Seconds()
			}
			b.ReportMetric(toks/secs, "tok/s")
			b.ReportMetric(toks/float64(b.N), "tokens/op")
		})
	}
}
