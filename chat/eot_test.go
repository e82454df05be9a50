package chat

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestEOTStrings(t *testing.T) {
	cases := []struct {
		template string // a file in testdata/templates, or source text
		want     []string
	}{
		{"chatml.jinja", []string{"<|im_end|>"}},
		{"qwen3.jinja", []string{"<|im_end|>"}},
		{"qwen3.6.jinja", []string{"<|im_end|>"}},
		{"qwen3-vl.jinja", []string{"<|im_end|>"}},
		{"lfm2.5-vl.jinja", []string{"<|im_end|>"}},
		{"nemotron-3-super.jinja", []string{"<|im_end|>"}},
		{"llama3.2.jinja", []string{"<|eot_id|>"}},
		{"rnj-1.jinja", []string{"<|eot_id|>"}},
		{"gemma3.jinja", []string{"<end_of_turn>"}},
		{"gemma4.jinja", []string{"<turn|>"}},
		{"gpt-oss.jinja", []string{"<|return|>"}},
		{"beam-1.0.jinja", []string{"<|return|>"}},
		{"deepseek-v4.1.jinja", []string{"<｜end▁of▁sentence｜>"}},
		{"laguna.jinja", []string{"</assistant>"}},
		{"kimi-k3.jinja", []string{"<|end_of_msg|>"}},
		{"glm-5.2.jinja", []string{"<|user|>"}},                       // turns end where the next begins
		{"mistral-medium-3.5.jinja", []string{"</s>"}},                // written literally
		{"ministral3.jinja", nil},                                     // eos_token: the vocabulary's EOS
		{"{% for m in messages %}{{ m.content }}\n{% endfor %}", nil}, // no tag at all
		{"{% for m in messages %}{{ m.content }}{{ eos_token }}{% endfor %}", nil},
		{"{{ raise_exception('no') }}", nil}, // cannot render: no guess
	}
	for _, tc := range cases {
		t.Run(tc.template, func(t *testing.T) {
			src := tc.template
			if filepath.Ext(src) == ".jinja" {
				b, err := os.ReadFile(filepath.Join("testdata/templates", src))
				if err != nil {
					t.Fatal(err)
				}
				src = string(b)
			}
			tmpl, err := NewTemplate(src)
			if err != nil {
				t.Fatal(err)
			}
			if got := tmpl.EOTStrings(); !slices.Equal(got, tc.want) {
				t.Errorf("EOTStrings() = %q, want %q", got, tc.want)
			}
		})
	}
	if got := FallbackTemplate().EOTStrings(); !slices.Equal(got, []string{"<|im_end|>"}) {
		t.Errorf("fallback: %q", got)
	}
}
