package model

import (
	"context"
	"testing"

	"github.com/sparsify/sparsify/internal/testutil"
)

// BenchmarkForwardStories measures eval throughput (tokens/s) of stories260K
// on 8 sequences of 256 tokens, the perplexity protocol's shape:
//
//	GOEXPERIMENT=simd go test ./model -run '^$' -bench ForwardStories -benchtime 5x
func BenchmarkForwardStories(b *testing.B) {
	m, _, err := Load(testutil.SharedData(b, "stories260K.gguf"))
	if err != nil {
		b.Fatal(err)
	}
	B, T := 8, 256
	toks := make([]int32, B*T)
	for i := range toks {
		toks[i] = int32(i*7919) % int32(m.Config.Vocab)
	}
	logits := make([]float32, B*T*m.Config.Vocab)
	b.ResetTimer()
	for b.Loop() {
		if err := m.Forward(context.Background(), toks, B, T, logits); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*B*T)/b.Elapsed().Seconds(), "tokens/s")
}
