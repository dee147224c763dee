// Package pack turns masked weights into NVIDIA's 2:4 compressed layouts and
// compressed-tensors' sparse-24-bitmask, and back.
//
// PLACEHOLDER bodies while the codecs are built; the signatures are the API.
package pack

import (
	"fmt"

	"github.com/sparsify/sparsify/format"
)

// Layout is an on-disk representation of a pruned weight.
type Layout string

const (
	Dense   Layout = "dense"   // masked dense weights, +0.0 in pruned slots
	Cutlass Layout = "cutlass" // PyTorch/CUTLASS semi-structured: P.packed, P.meta, P.shape
	Bitmask Layout = "bitmask" // compressed-tensors sparse-24-bitmask: P.compressed, P.bitmask, P.shape
)

// ParseLayout parses a --layout value.
func ParseLayout(s string) (Layout, error) {
	switch Layout(s) {
	case Dense, Cutlass, Bitmask:
		return Layout(s), nil
	}
	return "", fmt.Errorf("pack: unknown layout %q (want dense, cutlass or bitmask)", s)
}

// PackCutlass compresses a row-major [rows, cols] matrix of dtype dt (raw
// little-endian bytes) into CUTLASS kept values [rows, cols/2] and reordered
// metadata, byte-exact with PyTorch's to_sparse_semi_structured. F16/BF16/I8
// take 2:4, F32 takes 1:2.
func PackCutlass(dt format.DType, rows, cols int, dense []byte) (values, meta []byte, err error) {
	return nil, nil, fmt.Errorf("%w: cutlass packing", format.ErrUnsupported)
}

// UnpackCutlass expands CUTLASS values and metadata back to dense bytes.
// Untrusted input: invalid metadata is an error, never a panic.
func UnpackCutlass(dt format.DType, rows, cols int, values, meta []byte) ([]byte, error) {
	return nil, fmt.Errorf("%w: cutlass unpacking", format.ErrUnsupported)
}

// PackBitmask compresses a 2-D matrix into compressed-tensors' sparse-24-bitmask
// (compressed values and packed bitmask rows).
func PackBitmask(dt format.DType, rows, cols int, dense []byte) (compressed, bitmask []byte, err error) {
	return nil, nil, fmt.Errorf("%w: bitmask packing", format.ErrUnsupported)
}

// UnpackBitmask expands sparse-24-bitmask tensors back to dense bytes.
func UnpackBitmask(dt format.DType, rows, cols int, compressed, bitmask []byte) ([]byte, error) {
	return nil, fmt.Errorf("%w: bitmask unpacking", format.ErrUnsupported)
}
