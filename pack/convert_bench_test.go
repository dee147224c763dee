package pack

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/sparsify/sparsify/internal/synth"
)

// BenchmarkConvertPassthrough converts a ~64 MB BF16 checkpoint
// safetensors → safetensors (every tensor passed through).
// go test -run XXX -bench ConvertPassthrough -benchtime 3x ./pack
func BenchmarkConvertPassthrough(b *testing.B) {
	dir := b.TempDir()
	in := filepath.Join(dir, "in")
	cfg := synth.ForBytes(64 << 20)
	if err := synth.WriteHF(in, cfg, 1); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(cfg.Bytes())
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		out := filepath.Join(dir, "out")
		if _, err := Convert(context.Background(), in, out, Options{}); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		os.RemoveAll(out)
		b.StartTimer()
	}
}

// BenchmarkConvertMagnitudeCutlass prunes and packs a ~64 MB BF16 checkpoint.
// go test -run XXX -bench ConvertMagnitudeCutlass -benchtime 2x ./pack
func BenchmarkConvertMagnitudeCutlass(b *testing.B) {
	dir := b.TempDir()
	in := filepath.Join(dir, "in")
	cfg := synth.ForBytes(64 << 20)
	if err := synth.WriteHF(in, cfg, 1); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(cfg.Bytes())
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		out := filepath.Join(dir, "out")
		if _, err := Convert(context.Background(), in, out, Options{Method: Magnitude(), Layout: Cutlass}); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		os.RemoveAll(out)
		b.StartTimer()
	}
}

// BenchmarkConvertMagnitudeCutlassDir prunes and packs the checkpoint at
// $SPARSIFY_BENCH_IN (skipped when unset), e.g. the 1.2 GB one that
// scripts/bench-convert.sh generates, for a CPU profile at full scale:
// SPARSIFY_BENCH_IN=DIR go test -run XXX -bench MagnitudeCutlassDir -benchtime 1x -cpuprofile cpu.out ./pack
func BenchmarkConvertMagnitudeCutlassDir(b *testing.B) {
	in := os.Getenv("SPARSIFY_BENCH_IN")
	if in == "" {
		b.Skip("SPARSIFY_BENCH_IN not set")
	}
	ck, err := OpenCheckpoint(in)
	if err != nil {
		b.Fatal(err)
	}
	var size int64
	for _, ti := range ck.Source.Tensors() {
		size += ti.Size
	}
	ck.Close()
	b.SetBytes(size)
	dir := b.TempDir()
	for i := 0; i < b.N; i++ {
		out := filepath.Join(dir, "out")
		if _, err := Convert(context.Background(), in, out, Options{Method: Magnitude(), Layout: Cutlass, Jobs: 2}); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		os.RemoveAll(out)
		b.StartTimer()
	}
}
