package model

import (
	"context"
	"math"
	"testing"
)

func TestAdamWStep(t *testing.T) {
	o := NewAdamW()
	o.ClipNorm = 0
	p := map[string][]float32{"w.weight": {1, -2}, "n.norm.weight": {0.5}}
	g := map[string][]float32{"w.weight": {0.1, -0.3}, "n.norm.weight": {2}}
	if _, err := o.Step(p, g, 0.01); err != nil {
		t.Fatal(err)
	}
	// first step: m̂ = g, v̂ = g², update = lr·g/(|g|+eps), decay on matrices only
	want := []float64{1*(1-0.01*0.1) - 0.01, -2*(1-0.01*0.1) + 0.01}
	for i, w := range want {
		if math.Abs(float64(p["w.weight"][i])-w) > 1e-6 {
			t.Fatalf("w[%d] = %g, want %g", i, p["w.weight"][i], w)
		}
	}
	if math.Abs(float64(p["n.norm.weight"][0])-(0.5-0.01)) > 1e-6 {
		t.Fatalf("norm gain %g, want %g (no decay)", p["n.norm.weight"][0], 0.49)
	}
	if _, err := o.Step(p, map[string][]float32{"missing": {1}}, 0.01); err == nil {
		t.Fatal("gradient without parameter accepted")
	}
}

func TestCosineLR(t *testing.T) {
	if got := CosineLR(0, 10, 100, 1, 0.1); math.Abs(got-0.1) > 1e-12 {
		t.Fatalf("warm-up start %g", got)
	}
	if got := CosineLR(10, 10, 100, 1, 0.1); math.Abs(got-1) > 1e-12 {
		t.Fatalf("peak %g", got)
	}
	if got := CosineLR(100, 10, 100, 1, 0.1); math.Abs(got-0.1) > 1e-12 {
		t.Fatalf("end %g", got)
	}
}

// TestTrainWeightsLearns trains a tiny random model on a periodic token
// sequence with LossGrad(WeightGrads) and AdamW: the loss must fall far
// below the uniform-guess level.
func TestTrainWeightsLearns(t *testing.T) {
	c := gradTestConfigs[0]
	c.Dim, c.Hidden, c.Vocab = 16, 32, 8
	m := gradTestModel(c, 3)
	B, T := 4, 12
	tokens := make([]int32, B*(T+1))
	for b := 0; b < B; b++ {
		for i := 0; i <= T; i++ {
			tokens[b*(T+1)+i] = int32((b + i*3) % c.Vocab)
		}
	}
	var g Grads
	o := NewAdamW()
	params := m.Params()
	var first, last float64
	for step := 0; step < 150; step++ {
		loss, err := m.LossGrad(context.Background(), tokens, B, T, GradOptions{WeightGrads: true}, &g)
		if err != nil {
			t.Fatal(err)
		}
		if step == 0 {
			first = loss
		}
		last = loss
		if _, err := o.Step(params, g.W, 1e-2); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("loss %.4f → %.4f", first, last)
	if last > 0.2 || last > first/4 {
		t.Fatalf("loss %.4f → %.4f: training does not learn a periodic sequence", first, last)
	}
}
