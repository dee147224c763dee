package pack

import (
	"bytes"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"

	"github.com/sparsify/sparsify/format"
)

// Tensor name suffixes of the packed layouts (P = module path).
const (
	SuffixWeight     = ".weight"     // dense (and the expanded view)
	SuffixPacked     = ".packed"     // cutlass kept values [rows, cols/2], weight dtype
	SuffixMeta       = ".meta"       // cutlass reordered metadata, I16 (I32 for I8)
	SuffixShape      = ".shape"      // I64 [2,1] = [[rows],[cols]] (both layouts)
	SuffixCompressed = ".compressed" // bitmask kept values [rows, cols/2]
	SuffixBitmask    = ".bitmask"    // bitmask U8 [rows, ceil(cols/8)]
)

// PackedWeight is one packed weight found in a checkpoint: the tensors that
// hold it. For Cutlass, Values/Meta are P.packed/P.meta; for Bitmask they are
// P.compressed/P.bitmask.
type PackedWeight struct {
	Module string // P
	Layout Layout
	Values format.TensorInfo
	Meta   format.TensorInfo
	Shape  format.TensorInfo
}

// Weight is the dense tensor name, "P.weight".
func (p PackedWeight) Weight() string { return p.Module + SuffixWeight }

// FindPacked lists the packed weights among ts (cutlass: P.packed + P.meta +
// P.shape; bitmask: P.compressed + P.bitmask + P.shape), sorted by module. It
// reads headers only. An incomplete group (P.packed without P.meta, ...) or a
// group next to a P.weight is an error naming the tensors.
func FindPacked(ts []format.TensorInfo) ([]PackedWeight, error) {
	out, errs := FindPackedAll(ts)
	if len(errs) > 0 {
		return nil, errs[0]
	}
	return out, nil
}

// FindPackedAll is FindPacked that keeps going: it returns every complete
// group and one error per incomplete or ambiguous one (for verify).
func FindPackedAll(ts []format.TensorInfo) ([]PackedWeight, []error) {
	by := make(map[string]format.TensorInfo, len(ts))
	for _, ti := range ts {
		by[ti.Name] = ti
	}
	var out []PackedWeight
	var errs []error
	for _, ti := range ts {
		var mod string
		var layout Layout
		var metaSuffix string
		switch {
		case strings.HasSuffix(ti.Name, SuffixPacked):
			mod, layout, metaSuffix = strings.TrimSuffix(ti.Name, SuffixPacked), Cutlass, SuffixMeta
		case strings.HasSuffix(ti.Name, SuffixCompressed):
			mod, layout, metaSuffix = strings.TrimSuffix(ti.Name, SuffixCompressed), Bitmask, SuffixBitmask
		case strings.HasSuffix(ti.Name, SuffixMeta), strings.HasSuffix(ti.Name, SuffixBitmask):
			// a meta/bitmask without its values tensor
			suf, vsuf := SuffixMeta, SuffixPacked
			if strings.HasSuffix(ti.Name, SuffixBitmask) {
				suf, vsuf = SuffixBitmask, SuffixCompressed
			}
			m := strings.TrimSuffix(ti.Name, suf)
			if _, ok := by[m+vsuf]; !ok {
				errs = append(errs, fmt.Errorf("%w: tensor %q: its values tensor %q is missing", format.ErrFormat, ti.Name, m+vsuf))
			}
			continue
		default:
			continue
		}
		meta, ok1 := by[mod+metaSuffix]
		shape, ok2 := by[mod+SuffixShape]
		if !ok1 || !ok2 {
			var miss []string
			if !ok1 {
				miss = append(miss, fmt.Sprintf("%q", mod+metaSuffix))
			}
			if !ok2 {
				miss = append(miss, fmt.Sprintf("%q", mod+SuffixShape))
			}
			errs = append(errs, fmt.Errorf("%w: tensor %q: %s layout needs %s, missing", format.ErrFormat, ti.Name, layout, strings.Join(miss, " and ")))
			continue
		}
		if _, dup := by[mod+SuffixWeight]; dup {
			errs = append(errs, fmt.Errorf("%w: tensor %q: packed weight stored next to %q", format.ErrFormat, ti.Name, mod+SuffixWeight))
			continue
		}
		out = append(out, PackedWeight{Module: mod, Layout: layout, Values: ti, Meta: meta, Shape: shape})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Module < out[j].Module })
	return out, errs
}

// ReadShape reads and validates P.shape: I64 with 2 elements (shape [2,1] as
// compressed-tensors writes it, or [2]), both positive.
func ReadShape(src format.Source, ti format.TensorInfo) (rows, cols int, err error) {
	if ti.DType != format.I64 || ti.NumElements() != 2 || ti.Size != 16 {
		return 0, 0, &format.FormatError{File: ti.File, Tensor: ti.Name, Offset: ti.Offset, Msg: fmt.Sprintf("shape tensor is %v %v, want I64 [2,1]", ti.DType, ti.Shape)}
	}
	b, _, err := format.ReadAll(src, ti.Name)
	if err != nil {
		return 0, 0, err
	}
	r, c := int64(le.Uint64(b)), int64(le.Uint64(b[8:]))
	if r <= 0 || c <= 0 || r > maxCutlassElems || c > maxCutlassElems {
		return 0, 0, &format.FormatError{File: ti.File, Tensor: ti.Name, Offset: ti.Offset, Msg: fmt.Sprintf("shape [%d, %d] is not a positive 2-D shape", r, c)}
	}
	return int(r), int(c), nil
}

// CheckHeaders validates the dtypes and shapes of the group's tensors
// against the layout for a [rows, cols] weight (headers only).
func (p PackedWeight) CheckHeaders(rows, cols int) error {
	fe := func(ti format.TensorInfo, msg string, a ...any) error {
		return &format.FormatError{File: ti.File, Tensor: ti.Name, Offset: ti.Offset, Msg: fmt.Sprintf(msg, a...)}
	}
	switch p.Layout {
	case Cutlass:
		info, err := CutlassLayoutOf(p.Values.DType, rows, cols)
		if err != nil {
			return fmt.Errorf("tensor %q: %w", p.Values.Name, err)
		}
		if !slices.Equal(p.Values.Shape, info.ValuesShape) || p.Values.Size != info.ValuesSize {
			return fe(p.Values, "cutlass values %v %v, want %v %v for weight [%d, %d]", p.Values.DType, p.Values.Shape, p.Values.DType, info.ValuesShape, rows, cols)
		}
		if p.Meta.DType != info.MetaDType || !slices.Equal(p.Meta.Shape, info.MetaShape) || p.Meta.Size != info.MetaSize {
			return fe(p.Meta, "cutlass meta %v %v, want %v %v for %v weight [%d, %d]", p.Meta.DType, p.Meta.Shape, info.MetaDType, info.MetaShape, p.Values.DType, rows, cols)
		}
	case Bitmask:
		info, err := BitmaskLayoutOf(p.Values.DType, rows, cols)
		if err != nil {
			return fmt.Errorf("tensor %q: %w", p.Values.Name, err)
		}
		if !slices.Equal(p.Values.Shape, info.CompressedShape) || p.Values.Size != info.CompressedSize {
			return fe(p.Values, "compressed %v %v, want %v for weight [%d, %d]", p.Values.DType, p.Values.Shape, info.CompressedShape, rows, cols)
		}
		if p.Meta.DType != format.U8 || !slices.Equal(p.Meta.Shape, info.BitmaskShape) || p.Meta.Size != info.BitmaskSize {
			return fe(p.Meta, "bitmask %v %v, want U8 %v for weight [%d, %d]", p.Meta.DType, p.Meta.Shape, info.BitmaskShape, rows, cols)
		}
	default:
		return fmt.Errorf("pack: layout %q has no packed tensors", p.Layout)
	}
	return nil
}

// Unpack reads the group's tensors from src and returns the dense weight
// bytes [rows, cols] in the values dtype. Errors name the tensor.
func (p PackedWeight) Unpack(src format.Source) (dense []byte, rows, cols int, err error) {
	rows, cols, err = ReadShape(src, p.Shape)
	if err != nil {
		return nil, 0, 0, err
	}
	if err := p.CheckHeaders(rows, cols); err != nil {
		return nil, 0, 0, err
	}
	vals, _, err := format.ReadAll(src, p.Values.Name)
	if err != nil {
		return nil, 0, 0, err
	}
	meta, _, err := format.ReadAll(src, p.Meta.Name)
	if err != nil {
		return nil, 0, 0, err
	}
	if p.Layout == Cutlass {
		dense, err = UnpackCutlass(p.Values.DType, rows, cols, vals, meta)
	} else {
		dense, err = UnpackBitmask(p.Values.DType, rows, cols, vals, meta)
	}
	if err != nil {
		return nil, 0, 0, withTensor(err, p.Meta)
	}
	return dense, rows, cols, nil
}

// withTensor fills in the file and tensor of a codec FormatError (whose Offset
// is relative to the tensor's data) and makes the offset absolute.
func withTensor(err error, ti format.TensorInfo) error {
	if fe, ok := err.(*format.FormatError); ok {
		c := *fe
		c.File, c.Tensor = ti.File, ti.Name
		if c.Offset >= 0 && ti.Offset >= 0 {
			c.Offset += ti.Offset
		}
		return &c
	}
	return fmt.Errorf("tensor %q: %w", ti.Name, err)
}

// expanded is the dense view OpenExpanded returns.
type expanded struct {
	src     format.Source
	tensors []format.TensorInfo
	packed  map[string]PackedWeight // by dense name
}

// OpenExpanded returns a Source view of src in which every packed weight
// (cutlass P.packed+P.meta+P.shape, or compressed-tensors sparse-24-bitmask
// P.compressed+P.bitmask+P.shape) appears as its dense P.weight [rows, cols] in
// the values dtype, unpacked lazily on Open; every other tensor passes through
// unchanged. The dense tensor takes the place of its packed values tensor in
// storage order; its TensorInfo has the values tensor's File and Offset -1
// (there are no stored bytes to seek to). Headers and the 16-byte shape
// tensors are read and validated here. The view is safe for concurrent use if
// src is; Close closes src.
func OpenExpanded(src format.Source) (format.Source, error) {
	groups, err := FindPacked(src.Tensors())
	if err != nil {
		return nil, err
	}
	e := &expanded{src: src, packed: make(map[string]PackedWeight, len(groups))}
	hide := make(map[string]bool, 3*len(groups))
	dense := make(map[string]format.TensorInfo, len(groups))
	for _, g := range groups {
		rows, cols, err := ReadShape(src, g.Shape)
		if err != nil {
			return nil, err
		}
		if err := g.CheckHeaders(rows, cols); err != nil {
			return nil, err
		}
		k, _ := elemKindOf(g.Values.DType)
		dense[g.Values.Name] = format.TensorInfo{
			Name: g.Weight(), DType: g.Values.DType, Shape: []int64{int64(rows), int64(cols)},
			Size: int64(rows) * int64(cols) * int64(k.size), File: g.Values.File, Offset: -1,
		}
		e.packed[g.Weight()] = g
		hide[g.Meta.Name], hide[g.Shape.Name] = true, true
	}
	for _, ti := range src.Tensors() {
		if d, ok := dense[ti.Name]; ok {
			e.tensors = append(e.tensors, d)
		} else if !hide[ti.Name] {
			e.tensors = append(e.tensors, ti)
		}
	}
	return e, nil
}

func (e *expanded) Tensors() []format.TensorInfo { return e.tensors }

func (e *expanded) Open(name string) (io.ReadCloser, error) {
	g, ok := e.packed[name]
	if !ok {
		if _, packed := e.hidden(name); packed {
			return nil, fmt.Errorf("%w: %q (expanded into its .weight)", format.ErrNotFound, name)
		}
		return e.src.Open(name)
	}
	dense, _, _, err := g.Unpack(e.src)
	if err != nil {
		return nil, err
	}
	return io.NopCloser(bytes.NewReader(dense)), nil
}

func (e *expanded) hidden(name string) (PackedWeight, bool) {
	for _, suf := range []string{SuffixPacked, SuffixMeta, SuffixShape, SuffixCompressed, SuffixBitmask} {
		if strings.HasSuffix(name, suf) {
			g, ok := e.packed[strings.TrimSuffix(name, suf)+SuffixWeight]
			if ok {
				return g, true
			}
		}
	}
	return PackedWeight{}, false
}

func (e *expanded) Close() error { return e.src.Close() }

// Unwrap returns the underlying (packed) Source, for callers that need its
// other methods (metadata, config.json).
func (e *expanded) Unwrap() format.Source { return e.src }

// Metadata forwards the underlying Source's file metadata, when it has any.
func (e *expanded) Metadata() map[string]string {
	if m, ok := e.src.(interface{ Metadata() map[string]string }); ok {
		return m.Metadata()
	}
	return nil
}
