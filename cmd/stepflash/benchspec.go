package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/stepflash/stepflash/engine"
)

// specBenchText is bench --spec-prompt's default: code that repeats
// itself, as edits of a file and lists do, where lookup decoding helps.
const specBenchText = `func (s *Server) handleA(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	json.NewEncoder(w).Encode(s.a)
}

func (s *Server) handleB(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	json.NewEncoder(w).Encode(s.b)
}

func (s *Server) handleC(w http.ResponseWriter, r *http.Request) {
`

// specBenchReport is what bench --spec-prompt measures.
type specBenchReport struct {
	Model   string `json:"model"`
	Threads int    `json:"threads"`
	Spec    string `json:"spec"`
	Prompt  int    `json:"prompt_tokens"`
	Tokens  int    `json:"tokens"`
	// PlainTPS and SpecTPS are each round's decode tok/s (Result.DecodeTPS)
	// without and with speculation, the rounds alternating.
	PlainTPS []float64 `json:"plain_decode_tps"`
	SpecTPS  []float64 `json:"spec_decode_tps"`
	Drafted  int       `json:"draft_tokens"`
	Accepted int       `json:"accepted_tokens"`
	// Identical is whether every round's greedy tokens were the same with
	// and without speculation (they must be).
	Identical bool `json:"identical"`
}

// benchSpec times greedy decode of n tokens after a repetitive prompt with
// the engine's speculative decoding and with a second engine on the same
// model without it, alternating, runs rounds of each.
func benchSpec(l *loaded, mf modelFlags, text string, n, runs int, asJSON bool, stdout, stderr io.Writer) error {
	if l.engine.SpecStats().Mode == engine.SpecOff {
		return fmt.Errorf("--spec-prompt compares decoding with speculation and without: give --spec ngram or --draft FILE")
	}
	if strings.HasPrefix(text, "@") {
		b, err := os.ReadFile(text[1:])
		if err != nil {
			return err
		}
		text = string(b)
	}
	if text == "" {
		text = specBenchText
	}
	prompt := l.tok.Encode(text, l.tok.AddBOS(), true) // special tokens parsed: chat turns work
	if len(prompt)+n > l.engine.Context() {
		return fmt.Errorf("a %d-token prompt and -n %d do not fit the context of %d (-c)", len(prompt), n, l.engine.Context())
	}
	plain := engine.New(l.model, l.tok, mf.kvOptions.apply(engine.Options{Context: l.engine.Context()}))
	defer plain.Close()
	req := engine.Request{Prompt: prompt, MaxTokens: n, IgnoreEOS: true}
	rep := specBenchReport{Model: mf.model, Threads: mf.threads, Spec: l.spec.mode.String(), Prompt: len(prompt), Tokens: n, Identical: true}
	for i := -1; i < runs; i++ { // round -1 warms both up, untimed
		a, err := plain.Generate(context.Background(), req, nil)
		if err != nil {
			return err
		}
		b, err := l.engine.Generate(context.Background(), req, nil)
		if err != nil {
			return err
		}
		if i < 0 {
			continue
		}
		tokA, tokB := tokenIDs(a), tokenIDs(b)
		rep.Identical = rep.Identical && slices.Equal(tokA, tokB)
		rep.PlainTPS = append(rep.PlainTPS, a.DecodeTPS())
		rep.SpecTPS = append(rep.SpecTPS, b.DecodeTPS())
		rep.Drafted += b.DraftTokens
		rep.Accepted += b.AcceptedTokens
	}
	if asJSON {
		return json.NewEncoder(stdout).Encode(rep)
	}
	fmt.Fprintf(stdout, "model: %s  threads: %d  prompt: %d tokens  generated: %d tokens (greedy)  rounds: %d, alternating\n", mf.model, mf.threads, len(prompt), n, runs)
	fmt.Fprintf(stdout, "%-10s %12s %12s %12s\n", "decode", "min t/s", "median t/s", "max t/s")
	for _, r := range []struct {
		name string
		v    []float64
	}{{"plain", rep.PlainTPS}, {"spec " + rep.Spec, rep.SpecTPS}} {
		fmt.Fprintf(stdout, "%-10s %12.2f %12.2f %12.2f\n", r.name, slices.Min(r.v), median(r.v), slices.Max(r.v))
	}
	fmt.Fprintf(stdout, "speedup (medians): %.2fx; drafts: %d proposed, %d accepted (%.1f%%); output identical to plain greedy: %v\n",
		median(rep.SpecTPS)/median(rep.PlainTPS), rep.Drafted, rep.Accepted, 100*float64(rep.Accepted)/float64(max(rep.Drafted, 1)), rep.Identical)
	if !rep.Identical {
		return fmt.Errorf("speculative decoding changed the greedy output")
	}
	return nil
}

func tokenIDs(r *engine.Result) []int32 {
	var out []int32
	for _, t := range r.Tokens {
		out = append(out, t.ID)
	}
	return out
}
