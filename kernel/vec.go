package kernel

import "fmt"

// Dot returns Σ x[i]·y[i] for i < len(x), accumulated in float32 over
// several independent partial sums (vectorised like the GEMMs). y must be at
// least as long as x.
func Dot(x, y []float32) float32 {
	if len(y) < len(x) {
		panic(fmt.Sprintf("kernel: Dot: y has %d elements, x %d", len(y), len(x)))
	}
	return active.dot(x, y[:len(x)])
}

// Axpy computes y[i] += a·x[i] for i < len(x). y must be at least as long as x.
func Axpy(a float32, x, y []float32) {
	if len(y) < len(x) {
		panic(fmt.Sprintf("kernel: Axpy: y has %d elements, x %d", len(y), len(x)))
	}
	active.axpy(a, x, y[:len(x)])
}

// Scale computes x[i] *= a.
func Scale(a float32, x []float32) { active.scale(a, x) }

func dotGeneric(x, y []float32) float32 {
	var s0, s1, s2, s3 float32
	i := 0
	for ; i+4 <= len(x); i += 4 {
		s0 += x[i] * y[i]
		s1 += x[i+1] * y[i+1]
		s2 += x[i+2] * y[i+2]
		s3 += x[i+3] * y[i+3]
	}
	for ; i < len(x); i++ {
		s0 += x[i] * y[i]
	}
	return (s0 + s1) + (s2 + s3)
}

func axpyGeneric(a float32, x, y []float32) {
	y = y[:len(x)]
	for i, v := range x {
		y[i] += a * v
	}
}

func scaleGeneric(a float32, x []float32) {
	for i := range x {
		x[i] *= a
	}
}
