//go:build goexperiment.simd && amd64

package kernel

//go:generate go run ./internal/gensparse

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
	dot:    dotAVX512, axpy: axpyAVX512, scale: scaleAVX512,
}

var avx2Set = kernelSet{
	name: "avx2",
	mr:   2, nr: 32,
	kc: 256, mc: 256, nc: 4096,
	micro:  microAVX2,
	mt:     64,
	sparse: sparseAVX2,
	dot:    dotAVX2, axpy: axpyAVX2, scale: scaleAVX2,
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

// sparseAVX512 is the 128-token sparse tile kernel (see kernelSet.sparse); xt is
// [block columns][128]. Column blocks of 32 or 16 kept values per row run
// unrolled; the indices come from NewSparse24 (each < 2*nk ≤ len(xt)/128), so
// the loads need no bounds checks.
func sparseAVX512(xt, vals []float32, ldv int, idx []uint8, nk int, ct []float32, rows int) {
	if rows == 0 {
		return
	}
	if nk != 32 && nk != 16 || len(xt) < 2*nk*128 {
		panic("kernel: bad sparse block")
	}
	_ = vals[(rows-1)*ldv+nk-1]
	_ = idx[rows*nk-1]
	_ = ct[rows*128-1]
	xtp := unsafe.Pointer(unsafe.SliceData(xt))
	// Zeroed here, while the upper vector state is clean: zeroing uses SSE
	// stores, which are very slow after 512-bit code (see ClearAVXUpperBits).
	var ptrs [32]unsafe.Pointer
	if nk == 32 {
		sparseAVX51232(&ptrs, xtp, vals, ldv, idx, ct, rows)
	} else {
		sparseAVX51216((*[16]unsafe.Pointer)(ptrs[:16]), xtp, vals, ldv, idx, ct, rows)
	}
	archsimd.ClearAVXUpperBits()
}

// sparseAVX2 is the 64-token sparse tile kernel (see kernelSet.sparse); xt is
// [block columns][64]. Column blocks of 32 or 16 kept values per row run
// unrolled; the indices come from NewSparse24 (each < 2*nk ≤ len(xt)/64), so
// the loads need no bounds checks.
func sparseAVX2(xt, vals []float32, ldv int, idx []uint8, nk int, ct []float32, rows int) {
	if rows == 0 {
		return
	}
	if nk != 32 && nk != 16 || len(xt) < 2*nk*64 {
		panic("kernel: bad sparse block")
	}
	_ = vals[(rows-1)*ldv+nk-1]
	_ = idx[rows*nk-1]
	_ = ct[rows*64-1]
	xtp := unsafe.Pointer(unsafe.SliceData(xt))
	// Zeroed here, while the upper vector state is clean: zeroing uses SSE
	// stores, which are very slow after 512-bit code (see ClearAVXUpperBits).
	var ptrs [32]unsafe.Pointer
	if nk == 32 {
		sparseAVX232(&ptrs, xtp, vals, ldv, idx, ct, rows)
	} else {
		sparseAVX216((*[16]unsafe.Pointer)(ptrs[:16]), xtp, vals, ldv, idx, ct, rows)
	}
	archsimd.ClearAVXUpperBits()
}

var ones16 = [16]float32{1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1}
var ones8 = [8]float32{1, 1, 1, 1, 1, 1, 1, 1}

func dotAVX512(x, y []float32) float32 {
	n := len(x) / 64 * 64
	var s0, s1, s2, s3 archsimd.Float32x16
	for i := 0; i < n; i += 64 {
		xs, ys := x[i:i+64], y[i:i+64]
		s0 = archsimd.LoadFloat32x16((*[16]float32)(xs[0:])).MulAdd(archsimd.LoadFloat32x16((*[16]float32)(ys[0:])), s0)
		s1 = archsimd.LoadFloat32x16((*[16]float32)(xs[16:])).MulAdd(archsimd.LoadFloat32x16((*[16]float32)(ys[16:])), s1)
		s2 = archsimd.LoadFloat32x16((*[16]float32)(xs[32:])).MulAdd(archsimd.LoadFloat32x16((*[16]float32)(ys[32:])), s2)
		s3 = archsimd.LoadFloat32x16((*[16]float32)(xs[48:])).MulAdd(archsimd.LoadFloat32x16((*[16]float32)(ys[48:])), s3)
	}
	var t [16]float32
	s0.Add(s1).Add(s2.Add(s3)).Store(&t)
	archsimd.ClearAVXUpperBits()
	return dotGeneric(t[:], ones16[:]) + dotGeneric(x[n:], y[n:])
}

func axpyAVX512(a float32, x, y []float32) {
	n := len(x) / 16 * 16
	av := archsimd.BroadcastFloat32x16(a)
	for i := 0; i < n; i += 16 {
		yp := (*[16]float32)(y[i : i+16])
		archsimd.LoadFloat32x16((*[16]float32)(x[i:i+16])).MulAdd(av, archsimd.LoadFloat32x16(yp)).Store(yp)
	}
	archsimd.ClearAVXUpperBits()
	axpyGeneric(a, x[n:], y[n:])
}

func scaleAVX512(a float32, x []float32) {
	n := len(x) / 16 * 16
	av := archsimd.BroadcastFloat32x16(a)
	for i := 0; i < n; i += 16 {
		p := (*[16]float32)(x[i : i+16])
		archsimd.LoadFloat32x16(p).Mul(av).Store(p)
	}
	archsimd.ClearAVXUpperBits()
	scaleGeneric(a, x[n:])
}

func dotAVX2(x, y []float32) float32 {
	n := len(x) / 32 * 32
	var s0, s1, s2, s3 archsimd.Float32x8
	for i := 0; i < n; i += 32 {
		xs, ys := x[i:i+32], y[i:i+32]
		s0 = archsimd.LoadFloat32x8((*[8]float32)(xs[0:])).MulAdd(archsimd.LoadFloat32x8((*[8]float32)(ys[0:])), s0)
		s1 = archsimd.LoadFloat32x8((*[8]float32)(xs[8:])).MulAdd(archsimd.LoadFloat32x8((*[8]float32)(ys[8:])), s1)
		s2 = archsimd.LoadFloat32x8((*[8]float32)(xs[16:])).MulAdd(archsimd.LoadFloat32x8((*[8]float32)(ys[16:])), s2)
		s3 = archsimd.LoadFloat32x8((*[8]float32)(xs[24:])).MulAdd(archsimd.LoadFloat32x8((*[8]float32)(ys[24:])), s3)
	}
	var t [8]float32
	s0.Add(s1).Add(s2.Add(s3)).Store(&t)
	archsimd.ClearAVXUpperBits()
	return dotGeneric(t[:], ones8[:]) + dotGeneric(x[n:], y[n:])
}

func axpyAVX2(a float32, x, y []float32) {
	n := len(x) / 8 * 8
	av := archsimd.BroadcastFloat32x8(a)
	for i := 0; i < n; i += 8 {
		yp := (*[8]float32)(y[i : i+8])
		archsimd.LoadFloat32x8((*[8]float32)(x[i:i+8])).MulAdd(av, archsimd.LoadFloat32x8(yp)).Store(yp)
	}
	archsimd.ClearAVXUpperBits()
	axpyGeneric(a, x[n:], y[n:])
}

func scaleAVX2(a float32, x []float32) {
	n := len(x) / 8 * 8
	av := archsimd.BroadcastFloat32x8(a)
	for i := 0; i < n; i += 8 {
		p := (*[8]float32)(x[i : i+8])
		archsimd.LoadFloat32x8(p).Mul(av).Store(p)
	}
	archsimd.ClearAVXUpperBits()
	scaleGeneric(a, x[n:])
}
