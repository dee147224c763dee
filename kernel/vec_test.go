package kernel

import (
	"math"
	"math/rand/v2"
	"testing"
)

func TestVectorHelpers(t *testing.T) {
	r := rand.New(rand.NewPCG(21, 22))
	forEachKernel(t, func(t *testing.T) {
		for _, n := range []int{0, 1, 7, 16, 63, 64, 65, 200, 1031} {
			x, y := randSlice(r, n), randSlice(r, n+3)
			var want, abs float64
			for i := range x {
				want += float64(x[i]) * float64(y[i])
				abs += math.Abs(float64(x[i]) * float64(y[i]))
			}
			if got := Dot(x, y); math.Abs(float64(got)-want) > tolerance(n, abs) {
				t.Errorf("%s Dot n=%d = %g, want %g", Kernel(), n, got, want)
			}
			y0 := append([]float32(nil), y...)
			Axpy(0.5, x, y)
			for i := range y {
				w := y0[i]
				if i < n {
					w += 0.5 * x[i]
				}
				if math.Abs(float64(y[i]-w)) > 1e-6 {
					t.Fatalf("%s Axpy n=%d: y[%d] = %g, want %g", Kernel(), n, i, y[i], w)
				}
			}
			x0 := append([]float32(nil), x...)
			Scale(-3, x)
			for i := range x {
				if x[i] != -3*x0[i] {
					t.Fatalf("%s Scale n=%d: x[%d] = %g, want %g", Kernel(), n, i, x[i], -3*x0[i])
				}
			}
		}
	})
}
