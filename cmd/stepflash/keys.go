package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/stepflash/stepflash/auth"
)

const keysUsage = `Usage:
  stepflash keys create --region R --name N [--budget USD [--budget-period day|month|total]] [--rpm N] [--tpm N] [--operator] [--json]
  stepflash keys list [--region R] [--json]
  stepflash keys revoke ID|NAME

API keys bound to a region (docs/keys.md): sk-<region>-<32 random>-<checksum>.
A server of region R takes only R's keys; a key of another region gets 401
region_mismatch naming where it belongs.

create   makes a key and prints it, with its id and region. The key is shown
         this once: the store keeps only its SHA-256 hash and its id (the
         display prefix, sk-<region>- and 8 characters). --budget caps the
         key's cost in USD per --budget-period (default month; calendar
         periods in UTC; total: ever); --rpm and --tpm cap requests and
         tokens per minute. 0 (the default) is no limit. --operator makes
         an operator's key, which may also read every key's usage (GET
         /v1/usage and the dashboard at /dashboard, docs/dashboard.md).
list     lists the keys (id, name, region, limits, created, revoked), never
         the keys themselves; --json for scripts.
revoke   revokes a key by id, or by name when one live key has that name.
         Servers refuse it within seconds; its usage stays in the ledger.

` + storeFlagsHelp + `
Run "stepflash keys SUBCOMMAND -h" for a subcommand's flags.
`

func cmdKeys(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, keysUsage)
		return errUsage
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stderr, keysUsage)
		return flag.ErrHelp
	case "create":
		return keysCreate(args[1:], stdout, stderr)
	case "list", "ls":
		return keysList(args[1:], stdout, stderr)
	case "revoke":
		return keysRevoke(args[1:], stdout, stderr)
	}
	fmt.Fprintf(stderr, "stepflash keys: unknown subcommand %q\n\n%s", args[0], keysUsage)
	return errUsage
}

// keysFlags is a subcommand's flag set with the store flags.
func keysFlags(name, usage string, stderr io.Writer, so *storeOptions) *flag.FlagSet {
	fs := flag.NewFlagSet("keys "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	registerStoreFlags(fs, so)
	fs.Usage = func() {
		fmt.Fprint(stderr, usage)
		fs.PrintDefaults()
	}
	return fs
}

// keyJSON is a key as keys create/list --json print it.
type keyJSON struct {
	Key          string     `json:"key,omitempty"` // create only
	ID           string     `json:"id"`
	Name         string     `json:"name"`
	Region       string     `json:"region"`
	BudgetUSD    float64    `json:"budget_usd"`
	BudgetPeriod string     `json:"budget_period"`
	RPM          int        `json:"rpm"`
	TPM          int        `json:"tpm"`
	Operator     bool       `json:"operator"`
	Created      time.Time  `json:"created"`
	Revoked      *time.Time `json:"revoked"`
}

func toJSON(k auth.Key) keyJSON {
	j := keyJSON{ID: k.ID, Name: k.Name, Region: k.Region, BudgetUSD: k.BudgetUSD, BudgetPeriod: k.BudgetPeriod,
		RPM: k.RPM, TPM: k.TPM, Operator: k.Operator, Created: k.Created}
	if !k.Revoked.IsZero() {
		r := k.Revoked
		j.Revoked = &r
	}
	return j
}

func keysCreate(args []string, stdout, stderr io.Writer) error {
	var so storeOptions
	fs := keysFlags("create", "Usage: stepflash keys create --region R --name N [--budget USD [--budget-period day|month|total]] [--rpm N] [--tpm N] [--json]\n\nMakes a key and prints it once.\n\nFlags:\n", stderr, &so)
	region := fs.String("region", "", "the region the key works in: 1 to 16 lowercase letters and digits (global, cn, …)")
	name := fs.String("name", "", "a name for the key (who or what uses it)")
	budget := fs.Float64("budget", 0, "cost cap in USD per --budget-period (0: none)")
	period := fs.String("budget-period", "", "day, month or total (default month when --budget is set)")
	rpm := fs.Int("rpm", 0, "requests per minute (0: no limit)")
	tpm := fs.Int("tpm", 0, "tokens per minute, prompt and completion (0: no limit)")
	operator := fs.Bool("operator", false, "an operator's key: it may also read every key's usage (GET /v1/usage, the dashboard at /dashboard)")
	asJSON := fs.Bool("json", false, "print the key as a JSON object")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	switch {
	case len(pos) > 0:
		return fmt.Errorf("unexpected argument %q (the name is given with --name)", pos[0])
	case *region == "":
		return errors.New("--region is required (e.g. --region global)")
	case !auth.ValidRegion(*region):
		return fmt.Errorf("--region %q: want 1 to %d lowercase letters and digits", *region, auth.MaxRegionLen)
	case *name == "":
		return errors.New("--name is required: it says who or what uses the key, and can revoke it")
	case *budget < 0 || *rpm < 0 || *tpm < 0:
		return errors.New("--budget, --rpm and --tpm cannot be negative")
	case *period != "" && *budget == 0:
		return errors.New("--budget-period needs --budget")
	}
	switch *period {
	case "":
		if *budget > 0 {
			*period = "month"
		}
	case "day", "month", "total":
	default:
		return fmt.Errorf("--budget-period %q: want day, month or total", *period)
	}
	key, err := auth.Generate(*region)
	if err != nil {
		return err
	}
	p, err := auth.Parse(key)
	if err != nil {
		return err
	}
	ctx := context.Background()
	st, err := so.openStore(ctx)
	if err != nil {
		return err
	}
	defer st.Close()
	k := auth.Key{ID: p.Prefix, Hash: p.Hash, Region: *region, Name: *name, BudgetUSD: *budget, BudgetPeriod: *period,
		RPM: *rpm, TPM: *tpm, Operator: *operator, Created: time.Now().UTC().Truncate(time.Microsecond)}
	if err := st.CreateKey(ctx, k); err != nil {
		return err
	}
	if *asJSON {
		j := toJSON(k)
		j.Key = key
		b, _ := json.Marshal(j)
		fmt.Fprintf(stdout, "%s\n", b)
	} else {
		fmt.Fprintf(stdout, "key     %s\nid      %s\nregion  %s\nname    %s\nlimits  %s\n", key, k.ID, k.Region, k.Name, limits(k))
	}
	fmt.Fprintln(stderr, "Store the key now: it is not shown again (the store keeps only its hash).")
	return nil
}

// limits describes a key's limits in a few words.
func limits(k auth.Key) string {
	s := ""
	add := func(part string) {
		if s != "" {
			s += ", "
		}
		s += part
	}
	if k.BudgetUSD > 0 {
		add(fmt.Sprintf("$%s/%s", strconv.FormatFloat(k.BudgetUSD, 'f', -1, 64), k.BudgetPeriod))
	}
	if k.RPM > 0 {
		add(fmt.Sprintf("%d rpm", k.RPM))
	}
	if k.TPM > 0 {
		add(fmt.Sprintf("%d tpm", k.TPM))
	}
	if k.Operator {
		add("operator (reads usage)")
	}
	if s == "" {
		return "none"
	}
	return s
}

func keysList(args []string, stdout, stderr io.Writer) error {
	var so storeOptions
	fs := keysFlags("list", "Usage: stepflash keys list [--region R] [--json]\n\nLists the keys, oldest first; never the keys themselves.\n\nFlags:\n", stderr, &so)
	region := fs.String("region", "", "only this region's keys")
	asJSON := fs.Bool("json", false, "print a JSON array")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return fmt.Errorf("unexpected argument %q", pos[0])
	}
	if *region != "" && !auth.ValidRegion(*region) {
		return fmt.Errorf("--region %q: want 1 to %d lowercase letters and digits", *region, auth.MaxRegionLen)
	}
	ctx := context.Background()
	st, err := so.openStore(ctx)
	if err != nil {
		return err
	}
	defer st.Close()
	keys, err := st.Keys(ctx, *region)
	if err != nil {
		return err
	}
	if *asJSON {
		out := make([]keyJSON, 0, len(keys))
		for _, k := range keys {
			out = append(out, toJSON(k))
		}
		b, _ := json.MarshalIndent(out, "", "  ")
		fmt.Fprintf(stdout, "%s\n", b)
		return nil
	}
	if len(keys) == 0 {
		fmt.Fprintf(stderr, "no keys in %s (stepflash keys create makes one)\n", st)
		return nil
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tNAME\tREGION\tLIMITS\tCREATED\tREVOKED")
	for _, k := range keys {
		revoked := "-"
		if !k.Revoked.IsZero() {
			revoked = k.Revoked.UTC().Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", k.ID, k.Name, k.Region, limits(k), k.Created.UTC().Format(time.RFC3339), revoked)
	}
	return tw.Flush()
}

func keysRevoke(args []string, stdout, stderr io.Writer) error {
	var so storeOptions
	fs := keysFlags("revoke", "Usage: stepflash keys revoke ID|NAME\n\nRevokes a key by id, or by name when one live key has that name.\n\nFlags:\n", stderr, &so)
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		fs.Usage()
		return errUsage
	}
	ctx := context.Background()
	st, err := so.openStore(ctx)
	if err != nil {
		return err
	}
	defer st.Close()
	now := time.Now().UTC()
	k, err := st.RevokeKey(ctx, pos[0], now)
	if errors.Is(err, auth.ErrNotFound) {
		return fmt.Errorf("no key has the id or name %q in %s (stepflash keys list shows them)", pos[0], st)
	}
	if err != nil {
		return err
	}
	if !k.Revoked.Equal(now.Truncate(time.Microsecond)) {
		fmt.Fprintf(stdout, "%s (%s) was already revoked at %s\n", k.ID, k.Name, k.Revoked.UTC().Format(time.RFC3339))
		return nil
	}
	fmt.Fprintf(stdout, "revoked %s (%s, region %s)\n", k.ID, k.Name, k.Region)
	return nil
}
