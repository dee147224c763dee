package model

import (
	"context"
	"math"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/sparsify/sparsify/internal/testutil"
	"github.com/sparsify/sparsify/model/tokenizer"
)

func loadStories(t *testing.T) (*Model, *tokenizer.Tokenizer) {
	t.Helper()
	m, tok, err := Load(testutil.SharedData(t, "stories260K.gguf"))
	if err != nil {
		t.Fatal(err)
	}
	return m, tok
}

func TestStoriesTokenizer(t *testing.T) {
	_, tok := loadStories(t)
	tok2, err := tokenizer.ReadLlama2C(testutil.SharedData(t, "tok512.bin"), 512)
	if err != nil {
		t.Fatal(err)
	}
	text, err := os.ReadFile(testutil.SharedData(t, "tinystories-valid.txt"))
	if err != nil {
		t.Fatal(err)
	}
	paras := Paragraphs(string(text))
	total := 0
	for i, p := range paras {
		a, b := tok.Encode(p, true), tok2.Encode(p, true)
		if !slices.Equal(a, b) {
			t.Fatalf("paragraph %d: GGUF vocabulary gives %v, tok512.bin %v", i, a, b)
		}
		if got := tok.Decode(a); got != p && !containsInvalidUTF8(p) {
			t.Fatalf("paragraph %d: decode(encode) = %q, want %q", i, got, p)
		}
		total += len(a)
	}
	if total != 82481 {
		t.Fatalf("valid text is %d tokens, want 82481", total)
	}
}

func containsInvalidUTF8(s string) bool {
	for _, r := range s {
		if r == '\uFFFD' {
			return true
		}
	}
	return false
}

func TestStoriesGGUFvsBin(t *testing.T) {
	mg, _ := loadStories(t)
	mb, _, err := Load(testutil.SharedData(t, "stories260K.bin"))
	if err != nil {
		t.Fatal(err)
	}
	toks := []int32{1, 403, 407, 261, 378, 429, 271, 260, 289, 500, 300, 2, 1, 50, 60, 70}
	B, T := 2, 8
	V := mg.Config.Vocab
	lg, lb := make([]float32, B*T*V), make([]float32, B*T*V)
	if err := mg.Forward(context.Background(), toks, B, T, lg); err != nil {
		t.Fatal(err)
	}
	if err := mb.Forward(context.Background(), toks, B, T, lb); err != nil {
		t.Fatal(err)
	}
	for i := range lg {
		if math.Abs(float64(lg[i]-lb[i])) > 1e-4 {
			t.Fatalf("logit %d: gguf %v, bin %v", i, lg[i], lb[i])
		}
	}
	if len(mg.Linears()) != 35 {
		t.Fatalf("%d linears, want 35", len(mg.Linears()))
	}
}

func TestStoriesPerplexity(t *testing.T) {
	if testing.Short() {
		t.Skip("full-text perplexity is slow")
	}
	m, tok := loadStories(t)
	text, err := os.ReadFile(testutil.SharedData(t, "tinystories-valid.txt"))
	if err != nil {
		t.Fatal(err)
	}
	ppl, n, err := Perplexity(context.Background(), m, tok, string(text), 256, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("perplexity %.4f over %d predicted tokens (seq 256)", ppl, n)
	if n != 82481/256*255 {
		t.Fatalf("%d predicted tokens", n)
	}
	if math.Abs(ppl-7.09)/7.09 > 0.01 {
		t.Fatalf("perplexity %.4f, want 7.09 ± 1%%", ppl)
	}
}

func TestStoriesGenerate(t *testing.T) {
	m, tok := loadStories(t)
	// The KV-cache path must give the full forward pass's logits.
	ids := tok.Encode("Once upon a time, there was a little", true)
	T := len(ids)
	V := m.Config.Vocab
	full := make([]float32, T*V)
	if err := m.Forward(context.Background(), ids, 1, T, full); err != nil {
		t.Fatal(err)
	}
	s := m.NewSession(T)
	lg := make([]float32, V)
	if err := s.Step(ids[:3], lg); err != nil {
		t.Fatal(err)
	}
	for i := 3; i < T; i++ {
		if err := s.Step(ids[i:i+1], lg); err != nil {
			t.Fatal(err)
		}
	}
	near(t, "cached logits", lg, full[(T-1)*V:], 1e-4)

	var text string
	out, err := Generate(context.Background(), m, tok, "Once upon a time", 60, NewSampler(0, 0), func(s string) { text += s })
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("greedy: Once upon a time%s", text)
	if len(out) < 20 {
		t.Fatalf("generated %d tokens: %q", len(out), text)
	}
	// fluent: mostly dictionary-looking words separated by spaces
	words := 0
	for _, w := range strings.Fields(text) {
		if len(strings.Trim(w, ".,!?\"'")) > 0 {
			words++
		}
	}
	if words < 10 {
		t.Fatalf("generated text has %d words: %q", words, text)
	}
}

// TestLoadErrors: truncated or corrupt inputs give errors that name the file.
func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"stories260K.bin", "stories260K.gguf"} {
		data, err := os.ReadFile(testutil.SharedData(t, name))
		if err != nil {
			t.Fatal(err)
		}
		p := dir + "/cut-" + name
		if err := os.WriteFile(p, data[:len(data)/2], 0o644); err != nil {
			t.Fatal(err)
		}
		_, _, err = Load(p)
		if err == nil || !strings.Contains(err.Error(), p) {
			t.Fatalf("%s truncated: %v", name, err)
		}
	}
	if _, _, err := Load(dir + "/missing.gguf"); err == nil {
		t.Fatal("missing file loaded")
	}
	p := dir + "/junk.bin"
	if err := os.WriteFile(p, []byte("not a model at all, no"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := Load(p); err == nil || !strings.Contains(err.Error(), p) {
		t.Fatalf("junk: %v", err)
	}
}

func TestLoadTokenizerFiles(t *testing.T) {
	m, _, err := LoadWithTokenizer(testutil.SharedData(t, "stories260K.bin"), testutil.SharedData(t, "tok512.bin"))
	if err != nil {
		t.Fatal(err)
	}
	_, tg := loadStories(t)
	for _, p := range []string{testutil.SharedData(t, "tok512.bin"), testutil.SharedData(t, "stories260K.gguf")} {
		tok, err := LoadTokenizer(p, m.Config.Vocab)
		if err != nil {
			t.Fatal(err)
		}
		if a, b := tok.Encode("Once upon a time, Lily", true), tg.Encode("Once upon a time, Lily", true); !slices.Equal(a, b) {
			t.Fatalf("%s: %v, want %v", p, a, b)
		}
	}
}
