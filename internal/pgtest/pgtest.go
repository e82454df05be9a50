// Package pgtest starts a throwaway Postgres server from the machine's own
// binaries for tests: one per test binary, on a unix socket in a temporary
// directory, with a fresh database per test. Tests skip (with the reason)
// only where no Postgres binary exists, or where tests run as root and no
// unprivileged "postgres" user can run it.
package pgtest

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx"
)

// EnvBin names the environment variable that points at a directory holding
// initdb and postgres (default: $PATH, then /usr/lib/postgresql/*/bin).
const EnvBin = "STEPFLASH_PG_BIN"

var (
	once    sync.Once
	server  string // the admin DSN
	skipMsg string
	failErr error
	dbSeq   atomic.Int64
)

// DSN returns the DSN of a new, empty database on the test binary's
// Postgres server (started on first use, stopped when the binary exits),
// dropped when the test ends. It skips the test when Postgres cannot run
// here.
func DSN(t testing.TB) string {
	t.Helper()
	once.Do(start)
	if skipMsg != "" {
		t.Skip("Postgres tests skipped: " + skipMsg)
	}
	if failErr != nil {
		t.Fatalf("starting Postgres: %v", failErr)
	}
	name := fmt.Sprintf("t%d_%d", os.Getpid(), dbSeq.Add(1))
	admin, err := sql.Open("pgx", server)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	if _, err := admin.Exec(`CREATE DATABASE ` + name); err != nil {
		t.Fatalf("create database: %v", err)
	}
	t.Cleanup(func() {
		admin, err := sql.Open("pgx", server)
		if err != nil {
			return
		}
		defer admin.Close()
		admin.Exec(`DROP DATABASE IF EXISTS ` + name + ` WITH (FORCE)`)
	})
	return strings.Replace(server, "/postgres?", "/"+name+"?", 1)
}

// binDir finds the directory holding initdb and postgres.
func binDir() (string, bool) {
	if d := os.Getenv(EnvBin); d != "" {
		return d, exists(filepath.Join(d, "postgres"))
	}
	if p, err := exec.LookPath("postgres"); err == nil {
		if _, err := exec.LookPath("initdb"); err == nil {
			if r, err := filepath.EvalSymlinks(p); err == nil {
				return filepath.Dir(r), true
			}
			return filepath.Dir(p), true
		}
	}
	// Debian keeps them off $PATH.
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return version(dirs[i]) > version(dirs[j]) })
	for _, d := range dirs {
		if exists(filepath.Join(d, "postgres")) && exists(filepath.Join(d, "initdb")) {
			return d, true
		}
	}
	return "", false
}

func version(dir string) int {
	v, _ := strconv.Atoi(filepath.Base(filepath.Dir(dir)))
	return v
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// start runs initdb and the server. The server is kept by a shell that
// holds one end of a pipe from this process: when the process exits, in
// any way, the pipe closes and the shell stops Postgres and removes its
// directory.
func start() {
	if runtime.GOOS == "windows" {
		skipMsg = "the harness runs Postgres on a unix socket"
		return
	}
	bin, ok := binDir()
	if !ok {
		skipMsg = "no Postgres server binaries found (initdb, postgres on $PATH or in /usr/lib/postgresql/*/bin; " +
			"install Debian's postgresql package, or set " + EnvBin + ")"
		return
	}
	var cred *syscall.Credential
	if os.Geteuid() == 0 {
		// Postgres refuses to run as root.
		u, err := user.Lookup("postgres")
		if err != nil {
			skipMsg = "running as root, and there is no unprivileged \"postgres\" user to run Postgres as"
			return
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	}
	// A short path: a unix socket's path is limited to about 100 bytes.
	dir, err := os.MkdirTemp("", "pgtest")
	if err != nil {
		failErr = err
		return
	}
	if cred != nil {
		if err := os.Chown(dir, int(cred.Uid), int(cred.Gid)); err != nil {
			failErr = err
			return
		}
	}
	data := filepath.Join(dir, "data")
	initdb := exec.Command(filepath.Join(bin, "initdb"), "-D", data, "-U", "postgres", "-A", "trust", "-E", "UTF8",
		"--no-sync", "--no-instructions")
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	initdb.Dir = dir
	if out, err := initdb.CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		failErr = fmt.Errorf("initdb: %v\n%s", err, out)
		return
	}
	const keeper = `"$0" -D "$1" -k "$2" -p 5432 -c listen_addresses= -c max_connections=200 -c shared_buffers=32MB >"$2/log" 2>&1 &
pid=$!
read _ || true
kill -INT "$pid"
wait "$pid"
rm -rf "$2"`
	keep := exec.Command("/bin/sh", "-c", keeper, filepath.Join(bin, "postgres"), data, dir)
	keep.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Setpgid: true}
	keep.Dir = dir
	stdin, err := keep.StdinPipe()
	if err != nil {
		failErr = err
		return
	}
	if err := keep.Start(); err != nil {
		failErr = fmt.Errorf("starting postgres: %v", err)
		return
	}
	keepers = append(keepers, stdin) // held open for the life of the process
	go keep.Wait()
	server = "postgres:///postgres?host=" + url.QueryEscape(dir) + "&port=5432&user=postgres&sslmode=disable"
	if err := waitReady(server, 30*time.Second); err != nil {
		log, _ := os.ReadFile(filepath.Join(dir, "log"))
		failErr = fmt.Errorf("postgres did not accept connections: %v\n%s", err, log)
	}
}

// keepers holds the keepers' pipes, so they stay open until the process
// exits.
var keepers []io.WriteCloser

func waitReady(dsn string, timeout time.Duration) error {
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		return err
	}
	defer db.Close()
	deadline := time.Now().Add(timeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err = db.PingContext(ctx)
		cancel()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return errors.Join(errors.New("timed out"), err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
