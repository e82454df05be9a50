package tokenizer

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stepflash/stepflash/internal/testmodels"
)

type refFile struct {
	ModelFile string `json:"model_file"`
	Runs      []struct {
		Variant string `json:"variant"`
		Cases   []struct {
			Name           string  `json:"name"`
			Prompt         string  `json:"prompt"`
			PromptTokenIDs []int32 `json:"prompt_token_ids"`
			PromptLayout   []struct {
				Text *string `json:"text"`
				IDs  []int32 `json:"ids"`
			} `json:"prompt_layout"`
			GeneratedTokenIDs []int32 `json:"generated_token_ids"`
			GeneratedText     string  `json:"generated_text"`
		} `json:"cases"`
	} `json:"runs"`
}

// TestRefsPromptTokens checks Encode(prompt, true, true) against the
// tokenization llama-server reported for every prompt of every reference
// file (llama_tokenize with add_special and parse_special), and the text
// pieces of the VLM image prompts (tokenized by libmtmd with parse_special),
// and streams the generated ids to the server's generated text.
func TestRefsPromptTokens(t *testing.T) {
	models := testmodels.Models(t)
	files, err := filepath.Glob(filepath.Join(models, "refs", "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no refs in %s", models)
	}
	checked := 0
	for _, path := range files {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		var ref refFile
		if err := json.Unmarshal(b, &ref); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if ref.ModelFile == "" {
			continue // image embeddings, tolerances
		}
		t.Run(strings.TrimSuffix(filepath.Base(path), ".json"), func(t *testing.T) {
			tok := loadTokenizer(t, filepath.Join(models, ref.ModelFile))
			for _, run := range ref.Runs {
				for _, c := range run.Cases {
					switch {
					case c.PromptTokenIDs != nil:
						if got := tok.Encode(c.Prompt, true, true); !slices.Equal(got, c.PromptTokenIDs) {
							t.Errorf("%s/%s: Encode(%q):\n got  %v\n want %v", run.Variant, c.Name, c.Prompt, got, c.PromptTokenIDs)
						}
						checked++
					case c.PromptLayout != nil:
						for _, p := range c.PromptLayout {
							if p.Text == nil {
								continue // image chunk
							}
							if got := tok.Encode(*p.Text, false, true); !slices.Equal(got, p.IDs) {
								t.Errorf("%s/%s: Encode(%q):\n got  %v\n want %v", run.Variant, c.Name, *p.Text, got, p.IDs)
							}
							checked++
						}
					default:
						t.Errorf("%s/%s: no prompt_token_ids and no prompt_layout", run.Variant, c.Name)
					}
					// The generated ids stream to the text the server returned.
					d := tok.NewStreamDecoder()
					var sb strings.Builder
					for _, id := range c.GeneratedTokenIDs {
						sb.WriteString(d.Push(id))
					}
					sb.WriteString(d.Flush())
					if sb.String() != c.GeneratedText {
						t.Errorf("%s/%s: streamed %q, want %q", run.Variant, c.Name, sb.String(), c.GeneratedText)
					}
				}
			}
		})
	}
	if checked < 60 {
		t.Errorf("only %d prompts checked", checked)
	}
	t.Logf("%d prompts checked", checked)
}
