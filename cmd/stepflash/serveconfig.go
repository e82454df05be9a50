package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"github.com/stepflash/stepflash/engine"
	"github.com/stepflash/stepflash/gguf"
	"os"
	"strings"
	"time"

	"github.com/stepflash/stepflash/billing"
	"github.com/stepflash/stepflash/effort"
	"github.com/stepflash/stepflash/internal/httpclient"
	"github.com/stepflash/stepflash/server"
	"github.com/stepflash/stepflash/upstream"
)

// modelSpec is one model to serve: a GGUF path or a hub reference with its
// engine settings, or a list of upstreams that serve it.
type modelSpec struct {
	Model    string   `json:"model,omitempty"`
	Name     string   `json:"name,omitempty"`
	Aliases  []string `json:"aliases,omitempty"`
	Ctx      int      `json:"ctx,omitempty"`
	Parallel int      `json:"parallel,omitempty"`
	// Effort overrides tiers of the model's reasoning_effort policy.
	Effort *effort.Config `json:"effort,omitempty"`
	// Upstreams serve the model from other servers instead of a local file.
	Upstreams []upstreamSpec `json:"upstreams,omitempty"`
	// Routing spreads requests over the upstreams: prefix (default),
	// round_robin or ordered.
	Routing string `json:"routing,omitempty"`
	// Prices bill the model's usage (default: step-3.7-flash's list prices).
	Prices *billing.Prices `json:"prices,omitempty"`
	// MMProj is the model's vision projector (llama.cpp's clip GGUF): the
	// model then takes image_url parts.
	MMProj string `json:"mmproj,omitempty"`
	// ChatTemplateFile is a Jinja chat template used instead of the GGUF's.
	ChatTemplateFile string `json:"chat_template_file,omitempty"`
	// Advisor gives the model Advisor Mode (docs/advisor.md).
	Advisor *advisorSpec `json:"advisor,omitempty"`
	// Pooling is how /v1/embeddings pools the final hidden states: mean,
	// cls or last (default: the GGUF's pooling_type, else mean).
	Pooling string `json:"pooling,omitempty"`
	// CacheTypeK and CacheTypeV are the model's KV cache types (f32, f16,
	// q8_0; default the --cache-type-k/-v flags').
	CacheTypeK string `json:"cache_type_k,omitempty"`
	CacheTypeV string `json:"cache_type_v,omitempty"`
	// Spec, SpecK and Draft are the model's speculative decoding (off,
	// ngram or draft), draft tokens per step and draft model (default the
	// --spec, --spec-k and --draft flags'; docs/speculative.md).
	Spec  string `json:"spec,omitempty"`
	SpecK int    `json:"spec_k,omitempty"`
	Draft string `json:"draft,omitempty"`
}

// specFlags is the model's speculative decoding: its own where it sets
// it, else def (the flags').
func (s *modelSpec) specFlags(def specFlags) (specFlags, error) {
	out := def
	if s.Spec != "" {
		m, err := engine.ParseSpecMode(s.Spec)
		if err != nil {
			return out, err
		}
		out.mode, out.modeSet = m, true
		if m != engine.SpecDraft && s.Draft == "" {
			out.draft = ""
		}
	}
	if s.SpecK != 0 {
		out.k = s.SpecK
	}
	if s.Draft != "" {
		out.draft = s.Draft
	}
	return out.resolved()
}

// kvOptions is the model's KV cache types: its own where it sets them,
// else def (the flags').
func (s *modelSpec) kvOptions(def kvOptions) (kvOptions, error) {
	out := def
	for _, f := range []struct {
		v   string
		dst *gguf.Type
	}{{s.CacheTypeK, &out.cacheTypeK}, {s.CacheTypeV, &out.cacheTypeV}} {
		if f.v == "" {
			continue
		}
		t, err := parseCacheType(f.v)
		if err != nil {
			return out, err
		}
		*f.dst = t
	}
	return out, nil
}

// upstreamSpec is one upstream of a model in the config file.
type upstreamSpec struct {
	Name        string            `json:"name,omitempty"`
	BaseURL     string            `json:"base_url"`
	Model       string            `json:"model,omitempty"`
	APIKeyEnv   string            `json:"api_key_env,omitempty"`
	Provider    string            `json:"provider,omitempty"`
	Headers     map[string]string `json:"headers,omitempty"`
	EffortParam string            `json:"effort_param,omitempty"`
	Health      string            `json:"health,omitempty"`
	Discover    string            `json:"discover,omitempty"`
	Timeouts    *timeoutsSpec     `json:"timeouts,omitempty"`
}

// timeoutsSpec is an upstream's timeouts, as Go durations ("10s", "1m30s").
type timeoutsSpec struct {
	Connect   duration `json:"connect,omitempty"`
	FirstByte duration `json:"first_byte,omitempty"`
	Idle      duration `json:"idle,omitempty"`
}

// duration is a time.Duration written as a string such as "10s".
type duration time.Duration

func (d *duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("a duration is a string such as \"10s\" or \"1m30s\", got %s", b)
	}
	v, err := time.ParseDuration(s)
	if err != nil || v <= 0 {
		return fmt.Errorf("duration %q: want a positive Go duration such as \"10s\" or \"1m30s\"", s)
	}
	*d = duration(v)
	return nil
}

// serveConfig is the --config file (JSON); flags given on the command line win.
type serveConfig struct {
	Addr     string      `json:"addr,omitempty"`
	Models   []modelSpec `json:"models"`
	Parallel int         `json:"parallel,omitempty"`
	Queue    int         `json:"queue,omitempty"`
	Ctx      int         `json:"ctx,omitempty"`
	MaxBody  int64       `json:"max_body_bytes,omitempty"`
}

// readServeConfig reads and checks a config file strictly: an unknown key
// anywhere is an error naming it.
func readServeConfig(path string) (*serveConfig, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var c serveConfig
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	for i := range c.Models {
		if err := c.Models[i].check(); err != nil {
			return nil, fmt.Errorf("%s: models[%d]: %w", path, i, err)
		}
	}
	return &c, nil
}

// check validates what a spec says on its own.
func (s *modelSpec) check() error {
	if err := s.checkTarget(); err != nil {
		return err
	}
	if s.Advisor != nil {
		return s.Advisor.check(*s)
	}
	return nil
}

// checkTarget validates the model itself (not its advisor).
func (s *modelSpec) checkTarget() error {
	if len(s.Upstreams) == 0 {
		if s.Model == "" {
			return fmt.Errorf("a model needs \"model\" (a GGUF path or Hugging Face REPO[:FILE]) or \"upstreams\"")
		}
		if s.Routing != "" {
			return fmt.Errorf("\"routing\" applies to upstreams; this model is local")
		}
		if s.Pooling != "" {
			if _, err := engine.ParsePooling(s.Pooling); err != nil {
				return fmt.Errorf("\"pooling\": %w", err)
			}
		}
		if _, err := s.kvOptions(kvOptions{}); err != nil {
			return fmt.Errorf("\"cache_type_k\"/\"cache_type_v\": %w", err)
		}
		if _, err := s.specFlags(specFlags{}); err != nil {
			return fmt.Errorf("\"spec\"/\"spec_k\"/\"draft\": %w", err)
		}
		return s.Effort.Check()
	}
	switch {
	case s.Model != "":
		return fmt.Errorf("a model is local (\"model\") or served by \"upstreams\", not both")
	case s.Name == "":
		return fmt.Errorf("a model served by upstreams needs a \"name\"")
	case s.Effort != nil:
		return fmt.Errorf("\"effort\" sets a local model's compute; an upstream's is its own (the tier is passed on and echoed as unverified)")
	case s.MMProj != "" || s.ChatTemplateFile != "" || s.Pooling != "" || s.CacheTypeK != "" || s.CacheTypeV != "":
		return fmt.Errorf("\"mmproj\", \"chat_template_file\", \"pooling\" and \"cache_type_k/v\" apply to a local model; a model served by upstreams takes what its upstream takes")
	case s.Spec != "" || s.SpecK != 0 || s.Draft != "":
		return fmt.Errorf("\"spec\", \"spec_k\" and \"draft\" are engine settings; this model is served by upstreams")
	case s.Ctx != 0 || s.Parallel != 0:
		return fmt.Errorf("\"ctx\" and \"parallel\" are engine settings; this model is served by upstreams")
	}
	if _, err := upstream.ParseRouting(s.Routing); err != nil {
		return err
	}
	for j, u := range s.Upstreams {
		if strings.TrimSpace(u.BaseURL) == "" {
			return fmt.Errorf("upstreams[%d]: \"base_url\" is required (e.g. http://127.0.0.1:8000/v1)", j)
		}
	}
	return nil
}

// poolConfig turns an upstream-served spec into a pool configuration,
// reading API keys from the environment. A key missing for a public API
// that needs one is an error now rather than a 401 on every request; a
// named key that is empty for another server (an optional Secret, say) is
// a warning, and no key is sent.
func (s *modelSpec) poolConfig(getenv func(string) string) (upstream.PoolConfig, []string, error) {
	var warnings []string
	routing, _ := upstream.ParseRouting(s.Routing)
	pc := upstream.PoolConfig{Name: s.Name, Routing: routing}
	for j, us := range s.Upstreams {
		c := upstream.Config{Name: us.Name, BaseURL: us.BaseURL, Model: us.Model, Provider: us.Provider, Headers: us.Headers,
			EffortParam: us.EffortParam, Health: us.Health, Discover: us.Discover}
		if us.Timeouts != nil {
			c.Timeouts = httpclient.Timeouts{Connect: time.Duration(us.Timeouts.Connect), FirstByte: time.Duration(us.Timeouts.FirstByte), Idle: time.Duration(us.Timeouts.Idle)}
		}
		env := us.APIKeyEnv
		route, known := upstream.KnownRoute(us.BaseURL)
		if p := us.Provider; p != "" {
			for _, r := range upstream.Known {
				if r.Name == p {
					route, known = r, true
				}
			}
		}
		if env == "" && known {
			env = route.KeyEnv
		}
		if env != "" {
			c.APIKey, c.KeyEnv = getenv(env), env
			switch {
			case c.APIKey == "" && known:
				return pc, warnings, fmt.Errorf("model %q: upstreams[%d] (%s): $%s is empty or unset (%s needs an API key): set it, or name another variable with \"api_key_env\"", s.Name, j, us.BaseURL, env, route.Name)
			case c.APIKey == "":
				warnings = append(warnings, fmt.Sprintf("model %q: upstreams[%d] (%s): $%s (api_key_env) is empty or unset: no API key is sent", s.Name, j, us.BaseURL, env))
			}
		}
		pc.Upstreams = append(pc.Upstreams, c)
	}
	return pc, warnings, nil
}

// flagUpstreams builds the spec of the --upstream flags: one model (named
// step-3.7-flash unless --alias renames) served by every URL[#MODEL] given.
// The key comes from keyEnv, else the known route's variable (STEP_API_KEY
// for StepFun), else STEP_API_KEY when the URL is $STEP_BASE_URL.
func flagUpstreams(urls []string, keyEnv, routing string, getenv func(string) string) (modelSpec, error) {
	spec := modelSpec{Name: server.DefaultModelName, Routing: routing}
	for _, s := range urls {
		c, err := upstream.ParseFlag(s)
		if err != nil {
			return spec, fmt.Errorf("--upstream %s", err)
		}
		us := upstreamSpec{BaseURL: c.BaseURL, Model: c.Model, APIKeyEnv: keyEnv}
		if base := strings.TrimRight(getenv("STEP_BASE_URL"), "/"); us.APIKeyEnv == "" && base != "" && base == strings.TrimRight(c.BaseURL, "/") {
			us.APIKeyEnv = "STEP_API_KEY"
		}
		spec.Upstreams = append(spec.Upstreams, us)
	}
	return spec, spec.check()
}
