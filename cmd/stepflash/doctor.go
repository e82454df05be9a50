package main

import (
	"cmp"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/stepflash/stepflash/doctor"
)

// defaultDoctorBaseURL is where `stepflash serve` answers on this machine.
const defaultDoctorBaseURL = "http://127.0.0.1:8000/v1"

// doctorOptions are the parsed flags of `stepflash doctor`.
type doctorOptions struct {
	cfg    doctor.Config
	asJSON bool
}

// parseDoctor reads the flags, with the base URL and key from the
// environment when not given: $STEP_BASE_URL / $STEP_API_KEY (the vendor's
// names, DESIGN.md section 2), then $OPENAI_BASE_URL / $OPENAI_API_KEY.
func parseDoctor(args []string, getenv func(string) string, stderr io.Writer) (*doctorOptions, error) {
	o := &doctorOptions{}
	fs := flag.NewFlagSet("doctor", flag.ContinueOnError)
	fs.SetOutput(stderr)
	baseURL := fs.String("base-url", "", "the endpoint's base URL, ending in /v1 (default $STEP_BASE_URL, $OPENAI_BASE_URL, else "+defaultDoctorBaseURL+")")
	apiKey := fs.String("api-key", "", "API key, sent as a Bearer token (default $STEP_API_KEY, else $OPENAI_API_KEY)")
	fs.StringVar(&o.cfg.Model, "model", "", "model string to check, exactly as your client sends it (default: step-3.7-flash when served, else the first served name)")
	fs.BoolVar(&o.asJSON, "json", false, "print the results as one JSON object")
	fs.DurationVar(&o.cfg.Timeout, "timeout", 60*time.Second, "limit on each request")
	fs.Usage = func() {
		fmt.Fprint(stderr, `Usage: stepflash doctor [--base-url URL] [--api-key K] [--model M] [--json] [--timeout D]

Check an OpenAI-compatible endpoint (a stepflash, StepFun's APIs, OpenRouter,
vLLM, ...) for the traps that fail without a descriptive error, and say what
to fix: reachability and the served names; a key of the wrong region (a 401
with an empty body); a model string that is not exactly a served name;
reasoning_effort accepted but ignored; streams without a usage chunk or
[DONE]; where cached_tokens is placed; reasoning field names; empty error
bodies; and what a local stepflash says about itself. It sends a few small
requests (about eight, a few dozen tokens each).

One line per check (✓ pass, ✗ fail, ! warning, - skipped); the exit status
is 1 when any check fails.

Flags:
`)
		fs.PrintDefaults()
	}
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return nil, err
	}
	if len(pos) != 0 {
		fs.Usage()
		return nil, errUsage
	}
	o.cfg.BaseURL = cmp.Or(*baseURL, getenv("STEP_BASE_URL"), getenv("OPENAI_BASE_URL"), defaultDoctorBaseURL)
	switch {
	case *apiKey != "":
		o.cfg.APIKey, o.cfg.KeySource = *apiKey, "--api-key"
	case getenv("STEP_API_KEY") != "":
		o.cfg.APIKey, o.cfg.KeySource = getenv("STEP_API_KEY"), "$STEP_API_KEY"
	case getenv("OPENAI_API_KEY") != "":
		o.cfg.APIKey, o.cfg.KeySource = getenv("OPENAI_API_KEY"), "$OPENAI_API_KEY"
	}
	if o.cfg.Timeout <= 0 {
		fmt.Fprintln(stderr, "stepflash doctor: --timeout must be positive")
		return nil, errUsage
	}
	return o, nil
}

func cmdDoctor(args []string, stdout, stderr io.Writer) error {
	o, err := parseDoctor(args, os.Getenv, stderr)
	if err != nil {
		return err
	}
	rep := doctor.Run(context.Background(), o.cfg)
	if o.asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return err
		}
	} else {
		rep.WriteText(stdout)
	}
	if !rep.OK {
		return fmt.Errorf("%d of %d checks failed", rep.Failed, len(rep.Results))
	}
	return nil
}
