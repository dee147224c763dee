// Package inspectcmd implements "sparsify inspect".
package inspectcmd

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/sparsify/sparsify/cmd/sparsify/internal/cmdutil"
	"github.com/sparsify/sparsify/pack"
)

// Options are the flag values of one inspect run.
type Options struct {
	IO   *cmdutil.IO
	Path string
	JSON bool
	Jobs int
}

// New returns the inspect command.
func New(io *cmdutil.IO) *cobra.Command { return NewCmd(io, nil) }

// NewCmd builds the command; runF replaces Run in tests.
func NewCmd(io *cmdutil.IO, runF func(context.Context, *Options) error) *cobra.Command {
	o := &Options{IO: io}
	cmd := &cobra.Command{
		Use:   "inspect PATH",
		Short: "Show a checkpoint's format, metadata, architecture and per-tensor sparsity",
		Long: `Inspect reads a GGUF file, a safetensors file (.zst too) or a Hugging Face directory
and prints its format, metadata (long arrays elided), architecture and, per tensor,
name, dtype, shape, bytes, the fraction of exact zeros and whether it is 2:4 along its
input dimension (at most 2 nonzeros in every 4 consecutive elements of a row).
Every tensor is read once, streaming. Packed sparse weights (cutlass, bitmask) are
listed as stored, 2:4 by construction.`,
		Example: "  sparsify inspect stories260K.gguf\n  sparsify inspect out/ --json",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Path = args[0]
			if o.Jobs < 0 {
				return &cmdutil.FlagError{Err: fmt.Errorf("--jobs %d: want ≥ 0", o.Jobs)}
			}
			if runF != nil {
				return runF(cmd.Context(), o)
			}
			return Run(cmd.Context(), o)
		},
	}
	cmd.Flags().BoolVar(&o.JSON, "json", false, "print the report as JSON")
	cmd.Flags().IntVar(&o.Jobs, "jobs", 0, "tensors scanned in parallel (0: number of CPUs)")
	return cmd
}

// Run inspects o.Path and prints the report.
func Run(ctx context.Context, o *Options) error {
	io := pack.InspectOptions{Jobs: o.Jobs}
	if cmdutil.IsTerminal(o.IO.ErrOut) {
		io.Progress = func(done, total int) {
			fmt.Fprintf(o.IO.ErrOut, "\rscanning tensors: %d/%d", done, total)
			if done == total {
				fmt.Fprint(o.IO.ErrOut, "\r\033[K")
			}
		}
	}
	r, err := pack.Inspect(ctx, o.Path, io)
	if err != nil {
		return err
	}
	if o.JSON {
		e := json.NewEncoder(o.IO.Out)
		e.SetIndent("", "  ")
		return e.Encode(r)
	}
	w := o.IO.Out
	fmt.Fprintf(w, "path:     %s\n", r.Path)
	f := r.Format
	if r.Version != 0 {
		f += fmt.Sprintf(" v%d", r.Version)
	}
	fmt.Fprintf(w, "format:   %s\n", f)
	if a := r.Arch; a != nil {
		fmt.Fprintf(w, "arch:     %s (%s): hidden %d, layers %d, heads %d (kv %d), ffn %d, vocab %d, context %d, rope θ %g, rms ε %g\n",
			a.Arch, a.ModelType, a.HiddenSize, a.NumLayers, a.NumHeads, a.NumKVHeads, a.IntermediateSize, a.VocabSize, a.ContextLength, a.RopeTheta, float32(a.RMSNormEps))
	} else {
		fmt.Fprintf(w, "arch:     unknown (no config.json / LLaMA-family metadata)\n")
	}
	if r.Sparse != "" {
		fmt.Fprintf(w, "sparse:   %s-packed weights (2:4 by construction)\n", r.Sparse)
	}
	fmt.Fprintf(w, "tensors:  %d, %d bytes, %d parameters\n", len(r.Tensors), r.Bytes, r.Params)
	if len(r.Metadata) > 0 {
		fmt.Fprintln(w, "\nmetadata:")
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		for _, kv := range r.Metadata {
			fmt.Fprintf(tw, "  %s\t%s\t%s\n", kv.Key, kv.Type, kv.Value)
		}
		tw.Flush()
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tDTYPE\tSHAPE\tBYTES\tZEROS\t2:4\tNOTE")
	n24, n2d := 0, 0
	for _, t := range r.Tensors {
		note := t.Packed
		if note == "" {
			note = t.Detail
		}
		s24 := t.Sparse24
		if s24 == "" {
			s24 = "-"
		} else {
			n2d++
			if s24 != "no" {
				n24++
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%.4f\t%s\t%s\n", t.Name, t.DType, shape(t.Shape), t.Bytes, t.Zeros, s24, note)
	}
	tw.Flush()
	fmt.Fprintf(w, "\n%d of %d 2-D tensors are 2:4 along their input dimension\n", n24, n2d)
	return nil
}

func shape(s []int64) string {
	p := make([]string, len(s))
	for i, d := range s {
		p[i] = fmt.Sprint(d)
	}
	return "[" + strings.Join(p, ", ") + "]"
}
