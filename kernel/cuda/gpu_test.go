package cuda

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"strings"
	"testing"

	"github.com/sparsify/sparsify/format"
	"github.com/sparsify/sparsify/pack"
)

// These tests need an NVIDIA GPU (sm_80+) with the driver, NVRTC, cuBLAS and
// cuSPARSELt; elsewhere they skip with the reason. scripts/gpu-check.sh runs
// them from a test binary built with `go test -c`.

func gpu(t testing.TB) *GEMM {
	t.Helper()
	d, err := Open()
	if errors.Is(err, ErrNoCUDA) {
		t.Skipf("no GPU: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	g, err := gemmOnce(d)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

var gemmCache *GEMM

func gemmOnce(d *Device) (*GEMM, error) {
	if gemmCache != nil {
		return gemmCache, nil
	}
	g, err := NewGEMM(d)
	if err == nil {
		gemmCache = g
	}
	return g, err
}

func TestGPUOpen(t *testing.T) {
	g := gpu(t)
	ma, _ := g.D.ComputeCapability()
	if ma < 8 || g.D.Name() == "" || g.D.Memory() == 0 {
		t.Fatalf("device %q sm_%d, %d bytes", g.D.Name(), ma, g.D.Memory())
	}
	t.Log(g.Describe())
}

// TestGPULaunchArgs launches a kernel taking every argument type and checks
// what it stored: the marshalling of MarshalArgs as the hardware reads it.
func TestGPULaunchArgs(t *testing.T) {
	g := gpu(t)
	src := `extern "C" __global__ void echo(double* out, int a, float b, long long c, unsigned int d, double e) {
		if (threadIdx.x == 0) { out[0] = a; out[1] = b; out[2] = (double)c; out[3] = d; out[4] = e; }
	}`
	c, err := Compile("echo.cu", src, g.D.Arch())
	if err != nil {
		t.Fatal(err)
	}
	m, err := g.D.LoadModule(c.Image)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Unload()
	f, err := m.Function("echo")
	if err != nil {
		t.Fatal(err)
	}
	out, err := g.D.Alloc(40)
	if err != nil {
		t.Fatal(err)
	}
	defer g.D.Free(out)
	if err := f.Launch(Dim3{X: 1}, Dim3{X: 32}, 0, nil, out, int32(-7), float32(2.5), int64(-1)<<40, uint32(4000000000), 0.125); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 40)
	if err := g.D.CopyOut(b, out); err != nil {
		t.Fatal(err)
	}
	want := []float64{-7, 2.5, -(1 << 40), 4000000000, 0.125}
	for i, w := range want {
		if v := math.Float64frombits(binary.LittleEndian.Uint64(b[8*i:])); v != w {
			t.Errorf("arg %d: kernel saw %g, want %g", i, v, w)
		}
	}
	// A bad launch is an error naming the call, not a crash.
	if err := f.Launch(Dim3{X: 1}, Dim3{X: 2048}, 0, nil, out, int32(0), float32(0), int64(0), uint32(0), 0.0); err == nil {
		t.Error("block of 2048 threads accepted")
	}
}

type gpuCase struct {
	n, k, t int
	dt      DType
}

// upload16 makes the CUTLASS packed buffers and dense copies of a random 2:4
// matrix and random activations on the device.
type gpuData struct {
	w, x         []float64
	wraw, xraw   []byte
	values, meta []byte
	dW, dX       Ptr
	dV, dM, dY   Ptr
}

func newGPUData(t testing.TB, g *GEMM, c gpuCase, seed uint64) *gpuData {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, uint64(c.n+c.k+c.t)))
	bf := c.dt == BF16
	d := &gpuData{}
	d.w, d.wraw = random24(rng, c.n, c.k, bf, false)
	d.x, d.xraw = randomX(rng, c.t, c.k, bf, false)
	fdt := format.F16
	if bf {
		fdt = format.BF16
	}
	var err error
	if d.values, d.meta, err = pack.PackCutlass(fdt, c.n, c.k, d.wraw); err != nil {
		t.Fatal(err)
	}
	for _, u := range []struct {
		p *Ptr
		b []byte
	}{{&d.dW, d.wraw}, {&d.dX, d.xraw}, {&d.dV, d.values}, {&d.dM, d.meta}} {
		if *u.p, err = g.D.Upload(u.b); err != nil {
			t.Fatal(err)
		}
	}
	if d.dY, err = g.D.Alloc(4 * c.t * c.n); err != nil {
		t.Fatal(err)
	}
	return d
}

func (d *gpuData) free(g *GEMM) {
	for _, p := range []Ptr{d.dW, d.dX, d.dV, d.dM, d.dY} {
		g.D.Free(p)
	}
}

func download(t testing.TB, g *GEMM, p Ptr, n int) []float32 {
	y := make([]float32, n)
	if err := g.D.CopyOut(f32bytes(y), p); err != nil {
		t.Fatal(err)
	}
	return y
}

// compare checks |a-b| <= tol(k)·Σ|x·w| for every output.
func compare(t testing.TB, what string, a, b []float32, d *gpuData, c gpuCase) {
	t.Helper()
	worst := 0.0
	for i := range a {
		tok, row := i/c.n, i%c.n
		var s float64
		for q := 0; q < c.k; q++ {
			s += math.Abs(d.x[tok*c.k+q] * d.w[row*c.k+q])
		}
		// Two FP32 accumulations of k (dense) and k/2 (sparse) terms, any order.
		tol := float64(c.k+c.k/2)*0x1p-24*s + 1e-30
		r := math.Abs(float64(a[i])-float64(b[i])) / tol
		if !(r <= 1) {
			t.Fatalf("%s %+v: y[%d][%d]: %g vs %g (tol %g)", what, c, tok, row, a[i], b[i], tol)
		}
		worst = max(worst, r)
	}
	t.Logf("%s %+v: worst |Δ|/tol = %.3g", what, c, worst)
}

var gpuCases = []gpuCase{
	{32, 64, 8, BF16}, {64, 128, 40, BF16}, {160, 256, 7, F16}, {256, 512, 64, F16}, {1024, 1024, 100, BF16},
}

// TestGPUSpMM runs the mma.sp kernel on CUTLASS-packed matrices and compares
// it with the CPU emulation of the same kernel and with cuBLAS dense on the
// unpacked weights.
func TestGPUSpMM(t *testing.T) {
	g := gpu(t)
	for i, c := range gpuCases {
		d := newGPUData(t, g, c, uint64(i))
		if err := g.SpMM(d.dY, d.dV, d.dM, d.dX, c.dt, c.n, c.k, c.t, nil); err != nil {
			t.Fatal(err)
		}
		ys := download(t, g, d.dY, c.t*c.n)
		if err := g.BLAS.MatMulT(d.dY, d.dX, d.dW, c.dt, c.t, c.n, c.k); err != nil {
			t.Fatal(err)
		}
		yd := download(t, g, d.dY, c.t*c.n)
		ye := make([]float32, c.t*c.n)
		if err := EmuSpMM(ye, d.values, d.meta, d.xraw, c.n, c.k, c.t, c.dt == BF16); err != nil {
			t.Fatal(err)
		}
		compare(t, "mma.sp vs emulation", ys, ye, d, c)
		compare(t, "mma.sp vs cuBLAS", ys, yd, d, c)
		d.free(g)
	}
}

// TestGPUCuSparseLt runs cuSPARSELt on the unpacked 2:4 matrix (it compresses
// it itself) against cuBLAS dense, and checks that a matrix that is not 2:4
// is refused by its prune check.
func TestGPUCuSparseLt(t *testing.T) {
	g := gpu(t)
	for i, c := range []gpuCase{{128, 128, 16, BF16}, {256, 512, 64, F16}, {1024, 1024, 128, BF16}} {
		d := newGPUData(t, g, c, uint64(100+i))
		sl, err := g.D.NewSparseLt(d.dW, c.dt, c.n, c.k, c.t)
		if err != nil {
			t.Fatal(err)
		}
		if err := sl.MatMulT(d.dY, d.dX, false); err != nil {
			t.Fatal(err)
		}
		if err := g.D.Synchronize(); err != nil {
			t.Fatal(err)
		}
		yl := download(t, g, d.dY, c.t*c.n)
		if err := g.BLAS.MatMulT(d.dY, d.dX, d.dW, c.dt, c.t, c.n, c.k); err != nil {
			t.Fatal(err)
		}
		yd := download(t, g, d.dY, c.t*c.n)
		compare(t, fmt.Sprintf("cuSPARSELt %d vs cuBLAS", sl.Version), yl, yd, d, c)
		sl.Destroy()
		d.free(g)
	}
	// Dense (not 2:4) matrix: the prune check must refuse it.
	c := gpuCase{128, 128, 16, BF16}
	d := newGPUData(t, g, c, 7)
	defer d.free(g)
	full := make([]byte, len(d.wraw))
	for i := 0; i < len(full); i += 2 {
		binary.LittleEndian.PutUint16(full[i:], format.F32ToBF16(1))
	}
	if err := g.D.CopyIn(d.dW, full); err != nil {
		t.Fatal(err)
	}
	if _, err := g.D.NewSparseLt(d.dW, c.dt, c.n, c.k, c.t); !errors.Is(err, ErrNotTwoFour) {
		t.Fatalf("dense matrix: err = %v, want ErrNotTwoFour", err)
	}
}

// TestGPUF32 checks the float32 path verify uses: split activations through
// the mma.sp kernel against pedantic-FP32 cuBLAS.
func TestGPUF32(t *testing.T) {
	g := gpu(t)
	c := gpuCase{256, 512, 33, BF16}
	rng := rand.New(rand.NewPCG(9, 9))
	w, wraw := random24(rng, c.n, c.k, true, false)
	x := make([]float32, c.t*c.k)
	xf := make([]float64, len(x))
	for i := range x {
		x[i] = float32(rng.Float64()*2 - 1)
		xf[i] = float64(x[i])
	}
	vals, meta, err := pack.PackCutlass(format.BF16, c.n, c.k, wraw)
	if err != nil {
		t.Fatal(err)
	}
	wf := make([]float32, len(w))
	for i, v := range w {
		wf[i] = float32(v)
	}
	ys := make([]float32, c.t*c.n)
	yd := make([]float32, c.t*c.n)
	if err := g.SparseMatMulTF32(ys, x, vals, meta, BF16, c.n, c.k, c.t); err != nil {
		t.Fatal(err)
	}
	if err := g.DenseMatMulTF32(yd, x, wf, c.t, c.n, c.k); err != nil {
		t.Fatal(err)
	}
	compare(t, "split mma.sp vs FP32 cuBLAS", ys, yd, &gpuData{w: w, x: xf}, c)
}

// TestGPUBenchTable times sparse against dense for the shapes when
// SPARSIFY_GPU_BENCH names an output file (tab-separated); it is what
// scripts/gpu-check.sh runs. Reproduce: SPARSIFY_GPU_BENCH=bench.tsv
// bin/cuda.test -test.run TestGPUBenchTable -test.v
func TestGPUBenchTable(t *testing.T) {
	out := os.Getenv("SPARSIFY_GPU_BENCH")
	if out == "" {
		t.Skip("set SPARSIFY_GPU_BENCH=file to run the benchmark table")
	}
	g := gpu(t)
	iters := 20
	var rows []string
	rows = append(rows, "N\tK\ttokens\tcublas_bf16_ms\tmmasp_ms\tcusparselt_ms\tcublas/mmasp\tcublas/cusparselt\tdense_TFLOPs")
	for _, nk := range [][2]int{{4096, 4096}, {11008, 4096}, {4096, 11008}} {
		// One matrix and 4096 tokens of activations per shape; fewer tokens
		// use the first rows of X.
		full := gpuCase{nk[0], nk[1], 4096, BF16}
		d := newGPUData(t, g, full, 1)
		for _, tok := range []int{16, 512, 4096} {
			c := gpuCase{nk[0], nk[1], tok, BF16}
			dense := timeIt(t, g, iters, func() error { return g.BLAS.MatMulT(d.dY, d.dX, d.dW, BF16, tok, c.n, c.k) })
			mmasp := timeIt(t, g, iters, func() error { return g.SpMM(d.dY, d.dV, d.dM, d.dX, BF16, c.n, c.k, tok, nil) })
			if tok == 16 { // spot check at full size: mma.sp against cuBLAS
				ys := download(t, g, d.dY, tok*c.n)
				if err := g.BLAS.MatMulT(d.dY, d.dX, d.dW, BF16, tok, c.n, c.k); err != nil {
					t.Fatal(err)
				}
				yd := download(t, g, d.dY, tok*c.n)
				sub := &gpuData{w: d.w, x: d.x[:tok*c.k]}
				compare(t, "bench mma.sp vs cuBLAS", ys, yd, sub, c)
			}
			ltms := math.NaN()
			if sl, err := g.D.NewSparseLt(d.dW, BF16, c.n, c.k, tok); err != nil {
				t.Errorf("cuSPARSELt %+v: %v", c, err)
			} else {
				if err := sl.MatMulT(d.dY, d.dX, true); err != nil {
					t.Errorf("cuSPARSELt search: %v", err)
				}
				ltms = timeIt(t, g, iters, func() error { return sl.MatMulT(d.dY, d.dX, false) })
				sl.Destroy()
			}
			tflops := 2 * float64(c.n) * float64(c.k) * float64(tok) / (dense * 1e-3) / 1e12
			rows = append(rows, fmt.Sprintf("%d\t%d\t%d\t%.4f\t%.4f\t%.4f\t%.2f\t%.2f\t%.0f",
				c.n, c.k, tok, dense, mmasp, ltms, dense/mmasp, dense/ltms, tflops))
			t.Log(rows[len(rows)-1])
		}
		d.free(g)
	}
	if err := os.WriteFile(out, []byte(strings.Join(rows, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
}

// timeIt returns the mean milliseconds of f over iters runs (after 3 warm-up
// runs), timed with CUDA events on the default stream.
func timeIt(t testing.TB, g *GEMM, iters int, f func() error) float64 {
	t.Helper()
	for i := 0; i < 3; i++ {
		if err := f(); err != nil {
			t.Fatal(err)
		}
	}
	a, err := g.D.NewEvent()
	if err != nil {
		t.Fatal(err)
	}
	defer a.Destroy()
	b, err := g.D.NewEvent()
	if err != nil {
		t.Fatal(err)
	}
	defer b.Destroy()
	if err := a.Record(nil); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < iters; i++ {
		if err := f(); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Record(nil); err != nil {
		t.Fatal(err)
	}
	if err := b.Synchronize(); err != nil {
		t.Fatal(err)
	}
	ms, err := b.Since(a)
	if err != nil {
		t.Fatal(err)
	}
	return float64(ms) / float64(iters)
}

// BenchmarkGPUSpMM times the mma.sp kernel on a 4096x4096 BF16 weight and
// 512 tokens (skips without a GPU). Reproduce:
// bin/cuda.test -test.run '^$' -test.bench GPUSpMM -test.benchtime 50x
func BenchmarkGPUSpMM(b *testing.B) {
	g := gpu(b)
	c := gpuCase{4096, 4096, 512, BF16}
	d := newGPUData(b, g, c, 1)
	defer d.free(g)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := g.SpMM(d.dY, d.dV, d.dM, d.dX, BF16, c.n, c.k, c.t, nil); err != nil {
			b.Fatal(err)
		}
	}
	if err := g.D.Synchronize(); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(2*float64(c.n*c.k*c.t)*float64(b.N)/b.Elapsed().Seconds()/1e12, "dense-equiv-TFLOP/s")
}
