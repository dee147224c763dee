package mask

import (
	"fmt"
	"math"
)

// Hessian accumulates a layer's input Hessian H = (2/n) Σ x xᵀ over
// calibration sequences as IST-DASLab/sparsegpt's add_batch does: for a batch
// of b sequences, H ← H·n/(n+b); n ← n+b; H += (2/n)·Σ_tokens x xᵀ.
// H is float64, row-major [Cols, Cols]. Not safe for concurrent use.
type Hessian struct {
	Cols int
	H    []float64
	N    int // sequences seen
}

// NewHessian returns an empty accumulator for inputs of cols features.
func NewHessian(cols int) *Hessian {
	return &Hessian{Cols: cols, H: make([]float64, cols*cols)}
}

// Add accumulates x, row-major [tokens, Cols] holding seqs whole sequences.
func (h *Hessian) Add(x []float32, tokens, seqs int) error {
	if err := checkBatch(len(x), tokens, seqs, h.Cols); err != nil {
		return err
	}
	n := h.Cols
	h.scale(seqs)
	s := 2 / float64(h.N)
	// upper triangle of Σ x xᵀ, four tokens at a time.
	t := 0
	for ; t+4 <= tokens; t += 4 {
		x0, x1, x2, x3 := x[t*n:(t+1)*n], x[(t+1)*n:(t+2)*n], x[(t+2)*n:(t+3)*n], x[(t+3)*n:(t+4)*n]
		for i := 0; i < n; i++ {
			a0, a1, a2, a3 := s*float64(x0[i]), s*float64(x1[i]), s*float64(x2[i]), s*float64(x3[i])
			hr := h.H[i*n : (i+1)*n]
			for j := i; j < n; j++ {
				hr[j] += a0*float64(x0[j]) + a1*float64(x1[j]) + a2*float64(x2[j]) + a3*float64(x3[j])
			}
		}
	}
	for ; t < tokens; t++ {
		xt := x[t*n : (t+1)*n]
		for i := 0; i < n; i++ {
			a := s * float64(xt[i])
			hr := h.H[i*n : (i+1)*n]
			for j := i; j < n; j++ {
				hr[j] += a * float64(xt[j])
			}
		}
	}
	h.mirror()
	return nil
}

// AddGram accumulates a precomputed Gram matrix g = Σ_tokens x xᵀ
// ([Cols, Cols], e.g. from a fast float32 GEMM) of seqs sequences.
func (h *Hessian) AddGram(g []float32, seqs int) error {
	if len(g) != h.Cols*h.Cols || seqs <= 0 {
		return fmt.Errorf("%w: Gram of %d entries for %d columns, %d sequences", ErrInput, len(g), h.Cols, seqs)
	}
	h.scale(seqs)
	s := 2 / float64(h.N)
	for i, v := range g {
		h.H[i] += s * float64(v)
	}
	return nil
}

func (h *Hessian) scale(seqs int) {
	if h.N > 0 {
		f := float64(h.N) / float64(h.N+seqs)
		for i := range h.H {
			h.H[i] *= f
		}
	}
	h.N += seqs
}

// mirror copies the upper triangle to the lower one.
func (h *Hessian) mirror() {
	n := h.Cols
	for i := 0; i < n; i++ {
		for j := i + 1; j < n; j++ {
			h.H[j*n+i] = h.H[i*n+j]
		}
	}
}

// ColumnNorms accumulates Wanda's per-input-feature statistic as
// locuslab/wanda's WrappedGPT.add_batch does: for a batch of b sequences,
// s ← s·n/(n+b); n ← n+b; s_j += ‖X_j‖² / n, with ‖X_j‖² the squared norm of
// feature j over the batch's tokens. Wanda scores |W_ij|·sqrt(s_j).
type ColumnNorms struct {
	Cols int
	S    []float64
	N    int
}

// NewColumnNorms returns an empty accumulator for cols input features.
func NewColumnNorms(cols int) *ColumnNorms {
	return &ColumnNorms{Cols: cols, S: make([]float64, cols)}
}

// Add accumulates x, row-major [tokens, Cols] holding seqs whole sequences.
func (c *ColumnNorms) Add(x []float32, tokens, seqs int) error {
	if err := checkBatch(len(x), tokens, seqs, c.Cols); err != nil {
		return err
	}
	if c.N > 0 {
		f := float64(c.N) / float64(c.N+seqs)
		for j := range c.S {
			c.S[j] *= f
		}
	}
	c.N += seqs
	inv := 1 / float64(c.N)
	n := c.Cols
	sq := make([]float64, n)
	for t := 0; t < tokens; t++ {
		for j, v := range x[t*n : (t+1)*n] {
			sq[j] += float64(v) * float64(v)
		}
	}
	for j := range sq {
		c.S[j] += sq[j] * inv
	}
	return nil
}

// Float32 returns the statistic as Wanda's colNorm argument.
func (c *ColumnNorms) Float32() []float32 {
	out := make([]float32, len(c.S))
	for i, v := range c.S {
		out[i] = float32(v)
	}
	return out
}

func checkBatch(n, tokens, seqs, cols int) error {
	if tokens <= 0 || seqs <= 0 || seqs > tokens || cols <= 0 || tokens > math.MaxInt/cols || n != tokens*cols {
		return fmt.Errorf("%w: batch of %d values for %d tokens × %d features (%d sequences)", ErrInput, n, tokens, cols, seqs)
	}
	return nil
}
