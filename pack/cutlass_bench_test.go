package pack

import (
	"math/rand/v2"
	"testing"

	"github.com/sparsify/sparsify/format"
	"github.com/sparsify/sparsify/mask"
)

// BenchmarkPackCutlass measures packing throughput in bytes of dense input per
// second (b.SetBytes). Reproduce: go test -run XXX -bench PackCutlass -benchtime 20x ./pack
// (scripts/bench-pack.sh compares it with cp of the same number of bytes).
func BenchmarkPackCutlass(b *testing.B) {
	for _, c := range []struct {
		name       string
		dt         format.DType
		rows, cols int
	}{
		{"BF16_4096x4096", format.BF16, 4096, 4096},
		{"F16_11008x4096", format.F16, 11008, 4096},
		{"I8_4096x4096", format.I8, 4096, 4096},
		{"F32_4096x4096", format.F32, 4096, 4096},
	} {
		b.Run(c.name, func(b *testing.B) {
			p := mask.Pattern24
			if c.dt == format.F32 {
				p = mask.Pattern{N: 1, M: 2}
			}
			dense, _ := randMasked(rand.New(rand.NewPCG(7, 8)), c.dt, c.rows, c.cols, p)
			info, _ := CutlassLayoutOf(c.dt, c.rows, c.cols)
			values, meta := make([]byte, info.ValuesSize), make([]byte, info.MetaSize)
			b.SetBytes(int64(len(dense)))
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if err := PackCutlassInto(c.dt, c.rows, c.cols, dense, values, meta); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkUnpackCutlass(b *testing.B) {
	dense, _ := randMasked(rand.New(rand.NewPCG(7, 8)), format.BF16, 4096, 4096, mask.Pattern24)
	values, meta, _ := PackCutlass(format.BF16, 4096, 4096, dense)
	out := make([]byte, len(dense))
	b.SetBytes(int64(len(dense)))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := UnpackCutlassInto(format.BF16, 4096, 4096, values, meta, out); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkPackBitmask(b *testing.B) {
	dense, _ := randMasked(rand.New(rand.NewPCG(7, 8)), format.BF16, 4096, 4096, mask.Pattern24)
	b.SetBytes(int64(len(dense)))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, _, err := PackBitmask(format.BF16, 4096, 4096, dense); err != nil {
			b.Fatal(err)
		}
	}
}
