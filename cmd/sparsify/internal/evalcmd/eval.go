// Package evalcmd implements "sparsify eval".
package evalcmd

import (
	"errors"

	"github.com/spf13/cobra"

	"github.com/sparsify/sparsify/cmd/sparsify/internal/cmdutil"
)

// New returns the eval command. PLACEHOLDER: being built.
func New(io *cmdutil.IO) *cobra.Command {
	return &cobra.Command{
		Use:    "eval",
		Short:  "(not yet available)",
		Hidden: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			return errors.New("eval: not yet available")
		},
	}
}
