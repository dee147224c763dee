// Package pack turns masked weights into NVIDIA's 2:4 compressed layouts and
// compressed-tensors' sparse-24-bitmask, and back.
//
// Codecs (all concurrency-safe, pure functions over raw little-endian bytes):
//
//   - cutlass: PackCutlass / UnpackCutlass / CheckCutlass / CutlassShapeOK /
//     CutlassLayoutOf, byte-exact with PyTorch's to_sparse_semi_structured
//     (CUTLASS backend); see docs/FORMAT.md.
//   - bitmask: PackBitmask / UnpackBitmask / CheckBitmask / BitmaskLayoutOf,
//     compressed-tensors sparse-24-bitmask.
//   - helpers: ApplyMask (zero pruned slots with +0), Is24 / IsPattern (find the
//     first group that breaks a pattern), OpenExpanded (a dense view of a
//     sparse checkpoint).
package pack

import (
	"fmt"

	"github.com/sparsify/sparsify/format"
	"github.com/sparsify/sparsify/mask"
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

// ApplyMask zeroes, in place, every slot of the row-major dense matrix that m
// does not keep, writing the +0 bit pattern (never -0). Kept slots holding -0.0
// are also rewritten to +0.0: a kept zero is a zero, and -0 has broken real
// engines (sparse-checkpoint-formats §4.2.6). Every other kept bit pattern is
// left exactly as it was.
func ApplyMask(dt format.DType, dense []byte, m *mask.Mask) error {
	k, err := elemKindOf(dt)
	if err != nil {
		return err
	}
	if m == nil || m.Rows < 0 || m.Cols < 0 || len(m.Keep) != m.Rows*m.Cols {
		return fmt.Errorf("pack: apply mask: malformed mask")
	}
	if int64(len(dense)) != int64(len(m.Keep))*int64(k.size) {
		return fmt.Errorf("pack: apply mask: %d bytes of %v for a [%d, %d] mask", len(dense), dt, m.Rows, m.Cols)
	}
	for i, keep := range m.Keep {
		b := dense[i*k.size : (i+1)*k.size]
		if !keep || (k.isFloat && k.load(b)&k.nzMask == 0) {
			clear(b)
		}
	}
	return nil
}

// Is24 reports whether every group of 4 consecutive elements along each row of
// a row-major [rows, cols] matrix has at most 2 nonzeros (-0.0 counts as zero).
// When not, row and group locate the first offending group (in row-major
// order). A matrix whose cols is not a multiple of 4, or whose size does not
// match, is reported as not 2:4 at row -1.
func Is24(dt format.DType, rows, cols int, dense []byte) (ok bool, row, group int) {
	return IsPattern(dt, rows, cols, dense, mask.Pattern24)
}

// IsPattern is Is24 for any N:M pattern: at most p.N nonzeros in every group of
// p.M consecutive elements of a row.
func IsPattern(dt format.DType, rows, cols int, dense []byte, p mask.Pattern) (ok bool, row, group int) {
	k, err := elemKindOf(dt)
	if err != nil || p.M <= 0 || p.M > 32 || rows < 0 || cols < 0 || cols%p.M != 0 ||
		int64(len(dense)) != int64(rows)*int64(cols)*int64(k.size) {
		return false, -1, -1
	}
	if k.size == 2 && p.M == 4 {
		return is24x16(rows, cols, dense, p.N)
	}
	for r := 0; r < rows; r++ {
		src := dense[r*cols*k.size : (r+1)*cols*k.size]
		for q := 0; q < cols/p.M; q++ {
			if popcount(k.groupFlags(src[q*p.M*k.size:], p.M)) > p.N {
				return false, r, q
			}
		}
	}
	return true, 0, 0
}

func is24x16(rows, cols int, dense []byte, n int) (bool, int, int) {
	for r := 0; r < rows; r++ {
		src := dense[r*cols*2 : (r+1)*cols*2]
		for q := 0; q < cols/4; q++ {
			if popcount4(flags16(le.Uint64(src[8*q:]))) > n {
				return false, r, q
			}
		}
	}
	return true, 0, 0
}
