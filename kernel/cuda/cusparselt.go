package cuda

import (
	"errors"
	"fmt"
	"sync"
	"unsafe"
)

// cuSPARSELt opaque structs are 1024-byte blobs (cusparseLt.h:
// `typedef struct { uint8_t data[1024]; } cusparseLt*_t`).
type ltBlob [1024]byte

const (
	ltOrderCol       = 1 // CUSPARSE_ORDER_COL
	ltOpN            = 0
	ltOpT            = 1
	ltSparsity50     = 0
	ltAlgDefault     = 0
	ltPruneTile      = 0
	ltCompute32F     = 2 // cuSPARSELt >= 0.6
	ltCompute16FOld  = 0 // cuSPARSELt < 0.6: "16F" = fp16/bf16 inputs, fp32 accumulation
	ltVersionCompute = 600
)

var lt struct {
	path          string
	init          func(h *ltBlob) int32
	destroy       func(h *ltBlob) int32
	getVersion    func(h *ltBlob, v *int32) int32
	dense         func(h *ltBlob, d *ltBlob, rows, cols, ld int64, align uint32, vt int32, order int32) int32
	structured    func(h *ltBlob, d *ltBlob, rows, cols, ld int64, align uint32, vt int32, order int32, sp int32) int32
	matDestroy    func(d *ltBlob) int32
	matmulDesc    func(h *ltBlob, m *ltBlob, opA, opB int32, a, b, c, d *ltBlob, compute int32) int32
	algInit       func(h *ltBlob, a *ltBlob, m *ltBlob, alg int32) int32
	planInit      func(h *ltBlob, p *ltBlob, m *ltBlob, a *ltBlob) int32
	planDestroy   func(p *ltBlob) int32
	workspace     func(h *ltBlob, p *ltBlob, n *uint64) int32
	compressSize  func(h *ltBlob, p *ltBlob, n, buf *uint64) int32
	compress      func(h *ltBlob, p *ltBlob, dense, out, buf uint64, s uintptr) int32
	pruneCheck    func(h *ltBlob, m *ltBlob, d uint64, valid uint64, s uintptr) int32
	matmul        func(h *ltBlob, p *ltBlob, alpha unsafe.Pointer, a, b uint64, beta unsafe.Pointer, c, d, ws uint64, streams unsafe.Pointer, ns int32) int32
	matmulSearch  func(h *ltBlob, p *ltBlob, alpha unsafe.Pointer, a, b uint64, beta unsafe.Pointer, c, d, ws uint64, streams unsafe.Pointer, ns int32) int32
	algSelDestroy func(a *ltBlob) int32
}

var loadCuSPARSELt = sync.OnceValue(func() error {
	h, path, err := newSearcher().load(libCuSPARSELt)
	if err != nil {
		return err
	}
	lt.path = path
	if err := bind(h, path, ltSymbols()); err != nil {
		return err
	}
	bindOptional(h, ltOptional())
	return nil
})

func ltCheck(call string, r int32) error {
	if r == 0 {
		return nil
	}
	names := map[int32]string{1: "NOT_INITIALIZED", 2: "ALLOC_FAILED", 3: "INVALID_VALUE", 4: "ARCH_MISMATCH",
		5: "MAPPING_ERROR", 6: "EXECUTION_FAILED", 7: "INTERNAL_ERROR", 8: "MATRIX_TYPE_NOT_SUPPORTED",
		9: "ZERO_PIVOT", 10: "NOT_SUPPORTED", 11: "INSUFFICIENT_RESOURCES"}
	return fmt.Errorf("cuda: %s: CUSPARSE_STATUS_%s (%d)", call, names[r], r)
}

// ErrNotTwoFour is returned when cuSPARSELt's prune check finds a group of
// four with more than two nonzeros along K.
var ErrNotTwoFour = errors.New("cuda: matrix is not 2:4 sparse along K (cusparseLtSpMMAPruneCheck)")

// SparseLt is a cuSPARSELt 2:4 GEMM plan for y[T][N] = x[T][K] · W[N][K]ᵀ
// with W compressed on the device. Column-major view (the TN layout
// cuSPARSELt is fastest at): D (N×T, ld N) = op(A)·B, A = W stored K×N
// column-major (= W row-major) with opA = T, B = Xᵀ (K×T, ld K), opB = N.
type SparseLt struct {
	d                   *Device
	h, ma, mb, mc, mm   ltBlob
	alg, plan           ltBlob
	comp, ws            Ptr
	n, k, t             int
	Version             int
	CompressedBytes     int
	initDone, planReady bool
}

// NewSparseLt builds the plan and compresses the dense 2:4 matrix w (device,
// [N][K] of type dt, F16 or BF16) into cuSPARSELt's own buffer. It first runs
// cuSPARSELt's prune check so a matrix that is not 2:4 along K is an error.
func (d *Device) NewSparseLt(w Ptr, dt DType, n, k, t int) (*SparseLt, error) {
	if err := loadCuSPARSELt(); err != nil {
		return nil, err
	}
	if dt == F32 {
		return nil, fmt.Errorf("cuda: cuSPARSELt path takes F16/BF16, not %v", dt)
	}
	s := &SparseLt{d: d, n: n, k: k, t: t}
	err := d.Do(func() error {
		if err := ltCheck("cusparseLtInit", lt.init(&s.h)); err != nil {
			return err
		}
		s.initDone = true
		var v int32
		if err := ltCheck("cusparseLtGetVersion", lt.getVersion(&s.h, &v)); err != nil {
			return err
		}
		s.Version = int(v)
		vt := dt.cuda()
		if err := ltCheck("cusparseLtStructuredDescriptorInit(W)", lt.structured(&s.h, &s.ma, int64(k), int64(n), int64(k), 16, vt, ltOrderCol, ltSparsity50)); err != nil {
			return err
		}
		if err := ltCheck("cusparseLtDenseDescriptorInit(X)", lt.dense(&s.h, &s.mb, int64(k), int64(t), int64(k), 16, vt, ltOrderCol)); err != nil {
			return err
		}
		if err := ltCheck("cusparseLtDenseDescriptorInit(Y)", lt.dense(&s.h, &s.mc, int64(n), int64(t), int64(n), 16, dataR32F, ltOrderCol)); err != nil {
			return err
		}
		compute := int32(ltCompute32F)
		if s.Version < ltVersionCompute {
			compute = ltCompute16FOld
		}
		if err := ltCheck("cusparseLtMatmulDescriptorInit", lt.matmulDesc(&s.h, &s.mm, ltOpT, ltOpN, &s.ma, &s.mb, &s.mc, &s.mc, compute)); err != nil {
			return err
		}
		valid, err := d.Alloc(4)
		if err != nil {
			return err
		}
		defer d.Free(valid)
		if err := ltCheck("cusparseLtSpMMAPruneCheck", lt.pruneCheck(&s.h, &s.mm, uint64(w), uint64(valid), 0)); err != nil {
			return err
		}
		var vb [4]byte
		if err := check("cuMemcpyDtoH", drv.cuMemcpyDtoH(unsafe.Pointer(&vb[0]), uint64(valid), 4)); err != nil {
			return err
		}
		if vb != [4]byte{} {
			return ErrNotTwoFour
		}
		if err := ltCheck("cusparseLtMatmulAlgSelectionInit", lt.algInit(&s.h, &s.alg, &s.mm, ltAlgDefault)); err != nil {
			return err
		}
		if err := ltCheck("cusparseLtMatmulPlanInit", lt.planInit(&s.h, &s.plan, &s.mm, &s.alg)); err != nil {
			return err
		}
		s.planReady = true
		var ws, cs, cbuf uint64
		if err := ltCheck("cusparseLtMatmulGetWorkspace", lt.workspace(&s.h, &s.plan, &ws)); err != nil {
			return err
		}
		if err := ltCheck("cusparseLtSpMMACompressedSize", lt.compressSize(&s.h, &s.plan, &cs, &cbuf)); err != nil {
			return err
		}
		s.CompressedBytes = int(cs)
		return nil
	})
	if err == nil {
		err = s.compressAndAlloc(w)
	}
	if err != nil {
		s.Destroy()
		return nil, err
	}
	return s, nil
}

func (s *SparseLt) compressAndAlloc(w Ptr) error {
	var ws, cs, cbuf uint64
	err := s.d.Do(func() error {
		if err := ltCheck("cusparseLtMatmulGetWorkspace", lt.workspace(&s.h, &s.plan, &ws)); err != nil {
			return err
		}
		return ltCheck("cusparseLtSpMMACompressedSize", lt.compressSize(&s.h, &s.plan, &cs, &cbuf))
	})
	if err != nil {
		return err
	}
	if s.comp, err = s.d.Alloc(int(cs)); err != nil {
		return err
	}
	if ws > 0 {
		if s.ws, err = s.d.Alloc(int(ws)); err != nil {
			return err
		}
	}
	buf := Ptr(0)
	if cbuf > 0 {
		if buf, err = s.d.Alloc(int(cbuf)); err != nil {
			return err
		}
		defer s.d.Free(buf)
	}
	return s.d.Do(func() error {
		if err := ltCheck("cusparseLtSpMMACompress", lt.compress(&s.h, &s.plan, uint64(w), uint64(s.comp), uint64(buf), 0)); err != nil {
			return err
		}
		return check("cuCtxSynchronize", drv.cuCtxSynchronize())
	})
}

// MatMulT computes y[T][N] (float32, device) = x[T][K] · Wᵀ on the default
// stream. search runs cusparseLtMatmulSearch first (picks the fastest
// algorithm; do it once before timing).
func (s *SparseLt) MatMulT(y, x Ptr, search bool) error {
	alpha, beta := float32(1), float32(0)
	f := lt.matmul
	call := "cusparseLtMatmul"
	if search {
		f, call = lt.matmulSearch, "cusparseLtMatmulSearch"
	}
	return s.d.Do(func() error {
		return ltCheck(call, f(&s.h, &s.plan, unsafe.Pointer(&alpha), uint64(s.comp), uint64(x), unsafe.Pointer(&beta),
			uint64(y), uint64(y), uint64(s.ws), nil, 0))
	})
}

// Destroy releases the plan, descriptors, buffers and handle.
func (s *SparseLt) Destroy() {
	if s == nil || !s.initDone {
		return
	}
	s.d.Do(func() error {
		if s.planReady {
			lt.planDestroy(&s.plan)
			if lt.algSelDestroy != nil {
				lt.algSelDestroy(&s.alg)
			}
		}
		lt.matDestroy(&s.ma)
		lt.matDestroy(&s.mb)
		lt.matDestroy(&s.mc)
		lt.destroy(&s.h)
		return nil
	})
	s.d.Free(s.comp)
	s.d.Free(s.ws)
	s.initDone = false
}

// ltSymbols maps each required symbol to its Go function variable.
func ltSymbols() map[string]any {
	return map[string]any{
		"cusparseLtInit": &lt.init, "cusparseLtDestroy": &lt.destroy, "cusparseLtGetVersion": &lt.getVersion,
		"cusparseLtDenseDescriptorInit": &lt.dense, "cusparseLtStructuredDescriptorInit": &lt.structured,
		"cusparseLtMatDescriptorDestroy": &lt.matDestroy, "cusparseLtMatmulDescriptorInit": &lt.matmulDesc,
		"cusparseLtMatmulAlgSelectionInit": &lt.algInit, "cusparseLtMatmulPlanInit": &lt.planInit,
		"cusparseLtMatmulPlanDestroy": &lt.planDestroy, "cusparseLtMatmulGetWorkspace": &lt.workspace,
		"cusparseLtSpMMACompressedSize": &lt.compressSize, "cusparseLtSpMMACompress": &lt.compress,
		"cusparseLtSpMMAPruneCheck": &lt.pruneCheck, "cusparseLtMatmul": &lt.matmul,
		"cusparseLtMatmulSearch": &lt.matmulSearch,
	}
}

// ltOptional maps each optional symbol to its Go function variable.
func ltOptional() map[string]any {
	return map[string]any{"cusparseLtMatmulAlgSelectionDestroy": &lt.algSelDestroy}
}
