// Package train builds the demo model sparsify ships: a tiny LLaMA-architecture
// checkpoint trained from scratch with the model package's backward pass on
// the King James Version of the Bible (public domain, from Debian's
// bible-kjv-text package). It holds the text preparation, a SentencePiece-style
// BPE vocabulary trainer, the training loop and the GGUF writer.
package train

import (
	"fmt"
	"sort"
	"strings"

	"github.com/sparsify/sparsify/model/tokenizer"
)

// Vocabulary layout, as llama2.c's and stories260K's: 0 <unk>, 1 <s>, 2 </s>,
// 3..258 the byte tokens <0x00>..<0xFF>, merges from 259 on.
const (
	UNK, BOS, EOS = 0, 1, 2
	numBase       = 259
	spmSpace      = "▁"
)

// Vocab is a SentencePiece-style BPE vocabulary in GGUF terms
// (tokenizer.ggml.tokens / scores / token_type).
type Vocab struct {
	Tokens []string
	Scores []float32
	Types  []int32
}

// Spec is the tokenizer spec for this vocabulary: SentencePiece BPE by
// scores with byte fallback, a dummy prefix space and BOS.
func (v *Vocab) Spec() tokenizer.Spec {
	return tokenizer.Spec{Kind: tokenizer.SPM, Tokens: v.Tokens, Scores: v.Scores, Types: v.Types,
		BOS: BOS, EOS: EOS, UNK: UNK, AddBOS: true, AddSpacePrefix: true}
}

// TrainBPE builds a vocabulary of size pieces from paragraphs: the 259 base
// tokens, then every character of the text, then merges. Words are split at
// spaces, each word starting with ▁ (SentencePiece's dummy prefix and space
// marker), and merges never cross a word boundary. Merge k (0-based) gets
// score −k (characters score below every merge), so
// the SentencePiece encoder (highest score first) replays the merges in the
// order they were learnt. Ties between equally frequent pairs go to the
// lexicographically smallest pair, so the result is deterministic.
func TrainBPE(paragraphs []string, size int) (*Vocab, error) {
	if size <= numBase || size > 1<<16 {
		return nil, fmt.Errorf("train: vocabulary size %d: want %d < size ≤ 65536", size, numBase)
	}
	v := &Vocab{}
	add := func(piece string, score float32, typ int32) {
		v.Tokens = append(v.Tokens, piece)
		v.Scores = append(v.Scores, score)
		v.Types = append(v.Types, typ)
	}
	add("<unk>", 0, tokenizer.TypeUnknown)
	add("<s>", 0, tokenizer.TypeControl)
	add("</s>", 0, tokenizer.TypeControl)
	for b := 0; b < 256; b++ {
		add(fmt.Sprintf("<0x%02X>", b), 0, tokenizer.TypeByte)
	}
	// word frequencies
	freq := map[string]int{}
	for _, p := range paragraphs {
		for _, w := range strings.Fields(p) {
			freq[spmSpace+w]++
		}
	}
	type word struct {
		syms []string
		n    int
	}
	keys := make([]string, 0, len(freq))
	for w := range freq {
		keys = append(keys, w)
	}
	sort.Strings(keys)
	words := make([]word, len(keys))
	for i, w := range keys {
		var syms []string
		for _, r := range w {
			syms = append(syms, string(r))
		}
		words[i] = word{syms, freq[w]}
	}
	// The alphabet (every character of the text, ▁ included) comes first, as
	// in SentencePiece vocabularies: the encoder starts from characters, and
	// one without a piece of its own would fall back to its UTF-8 bytes.
	alpha := map[string]bool{}
	for _, w := range words {
		for _, s := range w.syms {
			alpha[s] = true
		}
	}
	chars := make([]string, 0, len(alpha))
	for c := range alpha {
		chars = append(chars, c)
	}
	sort.Strings(chars)
	if len(v.Tokens)+len(chars) >= size {
		return nil, fmt.Errorf("train: vocabulary size %d leaves no room for merges after %d characters", size, len(chars))
	}
	type pair struct{ a, b string }
	seen := map[string]bool{}
	for _, c := range chars {
		seen[c] = true
	}
	firstMerge := len(v.Tokens) + len(chars)
	for i, c := range chars {
		// below every merge; never used for merging (single characters)
		add(c, -float32(size+i), tokenizer.TypeNormal)
	}
	for len(v.Tokens) < size {
		counts := map[pair]int{}
		for _, w := range words {
			for i := 0; i+1 < len(w.syms); i++ {
				counts[pair{w.syms[i], w.syms[i+1]}] += w.n
			}
		}
		var best pair
		bestN := 0
		for p, n := range counts {
			if seen[p.a+p.b] {
				continue
			}
			if n > bestN || (n == bestN && (p.a < best.a || (p.a == best.a && p.b < best.b))) {
				best, bestN = p, n
			}
		}
		if bestN < 2 {
			return nil, fmt.Errorf("train: text too small for %d tokens (stopped at %d)", size, len(v.Tokens))
		}
		merged := best.a + best.b
		seen[merged] = true
		add(merged, -float32(len(v.Tokens)-firstMerge), tokenizer.TypeNormal)
		for wi := range words {
			s := words[wi].syms
			out := s[:0]
			for i := 0; i < len(s); i++ {
				if i+1 < len(s) && s[i] == best.a && s[i+1] == best.b {
					out = append(out, merged)
					i++
				} else {
					out = append(out, s[i])
				}
			}
			words[wi].syms = out
		}
	}
	return v, nil
}
