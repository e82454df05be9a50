package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/signal"

	"github.com/stepflash/stepflash/effort"
	"github.com/stepflash/stepflash/engine"
	"github.com/stepflash/stepflash/local"
	"github.com/stepflash/stepflash/tensor"
	"github.com/stepflash/stepflash/vision"
)

// samplingFlags are the sampling flags of run (and later serve).
type samplingFlags struct {
	temp     float64
	topK     int
	topP     float64
	minP     float64
	seed     int64
	nPredict int
	topLP    int
}

func (s *samplingFlags) register(fs *flag.FlagSet) {
	fs.Float64Var(&s.temp, "temp", 0.8, "temperature (0: greedy)")
	fs.IntVar(&s.topK, "top-k", 40, "top-k sampling (0: off)")
	fs.Float64Var(&s.topP, "top-p", 0.95, "top-p (nucleus) sampling (1: off)")
	fs.Float64Var(&s.minP, "min-p", 0.05, "min-p sampling (0: off)")
	fs.Int64Var(&s.seed, "seed", -1, "random seed (-1: random)")
	fs.IntVar(&s.nPredict, "n", 128, "tokens to generate at most (-1: until the context is full)")
	fs.IntVar(&s.nPredict, "max-tokens", 128, "same as -n")
	fs.IntVar(&s.topLP, "top-logprobs", 0, "report the N most likely tokens at each generated position (0..20)")
}

func (s *samplingFlags) params() engine.SamplerParams {
	seed := uint64(s.seed)
	if s.seed < 0 {
		seed = rand.Uint64()
	}
	return engine.SamplerParams{Temperature: float32(s.temp), TopK: s.topK, TopP: float32(s.topP), MinP: float32(s.minP), Seed: seed}
}

// runOutput is the JSON object `run --json` prints (../shared/DESIGN.md section 2).
type runOutput struct {
	Model        string         `json:"model"`
	PromptTokens []int32        `json:"prompt_tokens"`
	Tokens       []int32        `json:"tokens"`
	Text         string         `json:"text"`
	TopLogprobs  [][]topLogprob `json:"top_logprobs"`
	FinishReason string         `json:"finish_reason"`
	// Effort echoes the applied reasoning_effort tier (never silently ignored).
	Effort          effort.Applied `json:"effort"`
	ReasoningTokens int            `json:"reasoning_tokens"`
	Timings         struct {
		PrefillTPS float64 `json:"prefill_tps"`
		DecodeTPS  float64 `json:"decode_tps"`
		// DraftTokens and AcceptedTokens count speculative decoding's
		// proposed and accepted draft tokens (absent without --spec).
		DraftTokens    *int `json:"draft_tokens,omitempty"`
		AcceptedTokens *int `json:"accepted_tokens,omitempty"`
	} `json:"timings"`
}

type topLogprob struct {
	ID      int32   `json:"id"`
	Token   string  `json:"token"`
	Logprob float32 `json:"logprob"`
}

func cmdRun(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var mf modelFlags
	var sf samplingFlags
	mf.register(fs)
	sf.register(fs)
	asJSON := fs.Bool("json", false, "print one JSON object (ids, text, top log-probs, timings) instead of streaming text")
	ignoreEOS := fs.Bool("ignore-eos", false, "keep generating past end-of-generation tokens")
	effortFlag := fs.String("effort", "", "reasoning effort: low, medium (default) or high — experts per token (MoE) and thinking budget")
	mmproj := fs.String("mmproj", "", "vision projector GGUF (llama.cpp's clip format) for --image (default: the one beside the model, mmproj-MODEL.gguf or the like)")
	var images []string
	fs.Func("image", "an image file (PNG, JPEG, WebP, GIF) for the prompt's next "+runMarker+" marker, or its start (repeatable; needs --mmproj)", func(s string) error {
		images = append(images, s)
		return nil
	})
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: stepflash run -m MODEL [--mmproj FILE --image FILE...] [flags] [--] PROMPT\n\nRaw completion (no chat template). The prompt is tokenized as llama.cpp's server does:\nBOS when the vocabulary asks for it, special tokens parsed. PROMPT \"-\" reads standard input.\nEach --image takes the place of a %s marker in PROMPT (at its start when it has none),\nencoded by the --mmproj vision projector.\n\nFlags:\n", runMarker)
		fs.PrintDefaults()
	}
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	prompt, err := textArg(pos, stdin)
	if err != nil {
		return err
	}
	if sf.topLP < 0 || sf.topLP > 20 {
		return fmt.Errorf("--top-logprobs must be in 0..20, got %d", sf.topLP)
	}
	if _, err := effort.Parse(*effortFlag); err != nil {
		return err
	}
	if len(images) > 0 && *mmproj == "" {
		if *mmproj = findProjector(mf.model); *mmproj == "" {
			return fmt.Errorf("--image needs --mmproj (the model's vision projector; none was found beside the model)")
		}
	}
	fmt.Fprintln(stderr, tensor.KernelNotice())
	l, err := mf.load()
	if err != nil {
		return err
	}
	defer l.Close()
	cfg := l.model.Config()
	applied, err := effort.DefaultPolicy(local.Shape(cfg)).Apply(*effortFlag, local.Shape(cfg))
	if err != nil {
		return err
	}

	ip := &local.ImagePrompt{}
	var venc *vision.Encoder
	if *mmproj != "" {
		// Opened (and checked against the model) even with no --image.
		enc, err := openVision(*mmproj, mf.threads, mf.loading, cfg)
		if err != nil {
			return err
		}
		defer enc.Close()
		venc = enc
	}
	if len(images) > 0 {
		enc := venc
		var encoded []local.EncodedImage
		if prompt, encoded, err = runImages(prompt, images, enc); err != nil {
			return err
		}
		if ip, err = local.PromptWithImages(l.tok, prompt, runMarker, true, encoded); err != nil {
			return err
		}
	} else {
		ip.Tokens = l.tok.Encode(prompt, true, true)
	}
	req := engine.Request{MaxTokens: sf.nPredict, Sampling: sf.params(), TopLogprobs: sf.topLP, IgnoreEOS: *ignoreEOS,
		Thinking: local.Thinking(l.tok, l.template().Thinking(), applied.ThinkingBudget)}
	ip.Apply(&req)
	if applied.ExpertsPerToken != nil {
		req.ExpertsUsed = *applied.ExpertsPerToken
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	var onToken func(engine.Token) bool
	if !*asJSON {
		fmt.Fprint(stdout, prompt)
		onToken = func(t engine.Token) bool {
			fmt.Fprint(stdout, t.Text)
			return true
		}
	}
	res, err := l.engine.Generate(ctx, req, onToken)
	if err != nil {
		return err
	}
	if !*asJSON {
		fmt.Fprintln(stdout)
		fmt.Fprintf(stderr, "prompt: %d tokens, %.1f tok/s; generated: %d tokens, %.1f tok/s; finish: %s; effort: %s%s\n",
			len(req.Prompt), res.PrefillTPS(len(req.Prompt)), len(res.Tokens), res.DecodeTPS(), res.FinishReason, describeEffort(applied), describeDrafts(res))
		return nil
	}
	out := runOutput{Model: mf.model, PromptTokens: req.Prompt, Tokens: []int32{}, TopLogprobs: [][]topLogprob{}, FinishReason: res.FinishReason,
		Effort: applied, ReasoningTokens: res.ReasoningTokens}
	for _, t := range res.Tokens {
		out.Tokens = append(out.Tokens, t.ID)
		out.Text += t.Text
		if sf.topLP > 0 {
			row := make([]topLogprob, len(t.Top))
			for i, a := range t.Top {
				row[i] = topLogprob{ID: a.ID, Token: string(l.tok.Piece(a.ID)), Logprob: a.Logprob}
			}
			out.TopLogprobs = append(out.TopLogprobs, row)
		}
	}
	out.Timings.PrefillTPS = res.PrefillTPS(len(req.Prompt))
	out.Timings.DecodeTPS = res.DecodeTPS()
	if l.spec.mode != engine.SpecOff {
		out.Timings.DraftTokens, out.Timings.AcceptedTokens = &res.DraftTokens, &res.AcceptedTokens
	}
	enc := json.NewEncoder(stdout)
	return enc.Encode(out)
}

// describeEffort renders an applied effort for the terminal.
func describeEffort(a effort.Applied) string {
	experts := "n/a (dense)"
	if a.ExpertsPerToken != nil {
		experts = fmt.Sprint(*a.ExpertsPerToken)
	}
	return fmt.Sprintf("%s (experts per token %s, thinking budget %d)", a.Level, experts, a.ThinkingBudget)
}
