// Package learncmd implements "sparsify learn".
package learncmd

import (
	"context"
	"errors"
	"fmt"
	"math"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/sparsify/sparsify/cmd/sparsify/internal/cmdutil"
	"github.com/sparsify/sparsify/mask/maskllm"
	"github.com/sparsify/sparsify/model"
)

// Options are the flag values of one learn run.
type Options struct {
	IO    *cmdutil.IO
	Model string
	Learn maskllm.Options
}

// New returns the learn command.
func New(io *cmdutil.IO) *cobra.Command { return NewCmd(io, nil) }

// NewCmd builds the command; runF replaces Run in tests.
func NewCmd(io *cmdutil.IO, runF func(context.Context, *Options) error) *cobra.Command {
	o := &Options{IO: io, Learn: maskllm.DefaultOptions()}
	l := &o.Learn
	var tau, kappa []float64
	cmd := &cobra.Command{
		Use:   "learn MODEL OUT --data FILE",
		Short: "Learn 2:4 masks end to end with the weights frozen (MaskLLM)",
		Long: `Learn trains a differentiable 2:4 mask for every linear layer of the transformer
blocks (MaskLLM): 6 logits per group of 4 weights, Gumbel-softmax sampling with
temperature τ and logit scale κ on linear schedules, a prior from a one-shot mask,
a decaying sparse-weight regulariser and AdamW on the logits. The weights never
change; the result is the argmax mask.

OUT receives mask.safetensors (for "eval --mask" and "convert --mask"),
logits.safetensors (logits, AdamW moments and step: for --resume, or as --prior of
another run), log.csv and curve.png. Ctrl-C saves a checkpoint; --resume continues
to the same result as an uninterrupted run with the same seed.

--prior is sparsegpt (SparseGPT mask without weight update, calibrated on --data),
wanda, magnitude, none, a mask file, or a logits.safetensors (logits copied).`,
		Example: "  sparsify learn stories260K.gguf out --data tinystories-train.txt --eval tinystories-valid.txt\n" +
			"  sparsify learn model.gguf out --data train.txt --resume",
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Model, l.Out = args[0], args[1]
			if l.Data == "" {
				return &cmdutil.FlagError{Err: errors.New("--data FILE is required")}
			}
			if len(tau) != 2 || len(kappa) != 2 {
				return &cmdutil.FlagError{Err: errors.New("--tau and --kappa take two values: START,END")}
			}
			l.Tau0, l.Tau1, l.Kappa0, l.Kappa1 = tau[0], tau[1], kappa[0], kappa[1]
			if err := l.Validate(); err != nil {
				return &cmdutil.FlagError{Err: err}
			}
			if runF != nil {
				return runF(cmd.Context(), o)
			}
			return Run(cmd.Context(), o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&l.Data, "data", "", "training text, blank-line separated paragraphs (required)")
	f.StringVar(&l.Prior, "prior", l.Prior, "prior: sparsegpt, wanda, magnitude, none, MASKFILE or LOGITS")
	f.IntVar(&l.Steps, "steps", l.Steps, "optimizer steps")
	f.IntVar(&l.Batch, "batch", l.Batch, "sequences per step")
	f.IntVar(&l.SeqLen, "seq-len", l.SeqLen, "tokens per training sequence (and calibration window)")
	f.Uint64Var(&l.Seed, "seed", l.Seed, "seed of data windows, logit init and Gumbel noise")
	f.BoolVar(&l.Resume, "resume", false, "continue from OUT/logits.safetensors")
	f.StringVar(&l.Eval, "eval", "", "held-out text: hard-mask perplexity at the start, every --eval-every steps and at the end")
	f.IntVar(&l.EvalEvery, "eval-every", l.EvalEvery, "steps between held-out evaluations (0: start and end only)")
	f.IntVar(&l.EvalSeqLen, "eval-seq-len", l.EvalSeqLen, "held-out chunk length")
	f.IntVar(&l.CheckpointEvery, "checkpoint-every", l.CheckpointEvery, "steps between checkpoints (0: end and Ctrl-C only)")
	f.Float64Var(&l.LR, "lr", l.LR, "peak learning rate on the logits (cosine, no warm-up)")
	f.Float64Var(&l.MinLR, "min-lr", l.MinLR, "final learning rate")
	f.Float64SliceVar(&tau, "tau", []float64{l.Tau0, l.Tau1}, "Gumbel temperature START,END (linear)")
	f.Float64SliceVar(&kappa, "kappa", []float64{l.Kappa0, l.Kappa1}, "logit scale START,END (linear)")
	f.Float64Var(&l.Alpha, "alpha", l.Alpha, "prior strength α")
	f.Float64Var(&l.InitStd, "init-std", l.InitStd, "standard deviation of the random logit init")
	f.Float64Var(&l.Reg, "reg", l.Reg, "sparse-weight regulariser λ (decays linearly to 0)")
	f.Float64Var(&l.WeightDecay, "wd", l.WeightDecay, "AdamW weight decay on the logits")
	f.Float64Var(&l.Beta1, "beta1", l.Beta1, "AdamW β1")
	f.Float64Var(&l.Beta2, "beta2", l.Beta2, "AdamW β2")
	f.Float64Var(&l.Eps, "eps", l.Eps, "AdamW epsilon")
	f.Float64Var(&l.Clip, "clip", l.Clip, "global gradient-norm clip (0: off)")
	f.IntVar(&l.CalibSamples, "calib-samples", l.CalibSamples, "calibration windows for a one-shot prior")
	f.BoolVar(&l.Recompute, "recompute", false, "recompute activations per layer in the backward pass (less memory)")
	return cmd
}

// Run loads the model and learns.
func Run(ctx context.Context, o *Options) error {
	m, tok, err := model.Load(o.Model)
	if err != nil {
		return err
	}
	l := o.Learn
	l.Progress = o.IO.ErrOut
	l.Terminal = cmdutil.IsTerminal(o.IO.ErrOut)
	l.Log = o.IO.ErrOut
	r, err := maskllm.Learn(ctx, m, tok, l)
	if err != nil {
		if r != nil && ctx.Err() != nil {
			fmt.Fprintf(o.IO.ErrOut, "learn: interrupted; checkpoint in %s (continue with --resume)\n", filepath.Join(l.Out, maskllm.FileLogits))
		}
		return err
	}
	ppl := ""
	if !math.IsNaN(r.FinalPPL) {
		ppl = fmt.Sprintf(", held-out perplexity %.4f → %.4f", r.InitialPPL, r.FinalPPL)
	}
	fmt.Fprintf(o.IO.Out, "learned %d steps (%d tokens, %.0fs)%s; mask in %s\n", r.Steps, r.Tokens, r.Seconds, ppl,
		filepath.Join(l.Out, maskllm.FileMask))
	return nil
}
