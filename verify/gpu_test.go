package verify

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/sparsify/sparsify/format"
	"github.com/sparsify/sparsify/kernel/cuda"
	"github.com/sparsify/sparsify/pack"
)

func TestBackendForCPU(t *testing.T) {
	be, closeBE, err := BackendFor("cpu", "", nil)
	if err != nil || be.Name() != "cpu" {
		t.Fatalf("cpu: %v %v", be, err)
	}
	if err := closeBE(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := BackendFor("tpu", "", nil); !errors.Is(err, cuda.ErrDeviceFlag) {
		t.Fatalf("tpu: %v", err)
	}
}

func TestBackendForNoGPU(t *testing.T) {
	if _, err := cuda.Open(); err == nil {
		t.Skip("a GPU is present")
	}
	var note bytes.Buffer
	be, _, err := BackendFor("auto", "", &note)
	if err != nil || be.Name() != "cpu" || !strings.Contains(note.String(), "using the CPU") {
		t.Fatalf("auto without GPU: %v %v %q", be, err, note.String())
	}
	if _, _, err := BackendFor("cuda", "", nil); !errors.Is(err, cuda.ErrNoCUDA) {
		t.Fatalf("cuda without GPU: err = %v, want ErrNoCUDA", err)
	}
}

func TestCUDATakes(t *testing.T) {
	c := &CUDA{Engine: CUDAMMASp} // no GPU needed: refused before any device call
	for _, w := range []*SparseWeight{
		{Layout: pack.Bitmask, DType: format.BF16, Rows: 32, Cols: 64},
		{Layout: pack.Cutlass, DType: format.I8, Rows: 32, Cols: 128},
		{Layout: pack.Cutlass, DType: format.F32, Rows: 32, Cols: 64},
		{Layout: pack.Cutlass, DType: format.BF16, Rows: 32, Cols: 64}, // empty buffers
	} {
		if err := c.SparseMatMulT(nil, nil, w, 1); !errors.Is(err, ErrNotSupported) {
			t.Errorf("%s %v: err = %v, want ErrNotSupported", w.Layout, w.DType, err)
		}
	}
	if _, err := NewCUDA("cublas"); err == nil {
		t.Fatal("unknown engine accepted")
	}
}

// TestCUDABackendGEMMCheck runs verify's own GEMM equivalence check through
// both CUDA engines (skips without a GPU).
func TestCUDABackendGEMMCheck(t *testing.T) {
	for _, engine := range []string{CUDAMMASp, CUDACuSPARSELt} {
		c, err := NewCUDA(engine)
		if errors.Is(err, cuda.ErrNoCUDA) {
			t.Skipf("no GPU: %v", err)
		}
		if err != nil {
			t.Fatal(err)
		}
		for _, dt := range []format.DType{format.BF16, format.F16} {
			rng := rand.New(rand.NewPCG(5, 6))
			rows, cols, tokens := 128, 256, 40
			dense := make([]float32, rows*cols)
			for r := 0; r < rows; r++ {
				for q := 0; q < cols/4; q++ {
					i0 := rng.IntN(4)
					i1 := (i0 + 1 + rng.IntN(3)) % 4
					dense[r*cols+4*q+i0] = float32(rng.NormFloat64())
					dense[r*cols+4*q+i1] = float32(rng.NormFloat64())
				}
			}
			raw := make([]byte, 2*len(dense))
			if err := format.FromFloat32(dt, dense, raw); err != nil {
				t.Fatal(err)
			}
			if err := format.ToFloat32(dt, raw, dense); err != nil {
				t.Fatal(err)
			}
			vals, meta, err := pack.PackCutlass(dt, rows, cols, raw)
			if err != nil {
				t.Fatal(err)
			}
			fv := make([]float32, rows*cols/2)
			if err := format.ToFloat32(dt, vals, fv); err != nil {
				t.Fatal(err)
			}
			x := make([]float32, tokens*cols)
			for i := range x {
				x[i] = float32(rng.Float64()*2 - 1)
			}
			sw := &SparseWeight{Layout: pack.Cutlass, DType: dt, Rows: rows, Cols: cols, Values: fv, Meta: meta}
			res, err := gemmCheck(c, sw, dense, x, tokens)
			if err != nil {
				t.Fatal(err)
			}
			if !res.OK || !strings.Contains(res.Sparse, "cuda") {
				t.Fatalf("%s %v: %+v", engine, dt, res)
			}
			t.Logf("%s %v: worst ratio %.3g, max |Δ| %.3g", engine, dt, res.WorstRatio, res.MaxAbsDiff)
		}
		c.Close()
	}
}
