package kernel

import (
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
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
// kernel-friendly index form: for every packed value, its column within a
// 64-column block (one byte per value, blocked by column; see idx). The
// weight is never expanded to dense. Meta is not read after NewSparse24;
// Values must not be modified while the Sparse24 is in use.
type Sparse24 struct {
	Rows, Cols int
	Values     []float32
	Meta       []uint16

	// idx is the transcoded metadata: for every packed value its column
	// within a 64-column block, blocked by column so that the kernel reads
	// it sequentially: block b (columns 64b..64b+63) holds, for each row r,
	// the nb = (block width)/2 indices of that row's values in the block, at
	// idx[Rows*32*b + r*nb + x]. One byte per value.
	idx []uint8
}

// sparseBlock is the column block of the index form and of the sparse
// kernels (dense columns; 32 kept values per row).
const sparseBlock = 64

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
	idx := make([]uint8, len(values))
	for r := 0; r < rows; r++ {
		// Closed form of the CUTLASS reorder (spec §3.2), 16-bit meta:
		// off16(r,c) = (c/2)*(2m) + 64*B + 8*b + 4*(a/2) + 2*(c%2) + (a%2).
		bb, a, b := r/32, (r%32)/8, r%8
		rowBase := 64*bb + 8*b + 4*(a/2) + (a % 2)
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
				b, lq := q/(sparseBlock/4), q%(sparseBlock/4)
				nb := min(sparseBlock, cols-b*sparseBlock) / 2
				o := rows*(sparseBlock/2)*b + r*nb + 2*lq
				idx[o] = uint8(4*lq + int(nib&3))
				idx[o+1] = uint8(4*lq + int(nib>>2))
			}
		}
	}
	return &Sparse24{Rows: rows, Cols: cols, Values: values, Meta: meta, idx: idx}, nil
}

// SparseMatMulT computes C[m,Rows] = A[m,Cols] · Wᵀ reading the packed layout
// directly (two products per group of four instead of four), adding to C when
// acc is true.
//
// Method: for a tile of mt tokens, the activations are transposed to
// [Cols][mt]; then for each weight row and each kept value v at column j the
// kernel does acc[0:mt] += v · xT[j][0:mt] with vector loads, over column
// blocks that fit in L1. All token tiles are transposed first; then blocks of
// weight rows (read from memory once per call) are handed out to GOMAXPROCS
// goroutines.
func SparseMatMulT(c, a []float32, w *Sparse24, m int, acc bool) {
	if w == nil || w.idx == nil {
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
	tiles := (m + mt - 1) / mt
	threads := runtime.GOMAXPROCS(0)
	if R*K*min(m, mt) < parallelMinFlops {
		threads = 1
	}
	// 1. Transpose every token tile once: xt[t] holds tokens t*mt .. t*mt+mt
	//    (zero beyond m) as [Cols][mt].
	xtBuf := getBuf(tiles * K * mt)
	defer bufPool.Put(xtBuf)
	xt := *xtBuf
	parallel(tiles, threads, func(t int) {
		t0 := t * mt
		transposeTile(xt[t*K*mt:(t+1)*K*mt], a[t0*K:], K, min(mt, m-t0), mt)
	})
	// 2. Blocks of weight rows: each block's values and indices come from
	//    memory once and serve every token tile while they sit in cache; the
	//    block's partial results (rows × all tokens) stay in L2.
	rb := min(max(131072/(tiles*mt)/8*8, 8), 256, R)
	blocks := (R + rb - 1) / rb
	parallel(blocks, threads, func(b int) {
		r0, r1 := b*rb, min(b*rb+rb, R)
		ctBuf := getBuf((r1 - r0) * tiles * mt)
		sparseRowsBlock(ks, xt, w, *ctBuf, c, m, r0, r1, acc)
		bufPool.Put(ctBuf)
	})
}

// parallel runs f(0..n-1) on up to threads goroutines, handing out indices
// in order (dynamic, so a slow core on a shared machine does less).
func parallel(n, threads int, f func(i int)) {
	if threads <= 1 || n <= 1 {
		for i := 0; i < n; i++ {
			f(i)
		}
		return
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for s := 0; s < min(threads, n); s++ {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				f(i)
			}
		})
	}
	wg.Wait()
}

// sparseRowsBlock computes weight rows r0..r1 for all m tokens and writes
// C[:, r0:r1]. ct holds (r1-r0) × tiles × mt partial sums: tile t, row r at
// ct[(t*(r1-r0)+r)*mt:].
func sparseRowsBlock(ks kernelSet, xt []float32, w *Sparse24, ct, c []float32, m, r0, r1 int, acc bool) {
	mt, K, R := ks.mt, w.Cols, w.Rows
	tiles := (m + mt - 1) / mt
	rows := r1 - r0
	half := K / 2
	clear(ct[:rows*tiles*mt])
	var sink float32
	for kb := 0; kb < K; kb += sparseBlock {
		width := min(sparseBlock, K-kb)
		nb := width / 2
		vals := w.Values[r0*half+kb/2:]
		idx := w.idx[R*(sparseBlock/2)*(kb/sparseBlock)+r0*nb:]
		for t := 0; t < tiles; t++ {
			ks.sparse(xt[(t*K+kb)*mt:(t*K+kb+width)*mt], vals, half, idx, nb, ct[t*rows*mt:], rows)
			if t == 0 && kb+sparseBlock < K {
				// Touch the next block's values (two cache lines per row,
				// one memory stream per row) while this block is hot, so the
				// next block does not wait on memory one row at a time.
				next := w.Values[r0*half+kb/2+nb:]
				for r := 0; r < rows; r++ {
					sink += next[r*half] + next[r*half+min(16, K-kb-width)/2*2-1]
				}
			}
		}
	}
	sparseSink = sink
	// Write C[:, r0:r1] in 16-token strips: each read of ct is one cache
	// line, and the 16 rows of C being written stay in L1.
	for t := 0; t < tiles; t++ {
		part := ct[t*rows*mt : (t+1)*rows*mt]
		tm := min(mt, m-t*mt)
		for i0 := 0; i0 < tm; i0 += 16 {
			ib := min(16, tm-i0)
			for r := 0; r < rows; r++ {
				src := part[r*mt+i0 : r*mt+i0+ib]
				dst := c[(t*mt+i0)*R+r0+r:]
				if acc {
					for ii, v := range src {
						dst[ii*R] += v
					}
				} else {
					for ii, v := range src {
						dst[ii*R] = v
					}
				}
			}
		}
	}
}

// sparseSink keeps the prefetching loads of sparseRowsBlock alive.
var sparseSink float32

// transposeTile writes the tile of tokens x[0:tm] (rows of K features) as
// xt[j*mt+i] = x[i*K+j] (feature-major); tokens tm..mt are zero. Rows of x
// are read front to back; the writes fill 16 tokens of a cache line at a time.
func transposeTile(xt, x []float32, K, tm, mt int) {
	const lg = 16
	for g := 0; g < mt; g += lg {
		for li := 0; li < lg; li++ {
			i := g + li
			if i >= tm {
				for j := 0; j < K; j++ {
					xt[j*mt+i] = 0
				}
				continue
			}
			for j, v := range x[i*K : i*K+K] {
				xt[j*mt+i] = v
			}
		}
	}
}
