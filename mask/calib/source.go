package calib

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/sparsify/sparsify/mask"
	"github.com/sparsify/sparsify/model"
	"github.com/sparsify/sparsify/pack"
)

// maskSource serves the masks of one Prune run by tensor name.
type maskSource struct {
	method  string
	opts    Options
	masks   map[string]*mask.Mask
	weights map[string][]float32
}

var _ pack.MaskSource = (*maskSource)(nil)

// NewMaskSource loads the model at modelPath (model.Load), runs Prune once
// with method and opts, and returns a pack.MaskSource that hands the chosen
// masks (and, for "sparsegpt", the updated weights) to the converter by
// tensor name. For "magnitude" nothing is loaded: masks are computed from the
// weights the converter passes. The source is safe for concurrent use.
func NewMaskSource(ctx context.Context, modelPath string, method string, opts Options) (pack.MaskSource, error) {
	opts = opts.withDefaults()
	data, err := needsData(method)
	if err != nil {
		return nil, err
	}
	s := &maskSource{method: method, opts: opts}
	if !data {
		return s, nil
	}
	m, tok, err := model.Load(modelPath)
	if err != nil {
		return nil, fmt.Errorf("calib: %w", err)
	}
	s.masks, s.weights, err = Prune(ctx, m, tok, method, opts)
	if err != nil {
		return nil, err
	}
	return s, nil
}

func (s *maskSource) Name() string { return s.method }

// Settings describes the method for the checkpoint's metadata;
// "weights_updated" says whether the weights differ from the input.
func (s *maskSource) Settings() map[string]any {
	st := map[string]any{
		"method":          s.method,
		"pattern":         s.opts.Pattern.String(),
		"weights_updated": s.method == "sparsegpt",
	}
	if s.method != "magnitude" {
		st["calib"] = s.opts.Calib
		st["calib_samples"] = s.opts.Samples
		st["seq_len"] = s.opts.SeqLen
		st["seed"] = s.opts.Seed
	}
	if strings.HasPrefix(s.method, "sparsegpt") {
		st["block_size"] = s.opts.SparseGPT.BlockSize
		st["percdamp"] = s.opts.SparseGPT.PercDamp
	}
	return st
}

// Mask returns the mask chosen for name; for "sparsegpt" also a copy of its
// updated weights. It fails for a tensor the model has no linear for, a
// shape or pattern other than the run's.
func (s *maskSource) Mask(ctx context.Context, name string, w []float32, rows, cols int, p mask.Pattern) (*mask.Mask, []float32, error) {
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	if p != s.opts.Pattern {
		return nil, nil, fmt.Errorf("calib: %s: pattern %s requested, masks were chosen for %s", name, p, s.opts.Pattern)
	}
	if s.method == "magnitude" {
		mk, err := mask.Magnitude(w, rows, cols, p)
		if err != nil {
			return nil, nil, fmt.Errorf("calib: %s: %w", name, err)
		}
		return mk, nil, nil
	}
	mk, ok := s.masks[name]
	if !ok {
		return nil, nil, fmt.Errorf("calib: %s: no %s mask for this tensor (the model's linears are %v…)", name, s.method, firstNames(s.masks, 3))
	}
	if mk.Rows != rows || mk.Cols != cols || len(w) != rows*cols {
		return nil, nil, fmt.Errorf("calib: %s: weight is %dx%d (%d values), mask is %dx%d", name, rows, cols, len(w), mk.Rows, mk.Cols)
	}
	out := &mask.Mask{Rows: mk.Rows, Cols: mk.Cols, Keep: slices.Clone(mk.Keep)}
	if upd := s.weights[name]; upd != nil {
		return out, slices.Clone(upd), nil
	}
	return out, nil, nil
}

func firstNames(m map[string]*mask.Mask, n int) []string {
	k := slices.Sorted(maps.Keys(m))
	return k[:min(n, len(k))]
}
