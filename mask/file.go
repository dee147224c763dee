package mask

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"

	"github.com/sparsify/sparsify/format"
	"github.com/sparsify/sparsify/format/safetensors"
)

// Mask files are safetensors files with one 2-D tensor per masked weight,
// named like the weight, dtype U8 (1 = kept, 0 = pruned), shape [rows, cols].
// ReadFile also accepts BOOL tensors. The header's "__metadata__" carries
// free-form strings; sparsify writes at least "method" and "pattern", and
// the safetensors writer adds "format": "pt" (as Python's writer does).
//
// Parsing and writing the container is format/safetensors' job (fuzzed,
// validated, atomic writes); this file adds only what makes a safetensors
// file a mask file.

// ErrMaskFile reports a mask file that is not valid safetensors or not a
// mask (wrong dtype, rank, or a value other than 0/1). It comes with a
// *format.FormatError (naming file, tensor and byte offset) and format.ErrFormat.
var ErrMaskFile = errors.New("mask: not a mask file")

// maskFileError is a format error (a *format.FormatError, possibly wrapped)
// that also unwraps to ErrMaskFile.
type maskFileError struct{ err error }

func (e maskFileError) Error() string   { return e.err.Error() }
func (e maskFileError) Unwrap() []error { return []error{e.err, ErrMaskFile} }

func fileErr(path, tensor string, off int64, f string, args ...any) error {
	return maskFileError{&format.FormatError{File: path, Tensor: tensor, Offset: off, Msg: fmt.Sprintf(f, args...)}}
}

// WriteFile saves masks (keyed by the weight's tensor name, e.g.
// "model.layers.0.mlp.up_proj.weight" or "blk.0.ffn_up.weight") as a
// safetensors file of U8 [rows, cols] tensors, 1 = kept, in sorted name
// order, with metadata in "__metadata__" ("format" is reserved: the writer
// sets it to "pt"). The file is written atomically (temporary file, fsync,
// rename); an existing file at path is replaced.
func WriteFile(path string, masks map[string]*Mask, metadata map[string]string) error {
	if v, ok := metadata["format"]; ok && v != "pt" {
		return fmt.Errorf("mask: write %s: metadata key \"format\" is reserved (got %q)", path, v)
	}
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
	ts := make([]format.Tensor, len(names))
	for i, name := range names {
		keep := masks[name].Keep
		ts[i] = format.Tensor{
			Name: name, DType: format.U8, Shape: []int64{int64(masks[name].Rows), int64(masks[name].Cols)},
			Size: int64(len(keep)),
			WriteTo: func(w io.Writer) (int64, error) {
				var buf [32 << 10]byte
				var n int64
				for k := keep; len(k) > 0; {
					c := min(len(k), len(buf))
					for j, v := range k[:c] {
						buf[j] = 0
						if v {
							buf[j] = 1
						}
					}
					m, err := w.Write(buf[:c])
					n += int64(m)
					if err != nil {
						return n, err
					}
					k = k[c:]
				}
				return n, nil
			},
		}
	}
	if _, err := safetensors.WriteFile(context.Background(), path, ts, safetensors.WriteOptions{Metadata: metadata, NoHash: true}); err != nil {
		return fmt.Errorf("mask: write %s: %w", path, err)
	}
	return nil
}

// ReadFile loads a mask file written by WriteFile (U8 or BOOL tensors, values
// 0/1; a .zst file too). Errors on bad input wrap a *format.FormatError
// naming the file, tensor and byte offset, format.ErrFormat and ErrMaskFile.
func ReadFile(path string) (map[string]*Mask, map[string]string, error) {
	sf, err := safetensors.Open(path)
	if err != nil {
		if errors.Is(err, format.ErrFormat) {
			return nil, nil, maskFileError{err}
		}
		return nil, nil, fmt.Errorf("mask: %w", err)
	}
	defer sf.Close()
	masks := make(map[string]*Mask, len(sf.Tensors()))
	for _, ti := range sf.Tensors() {
		if ti.DType != format.U8 && ti.DType != format.Bool {
			return nil, nil, fileErr(path, ti.Name, ti.Offset, "dtype %v: a mask must be U8 or BOOL", ti.DType)
		}
		if len(ti.Shape) != 2 || ti.Shape[0] > math.MaxInt || ti.Shape[1] > math.MaxInt {
			return nil, nil, fileErr(path, ti.Name, ti.Offset, "shape %v: a mask must be 2-D [rows, cols]", ti.Shape)
		}
		// the reader checked Size = rows*cols against the file's data.
		b, err := sf.ReadTensor(ti.Name)
		if err != nil {
			return nil, nil, maskFileError{err}
		}
		m := &Mask{Rows: int(ti.Shape[0]), Cols: int(ti.Shape[1]), Keep: make([]bool, len(b))}
		for i, v := range b {
			switch v {
			case 0:
			case 1:
				m.Keep[i] = true
			default:
				return nil, nil, fileErr(path, ti.Name, ti.Offset+int64(i), "value %d at element %d: want 0 or 1", v, i)
			}
		}
		masks[ti.Name] = m
	}
	return masks, sf.Metadata(), nil
}
