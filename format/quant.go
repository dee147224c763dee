package format

import "fmt"

// Dequantize expands GGML blocks of type dt from raw into dst (len(dst) elements,
// a multiple of the block size), exactly as llama.cpp's dequantize_row_* do.
// PLACEHOLDER (being built).
func Dequantize(dt DType, raw []byte, dst []float32) error {
	return fmt.Errorf("%w: dequantizing %v", ErrUnsupported, dt)
}
