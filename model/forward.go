package model

import (
	"context"
	"fmt"
	"sync"
)

// Hook sees the input of each linear layer during a forward pass (for
// calibration: Wanda norms, SparseGPT Hessians): in is [rows, l.In] and must
// not be retained or modified. Hooks run on the calling goroutine, in the
// order q, k, v, o, gate, up, down (q, k and v see the same slice).
type Hook func(l *Linear, in []float32, rows int)

// EmbedTokens returns x [len(tokens), Dim]. Token ids out of range give an
// error-free zero row; Forward checks ids first.
func (m *Model) EmbedTokens(tokens []int32) []float32 {
	d := m.Config.Dim
	x := make([]float32, len(tokens)*d)
	for i, t := range tokens {
		if t >= 0 && int(t) < m.Config.Vocab {
			copy(x[i*d:(i+1)*d], m.Embed[int(t)*d:(int(t)+1)*d])
		}
	}
	return x
}

// LayerForward runs decoder block i on x [B*T, Dim] in place (positions 0..T-1
// in each sequence). hook, if non-nil, sees each linear layer's input.
func (m *Model) LayerForward(i int, x []float32, B, T int, hook func(l *Linear, in []float32, rows int)) {
	c := m.Config
	L := &m.Layers[i]
	rows := B * T
	hd := c.HeadDim()
	kvd := c.KVHeads * hd
	ws := getBufs(5*rows*c.Dim + 2*rows*kvd + 2*rows*c.Hidden)
	defer putBufs(ws)
	buf := *ws
	take := func(n int) []float32 {
		s := buf[:n:n]
		buf = buf[n:]
		return s
	}
	h, q, att := take(rows*c.Dim), take(rows*c.Dim), take(rows*c.Dim)
	k, v := take(rows*kvd), take(rows*kvd)
	g, u := take(rows*c.Hidden), take(rows*c.Hidden)

	RMSNorm(h, x, L.AttnNorm, rows, c.Dim, c.NormEps)
	if hook != nil {
		hook(L.Q, h, rows)
		hook(L.K, h, rows)
		hook(L.V, h, rows)
	}
	L.Q.Forward(q, h, rows)
	L.K.Forward(k, h, rows)
	L.V.Forward(v, h, rows)
	rope := m.Rope(T)
	rope.Apply(q, B, T, c.Heads, 0)
	rope.Apply(k, B, T, c.KVHeads, 0)
	Attention(att, q, k, v, B, T, c.Heads, c.KVHeads, hd, nil)
	if hook != nil {
		hook(L.O, att, rows)
	}
	L.O.Forward(h, att, rows)
	for j := range x[:rows*c.Dim] {
		x[j] += h[j]
	}

	RMSNorm(h, x, L.FFNNorm, rows, c.Dim, c.NormEps)
	if hook != nil {
		hook(L.Gate, h, rows)
		hook(L.Up, h, rows)
	}
	L.Gate.Forward(g, h, rows)
	L.Up.Forward(u, h, rows)
	SwiGLU(g, g, u)
	if hook != nil {
		hook(L.Down, g, rows)
	}
	L.Down.Forward(h, g, rows)
	for j := range x[:rows*c.Dim] {
		x[j] += h[j]
	}
}

// bufPool recycles the per-layer activation buffers, so that a forward pass
// allocates nothing in steady state (garbage collections stop every core).
var bufPool sync.Pool // *[]float32

func getBufs(n int) *[]float32 {
	if p, ok := bufPool.Get().(*[]float32); ok && cap(*p) >= n {
		*p = (*p)[:n]
		return p
	}
	s := make([]float32, n)
	return &s
}

func putBufs(p *[]float32) { bufPool.Put(p) }

// Head applies the final norm and the classifier: x [rows, Dim] →
// logits [rows, Vocab]. x is overwritten with the normalised activations.
func (m *Model) Head(logits, x []float32, rows int) {
	RMSNorm(x, x, m.Norm, rows, m.Config.Dim, m.Config.NormEps)
	m.Output.Forward(logits, x, rows)
}

// Forward computes logits [B*T, Vocab] for B sequences of T tokens
// (tokens [B*T], each sequence starting at position 0). It checks ctx
// between layers.
func (m *Model) Forward(ctx context.Context, tokens []int32, B, T int, logits []float32) error {
	if B <= 0 || T <= 0 || len(tokens) != B*T {
		return fmt.Errorf("model: %d tokens for %d sequences of %d", len(tokens), B, T)
	}
	if len(logits) < B*T*m.Config.Vocab {
		return fmt.Errorf("model: logits buffer holds %d values, want %d", len(logits), B*T*m.Config.Vocab)
	}
	for i, t := range tokens {
		if t < 0 || int(t) >= m.Config.Vocab {
			return fmt.Errorf("model: token %d at %d is outside the vocabulary of %d", t, i, m.Config.Vocab)
		}
	}
	x := m.EmbedTokens(tokens)
	for i := range m.Layers {
		if err := ctx.Err(); err != nil {
			return err
		}
		m.LayerForward(i, x, B, T, nil)
	}
	m.Head(logits, x, B*T)
	return ctx.Err()
}
