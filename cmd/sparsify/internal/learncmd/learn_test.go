package learncmd

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/sparsify/sparsify/cmd/sparsify/internal/cmdutil"
	"github.com/sparsify/sparsify/mask/maskllm"
)

func run(t *testing.T, args ...string) (*Options, error) {
	t.Helper()
	var got *Options
	io := &cmdutil.IO{In: &bytes.Buffer{}, Out: &bytes.Buffer{}, ErrOut: &bytes.Buffer{}}
	cmd := NewCmd(io, func(_ context.Context, o *Options) error { got = o; return nil })
	cmd.SetArgs(args)
	cmd.SetOut(&bytes.Buffer{})
	cmd.SetErr(&bytes.Buffer{})
	err := cmd.ExecuteContext(context.Background())
	return got, err
}

func TestFlagsDefaults(t *testing.T) {
	o, err := run(t, "m.gguf", "out", "--data", "train.txt")
	if err != nil {
		t.Fatal(err)
	}
	want := maskllm.DefaultOptions()
	want.Out, want.Data = "out", "train.txt"
	l := o.Learn
	if o.Model != "m.gguf" || l.Out != want.Out || l.Data != want.Data || l.Steps != 2000 || l.Batch != 16 ||
		l.SeqLen != 256 || l.Tau0 != 4 || l.Tau1 != 0.05 || l.Kappa0 != 100 || l.Kappa1 != 500 || l.Alpha != 3 ||
		l.Reg != 1e-5 || l.LR != 5e-4 || l.MinLR != 5e-5 || l.WeightDecay != 0.1 || l.Beta1 != 0.9 ||
		l.Beta2 != 0.95 || l.Eps != 1e-5 || l.Clip != 1 || l.InitStd != 0.01 || l.Prior != "sparsegpt" ||
		l.CalibSamples != 128 {
		t.Errorf("defaults: %+v", l)
	}
}

func TestFlagsParsed(t *testing.T) {
	o, err := run(t, "m.gguf", "out", "--data", "d.txt", "--prior", "wanda", "--steps", "30", "--batch", "4",
		"--seq-len", "64", "--seed", "9", "--resume", "--eval", "v.txt", "--eval-every", "5", "--lr", "1e-3",
		"--tau", "2,0.1", "--kappa", "10,50", "--alpha", "2", "--reg", "0", "--wd", "0", "--clip", "0",
		"--calib-samples", "16", "--recompute")
	if err != nil {
		t.Fatal(err)
	}
	l := o.Learn
	if l.Prior != "wanda" || l.Steps != 30 || l.Batch != 4 || l.SeqLen != 64 || l.Seed != 9 || !l.Resume ||
		l.Eval != "v.txt" || l.EvalEvery != 5 || l.LR != 1e-3 || l.Tau0 != 2 || l.Tau1 != 0.1 || l.Kappa0 != 10 ||
		l.Kappa1 != 50 || l.Alpha != 2 || l.Reg != 0 || l.WeightDecay != 0 || l.Clip != 0 || l.CalibSamples != 16 ||
		!l.Recompute {
		t.Errorf("parsed: %+v", l)
	}
}

func TestFlagErrors(t *testing.T) {
	for _, args := range [][]string{
		{"m.gguf", "out"},
		{"m.gguf", "out", "--data", "d", "--steps", "0"},
		{"m.gguf", "out", "--data", "d", "--tau", "1"},
		{"m.gguf", "out", "--data", "d", "--tau", "1,0"},
	} {
		_, err := run(t, args...)
		var fe *cmdutil.FlagError
		if !errors.As(err, &fe) {
			t.Errorf("%v: error %v, want a FlagError", args, err)
		}
	}
}
