package engine

import (
	"fmt"

	"github.com/stepflash/stepflash/model"
)

// DefaultBlockSize is the number of positions per KV cache block.
const DefaultBlockSize = 32

// KVCache is a paged key/value cache: each sequence owns a table of
// fixed-size blocks drawn from a shared pool, so memory follows the tokens
// actually held rather than the context length of every slot. Block storage
// is allocated on first use. Blocks carry reference counts so that a later
// prefix cache can share a prompt's blocks between sequences.
type KVCache struct {
	layers, kvDim, blockSize int
	maxBlocks                int
	k, v                     [][][]float32 // [layer][block] → blockSize*kvDim floats
	refs                     []int         // per block
	free                     []int
	tables                   map[int][]int // sequence → block ids
}

// NewKVCache makes a cache for cfg that holds at most maxTokens positions in
// all (rounded up to whole blocks).
func NewKVCache(cfg *model.Config, maxTokens, blockSize int) *KVCache {
	if blockSize <= 0 {
		blockSize = DefaultBlockSize
	}
	nb := (maxTokens + blockSize - 1) / blockSize
	c := &KVCache{
		layers: cfg.NLayer, kvDim: cfg.KVDim(), blockSize: blockSize, maxBlocks: nb,
		k: make([][][]float32, cfg.NLayer), v: make([][][]float32, cfg.NLayer),
		refs: make([]int, nb), tables: map[int][]int{},
	}
	for l := range c.k {
		c.k[l] = make([][]float32, nb)
		c.v[l] = make([][]float32, nb)
	}
	for b := nb - 1; b >= 0; b-- {
		c.free = append(c.free, b)
	}
	return c
}

// BlockSize is the number of positions per block.
func (c *KVCache) BlockSize() int { return c.blockSize }

// Capacity is the number of positions the cache can hold in all.
func (c *KVCache) Capacity() int { return c.maxBlocks * c.blockSize }

// FreePositions is the number of positions not yet claimed by any sequence.
func (c *KVCache) FreePositions() int { return len(c.free) * c.blockSize }

// Block implements model.Cache. The block must have been reserved.
func (c *KVCache) Block(layer, seq, pos int) (k, v []float32) {
	id := c.tables[seq][pos/c.blockSize]
	return c.k[layer][id], c.v[layer][id]
}

// Len returns the number of positions reserved for seq.
func (c *KVCache) Len(seq int) int { return len(c.tables[seq]) * c.blockSize }

// Reserve makes sure positions [0, n) of seq have blocks.
func (c *KVCache) Reserve(seq, n int) error {
	t := c.tables[seq]
	need := (n+c.blockSize-1)/c.blockSize - len(t)
	if need <= 0 {
		return nil
	}
	if need > len(c.free) {
		return fmt.Errorf("engine: KV cache full: %d positions requested, %d free of %d", n, c.FreePositions(), c.Capacity())
	}
	for i := 0; i < need; i++ {
		id := c.free[len(c.free)-1]
		c.free = c.free[:len(c.free)-1]
		c.refs[id] = 1
		if c.k[0][id] == nil {
			for l := 0; l < c.layers; l++ {
				c.k[l][id] = make([]float32, c.blockSize*c.kvDim)
				c.v[l][id] = make([]float32, c.blockSize*c.kvDim)
			}
		}
		t = append(t, id)
	}
	c.tables[seq] = t
	return nil
}

// Truncate keeps the blocks covering positions [0, n) of seq and releases the rest.
func (c *KVCache) Truncate(seq, n int) {
	t := c.tables[seq]
	keep := (n + c.blockSize - 1) / c.blockSize
	for _, id := range t[min(keep, len(t)):] {
		c.release(id)
	}
	if keep < len(t) {
		c.tables[seq] = t[:keep]
	}
}

// Move hands the blocks of sequence from to sequence to, which must hold none.
func (c *KVCache) Move(from, to int) {
	if len(c.tables[to]) > 0 {
		panic("engine: KVCache.Move onto a sequence that holds blocks")
	}
	c.tables[to] = c.tables[from]
	delete(c.tables, from)
}

// Free releases every block of seq.
func (c *KVCache) Free(seq int) {
	for _, id := range c.tables[seq] {
		c.release(id)
	}
	delete(c.tables, seq)
}

func (c *KVCache) release(id int) {
	c.refs[id]--
	if c.refs[id] == 0 {
		c.free = append(c.free, id)
	}
}
