package model

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"testing"

	"github.com/sparsify/sparsify/format"
	"github.com/sparsify/sparsify/format/gguf"
	"github.com/sparsify/sparsify/format/llama"
)

// tinyWeights are the HF-convention weights of a small random model.
type tinyWeights struct {
	arch                       string // "llama" or "qwen2"
	dim, hidden, layers, heads int
	kv, vocab                  int
	tied                       bool
	w                          map[string][]float32 // HF name → values (rows in HF order)
	shape                      map[string][]int64
}

func newTiny(arch string, tied bool, seed uint64) *tinyWeights {
	r := rand.New(rand.NewPCG(seed, 99))
	t := &tinyWeights{arch: arch, dim: 16, hidden: 24, layers: 2, heads: 4, kv: 2, vocab: 40, tied: tied,
		w: map[string][]float32{}, shape: map[string][]int64{}}
	add := func(name string, scale float32, shape ...int64) {
		n := int64(1)
		for _, d := range shape {
			n *= d
		}
		v := make([]float32, n)
		for i := range v {
			// round to BF16 so that a BF16 copy holds exactly the same values
			v[i] = format.BF16ToF32(format.F32ToBF16((r.Float32()*2 - 1) * scale))
		}
		t.w[name], t.shape[name] = v, shape
	}
	D, H, kvd := int64(t.dim), int64(t.hidden), int64(t.kv*t.dim/t.heads)
	add("model.embed_tokens.weight", 1, int64(t.vocab), D)
	add("model.norm.weight", 1, D)
	if !tied {
		add("lm_head.weight", 0.5, int64(t.vocab), D)
	}
	for i := 0; i < t.layers; i++ {
		p := fmt.Sprintf("model.layers.%d.", i)
		add(p+"input_layernorm.weight", 1, D)
		add(p+"post_attention_layernorm.weight", 1, D)
		add(p+"self_attn.q_proj.weight", 0.5, D, D)
		add(p+"self_attn.k_proj.weight", 0.5, kvd, D)
		add(p+"self_attn.v_proj.weight", 0.5, kvd, D)
		add(p+"self_attn.o_proj.weight", 0.3, D, D)
		add(p+"mlp.gate_proj.weight", 0.3, H, D)
		add(p+"mlp.up_proj.weight", 0.3, H, D)
		add(p+"mlp.down_proj.weight", 0.3, D, H)
		if arch == "qwen2" {
			add(p+"self_attn.q_proj.bias", 0.2, D)
			add(p+"self_attn.k_proj.bias", 0.2, kvd)
			add(p+"self_attn.v_proj.bias", 0.2, kvd)
		}
	}
	return t
}

func (t *tinyWeights) vocabKV() []gguf.KV {
	toks := []string{"<unk>", "<s>", "</s>"}
	for len(toks) < t.vocab {
		toks = append(toks, fmt.Sprintf("p%d", len(toks)))
	}
	scores := make([]float32, t.vocab)
	types := make([]int32, t.vocab)
	for i := range types {
		types[i] = 1
	}
	types[0], types[1], types[2] = 2, 3, 3
	return []gguf.KV{
		{Key: "tokenizer.ggml.model", Value: gguf.MustValue("llama")},
		{Key: "tokenizer.ggml.tokens", Value: gguf.MustValue(toks)},
		{Key: "tokenizer.ggml.scores", Value: gguf.MustValue(scores)},
		{Key: "tokenizer.ggml.token_type", Value: gguf.MustValue(types)},
		{Key: "tokenizer.ggml.bos_token_id", Value: gguf.MustValue(uint32(1))},
		{Key: "tokenizer.ggml.eos_token_id", Value: gguf.MustValue(uint32(2))},
	}
}

// writeHF writes config.json, model.safetensors (matrices as BF16, the rest
// F32) and tokenizer.gguf.json.
func (t *tinyWeights) writeHF(tb testing.TB, dir string) {
	tb.Helper()
	cfg := map[string]any{"model_type": t.arch, "hidden_size": t.dim, "intermediate_size": t.hidden,
		"num_hidden_layers": t.layers, "num_attention_heads": t.heads, "num_key_value_heads": t.kv,
		"vocab_size": t.vocab, "max_position_embeddings": 64, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
		"tie_word_embeddings": t.tied}
	b, _ := json.Marshal(cfg)
	must(tb, os.WriteFile(filepath.Join(dir, "config.json"), b, 0o644))
	tj, err := llama.TokenizerJSON(t.vocabKV())
	must(tb, err)
	must(tb, os.WriteFile(filepath.Join(dir, llama.TokenizerFile), tj, 0o644))
	// a minimal safetensors writer (independent of the reader under test)
	names := make([]string, 0, len(t.w))
	for n := range t.w {
		names = append(names, n)
	}
	sort.Strings(names)
	header := map[string]any{}
	var data []byte
	for _, n := range names {
		v := t.w[n]
		dt := "F32"
		var raw []byte
		if len(t.shape[n]) == 2 {
			dt = "BF16"
			for _, x := range v {
				raw = binary.LittleEndian.AppendUint16(raw, format.F32ToBF16(x))
			}
		} else {
			for _, x := range v {
				raw = binary.LittleEndian.AppendUint32(raw, math.Float32bits(x))
			}
		}
		header[n] = map[string]any{"dtype": dt, "shape": t.shape[n], "data_offsets": []int{len(data), len(data) + len(raw)}}
		data = append(data, raw...)
	}
	hb, _ := json.Marshal(header)
	for len(hb)%8 != 0 {
		hb = append(hb, ' ')
	}
	file := binary.LittleEndian.AppendUint64(nil, uint64(len(hb)))
	file = append(append(file, hb...), data...)
	must(tb, os.WriteFile(filepath.Join(dir, "model.safetensors"), file, 0o644))
}

// writeGGUF writes the same model as llama.cpp's converter would: GGUF names,
// q/k rows permuted to interleaved-pair order for arch llama, F32 data.
func (t *tinyWeights) writeGGUF(tb testing.TB, path string) {
	tb.Helper()
	a := t.arch
	kv := []gguf.KV{
		{Key: "general.architecture", Value: gguf.MustValue(a)},
		{Key: a + ".embedding_length", Value: gguf.MustValue(uint32(t.dim))},
		{Key: a + ".feed_forward_length", Value: gguf.MustValue(uint32(t.hidden))},
		{Key: a + ".block_count", Value: gguf.MustValue(uint32(t.layers))},
		{Key: a + ".attention.head_count", Value: gguf.MustValue(uint32(t.heads))},
		{Key: a + ".attention.head_count_kv", Value: gguf.MustValue(uint32(t.kv))},
		{Key: a + ".context_length", Value: gguf.MustValue(uint32(64))},
		{Key: a + ".attention.layer_norm_rms_epsilon", Value: gguf.MustValue(float32(1e-5))},
		{Key: a + ".rope.freq_base", Value: gguf.MustValue(float32(10000))},
	}
	kv = append(kv, t.vocabKV()...)
	hd := t.dim / t.heads
	perm := func(v []float32, rows, cols, heads int) []float32 {
		// GGUF row h*hd + 2i + j holds HF row h*hd + j*hd/2 + i
		out := make([]float32, len(v))
		for h := 0; h < heads; h++ {
			for i := 0; i < hd/2; i++ {
				for j := 0; j < 2; j++ {
					copy(out[(h*hd+2*i+j)*cols:(h*hd+2*i+j+1)*cols], v[(h*hd+j*hd/2+i)*cols:(h*hd+j*hd/2+i+1)*cols])
				}
			}
		}
		return out
	}
	var ts []format.Tensor
	addT := func(name string, v []float32, shape []int64) {
		raw := make([]byte, 4*len(v))
		for i, x := range v {
			binary.LittleEndian.PutUint32(raw[4*i:], math.Float32bits(x))
		}
		ts = append(ts, format.Tensor{Name: name, DType: format.F32, Shape: shape, Size: int64(len(raw)),
			WriteTo: func(w io.Writer) (int64, error) { n, err := w.Write(raw); return int64(n), err }})
	}
	addT("token_embd.weight", t.w["model.embed_tokens.weight"], t.shape["model.embed_tokens.weight"])
	addT("output_norm.weight", t.w["model.norm.weight"], t.shape["model.norm.weight"])
	if !t.tied {
		addT("output.weight", t.w["lm_head.weight"], t.shape["lm_head.weight"])
	}
	for i := 0; i < t.layers; i++ {
		for _, p := range [][2]string{{"input_layernorm.weight", "attn_norm.weight"},
			{"post_attention_layernorm.weight", "ffn_norm.weight"}, {"self_attn.q_proj.weight", "attn_q.weight"},
			{"self_attn.k_proj.weight", "attn_k.weight"}, {"self_attn.v_proj.weight", "attn_v.weight"},
			{"self_attn.o_proj.weight", "attn_output.weight"}, {"mlp.gate_proj.weight", "ffn_gate.weight"},
			{"mlp.up_proj.weight", "ffn_up.weight"}, {"mlp.down_proj.weight", "ffn_down.weight"},
			{"self_attn.q_proj.bias", "attn_q.bias"}, {"self_attn.k_proj.bias", "attn_k.bias"},
			{"self_attn.v_proj.bias", "attn_v.bias"}} {
			hn := fmt.Sprintf("model.layers.%d.%s", i, p[0])
			v, ok := t.w[hn]
			if !ok {
				continue
			}
			sh := t.shape[hn]
			if a == "llama" && (p[1] == "attn_q.weight" || p[1] == "attn_k.weight") {
				heads := t.heads
				if p[1] == "attn_k.weight" {
					heads = t.kv
				}
				v = perm(v, int(sh[0]), int(sh[1]), heads)
			}
			addT(fmt.Sprintf("blk.%d.%s", i, p[1]), v, sh)
		}
	}
	must(tb, gguf.Write(context.Background(), path, kv, ts, gguf.WriteOptions{}))
}

func must(tb testing.TB, err error) {
	tb.Helper()
	if err != nil {
		tb.Fatal(err)
	}
}

// TestHFvsGGUF loads one random model written as a Hugging Face directory
// (rotate-half RoPE, BF16 matrices) and as a GGUF (llama: q/k rows permuted,
// interleaved RoPE; qwen2: unpermuted, NEOX RoPE, q/k/v biases) and compares
// the logits of both forward passes with a plain float64 reference.
func TestHFvsGGUF(t *testing.T) {
	for _, tc := range []struct {
		arch string
		tied bool
	}{{"llama", false}, {"llama", true}, {"qwen2", false}} {
		t.Run(fmt.Sprintf("%s/tied=%v", tc.arch, tc.tied), func(t *testing.T) {
			tw := newTiny(tc.arch, tc.tied, 7)
			dir := t.TempDir()
			tw.writeHF(t, dir)
			gpath := filepath.Join(t.TempDir(), "m.gguf")
			tw.writeGGUF(t, gpath)
			mh, tokH, err := Load(dir)
			must(t, err)
			mg, tokG, err := Load(gpath)
			must(t, err)
			if mh.Config.RopeInterleaved || mg.Config.RopeInterleaved != (tc.arch == "llama") {
				t.Fatalf("rope conventions: hf %v gguf %v", mh.Config.RopeInterleaved, mg.Config.RopeInterleaved)
			}
			if mh.Config.QKVBias != (tc.arch == "qwen2") || mg.Config.QKVBias != mh.Config.QKVBias {
				t.Fatalf("biases: hf %v gguf %v", mh.Config.QKVBias, mg.Config.QKVBias)
			}
			if tokH.VocabSize() != 40 || tokG.BOS() != 1 || tokH.BOS() != 1 {
				t.Fatal("tokenizers not loaded")
			}
			B, T := 2, 9
			toks := make([]int32, B*T)
			for i := range toks {
				toks[i] = int32((i*13 + 5) % tw.vocab)
			}
			V := tw.vocab
			lh, lg := make([]float32, B*T*V), make([]float32, B*T*V)
			must(t, mh.Forward(context.Background(), toks, B, T, lh))
			must(t, mg.Forward(context.Background(), toks, B, T, lg))
			ref := tw.reference(toks, B, T)
			for i := range ref {
				if math.Abs(float64(lh[i])-ref[i]) > 1e-4 || math.Abs(float64(lg[i])-ref[i]) > 1e-4 {
					t.Fatalf("logit %d: hf %v gguf %v reference %v", i, lh[i], lg[i], ref[i])
				}
			}
		})
	}
}

// reference is a straightforward float64 forward pass on the HF weights
// (rotate-half RoPE), written independently of the package's ops.
func (tw *tinyWeights) reference(toks []int32, B, T int) []float64 {
	D, H, V := tw.dim, tw.hidden, tw.vocab
	hd := D / tw.heads
	kvd := tw.kv * hd
	w := func(n string) []float32 { return tw.w[n] }
	lin := func(x []float64, name string, out, in int) []float64 {
		W := w(name + ".weight")
		b := w(name + ".bias")
		y := make([]float64, len(x)/in*out)
		for r := 0; r < len(x)/in; r++ {
			for o := 0; o < out; o++ {
				s := 0.0
				if b != nil {
					s = float64(b[o])
				}
				for i := 0; i < in; i++ {
					s += x[r*in+i] * float64(W[o*in+i])
				}
				y[r*out+o] = s
			}
		}
		return y
	}
	norm := func(x []float64, g []float32) []float64 {
		y := make([]float64, len(x))
		for r := 0; r < len(x)/D; r++ {
			ss := 0.0
			for i := 0; i < D; i++ {
				ss += x[r*D+i] * x[r*D+i]
			}
			s := 1 / math.Sqrt(ss/float64(D)+1e-5)
			for i := 0; i < D; i++ {
				y[r*D+i] = x[r*D+i] * s * float64(g[i])
			}
		}
		return y
	}
	rope := func(x []float64, heads int) {
		for r := 0; r < len(x)/(heads*hd); r++ {
			pos := r % T
			for h := 0; h < heads; h++ {
				for i := 0; i < hd/2; i++ {
					ang := float64(pos) * math.Pow(10000, -float64(2*i)/float64(hd))
					a, b := &x[(r*heads+h)*hd+i], &x[(r*heads+h)*hd+i+hd/2]
					*a, *b = *a*math.Cos(ang)-*b*math.Sin(ang), *a*math.Sin(ang)+*b*math.Cos(ang)
				}
			}
		}
	}
	x := make([]float64, B*T*D)
	for i, tk := range toks {
		for j := 0; j < D; j++ {
			x[i*D+j] = float64(w("model.embed_tokens.weight")[int(tk)*D+j])
		}
	}
	for l := 0; l < tw.layers; l++ {
		p := fmt.Sprintf("model.layers.%d.", l)
		h := norm(x, w(p+"input_layernorm.weight"))
		q := lin(h, p+"self_attn.q_proj", D, D)
		k := lin(h, p+"self_attn.k_proj", kvd, D)
		v := lin(h, p+"self_attn.v_proj", kvd, D)
		rope(q, tw.heads)
		rope(k, tw.kv)
		att := make([]float64, B*T*D)
		for b := 0; b < B; b++ {
			for hh := 0; hh < tw.heads; hh++ {
				kh := hh / (tw.heads / tw.kv)
				for i := 0; i < T; i++ {
					sc := make([]float64, i+1)
					mx := math.Inf(-1)
					for j := 0; j <= i; j++ {
						for c := 0; c < hd; c++ {
							sc[j] += q[((b*T+i)*tw.heads+hh)*hd+c] * k[((b*T+j)*tw.kv+kh)*hd+c]
						}
						sc[j] /= math.Sqrt(float64(hd))
						mx = math.Max(mx, sc[j])
					}
					sum := 0.0
					for j := range sc {
						sc[j] = math.Exp(sc[j] - mx)
						sum += sc[j]
					}
					for j := range sc {
						for c := 0; c < hd; c++ {
							att[((b*T+i)*tw.heads+hh)*hd+c] += sc[j] / sum * v[((b*T+j)*tw.kv+kh)*hd+c]
						}
					}
				}
			}
		}
		o := lin(att, p+"self_attn.o_proj", D, D)
		for i := range x {
			x[i] += o[i]
		}
		h = norm(x, w(p+"post_attention_layernorm.weight"))
		g := lin(h, p+"mlp.gate_proj", H, D)
		u := lin(h, p+"mlp.up_proj", H, D)
		for i := range g {
			g[i] = g[i] / (1 + math.Exp(-g[i])) * u[i]
		}
		d := lin(g, p+"mlp.down_proj", D, H)
		for i := range x {
			x[i] += d[i]
		}
	}
	x = norm(x, w("model.norm.weight"))
	head := "lm_head"
	if tw.tied {
		head = "model.embed_tokens"
	}
	return lin(x, head, V, D)
}
