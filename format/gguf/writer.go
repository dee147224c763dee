package gguf

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"sync"

	"golang.org/x/sync/errgroup"

	"github.com/sparsify/sparsify/format"
)

// WriteOptions tunes Write. The zero value is ready to use.
type WriteOptions struct {
	// Jobs bounds how many tensors are written concurrently; 0 means GOMAXPROCS.
	Jobs int
	// Progress, if set, is called after each tensor with the bytes of tensor
	// data written so far and the total. Calls are serialized.
	Progress func(done, total int64)
}

// Write writes a GGUF v3 file at path: the metadata kv in the given order,
// then the tensors in the given order, each padded to the alignment
// (general.alignment in kv, default 32). Shapes are row-major and are stored
// reversed (fastest dimension first). Tensor bytes are copied as WriteTo
// produces them, so any dtype GGUF stores (F32, F16, BF16, F64, I8…I64 and the
// GGML block types) passes through byte for byte.
//
// Every offset is computed from the tensor sizes before any data is written;
// bodies are then written concurrently (opts.Jobs) into a temporary file in
// the same directory, which is synced and renamed to path. On any error or
// cancellation of ctx the temporary file is removed and path is untouched.
func Write(ctx context.Context, path string, kv []KV, tensors []format.Tensor, opts WriteOptions) (err error) {
	header, offsets, total, err := encodeHeader(kv, tensors)
	if err != nil {
		return fmt.Errorf("gguf: writing %s: %w", path, err)
	}
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, "."+base+".tmp*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if _, err = f.WriteAt(header, 0); err != nil {
		return err
	}
	// Truncate sets the final size: the padding between tensors reads as zeros.
	if err = f.Truncate(total); err != nil {
		return err
	}
	var dataBytes int64
	for _, t := range tensors {
		dataBytes += t.Size
	}
	jobs := opts.Jobs
	if jobs <= 0 {
		jobs = runtime.GOMAXPROCS(0)
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(jobs)
	var mu sync.Mutex
	var done int64
	for i := range tensors {
		if gctx.Err() != nil {
			break
		}
		t := tensors[i]
		off := offsets[i]
		g.Go(func() error {
			if err := writeTensor(gctx, f, off, t); err != nil {
				return fmt.Errorf("gguf: writing %s: tensor %q: %w", path, t.Name, err)
			}
			if opts.Progress != nil {
				mu.Lock()
				done += t.Size
				opts.Progress(done, dataBytes)
				mu.Unlock()
			}
			return nil
		})
	}
	if err = g.Wait(); err != nil {
		return err
	}
	if err = ctx.Err(); err != nil {
		return err
	}
	if err = f.Chmod(0o644); err != nil {
		return err
	}
	if err = f.Sync(); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	if err = os.Rename(tmp, path); err != nil {
		return err
	}
	if d, derr := os.Open(dir); derr == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

func writeTensor(ctx context.Context, f *os.File, off int64, t format.Tensor) error {
	if t.WriteTo == nil {
		return errors.New("no data (nil WriteTo)")
	}
	lw := &limitWriter{ctx: ctx, w: io.NewOffsetWriter(f, off), left: t.Size}
	bw := bufio.NewWriterSize(lw, 1<<20)
	if _, err := t.WriteTo(bw); err != nil {
		return err
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	if lw.left != 0 {
		return fmt.Errorf("wrote %d bytes, want %d", t.Size-lw.left, t.Size)
	}
	return nil
}

// limitWriter refuses bytes beyond the tensor's size and stops on cancellation.
type limitWriter struct {
	ctx  context.Context
	w    io.Writer
	left int64
}

func (l *limitWriter) Write(p []byte) (int, error) {
	if err := l.ctx.Err(); err != nil {
		return 0, err
	}
	if int64(len(p)) > l.left {
		return 0, fmt.Errorf("more bytes than the declared size")
	}
	n, err := l.w.Write(p)
	l.left -= int64(n)
	return n, err
}

// encodeHeader validates the metadata and tensors and returns the header
// (padded to the alignment), each tensor's absolute offset and the file size.
func encodeHeader(kv []KV, tensors []format.Tensor) ([]byte, []int64, int64, error) {
	align := int64(DefaultAlignment)
	seen := make(map[string]bool, len(kv))
	for _, e := range kv {
		if seen[e.Key] {
			return nil, nil, 0, fmt.Errorf("duplicate metadata key %q", e.Key)
		}
		seen[e.Key] = true
		if len(e.Key) > maxKeyLen {
			return nil, nil, 0, fmt.Errorf("metadata key of %d bytes", len(e.Key))
		}
		if err := e.Value.validate(0); err != nil {
			return nil, nil, 0, fmt.Errorf("metadata %q: %w", e.Key, err)
		}
		if e.Key == "general.alignment" {
			a, ok := e.Value.Uint()
			if e.Value.Type != TypeUint32 || !ok || a == 0 || a&(a-1) != 0 || a > maxAlignment {
				return nil, nil, 0, fmt.Errorf("general.alignment %v (%v) must be a uint32 power of two ≤ %d", e.Value, e.Value.Type, maxAlignment)
			}
			align = int64(a)
		}
	}

	var b bytes.Buffer
	w := &enc{b: &b}
	w.b.WriteString(Magic)
	w.u32(3)
	w.u64(uint64(len(tensors)))
	w.u64(uint64(len(kv)))
	for _, e := range kv {
		w.str(e.Key)
		w.u32(uint32(e.Value.Type))
		w.value(e.Value)
	}
	offsets := make([]int64, len(tensors))
	names := make(map[string]bool, len(tensors))
	var rel int64
	for i, t := range tensors {
		if t.Name == "" || len(t.Name) > MaxNameLen {
			return nil, nil, 0, fmt.Errorf("tensor %d %q: %w: name of %d bytes (GGUF allows 1 to %d)", i, t.Name, format.ErrFormat, len(t.Name), MaxNameLen)
		}
		if names[t.Name] {
			return nil, nil, 0, fmt.Errorf("duplicate tensor name %q", t.Name)
		}
		names[t.Name] = true
		typ, ok := TypeOf(t.DType)
		if !ok {
			return nil, nil, 0, fmt.Errorf("tensor %q: %w: GGUF cannot store dtype %v", t.Name, format.ErrUnsupported, t.DType)
		}
		if len(t.Shape) > maxDims {
			return nil, nil, 0, fmt.Errorf("tensor %q: %d dimensions, GGUF allows %d", t.Name, len(t.Shape), maxDims)
		}
		for _, d := range t.Shape {
			if d <= 0 {
				return nil, nil, 0, fmt.Errorf("tensor %q: %w: dimension %d in shape %v", t.Name, format.ErrFormat, d, t.Shape)
			}
		}
		n, err := format.CheckedElements(t.Shape)
		if err != nil {
			return nil, nil, 0, fmt.Errorf("tensor %q: %w", t.Name, err)
		}
		trait, _ := t.DType.Trait()
		if len(t.Shape) > 0 && t.Shape[len(t.Shape)-1]%trait.BlockSize != 0 {
			return nil, nil, 0, fmt.Errorf("tensor %q: %w: row length %d is not a multiple of the %v block size %d", t.Name, format.ErrFormat, t.Shape[len(t.Shape)-1], t.DType, trait.BlockSize)
		}
		size, err := t.DType.ByteSize(n)
		if err != nil {
			return nil, nil, 0, fmt.Errorf("tensor %q: %w", t.Name, err)
		}
		if size != t.Size {
			return nil, nil, 0, fmt.Errorf("tensor %q: %w: Size %d, but shape %v of %v takes %d bytes", t.Name, format.ErrFormat, t.Size, t.Shape, t.DType, size)
		}
		w.str(t.Name)
		w.u32(uint32(len(t.Shape)))
		for j := len(t.Shape) - 1; j >= 0; j-- {
			w.u64(uint64(t.Shape[j]))
		}
		w.u32(uint32(typ))
		w.u64(uint64(rel))
		offsets[i] = rel
		rel += pad(size, align)
		if rel < 0 {
			return nil, nil, 0, fmt.Errorf("tensor data overflows int64")
		}
	}
	b.Write(make([]byte, pad(int64(b.Len()), align)-int64(b.Len())))
	start := int64(b.Len())
	for i := range offsets {
		offsets[i] += start
	}
	return b.Bytes(), offsets, start + rel, nil
}

func pad(n, align int64) int64 { return (n + align - 1) / align * align }

type enc struct {
	b   *bytes.Buffer
	buf [8]byte
}

func (w *enc) u32(v uint32) {
	binary.LittleEndian.PutUint32(w.buf[:4], v)
	w.b.Write(w.buf[:4])
}

func (w *enc) u64(v uint64) {
	binary.LittleEndian.PutUint64(w.buf[:8], v)
	w.b.Write(w.buf[:8])
}

func (w *enc) str(s string) {
	w.u64(uint64(len(s)))
	w.b.WriteString(s)
}

func (w *enc) bool(v bool) {
	if v {
		w.b.WriteByte(1)
	} else {
		w.b.WriteByte(0)
	}
}

// value writes v without its type field (validated beforehand).
func (w *enc) value(v Value) {
	switch d := v.Data.(type) {
	case uint8:
		w.b.WriteByte(d)
	case int8:
		w.b.WriteByte(byte(d))
	case uint16:
		binary.LittleEndian.PutUint16(w.buf[:2], d)
		w.b.Write(w.buf[:2])
	case int16:
		binary.LittleEndian.PutUint16(w.buf[:2], uint16(d))
		w.b.Write(w.buf[:2])
	case uint32:
		w.u32(d)
	case int32:
		w.u32(uint32(d))
	case float32:
		w.u32(math.Float32bits(d))
	case bool:
		w.bool(d)
	case string:
		w.str(d)
	case uint64:
		w.u64(d)
	case int64:
		w.u64(uint64(d))
	case float64:
		w.u64(math.Float64bits(d))
	default:
		// Arrays: element type, length, elements.
		w.u32(uint32(v.Elem))
		n := v.Len()
		w.u64(uint64(n))
		switch d := v.Data.(type) {
		case []Value:
			for _, e := range d {
				w.value(e)
			}
		case []string:
			for _, e := range d {
				w.str(e)
			}
		case []float32:
			for _, e := range d {
				w.u32(math.Float32bits(e))
			}
		case []int32:
			for _, e := range d {
				w.u32(uint32(e))
			}
		case []uint8:
			w.b.Write(d)
		default:
			for i := 0; i < n; i++ {
				w.value(v.index(i))
			}
		}
	}
}
