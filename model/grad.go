package model

import (
	"context"
	"errors"
	"fmt"
	"strings"
)

// GradOptions selects what LossGrad computes.
type GradOptions struct {
	// MaskGrads computes dL/dSoft for every linear layer with Soft != nil:
	// (dL/dW_eff) ⊙ W.
	MaskGrads bool
	// WeightGrads computes the gradient of every parameter (linear weights
	// and biases, embedding, norm gains, classifier), for training weights.
	WeightGrads bool
	// Recompute keeps only each layer's input during the forward pass and
	// recomputes the layer's activations in the backward pass (activation
	// checkpointing): about one layer's activations in memory instead of all.
	Recompute bool
}

// Grads receives LossGrad's gradients. Keep one Grads per training loop and
// pass it to every step: it also holds the step's work buffers, which are
// reused (no per-step allocation once shapes are stable). Not safe for
// concurrent use.
type Grads struct {
	// Soft[i] is dL/dSoft of m.Linears()[i] ([Out*In]), nil where that layer
	// has no Soft or MaskGrads is off. Overwritten by each call.
	Soft [][]float32
	// W holds weight gradients by tensor name when WeightGrads is on
	// (overwritten by each call). Linear layers use Linear.Name (biases the
	// same name with ".bias" for ".weight"); the other tensors use their GGUF
	// names: "token_embd.weight", "output_norm.weight",
	// "blk.N.attn_norm.weight", "blk.N.ffn_norm.weight". A tied classifier's
	// gradient is added into "token_embd.weight"; an untied one is under
	// m.Output.Name.
	W map[string][]float32

	ws *gWork[float32]
}

// Tensor names of the non-linear parameters in Grads.W.
const (
	GradNameEmbed = "token_embd.weight"
	GradNameNorm  = "output_norm.weight"
)

// GradNameAttnNorm and GradNameFFNNorm name layer i's norm gains in Grads.W.
func GradNameAttnNorm(i int) string { return fmt.Sprintf("blk.%d.attn_norm.weight", i) }

// GradNameFFNNorm names layer i's feed-forward norm gain in Grads.W.
func GradNameFFNNorm(i int) string { return fmt.Sprintf("blk.%d.ffn_norm.weight", i) }

// BiasName is the Grads.W key of a linear layer's bias.
func BiasName(weight string) string {
	if s, ok := strings.CutSuffix(weight, ".weight"); ok {
		return s + ".bias"
	}
	return weight + ".bias"
}

// ErrBatch reports a token batch whose shape does not match B and T.
var ErrBatch = errors.New("model: bad training batch")

// LossGrad runs the forward and backward pass on B sequences of T+1 tokens
// (tokens [B*(T+1)]: inputs tokens[:T], targets tokens[1:] of each sequence)
// and returns the mean next-token cross-entropy. Weights are read, never
// written. Gradients go to g as opts asks. It checks ctx between layers.
func (m *Model) LossGrad(ctx context.Context, tokens []int32, B, T int, opts GradOptions, g *Grads) (float64, error) {
	if g == nil {
		return 0, fmt.Errorf("model: LossGrad needs a *Grads")
	}
	if B <= 0 || T <= 0 || T > 1<<16 {
		return 0, fmt.Errorf("%w: %d sequences of %d+1 tokens", ErrBatch, B, T)
	}
	n, err := newGNet[float32](m, T)
	if err != nil {
		return 0, err
	}
	if g.ws == nil {
		g.ws = &gWork[float32]{}
	}
	lins := m.Linears()
	if opts.MaskGrads {
		if len(g.Soft) != len(lins) {
			g.Soft = make([][]float32, len(lins))
		}
		for i, l := range lins {
			if l.Soft == nil {
				g.Soft[i] = nil
			} else if len(g.Soft[i]) != l.Out*l.In {
				g.Soft[i] = make([]float32, l.Out*l.In)
			}
		}
	}
	if opts.WeightGrads && g.W == nil {
		g.W = make(map[string][]float32)
	}
	return gLossGrad(ctx, n, tokens, B, T, opts, g.ws, g.Soft, g.W)
}

// gLin is one linear layer in the training path.
type gLin[F gfloat] struct {
	name, bname string
	out, in     int
	w, b, soft  []F
	keep        []bool
}

type gLayer[F gfloat] struct {
	attnNorm, ffnNorm   []F
	anName, fnName      string
	q, k, v, o, g, u, d gLin[F]
}

// gNet is a model seen by the training path: the float32 instance aliases the
// Model's slices; the float64 one (gradient checks) holds converted copies.
type gNet[F gfloat] struct {
	cfg     Config
	embed   []F
	norm    []F
	out     []F
	outName string
	layers  []gLayer[F]
	rope    *gRope[F]
}

func gConv[F gfloat](s []float32) []F {
	if s == nil {
		return nil
	}
	if f, ok := any(s).([]F); ok {
		return f
	}
	out := make([]F, len(s))
	for i, v := range s {
		out[i] = F(v)
	}
	return out
}

func newGLin[F gfloat](l *Linear) gLin[F] {
	gl := gLin[F]{name: l.Name, bname: BiasName(l.Name), out: l.Out, in: l.In,
		w: gConv[F](l.W), b: gConv[F](l.B), soft: gConv[F](l.Soft)}
	if l.Soft == nil && l.Mask != nil {
		gl.keep = l.Mask.Keep
	}
	return gl
}

// newGNet wraps m for sequences of up to T positions.
func newGNet[F gfloat](m *Model, T int) (*gNet[F], error) {
	if err := m.check(); err != nil {
		return nil, err
	}
	if m.Output.Masked() {
		return nil, fmt.Errorf("model: LossGrad does not support a masked classifier %q", m.Output.Name)
	}
	for _, l := range m.Linears() {
		if l.Soft != nil && len(l.Soft) != l.Out*l.In {
			return nil, fmt.Errorf("model: soft mask of %q has %d values, want %d", l.Name, len(l.Soft), l.Out*l.In)
		}
	}
	c := m.Config
	n := &gNet[F]{cfg: c, embed: gConv[F](m.Embed), norm: gConv[F](m.Norm), outName: m.Output.Name,
		rope: newGRope[F](c.HeadDim(), T, float64(c.RopeTheta), c.RopeInterleaved)}
	if c.Tied {
		n.out = n.embed
	} else {
		n.out = gConv[F](m.Output.W)
	}
	n.layers = make([]gLayer[F], len(m.Layers))
	for i := range m.Layers {
		L := &m.Layers[i]
		n.layers[i] = gLayer[F]{attnNorm: gConv[F](L.AttnNorm), ffnNorm: gConv[F](L.FFNNorm),
			anName: GradNameAttnNorm(i), fnName: GradNameFFNNorm(i),
			q: newGLin[F](L.Q), k: newGLin[F](L.K), v: newGLin[F](L.V), o: newGLin[F](L.O),
			g: newGLin[F](L.Gate), u: newGLin[F](L.Up), d: newGLin[F](L.Down)}
	}
	return n, nil
}

func (l *gLayer[F]) lins() [7]*gLin[F] {
	return [7]*gLin[F]{&l.q, &l.k, &l.v, &l.o, &l.g, &l.u, &l.d}
}

// gAct holds one layer's activations for the backward pass.
type gAct[F gfloat] struct {
	r1, r2               []F // rms scales [BT]
	xn1, q, att, x2, xn2 []F // [BT, D]; q after RoPE
	k, v                 []F // [BT, KV*hd]; k after RoPE
	probs                []F // [B, H, T, T]
	g, u, h              []F // [BT, Hidden]
}

// gWork is the reusable memory of a training step.
type gWork[F gfloat] struct {
	B, T, L   int
	recompute bool
	cfg       Config

	xin  [][]F // layer inputs [BT, D]; xin[L] is the final residual
	acts []gAct[F]
	eff  [][]F // effective weights of masked linears, per layer×7

	dx, dxn, tmpD, dq, datt []F // [BT, D]
	dk, dv                  []F // [BT, KV]
	dg, du, dh              []F // [BT, Hidden]
	xf, rf                  []F // final norm output [BT, D] and scales
	logits                  []F // [chunk, V]
	dW                      []F // dW_eff [max out*in]
	tr                      []F // transposed left operand of MatMulTN
	xT, dWT                 []F // a transposed layer input [D, BT]; dWᵀ
	attn                    []attnScratch[F]
	inp, tgt                []int32
}

const gLogitChunk = 256

func grow[F gfloat](s []F, n int) []F {
	if cap(s) < n {
		return make([]F, n)
	}
	return s[:n]
}

func (w *gWork[F]) ensure(n *gNet[F], B, T int, recompute bool) {
	c := n.cfg
	if w.B == B && w.T == T && w.L == len(n.layers) && w.recompute == recompute && w.cfg == c {
		return
	}
	*w = gWork[F]{B: B, T: T, L: len(n.layers), recompute: recompute, cfg: c,
		// keep the old big slices for reuse where sizes allow
		xin: w.xin, acts: w.acts, eff: w.eff, dx: w.dx, dxn: w.dxn, tmpD: w.tmpD, dq: w.dq, datt: w.datt,
		dk: w.dk, dv: w.dv, dg: w.dg, du: w.du, dh: w.dh, xf: w.xf, rf: w.rf, logits: w.logits,
		dW: w.dW, tr: w.tr, xT: w.xT, dWT: w.dWT, attn: w.attn, inp: w.inp, tgt: w.tgt}
	BT, D, H := B*T, c.Dim, c.Hidden
	kvd := c.KVHeads * c.HeadDim()
	L := len(n.layers)
	if len(w.xin) != L+1 {
		w.xin = make([][]F, L+1)
	}
	for i := range w.xin {
		w.xin[i] = grow(w.xin[i], BT*D)
	}
	na := L
	if recompute {
		na = 1
	}
	if len(w.acts) != na {
		w.acts = make([]gAct[F], na)
	}
	for i := range w.acts {
		a := &w.acts[i]
		a.r1, a.r2 = grow(a.r1, BT), grow(a.r2, BT)
		a.xn1, a.q, a.att, a.x2, a.xn2 = grow(a.xn1, BT*D), grow(a.q, BT*D), grow(a.att, BT*D), grow(a.x2, BT*D), grow(a.xn2, BT*D)
		a.k, a.v = grow(a.k, BT*kvd), grow(a.v, BT*kvd)
		a.probs = grow(a.probs, B*c.Heads*T*T)
		a.g, a.u, a.h = grow(a.g, BT*H), grow(a.u, BT*H), grow(a.h, BT*H)
	}
	w.dx, w.dxn, w.tmpD, w.dq, w.datt = grow(w.dx, BT*D), grow(w.dxn, BT*D), grow(w.tmpD, BT*D), grow(w.dq, BT*D), grow(w.datt, BT*D)
	w.dk, w.dv = grow(w.dk, BT*kvd), grow(w.dv, BT*kvd)
	w.dg, w.du, w.dh = grow(w.dg, BT*H), grow(w.du, BT*H), grow(w.dh, BT*H)
	w.xf, w.rf = grow(w.xf, BT*D), grow(w.rf, BT)
	w.logits = grow(w.logits, min(gLogitChunk, BT)*c.Vocab)
	maxW := max(D*D, H*D, c.Vocab*D)
	w.dW = grow(w.dW, maxW)
	w.dWT = grow(w.dWT, maxW)
	w.xT = grow(w.xT, BT*D)
	w.tr = grow(w.tr, max(BT*max(D, H, kvd), c.Vocab*min(gLogitChunk, BT)))
	w.attn = attnScratches(w.attn, T, c.HeadDim())
	w.inp = make([]int32, BT)
	w.tgt = make([]int32, BT)
	if len(w.eff) != 7*L {
		w.eff = make([][]F, 7*L)
	}
}

// effective returns W ⊙ Soft (or ⊙ Keep) for layer li's linear j, or W.
func (w *gWork[F]) effective(li, j int, l *gLin[F]) []F {
	if l.soft == nil && l.keep == nil {
		return l.w
	}
	e := grow(w.eff[li*7+j], l.out*l.in)
	w.eff[li*7+j] = e
	gParallel(len(e), func(lo, hi int) {
		if l.soft != nil {
			for i := lo; i < hi; i++ {
				e[i] = l.w[i] * l.soft[i]
			}
			return
		}
		for i := lo; i < hi; i++ {
			if l.keep[i] {
				e[i] = l.w[i]
			} else {
				e[i] = 0
			}
		}
	})
	return e
}

// gStep carries one call's state through the forward and backward.
type gStep[F gfloat] struct {
	n    *gNet[F]
	w    *gWork[F]
	opts GradOptions
	soft [][]F          // dL/dSoft per linear (indexed like Linears), may be nil
	gw   map[string][]F // weight grads, may be nil
	effs [][7][]F       // effective weights per layer
}

func (s *gStep[F]) wgrad(name string, n int) []F {
	g := s.gw[name]
	if len(g) != n {
		g = make([]F, n)
		s.gw[name] = g
	}
	return g
}

// linear computes y = x·Effᵀ (+b).
func (s *gStep[F]) linear(y, x []F, l *gLin[F], eff []F, rows int) {
	gMatMulT(y, x, eff, rows, l.out, l.in, false)
	if l.b != nil {
		gParallel(rows, func(lo, hi int) {
			for r := lo; r < hi; r++ {
				yr := y[r*l.out : (r+1)*l.out]
				for j, b := range l.b {
					yr[j] += b
				}
			}
		})
	}
}

// wantGrads reports whether l's parameter gradients are asked for.
func (s *gStep[F]) wantGrads(l *gLin[F]) bool {
	return (s.opts.MaskGrads && l.soft != nil && s.soft != nil) || (s.opts.WeightGrads && s.gw != nil)
}

// transposeInput writes x [rows, in]ᵀ into w.xT when any of ls needs
// parameter gradients, and returns it (nil otherwise). Linear layers that
// share an input then compute dWᵀ = xᵀ·dy from one transpose instead of
// transposing each dy.
func (s *gStep[F]) transposeInput(x []F, rows, in int, ls ...*gLin[F]) []F {
	for _, l := range ls {
		if s.wantGrads(l) {
			xT := s.w.xT[:rows*in]
			transpose(xT, x[:rows*in], rows, in)
			return xT
		}
	}
	return nil
}

// linearBack adds dy·Eff to dx (or writes it when acc is false) and records
// the parameter gradients of layer index li*7+j. xT, if non-nil, is x
// transposed ([in, rows]).
func (s *gStep[F]) linearBack(dx, dy, x, xT []F, l *gLin[F], eff []F, rows, idx int, acc bool) {
	if dx != nil {
		gMatMul(dx, dy, eff, rows, l.in, l.out, acc)
	}
	wantSoft := s.opts.MaskGrads && l.soft != nil && s.soft != nil
	wantW := s.opts.WeightGrads && s.gw != nil
	if !wantSoft && !wantW {
		return
	}
	n := l.out * l.in
	dW := s.w.dW[:n]
	if xT != nil {
		dWT := s.w.dWT[:n]
		gMatMul(dWT, xT, dy, l.in, l.out, rows, false)
		transpose(dW, dWT, l.in, l.out)
	} else {
		gMatMulTN(dW, dy, x, l.out, l.in, rows, false, s.w.tr)
	}
	if wantSoft {
		gs := s.soft[idx]
		gParallel(n, func(lo, hi int) {
			for i := lo; i < hi; i++ {
				gs[i] = dW[i] * l.w[i]
			}
		})
	}
	if wantW {
		gw := s.wgrad(l.name, n)
		gParallel(n, func(lo, hi int) {
			switch {
			case l.soft != nil:
				for i := lo; i < hi; i++ {
					gw[i] += dW[i] * l.soft[i]
				}
			case l.keep != nil:
				for i := lo; i < hi; i++ {
					if l.keep[i] {
						gw[i] += dW[i]
					}
				}
			default:
				for i := lo; i < hi; i++ {
					gw[i] += dW[i]
				}
			}
		})
		if l.b != nil {
			gb := s.wgrad(l.bname, l.out)
			for r := 0; r < rows; r++ {
				for j, v := range dy[r*l.out : (r+1)*l.out] {
					gb[j] += v
				}
			}
		}
	}
}

// layerForward runs layer li on x into xout, storing activations in a.
func (s *gStep[F]) layerForward(li int, x, xout []F, a *gAct[F]) {
	n, w := s.n, s.w
	c := n.cfg
	L := &n.layers[li]
	e := &s.effs[li]
	B, T := w.B, w.T
	BT, D := B*T, c.Dim
	gRMSNorm(a.xn1, a.r1, x, L.attnNorm, BT, D, float64(c.NormEps))
	s.linear(a.q, a.xn1, &L.q, e[0], BT)
	s.linear(a.k, a.xn1, &L.k, e[1], BT)
	s.linear(a.v, a.xn1, &L.v, e[2], BT)
	n.rope.apply(a.q, B, T, c.Heads, 1)
	n.rope.apply(a.k, B, T, c.KVHeads, 1)
	gAttention(a.att, a.probs, a.q, a.k, a.v, B, T, c.Heads, c.KVHeads, c.HeadDim(), w.attn)
	s.linear(a.x2, a.att, &L.o, e[3], BT)
	gAddInto(a.x2, x)
	gRMSNorm(a.xn2, a.r2, a.x2, L.ffnNorm, BT, D, float64(c.NormEps))
	s.linear(a.g, a.xn2, &L.g, e[4], BT)
	s.linear(a.u, a.xn2, &L.u, e[5], BT)
	gSwiGLU(a.h, a.g, a.u)
	s.linear(xout, a.h, &L.d, e[6], BT)
	gAddInto(xout, a.x2)
}

// layerBackward turns w.dx (dL/d layer output) into dL/d layer input in place.
func (s *gStep[F]) layerBackward(li int, x []F, a *gAct[F]) {
	n, w := s.n, s.w
	c := n.cfg
	L := &n.layers[li]
	e := &s.effs[li]
	B, T := w.B, w.T
	BT, D := B*T, c.Dim
	base := li * 7
	var dAN, dFN []F
	if s.opts.WeightGrads && s.gw != nil {
		dAN, dFN = s.wgrad(L.anName, D), s.wgrad(L.fnName, D)
	}
	// FFN
	s.linearBack(w.dh, w.dx, a.h, nil, &L.d, e[6], BT, base+6, false)
	gSwiGLUBack(w.dg, w.du, w.dh, a.g, a.u)
	xT := s.transposeInput(a.xn2, BT, D, &L.g, &L.u)
	s.linearBack(w.dxn, w.dg, a.xn2, xT, &L.g, e[4], BT, base+4, false)
	s.linearBack(w.dxn, w.du, a.xn2, xT, &L.u, e[5], BT, base+5, true)
	gRMSNormBack(w.dx, dFN, w.dxn, a.x2, a.r2, L.ffnNorm, BT, D)
	// attention
	s.linearBack(w.datt, w.dx, a.att, nil, &L.o, e[3], BT, base+3, false)
	gAttentionBack(w.dq, w.dk, w.dv, w.datt, a.probs, a.q, a.k, a.v, B, T, c.Heads, c.KVHeads, c.HeadDim(), w.attn)
	n.rope.apply(w.dq, B, T, c.Heads, -1)
	n.rope.apply(w.dk, B, T, c.KVHeads, -1)
	xT = s.transposeInput(a.xn1, BT, D, &L.q, &L.k, &L.v)
	s.linearBack(w.dxn, w.dq, a.xn1, xT, &L.q, e[0], BT, base+0, false)
	s.linearBack(w.dxn, w.dk, a.xn1, xT, &L.k, e[1], BT, base+1, true)
	s.linearBack(w.dxn, w.dv, a.xn1, xT, &L.v, e[2], BT, base+2, true)
	gRMSNormBack(w.dx, dAN, w.dxn, x, a.r1, L.attnNorm, BT, D)
}

func gAddInto[F gfloat](dst, src []F) {
	gParallel(len(dst), func(lo, hi int) {
		for i := lo; i < hi; i++ {
			dst[i] += src[i]
		}
	})
}

// gLossGrad is LossGrad for either element type.
func gLossGrad[F gfloat](ctx context.Context, n *gNet[F], tokens []int32, B, T int, opts GradOptions, w *gWork[F], soft [][]F, gw map[string][]F) (float64, error) {
	c := n.cfg
	if B <= 0 || T <= 0 || len(tokens) != B*(T+1) {
		return 0, fmt.Errorf("%w: %d tokens for %d sequences of %d+1", ErrBatch, len(tokens), B, T)
	}
	if T > 1<<16 || int64(B)*int64(c.Heads)*int64(T)*int64(T) > 1<<34 {
		return 0, fmt.Errorf("%w: %d sequences of %d tokens is too large", ErrBatch, B, T)
	}
	for i, t := range tokens {
		if t < 0 || int(t) >= c.Vocab {
			return 0, fmt.Errorf("%w: token %d at %d is outside the vocabulary of %d", ErrBatch, t, i, c.Vocab)
		}
	}
	w.ensure(n, B, T, opts.Recompute)
	BT, D, V := B*T, c.Dim, c.Vocab
	for b := 0; b < B; b++ {
		copy(w.inp[b*T:(b+1)*T], tokens[b*(T+1):b*(T+1)+T])
		copy(w.tgt[b*T:(b+1)*T], tokens[b*(T+1)+1:(b+1)*(T+1)])
	}
	s := &gStep[F]{n: n, w: w, opts: opts, soft: soft, gw: gw, effs: make([][7][]F, len(n.layers))}
	if opts.WeightGrads && gw != nil {
		for _, g := range gw {
			clear(g)
		}
	}
	for li := range n.layers {
		for j, l := range n.layers[li].lins() {
			s.effs[li][j] = w.effective(li, j, l)
		}
	}
	// forward
	x0 := w.xin[0]
	for i, t := range w.inp {
		copy(x0[i*D:(i+1)*D], n.embed[int(t)*D:(int(t)+1)*D])
	}
	for li := range n.layers {
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		a := &w.acts[0]
		if !opts.Recompute {
			a = &w.acts[li]
		}
		s.layerForward(li, w.xin[li], w.xin[li+1], a)
	}
	// head: final norm, classifier and cross-entropy in chunks of rows
	xL := w.xin[len(n.layers)]
	gRMSNorm(w.xf, w.rf, xL, n.norm, BT, D, float64(c.NormEps))
	var dOut []F
	if opts.WeightGrads && gw != nil {
		if c.Tied {
			dOut = s.wgrad(GradNameEmbed, V*D)
		} else {
			dOut = s.wgrad(n.outName, V*D)
		}
	}
	var nll float64
	scale := F(1 / float64(BT))
	for r0 := 0; r0 < BT; r0 += gLogitChunk {
		r1 := min(r0+gLogitChunk, BT)
		rows := r1 - r0
		lg := w.logits[:rows*V]
		gMatMulT(lg, w.xf[r0*D:r1*D], n.out, rows, V, D, false)
		nll += gCrossEntropy(lg, w.tgt[r0:r1], rows, V, scale)
		if opts.MaskGrads || opts.WeightGrads {
			gMatMul(w.dxn[r0*D:r1*D], lg, n.out, rows, D, V, false)
		}
		if dOut != nil {
			gMatMulTN(dOut, lg, w.xf[r0*D:r1*D], V, D, rows, true, w.tr)
		}
	}
	loss := nll / float64(BT)
	if !opts.MaskGrads && !opts.WeightGrads {
		return loss, nil // loss only: nothing to propagate
	}
	var dNorm []F
	if opts.WeightGrads && gw != nil {
		dNorm = s.wgrad(GradNameNorm, D)
	}
	clear(w.dx)
	gRMSNormBack(w.dx, dNorm, w.dxn, xL, w.rf, n.norm, BT, D)
	// backward through the layers
	for li := len(n.layers) - 1; li >= 0; li-- {
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		a := &w.acts[0]
		if opts.Recompute {
			s.layerForward(li, w.xin[li], w.tmpD, a)
		} else {
			a = &w.acts[li]
		}
		s.layerBackward(li, w.xin[li], a)
	}
	if opts.WeightGrads && gw != nil {
		dE := s.wgrad(GradNameEmbed, V*D)
		for i, t := range w.inp {
			row := dE[int(t)*D : (int(t)+1)*D]
			for j, v := range w.dx[i*D : (i+1)*D] {
				row[j] += v
			}
		}
	}
	return loss, nil
}
