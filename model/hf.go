package model

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/sparsify/sparsify/format"
	"github.com/sparsify/sparsify/format/llama"
	"github.com/sparsify/sparsify/format/safetensors"
	"github.com/sparsify/sparsify/model/tokenizer"
)

// multiSource joins the shards of a directory into one format.Source.
type multiSource struct {
	files  []*safetensors.File
	infos  []format.TensorInfo
	byName map[string]*safetensors.File
}

func openShards(paths []string) (*multiSource, error) {
	ms := &multiSource{byName: map[string]*safetensors.File{}}
	for _, p := range paths {
		f, err := safetensors.Open(p)
		if err != nil {
			ms.Close()
			return nil, err
		}
		ms.files = append(ms.files, f)
		for _, ti := range f.Tensors() {
			if _, dup := ms.byName[ti.Name]; dup {
				ms.Close()
				return nil, &format.FormatError{File: p, Tensor: ti.Name, Offset: ti.Offset, Msg: "tensor also stored in another shard"}
			}
			ms.byName[ti.Name] = f
			ms.infos = append(ms.infos, ti)
		}
	}
	return ms, nil
}

func (ms *multiSource) Tensors() []format.TensorInfo { return ms.infos }
func (ms *multiSource) Open(name string) (io.ReadCloser, error) {
	f, ok := ms.byName[name]
	if !ok {
		return nil, fmt.Errorf("%w: %q", format.ErrNotFound, name)
	}
	return f.Open(name)
}
func (ms *multiSource) Close() error {
	var errs []error
	for _, f := range ms.files {
		errs = append(errs, f.Close())
	}
	return errors.Join(errs...)
}

// LoadHF reads a Hugging Face directory (config.json, *.safetensors) or a
// single .safetensors file with config.json beside it. Weights use the
// rotate-half RoPE convention. The tokenizer comes from tokenizer.json, or
// from tokenizer.gguf.json (the GGUF tokenizer metadata our GGUF→HF
// conversion writes), whichever is present (the latter first).
func LoadHF(path string) (*Model, *tokenizer.Tokenizer, error) {
	dir, shards := path, []string(nil)
	if st, err := os.Stat(path); err != nil {
		return nil, nil, err
	} else if !st.IsDir() {
		dir, shards = filepath.Dir(path), []string{path}
	} else {
		ents, err := os.ReadDir(dir)
		if err != nil {
			return nil, nil, err
		}
		for _, e := range ents {
			if !e.IsDir() && strings.HasSuffix(e.Name(), ".safetensors") {
				shards = append(shards, filepath.Join(dir, e.Name()))
			}
		}
		sort.Strings(shards)
	}
	if len(shards) == 0 {
		return nil, nil, fmt.Errorf("%w: %s: no .safetensors files", format.ErrFormat, dir)
	}
	cfgData, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err != nil {
		return nil, nil, fmt.Errorf("%s: reading config.json: %w", dir, err)
	}
	lc, raw, err := llama.ParseHFConfig(cfgData)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", dir, err)
	}
	c, err := configFromLlama(lc)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", dir, err)
	}
	if b, ok := raw["attention_bias"].(bool); ok && b {
		c.QKVBias = true
	}
	c.RopeInterleaved = false
	src, err := openShards(shards)
	if err != nil {
		return nil, nil, err
	}
	defer src.Close()
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
