package calib

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/sparsify/sparsify/kernel"
	"github.com/sparsify/sparsify/mask"
	"github.com/sparsify/sparsify/model"
)

// tinyModel is a random 2-layer LLaMA-shaped model (dims divisible by 4).
func tinyModel(seed uint64) *model.Model {
	rng := rand.New(rand.NewPCG(seed, 1))
	c := model.Config{Dim: 16, Hidden: 24, Layers: 2, Heads: 4, KVHeads: 2, Vocab: 32, MaxSeq: 64,
		NormEps: 1e-5, RopeTheta: 10000, RopeInterleaved: true}
	vec := func(n int, scale float64, off float32) []float32 {
		v := make([]float32, n)
		for i := range v {
			v[i] = off + float32(rng.NormFloat64()*scale)
		}
		return v
	}
	lin := func(name string, out, in int) *model.Linear {
		return &model.Linear{Name: name, Out: out, In: in, W: vec(out*in, 0.4, 0)}
	}
	m := &model.Model{Config: c, Embed: vec(c.Vocab*c.Dim, 1, 0), Norm: vec(c.Dim, 0.1, 1), Source: "test"}
	kv := c.KVHeads * c.HeadDim()
	for i := 0; i < c.Layers; i++ {
		p := fmt.Sprintf("blk.%d.", i)
		m.Layers = append(m.Layers, model.Layer{
			AttnNorm: vec(c.Dim, 0.1, 1), FFNNorm: vec(c.Dim, 0.1, 1),
			Q: lin(p+"attn_q.weight", c.Dim, c.Dim), K: lin(p+"attn_k.weight", kv, c.Dim),
			V: lin(p+"attn_v.weight", kv, c.Dim), O: lin(p+"attn_output.weight", c.Dim, c.Dim),
			Gate: lin(p+"ffn_gate.weight", c.Hidden, c.Dim), Up: lin(p+"ffn_up.weight", c.Hidden, c.Dim),
			Down: lin(p+"ffn_down.weight", c.Dim, c.Hidden),
		})
	}
	m.Output = lin("output.weight", c.Vocab, c.Dim)
	return m
}

func tinyTokens(n int, seed uint64) []int32 {
	rng := rand.New(rand.NewPCG(seed, 2))
	t := make([]int32, n)
	for i := range t {
		t[i] = int32(rng.IntN(32))
	}
	return t
}

var tinyOpts = Options{Samples: 6, SeqLen: 10, Batch: 4, Pattern: mask.Pattern24}

// snapshot copies every linear's weights.
func snapshot(m *model.Model) map[string][]float32 {
	s := map[string][]float32{}
	for _, l := range m.Linears() {
		s[l.Name] = slices.Clone(l.W)
	}
	return s
}

// refStats runs block li of m over x (all windows, in tinyOpts' batches)
// and returns, per linear, the input Hessian and column norms accumulated
// exactly as Prune does.
func refStats(m *model.Model, li int, x []float32) (map[*model.Linear]*mask.Hessian, map[*model.Linear]*mask.ColumnNorms) {
	H := map[*model.Linear]*mask.Hessian{}
	N := map[*model.Linear]*mask.ColumnNorms{}
	d := m.Config.Dim
	o := tinyOpts
	for b0 := 0; b0 < o.Samples; b0 += o.Batch {
		nb := min(o.Batch, o.Samples-b0)
		xb := slices.Clone(x[b0*o.SeqLen*d : (b0+nb)*o.SeqLen*d])
		m.LayerForward(li, xb, nb, o.SeqLen, func(l *model.Linear, in []float32, rows int) {
			if H[l] == nil {
				H[l], N[l] = mask.NewHessian(l.In), mask.NewColumnNorms(l.In)
			}
			g := make([]float32, l.In*l.In)
			kernel.MatMulTN(g, in[:rows*l.In], in[:rows*l.In], l.In, l.In, rows, false)
			H[l].AddGram(g, nb)
			N[l].Add(in[:rows*l.In], rows, nb)
		})
	}
	return H, N
}

// TestSequential checks that block 1 is calibrated on the outputs of the
// already-pruned block 0, and that o/down see the dense q/k/v/gate/up of
// their own block.
func TestSequential(t *testing.T) {
	for _, method := range []string{"wanda", "sparsegpt"} {
		m := tinyModel(1)
		orig := snapshot(m)
		tokens := tinyTokens(tinyOpts.Samples*tinyOpts.SeqLen, 3)
		masks, upd, err := PruneTokens(context.Background(), m, tokens, method, tinyOpts)
		if err != nil {
			t.Fatal(err)
		}
		if len(masks) != 14 {
			t.Fatalf("%d masks", len(masks))
		}
		if method == "sparsegpt" && len(upd) != 14 || method == "wanda" && upd != nil {
			t.Fatalf("%s: %d updated weights", method, len(upd))
		}
		// reference model: block 0 as pruned, block 1 dense.
		ref := tinyModel(1)
		for _, l := range ref.Linears() {
			if strings.HasPrefix(l.Name, "blk.0.") {
				l.SetMask(masks[l.Name])
				if upd != nil {
					l.W = upd[l.Name]
				}
			}
		}
		x := ref.EmbedTokens(tokens)
		d := ref.Config.Dim
		for b0 := 0; b0 < tinyOpts.Samples; b0 += tinyOpts.Batch {
			nb := min(tinyOpts.Batch, tinyOpts.Samples-b0)
			ref.LayerForward(0, x[b0*tinyOpts.SeqLen*d:(b0+nb)*tinyOpts.SeqLen*d], nb, tinyOpts.SeqLen, nil)
		}
		H, N := refStats(ref, 1, x)
		for _, l := range ref.Linears()[7:] {
			var want *mask.Mask
			var wantW []float32
			if method == "wanda" {
				want, err = mask.Wanda(orig[l.Name], l.Out, l.In, N[l].Float32(), tinyOpts.Pattern)
			} else {
				want, wantW, err = mask.SparseGPT(orig[l.Name], l.Out, l.In, H[l].H, tinyOpts.Pattern, mask.DefaultSparseGPTOptions)
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(want.Keep, masks[l.Name].Keep) {
				t.Errorf("%s %s: mask differs from one computed on the pruned block 0's outputs", method, l.Name)
			}
			if wantW != nil && !slices.Equal(wantW, upd[l.Name]) {
				t.Errorf("%s %s: updated weights differ", method, l.Name)
			}
		}
		// the model is left pruned.
		for _, l := range m.Linears() {
			if l.Mask != masks[l.Name] {
				t.Fatalf("%s: %s does not carry its mask", method, l.Name)
			}
			if method == "sparsegpt" && !slices.Equal(l.W, upd[l.Name]) || method == "wanda" && !slices.Equal(l.W, orig[l.Name]) {
				t.Fatalf("%s: %s weights not as documented", method, l.Name)
			}
		}
	}
}

func TestSparseGPTMaskOnly(t *testing.T) {
	tokens := tinyTokens(tinyOpts.Samples*tinyOpts.SeqLen, 4)
	a := tinyModel(2)
	ma, _, err := PruneTokens(context.Background(), a, tokens, "sparsegpt", tinyOpts)
	if err != nil {
		t.Fatal(err)
	}
	b := tinyModel(2)
	origW := map[string][]float32{}
	for _, l := range b.Linears() {
		origW[l.Name] = l.W
	}
	mb, wb, err := PruneTokens(context.Background(), b, tokens, "sparsegpt-mask", tinyOpts)
	if err != nil {
		t.Fatal(err)
	}
	if wb != nil {
		t.Fatal("mask-only returned weights")
	}
	for name, mk := range ma {
		if !slices.Equal(mk.Keep, mb[name].Keep) {
			t.Fatalf("%s: mask-only mask differs from sparsegpt's", name)
		}
	}
	for _, l := range b.Linears() {
		if &l.W[0] != &origW[l.Name][0] {
			t.Fatalf("%s: original weights not restored", l.Name)
		}
	}
	fresh := tinyModel(2)
	for i, l := range b.Linears() {
		if !slices.Equal(l.W, fresh.Linears()[i].W) {
			t.Fatalf("%s: original weights were written", l.Name)
		}
	}
}

func TestMagnitudeAndErrors(t *testing.T) {
	m := tinyModel(5)
	masks, upd, err := PruneTokens(context.Background(), m, nil, "magnitude", Options{Pattern: mask.Pattern{N: 1, M: 4}})
	if err != nil || upd != nil {
		t.Fatal(err, upd)
	}
	for _, l := range m.Linears() {
		want, _ := mask.Magnitude(l.W, l.Out, l.In, mask.Pattern{N: 1, M: 4})
		if !slices.Equal(want.Keep, masks[l.Name].Keep) || l.Mask != masks[l.Name] {
			t.Fatalf("%s: magnitude mask not installed", l.Name)
		}
	}
	tokens := tinyTokens(60, 1)
	if _, _, err := PruneTokens(context.Background(), tinyModel(5), tokens, "obs", tinyOpts); !errors.Is(err, ErrMethod) {
		t.Errorf("unknown method: %v", err)
	}
	if _, _, err := PruneTokens(context.Background(), tinyModel(5), tokens[:59], "wanda", tinyOpts); !errors.Is(err, ErrCalib) {
		t.Errorf("short tokens: %v", err)
	}
	bad := slices.Clone(tokens)
	bad[7] = 99
	if _, _, err := PruneTokens(context.Background(), tinyModel(5), bad, "wanda", tinyOpts); !errors.Is(err, ErrCalib) {
		t.Errorf("token out of vocabulary: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for _, method := range Methods {
		if _, _, err := PruneTokens(ctx, tinyModel(5), tokens, method, tinyOpts); !errors.Is(err, context.Canceled) {
			t.Errorf("%s with a cancelled context: %v", method, err)
		}
	}
	if _, _, err := Prune(context.Background(), tinyModel(5), nil, "wanda", tinyOpts); !errors.Is(err, ErrCalib) {
		t.Errorf("no tokenizer: %v", err)
	}
}

func TestWindows(t *testing.T) {
	stream := make([]int32, 100)
	for i := range stream {
		stream[i] = int32(i)
	}
	a, err := Windows(stream, 50, 10, 0)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := Windows(stream, 50, 10, 0)
	c, _ := Windows(stream, 50, 10, 1)
	if !slices.Equal(a, b) || slices.Equal(a, c) {
		t.Fatal("windows not determined by the seed")
	}
	for w := 0; w < 50; w++ {
		s := a[w*10]
		if s < 0 || s > 100-10-1 {
			t.Fatalf("window %d starts at %d", w, s)
		}
		for j := 1; j < 10; j++ {
			if a[w*10+j] != s+int32(j) {
				t.Fatalf("window %d is not contiguous", w)
			}
		}
	}
	if _, err := Windows(stream[:10], 1, 10, 0); !errors.Is(err, ErrCalib) {
		t.Fatalf("stream too short: %v", err)
	}
}

func TestMaskSourceMagnitude(t *testing.T) {
	src, err := NewMaskSource(context.Background(), "/nonexistent", "magnitude", Options{})
	if err != nil {
		t.Fatal(err)
	}
	w := []float32{1, -4, 2, 3, 0, 1, 0, 0}
	mk, upd, err := src.Mask(context.Background(), "x.weight", w, 2, 4, mask.Pattern24)
	if err != nil || upd != nil {
		t.Fatal(err, upd)
	}
	want, _ := mask.Magnitude(w, 2, 4, mask.Pattern24)
	if !slices.Equal(mk.Keep, want.Keep) {
		t.Fatal("magnitude source differs from mask.Magnitude")
	}
	if _, _, err := src.Mask(context.Background(), "x.weight", w, 2, 4, mask.Pattern{N: 1, M: 2}); err == nil {
		t.Fatal("pattern mismatch accepted")
	}
	if src.Name() != "magnitude" || src.Settings()["weights_updated"] != false {
		t.Fatalf("settings %v", src.Settings())
	}
	if _, err := NewMaskSource(context.Background(), "/nonexistent", "obs", Options{}); !errors.Is(err, ErrMethod) {
		t.Fatalf("unknown method: %v", err)
	}
}

func TestMaskSourceServes(t *testing.T) {
	m := tinyModel(7)
	orig := snapshot(m)
	tokens := tinyTokens(60, 8)
	masks, upd, err := PruneTokens(context.Background(), m, tokens, "sparsegpt", tinyOpts)
	if err != nil {
		t.Fatal(err)
	}
	src := &maskSource{method: "sparsegpt", opts: tinyOpts.withDefaults(), masks: masks, weights: upd}
	name := "blk.1.ffn_down.weight"
	l := m.Linear(name)
	mk, w, err := src.Mask(context.Background(), name, orig[name], l.Out, l.In, mask.Pattern24)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(mk.Keep, masks[name].Keep) || !slices.Equal(w, upd[name]) {
		t.Fatal("served mask or weights differ")
	}
	w[0] = 1e9 // the served weights are a copy
	if upd[name][0] == 1e9 {
		t.Fatal("served weights alias the source's")
	}
	if _, _, err := src.Mask(context.Background(), "output.weight", orig[name], l.Out, l.In, mask.Pattern24); err == nil {
		t.Fatal("unknown tensor accepted")
	}
	if _, _, err := src.Mask(context.Background(), name, orig[name][:4], 1, 4, mask.Pattern24); err == nil {
		t.Fatal("shape mismatch accepted")
	}
	if src.Settings()["weights_updated"] != true {
		t.Fatal("sparsegpt must say its weights are updated")
	}
}

// TestSparseGPTPrior checks MaskLLM's prior: every block calibrated on the
// dense model, groups chosen without updates, weights untouched.
func TestSparseGPTPrior(t *testing.T) {
	m := tinyModel(9)
	orig := snapshot(m)
	tokens := tinyTokens(tinyOpts.Samples*tinyOpts.SeqLen, 10)
	masks, upd, err := PruneTokens(context.Background(), m, tokens, "sparsegpt-prior", tinyOpts)
	if err != nil || upd != nil {
		t.Fatal(err, upd)
	}
	dense := tinyModel(9)
	x := dense.EmbedTokens(tokens)
	d := dense.Config.Dim
	for li := 0; li < 2; li++ {
		H, _ := refStats(dense, li, x)
		for _, l := range dense.Linears()[7*li : 7*li+7] {
			want, _, err := mask.SparseGPT(orig[l.Name], l.Out, l.In, H[l].H, tinyOpts.Pattern, mask.SparseGPTOptions{NoUpdate: true})
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(want.Keep, masks[l.Name].Keep) {
				t.Errorf("%s: prior mask differs from the dense-calibrated no-update selection", l.Name)
			}
		}
		for b0 := 0; b0 < tinyOpts.Samples; b0 += tinyOpts.Batch {
			nb := min(tinyOpts.Batch, tinyOpts.Samples-b0)
			dense.LayerForward(li, x[b0*tinyOpts.SeqLen*d:(b0+nb)*tinyOpts.SeqLen*d], nb, tinyOpts.SeqLen, nil)
		}
	}
	for _, l := range m.Linears() {
		if l.Mask != masks[l.Name] || !slices.Equal(l.W, orig[l.Name]) {
			t.Fatalf("%s: prior must install its mask and keep the weights", l.Name)
		}
	}
}
