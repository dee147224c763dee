package maskllm

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"fmt"
	"image/color"
	"io"
	"math"
	"os"
	"strconv"
	"strings"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"

	"github.com/sparsify/sparsify/format"
)

var logHeader = []string{"step", "loss", "reg", "tau", "kappa", "lambda", "lr", "grad_norm", "max_prob",
	"argmax_changed", "eval_ppl", "tokens", "seconds"}

func fmtF(v float64) string {
	if math.IsNaN(v) {
		return ""
	}
	return strconv.FormatFloat(v, 'g', 8, 64)
}

// writeLog writes the CSV log atomically.
func writeLog(path string, rows []StepLog) error {
	var buf bytes.Buffer
	w := csv.NewWriter(&buf)
	w.Write(logHeader)
	for _, r := range rows {
		w.Write([]string{strconv.Itoa(r.Step), fmtF(r.Loss), fmtF(r.Reg), fmtF(r.Tau), fmtF(r.Kappa), fmtF(r.Lambda),
			fmtF(r.LR), fmtF(r.GradNorm), fmtF(r.MaxProb), fmtF(r.Changed), fmtF(r.EvalPPL),
			strconv.FormatInt(r.Tokens, 10), fmtF(r.Seconds)})
	}
	w.Flush()
	f, err := format.CreateAtomic(path)
	if err != nil {
		return fmt.Errorf("maskllm: %w", err)
	}
	defer f.Abort()
	if _, err := f.Write(buf.Bytes()); err != nil {
		return fmt.Errorf("maskllm: write %s: %w", path, err)
	}
	return f.Commit()
}

// readLog reads the rows of a CSV log with step ≤ upto (for a resumed run).
// Rows it cannot parse are dropped.
func readLog(path string, upto int) ([]StepLog, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	recs, err := csv.NewReader(bufio.NewReader(io.LimitReader(f, 1<<30))).ReadAll()
	if err != nil {
		return nil, err
	}
	var out []StepLog
	pf := func(s string) float64 {
		if s == "" {
			return math.NaN()
		}
		v, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return math.NaN()
		}
		return v
	}
	for i, r := range recs {
		if i == 0 || len(r) != len(logHeader) {
			continue
		}
		step, err := strconv.Atoi(r[0])
		if err != nil || step > upto {
			continue
		}
		tk, _ := strconv.ParseInt(r[11], 10, 64)
		out = append(out, StepLog{Step: step, Loss: pf(r[1]), Reg: pf(r[2]), Tau: pf(r[3]), Kappa: pf(r[4]),
			Lambda: pf(r[5]), LR: pf(r[6]), GradNorm: pf(r[7]), MaxProb: pf(r[8]), Changed: pf(r[9]),
			EvalPPL: pf(r[10]), Tokens: tk, Seconds: pf(r[12])})
	}
	return out, nil
}

// WritePlot draws the training loss, the held-out hard-mask perplexity and
// the fraction of groups whose argmax changed, per step, as a PNG.
func WritePlot(path string, rows []StepLog) (err error) {
	defer func() { // the plotting library panics on some degenerate inputs
		if r := recover(); r != nil {
			err = fmt.Errorf("maskllm: plot %s: %v", path, r)
		}
	}()
	lastStep := 1
	for _, r := range rows {
		lastStep = max(lastStep, r.Step)
	}
	panel := func(title, ylabel string, get func(StepLog) float64, logY bool) *plot.Plot {
		p := plot.New()
		p.Title.Text = title
		p.X.Label.Text = "step"
		p.Y.Label.Text = ylabel
		var xy plotter.XYs
		for _, r := range rows {
			v := get(r)
			if math.IsNaN(v) || math.IsInf(v, 0) || (logY && v <= 0) {
				continue
			}
			xy = append(xy, plotter.XY{X: float64(r.Step), Y: v})
		}
		if logY && len(xy) > 0 {
			p.Y.Scale = plot.LogScale{}
			p.Y.Tick.Marker = logTicks{}
		}
		p.X.Min, p.X.Max = 0, float64(lastStep)
		if len(xy) > 0 {
			l, err := plotter.NewLine(xy)
			if err == nil {
				l.Color = color.RGBA{B: 200, A: 255}
				p.Add(l)
				if len(xy) < 60 {
					if s, err := plotter.NewScatter(xy); err == nil {
						p.Add(s)
					}
				}
			}
		}
		p.Add(plotter.NewGrid())
		return p
	}
	plots := [][]*plot.Plot{
		{panel("training loss (soft mask)", "cross-entropy", func(r StepLog) float64 { return r.Loss }, false)},
		{panel("held-out perplexity (argmax mask)", "perplexity", func(r StepLog) float64 { return r.EvalPPL }, true)},
		{panel("groups whose argmax changed", "fraction", func(r StepLog) float64 { return r.Changed }, false)},
	}
	img := vgimg.New(8*vg.Inch, 10*vg.Inch)
	dc := draw.New(img)
	canv := plot.Align(plots, draw.Tiles{Rows: 3, Cols: 1, PadX: vg.Millimeter, PadY: 4 * vg.Millimeter,
		PadTop: 2 * vg.Millimeter, PadBottom: 2 * vg.Millimeter, PadLeft: 2 * vg.Millimeter, PadRight: 2 * vg.Millimeter}, dc)
	for i := range plots {
		plots[i][0].Draw(canv[i][0])
	}
	var buf bytes.Buffer
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(&buf); err != nil {
		return fmt.Errorf("maskllm: plot: %w", err)
	}
	f, err := format.CreateAtomic(path)
	if err != nil {
		return fmt.Errorf("maskllm: %w", err)
	}
	defer f.Abort()
	if _, err := f.Write(buf.Bytes()); err != nil {
		return fmt.Errorf("maskllm: write %s: %w", path, err)
	}
	return f.Commit()
}

// progress prints a progress bar (terminal) or plain lines (at most one every
// 10 s otherwise) with tokens/s and ETA.
type progress struct {
	o      *Options
	start  time.Time
	first  int
	last   time.Time
	lastEv float64
}

func newProgress(o *Options, first int) *progress {
	return &progress{o: o, start: time.Now(), first: first, lastEv: math.NaN()}
}

func (p *progress) note(s string) {
	if p.o.Progress == nil {
		return
	}
	if p.o.Terminal {
		fmt.Fprintf(p.o.Progress, "\r\033[K%s\n", s)
	} else {
		fmt.Fprintln(p.o.Progress, s)
	}
}

func (p *progress) step(r StepLog) {
	if p.o.Progress == nil {
		return
	}
	if !math.IsNaN(r.EvalPPL) {
		p.lastEv = r.EvalPPL
	}
	now := time.Now()
	interval := time.Second / 4
	if !p.o.Terminal {
		interval = 10 * time.Second
	}
	if r.Step < p.o.Steps && now.Sub(p.last) < interval {
		return
	}
	p.last = now
	el := now.Sub(p.start).Seconds()
	done := r.Step - p.first
	tps := float64(done*p.o.Batch*p.o.SeqLen) / el
	eta := time.Duration(float64(p.o.Steps-r.Step) * el / float64(max(done, 1)) * float64(time.Second)).Round(time.Second)
	const w = 24
	fill := w * r.Step / p.o.Steps
	bar := strings.Repeat("█", fill) + strings.Repeat("·", w-fill)
	ev := ""
	if !math.IsNaN(p.lastEv) {
		ev = fmt.Sprintf(" ppl %.2f", p.lastEv)
	}
	line := fmt.Sprintf("learn %s %d/%d loss %.4f τ %.3g κ %.0f |g| %.3g maxp %.3f chg %.2e%s  %.0f tok/s ETA %v",
		bar, r.Step, p.o.Steps, r.Loss, r.Tau, r.Kappa, r.GradNorm, r.MaxProb, r.Changed, ev, tps, eta)
	if p.o.Terminal {
		fmt.Fprintf(p.o.Progress, "\r%s\033[K", line)
	} else {
		fmt.Fprintln(p.o.Progress, line)
	}
}

func (p *progress) done() {
	if p.o.Progress != nil && p.o.Terminal {
		fmt.Fprintln(p.o.Progress)
	}
}

// logTicks labels 1, 2, 5 × powers of ten (plot.LogTicks labels only the
// powers, which leaves a 7–100 perplexity axis with a single label).
type logTicks struct{}

func (logTicks) Ticks(lo, hi float64) []plot.Tick {
	var ts []plot.Tick
	for e := math.Floor(math.Log10(lo)); e <= math.Ceil(math.Log10(hi)); e++ {
		for _, m := range []float64{1, 2, 5} {
			v := m * math.Pow(10, e)
			if v >= lo && v <= hi {
				ts = append(ts, plot.Tick{Value: v, Label: strconv.FormatFloat(v, 'g', 4, 64)})
			}
		}
	}
	if len(ts) < 2 {
		ts = append(ts, plot.Tick{Value: lo, Label: strconv.FormatFloat(lo, 'g', 3, 64)},
			plot.Tick{Value: hi, Label: strconv.FormatFloat(hi, 'g', 3, 64)})
	}
	return ts
}
