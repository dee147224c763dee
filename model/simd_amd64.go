//go:build goexperiment.simd && amd64

package model

import "simd/archsimd"

var hasAVX2 = archsimd.X86.AVX2() && archsimd.X86.FMA()

// expSub replaces x[i] by e^(x[i]−mx) for i < n = len(x) rounded down to a
// multiple of 8 (AVX2, 8 lanes: Cephes reduction and polynomial, 2^k built in
// the exponent bits) and returns n and the sum of the new values. Inputs must
// be ≤ mx (softmax rows). n is 0 without AVX2.
func expSub(x []float32, mx float32) (int, float32) {
	n := len(x) &^ 7
	if !hasAVX2 || n == 0 {
		return 0, 0
	}
	var (
		vmax  = archsimd.BroadcastFloat32x8(mx)
		lo    = archsimd.BroadcastFloat32x8(-87.3)
		log2e = archsimd.BroadcastFloat32x8(1.44269504088896341)
		ln2hi = archsimd.BroadcastFloat32x8(0.693359375)
		ln2lo = archsimd.BroadcastFloat32x8(-2.12194440e-4)
		c0    = archsimd.BroadcastFloat32x8(1.9875691500e-4)
		c1    = archsimd.BroadcastFloat32x8(1.3981999507e-3)
		c2    = archsimd.BroadcastFloat32x8(8.3334519073e-3)
		c3    = archsimd.BroadcastFloat32x8(4.1665795894e-2)
		c4    = archsimd.BroadcastFloat32x8(1.6666665459e-1)
		c5    = archsimd.BroadcastFloat32x8(5.0000001201e-1)
		one   = archsimd.BroadcastFloat32x8(1)
		bias  = archsimd.BroadcastInt32x8(127)
		sum   archsimd.Float32x8
	)
	for i := 0; i < n; i += 8 {
		v := archsimd.LoadFloat32x8Slice(x[i:]).Sub(vmax).Max(lo)
		k := v.Mul(log2e).RoundToEven()
		r := v.Sub(k.Mul(ln2hi)).Sub(k.Mul(ln2lo))
		p := c0.MulAdd(r, c1)
		p = p.MulAdd(r, c2)
		p = p.MulAdd(r, c3)
		p = p.MulAdd(r, c4)
		p = p.MulAdd(r, c5)
		p = p.Mul(r.Mul(r)).Add(r).Add(one)
		e := p.Mul(k.ConvertToInt32().Add(bias).ShiftAllLeft(23).AsFloat32x8())
		e.StoreSlice(x[i:])
		sum = sum.Add(e)
	}
	var buf [8]float32
	sum.StoreSlice(buf[:])
	archsimd.ClearAVXUpperBits() // dirty upper state makes later SSE code crawl
	return n, ((buf[0] + buf[1]) + (buf[2] + buf[3])) + ((buf[4] + buf[5]) + (buf[6] + buf[7]))
}
