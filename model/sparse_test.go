package model

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/sparsify/sparsify/internal/synth"
	"github.com/sparsify/sparsify/mask"
	"github.com/sparsify/sparsify/pack"
)

// TestSparseCheckpoint loads a cutlass-packed checkpoint written by
// pack.Convert and checks that it computes the same logits as the dense
// model under the saved masks (eval --mask), and different ones from the
// dense model.
func TestSparseCheckpoint(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "dense")
	cfg := synth.Tiny()
	must(t, synth.WriteHF(in, cfg, 3))
	out := filepath.Join(dir, "sparse")
	maskPath := filepath.Join(dir, "mask.safetensors")
	if _, err := pack.Convert(context.Background(), in, out, pack.Options{Method: pack.Magnitude(),
		Layout: pack.Cutlass, SaveMask: maskPath}); err != nil {
		t.Fatal(err)
	}
	dense, _, err := Load(in)
	if err != nil {
		t.Fatalf("dense: %v", err)
	}
	sparse, _, err := Load(out)
	if err != nil {
		t.Fatalf("sparse: %v", err)
	}
	if sparse.Source != "sparse" || dense.Source != "hf" {
		t.Fatalf("sources %q, %q", dense.Source, sparse.Source)
	}
	masks, _, err := mask.ReadFile(maskPath)
	must(t, err)
	if len(masks) != 14 {
		t.Fatalf("%d masks, want 14", len(masks))
	}
	B, T, V := 1, 12, cfg.Vocab
	toks := make([]int32, T)
	for i := range toks {
		toks[i] = int32(i * 17 % V)
	}
	ld, ls := make([]float32, B*T*V), make([]float32, B*T*V)
	must(t, dense.Forward(context.Background(), toks, B, T, ld))
	must(t, sparse.Forward(context.Background(), toks, B, T, ls))
	diff := 0.0
	for i := range ld {
		diff = max(diff, float64(abs32(ld[i]-ls[i])))
	}
	if diff < 1e-3 {
		t.Fatalf("sparse logits equal the dense ones (max diff %g): masks not applied?", diff)
	}
	must(t, dense.ApplyMasks(masks))
	must(t, dense.Forward(context.Background(), toks, B, T, ld))
	near(t, "masked dense vs sparse checkpoint", ls, ld, 1e-5)
}

func abs32(x float32) float32 {
	if x < 0 {
		return -x
	}
	return x
}
