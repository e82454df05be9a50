package engine

import (
	"bytes"

	"github.com/stepflash/stepflash/tokenizer"
)

// thinkState follows <think>…</think> blocks in the generated tokens and,
// when a budget is set, queues the hand-over once the budget is spent.
type thinkState struct {
	open, close int32 // tag token ids; -1 when the vocabulary has none
	limit       bool
	budget      int
	in          bool
	spent       int
	closing     bool // hand-over queued or being written
	handedOver  bool // the hand-over was written once; a re-opened block just closes
	forced      []int32
	handOver    []int32
	closeNow    []int32 // the close for a budget of 0: no thinking to hand over from
}

func newThinkState(tok *tokenizer.Tokenizer, req Request) *thinkState {
	s := &thinkState{open: -1, close: -1, limit: req.LimitThinking, budget: req.ThinkingBudget}
	if id, ok := tok.Lookup("<think>"); ok {
		s.open = id
		s.in = endsInOpenTag(tok, req.Prompt, id)
	}
	if id, ok := tok.Lookup("</think>"); ok {
		s.close = id
		s.handOver = tok.Encode(HandOver, false, true)
		s.closeNow = tok.Encode(CloseThinking, false, true)
	}
	if s.in {
		s.check()
	}
	return s
}

// endsInOpenTag reports whether prompt ends with the <think> token (open),
// give or take whitespace after it: generation then starts inside a
// thinking block, whichever API built the prompt.
func endsInOpenTag(tok *tokenizer.Tokenizer, prompt []int32, open int32) bool {
	for i := len(prompt) - 1; i >= 0; i-- {
		if prompt[i] == open {
			return true
		}
		if len(bytes.TrimSpace(tok.PieceSpecial(prompt[i]))) != 0 {
			return false
		}
	}
	return false
}

// next returns the next forced token, if any.
func (s *thinkState) next() (int32, bool) {
	if len(s.forced) == 0 {
		return 0, false
	}
	id := s.forced[0]
	s.forced = s.forced[1:]
	return id, true
}

// observe records an emitted token and reports whether it belongs to a
// thinking block.
func (s *thinkState) observe(id int32) bool {
	switch {
	case id == s.open && s.open >= 0 && !s.in:
		s.in = true // the tag itself is reasoning but not spent budget
		s.check()
		return true
	case id == s.close && s.close >= 0 && s.in:
		s.in, s.closing = false, false // the rest of a hand-over ("\n\n") still follows
		return true
	case !s.in:
		return false
	}
	s.spent++
	s.check()
	return true
}

// check queues the hand-over when the budget is spent.
func (s *thinkState) check() {
	if s.limit && s.in && !s.closing && s.spent >= s.budget && s.close >= 0 {
		s.closing = true
		if s.handedOver {
			s.forced = []int32{s.close}
			return
		}
		s.handedOver = true
		if s.spent == 0 {
			s.forced = append([]int32(nil), s.closeNow...)
			return
		}
		s.forced = append([]int32(nil), s.handOver...)
	}
}
