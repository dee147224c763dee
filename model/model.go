// Package model is a LLaMA-family decoder (LLaMA 1/2/3, TinyLlama, SmolLM,
// Qwen2, llama2.c) computed in float32 on the CPU kernels: token embedding,
// RMSNorm, rotary position embedding in either convention, grouped-query
// causal attention, SwiGLU MLP, tied or separate classifier, optional q/k/v
// biases. Every prunable linear layer can carry a hard mask or a soft mask
// that is applied on the fly, so masked variants never copy the model.
//
// Weights are frozen float32 slices laid out [out, in] (PyTorch order). A
// Model is safe for concurrent forward passes as long as nobody changes its
// masks meanwhile.
package model

import (
	"fmt"
	"runtime"
	"sync"

	"github.com/sparsify/sparsify/kernel"
	"github.com/sparsify/sparsify/mask"
)

// Config is the architecture of a model.
type Config struct {
	Dim     int // model (residual) width
	Hidden  int // SwiGLU hidden width
	Layers  int
	Heads   int // query heads
	KVHeads int // key/value heads (GQA: Heads is a multiple of KVHeads)
	Vocab   int
	MaxSeq  int // trained context (informational; RoPE tables grow as needed)

	NormEps   float32
	RopeTheta float32
	// RopeInterleaved selects the rotation convention: true rotates pairs
	// (2i, 2i+1) as Meta's original code, llama2.c and GGUF "llama" weights
	// do; false rotates (i, i+headDim/2) ("rotate half") as Hugging Face does.
	// The convention follows the weights: llama.cpp permutes the rows of q and
	// k when it converts HF weights to GGUF, so the same model needs false
	// with HF weights and true with GGUF weights.
	RopeInterleaved bool
	Tied            bool // classifier shares the token embedding
	QKVBias         bool // q, k, v projections have biases (Qwen2)
}

// HeadDim is the width of one attention head.
func (c Config) HeadDim() int { return c.Dim / c.Heads }

// Validate checks the shape rules a forward pass relies on.
func (c Config) Validate() error {
	switch {
	case c.Dim <= 0 || c.Hidden <= 0 || c.Layers <= 0 || c.Heads <= 0 || c.KVHeads <= 0 || c.Vocab <= 0:
		return fmt.Errorf("model: config %+v: sizes must be positive", c)
	case c.Dim%c.Heads != 0:
		return fmt.Errorf("model: dim %d is not a multiple of %d heads", c.Dim, c.Heads)
	case c.Heads%c.KVHeads != 0:
		return fmt.Errorf("model: %d heads are not a multiple of %d kv heads", c.Heads, c.KVHeads)
	case c.HeadDim()%2 != 0:
		return fmt.Errorf("model: head size %d is odd (RoPE needs pairs)", c.HeadDim())
	case c.Dim > 1<<20 || c.Hidden > 1<<22 || c.Layers > 1<<12 || c.Vocab > 1<<24:
		return fmt.Errorf("model: config %+v: implausibly large", c)
	}
	return nil
}

// Linear is one linear layer y = x·Wᵀ (+ b), optionally masked.
type Linear struct {
	// Name is the weight's tensor name in the source checkpoint, e.g.
	// "blk.0.attn_q.weight" (GGUF, llama2.c) or
	// "model.layers.0.self_attn.q_proj.weight" (Hugging Face). Mask files are
	// keyed by it.
	Name    string
	Out, In int
	W       []float32  // [Out, In], frozen
	B       []float32  // bias [Out] or nil
	Mask    *mask.Mask // hard mask or nil: effective weight W ⊙ Mask
	Soft    []float32  // soft mask [Out*In] or nil (MaskLLM): effective weight W ⊙ Soft; wins over Mask
}

// Masked reports whether the effective weight differs from W.
func (l *Linear) Masked() bool { return l.Soft != nil || l.Mask != nil }

// Effective returns the effective weight [Out, In]: W itself when unmasked,
// otherwise W ⊙ Soft or W ⊙ Mask written into scratch (grown if shorter than
// Out*In). The returned slice must not be modified.
func (l *Linear) Effective(scratch []float32) []float32 {
	n := l.Out * l.In
	if !l.Masked() {
		return l.W[:n]
	}
	if cap(scratch) < n {
		scratch = make([]float32, n)
	}
	scratch = scratch[:n]
	if l.Soft != nil {
		s := l.Soft[:n]
		w := l.W[:n]
		for i := range scratch {
			scratch[i] = w[i] * s[i]
		}
		return scratch
	}
	keep := l.Mask.Keep[:n]
	w := l.W[:n]
	for i := range scratch {
		if keep[i] {
			scratch[i] = w[i]
		} else {
			scratch[i] = 0
		}
	}
	return scratch
}

// SetMask installs a hard mask after checking its shape (nil removes it).
func (l *Linear) SetMask(m *mask.Mask) error {
	if m != nil && (m.Rows != l.Out || m.Cols != l.In || len(m.Keep) != l.Out*l.In) {
		return fmt.Errorf("model: mask for %q is %dx%d, weight is %dx%d", l.Name, m.Rows, m.Cols, l.Out, l.In)
	}
	l.Mask = m
	return nil
}

var scratchPool sync.Pool // *[]float32

func getScratch(n int) *[]float32 {
	if p, ok := scratchPool.Get().(*[]float32); ok && cap(*p) >= n {
		return p
	}
	s := make([]float32, n)
	return &s
}

// Forward computes y[rows, Out] = x[rows, In] · Effᵀ (+ B) on kernel.MatMulT,
// split over the available cores.
func (l *Linear) Forward(y, x []float32, rows int) {
	var w []float32
	if l.Masked() {
		p := getScratch(l.Out * l.In)
		w = l.Effective(*p)
		defer scratchPool.Put(p)
	} else {
		w = l.W
	}
	matMulT(y[:rows*l.Out], x[:rows*l.In], w, rows, l.Out, l.In)
	if l.B != nil {
		for r := 0; r < rows; r++ {
			yr := y[r*l.Out : (r+1)*l.Out]
			for j, b := range l.B[:l.Out] {
				yr[j] += b
			}
		}
	}
}

// workers is the number of goroutines the forward pass splits work into.
func workers() int { return runtime.GOMAXPROCS(0) }

// matMulT is kernel.MatMulT, which splits large products over the cores itself.
func matMulT(c, a, b []float32, m, n, k int) { kernel.MatMulT(c, a, b, m, n, k, false) }

// Layer is one decoder block.
type Layer struct {
	AttnNorm       []float32 // [Dim]
	Q, K, V, O     *Linear
	FFNNorm        []float32 // [Dim]
	Gate, Up, Down *Linear
}

// Model is a loaded LLaMA-family decoder.
type Model struct {
	Config Config
	Embed  []float32 // [Vocab, Dim]
	Layers []Layer
	Norm   []float32 // final RMSNorm [Dim]
	// Output is the classifier [Vocab, Dim]; its W shares Embed's slice when tied.
	Output *Linear
	// Source says where the weights came from ("gguf", "hf", "llama2c", "sparse").
	Source string

	ropeMu sync.Mutex
	rope   *Rope
}

// Linears returns the prunable linear layers in order q, k, v, o, gate, up,
// down per layer (7 × Layers; the classifier is not included).
func (m *Model) Linears() []*Linear {
	out := make([]*Linear, 0, 7*len(m.Layers))
	for i := range m.Layers {
		l := &m.Layers[i]
		out = append(out, l.Q, l.K, l.V, l.O, l.Gate, l.Up, l.Down)
	}
	return out
}

// Linear finds a linear layer (including the classifier) by tensor name.
func (m *Model) Linear(name string) *Linear {
	for _, l := range m.Linears() {
		if l.Name == name {
			return l
		}
	}
	if m.Output != nil && m.Output.Name == name {
		return m.Output
	}
	return nil
}

// ApplyMasks installs hard masks keyed by tensor name. Every key must name a
// linear layer of the model with the same shape.
func (m *Model) ApplyMasks(masks map[string]*mask.Mask) error {
	for name, mk := range masks {
		l := m.Linear(name)
		if l == nil {
			return fmt.Errorf("model: mask %q names no linear layer of the model", name)
		}
		if err := l.SetMask(mk); err != nil {
			return err
		}
	}
	return nil
}

// NumParams counts the stored parameters (a tied classifier once).
func (m *Model) NumParams() int64 {
	n := int64(len(m.Embed) + len(m.Norm))
	for i := range m.Layers {
		l := &m.Layers[i]
		n += int64(len(l.AttnNorm) + len(l.FFNNorm))
	}
	for _, l := range m.Linears() {
		n += int64(len(l.W) + len(l.B))
	}
	if m.Output != nil && !m.Config.Tied {
		n += int64(len(m.Output.W))
	}
	return n
}

// Rope returns the model's rotary table, grown to at least seq positions.
func (m *Model) Rope(seq int) *Rope {
	m.ropeMu.Lock()
	defer m.ropeMu.Unlock()
	if m.rope == nil || m.rope.MaxPos < seq {
		// the trained context up to 4096 positions at once (a 128k-context
		// model would need a large table), longer sequences as they come
		n := max(seq, min(m.Config.MaxSeq, 4096), 16)
		m.rope = NewRope(m.Config.HeadDim(), n, m.Config.RopeTheta, m.Config.RopeInterleaved)
	}
	return m.rope
}

// check validates that every tensor has the size the config implies.
func (m *Model) check() error {
	c := m.Config
	if err := c.Validate(); err != nil {
		return err
	}
	if len(m.Embed) != c.Vocab*c.Dim {
		return fmt.Errorf("model: embedding has %d values, want %d", len(m.Embed), c.Vocab*c.Dim)
	}
	if len(m.Norm) != c.Dim || len(m.Layers) != c.Layers {
		return fmt.Errorf("model: final norm or layer count does not match the config")
	}
	kv := c.KVHeads * c.HeadDim()
	for i := range m.Layers {
		l := &m.Layers[i]
		if len(l.AttnNorm) != c.Dim || len(l.FFNNorm) != c.Dim {
			return fmt.Errorf("model: layer %d norms have the wrong size", i)
		}
		for _, s := range []struct {
			l       *Linear
			out, in int
		}{{l.Q, c.Dim, c.Dim}, {l.K, kv, c.Dim}, {l.V, kv, c.Dim}, {l.O, c.Dim, c.Dim},
			{l.Gate, c.Hidden, c.Dim}, {l.Up, c.Hidden, c.Dim}, {l.Down, c.Dim, c.Hidden}} {
			if err := s.l.checkShape(s.out, s.in); err != nil {
				return fmt.Errorf("model: layer %d: %w", i, err)
			}
		}
	}
	if m.Output == nil {
		return fmt.Errorf("model: no classifier")
	}
	return m.Output.checkShape(c.Vocab, c.Dim)
}

func (l *Linear) checkShape(out, in int) error {
	if l == nil {
		return fmt.Errorf("missing linear layer")
	}
	if l.Out != out || l.In != in || len(l.W) != out*in {
		return fmt.Errorf("%q is %dx%d (%d values), want %dx%d", l.Name, l.Out, l.In, len(l.W), out, in)
	}
	if l.B != nil && len(l.B) != out {
		return fmt.Errorf("%q bias has %d values, want %d", l.Name, len(l.B), out)
	}
	return nil
}
