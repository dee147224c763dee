// Package kernel holds the CPU compute kernels: dense SGEMM in the three
// orientations a transformer's forward and backward need, and a 2:4 sparse GEMM
// that reads NVIDIA's CUTLASS packed layout. Activations are row-major
// [tokens, features]; weights are [out, in] as stored in checkpoints.
//
// PLACEHOLDER bodies (plain loops) while the vectorised kernels are built; the
// signatures are the API the rest of sparsify uses.
package kernel

// MatMulT computes C[m,n] = A[m,k] · B[n,k]ᵀ, adding to C when acc is true.
// This is y = x Wᵀ for activations x [m,k] and a weight W [n,k].
func MatMulT(c, a, b []float32, m, n, k int, acc bool) {
	for i := 0; i < m; i++ {
		for j := 0; j < n; j++ {
			var s float32
			for p := 0; p < k; p++ {
				s += a[i*k+p] * b[j*k+p]
			}
			if acc {
				c[i*n+j] += s
			} else {
				c[i*n+j] = s
			}
		}
	}
}

// MatMul computes C[m,n] = A[m,k] · B[k,n], adding to C when acc is true.
// This is dx = dy W for dy [m,k] and a weight W [k,n].
func MatMul(c, a, b []float32, m, n, k int, acc bool) {
	if !acc {
		clear(c[:m*n])
	}
	for i := 0; i < m; i++ {
		for p := 0; p < k; p++ {
			av := a[i*k+p]
			for j := 0; j < n; j++ {
				c[i*n+j] += av * b[p*n+j]
			}
		}
	}
}

// MatMulTN computes C[m,n] = A[k,m]ᵀ · B[k,n], adding to C when acc is true.
// This is dW = dyᵀ x for dy [k,m] and x [k,n].
func MatMulTN(c, a, b []float32, m, n, k int, acc bool) {
	if !acc {
		clear(c[:m*n])
	}
	for p := 0; p < k; p++ {
		for i := 0; i < m; i++ {
			av := a[p*m+i]
			for j := 0; j < n; j++ {
				c[i*n+j] += av * b[p*n+j]
			}
		}
	}
}

// Sparse24 is a 2:4 sparse weight [Rows, Cols] held in NVIDIA's CUTLASS layout:
// Values are the kept values [Rows, Cols/2] (as float32, in packed order) and
// Meta the reordered 16-bit metadata words exactly as stored (P.meta, I16).
type Sparse24 struct {
	Rows, Cols int
	Values     []float32
	Meta       []uint16
}

// NewSparse24 validates the layout (shape rules, every nibble a valid 2:4 code).
// PLACEHOLDER (being built).
func NewSparse24(rows, cols int, values []float32, meta []uint16) (*Sparse24, error) {
	return &Sparse24{Rows: rows, Cols: cols, Values: values, Meta: meta}, nil
}

// SparseMatMulT computes C[m,Rows] = A[m,Cols] · Wᵀ reading the packed layout
// directly, adding to C when acc is true.
// PLACEHOLDER (being built): panics.
func SparseMatMulT(c, a []float32, w *Sparse24, m int, acc bool) {
	panic("kernel: SparseMatMulT not yet available")
}
