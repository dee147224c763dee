// Package tokenizer encodes text to token ids and back for LLaMA-family
// models: SentencePiece-style BPE driven by piece scores (GGUF
// tokenizer.ggml.model "llama", llama2.c tokenizer.bin), and Hugging Face
// tokenizer.json BPE driven by merge ranks, both the SentencePiece-converted
// kind (▁ for spaces, byte fallback; Llama 2, TinyLlama) and the byte-level
// kind (GPT-2 byte alphabet after a regex pre-tokenizer; Llama 3, Qwen2,
// SmolLM).
//
// A Tokenizer is immutable after construction and safe for concurrent use.
package tokenizer

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// ErrFormat wraps every error about a malformed vocabulary.
var ErrFormat = errors.New("tokenizer: invalid vocabulary")

// Kind is the encoding algorithm.
type Kind int

const (
	// SPM is SentencePiece BPE: merges chosen by the highest piece score,
	// spaces as ▁, a dummy prefix space, unknown characters as <0xNN> bytes.
	SPM Kind = iota
	// SPMRanks is the SentencePiece model converted to Hugging Face BPE:
	// like SPM but merges chosen by the lowest merge rank.
	SPMRanks
	// ByteLevel is GPT-2-style BPE: text split by a regex pre-tokenizer,
	// bytes mapped to printable characters, merges by rank.
	ByteLevel
)

// Token types as GGUF stores them (tokenizer.ggml.token_type).
const (
	TypeNormal      int32 = 1
	TypeUnknown     int32 = 2
	TypeControl     int32 = 3
	TypeUserDefined int32 = 4
	TypeUnused      int32 = 5
	TypeByte        int32 = 6
)

// Spec is everything a tokenizer is built from, in GGUF's vocabulary terms.
type Spec struct {
	Kind   Kind
	Tokens []string  // piece per id (▁ for space in SPM kinds; GPT-2 byte alphabet in ByteLevel)
	Scores []float32 // SPM: merge priority per id (higher first); nil otherwise
	Types  []int32   // per id, nil = infer (<0xNN> bytes, <s>/</s>/<unk> control)
	Merges []string  // SPMRanks/ByteLevel: "left right", rank = index
	// Pre names the ByteLevel pre-tokenizer regex family: "llama3" (default),
	// "qwen2", "gpt2", "smollm".
	Pre            string
	BOS, EOS, UNK  int32 // -1 when absent
	AddBOS         bool  // Encode with bos=true prepends BOS only when this is set
	AddSpacePrefix bool  // SPM: prepend a space to the text (dummy prefix)
	// IgnoreMerges (ByteLevel): a pre-tokenized word that is itself in the
	// vocabulary is one token, merges are not consulted (Llama 3's
	// tokenizer.json "ignore_merges", llama.cpp's llama-bpe).
	IgnoreMerges bool
}

// Tokenizer encodes and decodes text.
type Tokenizer struct {
	spec   Spec
	ids    map[string]int32
	ranks  map[[2]string]int // SPMRanks, ByteLevel
	byteID [256]int32        // id of <0xNN> (SPM kinds) or of the byte's character (ByteLevel), -1 if none
	pre    preTokenizer
	// special tokens matched verbatim in the text before encoding (ByteLevel
	// added tokens such as <|endoftext|>), longest first.
	special []string
}

// New builds a tokenizer and checks its vocabulary.
func New(s Spec) (*Tokenizer, error) {
	n := len(s.Tokens)
	if n == 0 || n > 1<<24 {
		return nil, fmt.Errorf("%w: %d tokens", ErrFormat, n)
	}
	if s.Scores != nil && len(s.Scores) != n {
		return nil, fmt.Errorf("%w: %d scores for %d tokens", ErrFormat, len(s.Scores), n)
	}
	if s.Types != nil && len(s.Types) != n {
		return nil, fmt.Errorf("%w: %d token types for %d tokens", ErrFormat, len(s.Types), n)
	}
	for _, id := range []int32{s.BOS, s.EOS, s.UNK} {
		if id < -1 || int(id) >= n {
			return nil, fmt.Errorf("%w: special token id %d outside the vocabulary of %d", ErrFormat, id, n)
		}
	}
	if s.Kind == SPM && s.Scores == nil {
		return nil, fmt.Errorf("%w: SentencePiece vocabulary without scores", ErrFormat)
	}
	t := &Tokenizer{spec: s, ids: make(map[string]int32, n)}
	if t.spec.Types == nil {
		t.spec.Types = make([]int32, n)
		for i, p := range s.Tokens {
			t.spec.Types[i] = inferType(p, int32(i), s)
		}
	}
	for i := n - 1; i >= 0; i-- { // first id wins for duplicate pieces
		t.ids[s.Tokens[i]] = int32(i)
	}
	for b := range t.byteID {
		t.byteID[b] = -1
	}
	switch s.Kind {
	case SPM, SPMRanks:
		for i, p := range s.Tokens {
			if b, ok := parseByteToken(p); ok && t.byteID[b] < 0 {
				t.byteID[b] = int32(i)
			}
		}
	case ByteLevel:
		for b := 0; b < 256; b++ {
			if id, ok := t.ids[string(byteToRune[b])]; ok {
				t.byteID[b] = id
			}
		}
		pre, err := newPreTokenizer(s.Pre)
		if err != nil {
			return nil, err
		}
		t.pre = pre
	default:
		return nil, fmt.Errorf("%w: unknown kind %d", ErrFormat, s.Kind)
	}
	if s.Kind != SPM {
		t.ranks = make(map[[2]string]int, len(s.Merges))
		for r, m := range s.Merges {
			a, b, ok := strings.Cut(m, " ")
			if !ok || a == "" || b == "" {
				return nil, fmt.Errorf("%w: merge %d %q is not two pieces", ErrFormat, r, m)
			}
			k := [2]string{a, b}
			if _, dup := t.ranks[k]; !dup {
				t.ranks[k] = r
			}
		}
	}
	for i, p := range s.Tokens {
		if ty := t.spec.Types[i]; (ty == TypeControl || ty == TypeUserDefined) && s.Kind == ByteLevel && p != "" {
			t.special = append(t.special, p)
		}
	}
	sortByLenDesc(t.special)
	return t, nil
}

func inferType(p string, id int32, s Spec) int32 {
	switch {
	case id == s.UNK:
		return TypeUnknown
	case id == s.BOS || id == s.EOS:
		return TypeControl
	}
	if s.Kind != ByteLevel {
		if _, ok := parseByteToken(p); ok {
			return TypeByte
		}
	}
	return TypeNormal
}

// parseByteToken recognises "<0xNN>".
func parseByteToken(p string) (byte, bool) {
	if len(p) != 6 || p[:3] != "<0x" || p[5] != '>' {
		return 0, false
	}
	var v byte
	for _, c := range []byte(p[3:5]) {
		switch {
		case c >= '0' && c <= '9':
			v = v<<4 | (c - '0')
		case c >= 'A' && c <= 'F':
			v = v<<4 | (c - 'A' + 10)
		case c >= 'a' && c <= 'f':
			v = v<<4 | (c - 'a' + 10)
		default:
			return 0, false
		}
	}
	return v, true
}

// VocabSize is the number of token ids.
func (t *Tokenizer) VocabSize() int { return len(t.spec.Tokens) }

// BOS is the beginning-of-sequence id (-1 if none).
func (t *Tokenizer) BOS() int32 { return t.spec.BOS }

// EOS is the end-of-sequence id (-1 if none).
func (t *Tokenizer) EOS() int32 { return t.spec.EOS }

// Kind is the encoding algorithm.
func (t *Tokenizer) Kind() Kind { return t.spec.Kind }

// Piece is the stored piece of one id ("" if out of range).
func (t *Tokenizer) Piece(id int32) string {
	if id < 0 || int(id) >= len(t.spec.Tokens) {
		return ""
	}
	return t.spec.Tokens[id]
}

// ID looks up a piece.
func (t *Tokenizer) ID(piece string) (int32, bool) {
	id, ok := t.ids[piece]
	return id, ok
}

// Encode tokenizes text. With bos, the BOS id is prepended when the vocabulary
// has one (as llama.cpp and llama2.c do for every SentencePiece model; for
// ByteLevel vocabularies only when the vocabulary asks for it).
func (t *Tokenizer) Encode(text string, bos bool) []int32 {
	var out []int32
	if bos && t.spec.BOS >= 0 && (t.spec.Kind != ByteLevel || t.spec.AddBOS) {
		out = append(out, t.spec.BOS)
	}
	switch t.spec.Kind {
	case SPM, SPMRanks:
		if text == "" {
			return out
		}
		if t.spec.AddSpacePrefix {
			text = " " + text
		}
		text = strings.ReplaceAll(text, " ", "▁")
		return t.encodeSPM(out, text)
	default:
		return t.encodeByteLevel(out, text)
	}
}

// Decode turns ids back into text. Control tokens (BOS, EOS) are skipped; for
// SentencePiece vocabularies ▁ becomes a space, <0xNN> pieces become bytes and
// the dummy prefix space of the first piece is removed.
func (t *Tokenizer) Decode(ids []int32) string {
	var sb strings.Builder
	prev := int32(-1)
	if t.spec.Kind != ByteLevel && t.spec.AddSpacePrefix {
		prev = t.spec.BOS // the first piece's leading space is the dummy prefix
		if prev < 0 {
			prev = -2
		}
	}
	for _, id := range ids {
		sb.WriteString(t.DecodeToken(prev, id))
		prev = id
	}
	return sb.String()
}

// DecodeToken returns the text of one id following prev (for streaming):
// after BOS (or at the start, prev = -2) the dummy prefix space is dropped.
func (t *Tokenizer) DecodeToken(prev, id int32) string {
	if id < 0 || int(id) >= len(t.spec.Tokens) {
		return ""
	}
	ty := t.spec.Types[id]
	if ty == TypeControl || ty == TypeUnknown || ty == TypeUnused {
		if ty == TypeUnknown {
			return "\uFFFD"
		}
		return ""
	}
	p := t.spec.Tokens[id]
	if t.spec.Kind == ByteLevel {
		if ty == TypeUserDefined {
			return p
		}
		var b []byte
		for _, r := range p {
			if v, ok := runeToByte[r]; ok {
				b = append(b, v)
			} else {
				b = utf8.AppendRune(b, r)
			}
		}
		return string(b)
	}
	if v, ok := parseByteToken(p); ok && ty == TypeByte {
		return string([]byte{v})
	}
	s := strings.ReplaceAll(p, "▁", " ")
	if t.spec.AddSpacePrefix && (prev == -2 || (prev >= 0 && prev == t.spec.BOS)) && strings.HasPrefix(s, " ") {
		s = s[1:]
	}
	return s
}
