package format

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range es {
		names = append(names, e.Name())
	}
	return names
}

func TestCreateAtomicCommit(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "out.bin")
	f, err := CreateAtomic(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Abort()
	if _, err := f.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(out); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("destination visible before Commit: %v", err)
	}
	if err := f.Commit(); err != nil {
		t.Fatal(err)
	}
	f.Abort() // no-op after Commit
	b, err := os.ReadFile(out)
	if err != nil || string(b) != "hello" {
		t.Fatalf("after commit: %q %v", b, err)
	}
	if fi, _ := os.Stat(out); fi.Mode().Perm() != 0o644 {
		t.Errorf("mode %v", fi.Mode())
	}
	if names := dirNames(t, dir); len(names) != 1 {
		t.Errorf("leftovers: %v", names)
	}
	if err := f.Commit(); err == nil {
		t.Error("second Commit succeeded")
	}
}

func TestCreateAtomicAbortLeavesNothing(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "out.bin")
	os.WriteFile(out, []byte("old"), 0o644)
	func() {
		f, err := CreateAtomic(out)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Abort() // simulated failure: return without Commit
		f.Write([]byte("partial"))
	}()
	b, _ := os.ReadFile(out)
	if string(b) != "old" {
		t.Errorf("existing file changed to %q", b)
	}
	if names := dirNames(t, dir); len(names) != 1 {
		t.Errorf("leftovers: %v", names)
	}
	if _, err := CreateAtomic(filepath.Join(dir, "missing", "x")); err == nil {
		t.Error("create in missing dir succeeded")
	}
}

func TestAtomicDir(t *testing.T) {
	root := t.TempDir()
	final := filepath.Join(root, "model")
	tmp, commit, abort, err := AtomicDir(final)
	if err != nil {
		t.Fatal(err)
	}
	defer abort()
	if err := os.WriteFile(filepath.Join(tmp, "a.txt"), []byte("a"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(final); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("final visible before commit")
	}
	if err := commit(); err != nil {
		t.Fatal(err)
	}
	abort() // no-op
	if b, err := os.ReadFile(filepath.Join(final, "a.txt")); err != nil || string(b) != "a" {
		t.Fatalf("%q %v", b, err)
	}
	if names := dirNames(t, root); len(names) != 1 {
		t.Errorf("leftovers: %v", names)
	}

	// exists → refused; with Overwrite → replaced
	if _, _, _, err := AtomicDir(final); !errors.Is(err, ErrExists) {
		t.Errorf("existing final: %v", err)
	}
	tmp, commit, abort, err = AtomicDir(final, Overwrite(true))
	if err != nil {
		t.Fatal(err)
	}
	defer abort()
	os.WriteFile(filepath.Join(tmp, "b.txt"), []byte("b"), 0o644)
	if err := commit(); err != nil {
		t.Fatal(err)
	}
	if names := dirNames(t, final); len(names) != 1 || names[0] != "b.txt" {
		t.Errorf("after overwrite: %v", names)
	}
	if names := dirNames(t, root); len(names) != 1 {
		t.Errorf("leftovers after overwrite: %v", names)
	}
}

func TestAtomicDirAbortLeavesNothing(t *testing.T) {
	root := t.TempDir()
	final := filepath.Join(root, "model")
	tmp, _, abort, err := AtomicDir(final)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(tmp, "partial"), []byte("x"), 0o644)
	abort() // cancelled run
	if names := dirNames(t, root); len(names) != 0 {
		t.Errorf("leftovers: %v", names)
	}
}

func TestAtomicDirRefusesInputs(t *testing.T) {
	root := t.TempDir()
	in := filepath.Join(root, "in")
	os.Mkdir(in, 0o755)
	os.WriteFile(filepath.Join(in, "model.safetensors"), []byte("x"), 0o644)
	for _, out := range []string{in, filepath.Join(in, "sub"), root} {
		if _, _, _, err := AtomicDir(out, Overwrite(true), Inputs(in)); !errors.Is(err, ErrInputOutput) {
			t.Errorf("output %s with input %s: %v", out, in, err)
		}
	}
	if err := CheckOutput(filepath.Join(in, "model.safetensors"), filepath.Join(in, "model.safetensors")); !errors.Is(err, ErrInputOutput) {
		t.Errorf("same file: %v", err)
	}
	os.Symlink(in, filepath.Join(root, "link"))
	if err := CheckOutput(filepath.Join(root, "link"), in); !errors.Is(err, ErrInputOutput) {
		t.Errorf("symlink to input: %v", err)
	}
	if err := CheckOutput(filepath.Join(root, "other"), in); err != nil {
		t.Errorf("unrelated output refused: %v", err)
	}
}
