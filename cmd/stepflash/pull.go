package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"

	"github.com/stepflash/stepflash/hub"
	"github.com/stepflash/stepflash/internal/httpclient"
)

func cmdPull(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("pull", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cacheDir := fs.String("cache-dir", hub.DefaultCacheDir(), "where models are kept ($STEPFLASH_CACHE)")
	endpoint := fs.String("endpoint", "", "hub address (default $HF_ENDPOINT or "+hub.DefaultEndpoint+")")
	quiet := fs.Bool("quiet", false, "no progress bar")
	timeouts := timeoutFlags(fs)
	fs.Usage = func() {
		fmt.Fprintf(stderr, `Usage: stepflash pull [flags] REPO[:FILE]

Download a GGUF file from Hugging Face into the cache and print its path.
REPO is owner/name (REPO@REVISION for another revision than main); without
:FILE the repository's only GGUF, or its Q4_K_M or Q8_0 one, is taken.
Downloads resume where an interrupted one stopped and are checked against
their SHA-256. Gated repositories need $HF_TOKEN. The default model of
"stepflash serve" is %s.

A hub that does not connect within --connect-timeout, or does not answer
within --first-byte-timeout, fails the pull; so does a download that gets no
data for --idle-timeout (after 3 attempts to resume). Running the same
command again resumes it. A negative limit means none.

Flags:
`, hub.Default)
		fs.PrintDefaults()
	}
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		fs.Usage()
		return errUsage
	}
	ref, err := hub.ParseRef(pos[0])
	if err != nil {
		return err
	}
	c := &hub.Client{CacheDir: *cacheDir, Endpoint: *endpoint, Timeouts: *timeouts}
	if !*quiet {
		c.Progress = stderr
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	path, err := c.Pull(ctx, ref)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, path)
	return nil
}

// timeoutFlags defines --connect-timeout, --first-byte-timeout and
// --idle-timeout on fs, defaulting to httpclient.DefaultTimeouts.
func timeoutFlags(fs *flag.FlagSet) *httpclient.Timeouts {
	t := httpclient.DefaultTimeouts
	fs.DurationVar(&t.Connect, "connect-timeout", t.Connect, "limit on connecting to the hub (DNS, TCP and TLS)")
	fs.DurationVar(&t.FirstByte, "first-byte-timeout", t.FirstByte, "limit on waiting for the hub to answer a request")
	fs.DurationVar(&t.Idle, "idle-timeout", t.Idle, "limit on waiting for more data during a download")
	return &t
}
