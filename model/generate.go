package model

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"sync"

	"github.com/sparsify/sparsify/model/tokenizer"
)

// Session runs one sequence incrementally with a key/value cache, for
// generation. It is not safe for concurrent use.
type Session struct {
	m      *Model
	maxT   int
	pos    int
	kc, vc [][]float32 // per layer [maxT, KVHeads*HeadDim]
}

// NewSession prepares a cache for up to maxT positions.
func (m *Model) NewSession(maxT int) *Session {
	kvd := m.Config.KVHeads * m.Config.HeadDim()
	s := &Session{m: m, maxT: maxT, kc: make([][]float32, len(m.Layers)), vc: make([][]float32, len(m.Layers))}
	for i := range m.Layers {
		s.kc[i] = make([]float32, maxT*kvd)
		s.vc[i] = make([]float32, maxT*kvd)
	}
	return s
}

// Pos is the number of positions consumed so far.
func (s *Session) Pos() int { return s.pos }

// Step feeds tokens at the next positions and writes the logits of the last
// one into logits [Vocab].
func (s *Session) Step(tokens []int32, logits []float32) error {
	m, c := s.m, s.m.Config
	n := len(tokens)
	if n == 0 || s.pos+n > s.maxT {
		return fmt.Errorf("model: session of %d positions cannot take %d more after %d", s.maxT, n, s.pos)
	}
	for i, t := range tokens {
		if t < 0 || int(t) >= c.Vocab {
			return fmt.Errorf("model: token %d at %d is outside the vocabulary of %d", t, i, c.Vocab)
		}
	}
	hd := c.HeadDim()
	kvd := c.KVHeads * hd
	x := m.EmbedTokens(tokens)
	h := make([]float32, n*c.Dim)
	q := make([]float32, n*c.Dim)
	att := make([]float32, n*c.Dim)
	g := make([]float32, n*c.Hidden)
	u := make([]float32, n*c.Hidden)
	rope := m.Rope(s.pos + n)
	for li := range m.Layers {
		L := &m.Layers[li]
		RMSNorm(h, x, L.AttnNorm, n, c.Dim, c.NormEps)
		L.Q.Forward(q, h, n)
		k := s.kc[li][s.pos*kvd : (s.pos+n)*kvd]
		v := s.vc[li][s.pos*kvd : (s.pos+n)*kvd]
		L.K.Forward(k, h, n)
		L.V.Forward(v, h, n)
		rope.Apply(q, 1, n, c.Heads, s.pos)
		rope.Apply(k, 1, n, c.KVHeads, s.pos)
		cachedAttention(att, q, s.kc[li], s.vc[li], s.pos, n, c.Heads, c.KVHeads, hd)
		L.O.Forward(h, att, n)
		for j := range x {
			x[j] += h[j]
		}
		RMSNorm(h, x, L.FFNNorm, n, c.Dim, c.NormEps)
		L.Gate.Forward(g, h, n)
		L.Up.Forward(u, h, n)
		SwiGLU(g, g, u)
		L.Down.Forward(h, g, n)
		for j := range x {
			x[j] += h[j]
		}
	}
	s.pos += n
	last := x[(n-1)*c.Dim:]
	m.Head(logits[:c.Vocab], last, 1)
	return nil
}

// cachedAttention attends n new queries (positions pos..pos+n-1) over the
// cache holding positions 0..pos+n-1.
func cachedAttention(out, q, kc, vc []float32, pos, n, heads, kvHeads, hd int) {
	group := heads / kvHeads
	qs, ks := heads*hd, kvHeads*hd
	scale := float32(1 / math.Sqrt(float64(hd)))
	nw := min(workers(), heads)
	var wg sync.WaitGroup
	for w := 0; w < nw; w++ {
		wg.Go(func() {
			sc := make([]float32, pos+n)
			for h := w; h < heads; h += nw {
				kh := h / group
				for i := 0; i < n; i++ {
					qv := q[i*qs+h*hd : i*qs+(h+1)*hd]
					vis := pos + i + 1
					a := sc[:vis]
					for s := range a {
						kv := kc[s*ks+kh*hd : s*ks+(kh+1)*hd]
						var d float32
						for j, x := range qv {
							d += x * kv[j]
						}
						a[s] = d * scale
					}
					Softmax(a)
					o := out[i*qs+h*hd : i*qs+(h+1)*hd]
					clear(o)
					for s, p := range a {
						vv := vc[s*ks+kh*hd : s*ks+(kh+1)*hd]
						for j, x := range vv {
							o[j] += p * x
						}
					}
				}
			}
		})
	}
	wg.Wait()
}

// Sampler picks the next token from logits: greedy (argmax) at temperature
// 0, otherwise a draw from softmax(logits/temperature).
type Sampler struct {
	Temperature float32
	rng         *rand.Rand
	probs       []float32
}

// NewSampler seeds a sampler.
func NewSampler(temperature float32, seed uint64) *Sampler {
	return &Sampler{Temperature: temperature, rng: rand.New(rand.NewPCG(seed, 0x5eed))}
}

// Sample returns the chosen token id.
func (s *Sampler) Sample(logits []float32) int32 {
	if s.Temperature <= 0 {
		best := 0
		for i, v := range logits {
			if v > logits[best] {
				best = i
			}
		}
		return int32(best)
	}
	if cap(s.probs) < len(logits) {
		s.probs = make([]float32, len(logits))
	}
	p := s.probs[:len(logits)]
	for i, v := range logits {
		p[i] = v / s.Temperature
	}
	Softmax(p)
	r := s.rng.Float32()
	var acc float32
	for i, v := range p {
		acc += v
		if r < acc {
			return int32(i)
		}
	}
	return int32(len(p) - 1)
}

// Generate continues prompt by up to n tokens (stopping at EOS), calling emit
// with the text of each new token as it is produced. It returns the generated
// ids (prompt excluded).
func Generate(ctx context.Context, m *Model, tok *tokenizer.Tokenizer, prompt string, n int, smp *Sampler, emit func(string)) ([]int32, error) {
	ids := tok.Encode(prompt, true)
	if len(ids) == 0 {
		return nil, fmt.Errorf("model: empty prompt and no BOS token")
	}
	maxT := len(ids) + n
	if m.Config.MaxSeq > 0 && maxT > m.Config.MaxSeq {
		maxT = m.Config.MaxSeq
		if len(ids) >= maxT {
			return nil, fmt.Errorf("model: prompt of %d tokens fills the context of %d", len(ids), maxT)
		}
	}
	s := m.NewSession(maxT)
	logits := make([]float32, m.Config.Vocab)
	if err := s.Step(ids, logits); err != nil {
		return nil, err
	}
	var out []int32
	prev := ids[len(ids)-1]
	for len(out) < n && s.Pos() < maxT {
		if err := ctx.Err(); err != nil {
			return out, err
		}
		next := smp.Sample(logits)
		if next == tok.EOS() {
			break
		}
		out = append(out, next)
		if emit != nil {
			emit(tok.DecodeToken(prev, next))
		}
		prev = next
		if s.Pos() >= maxT {
			break
		}
		if err := s.Step([]int32{next}, logits); err != nil {
			return out, err
		}
	}
	return out, nil
}
