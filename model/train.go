package model

import (
	"fmt"
	"math"
	"sort"
)

// Params returns every trainable tensor of m by the names Grads.W uses,
// aliasing the model's slices (a tied classifier appears once, as the
// embedding). Biases are included when present.
func (m *Model) Params() map[string][]float32 {
	p := map[string][]float32{GradNameEmbed: m.Embed, GradNameNorm: m.Norm}
	for i := range m.Layers {
		L := &m.Layers[i]
		p[GradNameAttnNorm(i)] = L.AttnNorm
		p[GradNameFFNNorm(i)] = L.FFNNorm
	}
	for _, l := range m.Linears() {
		p[l.Name] = l.W
		if l.B != nil {
			p[BiasName(l.Name)] = l.B
		}
	}
	if !m.Config.Tied {
		p[m.Output.Name] = m.Output.W
	}
	return p
}

// AdamW is decoupled-weight-decay Adam over named float32 tensors (for
// training the weights of a small model; MaskLLM's optimizer on the logits
// is separate). Moments are created on the first Step.
type AdamW struct {
	Beta1, Beta2, Eps float64
	// WeightDecay applies to tensors with more than one row's worth of values
	// that are not norm gains (names ending in "norm.weight") or biases.
	WeightDecay float64
	// ClipNorm, if > 0, scales the whole gradient down to this global L2 norm.
	ClipNorm float64

	t    int
	m, v map[string][]float32
}

// NewAdamW returns AdamW with the usual LLM settings (β 0.9/0.95, eps 1e-8,
// weight decay 0.1, clipping at 1.0).
func NewAdamW() *AdamW {
	return &AdamW{Beta1: 0.9, Beta2: 0.95, Eps: 1e-8, WeightDecay: 0.1, ClipNorm: 1}
}

// GradNorm is the global L2 norm of grads.
func GradNorm(grads map[string][]float32) float64 {
	var ss float64
	for _, g := range grads {
		for _, x := range g {
			ss += float64(x) * float64(x)
		}
	}
	return math.Sqrt(ss)
}

func decays(name string, n int) bool {
	return n > 1 && !hasSuffix(name, "norm.weight") && !hasSuffix(name, ".bias")
}

func hasSuffix(s, suf string) bool { return len(s) >= len(suf) && s[len(s)-len(suf):] == suf }

// Step updates params in place from grads with learning rate lr and returns
// the gradient norm before clipping. Every gradient must have a parameter of
// the same length.
func (o *AdamW) Step(params, grads map[string][]float32, lr float64) (float64, error) {
	if o.m == nil {
		o.m, o.v = map[string][]float32{}, map[string][]float32{}
	}
	names := make([]string, 0, len(grads))
	for name, g := range grads {
		if p, ok := params[name]; !ok || len(p) != len(g) {
			return 0, fmt.Errorf("model: AdamW: gradient %q (%d values) has no parameter of that size", name, len(g))
		}
		names = append(names, name)
	}
	sort.Strings(names) // fixed order: reproducible float sums
	norm := GradNorm(grads)
	scale := 1.0
	if o.ClipNorm > 0 && norm > o.ClipNorm {
		scale = o.ClipNorm / norm
	}
	o.t++
	bc1 := 1 - math.Pow(o.Beta1, float64(o.t))
	bc2 := 1 - math.Pow(o.Beta2, float64(o.t))
	b1, b2 := float32(o.Beta1), float32(o.Beta2)
	for _, name := range names {
		g, p := grads[name], params[name]
		m, ok := o.m[name]
		if !ok {
			m = make([]float32, len(g))
			o.m[name] = m
			o.v[name] = make([]float32, len(g))
		}
		v := o.v[name]
		wd := 0.0
		if decays(name, len(p)) {
			wd = o.WeightDecay
		}
		decay := float32(1 - lr*wd)
		step := float32(lr / bc1)
		sq := 1 / bc2
		eps := o.Eps
		gs := float32(scale)
		gParallel(len(p), func(lo, hi int) {
			for i := lo; i < hi; i++ {
				gi := g[i] * gs
				m[i] = b1*m[i] + (1-b1)*gi
				v[i] = b2*v[i] + (1-b2)*gi*gi
				den := float32(math.Sqrt(float64(v[i])*sq) + eps)
				p[i] = p[i]*decay - step*m[i]/den
			}
		})
	}
	return norm, nil
}

// CosineLR is a learning rate with linear warm-up over warm steps, then a
// cosine from peak to floor at step total.
func CosineLR(step, warm, total int, peak, floor float64) float64 {
	if step < warm {
		return peak * float64(step+1) / float64(warm)
	}
	if total <= warm {
		return floor
	}
	f := math.Min(1, float64(step-warm)/float64(total-warm))
	return floor + 0.5*(peak-floor)*(1+math.Cos(math.Pi*f))
}
