package safetensors

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/sparsify/sparsify/format"
)

// IndexName is the Hugging Face index of a sharded checkpoint.
const IndexName = "model.safetensors.index.json"

// SingleName is the file name of an unsharded Hugging Face checkpoint.
const SingleName = "model.safetensors"

// maxIndexSize bounds the index file read into memory.
const maxIndexSize = 256 << 20

// Dir is a Hugging Face model directory: safetensors shards (listed by
// model.safetensors.index.json, or a single model.safetensors, or any single
// *.safetensors file; each possibly compressed as .zst), config.json and
// other files (tokenizer, generation config, ...).
//
// A Dir is safe for concurrent use. It implements format.Source across all
// shards.
type Dir struct {
	root    string
	shards  []*File
	tensors []format.TensorInfo
	owner   map[string]*File
	config  []byte
	other   []string
	index   string // index file name, "" if none
}

var _ format.Source = (*Dir)(nil)

// IndexFile is the JSON layout of model.safetensors.index.json.
type IndexFile struct {
	Metadata  map[string]any    `json:"metadata"`
	WeightMap map[string]string `json:"weight_map"`
}

func isShardName(name string) bool {
	return strings.HasSuffix(name, ".safetensors") || strings.HasSuffix(name, ".safetensors.zst")
}

// OpenDir opens a Hugging Face model directory.
func OpenDir(dir string) (*Dir, error) {
	st, err := os.Stat(dir)
	if err != nil {
		return nil, err
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("%s: not a directory", dir)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	d := &Dir{root: dir, owner: map[string]*File{}}
	var shardFiles, indexes []string
	for _, e := range ents {
		n := e.Name()
		if !e.Type().IsRegular() && e.Type()&fs.ModeSymlink == 0 {
			continue
		}
		switch {
		case strings.HasSuffix(n, ".safetensors.index.json"):
			indexes = append(indexes, n)
		case isShardName(n):
			shardFiles = append(shardFiles, n)
		}
	}
	var names []string // shard files to open, in order
	switch {
	case slices.Contains(indexes, IndexName):
		d.index = IndexName
	case len(indexes) == 1:
		d.index = indexes[0]
	case len(indexes) > 1:
		return nil, fmt.Errorf("%s: %w: several index files %v and no %s", dir, format.ErrFormat, indexes, IndexName)
	}
	var wm map[string]string
	if d.index != "" {
		names, wm, err = readIndex(dir, d.index)
		if err != nil {
			return nil, err
		}
	} else {
		switch {
		case slices.Contains(shardFiles, SingleName):
			names = []string{SingleName}
		case slices.Contains(shardFiles, SingleName+".zst"):
			names = []string{SingleName + ".zst"}
		case len(shardFiles) == 1:
			names = shardFiles
		case len(shardFiles) == 0:
			return nil, fmt.Errorf("%s: %w: no .safetensors file and no %s", dir, format.ErrFormat, IndexName)
		default:
			return nil, fmt.Errorf("%s: %w: several .safetensors files %v but no %s", dir, format.ErrFormat, shardFiles, IndexName)
		}
	}
	ok := false
	defer func() {
		if !ok {
			d.Close()
		}
	}()
	used := map[string]bool{}
	for _, n := range names {
		p := filepath.Join(dir, n)
		if _, err := os.Stat(p); errors.Is(err, fs.ErrNotExist) && !strings.HasSuffix(n, ".zst") {
			if _, zerr := os.Stat(p + ".zst"); zerr == nil {
				n, p = n+".zst", p+".zst"
			}
		}
		f, err := Open(p)
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%s: %w: shard %q named by %s is missing", dir, format.ErrFormat, n, d.index)
		}
		if err != nil {
			return nil, err
		}
		used[n] = true
		d.shards = append(d.shards, f)
		for _, ti := range f.Tensors() {
			if prev, dup := d.owner[ti.Name]; dup {
				return nil, &format.FormatError{File: f.Path(), Tensor: ti.Name, Offset: ti.Offset,
					Msg: fmt.Sprintf("tensor also stored in %s", prev.Path())}
			}
			d.owner[ti.Name] = f
			d.tensors = append(d.tensors, ti)
		}
	}
	for name, shard := range wm {
		f, ok := d.owner[name]
		if !ok || (filepath.Base(f.Path()) != shard && filepath.Base(f.Path()) != shard+".zst") {
			return nil, fmt.Errorf("%s: %w: %s maps tensor %q to %s, which does not hold it", dir, format.ErrFormat, d.index, name, shard)
		}
	}
	// config.json and everything else
	err = filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if e.IsDir() {
			if rel != "." && (e.Name() == ".git" || e.Name() == ".cache") {
				return filepath.SkipDir
			}
			return nil
		}
		if e.Type()&fs.ModeSymlink != 0 { // Hugging Face cache snapshots link to blobs
			st, err := os.Stat(p)
			if err != nil || !st.Mode().IsRegular() {
				return nil
			}
		} else if !e.Type().IsRegular() {
			return nil
		}
		rel = filepath.ToSlash(rel)
		switch {
		case rel == "config.json":
			b, err := readCapped(p, maxIndexSize)
			if err != nil {
				return err
			}
			d.config = b
		case !strings.Contains(rel, "/") && (isShardName(rel) || strings.HasSuffix(rel, ".safetensors.index.json")):
			// checkpoint files are rewritten, never passed through
		case strings.Contains(e.Name(), ".tmp-"):
			// our own unfinished outputs
		default:
			d.other = append(d.other, rel)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	ok = true
	return d, nil
}

func readCapped(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s: %w: larger than %d bytes", path, format.ErrFormat, limit)
	}
	return b, nil
}

// readIndex returns the shard names in sorted order and the weight map.
func readIndex(dir, name string) ([]string, map[string]string, error) {
	p := filepath.Join(dir, name)
	b, err := readCapped(p, maxIndexSize)
	if err != nil {
		return nil, nil, err
	}
	var idx IndexFile
	if err := json.Unmarshal(b, &idx); err != nil {
		var off int64 = -1
		var se *json.SyntaxError
		if errors.As(err, &se) {
			off = se.Offset
		}
		return nil, nil, &format.FormatError{File: p, Offset: off, Msg: fmt.Sprintf("invalid index: %v", err)}
	}
	if len(idx.WeightMap) == 0 {
		return nil, nil, &format.FormatError{File: p, Offset: -1, Msg: "index has no weight_map entries"}
	}
	set := map[string]bool{}
	for t, s := range idx.WeightMap {
		if s == "" || s != filepath.Base(s) || s == "." || s == ".." || strings.ContainsAny(s, `/\`) {
			return nil, nil, &format.FormatError{File: p, Tensor: t, Offset: -1, Msg: fmt.Sprintf("shard name %q is not a file name in the directory", s)}
		}
		set[s] = true
	}
	return slices.Sorted(maps.Keys(set)), idx.WeightMap, nil
}

// Root is the directory's path as given to OpenDir.
func (d *Dir) Root() string { return d.root }

// Shards lists the open shard files in order.
func (d *Dir) Shards() []*File { return d.shards }

// Tensors lists every tensor, shard by shard in storage order.
func (d *Dir) Tensors() []format.TensorInfo { return d.tensors }

// Metadata is the __metadata__ of the first shard (Hugging Face writes the
// same map into every shard).
func (d *Dir) Metadata() map[string]string {
	if len(d.shards) == 0 {
		return map[string]string{}
	}
	return d.shards[0].Metadata()
}

// Open returns the stored bytes of one tensor from its shard.
func (d *Dir) Open(name string) (io.ReadCloser, error) {
	f, ok := d.owner[name]
	if !ok {
		return nil, fmt.Errorf("%s: %w: %q", d.root, format.ErrNotFound, name)
	}
	return f.Open(name)
}

// Shard returns the file that holds a tensor.
func (d *Dir) Shard(name string) (*File, bool) {
	f, ok := d.owner[name]
	return f, ok
}

// Config is the raw config.json, nil if the directory has none.
func (d *Dir) Config() []byte { return d.config }

// OtherFiles lists every other regular file or symbolic link to one (tokenizer.json,
// generation_config.json, README.md, ...), as slash-separated paths relative
// to Root, sorted. Excluded: config.json, the shards, the index files, and the
// .git and .cache directories. Writers pass these through untouched
// (CopyOtherFiles).
func (d *Dir) OtherFiles() []string { return d.other }

// CopyOtherFiles copies every file of OtherFiles into dst (created as
// needed), each atomically and byte for byte.
func (d *Dir) CopyOtherFiles(dst string) error {
	for _, rel := range d.other {
		if err := copyFile(filepath.Join(d.root, filepath.FromSlash(rel)), filepath.Join(dst, filepath.FromSlash(rel))); err != nil {
			return err
		}
	}
	return nil
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	out, err := format.CreateAtomic(dst)
	if err != nil {
		return err
	}
	defer out.Abort()
	if _, err := io.Copy(out, in); err != nil {
		return fmt.Errorf("copy %s: %w", src, err)
	}
	return out.Commit()
}

// Close closes every shard.
func (d *Dir) Close() error {
	var err error
	for _, f := range d.shards {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	return err
}
