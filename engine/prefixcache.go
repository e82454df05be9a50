package engine

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"slices"
)

// The prefix cache shares KV blocks between every sequence of an engine,
// as vLLM's automatic prefix caching and SGLang's RadixAttention do.
//
// A full block — BlockSize positions whose keys and values are all computed
// — is registered under a key chained from its parent's: SHA-256 of the
// previous block's key, the block's token ids and the extra keys of its
// positions (CacheKey). The first block's parent is a root key made of
// everything else the values depend on: the experts-per-token count of an
// MoE model. Equal keys mean equal prefixes, so a new sequence walks its
// prompt block by block and takes a reference on every cached block that
// matches; many running sequences may hold one block. Shared blocks are
// never written: a sequence only writes at positions past its reused
// length, and that length stops inside a block only where the rest of the
// block is copied into a private one first (copy on write). So reuse is
// exact to the token, not rounded down to whole blocks: a multi-turn
// conversation reuses its whole history, and a copy of one block costs far
// less than recomputing up to BlockSize-1 positions through every layer.
//
// When a sequence ends, the computed part of its last, partly filled block
// is registered too, as a leaf that later sequences copy from. Blocks no
// sequence holds stay cached on a least-recently-used list until their
// memory is needed: allocation takes free blocks first and then evicts from
// the front of that list. A sequence's blocks join the list last block
// first, so descendants go before their ancestors. Evicting a block does
// not invalidate its descendants — their keys are content hashes, still
// right if the block is computed again — but makes them unreachable until
// then, since a walk stops at the first block it misses; they age out of
// the list like any other.
//
// The cache's state is owned by the engine's scheduler (under Engine.mu);
// Forward only reads block storage.

// blockHash is the prefix-cache key of a full block.
type blockHash [sha256.Size]byte

// CacheKey marks prompt positions whose keys and values depend on more than
// their token ids — an image's embeddings at its placeholder tokens, say.
// Key (a hash of that content) becomes part of the prefix-cache key of every
// block that holds one of the positions [Start, End), and so of every block
// after it.
type CacheKey struct {
	Start, End int
	Key        string
}

// PrefixCacheStats counts the prefix cache's work since the engine started
// and what it holds now.
type PrefixCacheStats struct {
	// Lookups is the number of admitted requests whose prompt was looked
	// up; Hits counts those that reused at least one position (misses are
	// the difference).
	Lookups, Hits int64
	// PromptTokens is the sum of their prompt lengths; CachedTokens is the
	// sum of their reused lengths (Result.CachedTokens).
	PromptTokens, CachedTokens int64
	// Evictions is the number of cached blocks evicted to make room.
	Evictions int64
	// Blocks is the number of blocks registered now, held by sequences or
	// not; IdleBlocks is the number held by none (evictable).
	Blocks, IdleBlocks int
	// BlockSize is the number of positions per block; CapacityBlocks is
	// the number of blocks in the whole KV cache.
	BlockSize, CapacityBlocks int
}

// blockMeta is what the prefix cache knows of one block.
type blockMeta struct {
	cached     bool
	full       bool      // a full block, registered under hash; else a partial leaf
	hash       blockHash // full blocks only
	parent     blockHash // the key the block hangs from
	tokens     []int32
	keys       []CacheKey // its extra keys, block-relative and clipped
	idle       bool       // on the LRU list (no sequence holds it)
	prev, next int        // LRU list links, -1 at the ends
}

// prefixCache is the index of cached blocks and the LRU list of idle ones.
type prefixCache struct {
	on         bool
	meta       []blockMeta
	byHash     map[blockHash]int   // full blocks
	children   map[blockHash][]int // parent key → cached blocks (full and partial)
	head, tail int                 // LRU list: head is the least recently used
	idle       int
	blocks     int
	stats      PrefixCacheStats
}

func (p *prefixCache) init(on bool) {
	p.on = on
	p.byHash = map[blockHash]int{}
	p.children = map[blockHash][]int{}
	p.head, p.tail = -1, -1
}

// grow adds the entry of a new block.
func (p *prefixCache) grow() { p.meta = append(p.meta, blockMeta{prev: -1, next: -1}) }

// pushIdle puts a cached block that no sequence holds any more at the end
// of the LRU list.
func (p *prefixCache) pushIdle(id int) {
	m := &p.meta[id]
	m.idle, m.prev, m.next = true, p.tail, -1
	if p.tail >= 0 {
		p.meta[p.tail].next = id
	} else {
		p.head = id
	}
	p.tail = id
	p.idle++
}

// unlinkIdle takes a block off the LRU list.
func (p *prefixCache) unlinkIdle(id int) {
	m := &p.meta[id]
	if m.prev >= 0 {
		p.meta[m.prev].next = m.next
	} else {
		p.head = m.next
	}
	if m.next >= 0 {
		p.meta[m.next].prev = m.prev
	} else {
		p.tail = m.prev
	}
	m.idle, m.prev, m.next = false, -1, -1
	p.idle--
}

// evict drops the least recently used idle block from the cache and
// returns it for reuse. There must be one.
func (p *prefixCache) evict() int {
	id := p.head
	p.unlinkIdle(id)
	p.unregister(id)
	p.stats.Evictions++
	return id
}

func (p *prefixCache) register(id int, m blockMeta) {
	m.cached, m.prev, m.next = true, -1, -1
	p.meta[id] = m
	if m.full {
		p.byHash[m.hash] = id
	}
	p.children[m.parent] = append(p.children[m.parent], id)
	p.blocks++
}

func (p *prefixCache) unregister(id int) {
	m := &p.meta[id]
	if m.full && p.byHash[m.hash] == id {
		delete(p.byHash, m.hash)
	}
	sib := slices.DeleteFunc(p.children[m.parent], func(x int) bool { return x == id })
	if len(sib) == 0 {
		delete(p.children, m.parent)
	} else {
		p.children[m.parent] = sib
	}
	*m = blockMeta{prev: -1, next: -1}
	p.blocks--
}

// prefixRoot is the key the block chain of a sequence starts from: what
// its keys and values depend on besides the tokens. experts is the
// experts-per-token count of an MoE model (0 for a dense one).
func prefixRoot(experts int) blockHash {
	h := sha256.New()
	h.Write([]byte("stepflash kv v1"))
	h.Write(binary.LittleEndian.AppendUint64(nil, uint64(experts)))
	var out blockHash
	h.Sum(out[:0])
	return out
}

// chainKey is the key of a full block: its parent's key, its tokens and its
// extra keys (block-relative).
func chainKey(parent blockHash, tokens []int32, keys []CacheKey) blockHash {
	h := sha256.New()
	h.Write(parent[:])
	buf := make([]byte, 0, 4*len(tokens)+8)
	for _, t := range tokens {
		buf = binary.LittleEndian.AppendUint32(buf, uint32(t))
	}
	h.Write(buf)
	for _, k := range keys {
		buf = binary.LittleEndian.AppendUint32(buf[:0], uint32(k.Start))
		buf = binary.LittleEndian.AppendUint32(buf, uint32(k.End))
		buf = binary.LittleEndian.AppendUint64(buf, uint64(len(k.Key)))
		h.Write(buf)
		h.Write([]byte(k.Key))
	}
	var out blockHash
	h.Sum(out[:0])
	return out
}

// keysIn returns the extra keys that touch positions [lo, hi), clipped to
// that range and made relative to lo.
func keysIn(keys []CacheKey, lo, hi int) []CacheKey {
	var out []CacheKey
	for _, k := range keys {
		if k.Start < hi && k.End > lo {
			out = append(out, CacheKey{Start: max(k.Start, lo) - lo, End: min(k.End, hi) - lo, Key: k.Key})
		}
	}
	return out
}

// commonLen is how many leading positions a cached block's contents
// (tokens ta with keys ka) share with a prompt's (tb with kb): equal tokens,
// and equal extra keys over them.
func commonLen(ta []int32, ka []CacheKey, tb []int32, kb []CacheKey) int {
	n := 0
	for n < len(ta) && n < len(tb) && ta[n] == tb[n] {
		n++
	}
	a, b := keysIn(ka, 0, n), keysIn(kb, 0, n)
	if slices.Equal(a, b) {
		return n
	}
	// Positions before the first extra key of either have none in both.
	for _, k := range append(a, b...) {
		n = min(n, k.Start)
	}
	return n
}

// Admit gives sequence seq (which holds no blocks) the blocks for n
// positions, reusing the longest cached prefix of prompt no longer than
// limit, and returns the reused length. The sequence's keys and values
// will depend on prompt and on root and keys (see prefixRoot and CacheKey).
// When the cache cannot give the blocks even by evicting, Admit claims
// nothing and returns an error.
func (c *KVCache) Admit(seq, n int, prompt []int32, limit int, root blockHash, keys []CacheKey) (int, error) {
	if s := c.seqs[seq]; s != nil && len(s.table) > 0 {
		return 0, fmt.Errorf("engine: KVCache.Admit for sequence %d, which holds blocks", seq)
	}
	if !c.prefix.on {
		return 0, c.Reserve(seq, n)
	}
	p, bs := &c.prefix, c.blockSize
	// The longest chain of full cached blocks...
	var shared []int
	var chain []blockHash
	parent := root
	for i := 0; (i+1)*bs <= limit; i++ {
		toks, bk := prompt[i*bs:(i+1)*bs], keysIn(keys, i*bs, (i+1)*bs)
		h := chainKey(parent, toks, bk)
		id, ok := p.byHash[h]
		if !ok || !slices.Equal(p.meta[id].tokens, toks) || !slices.Equal(p.meta[id].keys, bk) {
			break
		}
		shared, chain, parent = append(shared, id), append(chain, h), h
	}
	// ...then the cached child of its end, full or partial, that shares
	// the most positions with the rest of the prompt: copied.
	lo := len(shared) * bs
	src, m := -1, 0
	if hi := min(limit, lo+bs); hi > lo {
		for _, id := range p.children[parent] {
			md := &p.meta[id]
			if k := commonLen(md.tokens, md.keys, prompt[lo:hi], keysIn(keys, lo, hi)); k > m {
				src, m = id, k
			}
		}
	}
	// Can it fit? Idle blocks about to be shared cannot be evicted; an
	// idle block copied from can, once copied, but the copy needs another.
	needBlocks := (n+bs-1)/bs - len(shared)
	avail := c.claimable()
	for _, id := range shared {
		if p.meta[id].idle {
			avail--
		}
	}
	if src >= 0 && p.meta[src].idle && avail < 2 {
		src, m = -1, 0
	}
	if needBlocks > avail {
		return 0, fmt.Errorf("engine: KV cache full: %d positions requested, %d free of %d", n, c.FreePositions(), c.Capacity())
	}
	s := c.seq(seq)
	s.root, s.keys = root, keys
	for _, id := range shared {
		c.ref(id)
	}
	s.table, s.chain = append(s.table, shared...), chain
	if src >= 0 {
		c.ref(src) // not evicted by its own copy's allocation
		dst := c.alloc()
		c.copyBlock(dst, src, m)
		c.release(src)
		s.table = append(s.table, dst)
	}
	if err := c.Reserve(seq, n); err != nil {
		panic("engine: prefix cache miscounted free blocks: " + err.Error())
	}
	reused := lo + m
	p.stats.Lookups++
	p.stats.PromptTokens += int64(len(prompt))
	p.stats.CachedTokens += int64(reused)
	if reused > 0 {
		p.stats.Hits++
	}
	return reused, nil
}

// ref takes a reference on a block that may be idle in the cache.
func (c *KVCache) ref(id int) {
	if c.refs[id] == 0 && c.prefix.meta[id].idle {
		c.prefix.unlinkIdle(id)
	}
	c.refs[id]++
}

// Commit registers the full blocks of seq whose positions [0, upto) are
// computed, tokens being the sequence's tokens. A block whose key is
// cached already (the same prefix computed by another sequence at the same
// time) stays private and is freed with its sequence.
func (c *KVCache) Commit(seq int, tokens []int32, upto int) {
	s := c.seqs[seq]
	if !c.prefix.on || s == nil {
		return
	}
	p, bs := &c.prefix, c.blockSize
	for len(s.chain) < len(s.table) && (len(s.chain)+1)*bs <= upto {
		i := len(s.chain)
		parent := s.root
		if i > 0 {
			parent = s.chain[i-1]
		}
		toks, bk := tokens[i*bs:(i+1)*bs], keysIn(s.keys, i*bs, (i+1)*bs)
		h := chainKey(parent, toks, bk)
		s.chain = append(s.chain, h)
		id := s.table[i]
		if p.meta[id].cached {
			continue // shared from the cache
		}
		if _, dup := p.byHash[h]; dup {
			continue
		}
		p.register(id, blockMeta{full: true, hash: h, parent: parent, tokens: slices.Clone(toks), keys: bk})
	}
}

// Retire frees seq's blocks. With keep, its computed positions [0, upto)
// stay cached: full blocks are committed, and the computed part of the
// last block becomes a partial leaf unless a cached block already holds
// the same (partial leaves it extends are dropped).
func (c *KVCache) Retire(seq int, tokens []int32, upto int, keep bool) {
	s := c.seqs[seq]
	if s == nil {
		return
	}
	if keep && c.prefix.on {
		c.Commit(seq, tokens, upto)
		c.keepTail(s, tokens, upto)
	}
	c.Free(seq)
}

func (c *KVCache) keepTail(s *seqBlocks, tokens []int32, upto int) {
	p, bs := &c.prefix, c.blockSize
	i, r := upto/bs, upto%bs
	if r == 0 || len(s.chain) != i || i >= len(s.table) || p.meta[s.table[i]].cached {
		return
	}
	parent := s.root
	if i > 0 {
		parent = s.chain[i-1]
	}
	tail, tk := tokens[i*bs:upto], keysIn(s.keys, i*bs, upto)
	for _, id := range slices.Clone(p.children[parent]) {
		md := &p.meta[id]
		k := commonLen(md.tokens, md.keys, tail, tk)
		switch {
		case k == len(tail):
			return // a cached block starts with all of it
		case !md.full && k == len(md.tokens) && md.idle:
			p.unlinkIdle(id) // a shorter leaf this one extends
			p.unregister(id)
			c.free = append(c.free, id)
		}
	}
	p.register(s.table[i], blockMeta{parent: parent, tokens: slices.Clone(tail), keys: tk})
}

// Stats returns the prefix cache's counters and contents.
func (c *KVCache) Stats() PrefixCacheStats {
	st := c.prefix.stats
	st.Blocks, st.IdleBlocks = c.prefix.blocks, c.prefix.idle
	st.BlockSize, st.CapacityBlocks = c.blockSize, c.maxBlocks
	return st
}
