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
//
// For finite weights |w| orders like the float32 bits with the sign cleared,
// so the selection compares those integers: the same choice as ranking
// math.Abs(float64(w)), without a call per element.
func Magnitude(w []float32, rows, cols int, p Pattern) (*Mask, error) {
	if err := checkShape(w, rows, cols, p); err != nil {
		return nil, err
	}
	m := New(rows, cols)
	if p.N == 2 && p.M == 4 {
		for g := 0; g+4 <= len(w); g += 4 {
			a0, a1 := math.Float32bits(w[g])&0x7fffffff, math.Float32bits(w[g+1])&0x7fffffff
			a2, a3 := math.Float32bits(w[g+2])&0x7fffffff, math.Float32bits(w[g+3])&0x7fffffff
			k := keep24[b2u(a0 >= a1)|b2u(a0 >= a2)<<1|b2u(a0 >= a3)<<2|b2u(a1 >= a2)<<3|b2u(a1 >= a3)<<4|b2u(a2 >= a3)<<5]
			keep := m.Keep[g : g+4 : g+4]
			keep[0], keep[1], keep[2], keep[3] = k&1 != 0, k&2 != 0, k&4 != 0, k&8 != 0
		}
		return m, nil
	}
	keys := make([]uint32, p.M)
	for g := 0; g+p.M <= len(w); g += p.M {
		for j := range keys {
			keys[j] = math.Float32bits(w[g+j]) & 0x7fffffff
		}
		for j, k := range keys {
			rank := 0 // entries chosen before j: larger, or equal and earlier
			for i, x := range keys {
				if x > k || (x == k && i < j) {
					rank++
				}
			}
			m.Keep[g+j] = rank < p.N
		}
	}
	return m, nil
}

// Keep24 returns the two lanes (bit i: lane i) that magnitude keeps in a 2:4
// group, given the six pairwise comparisons of its |x| as bits (bit 0: lane 0
// ahead of lane 1, 1: 0/2, 2: 0/3, 3: 1/2, 4: 1/3, 5: 2/3; ties go to the lower
// lane). pack's bit-pattern fast path uses it so that both select alike.
func Keep24(cmp uint8) uint8 { return keep24[cmp&63] }

// keep24 maps the six "i is chosen before j" bits of a 2:4 group (bit 0: 0
// before 1, 1: 0/2, 2: 0/3, 3: 1/2, 4: 1/3, 5: 2/3) to the two lanes chosen
// (bit i: lane i), those ahead of at least two of the other three.
var keep24 = func() (t [64]uint8) {
	pairs := [6][2]int{{0, 1}, {0, 2}, {0, 3}, {1, 2}, {1, 3}, {2, 3}}
	for idx := range t {
		var wins [4]int
		for k, pr := range pairs {
			if idx>>k&1 == 1 {
				wins[pr[0]]++
			} else {
				wins[pr[1]]++
			}
		}
		for i, n := range wins {
			if n >= 2 {
				t[idx] |= 1 << i
			}
		}
	}
	return t
}()

func b2u(b bool) uint8 {
	if b {
		return 1
	}
	return 0
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
