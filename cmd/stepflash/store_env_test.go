package main

import (
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stepflash/stepflash/store"
)

// Tests never write into a database the environment names: a serve, keys or
// usage run without --data or --db (and the serve processes tests start)
// uses the scratch data dir of ledger_crash_test.go's init.
func init() { os.Unsetenv("STEPFLASH_DB") }

// TestStoreDSNFromEnv: which database --data, --db, $STEPFLASH_DATA and
// $STEPFLASH_DB name together. $STEPFLASH_DB is --db's default and wins over
// the data dir's file unless --data is given; only the two flags together
// are an error.
func TestStoreDSNFromEnv(t *testing.T) {
	envData, flagData := t.TempDir(), t.TempDir()
	const envDB, flagDB = "postgres://u:secret@db:5432/env", "sqlite:/flag/x.db"
	for _, tc := range []struct {
		name          string
		envDB, envDat string // "" leaves the variable unset
		args          []string
		want          string // the DSN; "" with err
		err           string
	}{
		{"defaults", "", "", nil, "", ""}, // the platform's data dir: checked below
		{"env data", "", envData, nil, store.DSNFor(envData), ""},
		{"env db", envDB, "", nil, envDB, ""},
		{"env db beats env data", envDB, envData, nil, envDB, ""},
		{"flag data", "", envData, []string{"--data", flagData}, store.DSNFor(flagData), ""},
		{"flag data beats env db", envDB, envData, []string{"--data", flagData}, store.DSNFor(flagData), ""},
		{"flag db", "", envData, []string{"--db", flagDB}, flagDB, ""},
		{"flag db beats env db", envDB, envData, []string{"--db", flagDB}, flagDB, ""},
		{"empty flag db clears env db", envDB, envData, []string{"--db", ""}, store.DSNFor(envData), ""},
		{"both flags", "", "", []string{"--data", flagData, "--db", flagDB}, "", "give --data or --db, not both"},
		{"both flags with env", envDB, envData, []string{"--db", flagDB, "--data", flagData}, "", "give --data or --db, not both"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("STEPFLASH_DB", tc.envDB)
			t.Setenv("STEPFLASH_DATA", tc.envDat)
			if tc.envDB == "" {
				os.Unsetenv("STEPFLASH_DB")
			}
			if tc.envDat == "" {
				os.Unsetenv("STEPFLASH_DATA")
			}
			want := tc.want
			if tc.name == "defaults" {
				want = store.DSNFor(store.DefaultDir())
			}
			var o storeOptions
			fs := flag.NewFlagSet("test", flag.ContinueOnError)
			fs.SetOutput(io.Discard)
			registerStoreFlags(fs, &o)
			if err := fs.Parse(tc.args); err != nil {
				t.Fatal(err)
			}
			got, err := o.DSN()
			switch {
			case tc.err != "":
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("DSN() = %q, %v; want an error mentioning %q", got, err, tc.err)
				}
			case err != nil || got != want:
				t.Fatalf("DSN() = %q, %v; want %q", got, err, want)
			}
		})
	}
}

// TestStoreEnvDB: keys create and list use the database $STEPFLASH_DB names
// (as in a pod whose Secret supplies it), not the data dir, and the help
// never prints that DSN (it may hold a password).
func TestStoreEnvDB(t *testing.T) {
	dataDir, dbDir := t.TempDir(), t.TempDir()
	db := filepath.Join(dbDir, "env.db")
	t.Setenv("STEPFLASH_DATA", dataDir)
	t.Setenv("STEPFLASH_DB", "sqlite:"+db)
	if rc, out, errs := run(t, "keys", "create", "--region", "global", "--name", "from-env"); rc != 0 {
		t.Fatalf("keys create: %d %s %s", rc, out, errs)
	}
	if _, err := os.Stat(db); err != nil {
		t.Errorf("$STEPFLASH_DB's file: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dataDir, store.DefaultFile)); err == nil {
		t.Errorf("the data dir got a %s although $STEPFLASH_DB is set", store.DefaultFile)
	}
	if rc, out, errs := run(t, "keys", "list"); rc != 0 || !strings.Contains(out, "from-env") {
		t.Errorf("keys list: %d %q %s", rc, out, errs)
	}
	// An explicit --data wins over $STEPFLASH_DB: that data dir has no key.
	if rc, out, errs := run(t, "keys", "list", "--data", dataDir); rc != 0 || strings.Contains(out, "from-env") {
		t.Errorf("keys list --data: %d %q %s", rc, out, errs)
	}
	t.Setenv("STEPFLASH_DB", "postgres://u:hunter2@db:5432/x")
	if _, _, errs := run(t, "keys", "list", "-h"); strings.Contains(errs, "hunter2") || !strings.Contains(errs, "$STEPFLASH_DB") {
		t.Errorf("keys list -h shows the DSN or does not name $STEPFLASH_DB:\n%s", errs)
	}
}
