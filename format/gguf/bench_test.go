package gguf_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/sparsify/sparsify/format"
	"github.com/sparsify/sparsify/format/gguf"
	"github.com/sparsify/sparsify/internal/testutil"
)

// BenchmarkWrite writes 16 tensors of 4 MiB (64 MiB, including fsync and
// rename) and reports data bytes per second.
// Reproduce: GOEXPERIMENT=simd go test -run=^$ -bench=Write -benchtime=5x ./format/gguf/
func BenchmarkWrite(b *testing.B) {
	const n, size = 16, 4 << 20
	data := make([]byte, size)
	for i := range data {
		data[i] = byte(i * 7)
	}
	var ts []format.Tensor
	for i := range n {
		ts = append(ts, bytesTensor("t"+string(rune('a'+i)), format.F32, []int64{size / 4 / 1024, 1024}, data))
	}
	path := filepath.Join(b.TempDir(), "bench.gguf")
	b.SetBytes(n * size)
	for b.Loop() {
		if err := gguf.Write(context.Background(), path, nil, ts, gguf.WriteOptions{}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkOpenStories260K parses the real model's header (512-token vocabulary).
// Reproduce: GOEXPERIMENT=simd go test -run=^$ -bench=OpenStories -benchtime=1s ./format/gguf/
func BenchmarkOpenStories260K(b *testing.B) {
	path := testutil.SharedData(b, "stories260K.gguf")
	for b.Loop() {
		f, err := gguf.Open(path)
		if err != nil {
			b.Fatal(err)
		}
		f.Close()
	}
}
