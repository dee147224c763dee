package model

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"

	"github.com/sparsify/sparsify/format"
	"github.com/sparsify/sparsify/format/gguf"
	"github.com/sparsify/sparsify/format/llama"
	"github.com/sparsify/sparsify/model/tokenizer"
)

// ErrNoTokenizer is returned (wrapped) by Load when the model loaded but no
// tokenizer was found beside it; the model is still returned.
var ErrNoTokenizer = errors.New("model: no tokenizer found")

// Load reads a model and its tokenizer. path may be:
//   - a GGUF file (tokenizer from its tokenizer.ggml.* metadata);
//   - a Hugging Face directory with config.json and *.safetensors (tokenizer
//     from tokenizer.json or tokenizer.gguf.json), including sparse
//     checkpoints sparsify wrote (packed weights are expanded);
//   - a llama2.c checkpoint (.bin; tokenizer from tokenizer.bin or
//     tok<vocab>.bin beside it, or LoadLlama2C with an explicit path).
//
// Quantized, F16 and BF16 weights are widened to float32. When only the
// tokenizer is missing, the model is returned with an error wrapping
// ErrNoTokenizer.
func Load(path string) (*Model, *tokenizer.Tokenizer, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, nil, err
	}
	if st.IsDir() {
		return LoadHF(path)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	var magic [4]byte
	_, err = io.ReadFull(f, magic[:])
	f.Close()
	if err != nil {
		return nil, nil, &format.FormatError{File: path, Offset: 0, Msg: "file too short to identify"}
	}
	switch {
	case string(magic[:]) == "GGUF":
		return LoadGGUF(path)
	case strings.HasSuffix(path, ".safetensors"):
		return LoadHF(path)
	case strings.HasSuffix(path, ".bin"):
		return LoadLlama2C(path, "")
	}
	return nil, nil, fmt.Errorf("%w: %s: not a GGUF file, Hugging Face directory or llama2.c .bin", format.ErrUnsupported, path)
}

// names maps the parts of a LLaMA model to tensor names of one convention.
type names struct {
	embed, norm, output string
	layer               func(i int, part string) string // part: attn_norm, q, k, v, o, ffn_norm, gate, up, down, q.bias, k.bias, v.bias
}

var ggufNames = names{
	embed: "token_embd.weight", norm: "output_norm.weight", output: "output.weight",
	layer: func(i int, part string) string {
		m := map[string]string{"attn_norm": "attn_norm.weight", "q": "attn_q.weight", "k": "attn_k.weight",
			"v": "attn_v.weight", "o": "attn_output.weight", "ffn_norm": "ffn_norm.weight",
			"gate": "ffn_gate.weight", "up": "ffn_up.weight", "down": "ffn_down.weight",
			"q.bias": "attn_q.bias", "k.bias": "attn_k.bias", "v.bias": "attn_v.bias"}
		return fmt.Sprintf("blk.%d.%s", i, m[part])
	},
}

var hfNames = names{
	embed: "model.embed_tokens.weight", norm: "model.norm.weight", output: "lm_head.weight",
	layer: func(i int, part string) string {
		m := map[string]string{"attn_norm": "input_layernorm.weight", "q": "self_attn.q_proj.weight",
			"k": "self_attn.k_proj.weight", "v": "self_attn.v_proj.weight", "o": "self_attn.o_proj.weight",
			"ffn_norm": "post_attention_layernorm.weight", "gate": "mlp.gate_proj.weight",
			"up": "mlp.up_proj.weight", "down": "mlp.down_proj.weight",
			"q.bias": "self_attn.q_proj.bias", "k.bias": "self_attn.k_proj.bias", "v.bias": "self_attn.v_proj.bias"}
		return fmt.Sprintf("model.layers.%d.%s", i, m[part])
	},
}

// readFloat32 reads a tensor of src as float32, checking its element count.
func readFloat32(src format.Source, name string, want int) ([]float32, error) {
	raw, ti, err := format.ReadAll(src, name)
	if err != nil {
		return nil, err
	}
	if ti.NumElements() != int64(want) {
		return nil, &format.FormatError{File: ti.File, Tensor: name, Offset: ti.Offset,
			Msg: fmt.Sprintf("has shape %v (%d values), the config implies %d", ti.Shape, ti.NumElements(), want)}
	}
	out := make([]float32, want)
	if err := format.ToFloat32(ti.DType, raw, out); err != nil {
		return nil, fmt.Errorf("%s: tensor %q: %w", ti.File, name, err)
	}
	return out, nil
}

// build assembles a model from a Source whose tensors follow nm.
func build(src format.Source, c Config, nm names) (*Model, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	m := &Model{Config: c}
	var err error
	if m.Embed, err = readFloat32(src, nm.embed, c.Vocab*c.Dim); err != nil {
		return nil, err
	}
	if m.Norm, err = readFloat32(src, nm.norm, c.Dim); err != nil {
		return nil, err
	}
	kv := c.KVHeads * c.HeadDim()
	lin := func(name string, out, in int) (*Linear, error) {
		w, err := readFloat32(src, name, out*in)
		if err != nil {
			return nil, err
		}
		return &Linear{Name: name, Out: out, In: in, W: w}, nil
	}
	m.Layers = make([]Layer, c.Layers)
	for i := range m.Layers {
		L := &m.Layers[i]
		n := func(p string) string { return nm.layer(i, p) }
		if L.AttnNorm, err = readFloat32(src, n("attn_norm"), c.Dim); err != nil {
			return nil, err
		}
		if L.FFNNorm, err = readFloat32(src, n("ffn_norm"), c.Dim); err != nil {
			return nil, err
		}
		for _, s := range []struct {
			dst     **Linear
			part    string
			out, in int
		}{{&L.Q, "q", c.Dim, c.Dim}, {&L.K, "k", kv, c.Dim}, {&L.V, "v", kv, c.Dim}, {&L.O, "o", c.Dim, c.Dim},
			{&L.Gate, "gate", c.Hidden, c.Dim}, {&L.Up, "up", c.Hidden, c.Dim}, {&L.Down, "down", c.Dim, c.Hidden}} {
			if *s.dst, err = lin(n(s.part), s.out, s.in); err != nil {
				return nil, err
			}
		}
		if c.QKVBias {
			for _, s := range []struct {
				l    *Linear
				part string
			}{{L.Q, "q.bias"}, {L.K, "k.bias"}, {L.V, "v.bias"}} {
				if s.l.B, err = readFloat32(src, n(s.part), s.l.Out); err != nil {
					return nil, err
				}
			}
		}
	}
	if _, ok := format.Lookup(src, nm.output); ok && !c.Tied {
		if m.Output, err = lin(nm.output, c.Vocab, c.Dim); err != nil {
			return nil, err
		}
	} else {
		m.Config.Tied = true
		m.Output = &Linear{Name: nm.embed, Out: c.Vocab, In: c.Dim, W: m.Embed}
	}
	return m, m.check()
}

// configFromLlama turns the shared checkpoint description into a Config.
func configFromLlama(lc llama.Config) (Config, error) {
	c := Config{Dim: lc.HiddenSize, Hidden: lc.IntermediateSize, Layers: lc.NumLayers, Heads: lc.NumHeads,
		KVHeads: lc.NumKVHeads, Vocab: lc.VocabSize, MaxSeq: lc.ContextLength,
		NormEps: float32(lc.RMSNormEps), RopeTheta: float32(lc.RopeTheta), Tied: lc.TieEmbeddings,
		QKVBias: lc.Arch == "qwen2" || lc.ModelType == "qwen2"}
	if c.KVHeads == 0 {
		c.KVHeads = c.Heads
	}
	if c.NormEps == 0 {
		c.NormEps = 1e-5
	}
	if c.RopeTheta == 0 {
		c.RopeTheta = 10000
	}
	if lc.HeadDim != 0 && c.Heads > 0 && lc.HeadDim*c.Heads != c.Dim {
		return c, fmt.Errorf("%w: head_dim %d × %d heads ≠ hidden size %d", format.ErrUnsupported, lc.HeadDim, c.Heads, c.Dim)
	}
	return c, nil
}

// LoadGGUF reads a GGUF file (architectures llama and qwen2).
func LoadGGUF(path string) (*Model, *tokenizer.Tokenizer, error) {
	f, err := gguf.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	lc, err := llama.FromGGUF(f.KV())
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	c, err := configFromLlama(lc)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	// the embedding's rows are the model's vocabulary (it may be padded
	// beyond the tokenizer's)
	if ti, ok := format.Lookup(f, ggufNames.embed); ok && len(ti.Shape) == 2 && ti.Shape[0] > 0 && ti.Shape[0] <= 1<<24 {
		c.Vocab = int(ti.Shape[0])
	}
	// llama.cpp runs "llama" with interleaved RoPE (its converter permutes q/k
	// rows to match), "qwen2" with NEOX (rotate half) on unpermuted rows.
	c.RopeInterleaved = lc.Arch == "llama"
	if _, ok := format.Lookup(f, ggufNames.output); !ok {
		c.Tied = true
	} else {
		c.Tied = false
	}
	m, err := build(f, c, ggufNames)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	m.Source = "gguf"
	tok, err := TokenizerFromGGUF(f.KV())
	if err != nil {
		return m, nil, fmt.Errorf("%s: %w", path, err)
	}
	return m, tok, nil
}

// LoadLlama2C reads a llama2.c checkpoint: a header of 7 int32 (dim,
// hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len; a negative
// vocab_size means a separate classifier follows) and float32 weights. The
// tokenizer comes from tokPath, or when tokPath is "" from tokenizer.bin or
// tok<vocab>.bin in the same directory. Tensor names follow GGUF
// (blk.0.attn_q.weight, ...) so that mask files apply to both.
func LoadLlama2C(path, tokPath string) (*Model, *tokenizer.Tokenizer, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	m, err := ParseLlama2C(path, data)
	if err != nil {
		return nil, nil, err
	}
	if tokPath == "" {
		dir := filepath.Dir(path)
		for _, n := range []string{fmt.Sprintf("tok%d.bin", m.Config.Vocab), "tokenizer.bin"} {
			if _, err := os.Stat(filepath.Join(dir, n)); err == nil {
				tokPath = filepath.Join(dir, n)
				break
			}
		}
		if tokPath == "" {
			return m, nil, fmt.Errorf("%w beside %s (want tok%d.bin or tokenizer.bin)", ErrNoTokenizer, path, m.Config.Vocab)
		}
	}
	tok, err := tokenizer.ReadLlama2C(tokPath, m.Config.Vocab)
	if err != nil {
		return m, nil, err
	}
	return m, tok, nil
}

// ParseLlama2C decodes the bytes of a llama2.c checkpoint.
func ParseLlama2C(name string, data []byte) (*Model, error) {
	bad := func(off int64, msg string, a ...any) error {
		return &format.FormatError{File: name, Offset: off, Msg: fmt.Sprintf(msg, a...)}
	}
	if len(data) < 28 {
		return nil, bad(0, "file too short for the 28-byte llama2.c header")
	}
	var h [7]int32
	if err := binary.Read(bytes.NewReader(data[:28]), binary.LittleEndian, &h); err != nil {
		return nil, bad(0, "header: %v", err)
	}
	for i, v := range h {
		if v == 0 || (i != 5 && v < 0) || v > 1<<24 || v < -(1<<24) {
			return nil, bad(int64(4*i), "header field %d is %d", i, v)
		}
	}
	shared := h[5] > 0
	vocab := h[5]
	if vocab < 0 {
		vocab = -vocab
	}
	c := Config{Dim: int(h[0]), Hidden: int(h[1]), Layers: int(h[2]), Heads: int(h[3]), KVHeads: int(h[4]),
		Vocab: int(vocab), MaxSeq: int(h[6]), NormEps: 1e-5, RopeTheta: 10000, RopeInterleaved: true, Tied: shared}
	if err := c.Validate(); err != nil {
		return nil, bad(0, "%v", err)
	}
	hd := c.HeadDim()
	kv := c.KVHeads * hd
	L := int64(c.Layers)
	D, H, V := int64(c.Dim), int64(c.Hidden), int64(c.Vocab)
	need := V*D + L*D + L*D*D + 2*L*D*int64(kv) + L*D*D + L*D + 3*L*D*H + D + int64(c.MaxSeq)*int64(hd)
	if !shared {
		need += V * D
	}
	if have := int64(len(data)-28) / 4; have < need {
		return nil, bad(28, "header implies %d float32 weights, file holds %d", need, have)
	}
	off := int64(28)
	take := func(n int64) []float32 {
		out := make([]float32, n)
		for i := range out {
			out[i] = math.Float32frombits(binary.LittleEndian.Uint32(data[off+4*int64(i):]))
		}
		off += 4 * n
		return out
	}
	m := &Model{Config: c, Source: "llama2c"}
	m.Embed = take(V * D)
	m.Layers = make([]Layer, c.Layers)
	perLayer := func(n int64) [][]float32 {
		all := take(L * n)
		out := make([][]float32, c.Layers)
		for i := range out {
			out[i] = all[int64(i)*n : int64(i+1)*n : int64(i+1)*n]
		}
		return out
	}
	lins := func(part string, out, in int) []*Linear {
		w := perLayer(int64(out) * int64(in))
		ls := make([]*Linear, c.Layers)
		for i := range ls {
			ls[i] = &Linear{Name: ggufNames.layer(i, part), Out: out, In: in, W: w[i]}
		}
		return ls
	}
	attnNorm := perLayer(D)
	wq := lins("q", c.Dim, c.Dim)
	wk := lins("k", kv, c.Dim)
	wv := lins("v", kv, c.Dim)
	wo := lins("o", c.Dim, c.Dim)
	ffnNorm := perLayer(D)
	w1 := lins("gate", c.Hidden, c.Dim)
	w2 := lins("down", c.Dim, c.Hidden)
	w3 := lins("up", c.Hidden, c.Dim)
	for i := range m.Layers {
		m.Layers[i] = Layer{AttnNorm: attnNorm[i], Q: wq[i], K: wk[i], V: wv[i], O: wo[i],
			FFNNorm: ffnNorm[i], Gate: w1[i], Up: w3[i], Down: w2[i]}
	}
	m.Norm = take(D)
	off += 4 * int64(c.MaxSeq) * int64(hd) // freq_cis_real, freq_cis_imag (unused)
	if shared {
		m.Output = &Linear{Name: ggufNames.embed, Out: c.Vocab, In: c.Dim, W: m.Embed}
	} else {
		m.Output = &Linear{Name: ggufNames.output, Out: c.Vocab, In: c.Dim, W: take(V * D)}
	}
	return m, m.check()
}
