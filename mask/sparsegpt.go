package mask

import (
	"errors"
	"fmt"
	"math"
	"runtime"
	"sync"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas32"
	"gonum.org/v1/gonum/blas/blas64"
	"gonum.org/v1/gonum/lapack/lapack64"
)

// ErrNotPositiveDefinite reports a dampened Hessian whose Cholesky
// factorisation failed (the reference raises the same way).
var ErrNotPositiveDefinite = errors.New("mask: Hessian not positive definite after dampening")

// SparseGPTOptions are the knobs of SparseGPT (spec §3.3 / §3.4 defaults).
type SparseGPTOptions struct {
	// BlockSize is the number of columns per lazy-update block (128). It must
	// be a multiple of the pattern's M so that groups never straddle blocks.
	BlockSize int
	// PercDamp is the dampening added to the diagonal as a fraction of its
	// mean (0.01).
	PercDamp float64
	// NoUpdate chooses every group from the ORIGINAL weights, w²/U_jj², without
	// the OBS updates: MaskLLM's Megatron prior. The default (false) is the
	// IST-DASLab algorithm, whose mask differs.
	NoUpdate bool
}

// DefaultSparseGPTOptions are the reference settings: block 128, 1% dampening.
var DefaultSparseGPTOptions = SparseGPTOptions{BlockSize: 128, PercDamp: 0.01}

func (o SparseGPTOptions) withDefaults() SparseGPTOptions {
	if o.BlockSize == 0 {
		o.BlockSize = DefaultSparseGPTOptions.BlockSize
	}
	if o.PercDamp == 0 {
		o.PercDamp = DefaultSparseGPTOptions.PercDamp
	}
	return o
}

// SparseGPT prunes the row-major [rows, cols] weight w to the N:M pattern p
// with the SparseGPT algorithm of IST-DASLab/sparsegpt (spec §3.3), given the
// layer's input Hessian H = (2/n) Σ x xᵀ as a row-major [cols, cols] matrix
// (see Hessian). It returns the mask and the updated weights (zeros where
// pruned, OBS-corrected survivors). w and H are not modified. The "mask only"
// variant is the returned mask applied to the original w.
//
// Steps: dead inputs (H_jj = 0) get H_jj = 1 and W[:, j] = 0; H += PercDamp ·
// mean(diag H) · I; U = upper Cholesky factor of H⁻¹ (H⁻¹ = UᵀU); then, per
// block of BlockSize columns and per column c, every group of M columns
// starting at c is chosen by the largest w²/U_jj² of the current (already
// updated) weights, the column is quantised to the mask and the error
// (w − q)/U_cc is propagated to the remaining columns through row c of U
// (inside the block at once, to later blocks lazily after the block).
//
// Precision: H, its dampening, Cholesky factorisation and inversion are
// float64 (the reference uses float32 on the GPU); U is then rounded to
// float32 and the column loop and OBS updates run in float32 as the
// reference does. Ties in the group choice keep the lower column index.
// The work is split over row chunks on GOMAXPROCS goroutines; the result does
// not depend on their number (every row is processed by the same sequence of
// float32 operations).
func SparseGPT(w []float32, rows, cols int, H []float64, p Pattern, opts SparseGPTOptions) (*Mask, []float32, error) {
	if err := checkShape(w, rows, cols, p); err != nil {
		return nil, nil, err
	}
	opts = opts.withDefaults()
	if opts.BlockSize < 0 || opts.BlockSize%p.M != 0 {
		return nil, nil, fmt.Errorf("%w: block size %d is not a positive multiple of M=%d", ErrInput, opts.BlockSize, p.M)
	}
	if !(opts.PercDamp > 0) || math.IsInf(opts.PercDamp, 0) {
		return nil, nil, fmt.Errorf("%w: dampening %v must be positive", ErrInput, opts.PercDamp)
	}
	if len(H) != cols*cols {
		return nil, nil, fmt.Errorf("%w: Hessian has %d entries, want %d×%d", ErrInput, len(H), cols, cols)
	}
	for i, v := range H {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return nil, nil, fmt.Errorf("%w: Hessian [%d, %d] is %v", ErrInput, i/cols, i%cols, v)
		}
	}
	W := make([]float32, len(w))
	copy(W, w)
	U, err := inverseCholeskyUpper(H, cols, opts.PercDamp, W, rows)
	if err != nil {
		return nil, nil, err
	}
	m := New(rows, cols)
	orig := w
	if !opts.NoUpdate {
		orig = nil
	}
	parallelRows(rows, func(r0, r1 int) {
		sparseGPTRows(W, m.Keep, orig, U, r0, r1, cols, p, opts.BlockSize)
	})
	return m, W, nil
}

// inverseCholeskyUpper applies the dead-column rule (zeroing W's dead
// columns), dampens a copy of H and returns U (float32, row-major
// [cols, cols]) with H⁻¹ = UᵀU, U upper triangular with positive diagonal.
//
// With J the reversal permutation and JHJ = L Lᵀ (lower Cholesky), H = R Rᵀ
// for the upper R = JLJ, so H⁻¹ = R⁻ᵀR⁻¹ and U = R⁻¹ = J L⁻¹ J: one Cholesky
// and one triangular inverse instead of the reference's three factorisations.
// By uniqueness of the Cholesky factor this is the same U.
func inverseCholeskyUpper(H []float64, n int, percDamp float64, W []float32, rows int) ([]float32, error) {
	a := make([]float64, n*n)
	// a = J H J
	for i := 0; i < n; i++ {
		for j := 0; j < n; j++ {
			a[(n-1-i)*n+(n-1-j)] = H[i*n+j]
		}
	}
	var mean float64
	for j := 0; j < n; j++ {
		jj := (n - 1 - j) * (n + 1)
		if H[j*n+j] == 0 {
			a[jj] = 1
			for r := 0; r < rows; r++ {
				W[r*n+j] = 0
			}
		}
		mean += a[jj]
	}
	damp := percDamp * mean / float64(n)
	for j := 0; j < n; j++ {
		a[j*(n+1)] += damp
	}
	t, ok := lapack64.Potrf(blas64.Symmetric{Uplo: blas.Lower, N: n, Data: a, Stride: n})
	if !ok {
		return nil, ErrNotPositiveDefinite
	}
	if !lapack64.Trtri(t) {
		return nil, ErrNotPositiveDefinite
	}
	U := make([]float32, n*n)
	for i := 0; i < n; i++ {
		for j := 0; j <= i; j++ { // lower part of L⁻¹
			U[(n-1-i)*n+(n-1-j)] = float32(a[i*n+j])
		}
	}
	for i := 0; i < n; i++ {
		if !(U[i*n+i] > 0) || math.IsInf(float64(U[i*n+i]), 0) {
			return nil, fmt.Errorf("%w: inverse factor diagonal %d is %v", ErrNotPositiveDefinite, i, U[i*n+i])
		}
	}
	return U, nil
}

// sparseGPTRows runs the SparseGPT column loop for rows [r0, r1) of W in
// place, marking kept entries in keep. Rows are independent given U, so a
// chunk of rows is processed per block: the column loop row by row (rank-1
// updates inside the block as float32 axpys), then the lazy update of the
// later columns as one float32 GEMM, W[:, i2:] −= Err1 · U[i1:i2, i2:].
// When orig != nil the groups are chosen from orig (the NoUpdate variant).
func sparseGPTRows(W []float32, keep []bool, orig []float32, U []float32, r0, r1, cols int, p Pattern, bs int) {
	const chunk = 64
	score := make([]float64, p.M)
	errb := make([]float32, chunk*bs)
	impl := blas32.Implementation()
	for c0 := r0; c0 < r1; c0 += chunk {
		c1 := min(c0+chunk, r1)
		for i1 := 0; i1 < cols; i1 += bs {
			i2 := min(i1+bs, cols)
			count := i2 - i1
			for r := c0; r < c1; r++ {
				row := W[r*cols : (r+1)*cols]
				krow := keep[r*cols : (r+1)*cols]
				e := errb[(r-c0)*bs : (r-c0)*bs+count]
				for c := 0; c < count; c++ {
					j := i1 + c
					if c%p.M == 0 {
						for k := 0; k < p.M; k++ {
							var v float32
							if orig != nil {
								v = orig[r*cols+j+k]
							} else {
								v = row[j+k]
							}
							d := U[(j+k)*cols+j+k]
							// float32 as the reference: w² / d².
							score[k] = float64((v * v) / (d * d))
						}
						keepTopN(score, krow[j:j+p.M], p.N)
					}
					wv := row[j]
					var q float32
					if krow[j] {
						q = wv
					}
					er := (wv - q) / U[j*cols+j]
					e[c] = er
					// W1[:, c:] -= err ⊗ U1[c, c:]  (only inside the block)
					if er != 0 && j+1 < i2 {
						impl.Saxpy(i2-j-1, -er, U[j*cols+j+1:j*cols+i2], 1, row[j+1:i2], 1)
					}
					row[j] = q
				}
			}
			if i2 == cols {
				continue
			}
			// lazy update: W[:, i2:] -= Err1 · U[i1:i2, i2:]
			blas32.Gemm(blas.NoTrans, blas.NoTrans, -1,
				blas32.General{Rows: c1 - c0, Cols: count, Stride: bs, Data: errb},
				blas32.General{Rows: count, Cols: cols - i2, Stride: cols, Data: U[i1*cols+i2:]},
				1, blas32.General{Rows: c1 - c0, Cols: cols - i2, Stride: cols, Data: W[c0*cols+i2:]})
		}
	}
}

// parallelRows splits [0, rows) into contiguous ranges, one per goroutine.
func parallelRows(rows int, f func(r0, r1 int)) {
	n := min(runtime.GOMAXPROCS(0), (rows+63)/64)
	if n <= 1 {
		f(0, rows)
		return
	}
	var wg sync.WaitGroup
	step := (rows + n - 1) / n
	for r0 := 0; r0 < rows; r0 += step {
		r1 := min(r0+step, rows)
		wg.Add(1)
		go func() { defer wg.Done(); f(r0, r1) }()
	}
	wg.Wait()
}
