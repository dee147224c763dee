package model

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/sparsify/sparsify/mask"
)

// gradTestModel builds a tiny random model with every tensor filled.
func gradTestModel(c Config, seed uint64) *Model {
	rng := rand.New(rand.NewPCG(seed, 99))
	vec := func(n int, scale float64) []float32 {
		s := make([]float32, n)
		for i := range s {
			s[i] = float32(rng.NormFloat64() * scale)
		}
		return s
	}
	gain := func(n int) []float32 {
		s := make([]float32, n)
		for i := range s {
			s[i] = float32(1 + 0.2*rng.NormFloat64())
		}
		return s
	}
	lin := func(name string, out, in int, bias bool) *Linear {
		l := &Linear{Name: name, Out: out, In: in, W: vec(out*in, 1/math.Sqrt(float64(in)))}
		if bias {
			l.B = vec(out, 0.1)
		}
		return l
	}
	kvd := c.KVHeads * c.HeadDim()
	m := &Model{Config: c, Embed: vec(c.Vocab*c.Dim, 1), Norm: gain(c.Dim), Source: "gguf"}
	for i := 0; i < c.Layers; i++ {
		p := fmt.Sprintf("blk.%d.", i)
		m.Layers = append(m.Layers, Layer{
			AttnNorm: gain(c.Dim), FFNNorm: gain(c.Dim),
			Q: lin(p+"attn_q.weight", c.Dim, c.Dim, c.QKVBias), K: lin(p+"attn_k.weight", kvd, c.Dim, c.QKVBias),
			V: lin(p+"attn_v.weight", kvd, c.Dim, c.QKVBias), O: lin(p+"attn_output.weight", c.Dim, c.Dim, false),
			Gate: lin(p+"ffn_gate.weight", c.Hidden, c.Dim, false), Up: lin(p+"ffn_up.weight", c.Hidden, c.Dim, false),
			Down: lin(p+"ffn_down.weight", c.Dim, c.Hidden, false),
		})
	}
	if c.Tied {
		m.Output = &Linear{Name: "token_embd.weight", Out: c.Vocab, In: c.Dim, W: m.Embed}
	} else {
		m.Output = lin("output.weight", c.Vocab, c.Dim, false)
	}
	return m
}

// gSetRandomSoft gives every linear a soft mask with entries in (0.05, 1).
func gSetRandomSoft(m *Model, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 7))
	for _, l := range m.Linears() {
		l.Soft = make([]float32, l.Out*l.In)
		for i := range l.Soft {
			l.Soft[i] = float32(0.05 + 0.95*rng.Float64())
		}
	}
}

func gRandTokens(n, vocab int, seed uint64) []int32 {
	rng := rand.New(rand.NewPCG(seed, 3))
	t := make([]int32, n)
	for i := range t {
		t[i] = int32(rng.IntN(vocab))
	}
	return t
}

var gradTestConfigs = []Config{
	{Dim: 8, Hidden: 12, Layers: 2, Heads: 4, KVHeads: 2, Vocab: 11, MaxSeq: 16, NormEps: 1e-5, RopeTheta: 10000,
		RopeInterleaved: true, Tied: true},
	{Dim: 8, Hidden: 8, Layers: 2, Heads: 2, KVHeads: 1, Vocab: 9, MaxSeq: 16, NormEps: 1e-6, RopeTheta: 500,
		RopeInterleaved: false, Tied: false, QKVBias: true},
}

// TestGradModelSoft checks the whole model's dL/dSoft (and, with WeightGrads,
// every weight gradient) against central differences in float64.
func TestGradModelSoft(t *testing.T) {
	for ci, c := range gradTestConfigs {
		t.Run(fmt.Sprintf("config%d", ci), func(t *testing.T) {
			m := gradTestModel(c, uint64(ci+1))
			gSetRandomSoft(m, uint64(ci+10))
			B, T := 2, 5
			tokens := gRandTokens(B*(T+1), c.Vocab, uint64(ci))
			n, err := newGNet[float64](m, T)
			if err != nil {
				t.Fatal(err)
			}
			opts := GradOptions{MaskGrads: true, WeightGrads: true}
			ws := &gWork[float64]{}
			lins := m.Linears()
			soft := make([][]float64, len(lins))
			for i, l := range lins {
				soft[i] = make([]float64, l.Out*l.In)
			}
			gw := map[string][]float64{}
			if _, err := gLossGrad(context.Background(), n, tokens, B, T, opts, ws, soft, gw); err != nil {
				t.Fatal(err)
			}
			// keep copies: the check below reruns the forward pass
			for i := range soft {
				soft[i] = append([]float64(nil), soft[i]...)
			}
			wcopy := map[string][]float64{}
			for k, v := range gw {
				wcopy[k] = append([]float64(nil), v...)
			}
			f := func() float64 {
				l, err := gLossGrad(context.Background(), n, tokens, B, T, GradOptions{}, ws, nil, nil)
				if err != nil {
					t.Fatal(err)
				}
				return l
			}
			for li := range n.layers {
				for j, l := range n.layers[li].lins() {
					gCheckFD(t, "soft "+l.name, l.soft, soft[li*7+j], f)
					gCheckFD(t, "W "+l.name, l.w, wcopy[l.name], f)
					if l.b != nil {
						gCheckFD(t, "b "+l.name, l.b, wcopy[l.bname], f)
					}
				}
				gCheckFD(t, "attn norm", n.layers[li].attnNorm, wcopy[GradNameAttnNorm(li)], f)
				gCheckFD(t, "ffn norm", n.layers[li].ffnNorm, wcopy[GradNameFFNNorm(li)], f)
			}
			gCheckFD(t, "norm", n.norm, wcopy[GradNameNorm], f)
			gCheckFD(t, "embed", n.embed, wcopy[GradNameEmbed], f)
			if !c.Tied {
				gCheckFD(t, "output", n.out, wcopy[m.Output.Name], f)
			}
		})
	}
}

// TestGradModelHardMask checks weight gradients through a hard mask (pruned
// weights get zero gradient) against central differences.
func TestGradModelHardMask(t *testing.T) {
	c := gradTestConfigs[0]
	m := gradTestModel(c, 5)
	for _, l := range m.Linears() {
		mk := mask.New(l.Out, l.In)
		for i := range mk.Keep {
			mk.Keep[i] = (i/2)%2 == 0
		}
		l.Mask = mk
	}
	B, T := 2, 4
	tokens := gRandTokens(B*(T+1), c.Vocab, 8)
	n, err := newGNet[float64](m, T)
	if err != nil {
		t.Fatal(err)
	}
	ws := &gWork[float64]{}
	gw := map[string][]float64{}
	if _, err := gLossGrad(context.Background(), n, tokens, B, T, GradOptions{WeightGrads: true}, ws, nil, gw); err != nil {
		t.Fatal(err)
	}
	l := &n.layers[1].d
	g := append([]float64(nil), gw[l.name]...)
	for i, k := range l.keep {
		if !k && g[i] != 0 {
			t.Fatalf("pruned weight %d has gradient %g", i, g[i])
		}
	}
	gCheckFD(t, "masked W", l.w, g, func() float64 {
		v, err := gLossGrad(context.Background(), n, tokens, B, T, GradOptions{}, ws, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		return v
	})
}

// TestLossGradMatchesForward checks that LossGrad's loss (float32) equals the
// cross-entropy of the forward model's logits, with soft masks in place, and
// that Recompute changes nothing.
func TestLossGradMatchesForward(t *testing.T) {
	for ci, c := range gradTestConfigs {
		m := gradTestModel(c, uint64(ci+20))
		gSetRandomSoft(m, uint64(ci+30))
		B, T := 3, 7
		tokens := gRandTokens(B*(T+1), c.Vocab, uint64(ci+40))
		inp := make([]int32, 0, B*T)
		for b := 0; b < B; b++ {
			inp = append(inp, tokens[b*(T+1):b*(T+1)+T]...)
		}
		logits := make([]float32, B*T*c.Vocab)
		if err := m.Forward(context.Background(), inp, B, T, logits); err != nil {
			t.Fatal(err)
		}
		var nll float64
		for b := 0; b < B; b++ {
			for i := 0; i < T; i++ {
				row := logits[(b*T+i)*c.Vocab : (b*T+i+1)*c.Vocab]
				mx := math.Inf(-1)
				for _, x := range row {
					mx = max(mx, float64(x))
				}
				var s float64
				for _, x := range row {
					s += math.Exp(float64(x) - mx)
				}
				nll += mx + math.Log(s) - float64(row[tokens[b*(T+1)+i+1]])
			}
		}
		want := nll / float64(B*T)
		var g Grads
		got, err := m.LossGrad(context.Background(), tokens, B, T, GradOptions{MaskGrads: true}, &g)
		if err != nil {
			t.Fatal(err)
		}
		if math.Abs(got-want) > 1e-5*want {
			t.Fatalf("config %d: LossGrad loss %.8f, forward cross-entropy %.8f", ci, got, want)
		}
		soft := make([][]float32, len(g.Soft))
		for i := range g.Soft {
			soft[i] = append([]float32(nil), g.Soft[i]...)
		}
		var g2 Grads
		got2, err := m.LossGrad(context.Background(), tokens, B, T, GradOptions{MaskGrads: true, Recompute: true}, &g2)
		if err != nil {
			t.Fatal(err)
		}
		if got2 != got {
			t.Fatalf("Recompute loss %.9f != %.9f", got2, got)
		}
		for i := range soft {
			for j := range soft[i] {
				if soft[i][j] != g2.Soft[i][j] {
					t.Fatalf("Recompute changes soft grad %d/%d: %g vs %g", i, j, g2.Soft[i][j], soft[i][j])
				}
			}
		}
		// float32 against float64 gradients
		n, _ := newGNet[float64](m, T)
		s64 := make([][]float64, len(soft))
		for i := range s64 {
			s64[i] = make([]float64, len(soft[i]))
		}
		if _, err := gLossGrad(context.Background(), n, tokens, B, T, GradOptions{MaskGrads: true}, &gWork[float64]{}, s64, nil); err != nil {
			t.Fatal(err)
		}
		for i := range soft {
			for j := range soft[i] {
				if d := math.Abs(float64(soft[i][j]) - s64[i][j]); d > 1e-5+1e-3*math.Abs(s64[i][j]) {
					t.Fatalf("float32 soft grad %d/%d = %g, float64 %g", i, j, soft[i][j], s64[i][j])
				}
			}
		}
	}
}

func TestLossGradErrors(t *testing.T) {
	m := gradTestModel(gradTestConfigs[0], 1)
	var g Grads
	if _, err := m.LossGrad(context.Background(), make([]int32, 5), 2, 4, GradOptions{}, &g); err == nil {
		t.Fatal("short batch accepted")
	}
	for _, bt := range [][2]int{{0, 4}, {2, 0}, {-1, 4}, {2, -3}} {
		if _, err := m.LossGrad(context.Background(), nil, bt[0], bt[1], GradOptions{}, &g); !errors.Is(err, ErrBatch) {
			t.Fatalf("B=%d T=%d: err %v, want ErrBatch", bt[0], bt[1], err)
		}
	}
	bad := make([]int32, 2*5)
	bad[3] = 1000
	if _, err := m.LossGrad(context.Background(), bad, 2, 4, GradOptions{}, &g); err == nil {
		t.Fatal("out-of-vocabulary token accepted")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := m.LossGrad(ctx, make([]int32, 2*5), 2, 4, GradOptions{}, &g); err == nil {
		t.Fatal("cancelled context ignored")
	}
}
