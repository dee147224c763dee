package train

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"time"

	"github.com/sparsify/sparsify/format"
	"github.com/sparsify/sparsify/format/gguf"
	"github.com/sparsify/sparsify/model"
	"github.com/sparsify/sparsify/model/tokenizer"
)

// Options is the demo model's recipe.
type Options struct {
	Config model.Config
	Steps  int     // optimizer steps
	Batch  int     // sequences per step
	Seq    int     // tokens per sequence (inputs; each window is Seq+1)
	Seed   uint64  // initial weights and batch sampling
	LR     float64 // peak learning rate (cosine to LR/10 after Warmup steps)
	Warmup int
	// Log, if set, receives a progress line every LogEvery steps.
	Log      io.Writer
	LogEvery int
}

// DemoConfig is the shape of the shipped demo model: 4 layers of width 96,
// 6 query heads sharing 2 key/value heads (head size 16), SwiGLU 256,
// 512-token vocabulary, tied classifier, interleaved RoPE (GGUF "llama").
// Every linear matrix has rows a multiple of 32 and columns a multiple of 64,
// so all 21 take 2:4 in CUTLASS's layout (PyTorch's shape rule for 16-bit
// types; TestDemoConfigFitsCutlass). About 484k parameters (1.94 MB in F32).
func DemoConfig() model.Config {
	return model.Config{Dim: 128, Hidden: 256, Layers: 3, Heads: 8, KVHeads: 2, Vocab: 512, MaxSeq: 256,
		NormEps: 1e-5, RopeTheta: 10000, RopeInterleaved: true, Tied: true}
}

// NewModel returns a randomly initialised model with GGUF tensor names:
// weights N(0, 0.02), the residual projections (attn_output, ffn_down)
// N(0, 0.02/√(2·Layers)), norm gains 1.
func NewModel(c model.Config, seed uint64) (*model.Model, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	vec := func(n int, std float64) []float32 {
		s := make([]float32, n)
		for i := range s {
			s[i] = float32(rng.NormFloat64() * std)
		}
		return s
	}
	ones := func(n int) []float32 {
		s := make([]float32, n)
		for i := range s {
			s[i] = 1
		}
		return s
	}
	const std = 0.02
	resid := std / math.Sqrt(2*float64(c.Layers))
	kv := c.KVHeads * c.HeadDim()
	lin := func(name string, out, in int, sd float64) *model.Linear {
		return &model.Linear{Name: name, Out: out, In: in, W: vec(out*in, sd)}
	}
	m := &model.Model{Config: c, Embed: vec(c.Vocab*c.Dim, std), Source: "gguf"}
	for i := 0; i < c.Layers; i++ {
		p := fmt.Sprintf("blk.%d.", i)
		m.Layers = append(m.Layers, model.Layer{
			AttnNorm: ones(c.Dim),
			Q:        lin(p+"attn_q.weight", c.Dim, c.Dim, std),
			K:        lin(p+"attn_k.weight", kv, c.Dim, std),
			V:        lin(p+"attn_v.weight", kv, c.Dim, std),
			O:        lin(p+"attn_output.weight", c.Dim, c.Dim, resid),
			FFNNorm:  ones(c.Dim),
			Gate:     lin(p+"ffn_gate.weight", c.Hidden, c.Dim, std),
			Up:       lin(p+"ffn_up.weight", c.Hidden, c.Dim, std),
			Down:     lin(p+"ffn_down.weight", c.Dim, c.Hidden, resid),
		})
	}
	m.Norm = ones(c.Dim)
	if c.Tied {
		m.Output = &model.Linear{Name: "token_embd.weight", Out: c.Vocab, In: c.Dim, W: m.Embed}
	} else {
		m.Output = lin("output.weight", c.Vocab, c.Dim, std)
	}
	return m, nil
}

// Encode tokenizes paragraphs (BOS before each) into one stream.
func Encode(tok *tokenizer.Tokenizer, paragraphs []string) []int32 {
	var out []int32
	for _, p := range paragraphs {
		out = append(out, tok.Encode(p, true)...)
	}
	return out
}

// Stats is what a training run reports.
type Stats struct {
	Steps        int
	Tokens       int64
	FinalLoss    float64 // mean of the last min(50, Steps) steps' losses
	Wall         time.Duration
	TokensPerSec float64
}

// Train trains every weight of m on windows of Seq+1 tokens drawn uniformly
// at random from stream (seeded), with AdamW and a cosine schedule. The same
// options, stream and GOMAXPROCS give the same weights.
func Train(ctx context.Context, m *model.Model, stream []int32, o Options) (Stats, error) {
	if o.Steps <= 0 || o.Batch <= 0 || o.Seq <= 0 {
		return Stats{}, fmt.Errorf("train: steps, batch and seq must be positive")
	}
	if len(stream) < o.Seq+2 {
		return Stats{}, fmt.Errorf("train: %d tokens are fewer than one window of %d", len(stream), o.Seq+1)
	}
	rng := rand.New(rand.NewPCG(o.Seed, 0xba7c4))
	batch := make([]int32, o.Batch*(o.Seq+1))
	var g model.Grads
	opt := model.NewAdamW()
	params := m.Params()
	st := Stats{Steps: o.Steps}
	start := time.Now()
	lastT, lastTok := start, int64(0)
	var tail []float64
	every := max(o.LogEvery, 1)
	for step := 0; step < o.Steps; step++ {
		for b := 0; b < o.Batch; b++ {
			s := rng.IntN(len(stream) - o.Seq)
			copy(batch[b*(o.Seq+1):(b+1)*(o.Seq+1)], stream[s:s+o.Seq+1])
		}
		loss, err := m.LossGrad(ctx, batch, o.Batch, o.Seq, model.GradOptions{WeightGrads: true}, &g)
		if err != nil {
			return st, err
		}
		if math.IsNaN(loss) || math.IsInf(loss, 0) {
			return st, fmt.Errorf("train: loss is %v at step %d", loss, step)
		}
		lr := model.CosineLR(step, o.Warmup, o.Steps, o.LR, o.LR/10)
		gn, err := opt.Step(params, g.W, lr)
		if err != nil {
			return st, err
		}
		st.Tokens += int64(o.Batch * o.Seq)
		tail = append(tail, loss)
		if len(tail) > 50 {
			tail = tail[1:]
		}
		if o.Log != nil && ((step+1)%every == 0 || step == o.Steps-1) {
			now := time.Now()
			tps := float64(st.Tokens-lastTok) / now.Sub(lastT).Seconds()
			eta := time.Duration(float64(o.Steps-step-1) * float64(now.Sub(start)) / float64(step+1))
			fmt.Fprintf(o.Log, "step %5d/%d  loss %.4f  lr %.2e  |g| %.3f  %6.0f tokens/s  eta %s\n",
				step+1, o.Steps, loss, lr, gn, tps, eta.Round(time.Second))
			lastT, lastTok = now, st.Tokens
		}
	}
	st.Wall = time.Since(start)
	st.TokensPerSec = float64(st.Tokens) / st.Wall.Seconds()
	for _, l := range tail {
		st.FinalLoss += l / float64(len(tail))
	}
	return st, nil
}

// Perplexity follows the project's protocol: stream (paragraphs with BOS,
// concatenated) cut into non-overlapping chunks of seq tokens (tail
// dropped), exp of the mean next-token NLL over every predicted token
// (seq−1 per chunk). It runs LossGrad without gradients (whose loss equals
// the forward model's cross-entropy: TestLossGradMatchesForward).
func Perplexity(ctx context.Context, m *model.Model, stream []int32, seq int) (float64, int, error) {
	n := len(stream) / seq
	if n == 0 || seq < 2 {
		return 0, 0, fmt.Errorf("train: %d tokens are fewer than one chunk of %d", len(stream), seq)
	}
	const batch = 16
	var g model.Grads
	var nll float64
	count := 0
	for c0 := 0; c0 < n; c0 += batch {
		B := min(batch, n-c0)
		loss, err := m.LossGrad(ctx, stream[c0*seq:(c0+B)*seq], B, seq-1, model.GradOptions{}, &g)
		if err != nil {
			return 0, 0, err
		}
		nll += loss * float64(B*(seq-1))
		count += B * (seq - 1)
	}
	return math.Exp(nll / float64(count)), count, nil
}

// f32Tensor wraps a float32 slice for the GGUF writer.
func f32Tensor(name string, data []float32, shape ...int64) format.Tensor {
	return format.Tensor{Name: name, DType: format.F32, Shape: shape, Size: int64(4 * len(data)),
		WriteTo: func(w io.Writer) (int64, error) {
			var buf bytes.Buffer
			buf.Grow(4 * len(data))
			if err := binary.Write(&buf, binary.LittleEndian, data); err != nil {
				return 0, err
			}
			return buf.WriteTo(w)
		}}
}

// WriteGGUF writes m and its vocabulary as a GGUF v3 F32 file with the
// metadata llama.cpp's "llama" architecture uses. A tied classifier is not
// stored (readers tie when output.weight is absent).
func WriteGGUF(ctx context.Context, path string, m *model.Model, v *Vocab, name, description string) error {
	c := m.Config
	u32 := func(x int) gguf.Value { return gguf.MustValue(uint32(x)) }
	kv := []gguf.KV{
		{Key: "general.architecture", Value: gguf.MustValue("llama")},
		{Key: "general.name", Value: gguf.MustValue(name)},
		{Key: "general.description", Value: gguf.MustValue(description)},
		{Key: "general.file_type", Value: u32(0)},
		{Key: "llama.context_length", Value: u32(c.MaxSeq)},
		{Key: "llama.embedding_length", Value: u32(c.Dim)},
		{Key: "llama.feed_forward_length", Value: u32(c.Hidden)},
		{Key: "llama.block_count", Value: u32(c.Layers)},
		{Key: "llama.attention.head_count", Value: u32(c.Heads)},
		{Key: "llama.attention.head_count_kv", Value: u32(c.KVHeads)},
		{Key: "llama.rope.dimension_count", Value: u32(c.HeadDim())},
		{Key: "llama.rope.freq_base", Value: gguf.MustValue(c.RopeTheta)},
		{Key: "llama.attention.layer_norm_rms_epsilon", Value: gguf.MustValue(c.NormEps)},
		{Key: "llama.vocab_size", Value: u32(c.Vocab)},
		{Key: "tokenizer.ggml.model", Value: gguf.MustValue("llama")},
		{Key: "tokenizer.ggml.tokens", Value: gguf.MustValue(v.Tokens)},
		{Key: "tokenizer.ggml.scores", Value: gguf.MustValue(v.Scores)},
		{Key: "tokenizer.ggml.token_type", Value: gguf.MustValue(v.Types)},
		{Key: "tokenizer.ggml.unknown_token_id", Value: u32(UNK)},
		{Key: "tokenizer.ggml.bos_token_id", Value: u32(BOS)},
		{Key: "tokenizer.ggml.eos_token_id", Value: u32(EOS)},
		{Key: "tokenizer.ggml.add_bos_token", Value: gguf.MustValue(true)},
		{Key: "tokenizer.ggml.add_space_prefix", Value: gguf.MustValue(true)},
	}
	D := int64(c.Dim)
	ts := []format.Tensor{f32Tensor("token_embd.weight", m.Embed, int64(c.Vocab), D)}
	for i := range m.Layers {
		L := &m.Layers[i]
		p := fmt.Sprintf("blk.%d.", i)
		ts = append(ts, f32Tensor(p+"attn_norm.weight", L.AttnNorm, D))
		for _, l := range []*model.Linear{L.Q, L.K, L.V, L.O} {
			ts = append(ts, f32Tensor(l.Name, l.W, int64(l.Out), int64(l.In)))
		}
		ts = append(ts, f32Tensor(p+"ffn_norm.weight", L.FFNNorm, D))
		for _, l := range []*model.Linear{L.Gate, L.Up, L.Down} {
			ts = append(ts, f32Tensor(l.Name, l.W, int64(l.Out), int64(l.In)))
		}
	}
	ts = append(ts, f32Tensor("output_norm.weight", m.Norm, D))
	if !c.Tied {
		ts = append(ts, f32Tensor("output.weight", m.Output.W, int64(c.Vocab), D))
	}
	return gguf.Write(ctx, path, kv, ts, gguf.WriteOptions{})
}
