package model

import (
	"context"
	"fmt"
	"math"
	"strings"

	"github.com/sparsify/sparsify/model/tokenizer"
)

// Paragraphs splits text at blank lines and strips each paragraph of
// surrounding white space, dropping empty ones.
func Paragraphs(text string) []string {
	text = strings.ReplaceAll(text, "\r\n", "\n")
	var out []string
	for _, p := range strings.Split(text, "\n\n") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// TokenizeParagraphs encodes every paragraph of text with BOS first and
// concatenates the ids (the stream of the perplexity protocol).
func TokenizeParagraphs(tok *tokenizer.Tokenizer, text string) []int32 {
	var ids []int32
	for _, p := range Paragraphs(text) {
		ids = append(ids, tok.Encode(p, true)...)
	}
	return ids
}

// Perplexity evaluates text by the protocol of the published numbers:
// paragraphs (blank-line separated, stripped) are tokenized with BOS first
// and concatenated, the stream is cut into non-overlapping chunks of seqLen
// tokens (the tail dropped), and the result is exp(mean next-token NLL) over
// all seqLen−1 predictions of every chunk. tokens is the number of predicted
// tokens. progress, if non-nil, is called after each batch of chunks.
func Perplexity(ctx context.Context, m *Model, tok *tokenizer.Tokenizer, text string, seqLen int, progress func(done, total int)) (ppl float64, tokens int, err error) {
	return PerplexityTokens(ctx, m, TokenizeParagraphs(tok, text), seqLen, 0, progress)
}

// PerplexityTokens is Perplexity on an already tokenized stream, running
// batch chunks per forward pass (0 = choose: about 2048 tokens per pass).
func PerplexityTokens(ctx context.Context, m *Model, ids []int32, seqLen, batch int, progress func(done, total int)) (ppl float64, tokens int, err error) {
	if seqLen < 2 {
		return 0, 0, fmt.Errorf("model: sequence length %d: want at least 2", seqLen)
	}
	n := len(ids) / seqLen
	if n == 0 {
		return 0, 0, fmt.Errorf("model: %d tokens do not fill one chunk of %d", len(ids), seqLen)
	}
	if batch <= 0 {
		batch = max(1, 2048/seqLen)
	}
	batch = min(batch, n)
	V := m.Config.Vocab
	logits := make([]float32, batch*seqLen*V)
	var nll float64
	for c0 := 0; c0 < n; c0 += batch {
		B := min(batch, n-c0)
		chunk := ids[c0*seqLen : (c0+B)*seqLen]
		if err := m.Forward(ctx, chunk, B, seqLen, logits[:B*seqLen*V]); err != nil {
			return 0, 0, err
		}
		for b := 0; b < B; b++ {
			for t := 0; t+1 < seqLen; t++ {
				r := b*seqLen + t
				nll += NLL(logits[r*V:(r+1)*V], chunk[r+1])
			}
		}
		tokens += B * (seqLen - 1)
		if progress != nil {
			progress(c0+B, n)
		}
	}
	return math.Exp(nll / float64(tokens)), tokens, nil
}

// NLL is −log softmax(logits)[target], computed in float64.
func NLL(logits []float32, target int32) float64 {
	mx := logits[0]
	for _, v := range logits[1:] {
		if v > mx {
			mx = v
		}
	}
	var sum float64
	for _, v := range logits {
		sum += float64(fastExp(v - mx))
	}
	return math.Log(sum) - float64(logits[target]-mx)
}
