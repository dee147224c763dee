package model

import (
	"math"
	"sync"

	"github.com/sparsify/sparsify/kernel"
)

// RMSNorm writes out[r] = x[r] / sqrt(mean(x[r]²) + eps) ⊙ w for each of rows
// rows of width dim (out may alias x). The sum of squares is taken in float64.
func RMSNorm(out, x, w []float32, rows, dim int, eps float32) {
	for r := 0; r < rows; r++ {
		xr := x[r*dim : (r+1)*dim]
		or := out[r*dim : (r+1)*dim]
		inv := float32(RMSInv(xr, eps))
		for i, v := range xr {
			or[i] = v * inv * w[i]
		}
	}
}

// RMSInv is 1/sqrt(mean(x²) + eps), the scale RMSNorm applies to one row.
func RMSInv(x []float32, eps float32) float64 {
	var ss float64
	for _, v := range x {
		ss += float64(v) * float64(v)
	}
	return 1 / math.Sqrt(ss/float64(len(x))+float64(eps))
}

// Rope is a rotary position embedding table for one head width.
// Pair i of a head (i < HeadDim/2) rotates by angle pos·θ^(−2i/HeadDim); the
// pair is (2i, 2i+1) when Interleaved, (i, i+HeadDim/2) otherwise.
type Rope struct {
	HeadDim     int
	MaxPos      int
	Theta       float32
	Interleaved bool
	cos, sin    []float32 // [MaxPos, HeadDim/2]
}

// NewRope builds the table for positions [0, maxPos).
func NewRope(headDim, maxPos int, theta float32, interleaved bool) *Rope {
	half := headDim / 2
	r := &Rope{HeadDim: headDim, MaxPos: maxPos, Theta: theta, Interleaved: interleaved,
		cos: make([]float32, maxPos*half), sin: make([]float32, maxPos*half)}
	for i := 0; i < half; i++ {
		freq := math.Pow(float64(theta), -float64(2*i)/float64(headDim))
		for p := 0; p < maxPos; p++ {
			s, c := math.Sincos(float64(p) * freq)
			r.cos[p*half+i] = float32(c)
			r.sin[p*half+i] = float32(s)
		}
	}
	return r
}

// Apply rotates x [B*T, heads*HeadDim] in place; row b*T+t is at position
// pos0+t. Positions must be below MaxPos.
func (r *Rope) Apply(x []float32, B, T, heads, pos0 int) { r.apply(x, B, T, heads, pos0, 1) }

// ApplyInverse rotates by the opposite angles: the transpose of Apply, which
// is what the backward pass needs.
func (r *Rope) ApplyInverse(x []float32, B, T, heads, pos0 int) { r.apply(x, B, T, heads, pos0, -1) }

func (r *Rope) apply(x []float32, B, T, heads, pos0 int, sign float32) {
	hd := r.HeadDim
	half := hd / 2
	for b := 0; b < B; b++ {
		for t := 0; t < T; t++ {
			pos := pos0 + t
			cs := r.cos[pos*half : (pos+1)*half]
			sn := r.sin[pos*half : (pos+1)*half]
			row := x[(b*T+t)*heads*hd : (b*T+t+1)*heads*hd]
			for h := 0; h < heads; h++ {
				v := row[h*hd : (h+1)*hd]
				if r.Interleaved {
					for i := 0; i < half; i++ {
						c, s := cs[i], sign*sn[i]
						a, bb := v[2*i], v[2*i+1]
						v[2*i] = a*c - bb*s
						v[2*i+1] = a*s + bb*c
					}
				} else {
					for i := 0; i < half; i++ {
						c, s := cs[i], sign*sn[i]
						a, bb := v[i], v[i+half]
						v[i] = a*c - bb*s
						v[i+half] = a*s + bb*c
					}
				}
			}
		}
	}
}

// Softmax normalises x in place: exp(x − max) / Σ.
func Softmax(x []float32) {
	if len(x) == 0 {
		return
	}
	mx := x[0]
	for _, v := range x[1:] {
		if v > mx {
			mx = v
		}
	}
	n, sum := expSub(x, mx) // vector part (AVX2), if any
	for i := n; i < len(x); i++ {
		// e^(v-mx) for v-mx ≤ 0: fastExp's reduction and polynomial, inlined
		v := x[i]
		d := v - mx
		if d < -87.3 || d != d {
			x[i] = 0
			continue
		}
		n := float32(int32(d*1.44269504088896341 - 0.5))
		r := d - n*0.693359375 + n*2.12194440e-4
		p := float32(1.9875691500e-4)
		p = p*r + 1.3981999507e-3
		p = p*r + 8.3334519073e-3
		p = p*r + 4.1665795894e-2
		p = p*r + 1.6666665459e-1
		p = p*r + 5.0000001201e-1
		e := (p*r*r + r + 1) * math.Float32frombits(uint32(int32(n)+127)<<23)
		x[i] = e
		sum += e
	}
	inv := 1 / sum
	for i := range x {
		x[i] *= inv
	}
}

// SiLU is x·σ(x).
func SiLU(x float32) float32 { return x / (1 + fastExp(-x)) }

// SwiGLU writes out[i] = SiLU(gate[i]) · up[i] (out may alias gate or up).
func SwiGLU(out, gate, up []float32) {
	up = up[:len(out)]
	gate = gate[:len(out)]
	for i := range out {
		g := gate[i]
		// e^(−g) by fastExp's reduction and polynomial, inlined; clamped so
		// that large |g| gives SiLU's limits (0 and g)
		d := min(max(-g, -87.3), 88.7)
		t := d * 1.44269504088896341
		if t < 0 {
			t -= 0.5
		} else {
			t += 0.5
		}
		n := float32(int32(t))
		r := d - n*0.693359375 + n*2.12194440e-4
		p := float32(1.9875691500e-4)
		p = p*r + 1.3981999507e-3
		p = p*r + 8.3334519073e-3
		p = p*r + 4.1665795894e-2
		p = p*r + 1.6666665459e-1
		p = p*r + 5.0000001201e-1
		e := (p*r*r + r + 1) * math.Float32frombits(uint32(int32(n)+127)<<23)
		out[i] = g / (1 + e) * up[i]
	}
}

// Attention is causal grouped-query attention for B sequences of T tokens:
// q [B*T, heads*hd], k and v [B*T, kvHeads*hd], out [B*T, heads*hd]. Query
// head h reads key/value head h/(heads/kvHeads). Scores are scaled by
// 1/sqrt(hd). When probs is non-nil ([B, heads, T, T]) the softmax
// probabilities are stored there (zero above the diagonal), for a backward
// pass. The (b, h) pairs are split over the cores; each computes blocks of
// query rows with the GEMM kernels (scores Q·Kᵀ, then P·V), skipping the
// blocks above the diagonal.
func Attention(out, q, k, v []float32, B, T, heads, kvHeads, hd int, probs []float32) {
	group := heads / kvHeads
	qs, ks := heads*hd, kvHeads*hd
	scale := float32(1 / math.Sqrt(float64(hd)))
	jobs := B * heads
	nw := min(workers(), jobs)
	const blk = 64
	var wg sync.WaitGroup
	for w := 0; w < nw; w++ {
		wg.Go(func() {
			ws := getBufs(3*T*hd + blk*hd + blk*T)
			defer putBufs(ws)
			buf := *ws
			qh, kh, vh := buf[:T*hd], buf[T*hd:2*T*hd], buf[2*T*hd:3*T*hd]
			oh, sc := buf[3*T*hd:3*T*hd+blk*hd], buf[3*T*hd+blk*hd:]
			lastKV := -1
			for job := w; job < jobs; job += nw {
				b, h := job/heads, job%heads
				if kvj := b*kvHeads + h/group; kvj != lastKV { // gather this kv head once per group
					lastKV = kvj
					kvh := h / group
					for t := 0; t < T; t++ {
						copy(kh[t*hd:(t+1)*hd], k[(b*T+t)*ks+kvh*hd:])
						copy(vh[t*hd:(t+1)*hd], v[(b*T+t)*ks+kvh*hd:])
					}
				}
				for t := 0; t < T; t++ { // gather the head's queries, pre-scaled by 1/sqrt(hd)
					src := q[(b*T+t)*qs+h*hd : (b*T+t)*qs+(h+1)*hd]
					dst := qh[t*hd : (t+1)*hd]
					for i, x := range src {
						dst[i] = x * scale
					}
				}
				for t0 := 0; t0 < T; t0 += blk {
					t1 := min(t0+blk, T)
					m, n := t1-t0, t1 // rows t0..t1-1 see keys 0..t1-1
					s := sc[:m*n]
					kernel.MatMulT(s, qh[t0*hd:t1*hd], kh, m, n, hd, false)
					for i := 0; i < m; i++ {
						row := s[i*n : (i+1)*n]
						vis := t0 + i + 1
						Softmax(row[:vis])
						clear(row[vis:])
						if probs != nil {
							pr := probs[((b*heads+h)*T+t0+i)*T : ((b*heads+h)*T+t0+i+1)*T]
							copy(pr, row)
							clear(pr[n:])
						}
					}
					kernel.MatMul(oh[:m*hd], s, vh[:n*hd], m, hd, n, false)
					for i := 0; i < m; i++ {
						copy(out[(b*T+t0+i)*qs+h*hd:(b*T+t0+i)*qs+(h+1)*hd], oh[i*hd:(i+1)*hd])
					}
				}
			}
		})
	}
	wg.Wait()
}
