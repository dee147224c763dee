// Package verifycmd implements "sparsify verify".
package verifycmd

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/sparsify/sparsify/cmd/sparsify/internal/cmdutil"
	"github.com/sparsify/sparsify/format"
	"github.com/sparsify/sparsify/verify"
)

// Options are the flag values of one verify run.
type Options struct {
	IO         *cmdutil.IO
	Path       string
	Against    string
	JSON       bool
	JUnit      string
	GEMMTokens int
	Seed       uint64
	Quiet      bool
	Device     string // auto, cpu, cuda
	GPUEngine  string // GEMM engine on the GPU (see verify.BackendFor)
}

// New returns the verify command.
func New(io *cmdutil.IO) *cobra.Command { return NewCmd(io, nil) }

// NewCmd builds the command; runF replaces Run in tests.
func NewCmd(io *cmdutil.IO, runF func(context.Context, *Options) error) *cobra.Command {
	o := &Options{IO: io}
	cmd := &cobra.Command{
		Use:   "verify PATH",
		Short: "Check a sparse checkpoint: structure, integrity, round trip, GEMM equivalence",
		Long: `Verify checks a checkpoint sparsify wrote (a directory, a .safetensors file or a
GGUF file, with its sparsify.json manifest), or a compressed-tensors
sparse-24-bitmask checkpoint:

  structure   shapes and dtypes per layout, every CUTLASS meta nibble valid,
              every bitmask group exactly 2 of 4, P.shape agrees with the data
  integrity   every file and tensor against its sha256 in sparsify.json
  manifest    sparsify.json agrees with the tensors present
  config      config.json carries a sparsity_config iff the layout is bitmask
  roundtrip   unpacked weights follow the pattern, zeros are +0, and re-pack
              to exactly the stored bytes
  gemm        Y = X·Wᵀ through the packed layout equals the dense GEMM on
              random activations, within a stated fp32 tolerance
  against     (--against DENSE) kept values bit-identical to the original,
              pruned positions a valid mask's, every other tensor unchanged

Exit status: 0 all checks passed, 1 a violation was found, 2 unreadable input.`,
		Example: `  sparsify verify out/
  sparsify verify out/ --against model.gguf --junit verify.xml
  sparsify verify out/ --json > report.json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Path = args[0]
			if o.GEMMTokens < 0 {
				return &cmdutil.FlagError{Err: fmt.Errorf("--gemm-tokens must be >= 0 (0 skips the GEMM check)")}
			}
			if runF != nil {
				return runF(cmd.Context(), o)
			}
			return Run(cmd.Context(), o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Against, "against", "", "dense original `DENSE` the checkpoint was made from (GGUF, safetensors file or directory)")
	f.BoolVar(&o.JSON, "json", false, "print the report as JSON instead of a table")
	f.StringVar(&o.JUnit, "junit", "", "also write a JUnit XML report to `FILE`")
	f.IntVar(&o.GEMMTokens, "gemm-tokens", 64, "activation rows of the GEMM equivalence check (0 skips it)")
	f.Uint64Var(&o.Seed, "seed", 0, "seed of the random activations")
	f.BoolVarP(&o.Quiet, "quiet", "q", false, "no progress lines on stderr")
	f.StringVar(&o.Device, "device", "auto", "where the GEMM check runs: auto (a GPU when CUDA loads, else the CPU), cpu or cuda")
	f.StringVar(&o.GPUEngine, "gpu-gemm", "", "GPU sparse GEMM engine: "+verify.CUDAMMASp+" (our mma.sp kernel, default) or "+verify.CUDACuSPARSELt)
	return cmd
}

// Run verifies o.Path and prints the report. A violation returns an error
// wrapping cmdutil.ErrFailed (exit 1) after the report is printed; unreadable
// input returns a plain error (exit 2).
func Run(ctx context.Context, o *Options) error {
	vo := verify.Options{Against: o.Against, GEMMTokens: o.GEMMTokens, Seed: o.Seed}
	if o.GEMMTokens == 0 {
		vo.GEMMTokens = -1
	}
	if !o.Quiet {
		vo.Progress = o.IO.ErrOut
	}
	var note io.Writer = io.Discard
	if !o.Quiet {
		note = o.IO.ErrOut
	}
	be, closeBE, err := verify.BackendFor(o.Device, o.GPUEngine, note)
	if err != nil {
		return err
	}
	defer closeBE()
	vo.Backend = be
	rep, err := verify.Checkpoint(ctx, o.Path, vo)
	if err != nil {
		return err
	}
	if o.JSON {
		err = rep.WriteJSON(o.IO.Out)
	} else {
		err = rep.WriteTable(o.IO.Out)
	}
	if err != nil {
		return err
	}
	if o.JUnit != "" {
		if err := writeJUnit(o.JUnit, rep); err != nil {
			return fmt.Errorf("--junit: %w", err)
		}
	}
	if !rep.OK() {
		vs := rep.AllViolations()
		return fmt.Errorf("%w: %d violations, first: %s", cmdutil.ErrFailed, len(vs), vs[0])
	}
	return nil
}

func writeJUnit(path string, rep *verify.Report) error {
	if _, err := os.Stat(filepath.Dir(path)); err != nil {
		return err
	}
	f, err := format.CreateAtomic(path)
	if err != nil {
		return err
	}
	defer f.Abort()
	if err := rep.WriteJUnit(f); err != nil {
		return err
	}
	return f.Commit()
}
