package safetensors

import (
	"bytes"
	"context"
	"errors"
	"io"
	"path/filepath"
	"testing"

	"github.com/sparsify/sparsify/format"
)

// TestReadTensor reads the same bytes back from a mapped file and from a
// zstd file (which has no mapping and goes through Open).
func TestReadTensor(t *testing.T) {
	data := []byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}
	ts := []format.Tensor{{Name: "w", DType: format.U8, Shape: []int64{3, 4}, Size: int64(len(data)),
		WriteTo: func(w io.Writer) (int64, error) { n, err := w.Write(data); return int64(n), err }}}
	for _, compress := range []string{"", "zstd"} {
		path := filepath.Join(t.TempDir(), "m.safetensors")
		res, err := WriteFile(context.Background(), path, ts, WriteOptions{Compress: compress, NoHash: true})
		if err != nil {
			t.Fatal(err)
		}
		sf, err := Open(filepath.Join(filepath.Dir(path), res.Files[0].Name))
		if err != nil {
			t.Fatal(err)
		}
		got, err := sf.ReadTensor("w")
		if err != nil || !bytes.Equal(got, data) {
			t.Errorf("compress %q: ReadTensor = %v, %v; want %v", compress, got, err, data)
		}
		if _, err := sf.ReadTensor("nope"); !errors.Is(err, format.ErrNotFound) {
			t.Errorf("compress %q: missing tensor: %v, want ErrNotFound", compress, err)
		}
		sf.Close()
	}
}
