package model

// Forward and backward of every op of the training path, written once for
// float32 (what LossGrad runs) and float64 (what the gradient checks run), so
// the checked code is the code that trains.

import (
	"math"
	"runtime"
	"sync"
	"unsafe"

	"github.com/sparsify/sparsify/kernel"
)

// gfloat is the element type of the training path.
type gfloat interface{ ~float32 | ~float64 }

// gParallel runs fn over [0, n) split into contiguous ranges, one per core.
func gParallel(n int, fn func(lo, hi int)) {
	nw := runtime.GOMAXPROCS(0)
	if nw <= 1 || n < 2 {
		fn(0, n)
		return
	}
	nw = min(nw, n)
	chunk := (n + nw - 1) / nw
	var wg sync.WaitGroup
	for lo := chunk; lo < n; lo += chunk {
		hi := min(lo+chunk, n)
		wg.Go(func() { fn(lo, hi) })
	}
	fn(0, min(chunk, n))
	wg.Wait()
}

// gParallelW is gParallel that also tells fn its worker index (< cores).
func gParallelW(n int, fn func(w, lo, hi int)) {
	nw := min(runtime.GOMAXPROCS(0), max(n, 1))
	chunk := (n + nw - 1) / nw
	var wg sync.WaitGroup
	for w := 1; w*chunk < n; w++ {
		lo, hi := w*chunk, min((w+1)*chunk, n)
		wg.Go(func() { fn(w, lo, hi) })
	}
	fn(0, 0, min(chunk, n))
	wg.Wait()
}

// gMatMulT is c[m,n] = a[m,k]·b[n,k]ᵀ (+c when acc): kernel.MatMulT (which
// splits large products over the cores) for float32, a plain loop for float64.
func gMatMulT[F gfloat](c, a, b []F, m, n, k int, acc bool) {
	if c32, ok := any(c).([]float32); ok {
		kernel.MatMulT(c32, any(a).([]float32), any(b).([]float32), m, n, k, acc)
		return
	}
	for i := 0; i < m; i++ {
		for j := 0; j < n; j++ {
			var s F
			for p := 0; p < k; p++ {
				s += a[i*k+p] * b[j*k+p]
			}
			if acc {
				c[i*n+j] += s
			} else {
				c[i*n+j] = s
			}
		}
	}
}

// gMatMul is c[m,n] = a[m,k]·b[k,n] (+c when acc).
func gMatMul[F gfloat](c, a, b []F, m, n, k int, acc bool) {
	if c32, ok := any(c).([]float32); ok {
		kernel.MatMul(c32, any(a).([]float32), any(b).([]float32), m, n, k, acc)
		return
	}
	if !acc {
		clear(c[:m*n])
	}
	for i := 0; i < m; i++ {
		for p := 0; p < k; p++ {
			av := a[i*k+p]
			for j := 0; j < n; j++ {
				c[i*n+j] += av * b[p*n+j]
			}
		}
	}
}

// gMatMulTN is c[m,n] = a[k,m]ᵀ·b[k,n] (+c when acc). For float32, a is
// transposed into tr (len ≥ m·k) and the product runs as kernel.MatMul:
// packing a transposed operand is the slow path of the GEMM's packing (a copy
// call per micro-panel row); an explicit blocked transpose costs only k·m
// moves.
func gMatMulTN[F gfloat](c, a, b []F, m, n, k int, acc bool, tr []F) {
	if c32, ok := any(c).([]float32); ok {
		at := any(tr).([]float32)[:m*k]
		transpose(at, any(a).([]float32)[:k*m], k, m)
		kernel.MatMul(c32, at, any(b).([]float32), m, n, k, acc)
		return
	}
	if !acc {
		clear(c[:m*n])
	}
	for p := 0; p < k; p++ {
		for i := 0; i < m; i++ {
			av := a[p*m+i]
			for j := 0; j < n; j++ {
				c[i*n+j] += av * b[p*n+j]
			}
		}
	}
}

// transpose writes dst [cols, rows] = src [rows, cols]ᵀ in 32×32 blocks.
func transpose[F gfloat](dst, src []F, rows, cols int) {
	const bs = 32
	for i0 := 0; i0 < rows; i0 += bs {
		i1 := min(i0+bs, rows)
		for j0 := 0; j0 < cols; j0 += bs {
			j1 := min(j0+bs, cols)
			for i := i0; i < i1; i++ {
				row := src[i*cols : (i+1)*cols]
				for j := j0; j < j1; j++ {
					dst[j*rows+i] = row[j]
				}
			}
		}
	}
}

// gRMSNorm writes y = x·r ⊙ w per row with r = 1/sqrt(mean(x²)+eps), storing
// r per row in rinv (for the backward).
func gRMSNorm[F gfloat](y, rinv, x, w []F, rows, dim int, eps float64) {
	gParallel(rows, func(lo, hi int) {
		for r := lo; r < hi; r++ {
			xr := x[r*dim : (r+1)*dim]
			yr := y[r*dim : (r+1)*dim]
			var ss float64
			for _, v := range xr {
				ss += float64(v) * float64(v)
			}
			inv := F(1 / math.Sqrt(ss/float64(dim)+eps))
			rinv[r] = inv
			for i, v := range xr {
				yr[i] = v * inv * w[i]
			}
		}
	})
}

// gRMSNormBack adds to dx the gradient through RMSNorm given dy, the input x
// and the stored rinv; when dw is non-nil it adds the gain's gradient.
// dx = r·(w⊙dy) − x·r³·Σ(w⊙dy⊙x)/dim.
func gRMSNormBack[F gfloat](dx, dw, dy, x, rinv, w []F, rows, dim int) {
	gParallel(rows, func(lo, hi int) {
		for r := lo; r < hi; r++ {
			xr := x[r*dim : (r+1)*dim]
			dyr := dy[r*dim : (r+1)*dim]
			dxr := dx[r*dim : (r+1)*dim]
			inv := rinv[r]
			var dot F
			for i, v := range xr {
				dot += w[i] * dyr[i] * v
			}
			c := dot * inv * inv * inv / F(dim)
			for i, v := range xr {
				dxr[i] += inv*w[i]*dyr[i] - v*c
			}
		}
	})
	if dw != nil {
		for r := 0; r < rows; r++ {
			xr := x[r*dim : (r+1)*dim]
			dyr := dy[r*dim : (r+1)*dim]
			inv := rinv[r]
			for i, v := range xr {
				dw[i] += dyr[i] * v * inv
			}
		}
	}
}

// gRope is a rotary table in the training path's element type.
type gRope[F gfloat] struct {
	hd, maxPos  int
	interleaved bool
	cos, sin    []F // [maxPos, hd/2]
}

func newGRope[F gfloat](hd, maxPos int, theta float64, interleaved bool) *gRope[F] {
	half := hd / 2
	r := &gRope[F]{hd: hd, maxPos: maxPos, interleaved: interleaved,
		cos: make([]F, maxPos*half), sin: make([]F, maxPos*half)}
	for i := 0; i < half; i++ {
		// Same float32 frequency arithmetic as NewRope so that both paths
		// agree bit for bit on the angles.
		freq := math.Pow(float64(float32(theta)), -float64(2*i)/float64(hd))
		for p := 0; p < maxPos; p++ {
			s, c := math.Sincos(float64(p) * freq)
			r.cos[p*half+i] = F(c)
			r.sin[p*half+i] = F(s)
		}
	}
	return r
}

// apply rotates x [B*T, heads*hd] in place by +angle (sign 1) or by −angle
// (sign −1, the transpose: the backward of the rotation).
func (r *gRope[F]) apply(x []F, B, T, heads int, sign F) {
	hd, half := r.hd, r.hd/2
	gParallel(B*T, func(lo, hi int) {
		for row := lo; row < hi; row++ {
			pos := row % T
			cs := r.cos[pos*half : (pos+1)*half]
			sn := r.sin[pos*half : (pos+1)*half]
			xr := x[row*heads*hd : (row+1)*heads*hd]
			for h := 0; h < heads; h++ {
				v := xr[h*hd : (h+1)*hd]
				if r.interleaved {
					for i := 0; i < half; i++ {
						c, s := cs[i], sign*sn[i]
						a, b := v[2*i], v[2*i+1]
						v[2*i] = a*c - b*s
						v[2*i+1] = a*s + b*c
					}
				} else {
					for i := 0; i < half; i++ {
						c, s := cs[i], sign*sn[i]
						a, b := v[i], v[i+half]
						v[i] = a*c - b*s
						v[i+half] = a*s + b*c
					}
				}
			}
		}
	})
}

// gExp is e^x: math.Exp in float64 (the gradient checks), fastExp in float32.
func gExp[F gfloat](x F) F {
	if unsafe.Sizeof(x) == 4 {
		return F(fastExp(float32(x)))
	}
	return F(math.Exp(float64(x)))
}

// gExpRow sets dst[i] = e^(src[i]·scale − sub) and returns the sum (dst may
// alias src). float32 rows run 16 lanes at a time where AVX-512 is present.
func gExpRow[F gfloat](dst, src []F, scale, sub F) F {
	var sum F
	i := 0
	if d32, ok := any(dst).([]float32); ok {
		n, s := gExpVec(d32, any(src).([]float32), float32(scale), float32(sub))
		i, sum = n, F(s)
	}
	for ; i < len(dst); i++ {
		e := gExp(src[i]*scale - sub)
		dst[i] = e
		sum += e
	}
	return sum
}

// gSwiGLU writes h = SiLU(g)⊙u.
func gSwiGLU[F gfloat](h, g, u []F) {
	gParallel((len(h)+255)/256, func(lo, hi int) {
		var e [256]F
		for b := lo; b < hi; b++ {
			i0, i1 := b*256, min(b*256+256, len(h))
			ex := e[:i1-i0]
			gExpRow(ex, g[i0:i1], -1, 0)
			for j, x := range g[i0:i1] {
				h[i0+j] = x / (1 + ex[j]) * u[i0+j]
			}
		}
	})
}

// gSwiGLUBack writes dg and du (overwriting) from dh, g and u.
func gSwiGLUBack[F gfloat](dg, du, dh, g, u []F) {
	gParallel((len(dh)+255)/256, func(lo, hi int) {
		var e [256]F
		for b := lo; b < hi; b++ {
			i0, i1 := b*256, min(b*256+256, len(dh))
			ex := e[:i1-i0]
			gExpRow(ex, g[i0:i1], -1, 0)
			for j, x := range g[i0:i1] {
				i := i0 + j
				sig := 1 / (1 + ex[j])
				du[i] = dh[i] * x * sig
				dg[i] = dh[i] * u[i] * sig * (1 + x*(1-sig))
			}
		}
	})
}

// attnScratch is one worker's per-head buffers for the attention GEMMs:
// row-major [T, hd] copies and transposed [hd, T] copies (suffix T), so that
// every product has T (not the head size) as its output width.
type attnScratch[F gfloat] struct{ qh, kh, vh, doh, qT, kT, vT, doT, oT, dqT, dkT, dvT, dp []F }

func (s *attnScratch[F]) ensure(T, hd int) {
	n := T * hd
	s.qh, s.kh, s.vh, s.doh = grow(s.qh, n), grow(s.kh, n), grow(s.vh, n), grow(s.doh, n)
	s.qT, s.kT, s.vT, s.doT, s.oT = grow(s.qT, n), grow(s.kT, n), grow(s.vT, n), grow(s.doT, n), grow(s.oT, n)
	s.dqT, s.dkT, s.dvT, s.dp = grow(s.dqT, n), grow(s.dkT, n), grow(s.dvT, n), grow(s.dp, T*T)
}

// attnScratches returns one scratch per core, grown for T and hd.
func attnScratches[F gfloat](ss []attnScratch[F], T, hd int) []attnScratch[F] {
	if n := runtime.GOMAXPROCS(0); len(ss) < n {
		ss = append(ss, make([]attnScratch[F], n-len(ss))...)
	}
	for i := range ss {
		ss[i].ensure(T, hd)
	}
	return ss
}

// gather copies head h (columns [h*hd, (h+1)*hd)) of rows [r0, r0+T) of x
// (row width w) into dst [T, hd] and, when dstT is non-nil, into dstT [hd, T].
func gather[F gfloat](dst, dstT, x []F, r0, T, w, h, hd int) {
	for t := 0; t < T; t++ {
		src := x[(r0+t)*w+h*hd : (r0+t)*w+(h+1)*hd]
		if dst != nil {
			copy(dst[t*hd:(t+1)*hd], src)
		}
		if dstT != nil {
			for i, v := range src {
				dstT[i*T+t] = v
			}
		}
	}
}

// scatterT writes srcT [hd, T] into head h of rows [r0, r0+T) of x.
func scatterT[F gfloat](x, srcT []F, r0, T, w, h, hd int) {
	for t := 0; t < T; t++ {
		dst := x[(r0+t)*w+h*hd : (r0+t)*w+(h+1)*hd]
		for i := range dst {
			dst[i] = srcT[i*T+t]
		}
	}
}

// gAttention is causal GQA attention, q [B*T, heads*hd], k and v
// [B*T, kv*hd], out [B*T, heads*hd]; it stores the softmax probabilities in
// probs [B, heads, T, T] (zero above the diagonal). Per (sequence, kv head)
// the products S = Q·Kᵀ and Oᵀ = Vᵀ·Pᵀ run as GEMMs on head-contiguous copies.
func gAttention[F gfloat](out, probs, q, k, v []F, B, T, heads, kv, hd int, scr []attnScratch[F]) {
	group := heads / kv
	qs, ks := heads*hd, kv*hd
	scale := F(1 / math.Sqrt(float64(hd)))
	gParallelW(B*kv, func(w, lo, hi int) {
		sc := &scr[w]
		for job := lo; job < hi; job++ {
			b, kh := job/kv, job%kv
			gather(sc.kh, nil, k, b*T, T, ks, kh, hd)
			gather(nil, sc.vT, v, b*T, T, ks, kh, hd)
			for h := kh * group; h < (kh+1)*group; h++ {
				gather(sc.qh, nil, q, b*T, T, qs, h, hd)
				P := probs[(b*heads+h)*T*T : (b*heads+h+1)*T*T]
				gMatMulT(P, sc.qh, sc.kh, T, T, hd, false)
				for t := 0; t < T; t++ {
					row := P[t*T : (t+1)*T]
					clear(row[t+1:])
					a := row[:t+1]
					mx := F(math.Inf(-1))
					for _, x := range a {
						mx = max(mx, x)
					}
					inv := 1 / gExpRow(a, a, scale, mx*scale)
					for s := range a {
						a[s] *= inv
					}
				}
				gMatMulT(sc.oT, sc.vT, P, hd, T, T, false)
				scatterT(out, sc.oT, b*T, T, qs, h, hd)
			}
		}
	})
}

// gAttentionBack writes dq, dk, dv (overwriting) from dout and the stored
// probabilities. Work is split by (sequence, kv head) so the heads that share
// a kv head accumulate dK, dV without races:
// dP = dO·Vᵀ, dVᵀ += dOᵀ·P, dS = P⊙(dP − rowsum(P⊙dP))·scale, dQᵀ = Kᵀ·dSᵀ,
// dKᵀ += Qᵀ·dS.
func gAttentionBack[F gfloat](dq, dk, dv, dout, probs, q, k, v []F, B, T, heads, kv, hd int, scr []attnScratch[F]) {
	group := heads / kv
	qs, ks := heads*hd, kv*hd
	scale := F(1 / math.Sqrt(float64(hd)))
	gParallelW(B*kv, func(w, lo, hi int) {
		sc := &scr[w]
		for job := lo; job < hi; job++ {
			b, kh := job/kv, job%kv
			gather(nil, sc.kT, k, b*T, T, ks, kh, hd)
			gather(sc.vh, nil, v, b*T, T, ks, kh, hd)
			clear(sc.dkT)
			clear(sc.dvT)
			for h := kh * group; h < (kh+1)*group; h++ {
				gather(nil, sc.qT, q, b*T, T, qs, h, hd)
				gather(sc.doh, sc.doT, dout, b*T, T, qs, h, hd)
				P := probs[(b*heads+h)*T*T : (b*heads+h+1)*T*T]
				gMatMulT(sc.dp, sc.doh, sc.vh, T, T, hd, false)
				gMatMul(sc.dvT, sc.doT, P, hd, T, T, true)
				for t := 0; t < T; t++ {
					p := P[t*T : t*T+t+1]
					dp := sc.dp[t*T : (t+1)*T]
					var dot F
					for s, x := range p {
						dot += x * dp[s]
					}
					for s, x := range p {
						dp[s] = x * (dp[s] - dot) * scale
					}
					clear(dp[t+1:])
				}
				gMatMulT(sc.dqT, sc.kT, sc.dp, hd, T, T, false)
				gMatMul(sc.dkT, sc.qT, sc.dp, hd, T, T, true)
				scatterT(dq, sc.dqT, b*T, T, qs, h, hd)
			}
			scatterT(dk, sc.dkT, b*T, T, ks, kh, hd)
			scatterT(dv, sc.dvT, b*T, T, ks, kh, hd)
		}
	})
}

// gCrossEntropy turns logits [rows, V] into their gradient in place
// ((softmax − onehot)·scale) and returns the summed negative log-likelihood
// of the targets.
func gCrossEntropy[F gfloat](logits []F, targets []int32, rows, V int, scale F) float64 {
	var parts [64]float64
	nw := min(runtime.GOMAXPROCS(0), 64)
	var wg sync.WaitGroup
	chunk := (rows + nw - 1) / nw
	for w := 0; w < nw; w++ {
		lo, hi := w*chunk, min((w+1)*chunk, rows)
		if lo >= hi {
			continue
		}
		wg.Go(func() {
			var nll float64
			for r := lo; r < hi; r++ {
				row := logits[r*V : (r+1)*V]
				mx := row[0]
				for _, x := range row[1:] {
					mx = max(mx, x)
				}
				tg := int(targets[r])
				xt := row[tg]
				sum := float64(gExpRow(row, row, 1, mx))
				nll += float64(mx) + math.Log(sum) - float64(xt)
				k := F(1/sum) * scale
				for i := range row {
					row[i] *= k
				}
				row[tg] -= scale
			}
			parts[w] = nll
		})
	}
	wg.Wait()
	var nll float64
	for _, p := range parts[:nw] {
		nll += p
	}
	return nll
}
