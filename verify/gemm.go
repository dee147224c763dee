package verify

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"github.com/sparsify/sparsify/format"
	"github.com/sparsify/sparsify/kernel"
	"github.com/sparsify/sparsify/pack"
)

// ErrNotSupported is returned (wrapped) by a GEMMBackend for a layout or dtype
// it does not take; verify then runs ReferenceSparseMatMulT and says so.
var ErrNotSupported = errors.New("verify: not supported by this GEMM backend")

// SparseWeight is a packed weight as a GEMM reads it, without unpacking:
// the kept values in stored order converted to float32, and the metadata
// bytes exactly as stored (cutlass: the reordered I16/I32 meta words; bitmask:
// the U8 bitmask rows).
type SparseWeight struct {
	Layout     pack.Layout
	DType      format.DType // dtype of the stored values
	Rows, Cols int
	Values     []float32
	Meta       []byte
}

// GEMMBackend computes the two sides of the GEMM equivalence check. The CPU
// backend uses package kernel; a GPU backend (cuSPARSELt / mma.sp) plugs in by
// implementing the same two methods. Implementations must be safe for use by
// one goroutine at a time (verify calls them sequentially).
type GEMMBackend interface {
	Name() string
	// MatMulT computes y[m,n] = x[m,k] · w[n,k]ᵀ with a dense w.
	MatMulT(y, x, w []float32, m, n, k int) error
	// SparseMatMulT computes y[m,w.Rows] = x[m,w.Cols] · Wᵀ reading the packed
	// layout directly. It returns an error wrapping ErrNotSupported when it
	// does not take w's layout or dtype.
	SparseMatMulT(y, x []float32, w *SparseWeight, m int) error
}

// CPU is the GEMMBackend of package kernel: kernel.MatMulT for the dense side,
// kernel.Sparse24/SparseMatMulT (CUTLASS layout, 16-bit meta: F16/BF16 2:4)
// for the sparse side.
type CPU struct{}

func (CPU) Name() string { return "cpu" }

func (CPU) MatMulT(y, x, w []float32, m, n, k int) error {
	kernel.MatMulT(y, x, w, m, n, k, false)
	return nil
}

func (CPU) SparseMatMulT(y, x []float32, w *SparseWeight, m int) (err error) {
	if w.Layout != pack.Cutlass || (w.DType != format.F16 && w.DType != format.BF16) {
		return fmt.Errorf("%w: kernel.SparseMatMulT takes the cutlass layout with 16-bit meta (F16/BF16 2:4), not %s %v", ErrNotSupported, w.Layout, w.DType)
	}
	meta := make([]uint16, len(w.Meta)/2)
	for i := range meta {
		meta[i] = binary.LittleEndian.Uint16(w.Meta[2*i:])
	}
	sp, err := kernel.NewSparse24(w.Rows, w.Cols, w.Values, meta)
	if errors.Is(err, kernel.ErrShape) {
		return fmt.Errorf("%w: kernel.NewSparse24: %v", ErrNotSupported, err)
	}
	if err != nil {
		return fmt.Errorf("kernel.NewSparse24: %w", err)
	}
	defer func() {
		// A kernel that panics is a finding, not a crash of verify.
		if r := recover(); r != nil {
			err = fmt.Errorf("kernel.SparseMatMulT panicked: %v", r)
		}
	}()
	kernel.SparseMatMulT(y, x, sp, m, false)
	return nil
}

// ReferenceSparseMatMulT is the plain Go loop that reads a packed layout
// directly (spec nvidia-24-layout §4.3 for cutlass, every dtype including F32
// 1:2 and I8's 32-bit meta; the bitmask rows for bitmask), accumulating in
// float32 in column order. Metadata must have been validated (CheckCutlass /
// CheckBitmask); an invalid nibble is an error.
func ReferenceSparseMatMulT(y, x []float32, w *SparseWeight, m int) error {
	n, k := w.Rows, w.Cols
	if len(x) < m*k || len(y) < m*n || len(w.Values) != n*k/2 {
		return fmt.Errorf("verify: reference GEMM: bad sizes")
	}
	// For every weight row, the dense column of each kept value.
	cols := make([]int32, k/2)
	for r := 0; r < n; r++ {
		if err := keptColumns(w, r, cols); err != nil {
			return err
		}
		vals := w.Values[r*k/2 : (r+1)*k/2]
		for i := 0; i < m; i++ {
			xi := x[i*k : (i+1)*k]
			var s float32
			for j, c := range cols {
				s += vals[j] * xi[c]
			}
			y[i*n+r] = s
		}
	}
	return nil
}

// keptColumns fills cols with the dense column of every stored value of row r.
func keptColumns(w *SparseWeight, r int, cols []int32) error {
	k := w.Cols
	switch w.Layout {
	case pack.Cutlass:
		metaBytes, group, nib := 2, 4, 4
		switch w.DType {
		case format.I8:
			metaBytes, nib = 4, 8
		case format.F32:
			group = 2
		}
		colsPerWord := group * nib
		j := 0
		for c := 0; c < k/colsPerWord; c++ {
			o := pack.MetaOffset(metaBytes, w.Rows, r, c) * metaBytes
			var word uint32
			if metaBytes == 2 {
				word = uint32(binary.LittleEndian.Uint16(w.Meta[o:]))
			} else {
				word = binary.LittleEndian.Uint32(w.Meta[o:])
			}
			for i := 0; i < nib; i++ {
				code := (word >> (4 * i)) & 0xF
				q := c*nib + i
				if group == 2 {
					if code != 0x4 && code != 0xE {
						return fmt.Errorf("verify: row %d group %d: invalid 1:2 nibble 0x%X", r, q, code)
					}
					cols[j] = int32(2*q + int((code&3)>>1))
					j++
					continue
				}
				i0, i1 := code&3, code>>2
				if i0 >= i1 {
					return fmt.Errorf("verify: row %d group %d: invalid 2:4 nibble 0x%X", r, q, code)
				}
				cols[j], cols[j+1] = int32(4*q)+int32(i0), int32(4*q)+int32(i1)
				j += 2
			}
		}
	case pack.Bitmask:
		bw := (k + 7) / 8
		row := w.Meta[r*bw : (r+1)*bw]
		j := 0
		for c := 0; c < k; c++ {
			if row[c/8]&(1<<(c%8)) != 0 {
				if j == len(cols) {
					return fmt.Errorf("verify: row %d: bitmask keeps more than %d values", r, len(cols))
				}
				cols[j] = int32(c)
				j++
			}
		}
		if j != len(cols) {
			return fmt.Errorf("verify: row %d: bitmask keeps %d values, want %d", r, j, len(cols))
		}
	default:
		return fmt.Errorf("verify: no packed layout %q", w.Layout)
	}
	return nil
}

// unitRoundoff is float32's unit roundoff u = 2^-24.
const unitRoundoff = 1.0 / (1 << 24)

// gamma is Higham's γ_n = n·u / (1 − n·u): |fl(Σ_{i<n} a_i b_i) − Σ a_i b_i| ≤
// γ_n · Σ |a_i b_i| for any summation order, blocked, SIMD or FMA.
func gamma(n int) float64 {
	nu := float64(n) * unitRoundoff
	return nu / (1 - nu)
}

// GEMMTolerance states the tolerance of the GEMM equivalence check.
const GEMMTolerance = "|Y_sparse - Y_dense| <= (γ_k + γ_{k/2})·Σ_p |x_p·w_p| + 2^-126 per element, γ_n = n·u/(1-n·u), u = 2^-24 " +
	"(fp32 accumulation, any summation order: the dense side sums k products, the sparse side k/2; " +
	"pruned products are exactly 0 so both approximate the same exact sum)"

// GEMMResult is the outcome of one equivalence check.
type GEMMResult struct {
	Backend string `json:"backend"`
	// Sparse is what computed Y_sparse: "kernel.SparseMatMulT" or
	// "reference loop (...)" with the reason the backend did not take it.
	Sparse     string  `json:"sparse"`
	Tokens     int     `json:"tokens"`
	MaxAbsDiff float64 `json:"max_abs_diff"`
	MaxAbsY    float64 `json:"max_abs_y"`
	// WorstRatio is the largest |ΔY| / tolerance over all elements (<= 1 passes).
	WorstRatio float64 `json:"worst_ratio"`
	// ULPish is max |ΔY| / (u·sqrt(k)·Σ|x·w|): the observed error in units of a
	// typical (random-walk) rounding error, for information.
	ULPish float64 `json:"typical_error_units"`
	OK     bool    `json:"ok"`
	Detail string  `json:"detail,omitempty"`
}

// gemmCheck runs Y_sparse (packed layout) against Y_dense (dense unpacked
// weights, as float32) on x [tokens, cols].
func gemmCheck(be GEMMBackend, sw *SparseWeight, dense []float32, x []float32, tokens int) (*GEMMResult, error) {
	n, k := sw.Rows, sw.Cols
	res := &GEMMResult{Backend: be.Name(), Tokens: tokens, Sparse: "kernel.SparseMatMulT"}
	yd := make([]float32, tokens*n)
	if err := be.MatMulT(yd, x, dense, tokens, n, k); err != nil {
		return nil, fmt.Errorf("dense GEMM: %w", err)
	}
	ys := make([]float32, tokens*n)
	if err := be.SparseMatMulT(ys, x, sw, tokens); err != nil {
		if !errors.Is(err, ErrNotSupported) {
			return nil, fmt.Errorf("sparse GEMM: %w", err)
		}
		res.Sparse = "reference Go loop over the packed layout (" + err.Error() + ")"
		if err := ReferenceSparseMatMulT(ys, x, sw, tokens); err != nil {
			return nil, err
		}
	} else if be.Name() != "cpu" {
		res.Sparse = be.Name() + " sparse GEMM"
	}
	// S = Σ|x|·|w| over kept entries, float64, through the packed layout.
	absW := &SparseWeight{Layout: sw.Layout, DType: sw.DType, Rows: n, Cols: k, Meta: sw.Meta, Values: make([]float32, len(sw.Values))}
	for i, v := range sw.Values {
		absW.Values[i] = float32(math.Abs(float64(v)))
	}
	absX := make([]float32, len(x))
	for i, v := range x {
		absX[i] = float32(math.Abs(float64(v)))
	}
	s := make([]float32, tokens*n)
	if err := ReferenceSparseMatMulT(s, absX, absW, tokens); err != nil {
		return nil, err
	}
	g := gamma(k) + gamma(k/2)
	sq := math.Sqrt(float64(k)) * unitRoundoff
	res.OK = true
	for i := range yd {
		a, b := float64(yd[i]), float64(ys[i])
		if math.IsNaN(a) || math.IsNaN(b) || math.IsInf(a, 0) || math.IsInf(b, 0) {
			if !(a == b || (math.IsNaN(a) && math.IsNaN(b))) {
				res.OK = false
				res.Detail = fmt.Sprintf("token %d, output %d: dense %g, sparse %g", i/n, i%n, a, b)
			}
			continue
		}
		d := math.Abs(a - b)
		// S computed in float32 with γ_{k/2} relative error of its own: pad by (1+2γ).
		tol := g*float64(s[i])*(1+2*g) + 0x1p-126
		res.MaxAbsDiff = max(res.MaxAbsDiff, d)
		res.MaxAbsY = max(res.MaxAbsY, math.Abs(a))
		if r := d / tol; r > res.WorstRatio {
			res.WorstRatio = r
		}
		if s[i] > 0 {
			res.ULPish = max(res.ULPish, d/(sq*float64(s[i])))
		}
		if d > tol && res.OK {
			res.OK = false
			res.Detail = fmt.Sprintf("token %d, output %d: |Y_sparse - Y_dense| = %.3g > tolerance %.3g (Y_dense %.6g)", i/n, i%n, d, tol, a)
		}
	}
	return res, nil
}
