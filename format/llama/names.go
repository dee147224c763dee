// Package llama maps the LLaMA family (Llama, Mistral, Qwen2, SmolLM,
// TinyLlama) between Hugging Face and GGUF: tensor names, the q/k row
// permutation llama.cpp's converter applies for RoPE, config.json ↔ GGUF
// metadata, and the tokenizer carried between them.
//
// Everything here is pure data transformation and safe for concurrent use.
package llama

import (
	"strconv"
	"strings"
)

// Suffixes a module path may carry. Packed and compressed sparse layouts add
// their own (packed, meta, shape, compressed, bitmask).
var suffixes = []string{"weight", "bias", "packed", "meta", "shape", "compressed", "bitmask"}

var hfBlock = map[string]string{
	"self_attn.q_proj":         "attn_q",
	"self_attn.k_proj":         "attn_k",
	"self_attn.v_proj":         "attn_v",
	"self_attn.o_proj":         "attn_output",
	"mlp.gate_proj":            "ffn_gate",
	"mlp.up_proj":              "ffn_up",
	"mlp.down_proj":            "ffn_down",
	"input_layernorm":          "attn_norm",
	"post_attention_layernorm": "ffn_norm",
}

var ggufBlock = func() map[string]string {
	m := make(map[string]string, len(hfBlock))
	for k, v := range hfBlock {
		m[v] = k
	}
	return m
}()

var hfTop = map[string]string{
	"model.embed_tokens": "token_embd",
	"model.norm":         "output_norm",
	"lm_head":            "output",
}

var ggufTop = map[string]string{
	"token_embd":  "model.embed_tokens",
	"output_norm": "model.norm",
	"output":      "lm_head",
}

// splitSuffix splits "P.weight" into ("P", "weight") for a known suffix.
func splitSuffix(name string) (module, suffix string, ok bool) {
	i := strings.LastIndexByte(name, '.')
	if i <= 0 {
		return "", "", false
	}
	s := name[i+1:]
	for _, k := range suffixes {
		if s == k {
			return name[:i], s, true
		}
	}
	return "", "", false
}

// ModuleToGGUF maps a Hugging Face module path ("model.layers.3.mlp.up_proj")
// to its GGUF name ("blk.3.ffn_up"); ok is false for modules outside the map.
func ModuleToGGUF(module string) (string, bool) {
	if g, ok := hfTop[module]; ok {
		return g, true
	}
	rest, ok := strings.CutPrefix(module, "model.layers.")
	if !ok {
		return "", false
	}
	i := strings.IndexByte(rest, '.')
	if i <= 0 {
		return "", false
	}
	n, err := strconv.Atoi(rest[:i])
	if err != nil || n < 0 || strconv.Itoa(n) != rest[:i] {
		return "", false
	}
	g, ok := hfBlock[rest[i+1:]]
	if !ok {
		return "", false
	}
	return "blk." + rest[:i] + "." + g, true
}

// ModuleToHF maps a GGUF module name ("blk.3.ffn_up") to its Hugging Face
// module path; ok is false for names outside the map.
func ModuleToHF(module string) (string, bool) {
	if h, ok := ggufTop[module]; ok {
		return h, true
	}
	rest, ok := strings.CutPrefix(module, "blk.")
	if !ok {
		return "", false
	}
	i := strings.IndexByte(rest, '.')
	if i <= 0 {
		return "", false
	}
	n, err := strconv.Atoi(rest[:i])
	if err != nil || n < 0 || strconv.Itoa(n) != rest[:i] {
		return "", false
	}
	h, ok := ggufBlock[rest[i+1:]]
	if !ok {
		return "", false
	}
	return "model.layers." + rest[:i] + "." + h, true
}

// ToGGUF maps a Hugging Face tensor name (module path plus .weight, .bias or
// a sparse layout suffix) to its GGUF name; ok is false when unknown.
func ToGGUF(name string) (string, bool) {
	m, s, ok := splitSuffix(name)
	if !ok {
		return "", false
	}
	g, ok := ModuleToGGUF(m)
	if !ok {
		return "", false
	}
	return g + "." + s, true
}

// ToHF maps a GGUF tensor name to its Hugging Face name; ok is false when unknown.
func ToHF(name string) (string, bool) {
	m, s, ok := splitSuffix(name)
	if !ok {
		return "", false
	}
	h, ok := ModuleToHF(m)
	if !ok {
		return "", false
	}
	return h + "." + s, true
}

// IsGGUFName reports whether name is a known GGUF tensor name of the family.
func IsGGUFName(name string) bool {
	_, ok := ToHF(name)
	return ok
}

// Layer returns the block index of a HF or GGUF tensor name, -1 for tensors
// outside the blocks.
func Layer(name string) int {
	for _, p := range []string{"model.layers.", "blk."} {
		if rest, ok := strings.CutPrefix(name, p); ok {
			if i := strings.IndexByte(rest, '.'); i > 0 {
				if n, err := strconv.Atoi(rest[:i]); err == nil && n >= 0 {
					return n
				}
			}
		}
	}
	return -1
}
