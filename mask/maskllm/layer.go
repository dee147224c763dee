// Package maskllm learns 2:4 masks end to end with the weights frozen
// (MaskLLM, Fang et al., NeurIPS 2024; spec maskllm.md §1, with the released
// code's defaults where paper and code differ).
//
// Every group of 4 consecutive input weights of a row gets 6 logits π, one per
// candidate 2:4 pattern in the order 1100, 1010, 1001, 0110, 0101, 0011. A
// training step draws Gumbel noise g (fresh per step, seeded), forms
// y = softmax((κπ + g)/τ) and the soft mask M̃ = y·S, installs it as the
// layer's Linear.Soft (effective weight W ⊙ M̃), runs the model's forward and
// backward (model.LossGrad with MaskGrads), adds the sparse-weight
// regulariser −λ Σ (W ⊙ M̃)², back-propagates through the softmax to π, clips
// the global gradient norm and takes an AdamW step on π. The final mask is
// the argmax of π per group (first index wins ties).
package maskllm

import (
	"math"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/sparsify/sparsify/mask"
	"github.com/sparsify/sparsify/model"
)

// NumCandidates is the number of 2:4 patterns per group.
const NumCandidates = 6

// Candidates are the 2:4 patterns in the order of the released code
// (lexicographic pairs of kept indices): the meaning of a logit index.
var Candidates = [NumCandidates][4]float32{
	{1, 1, 0, 0}, {1, 0, 1, 0}, {1, 0, 0, 1}, {0, 1, 1, 0}, {0, 1, 0, 1}, {0, 0, 1, 1},
}

// chunkGroups is the number of groups one parallel work item covers. The
// split is fixed (independent of the number of threads), and so are the
// noise streams and partial sums tied to it: results are reproducible on
// any machine width.
const chunkGroups = 2048

// Layer is the learnable mask of one linear layer.
type Layer struct {
	Lin    *model.Linear
	Groups int       // Out*In/4
	Logits []float32 // π [Groups*6]
	M, V   []float32 // AdamW moments [Groups*6]

	grad []float32 // dL/dπ of the current step [Groups*6]
	y    []float32 // sampled probabilities of the current step [Groups*6]
	soft []float32 // M̃ [Out*In], installed as Lin.Soft
	arg  []uint8   // argmax after the previous step [Groups]
}

func newLayer(l *model.Linear) *Layer {
	g := l.Out * l.In / 4
	return &Layer{Lin: l, Groups: g, Logits: make([]float32, g*NumCandidates),
		M: make([]float32, g*NumCandidates), V: make([]float32, g*NumCandidates)}
}

func (L *Layer) ensureWork() {
	n := L.Groups * NumCandidates
	if len(L.grad) != n {
		L.grad = make([]float32, n)
		L.y = make([]float32, n)
		L.soft = make([]float32, L.Groups*4)
		L.arg = make([]uint8, L.Groups)
	}
}

// parallelChunks runs fn over the fixed chunks of n groups on all cores.
func parallelChunks(n int, fn func(c, lo, hi int)) {
	nc := (n + chunkGroups - 1) / chunkGroups
	nw := min(runtime.GOMAXPROCS(0), nc)
	if nw <= 1 {
		for c := 0; c < nc; c++ {
			fn(c, c*chunkGroups, min(n, (c+1)*chunkGroups))
		}
		return
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for range nw {
		wg.Go(func() {
			for {
				c := int(next.Add(1) - 1)
				if c >= nc {
					return
				}
				fn(c, c*chunkGroups, min(n, (c+1)*chunkGroups))
			}
		})
	}
	wg.Wait()
}

// mix is splitmix64's finaliser, used to derive independent stream ids.
func mix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// noiseRNG is the Gumbel stream of one chunk of one layer at one step: a
// pure function of (seed, step, layer, chunk), so a resumed run draws the
// same noise as an uninterrupted one.
func noiseRNG(seed uint64, step, layer, chunk int) *rand.Rand {
	return rand.New(rand.NewPCG(seed, mix(mix(mix(uint64(step))^uint64(layer))^uint64(chunk))))
}

// gumbel draws −log(−log u), u uniform in (0, 1).
func gumbel(r *rand.Rand) float64 {
	u := r.Float64()
	for u == 0 {
		u = r.Float64()
	}
	return -math.Log(-math.Log(u))
}

// expF is exp for the softmax: math.Exp for float64 (the reference path of
// the gradient checks), expNeg for float32. math.Exp runs its amd64
// assembly at ~1 µs a call on this machine (likely AVX–SSE transition
// stalls next to the SIMD kernels), which made the sampling as slow as the
// model's forward and backward.
func expF[F float32 | float64](x F) F {
	if _, ok := any(x).(float64); ok {
		return F(math.Exp(float64(x)))
	}
	return F(expNeg(float64(x)))
}

// expNeg is exp(x) for x ≤ 0 in plain float64 arithmetic (relative error
// below 1e-12): x = n·ln2 + r, |r| ≤ ln2/2, Taylor series of degree 11 in r,
// times 2^n. Results below 2^-1022 flush to 0.
func expNeg(x float64) float64 {
	if x < -708 || x != x {
		return 0
	}
	if x > 0 { // not reached by the softmax; keep it correct anyway
		return math.Exp(x)
	}
	const ln2hi, ln2lo, inv = 6.93147180369123816490e-01, 1.90821492927058770002e-10, 1.44269504088896338700e+00
	n := math.Floor(x*inv + 0.5)
	r := x - n*ln2hi - n*ln2lo
	p := 1 + r*(1+r*(1.0/2+r*(1.0/6+r*(1.0/24+r*(1.0/120+r*(1.0/720+r*(1.0/5040+r*(1.0/40320+
		r*(1.0/362880+r*(1.0/3628800+r*(1.0/39916800)))))))))))
	return p * math.Float64frombits(uint64(int64(n)+1023)<<52)
}

// sampleGroup computes y = softmax((κπ + g)/τ) and M̃ = y·S for one group.
func sampleGroup[F float32 | float64](y, soft, pi, g []F, kappa, tau F) {
	var z [NumCandidates]F
	mx := F(math.Inf(-1))
	for k := range NumCandidates {
		z[k] = (kappa*pi[k] + g[k]) / tau
		mx = max(mx, z[k])
	}
	var sum F
	for k := range NumCandidates {
		z[k] = expF(z[k] - mx)
		sum += z[k]
	}
	inv := 1 / sum
	for k := range NumCandidates {
		y[k] = z[k] * inv
	}
	// M̃_j = Σ_k y_k S_kj, written out for the fixed candidate order.
	soft[0] = y[0] + y[1] + y[2]
	soft[1] = y[0] + y[3] + y[4]
	soft[2] = y[1] + y[3] + y[5]
	soft[3] = y[2] + y[4] + y[5]
}

// backGroup turns dL/dM̃ of one group (dm, 4 values) into dL/dπ (6 values):
// a_k = Σ_j S_kj dm_j, b_k = y_k (a_k − Σ_l y_l a_l), dπ_k = (κ/τ) b_k.
func backGroup[F float32 | float64](dpi, y, dm []F, kappa, tau F) {
	a := [NumCandidates]F{dm[0] + dm[1], dm[0] + dm[2], dm[0] + dm[3], dm[1] + dm[2], dm[1] + dm[3], dm[2] + dm[3]}
	var s F
	for k := range NumCandidates {
		s += y[k] * a[k]
	}
	c := kappa / tau
	for k := range NumCandidates {
		dpi[k] = c * y[k] * (a[k] - s)
	}
}

// sample draws this step's noise and writes y and M̃; it installs M̃ as
// Lin.Soft. It returns Σ over groups of max_k y_k (for the mean max-prob).
func (L *Layer) sample(seed uint64, step, layer int, kappa, tau float32) float64 {
	L.ensureWork()
	nc := (L.Groups + chunkGroups - 1) / chunkGroups
	part := make([]float64, nc)
	parallelChunks(L.Groups, func(c, lo, hi int) {
		r := noiseRNG(seed, step, layer, c)
		var g [NumCandidates]float32
		var s float64
		for i := lo; i < hi; i++ {
			for k := range g {
				g[k] = float32(gumbel(r))
			}
			y := L.y[i*NumCandidates : (i+1)*NumCandidates]
			sampleGroup(y, L.soft[i*4:i*4+4], L.Logits[i*NumCandidates:(i+1)*NumCandidates], g[:], kappa, tau)
			s += float64(max(y[0], y[1], y[2], y[3], y[4], y[5]))
		}
		part[c] = s
	})
	L.Lin.Soft = L.soft
	var s float64
	for _, v := range part {
		s += v
	}
	return s
}

// backward computes dL/dπ into L.grad from dSoft = dL_LM/dM̃ (nil: zero) and
// the regulariser weight lambda (L = L_LM − λ Σ (W ⊙ M̃)²). It returns the
// layer's regulariser sum R = Σ (W ⊙ M̃)² and Σ (dL/dπ)².
func (L *Layer) backward(dSoft []float32, lambda, kappa, tau float32) (reg, sq float64) {
	nc := (L.Groups + chunkGroups - 1) / chunkGroups
	regs := make([]float64, nc)
	sqs := make([]float64, nc)
	w := L.Lin.W
	parallelChunks(L.Groups, func(c, lo, hi int) {
		var r, q float64
		var dm [4]float32
		for i := lo; i < hi; i++ {
			m := L.soft[i*4 : i*4+4]
			wg := w[i*4 : i*4+4]
			for j := range 4 {
				we := wg[j] * m[j]
				r += float64(we * we)
				d := -2 * lambda * wg[j] * wg[j] * m[j]
				if dSoft != nil {
					d += dSoft[i*4+j]
				}
				dm[j] = d
			}
			dp := L.grad[i*NumCandidates : (i+1)*NumCandidates]
			backGroup(dp, L.y[i*NumCandidates:(i+1)*NumCandidates], dm[:], kappa, tau)
			for _, v := range dp {
				q += float64(v) * float64(v)
			}
		}
		regs[c], sqs[c] = r, q
	})
	for c := range nc {
		reg += regs[c]
		sq += sqs[c]
	}
	return reg, sq
}

// adamW applies one decoupled-weight-decay Adam step with the gradient
// scaled by gs; bc1, bc2 are the bias corrections 1 − β^t.
func (L *Layer) adamW(o *Options, lr, gs, bc1, bc2 float64) {
	b1, b2 := float32(o.Beta1), float32(o.Beta2)
	decay := float32(1 - lr*o.WeightDecay)
	step := float32(lr / bc1)
	sq := float32(1 / bc2)
	eps := float32(o.Eps)
	g32 := float32(gs)
	parallelChunks(L.Groups, func(_, lo, hi int) {
		p := L.Logits[lo*NumCandidates : hi*NumCandidates]
		m := L.M[lo*NumCandidates : hi*NumCandidates]
		v := L.V[lo*NumCandidates : hi*NumCandidates]
		g := L.grad[lo*NumCandidates : hi*NumCandidates]
		for i := range p {
			gi := g[i] * g32
			m[i] = b1*m[i] + (1-b1)*gi
			v[i] = b2*v[i] + (1-b2)*gi*gi
			den := float32(math.Sqrt(float64(v[i]*sq))) + eps
			p[i] = p[i]*decay - step*m[i]/den
		}
	})
}

// argmaxGroup is the index of the largest logit (first wins ties).
func argmaxGroup(pi []float32) uint8 {
	best := 0
	for k := 1; k < NumCandidates; k++ {
		if pi[k] > pi[best] {
			best = k
		}
	}
	return uint8(best)
}

// updateArgmax recomputes the argmax of every group and returns how many
// changed since the previous call (all count as changed on the first call
// when first is true).
func (L *Layer) updateArgmax(first bool) int {
	L.ensureWork()
	nc := (L.Groups + chunkGroups - 1) / chunkGroups
	part := make([]int, nc)
	parallelChunks(L.Groups, func(c, lo, hi int) {
		n := 0
		for i := lo; i < hi; i++ {
			a := argmaxGroup(L.Logits[i*NumCandidates : (i+1)*NumCandidates])
			if a != L.arg[i] {
				n++
			}
			L.arg[i] = a
		}
		part[c] = n
	})
	if first {
		return 0
	}
	n := 0
	for _, v := range part {
		n += v
	}
	return n
}

// HardMask is the argmax mask of the layer's logits.
func (L *Layer) HardMask() *mask.Mask {
	mk := mask.New(L.Lin.Out, L.Lin.In)
	for i := 0; i < L.Groups; i++ {
		c := Candidates[argmaxGroup(L.Logits[i*NumCandidates:(i+1)*NumCandidates])]
		for j := range 4 {
			mk.Keep[i*4+j] = c[j] != 0
		}
	}
	return mk
}

// initRandom fills the logits with N(0, std) from a stream seeded by (seed,
// layer index).
func (L *Layer) initRandom(seed uint64, layer int, std float64) {
	r := rand.New(rand.NewPCG(seed^0x6c6f67697473, mix(uint64(layer)+1)))
	for i := range L.Logits {
		L.Logits[i] = float32(r.NormFloat64() * std)
	}
}

// applyPrior adds α·σ(π)·(overlap_k − 1) to every group's logits, where
// overlap_k is the number of weights candidate k shares with the prior mask's
// group and σ(π) the (unbiased) standard deviation of the whole layer's
// logits as they are now.
func (L *Layer) applyPrior(prior *mask.Mask, alpha float64) {
	var s, ss float64
	for _, v := range L.Logits {
		s += float64(v)
	}
	n := float64(len(L.Logits))
	mean := s / n
	for _, v := range L.Logits {
		d := float64(v) - mean
		ss += d * d
	}
	std := 0.0
	if n > 1 {
		std = math.Sqrt(ss / (n - 1))
	}
	scale := float32(alpha * std)
	for i := 0; i < L.Groups; i++ {
		var m0 [4]float32
		for j := range 4 {
			if prior.Keep[i*4+j] {
				m0[j] = 1
			}
		}
		for k, c := range Candidates {
			ov := c[0]*m0[0] + c[1]*m0[1] + c[2]*m0[2] + c[3]*m0[3]
			L.Logits[i*NumCandidates+k] += scale * (ov - 1)
		}
	}
}
