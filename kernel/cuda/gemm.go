package cuda

import (
	"embed"
	"encoding/binary"
	"fmt"
	"math"
	"strings"
	"unsafe"

	"github.com/sparsify/sparsify/format"
)

//go:embed kernels/*.cu
var kernelFS embed.FS

// KernelSource returns the embedded CUDA C source of name (e.g. "mmasp.cu").
func KernelSource(name string) (string, error) {
	b, err := kernelFS.ReadFile("kernels/" + name)
	return string(b), err
}

// GEMM holds the compiled sparsify kernels and a cuBLAS handle on a device.
type GEMM struct {
	D        *Device
	BLAS     *BLAS
	mod      *Module
	spmm     map[DType]*Function
	Compiled *Compiled
	Ordered  bool // built with mma.sp::ordered_metadata
}

// NewGEMM compiles (or loads from the cache) the mma.sp kernels for the
// device and creates a cuBLAS handle. It first tries the
// mma.sp::ordered_metadata form (PTX 8.5+, the non-deprecated spelling; our
// metadata always has ascending indices) and falls back to plain mma.sp.
func NewGEMM(d *Device) (*GEMM, error) {
	if d.major < 8 {
		return nil, fmt.Errorf("%w: %s is sm_%d%d; mma.sp needs sm_80 or newer", ErrNoCUDA, d.name, d.major, d.minor)
	}
	src, err := KernelSource("mmasp.cu")
	if err != nil {
		return nil, err
	}
	g := &GEMM{D: d, spmm: map[DType]*Function{}}
	c, err := Compile("mmasp.cu", src, d.Arch(), `-DSPARSIFY_SP_OP="mma.sp::ordered_metadata"`)
	g.Ordered = err == nil
	if err != nil {
		c, err = Compile("mmasp.cu", src, d.Arch())
		if err != nil {
			return nil, err
		}
	}
	g.Compiled = c
	if g.mod, err = d.LoadModule(c.Image); err != nil {
		return nil, err
	}
	for dt, name := range map[DType]string{BF16: "spmm_bf16", F16: "spmm_f16"} {
		if g.spmm[dt], err = g.mod.Function(name); err != nil {
			return nil, err
		}
	}
	if g.BLAS, err = d.NewBLAS(nil); err != nil {
		return nil, err
	}
	return g, nil
}

// Close releases the module and the cuBLAS handle.
func (g *GEMM) Close() error {
	err := g.BLAS.Destroy()
	if e := g.mod.Unload(); err == nil {
		err = e
	}
	return err
}

// SpMM launches the mma.sp kernel on device buffers: y[T][N] float32 =
// x[T][K] · Wᵀ, W given by its CUTLASS packed values ([N][K/2]) and
// reordered I16 meta, x of the same 16-bit type dt.
func (g *GEMM) SpMM(y, values, meta, x Ptr, dt DType, n, k, t int, s *Stream) error {
	if err := spmmShapeOK(n, k, t); err != nil {
		return err
	}
	f := g.spmm[dt]
	if f == nil {
		return fmt.Errorf("cuda: no mma.sp kernel for %v (F16 or BF16)", dt)
	}
	return f.Launch(spmmGrid(n, t), Dim3{X: 32 * emuWarpsPerBlock}, 0, s,
		values, meta, x, y, int32(n), int32(k), int32(t))
}

// SplitHalves splits float32 x ([rows][cols]) into parts 16-bit arrays of
// type dt with x[r][c] ≈ Σ_p part_p[r][c] · scales[p][r]. Each row is first
// scaled by a power of two that brings its max |x| to 1; part 0 is that
// rounded to dt, each next part the remainder scaled up by 2^8 (BF16) or
// 2^11 (F16). With parts = 3 the error is below 2^-24·|x| (BF16) and below
// 2^-24·|x| + 2^-44·max|row| (F16, whose subnormals floor tiny values). A
// GEMM on each part with FP32 accumulation, combined with the scales, then
// matches an FP32 GEMM: tensor cores take 16-bit inputs only.
func SplitHalves(x []float32, rows, cols int, dt DType, parts int) ([][]byte, [][]float64, error) {
	if dt != BF16 && dt != F16 {
		return nil, nil, fmt.Errorf("cuda: SplitHalves: %v is not a 16-bit type", dt)
	}
	if len(x) != rows*cols {
		return nil, nil, fmt.Errorf("cuda: SplitHalves: %d values for [%d, %d]", len(x), rows, cols)
	}
	step := 8
	if dt == F16 {
		step = 11
	}
	out := make([][]byte, parts)
	scales := make([][]float64, parts)
	for p := range out {
		out[p] = make([]byte, 2*len(x))
		scales[p] = make([]float64, rows)
	}
	r := make([]float64, cols)
	for row := 0; row < rows; row++ {
		xr := x[row*cols : (row+1)*cols]
		var mx float64
		for _, v := range xr {
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				return nil, nil, fmt.Errorf("cuda: SplitHalves: non-finite activation %v in row %d", v, row)
			}
			mx = max(mx, math.Abs(float64(v)))
		}
		s0 := 1.0
		if mx > 0 {
			s0 = math.Ldexp(1, -int(math.Ceil(math.Log2(mx))))
		}
		for i, v := range xr {
			r[i] = float64(v) * s0
		}
		for p := 0; p < parts; p++ {
			scales[p][row] = math.Ldexp(1/s0, -step*p)
			b := out[p][2*row*cols:]
			for i, v := range r {
				var h uint16
				var back float64
				if dt == BF16 {
					h = format.F32ToBF16(float32(v))
					back = float64(format.BF16ToF32(h))
				} else {
					h = format.F32ToF16(float32(v))
					back = float64(format.F16ToF32(h))
				}
				binary.LittleEndian.PutUint16(b[2*i:], h)
				r[i] = (v - back) * math.Ldexp(1, step)
			}
		}
	}
	return out, scales, nil
}

// f32bytes views a float32 slice as bytes.
func f32bytes(v []float32) []byte {
	if len(v) == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(&v[0])), 4*len(v))
}

// SparseMatMulTF32 computes y[T][N] = x[T][K] · Wᵀ for float32 x on the GPU
// with the mma.sp kernel, W as CUTLASS packed values and reordered meta of
// type dt: x is split in three 16-bit parts (SplitHalves), each multiplied on
// the tensor cores, and the results combined in float64 on the host.
func (g *GEMM) SparseMatMulTF32(y, x []float32, values, meta []byte, dt DType, n, k, t int) error {
	if len(values) != n*k || len(meta) != n*k/8 || len(x) < t*k || len(y) < t*n {
		return fmt.Errorf("cuda: SparseMatMulTF32: bad sizes")
	}
	parts, scales, err := SplitHalves(x[:t*k], t, k, dt, 3)
	if err != nil {
		return err
	}
	var bufs []Ptr
	defer func() {
		for _, p := range bufs {
			g.D.Free(p)
		}
	}()
	up := func(b []byte) (Ptr, error) {
		p, err := g.D.Upload(b)
		if err == nil {
			bufs = append(bufs, p)
		}
		return p, err
	}
	pv, err := up(values)
	if err != nil {
		return err
	}
	pm, err := up(meta)
	if err != nil {
		return err
	}
	py, err := g.D.Alloc(4 * t * n)
	if err != nil {
		return err
	}
	bufs = append(bufs, py)
	acc := make([]float64, t*n)
	part := make([]float32, t*n)
	for p := range parts {
		px, err := up(parts[p])
		if err != nil {
			return err
		}
		if err := g.SpMM(py, pv, pm, px, dt, n, k, t, nil); err != nil {
			return err
		}
		if err := g.D.CopyOut(f32bytes(part), py); err != nil {
			return err
		}
		for i, v := range part {
			acc[i] += float64(v) * scales[p][i/n]
		}
	}
	for i, v := range acc {
		y[i] = float32(v)
	}
	return nil
}

// DenseMatMulTF32 computes y[T][N] = x[T][K] · w[N][K]ᵀ in FP32 with cuBLAS
// (pedantic FP32 compute: no TF32, no 16-bit down-conversion).
func (g *GEMM) DenseMatMulTF32(y, x, w []float32, t, n, k int) error {
	if len(x) < t*k || len(w) < n*k || len(y) < t*n {
		return fmt.Errorf("cuda: DenseMatMulTF32: bad sizes")
	}
	px, err := g.D.Upload(f32bytes(x[:t*k]))
	if err != nil {
		return err
	}
	defer g.D.Free(px)
	pw, err := g.D.Upload(f32bytes(w[:n*k]))
	if err != nil {
		return err
	}
	defer g.D.Free(pw)
	py, err := g.D.Alloc(4 * t * n)
	if err != nil {
		return err
	}
	defer g.D.Free(py)
	if err := g.BLAS.MatMulT(py, px, pw, F32, t, n, k); err != nil {
		return err
	}
	return g.D.CopyOut(f32bytes(y[:t*n]), py)
}

// Describe is a one-line summary of the GPU setup, for logs.
func (g *GEMM) Describe() string {
	op := "mma.sp"
	if g.Ordered {
		op = "mma.sp::ordered_metadata"
	}
	var b strings.Builder
	ma, mi := g.D.ComputeCapability()
	fmt.Fprintf(&b, "%s (sm_%d%d, %.0f GiB, driver %d), nvrtc %d.%d (%s), %s kernel (cache %s), cuBLAS %s",
		g.D.Name(), ma, mi, float64(g.D.Memory())/(1<<30), g.D.DriverVersion(), nvrtc.major, nvrtc.minor, nvrtc.path,
		op, map[bool]string{true: "hit", false: "miss"}[g.Compiled.Cached], cublas.path)
	return b.String()
}

// SparseLtMatMulTF32 is SparseMatMulTF32 through cuSPARSELt: dense is the
// unpacked 2:4 weight [N][K] of type dt (cuSPARSELt compresses it itself);
// x is split in three 16-bit parts, tokens padded with zeros to a multiple
// of 32 for cuSPARSELt's size rules.
func (g *GEMM) SparseLtMatMulTF32(y, x []float32, dense []byte, dt DType, n, k, t int) error {
	if len(dense) != 2*n*k || len(x) < t*k || len(y) < t*n {
		return fmt.Errorf("cuda: SparseLtMatMulTF32: bad sizes")
	}
	tp := (t + 31) / 32 * 32
	xp := make([]float32, tp*k)
	copy(xp, x[:t*k])
	parts, scales, err := SplitHalves(xp, tp, k, dt, 3)
	if err != nil {
		return err
	}
	pw, err := g.D.Upload(dense)
	if err != nil {
		return err
	}
	defer g.D.Free(pw)
	sl, err := g.D.NewSparseLt(pw, dt, n, k, tp)
	if err != nil {
		return err
	}
	defer sl.Destroy()
	py, err := g.D.Alloc(4 * tp * n)
	if err != nil {
		return err
	}
	defer g.D.Free(py)
	acc := make([]float64, t*n)
	part := make([]float32, tp*n)
	for p := range parts {
		px, err := g.D.Upload(parts[p])
		if err != nil {
			return err
		}
		err = sl.MatMulT(py, px, false)
		if err == nil {
			err = g.D.CopyOut(f32bytes(part), py) // synchronous copy on the legacy stream: waits for the GEMM
		}
		g.D.Free(px)
		if err != nil {
			return err
		}
		for i := range acc {
			acc[i] += float64(part[i]) * scales[p][i/n]
		}
	}
	for i, v := range acc {
		y[i] = float32(v)
	}
	return nil
}
