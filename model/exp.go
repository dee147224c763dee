package model

import "math"

// fastExp is e^x in float32 arithmetic, accurate to about 2 ulp for x in
// [-87, 88] (0 below, +Inf above). It avoids math.Exp's assembly, which runs
// orders of magnitude slower on some machines once AVX-512 code has run in the
// process (dirty upper register state), and float64 conversions.
func fastExp(x float32) float32 {
	if x > 88.72 {
		return float32(math.Inf(1))
	}
	if x < -87.3 {
		return 0
	}
	if x != x {
		return x
	}
	const (
		log2e = 1.44269504088896341
		ln2hi = 0.693359375
		ln2lo = -2.12194440e-4
	)
	t := x * log2e
	if t < 0 {
		t -= 0.5
	} else {
		t += 0.5
	}
	n := float32(int32(t))
	r := x - n*ln2hi - n*ln2lo
	// exp(r) on [-ln2/2, ln2/2] (Cephes expf polynomial)
	p := float32(1.9875691500e-4)
	p = p*r + 1.3981999507e-3
	p = p*r + 8.3334519073e-3
	p = p*r + 4.1665795894e-2
	p = p*r + 1.6666665459e-1
	p = p*r + 5.0000001201e-1
	p = p*r*r + r + 1
	return p * math.Float32frombits(uint32(int32(n)+127)<<23)
}
