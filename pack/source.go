package pack

import (
	"context"

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
