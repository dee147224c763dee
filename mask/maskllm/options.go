package maskllm

import (
	"errors"
	"fmt"
	"io"
	"math"

	"github.com/sparsify/sparsify/model"
)

// ErrOptions reports options that cannot be used.
var ErrOptions = errors.New("maskllm: bad options")

// Options are the settings of one learning run. Zero values are not
// defaults: start from DefaultOptions.
type Options struct {
	Out    string // output directory (logits.safetensors, mask.safetensors, log.csv, curve.png)
	Data   string // training text (blank-line separated paragraphs)
	Eval   string // held-out text for the hard-mask perplexity ("" = none)
	Resume bool   // continue from Out/logits.safetensors

	Steps  int    // optimizer steps T (2000)
	Batch  int    // sequences per step (16)
	SeqLen int    // tokens per sequence (256)
	Seed   uint64 // data windows, logit init and Gumbel noise (0)

	// Prior: "sparsegpt" (SparseGPT mask-only, the default), "wanda",
	// "magnitude", "none", a mask file, or a logits file (logits copied:
	// transfer from a learned mask).
	Prior        string
	CalibSamples int     // calibration windows for the one-shot prior (128, of SeqLen tokens)
	Alpha        float64 // prior strength α (3)
	InitStd      float64 // logit init N(0, InitStd) (0.01)

	Tau0, Tau1     float64 // temperature, linear (4 → 0.05)
	Kappa0, Kappa1 float64 // logit scale, linear (100 → 500)
	Reg            float64 // sparse-weight regulariser λ, decays linearly to 0 (1e-5)

	LR, MinLR    float64 // cosine (5e-4 → 5e-5), no warm-up
	WeightDecay  float64 // decoupled, applies to the logits (0.1)
	Beta1, Beta2 float64 // (0.9, 0.95)
	Eps          float64 // (1e-5)
	Clip         float64 // global gradient-norm clip (1.0; 0 = off)

	EvalEvery       int // held-out eval every K steps (100; 0 = only start and end)
	EvalSeqLen      int // eval chunk length (256)
	CheckpointEvery int // checkpoint every K steps (100; 0 = only at the end and on cancel)
	Recompute       bool
	// StopAfter, if > 0, ends the run after that many completed steps (the
	// schedules still span Steps): the outputs are written as at the end,
	// and Resume continues the run later.
	StopAfter int

	// Progress receives the progress bar (nil: silent); Terminal redraws
	// one line instead of printing lines.
	Progress io.Writer
	Terminal bool
	// Log receives one line per phase (prior, eval, checkpoint) (nil: silent).
	Log io.Writer
}

// DefaultOptions are the released code's settings (spec §1.5).
func DefaultOptions() Options {
	return Options{Steps: 2000, Batch: 16, SeqLen: 256, Prior: "sparsegpt", CalibSamples: 128,
		Alpha: 3, InitStd: 0.01, Tau0: 4, Tau1: 0.05, Kappa0: 100, Kappa1: 500, Reg: 1e-5,
		LR: 5e-4, MinLR: 5e-5, WeightDecay: 0.1, Beta1: 0.9, Beta2: 0.95, Eps: 1e-5, Clip: 1,
		EvalEvery: 100, EvalSeqLen: 256, CheckpointEvery: 100}
}

// Validate checks the options.
func (o *Options) Validate() error {
	fin := func(vs ...float64) bool {
		for _, v := range vs {
			if math.IsNaN(v) || math.IsInf(v, 0) {
				return false
			}
		}
		return true
	}
	switch {
	case o.Steps <= 0 || o.Batch <= 0 || o.SeqLen < 2:
		return fmt.Errorf("%w: steps %d, batch %d, seq-len %d must be positive (seq-len ≥ 2)", ErrOptions, o.Steps, o.Batch, o.SeqLen)
	case int64(o.Batch)*int64(o.SeqLen) > 1<<24:
		return fmt.Errorf("%w: batch %d × seq-len %d is too large", ErrOptions, o.Batch, o.SeqLen)
	case !fin(o.Alpha, o.InitStd, o.Tau0, o.Tau1, o.Kappa0, o.Kappa1, o.Reg, o.LR, o.MinLR, o.WeightDecay, o.Beta1, o.Beta2, o.Eps, o.Clip):
		return fmt.Errorf("%w: a numeric setting is NaN or infinite", ErrOptions)
	case o.Tau0 <= 0 || o.Tau1 <= 0:
		return fmt.Errorf("%w: temperature %g → %g must stay positive", ErrOptions, o.Tau0, o.Tau1)
	case o.InitStd < 0 || o.Reg < 0 || o.LR < 0 || o.MinLR < 0 || o.WeightDecay < 0 || o.Clip < 0 || o.Eps <= 0:
		return fmt.Errorf("%w: init-std, reg, lr, wd and clip must be ≥ 0 and eps > 0", ErrOptions)
	case o.Beta1 < 0 || o.Beta1 >= 1 || o.Beta2 < 0 || o.Beta2 >= 1:
		return fmt.Errorf("%w: betas %g, %g must be in [0, 1)", ErrOptions, o.Beta1, o.Beta2)
	case o.EvalEvery < 0 || o.CheckpointEvery < 0 || o.CalibSamples < 0 || o.StopAfter < 0:
		return fmt.Errorf("%w: eval-every, checkpoint-every and calib-samples must be ≥ 0", ErrOptions)
	case o.Eval != "" && o.EvalSeqLen < 2:
		return fmt.Errorf("%w: eval seq-len %d", ErrOptions, o.EvalSeqLen)
	}
	return nil
}

// Schedule is the value of every scheduled setting at one step.
type Schedule struct {
	Tau, Kappa, Lambda, LR float64
}

// At returns the schedules at step t (completed optimizer steps, 0-based):
// τ and κ linear in t/T, λ_t = λ(1 − t/T), lr cosine from LR to MinLR.
func (o *Options) At(t int) Schedule {
	f := float64(t) / float64(o.Steps)
	return Schedule{
		Tau:    o.Tau0 + (o.Tau1-o.Tau0)*f,
		Kappa:  o.Kappa0 + (o.Kappa1-o.Kappa0)*f,
		Lambda: o.Reg * (1 - f),
		LR:     model.CosineLR(t, 0, o.Steps, o.LR, o.MinLR),
	}
}
