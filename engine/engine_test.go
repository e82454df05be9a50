package engine

import (
	"context"
	"math"
	"testing"
	"time"

	"github.com/stepflash/stepflash/chat"
	"github.com/stepflash/stepflash/effort"
	"github.com/stepflash/stepflash/internal/thinkmodel"
	"github.com/stepflash/stepflash/tokenizer"
)

func TestSamplerGreedyAndFilters(t *testing.T) {
	logits := []float32{1, 5, 3, 5, -2}
	cases := []struct {
		name string
		p    SamplerParams
		want map[int32]bool // tokens the sampler may return
	}{
		{"greedy ties go to the lower id", SamplerParams{Temperature: 0}, map[int32]bool{1: true}},
		{"top-k 1 is greedy", SamplerParams{Temperature: 1, TopK: 1}, map[int32]bool{1: true}},
		{"top-k 2 keeps the two best", SamplerParams{Temperature: 5, TopK: 2}, map[int32]bool{1: true, 3: true}},
		{"min-p drops the tail", SamplerParams{Temperature: 5, MinP: 0.5}, map[int32]bool{1: true, 3: true}},
		{"top-p 0.5 keeps the first token past the mass", SamplerParams{Temperature: 5, TopP: 0.4}, map[int32]bool{1: true}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for seed := uint64(0); seed < 200; seed++ {
				tc.p.Seed = seed
				got := NewSampler(tc.p).Sample(logits)
				if !tc.want[got] {
					t.Fatalf("seed %d: sampled %d, allowed %v", seed, got, tc.want)
				}
			}
		})
	}
}

func TestSamplerPenaltiesAndBias(t *testing.T) {
	logits := []float32{3, 2.5, 1, 0}
	s := NewSampler(SamplerParams{PresencePenalty: 1})
	if got := s.Sample(logits); got != 0 {
		t.Fatalf("first pick %d, want 0", got)
	}
	s.Accept(0)
	if got := s.Sample(logits); got != 1 {
		t.Fatalf("presence penalty 1 on token 0 (3-1 < 2.5): picked %d, want 1", got)
	}
	f := NewSampler(SamplerParams{FrequencyPenalty: 0.4})
	f.Accept(0)
	if got := f.Sample(logits); got != 0 {
		t.Fatalf("one occurrence, 3-0.4 > 2.5: picked %d", got)
	}
	f.Accept(0)
	if got := f.Sample(logits); got != 1 {
		t.Fatalf("two occurrences, 3-0.8 < 2.5: picked %d", got)
	}
	b := NewSampler(SamplerParams{LogitBias: map[int32]float32{0: -100, 3: 5}})
	if got := b.Sample(logits); got != 3 {
		t.Fatalf("bias: picked %d, want 3", got)
	}
	if logits[0] != 3 || logits[3] != 0 {
		t.Fatal("Sample modified the caller's logits")
	}
}

func TestSamplerSeedReproducibleAndSpread(t *testing.T) {
	logits := make([]float32, 50)
	for i := range logits {
		logits[i] = float32(i%7) * 0.3
	}
	p := SamplerParams{Temperature: 1, Seed: 42}
	a, b := NewSampler(p), NewSampler(p)
	seen := map[int32]bool{}
	for i := 0; i < 100; i++ {
		x, y := a.Sample(logits), b.Sample(logits)
		if x != y {
			t.Fatalf("draw %d: same seed gave %d and %d", i, x, y)
		}
		seen[x] = true
	}
	if len(seen) < 10 {
		t.Fatalf("temperature 1 over 50 similar logits drew only %d distinct tokens", len(seen))
	}
	p.Seed = 43
	c := NewSampler(p)
	same := 0
	a = NewSampler(SamplerParams{Temperature: 1, Seed: 42})
	for i := 0; i < 100; i++ {
		if a.Sample(logits) == c.Sample(logits) {
			same++
		}
	}
	if same == 100 {
		t.Fatal("different seeds drew identical sequences")
	}
}

func TestLogSoftmaxTop(t *testing.T) {
	logits := []float32{0, 2, 1, 3, -1}
	lp, top := LogSoftmaxTop(logits, 2, 3)
	sum := 0.0
	for _, l := range logits {
		sum += math.Exp(float64(l))
	}
	want := func(i int) float32 { return float32(float64(logits[i]) - math.Log(sum)) }
	if math.Abs(float64(lp-want(2))) > 1e-6 {
		t.Fatalf("logprob %v, want %v", lp, want(2))
	}
	ids := []int32{3, 1, 2}
	for i, tl := range top {
		if tl.ID != ids[i] || math.Abs(float64(tl.Logprob-want(int(ids[i])))) > 1e-6 {
			t.Fatalf("top[%d] = %+v, want id %d logprob %v", i, tl, ids[i], want(int(ids[i])))
		}
	}
}

// thinkingModel writes a copy of tiny-qwen3-F32 whose tokens 1000 and 1001
// are <think> and </think>, so the budget logic runs on a real model.
func thinkingModel(t *testing.T) string { return thinkmodel.Write(t, "tiny-qwen3-F32.gguf", "") }

func TestThinkingBudget(t *testing.T) {
	m, tok := openModel(t, thinkingModel(t), 1)
	e := New(m, tok, Options{Context: 256})
	closeID, _ := tok.Lookup("</think>")
	openID, _ := tok.Lookup("<think>")
	handOver := tok.Encode(chat.DefaultThinking.HandOver, false, true)
	closeNow := tok.Encode(chat.DefaultThinking.CloseEmpty, false, true)
	for _, c := range []struct {
		budget int
		prompt string // ends inside a thinking block (whitespace after the tag allowed)
	}{{0, "Once upon a time<think>"}, {5, "Once upon a time<think>"}, {17, "Once upon a time<think>"}, {5, "Once upon a time<think>\n"}} {
		budget := c.budget
		res, err := e.Generate(context.Background(), Request{
			Prompt: tok.Encode(c.prompt, false, true), MaxTokens: 60, IgnoreEOS: true,
			Thinking: thinkingFor(tok, budget),
		}, nil)
		if err != nil {
			t.Fatal(err)
		}
		// budget sampled tokens, then the forced hand-over ending in </think>
		// (just the close for a budget of 0), then the answer.
		forced := handOver
		if budget == 0 {
			forced = closeNow
		}
		end := -1
		for i, tk := range res.Tokens {
			if tk.ID == closeID {
				end = i
				break
			}
		}
		closeAt := -1
		for i, id := range forced {
			if id == closeID {
				closeAt = i
			}
		}
		if closeAt < 0 || end != budget+closeAt {
			t.Fatalf("%+v: </think> at %d, want %d (forced %v)", c, end, budget+closeAt, forced)
		}
		for i, tk := range res.Tokens {
			inForced := i >= budget && i < budget+len(forced)
			if tk.Forced != inForced {
				t.Fatalf("%+v: token %d forced=%v, want %v", c, i, tk.Forced, inForced)
			}
			if inForced && tk.ID != forced[i-budget] {
				t.Fatalf("%+v: forced token %d is %d, want %d", c, i, tk.ID, forced[i-budget])
			}
			if tk.Reasoning != (i <= end) && tk.ID != openID {
				t.Fatalf("%+v: token %d reasoning=%v (close at %d)", c, i, tk.Reasoning, end)
			}
		}
		if res.ReasoningTokens != countReasoning(res.Tokens) || res.ReasoningTokens < end+1 {
			t.Fatalf("%+v: %d reasoning tokens, want at least %d", c, res.ReasoningTokens, end+1)
		}
		if len(res.Tokens) != 60 {
			t.Fatalf("%+v: the model stopped answering after the hand-over (%d tokens)", c, len(res.Tokens))
		}
	}
}

// TestThinkingClosedInPrompt: a prompt that opened and closed a thinking
// block (as a forced tool call's prefill does) does not start inside one:
// nothing is forced and nothing counts as reasoning.
func TestThinkingClosedInPrompt(t *testing.T) {
	m, tok := openModel(t, thinkingModel(t), 1)
	e := New(m, tok, Options{Context: 256})
	openID, _ := tok.Lookup("<think>")
	closeID, _ := tok.Lookup("</think>")
	sp := SamplerParams{LogitBias: map[int32]float32{openID: -100, closeID: -100}} // greedy, no tags of its own
	res, err := e.Generate(context.Background(), Request{Prompt: tok.Encode("Once upon a time<think>\n</think>\n\n{", false, true),
		MaxTokens: 20, Sampling: sp, IgnoreEOS: true, Thinking: thinkingFor(tok, 0)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i, tk := range res.Tokens {
		if tk.Forced || tk.Reasoning {
			t.Fatalf("token %d %+v: forced or reasoning after a closed block", i, tk)
		}
	}
}

// thinkingFor is the Qwen3-style thinking block of the test vocabulary with
// a budget.
func thinkingFor(tok *tokenizer.Tokenizer, budget int) *Thinking {
	open, ok1 := tok.Lookup(chat.DefaultThinking.Open)
	closeID, ok2 := tok.Lookup(chat.DefaultThinking.Close)
	if !ok1 || !ok2 {
		panic("the test vocabulary has no thinking tags")
	}
	return &Thinking{Open: open, Close: closeID, Budget: budget,
		HandOver:   tok.Encode(chat.DefaultThinking.HandOver, false, true),
		CloseEmpty: tok.Encode(chat.DefaultThinking.CloseEmpty, false, true)}
}

func countReasoning(toks []Token) int {
	n := 0
	for _, t := range toks {
		if t.Reasoning {
			n++
		}
	}
	return n
}

// TestThinkingBudgetModelOpened: when the model opens the block itself, its
// <think> tag is not charged to the budget: a budget of B leaves B thinking
// tokens, as when the prompt opened it. The logit bias makes the model open
// a block at once (and keep writing <think> inside it).
func TestThinkingBudgetModelOpened(t *testing.T) {
	m, tok := openModel(t, thinkingModel(t), 1)
	e := New(m, tok, Options{Context: 256})
	openID, _ := tok.Lookup("<think>")
	closeID, _ := tok.Lookup("</think>")
	prompt := tok.Encode("Once upon a time", false, true)
	for _, budget := range []int{0, 1, 3} {
		sp := SamplerParams{LogitBias: map[int32]float32{openID: 100}} // greedy
		res, err := e.Generate(context.Background(), Request{Prompt: prompt, MaxTokens: 60, Sampling: sp, IgnoreEOS: true,
			Thinking: thinkingFor(tok, budget)}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if res.Tokens[0].ID != openID || !res.Tokens[0].Reasoning {
			t.Fatalf("budget %d: first token %+v, want the <think> tag", budget, res.Tokens[0])
		}
		sampled := 0
		for _, tk := range res.Tokens[1:] {
			if tk.Forced || tk.ID == closeID {
				break
			}
			sampled++
		}
		if sampled != budget {
			t.Fatalf("budget %d: %d thinking tokens before the close", budget, sampled)
		}
	}
}

// TestReasoningTokensDelivered: a consumer that stops early is billed the
// reasoning tokens it received, not those the scheduler had run ahead to.
func TestReasoningTokensDelivered(t *testing.T) {
	m, tok := openModel(t, thinkingModel(t), 1)
	e := New(m, tok, Options{Context: 256})
	prompt := tok.Encode("Once upon a time<think>", false, true)
	got := 0
	res, err := e.Generate(context.Background(), Request{Prompt: prompt, MaxTokens: 40, IgnoreEOS: true, Thinking: thinkingFor(tok, effort.Unlimited)}, func(Token) bool {
		got++
		time.Sleep(20 * time.Millisecond) // let the scheduler run ahead
		return got < 2
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Tokens) != 2 || res.ReasoningTokens != 2 {
		t.Fatalf("delivered %d tokens, %d reasoning tokens; want 2 and 2", len(res.Tokens), res.ReasoningTokens)
	}
}
