package llama

import (
	"errors"
	"io/fs"
	"math/rand/v2"
	"reflect"
	"testing"

	"github.com/sparsify/sparsify/format/gguf"
	"github.com/sparsify/sparsify/internal/testutil"
)

func TestNames(t *testing.T) {
	cases := []struct{ hf, gg string }{
		{"model.embed_tokens.weight", "token_embd.weight"},
		{"model.norm.weight", "output_norm.weight"},
		{"lm_head.weight", "output.weight"},
		{"model.layers.0.self_attn.q_proj.weight", "blk.0.attn_q.weight"},
		{"model.layers.12.self_attn.k_proj.bias", "blk.12.attn_k.bias"},
		{"model.layers.3.self_attn.v_proj.weight", "blk.3.attn_v.weight"},
		{"model.layers.3.self_attn.o_proj.weight", "blk.3.attn_output.weight"},
		{"model.layers.7.mlp.gate_proj.weight", "blk.7.ffn_gate.weight"},
		{"model.layers.7.mlp.up_proj.weight", "blk.7.ffn_up.weight"},
		{"model.layers.7.mlp.down_proj.weight", "blk.7.ffn_down.weight"},
		{"model.layers.7.mlp.down_proj.packed", "blk.7.ffn_down.packed"},
		{"model.layers.7.mlp.down_proj.meta", "blk.7.ffn_down.meta"},
		{"model.layers.1.input_layernorm.weight", "blk.1.attn_norm.weight"},
		{"model.layers.1.post_attention_layernorm.weight", "blk.1.ffn_norm.weight"},
	}
	for _, c := range cases {
		if g, ok := ToGGUF(c.hf); !ok || g != c.gg {
			t.Errorf("ToGGUF(%q) = %q, %v; want %q", c.hf, g, ok, c.gg)
		}
		if h, ok := ToHF(c.gg); !ok || h != c.hf {
			t.Errorf("ToHF(%q) = %q, %v; want %q", c.gg, h, ok, c.hf)
		}
	}
	for _, bad := range []string{"model.layers.x.mlp.up_proj.weight", "model.layers.01.mlp.up_proj.weight", "blk.-1.ffn_up.weight", "model.layers.0.self_attn.rotary_emb.inv_freq", "foo", "blk.0.unknown.weight", ""} {
		if g, ok := ToGGUF(bad); ok {
			t.Errorf("ToGGUF(%q) = %q, want not ok", bad, g)
		}
		if h, ok := ToHF(bad); ok {
			t.Errorf("ToHF(%q) = %q, want not ok", bad, h)
		}
	}
	if Layer("blk.12.ffn_up.weight") != 12 || Layer("model.layers.3.mlp.up_proj.weight") != 3 || Layer("output.weight") != -1 {
		t.Error("Layer")
	}
}

// refPermute is llama.cpp's numpy expression, element by element:
// w.reshape(n_head, 2, half, cols).swapaxes(1, 2).reshape(rows, cols).
func refPermute(w []float32, rows, cols, nHead int) []float32 {
	half := rows / nHead / 2
	out := make([]float32, len(w))
	// out index [h, i, j, c] (shape n_head, half, 2, cols) = in [h, j, i, c]
	for h := 0; h < nHead; h++ {
		for i := 0; i < half; i++ {
			for j := 0; j < 2; j++ {
				for c := 0; c < cols; c++ {
					out[((h*half+i)*2+j)*cols+c] = w[((h*2+j)*half+i)*cols+c]
				}
			}
		}
	}
	return out
}

func f32bytes(w []float32) []byte {
	b := make([]byte, 4*len(w))
	for i, v := range w {
		u := mathFloat32bits(v)
		b[4*i], b[4*i+1], b[4*i+2], b[4*i+3] = byte(u), byte(u>>8), byte(u>>16), byte(u>>24)
	}
	return b
}

func TestPermute(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, c := range []struct{ rows, cols, heads int }{{64, 64, 8}, {32, 64, 4}, {8, 3, 1}, {16, 5, 4}, {12, 1, 2}} {
		w := make([]float32, c.rows*c.cols)
		for i := range w {
			w[i] = r.Float32()
		}
		src := f32bytes(w)
		dst := make([]byte, len(src))
		if err := Permute(dst, src, c.rows, c.heads); err != nil {
			t.Fatal(err)
		}
		if want := f32bytes(refPermute(w, c.rows, c.cols, c.heads)); !reflect.DeepEqual(dst, want) {
			t.Errorf("%+v: Permute differs from llama.cpp's reshape/swapaxes", c)
		}
		back := make([]byte, len(src))
		if err := Unpermute(back, dst, c.rows, c.heads); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(back, src) {
			t.Errorf("%+v: Unpermute(Permute(w)) != w", c)
		}
	}
	if err := Permute(make([]byte, 12), make([]byte, 12), 6, 2); err == nil {
		t.Error("6 rows over 2 heads: want error")
	}
	if err := Permute(make([]byte, 8), make([]byte, 12), 4, 2); err == nil {
		t.Error("size mismatch: want error")
	}
	if PermuteHeads("llama", "blk.0.attn_q.weight", 8, 4) != 8 || PermuteHeads("llama", "model.layers.0.self_attn.k_proj.weight", 8, 4) != 4 ||
		PermuteHeads("qwen2", "blk.0.attn_q.weight", 8, 4) != 0 || PermuteHeads("llama", "blk.0.attn_v.weight", 8, 4) != 0 {
		t.Error("PermuteHeads")
	}
}

func readerOf(files map[string][]byte) func(string) ([]byte, error) {
	return func(name string) ([]byte, error) {
		if b, ok := files[name]; ok {
			return b, nil
		}
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
	}
}

func TestStoriesMetadataRoundTrip(t *testing.T) {
	g, err := gguf.Open(testutil.SharedData(t, "stories260K.gguf"))
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	var names []string
	for _, ti := range g.Tensors() {
		names = append(names, ti.Name)
	}
	files, cfg, err := HFFromGGUF(g.KV(), names, "float32")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.HiddenSize != 64 || cfg.NumLayers != 5 || cfg.NumHeads != 8 || cfg.NumKVHeads != 4 || cfg.IntermediateSize != 172 || cfg.VocabSize != 512 || cfg.TieEmbeddings {
		t.Errorf("config %+v", cfg)
	}
	c2, raw, err := ParseHFConfig(files[ConfigFile])
	if err != nil {
		t.Fatal(err)
	}
	if c2.HiddenSize != 64 || c2.RMSNormEps != float64(float32(1e-5)) && c2.RMSNormEps != 1e-5 || raw["model_type"] != "llama" {
		t.Errorf("config.json parsed back: %+v", c2)
	}
	tok, err := ParseTokenizerJSON(files[TokenizerFile])
	if err != nil {
		t.Fatal(err)
	}
	if len(tok) != 9 {
		t.Errorf("tokenizer keys: %d, want 9", len(tok))
	}
	kvs, _, order, warns, err := GGUFFromHF(readerOf(files))
	if err != nil {
		t.Fatal(err)
	}
	if len(warns) != 0 {
		t.Errorf("warnings %v", warns)
	}
	if !reflect.DeepEqual(order, names) {
		t.Errorf("tensor order not kept")
	}
	if !reflect.DeepEqual(kvs, g.KV()) {
		for i := range max(len(kvs), len(g.KV())) {
			if i >= len(kvs) || i >= len(g.KV()) || !reflect.DeepEqual(kvs[i], g.KV()[i]) {
				t.Fatalf("metadata differs at %d: got %d keys, want %d; %v", i, len(kvs), len(g.KV()), kvs[len(kvs)-1])
			}
		}
	}
	// Without the metadata side file: derived from config + tokenizer file.
	delete(files, MetadataFile)
	kvs, _, _, _, err = GGUFFromHF(readerOf(files))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]gguf.Value{}
	for _, kv := range g.KV() {
		want[kv.Key] = kv.Value
	}
	for _, kv := range kvs {
		if w, ok := want[kv.Key]; ok && !reflect.DeepEqual(w, kv.Value) {
			t.Errorf("%s: %v, want %v", kv.Key, kv.Value, w)
		}
	}
}

func TestHFConfigToGGUF(t *testing.T) {
	cj := []byte(`{"architectures":["Qwen2ForCausalLM"],"model_type":"qwen2","hidden_size":896,"num_hidden_layers":24,
	"intermediate_size":4864,"num_attention_heads":14,"num_key_value_heads":2,"max_position_embeddings":32768,
	"rope_theta":1000000.0,"rms_norm_eps":1e-06,"vocab_size":151936,"tie_word_embeddings":true,"bos_token_id":151643,"eos_token_id":151645}`)
	files := map[string][]byte{ConfigFile: cj}
	kvs, cfg, _, warns, err := GGUFFromHF(readerOf(files))
	if err != nil {
		t.Fatal(err)
	}
	if len(warns) != 1 {
		t.Errorf("want one warning for the missing tokenizer, got %v", warns)
	}
	m := map[string]gguf.Value{}
	for _, kv := range kvs {
		m[kv.Key] = kv.Value
	}
	check := func(k string, want any) {
		t.Helper()
		if v, ok := m[k]; !ok || !reflect.DeepEqual(v.Data, want) {
			t.Errorf("%s = %v, want %v", k, m[k].Data, want)
		}
	}
	check("general.architecture", "qwen2")
	check("qwen2.embedding_length", uint32(896))
	check("qwen2.attention.head_count_kv", uint32(2))
	check("qwen2.rope.dimension_count", uint32(64))
	check("qwen2.rope.freq_base", float32(1e6))
	check("qwen2.attention.layer_norm_rms_epsilon", float32(1e-6))
	check("qwen2.context_length", uint32(32768))
	if !cfg.TieEmbeddings || cfg.Arch != "qwen2" {
		t.Errorf("cfg %+v", cfg)
	}
	if _, _, err := ParseHFConfig([]byte(`{"model_type":"gpt2","hidden_size":1}`)); err == nil {
		t.Error("gpt2 model_type: want error")
	}
	if _, _, _, _, err := GGUFFromHF(readerOf(nil)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing config.json: %v", err)
	}
}

func TestTokenizerFromHF(t *testing.T) {
	tj := []byte(`{"model":{"type":"BPE","byte_fallback":false,"vocab":{"a":0,"b":1,"ab":2},"merges":["a b"]},
	"added_tokens":[{"id":3,"content":"<|end|>","special":true}]}`)
	kvs, err := TokenizerFromHF(tj, Config{BOS: -1, EOS: 3})
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]gguf.Value{}
	for _, kv := range kvs {
		m[kv.Key] = kv.Value
	}
	if !reflect.DeepEqual(m["tokenizer.ggml.tokens"].Data, []string{"a", "b", "ab", "<|end|>"}) ||
		!reflect.DeepEqual(m["tokenizer.ggml.token_type"].Data, []int32{1, 1, 1, 3}) ||
		!reflect.DeepEqual(m["tokenizer.ggml.merges"].Data, []string{"a b"}) ||
		m["tokenizer.ggml.model"].Data != "gpt2" || m["tokenizer.ggml.eos_token_id"].Data != uint32(3) {
		t.Errorf("got %v", m)
	}
	if _, err := TokenizerFromHF([]byte(`{"model":{"type":"Unigram"}}`), Config{}); err == nil {
		t.Error("Unigram: want error")
	}
	if _, err := TokenizerFromHF([]byte(`{"model":{"type":"BPE","vocab":{"a":99999999}}}`), Config{}); err == nil {
		t.Error("huge id: want error")
	}
}

func FuzzParseTokenizerJSON(f *testing.F) {
	f.Add([]byte(`{"tokenizer.ggml.tokens":["a","b"],"tokenizer.ggml.scores":[0,-1.5],"tokenizer.ggml.bos_token_id":1,"tokenizer.x":[[1,2],[3]]}`))
	f.Add([]byte(`{"tokenizer.ggml.scores":["NaN"]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		kvs, err := ParseTokenizerJSON(data)
		if err != nil {
			return
		}
		out, err := TokenizerJSON(kvs)
		if err != nil {
			t.Fatal(err)
		}
		if len(kvs) > 0 {
			kvs2, err := ParseTokenizerJSON(out)
			if err != nil {
				t.Fatalf("re-reading our own output: %v", err)
			}
			if len(kvs2) != len(kvs) {
				t.Fatalf("keys %d → %d", len(kvs), len(kvs2))
			}
		}
	})
}

// FuzzGGUFFromHF feeds untrusted config.json, metadata and tokenizer side files.
func FuzzGGUFFromHF(f *testing.F) {
	cfg := []byte(`{"model_type":"llama","hidden_size":64,"num_hidden_layers":2,"num_attention_heads":4}`)
	meta := []byte(`{"format":"sparsify-gguf-metadata/1","kv":[{"key":"general.architecture","type":"string","value":"llama"},
	{"key":"llama.embedding_length","type":"uint32","value":64},{"key":"x","type":"array","elem":"array","value":[{"type":"array","elem":"int8","value":[1,-2]}]},
	{"key":"tokenizer.ggml.tokens","type":"array","elem":"string","in":"tokenizer.gguf.json"}],"tensors":["a"]}`)
	tok := []byte(`{"tokenizer.ggml.tokens":["a","b"]}`)
	f.Add(cfg, meta, tok)
	f.Add(cfg, []byte(`{"format":"sparsify-gguf-metadata/1","kv":[{"key":"k","type":"float32","value":"NaN"}]}`), []byte(`{}`))
	f.Add([]byte(`{"model_type":"qwen2","hidden_size":8,"num_hidden_layers":1,"num_attention_heads":2,"rope_theta":1e6}`), []byte(nil), []byte(nil))
	f.Fuzz(func(t *testing.T, c, m, tk []byte) {
		files := map[string][]byte{ConfigFile: c}
		if m != nil {
			files[MetadataFile] = m
		}
		if tk != nil {
			files[TokenizerFile] = tk
		}
		kvs, _, _, _, err := GGUFFromHF(readerOf(files))
		if err != nil {
			return
		}
		for _, kv := range kvs {
			if kv.Key == "" && m == nil {
				t.Fatal("empty key")
			}
			_ = kv.Value.String()
		}
	})
}

func FuzzTokenizerFromHF(f *testing.F) {
	f.Add([]byte(`{"model":{"type":"BPE","byte_fallback":true,"vocab":{"<unk>":0,"<0x41>":1,"a":2},"merges":[["a","a"]],"unk_token":"<unk>"},"added_tokens":[{"id":3,"content":"<s>","special":true}]}`))
	f.Add([]byte(`{"model":{"type":"BPE","vocab":{"a":0},"merges":["a a"]}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		kvs, err := TokenizerFromHF(data, Config{BOS: -1, EOS: -1, VocabSize: 4})
		if err != nil {
			return
		}
		var n int
		for _, kv := range kvs {
			if kv.Key == "tokenizer.ggml.tokens" {
				n = kv.Value.Len()
			}
		}
		for _, kv := range kvs {
			if (kv.Key == "tokenizer.ggml.token_type" || kv.Key == "tokenizer.ggml.scores") && kv.Value.Len() != n {
				t.Fatalf("%s has %d entries for %d tokens", kv.Key, kv.Value.Len(), n)
			}
		}
	})
}
