package engine

import (
	"context"
	"fmt"
	"github.com/stepflash/stepflash/tensor"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stepflash/stepflash/internal/testmodels"
	"github.com/stepflash/stepflash/model"
)

const storyText = "Once upon a time, there was a little girl named Lily. She loved to play outside in the sunshine. " +
	"One day, she saw a big, red ball in the park. She ran to the ball and kicked it as hard as she could. The ball flew " +
	"over the fence and into the garden of an old man. Lily was scared, but she went to the old man and said sorry. The " +
	"old man smiled and gave her the ball back. They became good friends and played together every day."

const otherText = "Tom had a small boat. Every morning he took it to the lake and watched the fish swim under the water. " +
	"His dog Max always came with him and barked at the ducks."

// kvCfg is a model shape for the cache's unit tests: 2 layers of 4 floats.
var kvCfg = &model.Config{NLayer: 2, NHeadKV: 1, HeadDim: 4, HeadDimV: 4}

// seqTokens returns n tokens starting at from: 0, 1, 2, … shifted.
func seqTokens(from, n int) []int32 {
	out := make([]int32, n)
	for i := range out {
		out[i] = int32(from + i)
	}
	return out
}

// blockF32 is an F32 cache's block as floats (one KV head: row r of
// HeadDim at r*HeadDim).
func (c *KVCache) blockF32(layer, seq, pos int) (k, v []float32) {
	kb, vb := c.Block(layer, seq, pos)
	return tensor.F32s(kb), tensor.F32s(vb)
}

// fill writes a distinct value into every computed position of seq, as a
// forward pass would, and commits its full blocks.
func fill(c *KVCache, seq int, toks []int32, from, to int) {
	for p := from; p < to; p++ {
		for l := 0; l < c.layers; l++ {
			k, v := c.blockF32(l, seq, p)
			row := p % c.blockSize
			k[row*kvCfg.HeadDim] = float32(toks[p]) + float32(l)/10
			v[row*kvCfg.HeadDim] = -float32(toks[p])
		}
	}
	c.Commit(seq, toks, to)
}

// TestKVCacheBlocks runs the block pool and the prefix index without a
// model: allocation, sharing, copy on write, the LRU list and its budget.
func TestKVCacheBlocks(t *testing.T) {
	root, other := prefixRoot(0), prefixRoot(2)
	cases := []struct {
		name string
		run  func(t *testing.T, c *KVCache)
	}{
		{"private blocks, full cache, free", func(t *testing.T, c *KVCache) {
			if c.Capacity() != 128 {
				t.Fatalf("capacity %d, want 128", c.Capacity())
			}
			for seq, n := range []int{40, 64} {
				if err := c.Reserve(seq, n); err != nil {
					t.Fatal(err)
				}
			}
			if err := c.Reserve(2, 1); err == nil || !strings.Contains(err.Error(), "KV cache full") {
				t.Fatalf("reserving past capacity: %v", err)
			}
			k0, _ := c.blockF32(1, 0, 33)
			k1, _ := c.blockF32(1, 1, 33)
			k0[0], k1[0] = 1, 2
			if k0[0] == k1[0] {
				t.Fatal("two sequences share a block")
			}
			c.Free(0)
			c.Free(1)
			if c.FreePositions() != 128 || c.Stats().Blocks != 0 {
				t.Fatalf("after free: %d free, %d cached blocks (nothing was committed)", c.FreePositions(), c.Stats().Blocks)
			}
		}},
		{"shared full blocks and a copied partial one", func(t *testing.T, c *KVCache) {
			a := seqTokens(100, 70)
			if n, err := c.Admit(0, 80, a, 69, root, nil); err != nil || n != 0 {
				t.Fatalf("cold admit: %d, %v", n, err)
			}
			fill(c, 0, a, 0, 70)
			if st := c.Stats(); st.Blocks != 2 || st.IdleBlocks != 0 {
				t.Fatalf("while running: %+v, want the 2 full blocks registered and held", st)
			}
			// A second sequence with the same prompt and more shares blocks 0
			// and 1 while the first still runs, and copies block 2's 6 positions.
			c.Retire(0, a, 70, true)
			b := append(slices.Clone(a), 7, 8, 9)
			n, err := c.Admit(1, 80, b, len(b)-1, root, nil)
			if err != nil || n != 70 {
				t.Fatalf("admit of a longer prompt: reused %d, %v; want 70", n, err)
			}
			c2 := seqTokens(100, 40)
			if n, err := c.Admit(2, 50, c2, len(c2)-1, root, nil); err != nil || n != 39 {
				t.Fatalf("admit of a shorter prompt: reused %d, %v; want 39", n, err)
			}
			s1, s2 := c.seqs[1].table, c.seqs[2].table
			if s1[0] != s2[0] || c.refs[s1[0]] != 2 {
				t.Fatalf("block 0 not shared: tables %v %v, refs %d", s1, s2, c.refs[s1[0]])
			}
			if s1[1] == s2[1] {
				t.Fatal("the sequence reusing 7 of block 1's positions writes into the shared block")
			}
			for _, seq := range []int{1, 2} {
				for p := 0; p < 39; p++ {
					k, v := c.blockF32(1, seq, p)
					row := p % 32
					if k[row*kvCfg.HeadDim] != float32(a[p])+0.1 || v[row*kvCfg.HeadDim] != -float32(a[p]) {
						t.Fatalf("sequence %d position %d: k %v v %v, not the cached values", seq, p, k[row*kvCfg.HeadDim], v[row*kvCfg.HeadDim])
					}
				}
			}
		}},
		{"keys: root, extra keys, mid-block divergence", func(t *testing.T, c *KVCache) {
			a := seqTokens(0, 50)
			keyed := []CacheKey{{Start: 40, End: 45, Key: "image-1"}}
			c.Admit(0, 60, a, 49, root, keyed)
			fill(c, 0, a, 0, 50)
			c.Retire(0, a, 50, true)
			cases := []struct {
				toks []int32
				root blockHash
				keys []CacheKey
				want int
			}{
				{a, root, keyed, 49},
				{a, other, keyed, 0},
				{a, root, nil, 40},
				{a, root, []CacheKey{{Start: 44, End: 45, Key: "image-1"}}, 40},
				{a, root, []CacheKey{{Start: 40, End: 45, Key: "image-2"}}, 40},
				{append(seqTokens(0, 20), 999, 998), root, nil, 20},
				{seqTokens(1, 40), root, nil, 0},
			}
			for i, tc := range cases {
				n, err := c.Admit(10+i, 60, tc.toks, len(tc.toks)-1, tc.root, tc.keys)
				if err != nil || n != tc.want {
					t.Errorf("probe %d: reused %d, %v; want %d", i, n, err, tc.want)
				}
				c.Free(10 + i)
			}
		}},
		{"LRU eviction: tail blocks first, descendants unreachable", func(t *testing.T, c *KVCache) {
			a := seqTokens(0, 80) // blocks 0, 1 full, 16 positions of block 2
			c.Admit(0, 80, a, 79, root, nil)
			fill(c, 0, a, 0, 80)
			c.Retire(0, a, 80, true)
			if st := c.Stats(); st.Blocks != 3 || st.IdleBlocks != 3 || c.FreePositions() != 128 {
				t.Fatalf("after retire: %+v, %d free positions", st, c.FreePositions())
			}
			b := seqTokens(500, 64)
			c.Admit(1, 64, b, 63, root, nil) // 1 free block, then evicts the partial block 2 of a
			if st := c.Stats(); st.Evictions != 1 {
				t.Fatalf("evictions %d, want 1", st.Evictions)
			}
			fill(c, 1, b, 0, 64)
			c.Retire(1, b, 64, true)
			if n, _ := c.Admit(2, 80, a, 79, root, nil); n != 64 {
				t.Fatalf("a again: reused %d, want 64 (its partial block was evicted)", n)
			}
			c.Free(2)
			// Filling the cache with new blocks evicts the least recently
			// used: b's (a was used last), then a's block 1 before block 0.
			c.Admit(3, 96, seqTokens(900, 96), 95, root, nil)
			if st := c.Stats(); st.Evictions != 4 {
				t.Fatalf("evictions %d, want 4: %+v", st.Evictions, st)
			}
			if n, _ := c.Admit(4, 32, a, 79, root, nil); n != 32 {
				t.Fatalf("a after eviction: reused %d, want 32 (block 0 left)", n)
			}
		}},
		{"a block computed twice stays private", func(t *testing.T, c *KVCache) {
			a := seqTokens(0, 40)
			c.Admit(0, 40, a, 39, root, nil)
			c.Admit(1, 40, a, 39, root, nil)
			fill(c, 0, a, 0, 40)
			fill(c, 1, a, 0, 40)
			if st := c.Stats(); st.Blocks != 1 {
				t.Fatalf("%d blocks registered, want 1", st.Blocks)
			}
			c.Retire(0, a, 40, true)
			c.Retire(1, a, 40, true)
			if st := c.Stats(); st.Blocks != 2 || st.IdleBlocks != 2 || c.FreePositions() != 128 {
				t.Fatalf("after both: %+v, %d free (block 0 and one partial leaf cached)", st, c.FreePositions())
			}
		}},
		{"a full cache: copy, then evict the source; or no copy", func(t *testing.T, c *KVCache) {
			a := seqTokens(0, 80) // 2 full blocks and 16 positions
			c.Admit(0, 80, a, 79, root, nil)
			fill(c, 0, a, 0, 80)
			c.Retire(0, a, 80, true)
			b := append(slices.Clone(a[:70]), 999)
			if n, err := c.Admit(1, 128, b, 70, root, nil); err != nil || n != 70 || c.Stats().Evictions != 1 {
				t.Fatalf("reused %d, %v, %d evictions; want 70 and the copied block evicted", n, err, c.Stats().Evictions)
			}
			c.Retire(1, b, 70, true)
			// d fills all 4 blocks; then e shares 3 whole ones and has one
			// left for its 4th, the block it would copy from: no copy.
			d := seqTokens(0, 110)
			c.Admit(2, 128, d, 109, root, nil)
			fill(c, 2, d, 0, 110)
			c.Retire(2, d, 110, true)
			e := append(slices.Clone(d[:100]), 999)
			if n, err := c.Admit(3, 128, e, 100, root, nil); err != nil || n != 96 {
				t.Fatalf("reused %d, %v; want the 3 whole blocks (96)", n, err)
			}
		}},
		{"a prompt that cannot fit claims nothing", func(t *testing.T, c *KVCache) {
			a := seqTokens(0, 64)
			c.Admit(0, 96, a, 63, root, nil)
			fill(c, 0, a, 0, 64)
			if _, err := c.Admit(1, 96, a, 63, root, nil); err == nil {
				t.Fatal("admitted 96 positions with 32 free, sharing one block")
			}
			if _, held := c.seqs[1]; held || c.refs[c.seqs[0].table[0]] != 1 {
				t.Fatalf("failed admit holds %d positions, block 0 refs %d", c.Len(1), c.refs[c.seqs[0].table[0]])
			}
			if n, err := c.Admit(1, 32+31, a, 62, root, nil); err != nil || n != 62 {
				t.Fatalf("admit sharing block 0 and copying block 1: %d, %v", n, err)
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) { tc.run(t, NewKVCache(kvCfg, 100, 32)) })
	}
}

// prefixModels are the shared models the reuse tests run on.
var prefixModels = []string{"stories260K.gguf", "tiny-llama-Q4_K_M.gguf", "tiny-qwen3-Q4_K_M.gguf", "tiny-qwen3moe-Q4_K_M.gguf"}

// kvOf is what a finished request leaves in the cache: its prompt and
// every generated token but the last.
func kvOf(req Request, res *Result) []int32 {
	out := ids(res)
	return append(slices.Clone(req.Prompt), out[:max(len(out)-1, 0)]...)
}

func commonPrefix(a, b []int32) int {
	n := 0
	for n < len(a) && n < len(b) && a[n] == b[n] {
		n++
	}
	return n
}

// TestPrefixCacheGreedyIdentical runs prompts that share prefixes of every
// shape (whole blocks, a block boundary, inside a block, the whole prompt)
// with the prefix cache, one after another and then many at once, and
// checks that each greedy output is token for token the output without the
// cache, and that CachedTokens is exactly the longest prefix a finished
// request left (one after another) or at least that (at once).
func TestPrefixCacheGreedyIdentical(t *testing.T) {
	for _, file := range prefixModels {
		t.Run(strings.TrimSuffix(file, ".gguf"), func(t *testing.T) {
			m, tok := openModel(t, testmodels.Path(t, file), 1)
			moe := m.Config().NExpert > 0
			story := tok.Encode(storyText, true, true)
			if len(story) < 150 {
				t.Fatalf("story is %d tokens, want 150+", len(story))
			}
			other := tok.Encode(otherText, false, true)
			req := func(p []int32, experts int) Request {
				return Request{Prompt: slices.Clone(p), MaxTokens: 6, IgnoreEOS: true, ExpertsUsed: experts}
			}
			seqReqs := []Request{
				req(story[:70], 0), req(story[:70], 0), // the whole prompt again
				req(story[:64], 0),  // a block boundary
				req(story[:140], 0), // longer
				req(append(slices.Clone(story[:40]), other[:30]...), 0),  // diverges inside a block
				req(append(slices.Clone(story[:96]), other[:5]...), 0),   // after 3 whole blocks
				req(append(slices.Clone(story[:96]), other[5:20]...), 0), // a sibling of the last
				req(story[:140], 1), req(story[:150], 2), // other expert counts (MoE)
			}
			ref := New(m, tok, Options{Context: 256, CacheBytes: -1})
			defer ref.Close()
			memo := map[string][]int32{}
			want := func(r Request) []int32 {
				key := fmt.Sprint(r.Prompt, r.MaxTokens, e0(moe, r.ExpertsUsed))
				if w, ok := memo[key]; ok {
					return w
				}
				res, err := ref.Generate(context.Background(), r, nil)
				if err != nil {
					t.Fatal(err)
				}
				if res.CachedTokens != 0 {
					t.Fatalf("cache off, %d cached tokens", res.CachedTokens)
				}
				memo[key] = ids(res)
				return ids(res)
			}

			e := New(m, tok, Options{Context: 256, Parallel: 4, BatchSize: 24})
			defer e.Close()
			type done struct {
				kv   []int32
				root blockHash
			}
			var finished []done
			oracle := func(r Request) int { // the longest prefix a finished request left
				best := 0
				for _, d := range finished {
					if d.root == e.prefixRoot(r.ExpertsUsed) {
						best = max(best, min(commonPrefix(d.kv, r.Prompt), len(r.Prompt)-1))
					}
				}
				return best
			}
			sumCached := 0
			for i, r := range seqReqs {
				res, err := e.Generate(context.Background(), r, nil)
				if err != nil {
					t.Fatal(err)
				}
				if w := want(r); !slices.Equal(ids(res), w) {
					t.Errorf("request %d: with the cache %v, without %v", i, ids(res), w)
				}
				if o := oracle(r); res.CachedTokens != o {
					t.Errorf("request %d (%d tokens, experts %d): %d cached tokens, want %d", i, len(r.Prompt), r.ExpertsUsed, res.CachedTokens, o)
				}
				sumCached += res.CachedTokens
				finished = append(finished, done{kvOf(r, res), e.prefixRoot(r.ExpertsUsed)})
			}
			if moe && e.prefixRoot(1) == e.prefixRoot(2) || !moe && e.prefixRoot(1) != e.prefixRoot(0) {
				t.Fatalf("MoE %v: expert counts 1 and 2 share a root: %v", moe, e.prefixRoot(1) == e.prefixRoot(2))
			}

			// Many at once: 8 requests over 4 slots, sharing the story's
			// prefix (some from the requests above, some only among
			// themselves), with different lengths.
			var conc []Request
			for i := 0; i < 8; i++ {
				r := req(append(slices.Clone(story[:33+13*i]), other[i:i+3+i%4]...), 0)
				r.MaxTokens = 4 + i%5
				conc = append(conc, r)
			}
			lower := make([]int, len(conc))
			for i, r := range conc {
				lower[i] = oracle(r)
			}
			results := make([]*Result, len(conc))
			errs := make([]error, len(conc))
			var wg sync.WaitGroup
			for i := range conc {
				wg.Add(1)
				go func(i int) {
					defer wg.Done()
					results[i], errs[i] = e.Generate(context.Background(), conc[i], nil)
				}(i)
			}
			wg.Wait()
			for i, r := range conc {
				if errs[i] != nil {
					t.Fatal(errs[i])
				}
				res := results[i]
				if w := want(r); !slices.Equal(ids(res), w) {
					t.Errorf("concurrent request %d: with the cache %v, without %v", i, ids(res), w)
				}
				if res.CachedTokens < lower[i] || res.CachedTokens > len(r.Prompt)-1 {
					t.Errorf("concurrent request %d: %d cached tokens, want %d..%d", i, res.CachedTokens, lower[i], len(r.Prompt)-1)
				}
				sumCached += res.CachedTokens
			}
			st := e.PrefixCacheStats()
			if st.Lookups != int64(len(seqReqs)+len(conc)) || st.CachedTokens != int64(sumCached) || st.Hits == 0 || st.Hits > st.Lookups {
				t.Errorf("stats %+v: want %d lookups and %d cached tokens", st, len(seqReqs)+len(conc), sumCached)
			}
		})
	}
}

// e0 is the expert count that matters for a model's outputs.
func e0(moe bool, experts int) int {
	if moe {
		return experts
	}
	return 0
}

// TestPrefixCacheEviction runs with a KV cache of 4 blocks: a request that
// needs room evicts the least recently used blocks, last ones first, and a
// later request reuses exactly what is left; outputs stay the same.
func TestPrefixCacheEviction(t *testing.T) {
	m, tok := openStories(t)
	story, other := tok.Encode(storyText, true, true), tok.Encode(otherText, true, true)
	ref := New(m, tok, Options{Context: 128, CacheBytes: -1})
	defer ref.Close()
	e := New(m, tok, Options{Context: 128, KVTokens: 128})
	defer e.Close()
	a := Request{Prompt: story[:70], MaxTokens: 8, IgnoreEOS: true} // 77 positions: 2 full blocks, 13 in a third
	b := Request{Prompt: other[:60], MaxTokens: 8, IgnoreEOS: true} // 3 blocks: 1 free, 2 evicted
	bos := commonPrefix(a.Prompt, b.Prompt)
	steps := []struct {
		name      string
		req       Request
		cached    int
		evictions int64
	}{
		{"a cold", a, 0, 0},
		{"b evicts a's last two blocks", b, bos, 2},
		{"a reuses its first block", a, 32, 4}, // and evicts b's last two
		{"a again, all of it", a, 69, 5},       // its partial block copied into b's first
	}
	for _, s := range steps {
		res, err := e.Generate(context.Background(), s.req, nil)
		if err != nil {
			t.Fatal(err)
		}
		w, err := ref.Generate(context.Background(), s.req, nil)
		if err != nil {
			t.Fatal(err)
		}
		st := e.PrefixCacheStats()
		if res.CachedTokens != s.cached || st.Evictions != s.evictions || !slices.Equal(ids(res), ids(w)) {
			t.Errorf("%s: %d cached tokens (want %d), %d evictions (want %d), output %v (want %v)",
				s.name, res.CachedTokens, s.cached, st.Evictions, s.evictions, ids(res), ids(w))
		}
	}
}

// TestPrefixCacheCancelMidPrefill cancels a request while its prompt is
// being computed: the blocks it completed stay cached and a later request
// reuses them with the same output as without the cache.
func TestPrefixCacheCancelMidPrefill(t *testing.T) {
	m, tok := openStories(t)
	long := tok.Encode(strings.Repeat(storyText+" ", 2), true, true) // ~340 tokens
	ref := New(m, tok, Options{Context: 1024, CacheBytes: -1})
	defer ref.Close()
	e := New(m, tok, Options{Context: 1024, BatchSize: 8})
	defer e.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan *Result)
	go func() {
		res, err := e.Generate(ctx, Request{Prompt: long, MaxTokens: 8, IgnoreEOS: true}, nil)
		if err != nil {
			t.Error(err)
		}
		done <- res
	}()
	for e.PrefixCacheStats().Blocks == 0 {
		time.Sleep(100 * time.Microsecond)
	}
	cancel()
	res := <-done
	if res == nil {
		t.FailNow()
	}
	if res.FinishReason != "cancelled" {
		t.Logf("the prompt was done before the cancel (finish %q)", res.FinishReason)
	}
	after := append(slices.Clone(long), tok.Encode(" The end.", false, true)...)
	r := Request{Prompt: after, MaxTokens: 8, IgnoreEOS: true}
	got, err := e.Generate(context.Background(), r, nil)
	if err != nil {
		t.Fatal(err)
	}
	w, err := ref.Generate(context.Background(), r, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got.CachedTokens < 32 || got.CachedTokens > len(long) || !slices.Equal(ids(got), ids(w)) {
		t.Fatalf("after a cancelled prefill: %d cached tokens (want 32..%d), output %v, without the cache %v", got.CachedTokens, len(long), ids(got), ids(w))
	}
}

// TestPrefixCacheExperts: keys and values computed with one experts-per-
// token count are never reused with another; 0 is the trained count.
func TestPrefixCacheExperts(t *testing.T) {
	m, tok := openModel(t, testmodels.Path(t, "tiny-qwen3moe-F32.gguf"), 1)
	trained := m.Config().NExpertUse
	if trained < 2 {
		t.Fatalf("trained experts per token %d, want 2+", trained)
	}
	prompt := tok.Encode("Once upon a time there was", true, true)
	follow := append(slices.Clone(prompt), tok.Encode(" a cat", false, false)...)
	cases := []struct {
		first, then int
		reuse       bool
	}{{1, trained, false}, {1, 0, false}, {1, 1, true}, {trained, 0, true}, {0, trained, true}, {0, 1, false}}
	for _, tc := range cases {
		t.Run(fmt.Sprintf("%d then %d", tc.first, tc.then), func(t *testing.T) {
			e := New(m, tok, Options{Context: 256})
			defer e.Close()
			ref := New(m, tok, Options{Context: 256, CacheBytes: -1})
			defer ref.Close()
			if _, err := e.Generate(context.Background(), Request{Prompt: prompt, MaxTokens: 1, ExpertsUsed: tc.first}, nil); err != nil {
				t.Fatal(err)
			}
			r := Request{Prompt: follow, MaxTokens: 6, IgnoreEOS: true, ExpertsUsed: tc.then}
			res, err := e.Generate(context.Background(), r, nil)
			if err != nil {
				t.Fatal(err)
			}
			w, err := ref.Generate(context.Background(), r, nil)
			if err != nil {
				t.Fatal(err)
			}
			if wantCached := map[bool]int{true: len(prompt), false: 0}[tc.reuse]; res.CachedTokens != wantCached || !slices.Equal(ids(res), ids(w)) {
				t.Fatalf("%d cached tokens (want %d), output %v, without the cache %v", res.CachedTokens, wantCached, ids(res), ids(w))
			}
		})
	}
}

// TestPrefixCacheOptions: the cache's memory option and its off switch, and
// the cache keys a request may give.
func TestPrefixCacheOptions(t *testing.T) {
	m, tok := openStories(t)
	prompt := tok.Encode(storyText, true, true)[:50]
	per := KVBytesPerToken(m.Config())
	cases := []struct {
		name       string
		opts       Options
		keys       []CacheKey
		blocks     int    // KV cache size
		cached     int    // on the second run
		err        string // from Generate
		lookups    int64
		evictCount int64
	}{
		{"default: the running sequences' positions", Options{Context: 128}, nil, 4, 49, "", 2, 0},
		{"CacheBytes adds whole positions", Options{Context: 128, CacheBytes: 64*per + per - 1}, nil, 6, 49, "", 2, 0},
		{"a large budget costs nothing up front", Options{Context: 128, CacheBytes: 1 << 40}, nil, (128 + int((1<<40)/per) + 31) / 32, 49, "", 2, 0},
		{"negative turns it off", Options{Context: 128, CacheBytes: -1}, nil, 4, 0, "", 0, 0},
		{"same image key twice", Options{Context: 128}, []CacheKey{{10, 20, "a"}}, 4, 49, "", 2, 0},
		{"a key past the prompt", Options{Context: 128}, []CacheKey{{10, 51, "a"}}, 4, 0, "not a range inside the prompt", 0, 0},
		{"an empty key range", Options{Context: 128}, []CacheKey{{10, 10, "a"}}, 4, 0, "not a range inside the prompt", 0, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := New(m, tok, tc.opts)
			defer e.Close()
			var res *Result
			var err error
			for i := 0; i < 2 && err == nil; i++ {
				res, err = e.Generate(context.Background(), Request{Prompt: prompt, MaxTokens: 4, CacheKeys: tc.keys}, nil)
			}
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			st := e.PrefixCacheStats()
			if st.CapacityBlocks != tc.blocks || res.CachedTokens != tc.cached || st.Lookups != tc.lookups || st.Evictions != tc.evictCount {
				t.Fatalf("%d blocks (want %d), %d cached (want %d), stats %+v", st.CapacityBlocks, tc.blocks, res.CachedTokens, tc.cached, st)
			}
		})
	}
}

// TestBenchPrefixHit: the benchmark's cached request reuses exactly its
// shared prefix and the cold one nothing; shares with no cached prefix
// short of the last token are refused.
func TestBenchPrefixHit(t *testing.T) {
	m, tok := openStories(t)
	e := New(m, tok, Options{Context: 201})
	defer e.Close()
	r, err := e.BenchPrefixHit(200, 0.9, 0, 1)
	if err != nil {
		t.Fatal(err)
	}
	if r.ColdCached != 0 || r.HitCached != 180 || r.Cold <= 0 || r.Hit <= 0 {
		t.Fatalf("%+v, want 0 and 180 cached tokens and both times", r)
	}
	for _, tc := range []struct {
		n   int
		hit float64
	}{{200, 0}, {200, 1}, {200, 0.001}, {1, 0.5}} {
		if _, err := e.BenchPrefixHit(tc.n, tc.hit, 0, 2); err == nil || !strings.Contains(err.Error(), "no cached prefix") {
			t.Errorf("n %d hit %g: %v", tc.n, tc.hit, err)
		}
	}
}
