package tokenizer

import (
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
)

// TestPreTokenizers compares the hand-written matchers with the original
// regexes as Python's regex module applies them (testdata/pretok.json).
func TestPreTokenizers(t *testing.T) {
	data, err := os.ReadFile("testdata/pretok.json")
	if err != nil {
		t.Fatal(err)
	}
	var g struct {
		Texts  []string              `json:"texts"`
		Splits map[string][][]string `json:"splits"`
	}
	if err := json.Unmarshal(data, &g); err != nil {
		t.Fatal(err)
	}
	for fam, want := range g.Splits {
		p, err := newPreTokenizer(fam)
		if err != nil {
			t.Fatal(err)
		}
		for i, text := range g.Texts {
			if got := p.split(text); !slices.Equal(got, want[i]) {
				t.Errorf("%s %q:\n got %q\nwant %q", fam, text, got, want[i])
			}
		}
	}
}

// byteLevelJSON is a tokenizer.json with the 256 byte characters and a few merges.
func byteLevelJSON(t *testing.T, pattern string) []byte {
	t.Helper()
	vocab := map[string]int{}
	for b := 0; b < 256; b++ {
		vocab[string(byteToRune[b])] = b
	}
	merges := []string{"Ġ w", "o r", "Ġw or", "l d", "Ġwor ld", "h e", "he l", "hel l", "hell o"}
	for _, m := range merges {
		vocab[strings.ReplaceAll(m, " ", "")] = len(vocab)
	}
	added := []map[string]any{{"id": len(vocab), "content": "<|begin_of_text|>", "special": true},
		{"id": len(vocab) + 1, "content": "<|end_of_text|>", "special": true}}
	tj := map[string]any{
		"added_tokens": added,
		"pre_tokenizer": map[string]any{"type": "Sequence", "pretokenizers": []any{
			map[string]any{"type": "Split", "pattern": map[string]any{"Regex": pattern}, "behavior": "Isolated"},
			map[string]any{"type": "ByteLevel", "add_prefix_space": false}}},
		"post_processor": map[string]any{"type": "TemplateProcessing",
			"single": []any{map[string]any{"SpecialToken": map[string]any{"id": "<|begin_of_text|>", "type_id": 0}},
				map[string]any{"Sequence": map[string]any{"id": "A", "type_id": 0}}}},
		"model": map[string]any{"type": "BPE", "vocab": vocab, "merges": merges},
	}
	b, err := json.Marshal(tj)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestByteLevelBPE(t *testing.T) {
	tk, err := ParseHF(byteLevelJSON(t, `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`), nil)
	if err != nil {
		t.Fatal(err)
	}
	if tk.Kind() != ByteLevel || tk.spec.Pre != "llama3" {
		t.Fatalf("kind %v pre %q", tk.Kind(), tk.spec.Pre)
	}
	id := func(p string) int32 {
		i, ok := tk.ID(p)
		if !ok {
			t.Fatalf("no piece %q", p)
		}
		return i
	}
	bos := id("<|begin_of_text|>")
	got := tk.Encode("hello world<|end_of_text|>!", true)
	want := []int32{bos, id("hello"), id("Ġworld"), id("<|end_of_text|>"), '!'}
	if !slices.Equal(got, want) {
		t.Fatalf("Encode = %v, want %v", got, want)
	}
	if tk.BOS() != bos || tk.EOS() != id("<|end_of_text|>") {
		t.Fatalf("bos %d eos %d", tk.BOS(), tk.EOS())
	}
	for _, s := range []string{"héllo wörld 日本 😀\n\n\ttabs", "", " ", "x'S 123456"} {
		ids := tk.Encode(s, false)
		if d := tk.Decode(ids); d != s {
			t.Fatalf("Decode(Encode(%q)) = %q", s, d)
		}
	}
}

// TestSPMConvertedBPE is a Llama-2-style tokenizer.json: ▁ for spaces, a
// Prepend normalizer, byte fallback, merges by rank.
func TestSPMConvertedBPE(t *testing.T) {
	vocab := map[string]int{"<unk>": 0, "<s>": 1, "</s>": 2}
	for b := 0; b < 256; b++ {
		vocab[fmt.Sprintf("<0x%02X>", b)] = 3 + b
	}
	for _, p := range []string{"▁", "a", "b", "ab", "▁ab", "▁a"} {
		vocab[p] = len(vocab)
	}
	tj := map[string]any{
		"added_tokens": []any{map[string]any{"id": 0, "content": "<unk>", "special": true},
			map[string]any{"id": 1, "content": "<s>", "special": true}, map[string]any{"id": 2, "content": "</s>", "special": true}},
		"normalizer": map[string]any{"type": "Sequence", "normalizers": []any{
			map[string]any{"type": "Prepend", "prepend": "▁"}, map[string]any{"type": "Replace", "pattern": map[string]any{"String": " "}, "content": "▁"}}},
		"model": map[string]any{"type": "BPE", "vocab": vocab, "merges": [][]string{{"a", "b"}, {"▁", "ab"}, {"▁", "a"}},
			"byte_fallback": true, "unk_token": "<unk>"},
	}
	b, _ := json.Marshal(tj)
	tk, err := ParseHF(b, []byte(`{"bos_token": "<s>", "eos_token": {"content": "</s>"}}`))
	if err != nil {
		t.Fatal(err)
	}
	got := tk.Encode("ab a\n", true)
	want := []int32{1, int32(vocab["▁ab"]), int32(vocab["▁a"]), 3 + '\n'}
	if !slices.Equal(got, want) {
		t.Fatalf("Encode = %v, want %v", got, want)
	}
	if s := tk.Decode(got); s != "ab a\n" {
		t.Fatalf("Decode = %q", s)
	}
	if tk.EOS() != 2 || tk.BOS() != 1 {
		t.Fatalf("bos %d eos %d", tk.BOS(), tk.EOS())
	}
}

// TestIgnoreMerges: with ignore_merges a word in the vocabulary is one token
// even when no merge chain builds it.
func TestIgnoreMerges(t *testing.T) {
	var tj map[string]any
	if err := json.Unmarshal(byteLevelJSON(t, `\p{N}{1,3}`), &tj); err != nil {
		t.Fatal(err)
	}
	m := tj["model"].(map[string]any)
	vocab := m["vocab"].(map[string]any)
	vocab["xyz"] = float64(5000)
	for _, ignore := range []bool{false, true} {
		m["ignore_merges"] = ignore
		b, _ := json.Marshal(tj)
		tk, err := ParseHF(b, nil)
		if err != nil {
			t.Fatal(err)
		}
		got := tk.Encode("xyz", false)
		if want := map[bool]int{false: 3, true: 1}[ignore]; len(got) != want {
			t.Fatalf("ignore_merges=%v: %v", ignore, got)
		}
	}
}
