// Command sparsify turns dense LLM checkpoints into 2:4-sparse ones.
package main

import (
	"os"

	"github.com/sparsify/sparsify/cmd/sparsify/internal/cli"
)

func main() { os.Exit(cli.Main(os.Args[1:])) }
