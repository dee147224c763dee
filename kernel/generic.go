package kernel

// genericSet is the portable pure-Go kernel set: a 4×4 register tile and a
// 16-token sparse tile, unrolled so the compiler keeps the accumulators in
// registers. It is the only set on non-amd64 or without GOEXPERIMENT=simd and
// the reference the SIMD sets are tested against.
var genericSet = kernelSet{
	name: "generic",
	mr:   4, nr: 4,
	kc: 256, mc: 128, nc: 1024,
	micro:  microGeneric,
	mt:     16,
	sparse: sparseGeneric,
	dot:    dotGeneric, axpy: axpyGeneric, scale: scaleGeneric,
}

func microGeneric(kc int, pa, pb, c []float32, ldc int, load bool) {
	var c00, c01, c02, c03, c10, c11, c12, c13 float32
	var c20, c21, c22, c23, c30, c31, c32, c33 float32
	pa = pa[:kc*4]
	pb = pb[:kc*4]
	for p := 0; p < kc; p++ {
		a := (*[4]float32)(pa[p*4:])
		b := (*[4]float32)(pb[p*4:])
		a0, a1, a2, a3 := a[0], a[1], a[2], a[3]
		b0, b1, b2, b3 := b[0], b[1], b[2], b[3]
		c00 += a0 * b0
		c01 += a0 * b1
		c02 += a0 * b2
		c03 += a0 * b3
		c10 += a1 * b0
		c11 += a1 * b1
		c12 += a1 * b2
		c13 += a1 * b3
		c20 += a2 * b0
		c21 += a2 * b1
		c22 += a2 * b2
		c23 += a2 * b3
		c30 += a3 * b0
		c31 += a3 * b1
		c32 += a3 * b2
		c33 += a3 * b3
	}
	r0 := (*[4]float32)(c[0*ldc:])
	r1 := (*[4]float32)(c[1*ldc:])
	r2 := (*[4]float32)(c[2*ldc:])
	r3 := (*[4]float32)(c[3*ldc:])
	if load {
		c00, c01, c02, c03 = c00+r0[0], c01+r0[1], c02+r0[2], c03+r0[3]
		c10, c11, c12, c13 = c10+r1[0], c11+r1[1], c12+r1[2], c13+r1[3]
		c20, c21, c22, c23 = c20+r2[0], c21+r2[1], c22+r2[2], c23+r2[3]
		c30, c31, c32, c33 = c30+r3[0], c31+r3[1], c32+r3[2], c33+r3[3]
	}
	r0[0], r0[1], r0[2], r0[3] = c00, c01, c02, c03
	r1[0], r1[1], r1[2], r1[3] = c10, c11, c12, c13
	r2[0], r2[1], r2[2], r2[3] = c20, c21, c22, c23
	r3[0], r3[1], r3[2], r3[3] = c30, c31, c32, c33
}

// sparseGeneric is the 16-token sparse tile kernel in plain Go.
func sparseGeneric(xt, vals []float32, ldv int, idx []uint8, nk int, ct []float32, rows int) {
	const mt = 16
	for r := 0; r < rows; r++ {
		acc := (*[mt]float32)(ct[r*mt:])
		s := *acc
		v := vals[r*ldv : r*ldv+nk]
		cl := idx[r*nk : r*nk+nk]
		for x, val := range v {
			col := (*[mt]float32)(xt[int(cl[x])*mt:])
			for i := range s {
				s[i] += val * col[i]
			}
		}
		*acc = s
	}
}
