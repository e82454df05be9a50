// Command stepflash is a self-hosted OpenAI-compatible model service with its
// own pure-Go GGUF inference engine. See `stepflash help`.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
)

const usage = `stepflash — a pure-Go GGUF inference engine and OpenAI-compatible model service

Usage:
  stepflash <command> [flags] [arguments]

Commands:
  run        generate a raw completion (no chat template) from a prompt
  tokenize   print the token ids of a text
  bench      measure prefill and decode speed (tok/s, min/median/max over runs)
  serve      OpenAI-compatible server (default 0.0.0.0:8000, API under /v1)
  pull       download a GGUF from Hugging Face: REPO[:FILE]
  keys       API keys bound to a region: create, list, revoke
  usage      requests, tokens and cost from the usage ledger, by key, model or day
  eval       run the experiments (effort, head2head, advisor, vision): ≥5 passes, results.json, report.html
  doctor     check an endpoint for the traps that fail silently (region, model name, effort) and say what to fix
  version    print the version, build and kernel path (also: stepflash --version)
  help       show this help, or a command's flags: stepflash help <command>

A prompt or text of "-" is read from standard input.
Run "stepflash <command> -h" for the flags of a command.
`

// command is one subcommand: it parses its own flags from args.
type command struct {
	name string
	run  func(args []string, stdout, stderr io.Writer) error
}

var commands = []command{
	{"run", cmdRun},
	{"tokenize", cmdTokenize},
	{"bench", cmdBench},
	{"serve", cmdServe},
	{"pull", cmdPull},
	{"keys", cmdKeys},
	{"usage", cmdUsage},
	{"eval", cmdEval},
	{"doctor", cmdDoctor},
	{"version", cmdVersion},
}

func main() {
	os.Exit(Main(os.Args[1:], os.Stdout, os.Stderr))
}

// Main runs the command line args and returns the exit status.
func Main(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	name := args[0]
	if name == "--version" || name == "-version" {
		name = "version"
	}
	if name == "help" || name == "-h" || name == "--help" {
		if len(args) > 1 {
			return Main([]string{args[1], "-h"}, stdout, stderr)
		}
		fmt.Fprint(stdout, usage)
		return 0
	}
	for _, c := range commands {
		if c.name == name {
			err := c.run(args[1:], stdout, stderr)
			switch {
			case err == nil:
				return 0
			case errors.Is(err, flag.ErrHelp):
				return 0
			case errors.Is(err, errUsage):
				return 2
			default:
				fmt.Fprintf(stderr, "stepflash %s: %v\n", name, err)
				return 1
			}
		}
	}
	fmt.Fprintf(stderr, "stepflash: unknown command %q\n\n%s", name, usage)
	return 2
}

// errUsage marks an error already reported with the command's usage.
var errUsage = errors.New("usage error")

// parseInterleaved parses flags that may come before or after positional
// arguments (everything after "--" is positional) and returns the positionals.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, errUsage
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		// flag stops at "--" (consumed) or at the first positional.
		consumed := len(args) - len(rest)
		if consumed > 0 && args[consumed-1] == "--" {
			return append(pos, rest...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}
