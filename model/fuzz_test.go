package model

import (
	"context"
	"encoding/binary"
	"math"
	"os"
	"testing"

	"github.com/sparsify/sparsify/internal/testutil"
)

// FuzzParseLlama2C feeds arbitrary bytes as a llama2.c checkpoint: bad input
// is an error (never a panic or a huge allocation), and a model that parses
// runs a forward pass.
func FuzzParseLlama2C(f *testing.F) {
	if p := testutil.SharedDataDir(); p != "" {
		if b, err := os.ReadFile(p + "/stories260K.bin"); err == nil {
			f.Add(b)
		}
	}
	// a tiny valid model: dim 4, hidden 4, 1 layer, 2 heads, 1 kv head, vocab 3, seq 2
	h := []int32{4, 4, 1, 2, 1, 3, 2}
	var b []byte
	for _, v := range h {
		b = binary.LittleEndian.AppendUint32(b, uint32(v))
	}
	n := 3*4 + 4 + 16 + 2*8 + 16 + 4 + 3*16 + 4 + 2*1
	for i := 0; i < n; i++ {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(float32(i%7)/7))
	}
	f.Add(b)
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) >= 28 {
			// keep the fuzzer away from huge but valid models
			for i := 0; i < 7; i++ {
				if v := int32(binary.LittleEndian.Uint32(data[4*i:])); v > 4096 || v < -4096 {
					return
				}
			}
		}
		m, err := ParseLlama2C("fuzz", data)
		if err != nil {
			return
		}
		if m.Config.Dim*m.Config.Vocab > 1<<20 {
			return
		}
		toks := []int32{0, int32(m.Config.Vocab - 1)}
		logits := make([]float32, 2*m.Config.Vocab)
		if err := m.Forward(context.Background(), toks, 1, 2, logits); err != nil {
			t.Fatal(err)
		}
	})
}
