package cuda

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/sparsify/sparsify/format"
	"github.com/sparsify/sparsify/pack"
)

// packEntry is one matrix in SPARSIFY_PACK_DIR/index.json, written by
// scripts/gpu_torch_check.py.
type packEntry struct {
	Name  string `json:"name"`
	DType string `json:"dtype"` // bf16, f16, f32, i8
	Rows  int    `json:"rows"`
	Cols  int    `json:"cols"`
}

// TestPackFiles packs the raw dense matrices listed in
// $SPARSIFY_PACK_DIR/index.json (<name>.dense.bin, row-major little-endian)
// with pack.PackCutlass into <name>.values.bin and <name>.meta.bin, for the
// byte-for-byte comparison with PyTorch on a machine without Go. Skips when
// the variable is unset. Run: SPARSIFY_PACK_DIR=dir bin/cuda.test -test.run TestPackFiles
func TestPackFiles(t *testing.T) {
	dir := os.Getenv("SPARSIFY_PACK_DIR")
	if dir == "" {
		t.Skip("set SPARSIFY_PACK_DIR to pack the matrices listed in its index.json")
	}
	b, err := os.ReadFile(filepath.Join(dir, "index.json"))
	if err != nil {
		t.Fatal(err)
	}
	var ents []packEntry
	if err := json.Unmarshal(b, &ents); err != nil {
		t.Fatalf("index.json: %v", err)
	}
	dts := map[string]format.DType{"bf16": format.BF16, "f16": format.F16, "f32": format.F32, "i8": format.I8}
	for _, e := range ents {
		if err := packOne(dir, e, dts); err != nil {
			t.Errorf("%s: %v", e.Name, err)
		}
	}
}

func packOne(dir string, e packEntry, dts map[string]format.DType) error {
	dt, ok := dts[e.DType]
	if !ok || filepath.Base(e.Name) != e.Name {
		return fmt.Errorf("bad entry %+v", e)
	}
	dense, err := os.ReadFile(filepath.Join(dir, e.Name+".dense.bin"))
	if err != nil {
		return err
	}
	want, err := dt.ByteSize(int64(e.Rows) * int64(e.Cols))
	if err != nil {
		return err
	}
	if int64(len(dense)) != want {
		return fmt.Errorf("%d bytes, want %d for %v [%d, %d]", len(dense), want, dt, e.Rows, e.Cols)
	}
	vals, meta, err := pack.PackCutlass(dt, e.Rows, e.Cols, dense)
	if err != nil {
		return err
	}
	if err := writeAtomic(filepath.Join(dir, e.Name+".values.bin"), vals); err != nil {
		return err
	}
	return writeAtomic(filepath.Join(dir, e.Name+".meta.bin"), meta)
}
