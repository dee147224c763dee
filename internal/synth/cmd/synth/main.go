// Command synth writes a random LLaMA-shaped checkpoint (for demos and
// benchmarks): go run ./internal/synth/cmd/synth -out DIR [-gguf] [-bytes N].
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/sparsify/sparsify/format"
	"github.com/sparsify/sparsify/internal/synth"
)

func main() {
	out := flag.String("out", "", "output directory (HF) or file (with -gguf)")
	asGGUF := flag.Bool("gguf", false, "write a GGUF file instead of a Hugging Face directory")
	size := flag.Int64("bytes", 0, "approximate size in bytes (0: the tiny test model)")
	dtype := flag.String("dtype", "BF16", "F32, F16 or BF16")
	seed := flag.Uint64("seed", 0, "random seed")
	sparse := flag.Bool("sparse24", false, "make the block linear weights 2:4 already")
	flag.Parse()
	if *out == "" {
		fmt.Fprintln(os.Stderr, "synth: -out is required")
		os.Exit(2)
	}
	cfg := synth.Tiny()
	if *size > 0 {
		cfg = synth.ForBytes(*size)
	}
	dt, err := format.ParseDType(*dtype)
	if err != nil {
		fmt.Fprintln(os.Stderr, "synth:", err)
		os.Exit(2)
	}
	cfg.DType, cfg.Sparse24 = dt, *sparse
	if *asGGUF {
		err = synth.WriteGGUF(*out, cfg, *seed)
	} else {
		err = synth.WriteHF(*out, cfg, *seed)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "synth:", err)
		os.Exit(1)
	}
	fmt.Printf("wrote %s: hidden %d, layers %d, heads %d/%d, ffn %d, vocab %d, %s, %d tensor bytes\n",
		*out, cfg.Hidden, cfg.Layers, cfg.Heads, cfg.KVHeads, cfg.FFN, cfg.Vocab, cfg.DType, cfg.Bytes())
}
