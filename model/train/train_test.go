package train

import (
	"context"
	"math"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sparsify/sparsify/model"
	"github.com/sparsify/sparsify/model/tokenizer"
)

const kjvSample = `
Genesis 1

  1 In the beginning God created the heaven and the earth.
  2 And the earth was without form, and void; and darkness was upon the face of the deep. And the Spirit of God moved upon the face of the waters.
  3 And God said, Let there be light: and there was light.

Genesis 2

  1 Thus the heavens and the earth were finished, and all the host of them.
  2 And on the seventh day God ended his work which he had made; and he rested on the seventh day from all his work which he had made.
`

func TestParseKJV(t *testing.T) {
	chs, err := ParseKJV(strings.NewReader(kjvSample))
	if err != nil {
		t.Fatal(err)
	}
	if len(chs) != 2 || chs[0].Title != "Genesis 1" || len(chs[0].Verses) != 3 || len(chs[1].Verses) != 2 {
		t.Fatalf("parsed %+v", chs)
	}
	if chs[0].Verses[2] != "And God said, Let there be light: and there was light." {
		t.Fatalf("verse text %q", chs[0].Verses[2])
	}
	if p := chs[0].Paragraphs(2); len(p) != 2 || !strings.HasPrefix(p[1], "And God said") {
		t.Fatalf("paragraphs %q", p)
	}
	if _, err := ParseKJV(strings.NewReader("  1 verse before any heading\n")); err == nil {
		t.Fatal("verse before a heading accepted")
	}
	if _, err := ParseKJV(strings.NewReader("")); err == nil {
		t.Fatal("empty text accepted")
	}
}

func TestSplit(t *testing.T) {
	var chs []Chapter
	for i := 0; i < 40; i++ {
		chs = append(chs, Chapter{Title: "c", Verses: []string{"v"}})
	}
	tr, cal, va := Split(chs, 5)
	if len(va) != 2 || len(cal) != 2 || len(tr) != 38 {
		t.Fatalf("split %d/%d/%d, want 38 train, 2 calib, 2 valid", len(tr), len(cal), len(va))
	}
}

// TestTrainBPE checks the vocabulary layout and that the project tokenizer
// encodes with the learnt merges and decodes back to the text.
func TestTrainBPE(t *testing.T) {
	chs, err := ParseKJV(strings.NewReader(kjvSample))
	if err != nil {
		t.Fatal(err)
	}
	var ps []string
	for _, c := range chs {
		ps = append(ps, c.Paragraphs(5)...)
	}
	v, err := TrainBPE(ps, 320)
	if err != nil {
		t.Fatal(err)
	}
	if len(v.Tokens) != 320 || v.Tokens[BOS] != "<s>" || v.Tokens[3] != "<0x00>" || v.Tokens[258] != "<0xFF>" {
		t.Fatalf("layout: %d tokens, %q %q %q", len(v.Tokens), v.Tokens[BOS], v.Tokens[3], v.Tokens[258])
	}
	sp, ok := 0, false
	for i, p := range v.Tokens {
		if p == spmSpace {
			sp, ok = i, true
		}
	}
	if !ok || sp < numBase {
		t.Fatalf("no ▁ piece in the vocabulary")
	}
	tok, err := tokenizer.New(v.Spec())
	if err != nil {
		t.Fatal(err)
	}
	ids := tok.Encode(ps[0], true)
	if ids[0] != BOS {
		t.Fatalf("no BOS: %v", ids)
	}
	if len(ids) >= len(ps[0])*2/3 {
		t.Fatalf("%d tokens for %d bytes: merges not used", len(ids), len(ps[0]))
	}
	for _, id := range ids {
		if id >= 3 && id < numBase {
			t.Fatalf("byte fallback %q for a character the vocabulary has", tok.Piece(id))
		}
	}
	if got := tok.Decode(ids); got != ps[0] {
		t.Fatalf("round trip:\n got %q\nwant %q", got, ps[0])
	}
	if _, err := TrainBPE(ps, 100000); err == nil {
		t.Fatal("oversized vocabulary accepted")
	}
}

// TestTrainWriteReload trains a tiny model a few steps, writes it as GGUF,
// reloads it with model.LoadGGUF and checks the loss is unchanged and lower
// than at the start.
func TestTrainWriteReload(t *testing.T) {
	chs, err := ParseKJV(strings.NewReader(kjvSample))
	if err != nil {
		t.Fatal(err)
	}
	var ps []string
	for _, c := range chs {
		ps = append(ps, c.Paragraphs(1)...)
	}
	v, err := TrainBPE(ps, 320)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := tokenizer.New(v.Spec())
	if err != nil {
		t.Fatal(err)
	}
	stream := Encode(tok, ps)
	c := model.Config{Dim: 32, Hidden: 64, Layers: 2, Heads: 4, KVHeads: 2, Vocab: 320, MaxSeq: 16,
		NormEps: 1e-5, RopeTheta: 10000, RopeInterleaved: true, Tied: true}
	m, err := NewModel(c, 1)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	before, _, err := Perplexity(ctx, m, stream, 16)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Train(ctx, m, stream, Options{Config: c, Steps: 60, Batch: 4, Seq: 16, Seed: 1, LR: 1e-2, Warmup: 5}); err != nil {
		t.Fatal(err)
	}
	after, n, err := Perplexity(ctx, m, stream, 16)
	if err != nil {
		t.Fatal(err)
	}
	if n != len(stream)/16*15 {
		t.Fatalf("%d predicted tokens, want %d", n, len(stream)/16*15)
	}
	if !(after < before/3) {
		t.Fatalf("training perplexity %.2f → %.2f: not learning", before, after)
	}
	path := filepath.Join(t.TempDir(), "tiny.gguf")
	if err := WriteGGUF(ctx, path, m, v, "tiny", "test"); err != nil {
		t.Fatal(err)
	}
	m2, tok2, err := model.LoadGGUF(path)
	if err != nil {
		t.Fatal(err)
	}
	if m2.Config.Dim != c.Dim || m2.Config.Heads != c.Heads || m2.Config.KVHeads != c.KVHeads || !m2.Config.Tied || !m2.Config.RopeInterleaved {
		t.Fatalf("reloaded config %+v", m2.Config)
	}
	s2 := Encode(tok2, ps)
	if len(s2) != len(stream) {
		t.Fatalf("reloaded tokenizer: %d tokens, want %d", len(s2), len(stream))
	}
	reloaded, _, err := Perplexity(ctx, m2, s2, 16)
	if err != nil {
		t.Fatal(err)
	}
	if math.Abs(reloaded-after) > 1e-6*after {
		t.Fatalf("reloaded perplexity %.6f, in memory %.6f", reloaded, after)
	}
}

// FuzzParseKJV checks that no input makes the KJV parser panic and that what
// it accepts is well formed.
func FuzzParseKJV(f *testing.F) {
	f.Add(kjvSample)
	f.Add("Genesis 1\n  x not a number\n")
	f.Add("  \n\nA\n  1\n  2 b\n")
	f.Fuzz(func(t *testing.T, s string) {
		chs, err := ParseKJV(strings.NewReader(s))
		if err != nil {
			return
		}
		if len(chs) == 0 {
			t.Fatal("no chapters and no error")
		}
		for _, c := range chs {
			if c.Title == "" {
				t.Fatalf("empty title in %+v", chs)
			}
		}
	})
}
