package main

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/stepflash/stepflash/api"
	"github.com/stepflash/stepflash/auth"
	"github.com/stepflash/stepflash/backend"
	"github.com/stepflash/stepflash/billing"
	"github.com/stepflash/stepflash/chat"
	"github.com/stepflash/stepflash/engine"
	"github.com/stepflash/stepflash/gguf"
	"github.com/stepflash/stepflash/hub"
	"github.com/stepflash/stepflash/local"
	"github.com/stepflash/stepflash/media"
	"github.com/stepflash/stepflash/model"
	"github.com/stepflash/stepflash/server"
	"github.com/stepflash/stepflash/tensor"
	"github.com/stepflash/stepflash/upstream"
)

type serveOptions struct {
	addr            string
	specs           []modelSpec
	threads         int
	load            gguf.Loading
	ctx             int
	parallel        int
	queue           int
	maxBody         int64
	maxN            int
	cacheRAM        int64 // MiB; -1: no prefix cache
	shutdownTimeout time.Duration
	offline         bool
	quiet           bool
	noPlayground    bool // --no-playground
	hub             *hub.Client
	upstreamURLs    []string // --upstream, in order
	upstreamKeyEnv  string
	routing         string
	advisor         string   // --advisor FILE_OR_URL
	imageAllow      []string // --image-allow
	imageHTTP       bool
	imageCA         string
	images          *media.Fetcher // image_url fetches of every vision model
	// advisorObserve makes the metrics-and-log observer of a served
	// model's Advisor Mode (set by runServe).
	advisorObserve func(model string) func(context.Context, api.AdvisorUsage)
	getenv         func(string) string
	storeOptions
	regionOptions
	httpOptions
	kvOptions
	specFlags
	specEngines specEngines // the served engines, for /metrics
}

const serveUsage = `Usage: stepflash serve [-m MODEL [--alias NAME]...]... [--upstream URL[#MODEL]]... [flags]

An OpenAI-compatible server: POST /v1/chat/completions, POST /v1/completions,
POST /v1/responses (and GET/DELETE /v1/responses/{id}), POST /v1/embeddings,
GET /v1/models, GET /v1/usage (the ledger; an operator key when keys are on),
POST /tokenize and /detokenize, GET /health, GET /health/ready, GET /metrics;
Anthropic's POST /v1/messages and /v1/messages/count_tokens; and two pages in
the browser, the playground at / and the usage dashboard at /dashboard.

MODEL is a GGUF path or a Hugging Face reference REPO[:FILE] (pulled into the
cache on first use, see "stepflash pull"). -m may be repeated; --alias adds a
name to the -m (or --upstream) before it. The first model is also served as
"step-3.7-flash". Names match exactly; an unknown name is a 404 listing the
served ones.

--upstream URL[#MODEL] serves "step-3.7-flash" from another OpenAI-compatible
server instead (vLLM, SGLang, NIM, llama.cpp's server, another stepflash,
StepFun's https://api.stepfun.ai/v1 or https://api.stepfun.com/v1, OpenRouter's
https://openrouter.ai/api/v1); repeat it for replicas or fallbacks (--routing).
MODEL is the upstream's model id (default: the served name; OpenRouter's
default is stepfun/step-3.7-flash). The key is read from --upstream-key-env, or
the known service's variable (STEP_API_KEY for StepFun, OPENROUTER_API_KEY,
NVIDIA_API_KEY), or STEP_API_KEY when URL is $STEP_BASE_URL.

--advisor FILE_OR_URL gives the first model Advisor Mode: turns likely to fail
(a run of failing tool results; optionally a low-confidence draft) go to the
advisor, a local GGUF or an OpenAI-compatible URL[#MODEL], shown only in
usage.advisor and X-Advisor; a request's "advisor": "off" or "always" overrides.
In --config, "advisor": {"model" or "upstreams", "mode", ...} on a model
(docs/advisor.md).

API keys (stepflash keys create) are bound to a region. The server is region
"global" on --addr unless --region says otherwise: --region cn serves region
cn on --addr; --region global=0.0.0.0:8000 --region cn=0.0.0.0:8001 serves
two regions from one process, each on its own listener taking only its own
keys. A key of another region gets 401 region_mismatch naming that region's
base URL (--region-url NAME=URL, else its listener here on the caller's host).
Keys are enforced once the key store holds a key of the region (or always,
with --require-keys); until then anyone who can reach the listener can use
it, which serve says at start for listeners beyond loopback (docs/keys.md).

With no -m, --upstream or --config the default model is served:
  %s
pulled from Hugging Face on first use. Offline, pass -m FILE.gguf instead.

Models without a tokenizer.chat_template are chatted with ChatML
(<|im_start|>role ... <|im_end|>), with Hermes-style <tool_call> tool calls.

--config FILE reads JSON: {"addr": "...", "models": [...], "parallel": 4,
"queue": 64, "ctx": 0, "max_body_bytes": 8388608}; flags given win. A model is
local, {"model": "PATH_OR_REF", "name": "...", "aliases": ["..."], "ctx": 4096,
"parallel": 4, "effort": {...}, "prices": {...}}, or served by upstreams,
{"name": "step-3.7-flash", "routing": "prefix", "upstreams": [{"base_url":
"http://127.0.0.1:9001/v1", "model": "...", "api_key_env": "STEP_API_KEY",
"name": "...", "provider": "stepfun-global", "headers": {...}, "effort_param":
"reasoning_effort", "health": "/health", "discover": "dns", "timeouts":
{"connect": "10s", "first_byte": "60s", "idle": "60s"}}]} (docs/gateway.md).
A local model's "effort" sets its reasoning_effort policy, tier by tier (a
tier or field left out keeps the default):
  "effort": {"low": {"experts_per_token": 2, "thinking_budget": 0},
             "medium": {"thinking_budget": 2048}, "high": {"thinking_budget": -1}}
experts_per_token: 1..the trained experts per token (MoE models only);
thinking_budget: tokens (0: thinking off), or -1 for unlimited.

%s
Flags:
`

func cmdServe(args []string, stdout, stderr io.Writer) error {
	opts, err := parseServe(args, stderr)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return runServe(ctx, opts, stderr, nil)
}

func parseServe(args []string, stderr io.Writer) (*serveOptions, error) {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	o := &serveOptions{getenv: os.Getenv}
	flagSpec := -1 // index in o.specs of the --upstream model
	addModel := func(s string) error {
		if s == "" {
			return errors.New("empty model")
		}
		o.specs = append(o.specs, modelSpec{Model: s})
		return nil
	}
	addUpstream := func(s string) error {
		if s == "" {
			return errors.New("empty upstream URL")
		}
		if flagSpec < 0 {
			flagSpec = len(o.specs)
			o.specs = append(o.specs, modelSpec{Name: server.DefaultModelName})
		}
		o.upstreamURLs = append(o.upstreamURLs, s)
		return nil
	}
	addAlias := func(s string) error {
		if s == "" {
			return errors.New("empty alias")
		}
		if len(o.specs) == 0 {
			return errors.New("--alias must follow the -m or --upstream it names")
		}
		last := &o.specs[len(o.specs)-1]
		last.Aliases = append(last.Aliases, s)
		return nil
	}
	fs.Func("m", "model: GGUF path or Hugging Face REPO[:FILE] (repeatable)", addModel)
	fs.Func("model", "same as -m", addModel)
	fs.Func("alias", "another name for the preceding -m or --upstream (repeatable)", addAlias)
	fs.Func("mmproj", "vision projector (llama.cpp's clip GGUF) of the preceding -m: the model then takes image_url parts", func(s string) error {
		if len(o.specs) == 0 || o.specs[len(o.specs)-1].Model == "" {
			return errors.New("--mmproj must follow the -m it belongs to")
		}
		o.specs[len(o.specs)-1].MMProj = s
		return nil
	})
	fs.Func("pooling", "how /v1/embeddings pools the preceding -m's final hidden states: mean, cls or last (default: the GGUF's pooling_type, else mean)", func(s string) error {
		if len(o.specs) == 0 || o.specs[len(o.specs)-1].Model == "" {
			return errors.New("--pooling must follow the -m it belongs to")
		}
		if _, err := engine.ParsePooling(s); err != nil {
			return err
		}
		o.specs[len(o.specs)-1].Pooling = s
		return nil
	})
	fs.Func("chat-template-file", "a Jinja chat template for the preceding -m instead of the one in its GGUF", func(s string) error {
		if len(o.specs) == 0 || o.specs[len(o.specs)-1].Model == "" {
			return errors.New("--chat-template-file must follow the -m it belongs to")
		}
		o.specs[len(o.specs)-1].ChatTemplateFile = s
		return nil
	})
	fs.Func("image-allow", "a host name or CIDR that image_url fetches may reach although it is loopback, private or link-local (repeatable), e.g. an internal image store", func(s string) error {
		o.imageAllow = append(o.imageAllow, s)
		return nil
	})
	fs.BoolVar(&o.imageHTTP, "image-http", false, "allow http:// image URLs (https:// and data: always are)")
	fs.StringVar(&o.imageCA, "image-ca", "", "PEM file of certificate authorities trusted for https:// image URLs besides the system's (an internal image store)")
	fs.Func("upstream", "serve step-3.7-flash from an OpenAI-compatible server: URL[#MODEL] (repeatable: replicas or fallbacks)", addUpstream)
	fs.StringVar(&o.upstreamKeyEnv, "upstream-key-env", "", "environment variable holding the --upstream API key (default: see above)")
	fs.StringVar(&o.advisor, "advisor", "", "Advisor Mode for the first model: the advisor is a GGUF file (or REPO[:FILE]) or an OpenAI-compatible URL[#MODEL] (docs/advisor.md)")
	fs.StringVar(&o.routing, "routing", "", "how requests spread over several --upstream: prefix (default: a conversation stays on one replica), round_robin, ordered (fallbacks)")
	config := fs.String("config", "", "JSON config file listing models (see above)")
	fs.StringVar(&o.addr, "addr", "0.0.0.0:8000", "listen address")
	fs.IntVar(&o.threads, "t", runtime.NumCPU(), "threads for the kernels")
	fs.IntVar(&o.threads, "threads", runtime.NumCPU(), "same as -t")
	registerLoad(fs, &o.load)
	fs.IntVar(&o.ctx, "c", 0, "context length per sequence (0: min(model's training context, 4096))")
	fs.IntVar(&o.ctx, "ctx", 0, "same as -c")
	fs.IntVar(&o.parallel, "parallel", 4, "sequences decoded together per model (continuous batching)")
	fs.IntVar(&o.queue, "queue", 64, "requests waiting for a slot per model; more get 503 overloaded")
	fs.Int64Var(&o.maxBody, "max-body", server.DefaultMaxBodyBytes, "request body limit in bytes")
	fs.IntVar(&o.maxN, "max-n", 16, "largest n (choices per request)")
	o.kvOptions.register(fs)
	o.specFlags.register(fs)
	fs.Int64Var(&o.cacheRAM, "cache-ram", 0, "MiB of KV memory per model added for the prefix cache (prompt prefixes kept for reuse), beyond the -c × --parallel positions whose unused part it fills anyway; -1: no prefix cache")
	fs.DurationVar(&o.shutdownTimeout, "shutdown-timeout", 30*time.Second, "on SIGINT/SIGTERM, how long running requests may finish (then streams end with an error event and [DONE]; waiting requests get a 503 at once)")
	registerHTTPFlags(fs, &o.httpOptions)
	cacheDir := fs.String("cache-dir", hub.DefaultCacheDir(), "where pulled models are kept ($STEPFLASH_CACHE)")
	fs.BoolVar(&o.offline, "offline", os.Getenv("HF_HUB_OFFLINE") == "1", "never download: serve cached or local files only ($HF_HUB_OFFLINE=1)")
	fs.BoolVar(&o.quiet, "quiet", false, "do not log requests")
	fs.BoolVar(&o.noPlayground, "no-playground", false, "do not serve the chat playground at / nor the usage dashboard at /dashboard (docs/playground.md, docs/dashboard.md)")
	registerStoreFlags(fs, &o.storeOptions)
	registerResponsesFlags(fs, &o.storeOptions)
	registerRegionFlags(fs, &o.regionOptions)
	fs.Usage = func() {
		fmt.Fprintf(stderr, serveUsage, hub.Default, httpUsage)
		fs.PrintDefaults()
	}
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return nil, err
	}
	if len(pos) > 0 {
		fmt.Fprintf(stderr, "stepflash serve: unexpected argument %q (models are given with -m)\n", pos[0])
		return nil, errUsage
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if *config != "" {
		c, err := readServeConfig(*config)
		if err != nil {
			return nil, err
		}
		if len(o.specs) == 0 {
			o.specs = c.Models
		}
		if c.Addr != "" && !set["addr"] {
			o.addr = c.Addr
		}
		if c.Parallel > 0 && !set["parallel"] {
			o.parallel = c.Parallel
		}
		if c.Queue > 0 && !set["queue"] {
			o.queue = c.Queue
		}
		if c.Ctx > 0 && !set["c"] && !set["ctx"] {
			o.ctx = c.Ctx
		}
		if c.MaxBody > 0 && !set["max-body"] {
			o.maxBody = c.MaxBody
		}
	}
	if o.threads <= 0 || o.parallel <= 0 || o.queue <= 0 || o.maxBody <= 0 || o.maxN <= 0 {
		return nil, fmt.Errorf("-t, --parallel, --queue, --max-body and --max-n must be positive")
	}
	if o.cacheRAM < -1 || o.cacheRAM > 1<<30 {
		return nil, fmt.Errorf("--cache-ram is MiB (0 or more), or -1 for no prefix cache; got %d", o.cacheRAM)
	}
	if err := o.httpOptions.check(); err != nil {
		return nil, err
	}
	if _, err := o.listeners(o.addr); err != nil {
		return nil, err
	}
	if (o.routing != "" || o.upstreamKeyEnv != "") && flagSpec < 0 {
		return nil, fmt.Errorf("--routing and --upstream-key-env apply to --upstream")
	}
	if flagSpec >= 0 {
		spec, err := flagUpstreams(o.upstreamURLs, o.upstreamKeyEnv, o.routing, o.getenv)
		if err != nil {
			return nil, err
		}
		spec.Aliases = o.specs[flagSpec].Aliases
		o.specs[flagSpec] = spec
	}
	o.hub = &hub.Client{CacheDir: *cacheDir, Progress: stderr}
	return o, nil
}

// runServe checks the configuration, listens, loads local models in the
// background (readiness is 503 meanwhile) and serves until ctx ends, then
// shuts down gracefully. What can be checked before listening is (files,
// their metadata against the effort config, upstreams and their keys, the
// address), so that such an error is the first and only thing printed.
// onListen, when set, is told the bound address.
func runServe(ctx context.Context, o *serveOptions, stderr io.Writer, onListen func(net.Addr)) error {
	var logger *slog.Logger
	if !o.quiet {
		logger = slog.New(slog.NewTextHandler(stderr, nil))
	}
	specs := slices.Clone(o.specs)
	usingDefault := len(specs) == 0
	if usingDefault {
		specs = []modelSpec{{Model: hub.Default.String()}}
	}
	nameDefault(specs)
	hosts, nets, err := media.ParseAllowList(o.imageAllow)
	if err != nil {
		return fmt.Errorf("--image-allow: %w", err)
	}
	mo := media.Options{AllowHTTP: o.imageHTTP, AllowHosts: hosts, AllowNets: nets}
	if o.imageCA != "" {
		if mo.TLSConfig, err = trustFile(o.imageCA); err != nil {
			return fmt.Errorf("--image-ca: %w", err)
		}
	}
	o.images = media.New(mo)
	if o.advisor != "" {
		if specs[0].Advisor != nil {
			return fmt.Errorf("--advisor: the first model already has an advisor in --config")
		}
		a, err := flagAdvisor(o.advisor, "")
		if err != nil {
			return err
		}
		specs[0].Advisor = a
		if err := specs[0].check(); err != nil {
			return fmt.Errorf("--advisor: %w", err)
		}
	}
	if err := precheck(specs, o); err != nil {
		return err
	}
	st, err := o.openStore(ctx) // keys and the usage ledger
	if err != nil {
		return err
	}
	defer st.Close()
	responses, err := o.responseStore(st) // /v1/responses' stored responses (nil: stateless)
	if err != nil {
		return err
	}
	regions, err := o.listeners(o.addr)
	if err != nil {
		return err
	}
	authn := auth.New(auth.Options{Store: st, Require: o.requireKeys})
	limiter := auth.NewLimiter(st)
	o.backendMiddleware = func(prices billing.Prices, extra ...backend.Middleware) []backend.Middleware {
		return backendMiddleware(limiter, prices, extra...)
	}
	srv := server.New(server.Config{MaxBodyBytes: o.maxBody, MaxN: o.maxN, Logger: logger,
		Middleware: []server.Middleware{authn.Middleware}, Guard: o.guard(listenAddrs(regions)...), Responses: responses})
	serveBuildInfo(srv)
	serveSpecMetrics(srv, &o.specEngines)
	srv.ServeUsage(st) // GET /v1/usage: operator keys only, when keys are on (docs/dashboard.md)
	if !o.noPlayground {
		srv.ServePlayground()
		srv.ServeDashboard()
	}
	o.ledger = billing.Metered(st, meter(srv))
	o.advisorObserve = advisorMetrics(srv, logger)
	var closers []func()
	defer func() {
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i]()
		}
	}()
	pools, err := buildPools(specs, o, srv, stderr, func(c func()) { closers = append(closers, c) })
	for _, p := range pools {
		closers = append(closers, p.Close)
	}
	if err != nil {
		return err
	}
	var locals []modelSpec
	for _, sp := range specs {
		if len(sp.Upstreams) == 0 {
			locals = append(locals, sp)
		}
	}
	srv.SetLoading(len(locals) > 0)
	if len(locals) > 0 { // the kernels run the local models only
		fmt.Fprintf(stderr, "stepflash serve: %s\n", tensor.KernelNotice())
	}
	lns, err := listenRegions(regions)
	if err != nil {
		return err
	}
	for _, l := range lns {
		if len(lns) == 1 && len(o.regions) == 0 {
			fmt.Fprintf(stderr, "stepflash serve: listening on %s (API under /v1)\n", servedURL(l.ln))
		} else {
			fmt.Fprintf(stderr, "stepflash serve: region %s listening on %s (API under /v1)\n", l.name, servedURL(l.ln))
		}
	}
	warnOpen(ctx, authn, lns, stderr)
	authn.SetRegions(o.authRegions(lns))
	if onListen != nil {
		onListen(lns[0].ln.Addr())
	}
	for _, p := range pools {
		p.Start()
	}
	for i := range lns {
		lns[i].ln = srv.Listener(lns[i].ln) // the connection cap, JSON for net/http's own errors
	}
	servers, serveErr := serveRegions(lns, srv, srv.Configure)
	closeAll := func() {
		for _, hs := range servers {
			hs.Close()
		}
	}

	loadErr := make(chan error, 1)
	loadCtx, cancelLoad := context.WithCancel(ctx)
	defer cancelLoad()
	loaded := make(chan []func(), 1)
	go func() {
		var cs []func()
		err := loadAll(loadCtx, locals, usingDefault, o, srv, stderr, func(c func()) { cs = append(cs, c) })
		loaded <- cs
		loadErr <- err
	}()

	select {
	case err := <-loadErr:
		closers = append(closers, <-loaded...)
		if err != nil {
			closeAll() // nothing was ready: no requests to wait for
			return err
		}
		srv.SetLoading(false)
		fmt.Fprintf(stderr, "stepflash serve: ready, serving %s\n", strings.Join(quoteAll(srv.Names()), ", "))
		select {
		case <-ctx.Done():
		case err := <-serveErr:
			return err
		}
	case <-ctx.Done():
		cancelLoad()
		closers = append(closers, <-loaded...)
		<-loadErr
	case err := <-serveErr:
		cancelLoad()
		closers = append(closers, <-loaded...)
		<-loadErr
		return err
	}
	fmt.Fprintf(stderr, "stepflash serve: shutting down (waiting up to %s for in-flight requests)\n", o.shutdownTimeout)
	sctx, cancel := context.WithTimeout(context.Background(), o.shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx, servers...); err != nil {
		fmt.Fprintf(stderr, "stepflash serve: %v\n", err)
	}
	return nil
}

// nameDefault gives the first model the name step-3.7-flash too, unless
// some model already has it.
func nameDefault(specs []modelSpec) {
	for _, sp := range specs {
		if sp.Name == server.DefaultModelName || contains(sp.Aliases, server.DefaultModelName) {
			return
		}
	}
	specs[0].Aliases = append(slices.Clone(specs[0].Aliases), server.DefaultModelName)
}

// precheck finds what would fail later while there is still nothing to
// undo: local files that are missing or not GGUF, an effort config the
// model cannot take, a hub reference that --offline cannot serve.
func precheck(specs []modelSpec, o *serveOptions) error {
	var all []modelSpec
	for _, sp := range specs {
		for _, f := range []string{sp.MMProj, sp.ChatTemplateFile} {
			if f == "" {
				continue
			}
			if st, err := os.Stat(f); err != nil || st.IsDir() {
				return fmt.Errorf("model %q: %s is not a file", cmp.Or(sp.Name, sp.Model), f)
			}
		}
		all = append(all, sp)
		if sp.Advisor != nil {
			all = append(all, sp.Advisor.target())
		}
	}
	for _, sp := range all {
		if len(sp.Upstreams) > 0 {
			continue
		}
		st, err := os.Stat(sp.Model)
		if err != nil {
			ref, perr := hub.ParseRef(sp.Model)
			if perr != nil {
				return fmt.Errorf("model %q: no such file, and not a Hugging Face reference (REPO[:FILE])", sp.Model)
			}
			if _, ok := o.hub.Cached(ref); !ok && o.offline {
				return fmt.Errorf("%s is not in the cache (%s) and --offline forbids downloading it", ref, o.hub.CacheDir)
			}
			continue // pulled (and checked) after listening
		}
		if st.IsDir() {
			return fmt.Errorf("%s is a directory, not a GGUF file", sp.Model)
		}
		if err := checkLocalFile(sp.Model, sp); err != nil {
			return err
		}
	}
	return nil
}

// checkLocalFile reads a GGUF file's metadata (mapped, nothing loaded) and
// checks the spec's effort config against the model's shape.
func checkLocalFile(path string, sp modelSpec) error {
	f, err := gguf.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	cfg, err := model.ReadConfig(f)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if _, err := sp.Effort.Policy(local.Shape(cfg)); err != nil {
		return fmt.Errorf("%s (model %q): %w", path, cmp.Or(sp.Name, modelNameOf(path)), err)
	}
	return nil
}

// buildPools makes the pool of every upstream-served model and adds it to
// srv. The pools it returns, even with an error, are to be closed.
func buildPools(specs []modelSpec, o *serveOptions, srv *server.Server, stderr io.Writer, onClose func(func())) ([]*upstream.Pool, error) {
	var pools []*upstream.Pool
	var names []string // of the pools' models
	ops := slog.New(slog.NewTextHandler(stderr, nil))
	reqs := srv.Counter("stepflash_upstream_requests_total", "Requests sent upstream, by model, upstream and outcome (ok, retried: failed before answering and another was tried, failed).", "model", "upstream", "outcome")
	ejections := srv.Counter("stepflash_upstream_ejections_total", "Upstreams taken out after failures.", "model", "upstream")
	metrics := &upstream.Metrics{
		Request: func(m, u, outcome string) { reqs(1, m, u, outcome) },
		Ejected: func(m, u string) { ejections(1, m, u) },
	}
	for _, sp := range specs {
		if len(sp.Upstreams) == 0 {
			continue
		}
		pc, warnings, err := sp.poolConfig(o.getenv)
		if err != nil {
			return pools, err
		}
		for _, w := range warnings {
			fmt.Fprintf(stderr, "stepflash serve: warning: %s\n", w)
		}
		pc.Logger, pc.Metrics = ops, metrics
		p, err := upstream.NewPool(pc)
		if err != nil {
			return pools, err
		}
		pools = append(pools, p)
		names = append(names, sp.Name)
		prices := billing.Default
		if sp.Prices != nil {
			prices = *sp.Prices
		}
		var extra []backend.Middleware
		adv, err := advisorMiddleware(context.Background(), sp, sp.Name, o, stderr, onClose)
		if err != nil {
			return pools, err
		}
		if adv != nil {
			extra = append(extra, adv)
		}
		if err := srv.AddModel(&server.Model{Name: sp.Name, Aliases: sp.Aliases, Backend: backend.Chain(p, o.recorded(sp.Name, o.backendMiddleware(prices, extra...)...)...)}); err != nil {
			return pools, err
		}
		var ups []string
		for _, st := range p.Status() {
			ups = append(ups, st.Name+" "+st.BaseURL)
		}
		if len(ups) == 0 {
			ups = []string{"none resolved yet"}
		}
		fmt.Fprintf(stderr, "stepflash serve: serving %s from upstreams (%s routing): %s\n",
			strings.Join(quoteAll(append([]string{sp.Name}, sp.Aliases...)), ", "), cmp.Or(sp.Routing, string(upstream.Prefix)), strings.Join(ups, "; "))
	}
	if len(pools) > 0 {
		srv.Gauge("stepflash_upstream_up", "1 while an upstream is in rotation, 0 while it is taken out.", func() []server.GaugeSample {
			var out []server.GaugeSample
			for i, p := range pools {
				for _, st := range p.Status() {
					v := 0.0
					if st.Up {
						v = 1
					}
					out = append(out, server.GaugeSample{Labels: []string{names[i], st.Name}, Value: v})
				}
			}
			return out
		}, "model", "upstream")
	}
	return pools, nil
}

func quoteAll(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = fmt.Sprintf("%q", s)
	}
	return out
}

// loadAll resolves and loads every local model, adding each to srv as it
// is ready.
func loadAll(ctx context.Context, specs []modelSpec, usingDefault bool, o *serveOptions, srv *server.Server, stderr io.Writer, onClose func(func())) error {
	for _, spec := range specs {
		path, err := resolveModel(ctx, o, spec.Model, stderr)
		if err != nil {
			if usingDefault {
				return fmt.Errorf("no model given (-m), and the default model %s is not cached and could not be downloaded: %v\n"+
					"Pass -m FILE.gguf to serve a local GGUF file, or run \"stepflash pull %s\" when online", hub.Default, err, hub.Default)
			}
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		adv, err := advisorMiddleware(ctx, spec, cmp.Or(spec.Name, modelNameOf(path)), o, stderr, onClose)
		if err != nil {
			return err
		}
		var extra []backend.Middleware
		if adv != nil {
			extra = append(extra, adv)
		}
		sm, err := loadServedModel(path, spec, o, stderr, extra...)
		if err != nil {
			return err
		}
		onClose(sm.close)
		o.specEngines.add(sm.model.Name, sm.engine)
		m := sm.model
		if err := srv.AddModel(m); err != nil {
			return err
		}
		fmt.Fprintf(stderr, "stepflash serve: loaded %s as %s (weights: %s; context %d, %d parallel; %s; template: %s; effort %s)\n", path,
			strings.Join(quoteAll(append([]string{m.Name}, m.Aliases...)), ", "), sm.weights, sm.context, firstPositive(spec.Parallel, o.parallel), sm.kv, sm.template,
			sm.policy)
	}
	return nil
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

func firstPositive(a, b int) int {
	if a > 0 {
		return a
	}
	return b
}

// resolveModel turns a -m value into a local path: an existing file, or a
// hub reference found in the cache or pulled.
func resolveModel(ctx context.Context, o *serveOptions, s string, stderr io.Writer) (string, error) {
	if st, err := os.Stat(s); err == nil {
		if st.IsDir() {
			return "", fmt.Errorf("%s is a directory, not a GGUF file", s)
		}
		return s, nil
	}
	ref, err := hub.ParseRef(s)
	if err != nil {
		return "", fmt.Errorf("model %q: no such file, and not a Hugging Face reference (REPO[:FILE])", s)
	}
	if p, ok := o.hub.Cached(ref); ok {
		return p, nil
	}
	if o.offline {
		return "", fmt.Errorf("%s is not in the cache (%s) and --offline forbids downloading it", ref, o.hub.CacheDir)
	}
	fmt.Fprintf(stderr, "stepflash serve: pulling %s into %s\n", ref, o.hub.CacheDir)
	return o.hub.Pull(ctx, ref)
}

// servedModel is a loaded model ready to serve, with what the log line
// says of it.
type servedModel struct {
	model    *server.Model
	close    func()
	weights  gguf.Loading
	context  int
	kv       string // the KV cache, described
	template string // which chat template renders requests
	policy   string // the effort policy, described
	engine   *engine.Engine
}

// loadServedModel opens a GGUF, its tokenizer, chat template and engine,
// and makes its backend: the local pipeline behind the key's limits, the
// ledger, extra (Advisor Mode) and the price table.
func loadServedModel(path string, spec modelSpec, o *serveOptions, stderr io.Writer, extra ...backend.Middleware) (*servedModel, error) {
	lm, err := loadLocal(path, spec, o, stderr)
	if err != nil {
		return nil, err
	}
	prices := billing.Default
	if spec.Prices != nil {
		prices = *spec.Prices
	}
	name := cmp.Or(spec.Name, modelNameOf(path))
	m := &server.Model{Name: name, Aliases: spec.Aliases, Backend: backend.Chain(lm.backend, o.recorded(name, o.backendMiddleware(prices, extra...)...)...)}
	return &servedModel{model: m, close: lm.close, weights: lm.weights, context: lm.context, kv: lm.kv, template: lm.template, policy: lm.policy, engine: lm.engine}, nil
}

// localModel is a loaded GGUF's bare local backend.
type localModel struct {
	backend  backend.Backend
	close    func()
	weights  gguf.Loading
	context  int
	kv       string // the KV cache, described
	template string // which chat template renders requests
	policy   string // the effort policy, described
	engine   *engine.Engine
}

// describeKV says what a KV cache takes, as llama.cpp's load log does:
// e.g. "KV cache F16/F16: 112.0 KiB a position, up to 448.0 MiB (made as used)".
func describeKV(kv engine.KVInfo) string {
	return fmt.Sprintf("KV cache %v/%v: %.1f KiB a position, up to %.1f MiB (made as used)", kv.K, kv.V,
		float64(kv.BytesPerPosition)/1024, float64(kv.BytesPerPosition)*float64(kv.Positions)/(1<<20))
}

// loadLocal opens a GGUF, its tokenizer, chat template and engine, and
// makes its local backend.
func loadLocal(path string, spec modelSpec, o *serveOptions, stderr io.Writer) (*localModel, error) {
	kv, err := spec.kvOptions(o.kvOptions)
	var sf specFlags
	if err == nil {
		sf, err = spec.specFlags(o.specFlags)
	}
	if err != nil {
		return nil, fmt.Errorf("model %q: %w", cmp.Or(spec.Name, modelNameOf(path)), err)
	}
	l, err := openModel(path, o.threads, o.load, kv, engine.Options{Context: firstPositive(spec.Ctx, o.ctx), Parallel: firstPositive(spec.Parallel, o.parallel), QueueLimit: o.queue,
		CacheBytes: o.cacheRAM << 20}, sf)
	if err != nil {
		return nil, err
	}
	tok, eng, cfg := l.tok, l.engine, l.model.Config()
	var tmpl *chat.Template
	tmplName := "ChatML fallback"
	if spec.ChatTemplateFile != "" {
		src, err := os.ReadFile(spec.ChatTemplateFile)
		if err == nil {
			tmpl, err = chat.NewTemplate(string(src))
		}
		if err != nil {
			l.Close()
			return nil, fmt.Errorf("%s: chat template %s: %w", path, spec.ChatTemplateFile, err)
		}
		tmplName = spec.ChatTemplateFile + " (" + tmpl.Family().String() + " tool calls)"
	} else if src, ok := l.file.String("tokenizer.chat_template"); ok && strings.TrimSpace(src) != "" {
		if tmpl, err = chat.NewTemplate(src); err != nil {
			fmt.Fprintf(stderr, "stepflash serve: %s: cannot use its chat template (%v); using the ChatML fallback\n", path, err)
			tmpl = nil
		} else {
			tmplName = "the model's own (" + tmpl.Family().String() + " tool calls)"
		}
	}
	name := cmp.Or(spec.Name, modelNameOf(path))
	st, _ := os.Stat(path)
	var size int64
	if st != nil {
		size = st.Size()
	}
	sum := sha256.Sum256(fmt.Appendf(nil, "%s|%d|%s|%d", filepath.Base(path), size, cfg.Arch, eng.Context()))
	shape := local.Shape(cfg)
	policy, err := spec.Effort.Policy(shape)
	if err != nil {
		l.Close()
		return nil, fmt.Errorf("%s (model %q): %w", path, name, err)
	}
	lm := local.Model{Engine: eng, Tok: tok, Config: cfg, Template: tmpl, Effort: policy,
		Fingerprint: "fp_" + hex.EncodeToString(sum[:5]), QueueLimit: o.queue}
	if spec.Pooling != "" {
		if lm.Pooling, err = engine.ParsePooling(spec.Pooling); err != nil {
			l.Close()
			return nil, fmt.Errorf("model %q: %w", name, err)
		}
	}
	closeAll := l.Close
	mmproj, beside := spec.MMProj, false
	if mmproj == "" {
		mmproj = findProjector(path)
		beside = mmproj != ""
	}
	if mmproj != "" {
		enc, err := openVision(mmproj, o.threads, o.load, cfg)
		switch {
		case err != nil && beside:
			fmt.Fprintf(stderr, "stepflash serve: %s: not using %s found beside it: %v\n", path, mmproj, err)
		case err != nil:
			l.Close()
			return nil, fmt.Errorf("model %q: %w", name, err)
		default:
			closeAll = func() { enc.Close(); l.Close() }
			lm.Vision, lm.Images = local.VisionEncoder{Encoder: enc}, o.images
			tmplName += "; vision: " + mmproj
			if beside {
				tmplName += " (found beside the model)"
			}
		}
	}
	b, err := local.New(lm)
	if err != nil {
		closeAll()
		return nil, fmt.Errorf("%s (model %q): %w", path, name, err)
	}
	return &localModel{backend: b, engine: eng, close: closeAll, weights: l.file.Loaded(), context: eng.Context(), kv: describeKV(eng.KVInfo()) + describeSpec(eng, l.spec), template: tmplName,
		policy: policy.Describe(shape)}, nil
}

// modelNameOf is the name a model file is served under by default: its file
// name without the extension.
func modelNameOf(path string) string {
	return strings.TrimSuffix(filepath.Base(path), filepath.Ext(path))
}
