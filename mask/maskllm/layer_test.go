package maskllm

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/sparsify/sparsify/mask"
	"github.com/sparsify/sparsify/model"
)

// tinyModel is a random 2-layer LLaMA-shaped model (no tokenizer needed).
func tinyModel(seed uint64) *model.Model {
	c := model.Config{Dim: 16, Hidden: 24, Layers: 2, Heads: 4, KVHeads: 2, Vocab: 20, MaxSeq: 16,
		NormEps: 1e-5, RopeTheta: 10000, RopeInterleaved: true, Tied: true}
	r := rand.New(rand.NewPCG(seed, 7))
	randv := func(n int, s float64) []float32 {
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(r.NormFloat64() * s)
		}
		return v
	}
	ones := func(n int) []float32 {
		v := randv(n, 0.1)
		for i := range v {
			v[i] += 1
		}
		return v
	}
	lin := func(name string, out, in int) *model.Linear {
		return &model.Linear{Name: name, Out: out, In: in, W: randv(out*in, 1/math.Sqrt(float64(in)))}
	}
	m := &model.Model{Config: c, Embed: randv(c.Vocab*c.Dim, 1), Norm: ones(c.Dim), Source: "test"}
	kv := c.KVHeads * c.HeadDim()
	for i := range c.Layers {
		p := fmt.Sprintf("blk.%d.", i)
		m.Layers = append(m.Layers, model.Layer{AttnNorm: ones(c.Dim), FFNNorm: ones(c.Dim),
			Q: lin(p+"attn_q.weight", c.Dim, c.Dim), K: lin(p+"attn_k.weight", kv, c.Dim),
			V: lin(p+"attn_v.weight", kv, c.Dim), O: lin(p+"attn_output.weight", c.Dim, c.Dim),
			Gate: lin(p+"ffn_gate.weight", c.Hidden, c.Dim), Up: lin(p+"ffn_up.weight", c.Hidden, c.Dim),
			Down: lin(p+"ffn_down.weight", c.Dim, c.Hidden)})
	}
	m.Output = &model.Linear{Name: "output.weight", Out: c.Vocab, In: c.Dim, W: m.Embed}
	return m
}

func randTokens(n, vocab int, seed uint64) []int32 {
	r := rand.New(rand.NewPCG(seed, 3))
	t := make([]int32, n)
	for i := range t {
		t[i] = int32(r.IntN(vocab))
	}
	return t
}

func TestCandidates(t *testing.T) {
	want := []string{"1100", "1010", "1001", "0110", "0101", "0011"}
	for k, c := range Candidates {
		s := ""
		for _, v := range c {
			s += fmt.Sprint(v)
		}
		if s != want[k] {
			t.Errorf("candidate %d = %s, want %s", k, s, want[k])
		}
	}
	// sampleGroup's unrolled M̃ = y·S must match the table.
	y := []float64{0.01, 0.02, 0.03, 0.05, 0.07, 0.82}
	var soft [4]float64
	yy := make([]float64, 6)
	// logits whose softmax at κ=τ=1, g=0 is y
	pi := make([]float64, 6)
	for k := range y {
		pi[k] = math.Log(y[k])
	}
	sampleGroup(yy, soft[:], pi, make([]float64, 6), 1, 1)
	for j := range 4 {
		var w float64
		for k := range 6 {
			w += y[k] * float64(Candidates[k][j])
		}
		if math.Abs(w-soft[j]) > 1e-12 {
			t.Errorf("soft[%d] = %v, want %v", j, soft[j], w)
		}
	}
	if s := soft[0] + soft[1] + soft[2] + soft[3]; math.Abs(s-2) > 1e-12 {
		t.Errorf("soft mask sums to %v, want 2", s)
	}
}

// objective64 is the float64 reference of one layer's chain with fixed noise:
// L(π) = Σ_ij G_ij W_ij M̃_ij(π) − λ Σ_ij (W_ij M̃_ij(π))², where G plays
// the role of dL_LM/dW_eff (so dL_LM/dM̃ = G ⊙ W at any π, as for a loss
// linear in W_eff).
func objective64(pi, g, w, G []float64, lambda, kappa, tau float64) float64 {
	var L float64
	y := make([]float64, 6)
	soft := make([]float64, 4)
	for i := 0; i < len(pi)/6; i++ {
		sampleGroup(y, soft, pi[i*6:i*6+6], g[i*6:i*6+6], kappa, tau)
		for j := range 4 {
			e := w[i*4+j] * soft[j]
			L += G[i*4+j]*e - lambda*e*e
		}
	}
	return L
}

// TestLogitGradFiniteDiff64 checks dL/dπ (softmax chain, κ/τ factor and the
// regulariser term) against central differences in float64.
func TestLogitGradFiniteDiff64(t *testing.T) {
	const groups = 7
	r := rand.New(rand.NewPCG(1, 1))
	pi := make([]float64, groups*6)
	g := make([]float64, groups*6)
	w := make([]float64, groups*4)
	G := make([]float64, groups*4)
	for i := range pi {
		pi[i] = r.NormFloat64() * 0.02
		g[i] = -math.Log(-math.Log(r.Float64()))
	}
	for i := range w {
		w[i] = r.NormFloat64()
		G[i] = r.NormFloat64()
	}
	for _, c := range []struct{ lambda, kappa, tau float64 }{{0, 100, 4}, {0.3, 100, 4}, {0.05, 300, 1.5}} {
		// analytic
		grad := make([]float64, len(pi))
		y := make([]float64, 6)
		soft := make([]float64, 4)
		dm := make([]float64, 4)
		for i := range groups {
			sampleGroup(y, soft, pi[i*6:i*6+6], g[i*6:i*6+6], c.kappa, c.tau)
			for j := range 4 {
				dm[j] = G[i*4+j]*w[i*4+j] - 2*c.lambda*w[i*4+j]*w[i*4+j]*soft[j]
			}
			backGroup(grad[i*6:i*6+6], y, dm, c.kappa, c.tau)
		}
		const h = 1e-6
		var maxRel float64
		for i := range pi {
			p := append([]float64(nil), pi...)
			p[i] += h
			lp := objective64(p, g, w, G, c.lambda, c.kappa, c.tau)
			p[i] -= 2 * h
			lm := objective64(p, g, w, G, c.lambda, c.kappa, c.tau)
			fd := (lp - lm) / (2 * h)
			rel := math.Abs(fd-grad[i]) / math.Max(1e-3, math.Abs(fd)+math.Abs(grad[i]))
			maxRel = math.Max(maxRel, rel)
		}
		if maxRel > 1e-6 {
			t.Errorf("λ=%g κ=%g τ=%g: max relative error %.2e > 1e-6", c.lambda, c.kappa, c.tau, maxRel)
		}
		t.Logf("λ=%g κ=%g τ=%g: max relative error %.2e", c.lambda, c.kappa, c.tau, maxRel)
	}
}

// TestLayerMatchesReference checks the float32, threaded Layer.sample and
// Layer.backward against the float64 generic reference on the same noise.
func TestLayerMatchesReference(t *testing.T) {
	l := &model.Linear{Name: "x", Out: 40, In: 1024} // 10240 groups: several chunks
	r := rand.New(rand.NewPCG(2, 2))
	l.W = make([]float32, l.Out*l.In)
	for i := range l.W {
		l.W[i] = float32(r.NormFloat64())
	}
	L := newLayer(l)
	L.initRandom(5, 0, 0.01)
	const kappa, tau, lambda = 150, 3, 0.01
	L.sample(9, 3, 1, kappa, tau)
	dSoft := make([]float32, l.Out*l.In)
	for i := range dSoft {
		dSoft[i] = float32(r.NormFloat64())
	}
	L.backward(dSoft, lambda, kappa, tau)
	// reference with the same noise streams
	var worst float64
	for c := 0; c*chunkGroups < L.Groups; c++ {
		rng := noiseRNG(9, 3, 1, c)
		for i := c * chunkGroups; i < min(L.Groups, (c+1)*chunkGroups); i++ {
			var g, pi, y [6]float64
			var soft, dm [4]float64
			for k := range 6 {
				g[k] = float64(float32(gumbel(rng)))
				pi[k] = float64(L.Logits[i*6+k])
			}
			sampleGroup(y[:], soft[:], pi[:], g[:], kappa, tau)
			for j := range 4 {
				if d := math.Abs(soft[j] - float64(L.soft[i*4+j])); d > 1e-5 {
					t.Fatalf("group %d soft[%d] = %v, reference %v", i, j, L.soft[i*4+j], soft[j])
				}
				wj := float64(l.W[i*4+j])
				dm[j] = float64(dSoft[i*4+j]) - 2*lambda*wj*wj*soft[j]
			}
			var dp [6]float64
			backGroup(dp[:], y[:], dm[:], kappa, tau)
			for k := range 6 {
				d := math.Abs(dp[k]-float64(L.grad[i*6+k])) / (1 + math.Abs(dp[k]))
				worst = math.Max(worst, d)
			}
		}
	}
	if worst > 1e-3 {
		t.Errorf("float32 logit gradient differs from the float64 reference by %.2e (relative)", worst)
	}
	if &l.Soft[0] != &L.soft[0] {
		t.Error("sample did not install the soft mask as Linear.Soft")
	}
}

// TestLogitGradEndToEnd checks the whole chain π → M̃ → model loss (+
// regulariser) with fixed noise against central differences along
// directions (the model runs in float32, so directional derivatives with a
// step large enough to rise above rounding are compared).
func TestLogitGradEndToEnd(t *testing.T) {
	m := tinyModel(1)
	st, err := NewState(m, 11)
	if err != nil {
		t.Fatal(err)
	}
	st.InitRandom(0.5) // spread-out logits: a non-degenerate softmax at κ=2
	const B, T = 2, 6
	tokens := randTokens(B*(T+1), m.Config.Vocab, 4)
	const kappa, tau, lambda = 2.0, 1.5, 0.05
	ctx := context.Background()
	var g model.Grads
	objective := func() float64 {
		st.SampleMasks(0, kappa, tau) // step 0: the same noise every call
		loss, err := m.LossGrad(ctx, tokens, B, T, model.GradOptions{}, &g)
		if err != nil {
			t.Fatal(err)
		}
		var reg float64
		for _, L := range st.Layers {
			for i, w := range L.Lin.W {
				e := float64(w) * float64(L.soft[i])
				reg += e * e
			}
		}
		return loss - lambda*reg
	}
	st.SampleMasks(0, kappa, tau)
	if _, err := m.LossGrad(ctx, tokens, B, T, model.GradOptions{MaskGrads: true}, &g); err != nil {
		t.Fatal(err)
	}
	st.Backward(g.Soft, lambda, kappa, tau)
	grads := make([][]float32, len(st.Layers))
	for i, L := range st.Layers {
		grads[i] = append([]float32(nil), L.Grad()...)
	}
	base := make([][]float32, len(st.Layers))
	for i, L := range st.Layers {
		base[i] = append([]float32(nil), L.Logits...)
	}
	r := rand.New(rand.NewPCG(8, 8))
	for trial := range 4 {
		// direction: the gradient itself (trial 0), then random ones
		dir := make([][]float32, len(st.Layers))
		var analytic, norm float64
		for i := range st.Layers {
			dir[i] = make([]float32, len(base[i]))
			for j := range dir[i] {
				if trial == 0 {
					dir[i][j] = grads[i][j]
				} else {
					dir[i][j] = float32(r.NormFloat64())
				}
				analytic += float64(dir[i][j]) * float64(grads[i][j])
				norm += float64(dir[i][j]) * float64(dir[i][j])
			}
		}
		h := 2e-2 / math.Sqrt(norm)
		eval := func(s float64) float64 {
			for i, L := range st.Layers {
				for j := range L.Logits {
					L.Logits[j] = base[i][j] + float32(s)*dir[i][j]
				}
			}
			return objective()
		}
		fd := (eval(h) - eval(-h)) / (2 * h)
		rel := math.Abs(fd-analytic) / math.Abs(analytic)
		t.Logf("direction %d: finite difference %.6e, analytic %.6e, relative error %.2e", trial, fd, analytic, rel)
		if rel > 1e-2 { // float32 model: rounding noise ≈ 1e-3
			t.Errorf("direction %d: finite difference %.6e vs analytic %.6e (relative error %.2e > 1e-2)", trial, fd, analytic, rel)
		}
	}
}

func TestPriorAndArgmax(t *testing.T) {
	l := &model.Linear{Name: "x", Out: 8, In: 16, W: make([]float32, 128)}
	L := newLayer(l)
	L.initRandom(1, 0, 0.01)
	prior := mask.New(8, 16)
	r := rand.New(rand.NewPCG(3, 3))
	want := make([]int, L.Groups)
	for i := range L.Groups {
		k := r.IntN(6)
		want[i] = k
		for j := range 4 {
			prior.Keep[i*4+j] = Candidates[k][j] != 0
		}
	}
	before := append([]float32(nil), L.Logits...)
	L.applyPrior(prior, 3)
	// the added term is α·σ·(overlap − 1): +α·σ on the prior candidate,
	// −α·σ on the disjoint one, 0 elsewhere
	var s, ss float64
	for _, v := range before {
		s += float64(v)
	}
	mean := s / float64(len(before))
	for _, v := range before {
		ss += (float64(v) - mean) * (float64(v) - mean)
	}
	sigma := math.Sqrt(ss / float64(len(before)-1))
	for i := range L.Groups {
		for k := range 6 {
			d := float64(L.Logits[i*6+k] - before[i*6+k])
			var ov float32
			for j := range 4 {
				ov += Candidates[k][j] * Candidates[want[i]][j]
			}
			if exp := 3 * sigma * float64(ov-1); math.Abs(d-exp) > 1e-6 {
				t.Fatalf("group %d candidate %d: prior added %v, want %v", i, k, d, exp)
			}
		}
	}
	// with a strong prior the argmax is the prior mask
	L.applyPrior(prior, 1000)
	hm := L.HardMask()
	if err := hm.Check(mask.Pattern24); err != nil {
		t.Fatal(err)
	}
	for i, k := range prior.Keep {
		if hm.Keep[i] != k {
			t.Fatalf("argmax mask differs from a strong prior at %d", i)
		}
	}
	// ties: first index wins
	if a := argmaxGroup([]float32{0, 1, 1, 0, 1, 0}); a != 1 {
		t.Errorf("argmax of a tie = %d, want 1", a)
	}
}

func TestSchedules(t *testing.T) {
	o := DefaultOptions()
	o.Steps = 100
	s0, s50 := o.At(0), o.At(50)
	if s0.Tau != 4 || s0.Kappa != 100 || s0.Lambda != 1e-5 || s0.LR != 5e-4 {
		t.Errorf("step 0 schedule %+v", s0)
	}
	if math.Abs(s50.Tau-2.025) > 1e-12 || math.Abs(s50.Kappa-300) > 1e-9 || math.Abs(s50.Lambda-5e-6) > 1e-18 ||
		math.Abs(s50.LR-2.75e-4) > 1e-12 {
		t.Errorf("step 50 schedule %+v", s50)
	}
	if s := o.At(99); s.Tau <= 0.05 || s.Lambda <= 0 {
		t.Errorf("last step schedule %+v: t/T must stay below 1", s)
	}
}

func TestNoiseReproducible(t *testing.T) {
	a, b := noiseRNG(1, 5, 2, 0), noiseRNG(1, 5, 2, 0)
	c := noiseRNG(1, 6, 2, 0)
	same, diff := true, false
	for range 10 {
		x, y, z := gumbel(a), gumbel(b), gumbel(c)
		same = same && x == y
		diff = diff || x != z
	}
	if !same || !diff {
		t.Errorf("noise streams: same seed/step equal %v, different step differs %v", same, diff)
	}
}

// TestPerplexityMatchesModel checks the training-path perplexity against
// model.PerplexityTokens (the protocol of the published numbers), with hard
// masks installed.
func TestPerplexityMatchesModel(t *testing.T) {
	m := tinyModel(3)
	st, err := NewState(m, 1)
	if err != nil {
		t.Fatal(err)
	}
	st.InitRandom(1)
	for _, L := range st.Layers {
		L.Lin.Mask = L.HardMask()
	}
	ids := randTokens(5*12+7, m.Config.Vocab, 9)
	want, _, err := model.PerplexityTokens(context.Background(), m, ids, 12, 2, nil)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Perplexity(context.Background(), m, ids, 12)
	if err != nil {
		t.Fatal(err)
	}
	if math.Abs(got-want)/want > 1e-4 {
		t.Errorf("perplexity %v, model.PerplexityTokens %v", got, want)
	}
	if _, err := Perplexity(context.Background(), m, ids[:5], 12); !errors.Is(err, ErrOptions) {
		t.Errorf("short stream: %v", err)
	}
}

func TestExpNeg(t *testing.T) {
	for _, x := range []float64{0, -1e-9, -0.1, -0.34657, -0.5, -1, -3.7, -10, -50.5, -300, -707, -708.5, -1000, 2} {
		got, want := expNeg(x), math.Exp(x)
		if want > 1e-300 && math.Abs(got-want)/want > 1e-12 || want <= 1e-300 && got > 1e-300 {
			t.Errorf("expNeg(%v) = %v, want %v", x, got, want)
		}
	}
}
