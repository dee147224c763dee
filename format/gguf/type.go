package gguf

import (
	"fmt"

	"github.com/sparsify/sparsify/format"
)

// GGMLType is a tensor type as numbered by ggml's enum ggml_type.
type GGMLType uint32

// The ggml tensor types. Only those with a format.DType are readable; the
// others are named so that errors can say what a file holds.
const (
	GGMLF32     GGMLType = 0
	GGMLF16     GGMLType = 1
	GGMLQ4_0    GGMLType = 2
	GGMLQ4_1    GGMLType = 3
	GGMLQ5_0    GGMLType = 6
	GGMLQ5_1    GGMLType = 7
	GGMLQ8_0    GGMLType = 8
	GGMLQ8_1    GGMLType = 9
	GGMLQ2_K    GGMLType = 10
	GGMLQ3_K    GGMLType = 11
	GGMLQ4_K    GGMLType = 12
	GGMLQ5_K    GGMLType = 13
	GGMLQ6_K    GGMLType = 14
	GGMLQ8_K    GGMLType = 15
	GGMLI8      GGMLType = 24
	GGMLI16     GGMLType = 25
	GGMLI32     GGMLType = 26
	GGMLI64     GGMLType = 27
	GGMLF64     GGMLType = 28
	GGMLBF16    GGMLType = 30
	numGGMLType GGMLType = 43
)

var ggmlNames = [numGGMLType]string{
	0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 4: "Q4_2", 5: "Q4_3", 6: "Q5_0", 7: "Q5_1",
	8: "Q8_0", 9: "Q8_1", 10: "Q2_K", 11: "Q3_K", 12: "Q4_K", 13: "Q5_K", 14: "Q6_K",
	15: "Q8_K", 16: "IQ2_XXS", 17: "IQ2_XS", 18: "IQ3_XXS", 19: "IQ1_S", 20: "IQ4_NL",
	21: "IQ3_S", 22: "IQ2_S", 23: "IQ4_XS", 24: "I8", 25: "I16", 26: "I32", 27: "I64",
	28: "F64", 29: "IQ1_M", 30: "BF16", 31: "Q4_0_4_4", 32: "Q4_0_4_8", 33: "Q4_0_8_8",
	34: "TQ1_0", 35: "TQ2_0", 36: "IQ4_NL_4_4", 37: "IQ4_NL_4_8", 38: "IQ4_NL_8_8",
	39: "MXFP4", 40: "NVFP4", 41: "Q1_0", 42: "Q2_0",
}

var ggmlToDType = map[GGMLType]format.DType{
	GGMLF32: format.F32, GGMLF16: format.F16, GGMLBF16: format.BF16, GGMLF64: format.F64,
	GGMLI8: format.I8, GGMLI16: format.I16, GGMLI32: format.I32, GGMLI64: format.I64,
	GGMLQ4_0: format.Q4_0, GGMLQ4_1: format.Q4_1, GGMLQ5_0: format.Q5_0, GGMLQ5_1: format.Q5_1,
	GGMLQ8_0: format.Q8_0, GGMLQ8_1: format.Q8_1, GGMLQ2_K: format.Q2_K, GGMLQ3_K: format.Q3_K,
	GGMLQ4_K: format.Q4_K, GGMLQ5_K: format.Q5_K, GGMLQ6_K: format.Q6_K, GGMLQ8_K: format.Q8_K,
}

func (t GGMLType) String() string {
	if t < numGGMLType && ggmlNames[t] != "" {
		return ggmlNames[t]
	}
	return fmt.Sprintf("GGMLType(%d)", uint32(t))
}

// DType maps a ggml type to the shared dtype; ok is false for ggml types this
// package cannot read (the IQ and ternary families, removed types, unknown numbers).
func (t GGMLType) DType() (format.DType, bool) {
	d, ok := ggmlToDType[t]
	return d, ok
}

// TypeOf maps a dtype to its ggml type; ok is false for dtypes GGUF cannot
// store (unsigned integers, BOOL, FP8).
func TypeOf(d format.DType) (GGMLType, bool) {
	for g, dd := range ggmlToDType {
		if dd == d {
			return g, true
		}
	}
	return 0, false
}
