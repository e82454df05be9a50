package main

import (
	"flag"
	"fmt"
	"sync"

	"github.com/stepflash/stepflash/engine"
	"github.com/stepflash/stepflash/gguf"
	"github.com/stepflash/stepflash/model"
	"github.com/stepflash/stepflash/server"
	"github.com/stepflash/stepflash/tokenizer"
)

// specFlags are the speculative-decoding flags of run, bench and serve
// (docs/speculative.md), named after llama.cpp's where it has them.
type specFlags struct {
	mode               engine.SpecMode
	modeSet            bool // --spec was given (a --draft alone implies draft)
	k                  int
	ngramMin, ngramMax int
	draft              string
}

func (f *specFlags) register(fs *flag.FlagSet) {
	fs.Func("spec", "speculative decoding: off (default), ngram (drafts looked up in the sequence's own tokens: no extra model) or draft (a draft model, --draft); greedy output is unchanged, sampling keeps its distribution", func(s string) error {
		m, err := engine.ParseSpecMode(s)
		if err != nil {
			return err
		}
		f.mode, f.modeSet = m, true
		return nil
	})
	fs.IntVar(&f.k, "spec-k", 0, "speculative decoding: the most draft tokens a sequence proposes per step (0: 3)")
	fs.IntVar(&f.ngramMin, "spec-ngram-min", 0, "--spec ngram: the shortest suffix looked up (0: 1)")
	fs.IntVar(&f.ngramMax, "spec-ngram-max", 0, "--spec ngram: the longest suffix looked up (0: 3)")
	fs.StringVar(&f.draft, "draft", "", "draft model for speculative decoding: a smaller GGUF with the same vocabulary (implies --spec draft), as llama.cpp's -md")
}

// resolved is f with a --draft alone meaning --spec draft, checked.
func (f specFlags) resolved() (specFlags, error) {
	if f.draft != "" && !f.modeSet {
		f.mode = engine.SpecDraft
	}
	switch {
	case f.mode == engine.SpecDraft && f.draft == "":
		return f, fmt.Errorf("--spec draft needs a draft model: --draft FILE.gguf")
	case f.mode != engine.SpecDraft && f.draft != "":
		return f, fmt.Errorf("--draft is a draft model for --spec draft, not --spec %v", f.mode)
	case f.k < 0 || f.ngramMin < 0 || f.ngramMax < 0:
		return f, fmt.Errorf("--spec-k, --spec-ngram-min and --spec-ngram-max are counts of tokens (0: the default); got %d, %d, %d", f.k, f.ngramMin, f.ngramMax)
	case f.ngramMin > 0 && f.ngramMax > 0 && f.ngramMin > f.ngramMax:
		return f, fmt.Errorf("--spec-ngram-min %d is more than --spec-ngram-max %d", f.ngramMin, f.ngramMax)
	}
	return f, nil
}

// open loads the draft model (--spec draft) for a target with tokenizer
// tok, refusing one whose vocabulary differs, and returns the engine's
// speculative options and what closes the draft model.
func (f specFlags) open(tok *tokenizer.Tokenizer, cfg *model.Config, threads int, load gguf.Loading) (engine.SpecOptions, func(), error) {
	f, err := f.resolved()
	if err != nil {
		return engine.SpecOptions{}, nil, err
	}
	opts := engine.SpecOptions{Mode: f.mode, K: f.k, NgramMin: f.ngramMin, NgramMax: f.ngramMax}
	if f.mode != engine.SpecDraft {
		return opts, func() {}, nil
	}
	dm, df, err := model.Open(f.draft, model.Options{Threads: threads, Loading: load})
	if err != nil {
		return opts, nil, fmt.Errorf("draft model: %w", err)
	}
	closeDraft := func() { dm.Close(); df.Close() }
	dtok, err := tokenizer.FromGGUF(df)
	if err == nil {
		err = engine.CheckDraftVocab(tok, dtok)
	}
	if err == nil {
		opts.Draft = dm
		err = engine.CheckSpec(cfg, opts)
	}
	if err != nil {
		closeDraft()
		return opts, nil, fmt.Errorf("draft model %s: %w", f.draft, err)
	}
	return opts, closeDraft, nil
}

// describeSpec says how an engine speculates, for load lines ("" when it
// does not).
func describeSpec(e *engine.Engine, f specFlags) string {
	st := e.SpecStats()
	switch st.Mode {
	case engine.SpecNgram:
		return "; speculative decoding: n-gram lookup"
	case engine.SpecDraft:
		return "; speculative decoding: draft model " + f.draft
	}
	return ""
}

// describeDrafts says how many draft tokens a generation accepted, for
// run's summary line ("" without speculation).
func describeDrafts(r *engine.Result) string {
	if r.DraftTokens == 0 {
		return ""
	}
	return fmt.Sprintf("; drafts: %d of %d accepted (%.0f%%)", r.AcceptedTokens, r.DraftTokens, 100*float64(r.AcceptedTokens)/float64(r.DraftTokens))
}

// specEngines are the served models' engines, for the speculative
// decoding counters on /metrics.
type specEngines struct {
	mu   sync.Mutex
	list []specEngine
}

type specEngine struct {
	model  string
	engine *engine.Engine
}

func (s *specEngines) add(model string, e *engine.Engine) {
	if e == nil || e.SpecStats().Mode == engine.SpecOff {
		return
	}
	s.mu.Lock()
	s.list = append(s.list, specEngine{model, e})
	s.mu.Unlock()
}

// serveSpecMetrics puts the served models' draft-token counters on srv's
// /metrics: stepflash_spec_draft_tokens_total (proposed and verified) and
// stepflash_spec_accepted_tokens_total, by model; their ratio is the
// acceptance rate.
func serveSpecMetrics(srv *server.Server, engines *specEngines) {
	read := func(accepted bool) func() []server.GaugeSample {
		return func() []server.GaugeSample {
			engines.mu.Lock()
			defer engines.mu.Unlock()
			var out []server.GaugeSample
			for _, e := range engines.list {
				st := e.engine.SpecStats()
				v := st.Drafted
				if accepted {
					v = st.Accepted
				}
				out = append(out, server.GaugeSample{Labels: []string{e.model, st.Mode.String()}, Value: float64(v)})
			}
			return out
		}
	}
	srv.CounterFunc("stepflash_spec_draft_tokens_total", "Speculative decoding: draft tokens proposed and verified, by model and mode (ngram or draft).", read(false), "model", "mode")
	srv.CounterFunc("stepflash_spec_accepted_tokens_total", "Speculative decoding: draft tokens accepted (the acceptance rate is this over stepflash_spec_draft_tokens_total).", read(true), "model", "mode")
}
