package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"

	"github.com/stepflash/stepflash/chat"
	"github.com/stepflash/stepflash/engine"
	"github.com/stepflash/stepflash/gguf"
	"github.com/stepflash/stepflash/model"
	"github.com/stepflash/stepflash/tokenizer"
)

// modelFlags are the flags shared by the commands that load a model.
type modelFlags struct {
	model   string
	threads int
	ctx     int
	loading gguf.Loading
	kvOptions
	specFlags
}

// loadFlagHelp is the --load flag's help, shared by every command that loads
// a model.
const loadFlagHelp = "how weights come into memory: mmap (map the file: shared page cache, nothing copied), " +
	"copy (a private copy in transparent huge pages: faster reads: MoE decode about a tenth faster here), auto (copy when the file is under half of the memory available to the process, Linux; else mmap)"

// registerLoad adds --load to fs, parsed into *l (default auto).
func registerLoad(fs *flag.FlagSet, l *gguf.Loading) {
	*l = gguf.LoadAuto
	fs.Func("load", loadFlagHelp+" (default auto)", func(s string) error {
		v, err := gguf.ParseLoading(s)
		if err != nil {
			return err
		}
		*l = v
		return nil
	})
}

func (m *modelFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&m.model, "m", "", "model: path to a GGUF file")
	fs.StringVar(&m.model, "model", "", "same as -m")
	fs.IntVar(&m.threads, "t", runtime.NumCPU(), "threads for the kernels")
	fs.IntVar(&m.threads, "threads", runtime.NumCPU(), "same as -t")
	fs.IntVar(&m.ctx, "c", 0, "context length in tokens (0: min(model's training context, 4096))")
	fs.IntVar(&m.ctx, "ctx", 0, "same as -c")
	registerLoad(fs, &m.loading)
	m.kvOptions.register(fs)
	m.specFlags.register(fs)
}

// loaded is an opened model with its tokenizer and engine.
type loaded struct {
	file   *gguf.File
	model  model.Model
	tok    *tokenizer.Tokenizer
	engine *engine.Engine
	spec   specFlags // speculative decoding, as resolved
	// closeDraft closes the draft model (speculative decoding), if any.
	closeDraft func()
}

// template is the model's chat template, or the ChatML fallback when the
// file has none (or one that does not compile).
func (l *loaded) template() *chat.Template {
	if src, ok := l.file.String("tokenizer.chat_template"); ok && strings.TrimSpace(src) != "" {
		if t, err := chat.NewTemplate(src); err == nil {
			return t
		}
	}
	return chat.FallbackTemplate()
}

func (l *loaded) Close() {
	if l.engine != nil {
		l.engine.Close()
	}
	if l.model != nil {
		l.model.Close()
	}
	if l.closeDraft != nil {
		l.closeDraft()
	}
	if l.file != nil {
		l.file.Close()
	}
}

func (m *modelFlags) load() (*loaded, error) {
	if m.model == "" {
		return nil, fmt.Errorf("no model: pass -m FILE.gguf")
	}
	return openModel(m.model, m.threads, m.loading, m.kvOptions, engine.Options{Context: m.ctx}, m.specFlags)
}

// openModel opens a GGUF file, its tokenizer and an engine for it, with
// kv's cache types and RoPE scaling and spec's speculative decoding (a
// draft model loaded and checked), refusing a context the model or the
// machine cannot hold.
func openModel(path string, threads int, load gguf.Loading, kv kvOptions, opts engine.Options, spec specFlags) (*loaded, error) {
	if threads <= 0 {
		return nil, fmt.Errorf("-t must be at least 1, got %d", threads)
	}
	opts = kv.apply(opts)
	mdl, f, err := model.Open(path, model.Options{Threads: threads, Loading: load, Rope: kv.rope})
	if err != nil {
		return nil, err
	}
	l := &loaded{file: f, model: mdl}
	l.tok, err = tokenizer.FromGGUF(f)
	if err != nil {
		l.Close()
		return nil, err
	}
	if n := l.tok.VocabSize(); n != mdl.Config().NVocab {
		l.Close()
		return nil, fmt.Errorf("%s: tokenizer has %d tokens but the output layer has %d rows", path, n, mdl.Config().NVocab)
	}
	if err := engine.CheckCacheTypes(mdl.Config(), opts.CacheTypeK, opts.CacheTypeV); err != nil {
		l.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	opts = engine.WithDefaults(mdl.Config(), opts)
	if err := kv.checkContext(mdl.Config(), opts); err != nil {
		l.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if l.spec, err = spec.resolved(); err == nil {
		opts.Spec, l.closeDraft, err = spec.open(l.tok, mdl.Config(), threads, load)
	}
	if err != nil {
		l.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	l.engine = engine.New(mdl, l.tok, opts)
	return l, nil
}

// textArg joins the positional arguments into one text; "-" reads stdin.
func textArg(args []string, stdin io.Reader) (string, error) {
	if len(args) == 1 && args[0] == "-" {
		b, err := io.ReadAll(stdin)
		return string(b), err
	}
	if len(args) == 0 {
		return "", fmt.Errorf("no text given (pass it as an argument, or - for standard input)")
	}
	return strings.Join(args, " "), nil
}

var stdin io.Reader = os.Stdin
