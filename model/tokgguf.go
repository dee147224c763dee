package model

import (
	"fmt"

	"github.com/sparsify/sparsify/format/gguf"
	"github.com/sparsify/sparsify/model/tokenizer"
)

// TokenizerFromGGUF builds a tokenizer from GGUF tokenizer.ggml.* metadata:
// model "llama" (SentencePiece scores) or "gpt2" (byte-level merges).
func TokenizerFromGGUF(kvs []gguf.KV) (*tokenizer.Tokenizer, error) {
	m := make(map[string]gguf.Value, len(kvs))
	for _, kv := range kvs {
		m[kv.Key] = kv.Value
	}
	str := func(k string) string {
		s, _ := m[k].Data.(string)
		return s
	}
	id := func(k string) int32 {
		v, ok := m[k]
		if !ok {
			return -1
		}
		i, ok := v.Int()
		if !ok || i < 0 || i > 1<<30 {
			return -1
		}
		return int32(i)
	}
	flag := func(k string, def bool) bool {
		if b, ok := m[k].Data.(bool); ok {
			return b
		}
		return def
	}
	toks, ok := m["tokenizer.ggml.tokens"].Data.([]string)
	if !ok {
		return nil, fmt.Errorf("%w: no tokenizer.ggml.tokens string array", ErrNoTokenizer)
	}
	s := tokenizer.Spec{Tokens: toks, BOS: id("tokenizer.ggml.bos_token_id"), EOS: id("tokenizer.ggml.eos_token_id"),
		UNK: id("tokenizer.ggml.unknown_token_id"), Pre: str("tokenizer.ggml.pre")}
	if v, ok := m["tokenizer.ggml.token_type"]; ok {
		tt, err := int32Slice(v)
		if err != nil {
			return nil, fmt.Errorf("tokenizer.ggml.token_type: %w", err)
		}
		s.Types = tt
	}
	switch mod := str("tokenizer.ggml.model"); mod {
	case "llama", "":
		s.Kind = tokenizer.SPM
		sc, ok := m["tokenizer.ggml.scores"].Data.([]float32)
		if !ok {
			return nil, fmt.Errorf("%w: SentencePiece vocabulary without tokenizer.ggml.scores float32 array", tokenizer.ErrFormat)
		}
		s.Scores = sc
		s.AddBOS = flag("tokenizer.ggml.add_bos_token", true)
		s.AddSpacePrefix = flag("tokenizer.ggml.add_space_prefix", true)
	case "gpt2":
		s.Kind = tokenizer.ByteLevel
		s.Merges, _ = m["tokenizer.ggml.merges"].Data.([]string)
		s.AddBOS = flag("tokenizer.ggml.add_bos_token", false)
		if s.Pre == "default" {
			s.Pre = "gpt2"
		}
		s.IgnoreMerges = s.Pre == "llama-bpe" || s.Pre == "llama3" // as llama.cpp does for LLAMA3
	default:
		return nil, fmt.Errorf("%w: tokenizer model %q", tokenizer.ErrFormat, mod)
	}
	return tokenizer.New(s)
}

func int32Slice(v gguf.Value) ([]int32, error) {
	switch d := v.Data.(type) {
	case []int32:
		return d, nil
	case []uint32:
		out := make([]int32, len(d))
		for i, x := range d {
			out[i] = int32(x)
		}
		return out, nil
	case []int64:
		out := make([]int32, len(d))
		for i, x := range d {
			out[i] = int32(x)
		}
		return out, nil
	}
	return nil, fmt.Errorf("%w: want an integer array, have %v", tokenizer.ErrFormat, v.Type)
}
