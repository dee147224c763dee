// Package verifycmd implements "sparsify verify".
package verifycmd

import (
	"errors"

	"github.com/spf13/cobra"

	"github.com/sparsify/sparsify/cmd/sparsify/internal/cmdutil"
)

// New returns the verify command. PLACEHOLDER: being built.
func New(io *cmdutil.IO) *cobra.Command {
	return &cobra.Command{
		Use:    "verify",
		Short:  "(not yet available)",
		Hidden: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			return errors.New("verify: not yet available")
		},
	}
}
