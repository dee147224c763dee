package mask

import (
	"fmt"
)

// WriteFile saves masks (keyed by the weight's tensor name, e.g.
// "model.layers.0.mlp.up_proj.weight" or "blk.0.ffn_up.weight") as a
// safetensors file of U8 [rows, cols] tensors, 1 = kept. Atomic.
// PLACEHOLDER (being built).
func WriteFile(path string, masks map[string]*Mask, metadata map[string]string) error {
	return fmt.Errorf("mask: WriteFile not yet available")
}

// ReadFile loads a mask file written by WriteFile (U8 or BOOL tensors).
// PLACEHOLDER (being built).
func ReadFile(path string) (map[string]*Mask, map[string]string, error) {
	return nil, nil, fmt.Errorf("mask: ReadFile not yet available")
}
