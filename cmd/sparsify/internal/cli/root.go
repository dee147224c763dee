// Package cli wires the sparsify commands together and maps errors to exit codes.
package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/sparsify/sparsify/cmd/sparsify/internal/cmdutil"
	"github.com/sparsify/sparsify/cmd/sparsify/internal/convertcmd"
	"github.com/sparsify/sparsify/cmd/sparsify/internal/evalcmd"
	"github.com/sparsify/sparsify/cmd/sparsify/internal/generatecmd"
	"github.com/sparsify/sparsify/cmd/sparsify/internal/inspectcmd"
	"github.com/sparsify/sparsify/cmd/sparsify/internal/learncmd"
	"github.com/sparsify/sparsify/cmd/sparsify/internal/verifycmd"
	"github.com/sparsify/sparsify/format"
)

// Version is set at build time with -ldflags "-X .../cli.Version=v1.2.3".
var Version = ""

// NewCmdRoot builds the command tree.
func NewCmdRoot(io *cmdutil.IO) *cobra.Command {
	root := &cobra.Command{
		Use:   "sparsify",
		Short: "Turn dense LLM checkpoints into 2:4-sparse ones that NVIDIA sparse tensor cores run",
		Long: `sparsify reads safetensors and GGUF checkpoints, chooses 2:4 masks (magnitude,
Wanda, SparseGPT, or learned with MaskLLM), packs them in NVIDIA's compressed
layouts, verifies the result and writes distributable checkpoints.

Exit codes: 0 success, 1 the input was checked and found wanting, 2 usage or
unreadable input.`,
		SilenceErrors: true,
		SilenceUsage:  true,
	}
	root.SetOut(io.Out)
	root.SetErr(io.ErrOut)
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error { return &cmdutil.FlagError{Err: err} })
	root.AddCommand(
		newCmdVersion(io),
		inspectcmd.New(io),
		convertcmd.New(io),
		verifycmd.New(io),
		evalcmd.New(io),
		generatecmd.New(io),
		learncmd.New(io),
	)
	return root
}

func newCmdVersion(io *cmdutil.IO) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			v := Version
			if v == "" {
				v = "devel"
				if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
					v = bi.Main.Version
				}
			}
			fmt.Fprintf(io.Out, "sparsify %s\n", v)
			return nil
		},
	}
}

// Main runs the command line and returns the process exit code.
func Main(args []string) int {
	return Run(context.Background(), cmdutil.System(), args)
}

// Run executes args with the given streams; Ctrl-C (SIGINT/SIGTERM) cancels ctx.
func Run(ctx context.Context, io *cmdutil.IO, args []string) int {
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	root := NewCmdRoot(io)
	root.SetArgs(args)
	cmd, err := root.ExecuteContextC(ctx)
	return ExitCode(io, cmd, err)
}

// ExitCode prints err (one line on stderr) and maps it to an exit code.
func ExitCode(io *cmdutil.IO, cmd *cobra.Command, err error) int {
	if err == nil {
		return cmdutil.ExitOK
	}
	var silent *cmdutil.SilentError
	if errors.As(err, &silent) {
		return silent.Code
	}
	if errors.Is(err, context.Canceled) {
		fmt.Fprintln(io.ErrOut, "sparsify: cancelled")
		return cmdutil.ExitCancel
	}
	var flagErr *cmdutil.FlagError
	if errors.As(err, &flagErr) || strings.HasPrefix(err.Error(), "unknown command") || strings.Contains(err.Error(), "arg(s)") {
		fmt.Fprintf(io.ErrOut, "sparsify: %v\n", err)
		if cmd != nil {
			fmt.Fprintln(io.ErrOut)
			fmt.Fprint(io.ErrOut, cmd.UsageString())
		}
		return cmdutil.ExitUsage
	}
	fmt.Fprintf(io.ErrOut, "sparsify: %s\n", oneLine(err.Error()))
	if errors.Is(err, cmdutil.ErrFailed) {
		return cmdutil.ExitFailed
	}
	_ = format.ErrFormat
	return cmdutil.ExitUsage
}

func oneLine(s string) string { return strings.ReplaceAll(strings.TrimSpace(s), "\n", "; ") }
