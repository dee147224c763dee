package kernel

import (
	"runtime"
	"sync"
)

// Weight-left MatMulT. For y = x Wᵀ with a large weight W [n,k] and at least a
// few hundred tokens, packing W as the right operand (nr columns = nr weight
// rows read at once, each a separate memory stream) is the slowest part of
// the plain path. This path swaps the roles: the weight is the left operand
// (mr = 2 rows at a time, read sequentially, once per call), the activations
// are packed once into nr-token panels, and the micro-kernel accumulates Cᵀ
// tiles in an L2-resident buffer that is transposed into C at the end of
// each row block.

// useWeightLeft reports whether MatMulT should take this path.
func useWeightLeft(ks kernelSet, m, n, k int) bool {
	return m >= 4*ks.nr && n >= m && k >= ks.kc/2
}

func matMulTWeightLeft(ks kernelSet, c, x, w []float32, m, n, k int, acc bool) {
	mr, nr, kcF := ks.mr, ks.nr, ks.kc
	mPad := roundUp(m, nr)
	xpBuf := getBuf(mPad * k)
	defer bufPool.Put(xpBuf)
	xp := *xpBuf
	xop := operand{x, k, true} // B(p, j) = x[j*k+p]: token j, feature p
	chunks := (k + kcF - 1) / kcF

	threads := runtime.GOMAXPROCS(0)
	if 2*m*n*k < parallelMinFlops {
		threads = 1
	}
	// Pack x: chunk pc (kc features) lives at xp[pc*mPad:], as packB lays it out.
	packChunks := func(c0, c1 int) {
		for ch := c0; ch < c1; ch++ {
			pc := ch * kcF
			packB(xp[pc*mPad:], xop, 0, m, pc, min(kcF, k-pc), nr)
		}
	}
	rowPanels := (n + mr - 1) / mr
	t := max(1, min(threads, rowPanels))
	if t == 1 {
		packChunks(0, chunks)
		weightLeftRows(ks, c, xp, w, m, n, k, 0, n, acc)
		return
	}
	var wg sync.WaitGroup
	for s := 0; s < t; s++ {
		c0, c1 := chunks*s/t, chunks*(s+1)/t
		wg.Go(func() { packChunks(c0, c1) })
	}
	wg.Wait()
	for s := 0; s < t; s++ {
		r0 := rowPanels * s / t * mr
		r1 := min(rowPanels*(s+1)/t*mr, n)
		wg.Go(func() { weightLeftRows(ks, c, xp, w, m, n, k, r0, r1, acc) })
	}
	wg.Wait()
}

// weightLeftRows computes C[:, r0:r1] from the packed activations xp.
func weightLeftRows(ks kernelSet, c, xp, w []float32, m, n, k, r0, r1 int, acc bool) {
	mr, nr, kcF := ks.mr, ks.nr, ks.kc
	mPad := roundUp(m, nr)
	mc := min(max(131072/mPad/mr*mr, mr), 256, roundUp(r1-r0, mr))
	chunkStride := mc / mr * (kcF*mr + 4)
	chunks := (k + kcF - 1) / kcF
	wpBuf := getBuf(chunks * chunkStride)
	ctBuf := getBuf(mc * mPad)
	defer bufPool.Put(wpBuf)
	defer bufPool.Put(ctBuf)
	wp, ct := *wpBuf, *ctBuf
	for ic := r0; ic < r1; ic += mc {
		rows := min(mc, r1-ic)
		packWeightRows(wp, w, k, ic, rows, mc, mr, kcF)
		for pc := 0; pc < k; pc += kcF {
			kc := min(kcF, k-pc)
			ap := wp[pc/kcF*chunkStride:]
			bpc := xp[pc*mPad:]
			load := pc > 0
			for jr := 0; jr < mPad; jr += nr {
				bp := bpc[jr*kc:]
				aoff := 0
				for ir := 0; ir < rows; ir, aoff = ir+mr, aoff+kc*mr+4 {
					ks.micro(kc, ap[aoff:], bp, ct[ir*mPad+jr:], mPad, load)
				}
			}
		}
		// Cᵀ block → C[:, ic:ic+rows] in 16-token strips: each read of ct is
		// one cache line, and the 16 rows of C being written stay in L1.
		for i0 := 0; i0 < m; i0 += 16 {
			ib := min(16, m-i0)
			for r := 0; r < rows; r++ {
				src := ct[r*mPad+i0 : r*mPad+i0+ib]
				dst := c[i0*n+ic+r:]
				if acc {
					for ii, v := range src {
						dst[ii*n] += v
					}
				} else {
					for ii, v := range src {
						dst[ii*n] = v
					}
				}
			}
		}
	}
}

// packWeightRows packs W[ic:ic+rows, 0:k] for every kc chunk into mr-row
// panels (the packA layout, one chunk after another at chunkStride), reading
// mr weight rows at a time front to back. Rows past rows are zero.
func packWeightRows(dst, w []float32, k, ic, rows, mc, mr, kcF int) {
	chunkStride := mc / mr * (kcF*mr + 4)
	for r0 := 0; r0 < rows; r0 += mr {
		for pc := 0; pc < k; pc += kcF {
			kc := min(kcF, k-pc)
			panel := dst[pc/kcF*chunkStride+r0/mr*(kc*mr+4):]
			panel = panel[:kc*mr+4]
			if mr == 2 && r0+1 < rows {
				a := w[(ic+r0)*k+pc : (ic+r0)*k+pc+kc]
				b := w[(ic+r0+1)*k+pc : (ic+r0+1)*k+pc+kc]
				b = b[:len(a)]
				for p, v := range a {
					panel[2*p] = v
					panel[2*p+1] = b[p]
				}
			} else {
				for lane := 0; lane < mr; lane++ {
					if r0+lane >= rows {
						for p := 0; p < kc; p++ {
							panel[p*mr+lane] = 0
						}
						continue
					}
					for p, v := range w[(ic+r0+lane)*k+pc : (ic+r0+lane)*k+pc+kc] {
						panel[p*mr+lane] = v
					}
				}
			}
			clear(panel[kc*mr:])
		}
	}
}
