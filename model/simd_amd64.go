//go:build goexperiment.simd && amd64

package model

import (
	"math"
	"simd/archsimd"
)

var hasAVX512 = archsimd.X86.AVX512()

// softmaxVec is Softmax on AVX-512 (16 lanes, exp by range reduction, a
// polynomial and VSCALEFPS); it reports false when the CPU lacks AVX-512.
// The ragged tail goes through a padded 16-lane buffer, so the function makes
// no calls (a call inside makes the compiler keep vector values in memory).
func softmaxVec(x []float32) bool {
	if !hasAVX512 || len(x) < 16 {
		return false
	}
	n := len(x) &^ 15
	var tail [16]float32
	for i := range tail {
		tail[i] = -math.MaxFloat32
	}
	copy(tail[:], x[n:])
	mv := archsimd.LoadFloat32x16(&tail)
	for i := 0; i < n; i += 16 {
		mv = mv.Max(archsimd.LoadFloat32x16Slice(x[i:]))
	}
	m8 := mv.GetLo().Max(mv.GetHi())
	m4 := m8.GetLo().Max(m8.GetHi())
	mx := max(max(m4.GetElem(0), m4.GetElem(1)), max(m4.GetElem(2), m4.GetElem(3)))
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
	exp := func(v archsimd.Float32x16) archsimd.Float32x16 {
		v = v.Sub(vmax).Max(lo)
		k := v.Mul(log2e).RoundToEvenScaled(0)
		r := v.Sub(k.Mul(ln2hi)).Sub(k.Mul(ln2lo))
		p := c0.MulAdd(r, c1)
		p = p.MulAdd(r, c2)
		p = p.MulAdd(r, c3)
		p = p.MulAdd(r, c4)
		p = p.MulAdd(r, c5)
		p = p.Mul(r.Mul(r)).Add(r).Add(one)
		return p.Scale(k)
	}
	for i := 0; i < n; i += 16 {
		e := exp(archsimd.LoadFloat32x16Slice(x[i:]))
		e.StoreSlice(x[i:])
		sum = sum.Add(e)
	}
	te := exp(archsimd.LoadFloat32x16(&tail))
	if n < len(x) {
		sum = sum.Add(te)
	}
	s8 := sum.GetLo().Add(sum.GetHi())
	s4 := s8.GetLo().Add(s8.GetHi())
	s := (s4.GetElem(0) + s4.GetElem(1)) + (s4.GetElem(2) + s4.GetElem(3))
	inv := archsimd.BroadcastFloat32x16(1 / s)
	for i := 0; i < n; i += 16 {
		archsimd.LoadFloat32x16Slice(x[i:]).Mul(inv).StoreSlice(x[i:])
	}
	te.Mul(inv).Store(&tail)
	archsimd.ClearAVXUpperBits() // dirty upper state makes later SSE code crawl
	copy(x[n:], tail[:])
	return true
}
