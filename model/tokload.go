package model

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/sparsify/sparsify/format/llama"
	"github.com/sparsify/sparsify/model/tokenizer"
)

// LoadTokenizer reads a tokenizer file on its own: a Hugging Face
// tokenizer.json, a tokenizer.gguf.json (GGUF tokenizer metadata as JSON), a
// GGUF file's tokenizer.ggml.* metadata, or a llama2.c tokenizer.bin (vocab
// is the model's vocabulary size, which that format does not store).
func LoadTokenizer(path string, vocab int) (*tokenizer.Tokenizer, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	switch {
	case bytes.HasPrefix(data, []byte("GGUF")):
		_, tok, err := LoadGGUF(path)
		return tok, err
	case strings.HasSuffix(path, ".json") && bytes.Contains(data, []byte(`"tokenizer.ggml.`)):
		kvs, err := llama.ParseTokenizerJSON(data)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		tok, err := TokenizerFromGGUF(kvs)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		return tok, nil
	case strings.HasSuffix(path, ".json"):
		return tokenizer.ReadHF(path)
	}
	return tokenizer.ParseLlama2C(path, data, vocab)
}

// LoadWithTokenizer is Load with the tokenizer taken from tokPath when it is
// not "" (a model without a tokenizer of its own is then fine).
func LoadWithTokenizer(path, tokPath string) (*Model, *tokenizer.Tokenizer, error) {
	m, tok, err := Load(path)
	if tokPath == "" {
		return m, tok, err
	}
	if err != nil && (m == nil || !errors.Is(err, ErrNoTokenizer)) {
		return nil, nil, err
	}
	if tok, err = LoadTokenizer(tokPath, m.Config.Vocab); err != nil {
		return nil, nil, err
	}
	if tok.VocabSize() > m.Config.Vocab {
		return nil, nil, fmt.Errorf("model: tokenizer %s has %d tokens, the model's vocabulary %d", tokPath, tok.VocabSize(), m.Config.Vocab)
	}
	return m, tok, nil
}
