// Package evalcmd implements "sparsify eval".
package evalcmd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/sparsify/sparsify/cmd/sparsify/internal/cmdutil"
	"github.com/sparsify/sparsify/mask"
	"github.com/sparsify/sparsify/model"
)

// Options are the flag values of one eval run.
type Options struct {
	IO        *cmdutil.IO
	Model     string
	Text      string
	SeqLen    int
	Mask      string
	Tokenizer string
	Batch     int
	JSON      bool
}

// Result is what eval reports (the --json object).
type Result struct {
	Model        string  `json:"model"`
	Text         string  `json:"text"`
	Mask         string  `json:"mask,omitempty"`
	MaskedLayers int     `json:"masked_layers"`
	SeqLen       int     `json:"seq_len"`
	Chunks       int     `json:"chunks"`
	Tokens       int     `json:"predicted_tokens"`
	Perplexity   float64 `json:"perplexity"`
	Seconds      float64 `json:"seconds"`
	TokensPerSec float64 `json:"tokens_per_second"`
}

// New returns the eval command.
func New(io *cmdutil.IO) *cobra.Command { return NewCmd(io, nil) }

// NewCmd builds the command; runF replaces Run in tests.
func NewCmd(io *cmdutil.IO, runF func(context.Context, *Options) error) *cobra.Command {
	o := &Options{IO: io}
	cmd := &cobra.Command{
		Use:   "eval MODEL --text FILE",
		Short: "Measure a model's perplexity on a text, optionally under a mask file",
		Long: `Eval computes perplexity by the protocol of the published numbers: every paragraph
of the text (blank-line separated, stripped) is tokenized with BOS first, the ids are
concatenated and cut into non-overlapping chunks of --seq-len tokens (the tail is
dropped), and the result is exp(mean next-token NLL) over all predicted tokens.

MODEL is a GGUF file, a Hugging Face directory (including sparse checkpoints
sparsify wrote) or a llama2.c .bin. --mask applies hard masks from a mask file
(keys are the model's tensor names) without writing a model.`,
		Example: "  sparsify eval stories260K.gguf --text tinystories-valid.txt\n" +
			"  sparsify eval stories260K.gguf --text valid.txt --mask out/mask.safetensors --json",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Model = args[0]
			if o.Text == "" {
				return &cmdutil.FlagError{Err: errors.New("--text FILE is required")}
			}
			if o.SeqLen < 2 {
				return &cmdutil.FlagError{Err: fmt.Errorf("--seq-len %d: want at least 2", o.SeqLen)}
			}
			if o.Batch < 0 {
				return &cmdutil.FlagError{Err: fmt.Errorf("--batch %d: want ≥ 0", o.Batch)}
			}
			if runF != nil {
				return runF(cmd.Context(), o)
			}
			return Run(cmd.Context(), o)
		},
	}
	cmd.Flags().StringVar(&o.Text, "text", "", "text file to evaluate on (required)")
	cmd.Flags().IntVar(&o.SeqLen, "seq-len", 256, "chunk length in tokens")
	cmd.Flags().StringVar(&o.Tokenizer, "tokenizer", "", "tokenizer file instead of the model's own (tokenizer.json, tokenizer.gguf.json, GGUF, llama2.c tokenizer.bin)")
	cmd.Flags().StringVar(&o.Mask, "mask", "", "mask file (safetensors of U8/BOOL masks keyed by tensor name)")
	cmd.Flags().IntVar(&o.Batch, "batch", 0, "chunks per forward pass (0: about 2048 tokens)")
	cmd.Flags().BoolVar(&o.JSON, "json", false, "print the result as JSON")
	return cmd
}

// Run evaluates and prints the result.
func Run(ctx context.Context, o *Options) error {
	r, err := Evaluate(ctx, o)
	if err != nil {
		return err
	}
	if o.JSON {
		e := json.NewEncoder(o.IO.Out)
		e.SetIndent("", "  ")
		return e.Encode(r)
	}
	masked := ""
	if r.Mask != "" {
		masked = fmt.Sprintf(", %d layers masked by %s", r.MaskedLayers, r.Mask)
	}
	fmt.Fprintf(o.IO.Out, "perplexity %.4f  (seq-len %d, %d chunks, %d predicted tokens%s; %.1fs, %.0f tokens/s)\n",
		r.Perplexity, r.SeqLen, r.Chunks, r.Tokens, masked, r.Seconds, r.TokensPerSec)
	return nil
}

// Evaluate loads the model (and mask) and measures perplexity, printing
// progress lines on o.IO.ErrOut.
func Evaluate(ctx context.Context, o *Options) (*Result, error) {
	text, err := os.ReadFile(o.Text)
	if err != nil {
		return nil, err
	}
	m, tok, err := model.LoadWithTokenizer(o.Model, o.Tokenizer)
	if err != nil {
		return nil, err
	}
	r := &Result{Model: o.Model, Text: o.Text, Mask: o.Mask, SeqLen: o.SeqLen}
	if o.Mask != "" {
		masks, _, err := mask.ReadFile(o.Mask)
		if err != nil {
			return nil, err
		}
		if err := m.ApplyMasks(masks); err != nil {
			return nil, fmt.Errorf("%s: %w", o.Mask, err)
		}
		r.MaskedLayers = len(masks)
	}
	ids := model.TokenizeParagraphs(tok, string(text))
	tty := cmdutil.IsTerminal(o.IO.ErrOut)
	start := time.Now()
	last := start
	progress := func(done, total int) {
		now := time.Now()
		if done < total && now.Sub(last) < time.Second {
			return
		}
		last = now
		el := now.Sub(start).Seconds()
		rate := float64(done*o.SeqLen) / el
		eta := time.Duration(float64(total-done) * float64(o.SeqLen) / rate * float64(time.Second)).Round(time.Second)
		line := fmt.Sprintf("eval: %d/%d chunks, %.0f tokens/s, ETA %v", done, total, rate, eta)
		if tty {
			fmt.Fprintf(o.IO.ErrOut, "\r%s\033[K", line)
			if done == total {
				fmt.Fprintln(o.IO.ErrOut)
			}
		} else {
			fmt.Fprintln(o.IO.ErrOut, line)
		}
	}
	ppl, n, err := model.PerplexityTokens(ctx, m, ids, o.SeqLen, o.Batch, progress)
	if err != nil {
		return nil, err
	}
	r.Perplexity, r.Tokens, r.Chunks = ppl, n, len(ids)/o.SeqLen
	r.Seconds = time.Since(start).Seconds()
	r.TokensPerSec = float64(r.Chunks*o.SeqLen) / r.Seconds
	return r, nil
}
