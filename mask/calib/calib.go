// Package calib chooses one-shot N:M masks for a whole model by running
// calibration text through it: magnitude (no data), Wanda and SparseGPT (with
// and without its weight update), layer by layer as the reference code bases
// do (spec maskllm.md §3.2–3.4).
//
// Calibration: the calibration file's blank-line separated paragraphs are
// stripped, tokenized with BOS before each and concatenated into one stream;
// Samples windows of SeqLen tokens start at positions drawn uniformly from
// [0, len − SeqLen − 1] with a PCG generator seeded by Seed (the reference's
// randint draw on a joined text; Python's MT19937 stream is not reproduced).
//
// Sequential pruning (SparseGPT's llama.py, Wanda's prune_wanda): the samples'
// embeddings enter block 0; for every block i, one forward of the still-dense
// block over all samples feeds hooks that accumulate each linear's input
// statistic (q, k and v share one input, as do gate and up); then all seven
// linears of the block are pruned; then the pruned block is run again and
// its outputs become block i+1's inputs. So block i sees the activations of
// the already-pruned blocks 0..i−1, and o/down see the unpruned q/k/v/gate/up
// of their own block.
package calib

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"strings"
	"time"

	"github.com/sparsify/sparsify/kernel"
	"github.com/sparsify/sparsify/mask"
	"github.com/sparsify/sparsify/model"
	"github.com/sparsify/sparsify/model/tokenizer"
)

// Methods lists the method names Prune accepts.
var Methods = []string{"magnitude", "wanda", "sparsegpt", "sparsegpt-mask", "sparsegpt-prior"}

// ErrMethod reports an unknown method name.
var ErrMethod = errors.New("calib: unknown method")

// ErrCalib reports calibration text or options that cannot be used.
var ErrCalib = errors.New("calib: bad calibration")

// Options are the calibration settings (spec §3.4 defaults).
type Options struct {
	Calib   string // calibration text file (blank-line separated paragraphs)
	Samples int    // number of windows (128)
	SeqLen  int    // tokens per window (256)
	Seed    uint64 // window sampling seed (0)
	Pattern mask.Pattern
	// Batch is the number of windows per forward call (8).
	Batch int
	// SparseGPT's block size and dampening (128, 0.01).
	SparseGPT mask.SparseGPTOptions
	// Log receives one progress line per step (nil: silent).
	Log io.Writer
}

func (o Options) withDefaults() Options {
	if o.Samples == 0 {
		o.Samples = 128
	}
	if o.SeqLen == 0 {
		o.SeqLen = 256
	}
	if o.Pattern == (mask.Pattern{}) {
		o.Pattern = mask.Pattern24
	}
	if o.Batch == 0 {
		o.Batch = 8
	}
	if o.SparseGPT.BlockSize == 0 {
		o.SparseGPT.BlockSize = mask.DefaultSparseGPTOptions.BlockSize
	}
	if o.SparseGPT.PercDamp == 0 {
		o.SparseGPT.PercDamp = mask.DefaultSparseGPTOptions.PercDamp
	}
	return o
}

func (o Options) logf(f string, args ...any) {
	if o.Log != nil {
		fmt.Fprintf(o.Log, f+"\n", args...)
	}
}

// needsData reports whether a method uses calibration activations.
func needsData(method string) (bool, error) {
	switch method {
	case "magnitude":
		return false, nil
	case "wanda", "sparsegpt", "sparsegpt-mask", "sparsegpt-prior":
		return true, nil
	}
	return false, fmt.Errorf("%w %q (want one of %s)", ErrMethod, method, strings.Join(Methods, ", "))
}

// Windows draws n windows of seqLen tokens from stream, each starting at a
// position uniform in [0, len(stream) − seqLen − 1], from a PCG generator
// seeded with (seed, 0). The result is [n*seqLen].
func Windows(stream []int32, n, seqLen int, seed uint64) ([]int32, error) {
	if n <= 0 || seqLen <= 0 {
		return nil, fmt.Errorf("%w: %d samples of %d tokens", ErrCalib, n, seqLen)
	}
	if len(stream) < seqLen+1 {
		return nil, fmt.Errorf("%w: %d tokens of calibration text, need more than the sequence length %d", ErrCalib, len(stream), seqLen)
	}
	rng := rand.New(rand.NewPCG(seed, 0))
	out := make([]int32, 0, n*seqLen)
	for range n {
		i := rng.IntN(len(stream) - seqLen)
		out = append(out, stream[i:i+seqLen]...)
	}
	return out, nil
}

// Sample reads opts.Calib and returns the calibration windows
// [Samples*SeqLen].
func Sample(tok *tokenizer.Tokenizer, opts Options) ([]int32, error) {
	opts = opts.withDefaults()
	if opts.Calib == "" {
		return nil, fmt.Errorf("%w: no calibration file", ErrCalib)
	}
	b, err := os.ReadFile(opts.Calib)
	if err != nil {
		return nil, fmt.Errorf("calib: %w", err)
	}
	stream := model.TokenizeParagraphs(tok, string(b))
	w, err := Windows(stream, opts.Samples, opts.SeqLen, opts.Seed)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", opts.Calib, err)
	}
	return w, nil
}

// Prune chooses masks for every linear of m.Linears() with method
// (magnitude, wanda, sparsegpt, sparsegpt-mask, sparsegpt-prior) and returns
// them with, for "sparsegpt", the OBS-updated weights (nil map otherwise).
// "sparsegpt-mask" is the same run's masks with the original weights.
// "sparsegpt-prior" is MaskLLM's Megatron prior (spec §1.4, §3.3 end): every
// block calibrated on the DENSE model's activations (not sequential), groups
// chosen by w²/U_jj² on the original weights without OBS updates.
//
// m is left pruned: every linear carries its mask, and for "sparsegpt" its W
// is replaced by (a new slice holding) the updated weights; the original
// slices are never written. tok is needed for the data methods.
func Prune(ctx context.Context, m *model.Model, tok *tokenizer.Tokenizer, method string, opts Options) (map[string]*mask.Mask, map[string][]float32, error) {
	opts = opts.withDefaults()
	data, err := needsData(method)
	if err != nil {
		return nil, nil, err
	}
	if !data {
		return pruneMagnitude(ctx, m, opts)
	}
	if tok == nil {
		return nil, nil, fmt.Errorf("%w: method %s needs a tokenizer", ErrCalib, method)
	}
	tokens, err := Sample(tok, opts)
	if err != nil {
		return nil, nil, err
	}
	opts.logf("%s: calibration %d × %d tokens from %s", method, opts.Samples, opts.SeqLen, opts.Calib)
	return PruneTokens(ctx, m, tokens, method, opts)
}

// PruneTokens is Prune on calibration windows already tokenized: tokens holds
// opts.Samples windows of opts.SeqLen ids ([Samples*SeqLen]); opts.Calib is
// not read. Magnitude ignores tokens.
func PruneTokens(ctx context.Context, m *model.Model, tokens []int32, method string, opts Options) (map[string]*mask.Mask, map[string][]float32, error) {
	opts = opts.withDefaults()
	data, err := needsData(method)
	if err != nil {
		return nil, nil, err
	}
	if !data {
		return pruneMagnitude(ctx, m, opts)
	}
	if opts.Samples <= 0 || opts.SeqLen <= 0 || opts.Batch <= 0 || len(tokens) != opts.Samples*opts.SeqLen {
		return nil, nil, fmt.Errorf("%w: %d tokens for %d windows of %d (batch %d)", ErrCalib, len(tokens), opts.Samples, opts.SeqLen, opts.Batch)
	}
	start := time.Now()
	for i, t := range tokens {
		if t < 0 || int(t) >= m.Config.Vocab {
			return nil, nil, fmt.Errorf("%w: token %d at %d outside the model's vocabulary of %d", ErrCalib, t, i, m.Config.Vocab)
		}
	}
	lins := m.Linears()
	masks := make(map[string]*mask.Mask, len(lins))
	var weights map[string][]float32
	if method == "sparsegpt" {
		weights = make(map[string][]float32)
	}
	orig := make(map[*model.Linear][]float32)
	x := m.EmbedTokens(tokens)
	d := m.Config.Dim
	tmp := make([]float32, opts.Batch*opts.SeqLen*d)
	for li := range m.Layers {
		L := &m.Layers[li]
		lt := time.Now()
		// 1. statistics from the still-dense block i.
		stats := newLayerStats(L, method)
		for b0 := 0; b0 < opts.Samples; b0 += opts.Batch {
			if err := ctx.Err(); err != nil {
				return nil, nil, err
			}
			nb := min(opts.Batch, opts.Samples-b0)
			rows := nb * opts.SeqLen
			xb := tmp[:rows*d]
			copy(xb, x[b0*opts.SeqLen*d:(b0*opts.SeqLen+rows)*d])
			m.LayerForward(li, xb, nb, opts.SeqLen, stats.hook(nb))
			if stats.err != nil {
				return nil, nil, stats.err
			}
		}
		// 2. prune the seven linears.
		for _, l := range []*model.Linear{L.Q, L.K, L.V, L.O, L.Gate, L.Up, L.Down} {
			if err := ctx.Err(); err != nil {
				return nil, nil, err
			}
			var mk *mask.Mask
			var upd []float32
			var err error
			switch method {
			case "wanda":
				mk, err = mask.Wanda(l.W, l.Out, l.In, stats.norms(l).Float32(), opts.Pattern)
			case "sparsegpt-prior":
				o := opts.SparseGPT
				o.NoUpdate = true
				mk, _, err = mask.SparseGPT(l.W, l.Out, l.In, stats.hessian(l).H, opts.Pattern, o)
			default:
				mk, upd, err = mask.SparseGPT(l.W, l.Out, l.In, stats.hessian(l).H, opts.Pattern, opts.SparseGPT)
			}
			if err != nil {
				return nil, nil, fmt.Errorf("calib: layer %d %s: %w", li, l.Name, err)
			}
			masks[l.Name] = mk
			if method == "sparsegpt-prior" {
				continue // installed at the end: every block is calibrated on the dense model
			}
			if err := l.SetMask(mk); err != nil {
				return nil, nil, err
			}
			if upd != nil {
				if method == "sparsegpt-mask" {
					orig[l] = l.W // restored at the end
				}
				l.W = upd // later blocks see the updated weights
				if weights != nil {
					weights[l.Name] = upd
				}
			}
		}
		// 3. outputs of the pruned block feed block i+1.
		for b0 := 0; b0 < opts.Samples; b0 += opts.Batch {
			if err := ctx.Err(); err != nil {
				return nil, nil, err
			}
			nb := min(opts.Batch, opts.Samples-b0)
			m.LayerForward(li, x[b0*opts.SeqLen*d:(b0+nb)*opts.SeqLen*d], nb, opts.SeqLen, nil)
		}
		opts.logf("%s: block %d/%d pruned in %.1fs", method, li+1, len(m.Layers), time.Since(lt).Seconds())
	}
	if method == "sparsegpt-prior" {
		if err := m.ApplyMasks(masks); err != nil {
			return nil, nil, err
		}
	}
	if method == "sparsegpt-mask" {
		for l, w := range orig {
			l.W = w
		}
	}
	opts.logf("%s: %d linears pruned %s in %.1fs", method, len(masks), opts.Pattern, time.Since(start).Seconds())
	return masks, weights, nil
}

// layerStats accumulates the per-input statistics of one block.
type layerStats struct {
	L      *model.Layer
	method string
	hess   map[*model.Linear]*mask.Hessian
	nrm    map[*model.Linear]*mask.ColumnNorms
	gram   []float32
	err    error
}

func newLayerStats(L *model.Layer, method string) *layerStats {
	return &layerStats{L: L, method: method, hess: map[*model.Linear]*mask.Hessian{}, nrm: map[*model.Linear]*mask.ColumnNorms{}}
}

// owner maps a linear to the one whose input it shares (k, v → q; up → gate).
func (s *layerStats) owner(l *model.Linear) *model.Linear {
	switch l {
	case s.L.K, s.L.V:
		return s.L.Q
	case s.L.Up:
		return s.L.Gate
	}
	return l
}

func (s *layerStats) hook(seqs int) func(l *model.Linear, in []float32, rows int) {
	return func(l *model.Linear, in []float32, rows int) {
		if s.err != nil || s.owner(l) != l {
			return
		}
		x := in[:rows*l.In]
		switch s.method {
		case "wanda":
			c := s.nrm[l]
			if c == nil {
				c = mask.NewColumnNorms(l.In)
				s.nrm[l] = c
			}
			s.err = c.Add(x, rows, seqs)
		default:
			h := s.hess[l]
			if h == nil {
				h = mask.NewHessian(l.In)
				s.hess[l] = h
			}
			n := l.In * l.In
			if cap(s.gram) < n {
				s.gram = make([]float32, n)
			}
			g := s.gram[:n]
			// Σ_tokens x xᵀ in float32 (as the reference), accumulated in float64.
			kernel.MatMulTN(g, x, x, l.In, l.In, rows, false)
			s.err = h.AddGram(g, seqs)
		}
		if s.err != nil {
			s.err = fmt.Errorf("calib: %s: %w", l.Name, s.err)
		}
	}
}

func (s *layerStats) hessian(l *model.Linear) *mask.Hessian { return s.hess[s.owner(l)] }
func (s *layerStats) norms(l *model.Linear) *mask.ColumnNorms {
	return s.nrm[s.owner(l)]
}

// pruneMagnitude installs magnitude masks on every linear of m.
func pruneMagnitude(ctx context.Context, m *model.Model, opts Options) (map[string]*mask.Mask, map[string][]float32, error) {
	lins := m.Linears()
	masks := make(map[string]*mask.Mask, len(lins))
	for i, l := range lins {
		if err := ctx.Err(); err != nil {
			return nil, nil, err
		}
		mk, err := mask.Magnitude(l.W, l.Out, l.In, opts.Pattern)
		if err != nil {
			return nil, nil, fmt.Errorf("calib: %s: %w", l.Name, err)
		}
		if err := l.SetMask(mk); err != nil {
			return nil, nil, err
		}
		masks[l.Name] = mk
		opts.logf("magnitude: %d/%d %s", i+1, len(lins), l.Name)
	}
	return masks, nil, nil
}
