package model

// Forward and backward of every op of the training path, written once for
// float32 (what LossGrad runs) and float64 (what the gradient checks run), so
// the checked code is the code that trains.

import (
	"math"
	"runtime"
	"sync"

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

// gMatMulT is c[m,n] = a[m,k]·b[n,k]ᵀ (+c when acc): kernel.MatMulT split by
// rows over the cores for float32, a plain loop for float64.
func gMatMulT[F gfloat](c, a, b []F, m, n, k int, acc bool) {
	if c32, ok := any(c).([]float32); ok {
		a32, b32 := any(a).([]float32), any(b).([]float32)
		gParallel(m, func(lo, hi int) {
			kernel.MatMulT(c32[lo*n:hi*n], a32[lo*k:hi*k], b32, hi-lo, n, k, acc)
		})
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

// gMatMul is c[m,n] = a[m,k]·b[k,n] (+c when acc), split by rows of a.
func gMatMul[F gfloat](c, a, b []F, m, n, k int, acc bool) {
	if c32, ok := any(c).([]float32); ok {
		a32, b32 := any(a).([]float32), any(b).([]float32)
		gParallel(m, func(lo, hi int) {
			kernel.MatMul(c32[lo*n:hi*n], a32[lo*k:hi*k], b32, hi-lo, n, k, acc)
		})
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

// gMatMulTN is c[m,n] = a[k,m]ᵀ·b[k,n] (+c when acc). For float32 the k
// (token) dimension is split over the cores, each core summing into its own
// buffer from scratch (len ≥ (cores−1)·m·n), and the partial sums are added.
func gMatMulTN[F gfloat](c, a, b []F, m, n, k int, acc bool, scratch []F) {
	if c32, ok := any(c).([]float32); ok {
		a32, b32 := any(a).([]float32), any(b).([]float32)
		s32 := any(scratch).([]float32)
		nw := min(runtime.GOMAXPROCS(0), k, 1+len(s32)/max(m*n, 1))
		if nw <= 1 {
			kernel.MatMulTN(c32, a32, b32, m, n, k, acc)
			return
		}
		chunk := (k + nw - 1) / nw
		var wg sync.WaitGroup
		for w := 1; w < nw; w++ {
			lo, hi := w*chunk, min((w+1)*chunk, k)
			part := s32[(w-1)*m*n : w*m*n]
			if lo >= hi {
				clear(part)
				continue
			}
			wg.Go(func() { kernel.MatMulTN(part, a32[lo*m:hi*m], b32[lo*n:hi*n], m, n, hi-lo, false) })
		}
		kernel.MatMulTN(c32, a32[:chunk*m], b32[:chunk*n], m, n, chunk, acc)
		wg.Wait()
		gParallel(m*n, func(lo, hi int) {
			for w := 1; w < nw; w++ {
				part := s32[(w-1)*m*n : w*m*n]
				for i := lo; i < hi; i++ {
					c32[i] += part[i]
				}
			}
		})
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

// gSiLU is x·σ(x).
func gSiLU[F gfloat](x F) F { return x / (1 + F(math.Exp(float64(-x)))) }

// gSwiGLU writes h = SiLU(g)⊙u.
func gSwiGLU[F gfloat](h, g, u []F) {
	gParallel(len(h), func(lo, hi int) {
		for i := lo; i < hi; i++ {
			h[i] = gSiLU(g[i]) * u[i]
		}
	})
}

// gSwiGLUBack writes dg and du (overwriting) from dh, g and u.
func gSwiGLUBack[F gfloat](dg, du, dh, g, u []F) {
	gParallel(len(dh), func(lo, hi int) {
		for i := lo; i < hi; i++ {
			x := g[i]
			sig := 1 / (1 + F(math.Exp(float64(-x))))
			du[i] = dh[i] * x * sig
			dg[i] = dh[i] * u[i] * sig * (1 + x*(1-sig))
		}
	})
}

// gAttention is causal GQA attention, q [B*T, heads*hd], k and v
// [B*T, kv*hd], out [B*T, heads*hd]; it stores the softmax probabilities in
// probs [B, heads, T, T] (zero above the diagonal).
func gAttention[F gfloat](out, probs, q, k, v []F, B, T, heads, kv, hd int) {
	group := heads / kv
	qs, ks := heads*hd, kv*hd
	scale := F(1 / math.Sqrt(float64(hd)))
	gParallel(B*heads, func(lo, hi int) {
		for job := lo; job < hi; job++ {
			b, h := job/heads, job%heads
			kh := h / group
			for t := 0; t < T; t++ {
				qv := q[(b*T+t)*qs+h*hd : (b*T+t)*qs+(h+1)*hd]
				row := probs[((b*heads+h)*T+t)*T : ((b*heads+h)*T+t+1)*T]
				clear(row[t+1:])
				a := row[:t+1]
				mx := F(math.Inf(-1))
				for s := 0; s <= t; s++ {
					kr := k[(b*T+s)*ks+kh*hd : (b*T+s)*ks+(kh+1)*hd]
					var d F
					for i, x := range qv {
						d += x * kr[i]
					}
					d *= scale
					a[s] = d
					mx = max(mx, d)
				}
				var sum F
				for s, x := range a {
					e := F(math.Exp(float64(x - mx)))
					a[s] = e
					sum += e
				}
				inv := 1 / sum
				o := out[(b*T+t)*qs+h*hd : (b*T+t)*qs+(h+1)*hd]
				clear(o)
				for s := range a {
					a[s] *= inv
					p := a[s]
					vr := v[(b*T+s)*ks+kh*hd : (b*T+s)*ks+(kh+1)*hd]
					for i, x := range vr {
						o[i] += p * x
					}
				}
			}
		}
	})
}

// gAttentionBack writes dq, dk, dv (overwriting) from dout and the stored
// probabilities. tmp needs T values per core-job (len ≥ B*kv*T is enough).
// Work is split by (sequence, kv head) so the heads that share a kv head
// accumulate into dk, dv without races.
func gAttentionBack[F gfloat](dq, dk, dv, dout, probs, q, k, v []F, B, T, heads, kv, hd int, tmp []F) {
	group := heads / kv
	qs, ks := heads*hd, kv*hd
	scale := F(1 / math.Sqrt(float64(hd)))
	gParallel(B*kv, func(lo, hi int) {
		for job := lo; job < hi; job++ {
			b, kh := job/kv, job%kv
			dp := tmp[job*T : (job+1)*T]
			for s := 0; s < T; s++ {
				clear(dk[(b*T+s)*ks+kh*hd : (b*T+s)*ks+(kh+1)*hd])
				clear(dv[(b*T+s)*ks+kh*hd : (b*T+s)*ks+(kh+1)*hd])
			}
			for h := kh * group; h < (kh+1)*group; h++ {
				for t := 0; t < T; t++ {
					p := probs[((b*heads+h)*T+t)*T : ((b*heads+h)*T+t)*T+t+1]
					do := dout[(b*T+t)*qs+h*hd : (b*T+t)*qs+(h+1)*hd]
					// dP = dO·vᵀ, dv += Pᵀ·dO
					var dot F
					for s := 0; s <= t; s++ {
						vr := v[(b*T+s)*ks+kh*hd : (b*T+s)*ks+(kh+1)*hd]
						dvr := dv[(b*T+s)*ks+kh*hd : (b*T+s)*ks+(kh+1)*hd]
						var d F
						ps := p[s]
						for i, x := range do {
							d += x * vr[i]
							dvr[i] += ps * x
						}
						dp[s] = d
						dot += ps * d
					}
					// softmax backward: dS = P⊙(dP − Σ P·dP), then scale.
					qv := q[(b*T+t)*qs+h*hd : (b*T+t)*qs+(h+1)*hd]
					dqv := dq[(b*T+t)*qs+h*hd : (b*T+t)*qs+(h+1)*hd]
					clear(dqv)
					for s := 0; s <= t; s++ {
						ds := p[s] * (dp[s] - dot) * scale
						if ds == 0 {
							continue
						}
						kr := k[(b*T+s)*ks+kh*hd : (b*T+s)*ks+(kh+1)*hd]
						dkr := dk[(b*T+s)*ks+kh*hd : (b*T+s)*ks+(kh+1)*hd]
						for i := range dqv {
							dqv[i] += ds * kr[i]
							dkr[i] += ds * qv[i]
						}
					}
				}
			}
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
				var sum float64
				for _, x := range row {
					sum += math.Exp(float64(x - mx))
				}
				lse := float64(mx) + math.Log(sum)
				tg := int(targets[r])
				nll += lse - float64(row[tg])
				for i, x := range row {
					row[i] = F(math.Exp(float64(x)-lse)) * scale
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
