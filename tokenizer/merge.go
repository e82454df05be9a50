package tokenizer

import "slices"

// The SPM and BPE tokenizers both start from the characters of a piece of
// text and merge neighbouring symbols, best pair first, through a priority
// queue; they differ in what "best" means (the merged token's score for SPM,
// the merge rank for BPE) and in what they do with symbols left over.

// symbol is a run of bytes [start, start+n) of the text being merged, linked
// to its neighbours; n == 0 marks a symbol merged into its left neighbour.
type symbol struct {
	start, n   int32
	prev, next int32
	id         int32 // token id of the symbol's text (BPE), or NoToken
}

// bigram is a candidate merge of symbols left and right, whose texts
// together were size bytes long when it was queued.
type bigram struct {
	left, right int32
	size        int32
	rank        int32   // BPE: lower merges first
	score       float32 // SPM: higher merges first
}

// bigramHeap is a binary heap of bigrams. With spm set it pops the highest
// score first, else the lowest rank; ties go to the leftmost pair. These are
// the orders of llama.cpp's llm_bigram_spm and llm_bigram_bpe comparators.
type bigramHeap struct {
	items []bigram
	spm   bool
}

func (h *bigramHeap) less(a, b *bigram) bool {
	if h.spm {
		if a.score != b.score {
			return a.score > b.score
		}
		return a.left < b.left
	}
	if a.rank != b.rank {
		return a.rank < b.rank
	}
	return a.left < b.left
}

func (h *bigramHeap) push(b bigram) {
	h.items = append(h.items, b)
	it := h.items
	i := len(it) - 1
	for i > 0 {
		p := (i - 1) / 2
		if !h.less(&it[i], &it[p]) {
			break
		}
		it[i], it[p] = it[p], it[i]
		i = p
	}
}

func (h *bigramHeap) pop() bigram {
	it := h.items
	top := it[0]
	last := len(it) - 1
	it[0] = it[last]
	it = it[:last]
	i := 0
	for {
		l := 2*i + 1
		if l >= len(it) {
			break
		}
		m := l
		if r := l + 1; r < len(it) && h.less(&it[r], &it[l]) {
			m = r
		}
		if !h.less(&it[m], &it[i]) {
			break
		}
		it[i], it[m] = it[m], it[i]
		i = m
	}
	h.items = it
	return top
}

// session holds the scratch buffers of one Encode call.
type session struct {
	syms  []symbol
	heap  bigramHeap
	cpts  []rune
	piece []byte
}

// splitChars fills s.syms with the characters of w, each as long as its lead
// byte says (llama.cpp's unicode_len_utf8), cut short at the end of w.
func (s *session) splitChars(w []byte) {
	s.syms = s.syms[:0]
	for off := 0; off < len(w); {
		n := min(utf8Len(w[off]), len(w)-off)
		i := int32(len(s.syms))
		s.syms = append(s.syms, symbol{start: int32(off), n: int32(n), prev: i - 1, next: i + 1, id: NoToken})
		off += n
	}
	if len(s.syms) > 0 {
		s.syms[len(s.syms)-1].next = -1
	}
}

// mergeStep applies a popped bigram if it is still current: both symbols
// still there and neither grown since it was queued. It returns false for a
// stale bigram.
func (s *session) mergeStep(b bigram) bool {
	l, r := &s.syms[b.left], &s.syms[b.right]
	if l.n == 0 || r.n == 0 || l.n+r.n != b.size {
		return false
	}
	l.n += r.n
	r.n = 0
	l.next = r.next
	if r.next >= 0 {
		s.syms[r.next].prev = b.left
	}
	return true
}

// spm tokenizes one fragment (spaces already escaped as ▁) the way
// llama.cpp's llm_tokenizer_spm does: merge the pair whose merged text is the
// highest-scoring token, until no pair forms a token; symbols that are not
// tokens fall back to byte tokens.
func (t *Tokenizer) spm(s *session, w []byte, out []int32) []int32 {
	s.splitChars(w)
	if len(s.syms) == 0 {
		return out
	}
	s.heap.spm = true
	s.heap.items = s.heap.items[:0]
	try := func(left, right int32) {
		if left < 0 || right < 0 {
			return
		}
		l, r := s.syms[left], s.syms[right]
		id, ok := t.ids[string(w[l.start:l.start+l.n+r.n])]
		if !ok {
			return
		}
		s.heap.push(bigram{left: left, right: right, size: l.n + r.n, score: t.scores[id]})
	}
	for i := int32(1); i < int32(len(s.syms)); i++ {
		try(i-1, i)
	}
	for len(s.heap.items) > 0 {
		b := s.heap.pop()
		if !s.mergeStep(b) {
			continue
		}
		try(s.syms[b.left].prev, b.left)
		try(b.left, s.syms[b.left].next)
	}
	// Every merged symbol is a token; only single characters can be missing
	// from the vocabulary (llama.cpp's rev_merge lookup never finds those).
	for i := int32(0); i != -1; i = s.syms[i].next {
		sym := s.syms[i]
		text := w[sym.start : sym.start+sym.n]
		if id, ok := t.ids[string(text)]; ok {
			out = append(out, id)
			continue
		}
		for _, c := range text {
			out = t.appendByte(out, c)
		}
	}
	return out
}

// appendByte appends the byte-fallback token of c, or the unknown token when
// the vocabulary has none (llama.cpp would fail there).
func (t *Tokenizer) appendByte(out []int32, c byte) []int32 {
	if id := t.byteTokens[c]; id != NoToken {
		return append(out, id)
	}
	if t.unk != NoToken {
		return append(out, t.unk)
	}
	return out
}

// rank returns the merge rank of the pair (a, b), or -1.
func (t *Tokenizer) rank(w []byte, a, b *symbol) int32 {
	if a.id != NoToken && b.id != NoToken {
		if r, ok := t.ranks[pairKey(a.id, b.id)]; ok {
			return r
		}
		return -1
	}
	if t.textRanks != nil {
		k := string(w[a.start:a.start+a.n]) + "\x00" + string(w[b.start:b.start+b.n])
		if r, ok := t.textRanks[k]; ok {
			return r
		}
	}
	return -1
}

// Word cache bounds: words longer than maxCachedWord bytes are not cached,
// and the cache is emptied when it reaches maxCacheEntries words.
const (
	maxCachedWord   = 64
	maxCacheEntries = 1 << 16
)

// bpeWordCached is bpeWord through the tokenizer's word cache.
func (t *Tokenizer) bpeWordCached(s *session, w []byte, out []int32) []int32 {
	if len(w) > maxCachedWord {
		return t.bpeWord(s, w, out)
	}
	t.cacheMu.Lock()
	ids, ok := t.cache[string(w)]
	t.cacheMu.Unlock()
	if ok {
		return append(out, ids...)
	}
	n := len(out)
	out = t.bpeWord(s, w, out)
	ids = slices.Clone(out[n:])
	t.cacheMu.Lock()
	if t.cache == nil || len(t.cache) >= maxCacheEntries {
		t.cache = make(map[string][]int32, 1024)
	}
	t.cache[string(w)] = ids
	t.cacheMu.Unlock()
	return out
}

// bpeWord tokenizes one pre-tokenized word the way llama.cpp's
// llm_tokenizer_bpe_session does: merge by rank, then map symbols to tokens,
// falling back to single-byte tokens for symbols that are not tokens.
func (t *Tokenizer) bpeWord(s *session, w []byte, out []int32) []int32 {
	if len(w) == 0 {
		return out
	}
	if t.ignoreMerges {
		if id, ok := t.ids[string(w)]; ok {
			return append(out, id)
		}
	}
	if t.pre.cfg.name == "gemma4" && onlyNewlines(w) {
		if id, ok := t.ids[string(w)]; ok {
			return append(out, id)
		}
	}
	s.splitChars(w)
	for i := range s.syms {
		sym := &s.syms[i]
		if id, ok := t.ids[string(w[sym.start:sym.start+sym.n])]; ok {
			sym.id = id
		}
	}
	s.heap.spm = false
	s.heap.items = s.heap.items[:0]
	try := func(left, right int32) {
		if left < 0 || right < 0 {
			return
		}
		l, r := &s.syms[left], &s.syms[right]
		if rk := t.rank(w, l, r); rk >= 0 {
			s.heap.push(bigram{left: left, right: right, size: l.n + r.n, rank: rk})
		}
	}
	for i := int32(1); i < int32(len(s.syms)); i++ {
		try(i-1, i)
	}
	for len(s.heap.items) > 0 {
		b := s.heap.pop()
		if !s.mergeStep(b) {
			continue
		}
		l := &s.syms[b.left]
		l.id = NoToken
		if id, ok := t.ids[string(w[l.start:l.start+l.n])]; ok {
			l.id = id
		}
		try(l.prev, b.left)
		try(b.left, l.next)
	}
	for i := int32(0); i != -1; i = s.syms[i].next {
		sym := s.syms[i]
		if sym.id != NoToken {
			out = append(out, sym.id)
			continue
		}
		for _, c := range w[sym.start : sym.start+sym.n] {
			if t.pre.cfg.rawUTF8 {
				if id := t.byteTokens[c]; id != NoToken {
					out = append(out, id)
				}
			} else if id, ok := t.ids[string([]byte{c})]; ok {
				// llama.cpp looks up each byte of the byte-encoded text as a
				// one-byte token: only ASCII ones can exist.
				out = append(out, id)
			}
		}
	}
	return out
}

func onlyNewlines(w []byte) bool {
	for _, c := range w {
		if c != '\n' {
			return false
		}
	}
	return true
}
