package format

import "fmt"

// ToFloat32 decodes n = len(dst) elements of dtype dt from raw (little-endian
// stored bytes) into dst. Quantized GGML types are dequantized with Dequantize.
// PLACEHOLDER (being built): only F32 so far.
func ToFloat32(dt DType, raw []byte, dst []float32) error {
	return fmt.Errorf("%w: decoding %v", ErrUnsupported, dt)
}

// FromFloat32 encodes src as dtype dt into dst (len(dst) = dt.ByteSize(len(src))),
// rounding to nearest even for narrower float types.
// PLACEHOLDER (being built).
func FromFloat32(dt DType, src []float32, dst []byte) error {
	return fmt.Errorf("%w: encoding %v", ErrUnsupported, dt)
}
