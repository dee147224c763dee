package verify

import (
	"errors"
	"fmt"
	"io"

	"github.com/sparsify/sparsify/format"
	"github.com/sparsify/sparsify/kernel/cuda"
	"github.com/sparsify/sparsify/pack"
)

// CUDA sparse GEMM engines.
const (
	CUDAMMASp      = "mma.sp"     // our PTX mma.sp kernel reading the cutlass layout directly
	CUDACuSPARSELt = "cusparselt" // cuSPARSELt on the unpacked weight (it compresses it itself)
)

// CUDA is the GEMMBackend of package kernel/cuda. The dense side is cuBLAS
// in pedantic FP32 on the unpacked weights; the sparse side is Engine
// (CUDAMMASp or CUDACuSPARSELt) on F16/BF16 2:4 weights in the cutlass
// layout. Tensor cores take 16-bit activations, so x is split in three
// 16-bit parts whose products are summed in float64 (cuda.SplitHalves):
// the result has FP32 accuracy and verify's FP32 tolerance applies.
type CUDA struct {
	Engine string
	g      *cuda.GEMM
}

var _ GEMMBackend = (*CUDA)(nil)

// NewCUDA opens the GPU and compiles the kernels. The error wraps
// cuda.ErrNoCUDA when there is no usable GPU or library.
func NewCUDA(engine string) (*CUDA, error) {
	if engine != CUDAMMASp && engine != CUDACuSPARSELt {
		return nil, fmt.Errorf("verify: CUDA engine %q: want %q or %q", engine, CUDAMMASp, CUDACuSPARSELt)
	}
	d, err := cuda.Open()
	if err != nil {
		return nil, err
	}
	g, err := cuda.NewGEMM(d)
	if err != nil {
		return nil, err
	}
	return &CUDA{Engine: engine, g: g}, nil
}

// Close releases the kernels and the cuBLAS handle.
func (c *CUDA) Close() error {
	if c == nil || c.g == nil {
		return nil
	}
	return c.g.Close()
}

func (c *CUDA) Name() string {
	name := "cuda"
	if c.g != nil {
		name += " " + c.g.D.Name()
	}
	return name + " " + c.Engine
}

func (c *CUDA) MatMulT(y, x, w []float32, m, n, k int) error {
	return c.g.DenseMatMulTF32(y, x, w, m, n, k)
}

// cudaTakes reports whether the CUDA sparse GEMM takes w, as an error
// wrapping ErrNotSupported when it does not.
func cudaTakes(w *SparseWeight) (cuda.DType, error) {
	if w.Layout != pack.Cutlass {
		return 0, fmt.Errorf("%w: the CUDA sparse GEMM reads the cutlass layout, not %s", ErrNotSupported, w.Layout)
	}
	var dt cuda.DType
	switch w.DType {
	case format.BF16:
		dt = cuda.BF16
	case format.F16:
		dt = cuda.F16
	default:
		return 0, fmt.Errorf("%w: the CUDA sparse GEMM takes F16/BF16 2:4, not %v", ErrNotSupported, w.DType)
	}
	if w.Rows%32 != 0 || w.Cols%64 != 0 || len(w.Values) != w.Rows*w.Cols/2 || len(w.Meta) != w.Rows*w.Cols/8 {
		return 0, fmt.Errorf("%w: CUDA sparse GEMM needs rows %% 32 == 0, cols %% 64 == 0 and full buffers, got [%d, %d]", ErrNotSupported, w.Rows, w.Cols)
	}
	return dt, nil
}

func (c *CUDA) SparseMatMulT(y, x []float32, w *SparseWeight, m int) error {
	dt, err := cudaTakes(w)
	if err != nil {
		return err
	}
	// The values came from the stored 16-bit dtype: back to it bit-exactly.
	raw := make([]byte, 2*len(w.Values))
	if err := format.FromFloat32(w.DType, w.Values, raw); err != nil {
		return fmt.Errorf("verify: values back to %v: %w", w.DType, err)
	}
	if c.Engine == CUDACuSPARSELt {
		dense, err := pack.UnpackCutlass(w.DType, w.Rows, w.Cols, raw, w.Meta)
		if err != nil {
			return fmt.Errorf("verify: unpack for cuSPARSELt: %w", err)
		}
		return c.g.SparseLtMatMulTF32(y, x, dense, dt, w.Rows, w.Cols, m)
	}
	return c.g.SparseMatMulTF32(y, x, raw, w.Meta, dt, w.Rows, w.Cols, m)
}

// BackendFor returns the GEMM backend for a --device flag (auto, cpu,
// cuda): the CPU, or CUDA with engine (CUDAMMASp when ""). With "auto" and
// no usable GPU it returns the CPU and writes a one-line note to note.
// close releases the backend (never nil).
func BackendFor(device, engine string, note io.Writer) (be GEMMBackend, close func() error, err error) {
	nop := func() error { return nil }
	if engine == "" {
		engine = CUDAMMASp
	}
	useGPU, err := cuda.SelectW(device, note)
	if err != nil || !useGPU {
		return CPU{}, nop, err
	}
	c, err := NewCUDA(engine)
	if err != nil {
		if device != "cuda" && errors.Is(err, cuda.ErrNoCUDA) {
			if note != nil {
				fmt.Fprintf(note, "note: --device auto: using the CPU (%v)\n", err)
			}
			return CPU{}, nop, nil
		}
		return CPU{}, nop, err
	}
	return c, c.Close, nil
}
