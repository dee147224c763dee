// Package mask holds N:M sparsity masks and the methods that choose them.
package mask

import (
	"errors"
	"fmt"
)

// ErrPattern reports a mask or matrix that does not follow its N:M pattern.
var ErrPattern = errors.New("mask: pattern violated")

// Pattern is N kept weights in every group of M consecutive input columns.
type Pattern struct{ N, M int }

// Pattern24 is NVIDIA's 2:4 semi-structured sparsity.
var Pattern24 = Pattern{2, 4}

func (p Pattern) String() string { return fmt.Sprintf("%d:%d", p.N, p.M) }

// ParsePattern parses "N:M" with 0 < N < M.
func ParsePattern(s string) (Pattern, error) {
	var p Pattern
	if _, err := fmt.Sscanf(s, "%d:%d", &p.N, &p.M); err != nil || p.N <= 0 || p.M <= p.N || p.M > 64 {
		return Pattern{}, fmt.Errorf("mask: bad pattern %q: want N:M with 0 < N < M <= 64", s)
	}
	return p, nil
}

// Mask marks the kept weights of a row-major [Rows, Cols] weight matrix
// ([out_features, in_features]); groups run along a row (the input dimension).
type Mask struct {
	Rows, Cols int
	Keep       []bool // len Rows*Cols, row-major; true = kept
}

// New returns an all-pruned mask.
func New(rows, cols int) *Mask {
	return &Mask{Rows: rows, Cols: cols, Keep: make([]bool, rows*cols)}
}

// Check reports the first group that does not keep exactly p.N of p.M weights.
func (m *Mask) Check(p Pattern) error {
	if m.Cols%p.M != 0 {
		return fmt.Errorf("%w: %d columns do not divide into groups of %d", ErrPattern, m.Cols, p.M)
	}
	for r := 0; r < m.Rows; r++ {
		row := m.Keep[r*m.Cols : (r+1)*m.Cols]
		for g := 0; g < m.Cols/p.M; g++ {
			n := 0
			for _, k := range row[g*p.M : (g+1)*p.M] {
				if k {
					n++
				}
			}
			if n != p.N {
				return fmt.Errorf("%w: row %d group %d keeps %d of %d, want %d", ErrPattern, r, g, n, p.M, p.N)
			}
		}
	}
	return nil
}

// Density is the fraction of kept weights.
func (m *Mask) Density() float64 {
	if len(m.Keep) == 0 {
		return 0
	}
	n := 0
	for _, k := range m.Keep {
		if k {
			n++
		}
	}
	return float64(n) / float64(len(m.Keep))
}
