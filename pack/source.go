package pack

import (
	"context"
	"fmt"

	"github.com/sparsify/sparsify/mask"
)

// MaskSource chooses the mask of one target weight during a conversion.
// w is the weight as float32 [rows, cols]; it returns the mask and, for methods
// that update weights (SparseGPT), the new weights (nil when unchanged).
// Implementations are safe for concurrent use.
type MaskSource interface {
	Name() string
	Settings() map[string]any
	Mask(ctx context.Context, name string, w []float32, rows, cols int, p mask.Pattern) (*mask.Mask, []float32, error)
}

// Magnitude is the MaskSource that keeps the p.N largest |w| of every group.
func Magnitude() MaskSource { return magnitudeSource{} }

type magnitudeSource struct{}

func (magnitudeSource) Name() string             { return "magnitude" }
func (magnitudeSource) Settings() map[string]any { return nil }
func (magnitudeSource) Mask(_ context.Context, _ string, w []float32, rows, cols int, p mask.Pattern) (*mask.Mask, []float32, error) {
	m, err := mask.Magnitude(w, rows, cols, p)
	return m, nil, err
}

// MaskFile is the MaskSource that applies masks saved by mask.WriteFile
// (--mask FILE, --save-mask). Masks are looked up by the weight's name, then
// by its Hugging Face/GGUF counterpart. Rows are in the order of the
// checkpoint the masks were made from: for q/k weights, whose rows llama.cpp
// permutes, apply a mask file to a checkpoint of the same format it was saved
// from (every other weight's rows are the same in both formats).
func MaskFile(path string) (MaskSource, error) {
	ms, meta, err := mask.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return &fileSource{path: path, masks: ms, meta: meta}, nil
}

type fileSource struct {
	path  string
	masks map[string]*mask.Mask
	meta  map[string]string
}

func (s *fileSource) Name() string { return "mask-file" }
func (s *fileSource) Settings() map[string]any {
	st := map[string]any{"file": s.path}
	for k, v := range s.meta {
		if k != "format" {
			st[k] = v
		}
	}
	return st
}

func (s *fileSource) Mask(_ context.Context, name string, w []float32, rows, cols int, p mask.Pattern) (*mask.Mask, []float32, error) {
	var m *mask.Mask
	for _, n := range names(name) {
		if m = s.masks[n]; m != nil {
			break
		}
	}
	if m == nil {
		return nil, nil, fmt.Errorf("mask file %s has no mask for %q", s.path, name)
	}
	if m.Rows != rows || m.Cols != cols {
		return nil, nil, fmt.Errorf("mask file %s: mask for %q is [%d, %d], weight is [%d, %d]", s.path, name, m.Rows, m.Cols, rows, cols)
	}
	if err := m.Check(p); err != nil {
		return nil, nil, fmt.Errorf("mask file %s: %q: %w", s.path, name, err)
	}
	return m, nil, nil
}
