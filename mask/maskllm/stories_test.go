package maskllm

import (
	"context"
	"os"
	"testing"

	"github.com/sparsify/sparsify/internal/testutil"
	"github.com/sparsify/sparsify/mask/calib"
	"github.com/sparsify/sparsify/model"
)

// TestStoriesBaselines measures the reference points of the MaskLLM table on
// stories260K (tinystories-valid.txt, 256-token chunks): dense, SparseGPT
// with its weight update, the SparseGPT mask on the original weights (the
// prior) and magnitude, and a 20-step learning run that must improve on its
// prior.
//
//	GOEXPERIMENT=simd go test ./mask/maskllm -run StoriesBaselines -v
func TestStoriesBaselines(t *testing.T) {
	if testing.Short() {
		t.Skip("real-data run (about a minute of CPU)")
	}
	path := testutil.SharedData(t, "stories260K.gguf")
	train := testutil.SharedData(t, "tinystories-train.txt")
	valid := testutil.SharedData(t, "tinystories-valid.txt")
	ctx := context.Background()
	m, tok, err := model.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	vb, err := os.ReadFile(valid)
	if err != nil {
		t.Fatal(err)
	}
	ids := model.TokenizeParagraphs(tok, string(vb))
	if len(ids) != 82481 {
		t.Fatalf("valid text is %d tokens, want 82,481", len(ids))
	}
	ppl := func(name string) float64 {
		p, err := Perplexity(ctx, m, ids, 256)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%-22s %.4f", name, p)
		return p
	}
	dense := ppl("dense")
	if dense < 6.5 || dense > 7.6 {
		t.Errorf("dense perplexity %.3f, the independent implementation measured 7.09", dense)
	}
	reset := func(ws [][]float32) {
		for i, l := range m.Linears() {
			l.W, l.Mask, l.Soft = ws[i], nil, nil
		}
	}
	orig := make([][]float32, len(m.Linears()))
	for i, l := range m.Linears() {
		orig[i] = l.W
	}
	copts := calib.Options{Calib: train, Samples: 128, SeqLen: 256}
	for _, method := range []string{"magnitude", "sparsegpt-mask", "sparsegpt"} {
		if _, _, err := calib.Prune(ctx, m, tok, method, copts); err != nil {
			t.Fatal(err)
		}
		ppl(method)
		reset(orig)
	}
	// a short learning run must move the hard mask below its prior's start
	o := DefaultOptions()
	o.Out, o.Data, o.Eval = t.TempDir(), train, valid
	o.Steps, o.Batch, o.EvalEvery, o.CheckpointEvery = 20, 8, 0, 0
	res, err := Learn(ctx, m, tok, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("maskllm 20 steps × 8 × 256: %.4f → %.4f (%.0fs)", res.InitialPPL, res.FinalPPL, res.Seconds)
	if !(res.FinalPPL < res.InitialPPL) {
		t.Errorf("20 steps did not improve the hard mask: %.3f → %.3f", res.InitialPPL, res.FinalPPL)
	}
}
