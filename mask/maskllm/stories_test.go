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
// prior) and magnitude. The learning run itself is scripts/learn-stories.sh
// (minutes to an hour of CPU; mask/maskllm/RESULTS.md).
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
	want := map[string][2]float64{"magnitude": {100, 200}, "sparsegpt-mask": {40, 110}, "sparsegpt": {30, 80}}
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
		if p := ppl(method); p < want[method][0] || p > want[method][1] {
			t.Errorf("%s: perplexity %.2f outside [%g, %g]", method, p, want[method][0], want[method][1])
		}
		reset(orig)
	}
}
