// Package safetensors reads and writes the safetensors format
// (https://github.com/huggingface/safetensors): single files, Hugging Face
// model directories with sharded indexes, and zstd-compressed variants.
//
// The header parser is our own (not github.com/nlpodyssey/safetensors): it
// validates like the reference Rust crate, reports the byte offset of every
// problem as a *format.FormatError, and works on a stream (for .zst files)
// as well as on a mapped file.
package safetensors

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/sparsify/sparsify/format"
)

// MaxHeaderSize is the largest header accepted (and written), as in the
// reference implementation (MAX_HEADER_SIZE).
const MaxHeaderSize = 100_000_000

const metadataKey = "__metadata__"

// dtypes maps safetensors dtype names to format DTypes (plain types only).
func parseDType(s string) (format.DType, bool) {
	dt, err := format.ParseDType(s)
	if err != nil {
		return format.Invalid, false
	}
	t, _ := dt.Trait()
	if t.Quantized || t.Name != s { // exact spelling, no GGML block types
		return format.Invalid, false
	}
	return dt, true
}

// header is a parsed, validated header.
type header struct {
	tensors []format.TensorInfo // storage order; Offset relative to the data buffer
	meta    map[string]string
	dataLen int64 // sum of tensor sizes (= the data buffer's size)
}

type entry struct {
	format.TensorInfo
	begin, end int64
	pos        int64 // byte offset of the entry in the file
}

// parseHeader validates the JSON header hdr (the bytes after the 8-byte
// length) of file. dataLen is the size of the data buffer, or -1 when unknown
// (a stream). Offsets in errors are absolute file offsets.
func parseHeader(file string, hdr []byte, dataLen int64) (*header, error) {
	const base = 8
	ferr := func(pos int64, tensor, f string, args ...any) error {
		// point at the next token, not at the separator before it
		for pos >= 0 && pos < int64(len(hdr)) && strings.IndexByte(" \t\r\n:,", hdr[pos]) >= 0 {
			pos++
		}
		return &format.FormatError{File: file, Tensor: tensor, Offset: base + pos, Msg: fmt.Sprintf(f, args...)}
	}
	if !utf8.Valid(hdr) {
		i := 0
		for i < len(hdr) {
			r, n := utf8.DecodeRune(hdr[i:])
			if r == utf8.RuneError && n <= 1 {
				break
			}
			i += n
		}
		return nil, ferr(int64(i), "", "header is not valid UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(hdr))
	dec.UseNumber()
	jsonErr := func(err error) error {
		var se *json.SyntaxError
		if errors.As(err, &se) {
			return ferr(se.Offset, "", "invalid JSON header: %v", err)
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return ferr(int64(len(hdr)), "", "invalid JSON header: unexpected end")
		}
		return ferr(dec.InputOffset(), "", "invalid JSON header: %v", err)
	}
	tok, err := dec.Token()
	if err != nil {
		return nil, jsonErr(err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, ferr(0, "", "header is not a JSON object")
	}
	h := &header{}
	var entries []entry
	seen := map[string]bool{}
	for dec.More() {
		pos := dec.InputOffset()
		tok, err := dec.Token()
		if err != nil {
			return nil, jsonErr(err)
		}
		name, _ := tok.(string)
		if seen[name] {
			return nil, ferr(pos, name, "duplicate key")
		}
		seen[name] = true
		if name == metadataKey {
			m, err := parseMetadata(dec, func(p int64, f string, a ...any) error { return ferr(p, "", f, a...) }, jsonErr)
			if err != nil {
				return nil, err
			}
			h.meta = m
			continue
		}
		e, err := parseEntry(dec, name, func(p int64, f string, a ...any) error { return ferr(p, name, f, a...) }, jsonErr)
		if err != nil {
			return nil, err
		}
		e.pos = base + pos
		entries = append(entries, e)
	}
	if _, err := dec.Token(); err != nil { // closing '}'
		return nil, jsonErr(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, ferr(dec.InputOffset(), "", "trailing data after the JSON header")
	}

	// Storage order, then contiguity: the data buffer is exactly the tensors
	// back to back, as the reference implementation requires.
	sort.SliceStable(entries, func(i, j int) bool {
		if entries[i].begin != entries[j].begin {
			return entries[i].begin < entries[j].begin
		}
		return entries[i].end < entries[j].end
	})
	var end int64
	for i, e := range entries {
		if e.begin != end {
			fe := &format.FormatError{File: file, Tensor: e.Name, Offset: e.pos}
			switch {
			case e.begin < end && i > 0:
				fe.Msg = fmt.Sprintf("data_offsets [%d, %d] overlap tensor %q [%d, %d]", e.begin, e.end, entries[i-1].Name, entries[i-1].begin, entries[i-1].end)
			default:
				fe.Msg = fmt.Sprintf("data_offsets [%d, %d] leave a gap after byte %d of the data buffer", e.begin, e.end, end)
			}
			return nil, fe
		}
		end = e.end
	}
	if dataLen >= 0 && end != dataLen {
		if end > dataLen {
			last := entries[len(entries)-1]
			return nil, &format.FormatError{File: file, Tensor: last.Name, Offset: last.pos,
				Msg: fmt.Sprintf("data_offsets [%d, %d] past the end of the %d-byte data buffer (file truncated?)", last.begin, last.end, dataLen)}
		}
		return nil, &format.FormatError{File: file, Offset: base + int64(len(hdr)) + end,
			Msg: fmt.Sprintf("%d bytes after the last tensor are not covered by any tensor", dataLen-end)}
	}
	h.dataLen = end
	h.tensors = make([]format.TensorInfo, len(entries))
	for i, e := range entries {
		e.TensorInfo.Offset = e.begin
		h.tensors[i] = e.TensorInfo
	}
	return h, nil
}

type errAt func(pos int64, f string, args ...any) error

func parseMetadata(dec *json.Decoder, ferr errAt, jsonErr func(error) error) (map[string]string, error) {
	pos := dec.InputOffset()
	tok, err := dec.Token()
	if err != nil {
		return nil, jsonErr(err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, ferr(pos, "__metadata__ is not an object of strings")
	}
	m := map[string]string{}
	for dec.More() {
		kpos := dec.InputOffset()
		tok, err := dec.Token()
		if err != nil {
			return nil, jsonErr(err)
		}
		k, _ := tok.(string)
		if _, dup := m[k]; dup {
			return nil, ferr(kpos, "duplicate __metadata__ key %q", k)
		}
		vpos := dec.InputOffset()
		tok, err = dec.Token()
		if err != nil {
			return nil, jsonErr(err)
		}
		v, ok := tok.(string)
		if !ok {
			return nil, ferr(vpos, "__metadata__ value of %q is not a string", k)
		}
		m[k] = v
	}
	if _, err := dec.Token(); err != nil {
		return nil, jsonErr(err)
	}
	return m, nil
}

func parseEntry(dec *json.Decoder, name string, ferr errAt, jsonErr func(error) error) (entry, error) {
	e := entry{TensorInfo: format.TensorInfo{Name: name}}
	start := dec.InputOffset()
	tok, err := dec.Token()
	if err != nil {
		return e, jsonErr(err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return e, ferr(start, "tensor entry is not an object")
	}
	var haveDType, haveShape, haveOffsets bool
	var dtPos, offPos int64
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return e, jsonErr(err)
		}
		key, _ := tok.(string)
		vpos := dec.InputOffset()
		switch key {
		case "dtype":
			if haveDType {
				return e, ferr(vpos, "duplicate dtype")
			}
			haveDType, dtPos = true, vpos
			tok, err := dec.Token()
			if err != nil {
				return e, jsonErr(err)
			}
			s, ok := tok.(string)
			if !ok {
				return e, ferr(vpos, "dtype is not a string")
			}
			dt, ok := parseDType(s)
			if !ok {
				return e, fmt.Errorf("%w (%w)", ferr(vpos, "dtype %q", s), format.ErrUnsupported)
			}
			e.DType = dt
		case "shape":
			if haveShape {
				return e, ferr(vpos, "duplicate shape")
			}
			haveShape = true
			v, err := parseInts(dec, -1, ferr, jsonErr, "shape")
			if err != nil {
				return e, err
			}
			e.Shape = v
		case "data_offsets":
			if haveOffsets {
				return e, ferr(vpos, "duplicate data_offsets")
			}
			haveOffsets, offPos = true, vpos
			v, err := parseInts(dec, 2, ferr, jsonErr, "data_offsets")
			if err != nil {
				return e, err
			}
			e.begin, e.end = v[0], v[1]
		default: // unknown keys are ignored, as serde does
			var skip json.RawMessage
			if err := dec.Decode(&skip); err != nil {
				return e, jsonErr(err)
			}
		}
	}
	if _, err := dec.Token(); err != nil {
		return e, jsonErr(err)
	}
	switch {
	case !haveDType:
		return e, ferr(start, "missing dtype")
	case !haveShape:
		return e, ferr(start, "missing shape")
	case !haveOffsets:
		return e, ferr(start, "missing data_offsets")
	}
	if e.end < e.begin {
		return e, ferr(offPos, "data_offsets [%d, %d] out of order", e.begin, e.end)
	}
	n, err := format.CheckedElements(e.Shape)
	if err != nil {
		return e, ferr(start, "shape %v: element count overflows", e.Shape)
	}
	size, err := e.DType.ByteSize(n)
	if err != nil {
		return e, ferr(dtPos, "%d elements of %v overflow", n, e.DType)
	}
	if size != e.end-e.begin {
		return e, ferr(offPos, "shape %v of %v needs %d bytes but data_offsets [%d, %d] hold %d", e.Shape, e.DType, size, e.begin, e.end, e.end-e.begin)
	}
	e.Size = size
	if e.Shape == nil {
		e.Shape = []int64{}
	}
	return e, nil
}

// parseInts reads a JSON array of non-negative int64 (exactly want of them if want ≥ 0).
func parseInts(dec *json.Decoder, want int, ferr errAt, jsonErr func(error) error, what string) ([]int64, error) {
	pos := dec.InputOffset()
	tok, err := dec.Token()
	if err != nil {
		return nil, jsonErr(err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '[' {
		return nil, ferr(pos, "%s is not an array", what)
	}
	var v []int64
	for dec.More() {
		p := dec.InputOffset()
		tok, err := dec.Token()
		if err != nil {
			return nil, jsonErr(err)
		}
		num, ok := tok.(json.Number)
		if !ok {
			return nil, ferr(p, "%s element is not a number", what)
		}
		x, err := strconv.ParseInt(string(num), 10, 64)
		if err != nil || x < 0 {
			return nil, ferr(p, "%s element %s is not a non-negative 64-bit integer", what, num)
		}
		if want >= 0 && len(v) == want {
			return nil, ferr(p, "%s has more than %d elements", what, want)
		}
		v = append(v, x)
	}
	if _, err := dec.Token(); err != nil {
		return nil, jsonErr(err)
	}
	if want >= 0 && len(v) != want {
		return nil, ferr(pos, "%s has %d elements, want %d", what, len(v), want)
	}
	return v, nil
}

// encodeHeader returns the 8-byte length and the JSON header, padded with
// spaces to a multiple of 8 bytes, in the reference crate's byte layout:
// compact, "__metadata__" first (keys sorted), then the tensors in the given
// order with keys dtype, shape, data_offsets. Offsets in ts are relative to
// the data buffer.
func encodeHeader(meta map[string]string, ts []format.TensorInfo) ([]byte, error) {
	var b bytes.Buffer
	b.Write(make([]byte, 8))
	b.WriteByte('{')
	first := true
	if len(meta) > 0 {
		b.WriteString(`"__metadata__":{`)
		keys := make([]string, 0, len(meta))
		for k := range meta {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for i, k := range keys {
			if i > 0 {
				b.WriteByte(',')
			}
			writeString(&b, k)
			b.WriteByte(':')
			writeString(&b, meta[k])
		}
		b.WriteByte('}')
		first = false
	}
	for _, t := range ts {
		if !first {
			b.WriteByte(',')
		}
		first = false
		writeString(&b, t.Name)
		b.WriteString(`:{"dtype":"`)
		b.WriteString(t.DType.String())
		b.WriteString(`","shape":[`)
		for i, d := range t.Shape {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(strconv.FormatInt(d, 10))
		}
		fmt.Fprintf(&b, `],"data_offsets":[%d,%d]}`, t.Offset, t.Offset+t.Size)
	}
	b.WriteByte('}')
	for (b.Len()-8)%8 != 0 {
		b.WriteByte(' ')
	}
	out := b.Bytes()
	n := len(out) - 8
	if n > MaxHeaderSize {
		return nil, fmt.Errorf("%w: header of %d bytes exceeds the %d-byte limit", format.ErrUnsupported, n, MaxHeaderSize)
	}
	binary.LittleEndian.PutUint64(out, uint64(n))
	return out, nil
}

// writeString writes s as a JSON string the way serde_json does: only '"',
// '\\' and control characters are escaped.
func writeString(b *bytes.Buffer, s string) {
	b.WriteByte('"')
	const hex = "0123456789abcdef"
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"':
			b.WriteString(`\"`)
		case c == '\\':
			b.WriteString(`\\`)
		case c == '\n':
			b.WriteString(`\n`)
		case c == '\r':
			b.WriteString(`\r`)
		case c == '\t':
			b.WriteString(`\t`)
		case c == '\b':
			b.WriteString(`\b`)
		case c == '\f':
			b.WriteString(`\f`)
		case c < 0x20:
			b.WriteString(`\u00`)
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&15])
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('"')
}

// validName reports whether a tensor name can be written.
func validName(s string) error {
	switch {
	case s == metadataKey:
		return fmt.Errorf("tensor name %q is reserved", s)
	case !utf8.ValidString(s):
		return fmt.Errorf("%q is not valid UTF-8", s)
	}
	return nil
}
