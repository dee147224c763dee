package pack

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"runtime"
	"sync"

	"github.com/sparsify/sparsify/format"
)

// ErrShape reports a matrix shape a layout cannot hold. The wrapping error
// states the rule that was broken.
var ErrShape = errors.New("pack: shape not supported by layout")

var le = binary.LittleEndian

// cutlassGeom is the CUTLASS geometry of one weight dtype (spec §1.5, §5.2).
type cutlassGeom struct {
	elem        int // bytes per dense element
	group       int // dense elements per group (4, or 2 for F32's 1:2)
	metaBytes   int // 2 (I16 meta) or 4 (I32 meta)
	nibbles     int // nibbles (groups) per meta word
	colsPerWord int // dense columns described by one meta word
	minRows     int // rows: >= and a multiple of this (PyTorch sparse_min_rows)
	minCols     int // cols: >= and a multiple of this (PyTorch sparse_min_cols)
	metaDType   format.DType
}

func cutlassGeomOf(dt format.DType) (cutlassGeom, error) {
	switch dt {
	case format.F16, format.BF16:
		return cutlassGeom{elem: 2, group: 4, metaBytes: 2, nibbles: 4, colsPerWord: 16, minRows: 32, minCols: 64, metaDType: format.I16}, nil
	case format.I8:
		return cutlassGeom{elem: 1, group: 4, metaBytes: 4, nibbles: 8, colsPerWord: 32, minRows: 16, minCols: 128, metaDType: format.I32}, nil
	case format.F32:
		return cutlassGeom{elem: 4, group: 2, metaBytes: 2, nibbles: 4, colsPerWord: 8, minRows: 32, minCols: 32, metaDType: format.I16}, nil
	}
	return cutlassGeom{}, fmt.Errorf("%w: cutlass layout takes F16, BF16, I8 (2:4) or F32 (1:2), not %v", format.ErrUnsupported, dt)
}

// maxCutlassElems bounds rows*cols so that byte sizes never overflow int.
const maxCutlassElems = 1 << 40

// CutlassShapeOK reports whether a [rows, cols] weight of dtype dt can be held
// in the CUTLASS layout. The rules are PyTorch's to_sparse_semi_structured
// (CUTLASS backend): both dimensions at least, and a multiple of, the sparse
// minimum of the dtype: F16/BF16 32x64, I8 16x128, F32 32x32. The error wraps
// ErrShape (or format.ErrUnsupported for a dtype) and states the rule.
func CutlassShapeOK(dt format.DType, rows, cols int) error {
	g, err := cutlassGeomOf(dt)
	if err != nil {
		return err
	}
	return g.shapeOK(dt, rows, cols)
}

func (g cutlassGeom) shapeOK(dt format.DType, rows, cols int) error {
	if rows < g.minRows || rows%g.minRows != 0 {
		return fmt.Errorf("%w: cutlass %v needs rows (out_features) a positive multiple of %d (PyTorch to_sparse_semi_structured rule), got [%d, %d]", ErrShape, dt, g.minRows, rows, cols)
	}
	if cols < g.minCols || cols%g.minCols != 0 {
		return fmt.Errorf("%w: cutlass %v needs cols (in_features) a positive multiple of %d (PyTorch to_sparse_semi_structured rule), got [%d, %d]", ErrShape, dt, g.minCols, rows, cols)
	}
	if int64(rows)*int64(cols) > maxCutlassElems || rows > maxCutlassElems || cols > maxCutlassElems {
		return fmt.Errorf("%w: cutlass [%d, %d] too large", ErrShape, rows, cols)
	}
	return nil
}

// CutlassInfo describes the two tensors of a CUTLASS-packed weight.
type CutlassInfo struct {
	ValuesShape []int64      // [rows, cols/2], weight dtype
	MetaShape   []int64      // [rows, meta_ncols]
	MetaDType   format.DType // I16 (F16/BF16/F32) or I32 (I8)
	ValuesSize  int64        // bytes
	MetaSize    int64        // bytes
}

// CutlassLayoutOf returns the tensor shapes, meta dtype and byte sizes of a
// [rows, cols] weight of dtype dt packed in the CUTLASS layout.
func CutlassLayoutOf(dt format.DType, rows, cols int) (CutlassInfo, error) {
	g, err := cutlassGeomOf(dt)
	if err != nil {
		return CutlassInfo{}, err
	}
	if err := g.shapeOK(dt, rows, cols); err != nil {
		return CutlassInfo{}, err
	}
	nc := cols / g.colsPerWord
	keptPerRow := cols / 2 // 2 of 4, or 1 of 2
	return CutlassInfo{
		ValuesShape: []int64{int64(rows), int64(keptPerRow)},
		MetaShape:   []int64{int64(rows), int64(nc)},
		MetaDType:   g.metaDType,
		ValuesSize:  int64(rows) * int64(keptPerRow) * int64(g.elem),
		MetaSize:    int64(rows) * int64(nc) * int64(g.metaBytes),
	}, nil
}

// metaBase is the reordered offset (in meta words) of logical word (r, 0);
// word (r, c) lives at (c/2)*2m + metaBase(r) + 2*(c%2) (spec §3.2).
func metaBase(metaBytes, r int) int {
	if metaBytes == 2 {
		a := (r % 32) / 8
		return 64*(r/32) + 8*(r%8) + 4*(a/2) + a%2
	}
	return 32*(r/16) + 4*(r%8) + (r%16)/8
}

// metaOffset is the reordered word offset of logical meta word (r, c).
func metaOffset(metaBytes, rows, r, c int) int {
	return (c/2)*2*rows + metaBase(metaBytes, r) + 2*(c%2)
}

// MetaOffset is the index (in meta words, not bytes) at which the reordered
// CUTLASS buffer stores logical meta word (r, c) of a matrix with rows rows, for
// 16-bit (metaBytes 2) or 32-bit (metaBytes 4) meta. Exposed for GEMMs that
// read the layout directly.
func MetaOffset(metaBytes, rows, r, c int) int { return metaOffset(metaBytes, rows, r, c) }

// pick describes one 4-element group: its metadata nibble and the two kept
// positions.
type pick struct{ nib, p0, p1 uint8 }

// pickTab maps the nonzero flags of a group (bit i = position i nonzero) to
// the nibble current PyTorch writes (spec §2.1; m2 is not used).
var pickTab = func() (t [16]pick) {
	for f := 0; f < 16; f++ {
		m0, m1, m3 := f&1 != 0, f&2 != 0, f&8 != 0
		e0 := m0 && m1
		e1 := !m0 && m1
		e2 := !m0 && !m1
		idx0 := b2i(e1) | b2i(e2)<<1
		idx1 := b2i(e0 || e2 || m3) | b2i(e1 || !m1)<<1
		t[f] = pick{nib: uint8(idx0 | idx1<<2), p0: uint8(idx0), p1: uint8(idx1)}
	}
	return t
}()

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// nibble24 decodes a 2:4 nibble: ok only for the six codes with idx0 < idx1.
var nibble24 = func() (t [16]pick) {
	for n := 0; n < 16; n++ {
		i0, i1 := n&3, n>>2
		if i0 < i1 {
			t[n] = pick{nib: uint8(n), p0: uint8(i0), p1: uint8(i1)}
		} else {
			t[n] = pick{nib: 0xFF}
		}
	}
	return t
}()

// flags16 returns bit i set iff 16-bit float lane i of x is not ±0: bit 15
// of each lane is set by the add iff the lane's low 15 bits are nonzero, and
// the multiply gathers the four lane bits at bits 45..48 (no carries: the
// partial products land on distinct bit positions).
func flags16(x uint64) uint32 {
	t := ((x & 0x7FFF7FFF7FFF7FFF) + 0x7FFF7FFF7FFF7FFF) & 0x8000800080008000
	return uint32(((t>>15)*0x200040008001)>>45) & 0xF
}

// pick16 is pickTab for 16-bit lanes, as one word: nibble in bits 0..3, the
// bit shifts of the two kept lanes (16·position) in bits 8..15 and 16..23.
var pick16 = func() (t [16]uint32) {
	for f, p := range pickTab {
		t[f] = uint32(p.nib) | uint32(16*p.p0)<<8 | uint32(16*p.p1)<<16
	}
	return t
}()

// keep16 returns the two kept 16-bit lanes of x as one 32-bit word.
func keep16(x uint64, e uint32) uint32 {
	return uint32(x>>((e>>8)&63))&0xFFFF | uint32(x>>((e>>16)&63))<<16
}

// flags8 returns bit i set iff int8 lane i of x is nonzero.
func flags8(x uint32) uint32 {
	t := (((x & 0x7F7F7F7F) + 0x7F7F7F7F) | x) & 0x80808080
	return ((t >> 7) | (t >> 14) | (t >> 21) | (t >> 28)) & 0xF
}

// parallelRows runs f over row ranges [lo, hi) aligned to align rows, on up
// to GOMAXPROCS goroutines when the matrix is large enough to pay.
func parallelRows(rows, rowBytes, align int, f func(lo, hi int) error) error {
	workers := runtime.GOMAXPROCS(0)
	if total := rows * rowBytes; total < 1<<20 || workers < 2 {
		return f(0, rows)
	}
	chunks := rows / align
	if workers > chunks {
		workers = chunks
	}
	per := (chunks + workers - 1) / workers * align
	var wg sync.WaitGroup
	errs := make([]error, workers)
	for w := 0; w < workers; w++ {
		lo, hi := w*per, min((w+1)*per, rows)
		if lo >= hi {
			break
		}
		wg.Add(1)
		go func(w, lo, hi int) {
			defer wg.Done()
			errs[w] = f(lo, hi)
		}(w, lo, hi)
	}
	wg.Wait()
	for _, err := range errs { // the first error in row order
		if err != nil {
			return err
		}
	}
	return nil
}

// PackCutlass compresses a row-major [rows, cols] matrix of dtype dt (raw
// little-endian bytes) into CUTLASS kept values [rows, cols/2] and reordered
// metadata, byte-exact with PyTorch's to_sparse_semi_structured (CUTLASS
// backend, current encoding). F16/BF16 (I16 meta) and I8 (I32 meta) take 2:4,
// F32 takes 1:2 (I16 meta).
//
// Like PyTorch it never fails on content: a group with more than 2 nonzeros (F32:
// 2 of 2) is truncated per PyTorch's table, so callers must check Is24 (IsPattern
// for 1:2) first. Kept values are copied bit-exactly.
func PackCutlass(dt format.DType, rows, cols int, dense []byte) (values, meta []byte, err error) {
	info, err := CutlassLayoutOf(dt, rows, cols)
	if err != nil {
		return nil, nil, err
	}
	values = make([]byte, info.ValuesSize)
	meta = make([]byte, info.MetaSize)
	if err := PackCutlassInto(dt, rows, cols, dense, values, meta); err != nil {
		return nil, nil, err
	}
	return values, meta, nil
}

// PackCutlassInto is PackCutlass into caller-provided buffers of exactly the
// sizes CutlassLayoutOf gives (for buffer reuse).
func PackCutlassInto(dt format.DType, rows, cols int, dense, values, meta []byte) error {
	info, err := CutlassLayoutOf(dt, rows, cols)
	if err != nil {
		return err
	}
	g, _ := cutlassGeomOf(dt)
	if int64(len(dense)) != int64(rows)*int64(cols)*int64(g.elem) {
		return fmt.Errorf("%w: cutlass pack: %d dense bytes for [%d, %d] %v", format.ErrFormat, len(dense), rows, cols, dt)
	}
	if int64(len(values)) != info.ValuesSize || int64(len(meta)) != info.MetaSize {
		return fmt.Errorf("pack: cutlass output buffers of %d and %d bytes, want %d and %d", len(values), len(meta), info.ValuesSize, info.MetaSize)
	}
	return parallelRows(rows, cols*g.elem, g.minRows, func(lo, hi int) error {
		switch g.elem {
		case 2:
			packRows16(rows, cols, lo, hi, dense, values, meta)
		case 1:
			packRows8(rows, cols, lo, hi, dense, values, meta)
		case 4:
			packRows32(rows, cols, lo, hi, dense, values, meta)
		}
		return nil
	})
}

func packRows16(rows, cols, lo, hi int, dense, values, meta []byte) {
	nc := cols / 16
	panel := 2 * rows * 2 // bytes between meta column pairs
	for r := lo; r < hi; r++ {
		src := dense[r*cols*2 : (r+1)*cols*2]
		dst := values[r*cols : (r+1)*cols]
		base := metaBase(2, r) * 2
		for c := 0; c < nc; c++ {
			s := src[c*32 : c*32+32]
			d := dst[c*16 : c*16+16]
			x0, x1, x2, x3 := le.Uint64(s[0:]), le.Uint64(s[8:]), le.Uint64(s[16:]), le.Uint64(s[24:])
			e0, e1, e2, e3 := pick16[flags16(x0)], pick16[flags16(x1)], pick16[flags16(x2)], pick16[flags16(x3)]
			le.PutUint32(d[0:], keep16(x0, e0))
			le.PutUint32(d[4:], keep16(x1, e1))
			le.PutUint32(d[8:], keep16(x2, e2))
			le.PutUint32(d[12:], keep16(x3, e3))
			w := uint16(e0&0xF | (e1&0xF)<<4 | (e2&0xF)<<8 | (e3&0xF)<<12)
			off := (c>>1)*panel + base + (c&1)*4
			le.PutUint16(meta[off:], w)
		}
	}
}

func packRows8(rows, cols, lo, hi int, dense, values, meta []byte) {
	nc := cols / 32
	panel := 2 * rows * 4
	for r := lo; r < hi; r++ {
		src := dense[r*cols : (r+1)*cols]
		dst := values[r*cols/2 : (r+1)*cols/2]
		base := metaBase(4, r) * 4
		for c := 0; c < nc; c++ {
			s := src[c*32 : c*32+32]
			d := dst[c*16 : c*16+16]
			var w uint32
			for i := 0; i < 4; i++ { // two groups per 64-bit load
				x := le.Uint64(s[8*i:])
				t := (((x & 0x7F7F7F7F7F7F7F7F) + 0x7F7F7F7F7F7F7F7F) | x) & 0x8080808080808080
				f := uint32(((t >> 7) * 0x0102040810204080) >> 56)
				pa, pb := pickTab[f&0xF], pickTab[f>>4]
				hiX := x >> 32
				le.PutUint32(d[4*i:], uint32(x>>((8*pa.p0)&63))&0xFF|uint32(x>>((8*pa.p1)&63))&0xFF<<8|
					uint32(hiX>>((8*pb.p0)&63))&0xFF<<16|uint32(hiX>>((8*pb.p1)&63))<<24)
				w |= (uint32(pa.nib) | uint32(pb.nib)<<4) << (8 * i)
			}
			off := (c>>1)*panel + base + (c&1)*8
			le.PutUint32(meta[off:], w)
		}
	}
}

func packRows32(rows, cols, lo, hi int, dense, values, meta []byte) {
	nc := cols / 8
	panel := 2 * rows * 2
	for r := lo; r < hi; r++ {
		src := dense[r*cols*4 : (r+1)*cols*4]
		dst := values[r*cols*2 : (r+1)*cols*2]
		base := metaBase(2, r) * 2
		for c := 0; c < nc; c++ {
			s := src[c*32 : c*32+32]
			d := dst[c*16 : c*16+16]
			var w uint16
			for i := 0; i < 4; i++ {
				x := le.Uint64(s[8*i:])
				// PyTorch feeds flags (f0, f0, f1, f1): first nonzero → 0x4 keep
				// first, else 0xE keep second. nz is 1 iff the first is not ±0.
				nz := ((uint32(x) & 0x7FFFFFFF) + 0x7FFFFFFF) >> 31
				le.PutUint32(d[4*i:], uint32(x>>(((nz^1)<<5)&63)))
				w |= uint16(0xE-0xA*nz) << (4 * i)
			}
			off := (c>>1)*panel + base + (c&1)*4
			le.PutUint16(meta[off:], w)
		}
	}
}

// checkCutlassSizes validates shape and buffer sizes for unpack/check.
func checkCutlassSizes(dt format.DType, rows, cols int, values, meta []byte) (cutlassGeom, error) {
	info, err := CutlassLayoutOf(dt, rows, cols)
	if err != nil {
		return cutlassGeom{}, err
	}
	g, _ := cutlassGeomOf(dt)
	if int64(len(values)) != info.ValuesSize {
		return g, &format.FormatError{Offset: -1, Msg: fmt.Sprintf("cutlass values: %d bytes, want %d for [%d, %d] %v", len(values), info.ValuesSize, rows, cols, dt)}
	}
	if int64(len(meta)) != info.MetaSize {
		return g, &format.FormatError{Offset: -1, Msg: fmt.Sprintf("cutlass meta: %d bytes, want %d (%v %v) for [%d, %d] %v", len(meta), info.MetaSize, info.MetaDType, info.MetaShape, rows, cols, dt)}
	}
	return g, nil
}

// badNibble returns the error for an invalid nibble; off is the byte offset of
// the meta word inside the meta tensor.
func badNibble(g cutlassGeom, r, c, i int, nib uint32, off int) error {
	want := "one of 0x4 0x8 0x9 0xC 0xD 0xE (2:4)"
	if g.group == 2 {
		want = "0x4 or 0xE (1:2)"
	}
	return &format.FormatError{Offset: int64(off), Msg: fmt.Sprintf("cutlass meta: row %d group %d (dense cols %d..%d): nibble 0x%X is not %s",
		r, c*g.nibbles+i, (c*g.nibbles+i)*g.group, (c*g.nibbles+i+1)*g.group-1, nib, want)}
}

// CheckCutlass validates a CUTLASS-packed weight without unpacking it: the shape
// rules, both buffer sizes, and that every metadata nibble is one of the six
// valid 2:4 codes (two for F32's 1:2). Errors are *format.FormatError with the
// byte offset inside the meta tensor and the row and group.
func CheckCutlass(dt format.DType, rows, cols int, values, meta []byte) error {
	g, err := checkCutlassSizes(dt, rows, cols, values, meta)
	if err != nil {
		return err
	}
	// Every word of the buffer is one logical word; scan in storage order and
	// map back only on error.
	n := len(meta) / g.metaBytes
	for o := 0; o < n; o++ {
		var w uint32
		if g.metaBytes == 2 {
			w = uint32(le.Uint16(meta[2*o:]))
		} else {
			w = le.Uint32(meta[4*o:])
		}
		for i := 0; i < g.nibbles; i++ {
			nib := (w >> (4 * i)) & 0xF
			if !validNibble(g, nib) {
				r, c := metaInverse(g.metaBytes, rows, o)
				return badNibble(g, r, c, i, nib, o*g.metaBytes)
			}
		}
	}
	return nil
}

func validNibble(g cutlassGeom, nib uint32) bool {
	if g.group == 2 {
		return nib == 0x4 || nib == 0xE
	}
	return nibble24[nib].nib != 0xFF
}

// metaInverse maps a reordered word index back to its logical (row, col)
// (spec §3.2 inverse).
func metaInverse(metaBytes, rows, o int) (r, c int) {
	j, x := o/(2*rows), o%(2*rows)
	if metaBytes == 2 {
		B, y := x/64, x%64
		b, z := y/8, y%8
		return 32*B + 8*(2*(z/4)+z%2) + b, 2*j + (z/2)%2
	}
	B, y := x/32, x%32
	b, z := y/4, y%4
	return 16*B + 8*(z%2) + b, 2*j + z/2
}

// UnpackCutlass expands CUTLASS values and metadata back to dense bytes
// ([rows, cols] of dtype dt). Pruned slots are +0. Untrusted input: a size
// mismatch or an invalid nibble is a *format.FormatError naming the row and
// group (offset = byte offset in the meta tensor), never a panic.
func UnpackCutlass(dt format.DType, rows, cols int, values, meta []byte) ([]byte, error) {
	g, err := checkCutlassSizes(dt, rows, cols, values, meta)
	if err != nil {
		return nil, err
	}
	dense := make([]byte, rows*cols*g.elem)
	if err := unpackCutlassInto(g, rows, cols, values, meta, dense); err != nil {
		return nil, err
	}
	return dense, nil
}

// UnpackCutlassInto is UnpackCutlass into a caller-provided buffer of exactly
// rows*cols*elem bytes (every byte is written).
func UnpackCutlassInto(dt format.DType, rows, cols int, values, meta, dense []byte) error {
	g, err := checkCutlassSizes(dt, rows, cols, values, meta)
	if err != nil {
		return err
	}
	if len(dense) != rows*cols*g.elem {
		return fmt.Errorf("pack: cutlass unpack buffer of %d bytes, want %d", len(dense), rows*cols*g.elem)
	}
	return unpackCutlassInto(g, rows, cols, values, meta, dense)
}

func unpackCutlassInto(g cutlassGeom, rows, cols int, values, meta, dense []byte) error {
	return parallelRows(rows, cols*g.elem, g.minRows, func(lo, hi int) error {
		nc := cols / g.colsPerWord
		panel := 2 * rows * g.metaBytes
		for r := lo; r < hi; r++ {
			base := metaBase(g.metaBytes, r) * g.metaBytes
			rowDense := dense[r*cols*g.elem : (r+1)*cols*g.elem]
			rowVals := values[r*cols/2*g.elem : (r+1)*cols/2*g.elem]
			for c := 0; c < nc; c++ {
				off := (c>>1)*panel + base + (c&1)*2*g.metaBytes
				d := rowDense[c*32 : c*32+32] // every meta word covers 32 dense bytes
				v := rowVals[c*16 : c*16+16]
				switch g.elem {
				case 2:
					w := uint32(le.Uint16(meta[off:]))
					for i := 0; i < 4; i++ {
						p := nibble24[(w>>(4*i))&0xF]
						if p.nib == 0xFF {
							return badNibble(g, r, c, i, (w>>(4*i))&0xF, off)
						}
						x := le.Uint32(v[4*i:])
						le.PutUint64(d[8*i:], uint64(x&0xFFFF)<<((16*p.p0)&63)|uint64(x>>16)<<((16*p.p1)&63))
					}
				case 1:
					w := le.Uint32(meta[off:])
					for i := 0; i < 8; i++ {
						p := nibble24[(w>>(4*i))&0xF]
						if p.nib == 0xFF {
							return badNibble(g, r, c, i, (w>>(4*i))&0xF, off)
						}
						x := uint32(le.Uint16(v[2*i:]))
						le.PutUint32(d[4*i:], (x&0xFF)<<((8*p.p0)&31)|(x>>8)<<((8*p.p1)&31))
					}
				case 4:
					w := uint32(le.Uint16(meta[off:]))
					for i := 0; i < 4; i++ {
						x := uint64(le.Uint32(v[4*i:]))
						switch (w >> (4 * i)) & 0xF {
						case 0x4:
							le.PutUint64(d[8*i:], x)
						case 0xE:
							le.PutUint64(d[8*i:], x<<32)
						default:
							return badNibble(g, r, c, i, (w>>(4*i))&0xF, off)
						}
					}
				}
			}
		}
		return nil
	})
}

// popcount4 is the number of set bits of a nibble.
func popcount4(n uint32) int { return bits.OnesCount32(n & 0xF) }
