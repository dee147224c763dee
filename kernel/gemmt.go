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
				for ir := 0; ir < rows; ir += mr {
					ks.micro(kc, ap[ir/mr*(kc*mr+4):], bp, ct[ir*mPad+jr:], mPad, load)
				}
			}
		}
		// Cᵀ block → C[:, ic:ic+rows].
		for i := 0; i < m; i++ {
			dst := c[i*n+ic : i*n+ic+rows]
			if acc {
				for r := range dst {
					dst[r] += ct[r*mPad+i]
				}
			} else {
				for r := range dst {
					dst[r] = ct[r*mPad+i]
				}
			}
		}
	}
}

// packWeightRows packs W[ic:ic+rows, 0:k] for every kc chunk into mr-row
// panels (the packA layout, one chunk after another at chunkStride), reading
// each weight row once, front to back. Rows rows..roundUp(rows, mr) are zero.
func packWeightRows(dst, w []float32, k, ic, rows, mc, mr, kcF int) {
	chunkStride := mc / mr * (kcF*mr + 4)
	rowsPad := roundUp(rows, mr)
	for r := 0; r < rowsPad; r++ {
		var src []float32
		if r < rows {
			src = w[(ic+r)*k : (ic+r)*k+k]
		}
		for pc := 0; pc < k; pc += kcF {
			kc := min(kcF, k-pc)
			panel := dst[pc/kcF*chunkStride+r/mr*(kc*mr+4):]
			panel = panel[:kc*mr+4]
			lane := r % mr
			if src == nil {
				for p := 0; p < kc; p++ {
					panel[p*mr+lane] = 0
				}
			} else {
				for p, v := range src[pc : pc+kc] {
					panel[p*mr+lane] = v
				}
			}
			if lane == 0 {
				clear(panel[kc*mr:])
			}
		}
	}
}
