package safetensors

import (
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"sort"
	"sync"

	"github.com/klauspost/compress/zstd"

	"github.com/sparsify/sparsify/format"
)

// Seekable zstd.
//
// WriteFile and WriteDir with Compress "zstd" cut the decompressed stream
// into independent zstd frames of SeekFrameSize bytes and append a seek table
// in the Zstandard Seekable Format
// (https://github.com/facebook/zstd/blob/dev/contrib/seekable_format/zstd_seekable_compression_format.md):
// a skippable frame that any zstd decoder ignores, so `zstd -d` still
// restores the plain .safetensors file. Readers that find the table decode
// only the frames a read touches: tensors can be read in any order and
// concurrently, each reader holding one decoded frame. Files without a table
// (from the zstd tool) are streamed instead (see zstd.go).

// SeekFrameSize is the decompressed size of each frame we write.
const SeekFrameSize = 4 << 20

const (
	seekableMagic  = 0x8F92EAB1
	skippableMagic = 0x184D2A5E
	seekFooterSize = 9
	// maxSeekFrame bounds a frame's declared decompressed size (memory per reader).
	maxSeekFrame = 64 << 20
	// maxSeekFrames bounds the table (16 Mi frames of 4 MiB = 64 TiB).
	maxSeekFrames = 1 << 24
)

// seekTable holds cumulative frame boundaries: frame k spans comp[k]..comp[k+1]
// in the file and decomp[k]..decomp[k+1] in the decompressed stream.
type seekTable struct {
	comp, decomp []int64
}

func (t *seekTable) size() int64 { return t.decomp[len(t.decomp)-1] }

// readSeekTable returns the table, or nil if the file has none.
func readSeekTable(f io.ReaderAt, size int64, path string) (*seekTable, error) {
	if size < seekFooterSize+8 {
		return nil, nil
	}
	var foot [seekFooterSize]byte
	if _, err := f.ReadAt(foot[:], size-seekFooterSize); err != nil {
		return nil, err
	}
	if binary.LittleEndian.Uint32(foot[5:]) != seekableMagic {
		return nil, nil
	}
	ferr := func(off int64, f string, a ...any) error {
		return &format.FormatError{File: path, Offset: off, Msg: "zstd seek table: " + fmt.Sprintf(f, a...)}
	}
	n := int64(binary.LittleEndian.Uint32(foot[0:]))
	desc := foot[4]
	if desc&0x7c != 0 {
		return nil, ferr(size-5, "reserved descriptor bits set (%#x)", desc)
	}
	entry := int64(8)
	if desc&0x80 != 0 {
		entry = 12
	}
	if n > maxSeekFrames {
		return nil, ferr(size-seekFooterSize, "%d frames (limit %d)", n, maxSeekFrames)
	}
	tableLen := n*entry + seekFooterSize
	frameLen := tableLen + 8
	if frameLen > size {
		return nil, ferr(size-seekFooterSize, "%d frames do not fit in a %d-byte file", n, size)
	}
	start := size - frameLen
	tab := make([]byte, frameLen-seekFooterSize)
	if _, err := f.ReadAt(tab, start); err != nil {
		return nil, err
	}
	if binary.LittleEndian.Uint32(tab) != skippableMagic || int64(binary.LittleEndian.Uint32(tab[4:])) != tableLen {
		return nil, ferr(start, "bad skippable frame header")
	}
	t := &seekTable{comp: make([]int64, n+1), decomp: make([]int64, n+1)}
	for k := int64(0); k < n; k++ {
		e := tab[8+k*entry:]
		c, d := int64(binary.LittleEndian.Uint32(e)), int64(binary.LittleEndian.Uint32(e[4:]))
		if d > maxSeekFrame {
			return nil, ferr(start+8+k*entry, "frame %d decompresses to %d bytes (limit %d)", k, d, maxSeekFrame)
		}
		t.comp[k+1] = t.comp[k] + c
		t.decomp[k+1] = t.decomp[k] + d
	}
	if t.comp[n] != start {
		return nil, ferr(start, "frames cover %d bytes, the file holds %d before the table", t.comp[n], start)
	}
	return t, nil
}

// zseek reads a seekable .zst file.
type zseek struct {
	path string
	f    *os.File
	t    *seekTable
	dec  *zstd.Decoder // DecodeAll is safe for concurrent use
	pool sync.Pool     // *[]byte frame buffers
}

func newZseek(path string, f *os.File, t *seekTable) (*zseek, error) {
	dec, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(0), zstd.WithDecoderMaxMemory(maxSeekFrame), zstd.WithDecoderMaxWindow(MaxZstdWindow))
	if err != nil {
		return nil, err
	}
	return &zseek{path: path, f: f, t: t, dec: dec}, nil
}

func (z *zseek) close() {
	z.dec.Close()
	z.f.Close()
}

// seekReader reads [pos, end) of the decompressed stream, one frame at a time.
type seekReader struct {
	z        *zseek
	ti       format.TensorInfo // for errors; Name may be ""
	pos, end int64
	frame    int // index of the decoded frame in buf, -1 if none
	buf      []byte
	cbuf     []byte
	err      error
	closed   bool
}

func (z *zseek) reader(ti format.TensorInfo, pos, end int64) *seekReader {
	return &seekReader{z: z, ti: ti, pos: pos, end: end, frame: -1}
}

func (r *seekReader) fail(msg string, a ...any) error {
	r.err = &format.FormatError{File: r.z.path, Tensor: r.ti.Name, Offset: r.pos, Msg: fmt.Sprintf(msg, a...)}
	return r.err
}

func (r *seekReader) load(k int) error {
	t := r.z.t
	clen := t.comp[k+1] - t.comp[k]
	dlen := t.decomp[k+1] - t.decomp[k]
	if clen > maxSeekFrame+(maxSeekFrame>>4)+1024 {
		return r.fail("zstd frame %d: %d compressed bytes for %d decompressed", k, clen, dlen)
	}
	if int64(cap(r.cbuf)) < clen {
		r.cbuf = make([]byte, clen)
	}
	r.cbuf = r.cbuf[:clen]
	if _, err := r.z.f.ReadAt(r.cbuf, t.comp[k]); err != nil {
		return r.fail("reading zstd frame %d: %v", k, err)
	}
	if r.buf == nil {
		if p, ok := r.z.pool.Get().(*[]byte); ok {
			r.buf = *p
		}
	}
	out, err := r.z.dec.DecodeAll(r.cbuf, r.buf[:0])
	if err != nil {
		r.frame = -1
		return r.fail("zstd frame %d: %v", k, err)
	}
	r.buf = out
	if int64(len(out)) != dlen {
		r.frame = -1
		return r.fail("zstd frame %d decompresses to %d bytes, the seek table says %d", k, len(out), dlen)
	}
	r.frame = k
	return nil
}

func (r *seekReader) Read(p []byte) (int, error) {
	if r.err != nil {
		return 0, r.err
	}
	if r.closed {
		return 0, ErrClosed
	}
	if r.pos >= r.end {
		r.release()
		return 0, io.EOF
	}
	t := r.z.t
	if r.pos >= t.size() {
		return 0, r.fail("decompressed stream ends at byte %d (truncated)", t.size())
	}
	if r.frame < 0 || r.pos < t.decomp[r.frame] || r.pos >= t.decomp[r.frame+1] {
		k := sort.Search(len(t.decomp)-1, func(i int) bool { return t.decomp[i+1] > r.pos })
		if err := r.load(k); err != nil {
			return 0, err
		}
	}
	off := r.pos - t.decomp[r.frame]
	avail := r.buf[off:]
	if rem := r.end - r.pos; int64(len(avail)) > rem {
		avail = avail[:rem]
	}
	n := copy(p, avail)
	r.pos += int64(n)
	if r.pos >= r.end {
		r.release()
	}
	return n, nil
}

func (r *seekReader) release() {
	if r.buf != nil {
		b := r.buf[:0]
		r.z.pool.Put(&b)
		r.buf, r.frame = nil, -1
	}
	r.cbuf = nil
}

func (r *seekReader) Close() error {
	r.release()
	r.closed = true
	return nil
}

// WriteTo hands out decoded frames without an extra copy through a caller's buffer.
func (r *seekReader) WriteTo(w io.Writer) (int64, error) {
	var total int64
	for r.pos < r.end && r.err == nil {
		t := r.z.t
		if r.frame < 0 || r.pos < t.decomp[r.frame] || r.pos >= t.decomp[r.frame+1] {
			if r.pos >= t.size() {
				return total, r.fail("decompressed stream ends at byte %d (truncated)", t.size())
			}
			k := sort.Search(len(t.decomp)-1, func(i int) bool { return t.decomp[i+1] > r.pos })
			if err := r.load(k); err != nil {
				return total, err
			}
		}
		chunk := r.buf[r.pos-t.decomp[r.frame]:]
		if rem := r.end - r.pos; int64(len(chunk)) > rem {
			chunk = chunk[:rem]
		}
		n, err := w.Write(chunk)
		total += int64(n)
		r.pos += int64(n)
		if err != nil {
			return total, err
		}
	}
	r.release()
	return total, r.err
}

// seekWriter cuts the stream written to it into SeekFrameSize frames,
// compresses them concurrently (at most jobs at a time, bounded memory) and
// writes them in order to out, then the seek table on Close.
type seekWriter struct {
	out     io.Writer
	enc     *zstd.Encoder
	buf     []byte
	pending chan *seekJob
	drained chan struct{}
	entries [][2]uint32
	mu      sync.Mutex
	err     error
}

type seekJob struct {
	in, out []byte
	done    chan struct{}
}

// Frame buffers: inputs hold SeekFrameSize bytes, outputs the worst case of
// an incompressible frame (input plus block headers).
const seekOutCap = SeekFrameSize + SeekFrameSize/64 + 1024

var (
	seekInPool  = sync.Pool{New: func() any { b := make([]byte, 0, SeekFrameSize); return &b }}
	seekOutPool = sync.Pool{New: func() any { b := make([]byte, 0, seekOutCap); return &b }}
)

func newSeekWriter(out io.Writer, jobs int) (*seekWriter, error) {
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderConcurrency(jobs), zstd.WithWindowSize(SeekFrameSize))
	if err != nil {
		return nil, err
	}
	w := &seekWriter{out: out, enc: enc, pending: make(chan *seekJob, jobs), drained: make(chan struct{})}
	go w.drain()
	return w, nil
}

func (w *seekWriter) setErr(err error) {
	w.mu.Lock()
	if w.err == nil {
		w.err = err
	}
	w.mu.Unlock()
}

func (w *seekWriter) getErr() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

func (w *seekWriter) drain() {
	defer close(w.drained)
	for j := range w.pending {
		<-j.done
		if w.getErr() != nil {
			continue
		}
		if _, err := w.out.Write(j.out); err != nil {
			w.setErr(err)
			continue
		}
		w.entries = append(w.entries, [2]uint32{uint32(len(j.out)), uint32(len(j.in))})
		in, out := j.in[:0], j.out[:0]
		seekInPool.Put(&in)
		if cap(out) <= seekOutCap {
			seekOutPool.Put(&out)
		}
	}
}

func (w *seekWriter) submit() {
	j := &seekJob{in: w.buf, done: make(chan struct{})}
	w.buf = nil
	w.pending <- j // blocks while jobs frames are in flight
	go func() {
		j.out = w.enc.EncodeAll(j.in, (*seekOutPool.Get().(*[]byte))[:0])
		close(j.done)
	}()
}

func (w *seekWriter) Write(p []byte) (int, error) {
	if err := w.getErr(); err != nil {
		return 0, err
	}
	n := len(p)
	for len(p) > 0 {
		if w.buf == nil {
			w.buf = (*seekInPool.Get().(*[]byte))[:0]
		}
		m := min(len(p), SeekFrameSize-len(w.buf))
		w.buf = append(w.buf, p[:m]...)
		p = p[m:]
		if len(w.buf) == SeekFrameSize {
			w.submit()
		}
	}
	return n, nil
}

// Close flushes the last frame and writes the seek table; abort stops
// without writing it. Either must be called exactly once.
func (w *seekWriter) Close() error {
	if len(w.buf) > 0 {
		w.submit()
	}
	close(w.pending)
	<-w.drained
	w.enc.Close()
	if err := w.getErr(); err != nil {
		return err
	}
	n := len(w.entries)
	tab := make([]byte, 8, 8+8*n+seekFooterSize)
	binary.LittleEndian.PutUint32(tab, skippableMagic)
	binary.LittleEndian.PutUint32(tab[4:], uint32(8*n+seekFooterSize))
	for _, e := range w.entries {
		tab = binary.LittleEndian.AppendUint32(tab, e[0])
		tab = binary.LittleEndian.AppendUint32(tab, e[1])
	}
	tab = binary.LittleEndian.AppendUint32(tab, uint32(n))
	tab = append(tab, 0) // descriptor: no checksums (each frame carries its own)
	tab = binary.LittleEndian.AppendUint32(tab, seekableMagic)
	_, err := w.out.Write(tab)
	return err
}

func (w *seekWriter) abort() {
	w.setErr(fmt.Errorf("aborted"))
	w.buf = nil
	close(w.pending)
	<-w.drained
	w.enc.Close()
}
