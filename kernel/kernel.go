// Package kernel holds the CPU compute kernels: dense SGEMM in the three
// orientations a transformer's forward and backward need, and a 2:4 sparse GEMM
// that reads NVIDIA's CUTLASS packed layout. Activations are row-major
// [tokens, features]; weights are [out, in] as stored in checkpoints.
//
// The dense GEMMs are BLIS-style: panels of both operands are packed into
// cache-sized blocks and a register-blocked micro-kernel computes one MR×NR
// tile of C at a time. Three micro-kernels exist and one is chosen at start-up:
// AVX-512 (2×64 tile, Float32x16) and AVX2+FMA (2×32 tile, Float32x8), both
// written with simd/archsimd and built only with GOEXPERIMENT=simd on amd64,
// and a portable pure-Go 4×4 kernel used everywhere else. Large problems are
// split into strips of C that run on GOMAXPROCS goroutines; small ones run on
// the calling goroutine.
//
// All functions take plain row-major float32 slices; a slice that is too short
// for the stated shape makes the call panic with a message naming the operand
// (a programming error, like an out-of-range index).
package kernel

import (
	"fmt"
	"runtime"
	"sync"
)

// MatMulT computes C[m,n] = A[m,k] · B[n,k]ᵀ, adding to C when acc is true.
// This is y = x Wᵀ for activations x [m,k] and a weight W [n,k].
func MatMulT(c, a, b []float32, m, n, k int, acc bool) {
	checkShapes("MatMulT", c, a, b, m, n, k)
	if ks := active; m > 0 && n > 0 && useWeightLeft(ks, m, n, k) {
		matMulTWeightLeft(ks, c, a, b, m, n, k, acc)
		return
	}
	gemm(m, n, k, c, operand{a, k, false}, operand{b, k, true}, acc)
}

// MatMul computes C[m,n] = A[m,k] · B[k,n], adding to C when acc is true.
// This is dx = dy W for dy [m,k] and a weight W [k,n].
func MatMul(c, a, b []float32, m, n, k int, acc bool) {
	checkShapes("MatMul", c, a, b, m, n, k)
	gemm(m, n, k, c, operand{a, k, false}, operand{b, n, false}, acc)
}

// MatMulTN computes C[m,n] = A[k,m]ᵀ · B[k,n], adding to C when acc is true.
// This is dW = dyᵀ x for dy [k,m] and x [k,n].
func MatMulTN(c, a, b []float32, m, n, k int, acc bool) {
	checkShapes("MatMulTN", c, a, b, m, n, k)
	gemm(m, n, k, c, operand{a, m, true}, operand{b, n, false}, acc)
}

// Kernel reports which micro-kernel the package runs on this machine:
// "avx512", "avx2" or "generic".
func Kernel() string { return active.name }

func checkShapes(fn string, c, a, b []float32, m, n, k int) {
	if m < 0 || n < 0 || k < 0 {
		panic(fmt.Sprintf("kernel: %s: negative shape m=%d n=%d k=%d", fn, m, n, k))
	}
	if len(c) < m*n {
		panic(fmt.Sprintf("kernel: %s: C has %d elements, need m*n = %d", fn, len(c), m*n))
	}
	if len(a) < m*k {
		panic(fmt.Sprintf("kernel: %s: A has %d elements, need m*k = %d", fn, len(a), m*k))
	}
	if len(b) < n*k {
		panic(fmt.Sprintf("kernel: %s: B has %d elements, need n*k = %d", fn, len(b), n*k))
	}
}

// kernelSet is one micro-kernel with the block sizes that suit it.
type kernelSet struct {
	name string
	// mr×nr is the register tile; micro computes it over kc packed steps:
	// pa holds kc groups of mr values of A (then 4 values of padding), pb kc
	// groups of nr values of B. It writes C[0:mr, 0:nr] (row stride ldc),
	// adding to what is there when load is true.
	mr, nr     int
	kc, mc, nc int
	micro      func(kc int, pa, pb, c []float32, ldc int, load bool)

	// Sparse 2:4 kernel (sparse.go) for one column block and a tile of mt
	// tokens: for each of rows weight rows r and each of its nk kept values
	// v = vals[r*ldv+x] at block column j = idx[r*nk+x]:
	// ct[r*mt+i] += v · xt[j*mt+i] for i < mt (xt: the block's columns ×
	// the tile's tokens). nk is 32 or 16.
	mt     int
	sparse func(xt, vals []float32, ldv int, idx []uint8, nk int, ct []float32, rows int)

	// Vector helpers (vec.go); slices already cut to the same length.
	dot   func(x, y []float32) float32
	axpy  func(a float32, x, y []float32)
	scale func(a float32, x []float32)
}

// active is the kernel set in use; chosen in init (simd build) and switched by
// tests through setKernel.
var active = genericSet

// kernelSets lists every kernel set this build and machine can run.
var kernelSets = []kernelSet{genericSet}

// setKernel switches to the named kernel set and returns a function that
// restores the previous one. Test-only hook (not safe while kernels run).
func setKernel(name string) (restore func(), ok bool) {
	for _, ks := range kernelSets {
		if ks.name == name {
			prev := active
			active = ks
			return func() { active = prev }, true
		}
	}
	return func() {}, false
}

// operand describes how to read a matrix: element (i,p) of a "rows" operand
// is data[i*ld+p] unless trans, in which case it is data[p*ld+i].
type operand struct {
	data  []float32
	ld    int
	trans bool
}

// parallelMinFlops is the problem size (2·m·n·k) below which a GEMM stays on
// the calling goroutine.
const parallelMinFlops = 1 << 22

func gemm(m, n, k int, c []float32, a, b operand, acc bool) {
	if m == 0 || n == 0 {
		return
	}
	if k == 0 {
		if !acc {
			clear(c[:m*n])
		}
		return
	}
	ks := active
	threads := runtime.GOMAXPROCS(0)
	if threads < 2 || 2*m*n*k < parallelMinFlops {
		gemmBlock(ks, c, n, a, b, k, 0, m, 0, n, acc)
		return
	}
	mPanels := (m + ks.mr - 1) / ks.mr
	nPanels := (n + ks.nr - 1) / ks.nr
	// Column strips share A (each strip packs A again: m·k per strip), row
	// strips share B (n·k per strip); pick the cheaper duplicate that still
	// gives every thread work.
	byCols := nPanels >= threads && (m <= n || mPanels < threads)
	if !byCols && mPanels < threads {
		byCols = nPanels > mPanels
	}
	var wg sync.WaitGroup
	if byCols {
		t := min(threads, nPanels)
		for s := 0; s < t; s++ {
			j0 := nPanels * s / t * ks.nr
			j1 := min(nPanels*(s+1)/t*ks.nr, n)
			wg.Go(func() { gemmBlock(ks, c, n, a, b, k, 0, m, j0, j1, acc) })
		}
	} else {
		t := min(threads, mPanels)
		for s := 0; s < t; s++ {
			i0 := mPanels * s / t * ks.mr
			i1 := min(mPanels*(s+1)/t*ks.mr, m)
			wg.Go(func() { gemmBlock(ks, c, n, a, b, k, i0, i1, 0, n, acc) })
		}
	}
	wg.Wait()
}

var bufPool sync.Pool

func getBuf(n int) *[]float32 {
	if p, _ := bufPool.Get().(*[]float32); p != nil && cap(*p) >= n {
		*p = (*p)[:n]
		return p
	}
	s := make([]float32, n)
	return &s
}

// gemmBlock computes C[i0:i1, j0:j1] (row stride ldc) on the calling
// goroutine: loops over nc-wide column blocks, kc-deep slices of k (packing
// B once per slice), mc-tall row blocks (packing A), then the micro-tiles.
func gemmBlock(ks kernelSet, c []float32, ldc int, a, b operand, k, i0, i1, j0, j1 int, acc bool) {
	mr, nr := ks.mr, ks.nr
	kcMax := min(ks.kc, k)
	ncMax := min(ks.nc, roundUp(j1-j0, nr))
	mcMax := min(ks.mc, roundUp(i1-i0, mr))
	bufA := getBuf(mcMax/mr*(kcMax*mr+4) + 4)
	bufB := getBuf(ncMax * kcMax)
	defer bufPool.Put(bufA)
	defer bufPool.Put(bufB)
	pa, pb := *bufA, *bufB
	var tmp [16 * 64]float32 // holds one edge tile (mr*nr ≤ 1024)
	for jc := j0; jc < j1; jc += ks.nc {
		nc := min(ks.nc, j1-jc)
		for pc := 0; pc < k; pc += ks.kc {
			kc := min(ks.kc, k-pc)
			packB(pb, b, jc, nc, pc, kc, nr)
			load := acc || pc > 0
			for ic := i0; ic < i1; ic += ks.mc {
				mc := min(ks.mc, i1-ic)
				packA(pa, a, ic, mc, pc, kc, mr)
				for jr := 0; jr < nc; jr += nr {
					bp := pb[jr*kc:]
					aoff := 0
					for ir := 0; ir < mc; ir, aoff = ir+mr, aoff+kc*mr+4 {
						ap := pa[aoff:]
						i, j := ic+ir, jc+jr
						if ir+mr <= mc && jr+nr <= nc {
							ks.micro(kc, ap, bp, c[i*ldc+j:], ldc, load)
							continue
						}
						t := tmp[:mr*nr]
						ks.micro(kc, ap, bp, t, nr, false)
						rows, cols := min(mr, mc-ir), min(nr, nc-jr)
						for r := 0; r < rows; r++ {
							dst := c[(i+r)*ldc+j : (i+r)*ldc+j+cols]
							src := t[r*nr : r*nr+cols]
							if load {
								for x := range dst {
									dst[x] += src[x]
								}
							} else {
								copy(dst, src)
							}
						}
					}
				}
			}
		}
	}
}

func roundUp(x, m int) int { return (x + m - 1) / m * m }

// packA packs A[i0:i0+mc, p0:p0+kc] into panels of mr rows: panel t holds,
// for each p, the mr values A[i0+t*mr+r, p0+p] (zero beyond row i0+mc), and
// is followed by 4 floats of padding (the SIMD kernels load 4 at a time).
func packA(dst []float32, a operand, i0, mc, p0, kc, mr int) {
	stride := kc*mr + 4
	if a.trans {
		// A(i,p) = data[p*ld+i]: read each row p of the stored matrix once,
		// front to back, scattering mr values into every panel.
		full := mc / mr * mr
		for p := 0; p < kc; p++ {
			src := a.data[(p0+p)*a.ld+i0 : (p0+p)*a.ld+i0+mc]
			off := p * mr // running offset: no division in the loop
			if mr == 2 {
				for ir := 0; ir < full; ir += 2 {
					d := dst[off : off+2]
					d[0], d[1] = src[ir], src[ir+1]
					off += stride
				}
			} else {
				for ir := 0; ir < full; ir += mr {
					copyN(dst[off:off+mr], src[ir:ir+mr])
					off += stride
				}
			}
			if full < mc {
				d := dst[off : off+mr]
				n := copy(d, src[full:])
				clear(d[n:])
			}
		}
		for ir := 0; ir < mc; ir += mr {
			clear(dst[ir/mr*stride+kc*mr : ir/mr*stride+stride])
		}
		return
	}
	for ir := 0; ir < mc; ir += mr {
		panel := dst[ir/mr*stride : ir/mr*stride+stride]
		rows := min(mr, mc-ir)
		// A(i,p) = data[i*ld+p]: stream each row into every mr-th slot.
		for r := 0; r < mr; r++ {
			if r >= rows {
				for p := 0; p < kc; p++ {
					panel[p*mr+r] = 0
				}
				continue
			}
			src := a.data[(i0+ir+r)*a.ld+p0 : (i0+ir+r)*a.ld+p0+kc]
			for p, v := range src {
				panel[p*mr+r] = v
			}
		}
		clear(panel[kc*mr:])
	}
}

// copyN copies a few floats with a loop (copy's call costs more than the
// move for mr-sized runs).
func copyN(d, s []float32) {
	d = d[:len(s)]
	for i, v := range s {
		d[i] = v
	}
}

// packB packs B[p0:p0+kc, j0:j0+nc] (B as the right operand: element (p,j))
// into panels of nr columns: panel t holds, for each p, the nr values
// B[p0+p, j0+t*nr+j] (zero beyond column j0+nc). For MatMulT the operand is
// stored [n,k] (trans): B(p,j) = data[j*ld+p].
func packB(dst []float32, b operand, j0, nc, p0, kc, nr int) {
	for jr := 0; jr < nc; jr += nr {
		panel := dst[jr*kc : jr*kc+kc*nr]
		cols := min(nr, nc-jr)
		if b.trans {
			for j := 0; j < nr; j++ {
				if j >= cols {
					for p := 0; p < kc; p++ {
						panel[p*nr+j] = 0
					}
					continue
				}
				src := b.data[(j0+jr+j)*b.ld+p0 : (j0+jr+j)*b.ld+p0+kc]
				for p, v := range src {
					panel[p*nr+j] = v
				}
			}
		} else {
			for p := 0; p < kc; p++ {
				src := b.data[(p0+p)*b.ld+j0+jr:]
				d := panel[p*nr : p*nr+nr]
				copy(d, src[:cols])
				clear(d[cols:])
			}
		}
	}
}
