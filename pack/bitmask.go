package pack

import (
	"fmt"
	"math/bits"

	"github.com/sparsify/sparsify/format"
	"github.com/sparsify/sparsify/mask"
)

// elemKind is how a layout treats one dtype's elements: byte width and the
// bits that make an element nonzero (the sign bit is excluded for floats, so
// -0.0 counts as zero, as PyTorch's dense != 0).
type elemKind struct {
	size    int
	nzMask  uint32
	isFloat bool
}

func elemKindOf(dt format.DType) (elemKind, error) {
	switch dt {
	case format.F16, format.BF16:
		return elemKind{2, 0x7FFF, true}, nil
	case format.F32:
		return elemKind{4, 0x7FFFFFFF, true}, nil
	case format.F8E4M3, format.F8E5M2:
		return elemKind{1, 0x7F, true}, nil
	case format.I8, format.U8:
		return elemKind{1, 0xFF, false}, nil
	case format.I16, format.U16:
		return elemKind{2, 0xFFFF, false}, nil
	case format.I32, format.U32:
		return elemKind{4, 0xFFFFFFFF, false}, nil
	}
	return elemKind{}, fmt.Errorf("%w: 2:4 layouts take F16, BF16, F32, F8_E4M3, F8_E5M2 or integer weights, not %v", format.ErrUnsupported, dt)
}

func (k elemKind) load(b []byte) uint32 {
	switch k.size {
	case 1:
		return uint32(b[0])
	case 2:
		return uint32(le.Uint16(b))
	}
	return le.Uint32(b)
}

func (k elemKind) store(b []byte, v uint32) {
	switch k.size {
	case 1:
		b[0] = byte(v)
	case 2:
		le.PutUint16(b, uint16(v))
	default:
		le.PutUint32(b, v)
	}
}

// groupFlags returns bit i set iff element i of the group of n at g is nonzero.
func (k elemKind) groupFlags(g []byte, n int) uint32 {
	var f uint32
	for i := 0; i < n; i++ {
		if k.load(g[i*k.size:])&k.nzMask != 0 {
			f |= 1 << i
		}
	}
	return f
}

// checkDims validates a [rows, cols] matrix of elem-byte elements: positive,
// no overflow, cols a multiple of group.
func checkDims(layout string, rows, cols, elem, group int) error {
	if rows <= 0 || cols <= 0 {
		return fmt.Errorf("%w: %s needs a non-empty 2-D matrix, got [%d, %d]", ErrShape, layout, rows, cols)
	}
	if int64(rows) > maxCutlassElems/int64(cols) || int64(rows)*int64(cols)*int64(elem) > maxCutlassElems {
		return fmt.Errorf("%w: %s [%d, %d] too large", ErrShape, layout, rows, cols)
	}
	if cols%group != 0 {
		return fmt.Errorf("%w: %s needs cols (in_features) a multiple of %d, got [%d, %d]", ErrShape, layout, group, rows, cols)
	}
	return nil
}

// bitmaskFill maps the nonzero flags of a group with at most 2 nonzeros to the
// kept bits: every nonzero, then the lowest-index zeros until exactly 2 are set
// (the canonical rule of sparse-checkpoint-formats §4.2.2). 0xFF for groups with
// more than 2 nonzeros.
var bitmaskFill = func() (t [16]uint8) {
	for f := 0; f < 16; f++ {
		if popcount4(uint32(f)) > 2 {
			t[f] = 0xFF
			continue
		}
		k := f
		for i := 0; i < 4 && popcount4(uint32(k)) < 2; i++ {
			k |= 1 << i
		}
		t[f] = uint8(k)
	}
	return t
}()

// BitmaskInfo describes the tensors of a sparse-24-bitmask weight.
type BitmaskInfo struct {
	CompressedShape []int64 // [rows, cols/2], weight dtype
	BitmaskShape    []int64 // [rows, ceil(cols/8)], U8
	CompressedSize  int64
	BitmaskSize     int64
}

// BitmaskLayoutOf returns the shapes and sizes of a [rows, cols] weight of
// dtype dt in compressed-tensors' sparse-24-bitmask layout. cols must be a
// multiple of 4 (vLLM additionally needs a multiple of 8, and of 32 for its
// GEMM; verify reports that separately).
func BitmaskLayoutOf(dt format.DType, rows, cols int) (BitmaskInfo, error) {
	k, err := elemKindOf(dt)
	if err != nil {
		return BitmaskInfo{}, err
	}
	if err := checkDims("bitmask", rows, cols, k.size, 4); err != nil {
		return BitmaskInfo{}, err
	}
	bw := (cols + 7) / 8
	return BitmaskInfo{
		CompressedShape: []int64{int64(rows), int64(cols / 2)},
		BitmaskShape:    []int64{int64(rows), int64(bw)},
		CompressedSize:  int64(rows) * int64(cols/2) * int64(k.size),
		BitmaskSize:     int64(rows) * int64(bw),
	}, nil
}

// PackBitmask compresses a row-major [rows, cols] matrix into compressed-tensors'
// sparse-24-bitmask: compressed [rows, cols/2] (the kept values of every group
// in ascending column order) and bitmask U8 [rows, ceil(cols/8)] (dense column j
// of a row is bit j%8 of byte j/8, LSB first; padding bits 0). Kept = nonzero;
// groups with fewer than 2 nonzeros keep their lowest-index zeros as well, and
// those kept zeros are written as +0 bits (never -0). A group with more than 2
// nonzeros is refused (wraps mask.ErrPattern, names row and group).
func PackBitmask(dt format.DType, rows, cols int, dense []byte) (compressed, bitmask []byte, err error) {
	info, err := BitmaskLayoutOf(dt, rows, cols)
	if err != nil {
		return nil, nil, err
	}
	k, _ := elemKindOf(dt)
	if int64(len(dense)) != int64(rows)*int64(cols)*int64(k.size) {
		return nil, nil, fmt.Errorf("%w: bitmask pack: %d dense bytes for [%d, %d] %v", format.ErrFormat, len(dense), rows, cols, dt)
	}
	compressed = make([]byte, info.CompressedSize)
	bitmask = make([]byte, info.BitmaskSize)
	bw := int(info.BitmaskShape[1])
	err = parallelRows(rows, cols*k.size, 1, func(lo, hi int) error {
		for r := lo; r < hi; r++ {
			src := dense[r*cols*k.size : (r+1)*cols*k.size]
			dst := compressed[r*cols/2*k.size : (r+1)*cols/2*k.size]
			bm := bitmask[r*bw : (r+1)*bw]
			if k.size == 2 {
				if err := packBitmaskRow16(r, cols, src, dst, bm); err != nil {
					return err
				}
				continue
			}
			for q := 0; q < cols/4; q++ {
				g := src[q*4*k.size : (q+1)*4*k.size]
				f := k.groupFlags(g, 4)
				kept := bitmaskFill[f]
				if kept == 0xFF {
					return fmt.Errorf("%w: bitmask pack: row %d group %d (cols %d..%d) has %d nonzeros, want at most 2", mask.ErrPattern, r, q, 4*q, 4*q+3, popcount4(f))
				}
				bm[q/2] |= kept << (4 * (q & 1))
				d := dst[q*2*k.size:]
				j := 0
				for i := 0; i < 4; i++ {
					if kept&(1<<i) == 0 {
						continue
					}
					var v uint32
					if f&(1<<i) != 0 {
						v = k.load(g[i*k.size:])
					}
					k.store(d[j*k.size:], v)
					j++
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	return compressed, bitmask, nil
}

// CheckBitmask validates a sparse-24-bitmask weight without expanding it:
// sizes, every group keeping exactly 2 of 4, padding bits zero. Errors are
// *format.FormatError with the byte offset in the bitmask tensor.
func CheckBitmask(dt format.DType, rows, cols int, compressed, bitmask []byte) error {
	_, _, err := checkBitmask(dt, rows, cols, compressed, bitmask)
	return err
}

func checkBitmask(dt format.DType, rows, cols int, compressed, bitmask []byte) (elemKind, int, error) {
	info, err := BitmaskLayoutOf(dt, rows, cols)
	if err != nil {
		return elemKind{}, 0, err
	}
	k, _ := elemKindOf(dt)
	if int64(len(compressed)) != info.CompressedSize {
		return k, 0, &format.FormatError{Offset: -1, Msg: fmt.Sprintf("bitmask compressed: %d bytes, want %d for [%d, %d] %v", len(compressed), info.CompressedSize, rows, cols, dt)}
	}
	if int64(len(bitmask)) != info.BitmaskSize {
		return k, 0, &format.FormatError{Offset: -1, Msg: fmt.Sprintf("bitmask: %d bytes, want %d (U8 %v) for [%d, %d]", len(bitmask), info.BitmaskSize, info.BitmaskShape, rows, cols)}
	}
	bw := int(info.BitmaskShape[1])
	ng := cols / 4
	for r := 0; r < rows; r++ {
		bm := bitmask[r*bw : (r+1)*bw]
		for q := 0; q < 2*bw; q++ {
			nib := uint32(bm[q/2]>>(4*(q&1))) & 0xF
			if q >= ng {
				if nib != 0 {
					return k, 0, &format.FormatError{Offset: int64(r*bw + q/2), Msg: fmt.Sprintf("bitmask: row %d: padding bits 0x%X set after column %d", r, nib, cols)}
				}
				continue
			}
			if n := popcount4(nib); n != 2 {
				return k, 0, &format.FormatError{Offset: int64(r*bw + q/2), Msg: fmt.Sprintf("bitmask: row %d group %d (cols %d..%d) keeps %d of 4 (bits 0x%X), want exactly 2", r, q, 4*q, 4*q+3, n, nib)}
			}
		}
	}
	return k, bw, nil
}

// UnpackBitmask expands sparse-24-bitmask tensors back to dense bytes
// ([rows, cols] of dtype dt), +0 in every slot the bitmask does not keep.
// Untrusted input: sizes, popcounts and padding are checked first
// (CheckBitmask); errors never panic.
func UnpackBitmask(dt format.DType, rows, cols int, compressed, bitmask []byte) ([]byte, error) {
	k, bw, err := checkBitmask(dt, rows, cols, compressed, bitmask)
	if err != nil {
		return nil, err
	}
	dense := make([]byte, rows*cols*k.size)
	for r := 0; r < rows; r++ {
		bm := bitmask[r*bw : (r+1)*bw]
		src := compressed[r*cols/2*k.size : (r+1)*cols/2*k.size]
		dst := dense[r*cols*k.size : (r+1)*cols*k.size]
		if k.size == 2 {
			for q := 0; q < cols/4; q++ {
				p := bitPick[(bm[q/2]>>(4*(q&1)))&0xF]
				x := uint64(le.Uint32(src[4*q:]))
				le.PutUint64(dst[8*q:], (x&0xFFFF)<<(16*p.p0)|(x>>16)<<(16*p.p1))
			}
			continue
		}
		j := 0
		for q := 0; q < cols/4; q++ {
			nib := bm[q/2] >> (4 * (q & 1))
			for i := 0; i < 4; i++ {
				if nib&(1<<i) != 0 {
					copy(dst[(4*q+i)*k.size:(4*q+i+1)*k.size], src[j*k.size:(j+1)*k.size])
					j++
				}
			}
		}
	}
	return dense, nil
}

func popcount(f uint32) int { return bits.OnesCount32(f) }

// bitPick maps a kept-bits nibble with popcount 2 to its two positions.
var bitPick = func() (t [16]pick) {
	for n := 0; n < 16; n++ {
		if popcount4(uint32(n)) != 2 {
			continue
		}
		var ps []uint8
		for i := uint8(0); i < 4; i++ {
			if n&(1<<i) != 0 {
				ps = append(ps, i)
			}
		}
		t[n] = pick{nib: uint8(n), p0: ps[0], p1: ps[1]}
	}
	return t
}()

// laneKeep16 has 0xFFFF in every 16-bit lane whose flag bit is set.
var laneKeep16 = func() (t [16]uint64) {
	for f := 0; f < 16; f++ {
		for i := 0; i < 4; i++ {
			if f&(1<<i) != 0 {
				t[f] |= 0xFFFF << (16 * i)
			}
		}
	}
	return t
}()

// packBitmaskRow16 is PackBitmask's row loop for 16-bit elements, a group per
// 64-bit word.
func packBitmaskRow16(r, cols int, src, dst, bm []byte) error {
	for q := 0; q < cols/4; q++ {
		x := le.Uint64(src[8*q:])
		f := flags16(x)
		kept := bitmaskFill[f]
		if kept == 0xFF {
			return fmt.Errorf("%w: bitmask pack: row %d group %d (cols %d..%d) has %d nonzeros, want at most 2", mask.ErrPattern, r, q, 4*q, 4*q+3, popcount4(f))
		}
		bm[q/2] |= kept << (4 * (q & 1))
		p := bitPick[kept]
		y := x & laneKeep16[f] // kept zeros (and -0) become +0
		le.PutUint32(dst[4*q:], uint32(y>>(16*p.p0))&0xFFFF|uint32(y>>(16*p.p1))<<16)
	}
	return nil
}
