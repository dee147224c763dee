package format

import (
	"fmt"
	"strings"
)

// DType is a tensor element type: the safetensors dtypes and GGML's block
// quantized types share one enumeration so that one Source abstraction can carry
// both formats.
type DType uint8

const (
	Invalid DType = iota
	F64
	F32
	F16
	BF16
	I64
	I32
	I16
	I8
	U64
	U32
	U16
	U8
	Bool
	F8E4M3
	F8E5M2
	// GGML block types (GGUF). Block sizes follow llama.cpp's ggml-common.h.
	Q4_0
	Q4_1
	Q5_0
	Q5_1
	Q8_0
	Q8_1
	Q2_K
	Q3_K
	Q4_K
	Q5_K
	Q6_K
	Q8_K
	numDTypes
)

// Trait is the storage geometry of a DType: BlockSize elements take TypeSize bytes.
type Trait struct {
	Name      string // safetensors spelling for plain types, ggml spelling for blocks
	BlockSize int64
	TypeSize  int64
	Float     bool // convertible to float32
	Quantized bool
}

var traits = [numDTypes]Trait{
	F64:    {"F64", 1, 8, true, false},
	F32:    {"F32", 1, 4, true, false},
	F16:    {"F16", 1, 2, true, false},
	BF16:   {"BF16", 1, 2, true, false},
	I64:    {"I64", 1, 8, true, false},
	I32:    {"I32", 1, 4, true, false},
	I16:    {"I16", 1, 2, true, false},
	I8:     {"I8", 1, 1, true, false},
	U64:    {"U64", 1, 8, true, false},
	U32:    {"U32", 1, 4, true, false},
	U16:    {"U16", 1, 2, true, false},
	U8:     {"U8", 1, 1, true, false},
	Bool:   {"BOOL", 1, 1, true, false},
	F8E4M3: {"F8_E4M3", 1, 1, true, false},
	F8E5M2: {"F8_E5M2", 1, 1, true, false},
	Q4_0:   {"Q4_0", 32, 18, true, true},
	Q4_1:   {"Q4_1", 32, 20, true, true},
	Q5_0:   {"Q5_0", 32, 22, true, true},
	Q5_1:   {"Q5_1", 32, 24, true, true},
	Q8_0:   {"Q8_0", 32, 34, true, true},
	Q8_1:   {"Q8_1", 32, 36, true, true},
	Q2_K:   {"Q2_K", 256, 84, true, true},
	Q3_K:   {"Q3_K", 256, 110, true, true},
	Q4_K:   {"Q4_K", 256, 144, true, true},
	Q5_K:   {"Q5_K", 256, 176, true, true},
	Q6_K:   {"Q6_K", 256, 210, true, true},
	Q8_K:   {"Q8_K", 256, 292, true, true},
}

// Trait returns the storage geometry; ok is false for Invalid or unknown values.
func (d DType) Trait() (Trait, bool) {
	if d == Invalid || d >= numDTypes {
		return Trait{}, false
	}
	return traits[d], true
}

func (d DType) String() string {
	if t, ok := d.Trait(); ok {
		return t.Name
	}
	return fmt.Sprintf("DType(%d)", uint8(d))
}

// ParseDType parses a safetensors or ggml dtype name (case-insensitive).
func ParseDType(s string) (DType, error) {
	for d := F64; d < numDTypes; d++ {
		if strings.EqualFold(traits[d].Name, s) {
			return d, nil
		}
	}
	return Invalid, fmt.Errorf("%w: dtype %q", ErrUnsupported, s)
}

// ByteSize is the number of bytes n elements take, or an error when n does not
// fill whole blocks or the size overflows int64.
func (d DType) ByteSize(n int64) (int64, error) {
	t, ok := d.Trait()
	if !ok {
		return 0, fmt.Errorf("%w: %v", ErrUnsupported, d)
	}
	if n < 0 || n%t.BlockSize != 0 {
		return 0, fmt.Errorf("%w: %d elements of %v (block size %d)", ErrFormat, n, d, t.BlockSize)
	}
	blocks := n / t.BlockSize
	if blocks > (1<<62)/t.TypeSize {
		return 0, fmt.Errorf("%w: %d elements of %v overflow", ErrFormat, n, d)
	}
	return blocks * t.TypeSize, nil
}

// CheckedElements multiplies a shape, refusing negative dimensions and
// products that overflow int64.
func CheckedElements(shape []int64) (int64, error) {
	n := int64(1)
	for _, d := range shape {
		if d < 0 {
			return 0, fmt.Errorf("%w: negative dimension %d in shape %v", ErrFormat, d, shape)
		}
		if d != 0 && n > (1<<62)/d {
			return 0, fmt.Errorf("%w: shape %v overflows int64", ErrFormat, shape)
		}
		n *= d
	}
	return n, nil
}
