// Package gguf reads and writes GGUF files (llama.cpp's checkpoint format),
// versions 2 and 3, little-endian.
//
// A File exposes tensors through format.Source with shapes in row-major order
// (outermost dimension first): GGUF lists the fastest dimension first, so a
// tensor stored with dims [64, 32] is reported as Shape [32, 64]. Names are
// the GGUF names (blk.0.attn_q.weight). Metadata keeps its GGUF value types.
//
// Specification: https://github.com/ggml-org/ggml/blob/master/docs/gguf.md
package gguf

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"sort"

	"github.com/sparsify/sparsify/format"
)

// Magic is the first four bytes of every GGUF file.
const Magic = "GGUF"

// DefaultAlignment is the data alignment when general.alignment is absent.
const DefaultAlignment = 32

// Limits on hostile input, beyond the remaining file size that bounds every
// length already.
const (
	maxKeyLen = 1 << 16 // bytes in a metadata key
	// MaxNameLen is the longest tensor name: ggml's GGML_MAX_NAME (64) less the
	// terminating NUL, the limit llama.cpp enforces when loading.
	MaxNameLen   = 63
	maxStringLen = 1 << 30 // bytes in a metadata string
	maxArrayLen  = 1 << 30 // elements in a metadata array
	maxDims      = 4
	maxAlignment = 1 << 24
)

// File is an open GGUF file. Its accessors are safe for concurrent use; Open
// readers of different (or the same) tensors may be used concurrently.
type File struct {
	name      string
	f         *os.File // nil when built by NewReader
	r         io.ReaderAt
	size      int64
	version   uint32
	kv        []KV
	keys      map[string]int
	tensors   []format.TensorInfo
	types     []GGMLType
	byName    map[string]int
	alignment int64
	dataStart int64
}

var _ format.Source = (*File)(nil)

// Open opens and parses the GGUF file at path. Only the header is read; tensor
// bytes are read on demand.
func Open(path string) (*File, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if !st.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("gguf: %s is not a regular file", path)
	}
	g, err := NewReader(f, st.Size(), path)
	if err != nil {
		f.Close()
		return nil, err
	}
	g.f = f
	return g, nil
}

// NewReader parses a GGUF file of size bytes read through r. name labels
// errors and becomes TensorInfo.File. Close does not close r.
func NewReader(r io.ReaderAt, size int64, name string) (*File, error) {
	d := &decoder{
		name: name,
		br:   bufio.NewReaderSize(io.NewSectionReader(r, 0, size), 64<<10),
		size: size,
	}
	g := &File{name: name, r: r, size: size}
	if err := d.header(g); err != nil {
		return nil, err
	}
	return g, nil
}

// Close closes the underlying file when Open opened it.
func (g *File) Close() error {
	if g.f != nil {
		err := g.f.Close()
		g.f = nil
		return err
	}
	return nil
}

// Version is the GGUF version (2 or 3).
func (g *File) Version() uint32 { return g.version }

// KV returns the metadata in file order. The slice is shared: do not modify it.
func (g *File) KV() []KV { return g.kv }

// Lookup returns the metadata value for key.
func (g *File) Lookup(key string) (Value, bool) {
	i, ok := g.keys[key]
	if !ok {
		return Value{}, false
	}
	return g.kv[i].Value, true
}

// String returns a string metadata value.
func (g *File) String(key string) (string, bool) {
	v, ok := g.Lookup(key)
	if !ok || v.Type != TypeString {
		return "", false
	}
	return v.Data.(string), true
}

// Uint returns an integer metadata value of any integer type; ok is false for
// other types and negative values.
func (g *File) Uint(key string) (uint64, bool) {
	v, ok := g.Lookup(key)
	if !ok {
		return 0, false
	}
	return v.Uint()
}

// Int returns an integer metadata value of any integer type as int64.
func (g *File) Int(key string) (int64, bool) {
	v, ok := g.Lookup(key)
	if !ok {
		return 0, false
	}
	return v.Int()
}

// Float returns a float32/float64 (or integer) metadata value as float64.
func (g *File) Float(key string) (float64, bool) {
	v, ok := g.Lookup(key)
	if !ok {
		return 0, false
	}
	return v.Float()
}

// Strings returns an array-of-strings metadata value (shared: do not modify).
func (g *File) Strings(key string) ([]string, bool) {
	v, ok := g.Lookup(key)
	if !ok {
		return nil, false
	}
	s, ok := v.Data.([]string)
	return s, ok
}

// Float32s returns an array-of-float32 metadata value (shared: do not modify).
func (g *File) Float32s(key string) ([]float32, bool) {
	v, ok := g.Lookup(key)
	if !ok {
		return nil, false
	}
	s, ok := v.Data.([]float32)
	return s, ok
}

// Int32s returns an array-of-int32 metadata value (shared: do not modify).
func (g *File) Int32s(key string) ([]int32, bool) {
	v, ok := g.Lookup(key)
	if !ok {
		return nil, false
	}
	s, ok := v.Data.([]int32)
	return s, ok
}

// Alignment is the data alignment in bytes (general.alignment, default 32).
func (g *File) Alignment() int64 { return g.alignment }

// Architecture is general.architecture ("" if absent), e.g. "llama".
func (g *File) Architecture() string {
	s, _ := g.String("general.architecture")
	return s
}

// DataOffset is the absolute offset of the tensor data section.
func (g *File) DataOffset() int64 { return g.dataStart }

// Tensors lists the tensors in the order of the file's tensor infos, with
// row-major shapes and absolute offsets. The slice is shared: do not modify it.
func (g *File) Tensors() []format.TensorInfo { return g.tensors }

// GGMLType returns the stored ggml type of a tensor.
func (g *File) GGMLType(name string) (GGMLType, bool) {
	i, ok := g.byName[name]
	if !ok {
		return 0, false
	}
	return g.types[i], true
}

// Open returns a reader of the raw stored bytes of one tensor.
func (g *File) Open(name string) (io.ReadCloser, error) {
	i, ok := g.byName[name]
	if !ok {
		return nil, fmt.Errorf("%s: %w: %q", g.name, format.ErrNotFound, name)
	}
	ti := g.tensors[i]
	return io.NopCloser(io.NewSectionReader(g.r, ti.Offset, ti.Size)), nil
}

// Section returns an io.SectionReader over the raw bytes of one tensor.
func (g *File) Section(name string) (*io.SectionReader, error) {
	i, ok := g.byName[name]
	if !ok {
		return nil, fmt.Errorf("%s: %w: %q", g.name, format.ErrNotFound, name)
	}
	ti := g.tensors[i]
	return io.NewSectionReader(g.r, ti.Offset, ti.Size), nil
}

// unsupportedError is a FormatError for valid input this package does not
// implement: errors.Is matches both format.ErrFormat and format.ErrUnsupported,
// and errors.As finds the *format.FormatError with file, tensor and offset.
type unsupportedError struct{ fe *format.FormatError }

func (e *unsupportedError) Error() string   { return e.fe.Error() }
func (e *unsupportedError) Unwrap() []error { return []error{e.fe, format.ErrUnsupported} }

// decoder parses the header sequentially, tracking the absolute offset.
type decoder struct {
	name string
	br   *bufio.Reader
	off  int64
	size int64
	buf  [8]byte
	tmp  []byte
}

func (d *decoder) errAt(off int64, tensor, msg string, args ...any) error {
	return &format.FormatError{File: d.name, Tensor: tensor, Offset: off, Msg: fmt.Sprintf(msg, args...)}
}

func (d *decoder) unsupported(off int64, tensor, msg string, args ...any) error {
	return &unsupportedError{&format.FormatError{File: d.name, Tensor: tensor, Offset: off, Msg: fmt.Sprintf(msg, args...)}}
}

func (d *decoder) remaining() int64 { return d.size - d.off }

func (d *decoder) read(p []byte, what string) error {
	n, err := io.ReadFull(d.br, p)
	d.off += int64(n)
	if err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return d.errAt(d.off, "", "truncated file: unexpected end of file reading %s", what)
		}
		return d.errAt(d.off, "", "reading %s: %v", what, err)
	}
	return nil
}

func (d *decoder) u32(what string) (uint32, error) {
	if err := d.read(d.buf[:4], what); err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint32(d.buf[:4]), nil
}

func (d *decoder) u64(what string) (uint64, error) {
	if err := d.read(d.buf[:8], what); err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint64(d.buf[:8]), nil
}

// str reads a length-prefixed string of at most max bytes.
func (d *decoder) str(max int64, what string) (string, error) {
	at := d.off
	n, err := d.u64(what + " length")
	if err != nil {
		return "", err
	}
	if n > uint64(max) {
		return "", d.errAt(at, "", "%s length %d exceeds the limit of %d", what, n, max)
	}
	if n > uint64(d.remaining()) {
		return "", d.errAt(at, "", "truncated file: %s length %d runs past the %d bytes left in the file", what, n, d.remaining())
	}
	b := make([]byte, n)
	if err := d.read(b, what); err != nil {
		return "", err
	}
	return string(b), nil
}

func (d *decoder) header(g *File) error {
	var magic [4]byte
	if err := d.read(magic[:], "magic"); err != nil {
		return err
	}
	if string(magic[:]) != Magic {
		return d.errAt(0, "", "bad magic %q, want %q", magic[:], Magic)
	}
	v, err := d.u32("version")
	if err != nil {
		return err
	}
	switch {
	case v == 2 || v == 3:
	case v == 1:
		return d.unsupported(4, "", "unsupported GGUF version 1 (convert it with a newer llama.cpp)")
	case v&0xffff == 0 && v != 0:
		return d.unsupported(4, "", "unsupported big-endian GGUF (version %d byte-swapped)", v>>24|(v>>8)&0xff00)
	default:
		return d.unsupported(4, "", "unsupported GGUF version %d", v)
	}
	g.version = v
	at := d.off
	nt, err := d.u64("tensor count")
	if err != nil {
		return err
	}
	nkv, err := d.u64("metadata count")
	if err != nil {
		return err
	}
	// A KV takes at least 8 (key length) + 4 (type) + 1 bytes; a tensor info
	// at least 8 (name length) + 4 (n_dims) + 4 (type) + 8 (offset) bytes.
	if nkv > uint64(d.remaining()/13) {
		return d.errAt(at+8, "", "metadata count %d does not fit in the %d bytes left", nkv, d.remaining())
	}
	if nt > uint64(d.remaining()/24) {
		return d.errAt(at, "", "tensor count %d does not fit in the %d bytes left", nt, d.remaining())
	}
	alignAt := int64(-1)
	g.kv = make([]KV, 0, min(nkv, 1024))
	g.keys = make(map[string]int, min(nkv, 1024))
	for i := uint64(0); i < nkv; i++ {
		kat := d.off
		key, err := d.str(maxKeyLen, "metadata key")
		if err != nil {
			return err
		}
		if _, dup := g.keys[key]; dup {
			return d.errAt(kat, "", "duplicate metadata key %q", key)
		}
		tat := d.off
		t, err := d.u32("metadata value type")
		if err != nil {
			return err
		}
		val, err := d.value(ValueType(t), tat, 0)
		if err != nil {
			var fe *format.FormatError
			if errors.As(err, &fe) {
				fe.Msg = fmt.Sprintf("metadata %q: %s", key, fe.Msg)
			}
			return err
		}
		if key == "general.alignment" {
			alignAt = kat
		}
		g.keys[key] = len(g.kv)
		g.kv = append(g.kv, KV{Key: key, Value: val})
	}
	g.alignment = DefaultAlignment
	if i, ok := g.keys["general.alignment"]; ok {
		v := g.kv[i].Value
		a, ok := v.Uint()
		if v.Type != TypeUint32 || !ok || a == 0 || a&(a-1) != 0 || a > maxAlignment {
			return d.errAt(alignAt, "", "general.alignment %v (%v) must be a uint32 power of two ≤ %d", v, v.Type, maxAlignment)
		}
		g.alignment = int64(a)
	}

	type rawInfo struct {
		at     int64 // offset of the tensor info
		offset uint64
	}
	raws := make([]rawInfo, 0, min(nt, 1024))
	g.tensors = make([]format.TensorInfo, 0, min(nt, 1024))
	g.types = make([]GGMLType, 0, min(nt, 1024))
	g.byName = make(map[string]int, min(nt, 1024))
	for i := uint64(0); i < nt; i++ {
		at := d.off
		name, err := d.str(MaxNameLen, "tensor name")
		if err != nil {
			return err
		}
		if name == "" {
			return d.errAt(at, name, "empty tensor name")
		}
		if _, dup := g.byName[name]; dup {
			return d.errAt(at, name, "duplicate tensor name")
		}
		nd, err := d.u32("tensor dimension count")
		if err != nil {
			return err
		}
		if nd > maxDims {
			return d.errAt(at, name, "%d dimensions, at most %d allowed", nd, maxDims)
		}
		ne := make([]uint64, nd)
		for j := range ne {
			if ne[j], err = d.u64("tensor dimension"); err != nil {
				return err
			}
		}
		tt, err := d.u32("tensor type")
		if err != nil {
			return err
		}
		off, err := d.u64("tensor offset")
		if err != nil {
			return err
		}
		typ := GGMLType(tt)
		dt, ok := typ.DType()
		if !ok {
			if typ < numGGMLType && ggmlNames[typ] != "" {
				return d.unsupported(at, name, "unsupported ggml type %v (%d)", typ, tt)
			}
			return d.unsupported(at, name, "unknown ggml type %d", tt)
		}
		trait, _ := dt.Trait()
		shape := make([]int64, nd)
		n := int64(1)
		for j, e := range ne {
			if e == 0 || e > math.MaxInt64 {
				return d.errAt(at, name, "invalid dimension %d in %v", e, ne)
			}
			if n > math.MaxInt64/int64(e) {
				return d.errAt(at, name, "dimensions %v overflow int64", ne)
			}
			n *= int64(e)
			shape[int(nd)-1-j] = int64(e)
		}
		if nd > 0 && int64(ne[0])%trait.BlockSize != 0 {
			return d.errAt(at, name, "row length %d is not a multiple of the %v block size %d", ne[0], dt, trait.BlockSize)
		}
		size, err := dt.ByteSize(n)
		if err != nil {
			return d.errAt(at, name, "%d elements of %v: %v", n, dt, err)
		}
		g.byName[name] = len(g.tensors)
		g.tensors = append(g.tensors, format.TensorInfo{Name: name, DType: dt, Shape: shape, Size: size, File: g.name})
		g.types = append(g.types, typ)
		raws = append(raws, rawInfo{at: at, offset: off})
	}
	g.dataStart = d.off
	if r := g.dataStart % g.alignment; r != 0 {
		g.dataStart += g.alignment - r
	}
	if len(g.tensors) > 0 && g.dataStart > g.size {
		return d.errAt(d.off, "", "truncated file: data section at %d is past the end of the %d-byte file", g.dataStart, g.size)
	}
	dataLen := g.size - g.dataStart
	for i := range g.tensors {
		ti := &g.tensors[i]
		off := raws[i].offset
		if off%uint64(g.alignment) != 0 {
			return d.errAt(raws[i].at, ti.Name, "misaligned data offset %d (alignment %d)", off, g.alignment)
		}
		if off > uint64(dataLen) || uint64(ti.Size) > uint64(dataLen)-off {
			return d.errAt(raws[i].at, ti.Name, "data [%d, +%d) past the end of the file (data section %d bytes from %d)", off, ti.Size, dataLen, g.dataStart)
		}
		ti.Offset = g.dataStart + int64(off)
	}
	// Tensors may be stored in any order but must not overlap.
	idx := make([]int, len(g.tensors))
	for i := range idx {
		idx[i] = i
	}
	sort.Slice(idx, func(a, b int) bool { return g.tensors[idx[a]].Offset < g.tensors[idx[b]].Offset })
	for k := 1; k < len(idx); k++ {
		p, q := g.tensors[idx[k-1]], g.tensors[idx[k]]
		if p.Offset+p.Size > q.Offset {
			return d.errAt(raws[idx[k]].at, q.Name, "data at %d overlaps tensor %q [%d, %d)", q.Offset, p.Name, p.Offset, p.Offset+p.Size)
		}
	}
	return nil
}

// value reads one metadata value of type t whose type field was at tat.
func (d *decoder) value(t ValueType, tat int64, depth int) (Value, error) {
	switch t {
	case TypeString:
		s, err := d.str(maxStringLen, "string")
		return Value{Type: t, Data: s}, err
	case TypeArray:
		if depth >= maxDepth {
			return Value{}, d.errAt(tat, "", "arrays nested deeper than %d", maxDepth)
		}
		eat := d.off
		et, err := d.u32("array element type")
		if err != nil {
			return Value{}, err
		}
		e := ValueType(et)
		if e >= numValueTypes {
			return Value{}, d.errAt(eat, "", "invalid array element type %d", et)
		}
		nat := d.off
		n, err := d.u64("array length")
		if err != nil {
			return Value{}, err
		}
		min := e.size()
		switch e {
		case TypeString:
			min = 8
		case TypeArray:
			min = 12
		}
		if n > maxArrayLen || n > uint64(d.remaining()/min) {
			return Value{}, d.errAt(nat, "", "array length %d of %v exceeds the limit (%d) or the %d bytes left in the file", n, e, maxArrayLen, d.remaining())
		}
		return d.array(e, int(n), depth)
	}
	sz := t.size()
	if sz == 0 {
		return Value{}, d.errAt(tat, "", "invalid metadata value type %d", uint32(t))
	}
	if err := d.read(d.buf[:sz], t.String()); err != nil {
		return Value{}, err
	}
	if t == TypeBool && d.buf[0] > 1 {
		return Value{}, d.errAt(d.off-1, "", "invalid bool byte %d", d.buf[0])
	}
	return Value{Type: t, Data: scalar(t, d.buf[:sz])}, nil
}

func scalar(t ValueType, b []byte) any {
	le := binary.LittleEndian
	switch t {
	case TypeUint8:
		return b[0]
	case TypeInt8:
		return int8(b[0])
	case TypeBool:
		return b[0] != 0
	case TypeUint16:
		return le.Uint16(b)
	case TypeInt16:
		return int16(le.Uint16(b))
	case TypeUint32:
		return le.Uint32(b)
	case TypeInt32:
		return int32(le.Uint32(b))
	case TypeFloat32:
		return math.Float32frombits(le.Uint32(b))
	case TypeUint64:
		return le.Uint64(b)
	case TypeInt64:
		return int64(le.Uint64(b))
	case TypeFloat64:
		return math.Float64frombits(le.Uint64(b))
	}
	return nil
}

// array reads n elements of type e (n already checked against the file size).
func (d *decoder) array(e ValueType, n, depth int) (Value, error) {
	v := Value{Type: TypeArray, Elem: e}
	switch e {
	case TypeString:
		s := make([]string, n)
		for i := range s {
			var err error
			if s[i], err = d.str(maxStringLen, "string"); err != nil {
				return Value{}, err
			}
		}
		v.Data = s
		return v, nil
	case TypeArray:
		s := make([]Value, n)
		for i := range s {
			tat := d.off
			var err error
			if s[i], err = d.value(TypeArray, tat, depth+1); err != nil {
				return Value{}, err
			}
		}
		v.Data = s
		return v, nil
	}
	sz := int(e.size())
	if cap(d.tmp) < 64<<10 {
		d.tmp = make([]byte, 64<<10)
	}
	data := reflectSlice(e, n)
	for i := 0; i < n; {
		k := min(n-i, len(d.tmp)/sz)
		b := d.tmp[:k*sz]
		if err := d.read(b, "array of "+e.String()); err != nil {
			return Value{}, err
		}
		if e == TypeBool {
			for j, x := range b {
				if x > 1 {
					return Value{}, d.errAt(d.off-int64(len(b)-j), "", "invalid bool byte %d", x)
				}
			}
		}
		decodeInto(e, data, i, b)
		i += k
	}
	v.Data = data
	return v, nil
}

func reflectSlice(e ValueType, n int) any {
	switch e {
	case TypeUint8:
		return make([]uint8, n)
	case TypeInt8:
		return make([]int8, n)
	case TypeUint16:
		return make([]uint16, n)
	case TypeInt16:
		return make([]int16, n)
	case TypeUint32:
		return make([]uint32, n)
	case TypeInt32:
		return make([]int32, n)
	case TypeFloat32:
		return make([]float32, n)
	case TypeBool:
		return make([]bool, n)
	case TypeUint64:
		return make([]uint64, n)
	case TypeInt64:
		return make([]int64, n)
	case TypeFloat64:
		return make([]float64, n)
	}
	return nil
}

// decodeInto decodes the little-endian elements in b into data[i:].
func decodeInto(e ValueType, data any, i int, b []byte) {
	le := binary.LittleEndian
	switch s := data.(type) {
	case []uint8:
		copy(s[i:], b)
	case []int8:
		for j, x := range b {
			s[i+j] = int8(x)
		}
	case []bool:
		for j, x := range b {
			s[i+j] = x != 0
		}
	case []uint16:
		for j := 0; j < len(b); j += 2 {
			s[i+j/2] = le.Uint16(b[j:])
		}
	case []int16:
		for j := 0; j < len(b); j += 2 {
			s[i+j/2] = int16(le.Uint16(b[j:]))
		}
	case []uint32:
		for j := 0; j < len(b); j += 4 {
			s[i+j/4] = le.Uint32(b[j:])
		}
	case []int32:
		for j := 0; j < len(b); j += 4 {
			s[i+j/4] = int32(le.Uint32(b[j:]))
		}
	case []float32:
		for j := 0; j < len(b); j += 4 {
			s[i+j/4] = math.Float32frombits(le.Uint32(b[j:]))
		}
	case []uint64:
		for j := 0; j < len(b); j += 8 {
			s[i+j/8] = le.Uint64(b[j:])
		}
	case []int64:
		for j := 0; j < len(b); j += 8 {
			s[i+j/8] = int64(le.Uint64(b[j:]))
		}
	case []float64:
		for j := 0; j < len(b); j += 8 {
			s[i+j/8] = math.Float64frombits(le.Uint64(b[j:]))
		}
	}
}
