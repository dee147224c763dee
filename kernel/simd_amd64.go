//go:build goexperiment.simd && amd64

package kernel

import (
	"simd/archsimd"
	"unsafe"
)

// The SIMD kernel sets. Each kernel ends with ClearAVXUpperBits (VZEROUPPER):
// leaving the upper halves of the vector registers dirty makes later SSE code
// (the Go runtime, spilled float registers) pathologically slow.

var avx512Set = kernelSet{
	name: "avx512",
	mr:   2, nr: 64,
	kc: 128, mc: 256, nc: 4096,
	micro:  microAVX512,
	mt:     128,
	sparse: sparseAVX512,
}

var avx2Set = kernelSet{
	name: "avx2",
	mr:   2, nr: 32,
	kc: 256, mc: 256, nc: 4096,
	micro:  microAVX2,
	mt:     64,
	sparse: sparseAVX2,
}

func init() {
	if archsimd.X86.AVX2() && archsimd.X86.FMA() {
		kernelSets = append(kernelSets, avx2Set)
		active = avx2Set
	}
	if archsimd.X86.AVX512() {
		kernelSets = append(kernelSets, avx512Set)
		active = avx512Set
	}
}

// microAVX512 computes a 2×64 tile; pa needs kc*2+4 values (padding), pb kc*64.
func microAVX512(kc int, pa, pb, c []float32, ldc int, load bool) {
	_ = pa[kc*2+3]
	_ = pb[kc*64-1]
	_ = c[ldc+63]
	pap := unsafe.Pointer(unsafe.SliceData(pa))
	pbp := unsafe.Pointer(unsafe.SliceData(pb))
	var c00 archsimd.Float32x16
	var c01 archsimd.Float32x16
	var c02 archsimd.Float32x16
	var c03 archsimd.Float32x16
	var c10 archsimd.Float32x16
	var c11 archsimd.Float32x16
	var c12 archsimd.Float32x16
	var c13 archsimd.Float32x16
	for p := 0; p < kc; p++ {
		ap := (*[6]float32)(pap)
		bp := (*[64]float32)(pbp)
		b0 := archsimd.LoadFloat32x16((*[16]float32)(bp[0:]))
		b1 := archsimd.LoadFloat32x16((*[16]float32)(bp[16:]))
		b2 := archsimd.LoadFloat32x16((*[16]float32)(bp[32:]))
		b3 := archsimd.LoadFloat32x16((*[16]float32)(bp[48:]))
		a0 := archsimd.LoadFloat32x4((*[4]float32)(ap[0:])).Broadcast1To16()
		c00 = a0.MulAdd(b0, c00)
		c01 = a0.MulAdd(b1, c01)
		c02 = a0.MulAdd(b2, c02)
		c03 = a0.MulAdd(b3, c03)
		a1 := archsimd.LoadFloat32x4((*[4]float32)(ap[1:])).Broadcast1To16()
		c10 = a1.MulAdd(b0, c10)
		c11 = a1.MulAdd(b1, c11)
		c12 = a1.MulAdd(b2, c12)
		c13 = a1.MulAdd(b3, c13)
		pap = unsafe.Add(pap, 8)
		pbp = unsafe.Add(pbp, 256)
	}
	{
		s := (*[16]float32)(c[0*ldc+0:])
		if load {
			c00 = c00.Add(archsimd.LoadFloat32x16(s))
		}
		c00.Store(s)
	}
	{
		s := (*[16]float32)(c[0*ldc+16:])
		if load {
			c01 = c01.Add(archsimd.LoadFloat32x16(s))
		}
		c01.Store(s)
	}
	{
		s := (*[16]float32)(c[0*ldc+32:])
		if load {
			c02 = c02.Add(archsimd.LoadFloat32x16(s))
		}
		c02.Store(s)
	}
	{
		s := (*[16]float32)(c[0*ldc+48:])
		if load {
			c03 = c03.Add(archsimd.LoadFloat32x16(s))
		}
		c03.Store(s)
	}
	{
		s := (*[16]float32)(c[1*ldc+0:])
		if load {
			c10 = c10.Add(archsimd.LoadFloat32x16(s))
		}
		c10.Store(s)
	}
	{
		s := (*[16]float32)(c[1*ldc+16:])
		if load {
			c11 = c11.Add(archsimd.LoadFloat32x16(s))
		}
		c11.Store(s)
	}
	{
		s := (*[16]float32)(c[1*ldc+32:])
		if load {
			c12 = c12.Add(archsimd.LoadFloat32x16(s))
		}
		c12.Store(s)
	}
	{
		s := (*[16]float32)(c[1*ldc+48:])
		if load {
			c13 = c13.Add(archsimd.LoadFloat32x16(s))
		}
		c13.Store(s)
	}
	archsimd.ClearAVXUpperBits()
}

// microAVX2 computes a 2×32 tile; pa needs kc*2+4 values (padding), pb kc*32.
func microAVX2(kc int, pa, pb, c []float32, ldc int, load bool) {
	_ = pa[kc*2+3]
	_ = pb[kc*32-1]
	_ = c[ldc+31]
	pap := unsafe.Pointer(unsafe.SliceData(pa))
	pbp := unsafe.Pointer(unsafe.SliceData(pb))
	var c00 archsimd.Float32x8
	var c01 archsimd.Float32x8
	var c02 archsimd.Float32x8
	var c03 archsimd.Float32x8
	var c10 archsimd.Float32x8
	var c11 archsimd.Float32x8
	var c12 archsimd.Float32x8
	var c13 archsimd.Float32x8
	for p := 0; p < kc; p++ {
		ap := (*[6]float32)(pap)
		bp := (*[32]float32)(pbp)
		b0 := archsimd.LoadFloat32x8((*[8]float32)(bp[0:]))
		b1 := archsimd.LoadFloat32x8((*[8]float32)(bp[8:]))
		b2 := archsimd.LoadFloat32x8((*[8]float32)(bp[16:]))
		b3 := archsimd.LoadFloat32x8((*[8]float32)(bp[24:]))
		a0 := archsimd.LoadFloat32x4((*[4]float32)(ap[0:])).Broadcast1To8()
		c00 = a0.MulAdd(b0, c00)
		c01 = a0.MulAdd(b1, c01)
		c02 = a0.MulAdd(b2, c02)
		c03 = a0.MulAdd(b3, c03)
		a1 := archsimd.LoadFloat32x4((*[4]float32)(ap[1:])).Broadcast1To8()
		c10 = a1.MulAdd(b0, c10)
		c11 = a1.MulAdd(b1, c11)
		c12 = a1.MulAdd(b2, c12)
		c13 = a1.MulAdd(b3, c13)
		pap = unsafe.Add(pap, 8)
		pbp = unsafe.Add(pbp, 128)
	}
	{
		s := (*[8]float32)(c[0*ldc+0:])
		if load {
			c00 = c00.Add(archsimd.LoadFloat32x8(s))
		}
		c00.Store(s)
	}
	{
		s := (*[8]float32)(c[0*ldc+8:])
		if load {
			c01 = c01.Add(archsimd.LoadFloat32x8(s))
		}
		c01.Store(s)
	}
	{
		s := (*[8]float32)(c[0*ldc+16:])
		if load {
			c02 = c02.Add(archsimd.LoadFloat32x8(s))
		}
		c02.Store(s)
	}
	{
		s := (*[8]float32)(c[0*ldc+24:])
		if load {
			c03 = c03.Add(archsimd.LoadFloat32x8(s))
		}
		c03.Store(s)
	}
	{
		s := (*[8]float32)(c[1*ldc+0:])
		if load {
			c10 = c10.Add(archsimd.LoadFloat32x8(s))
		}
		c10.Store(s)
	}
	{
		s := (*[8]float32)(c[1*ldc+8:])
		if load {
			c11 = c11.Add(archsimd.LoadFloat32x8(s))
		}
		c11.Store(s)
	}
	{
		s := (*[8]float32)(c[1*ldc+16:])
		if load {
			c12 = c12.Add(archsimd.LoadFloat32x8(s))
		}
		c12.Store(s)
	}
	{
		s := (*[8]float32)(c[1*ldc+24:])
		if load {
			c13 = c13.Add(archsimd.LoadFloat32x8(s))
		}
		c13.Store(s)
	}
	archsimd.ClearAVXUpperBits()
}

// sparseAVX512 is the 128-token sparse tile kernel (see kernelSet.sparse). It runs
// 2 passes of 64 tokens (4 accumulators) per weight row, two kept values per
// step, so that nothing spills. cols come from NewSparse24 (each < Cols) and
// xt holds Cols×128 floats: the loads need no bounds check.
func sparseAVX512(xt, vals []float32, cols []int32, ldv, nk int, ct []float32, rows int) {
	if rows == 0 || nk == 0 {
		return
	}
	if nk%2 != 0 {
		panic("kernel: odd sparse block")
	}
	_ = vals[(rows-1)*ldv+nk-1]
	_ = cols[(rows-1)*ldv+nk-1]
	_ = ct[rows*128-1]
	xtp := unsafe.Pointer(unsafe.SliceData(xt))
	for r := 0; r < rows; r++ {
		for h := 0; h < 128; h += 64 {
			acc := (*[64]float32)(ct[r*128+h:])
			base := unsafe.Add(xtp, h*4)
			vp := unsafe.Pointer(&vals[r*ldv])
			cp := unsafe.Pointer(&cols[r*ldv])
			c0 := archsimd.LoadFloat32x16((*[16]float32)(acc[0:]))
			c1 := archsimd.LoadFloat32x16((*[16]float32)(acc[16:]))
			c2 := archsimd.LoadFloat32x16((*[16]float32)(acc[32:]))
			c3 := archsimd.LoadFloat32x16((*[16]float32)(acc[48:]))
			for n := nk / 2; n > 0; n-- {
				p := (*[64]float32)(unsafe.Add(base, int(*(*int32)(cp))*512))
				q := (*[64]float32)(unsafe.Add(base, int(*(*int32)(unsafe.Add(cp, 4)))*512))
				bp := archsimd.BroadcastFloat32x16(*(*float32)(vp))
				c0 = archsimd.LoadFloat32x16((*[16]float32)(p[0:])).MulAdd(bp, c0)
				c1 = archsimd.LoadFloat32x16((*[16]float32)(p[16:])).MulAdd(bp, c1)
				c2 = archsimd.LoadFloat32x16((*[16]float32)(p[32:])).MulAdd(bp, c2)
				c3 = archsimd.LoadFloat32x16((*[16]float32)(p[48:])).MulAdd(bp, c3)
				bq := archsimd.BroadcastFloat32x16(*(*float32)(unsafe.Add(vp, 4)))
				c0 = archsimd.LoadFloat32x16((*[16]float32)(q[0:])).MulAdd(bq, c0)
				c1 = archsimd.LoadFloat32x16((*[16]float32)(q[16:])).MulAdd(bq, c1)
				c2 = archsimd.LoadFloat32x16((*[16]float32)(q[32:])).MulAdd(bq, c2)
				c3 = archsimd.LoadFloat32x16((*[16]float32)(q[48:])).MulAdd(bq, c3)
				vp = unsafe.Add(vp, 8)
				cp = unsafe.Add(cp, 8)
			}
			c0.Store((*[16]float32)(acc[0:]))
			c1.Store((*[16]float32)(acc[16:]))
			c2.Store((*[16]float32)(acc[32:]))
			c3.Store((*[16]float32)(acc[48:]))
		}
	}
	archsimd.ClearAVXUpperBits()
}

// sparseAVX2 is the 64-token sparse tile kernel (see kernelSet.sparse). It runs
// 2 passes of 32 tokens (4 accumulators) per weight row, two kept values per
// step, so that nothing spills. cols come from NewSparse24 (each < Cols) and
// xt holds Cols×64 floats: the loads need no bounds check.
func sparseAVX2(xt, vals []float32, cols []int32, ldv, nk int, ct []float32, rows int) {
	if rows == 0 || nk == 0 {
		return
	}
	if nk%2 != 0 {
		panic("kernel: odd sparse block")
	}
	_ = vals[(rows-1)*ldv+nk-1]
	_ = cols[(rows-1)*ldv+nk-1]
	_ = ct[rows*64-1]
	xtp := unsafe.Pointer(unsafe.SliceData(xt))
	for r := 0; r < rows; r++ {
		for h := 0; h < 64; h += 32 {
			acc := (*[32]float32)(ct[r*64+h:])
			base := unsafe.Add(xtp, h*4)
			vp := unsafe.Pointer(&vals[r*ldv])
			cp := unsafe.Pointer(&cols[r*ldv])
			c0 := archsimd.LoadFloat32x8((*[8]float32)(acc[0:]))
			c1 := archsimd.LoadFloat32x8((*[8]float32)(acc[8:]))
			c2 := archsimd.LoadFloat32x8((*[8]float32)(acc[16:]))
			c3 := archsimd.LoadFloat32x8((*[8]float32)(acc[24:]))
			for n := nk / 2; n > 0; n-- {
				p := (*[32]float32)(unsafe.Add(base, int(*(*int32)(cp))*256))
				q := (*[32]float32)(unsafe.Add(base, int(*(*int32)(unsafe.Add(cp, 4)))*256))
				bp := archsimd.BroadcastFloat32x8(*(*float32)(vp))
				c0 = archsimd.LoadFloat32x8((*[8]float32)(p[0:])).MulAdd(bp, c0)
				c1 = archsimd.LoadFloat32x8((*[8]float32)(p[8:])).MulAdd(bp, c1)
				c2 = archsimd.LoadFloat32x8((*[8]float32)(p[16:])).MulAdd(bp, c2)
				c3 = archsimd.LoadFloat32x8((*[8]float32)(p[24:])).MulAdd(bp, c3)
				bq := archsimd.BroadcastFloat32x8(*(*float32)(unsafe.Add(vp, 4)))
				c0 = archsimd.LoadFloat32x8((*[8]float32)(q[0:])).MulAdd(bq, c0)
				c1 = archsimd.LoadFloat32x8((*[8]float32)(q[8:])).MulAdd(bq, c1)
				c2 = archsimd.LoadFloat32x8((*[8]float32)(q[16:])).MulAdd(bq, c2)
				c3 = archsimd.LoadFloat32x8((*[8]float32)(q[24:])).MulAdd(bq, c3)
				vp = unsafe.Add(vp, 8)
				cp = unsafe.Add(cp, 8)
			}
			c0.Store((*[8]float32)(acc[0:]))
			c1.Store((*[8]float32)(acc[8:]))
			c2.Store((*[8]float32)(acc[16:]))
			c3.Store((*[8]float32)(acc[24:]))
		}
	}
	archsimd.ClearAVXUpperBits()
}
