// Command train-demo trains sparsify's demo model (testdata/demo/kjv-tiny.gguf)
// from the King James Version text of Debian's bible-kjv-text package; see
// testdata/README.md and scripts/train-demo.sh.
//
//	bible -l100000 Ge1:1-Re22:21 > kjv.txt
//	go run ./model/train/cmd/train-demo -kjv kjv.txt -out testdata/demo
package main

import (
	"context"
	"flag"
	"fmt"
	"math"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"time"

	"github.com/sparsify/sparsify/mask"
	"github.com/sparsify/sparsify/model"
	"github.com/sparsify/sparsify/model/tokenizer"
	"github.com/sparsify/sparsify/model/train"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "train-demo:", err)
		os.Exit(1)
	}
}

func run() error {
	kjv := flag.String("kjv", "", "KJV text as printed by `bible -l100000 Ge1:1-Re22:21` (package bible-kjv)")
	out := flag.String("out", "testdata/demo", "output directory")
	steps := flag.Int("steps", 1000, "optimizer steps")
	batch := flag.Int("batch", 8, "sequences per step")
	seq := flag.Int("seq", 256, "tokens per sequence")
	seed := flag.Uint64("seed", 1, "seed for the initial weights and batch sampling")
	lr := flag.Float64("lr", 3e-3, "peak learning rate")
	warm := flag.Int("warmup", 50, "warm-up steps")
	vocab := flag.Int("vocab", 512, "vocabulary size")
	verses := flag.Int("verses", 5, "verses per paragraph")
	flag.Parse()
	if *kjv == "" {
		return fmt.Errorf("-kjv is required")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()

	f, err := os.Open(*kjv)
	if err != nil {
		return err
	}
	chs, err := train.ParseKJV(f)
	f.Close()
	if err != nil {
		return err
	}
	trainP, calibP, validP := train.Split(chs, *verses)
	fmt.Printf("%d chapters: %d training paragraphs, %d calibration (train.txt), %d held out (valid.txt)\n",
		len(chs), len(trainP), len(calibP), len(validP))
	v, err := train.TrainBPE(trainP, *vocab)
	if err != nil {
		return err
	}
	tok, err := tokenizer.New(v.Spec())
	if err != nil {
		return err
	}
	stream := train.Encode(tok, trainP)
	validS := train.Encode(tok, validP)
	fmt.Printf("vocabulary %d; %d training tokens, %d held-out tokens\n", tok.VocabSize(), len(stream), len(validS))

	c := train.DemoConfig()
	c.Vocab = *vocab
	c.MaxSeq = *seq
	m, err := train.NewModel(c, *seed)
	if err != nil {
		return err
	}
	fmt.Printf("model: %+v, %d parameters; GOMAXPROCS %d\n", c, m.NumParams(), runtime.GOMAXPROCS(0))
	st, err := train.Train(ctx, m, stream, train.Options{Config: c, Steps: *steps, Batch: *batch, Seq: *seq,
		Seed: *seed, LR: *lr, Warmup: *warm, Log: os.Stdout, LogEvery: 25})
	if err != nil {
		return err
	}
	fmt.Printf("trained %d steps, %d tokens in %s (%.0f tokens/s), final loss %.4f\n",
		st.Steps, st.Tokens, st.Wall.Round(time.Second), st.TokensPerSec, st.FinalLoss)

	if err := os.MkdirAll(*out, 0o755); err != nil {
		return err
	}
	if err := writeText(filepath.Join(*out, "train.txt"), calibP); err != nil {
		return err
	}
	if err := writeText(filepath.Join(*out, "valid.txt"), validP); err != nil {
		return err
	}
	desc := fmt.Sprintf("sparsify demo model: trained from scratch by sparsify's train-demo on the King James Version "+
		"(public domain, Debian bible-kjv-text); seed %d, %d steps of %dx%d tokens, lr %g", *seed, *steps, *batch, *seq, *lr)
	path := filepath.Join(*out, "kjv-tiny.gguf")
	if err := train.WriteGGUF(ctx, path, m, v, "kjv-tiny", desc); err != nil {
		return err
	}

	// Reload what was written and evaluate it as a user would.
	m2, tok2, err := model.LoadGGUF(path)
	if err != nil {
		return fmt.Errorf("reloading %s: %w", path, err)
	}
	validText, err := readParagraphs(filepath.Join(*out, "valid.txt"))
	if err != nil {
		return err
	}
	vs := train.Encode(tok2, validText)
	if len(vs) != len(validS) {
		return fmt.Errorf("the reloaded tokenizer gives %d held-out tokens, training gave %d", len(vs), len(validS))
	}
	ppl, n, err := train.Perplexity(ctx, m2, vs, *seq)
	if err != nil {
		return err
	}
	ppl0, _, err := train.Perplexity(ctx, m, validS, *seq)
	if err != nil {
		return err
	}
	if math.Abs(ppl-ppl0) > 1e-6*ppl0 {
		return fmt.Errorf("reloaded model perplexity %.6f differs from the in-memory one %.6f", ppl, ppl0)
	}
	for _, l := range m2.Linears() {
		if err := l.SetMask(magnitude24(l)); err != nil {
			return err
		}
	}
	pplMag, _, err := train.Perplexity(ctx, m2, vs, *seq)
	if err != nil {
		return err
	}
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	fmt.Printf("wrote %s (%d bytes)\n", path, fi.Size())
	fmt.Printf("held-out perplexity at %d tokens (%d predicted tokens): dense %.3f, magnitude 2:4 on all %d matrices %.3f\n",
		*seq, n, ppl, 7*c.Layers, pplMag)
	return nil
}

// magnitude24 keeps the two largest |w| of every group of four inputs (a
// quick check that pruning hurts; the product's methods live in mask/).
func magnitude24(l *model.Linear) *mask.Mask {
	mk := mask.New(l.Out, l.In)
	for g := 0; g < len(l.W)/4; g++ {
		idx := []int{4 * g, 4*g + 1, 4*g + 2, 4*g + 3}
		sort.SliceStable(idx, func(a, b int) bool { return math.Abs(float64(l.W[idx[a]])) > math.Abs(float64(l.W[idx[b]])) })
		mk.Keep[idx[0]], mk.Keep[idx[1]] = true, true
	}
	return mk
}

// writeText writes paragraphs separated by blank lines, atomically.
func writeText(path string, paragraphs []string) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	err = tmp.Chmod(0o644)
	if err == nil {
		_, err = tmp.WriteString(strings.Join(paragraphs, "\n\n") + "\n")
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		os.Remove(tmp.Name())
	}
	return err
}

// readParagraphs reads blank-line separated paragraphs, each trimmed.
func readParagraphs(path string) ([]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, p := range strings.Split(string(b), "\n\n") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out, nil
}
