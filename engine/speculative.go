package engine

import (
	"fmt"
	"slices"
	"sync/atomic"

	"github.com/stepflash/stepflash/gguf"
	"github.com/stepflash/stepflash/model"
	"github.com/stepflash/stepflash/tokenizer"
)

// Speculative decoding. A decoding sequence may put, beside its next
// token, up to K proposed continuations ("draft tokens") into a step's
// forward pass, each with a logits row. Row i holds the model's logits
// after the sequence's tokens and drafts 1..i, exactly what a plain decode
// step would compute there, since a position's logits do not depend on the
// batch it runs in (model/blocks.go, tensor/attn.go). The rows are then
// read in order as plain decoding would read them: the token emitted from
// row i is drawn by the request's own sampler, and if it equals draft i+1
// the next row is valid too and is read in turn; the first mismatch (or
// the last row) ends the step. So a step emits 1 to K+1 tokens and:
//
//   - greedy requests emit exactly the plain greedy tokens: acceptance is
//     "the argmax equals the draft";
//   - sampled requests keep their distribution. A draft here is
//     deterministic (a point mass q = δ(x)), and the standard speculative
//     sampling rule (accept x with probability min(1, p(x)/q(x)), else draw
//     from max(0, p-q) renormalised) becomes: accept x with probability
//     p(x), else draw from p without x, renormalised (Sampler.SampleDraft),
//     where p is the distribution the request's sampler draws from (bias,
//     penalties, top-k, top-p, min-p, temperature). The token emitted from
//     a row is thus distributed as Sample's, and each row sees the tokens
//     emitted before it, penalties included.
//
// Rejected drafts leave keys and values in the cache at positions past the
// sequence's end; the cache is addressed by position and a token attends
// only to positions up to its own, so they are never read, and the next
// step overwrites them. A sequence's past (and the prefix cache's commit,
// which only registers blocks below it) counts only accepted positions.
//
// Drafts come from n-gram prompt lookup (SpecNgram: the continuation of
// the latest earlier occurrence of the sequence's last n tokens, as
// llama.cpp's lookup decoding and vLLM's ngram speculator) or a draft model
// (SpecDraft: a smaller model with the same vocabulary, run greedily K
// tokens ahead with its own KV cache, as llama.cpp's -md). Requests with a
// JSON constraint do not speculate (the constraint would have to be run
// over the drafts), nor do embeddings.

// SpecMode selects where draft tokens come from.
type SpecMode int

const (
	SpecOff   SpecMode = iota // no speculation
	SpecNgram                 // n-gram lookup in the sequence's own tokens
	SpecDraft                 // a draft model (SpecOptions.Draft)
)

// String is the mode's flag spelling.
func (m SpecMode) String() string {
	switch m {
	case SpecNgram:
		return "ngram"
	case SpecDraft:
		return "draft"
	}
	return "off"
}

// ParseSpecMode reads a mode name (off, ngram, draft).
func ParseSpecMode(s string) (SpecMode, error) {
	for _, m := range []SpecMode{SpecOff, SpecNgram, SpecDraft} {
		if s == m.String() {
			return m, nil
		}
	}
	return SpecOff, fmt.Errorf("unknown speculative mode %q (want off, ngram or draft)", s)
}

// SpecOptions configure speculative decoding.
type SpecOptions struct {
	Mode SpecMode
	// K is the most draft tokens a sequence proposes per step (default 3: on a CPU each verified row costs a good part of a decode step, docs/speculative.md).
	K int
	// NgramMin and NgramMax bound the length of the suffix looked up
	// (defaults 1 and 3); longer suffixes are tried first.
	NgramMin, NgramMax int
	// Draft is the draft model (SpecDraft); its vocabulary must be the
	// target's (CheckDraftVocab).
	Draft model.Model
}

func (o SpecOptions) withDefaults() SpecOptions {
	if o.K <= 0 {
		o.K = 3
	}
	if o.NgramMax <= 0 {
		o.NgramMax = 3
	}
	if o.NgramMin <= 0 {
		o.NgramMin = 1
	}
	o.NgramMin = min(o.NgramMin, o.NgramMax)
	return o
}

// CheckSpec says whether spec can run with a target model of cfg.
func CheckSpec(cfg *model.Config, spec SpecOptions) error {
	switch spec.Mode {
	case SpecOff, SpecNgram:
		if spec.Draft != nil {
			return fmt.Errorf("engine: a draft model is given but speculative decoding is %v (want draft)", spec.Mode)
		}
	case SpecDraft:
		if spec.Draft == nil {
			return fmt.Errorf("engine: speculative decoding with a draft model needs the draft model (--draft FILE)")
		}
		if n := spec.Draft.Config().NVocab; n != cfg.NVocab {
			return fmt.Errorf("engine: the draft model's vocabulary has %d tokens, the model's %d: a draft model must share the model's tokenizer", n, cfg.NVocab)
		}
	default:
		return fmt.Errorf("engine: unknown speculative mode %d", spec.Mode)
	}
	return nil
}

// CheckDraftVocab reports whether a draft model's tokenizer is the
// target's: the same kind, the same special tokens and the same text for
// every token id. Drafts in another vocabulary would mean other tokens;
// they would never be accepted, or worse, be accepted as the wrong text.
func CheckDraftVocab(target, draft *tokenizer.Tokenizer) error {
	if target.Model() != draft.Model() {
		return fmt.Errorf("the draft model's tokenizer is %q, the model's %q: a draft model must share the model's vocabulary", draft.Model(), target.Model())
	}
	if a, b := target.VocabSize(), draft.VocabSize(); a != b {
		return fmt.Errorf("the draft model's vocabulary has %d tokens, the model's %d: a draft model must share the model's vocabulary", b, a)
	}
	for _, sp := range []struct {
		what string
		a, b int32
	}{{"BOS", target.BOS(), draft.BOS()}, {"EOS", target.EOS(), draft.EOS()}, {"EOT", target.EOT(), draft.EOT()}} {
		if sp.a != sp.b {
			return fmt.Errorf("the draft model's %s token is %d, the model's %d: a draft model must share the model's vocabulary", sp.what, sp.b, sp.a)
		}
	}
	for id := int32(0); int(id) < target.VocabSize(); id++ {
		if a, b := target.TokenText(id), draft.TokenText(id); a != b {
			return fmt.Errorf("token %d is %q in the draft model's vocabulary and %q in the model's: a draft model must share the model's vocabulary", id, b, a)
		}
	}
	return nil
}

// SpecStats are an engine's speculative-decoding counters since it started.
type SpecStats struct {
	Mode     SpecMode
	Drafted  int64 // draft tokens proposed (and run in a forward pass)
	Accepted int64 // draft tokens accepted
}

// SpecStats returns the engine's speculative-decoding counters.
func (e *Engine) SpecStats() SpecStats {
	return SpecStats{Mode: e.spec.Mode, Drafted: e.spec.specDrafted.Load(), Accepted: e.spec.specAccepted.Load()}
}

// specState is an engine's speculative-decoding state.
type specState struct {
	SpecOptions
	specDrafted, specAccepted atomic.Int64
	draft                     *drafter // SpecDraft
}

// SampleDraft is Sample at a position where a deterministic drafter
// proposed draft: it returns draft with probability p(draft), where p is
// the distribution Sample draws from, and otherwise a token drawn from p
// without draft, renormalised — so its result is distributed exactly as
// Sample's. It spends one uniform number, as Sample does: u < p(draft)
// accepts, and otherwise (u - p(draft)) is uniform over the rest's mass.
// Greedy parameters pick the argmax, as Sample.
func (s *Sampler) SampleDraft(logits []float32, draft int32) int32 {
	logits = s.adjust(logits)
	if s.p.Greedy() {
		return Argmax(logits)
	}
	c := s.candidates(logits, nil)
	pd := 0.0
	for _, x := range c {
		if x.id == draft {
			pd = x.p
			break
		}
	}
	r := s.rng.Float64()
	if r < pd {
		return draft
	}
	r -= pd
	cum := 0.0
	last := int32(-1)
	for _, x := range c {
		if x.id == draft {
			continue
		}
		cum += x.p
		last = x.id
		if r < cum {
			return x.id
		}
	}
	if last < 0 { // only draft had mass (rounding)
		return draft
	}
	return last
}

// ngramDraft proposes up to k tokens after toks: the longest suffix of
// toks of nMax down to nMin tokens that occurred earlier in toks is looked
// up (its latest occurrence), and what followed it is proposed. The
// continuation may run into the proposal itself, so a repeating pattern
// is continued for all k tokens.
func ngramDraft(toks []int32, nMin, nMax, k int) []int32 {
	L := len(toks)
	if k <= 0 || L < 2 {
		return nil
	}
	for n := min(nMax, L-1); n >= nMin; n-- {
		suf := toks[L-n:]
		for i := L - n - 1; i >= 0; i-- {
			if toks[i+n-1] != suf[n-1] || !slices.Equal(toks[i:i+n], suf) {
				continue
			}
			out := make([]int32, 0, k)
			for j := 0; j < k; j++ {
				if p := i + n + j; p < L {
					out = append(out, toks[p])
				} else {
					out = append(out, out[p-L])
				}
			}
			return out
		}
	}
	return nil
}

// specBudget is how many draft tokens s may propose this step: at most K,
// none when the sequence cannot speculate or backs off after misses
// (accepted), and few enough that every
// draft could be accepted with a token to follow within maxNew (its KV
// reservation).
func (e *Engine) specBudget(s *sequence) int {
	if e.spec.Mode == SpecOff || s.json != nil || s.req.Pooling != PoolNone || len(s.think.forced) > 0 {
		return 0
	}
	if s.specIdle > 0 {
		s.specIdle--
		return 0
	}
	return max(0, min(e.spec.K, s.maxNew-s.generated-1))
}

// propose fills the drafts of the decoding sequences given the number of
// draft tokens each may propose (k[i] for seqs[i]). The draft model's
// passes run here, before the step's own.
func (e *Engine) propose(seqs []*sequence, k []int) {
	switch e.spec.Mode {
	case SpecNgram:
		for i, s := range seqs {
			s.draft = ngramDraft(s.tokens, e.spec.NgramMin, e.spec.NgramMax, k[i])
		}
	case SpecDraft:
		e.spec.draft.propose(seqs, k)
	}
}

// accepted records the outcome of a sequence's drafts: n of them accepted.
func (e *Engine) accepted(s *sequence, drafted, n int) {
	s.res.DraftTokens += drafted
	s.res.AcceptedTokens += n
	e.spec.specDrafted.Add(int64(drafted))
	e.spec.specAccepted.Add(int64(n))
	// Back off after a step whose drafts all missed: each row costs a
	// token's compute, which on a CPU is most of a decode step's time for
	// a small model. 1, 2, 4, then 8 steps without drafts until a draft is
	// accepted again.
	if n == 0 {
		s.specMiss = min(max(1, 2*s.specMiss), 8)
		s.specIdle = s.specMiss
	} else {
		s.specMiss = 0
	}
	if e.spec.draft != nil {
		// The draft cache holds the sequence's tokens, then the drafts it
		// was fed; those past the accepted ones are stale.
		s.dpast = min(s.dpast, s.past)
	}
}

// emitRows emits the tokens of one sequence's logits rows (vocab floats
// each; one row, or one per draft plus one): row i is read only while the
// tokens emitted so far equal the drafts. It reports whether s finished.
func (e *Engine) emitRows(s *sequence, logits []float32, vocab int) bool {
	draft := s.draft
	s.draft = nil
	for i := 0; ; i++ {
		// Row i's position and the accepted drafts before it are cached.
		s.past = len(s.tokens)
		d := int32(-1)
		if i < len(draft) {
			d = draft[i]
		}
		if s.generated > 0 {
			s.res.Decoded++
		}
		id, done := e.emit(s, logits[i*vocab:(i+1)*vocab], d)
		if done || i == len(draft) || id != d {
			if len(draft) > 0 {
				e.accepted(s, len(draft), i+boolInt(i < len(draft) && id == d))
			}
			return done
		}
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// drafter runs a draft model for SpecDraft: one cache position per token
// of each sequence (dpast of them computed), greedy, k tokens ahead.
type drafter struct {
	m      model.Model
	cache  *KVCache
	logits []float32
	batch  model.Batch
}

func newDrafter(m model.Model, positions int) *drafter {
	return &drafter{m: m, cache: newKVCache(m.Config(), positions, DefaultBlockSize, false, gguf.TypeF32, gguf.TypeF32)}
}

// admit reserves n positions for s in the draft cache; without room, s
// does not speculate.
func (d *drafter) admit(s *sequence, n int) {
	s.dpast = 0
	s.noDraft = d.cache.Reserve(s.id, n) != nil
}

// propose runs the draft model over the tokens each sequence has added
// since its last draft (the whole prompt the first time), then k-1 more
// passes of one token, and sets each sequence's drafts to the draft
// model's greedy choices.
func (d *drafter) propose(seqs []*sequence, k []int) {
	vocab := d.m.Config().NVocab
	var act []*sequence // sequences drafting this pass
	want := map[*sequence]int{}
	for i, s := range seqs {
		if k[i] > 0 && !s.noDraft {
			act = append(act, s)
			want[s] = k[i]
			s.draft = s.draft[:0]
		}
	}
	for len(act) > 0 {
		b := &d.batch
		b.Tokens, b.Pos, b.Seq, b.Output = b.Tokens[:0], b.Pos[:0], b.Seq[:0], b.Output[:0]
		for _, s := range act {
			// Feed what the draft cache lacks: the sequence's tokens from
			// dpast, then the drafts so far.
			n := len(s.tokens) + len(s.draft)
			for p := s.dpast; p < n; p++ {
				t := int32(0)
				if p < len(s.tokens) {
					t = s.tokens[p]
				} else {
					t = s.draft[p-len(s.tokens)]
				}
				b.Tokens = append(b.Tokens, t)
				b.Pos = append(b.Pos, p)
				b.Seq = append(b.Seq, s.id)
				b.Output = append(b.Output, p == n-1)
			}
		}
		if cap(d.logits) < len(act)*vocab {
			d.logits = make([]float32, len(act)*vocab)
		}
		if err := d.m.Forward(b, d.cache, d.logits[:len(act)*vocab]); err != nil {
			for _, s := range act { // the draft model failed: no drafts, and it is not asked again
				s.draft, s.noDraft = nil, true
			}
			return
		}
		next := act[:0]
		for i, s := range act {
			s.dpast = len(s.tokens) + len(s.draft)
			s.draft = append(s.draft, Argmax(d.logits[i*vocab:(i+1)*vocab]))
			if len(s.draft) < want[s] {
				next = append(next, s)
			}
		}
		act = next
	}
}

// free releases s's draft cache positions.
func (d *drafter) free(s *sequence) { d.cache.Free(s.id) }

// proposeDrafts sets the drafts of this step's decoding sequences, within
// the step's token budget (each sequence's next token counted first).
func (e *Engine) proposeDrafts(seqs []*sequence, budget int) {
	if e.spec.Mode == SpecOff || len(seqs) == 0 {
		return
	}
	left := budget - len(seqs)
	k := make([]int, len(seqs))
	some := false
	for i, s := range seqs {
		k[i] = min(e.specBudget(s), max(left, 0))
		left -= k[i]
		some = some || k[i] > 0
	}
	if !some {
		return
	}
	e.forward.Lock() // a draft model's passes are the model's time too
	e.propose(seqs, k)
	e.forward.Unlock()
}
