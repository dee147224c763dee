package pack_test

import (
	"encoding/binary"
	"fmt"

	"github.com/sparsify/sparsify/format"
	"github.com/sparsify/sparsify/pack"
)

// PyTorch's docstring golden: every row [0, 0, 1, 1, ...] (F16) packs to
// values all 1.0 and metadata all -4370 (0xEEEE).
func ExamplePackCutlass() {
	const rows, cols = 32, 64
	dense := make([]byte, rows*cols*2)
	for i := 0; i < rows*cols; i++ {
		if i%4 >= 2 {
			binary.LittleEndian.PutUint16(dense[2*i:], 0x3C00) // 1.0
		}
	}
	values, meta, err := pack.PackCutlass(format.F16, rows, cols, dense)
	if err != nil {
		panic(err)
	}
	info, _ := pack.CutlassLayoutOf(format.F16, rows, cols)
	fmt.Println("values", info.ValuesShape, "meta", info.MetaDType, info.MetaShape)
	fmt.Printf("first value %#04x, first meta word %d\n", binary.LittleEndian.Uint16(values), int16(binary.LittleEndian.Uint16(meta)))
	back, _ := pack.UnpackCutlass(format.F16, rows, cols, values, meta)
	fmt.Println("round trip exact:", string(back) == string(dense))
	// Output:
	// values [32 32] meta I16 [32 4]
	// first value 0x3c00, first meta word -4370
	// round trip exact: true
}
