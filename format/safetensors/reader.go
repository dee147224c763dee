package safetensors

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"sync/atomic"

	"github.com/sparsify/sparsify/format"
)

// ErrClosed is returned by reads after Close.
var ErrClosed = errors.New("safetensors: file closed")

// File is one open safetensors file. Its header is parsed and validated by
// Open from a read-only memory mapping of the file (pread where mapping
// fails). Tensor bytes are read on demand: Open copies them out of the
// mapping and releases the tensor's pages when the reader reaches EOF or is
// closed (so reading a checkpoint does not grow the process's RSS by its
// size), Bytes hands out zero-copy slices of the mapping (pages stay mapped
// while touched), and .zst files are decoded (see zstd.go).
//
// A File is safe for concurrent use. It implements format.Source.
type File struct {
	path      string
	tensors   []format.TensorInfo // storage order, absolute offsets
	index     map[string]int
	meta      map[string]string
	dataStart int64 // absolute offset of the data buffer

	f      *os.File
	data   []byte      // the whole mapped file, nil if not mapped
	ra     io.ReaderAt // mapped bytes or f: for the header
	pread  io.ReaderAt // f, for tensor readers
	z      *zstream    // non-nil for streamed .zst files
	zs     *zseek      // non-nil for seekable .zst files
	closed atomic.Bool
}

var _ format.Source = (*File)(nil)

// Open opens a safetensors file. A file that starts with the zstd magic
// number (conventionally NAME.safetensors.zst) is read as a zstd-compressed
// safetensors file (see "Compressed files" in zstd.go: storage-order reads
// stream, other orders re-decode). Errors for invalid files are
// *format.FormatError values that wrap format.ErrFormat (an unknown dtype
// also wraps format.ErrUnsupported).
func Open(path string) (*File, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	var magic [4]byte
	if n, _ := f.ReadAt(magic[:], 0); n == 4 && string(magic[:]) == ZstdMagic {
		f.Close()
		return openZst(path)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if !st.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("%s: not a regular file", path)
	}
	size := st.Size()
	sf := &File{path: path, f: f, ra: f}
	sf.pread = &fileReaderAt{f: f, closed: &sf.closed}
	if data, err := mmapFile(f, size); err == nil && data != nil {
		sf.data = data
		sf.ra = &mappedReaderAt{data: data, closed: &sf.closed}
	}
	if err := sf.readHeader(size); err != nil {
		sf.Close()
		return nil, err
	}
	return sf, nil
}

func (sf *File) readHeader(size int64) error {
	if size < 8 {
		return &format.FormatError{File: sf.path, Offset: 0, Msg: fmt.Sprintf("file of %d bytes is too short for the 8-byte header length (truncated)", size)}
	}
	var lb [8]byte
	if _, err := sf.ra.ReadAt(lb[:], 0); err != nil {
		return &format.FormatError{File: sf.path, Offset: 0, Msg: fmt.Sprintf("reading header length: %v", err)}
	}
	n := binary.LittleEndian.Uint64(lb[:])
	if n > MaxHeaderSize {
		return &format.FormatError{File: sf.path, Offset: 0, Msg: fmt.Sprintf("header length %d exceeds the %d-byte limit", n, MaxHeaderSize)}
	}
	if n > uint64(size-8) {
		return &format.FormatError{File: sf.path, Offset: 0, Msg: fmt.Sprintf("header length %d exceeds the %d bytes after it (truncated file?)", n, size-8)}
	}
	var hdr []byte
	if sf.data != nil {
		hdr = sf.data[8 : 8+n]
	} else {
		hdr = make([]byte, n)
		if _, err := sf.ra.ReadAt(hdr, 8); err != nil {
			return &format.FormatError{File: sf.path, Offset: 8, Msg: fmt.Sprintf("reading header: %v", err)}
		}
	}
	sf.dataStart = 8 + int64(n)
	h, err := parseHeader(sf.path, hdr, size-sf.dataStart)
	if err != nil {
		return err
	}
	sf.setHeader(h)
	return nil
}

func (sf *File) setHeader(h *header) {
	sf.tensors = h.tensors
	sf.meta = h.meta
	sf.index = make(map[string]int, len(h.tensors))
	for i := range sf.tensors {
		ti := &sf.tensors[i]
		ti.File = sf.path
		ti.Offset += sf.dataStart
		sf.index[ti.Name] = i
	}
}

// Path is the file's path as given to Open.
func (sf *File) Path() string { return sf.path }

// Tensors lists every tensor in storage order. Offsets are absolute file
// offsets (for .zst files: offsets in the decompressed stream). The slice is
// shared; do not modify it.
func (sf *File) Tensors() []format.TensorInfo { return sf.tensors }

// Info returns the description of one tensor.
func (sf *File) Info(name string) (format.TensorInfo, bool) {
	i, ok := sf.index[name]
	if !ok {
		return format.TensorInfo{}, false
	}
	return sf.tensors[i], true
}

// Metadata returns a copy of the header's __metadata__ map (empty, never nil,
// when the file has none).
func (sf *File) Metadata() map[string]string {
	m := maps.Clone(sf.meta)
	if m == nil {
		m = map[string]string{}
	}
	return m
}

// Open returns the stored bytes of one tensor. For .zst files the reader
// decodes the stream (see the package documentation on streaming). The
// reader must be closed.
func (sf *File) Open(name string) (io.ReadCloser, error) {
	if sf.closed.Load() {
		return nil, ErrClosed
	}
	i, ok := sf.index[name]
	if !ok {
		return nil, fmt.Errorf("%s: %w: %q", sf.path, format.ErrNotFound, name)
	}
	ti := sf.tensors[i]
	if sf.z != nil {
		return sf.z.open(ti), nil
	}
	if sf.zs != nil {
		return sf.zs.reader(ti, ti.Offset, ti.Offset+ti.Size), nil
	}
	if sf.data != nil {
		return &sectionCloser{SectionReader: io.NewSectionReader(sf.ra, ti.Offset, ti.Size), ti: ti, sf: sf}, nil
	}
	return &sectionCloser{SectionReader: io.NewSectionReader(sf.pread, ti.Offset, ti.Size), ti: ti}, nil
}

// Bytes returns the stored bytes of one tensor without copying, as a slice
// of the read-only mapping (writing to it faults). It is valid until Close.
// It fails with format.ErrUnsupported when the file is not mapped (.zst, or
// mapping unavailable): use Open then.
func (sf *File) Bytes(name string) ([]byte, error) {
	if sf.closed.Load() {
		return nil, ErrClosed
	}
	i, ok := sf.index[name]
	if !ok {
		return nil, fmt.Errorf("%s: %w: %q", sf.path, format.ErrNotFound, name)
	}
	if sf.data == nil {
		return nil, fmt.Errorf("%s: %w: file is not memory-mapped", sf.path, format.ErrUnsupported)
	}
	ti := sf.tensors[i]
	return sf.data[ti.Offset : ti.Offset+ti.Size : ti.Offset+ti.Size], nil
}

// ReadTensor returns the stored bytes of one tensor: zero-copy from the
// mapping where there is one (see Bytes), else read through Open, growing with
// the bytes actually there rather than allocating the header's Size up front.
// A short or failed read is a *format.FormatError naming file, tensor and offset.
func (sf *File) ReadTensor(name string) ([]byte, error) {
	if b, err := sf.Bytes(name); err == nil {
		return b, nil
	}
	rc, err := sf.Open(name)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	ti, _ := sf.Info(name)
	b, err := io.ReadAll(io.LimitReader(rc, ti.Size))
	if err == nil && int64(len(b)) != ti.Size {
		err = fmt.Errorf("%d of %d bytes", len(b), ti.Size)
	}
	if err != nil {
		if errors.Is(err, format.ErrFormat) {
			return nil, err
		}
		return nil, &format.FormatError{File: sf.path, Tensor: name, Offset: ti.Offset, Msg: fmt.Sprintf("reading: %v", err)}
	}
	return b, nil
}

// Close releases the file and its mapping. Readers from Open fail afterwards
// with ErrClosed; slices from Bytes must not be used.
func (sf *File) Close() error {
	if sf.closed.Swap(true) {
		return nil
	}
	var err error
	if sf.data != nil {
		err = munmap(sf.data)
		sf.data = nil
	}
	if sf.z != nil {
		sf.z.close()
	}
	if sf.zs != nil {
		sf.zs.close()
	}
	if sf.f != nil {
		if cerr := sf.f.Close(); err == nil {
			err = cerr
		}
	}
	return err
}

type mappedReaderAt struct {
	data   []byte
	closed *atomic.Bool
}

func (m *mappedReaderAt) ReadAt(p []byte, off int64) (int, error) {
	if m.closed.Load() {
		return 0, ErrClosed
	}
	if off < 0 {
		return 0, errors.New("negative offset")
	}
	if off >= int64(len(m.data)) {
		return 0, io.EOF
	}
	n := copy(p, m.data[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

type fileReaderAt struct {
	f      *os.File
	closed *atomic.Bool
}

func (r *fileReaderAt) ReadAt(p []byte, off int64) (int, error) {
	if r.closed.Load() {
		return 0, ErrClosed
	}
	return r.f.ReadAt(p, off)
}

// sectionCloser turns short reads into errors that name the tensor.
// Over a mapping, it drops the tensor's pages from the process (not from
// the page cache) at EOF and Close, so that reading a whole checkpoint does
// not grow RSS by the checkpoint's size.
type sectionCloser struct {
	*io.SectionReader
	ti      format.TensorInfo
	sf      *File // non-nil when reading the mapping
	dropped bool
}

func (s *sectionCloser) drop() {
	if s.sf != nil && !s.dropped && !s.sf.closed.Load() {
		s.dropped = true
		dropPages(s.sf.data, s.ti.Offset, s.ti.Size)
	}
}

func (s *sectionCloser) Read(p []byte) (int, error) {
	n, err := s.SectionReader.Read(p)
	if err == io.EOF {
		s.drop()
	}
	if err != nil && err != io.EOF && !errors.Is(err, ErrClosed) {
		pos, _ := s.Seek(0, io.SeekCurrent)
		return n, &format.FormatError{File: s.ti.File, Tensor: s.ti.Name, Offset: s.ti.Offset + pos, Msg: err.Error()}
	}
	return n, err
}

func (s *sectionCloser) Close() error {
	s.drop()
	return nil
}
