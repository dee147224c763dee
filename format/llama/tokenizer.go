package llama

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/sparsify/sparsify/format/gguf"
)

// llama.cpp token types (llama_token_type).
const (
	tokNormal      int32 = 1
	tokUnknown     int32 = 2
	tokControl     int32 = 3
	tokUserDefined int32 = 4
	tokByte        int32 = 6
)

// maxVocab bounds the vocabulary read from tokenizer.json.
const maxVocab = 1 << 22

type hfTokenizer struct {
	Model struct {
		Type         string          `json:"type"`
		Vocab        map[string]int  `json:"vocab"`
		Merges       json.RawMessage `json:"merges"`
		ByteFallback bool            `json:"byte_fallback"`
		UnkToken     *string         `json:"unk_token"`
	} `json:"model"`
	AddedTokens []struct {
		ID      int    `json:"id"`
		Content string `json:"content"`
		Special bool   `json:"special"`
	} `json:"added_tokens"`
}

// TokenizerFromHF builds tokenizer.ggml.* metadata from a Hugging Face
// tokenizer.json with a BPE model: byte-fallback (SentencePiece-style, Llama 2,
// TinyLlama, Mistral) becomes llama.cpp's "llama" model with scores from the
// token ids; byte-level BPE (Llama 3, Qwen2, SmolLM) becomes "gpt2" with
// its merges. Other tokenizer models are refused.
func TokenizerFromHF(data []byte, cfg Config) ([]gguf.KV, error) {
	var t hfTokenizer
	if err := json.Unmarshal(data, &t); err != nil {
		return nil, fmt.Errorf("tokenizer.json: %w", err)
	}
	if t.Model.Type != "BPE" {
		return nil, fmt.Errorf("tokenizer.json: model type %q is not BPE", t.Model.Type)
	}
	n := 0
	for _, id := range t.Model.Vocab {
		if id < 0 || id >= maxVocab {
			return nil, fmt.Errorf("tokenizer.json: token id %d out of range", id)
		}
		n = max(n, id+1)
	}
	for _, a := range t.AddedTokens {
		if a.ID < 0 || a.ID >= maxVocab {
			return nil, fmt.Errorf("tokenizer.json: added token id %d out of range", a.ID)
		}
		n = max(n, a.ID+1)
	}
	if cfg.VocabSize > n && cfg.VocabSize < maxVocab {
		n = cfg.VocabSize
	}
	tokens := make([]string, n)
	types := make([]int32, n)
	filled := make([]bool, n)
	for s, id := range t.Model.Vocab {
		tokens[id], types[id], filled[id] = s, tokNormal, true
		if t.Model.ByteFallback && len(s) == 6 && strings.HasPrefix(s, "<0x") && strings.HasSuffix(s, ">") {
			if _, err := strconv.ParseUint(s[3:5], 16, 8); err == nil {
				types[id] = tokByte
			}
		}
		if t.Model.UnkToken != nil && s == *t.Model.UnkToken {
			types[id] = tokUnknown
		}
	}
	for _, a := range t.AddedTokens {
		tokens[a.ID], filled[a.ID] = a.Content, true
		types[a.ID] = tokUserDefined
		if a.Special {
			types[a.ID] = tokControl
		}
	}
	for i := range tokens {
		if !filled[i] {
			tokens[i], types[i] = fmt.Sprintf("[PAD%d]", i), tokUserDefined
		}
	}
	var merges []string
	if len(t.Model.Merges) > 0 {
		var raw []json.RawMessage
		if err := json.Unmarshal(t.Model.Merges, &raw); err != nil {
			return nil, fmt.Errorf("tokenizer.json: merges: %w", err)
		}
		for i, r := range raw {
			var s string
			if json.Unmarshal(r, &s) == nil {
				merges = append(merges, s)
				continue
			}
			var p []string
			if err := json.Unmarshal(r, &p); err != nil || len(p) != 2 {
				return nil, fmt.Errorf("tokenizer.json: merge %d is neither \"a b\" nor [a, b]", i)
			}
			merges = append(merges, p[0]+" "+p[1])
		}
	}
	var kvs []gguf.KV
	add := func(k string, v any) { kvs = append(kvs, gguf.KV{Key: k, Value: gguf.MustValue(v)}) }
	if t.Model.ByteFallback {
		scores := make([]float32, n)
		for i := range scores {
			scores[i] = -float32(i)
		}
		add("tokenizer.ggml.model", "llama")
		add("tokenizer.ggml.tokens", tokens)
		add("tokenizer.ggml.scores", scores)
		add("tokenizer.ggml.token_type", types)
	} else {
		add("tokenizer.ggml.model", "gpt2")
		add("tokenizer.ggml.pre", "default")
		add("tokenizer.ggml.tokens", tokens)
		add("tokenizer.ggml.token_type", types)
		add("tokenizer.ggml.merges", merges)
	}
	if cfg.BOS >= 0 {
		add("tokenizer.ggml.bos_token_id", uint32(cfg.BOS))
	}
	if cfg.EOS >= 0 {
		add("tokenizer.ggml.eos_token_id", uint32(cfg.EOS))
	}
	return kvs, nil
}
