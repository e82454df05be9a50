package engine

import (
	"fmt"

	"github.com/stepflash/stepflash/gguf"
	"github.com/stepflash/stepflash/tensor"

	"github.com/stepflash/stepflash/model"
)

// DefaultBlockSize is the number of positions per KV cache block.
const DefaultBlockSize = 32

// KVCache is a paged key/value cache: each sequence owns a table of
// fixed-size blocks drawn from a shared pool, so memory follows the tokens
// actually held rather than the context length of every slot. Block storage
// is allocated on first use, outside the Go heap (kvarena.go). Blocks carry reference counts: with the prefix
// cache on (prefixcache.go), a full block of computed positions is
// registered under the hash chain of its tokens and shared read-only by
// every sequence whose prompt starts the same way, and when no sequence
// holds it any more it stays cached until its memory is needed.
type KVCache struct {
	layers, heads, blockSize int
	kType, vType             gguf.Type
	kBlock, vBlock           int // bytes of one layer's block of keys (values)
	maxBlocks                int
	k, v                     [][][]byte // [layer][block] → per KV head, blockSize rows
	refs                     []int      // per block: sequences holding it
	free                     []int      // blocks holding nothing worth keeping
	// Blocks are made on first use: ids len(refs)..maxBlocks-1 are yet
	// to be, so a large budget costs nothing until it is used.
	seqs map[int]*seqBlocks
	// arena holds the blocks' memory, off the Go heap (kvarena.go).
	arena *kvArena

	prefix prefixCache
}

// seqBlocks is one sequence's view of the cache.
type seqBlocks struct {
	table []int // block ids, in position order
	// chain[i] is the prefix-cache key of full block i, for the leading
	// blocks whose positions are all computed (see Commit).
	chain []blockHash
	root  blockHash  // the key the chain starts from (experts, salt)
	keys  []CacheKey // the prompt's extra per-position keys
}

// NewKVCache makes an F32 cache for cfg that holds at most maxTokens
// positions in all (rounded up to whole blocks), with the prefix cache on.
func NewKVCache(cfg *model.Config, maxTokens, blockSize int) *KVCache {
	return newKVCache(cfg, maxTokens, blockSize, true, gguf.TypeF32, gguf.TypeF32)
}

// newKVCache is NewKVCache with the prefix cache on or off (off, Admit
// reuses nothing and Commit and Retire keep nothing) and the keys' and
// values' types (checked by CheckCacheTypes).
func newKVCache(cfg *model.Config, maxTokens, blockSize int, prefix bool, kt, vt gguf.Type) *KVCache {
	if blockSize <= 0 {
		blockSize = DefaultBlockSize
	}
	c := &KVCache{
		layers: cfg.NLayer, heads: cfg.NHeadKV, blockSize: blockSize, maxBlocks: (maxTokens + blockSize - 1) / blockSize,
		kType: kt, vType: vt,
		kBlock: cfg.NHeadKV * blockSize * tensor.KVRowBytes(kt, cfg.HeadDim),
		vBlock: cfg.NHeadKV * blockSize * tensor.KVRowBytes(vt, cfg.HeadDimV),
		k:      make([][][]byte, cfg.NLayer), v: make([][][]byte, cfg.NLayer), seqs: map[int]*seqBlocks{},
	}
	c.arena = newKVArena(c)
	c.prefix.init(prefix)
	return c
}

// KVBytesPerToken is the memory one cached position takes for cfg with
// F32 keys and values (every layer).
func KVBytesPerToken(cfg *model.Config) int64 {
	return KVBytesPerTokenOf(cfg, gguf.TypeF32, gguf.TypeF32)
}

// KVBytesPerTokenOf is the memory one cached position takes for cfg with
// keys of type kt and values of type vt (every layer).
func KVBytesPerTokenOf(cfg *model.Config, kt, vt gguf.Type) int64 {
	return int64(cfg.NLayer) * int64(cfg.NHeadKV) * int64(tensor.KVRowBytes(kt, cfg.HeadDim)+tensor.KVRowBytes(vt, cfg.HeadDimV))
}

// CheckCacheTypes says whether cfg's keys and values can be cached in
// types kt and vt: F32, F16 or Q8_0, and a head size that is a whole
// number of the type's blocks (32 for Q8_0), as llama.cpp requires.
func CheckCacheTypes(cfg *model.Config, kt, vt gguf.Type) error {
	for _, c := range []struct {
		what string
		t    gguf.Type
		dim  int
	}{{"keys", kt, cfg.HeadDim}, {"values", vt, cfg.HeadDimV}} {
		if !tensor.KVSupported(c.t) {
			return fmt.Errorf("engine: the KV cache cannot hold %s as %v (f32, f16 or q8_0)", c.what, c.t)
		}
		if c.dim%c.t.BlockSize() != 0 {
			return fmt.Errorf("engine: a %v cache of %s needs a head size that is a multiple of %d; this model's is %d", c.t, c.what, c.t.BlockSize(), c.dim)
		}
	}
	return nil
}

// Types are the keys' and values' storage types.
func (c *KVCache) Types() (k, v gguf.Type) { return c.kType, c.vType }

// BlockSize is the number of positions per block.
func (c *KVCache) BlockSize() int { return c.blockSize }

// Capacity is the number of positions the cache can hold in all.
func (c *KVCache) Capacity() int { return c.maxBlocks * c.blockSize }

// FreePositions is the number of positions a sequence can still claim:
// free blocks and cached blocks that no sequence holds (which are evicted
// when claimed).
func (c *KVCache) FreePositions() int { return c.claimable() * c.blockSize }

// claimable is the number of blocks a sequence can still claim.
func (c *KVCache) claimable() int { return len(c.free) + c.maxBlocks - len(c.refs) + c.prefix.idle }

// Block implements model.Cache. The block must have been reserved.
func (c *KVCache) Block(layer, seq, pos int) (k, v []byte) {
	id := c.seqs[seq].table[pos/c.blockSize]
	return c.k[layer][id], c.v[layer][id]
}

// Len returns the number of positions reserved for seq.
func (c *KVCache) Len(seq int) int {
	if s := c.seqs[seq]; s != nil {
		return len(s.table) * c.blockSize
	}
	return 0
}

func (c *KVCache) seq(id int) *seqBlocks {
	s := c.seqs[id]
	if s == nil {
		s = &seqBlocks{}
		c.seqs[id] = s
	}
	return s
}

// Reserve makes sure positions [0, n) of seq have blocks, taking free
// blocks first and then evicting the least recently used cached blocks
// that no sequence holds. It claims nothing when it cannot claim all.
func (c *KVCache) Reserve(seq, n int) error {
	need := (n+c.blockSize-1)/c.blockSize - c.Len(seq)/c.blockSize
	if need <= 0 {
		return nil
	}
	if need > c.claimable() {
		return fmt.Errorf("engine: KV cache full: %d positions requested, %d free of %d", n, c.FreePositions(), c.Capacity())
	}
	s := c.seq(seq)
	for i := 0; i < need; i++ {
		s.table = append(s.table, c.alloc())
	}
	return nil
}

// alloc takes one block — a free one, a new one, or the least recently
// used idle cached one (there must be one of these) — and gives it a
// reference.
func (c *KVCache) alloc() int {
	var id int
	switch n := len(c.free); {
	case n > 0:
		id = c.free[n-1]
		c.free = c.free[:n-1]
	case len(c.refs) < c.maxBlocks:
		id = len(c.refs)
		c.refs = append(c.refs, 0)
		c.prefix.grow()
		for l := 0; l < c.layers; l++ {
			c.k[l] = append(c.k[l], c.arena.alloc(c.kBlock))
			c.v[l] = append(c.v[l], c.arena.alloc(c.vBlock))
		}
	default:
		id = c.prefix.evict()
	}
	c.refs[id] = 1
	return id
}

// Free releases every block of seq. Blocks registered in the prefix cache
// stay cached (the last ones of the sequence first in line for eviction);
// the others become free.
func (c *KVCache) Free(seq int) {
	s := c.seqs[seq]
	if s == nil {
		return
	}
	for i := len(s.table) - 1; i >= 0; i-- {
		c.release(s.table[i])
	}
	delete(c.seqs, seq)
}

func (c *KVCache) release(id int) {
	c.refs[id]--
	if c.refs[id] > 0 {
		return
	}
	if c.prefix.meta[id].cached {
		c.prefix.pushIdle(id)
		return
	}
	c.free = append(c.free, id)
}

// copyBlock copies the first n positions of block src into block dst.
func (c *KVCache) copyBlock(dst, src, n int) {
	// Each KV head's rows start at its own offset in the block.
	kr, vr := c.kBlock/c.heads/c.blockSize, c.vBlock/c.heads/c.blockSize
	for l := 0; l < c.layers; l++ {
		for h := 0; h < c.heads; h++ {
			copy(c.k[l][dst][h*c.blockSize*kr:][:n*kr], c.k[l][src][h*c.blockSize*kr:][:n*kr])
			copy(c.v[l][dst][h*c.blockSize*vr:][:n*vr], c.v[l][src][h*c.blockSize*vr:][:n*vr])
		}
	}
}
