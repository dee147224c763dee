package safetensors

import (
	"slices"
	"strings"

	"github.com/sparsify/sparsify/format"
)

// crateRank is the position of each dtype in the reference Rust crate's
// Dtype enum (BOOL < F4 < F6_E2M3 < F6_E3M2 < U8 < I8 < F8_E5M2 < F8_E4M3 <
// F8_E8M0 < F8_E4M3FNUZ < F8_E5M2FNUZ < I16 < U16 < F16 < BF16 < I32 < U32 <
// F32 < C64 < F64 < I64 < U64); dtypes it lacks rank 0.
var crateRank = map[format.DType]int{
	format.Bool: 0, format.U8: 4, format.I8: 5, format.F8E5M2: 6, format.F8E4M3: 7,
	format.I16: 11, format.U16: 12, format.F16: 13, format.BF16: 14, format.I32: 15,
	format.U32: 16, format.F32: 17, format.F64: 19, format.I64: 20, format.U64: 21,
}

// SortCanonical sorts tensors into the data order that
// safetensors.torch.save_file (the Rust crate) produces: by dtype, descending
// in the crate's enum order (I64 and other 8-byte types first, U8 and BOOL
// last), then by name. Writing in this order makes a file byte-identical to
// the Python writer's (given the same metadata). The sort is stable.
func SortCanonical(ts []format.Tensor) {
	slices.SortStableFunc(ts, func(a, b format.Tensor) int {
		if ra, rb := crateRank[a.DType], crateRank[b.DType]; ra != rb {
			return rb - ra
		}
		return strings.Compare(a.Name, b.Name)
	})
}
