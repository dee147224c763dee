// Package generatecmd implements "sparsify generate".
package generatecmd

import (
	"errors"

	"github.com/spf13/cobra"

	"github.com/sparsify/sparsify/cmd/sparsify/internal/cmdutil"
)

// New returns the generate command. PLACEHOLDER: being built.
func New(io *cmdutil.IO) *cobra.Command {
	return &cobra.Command{
		Use:    "generate",
		Short:  "(not yet available)",
		Hidden: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			return errors.New("generate: not yet available")
		},
	}
}
