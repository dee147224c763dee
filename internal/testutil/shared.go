// Package testutil finds the shared development data and other test helpers.
package testutil

import (
	"os"
	"path/filepath"
	"testing"
)

// RepoRoot returns the directory holding go.mod, searching upwards from the
// working directory ("" if none).
func RepoRoot() string {
	dir, err := os.Getwd()
	if err != nil {
		return ""
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return ""
		}
		dir = parent
	}
}

// SharedDataDir is ../shared/data beside the repository, or $SPARSIFY_SHARED_DATA.
func SharedDataDir() string {
	if d := os.Getenv("SPARSIFY_SHARED_DATA"); d != "" {
		return d
	}
	root := RepoRoot()
	if root == "" {
		return ""
	}
	return filepath.Join(filepath.Dir(root), "shared", "data")
}

// SharedData returns the path of a file in the shared data folder, skipping the
// test with a message when it is absent.
func SharedData(t testing.TB, name string) string {
	t.Helper()
	p := filepath.Join(SharedDataDir(), name)
	if _, err := os.Stat(p); err != nil {
		t.Skipf("shared data %s not present (%v): skipping", name, err)
	}
	return p
}
