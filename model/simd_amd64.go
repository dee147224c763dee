//go:build goexperiment.simd && amd64

package model

import "simd/archsimd"

var hasAVX512 = archsimd.X86.AVX512()

// softmaxVec is Softmax on AVX-512 (16 lanes, exp by range reduction,
// polynomial and VSCALEFPS); it reports false when the CPU lacks AVX-512.
func softmaxVec(x []float32) bool {
	if !hasAVX512 || len(x) < 16 {
		return false
	}
	n := len(x) &^ 15
	mv := archsimd.LoadFloat32x16Slice(x)
	for i := 16; i < n; i += 16 {
		mv = mv.Max(archsimd.LoadFloat32x16Slice(x[i:]))
	}
	var buf [16]float32
	mv.Store(&buf)
	archsimd.ClearAVXUpperBits() // before scalar SSE code: dirty upper state makes it crawl
	mx := buf[0]
	for _, v := range buf[1:] {
		mx = max(mx, v)
	}
	for _, v := range x[n:] {
		mx = max(mx, v)
	}
	var (
		vmax  = archsimd.BroadcastFloat32x16(mx)
		lo    = archsimd.BroadcastFloat32x16(-103)
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
		v := archsimd.LoadFloat32x16Slice(x[i:]).Sub(vmax).Max(lo)
		k := v.Mul(log2e).RoundToEvenScaled(0)
		r := v.Sub(k.Mul(ln2hi)).Sub(k.Mul(ln2lo))
		p := c0.MulAdd(r, c1)
		p = p.MulAdd(r, c2)
		p = p.MulAdd(r, c3)
		p = p.MulAdd(r, c4)
		p = p.MulAdd(r, c5)
		p = p.Mul(r.Mul(r)).Add(r).Add(one)
		e := p.Scale(k)
		e.StoreSlice(x[i:])
		sum = sum.Add(e)
	}
	sum.Store(&buf)
	archsimd.ClearAVXUpperBits()
	var s float32
	for _, v := range buf {
		s += v
	}
	for i := n; i < len(x); i++ {
		e := fastExp(x[i] - mx)
		x[i] = e
		s += e
	}
	inv := 1 / s
	for i := range x {
		x[i] *= inv
	}
	return true
}
