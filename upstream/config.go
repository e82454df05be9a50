// Package upstream answers requests from remote OpenAI-compatible servers —
// vLLM, SGLang, NVIDIA NIM, llama.cpp's server, other stepflash processes,
// StepFun's two regional APIs and OpenRouter — as a backend.Backend: one
// Client per endpoint (request shaping, streaming, normalising chunks, usage
// and errors to stepflash's wire format), and a Pool over several endpoints
// of one model (failover before the first byte, passive and active health,
// prefix-affine routing with bounded load, DNS discovery of replicas).
package upstream

import (
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/stepflash/stepflash/internal/httpclient"
)

// Config is one upstream endpoint.
type Config struct {
	// Name labels the upstream in logs, metrics and the stepflash
	// extension ("upstream:NAME"); default: the base URL's host.
	Name string
	// BaseURL is the API base, e.g. http://127.0.0.1:8000/v1.
	BaseURL string
	// Model is the upstream's id of the model; default: the served name
	// (or the known route's model id, see Known).
	Model string
	// Provider names a known route (Known: "stepfun-global", "stepfun-cn",
	// "openrouter", "nvidia-nim") for a base URL whose host does not say
	// it, such as a proxy in front of one; default: found from the host.
	Provider string
	// APIKey is sent as a bearer token; KeyEnv names the environment
	// variable it came from, for error messages.
	APIKey string
	KeyEnv string
	// Headers are sent with every request (OpenRouter's HTTP-Referer and
	// X-Title, say).
	Headers map[string]string
	// EffortParam is how reasoning_effort is sent: "reasoning_effort"
	// (default), "reasoning.effort" (OpenRouter's object form) or "none"
	// (not sent, for a server that rejects the field).
	EffortParam string
	// Health is the active health check: a path on the base URL's host
	// (default "/health"), "models" for GET {BaseURL}/models, or "off".
	Health string
	// Discover "dns" treats every address the base URL's host resolves to
	// as a replica (a Kubernetes headless Service), re-resolved periodically.
	Discover string
	// Timeouts bound connecting, the first byte and each silence of a
	// stream (zero fields: httpclient.DefaultTimeouts).
	Timeouts httpclient.Timeouts
}

// Route is what stepflash knows of a public API endpoint.
type Route struct {
	Host string
	// Name is the default upstream name.
	Name string
	// Region is the key region for StepFun's platforms ("" elsewhere).
	Region string
	// KeyEnv is the environment variable that conventionally holds its key.
	KeyEnv string
	// Model is the id Step 3.7 Flash has there, when it differs from the
	// served name.
	Model string
	// EffortParam is how the endpoint takes reasoning effort.
	EffortParam string
	// Other is the base URL of the other region (StepFun).
	Other string
}

// Known are the public routes to Step 3.7 Flash (../shared/DESIGN.md section
// 7b). StepFun's regions share no accounts: a key of one gets a 401 with an
// empty body from the other.
var Known = []Route{
	{Host: "api.stepfun.ai", Name: "stepfun-global", Region: "global", KeyEnv: "STEP_API_KEY", EffortParam: "reasoning_effort", Other: "https://api.stepfun.com/v1"},
	{Host: "api.stepfun.com", Name: "stepfun-cn", Region: "cn", KeyEnv: "STEP_API_KEY", EffortParam: "reasoning_effort", Other: "https://api.stepfun.ai/v1"},
	{Host: "openrouter.ai", Name: "openrouter", KeyEnv: "OPENROUTER_API_KEY", Model: "stepfun/step-3.7-flash", EffortParam: "reasoning.effort"},
	{Host: "integrate.api.nvidia.com", Name: "nvidia-nim", KeyEnv: "NVIDIA_API_KEY", EffortParam: "reasoning_effort"},
}

// routeOf is the known route of a configuration: by its Provider, else by
// its host.
func (c *Config) routeOf() (Route, bool) {
	if c.Provider != "" {
		for _, r := range Known {
			if r.Name == c.Provider {
				return r, true
			}
		}
		return Route{}, false
	}
	return KnownRoute(c.BaseURL)
}

// KnownRoute returns the known route of a base URL, if any.
func KnownRoute(baseURL string) (Route, bool) {
	u, err := url.Parse(baseURL)
	if err != nil {
		return Route{}, false
	}
	for _, r := range Known {
		if strings.EqualFold(u.Hostname(), r.Host) {
			return r, true
		}
	}
	return Route{}, false
}

// ParseFlag parses the --upstream flag form URL[#MODEL].
func ParseFlag(s string) (Config, error) {
	base, model, _ := strings.Cut(s, "#")
	c := Config{BaseURL: base, Model: model}
	if err := c.check(); err != nil {
		return Config{}, err
	}
	return c, nil
}

// check validates the fields that do not depend on the environment.
func (c *Config) check() error {
	u, err := url.Parse(c.BaseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("upstream base_url %q: want an http:// or https:// URL such as http://127.0.0.1:8000/v1", c.BaseURL)
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf("upstream base_url %q: no query or fragment allowed (the model goes after #, e.g. URL#MODEL)", c.BaseURL)
	}
	switch c.EffortParam {
	case "", "reasoning_effort", "reasoning.effort", "none":
	default:
		return fmt.Errorf("upstream %s: effort_param %q: allowed values are reasoning_effort, reasoning.effort, none", c.BaseURL, c.EffortParam)
	}
	if c.Provider != "" {
		if _, ok := c.routeOf(); !ok {
			var names []string
			for _, r := range Known {
				names = append(names, r.Name)
			}
			return fmt.Errorf("upstream %s: provider %q: known providers are %s", c.BaseURL, c.Provider, strings.Join(names, ", "))
		}
	}
	switch c.Discover {
	case "", "dns":
	default:
		return fmt.Errorf("upstream %s: discover %q: the only discovery is \"dns\"", c.BaseURL, c.Discover)
	}
	if c.Discover == "dns" && u.Scheme == "https" {
		return fmt.Errorf("upstream %s: discover \"dns\" connects to each address by IP, which https cannot verify; use http inside the cluster", c.BaseURL)
	}
	for _, d := range []time.Duration{c.Timeouts.Connect, c.Timeouts.FirstByte, c.Timeouts.Idle} {
		if d < 0 {
			return fmt.Errorf("upstream %s: timeouts must not be negative", c.BaseURL)
		}
	}
	return nil
}

// withDefaults fills what a known route or the served name implies.
func (c Config) withDefaults(servedName string) Config {
	c.BaseURL = strings.TrimRight(c.BaseURL, "/")
	r, known := c.routeOf()
	if c.Name == "" {
		if known {
			c.Name = r.Name
		} else if u, err := url.Parse(c.BaseURL); err == nil {
			c.Name = u.Host
		}
	}
	if c.Model == "" {
		c.Model = servedName
		if known && r.Model != "" {
			c.Model = r.Model
		}
	}
	if c.EffortParam == "" {
		c.EffortParam = "reasoning_effort"
		if known {
			c.EffortParam = r.EffortParam
		}
	}
	if c.Health == "" {
		c.Health = "/health"
		if known {
			c.Health = "off" // public APIs: passive checks only
		}
	}
	c.Timeouts = c.Timeouts.WithDefaults()
	return c
}
