package kernel

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"testing"
)

// Benchmarks at the shapes of issue 4 (tokens × out × in). Reproduce with
//
//	GOEXPERIMENT=simd go test -run '^$' -bench 'MatMulT' -benchtime 5x ./kernel/
//
// or scripts/bench-gemm.sh, which alternates with the numpy/OpenBLAS peer and
// prints medians. GFLOP/s counts dense-equivalent FLOPs (2·m·n·k) for the
// sparse kernel too, so its figure is directly comparable; BenchmarkSparseMatMulT
// also reports sparse/dense, its CPU time over that of as many MatMulT calls
// on the same shape run right after it.

var benchShapes = [][3]int{{512, 4096, 4096}, {512, 11008, 4096}}

type benchData struct {
	x, w, c []float32
	sp      *Sparse24
}

var benchCache = map[[3]int]*benchData{}

func getBenchData(b *testing.B, s [3]int, sparse bool) *benchData {
	b.Helper()
	d := benchCache[s]
	if d == nil {
		m, n, k := s[0], s[1], s[2]
		r := rand.New(rand.NewPCG(uint64(n), uint64(k)))
		d = &benchData{x: randSlice(r, m*k), w: randSlice(r, n*k), c: make([]float32, m*n)}
		benchCache[s] = d
	}
	if sparse && d.sp == nil {
		r := rand.New(rand.NewPCG(11, 12))
		dense := random24(r, s[1], s[2])
		values, meta, _ := pack24(b, dense, s[1], s[2])
		sp, err := NewSparse24(s[1], s[2], values, meta)
		if err != nil {
			b.Fatal(err)
		}
		d.sp = sp
	}
	return d
}

// benchLoop runs f b.N times and reports GFLOP/s (wall) and GFLOP per
// CPU-second divided by GOMAXPROCS ("GFLOP/s-cpu": the wall figure the run
// would have shown with every core to itself).
func benchLoop(b *testing.B, m, n, k int, f func()) (cpu float64) {
	f() // warm-up: buffer pools, page faults
	b.ResetTimer()
	c0 := cpuSeconds()
	for b.Loop() {
		f()
	}
	cpu = cpuSeconds() - c0
	flops := 2 * float64(m) * float64(n) * float64(k) * float64(b.N)
	b.ReportMetric(flops/b.Elapsed().Seconds()/1e9, "GFLOP/s")
	if cpu > 0 {
		b.ReportMetric(flops/(cpu/float64(runtime.GOMAXPROCS(0)))/1e9, "GFLOP/s-cpu")
	}
	return cpu
}

func BenchmarkMatMulT(b *testing.B) {
	for _, s := range benchShapes {
		b.Run(fmt.Sprintf("%dx%dx%d", s[0], s[1], s[2]), func(b *testing.B) {
			d := getBenchData(b, s, false)
			m, n, k := s[0], s[1], s[2]
			benchLoop(b, m, n, k, func() { MatMulT(d.c, d.x, d.w, m, n, k, false) })
		})
	}
}

func BenchmarkSparseMatMulT(b *testing.B) {
	for _, s := range benchShapes {
		b.Run(fmt.Sprintf("%dx%dx%d", s[0], s[1], s[2]), func(b *testing.B) {
			d := getBenchData(b, s, true)
			m, n, k := s[0], s[1], s[2]
			cpu := benchLoop(b, m, n, k, func() { SparseMatMulT(d.c, d.x, d.sp, m, false) })
			// The same number of dense calls right after, untimed, for the
			// "sparse/dense" metric: sparse CPU time over dense CPU time
			// (0.5 is the arithmetic limit of 2:4).
			b.StopTimer()
			n0 := b.N
			c0 := cpuSeconds()
			for range n0 {
				MatMulT(d.c, d.x, d.w, m, n, k, false)
			}
			if dense := cpuSeconds() - c0; dense > 0 && cpu > 0 {
				b.ReportMetric(cpu/dense, "sparse/dense")
			}
		})
	}
}

// The three orientations on a square-ish shape and on the transformer's
// training shapes (4096 tokens, d=64, hidden 172): forward y = x Wᵀ, input
// gradient dx = dy W, weight gradient dW = dyᵀ x.
func BenchmarkGEMMOrientations(b *testing.B) {
	shapes := map[string][][3]int{
		"MatMulT":  {{512, 1024, 1024}, {4096, 172, 64}, {4096, 64, 172}},
		"MatMul":   {{512, 1024, 1024}, {4096, 64, 172}, {4096, 172, 64}},
		"MatMulTN": {{512, 1024, 1024}, {172, 64, 4096}, {64, 172, 4096}},
	}
	for _, o := range orientations {
		for _, s := range shapes[o.name] {
			b.Run(fmt.Sprintf("%s/%dx%dx%d", o.name, s[0], s[1], s[2]), func(b *testing.B) {
				m, n, k := s[0], s[1], s[2]
				r := rand.New(rand.NewPCG(1, 1))
				a, w, c := randSlice(r, m*k), randSlice(r, n*k), make([]float32, m*n)
				benchLoop(b, m, n, k, func() { o.fn(c, a, w, m, n, k, true) })
			})
		}
	}
}
