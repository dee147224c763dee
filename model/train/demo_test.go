package train

import (
	"context"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sparsify/sparsify/format"
	"github.com/sparsify/sparsify/internal/testutil"
	"github.com/sparsify/sparsify/model"
	"github.com/sparsify/sparsify/pack"
)

// demoDensePPL is the shipped model's held-out perplexity at 256 tokens on
// testdata/demo/valid.txt, as testdata/README.md records it.
const demoDensePPL = 10.689

// TestShippedDemoModel checks testdata/demo/kjv-tiny.gguf: size, shape,
// vocabulary, and (without -short) its recorded held-out perplexity.
func TestShippedDemoModel(t *testing.T) {
	dir := filepath.Join(testutil.RepoRoot(), "testdata", "demo")
	path := filepath.Join(dir, "kjv-tiny.gguf")
	fi, err := os.Stat(path)
	if err != nil {
		t.Skipf("no demo model: %v", err)
	}
	if fi.Size() > 2<<20 {
		t.Fatalf("%s is %d bytes, over 2 MiB", path, fi.Size())
	}
	m, tok, err := model.LoadGGUF(path)
	if err != nil {
		t.Fatal(err)
	}
	want := DemoConfig()
	got := m.Config
	if got.Dim != want.Dim || got.Hidden != want.Hidden || got.Layers != want.Layers || got.Heads != want.Heads ||
		got.KVHeads != want.KVHeads || got.Vocab != want.Vocab || !got.Tied || !got.RopeInterleaved {
		t.Fatalf("config %+v, want %+v", got, want)
	}
	if tok.VocabSize() != want.Vocab || tok.BOS() != BOS {
		t.Fatalf("vocabulary %d, BOS %d", tok.VocabSize(), tok.BOS())
	}
	text, err := os.ReadFile(filepath.Join(dir, "valid.txt"))
	if err != nil {
		t.Fatal(err)
	}
	var ps []string
	for _, p := range strings.Split(string(text), "\n\n") {
		if p = strings.TrimSpace(p); p != "" {
			ps = append(ps, p)
		}
	}
	ids := tok.Encode(ps[0], true)
	if got := tok.Decode(ids); got != ps[0] {
		t.Fatalf("round trip of the first held-out paragraph:\n got %q\nwant %q", got, ps[0])
	}
	if testing.Short() || demoDensePPL == 0 {
		return
	}
	ppl, _, err := Perplexity(context.Background(), m, Encode(tok, ps), 256)
	if err != nil {
		t.Fatal(err)
	}
	if math.Abs(ppl-demoDensePPL) > 0.005*demoDensePPL {
		t.Fatalf("held-out perplexity %.3f, recorded %.3f", ppl, demoDensePPL)
	}
}

// TestDemoConfigFitsCutlass: every linear matrix of the demo model must fit the
// CUTLASS layout in BF16, or `make demo` would store it masked-dense.
func TestDemoConfigFitsCutlass(t *testing.T) {
	c := DemoConfig()
	kv := c.KVHeads * c.HeadDim()
	for _, s := range [][2]int{{c.Dim, c.Dim}, {kv, c.Dim}, {c.Hidden, c.Dim}, {c.Dim, c.Hidden}} {
		if err := pack.CutlassShapeOK(format.BF16, s[0], s[1]); err != nil {
			t.Errorf("[%d, %d]: %v", s[0], s[1], err)
		}
	}
}
