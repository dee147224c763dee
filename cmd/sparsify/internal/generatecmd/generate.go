// Package generatecmd implements "sparsify generate".
package generatecmd

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/sparsify/sparsify/cmd/sparsify/internal/cmdutil"
	"github.com/sparsify/sparsify/mask"
	"github.com/sparsify/sparsify/model"
)

// Options are the flag values of one generate run.
type Options struct {
	IO          *cmdutil.IO
	Model       string
	Prompt      string
	Tokens      int
	Temperature float32
	Seed        uint64
	Mask        string
	Tokenizer   string
}

// New returns the generate command.
func New(io *cmdutil.IO) *cobra.Command { return NewCmd(io, nil) }

// NewCmd builds the command; runF replaces Run in tests.
func NewCmd(io *cmdutil.IO, runF func(context.Context, *Options) error) *cobra.Command {
	o := &Options{IO: io}
	cmd := &cobra.Command{
		Use:   "generate MODEL --prompt TEXT",
		Short: "Continue a prompt with a model, to see what pruning did to its text",
		Long: `Generate continues --prompt by up to --tokens tokens (stopping at end of sequence),
greedily at --temperature 0 (the default) or by sampling from the softmax at the
given temperature with --seed. The prompt and the continuation go to stdout as they
are produced; timing goes to stderr. MODEL is anything eval takes; --mask applies a
mask file first.`,
		Example: "  sparsify generate stories260K.gguf --prompt \"Once upon a time\"\n" +
			"  sparsify generate out/ --prompt \"Once upon a time\" --temperature 0.8 --seed 1",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Model = args[0]
			if !cmd.Flags().Changed("prompt") {
				return &cmdutil.FlagError{Err: errors.New("--prompt TEXT is required")}
			}
			if o.Tokens <= 0 || o.Tokens > 1<<20 {
				return &cmdutil.FlagError{Err: fmt.Errorf("--tokens %d: want 1..%d", o.Tokens, 1<<20)}
			}
			if o.Temperature < 0 || o.Temperature != o.Temperature {
				return &cmdutil.FlagError{Err: fmt.Errorf("--temperature %v: want ≥ 0", o.Temperature)}
			}
			if runF != nil {
				return runF(cmd.Context(), o)
			}
			return Run(cmd.Context(), o)
		},
	}
	cmd.Flags().StringVar(&o.Prompt, "prompt", "", "text to continue (required)")
	cmd.Flags().IntVar(&o.Tokens, "tokens", 128, "maximum number of new tokens")
	cmd.Flags().Float32Var(&o.Temperature, "temperature", 0, "sampling temperature (0: greedy)")
	cmd.Flags().Uint64Var(&o.Seed, "seed", 0, "random seed for sampling")
	cmd.Flags().StringVar(&o.Tokenizer, "tokenizer", "", "tokenizer file instead of the model's own (tokenizer.json, tokenizer.gguf.json, GGUF, llama2.c tokenizer.bin)")
	cmd.Flags().StringVar(&o.Mask, "mask", "", "mask file to apply before generating")
	return cmd
}

// Run generates and streams the text.
func Run(ctx context.Context, o *Options) error {
	m, tok, err := model.LoadWithTokenizer(o.Model, o.Tokenizer)
	if err != nil {
		return err
	}
	if o.Mask != "" {
		masks, _, err := mask.ReadFile(o.Mask)
		if err != nil {
			return err
		}
		if err := m.ApplyMasks(masks); err != nil {
			return fmt.Errorf("%s: %w", o.Mask, err)
		}
	}
	fmt.Fprint(o.IO.Out, o.Prompt)
	start := time.Now()
	out, err := model.Generate(ctx, m, tok, o.Prompt, o.Tokens, model.NewSampler(o.Temperature, o.Seed),
		func(s string) { fmt.Fprint(o.IO.Out, s) })
	fmt.Fprintln(o.IO.Out)
	if err != nil {
		return err
	}
	el := time.Since(start).Seconds()
	fmt.Fprintf(o.IO.ErrOut, "generate: %d tokens in %.2fs (%.1f tokens/s)\n", len(out), el, float64(len(out))/el)
	return nil
}
