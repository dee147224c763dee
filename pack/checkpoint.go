package pack

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/sparsify/sparsify/format"
	"github.com/sparsify/sparsify/format/gguf"
	"github.com/sparsify/sparsify/format/llama"
	"github.com/sparsify/sparsify/format/safetensors"
)

// Input kinds.
const (
	KindSafetensors = "safetensors"
	KindGGUF        = "gguf"
)

// Checkpoint is an open input checkpoint: a GGUF file, a safetensors file
// (possibly .zst) or a Hugging Face directory. It is safe for concurrent use.
type Checkpoint struct {
	Path   string
	Kind   string        // KindSafetensors or KindGGUF
	Source format.Source // the tensors as stored
	GGUF   *gguf.File    // set for GGUF input
	Dir    *safetensors.Dir
	// Config is config.json of a directory, nil if none.
	Config []byte
	// Files are the files the checkpoint consists of (absolute or as given).
	Files []string
	// Arch is the architecture config (zero when unknown: no config.json and
	// no GGUF llama/qwen2 metadata).
	Arch   llama.Config
	HasCfg bool
	// Sparse is the layout of packed weights found in the input ("" if none);
	// Source then shows them expanded to dense P.weight (OpenExpanded).
	Sparse Layout
}

// expand replaces Source by its expanded view when it holds packed weights.
func (c *Checkpoint) expand() error {
	groups, err := FindPacked(c.Source.Tensors())
	if err != nil {
		return fmt.Errorf("%s: %w", c.Path, err)
	}
	if len(groups) == 0 {
		return nil
	}
	e, err := OpenExpanded(c.Source)
	if err != nil {
		return fmt.Errorf("%s: %w", c.Path, err)
	}
	c.Source, c.Sparse = e, groups[0].Layout
	return nil
}

// OpenCheckpoint opens path by content: a directory is a Hugging Face
// checkpoint; a file starting with "GGUF" is GGUF; anything else is read as
// safetensors (a .zst name as zstd-compressed safetensors).
func OpenCheckpoint(path string) (*Checkpoint, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	c := &Checkpoint{Path: path}
	if st.IsDir() {
		d, err := safetensors.OpenDir(path)
		if err != nil {
			return nil, err
		}
		c.Kind, c.Source, c.Dir, c.Config = KindSafetensors, d, d, d.Config()
		for _, sh := range d.Shards() {
			c.Files = append(c.Files, sh.Path())
		}
		for _, name := range []string{safetensors.IndexName, safetensors.IndexName + ".zst", llama.ConfigFile} {
			if _, err := os.Stat(filepath.Join(path, name)); err == nil {
				c.Files = append(c.Files, filepath.Join(path, name))
			}
		}
		for _, o := range d.OtherFiles() {
			c.Files = append(c.Files, filepath.Join(path, filepath.FromSlash(o)))
		}
		if c.Config != nil {
			if cfg, _, err := llama.ParseHFConfig(c.Config); err == nil {
				c.Arch, c.HasCfg = cfg, true
			}
		}
		return c, c.expandOrClose()
	}
	magic := make([]byte, 4)
	if f, err := os.Open(path); err == nil {
		_, _ = io.ReadFull(f, magic)
		f.Close()
	} else {
		return nil, err
	}
	c.Files = []string{path}
	if bytes.Equal(magic, []byte(gguf.Magic)) {
		g, err := gguf.Open(path)
		if err != nil {
			return nil, err
		}
		c.Kind, c.Source, c.GGUF = KindGGUF, g, g
		if cfg, err := llama.FromGGUF(g.KV()); err == nil {
			c.Arch, c.HasCfg = cfg, true
		}
		return c, c.expandOrClose()
	}
	f, err := safetensors.Open(path)
	if err != nil {
		return nil, err
	}
	c.Kind, c.Source = KindSafetensors, f
	return c, c.expandOrClose()
}

func (c *Checkpoint) expandOrClose() error {
	if err := c.expand(); err != nil {
		c.Source.Close()
		return err
	}
	return nil
}

// Close releases the files.
func (c *Checkpoint) Close() error { return c.Source.Close() }

// readFile reads a side file of a directory checkpoint (os.ErrNotExist when
// absent or when the input is not a directory).
func (c *Checkpoint) readFile(name string) ([]byte, error) {
	if c.Dir == nil {
		return nil, &os.PathError{Op: "open", Path: name, Err: os.ErrNotExist}
	}
	return os.ReadFile(filepath.Join(c.Path, name))
}

// Identity hashes the input files for the manifest.
func (c *Checkpoint) Identity() (Input, error) { return c.identity(context.Background()) }

func (c *Checkpoint) identity(ctx context.Context) (Input, error) {
	in := Input{Path: c.Path, Format: c.Kind}
	base := c.Path
	if c.Dir == nil {
		base = filepath.Dir(c.Path)
	}
	for _, p := range c.Files {
		f, err := hashFile(ctx, p)
		if err != nil {
			return in, err
		}
		if rel, err := filepath.Rel(base, p); err == nil {
			f.Name = filepath.ToSlash(rel)
		}
		in.Files = append(in.Files, f)
	}
	return in, nil
}

// HashFile returns the size and sha256 of a file.
func HashFile(path string) (File, error) { return hashFile(context.Background(), path) }

// hashFile is HashFile reading 1 MiB at a time (few system calls) and
// stopping when ctx is done.
func hashFile(ctx context.Context, path string) (File, error) {
	f, err := os.Open(path)
	if err != nil {
		return File{}, err
	}
	defer f.Close()
	h := sha256.New()
	bp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bp)
	var n int64
	for {
		if err := ctx.Err(); err != nil {
			return File{}, err
		}
		k, err := f.Read(*bp)
		h.Write((*bp)[:k])
		n += int64(k)
		if err == io.EOF {
			break
		}
		if err != nil {
			return File{}, fmt.Errorf("hashing %s: %w", path, err)
		}
	}
	return File{Name: filepath.Base(path), Size: n, SHA256: hex.EncodeToString(h.Sum(nil))}, nil
}

// rawFiles opens tensor bytes with pread on the stored file when the
// TensorInfo locates them (a plain safetensors or GGUF file), so that
// streaming a checkpoint does not grow the process's resident memory the way
// reading through a memory mapping does; anything else (expanded packed
// weights, .zst shards) is read through the Source. Safe for concurrent use.
type rawFiles struct {
	src   format.Source
	mu    sync.Mutex
	files map[string]*os.File
	sizes map[string]int64
}

func newRawFiles(src format.Source) *rawFiles {
	return &rawFiles{src: src, files: map[string]*os.File{}, sizes: map[string]int64{}}
}

func (r *rawFiles) open(ti format.TensorInfo) (io.ReadCloser, error) {
	if ti.File == "" || ti.Offset < 0 || strings.HasSuffix(ti.File, ".zst") {
		return r.src.Open(ti.Name)
	}
	r.mu.Lock()
	f, ok := r.files[ti.File]
	if !ok {
		var err error
		if f, err = os.Open(ti.File); err == nil {
			if st, serr := f.Stat(); serr == nil && st.Mode().IsRegular() {
				r.files[ti.File], r.sizes[ti.File] = f, st.Size()
			} else {
				f.Close()
				f = nil
			}
		} else {
			f = nil
		}
		if f == nil {
			r.files[ti.File] = nil
		}
	}
	size := r.sizes[ti.File]
	r.mu.Unlock()
	if f == nil || ti.Offset+ti.Size > size {
		return r.src.Open(ti.Name)
	}
	return io.NopCloser(io.NewSectionReader(f, ti.Offset, ti.Size)), nil
}

// readInto reads tensor ti whole into buf, which holds exactly ti.Size bytes.
func (r *rawFiles) readInto(ti format.TensorInfo, buf []byte) ([]byte, error) {
	rc, err := r.open(ti)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	if int64(len(buf)) != ti.Size {
		return nil, fmt.Errorf("pack: internal: %d-byte buffer for tensor %q of %d bytes", len(buf), ti.Name, ti.Size)
	}
	if _, err := io.ReadFull(rc, buf); err != nil {
		return nil, &format.FormatError{File: ti.File, Tensor: ti.Name, Offset: ti.Offset, Msg: fmt.Sprintf("reading %d bytes: %v", ti.Size, err)}
	}
	return buf, nil
}

func (r *rawFiles) close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, f := range r.files {
		if f != nil {
			f.Close()
		}
	}
	r.files = map[string]*os.File{}
}
