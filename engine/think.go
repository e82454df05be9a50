package engine

import (
	"bytes"

	"github.com/stepflash/stepflash/effort"
	"github.com/stepflash/stepflash/tokenizer"
)

// Thinking is a model family's reasoning block, in the model's tokens, and
// the budget one request may spend inside it. The text comes from the chat
// template's family (package chat), not from the engine.
type Thinking struct {
	// Open and Close are the tags' token ids.
	Open, Close int32
	// HandOver is written when the budget is spent; it ends with Close.
	HandOver []int32
	// CloseEmpty is written when the budget is 0 (no thinking to hand over
	// from); it ends with Close.
	CloseEmpty []int32
	// Budget is the most tokens spent inside the block (the tags not
	// counted); effort.Unlimited sets no limit.
	Budget int
}

// thinkState follows thinking blocks in the generated tokens and, when a
// budget is set, queues the hand-over once the budget is spent.
type thinkState struct {
	open, close int32 // tag token ids; -1 when the request has no thinking block
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
	s := &thinkState{open: -1, close: -1}
	th := req.Thinking
	if th == nil {
		return s
	}
	s.open, s.close = th.Open, th.Close
	s.limit, s.budget = th.Budget != effort.Unlimited, th.Budget
	s.handOver, s.closeNow = th.HandOver, th.CloseEmpty
	s.in = endsInOpenTag(tok, req.Prompt, th.Open)
	if s.in {
		s.check()
	}
	return s
}

// endsInOpenTag reports whether prompt ends with the open tag, give or take
// whitespace after it: generation then starts inside a thinking block,
// whichever API built the prompt.
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
