package synth

import (
	"path/filepath"
	"testing"

	"github.com/sparsify/sparsify/format"
	"github.com/sparsify/sparsify/format/gguf"
	"github.com/sparsify/sparsify/format/llama"
	"github.com/sparsify/sparsify/format/safetensors"
)

func TestWriteHFAndGGUF(t *testing.T) {
	dir := t.TempDir()
	cfg := Tiny()
	cfg.Sparse24 = true
	if err := WriteHF(filepath.Join(dir, "hf"), cfg, 7); err != nil {
		t.Fatal(err)
	}
	if err := WriteGGUF(filepath.Join(dir, "m.gguf"), cfg, 7); err != nil {
		t.Fatal(err)
	}
	d, err := safetensors.OpenDir(filepath.Join(dir, "hf"))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	g, err := gguf.Open(filepath.Join(dir, "m.gguf"))
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if len(d.Tensors()) != len(g.Tensors()) || len(d.Tensors()) != 2+9*cfg.Layers+1 {
		t.Fatalf("tensors: hf %d gguf %d", len(d.Tensors()), len(g.Tensors()))
	}
	var total int64
	for _, ti := range d.Tensors() {
		total += ti.Size
		gn, _ := llama.ToGGUF(ti.Name)
		gb, gti, err := format.ReadAll(g, gn)
		if err != nil {
			t.Fatal(err)
		}
		hb, _, err := format.ReadAll(d, ti.Name)
		if err != nil {
			t.Fatal(err)
		}
		if h := llama.PermuteHeads("llama", ti.Name, cfg.Heads, cfg.KVHeads); h > 0 {
			p := make([]byte, len(hb))
			if err := llama.Permute(p, hb, int(ti.Shape[0]), h); err != nil {
				t.Fatal(err)
			}
			hb = p
		}
		if string(gb) != string(hb) || gti.DType != ti.DType {
			t.Errorf("%s: GGUF and HF bytes differ", ti.Name)
		}
	}
	if total != cfg.Bytes() {
		t.Errorf("Bytes() = %d, files hold %d", cfg.Bytes(), total)
	}
	w := Weights(cfg, 7)
	q := w["model.layers.0.mlp.up_proj.weight"]
	for gi := 0; gi < len(q); gi += 4 {
		nz := 0
		for _, v := range q[gi : gi+4] {
			if v != 0 {
				nz++
			}
		}
		if nz > 2 {
			t.Fatalf("Sparse24: group %d has %d nonzeros", gi/4, nz)
		}
	}
	if c, err := llama.FromGGUF(g.KV()); err != nil || c.HiddenSize != 64 || c.NumKVHeads != 2 {
		t.Errorf("GGUF config %+v %v", c, err)
	}
}

func TestForBytes(t *testing.T) {
	for _, n := range []int64{1 << 20, 1 << 30} {
		c := ForBytes(n)
		if b := c.Bytes(); b < n || b > n*3/2+(64<<20) {
			t.Errorf("ForBytes(%d) = %d bytes (%+v)", n, b, c)
		}
		if err := c.withDefaults().check(); err != nil {
			t.Error(err)
		}
	}
}
