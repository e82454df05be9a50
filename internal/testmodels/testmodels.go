// Package testmodels locates the shared test models (../shared/models beside the
// repository, or $STEPFLASH_MODELS) for tests across the project.
package testmodels

import (
	"os"
	"path/filepath"
	"testing"
)

// EnvVar names the environment variable that overrides the models directory.
const EnvVar = "STEPFLASH_MODELS"

// ModelsDir returns the shared models directory and whether it exists.
// It honours $STEPFLASH_MODELS, else looks for ../shared/models beside the
// module root (the directory holding go.mod).
func ModelsDir() (string, bool) {
	if d := os.Getenv(EnvVar); d != "" {
		return d, isDir(d)
	}
	wd, err := os.Getwd()
	if err != nil {
		return "", false
	}
	for dir := wd; ; {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			d := filepath.Join(dir, "..", "shared", "models")
			return d, isDir(d)
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", false
		}
		dir = parent
	}
}

// Models returns the shared models directory, or skips the test with a clear
// message when it is absent.
func Models(t testing.TB) string {
	t.Helper()
	d, ok := ModelsDir()
	if !ok {
		t.Skipf("shared models not found (looked for %q); set %s or place ../shared beside the repository", d, EnvVar)
	}
	return d
}

// Path returns the path of a file under the shared models directory, skipping
// the test when the directory is absent and failing it when the file is.
func Path(t testing.TB, name string) string {
	t.Helper()
	p := filepath.Join(Models(t), name)
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("shared model file missing: %v", err)
	}
	return p
}

func isDir(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.IsDir()
}
