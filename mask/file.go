package mask

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"slices"

	"github.com/sparsify/sparsify/format"
)

// Mask files are safetensors files with one 2-D tensor per masked weight,
// named like the weight, dtype U8 (1 = kept, 0 = pruned), shape [rows, cols].
// ReadFile also accepts BOOL tensors. The header's "__metadata__" carries
// free-form strings; sparsify writes at least "method" and "pattern".
//
// The reader and writer here are small and private to this package (the
// shared format/safetensors package was not yet available when they were
// written); they follow the safetensors specification: 8-byte little-endian
// header length, JSON header (padded with spaces to a multiple of 8), data.

// maxMaskHeader bounds the JSON header (as the reference crate's MAX_HEADER_SIZE).
const maxMaskHeader = 100 << 20

// ErrMaskFile reports a mask file that is valid safetensors but not a mask
// (wrong dtype, rank, or a value other than 0/1); it comes inside a
// *format.FormatError that also unwraps to format.ErrFormat.
var ErrMaskFile = errors.New("mask: not a mask file")

type maskFileError struct{ *format.FormatError }

func (e maskFileError) Unwrap() []error { return []error{e.FormatError, ErrMaskFile} }

func fileErr(path, tensor string, off int64, f string, args ...any) error {
	return maskFileError{&format.FormatError{File: path, Tensor: tensor, Offset: off, Msg: fmt.Sprintf(f, args...)}}
}

type stEntry struct {
	DType       string   `json:"dtype"`
	Shape       []int64  `json:"shape"`
	DataOffsets [2]int64 `json:"data_offsets"`
}

// WriteFile saves masks (keyed by the weight's tensor name, e.g.
// "model.layers.0.mlp.up_proj.weight" or "blk.0.ffn_up.weight") as a
// safetensors file of U8 [rows, cols] tensors, 1 = kept, in sorted name
// order, with metadata in "__metadata__". The file is written atomically
// (temporary file, fsync, rename); an existing file at path is replaced.
func WriteFile(path string, masks map[string]*Mask, metadata map[string]string) error {
	names := make([]string, 0, len(masks))
	for name, m := range masks {
		if name == "" || name == "__metadata__" {
			return fmt.Errorf("mask: write %s: invalid tensor name %q", path, name)
		}
		if m == nil || m.Rows < 0 || m.Cols < 0 || len(m.Keep) != m.Rows*m.Cols {
			return fmt.Errorf("mask: write %s: tensor %q: mask length does not match its shape", path, name)
		}
		names = append(names, name)
	}
	slices.Sort(names)
	hdr := make(map[string]any, len(masks)+1)
	if len(metadata) > 0 {
		hdr["__metadata__"] = metadata
	}
	var off int64
	for _, name := range names {
		m := masks[name]
		n := int64(len(m.Keep))
		hdr[name] = stEntry{DType: "U8", Shape: []int64{int64(m.Rows), int64(m.Cols)}, DataOffsets: [2]int64{off, off + n}}
		off += n
	}
	js, err := json.Marshal(hdr)
	if err != nil {
		return fmt.Errorf("mask: write %s: %w", path, err)
	}
	for len(js)%8 != 0 {
		js = append(js, ' ')
	}
	f, err := format.CreateAtomic(path)
	if err != nil {
		return fmt.Errorf("mask: write %s: %w", path, err)
	}
	defer f.Abort()
	bw := bufio.NewWriterSize(f, 1<<20)
	var l [8]byte
	binary.LittleEndian.PutUint64(l[:], uint64(len(js)))
	bw.Write(l[:])
	bw.Write(js)
	for _, name := range names {
		for _, k := range masks[name].Keep {
			var b byte
			if k {
				b = 1
			}
			bw.WriteByte(b)
		}
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("mask: write %s: %w", path, err)
	}
	if err := f.Commit(); err != nil {
		return fmt.Errorf("mask: write %s: %w", path, err)
	}
	return nil
}

// ReadFile loads a mask file written by WriteFile (U8 or BOOL tensors, values
// 0/1). Errors on bad input are *format.FormatError (wrapping
// format.ErrFormat and ErrMaskFile) naming the file, tensor and byte offset.
func ReadFile(path string) (map[string]*Mask, map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, fmt.Errorf("mask: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, nil, fmt.Errorf("mask: %w", err)
	}
	return readMasks(path, f, st.Size())
}

// readMasks parses a mask file of size bytes from r.
func readMasks(path string, r io.ReaderAt, size int64) (map[string]*Mask, map[string]string, error) {
	var l [8]byte
	if size < 8 {
		return nil, nil, fileErr(path, "", 0, "file of %d bytes is too short for a safetensors header", size)
	}
	if _, err := r.ReadAt(l[:], 0); err != nil {
		return nil, nil, fmt.Errorf("mask: %s: %w", path, err)
	}
	hn := binary.LittleEndian.Uint64(l[:])
	if hn > maxMaskHeader || int64(hn) > size-8 {
		return nil, nil, fileErr(path, "", 0, "header length %d exceeds the file (%d bytes) or the %d-byte limit", hn, size, maxMaskHeader)
	}
	js := make([]byte, hn)
	if _, err := r.ReadAt(js, 8); err != nil {
		return nil, nil, fmt.Errorf("mask: %s: %w", path, err)
	}
	dataStart := 8 + int64(hn)
	dataLen := size - dataStart
	var raw map[string]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(js))
	if err := dec.Decode(&raw); err != nil {
		off := int64(8)
		var se *json.SyntaxError
		if errors.As(err, &se) {
			off += se.Offset
		}
		return nil, nil, fileErr(path, "", off, "header JSON: %v", err)
	}
	var meta map[string]string
	if m, ok := raw["__metadata__"]; ok {
		if err := json.Unmarshal(m, &meta); err != nil {
			return nil, nil, fileErr(path, "", 8, "__metadata__ is not a string map: %v", err)
		}
		delete(raw, "__metadata__")
	}
	names := make([]string, 0, len(raw))
	for name := range raw {
		names = append(names, name)
	}
	slices.Sort(names)
	masks := make(map[string]*Mask, len(raw))
	type span struct {
		a, b int64
		name string
	}
	var spans []span
	for _, name := range names {
		var e stEntry
		d := json.NewDecoder(bytes.NewReader(raw[name]))
		d.DisallowUnknownFields()
		if err := d.Decode(&e); err != nil {
			return nil, nil, fileErr(path, name, 8, "header entry: %v", err)
		}
		if e.DType != "U8" && e.DType != "BOOL" {
			return nil, nil, fileErr(path, name, 8, "dtype %s: a mask must be U8 or BOOL", e.DType)
		}
		if len(e.Shape) != 2 || e.Shape[0] < 0 || e.Shape[1] < 0 {
			return nil, nil, fileErr(path, name, 8, "shape %v: a mask must be 2-D [rows, cols]", e.Shape)
		}
		a, b := e.DataOffsets[0], e.DataOffsets[1]
		if a < 0 || b < a || b > dataLen {
			return nil, nil, fileErr(path, name, 8, "data offsets [%d, %d] outside the %d data bytes", a, b, dataLen)
		}
		rows, cols := e.Shape[0], e.Shape[1]
		if cols != 0 && rows > math.MaxInt64/cols || rows*cols != b-a {
			return nil, nil, fileErr(path, name, 8, "shape %v does not match %d data bytes", e.Shape, b-a)
		}
		spans = append(spans, span{a, b, name})
		buf := make([]byte, b-a) // bounded by the file size checked above
		if _, err := r.ReadAt(buf, dataStart+a); err != nil {
			return nil, nil, fmt.Errorf("mask: %s: tensor %q: %w", path, name, err)
		}
		m := &Mask{Rows: int(rows), Cols: int(cols), Keep: make([]bool, len(buf))}
		for i, v := range buf {
			switch v {
			case 0:
			case 1:
				m.Keep[i] = true
			default:
				return nil, nil, fileErr(path, name, dataStart+a+int64(i), "value %d at element %d: want 0 or 1", v, i)
			}
		}
		masks[name] = m
	}
	slices.SortFunc(spans, func(x, y span) int { return int(min(max(x.a-y.a, -1), 1)) })
	for i := 1; i < len(spans); i++ {
		if spans[i].a < spans[i-1].b {
			return nil, nil, fileErr(path, spans[i].name, dataStart+spans[i].a, "data overlaps tensor %q", spans[i-1].name)
		}
	}
	return masks, meta, nil
}
