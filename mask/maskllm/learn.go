package maskllm

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/sparsify/sparsify/mask"
	"github.com/sparsify/sparsify/mask/calib"
	"github.com/sparsify/sparsify/model"
	"github.com/sparsify/sparsify/model/tokenizer"
)

// Output file names inside Options.Out.
const (
	FileLogits = "logits.safetensors"
	FileMask   = "mask.safetensors"
	FileLog    = "log.csv"
	FilePlot   = "curve.png"
	// FilePrior holds the one-shot prior masks a run computed (sparsegpt,
	// wanda, magnitude), reusable as --prior of a later run.
	FilePrior = "prior.safetensors"
)

// StepLog is one row of the training log.
type StepLog struct {
	Step                   int     // 1-based: the step just completed
	Loss                   float64 // L_LM (mean token cross-entropy under the sampled soft mask)
	Reg                    float64 // Σ (W ⊙ M̃)² over all masked layers
	Tau, Kappa, Lambda, LR float64
	GradNorm               float64 // global norm of dL/dπ before clipping
	MaxProb                float64 // mean over groups of max_k y_k
	Changed                float64 // fraction of groups whose argmax changed in this step
	EvalPPL                float64 // held-out hard-mask perplexity after this step (NaN: not evaluated)
	Tokens                 int64   // training tokens seen so far (inputs)
	Seconds                float64 // wall time of this run so far
}

// Result is what Learn returns.
type Result struct {
	Steps      int     // completed steps (counting a resumed run's earlier ones)
	Tokens     int64   // training tokens seen
	Seconds    float64 // wall time of this call
	InitialPPL float64 // hard-mask held-out perplexity before training (NaN: none)
	FinalPPL   float64 // after the last step (NaN: none)
	Masks      map[string]*mask.Mask
	Log        []StepLog // rows of this call
}

// State is a learning run's mutable state: the layers' logits and moments and
// the step counter.
type State struct {
	Layers []*Layer
	Step   int // completed optimizer steps
	Seed   uint64
}

// NewState wraps every linear layer of m.Linears() (all must have an input
// width divisible by 4) with zero logits.
func NewState(m *model.Model, seed uint64) (*State, error) {
	s := &State{Seed: seed}
	for _, l := range m.Linears() {
		if l.In%4 != 0 {
			return nil, fmt.Errorf("%w: %q has %d input columns, not a multiple of 4", ErrOptions, l.Name, l.In)
		}
		s.Layers = append(s.Layers, newLayer(l))
	}
	return s, nil
}

// InitRandom sets every layer's logits to N(0, std) (seeded).
func (s *State) InitRandom(std float64) {
	for i, L := range s.Layers {
		L.initRandom(s.Seed, i, std)
	}
}

// ApplyPrior adds the prior-mask term (spec §1.4) to every layer that has a
// mask in priors; a missing layer is an error.
func (s *State) ApplyPrior(priors map[string]*mask.Mask, alpha float64) error {
	for _, L := range s.Layers {
		p := priors[L.Lin.Name]
		if p == nil {
			return fmt.Errorf("%w: the prior has no mask for %q", ErrOptions, L.Lin.Name)
		}
		if p.Rows != L.Lin.Out || p.Cols != L.Lin.In || len(p.Keep) != L.Lin.Out*L.Lin.In {
			return fmt.Errorf("%w: prior mask for %q is %dx%d, weight is %dx%d", ErrOptions, L.Lin.Name, p.Rows, p.Cols, L.Lin.Out, L.Lin.In)
		}
		L.applyPrior(p, alpha)
	}
	return nil
}

// Masks returns the argmax hard masks by tensor name.
func (s *State) Masks() map[string]*mask.Mask {
	out := make(map[string]*mask.Mask, len(s.Layers))
	for _, L := range s.Layers {
		out[L.Lin.Name] = L.HardMask()
	}
	return out
}

// Checkpoint captures the state (copies) for a run of steps.
func (s *State) Checkpoint(steps int) *Checkpoint {
	c := &Checkpoint{Step: s.Step, Steps: steps, Seed: s.Seed, Tensors: map[string][]float32{}}
	for _, L := range s.Layers {
		c.Tensors[L.Lin.Name+SuffixLogits] = append([]float32(nil), L.Logits...)
		c.Tensors[L.Lin.Name+SuffixAdamM] = append([]float32(nil), L.M...)
		c.Tensors[L.Lin.Name+SuffixAdamV] = append([]float32(nil), L.V...)
	}
	return c
}

// Restore loads logits (and, with moments, the AdamW moments and the step
// counter) from c. Every layer must be present with the right size.
func (s *State) Restore(c *Checkpoint, moments bool) error {
	for _, L := range s.Layers {
		for _, suf := range []string{SuffixLogits, SuffixAdamM, SuffixAdamV} {
			if !moments && suf != SuffixLogits {
				continue
			}
			v, ok := c.Tensors[L.Lin.Name+suf]
			if !ok || len(v) != len(L.Logits) {
				return fmt.Errorf("%w: tensor %q missing or of %d values, want %d", ErrCheckpoint, L.Lin.Name+suf, len(v), len(L.Logits))
			}
			switch suf {
			case SuffixLogits:
				copy(L.Logits, v)
			case SuffixAdamM:
				copy(L.M, v)
			default:
				copy(L.V, v)
			}
		}
	}
	if moments {
		s.Step = c.Step
	}
	return nil
}

// SampleMasks draws the Gumbel noise of step (a pure function of seed, step
// and layer) and installs the soft masks y·S as Linear.Soft of every layer at
// temperature tau and logit scale kappa. It returns the mean max-prob.
func (s *State) SampleMasks(step int, kappa, tau float64) float64 {
	var sum float64
	var n int
	for i, L := range s.Layers {
		sum += L.sample(s.Seed, step, i, float32(kappa), float32(tau))
		n += L.Groups
	}
	return sum / float64(n)
}

// Backward turns the model's dL_LM/dSoft (grads.Soft, indexed like
// m.Linears()) plus the regulariser −λ Σ (W ⊙ M̃)² into dL/dπ of every layer
// (Layer.Grad). It returns R = Σ (W ⊙ M̃)² and the global gradient norm.
func (s *State) Backward(soft [][]float32, lambda, kappa, tau float64) (reg, norm float64) {
	var sq float64
	for i, L := range s.Layers {
		var d []float32
		if i < len(soft) {
			d = soft[i]
		}
		r, q := L.backward(d, float32(lambda), float32(kappa), float32(tau))
		reg += r
		sq += q
	}
	return reg, math.Sqrt(sq)
}

// Grad is dL/dπ of the last Backward ([Groups*6]).
func (L *Layer) Grad() []float32 { return L.grad }

// Update clips the gradient to o.Clip (given its norm) and takes one AdamW
// step at learning rate lr; it advances Step.
func (s *State) Update(o *Options, lr, norm float64) {
	gs := 1.0
	if o.Clip > 0 && norm > o.Clip {
		gs = o.Clip / norm
	}
	t := float64(s.Step + 1)
	bc1 := 1 - math.Pow(o.Beta1, t)
	bc2 := 1 - math.Pow(o.Beta2, t)
	for _, L := range s.Layers {
		L.adamW(o, lr, gs, bc1, bc2)
	}
	s.Step++
}

// clearSoft removes the soft masks from the model.
func (s *State) clearSoft() {
	for _, L := range s.Layers {
		L.Lin.Soft = nil
	}
}

// batchTokens draws the step's B windows of T+1 tokens from stream: a pure
// function of (seed, step).
func batchTokens(dst, stream []int32, B, T int, seed uint64, step int) {
	r := rand.New(rand.NewPCG(seed^0x64617461, mix(uint64(step)+0x1000)))
	for b := range B {
		i := r.IntN(len(stream) - T)
		copy(dst[b*(T+1):(b+1)*(T+1)], stream[i:i+T+1])
	}
}

func readTokens(tok *tokenizer.Tokenizer, path string) ([]int32, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("maskllm: %w", err)
	}
	return model.TokenizeParagraphs(tok, string(b)), nil
}

// evalHard measures the held-out perplexity of the current argmax masks
// (weights unchanged, Soft removed) and leaves the model without masks.
func (s *State) evalHard(ctx context.Context, m *model.Model, ids []int32, seqLen int) (float64, error) {
	s.clearSoft()
	for _, L := range s.Layers {
		L.Lin.Mask = L.HardMask()
	}
	defer func() {
		for _, L := range s.Layers {
			L.Lin.Mask = nil
		}
	}()
	return Perplexity(ctx, m, ids, seqLen)
}

// Perplexity is model.PerplexityTokens's protocol (non-overlapping chunks of
// seqLen tokens, tail dropped, exp of the mean NLL of all seqLen−1
// predictions per chunk) computed on the training path (model.LossGrad
// without gradients, ~4k tokens per call), which is several times faster
// than the inference forward on the CPU. Masks installed on m apply.
func Perplexity(ctx context.Context, m *model.Model, ids []int32, seqLen int) (float64, error) {
	if seqLen < 2 {
		return 0, fmt.Errorf("%w: eval seq-len %d", ErrOptions, seqLen)
	}
	n := len(ids) / seqLen
	if n == 0 {
		return 0, fmt.Errorf("%w: %d tokens do not fill one chunk of %d", ErrOptions, len(ids), seqLen)
	}
	batch := max(1, min(n, 4096/seqLen))
	var g model.Grads
	var nll float64
	for c0 := 0; c0 < n; c0 += batch {
		B := min(batch, n-c0)
		loss, err := m.LossGrad(ctx, ids[c0*seqLen:(c0+B)*seqLen], B, seqLen-1, model.GradOptions{}, &g)
		if err != nil {
			return 0, err
		}
		nll += loss * float64(B*(seqLen-1))
	}
	return math.Exp(nll / float64(n*(seqLen-1))), nil
}

// buildPrior computes the prior masks named by o.Prior, or returns a
// checkpoint to copy logits from.
func buildPrior(ctx context.Context, m *model.Model, tok *tokenizer.Tokenizer, o *Options) (map[string]*mask.Mask, *Checkpoint, error) {
	switch {
	case o.Prior == "" || o.Prior == "none":
		return nil, nil, nil
	case isMethod(o.Prior):
		method := o.Prior
		if method == "sparsegpt" {
			method = "sparsegpt-mask"
		}
		lins := m.Linears()
		ws := make([][]float32, len(lins))
		for i, l := range lins {
			ws[i] = l.W
			l.Mask, l.Soft = nil, nil
		}
		copts := calib.Options{Calib: o.Data, Samples: o.CalibSamples, SeqLen: o.SeqLen, Seed: o.Seed, Log: o.Log}
		masks, _, err := calib.Prune(ctx, m, tok, method, copts)
		for i, l := range lins { // Prune leaves the model pruned: undo
			l.W, l.Mask = ws[i], nil
		}
		if err != nil {
			return nil, nil, fmt.Errorf("maskllm: prior %s: %w", o.Prior, err)
		}
		return masks, nil, nil
	}
	if IsCheckpoint(o.Prior) {
		c, err := ReadCheckpoint(o.Prior)
		return nil, c, err
	}
	masks, _, err := mask.ReadFile(o.Prior)
	if err != nil {
		return nil, nil, fmt.Errorf("maskllm: prior: %w", err)
	}
	return masks, nil, nil
}

// isMethod reports whether a prior names a one-shot method.
func isMethod(p string) bool {
	switch p {
	case "sparsegpt", "sparsegpt-mask", "wanda", "magnitude":
		return true
	}
	return false
}

func (o *Options) logf(f string, args ...any) {
	if o.Log != nil {
		fmt.Fprintf(o.Log, f+"\n", args...)
	}
}

// Learn trains the masks of every linear layer of m (weights frozen) and
// writes Out/logits.safetensors (checkpoint), Out/mask.safetensors (argmax
// masks), Out/log.csv and Out/curve.png. On cancellation it saves a
// checkpoint of the last completed step and returns the context's error;
// Resume continues from it to the same result as an uninterrupted run.
// m is left without masks.
func Learn(ctx context.Context, m *model.Model, tok *tokenizer.Tokenizer, opts Options) (*Result, error) {
	o := &opts
	if err := o.Validate(); err != nil {
		return nil, err
	}
	if o.Out == "" || o.Data == "" {
		return nil, fmt.Errorf("%w: an output directory and training data are required", ErrOptions)
	}
	if tok == nil {
		return nil, fmt.Errorf("%w: the model has no tokenizer", ErrOptions)
	}
	if err := os.MkdirAll(o.Out, 0o755); err != nil {
		return nil, fmt.Errorf("maskllm: %w", err)
	}
	stream, err := readTokens(tok, o.Data)
	if err != nil {
		return nil, err
	}
	if len(stream) < o.SeqLen+2 {
		return nil, fmt.Errorf("%w: %s has %d tokens, need more than seq-len %d + 1", ErrOptions, o.Data, len(stream), o.SeqLen)
	}
	var evalIDs []int32
	if o.Eval != "" {
		if evalIDs, err = readTokens(tok, o.Eval); err != nil {
			return nil, err
		}
		if len(evalIDs) < o.EvalSeqLen {
			return nil, fmt.Errorf("%w: %s has %d tokens, fewer than one chunk of %d", ErrOptions, o.Eval, len(evalIDs), o.EvalSeqLen)
		}
	}
	st, err := NewState(m, o.Seed)
	if err != nil {
		return nil, err
	}
	defer st.clearSoft()
	ckPath := filepath.Join(o.Out, FileLogits)
	logPath := filepath.Join(o.Out, FileLog)
	var prevLog []StepLog
	if o.Resume {
		c, err := ReadCheckpoint(ckPath)
		if err != nil {
			return nil, fmt.Errorf("maskllm: resume: %w", err)
		}
		if c.Steps != o.Steps || c.Seed != o.Seed {
			return nil, fmt.Errorf("%w: resume: %s is a run of %d steps with seed %d, not %d steps with seed %d", ErrOptions, ckPath, c.Steps, c.Seed, o.Steps, o.Seed)
		}
		if c.Meta["adam_t"] != strconv.Itoa(c.Step) {
			return nil, fmt.Errorf("%w: resume: %s has no optimizer state", ErrCheckpoint, ckPath)
		}
		if err := st.Restore(c, true); err != nil {
			return nil, fmt.Errorf("maskllm: resume %s: %w", ckPath, err)
		}
		prevLog, _ = readLog(logPath, st.Step)
		o.logf("resume: step %d of %d from %s", st.Step, o.Steps, ckPath)
	} else {
		st.InitRandom(o.InitStd)
		priors, ck, err := buildPrior(ctx, m, tok, o)
		if err != nil {
			return nil, err
		}
		switch {
		case ck != nil:
			if err := st.Restore(ck, false); err != nil {
				return nil, fmt.Errorf("maskllm: prior %s: %w", o.Prior, err)
			}
			o.logf("prior: logits from %s (step %d)", o.Prior, ck.Step)
		case priors != nil:
			if err := st.ApplyPrior(priors, o.Alpha); err != nil {
				return nil, fmt.Errorf("maskllm: prior %s: %w", o.Prior, err)
			}
			if isMethod(o.Prior) {
				meta := map[string]string{"method": o.Prior, "pattern": "2:4", "calib": o.Data,
					"calib_samples": strconv.Itoa(o.CalibSamples), "seq_len": strconv.Itoa(o.SeqLen)}
				if err := mask.WriteFile(filepath.Join(o.Out, FilePrior), priors, meta); err != nil {
					return nil, err
				}
			}
			o.logf("prior: %s, α = %g", o.Prior, o.Alpha)
		}
	}
	res := &Result{InitialPPL: math.NaN(), FinalPPL: math.NaN()}
	if len(prevLog) > 0 && prevLog[0].Step == 0 {
		res.InitialPPL = prevLog[0].EvalPPL // measured before the interruption
	}
	start := time.Now()
	save := func() error {
		c := st.Checkpoint(o.Steps)
		c.Meta = map[string]string{"adam_t": strconv.Itoa(st.Step)}
		if err := WriteCheckpoint(ckPath, c); err != nil {
			return err
		}
		return writeLog(logPath, append(prevLog, res.Log...))
	}
	if evalIDs != nil && st.Step == 0 {
		if res.InitialPPL, err = st.evalHard(ctx, m, evalIDs, o.EvalSeqLen); err != nil {
			return nil, err
		}
		o.logf("eval: step 0: hard-mask perplexity %.4f", res.InitialPPL)
		nan := math.NaN()
		res.Log = append(res.Log, StepLog{Loss: nan, Reg: nan, Tau: nan, Kappa: nan, Lambda: nan, LR: nan,
			GradNorm: nan, MaxProb: nan, Changed: nan, EvalPPL: res.InitialPPL})
	}
	B, T := o.Batch, o.SeqLen
	tokens := make([]int32, B*(T+1))
	var g model.Grads
	gopts := model.GradOptions{MaskGrads: true, Recompute: o.Recompute}
	totalGroups := 0
	for _, L := range st.Layers {
		L.updateArgmax(true)
		totalGroups += L.Groups
	}
	bar := newProgress(o, st.Step)
	for st.Step < o.Steps && (o.StopAfter == 0 || st.Step < o.StopAfter) {
		t := st.Step
		sc := o.At(t)
		batchTokens(tokens, stream, B, T, o.Seed, t)
		maxp := st.SampleMasks(t, sc.Kappa, sc.Tau)
		loss, err := m.LossGrad(ctx, tokens, B, T, gopts, &g)
		if err != nil {
			if ctx.Err() != nil {
				return res, errors.Join(ctx.Err(), save())
			}
			return nil, err
		}
		reg, norm := st.Backward(g.Soft, sc.Lambda, sc.Kappa, sc.Tau)
		if math.IsNaN(norm) || math.IsInf(norm, 0) || math.IsNaN(loss) {
			return nil, fmt.Errorf("maskllm: step %d: loss %v, gradient norm %v is not finite", t+1, loss, norm)
		}
		st.Update(o, sc.LR, norm)
		changed := 0
		for _, L := range st.Layers {
			changed += L.updateArgmax(false)
		}
		row := StepLog{Step: st.Step, Loss: loss, Reg: reg, Tau: sc.Tau, Kappa: sc.Kappa, Lambda: sc.Lambda,
			LR: sc.LR, GradNorm: norm, MaxProb: maxp, Changed: float64(changed) / float64(totalGroups),
			EvalPPL: math.NaN(), Tokens: int64(st.Step) * int64(B*T), Seconds: time.Since(start).Seconds()}
		last := st.Step == o.Steps || st.Step == o.StopAfter
		if evalIDs != nil && (last || o.EvalEvery > 0 && st.Step%o.EvalEvery == 0) {
			if row.EvalPPL, err = st.evalHard(ctx, m, evalIDs, o.EvalSeqLen); err != nil {
				if ctx.Err() != nil {
					res.Log = append(res.Log, row)
					return res, errors.Join(ctx.Err(), save())
				}
				return nil, err
			}
			bar.note(fmt.Sprintf("eval: step %d: hard-mask perplexity %.4f", st.Step, row.EvalPPL))
		}
		res.Log = append(res.Log, row)
		bar.step(row)
		if !last && o.CheckpointEvery > 0 && st.Step%o.CheckpointEvery == 0 {
			if err := save(); err != nil {
				return nil, err
			}
		}
		if ctx.Err() != nil {
			return res, errors.Join(ctx.Err(), save())
		}
	}
	bar.done()
	res.Steps = st.Step
	res.Tokens = int64(st.Step) * int64(B*T)
	res.Seconds = time.Since(start).Seconds()
	if n := len(res.Log); n > 0 {
		res.FinalPPL = res.Log[n-1].EvalPPL
	}
	if err := save(); err != nil {
		return nil, err
	}
	res.Masks = st.Masks()
	meta := map[string]string{"method": "maskllm", "pattern": "2:4", "steps": strconv.Itoa(st.Step),
		"prior": o.Prior, "seed": strconv.FormatUint(o.Seed, 10)}
	if err := mask.WriteFile(filepath.Join(o.Out, FileMask), res.Masks, meta); err != nil {
		return nil, err
	}
	if err := WritePlot(filepath.Join(o.Out, FilePlot), append(prevLog, res.Log...)); err != nil {
		return nil, err
	}
	return res, nil
}
