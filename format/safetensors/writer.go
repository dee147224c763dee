package safetensors

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"unicode/utf8"

	"golang.org/x/sync/errgroup"

	"github.com/sparsify/sparsify/format"
)

// DefaultMaxShardSize is Hugging Face's default shard size ("5GB").
const DefaultMaxShardSize = 5_000_000_000

// WriteOptions configure WriteFile and WriteDir. The zero value is usable.
type WriteOptions struct {
	// Metadata is written as __metadata__ (into every shard), with
	// "format":"pt" set whatever it held.
	Metadata map[string]string
	// MaxShardSize bounds the tensor bytes per shard in WriteDir (default
	// DefaultMaxShardSize). A tensor larger than it gets a shard of its own.
	MaxShardSize int64
	// Jobs is the number of tensor bodies written concurrently (default
	// GOMAXPROCS). Peak memory is about Jobs × (what one WriteTo holds + 1 MiB).
	// For zstd output the bodies are produced one after another, in order,
	// and Jobs is the number of 4 MiB frames compressed concurrently.
	Jobs int
	// Compress is "" (plain files) or "zstd": each file is written as
	// NAME.zst, a seekable zstd file (see seekable.go) that `zstd -d` turns
	// back into the plain file.
	Compress string
	// NoHash skips computing SHA256 digests (FileResult.SHA256 and
	// TensorResult.SHA256 stay empty). Hashing costs two SHA-256 passes over
	// the data (tensor bytes, then the file); callers that write no manifest
	// save that CPU time.
	NoHash bool
	// Progress, if set, is called with the tensor bytes written so far and the
	// total (about every 4 MiB, and once at the end), never concurrently with
	// itself.
	Progress func(done, total int64)
}

// FileResult describes one written file.
type FileResult struct {
	Name   string // file name relative to the output directory (WriteFile: the base name)
	Size   int64  // bytes on disk (compressed size for .zst)
	SHA256 string // hex digest of the file as stored on disk
}

// TensorResult describes one written tensor.
type TensorResult struct {
	Name   string
	File   string // FileResult.Name of the file that holds it
	Offset int64  // absolute offset in the (decompressed) file
	Size   int64
	SHA256 string // hex digest of the tensor's (uncompressed) bytes
}

// WriteResult lists what a write produced, tensors in the order given.
type WriteResult struct {
	Files   []FileResult
	Tensors []TensorResult
}

func (o *WriteOptions) jobs() int {
	if o.Jobs > 0 {
		return o.Jobs
	}
	return runtime.GOMAXPROCS(0)
}

func (o *WriteOptions) suffix() (string, error) {
	switch o.Compress {
	case "":
		return "", nil
	case "zstd":
		return ".zst", nil
	}
	return "", fmt.Errorf("%w: compression %q (want \"\" or \"zstd\")", format.ErrUnsupported, o.Compress)
}

func (o *WriteOptions) metadata() (map[string]string, error) {
	m := maps.Clone(o.Metadata)
	if m == nil {
		m = map[string]string{}
	}
	m["format"] = "pt"
	for k, v := range m {
		if !utf8.ValidString(k) || !utf8.ValidString(v) {
			return nil, fmt.Errorf("metadata %q: not valid UTF-8", k)
		}
	}
	return m, nil
}

func checkTensors(ts []format.Tensor) (int64, error) {
	seen := make(map[string]bool, len(ts))
	var total int64
	for _, t := range ts {
		if err := validName(t.Name); err != nil {
			return 0, fmt.Errorf("tensor %q: %w", t.Name, err)
		}
		if seen[t.Name] {
			return 0, fmt.Errorf("tensor %q: written twice", t.Name)
		}
		seen[t.Name] = true
		tr, ok := t.DType.Trait()
		if !ok || tr.Quantized {
			return 0, fmt.Errorf("tensor %q: %w: safetensors cannot store dtype %v", t.Name, format.ErrUnsupported, t.DType)
		}
		n, err := format.CheckedElements(t.Shape)
		if err != nil {
			return 0, fmt.Errorf("tensor %q: %w", t.Name, err)
		}
		size, err := t.DType.ByteSize(n)
		if err != nil {
			return 0, fmt.Errorf("tensor %q: %w", t.Name, err)
		}
		if size != t.Size {
			return 0, fmt.Errorf("tensor %q: shape %v of %v is %d bytes, Size says %d", t.Name, t.Shape, t.DType, size, t.Size)
		}
		if t.WriteTo == nil {
			return 0, fmt.Errorf("tensor %q: no WriteTo", t.Name)
		}
		total += size
	}
	return total, nil
}

// progress serialises Progress calls.
// Calls are throttled to one per progressStep bytes (and the last one).
type progress struct {
	mu       sync.Mutex
	fn       func(done, total int64)
	done     int64
	reported int64
	total    int64
}

const progressStep = 4 << 20

func (p *progress) add(n int64) {
	if p == nil || p.fn == nil || n == 0 {
		return
	}
	p.mu.Lock()
	p.done += n
	if p.done-p.reported >= progressStep || p.done == p.total {
		p.reported = p.done
		p.fn(p.done, p.total)
	}
	p.mu.Unlock()
}

// WriteFile writes tensors, in the given order, as one safetensors file at
// path (path+".zst" when opts.Compress is "zstd" and path does not already
// end in ".zst"). The file is written atomically: on error or cancellation
// nothing is left at the destination. MaxShardSize is ignored.
func WriteFile(ctx context.Context, path string, tensors []format.Tensor, opts WriteOptions) (*WriteResult, error) {
	suffix, err := opts.suffix()
	if err != nil {
		return nil, err
	}
	meta, err := opts.metadata()
	if err != nil {
		return nil, err
	}
	total, err := checkTensors(tensors)
	if err != nil {
		return nil, err
	}
	if suffix != "" && !strings.HasSuffix(path, suffix) {
		path += suffix
	}
	pr := &progress{fn: opts.Progress, total: total}
	fr, trs, err := writeOne(ctx, path, filepath.Base(path), meta, tensors, &opts, pr)
	if err != nil {
		return nil, err
	}
	return &WriteResult{Files: []FileResult{fr}, Tensors: trs}, nil
}

// WriteDir writes tensors as a Hugging Face checkpoint into dir (created if
// missing): a single model.safetensors when everything fits in MaxShardSize,
// else model-0000K-of-0000N.safetensors shards (tensors kept in the given
// order, a new shard started when the next tensor would overflow the current
// one) and model.safetensors.index.json ({"metadata":{"total_size":…},
// "weight_map":{…}}, naming the files as written, .zst included). Each file is
// written atomically; WriteDir does not remove other files in dir. Callers
// wanting an all-or-nothing directory write into format.AtomicDir's
// temporary directory.
func WriteDir(ctx context.Context, dir string, tensors []format.Tensor, opts WriteOptions) (*WriteResult, error) {
	suffix, err := opts.suffix()
	if err != nil {
		return nil, err
	}
	meta, err := opts.metadata()
	if err != nil {
		return nil, err
	}
	total, err := checkTensors(tensors)
	if err != nil {
		return nil, err
	}
	maxShard := opts.MaxShardSize
	if maxShard <= 0 {
		maxShard = DefaultMaxShardSize
	}
	var shards [][]format.Tensor
	var cur []format.Tensor
	var curSize int64
	for _, t := range tensors {
		if len(cur) > 0 && curSize+t.Size > maxShard {
			shards = append(shards, cur)
			cur, curSize = nil, 0
		}
		cur = append(cur, t)
		curSize += t.Size
	}
	shards = append(shards, cur) // possibly empty: a file with only metadata
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	pr := &progress{fn: opts.Progress, total: total}
	res := &WriteResult{}
	weightMap := map[string]string{}
	for k, ts := range shards {
		name := SingleName + suffix
		if len(shards) > 1 {
			name = fmt.Sprintf("model-%05d-of-%05d.safetensors%s", k+1, len(shards), suffix)
		}
		fr, trs, err := writeOne(ctx, filepath.Join(dir, name), name, meta, ts, &opts, pr)
		if err != nil {
			return nil, err
		}
		res.Files = append(res.Files, fr)
		res.Tensors = append(res.Tensors, trs...)
		for _, t := range ts {
			weightMap[t.Name] = name
		}
	}
	if len(shards) > 1 {
		idx := IndexFile{Metadata: map[string]any{"total_size": total}, WeightMap: weightMap}
		var b bytes.Buffer
		enc := json.NewEncoder(&b)
		enc.SetEscapeHTML(false)
		enc.SetIndent("", "  ")
		if err := enc.Encode(idx); err != nil {
			return nil, err
		}
		fr, err := writeSmall(filepath.Join(dir, IndexName), b.Bytes())
		if err != nil {
			return nil, err
		}
		res.Files = append(res.Files, fr)
	}
	return res, nil
}

func writeSmall(path string, data []byte) (FileResult, error) {
	f, err := format.CreateAtomic(path)
	if err != nil {
		return FileResult{}, err
	}
	defer f.Abort()
	if _, err := f.Write(data); err != nil {
		return FileResult{}, err
	}
	if err := f.Commit(); err != nil {
		return FileResult{}, err
	}
	sum := sha256.Sum256(data)
	return FileResult{Name: filepath.Base(path), Size: int64(len(data)), SHA256: hex.EncodeToString(sum[:])}, nil
}

// tensorWriter counts, hashes and bounds one tensor's bytes, honouring ctx.
type tensorWriter struct {
	ctx  context.Context
	w    io.Writer
	h    hash.Hash
	n    int64
	size int64
	name string
	pr   *progress
	tee  *fileTee // nil: the file hash is not fed from here
}

// fileTee lets the in-order file hash of writePlain take a tensor's bytes as
// they are written instead of reading them back: once the file hasher has
// reached the tensor (want), the tensor's writer flushes what it wrote so
// far, hashes it back from the file (usually nothing or little), then feeds
// every further byte to the file hash too (streamed).
type fileTee struct {
	want     atomic.Bool
	streamed bool // set by the tensor's writer only; read after done
	fh       hash.Hash
	flush    func() error                     // flushes the tensor's buffered bytes into the file
	readBack func(h io.Writer, n int64) error // hashes the tensor's first n bytes from the file
}

// teeStreamed and teeReadBack count the tensors whose bytes the file hash
// took while written and by reading them back (for tests).
var teeStreamed, teeReadBack atomic.Int64

// teeChunk bounds one write while a file hash may be waiting for the tensor.
const teeChunk = 4 << 20

var errTooMuch = errors.New("WriteTo wrote more bytes than the tensor's Size")

func (t *tensorWriter) Write(p []byte) (int, error) {
	if t.tee == nil {
		return t.write(p)
	}
	done := 0
	for done < len(p) {
		if !t.tee.streamed && t.tee.want.Load() {
			if err := t.tee.flush(); err != nil {
				return done, err
			}
			if err := t.tee.readBack(t.tee.fh, t.n); err != nil {
				return done, err
			}
			t.tee.streamed = true
			teeStreamed.Add(1)
		}
		end := min(len(p), done+teeChunk)
		n, err := t.write(p[done:end])
		if t.tee.streamed {
			t.tee.fh.Write(p[done : done+n])
		}
		done += n
		if err != nil {
			return done, err
		}
	}
	return done, nil
}

func (t *tensorWriter) write(p []byte) (int, error) {
	if err := t.ctx.Err(); err != nil {
		return 0, err
	}
	if int64(len(p)) > t.size-t.n {
		return 0, errTooMuch
	}
	n, err := t.w.Write(p)
	t.h.Write(p[:n])
	t.n += int64(n)
	t.pr.add(int64(n))
	return n, err
}

func writeOne(ctx context.Context, path, name string, meta map[string]string, ts []format.Tensor, opts *WriteOptions, pr *progress) (FileResult, []TensorResult, error) {
	hdr, trs, err := layout(meta, ts, name)
	if err != nil {
		return FileResult{}, nil, fmt.Errorf("%s: %w", path, err)
	}
	f, err := format.CreateAtomic(path)
	if err != nil {
		return FileResult{}, nil, err
	}
	defer f.Abort()
	fr, err := writeBody(ctx, f, hdr, ts, trs, opts, pr)
	if err != nil {
		return FileResult{}, nil, fmt.Errorf("%s: %w", path, err)
	}
	if err := f.Commit(); err != nil {
		return FileResult{}, nil, err
	}
	fr.Name = name
	return fr, trs, nil
}

// layout computes the header and each tensor's place in file name.
func layout(meta map[string]string, ts []format.Tensor, name string) ([]byte, []TensorResult, error) {
	infos := make([]format.TensorInfo, len(ts))
	var off int64
	for i, t := range ts {
		infos[i] = format.TensorInfo{Name: t.Name, DType: t.DType, Shape: t.Shape, Size: t.Size, Offset: off}
		off += t.Size
	}
	hdr, err := encodeHeader(meta, infos)
	if err != nil {
		return nil, nil, err
	}
	dataStart := int64(len(hdr))
	trs := make([]TensorResult, len(ts))
	for i, t := range ts {
		trs[i] = TensorResult{Name: t.Name, File: name, Offset: dataStart + infos[i].Offset, Size: t.Size}
	}
	return hdr, trs, nil
}

// outFile is where a file body goes (an *os.File in practice).
type outFile interface {
	io.Writer
	io.WriterAt
	io.ReaderAt
}

func writeBody(ctx context.Context, f outFile, hdr []byte, ts []format.Tensor, trs []TensorResult, opts *WriteOptions, pr *progress) (FileResult, error) {
	if opts.Compress == "zstd" {
		return writeZstd(ctx, f, hdr, ts, trs, opts, pr)
	}
	return writePlain(ctx, f, hdr, ts, trs, opts, pr)
}

func writeTensor(ctx context.Context, w io.Writer, t format.Tensor, pr *progress, noHash bool, tee *fileTee) (string, error) {
	var h hash.Hash = nopHash{}
	if !noHash {
		h = sha256.New()
	}
	tw := &tensorWriter{ctx: ctx, w: w, h: h, size: t.Size, name: t.Name, pr: pr, tee: tee}
	n, err := t.WriteTo(tw)
	if err == nil && (n != t.Size || tw.n != t.Size) {
		err = fmt.Errorf("WriteTo wrote %d bytes (reported %d), want %d", tw.n, n, t.Size)
	}
	if err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil && errors.Is(err, ctxErr) {
			return "", err
		}
		return "", fmt.Errorf("tensor %q: %w", t.Name, err)
	}
	if noHash {
		return "", nil
	}
	return hex.EncodeToString(tw.h.Sum(nil)), nil
}

// nopHash stands in for sha256 under NoHash.
type nopHash struct{}

func (nopHash) Write(p []byte) (int, error) { return len(p), nil }
func (nopHash) Sum(b []byte) []byte         { return b }
func (nopHash) Reset()                      {}
func (nopHash) Size() int                   { return 0 }
func (nopHash) BlockSize() int              { return 64 }

// writePlain writes the header, then the bodies concurrently at their
// offsets, while one goroutine hashes the file in order: a tensor it reaches
// while the tensor is being written feeds it directly (fileTee), a tensor
// finished before is read back (from the page cache).
func writePlain(ctx context.Context, f outFile, hdr []byte, ts []format.Tensor, trs []TensorResult, opts *WriteOptions, pr *progress) (FileResult, error) {
	if _, err := f.WriteAt(hdr, 0); err != nil {
		return FileResult{}, err
	}
	size := int64(len(hdr))
	for _, t := range ts {
		size += t.Size
	}
	preallocate(f, size)
	g, gctx := errgroup.WithContext(ctx)
	done := make([]chan struct{}, len(ts))
	for i := range done {
		done[i] = make(chan struct{})
	}
	fileHash := sha256.New()
	fileHash.Write(hdr)
	tees := make([]*fileTee, len(ts))
	var hashErr error
	hashDone := make(chan struct{})
	if !opts.NoHash {
		for i := range tees {
			tees[i] = &fileTee{fh: fileHash, readBack: func(h io.Writer, n int64) error {
				bp := readBackBufs.Get().(*[]byte)
				defer readBackBufs.Put(bp)
				_, err := io.CopyBuffer(h, io.NewSectionReader(f, trs[i].Offset, n), *bp)
				return err
			}}
		}
	}
	go func() { // in-order file hash
		defer close(hashDone)
		if opts.NoHash {
			return
		}
		for i, t := range ts {
			tees[i].want.Store(true)
			select {
			case <-done[i]:
			case <-gctx.Done():
				select { // Wait also cancels gctx after success
				case <-done[i]:
				default:
					hashErr = gctx.Err()
					return
				}
			}
			if tees[i].streamed {
				continue
			}
			teeReadBack.Add(1)
			if err := tees[i].readBack(fileHash, t.Size); err != nil {
				hashErr = err
				return
			}
		}
	}()
	g.SetLimit(opts.jobs())
	for i, t := range ts {
		if gctx.Err() != nil {
			break
		}
		g.Go(func() error {
			bw := bufio.NewWriterSize(io.NewOffsetWriter(f, trs[i].Offset), 1<<20)
			if tees[i] != nil {
				tees[i].flush = bw.Flush
			}
			sum, err := writeTensor(gctx, bw, t, pr, opts.NoHash, tees[i])
			if err == nil {
				err = bw.Flush()
			}
			if err != nil {
				return err
			}
			trs[i].SHA256 = sum
			close(done[i])
			return nil
		})
	}
	err := g.Wait()
	<-hashDone
	if err == nil {
		err = ctx.Err()
	}
	if err == nil {
		err = hashErr
	}
	if err != nil {
		return FileResult{}, err
	}
	if opts.NoHash {
		return FileResult{Size: size}, nil
	}
	return FileResult{Size: size, SHA256: hex.EncodeToString(fileHash.Sum(nil))}, nil
}

// readBackBufs are the 1 MiB buffers of file-hash read-backs.
var readBackBufs = sync.Pool{New: func() any { b := make([]byte, 1<<20); return &b }}

// countWriter counts bytes on their way to w.
type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// writeZstd streams header and bodies, in order, into a seekable zstd file:
// independent frames compressed concurrently, then the seek table.
func writeZstd(ctx context.Context, f outFile, hdr []byte, ts []format.Tensor, trs []TensorResult, opts *WriteOptions, pr *progress) (FileResult, error) {
	var fileHash hash.Hash = nopHash{}
	if !opts.NoHash {
		fileHash = sha256.New()
	}
	cw := &countWriter{w: io.MultiWriter(f, fileHash)}
	bw := bufio.NewWriterSize(cw, 1<<20)
	sw, err := newSeekWriter(bw, opts.jobs())
	if err != nil {
		return FileResult{}, err
	}
	fail := func(err error) (FileResult, error) {
		sw.abort()
		return FileResult{}, err
	}
	if _, err := sw.Write(hdr); err != nil {
		return fail(err)
	}
	for i, t := range ts {
		sum, err := writeTensor(ctx, sw, t, pr, opts.NoHash, nil)
		if err != nil {
			return fail(err)
		}
		trs[i].SHA256 = sum
	}
	if err := sw.Close(); err != nil {
		return FileResult{}, err
	}
	if err := bw.Flush(); err != nil {
		return FileResult{}, err
	}
	if opts.NoHash {
		return FileResult{Size: cw.n}, nil
	}
	return FileResult{Size: cw.n, SHA256: hex.EncodeToString(fileHash.Sum(nil))}, nil
}
