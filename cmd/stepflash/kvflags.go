package main

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/stepflash/stepflash/engine"
	"github.com/stepflash/stepflash/gguf"
	"github.com/stepflash/stepflash/model"
)

// kvOptions are the flags that size a loaded model's context: the KV cache's
// types and memory budget and RoPE scaling, named as llama.cpp names them.
type kvOptions struct {
	cacheTypeK, cacheTypeV gguf.Type
	kvMemory               int64 // MiB; 0: what the machine has available
	rope                   model.RopeOptions
}

// cacheTypeHelp is the --cache-type-k/-v flags' help.
const cacheTypeHelp = "KV cache type for %s: f32 (default), f16 (half the memory) or q8_0 (about a quarter; the head size must be a multiple of 32), as llama.cpp's --cache-type-%s"

func (k *kvOptions) register(fs *flag.FlagSet) {
	for _, f := range []struct {
		names []string
		what  string
		dst   *gguf.Type
	}{{[]string{"cache-type-k", "ctk"}, "keys", &k.cacheTypeK}, {[]string{"cache-type-v", "ctv"}, "values", &k.cacheTypeV}} {
		set := func(s string) error {
			t, err := parseCacheType(s)
			if err != nil {
				return err
			}
			*f.dst = t
			return nil
		}
		fs.Func(f.names[0], fmt.Sprintf(cacheTypeHelp, f.what, f.names[0][len(f.names[0])-1:]), set)
		fs.Func(f.names[1], "same as --"+f.names[0], set)
	}
	fs.Int64Var(&k.kvMemory, "kv-memory", 0, "MiB the KV cache of a model may take; a context (-c × --parallel, plus --cache-ram) that needs more is refused at start (0: the memory available when the model loads)")
	fs.StringVar(&k.rope.Type, "rope-scaling", "", "RoPE scaling: none, linear or yarn (default: the GGUF's rope.scaling.type); with a factor, -c may go beyond the trained context")
	fs.Func("rope-scale", "RoPE context scaling factor: the context grows this many times (default: the GGUF's rope.scaling.factor)", func(s string) error {
		v, err := strconv.ParseFloat(s, 32)
		if err != nil || v <= 0 {
			return fmt.Errorf("--rope-scale must be a positive number, got %q", s)
		}
		k.rope.Scale = float32(v)
		return nil
	})
	fs.IntVar(&k.rope.OrigCtx, "yarn-orig-ctx", 0, "YaRN: the model's original training context (default: the GGUF's rope.scaling.original_context_length, else its context_length)")
}

// parseCacheType reads a KV cache type as llama.cpp names it.
func parseCacheType(s string) (gguf.Type, error) {
	switch strings.ToLower(s) {
	case "f32":
		return gguf.TypeF32, nil
	case "f16":
		return gguf.TypeF16, nil
	case "q8_0":
		return gguf.TypeQ8_0, nil
	}
	return 0, fmt.Errorf("unknown KV cache type %q (want f32, f16 or q8_0)", s)
}

// cacheTypeName is t as the flags spell it.
func cacheTypeName(t gguf.Type) string { return strings.ToLower(t.String()) }

// apply sets opts' cache types.
func (k kvOptions) apply(opts engine.Options) engine.Options {
	opts.CacheTypeK, opts.CacheTypeV = k.cacheTypeK, k.cacheTypeV
	return opts
}

// checkContext refuses, before any memory is committed, a context the
// model's positions are not trained or scaled for, and a KV cache that
// does not fit the budget. opts has the engine's defaults applied.
func (k kvOptions) checkContext(cfg *model.Config, opts engine.Options) error {
	if limit := cfg.ContextLimit(); opts.Context > limit {
		hint := fmt.Sprintf("pass -c %d or less", limit)
		if cfg.Rope.Type != model.RopeScalingYaRN || cfg.RopeScale >= 1 {
			hint += fmt.Sprintf(", or scale RoPE to reach it: --rope-scaling yarn --rope-scale %d (--yarn-orig-ctx %d)",
				(opts.Context+cfg.NCtxTrain-1)/cfg.NCtxTrain, cfg.NCtxTrain)
		}
		return fmt.Errorf("a context of %d positions is longer than the %d this model's positions are %s for; %s",
			opts.Context, limit, map[bool]string{true: "trained", false: "scaled"}[cfg.RopeScale >= 1 || cfg.Rope.Type == model.RopeScalingNone], hint)
	}
	per := engine.KVBytesPerTokenOf(cfg, k.cacheTypeK, k.cacheTypeV)
	positions := int64(opts.KVTokens)
	if positions <= 0 {
		positions = int64(opts.Context) * int64(max(1, opts.Parallel))
	}
	need := positions * per
	if opts.CacheBytes > 0 {
		need += opts.CacheBytes
	}
	budget, source := k.kvMemory<<20, "--kv-memory"
	if budget <= 0 {
		avail, ok := availableMemory()
		if !ok {
			return nil // nothing to check against
		}
		budget, source = avail, "the memory available now"
	}
	if need > budget {
		return fmt.Errorf("the KV cache needs %s (%d positions: -c %d × --parallel %d, at %d bytes each with %s keys and %s values%s), more than %s (%s); lower -c or --parallel, or use a compact cache (--cache-type-k q8_0 --cache-type-v q8_0)",
			mib(need), positions, opts.Context, max(1, opts.Parallel), per, cacheTypeName(k.cacheTypeK), cacheTypeName(k.cacheTypeV),
			map[bool]string{true: ", plus --cache-ram", false: ""}[opts.CacheBytes > 0], source, mib(budget))
	}
	return nil
}

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

// availableMemory is what the process may still allocate: Linux's
// MemAvailable, or less under a cgroup v2 memory limit.
func availableMemory() (int64, bool) {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0, false
	}
	var avail int64 = -1
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) >= 2 && f[0] == "MemAvailable:" {
			if kb, err := strconv.ParseInt(f[1], 10, 64); err == nil {
				avail = kb << 10
			}
		}
	}
	if avail < 0 {
		return 0, false
	}
	if lim, err := os.ReadFile("/sys/fs/cgroup/memory.max"); err == nil {
		if max, err := strconv.ParseInt(strings.TrimSpace(string(lim)), 10, 64); err == nil {
			cur := int64(0)
			if c, err := os.ReadFile("/sys/fs/cgroup/memory.current"); err == nil {
				cur, _ = strconv.ParseInt(strings.TrimSpace(string(c)), 10, 64)
			}
			avail = min(avail, max-cur)
		}
	}
	return avail, true
}
