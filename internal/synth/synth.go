// Package synth writes tiny (or large) random LLaMA-shaped checkpoints, as a
// Hugging Face directory or a GGUF file, for tests, demos and benchmarks.
// Tensor bytes are generated on the fly from the seed, so a multi-gigabyte
// checkpoint costs no memory; the same (Config, seed) always gives the same
// bytes, and a HF directory and a GGUF written with the same arguments hold
// the same weights (q/k rows permuted as llama.cpp's converter does).
package synth

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"

	"github.com/sparsify/sparsify/format"
	"github.com/sparsify/sparsify/format/gguf"
	"github.com/sparsify/sparsify/format/llama"
	"github.com/sparsify/sparsify/format/safetensors"
)

// Config is the shape of a synthetic model.
type Config struct {
	Hidden  int // hidden size
	Layers  int
	Heads   int
	KVHeads int
	FFN     int // intermediate size
	Vocab   int
	Context int          // max_position_embeddings (default 256)
	DType   format.DType // F32, F16 or BF16 (default BF16)
	Tied    bool         // no lm_head/output tensor
	// Sparse24 makes every block linear weight 2:4 along its rows already
	// (two zeros in every group of 4).
	Sparse24 bool
	// Arch is "llama" (default) or "qwen2" (q/k/v biases, no permutation).
	Arch string
}

// Tiny is a 2-layer model whose linear shapes fit every layout: hidden 64,
// 4 heads (2 KV), FFN 128, vocabulary 256, BF16.
func Tiny() Config {
	return Config{Hidden: 64, Layers: 2, Heads: 4, KVHeads: 2, FFN: 128, Vocab: 256, DType: format.BF16}
}

// ForBytes is a LLaMA-shaped BF16 config of about n bytes (at least 4
// layers; hidden a multiple of 256, FFN = 8/3 hidden rounded to 256).
func ForBytes(n int64) Config {
	c := Config{Layers: 4, Vocab: 8192, DType: format.BF16}
	for h := 256; ; h += 256 {
		c.Hidden, c.Heads, c.KVHeads = h, h/64, h/256
		c.FFN = (h*8/3 + 255) / 256 * 256
		if c.Bytes() >= n {
			return c
		}
		if h >= 4096 {
			c.Layers = int(n/c.Bytes()*int64(c.Layers)) + 1
			return c
		}
	}
}

func (c Config) withDefaults() Config {
	if c.DType == format.Invalid {
		c.DType = format.BF16
	}
	if c.KVHeads == 0 {
		c.KVHeads = c.Heads
	}
	if c.Context == 0 {
		c.Context = 256
	}
	if c.Arch == "" {
		c.Arch = "llama"
	}
	return c
}

// Bytes is the total tensor bytes of the model.
func (c Config) Bytes() int64 {
	var n int64
	for _, t := range c.tensors() {
		n += t.size
	}
	return n
}

type spec struct {
	hf    string
	shape []int64
	dt    format.DType
	norm  bool // 1-D norm (ones)
	kind  int  // 0 normal, 1 ones, 2 bias
	size  int64
	heads int // q/k permutation heads for GGUF
	lin   bool
}

func (c Config) tensors() []spec {
	c = c.withDefaults()
	es := int64(2)
	if c.DType == format.F32 {
		es = 4
	}
	hd := c.Hidden / c.Heads
	var out []spec
	add := func(name string, kind int, heads int, lin bool, shape ...int64) {
		n := int64(1)
		for _, d := range shape {
			n *= d
		}
		dt := c.DType
		size := n * es
		if kind != 0 { // norms and biases are F32, as in llama.cpp GGUFs
			dt, size = format.F32, n*4
		}
		out = append(out, spec{hf: name, shape: shape, dt: dt, kind: kind, size: size, heads: heads, lin: lin})
	}
	H, F, V := int64(c.Hidden), int64(c.FFN), int64(c.Vocab)
	kv := int64(c.KVHeads * hd)
	add("model.embed_tokens.weight", 0, 0, false, V, H)
	for l := 0; l < c.Layers; l++ {
		p := fmt.Sprintf("model.layers.%d.", l)
		add(p+"input_layernorm.weight", 1, 0, false, H)
		qh, kh := c.Heads, c.KVHeads
		if c.Arch == "qwen2" {
			qh, kh = 0, 0
		}
		add(p+"self_attn.q_proj.weight", 0, qh, true, H, H)
		add(p+"self_attn.k_proj.weight", 0, kh, true, kv, H)
		add(p+"self_attn.v_proj.weight", 0, 0, true, kv, H)
		if c.Arch == "qwen2" {
			add(p+"self_attn.q_proj.bias", 2, 0, false, H)
			add(p+"self_attn.k_proj.bias", 2, 0, false, kv)
			add(p+"self_attn.v_proj.bias", 2, 0, false, kv)
		}
		add(p+"self_attn.o_proj.weight", 0, 0, true, H, H)
		add(p+"post_attention_layernorm.weight", 1, 0, false, H)
		add(p+"mlp.gate_proj.weight", 0, 0, true, F, H)
		add(p+"mlp.up_proj.weight", 0, 0, true, F, H)
		add(p+"mlp.down_proj.weight", 0, 0, true, H, F)
	}
	add("model.norm.weight", 1, 0, false, H)
	if !c.Tied {
		add("lm_head.weight", 0, 0, false, V, H)
	}
	return out
}

// values fills w with tensor i's float32 values (HF row order).
func (c Config) values(i int, s spec, seed uint64) []float32 {
	n := 1
	for _, d := range s.shape {
		n *= int(d)
	}
	w := make([]float32, n)
	switch s.kind {
	case 1:
		for j := range w {
			w[j] = 1
		}
		return w
	}
	r := rand.New(rand.NewPCG(seed, uint64(i)+1))
	std := float32(0.02)
	for j := range w {
		w[j] = float32(r.NormFloat64()) * std
	}
	if c.Sparse24 && s.lin {
		for g := 0; g+4 <= n; g += 4 {
			// zero two of four, chosen per group
			a := r.IntN(4)
			b := (a + 1 + r.IntN(3)) % 4
			w[g+a], w[g+b] = 0, 0
		}
	}
	return w
}

// tensor returns a lazily generated tensor; ggufRows permutes q/k rows.
func (c Config) tensor(i int, s spec, seed uint64, name string, permute bool) format.Tensor {
	return format.Tensor{Name: name, DType: s.dt, Shape: s.shape, Size: s.size,
		WriteTo: func(w io.Writer) (int64, error) {
			vals := c.values(i, s, seed)
			b := make([]byte, s.size)
			if err := format.FromFloat32(s.dt, vals, b); err != nil {
				return 0, err
			}
			if permute && s.heads > 0 {
				p := make([]byte, len(b))
				if err := llama.Permute(p, b, int(s.shape[0]), s.heads); err != nil {
					return 0, err
				}
				b = p
			}
			n, err := w.Write(b)
			return int64(n), err
		}}
}

// Weights returns the float32 values of every tensor by HF name (HF row
// order) — for tests on small configs.
func Weights(cfg Config, seed uint64) map[string][]float32 {
	cfg = cfg.withDefaults()
	m := map[string][]float32{}
	for i, s := range cfg.tensors() {
		v := cfg.values(i, s, seed)
		// round to the stored dtype
		b := make([]byte, s.size)
		_ = format.FromFloat32(s.dt, v, b)
		_ = format.ToFloat32(s.dt, b, v)
		m[s.hf] = v
	}
	return m
}

func (c Config) llamaConfig() llama.Config {
	mt := "llama"
	if c.Arch == "qwen2" {
		mt = "qwen2"
	}
	td := map[format.DType]string{format.F32: "float32", format.F16: "float16", format.BF16: "bfloat16"}[c.DType]
	return llama.Config{Arch: c.Arch, ModelType: mt, Name: "synth", HiddenSize: c.Hidden, NumLayers: c.Layers,
		IntermediateSize: c.FFN, NumHeads: c.Heads, NumKVHeads: c.KVHeads, HeadDim: c.Hidden / c.Heads,
		VocabSize: c.Vocab, ContextLength: c.Context, RopeTheta: 10000, RMSNormEps: 1e-5,
		TieEmbeddings: c.Tied, BOS: 1, EOS: 2, TorchDType: td}
}

// tokenizerKVs is a byte-fallback vocabulary of cfg.Vocab tokens.
func (c Config) tokenizerKVs() []gguf.KV {
	toks := make([]string, c.Vocab)
	scores := make([]float32, c.Vocab)
	types := make([]int32, c.Vocab)
	for i := range toks {
		switch {
		case i == 0:
			toks[i], types[i] = "<unk>", 2
		case i == 1:
			toks[i], types[i] = "<s>", 3
		case i == 2:
			toks[i], types[i] = "</s>", 3
		case i < 259:
			toks[i], types[i] = fmt.Sprintf("<0x%02X>", i-3), 6
		default:
			toks[i], types[i] = fmt.Sprintf("tok%d", i), 1
			scores[i] = -float32(i)
		}
	}
	return []gguf.KV{
		{Key: "tokenizer.ggml.model", Value: gguf.MustValue("llama")},
		{Key: "tokenizer.ggml.tokens", Value: gguf.MustValue(toks)},
		{Key: "tokenizer.ggml.scores", Value: gguf.MustValue(scores)},
		{Key: "tokenizer.ggml.token_type", Value: gguf.MustValue(types)},
		{Key: "tokenizer.ggml.bos_token_id", Value: gguf.MustValue(uint32(1))},
		{Key: "tokenizer.ggml.eos_token_id", Value: gguf.MustValue(uint32(2))},
	}
}

func (c Config) check() error {
	if c.Hidden <= 0 || c.Layers <= 0 || c.Heads <= 0 || c.Hidden%c.Heads != 0 || c.FFN <= 0 || c.Vocab <= 0 ||
		c.KVHeads <= 0 || c.Heads%c.KVHeads != 0 || (c.Hidden/c.Heads)%2 != 0 {
		return fmt.Errorf("synth: bad config %+v", c)
	}
	switch c.DType {
	case format.F32, format.F16, format.BF16:
	default:
		return fmt.Errorf("synth: dtype %v (want F32, F16 or BF16)", c.DType)
	}
	return nil
}

// WriteHF writes a Hugging Face directory: config.json, model.safetensors
// (sharded above maxShard bytes when maxShard > 0 is given) and
// tokenizer.gguf.json.
func WriteHF(dir string, cfg Config, seed uint64, maxShard ...int64) error {
	cfg = cfg.withDefaults()
	if err := cfg.check(); err != nil {
		return err
	}
	var ts []format.Tensor
	for i, s := range cfg.tensors() {
		ts = append(ts, cfg.tensor(i, s, seed, s.hf, false))
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	opts := safetensors.WriteOptions{}
	if len(maxShard) > 0 {
		opts.MaxShardSize = maxShard[0]
	}
	if _, err := safetensors.WriteDir(context.Background(), dir, ts, opts); err != nil {
		return err
	}
	cj, err := json.MarshalIndent(cfg.llamaConfig().HFConfig(nil), "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, llama.ConfigFile), append(cj, '\n'), 0o644); err != nil {
		return err
	}
	tj, err := llama.TokenizerJSON(cfg.tokenizerKVs())
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, llama.TokenizerFile), tj, 0o644)
}

// WriteGGUF writes the same model as a GGUF file (GGUF names, q/k rows
// permuted, llama.cpp metadata and tokenizer).
func WriteGGUF(path string, cfg Config, seed uint64) error {
	cfg = cfg.withDefaults()
	if err := cfg.check(); err != nil {
		return err
	}
	var ts []format.Tensor
	for i, s := range cfg.tensors() {
		name, ok := llama.ToGGUF(s.hf)
		if !ok {
			return fmt.Errorf("synth: no GGUF name for %s", s.hf)
		}
		ts = append(ts, cfg.tensor(i, s, seed, name, true))
	}
	kvs := append(cfg.llamaConfig().GGUFKV(), cfg.tokenizerKVs()...)
	return gguf.Write(context.Background(), path, kvs, ts, gguf.WriteOptions{})
}

// Norm is a helper for tests: the largest |a-b|.
func Norm(a, b []float32) float64 {
	m := 0.0
	for i := range a {
		m = math.Max(m, math.Abs(float64(a[i]-b[i])))
	}
	return m
}
