package kernel

import (
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"testing"
)

// Tolerance used by every GEMM test: for each output element,
//
//	|got − want| ≤ 1e-5 · sqrt(k) · Σ_p |a_ip · b_pj|  (+1e-30)
//
// where want is accumulated in float64. float32 products summed in any order
// stay well inside this bound (the typical error is ~6e-8·sqrt(k)·Σ|ab|).
func tolerance(k int, absSum float64) float64 {
	return 1e-5*math.Sqrt(float64(max(k, 1)))*absSum + 1e-30
}

func randSlice(r *rand.Rand, n int) []float32 {
	s := make([]float32, n)
	for i := range s {
		s[i] = r.Float32()*2 - 1
	}
	return s
}

// ref computes C = op(A)·op(B) in float64 with the element accessors of the
// three orientations, returning the value and Σ|products| per element.
func ref(m, n, k int, aAt, bAt func(i, p int) float32) (val, abs []float64) {
	val = make([]float64, m*n)
	abs = make([]float64, m*n)
	for i := 0; i < m; i++ {
		for j := 0; j < n; j++ {
			var s, sa float64
			for p := 0; p < k; p++ {
				x := float64(aAt(i, p)) * float64(bAt(p, j))
				s += x
				sa += math.Abs(x)
			}
			val[i*n+j], abs[i*n+j] = s, sa
		}
	}
	return val, abs
}

type orientation struct {
	name string
	fn   func(c, a, b []float32, m, n, k int, acc bool)
	// accessors for A(i,p) and B(p,j) given the slices and shape
	aAt func(a []float32, m, k int) func(i, p int) float32
	bAt func(b []float32, n, k int) func(p, j int) float32
}

var orientations = []orientation{
	{"MatMulT", MatMulT,
		func(a []float32, m, k int) func(i, p int) float32 { return func(i, p int) float32 { return a[i*k+p] } },
		func(b []float32, n, k int) func(p, j int) float32 { return func(p, j int) float32 { return b[j*k+p] } }},
	{"MatMul", MatMul,
		func(a []float32, m, k int) func(i, p int) float32 { return func(i, p int) float32 { return a[i*k+p] } },
		func(b []float32, n, k int) func(p, j int) float32 { return func(p, j int) float32 { return b[p*n+j] } }},
	{"MatMulTN", MatMulTN,
		func(a []float32, m, k int) func(i, p int) float32 { return func(i, p int) float32 { return a[p*m+i] } },
		func(b []float32, n, k int) func(p, j int) float32 { return func(p, j int) float32 { return b[p*n+j] } }},
}

// gemmCase is one random problem with its float64 reference.
type gemmCase struct {
	o         orientation
	m, n, k   int
	a, b, c0  []float32
	want, abs []float64
}

func newCase(o orientation, r *rand.Rand, m, n, k int) *gemmCase {
	g := &gemmCase{o: o, m: m, n: n, k: k, a: randSlice(r, m*k), b: randSlice(r, n*k), c0: randSlice(r, m*n)}
	g.want, g.abs = ref(m, n, k, o.aAt(g.a, m, k), o.bAt(g.b, n, k))
	return g
}

func (g *gemmCase) check(t *testing.T, acc bool) {
	t.Helper()
	c := append([]float32(nil), g.c0...)
	g.o.fn(c, g.a, g.b, g.m, g.n, g.k, acc)
	bad := 0
	for i, w := range g.want {
		abs := g.abs[i]
		if acc {
			w += float64(g.c0[i])
			abs += math.Abs(float64(g.c0[i]))
		}
		if d := math.Abs(float64(c[i]) - w); !(d <= tolerance(g.k, abs)) {
			if bad < 3 {
				t.Errorf("%s %s m=%d n=%d k=%d acc=%v procs=%d: C[%d,%d] = %g, want %g (|diff| %g)",
					Kernel(), g.o.name, g.m, g.n, g.k, acc, runtime.GOMAXPROCS(0), i/g.n, i%g.n, c[i], w, d)
			}
			bad++
		}
	}
	if bad > 0 {
		t.Errorf("%s %s m=%d n=%d k=%d acc=%v: %d of %d elements wrong", Kernel(), g.o.name, g.m, g.n, g.k, acc, bad, len(g.want))
	}
}

// forEachKernel runs f once per kernel set this build and machine provide.
func forEachKernel(t *testing.T, f func(t *testing.T)) {
	for _, ks := range kernelSets {
		t.Run(ks.name, func(t *testing.T) {
			restore, ok := setKernel(ks.name)
			if !ok {
				t.Fatalf("kernel set %q not found", ks.name)
			}
			defer restore()
			if Kernel() != ks.name {
				t.Fatalf("Kernel() = %q after switching to %q", Kernel(), ks.name)
			}
			f(t)
		})
	}
}

func TestGEMMRaggedShapes(t *testing.T) {
	sizes := []int{1, 3, 7, 16, 17, 33, 64, 65}
	if !testing.Short() {
		sizes = append(sizes, 130)
	}
	r := rand.New(rand.NewPCG(1, 2))
	var cases []*gemmCase
	for _, o := range orientations {
		for _, m := range sizes {
			for _, n := range sizes {
				for _, k := range sizes {
					cases = append(cases, newCase(o, r, m, n, k))
				}
			}
		}
	}
	forEachKernel(t, func(t *testing.T) {
		for i, g := range cases {
			g.check(t, i%2 == 0)
		}
	})
}

// TestGEMMBlocksAndThreads uses shapes that cross the kc/mc/nc blocks and the
// parallel threshold, on 1, 2 and 3 threads (row and column strips).
func TestGEMMBlocksAndThreads(t *testing.T) {
	shapes := [][3]int{{130, 131, 300}, {300, 70, 129}, {9, 600, 257}, {4096 / 8, 172, 64}, {40, 1100, 33},
		{260, 300, 130}, {257, 300, 160}} // the last two take MatMulT's weight-left path
	r := rand.New(rand.NewPCG(3, 4))
	var cases []*gemmCase
	for _, o := range orientations {
		for _, s := range shapes {
			cases = append(cases, newCase(o, r, s[0], s[1], s[2]))
		}
	}
	forEachKernel(t, func(t *testing.T) {
		if ks := active; !useWeightLeft(ks, 260, 300, 130) || !useWeightLeft(ks, 257, 300, 160) {
			t.Errorf("%s: test shapes miss the weight-left MatMulT path", ks.name)
		}
		for _, procs := range []int{1, 2, 3} {
			prev := runtime.GOMAXPROCS(procs)
			for i, g := range cases {
				g.check(t, (i+procs)%2 == 0)
			}
			runtime.GOMAXPROCS(prev)
		}
	})
}

func TestGEMMZeroK(t *testing.T) {
	for _, o := range orientations {
		c := []float32{1, 2, 3, 4, 5, 6}
		o.fn(c, nil, nil, 2, 3, 0, true)
		if c[5] != 6 {
			t.Errorf("%s k=0 acc: C changed to %v", o.name, c)
		}
		o.fn(c, nil, nil, 2, 3, 0, false)
		for i, v := range c {
			if v != 0 {
				t.Errorf("%s k=0: C[%d] = %g, want 0", o.name, i, v)
			}
		}
	}
}

func TestGEMMShortSlicePanics(t *testing.T) {
	for _, o := range orientations {
		func() {
			defer func() {
				msg := fmt.Sprint(recover())
				if msg == "<nil>" {
					t.Errorf("%s: no panic on short A", o.name)
				}
			}()
			o.fn(make([]float32, 4), make([]float32, 3), make([]float32, 4), 2, 2, 2, false)
		}()
	}
}

// TestKernelSetsPresent checks that the run-time choice picked the best set
// and that the AVX2 path stays reachable on an AVX-512 machine (the tests
// above then run all three).
func TestKernelSetsPresent(t *testing.T) {
	names := map[string]bool{}
	for _, ks := range kernelSets {
		names[ks.name] = true
		if ks.mr*ks.nr > 16*64 {
			t.Errorf("%s: tile %d×%d exceeds the edge buffer", ks.name, ks.mr, ks.nr)
		}
	}
	if !names["generic"] {
		t.Error("generic kernel set missing")
	}
	switch Kernel() {
	case "avx512":
		if !names["avx2"] {
			t.Error("AVX-512 machine without the avx2 set: the AVX2 path would go untested")
		}
	case "avx2", "generic":
	default:
		t.Errorf("Kernel() = %q", Kernel())
	}
	t.Logf("active kernel %s, sets %v", Kernel(), names)
}
