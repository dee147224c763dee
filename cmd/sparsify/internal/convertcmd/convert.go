// Package convertcmd implements "sparsify convert".
package convertcmd

import (
	"errors"

	"github.com/spf13/cobra"

	"github.com/sparsify/sparsify/cmd/sparsify/internal/cmdutil"
)

// New returns the convert command. PLACEHOLDER: being built.
func New(io *cmdutil.IO) *cobra.Command {
	return &cobra.Command{
		Use:    "convert",
		Short:  "(not yet available)",
		Hidden: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			return errors.New("convert: not yet available")
		},
	}
}
