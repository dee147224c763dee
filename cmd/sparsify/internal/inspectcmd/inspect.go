// Package inspectcmd implements "sparsify inspect".
package inspectcmd

import (
	"errors"

	"github.com/spf13/cobra"

	"github.com/sparsify/sparsify/cmd/sparsify/internal/cmdutil"
)

// New returns the inspect command. PLACEHOLDER: being built.
func New(io *cmdutil.IO) *cobra.Command {
	return &cobra.Command{
		Use:    "inspect",
		Short:  "(not yet available)",
		Hidden: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			return errors.New("inspect: not yet available")
		},
	}
}
