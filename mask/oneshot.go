package mask

import (
	"errors"
	"fmt"
	"math"
)

// ErrInput reports arguments a one-shot method cannot work on: a length that
// does not match the shape, a column count that does not divide into groups,
// a non-finite weight or statistic.
var ErrInput = errors.New("mask: bad input")

// checkPattern validates p for use by the one-shot methods.
func checkPattern(p Pattern) error {
	if p.N <= 0 || p.M <= p.N || p.M > 64 {
		return fmt.Errorf("%w: pattern %d:%d: want 0 < N < M <= 64", ErrInput, p.N, p.M)
	}
	return nil
}

// checkShape validates a row-major [rows, cols] matrix for an N:M method.
func checkShape(w []float32, rows, cols int, p Pattern) error {
	if err := checkPattern(p); err != nil {
		return err
	}
	if rows <= 0 || cols <= 0 {
		return fmt.Errorf("%w: shape [%d, %d]", ErrInput, rows, cols)
	}
	if rows > math.MaxInt/cols || len(w) != rows*cols {
		return fmt.Errorf("%w: %d weights for shape [%d, %d]", ErrInput, len(w), rows, cols)
	}
	if cols%p.M != 0 {
		return fmt.Errorf("%w: %d input columns do not divide into groups of %d", ErrInput, cols, p.M)
	}
	for i, v := range w {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return fmt.Errorf("%w: weight [%d, %d] is %v", ErrInput, i/cols, i%cols, v)
		}
	}
	return nil
}

// keepTopN marks in keep the n entries of score with the largest values.
// Ties go to the lower index (a stable selection): among equal scores the
// earlier column is kept. len(score) == len(keep) <= 64.
func keepTopN(score []float64, keep []bool, n int) {
	clear(keep)
	for k := 0; k < n; k++ {
		best := -1
		for j, s := range score {
			if keep[j] {
				continue
			}
			if best < 0 || s > score[best] {
				best = j
			}
		}
		keep[best] = true
	}
}

// selectNM builds a mask keeping, in every row and every group of p.M
// consecutive columns, the p.N entries with the largest score(row, col).
func selectNM(rows, cols int, p Pattern, score func(r, c int) float64) *Mask {
	m := New(rows, cols)
	s := make([]float64, p.M)
	for r := 0; r < rows; r++ {
		for c0 := 0; c0 < cols; c0 += p.M {
			for j := range s {
				s[j] = score(r, c0+j)
			}
			keepTopN(s, m.Keep[r*cols+c0:r*cols+c0+p.M], p.N)
		}
	}
	return m
}

// Magnitude keeps the p.N entries of largest |w| in every group of p.M
// consecutive input columns of every row of the row-major [rows, cols]
// weight w (spec §3.1). Ties keep the lower column index. No data is used
// and w is not changed.
func Magnitude(w []float32, rows, cols int, p Pattern) (*Mask, error) {
	if err := checkShape(w, rows, cols, p); err != nil {
		return nil, err
	}
	return selectNM(rows, cols, p, func(r, c int) float64 {
		return math.Abs(float64(w[r*cols+c]))
	}), nil
}

// Wanda keeps, in every group of p.M consecutive input columns of every row,
// the p.N entries with the largest score |W_ij|·sqrt(colNorm_j) (spec §3.2),
// where colNorm_j is the accumulated squared norm of input feature j over the
// calibration tokens (see NormAccumulator; only ratios matter). Ties keep the
// lower column index. w is not changed.
func Wanda(w []float32, rows, cols int, colNorm []float32, p Pattern) (*Mask, error) {
	if err := checkShape(w, rows, cols, p); err != nil {
		return nil, err
	}
	if len(colNorm) != cols {
		return nil, fmt.Errorf("%w: %d column norms for %d columns", ErrInput, len(colNorm), cols)
	}
	sq := make([]float64, cols)
	for j, v := range colNorm {
		if !(v >= 0) || math.IsInf(float64(v), 0) {
			return nil, fmt.Errorf("%w: column norm %d is %v", ErrInput, j, v)
		}
		sq[j] = math.Sqrt(float64(v))
	}
	return selectNM(rows, cols, p, func(r, c int) float64 {
		// float32 product as the reference computes it in the weight's dtype.
		return float64(float32(math.Abs(float64(w[r*cols+c]))) * float32(sq[c]))
	}), nil
}

// Apply returns a copy of w with the pruned entries set to zero.
func (m *Mask) Apply(w []float32) []float32 {
	out := make([]float32, len(w))
	for i, k := range m.Keep {
		if k && i < len(w) {
			out[i] = w[i]
		}
	}
	return out
}
