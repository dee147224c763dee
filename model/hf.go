package model

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/sparsify/sparsify/format"
	"github.com/sparsify/sparsify/format/llama"
	"github.com/sparsify/sparsify/format/safetensors"
	"github.com/sparsify/sparsify/model/tokenizer"
	"github.com/sparsify/sparsify/pack"
)

// LoadHF reads a Hugging Face directory (config.json, *.safetensors) or a
// single .safetensors file with config.json beside it. Weights use the
// rotate-half RoPE convention. The tokenizer comes from tokenizer.json, or
// from tokenizer.gguf.json (the GGUF tokenizer metadata our GGUF→HF
// conversion writes), whichever is present (the latter first).
func LoadHF(path string) (*Model, *tokenizer.Tokenizer, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, nil, err
	}
	dir := path
	var raw format.Source
	if st.IsDir() {
		d, err := safetensors.OpenDir(path)
		if err != nil {
			return nil, nil, err
		}
		raw = d
	} else {
		dir = filepath.Dir(path)
		f, err := safetensors.Open(path)
		if err != nil {
			return nil, nil, err
		}
		raw = f
	}
	defer raw.Close()
	cfgData, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err != nil {
		return nil, nil, fmt.Errorf("%s: reading config.json: %w", dir, err)
	}
	lc, rawCfg, err := llama.ParseHFConfig(cfgData)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", dir, err)
	}
	c, err := configFromLlama(lc)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", dir, err)
	}
	if b, ok := rawCfg["attention_bias"].(bool); ok && b {
		c.QKVBias = true
	}
	c.RopeInterleaved = false
	groups, err := pack.FindPacked(raw.Tensors())
	if err != nil {
		return nil, nil, err
	}
	src, err := pack.OpenExpanded(raw)
	if err != nil {
		return nil, nil, err
	}
	if ti, ok := format.Lookup(src, hfNames.embed); ok && len(ti.Shape) == 2 && ti.Shape[0] > 0 && ti.Shape[0] <= 1<<24 {
		c.Vocab = int(ti.Shape[0]) // the embedding's rows are the model's vocabulary
	}
	if !c.QKVBias {
		if _, ok := format.Lookup(src, hfNames.layer(0, "q.bias")); ok {
			c.QKVBias = true
		}
	}
	if _, ok := format.Lookup(src, hfNames.output); !ok {
		c.Tied = true
	}
	m, err := build(src, c, hfNames)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", dir, err)
	}
	m.Source = "hf"
	if len(groups) > 0 {
		m.Source = "sparse"
	}
	tok, err := tokenizerBeside(dir)
	if err != nil {
		return m, nil, err
	}
	return m, tok, nil
}

// tokenizerBeside finds the tokenizer of a Hugging Face directory.
func tokenizerBeside(dir string) (*tokenizer.Tokenizer, error) {
	p := filepath.Join(dir, llama.TokenizerFile)
	data, err := os.ReadFile(p)
	if err == nil {
		kvs, err := llama.ParseTokenizerJSON(data)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		tok, err := TokenizerFromGGUF(kvs)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		return tok, nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	p = filepath.Join(dir, "tokenizer.json")
	if _, err := os.Stat(p); err != nil {
		return nil, fmt.Errorf("%w in %s (want tokenizer.json or %s)", ErrNoTokenizer, dir, llama.TokenizerFile)
	}
	return tokenizer.ReadHF(p)
}
