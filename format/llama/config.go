package llama

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"

	"github.com/sparsify/sparsify/format/gguf"
)

// Config is the architecture description shared by config.json and GGUF
// metadata. Zero values mean "absent".
type Config struct {
	Arch             string // GGUF general.architecture: "llama" or "qwen2"
	ModelType        string // HF model_type: "llama", "mistral", "qwen2"
	Architectures    []string
	Name             string // general.name
	HiddenSize       int
	NumLayers        int
	IntermediateSize int
	NumHeads         int
	NumKVHeads       int
	HeadDim          int // rope.dimension_count; hidden/heads when absent
	VocabSize        int
	ContextLength    int
	RopeTheta        float64
	RMSNormEps       float64
	TieEmbeddings    bool
	BOS, EOS         int // -1 when absent
	TorchDType       string
}

// ggufArch maps an HF model_type to the GGUF architecture llama.cpp uses.
func ggufArch(modelType string) (string, error) {
	switch modelType {
	case "llama", "mistral", "smollm", "tinyllama", "":
		return "llama", nil
	case "qwen2":
		return "qwen2", nil
	}
	return "", fmt.Errorf("llama: unsupported model_type %q (want llama, mistral or qwen2)", modelType)
}

// ParseHFConfig reads config.json. It returns the config and the whole JSON
// object (numbers as json.Number) so that writers can keep every other field.
func ParseHFConfig(data []byte) (Config, map[string]any, error) {
	var raw map[string]any
	if err := decodeJSON(data, &raw); err != nil {
		return Config{}, nil, fmt.Errorf("llama: config.json: %w", err)
	}
	c := Config{BOS: -1, EOS: -1}
	c.ModelType, _ = raw["model_type"].(string)
	arch, err := ggufArch(c.ModelType)
	if err != nil {
		return Config{}, nil, err
	}
	c.Arch = arch
	if as, ok := raw["architectures"].([]any); ok {
		for _, a := range as {
			if s, ok := a.(string); ok {
				c.Architectures = append(c.Architectures, s)
			}
		}
	}
	c.Name, _ = raw["_name_or_path"].(string)
	geti := func(k string) int {
		n, ok := raw[k].(json.Number)
		if !ok {
			return 0
		}
		i, err := strconv.ParseInt(string(n), 10, 64)
		if err != nil || i < 0 || i > math.MaxInt32 {
			return 0
		}
		return int(i)
	}
	getf := func(k string) float64 {
		n, ok := raw[k].(json.Number)
		if !ok {
			return 0
		}
		f, _ := strconv.ParseFloat(string(n), 64)
		return f
	}
	c.HiddenSize = geti("hidden_size")
	c.NumLayers = geti("num_hidden_layers")
	c.IntermediateSize = geti("intermediate_size")
	c.NumHeads = geti("num_attention_heads")
	c.NumKVHeads = geti("num_key_value_heads")
	c.HeadDim = geti("head_dim")
	c.VocabSize = geti("vocab_size")
	c.ContextLength = geti("max_position_embeddings")
	c.RopeTheta = getf("rope_theta")
	c.RMSNormEps = getf("rms_norm_eps")
	if b, ok := raw["tie_word_embeddings"].(bool); ok {
		c.TieEmbeddings = b
	}
	if _, ok := raw["bos_token_id"].(json.Number); ok {
		c.BOS = geti("bos_token_id")
	}
	if _, ok := raw["eos_token_id"].(json.Number); ok {
		c.EOS = geti("eos_token_id")
	}
	c.TorchDType, _ = raw["torch_dtype"].(string)
	if c.HiddenSize == 0 || c.NumLayers == 0 || c.NumHeads == 0 {
		return c, raw, fmt.Errorf("llama: config.json lacks hidden_size, num_hidden_layers or num_attention_heads")
	}
	if c.NumKVHeads == 0 {
		c.NumKVHeads = c.NumHeads
	}
	return c, raw, nil
}

// HFConfig returns config.json for c: base (may be nil) with the fields c
// describes set, every other field kept.
func (c Config) HFConfig(base map[string]any) map[string]any {
	out := make(map[string]any, len(base)+16)
	for k, v := range base {
		out[k] = v
	}
	mt := c.ModelType
	if mt == "" {
		mt = map[string]string{"qwen2": "qwen2"}[c.Arch]
		if mt == "" {
			mt = "llama"
		}
	}
	out["model_type"] = mt
	if len(c.Architectures) > 0 {
		out["architectures"] = c.Architectures
	} else if _, ok := out["architectures"]; !ok {
		out["architectures"] = []string{map[string]string{"llama": "LlamaForCausalLM", "mistral": "MistralForCausalLM", "qwen2": "Qwen2ForCausalLM"}[mt]}
	}
	set := func(k string, v int) {
		if v > 0 {
			out[k] = v
		}
	}
	set("hidden_size", c.HiddenSize)
	set("num_hidden_layers", c.NumLayers)
	set("intermediate_size", c.IntermediateSize)
	set("num_attention_heads", c.NumHeads)
	set("num_key_value_heads", c.NumKVHeads)
	set("vocab_size", c.VocabSize)
	set("max_position_embeddings", c.ContextLength)
	if c.HeadDim > 0 && c.NumHeads > 0 && c.HeadDim != c.HiddenSize/c.NumHeads {
		out["head_dim"] = c.HeadDim
	}
	if c.RopeTheta > 0 {
		out["rope_theta"] = c.RopeTheta
	} else if _, ok := out["rope_theta"]; !ok {
		out["rope_theta"] = 10000.0
	}
	if c.RMSNormEps > 0 {
		out["rms_norm_eps"] = json.Number(strconv.FormatFloat(c.RMSNormEps, 'g', -1, 32))
	}
	out["tie_word_embeddings"] = c.TieEmbeddings
	if c.BOS >= 0 {
		out["bos_token_id"] = c.BOS
	}
	if c.EOS >= 0 {
		out["eos_token_id"] = c.EOS
	}
	if c.TorchDType != "" {
		out["torch_dtype"] = c.TorchDType
	}
	if _, ok := out["hidden_act"]; !ok {
		out["hidden_act"] = "silu"
	}
	if _, ok := out["attention_bias"]; !ok && c.Arch != "qwen2" {
		out["attention_bias"] = false
	}
	return out
}

// FromGGUF derives a Config from GGUF metadata.
func FromGGUF(kvs []gguf.KV) (Config, error) {
	m := make(map[string]gguf.Value, len(kvs))
	for _, kv := range kvs {
		m[kv.Key] = kv.Value
	}
	c := Config{BOS: -1, EOS: -1}
	if v, ok := m["general.architecture"]; ok {
		c.Arch, _ = v.Data.(string)
	}
	switch c.Arch {
	case "llama":
		c.ModelType = "llama"
	case "qwen2":
		c.ModelType = "qwen2"
	default:
		return c, fmt.Errorf("llama: unsupported GGUF architecture %q (want llama or qwen2)", c.Arch)
	}
	if v, ok := m["general.name"]; ok {
		c.Name, _ = v.Data.(string)
	}
	p := c.Arch + "."
	geti := func(k string) int {
		v, ok := m[k]
		if !ok {
			return 0
		}
		i, ok := v.Int()
		if !ok || i < 0 || i > math.MaxInt32 {
			return 0
		}
		return int(i)
	}
	getf := func(k string) float64 {
		v, ok := m[k]
		if !ok {
			return 0
		}
		f, _ := v.Float()
		return f
	}
	c.HiddenSize = geti(p + "embedding_length")
	c.NumLayers = geti(p + "block_count")
	c.IntermediateSize = geti(p + "feed_forward_length")
	c.NumHeads = geti(p + "attention.head_count")
	c.NumKVHeads = geti(p + "attention.head_count_kv")
	c.HeadDim = geti(p + "rope.dimension_count")
	c.ContextLength = geti(p + "context_length")
	c.VocabSize = geti(p + "vocab_size")
	if c.VocabSize == 0 {
		if v, ok := m["tokenizer.ggml.tokens"]; ok {
			c.VocabSize = v.Len()
		}
	}
	c.RopeTheta = getf(p + "rope.freq_base")
	if c.RopeTheta == 0 {
		c.RopeTheta = 10000 // llama.cpp's default when the key is absent
	}
	c.RMSNormEps = getf(p + "attention.layer_norm_rms_epsilon")
	if _, ok := m["tokenizer.ggml.bos_token_id"]; ok {
		c.BOS = geti("tokenizer.ggml.bos_token_id")
	}
	if _, ok := m["tokenizer.ggml.eos_token_id"]; ok {
		c.EOS = geti("tokenizer.ggml.eos_token_id")
	}
	if c.HiddenSize == 0 || c.NumLayers == 0 || c.NumHeads == 0 {
		return c, fmt.Errorf("llama: GGUF metadata lacks %sembedding_length, block_count or attention.head_count", p)
	}
	if c.NumKVHeads == 0 {
		c.NumKVHeads = c.NumHeads
	}
	return c, nil
}

// GGUFKV returns the architecture metadata llama.cpp's converter writes for c
// (without tokenizer keys), in its order and with its types.
func (c Config) GGUFKV() []gguf.KV {
	arch := c.Arch
	if arch == "" {
		arch = "llama"
	}
	p := arch + "."
	var kvs []gguf.KV
	add := func(k string, v any) { kvs = append(kvs, gguf.KV{Key: k, Value: gguf.MustValue(v)}) }
	add("general.architecture", arch)
	if c.Name != "" {
		add("general.name", c.Name)
	}
	u32 := func(k string, v int) {
		if v > 0 {
			add(p+k, uint32(v))
		}
	}
	u32("context_length", c.ContextLength)
	u32("embedding_length", c.HiddenSize)
	u32("feed_forward_length", c.IntermediateSize)
	u32("attention.head_count", c.NumHeads)
	u32("attention.head_count_kv", c.NumKVHeads)
	u32("block_count", c.NumLayers)
	hd := c.HeadDim
	if hd == 0 && c.NumHeads > 0 {
		hd = c.HiddenSize / c.NumHeads
	}
	u32("rope.dimension_count", hd)
	if c.RopeTheta > 0 {
		add(p+"rope.freq_base", float32(c.RopeTheta))
	}
	if c.RMSNormEps > 0 {
		add(p+"attention.layer_norm_rms_epsilon", float32(c.RMSNormEps))
	}
	u32("vocab_size", c.VocabSize)
	return kvs
}
