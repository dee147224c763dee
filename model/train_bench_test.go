package model

import (
	"context"
	"math/rand/v2"
	"os"
	"testing"

	"github.com/sparsify/sparsify/internal/testutil"
)

// BenchmarkTrainStep measures one MaskLLM-style training step: forward and
// backward of 16 sequences of 256 tokens with dL/dSoft for every linear layer
// (soft masks installed, weights frozen), as scripts/bench-train.sh runs it:
//
//	GOEXPERIMENT=simd go test ./model -run '^$' -bench 'TrainStep' -benchtime 3x
//
// The synthetic ~100M-parameter model runs only when SPARSIFY_BENCH_100M=1
// (it needs ~4 GB and minutes per step on 2 cores).
func BenchmarkTrainStep(b *testing.B) {
	const B, T = 16, 256
	b.Run("stories260K", func(b *testing.B) {
		m, _, err := LoadGGUF(testutil.SharedData(b, "stories260K.gguf"))
		if err != nil {
			b.Fatal(err)
		}
		benchTrainStep(b, m, B, T, GradOptions{MaskGrads: true})
	})
	b.Run("demo-weights", func(b *testing.B) {
		// the shape of testdata/demo/kjv-tiny.gguf, training every weight
		c := Config{Dim: 96, Hidden: 256, Layers: 4, Heads: 6, KVHeads: 2, Vocab: 512, MaxSeq: 256,
			NormEps: 1e-5, RopeTheta: 10000, RopeInterleaved: true, Tied: true}
		benchTrainStep(b, gradTestModel(c, 1), B, T, GradOptions{WeightGrads: true})
	})
	b.Run("synthetic100M", func(b *testing.B) {
		if os.Getenv("SPARSIFY_BENCH_100M") != "1" {
			b.Skip("set SPARSIFY_BENCH_100M=1")
		}
		c := Config{Dim: 768, Hidden: 2048, Layers: 12, Heads: 12, KVHeads: 4, Vocab: 32000, MaxSeq: 256,
			NormEps: 1e-5, RopeTheta: 10000, RopeInterleaved: true, Tied: true}
		m := gradTestModel(c, 1)
		benchTrainStep(b, m, B, T, GradOptions{MaskGrads: true, Recompute: os.Getenv("SPARSIFY_BENCH_RECOMPUTE") == "1"})
	})
}

func benchTrainStep(b *testing.B, m *Model, B, T int, opts GradOptions) {
	if opts.MaskGrads {
		gSetRandomSoft(m, 1)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	tokens := make([]int32, B*(T+1))
	for i := range tokens {
		tokens[i] = int32(rng.IntN(m.Config.Vocab))
	}
	var g Grads
	ctx := context.Background()
	if _, err := m.LossGrad(ctx, tokens, B, T, opts, &g); err != nil { // warm-up: buffers
		b.Fatal(err)
	}
	b.ResetTimer()
	b.ReportAllocs()
	for range b.N {
		if _, err := m.LossGrad(ctx, tokens, B, T, opts, &g); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(B*T)*float64(b.N)/b.Elapsed().Seconds(), "tokens/s")
}
