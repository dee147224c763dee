package mask

import (
	"math"
	"math/rand/v2"
	"reflect"
	"testing"
)

// magnitudeRef is the reference selection: keepTopN on math.Abs(float64(w)).
func magnitudeRef(w []float32, rows, cols int, p Pattern) *Mask {
	return selectNM(rows, cols, p, func(r, c int) float64 { return math.Abs(float64(w[r*cols+c])) })
}

// TestMagnitudeMatchesReference: the integer comparison chooses exactly what
// ranking |w| as float64 does, ties, ±0 and subnormals included.
func TestMagnitudeMatchesReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	vals := []float32{0, float32(math.Copysign(0, -1)), 1, -1, 0.5, -0.5, 1e-45, -1e-45, 3e38, -2}
	for _, p := range []Pattern{Pattern24, {N: 1, M: 2}, {N: 1, M: 4}, {N: 4, M: 8}, {N: 3, M: 16}} {
		rows, cols := 9, 64
		for trial := 0; trial < 3; trial++ {
			w := make([]float32, rows*cols)
			for i := range w {
				if trial == 0 {
					w[i] = vals[rng.IntN(len(vals))] // many ties
				} else {
					w[i] = float32(rng.NormFloat64())
				}
			}
			got, err := Magnitude(w, rows, cols, p)
			if err != nil {
				t.Fatal(err)
			}
			if want := magnitudeRef(w, rows, cols, p); !reflect.DeepEqual(got.Keep, want.Keep) {
				t.Errorf("%v trial %d: Magnitude differs from the float64 reference", p, trial)
			}
			if err := got.Check(p); err != nil {
				t.Error(err)
			}
		}
	}
}

// BenchmarkMagnitude24 selects 2:4 on a 4096 × 4096 weight; the reference
// (float64 scores through a closure) runs as a sub-benchmark for comparison.
// go test -run XXX -bench Magnitude24 -benchtime 5x ./mask
func BenchmarkMagnitude24(b *testing.B) {
	rows, cols := 4096, 4096
	w := make([]float32, rows*cols)
	rng := rand.New(rand.NewPCG(1, 1))
	for i := range w {
		w[i] = float32(rng.NormFloat64())
	}
	b.Run("Magnitude", func(b *testing.B) {
		b.SetBytes(int64(4 * len(w)))
		for i := 0; i < b.N; i++ {
			if _, err := Magnitude(w, rows, cols, Pattern24); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("reference", func(b *testing.B) {
		b.SetBytes(int64(4 * len(w)))
		for i := 0; i < b.N; i++ {
			magnitudeRef(w, rows, cols, Pattern24)
		}
	})
}
