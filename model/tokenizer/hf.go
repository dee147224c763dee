package tokenizer

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// maxHFTokens bounds a tokenizer.json vocabulary.
const maxHFTokens = 1 << 22

type hfFile struct {
	AddedTokens []struct {
		ID      int    `json:"id"`
		Content string `json:"content"`
		Special bool   `json:"special"`
	} `json:"added_tokens"`
	Normalizer    json.RawMessage `json:"normalizer"`
	PreTokenizer  json.RawMessage `json:"pre_tokenizer"`
	PostProcessor json.RawMessage `json:"post_processor"`
	Model         struct {
		Type         string            `json:"type"`
		Vocab        map[string]int    `json:"vocab"`
		Merges       []json.RawMessage `json:"merges"`
		ByteFallback bool              `json:"byte_fallback"`
		UnkToken     *string           `json:"unk_token"`
		IgnoreMerges bool              `json:"ignore_merges"`
	} `json:"model"`
}

// ReadHF reads a Hugging Face tokenizer.json with a BPE model, and
// tokenizer_config.json beside it when present (for BOS/EOS).
func ReadHF(path string) (*Tokenizer, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var extra []byte
	if b, err := os.ReadFile(filepath.Join(filepath.Dir(path), "tokenizer_config.json")); err == nil {
		extra = b
	}
	t, err := ParseHF(data, extra)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return t, nil
}

// ParseHF builds a tokenizer from the bytes of tokenizer.json and (optional,
// may be nil) tokenizer_config.json.
func ParseHF(data, config []byte) (*Tokenizer, error) {
	var f hfFile
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("%w: tokenizer.json: %v", ErrFormat, err)
	}
	if f.Model.Type != "BPE" {
		return nil, fmt.Errorf("%w: tokenizer.json model type %q (only BPE is supported)", ErrFormat, f.Model.Type)
	}
	n := 0
	for p, id := range f.Model.Vocab {
		if id < 0 || id >= maxHFTokens {
			return nil, fmt.Errorf("%w: token %q has id %d", ErrFormat, p, id)
		}
		n = max(n, id+1)
	}
	for _, a := range f.AddedTokens {
		if a.ID < 0 || a.ID >= maxHFTokens {
			return nil, fmt.Errorf("%w: added token %q has id %d", ErrFormat, a.Content, a.ID)
		}
		n = max(n, a.ID+1)
	}
	s := Spec{Tokens: make([]string, n), Types: make([]int32, n), BOS: -1, EOS: -1, UNK: -1}
	for i := range s.Types {
		s.Types[i] = TypeUnused
	}
	for p, id := range f.Model.Vocab {
		s.Tokens[id] = p
		s.Types[id] = TypeNormal
	}
	for _, a := range f.AddedTokens {
		s.Tokens[a.ID] = a.Content
		if a.Special {
			s.Types[a.ID] = TypeControl
		} else {
			s.Types[a.ID] = TypeUserDefined
		}
	}
	for _, raw := range f.Model.Merges {
		var str string
		if json.Unmarshal(raw, &str) == nil {
			s.Merges = append(s.Merges, str)
			continue
		}
		var pair []string
		if err := json.Unmarshal(raw, &pair); err != nil || len(pair) != 2 {
			return nil, fmt.Errorf("%w: merge %s is neither \"a b\" nor [a, b]", ErrFormat, raw)
		}
		s.Merges = append(s.Merges, pair[0]+" "+pair[1])
	}
	pre := string(f.PreTokenizer)
	norm := string(f.Normalizer)
	switch {
	case strings.Contains(pre, `"ByteLevel"`):
		s.Kind = ByteLevel
		s.IgnoreMerges = f.Model.IgnoreMerges
		switch {
		case strings.Contains(pre, `"Digits"`):
			s.Pre = "smollm"
		case strings.Contains(pre, `\\p{N}{1,3}`):
			s.Pre = "llama3"
		case strings.Contains(pre, `[^\\r\\n\\p{L}\\p{N}]?\\p{L}+`):
			s.Pre = "qwen2"
		default:
			s.Pre = "gpt2"
		}
	default:
		s.Kind = SPMRanks
		s.AddSpacePrefix = strings.Contains(norm, `"Prepend"`) ||
			(strings.Contains(pre, `"Metaspace"`) && !strings.Contains(pre, `"never"`) && !strings.Contains(pre, `"add_prefix_space":false`))
		for id, ty := range s.Types {
			if _, ok := parseByteToken(s.Tokens[id]); ok && ty == TypeNormal && f.Model.ByteFallback {
				s.Types[id] = TypeByte
			}
		}
	}
	if f.Model.UnkToken != nil {
		if id, ok := f.Model.Vocab[*f.Model.UnkToken]; ok {
			s.UNK = int32(id)
			s.Types[id] = TypeUnknown
		}
	}
	lookup := func(p string) int32 {
		for id, t := range s.Tokens {
			if t == p && p != "" {
				return int32(id)
			}
		}
		return -1
	}
	// BOS/EOS: tokenizer_config.json, else the post-processor's template, else common names.
	var cfg struct {
		BOS    json.RawMessage `json:"bos_token"`
		EOS    json.RawMessage `json:"eos_token"`
		AddBOS *bool           `json:"add_bos_token"`
	}
	if config != nil {
		_ = json.Unmarshal(config, &cfg)
	}
	tokName := func(raw json.RawMessage) string {
		var str string
		if json.Unmarshal(raw, &str) == nil {
			return str
		}
		var obj struct {
			Content string `json:"content"`
		}
		if json.Unmarshal(raw, &obj) == nil {
			return obj.Content
		}
		return ""
	}
	if b := tokName(cfg.BOS); b != "" {
		s.BOS = lookup(b)
	}
	if e := tokName(cfg.EOS); e != "" {
		s.EOS = lookup(e)
	}
	var post struct {
		Type   string `json:"type"`
		Single []struct {
			SpecialToken *struct {
				ID string `json:"id"`
			} `json:"SpecialToken"`
		} `json:"single"`
		Processors []json.RawMessage `json:"processors"`
	}
	_ = json.Unmarshal(f.PostProcessor, &post)
	if post.Type == "Sequence" {
		for _, p := range post.Processors {
			if strings.Contains(string(p), "TemplateProcessing") {
				_ = json.Unmarshal(p, &post)
			}
		}
	}
	if len(post.Single) > 0 && post.Single[0].SpecialToken != nil {
		s.AddBOS = true
		if s.BOS < 0 {
			s.BOS = lookup(post.Single[0].SpecialToken.ID)
		}
	}
	if cfg.AddBOS != nil {
		s.AddBOS = *cfg.AddBOS
	}
	if s.BOS < 0 {
		for _, c := range []string{"<s>", "<|begin_of_text|>"} {
			if s.BOS = lookup(c); s.BOS >= 0 {
				break
			}
		}
	}
	if s.EOS < 0 {
		for _, c := range []string{"</s>", "<|end_of_text|>", "<|endoftext|>", "<|im_end|>"} {
			if s.EOS = lookup(c); s.EOS >= 0 {
				break
			}
		}
	}
	if s.Kind == SPMRanks && s.BOS >= 0 && cfg.AddBOS == nil && len(post.Single) == 0 {
		s.AddBOS = true
	}
	return New(s)
}
