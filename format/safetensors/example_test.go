package safetensors_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"os"
	"path/filepath"

	"github.com/sparsify/sparsify/format"
	"github.com/sparsify/sparsify/format/safetensors"
)

func Example() {
	dir, _ := os.MkdirTemp("", "example")
	defer os.RemoveAll(dir)

	// Two F32 tensors, split into two shards by a tiny MaxShardSize.
	mk := func(name string, vals ...float32) format.Tensor {
		raw := make([]byte, 4*len(vals))
		if err := format.FromFloat32(format.F32, vals, raw); err != nil {
			log.Fatal(err)
		}
		return format.Tensor{Name: name, DType: format.F32, Shape: []int64{int64(len(vals))}, Size: int64(len(raw)),
			WriteTo: func(w io.Writer) (int64, error) { n, err := w.Write(raw); return int64(n), err }}
	}
	out := filepath.Join(dir, "model")
	res, err := safetensors.WriteDir(context.Background(), out,
		[]format.Tensor{mk("a", 1, 2), mk("b", 3, 4, 5)}, safetensors.WriteOptions{MaxShardSize: 8})
	if err != nil {
		log.Fatal(err)
	}
	for _, f := range res.Files {
		fmt.Println(f.Name)
	}

	d, err := safetensors.OpenDir(out)
	if err != nil {
		log.Fatal(err)
	}
	defer d.Close()
	for _, ti := range d.Tensors() {
		raw, _, _ := format.ReadAll(d, ti.Name)
		vals := make([]float32, ti.NumElements())
		format.ToFloat32(ti.DType, raw, vals)
		fmt.Println(ti.Name, ti.Shape, vals, filepath.Base(ti.File))
	}
	// Output:
	// model-00001-of-00002.safetensors
	// model-00002-of-00002.safetensors
	// model.safetensors.index.json
	// a [2] [1 2] model-00001-of-00002.safetensors
	// b [3] [3 4 5] model-00002-of-00002.safetensors
}
