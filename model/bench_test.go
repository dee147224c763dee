package model

import (
	"context"
	"fmt"
	"os"
	"runtime"
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

// BenchmarkEvalFile measures eval throughput on any checkpoint, for
// scripts/bench-eval.sh: SPARSIFY_BENCH_EVAL_MODEL=path, SPARSIFY_BENCH_EVAL_BT="B T"
// (default "16 256"). Token ids are (i·7919) mod vocab, the same as
// scripts/peer_eval.py uses; the mean next-token NLL is reported so that the
// two sides can be checked to compute the same model.
//
//	SPARSIFY_BENCH_EVAL_MODEL=../shared/data/stories260K.bin GOEXPERIMENT=simd \
//	  go test ./model -run '^$' -bench EvalFile -benchtime 3x
func BenchmarkEvalFile(b *testing.B) {
	path := os.Getenv("SPARSIFY_BENCH_EVAL_MODEL")
	if path == "" {
		b.Skip("SPARSIFY_BENCH_EVAL_MODEL not set")
	}
	B, T := 16, 256
	if s := os.Getenv("SPARSIFY_BENCH_EVAL_BT"); s != "" {
		if _, err := fmt.Sscan(s, &B, &T); err != nil {
			b.Fatal(err)
		}
	}
	m, _, err := Load(path)
	if err != nil && m == nil {
		b.Fatal(err)
	}
	V := m.Config.Vocab
	toks := make([]int32, B*T)
	for i := range toks {
		toks[i] = int32(i * 7919 % V)
	}
	logits := make([]float32, B*T*V)
	// warm-up (also the NLL check)
	if err := m.Forward(context.Background(), toks, B, T, logits); err != nil {
		b.Fatal(err)
	}
	var nll float64
	for s := 0; s < B; s++ {
		for t := 0; t+1 < T; t++ {
			r := s*T + t
			nll += NLL(logits[r*V:(r+1)*V], toks[r+1])
		}
	}
	b.ResetTimer()
	cpu0 := cpuSeconds()
	for b.Loop() {
		if err := m.Forward(context.Background(), toks, B, T, logits); err != nil {
			b.Fatal(err)
		}
	}
	cpu := cpuSeconds() - cpu0
	b.ReportMetric(float64(b.N*B*T)/b.Elapsed().Seconds(), "tokens/s")
	// tokens per second of 2-core time: comparable across runs on a shared machine
	if cpu > 0 {
		b.ReportMetric(float64(b.N*B*T)/(cpu/float64(runtime.GOMAXPROCS(0))), "tokens/s-cpu")
	}
	b.ReportMetric(nll/float64(B*(T-1)), "nll")
}
