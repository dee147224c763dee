package maskllm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/sparsify/sparsify/format"
	"github.com/sparsify/sparsify/internal/synth"
	"github.com/sparsify/sparsify/mask"
	"github.com/sparsify/sparsify/model"
	"github.com/sparsify/sparsify/model/tokenizer"
)

var (
	fixtureOnce sync.Once
	fixtureDir  string
	fixtureErr  error
)

// fixture writes a tiny synthetic GGUF (with tokenizer) and train/eval texts
// once per test binary.
func fixture(t *testing.T) (modelPath, train, eval string) {
	t.Helper()
	fixtureOnce.Do(func() {
		fixtureDir, fixtureErr = os.MkdirTemp("", "maskllm-test-")
		if fixtureErr != nil {
			return
		}
		cfg := synth.Config{Hidden: 32, Layers: 2, Heads: 4, KVHeads: 2, FFN: 64, Vocab: 256, DType: format.F32}
		if fixtureErr = synth.WriteGGUF(filepath.Join(fixtureDir, "m.gguf"), cfg, 1); fixtureErr != nil {
			return
		}
		words := strings.Fields("the cat sat on a mat and a dog ran to the park with red ball under blue sky")
		r := rand.New(rand.NewPCG(1, 1))
		para := func() string {
			var b strings.Builder
			for i := range 12 + r.IntN(10) {
				if i > 0 {
					b.WriteByte(' ')
				}
				b.WriteString(words[r.IntN(len(words))])
			}
			return b.String() + "."
		}
		var tr, ev []string
		for range 60 {
			tr = append(tr, para())
		}
		for range 20 {
			ev = append(ev, para())
		}
		if fixtureErr = os.WriteFile(filepath.Join(fixtureDir, "train.txt"), []byte(strings.Join(tr, "\n\n")), 0o644); fixtureErr != nil {
			return
		}
		fixtureErr = os.WriteFile(filepath.Join(fixtureDir, "eval.txt"), []byte(strings.Join(ev, "\n\n")), 0o644)
	})
	if fixtureErr != nil {
		t.Fatal(fixtureErr)
	}
	return filepath.Join(fixtureDir, "m.gguf"), filepath.Join(fixtureDir, "train.txt"), filepath.Join(fixtureDir, "eval.txt")
}

func TestMain(m *testing.M) {
	code := m.Run()
	if fixtureDir != "" {
		os.RemoveAll(fixtureDir)
	}
	os.Exit(code)
}

func loadFixture(t *testing.T) (*model.Model, *tokenizer.Tokenizer, string, string) {
	p, train, eval := fixture(t)
	m, tok, err := model.Load(p)
	if err != nil {
		t.Fatal(err)
	}
	return m, tok, train, eval
}

func testOptions(out, train, eval string) Options {
	o := DefaultOptions()
	o.Out, o.Data, o.Eval = out, train, eval
	o.Steps, o.Batch, o.SeqLen = 8, 2, 16
	o.EvalEvery, o.EvalSeqLen, o.CheckpointEvery = 4, 16, 3
	o.Prior, o.CalibSamples = "sparsegpt", 4
	o.LR = 5e-2 // move visibly in a few steps
	o.Seed = 7
	return o
}

func readLogits(t *testing.T, dir string) *Checkpoint {
	t.Helper()
	c, err := ReadCheckpoint(filepath.Join(dir, FileLogits))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func sameCheckpoint(t *testing.T, a, b *Checkpoint) {
	t.Helper()
	if a.Step != b.Step || len(a.Tensors) != len(b.Tensors) {
		t.Fatalf("checkpoints differ: step %d vs %d, %d vs %d tensors", a.Step, b.Step, len(a.Tensors), len(b.Tensors))
	}
	for n, va := range a.Tensors {
		vb := b.Tensors[n]
		if len(va) != len(vb) {
			t.Fatalf("%s: %d vs %d values", n, len(va), len(vb))
		}
		for i := range va {
			if math.Float32bits(va[i]) != math.Float32bits(vb[i]) {
				t.Fatalf("%s[%d]: %v vs %v (not bit-identical)", n, i, va[i], vb[i])
			}
		}
	}
}

func TestLearnOutputsAndResume(t *testing.T) {
	m, tok, train, eval := loadFixture(t)
	ctx := context.Background()
	straight := t.TempDir()
	o := testOptions(straight, train, eval)
	res, err := Learn(ctx, m, tok, o)
	if err != nil {
		t.Fatal(err)
	}
	if res.Steps != 8 || res.Tokens != 8*2*16 || math.IsNaN(res.InitialPPL) || math.IsNaN(res.FinalPPL) {
		t.Fatalf("result %+v", res)
	}
	for _, l := range m.Linears() {
		if l.Soft != nil || l.Mask != nil {
			t.Fatalf("%s: Learn left a mask on the model", l.Name)
		}
	}
	// mask file: every linear, 2:4, equal to the argmax of the saved logits
	masks, meta, err := mask.ReadFile(filepath.Join(straight, FileMask))
	if err != nil {
		t.Fatal(err)
	}
	if meta["method"] != "maskllm" || len(masks) != len(m.Linears()) {
		t.Fatalf("mask file: metadata %v, %d masks", meta, len(masks))
	}
	ck := readLogits(t, straight)
	changed := 0
	for _, l := range m.Linears() {
		mk := masks[l.Name]
		if mk == nil {
			t.Fatalf("no mask for %s", l.Name)
		}
		if err := mk.Check(mask.Pattern24); err != nil {
			t.Fatalf("%s: %v", l.Name, err)
		}
		lg := ck.Tensors[l.Name+SuffixLogits]
		for g := range len(lg) / 6 {
			c := Candidates[argmaxGroup(lg[g*6:g*6+6])]
			for j := range 4 {
				if mk.Keep[g*4+j] != (c[j] != 0) {
					t.Fatalf("%s group %d: mask is not the argmax of the logits", l.Name, g)
				}
			}
		}
	}
	// the run must have moved some argmaxes (lr 5e-2) and logged it
	log, err := readLog(filepath.Join(straight, FileLog), 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	if len(log) != 9 || log[0].Step != 0 || math.IsNaN(log[0].EvalPPL) || math.IsNaN(log[4].EvalPPL) || !math.IsNaN(log[3].EvalPPL) {
		t.Fatalf("log has %d rows: %+v", len(log), log)
	}
	for _, r := range log[1:] {
		if r.Changed > 0 {
			changed++
		}
		if r.Loss <= 0 || r.GradNorm <= 0 || r.MaxProb < 1.0/6 || r.MaxProb > 1 || r.Tau <= 0 {
			t.Fatalf("implausible log row %+v", r)
		}
	}
	if changed == 0 {
		t.Error("no step changed any argmax")
	}
	if fi, err := os.Stat(filepath.Join(straight, FilePlot)); err != nil || fi.Size() < 1000 {
		t.Errorf("plot: %v", err)
	}

	// N/2 + resume + N/2 == N straight, bit for bit
	split := t.TempDir()
	o2 := testOptions(split, train, eval)
	o2.StopAfter = 4
	if r, err := Learn(ctx, m, tok, o2); err != nil || r.Steps != 4 {
		t.Fatalf("first half: %v (%+v)", err, r)
	}
	o2.StopAfter, o2.Resume = 0, true
	if _, err := Learn(ctx, m, tok, o2); err != nil {
		t.Fatal(err)
	}
	sameCheckpoint(t, ck, readLogits(t, split))
	log2, _ := readLog(filepath.Join(split, FileLog), 1<<30)
	if len(log2) != 9 || log2[8].Loss != log[8].Loss {
		t.Errorf("resumed log: %d rows, last loss %v vs %v", len(log2), log2[len(log2)-1].Loss, log[8].Loss)
	}

	// Ctrl-C after step 2 saves a checkpoint; resume reaches the same result.
	cancelled := t.TempDir()
	o3 := testOptions(cancelled, train, eval)
	o3.EvalEvery = 2
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	o3.Progress = writerFunc(func(p []byte) {
		if bytes.Contains(p, []byte("eval: step 2:")) {
			cancel()
		}
	})
	if _, err := Learn(cctx, m, tok, o3); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled run returned %v", err)
	}
	if c := readLogits(t, cancelled); c.Step != 2 {
		t.Fatalf("checkpoint after Ctrl-C at step %d, want 2", c.Step)
	}
	o3.Progress, o3.Resume = nil, true
	if _, err := Learn(ctx, m, tok, o3); err != nil {
		t.Fatal(err)
	}
	sameCheckpoint(t, ck, readLogits(t, cancelled))

	// resume with different steps is refused
	o4 := testOptions(straight, train, eval)
	o4.Resume, o4.Steps = true, 9
	if _, err := Learn(ctx, m, tok, o4); !errors.Is(err, ErrOptions) {
		t.Errorf("resume with other steps: %v", err)
	}

	// transfer: --prior LOGITS copies the logits
	tr := t.TempDir()
	o5 := testOptions(tr, train, "")
	o5.Prior = filepath.Join(straight, FileLogits)
	o5.Steps, o5.StopAfter = 8, 0
	o5.LR, o5.MinLR = 0, 0
	o5.WeightDecay = 0
	if _, err := Learn(ctx, m, tok, o5); err != nil {
		t.Fatal(err)
	}
	got := readLogits(t, tr)
	for n, v := range ck.Tensors {
		if strings.HasSuffix(n, SuffixLogits) {
			for i := range v {
				if got.Tensors[n][i] != v[i] {
					t.Fatalf("transfer with lr 0: %s[%d] = %v, want %v", n, i, got.Tensors[n][i], v[i])
				}
			}
		}
	}
}

type writerFunc func([]byte)

func (f writerFunc) Write(p []byte) (int, error) { f(p); return len(p), nil }

func TestLearnErrors(t *testing.T) {
	m, tok, train, _ := loadFixture(t)
	ctx := context.Background()
	o := testOptions(t.TempDir(), train, "")
	o.Steps = 0
	if _, err := Learn(ctx, m, tok, o); !errors.Is(err, ErrOptions) {
		t.Errorf("steps 0: %v", err)
	}
	o = testOptions(t.TempDir(), filepath.Join(t.TempDir(), "missing.txt"), "")
	if _, err := Learn(ctx, m, tok, o); err == nil || !strings.Contains(err.Error(), "missing.txt") {
		t.Errorf("missing data: %v", err)
	}
	o = testOptions(t.TempDir(), train, "")
	o.Resume = true
	if _, err := Learn(ctx, m, tok, o); err == nil {
		t.Error("resume without a checkpoint succeeded")
	}
	bad := filepath.Join(t.TempDir(), "bad.safetensors")
	os.WriteFile(bad, []byte("not a mask file at all"), 0o644)
	o = testOptions(t.TempDir(), train, "")
	o.Prior = bad
	if _, err := Learn(ctx, m, tok, o); err == nil || !strings.Contains(err.Error(), "bad.safetensors") {
		t.Errorf("bad prior: %v", err)
	}
	o = testOptions(t.TempDir(), train, "")
	o.Tau1 = 0
	if err := o.Validate(); !errors.Is(err, ErrOptions) {
		t.Errorf("tau 0: %v", err)
	}
}

func TestCheckpointRoundTripAndErrors(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "c.safetensors")
	c := &Checkpoint{Step: 3, Steps: 10, Seed: 42, Tensors: map[string][]float32{
		"a.weight.logits": {1, 2, 3, 4, 5, 6}, "a.weight.adam_m": {0, 0, 0, 0, 0, 1e-9}}}
	if err := WriteCheckpoint(p, c); err != nil {
		t.Fatal(err)
	}
	if !IsCheckpoint(p) {
		t.Fatal("IsCheckpoint false on a checkpoint")
	}
	got, err := ReadCheckpoint(p)
	if err != nil {
		t.Fatal(err)
	}
	if got.Step != 3 || got.Steps != 10 || got.Seed != 42 || fmt.Sprint(got.Tensors) != fmt.Sprint(c.Tensors) {
		t.Fatalf("round trip: %+v", got)
	}
	data, _ := os.ReadFile(p)
	// truncations and corruptions must give a FormatError naming the file
	for _, n := range []int{0, 7, 8, 20, len(data) - 1} {
		q := filepath.Join(dir, fmt.Sprintf("t%d.safetensors", n))
		os.WriteFile(q, data[:n], 0o644)
		_, err := ReadCheckpoint(q)
		var fe *format.FormatError
		if !errors.As(err, &fe) || !errors.Is(err, ErrCheckpoint) || fe.File != q {
			t.Errorf("truncated to %d: %v", n, err)
		}
	}
	nan := append([]byte(nil), data...)
	copy(nan[len(nan)-4:], []byte{0, 0, 0xc0, 0x7f})
	q := filepath.Join(dir, "nan.safetensors")
	os.WriteFile(q, nan, 0o644)
	if _, err := ReadCheckpoint(q); !errors.Is(err, ErrCheckpoint) {
		t.Errorf("NaN logit: %v", err)
	}
	// a valid safetensors file that is not a checkpoint (a mask file)
	q = filepath.Join(dir, "mask.safetensors")
	if err := mask.WriteFile(q, map[string]*mask.Mask{"w": {Rows: 1, Cols: 4, Keep: make([]bool, 4)}}, nil); err != nil {
		t.Fatal(err)
	}
	var fe *format.FormatError
	if _, err := ReadCheckpoint(q); !errors.Is(err, ErrCheckpoint) || !errors.As(err, &fe) || fe.File != q || !strings.Contains(err.Error(), "metadata format") {
		t.Errorf("mask file read as checkpoint: %v", err)
	}
	if IsCheckpoint(q) || IsCheckpoint(filepath.Join(dir, "missing")) {
		t.Error("IsCheckpoint true on a mask file or a missing file")
	}
}

func FuzzReadCheckpoint(f *testing.F) {
	dir := f.TempDir()
	p := filepath.Join(dir, "c.safetensors")
	if err := WriteCheckpoint(p, &Checkpoint{Step: 1, Steps: 2, Tensors: map[string][]float32{"x.logits": make([]float32, 12)}}); err != nil {
		f.Fatal(err)
	}
	seed, _ := os.ReadFile(p)
	f.Add(seed)
	f.Add([]byte{})
	f.Add(seed[:20])
	f.Fuzz(func(t *testing.T, b []byte) {
		in := filepath.Join(dir, "in.safetensors") // one fuzz worker per process: no sharing
		if err := os.WriteFile(in, b, 0o644); err != nil {
			t.Fatal(err)
		}
		c, err := ReadCheckpoint(in)
		if err == nil && !IsCheckpoint(in) {
			t.Fatal("IsCheckpoint false on a readable checkpoint")
		}
		if err != nil {
			if !errors.Is(err, ErrCheckpoint) || !errors.Is(err, format.ErrFormat) {
				t.Fatalf("error does not wrap ErrCheckpoint: %v", err)
			}
			return
		}
		for n, v := range c.Tensors {
			if len(v)%NumCandidates != 0 {
				t.Fatalf("%s: %d values", n, len(v))
			}
		}
	})
}
