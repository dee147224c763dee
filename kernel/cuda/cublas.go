package cuda

import (
	"fmt"
	"sync"
	"unsafe"
)

// cudaDataType values (library_types.h).
const (
	dataR32F  = 0
	dataR16F  = 2
	dataR16BF = 14
)

// cuBLAS constants.
const (
	cublasOpN             = 0
	cublasOpT             = 1
	cublasCompute32F      = 68
	cublasCompute32FPedan = 69
	cublasGemmDefault     = -1
)

var cublas struct {
	path      string
	create    func(h *uintptr) int32
	destroy   func(h uintptr) int32
	setStream func(h uintptr, s uintptr) int32
	gemmEx    func(h uintptr, ta, tb int32, m, n, k int32, alpha unsafe.Pointer, a uint64, at int32, lda int32,
		b uint64, bt int32, ldb int32, beta unsafe.Pointer, c uint64, ct int32, ldc int32, compute int32, algo int32) int32
	status func(s int32) *byte
}

var loadCuBLAS = sync.OnceValue(func() error {
	h, path, err := newSearcher().load(libCuBLAS.preferMajor(driverMajor()))
	if err != nil {
		return err
	}
	cublas.path = path
	if err := bind(h, path, cublasSymbols()); err != nil {
		return err
	}
	bindOptional(h, cublasOptional())
	return nil
})

func cublasCheck(call string, r int32) error {
	if r == 0 {
		return nil
	}
	msg := fmt.Sprintf("cublasStatus %d", r)
	if cublas.status != nil {
		msg = cstr(cublas.status(r))
	}
	return fmt.Errorf("cuda: %s: %s", call, msg)
}

// BLAS is a cuBLAS handle bound to a device.
type BLAS struct {
	d *Device
	h uintptr
}

// NewBLAS loads cuBLAS and creates a handle (on the default stream, or s).
func (d *Device) NewBLAS(s *Stream) (*BLAS, error) {
	if err := loadCuBLAS(); err != nil {
		return nil, err
	}
	b := &BLAS{d: d}
	err := d.Do(func() error {
		if err := cublasCheck("cublasCreate", cublas.create(&b.h)); err != nil {
			return err
		}
		return cublasCheck("cublasSetStream", cublas.setStream(b.h, s.Handle()))
	})
	return b, err
}

// Destroy releases the handle.
func (b *BLAS) Destroy() error {
	if b == nil || b.h == 0 {
		return nil
	}
	err := b.d.Do(func() error { return cublasCheck("cublasDestroy", cublas.destroy(b.h)) })
	b.h = 0
	return err
}

// DType is the element type of a GPU GEMM input.
type DType int

const (
	F32  DType = iota // float32 (cuBLAS in pedantic FP32: no TF32)
	F16               // IEEE half
	BF16              // bfloat16
)

func (t DType) String() string { return [...]string{"f32", "f16", "bf16"}[t] }

func (t DType) cuda() int32 { return [...]int32{dataR32F, dataR16F, dataR16BF}[t] }

// Size is the element size in bytes.
func (t DType) Size() int { return [...]int{4, 2, 2}[t] }

// MatMulT computes y[T][N] (float32) = x[T][K] · w[N][K]ᵀ with x and w of
// type dt on the device, accumulating in FP32 (cublasGemmEx; for F32 inputs
// CUBLAS_COMPUTE_32F_PEDANTIC, so no TF32). Column-major view: Yᵀ (N×T, ld N)
// = op(W)=Wᵀ-of-(K×N) · Xᵀ (K×T, ld K).
func (b *BLAS) MatMulT(y, x, w Ptr, dt DType, t, n, k int) error {
	alpha, beta := float32(1), float32(0)
	compute := int32(cublasCompute32F)
	if dt == F32 {
		compute = cublasCompute32FPedan
	}
	return b.d.Do(func() error {
		return cublasCheck(fmt.Sprintf("cublasGemmEx(%v, N=%d T=%d K=%d)", dt, n, t, k),
			cublas.gemmEx(b.h, cublasOpT, cublasOpN, int32(n), int32(t), int32(k), unsafe.Pointer(&alpha),
				uint64(w), dt.cuda(), int32(k), uint64(x), dt.cuda(), int32(k), unsafe.Pointer(&beta),
				uint64(y), dataR32F, int32(n), compute, cublasGemmDefault))
	})
}

// cublasSymbols maps each required symbol to its Go function variable.
func cublasSymbols() map[string]any {
	return map[string]any{
		"cublasCreate_v2": &cublas.create, "cublasDestroy_v2": &cublas.destroy,
		"cublasSetStream_v2": &cublas.setStream, "cublasGemmEx": &cublas.gemmEx,
	}
}

// cublasOptional maps each optional symbol to its Go function variable.
func cublasOptional() map[string]any {
	return map[string]any{"cublasGetStatusString": &cublas.status}
}
