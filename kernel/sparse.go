package kernel

import (
	"errors"
	"fmt"
	"runtime"
	"sync"
)

// Errors returned by NewSparse24 (wrapped with details; test with errors.Is).
var (
	// ErrShape: the dimensions or slice lengths do not fit the CUTLASS layout.
	ErrShape = errors.New("kernel: bad 2:4 layout shape")
	// ErrMeta: a metadata nibble is not one of the six valid 2:4 codes.
	ErrMeta = errors.New("kernel: invalid 2:4 metadata")
)

// Sparse24 is a 2:4 sparse weight [Rows, Cols] held in NVIDIA's CUTLASS layout:
// Values are the kept values [Rows, Cols/2] (as float32, in packed order) and
// Meta the reordered 16-bit metadata words exactly as stored (P.meta, I16;
// the permutation of spec §3, closed form §3.2).
//
// NewSparse24 uses Values in place (no copy) and transcodes Meta once into a
// kernel-friendly index form: for every packed value, its dense column
// (an int32 per value, row-major like Values). The weight is never expanded to
// dense. Values and Meta must not be modified afterwards.
type Sparse24 struct {
	Rows, Cols int
	Values     []float32
	Meta       []uint16

	cols []int32 // dense column of Values[i]; len(Values)
}

// valid24 marks the six valid 2:4 nibbles (idx0 < idx1, spec §1.1).
var valid24 = [16]bool{0x4: true, 0x8: true, 0xC: true, 0x9: true, 0xD: true, 0xE: true}

// NewSparse24 validates the layout and decodes the metadata. Shape rules
// (spec §1.5, 16-bit metadata): rows and cols positive multiples of 32,
// len(values) = rows*cols/2, len(meta) = rows*cols/16. Every nibble must be a
// valid 2:4 code; the error names the row and group of the first bad one.
func NewSparse24(rows, cols int, values []float32, meta []uint16) (*Sparse24, error) {
	if rows <= 0 || cols <= 0 || rows%32 != 0 || cols%32 != 0 {
		return nil, fmt.Errorf("%w: %d×%d: rows and cols must be positive multiples of 32", ErrShape, rows, cols)
	}
	if rows > 1<<30/cols {
		return nil, fmt.Errorf("%w: %d×%d is too large", ErrShape, rows, cols)
	}
	if len(values) != rows*cols/2 {
		return nil, fmt.Errorf("%w: %d×%d needs %d values, have %d", ErrShape, rows, cols, rows*cols/2, len(values))
	}
	if len(meta) != rows*cols/16 {
		return nil, fmt.Errorf("%w: %d×%d needs %d meta words, have %d", ErrShape, rows, cols, rows*cols/16, len(meta))
	}
	nc := cols / 16 // logical meta words per row
	half := cols / 2
	idx := make([]int32, len(values))
	for r := 0; r < rows; r++ {
		// Closed form of the CUTLASS reorder (spec §3.2), 16-bit meta:
		// off16(r,c) = (c/2)*(2m) + 64*B + 8*b + 4*(a/2) + 2*(c%2) + (a%2).
		bb, a, b := r/32, (r%32)/8, r%8
		rowBase := 64*bb + 8*b + 4*(a/2) + (a % 2)
		out := idx[r*half : r*half+half]
		for c := 0; c < nc; c++ {
			off := (c/2)*(2*rows) + rowBase + 2*(c%2)
			w := meta[off]
			for i := 0; i < 4; i++ {
				nib := (w >> (4 * i)) & 0xF
				q := 4*c + i // group within the row
				if !valid24[nib] {
					return nil, fmt.Errorf("%w: row %d, group %d (columns %d..%d): nibble %#x in meta word %d is not a 2:4 code",
						ErrMeta, r, q, 4*q, 4*q+3, nib, off)
				}
				out[2*q] = int32(4*q + int(nib&3))
				out[2*q+1] = int32(4*q + int(nib>>2))
			}
		}
	}
	return &Sparse24{Rows: rows, Cols: cols, Values: values, Meta: meta, cols: idx}, nil
}

// SparseMatMulT computes C[m,Rows] = A[m,Cols] · Wᵀ reading the packed layout
// directly (two products per group of four instead of four), adding to C when
// acc is true.
//
// Method: for a tile of mt tokens, the activations are transposed to
// [Cols][mt]; then for each weight row and each kept value v at column j the
// kernel does acc[0:mt] += v · xT[j][0:mt] with vector loads, over column
// blocks that fit in L1. Rows are split across GOMAXPROCS goroutines.
func SparseMatMulT(c, a []float32, w *Sparse24, m int, acc bool) {
	if w == nil || w.cols == nil {
		panic("kernel: SparseMatMulT: weight not built by NewSparse24")
	}
	R, K := w.Rows, w.Cols
	if m < 0 {
		panic(fmt.Sprintf("kernel: SparseMatMulT: negative m=%d", m))
	}
	if len(a) < m*K {
		panic(fmt.Sprintf("kernel: SparseMatMulT: A has %d elements, need m*Cols = %d", len(a), m*K))
	}
	if len(c) < m*R {
		panic(fmt.Sprintf("kernel: SparseMatMulT: C has %d elements, need m*Rows = %d", len(c), m*R))
	}
	if m == 0 {
		return
	}
	ks := active
	mt := ks.mt
	xtBuf := getBuf(K * mt)
	ctBuf := getBuf(R * mt)
	defer bufPool.Put(xtBuf)
	defer bufPool.Put(ctBuf)
	xt, ct := *xtBuf, *ctBuf

	threads := runtime.GOMAXPROCS(0)
	for t0 := 0; t0 < m; t0 += mt {
		tm := min(mt, m-t0)
		transposeTile(xt, a[t0*K:], K, tm, mt)
		// Work for this tile: R*K/2 kept values × mt lanes.
		t := 1
		if threads > 1 && R*K*mt >= parallelMinFlops {
			t = min(threads, R/8)
		}
		if t <= 1 {
			sparseRowsBlock(ks, xt, w, ct, c, t0, tm, 0, R, acc)
			continue
		}
		var wg sync.WaitGroup
		for s := 0; s < t; s++ {
			r0, r1 := R*s/t, R*(s+1)/t
			wg.Go(func() { sparseRowsBlock(ks, xt, w, ct, c, t0, tm, r0, r1, acc) })
		}
		wg.Wait()
	}
}

// sparseKC is the column block (dense columns) of the sparse kernel: the
// block of the transposed activations it touches (sparseKC × mt floats) stays
// in L1.
func sparseKC(mt int) int { return max(32, 8192/mt) }

// sparseRowsBlock computes rows r0..r1 of the weight for one token tile and
// writes C[t0:t0+tm, r0:r1].
func sparseRowsBlock(ks kernelSet, xt []float32, w *Sparse24, ct, c []float32, t0, tm, r0, r1 int, acc bool) {
	mt, K, R := ks.mt, w.Cols, w.Rows
	half := K / 2
	kcb := sparseKC(mt)
	part := ct[r0*mt : r1*mt]
	clear(part)
	for kb := 0; kb < K; kb += kcb {
		nk := min(kcb, K-kb) / 2
		base := r0*half + kb/2
		ks.sparse(xt, w.Values[base:], w.cols[base:], half, nk, part, r1-r0)
	}
	for i := 0; i < tm; i++ {
		dst := c[(t0+i)*R+r0 : (t0+i)*R+r1]
		if acc {
			for r := range dst {
				dst[r] += part[r*mt+i]
			}
		} else {
			for r := range dst {
				dst[r] = part[r*mt+i]
			}
		}
	}
}

// transposeTile writes xt[j*mt+i] = x[i*K+j] for i < tm, zero for tm ≤ i < mt.
func transposeTile(xt, x []float32, K, tm, mt int) {
	const blk = 16
	for j0 := 0; j0 < K; j0 += blk {
		j1 := min(j0+blk, K)
		for i := 0; i < tm; i++ {
			row := x[i*K+j0 : i*K+j1]
			for j, v := range row {
				xt[(j0+j)*mt+i] = v
			}
		}
		if tm < mt {
			for j := j0; j < j1; j++ {
				clear(xt[j*mt+tm : j*mt+mt])
			}
		}
	}
}
