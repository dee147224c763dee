package safetensors

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/sparsify/sparsify/format"
)

// benchTensors returns n BF16 tensors of size bytes each, normally
// distributed weights like a real checkpoint's (about 1.3× compressible).
func benchTensors(n, size int) []format.Tensor {
	rng := rand.New(rand.NewPCG(1, 1))
	ts := make([]format.Tensor, n)
	vals := make([]float32, size/2)
	for i := range ts {
		for j := range vals {
			vals[j] = float32(rng.NormFloat64() * 0.02)
		}
		data := make([]byte, size)
		format.FromFloat32(format.BF16, vals, data)
		ts[i] = bytesTensor(fmt.Sprintf("model.layers.%d.mlp.up_proj.weight", i), format.BF16, []int64{int64(size / 2)}, data)
	}
	return ts
}

// go test -run=^$ -bench='WriteDir|Read' -benchtime=3x ./format/safetensors/
func BenchmarkWriteDir(b *testing.B) {
	const n, size = 32, 4 << 20
	for _, comp := range []string{"", "zstd"} {
		b.Run("compress="+comp, func(b *testing.B) {
			ts := benchTensors(n, size)
			b.SetBytes(n * size)
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				dir := filepath.Join(b.TempDir(), fmt.Sprint(i))
				if _, err := WriteDir(context.Background(), dir, ts, WriteOptions{MaxShardSize: 48 << 20, Compress: comp}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkRead(b *testing.B) {
	const n, size = 32, 4 << 20
	for _, comp := range []string{"", "zstd"} {
		dir := b.TempDir()
		if _, err := WriteDir(context.Background(), dir, benchTensors(n, size), WriteOptions{MaxShardSize: 48 << 20, Compress: comp}); err != nil {
			b.Fatal(err)
		}
		b.Run("compress="+comp, func(b *testing.B) {
			b.SetBytes(n * size)
			buf := make([]byte, 1<<20)
			for b.Loop() {
				d, err := OpenDir(dir)
				if err != nil {
					b.Fatal(err)
				}
				for _, ti := range d.Tensors() {
					rc, err := d.Open(ti.Name)
					if err != nil {
						b.Fatal(err)
					}
					if m, err := io.CopyBuffer(io.Discard, struct{ io.Reader }{rc}, buf); err != nil || m != ti.Size {
						b.Fatal(m, err)
					}
					rc.Close()
				}
				d.Close()
			}
		})
	}
}

// BenchmarkPassthrough copies a checkpoint tensor by tensor (Open → WriteFile,
// the convert --dtype keep path) and reports the ratio to `cp` plus fsync of
// the same file, measured in the same run.
//
//	go test -run=^$ -bench=Passthrough -benchtime=3x ./format/safetensors/
func BenchmarkPassthrough(b *testing.B) {
	for _, noHash := range []bool{false, true} {
		b.Run(fmt.Sprint("nohash=", noHash), func(b *testing.B) { benchPassthrough(b, noHash) })
	}
}

func benchPassthrough(b *testing.B, noHash bool) {
	const n, size = 64, 4 << 20
	dir := b.TempDir()
	src := filepath.Join(dir, "src.safetensors")
	if _, err := WriteFile(context.Background(), src, benchTensors(n, size), WriteOptions{}); err != nil {
		b.Fatal(err)
	}
	cpTime := func() time.Duration {
		t0 := time.Now()
		out := filepath.Join(dir, "cp.safetensors")
		if err := exec.Command("cp", src, out).Run(); err != nil {
			b.Skip("no cp:", err)
		}
		f, _ := os.Open(out)
		f.Sync()
		f.Close()
		os.Remove(out)
		return time.Since(t0)
	}
	var ours, cp time.Duration
	b.SetBytes(n * size)
	for i := 0; b.Loop(); i++ {
		cp += cpTime()
		t0 := time.Now()
		f, err := Open(src)
		if err != nil {
			b.Fatal(err)
		}
		var ts []format.Tensor
		for _, ti := range f.Tensors() {
			ts = append(ts, format.Passthrough(f, ti))
		}
		out := filepath.Join(dir, "out.safetensors")
		if _, err := WriteFile(context.Background(), out, ts, WriteOptions{Metadata: f.Metadata(), NoHash: noHash}); err != nil {
			b.Fatal(err)
		}
		f.Close()
		ours += time.Since(t0)
		os.Remove(out)
	}
	b.ReportMetric(float64(n*size*b.N)/cp.Seconds()/1e6, "cp-MB/s")
	b.ReportMetric(cp.Seconds()/ours.Seconds(), "x-cp")
}
