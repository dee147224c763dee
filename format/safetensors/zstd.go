package safetensors

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"

	"github.com/klauspost/compress/zstd"

	"github.com/sparsify/sparsify/format"
)

// Compressed files.
//
// A NAME.safetensors.zst file is zstd-compressed safetensors. Files we write
// carry a seek table (seekable.go) and are read frame by frame: any order,
// concurrently. Other .zst files (from the zstd tool) are streamed, as
// follows. Open decodes only the header. Tensor bytes are produced by
// decoding forward: a reader that starts where a previous one stopped
// (storage order, the order of Tensors) continues the same decoder, so
// reading all tensors in storage order decodes the file once. A reader that
// starts behind every idle decoder starts a new decoder from the beginning of
// the file and decodes up to its tensor, so out-of-order or concurrent access
// costs extra decompression (never extra memory beyond one decoder window per
// reader). For best speed read such files with one job, in storage order, or
// recompress them with WriteFile/WriteDir.
//
// Decoders accept windows up to MaxZstdWindow bytes; larger windows (from
// `zstd --long=31`) are rejected rather than allocated. A header claiming
// more tensor data than the compressed size can encode (ratio above 2^15) is
// rejected before anything is sized by it.

// ZstdMagic starts every zstd frame.
const ZstdMagic = "\x28\xb5\x2f\xfd"

// MaxZstdWindow bounds the decoder window (memory per concurrent reader).
const MaxZstdWindow = 1 << 27

// maxZstdRatio bounds decompressed/compressed size (a 4-byte RLE block
// yields 128 KiB).
const maxZstdRatio = 1 << 15

// maxIdleDecoders bounds the decoders parked between reads.
const maxIdleDecoders = 4

type zdec struct {
	f   *os.File
	d   *zstd.Decoder
	pos int64 // position in the decompressed stream
}

func (z *zdec) close() {
	z.d.Close()
	z.f.Close()
}

type zstream struct {
	path string
	mu   sync.Mutex
	idle []*zdec
	shut bool
}

func newZdec(path string) (*zdec, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	d, err := zstd.NewReader(f, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxWindow(MaxZstdWindow))
	if err != nil {
		f.Close()
		return nil, err
	}
	return &zdec{f: f, d: d}, nil
}

func openZst(path string) (*File, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: not a regular file", path)
	}
	if sf, err := openSeekable(path, st.Size()); sf != nil || err != nil {
		return sf, err
	}
	zd, err := newZdec(path)
	if err != nil {
		return nil, err
	}
	zerr := func(off int64, err error) error {
		zd.close()
		msg := fmt.Sprintf("zstd stream: %v", err)
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			msg = "decompressed stream ends inside the header (truncated)"
		}
		return &format.FormatError{File: path, Offset: off, Msg: msg}
	}
	var lb [8]byte
	if _, err := io.ReadFull(zd.d, lb[:]); err != nil {
		return nil, zerr(0, err)
	}
	n := binary.LittleEndian.Uint64(lb[:])
	if n > MaxHeaderSize {
		zd.close()
		return nil, &format.FormatError{File: path, Offset: 0, Msg: fmt.Sprintf("header length %d exceeds the %d-byte limit", n, MaxHeaderSize)}
	}
	// Grow the buffer as bytes arrive: a lying length in a short stream
	// allocates only what the stream holds.
	var hb bytes.Buffer
	if _, err := io.CopyN(&hb, zd.d, int64(n)); err != nil {
		return nil, zerr(8+int64(hb.Len()), err)
	}
	zd.pos = 8 + int64(n)
	sf := &File{path: path, dataStart: 8 + int64(n)}
	h, err := parseHeader(path, hb.Bytes(), -1)
	if err != nil {
		zd.close()
		return nil, err
	}
	// A zstd block of at least 4 bytes expands to at most 128 KiB, so a
	// header claiming more data than that ratio allows is a lie: refuse it
	// before any reader sizes a buffer by it.
	if limit := (st.Size() + 1) * maxZstdRatio; h.dataLen > limit-sf.dataStart {
		zd.close()
		return nil, &format.FormatError{File: path, Offset: 8, Msg: fmt.Sprintf(
			"header claims %d bytes of tensor data, more than a %d-byte zstd stream can hold", h.dataLen, st.Size())}
	}
	sf.setHeader(h)
	sf.z = &zstream{path: path, idle: []*zdec{zd}}
	return sf, nil
}

// acquire returns the idle decoder furthest along but not past off, or a new one.
func (z *zstream) acquire(off int64) (*zdec, error) {
	z.mu.Lock()
	if z.shut {
		z.mu.Unlock()
		return nil, ErrClosed
	}
	best := -1
	for i, d := range z.idle {
		if d.pos <= off && (best < 0 || d.pos > z.idle[best].pos) {
			best = i
		}
	}
	if best >= 0 {
		d := z.idle[best]
		z.idle = append(z.idle[:best], z.idle[best+1:]...)
		z.mu.Unlock()
		return d, nil
	}
	z.mu.Unlock()
	return newZdec(z.path)
}

func (z *zstream) release(d *zdec) {
	z.mu.Lock()
	defer z.mu.Unlock()
	if z.shut {
		d.close()
		return
	}
	z.idle = append(z.idle, d)
	if len(z.idle) > maxIdleDecoders {
		// drop the one least far along
		low := 0
		for i, x := range z.idle {
			if x.pos < z.idle[low].pos {
				low = i
			}
		}
		z.idle[low].close()
		z.idle = append(z.idle[:low], z.idle[low+1:]...)
	}
}

func (z *zstream) close() {
	z.mu.Lock()
	defer z.mu.Unlock()
	z.shut = true
	for _, d := range z.idle {
		d.close()
	}
	z.idle = nil
}

func (z *zstream) open(ti format.TensorInfo) io.ReadCloser {
	return &zreader{z: z, ti: ti, pos: ti.Offset}
}

// zreader reads one tensor from the decompressed stream.
type zreader struct {
	z   *zstream
	ti  format.TensorInfo
	pos int64 // next absolute position to read
	d   *zdec
	err error
}

func (r *zreader) fail(err error) error {
	msg := fmt.Sprintf("zstd stream: %v", err)
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		msg = "decompressed stream ends inside the tensor (truncated)"
	}
	r.err = &format.FormatError{File: r.ti.File, Tensor: r.ti.Name, Offset: r.pos, Msg: msg}
	if r.d != nil {
		r.d.close()
		r.d = nil
	}
	return r.err
}

func (r *zreader) Read(p []byte) (int, error) {
	if r.err != nil {
		return 0, r.err
	}
	end := r.ti.Offset + r.ti.Size
	if r.pos >= end {
		r.release()
		return 0, io.EOF
	}
	if r.d == nil {
		d, err := r.z.acquire(r.pos)
		if err != nil {
			r.err = err
			return 0, err
		}
		r.d = d
		if skip := r.pos - d.pos; skip > 0 {
			n, err := io.CopyN(io.Discard, d.d, skip)
			d.pos += n
			if err != nil {
				return 0, r.fail(err)
			}
		}
	}
	if rem := end - r.pos; int64(len(p)) > rem {
		p = p[:rem]
	}
	n, err := io.ReadFull(r.d.d, p)
	r.pos += int64(n)
	r.d.pos += int64(n)
	if err != nil {
		return n, r.fail(err)
	}
	if r.pos == end {
		r.release()
	}
	return n, nil
}

// WriteTo lets io.Copy stream without an intermediate buffer of its own.
func (r *zreader) WriteTo(w io.Writer) (int64, error) {
	buf := make([]byte, 256<<10)
	var total int64
	for {
		n, err := r.Read(buf)
		if n > 0 {
			m, werr := w.Write(buf[:n])
			total += int64(m)
			if werr != nil {
				return total, werr
			}
		}
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
}

func (r *zreader) release() {
	if r.d != nil {
		r.z.release(r.d)
		r.d = nil
	}
}

func (r *zreader) Close() error {
	r.release()
	if r.err == nil {
		r.err = ErrClosed
	}
	return nil
}

// openSeekable opens a .zst file with a seek table; nil, nil if it has none.
func openSeekable(path string, size int64) (*File, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	t, err := readSeekTable(f, size, path)
	if t == nil || err != nil {
		f.Close()
		return nil, err
	}
	zs, err := newZseek(path, f, t)
	if err != nil {
		f.Close()
		return nil, err
	}
	fail := func(err error) (*File, error) {
		zs.close()
		return nil, err
	}
	if t.size() > (size+1)*maxZstdRatio {
		return fail(&format.FormatError{File: path, Offset: size - seekFooterSize,
			Msg: fmt.Sprintf("zstd seek table claims %d decompressed bytes, more than a %d-byte file can hold", t.size(), size)})
	}
	if t.size() < 8 {
		return fail(&format.FormatError{File: path, Offset: 0, Msg: fmt.Sprintf("decompressed file of %d bytes is too short for the 8-byte header length (truncated)", t.size())})
	}
	var lb [8]byte
	if _, err := io.ReadFull(zs.reader(format.TensorInfo{}, 0, 8), lb[:]); err != nil {
		return fail(err)
	}
	n := binary.LittleEndian.Uint64(lb[:])
	if n > MaxHeaderSize {
		return fail(&format.FormatError{File: path, Offset: 0, Msg: fmt.Sprintf("header length %d exceeds the %d-byte limit", n, MaxHeaderSize)})
	}
	if n > uint64(t.size()-8) {
		return fail(&format.FormatError{File: path, Offset: 0, Msg: fmt.Sprintf("header length %d exceeds the %d bytes after it (truncated file?)", n, t.size()-8)})
	}
	var hb bytes.Buffer
	if _, err := io.CopyN(&hb, zs.reader(format.TensorInfo{}, 8, 8+int64(n)), int64(n)); err != nil {
		return fail(err)
	}
	sf := &File{path: path, dataStart: 8 + int64(n), zs: zs}
	h, err := parseHeader(path, hb.Bytes(), t.size()-sf.dataStart)
	if err != nil {
		return fail(err)
	}
	sf.setHeader(h)
	return sf, nil
}
