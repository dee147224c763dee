package format

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// ErrExists is returned when an output would replace an existing path without
// the Overwrite option.
var ErrExists = errors.New("output already exists")

// ErrInputOutput is returned when an output path is, contains or lies inside
// one of the inputs.
var ErrInputOutput = errors.New("output would overwrite an input")

// AtomicFile is an output file written under a temporary name in the
// destination's directory and renamed into place by Commit. Until Commit the
// destination is untouched; Abort (or a crash) leaves no file at the
// destination (a crash may leave a hidden ".NAME.tmp-*" file behind).
//
// The embedded *os.File is the temporary file: write to it (also with
// WriteAt, concurrently, as *os.File allows), but end it with Commit or
// Abort, never Close. An AtomicFile is not safe for concurrent Commit/Abort.
type AtomicFile struct {
	*os.File
	path string
	done bool
}

// CreateAtomic starts writing path atomically. The file gets mode 0644.
// Typical use:
//
//	f, err := format.CreateAtomic(out)
//	if err != nil { return err }
//	defer f.Abort() // no-op after Commit
//	... write f ...
//	return f.Commit()
func CreateAtomic(path string) (*AtomicFile, error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	if base == "" {
		return nil, fmt.Errorf("create %q: not a file name", path)
	}
	f, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return nil, err
	}
	if err := f.Chmod(0o644); err != nil {
		f.Close()
		os.Remove(f.Name())
		return nil, err
	}
	return &AtomicFile{File: f, path: path}, nil
}

// Path is the final destination.
func (f *AtomicFile) Path() string { return f.path }

// Commit flushes the file to stable storage, closes it, renames it to its
// destination (replacing any file there) and syncs the directory. After a
// failed Commit the temporary file is removed.
func (f *AtomicFile) Commit() error {
	if f.done {
		return fmt.Errorf("commit %s: already committed or aborted", f.path)
	}
	f.done = true
	tmp := f.File.Name()
	err := f.File.Sync()
	if cerr := f.File.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, f.path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("commit %s: %w", f.path, err)
	}
	return syncDir(filepath.Dir(f.path))
}

// Abort closes and removes the temporary file. It is a no-op after Commit or
// a previous Abort, so `defer f.Abort()` is always safe.
func (f *AtomicFile) Abort() {
	if f.done {
		return
	}
	f.done = true
	f.File.Close()
	os.Remove(f.File.Name())
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, errors.ErrUnsupported) && !errors.Is(err, os.ErrInvalid) {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}

// AtomicOption configures AtomicDir.
type AtomicOption func(*atomicOptions)

type atomicOptions struct {
	overwrite bool
	inputs    []string
}

// Overwrite lets AtomicDir replace an existing destination (file or directory).
func Overwrite(ok bool) AtomicOption {
	return func(o *atomicOptions) { o.overwrite = o.overwrite || ok }
}

// Inputs names paths the output must never touch: AtomicDir refuses a
// destination that is, contains or lies inside one of them (ErrInputOutput).
func Inputs(paths ...string) AtomicOption {
	return func(o *atomicOptions) { o.inputs = append(o.inputs, paths...) }
}

// CheckOutput reports ErrInputOutput when out is one of inputs, lies inside
// one (an input directory) or contains one. Paths are compared after
// resolving symbolic links where they exist.
func CheckOutput(out string, inputs ...string) error {
	o := canonical(out)
	for _, in := range inputs {
		i := canonical(in)
		if o == i || within(o, i) || within(i, o) {
			return fmt.Errorf("%w: %s and input %s", ErrInputOutput, out, in)
		}
	}
	// same file through a hard link or another name
	if ofi, err := os.Stat(out); err == nil {
		for _, in := range inputs {
			if ifi, err := os.Stat(in); err == nil && os.SameFile(ofi, ifi) {
				return fmt.Errorf("%w: %s is %s", ErrInputOutput, out, in)
			}
		}
	}
	return nil
}

func canonical(p string) string {
	a, err := filepath.Abs(p)
	if err != nil {
		a = filepath.Clean(p)
	}
	if r, err := filepath.EvalSymlinks(a); err == nil {
		return r
	}
	// resolve the existing parent so a not-yet-existing output compares right
	if r, err := filepath.EvalSymlinks(filepath.Dir(a)); err == nil {
		return filepath.Join(r, filepath.Base(a))
	}
	return a
}

func within(p, dir string) bool {
	rel, err := filepath.Rel(dir, p)
	return err == nil && rel != "." && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator))
}

// AtomicDir prepares a directory output: it creates an empty temporary
// directory beside final (same file system) for the caller to fill, and
// returns commit, which syncs every file in it and renames it to final, and
// abort, which removes it. abort is a no-op after a successful commit, so
// `defer abort()` is safe.
//
// AtomicDir refuses a final that exists (ErrExists) unless Overwrite(true) is
// given, and a final that is, contains or lies inside an input named with
// Inputs (ErrInputOutput). With Overwrite the old final is moved aside,
// the new one renamed in, and the old one removed; a crash in between leaves
// the old output under a hidden ".NAME.old-*" name, never a half-written final.
func AtomicDir(final string, opts ...AtomicOption) (tmpDir string, commit func() error, abort func(), err error) {
	var o atomicOptions
	for _, opt := range opts {
		opt(&o)
	}
	final = filepath.Clean(final)
	if err := CheckOutput(final, o.inputs...); err != nil {
		return "", nil, nil, err
	}
	if _, err := os.Lstat(final); err == nil && !o.overwrite {
		return "", nil, nil, fmt.Errorf("%w: %s", ErrExists, final)
	} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return "", nil, nil, err
	}
	parent, base := filepath.Split(final)
	if parent == "" {
		parent = "."
	}
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return "", nil, nil, err
	}
	tmp, err := os.MkdirTemp(parent, "."+base+".tmp-*")
	if err != nil {
		return "", nil, nil, err
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		os.RemoveAll(tmp)
		return "", nil, nil, err
	}
	done := false
	abort = func() {
		if !done {
			done = true
			os.RemoveAll(tmp)
		}
	}
	commit = func() error {
		if done {
			return fmt.Errorf("commit %s: already committed or aborted", final)
		}
		if err := syncTree(tmp); err != nil {
			abort()
			return fmt.Errorf("commit %s: %w", final, err)
		}
		var old string
		if _, err := os.Lstat(final); err == nil {
			if !o.overwrite {
				abort()
				return fmt.Errorf("%w: %s", ErrExists, final)
			}
			aside, err := os.MkdirTemp(parent, "."+base+".old-*")
			if err != nil {
				abort()
				return err
			}
			old = filepath.Join(aside, base)
			if err := os.Rename(final, old); err != nil {
				os.Remove(aside)
				abort()
				return fmt.Errorf("commit %s: moving the old output aside: %w", final, err)
			}
		}
		if err := os.Rename(tmp, final); err != nil {
			if old != "" && os.Rename(old, final) == nil { // put the old output back
				os.Remove(filepath.Dir(old))
			}
			abort()
			return fmt.Errorf("commit %s: %w", final, err)
		}
		done = true
		if old != "" {
			os.RemoveAll(filepath.Dir(old))
		}
		return syncDir(parent)
	}
	return tmp, commit, abort, nil
}

// syncTree fsyncs every regular file and directory under root.
func syncTree(root string) error {
	return filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.Type().IsRegular() && !d.IsDir() {
			return nil
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		err = f.Sync()
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		return err
	})
}
