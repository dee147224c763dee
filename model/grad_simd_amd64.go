//go:build goexperiment.simd && amd64

package model

import "simd/archsimd"

var gHasAVX512 = archsimd.X86.AVX512()

// gExpVec sets dst[i] = e^(src[i]·scale − sub) for the first len(dst)&^15
// elements on AVX-512 (range reduction, the Cephes polynomial, VSCALEFPS) and
// returns how many it did and their sum; (0, 0) without AVX-512. Arguments
// are clamped to [−103, 88.7]. dst may alias src.
func gExpVec(dst, src []float32, scale, sub float32) (int, float32) {
	if !gHasAVX512 || len(dst) < 16 {
		return 0, 0
	}
	n := len(dst) &^ 15
	src = src[:len(dst)]
	var (
		vsc   = archsimd.BroadcastFloat32x16(scale)
		vsub  = archsimd.BroadcastFloat32x16(sub)
		lo    = archsimd.BroadcastFloat32x16(-103)
		hi    = archsimd.BroadcastFloat32x16(88.7)
		log2e = archsimd.BroadcastFloat32x16(1.44269504088896341)
		ln2hi = archsimd.BroadcastFloat32x16(0.693359375)
		ln2lo = archsimd.BroadcastFloat32x16(-2.12194440e-4)
		c0    = archsimd.BroadcastFloat32x16(1.9875691500e-4)
		c1    = archsimd.BroadcastFloat32x16(1.3981999507e-3)
		c2    = archsimd.BroadcastFloat32x16(8.3334519073e-3)
		c3    = archsimd.BroadcastFloat32x16(4.1665795894e-2)
		c4    = archsimd.BroadcastFloat32x16(1.6666665459e-1)
		c5    = archsimd.BroadcastFloat32x16(5.0000001201e-1)
		one   = archsimd.BroadcastFloat32x16(1)
		sum   archsimd.Float32x16
	)
	for i := 0; i < n; i += 16 {
		v := archsimd.LoadFloat32x16Slice(src[i:]).Mul(vsc).Sub(vsub).Max(lo).Min(hi)
		k := v.Mul(log2e).RoundToEvenScaled(0)
		r := v.Sub(k.Mul(ln2hi)).Sub(k.Mul(ln2lo))
		p := c0.MulAdd(r, c1)
		p = p.MulAdd(r, c2)
		p = p.MulAdd(r, c3)
		p = p.MulAdd(r, c4)
		p = p.MulAdd(r, c5)
		p = p.Mul(r.Mul(r)).Add(r).Add(one)
		e := p.Scale(k)
		e.StoreSlice(dst[i:])
		sum = sum.Add(e)
	}
	var buf [16]float32
	sum.Store(&buf)
	archsimd.ClearAVXUpperBits() // dirty upper state makes later SSE code crawl
	var s float32
	for _, v := range buf {
		s += v
	}
	return n, s
}
