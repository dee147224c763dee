// Package convertcmd implements "sparsify convert".
package convertcmd

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/sparsify/sparsify/cmd/sparsify/internal/cmdutil"
	"github.com/sparsify/sparsify/mask"
	"github.com/sparsify/sparsify/mask/calib"
	"github.com/sparsify/sparsify/pack"
)

// Options are the flag values of one convert run.
type Options struct {
	IO           *cmdutil.IO
	In, Out      string
	To           string
	DType        string
	Method       string
	Mask         string
	Pattern      string
	Layout       string
	Targets      []string
	Ignore       []string
	SaveMask     string
	Compress     string
	MaxShardSize string
	Jobs         int
	Strict       bool
	Force        bool
	Quiet        bool
	Calib        string
	CalibSamples int
	SeqLen       int
	Seed         uint64
}

// Methods are the --method values: "none" and every method of calib.Methods.
var Methods = append([]string{"none"}, calib.Methods...)

// calibrated reports whether method needs --calib: every calib method but
// magnitude, which uses no data.
func calibrated(method string) bool { return method != "none" && method != "magnitude" }

// New returns the convert command.
func New(io *cmdutil.IO) *cobra.Command { return NewCmd(io, nil) }

// NewCmd builds the command; runF replaces Run in tests.
func NewCmd(io *cmdutil.IO, runF func(context.Context, *Options) error) *cobra.Command {
	o := &Options{IO: io}
	cmd := &cobra.Command{
		Use:   "convert IN OUT",
		Short: "Convert a checkpoint between safetensors and GGUF, prune it and pack it",
		Long: `Convert reads IN (a GGUF file, a safetensors file, or a Hugging Face directory,
dense or already sparse) and writes OUT: a Hugging Face directory (or OUT.safetensors)
for --to safetensors, a GGUF file for --to gguf.

With --method or --mask, the target weights (by default the 2-D linear weights of the
transformer blocks) are pruned to --pattern; --layout chooses how they are stored:
  dense    masked dense weights, +0.0 in pruned slots (loads everywhere)
  cutlass  P.packed, P.meta, P.shape: PyTorch/CUTLASS semi-structured layout
  bitmask  compressed-tensors sparse-24-bitmask (P.compressed, P.bitmask, P.shape)
A sparse checkpoint as input is expanded: "convert packed/ dense/ --layout dense".
Sparse outputs carry a sparsify.json manifest. Output is atomic; IN is never written.`,
		Example: `  sparsify convert model.gguf model-hf/
  sparsify convert model-hf/ model.gguf --to gguf --dtype f16
  sparsify convert stories260K.gguf out/ --dtype bf16 --method magnitude --layout cutlass
  sparsify convert out/ dense/ --layout dense`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.In, o.Out = args[0], args[1]
			if err := o.validate(); err != nil {
				return &cmdutil.FlagError{Err: err}
			}
			if runF != nil {
				return runF(cmd.Context(), o)
			}
			return Run(cmd.Context(), o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.To, "to", "", "output format: safetensors or gguf (default: gguf for OUT ending in .gguf; safetensors for OUT ending in / or .safetensors, for --layout cutlass|bitmask and --compress; else the input's)")
	f.StringVar(&o.DType, "dtype", "keep", "output dtype of float tensors: keep, f32, f16 or bf16 (quantized inputs are dequantized)")
	f.StringVar(&o.Method, "method", "none", "mask method: "+strings.Join(Methods, ", "))
	f.StringVar(&o.Mask, "mask", "", "apply the masks in `FILE` (written by --save-mask)")
	f.StringVar(&o.Pattern, "pattern", "2:4", "N:M sparsity pattern")
	f.StringVar(&o.Layout, "layout", "dense", "layout of pruned weights: dense, cutlass or bitmask")
	f.StringArrayVar(&o.Targets, "targets", nil, "regular expression selecting weights to prune (repeatable; default: the blocks' linear weights)")
	f.StringArrayVar(&o.Ignore, "ignore", nil, "regular expression excluding weights from pruning (repeatable)")
	f.StringVar(&o.SaveMask, "save-mask", "", "write the masks to `FILE` (U8 safetensors, usable by --mask)")
	f.StringVar(&o.Compress, "compress", "", "compress output files: zstd")
	f.StringVar(&o.MaxShardSize, "max-shard-size", "5GB", "largest safetensors shard (e.g. 5GB, 500MB, 2GiB)")
	f.IntVar(&o.Jobs, "jobs", runtime.NumCPU(), "tensors processed in parallel")
	f.BoolVar(&o.Strict, "strict", false, "fail on a weight the layout cannot hold instead of storing it masked-dense")
	f.BoolVar(&o.Force, "force", false, "replace OUT if it exists")
	f.BoolVarP(&o.Quiet, "quiet", "q", false, "no progress output")
	f.StringVar(&o.Calib, "calib", "", "calibration text `FILE` for wanda/sparsegpt")
	f.IntVar(&o.CalibSamples, "calib-samples", 128, "calibration windows")
	f.IntVar(&o.SeqLen, "seq-len", 256, "tokens per calibration window")
	f.Uint64Var(&o.Seed, "seed", 0, "calibration sampling seed")
	return cmd
}

func (o *Options) validate() error {
	switch o.To {
	case "", "safetensors", "gguf":
	default:
		return fmt.Errorf("--to %q: want safetensors or gguf", o.To)
	}
	switch strings.ToLower(o.DType) {
	case "keep", "f32", "f16", "bf16":
	default:
		return fmt.Errorf("--dtype %q: want keep, f32, f16 or bf16", o.DType)
	}
	ok := false
	for _, m := range Methods {
		ok = ok || m == o.Method
	}
	if !ok {
		return fmt.Errorf("--method %q: want one of %s", o.Method, strings.Join(Methods, ", "))
	}
	if o.Mask != "" && o.Method != "none" {
		return errors.New("--mask and --method are exclusive: the mask file already chose the masks")
	}
	if _, err := mask.ParsePattern(o.Pattern); err != nil {
		return err
	}
	if _, err := pack.ParseLayout(o.Layout); err != nil {
		return err
	}
	if o.Compress != "" && o.Compress != "zstd" {
		return fmt.Errorf("--compress %q: want zstd", o.Compress)
	}
	if _, err := ParseSize(o.MaxShardSize); err != nil {
		return err
	}
	if o.Jobs < 1 {
		return fmt.Errorf("--jobs %d: want at least 1", o.Jobs)
	}
	if calibrated(o.Method) && o.Calib == "" {
		return fmt.Errorf("--method %s needs --calib FILE (calibration text)", o.Method)
	}
	if o.CalibSamples < 1 || o.SeqLen < 2 {
		return errors.New("--calib-samples must be ≥ 1 and --seq-len ≥ 2")
	}
	return nil
}

// ParseSize parses a byte size: a plain number, or one with a KB/MB/GB/TB
// (powers of 1000) or KiB/MiB/GiB/TiB suffix.
func ParseSize(s string) (int64, error) {
	t := strings.TrimSpace(strings.ToUpper(s))
	mult := int64(1)
	for _, u := range []struct {
		s string
		m int64
	}{{"KIB", 1 << 10}, {"MIB", 1 << 20}, {"GIB", 1 << 30}, {"TIB", 1 << 40}, {"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12}, {"B", 1}} {
		if strings.HasSuffix(t, u.s) {
			t, mult = strings.TrimSpace(strings.TrimSuffix(t, u.s)), u.m
			break
		}
	}
	f, err := strconv.ParseFloat(t, 64)
	if err != nil || f <= 0 || f*float64(mult) > 1<<62 {
		return 0, fmt.Errorf("--max-shard-size %q: want a positive size such as 5GB or 500MiB", s)
	}
	return int64(f * float64(mult)), nil
}

func version() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return "sparsify " + bi.Main.Version
	}
	return "sparsify devel"
}

// Run converts o.In to o.Out with pack.Convert.
func Run(ctx context.Context, o *Options) error {
	pat, _ := mask.ParsePattern(o.Pattern)
	layout, _ := pack.ParseLayout(o.Layout)
	shard, _ := ParseSize(o.MaxShardSize)
	po := pack.Options{To: o.To, DType: strings.ToLower(o.DType), Pattern: pat, Layout: layout, Targets: o.Targets, Ignore: o.Ignore,
		SaveMask: o.SaveMask, Compress: o.Compress, MaxShardSize: shard, Jobs: o.Jobs, Strict: o.Strict, Overwrite: o.Force, Tool: version()}
	if !o.Quiet {
		po.Log = o.IO.ErrOut
		po.Bar = cmdutil.IsTerminal(o.IO.ErrOut)
	}
	switch {
	case o.Mask != "":
		src, err := pack.MaskFile(o.Mask)
		if err != nil {
			return err
		}
		po.Method = src
	case o.Method == "magnitude":
		po.Method = pack.Magnitude()
	case o.Method != "none":
		co := calib.Options{Calib: o.Calib, Samples: o.CalibSamples, SeqLen: o.SeqLen, Seed: o.Seed, Pattern: pat}
		if !o.Quiet {
			co.Log = o.IO.ErrOut
		}
		src, err := calib.NewMaskSource(ctx, o.In, o.Method, co)
		if err != nil {
			return err
		}
		po.Method = src
	}
	res, err := pack.Convert(ctx, o.In, o.Out, po)
	if err != nil {
		return err
	}
	var size int64
	for _, f := range res.Files {
		size += f.Size
	}
	fmt.Fprintf(o.IO.Out, "wrote %s (%s, %d files, %d bytes)", res.Output, res.Format, len(res.Files), size)
	if res.Manifest != nil {
		fmt.Fprintf(o.IO.Out, ": %d weights pruned %s, layout %s", res.Pruned, res.Manifest.Pattern, res.Manifest.Layout)
		if res.Dense > 0 {
			fmt.Fprintf(o.IO.Out, " (%d stored masked-dense: shape)", res.Dense)
		}
	}
	fmt.Fprintln(o.IO.Out)
	return nil
}
