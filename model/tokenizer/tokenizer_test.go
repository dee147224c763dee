package tokenizer

import (
	"slices"
	"testing"
)

// tiny SentencePiece vocabulary: merges by score.
func tinySPM(t *testing.T) *Tokenizer {
	t.Helper()
	toks := []string{"<unk>", "<s>", "</s>"}
	scores := []float32{0, 0, 0}
	for b := 0; b < 256; b++ {
		toks = append(toks, "<0x"+string("0123456789ABCDEF"[b>>4])+string("0123456789ABCDEF"[b&15])+">")
		scores = append(scores, 0)
	}
	for i, p := range []string{"▁", "a", "b", "c", "ab", "▁ab", "bc", "▁a"} {
		toks = append(toks, p)
		scores = append(scores, float32(-i))
	}
	tk, err := New(Spec{Kind: SPM, Tokens: toks, Scores: scores, BOS: 1, EOS: 2, UNK: 0, AddBOS: true, AddSpacePrefix: true})
	if err != nil {
		t.Fatal(err)
	}
	return tk
}

func TestSPMEncodeDecode(t *testing.T) {
	tk := tinySPM(t)
	id := func(p string) int32 {
		i, ok := tk.ID(p)
		if !ok {
			t.Fatalf("no %q", p)
		}
		return i
	}
	// "ab c\n": ▁ab ▁ c <0x0A>. Merge order: ab (score -4) vs ▁a (-7): ab first, then ▁ab.
	got := tk.Encode("ab c\n", true)
	want := []int32{1, id("▁ab"), id("▁"), id("c"), 3 + '\n'}
	if !slices.Equal(got, want) {
		t.Fatalf("Encode = %v, want %v", got, want)
	}
	if s := tk.Decode(got); s != "ab c\n" {
		t.Fatalf("Decode = %q", s)
	}
	// a character outside the vocabulary falls back to its UTF-8 bytes
	got = tk.Encode("é", false)
	want = []int32{id("▁"), 3 + 0xC3, 3 + 0xA9}
	if !slices.Equal(got, want) {
		t.Fatalf("Encode(é) = %v, want %v", got, want)
	}
	if s := tk.Decode(got); s != "é" {
		t.Fatalf("Decode = %q", s)
	}
}
