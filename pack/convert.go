package pack

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/sparsify/sparsify/format"
	"github.com/sparsify/sparsify/format/gguf"
	"github.com/sparsify/sparsify/format/llama"
	"github.com/sparsify/sparsify/format/safetensors"
	"github.com/sparsify/sparsify/mask"
)

// ErrConvert reports a conversion the options do not allow (a usage problem,
// not bad input): wrong layout for the output format, F32 with cutlass 2:4, ...
var ErrConvert = errors.New("convert")

// ErrNotSparse reports a weight that does not follow the pattern a layout
// needs while no mask method or file was given. It wraps mask.ErrPattern.
var ErrNotSparse = fmt.Errorf("%w: not sparse where the layout needs it", mask.ErrPattern)

// Options configure Convert. The zero value converts to the input's own
// format, dtypes kept, nothing pruned.
type Options struct {
	To       string       // "safetensors", "gguf" or "" (by OUT's name and the layout, else the input's format)
	DType    string       // "keep" (or ""), "f32", "f16", "bf16"
	Method   MaskSource   // nil: no mask is chosen (--method none)
	Pattern  mask.Pattern // zero: 2:4
	Layout   Layout       // "" means Dense
	Targets  []string     // regular expressions; nil: DefaultTargets
	Ignore   []string
	SaveMask string // write the masks here (mask.WriteFile), "" for none
	Compress string // "" or "zstd" (safetensors output)
	// MaxShardSize bounds safetensors shards (0: 5 GB like Hugging Face).
	MaxShardSize int64
	Jobs         int  // tensors processed at once; 0: number of CPUs
	Strict       bool // a weight the layout cannot hold is an error, not stored dense
	Overwrite    bool // replace an existing output
	Tool         string
	// Log receives warnings and progress lines (nil: discarded). With Bar
	// set, progress is a redrawn bar (for terminals).
	Log io.Writer
	Bar bool
}

// Result describes a finished conversion.
type Result struct {
	Output   string
	Format   string    // "safetensors" or "gguf"
	Files    []File    // output files (manifest excluded), relative to Output's directory
	Manifest *Manifest // nil when no manifest was written (plain conversion)
	Pruned   int       // weights stored with the requested layout or masked
	Dense    int       // target weights stored masked-dense because of their shape
	Warnings []string
	BytesIn  int64 // tensor bytes read
	BytesOut int64 // tensor bytes written
}

// copyBufs are the 1 MiB buffers of passthrough copies.
var copyBufs = sync.Pool{New: func() any { b := make([]byte, 1<<20); return &b }}

// plan is what happens to one input tensor.
type plan struct {
	in      format.TensorInfo
	outName string
	outDT   format.DType
	heads   int  // q/k row permutation heads (0: none); sign: >0 permute, <0 unpermute
	target  bool // selected by the targets
	prune   bool // mask chosen (method given)
	layout  Layout
	reason  string // why a target is stored dense
	pass    bool   // byte-for-byte passthrough
	rows    int
	cols    int
	pruned  *Pruned
}

// Convert reads the checkpoint at in and writes out. See Options; the
// README's convert section describes the behaviour in full. The output is
// atomic: on error or cancellation nothing is left at out. in is never written.
func Convert(ctx context.Context, in, out string, opts Options) (*Result, error) {
	if err := format.CheckOutput(out, in); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConvert, err)
	}
	ck, err := OpenCheckpoint(in)
	if err != nil {
		return nil, err
	}
	defer ck.Close()
	c, err := newConverter(ctx, ck, out, opts)
	if err != nil {
		return nil, err
	}
	defer c.raw.close()
	return c.run()
}

type converter struct {
	ctx      context.Context
	ck       *Checkpoint
	src      format.Source
	out      string
	opts     Options
	to       string
	layout   Layout
	pattern  mask.Pattern
	targets  *Targets
	plans    []*plan
	warnings []string
	logMu    sync.Mutex
	masksMu  sync.Mutex
	masks    map[string]*mask.Mask
	bytesIn  atomic.Int64
	cfg      llama.Config
	sparseIn string
	raw      *rawFiles
	bufs     *bufPool
	written  *Manifest // the manifest written, nil if none
	// computeErr is the first error computing a tensor, returned as is
	// (not wrapped by the writer in the temporary file's name).
	errOnce    sync.Once
	computeErr error
	// denseWarned counts "stored masked-dense" warnings.
	denseWarned int
	// the input's identity, hashed concurrently with the write (run):
	// valid once inputDone is closed
	inputDone <-chan struct{}
	input     Input
	inputErr  error
}

// maxDenseWarnings bounds the "stored masked-dense" lines printed; the
// manifest keeps every one.
const maxDenseWarnings = 3

func (c *converter) warn(format string, args ...any) {
	s := fmt.Sprintf(format, args...)
	c.logMu.Lock()
	defer c.logMu.Unlock()
	c.warnings = append(c.warnings, s)
	if c.opts.Log == nil {
		return
	}
	if strings.Contains(s, "stored masked-dense") {
		c.denseWarned++
		if c.denseWarned > maxDenseWarnings {
			return
		}
	}
	fmt.Fprintf(c.opts.Log, "warning: %s\n", s)
}

func (c *converter) flushWarnings() {
	if c.opts.Log != nil && c.denseWarned > maxDenseWarnings {
		fmt.Fprintf(c.opts.Log, "warning: ... and %d more weights stored masked-dense (listed in %s)\n", c.denseWarned-maxDenseWarnings, ManifestName)
	}
}

func parseOutDType(s string) (format.DType, bool, error) {
	switch strings.ToLower(s) {
	case "", "keep":
		return format.Invalid, true, nil
	case "f32", "float32":
		return format.F32, false, nil
	case "f16", "float16":
		return format.F16, false, nil
	case "bf16", "bfloat16":
		return format.BF16, false, nil
	}
	return 0, false, fmt.Errorf("%w: --dtype %q (want keep, f32, f16 or bf16)", ErrConvert, s)
}

func newConverter(ctx context.Context, ck *Checkpoint, out string, opts Options) (*converter, error) {
	c := &converter{ctx: ctx, ck: ck, src: ck.Source, out: out, opts: opts, cfg: ck.Arch, sparseIn: string(ck.Sparse), raw: newRawFiles(ck.Source)}
	c.to = opts.To
	if c.to == "" {
		c.to = defaultTo(ck.Kind, out, opts.Layout, opts.Compress)
	}
	if c.to != KindSafetensors && c.to != KindGGUF {
		return nil, fmt.Errorf("%w: --to %q (want safetensors or gguf)", ErrConvert, opts.To)
	}
	c.layout = opts.Layout
	if c.layout == "" {
		c.layout = Dense
	}
	if _, err := ParseLayout(string(c.layout)); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConvert, err)
	}
	if c.to == KindGGUF && c.layout != Dense {
		return nil, fmt.Errorf("%w: --layout %s writes safetensors tensors no GGUF reader understands; use --to safetensors, or --layout dense for GGUF", ErrConvert, c.layout)
	}
	if c.to == KindGGUF && opts.Compress != "" {
		return nil, fmt.Errorf("%w: --compress applies to safetensors output only", ErrConvert)
	}
	if opts.Compress != "" && opts.Compress != "zstd" {
		return nil, fmt.Errorf("%w: --compress %q (want zstd)", ErrConvert, opts.Compress)
	}
	c.pattern = opts.Pattern
	if c.pattern == (mask.Pattern{}) {
		c.pattern = mask.Pattern24
	}
	if c.layout != Dense && c.pattern != mask.Pattern24 && c.pattern != (mask.Pattern{N: 1, M: 2}) {
		return nil, fmt.Errorf("%w: --layout %s holds 2:4 (or 1:2) sparsity, not %v; use --layout dense", ErrConvert, c.layout, c.pattern)
	}
	if opts.SaveMask != "" && opts.Method == nil {
		return nil, fmt.Errorf("%w: --save-mask needs a mask method or --mask file", ErrConvert)
	}
	if opts.SaveMask != "" {
		if err := format.CheckOutput(opts.SaveMask, ck.Path); err != nil {
			return nil, fmt.Errorf("%w: --save-mask: %w", ErrConvert, err)
		}
		c.masks = map[string]*mask.Mask{}
	}
	t, err := NewTargets(opts.Targets, opts.Ignore)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConvert, err)
	}
	c.targets = t
	c.bufs = &bufPool{max: 2 * c.jobs()}
	if err := c.plan(); err != nil {
		return nil, err
	}
	c.flushWarnings()
	return c, nil
}

// defaultTo picks the output format when --to is not given: by OUT's name
// (.gguf, .safetensors, a trailing slash), then safetensors for the packed
// layouts and --compress (GGUF carries neither), else the input's own format.
func defaultTo(inKind, out string, layout Layout, compress string) string {
	switch {
	case strings.HasSuffix(out, ".gguf"):
		return KindGGUF
	case strings.HasSuffix(out, ".safetensors"), strings.HasSuffix(out, ".safetensors.zst"),
		strings.HasSuffix(out, "/"), strings.HasSuffix(out, string(os.PathSeparator)):
		return KindSafetensors
	case layout != "" && layout != Dense, compress != "":
		return KindSafetensors
	}
	return inKind
}

// outName maps a tensor name into the output format's naming.
func (c *converter) outName(name string) string {
	if c.ck.Kind == c.to {
		return name
	}
	if c.to == KindGGUF {
		if g, ok := llama.ToGGUF(name); ok {
			return g
		}
	} else if h, ok := llama.ToHF(name); ok {
		return h
	}
	c.warn("tensor %q has no %s name in the LLaMA family map; kept as is", name, c.to)
	return name
}

func (c *converter) plan() error {
	want, keep, err := parseOutDType(c.opts.DType)
	if err != nil {
		return err
	}
	if c.ck.Kind != c.to && !c.ck.HasCfg {
		return fmt.Errorf("%w: converting %s to %s needs the architecture (config.json or GGUF llama/qwen2 metadata), which %s lacks", ErrConvert, c.ck.Kind, c.to, c.ck.Path)
	}
	f32cutlass := ""
	for _, ti := range c.src.Tensors() {
		p := &plan{in: ti, outName: c.outName(ti.Name), outDT: ti.DType}
		tr, _ := ti.DType.Trait()
		isFloat := tr.Float && (tr.Quantized || ti.DType == format.F32 || ti.DType == format.F16 || ti.DType == format.BF16 || ti.DType == format.F64)
		switch {
		case !isFloat:
		case !keep:
			p.outDT = want
			// llama.cpp keeps 1-D tensors (norms, biases) F32 in GGUF.
			if c.to == KindGGUF && len(ti.Shape) < 2 && ti.DType == format.F32 {
				p.outDT = format.F32
			}
		case tr.Quantized && c.to == KindSafetensors:
			p.outDT = format.F32
		}
		if c.ck.Kind != c.to {
			if h := llama.PermuteHeads(c.cfg.Arch, ti.Name, c.cfg.NumHeads, c.cfg.NumKVHeads); h > 0 {
				p.heads = h
				if c.to == KindSafetensors {
					p.heads = -h
				}
			}
		}
		if len(ti.Shape) == 2 {
			p.rows, p.cols = int(ti.Shape[0]), int(ti.Shape[1])
		}
		// A target matters when a mask is chosen, when a packed layout is
		// asked for, or when the weight was packed in the input (expanded).
		expanded := c.ck.Sparse != "" && ti.Offset < 0
		p.target = c.targets.Match(ti.Name, ti.Shape) && (c.opts.Method != nil || c.layout != Dense || expanded)
		if p.target {
			if tr.Quantized && p.outDT == ti.DType {
				p.outDT = format.F32 // pruned weights are written dequantized
			}
			p.prune = c.opts.Method != nil
			p.layout = c.layout
			if p.prune && p.cols%c.pattern.M != 0 {
				msg := fmt.Sprintf("%d input columns do not divide into groups of %d", p.cols, c.pattern.M)
				if c.opts.Strict {
					return fmt.Errorf("%w: tensor %q: %s", ErrConvert, ti.Name, msg)
				}
				c.warn("%s: not pruned: %s", ti.Name, msg)
				p.target, p.prune = false, false
			}
		}
		if p.target && p.layout != Dense {
			if p.layout == Cutlass && p.outDT == format.F32 && c.pattern == mask.Pattern24 {
				f32cutlass = ti.Name
			}
			var serr error
			switch p.layout {
			case Cutlass:
				serr = CutlassShapeOK(p.outDT, p.rows, p.cols)
			case Bitmask:
				_, serr = BitmaskLayoutOf(p.outDT, p.rows, p.cols)
				if serr == nil && p.cols%8 != 0 {
					serr = fmt.Errorf("%w: bitmask: vLLM needs in_features a multiple of 8, got [%d, %d]", ErrShape, p.rows, p.cols)
				}
			}
			if serr != nil {
				if c.opts.Strict {
					return fmt.Errorf("%w: tensor %q: %w", ErrConvert, ti.Name, serr)
				}
				p.layout, p.reason = Dense, serr.Error()
				c.warn("%s: stored masked-dense: %v", ti.Name, serr)
			}
		}
		p.pass = !p.target && p.outDT == ti.DType && p.heads == 0
		c.plans = append(c.plans, p)
	}
	if f32cutlass != "" {
		return fmt.Errorf("%w: %q is F32: the cutlass layout holds F32 weights only as 1:2; use --dtype f16|bf16 (2:4) or --pattern 1:2", ErrConvert, f32cutlass)
	}
	return nil
}

// sparse reports whether the output is a sparse checkpoint (manifest written).
func (c *converter) sparse() bool {
	if c.layout != Dense || c.opts.Method != nil || c.sparseIn != "" {
		for _, p := range c.plans {
			if p.target {
				return true
			}
		}
	}
	return false
}

func (c *converter) run() (*Result, error) {
	if err := c.ctx.Err(); err != nil {
		return nil, err
	}
	res := &Result{Output: c.out, Format: c.to}
	if c.sparse() {
		// hash the input for the manifest while the output is written
		ctx, cancel := context.WithCancel(c.ctx)
		ch := make(chan struct{})
		go func() {
			defer close(ch)
			c.input, c.inputErr = c.ck.identity(ctx)
		}()
		c.inputDone = ch
		defer func() { cancel(); <-ch }()
	}
	tensors, err := c.tensors()
	if err != nil {
		return nil, err
	}
	var total int64
	for _, t := range tensors {
		total += t.Size
	}
	pr := c.progress(total)
	var files []File
	var trs []safetensors.TensorResult
	if c.to == KindGGUF {
		files, trs, err = c.writeGGUF(tensors, pr)
	} else {
		files, trs, err = c.writeSafetensors(tensors, pr)
	}
	if err != nil {
		if c.computeErr != nil && c.ctx.Err() == nil {
			return nil, c.computeErr
		}
		return nil, err
	}
	res.Files = files
	res.BytesIn = c.bytesIn.Load()
	res.BytesOut = total
	for _, p := range c.plans {
		if p.pruned != nil {
			res.Pruned++
			if p.target && p.layout == Dense && c.layout != Dense {
				res.Dense++
			}
		}
	}
	res.Warnings = c.warnings
	res.Manifest = c.written
	_ = trs
	return res, nil
}

// progress returns the writer callback printing to opts.Log.
func (c *converter) progress(total int64) func(done, total int64) {
	if c.opts.Log == nil {
		return nil
	}
	var last int64 = -1
	return func(done, tot int64) {
		if tot <= 0 {
			return
		}
		pct := done * 100 / tot
		c.logMu.Lock()
		defer c.logMu.Unlock()
		if c.opts.Bar {
			if pct == last && done != tot {
				return
			}
			last = pct
			n := int(pct / 4)
			fmt.Fprintf(c.opts.Log, "\r[%s%s] %3d%% %s/%s", strings.Repeat("#", n), strings.Repeat(".", 25-n), pct, human(done), human(tot))
			if done == tot {
				fmt.Fprintln(c.opts.Log)
			}
			return
		}
		if pct/10 == last/10 && done != tot {
			return
		}
		last = pct
		fmt.Fprintf(c.opts.Log, "converting: %d%% (%s of %s)\n", pct, human(done), human(tot))
	}
}

func human(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.2f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

// job computes the output tensors of one non-passthrough input tensor once,
// and frees them when every output tensor has been written.
type job struct {
	c     *converter
	p     *plan
	once  sync.Once
	outs  [][]byte
	err   error
	left  atomic.Int32
	sizes []int64
}

func (j *job) writer(i int) func(w io.Writer) (int64, error) {
	return func(w io.Writer) (int64, error) {
		j.once.Do(func() {
			j.outs, j.err = j.c.compute(j.p)
			if j.err == nil {
				for k, b := range j.outs {
					if int64(len(b)) != j.sizes[k] {
						j.err = fmt.Errorf("pack: internal: tensor %q output %d is %d bytes, planned %d", j.p.in.Name, k, len(b), j.sizes[k])
					}
				}
			}
		})
		if j.err != nil {
			j.c.errOnce.Do(func() { j.c.computeErr = j.err })
			return 0, j.err
		}
		b := j.outs[i]
		n, err := w.Write(b)
		j.outs[i] = nil
		j.c.bufs.put(b) // written: nothing refers to it any more
		if j.left.Add(-1) == 0 {
			j.outs = nil
		}
		return int64(n), err
	}
}

// tensors builds the output tensor list (sizes known before any data is read).
func (c *converter) tensors() ([]format.Tensor, error) {
	var ts []format.Tensor
	for _, p := range c.plans {
		ti := p.in
		if p.pass {
			// format.Passthrough, reading with pread where possible
			t := format.Tensor{Name: p.outName, DType: ti.DType, Shape: ti.Shape, Size: ti.Size,
				WriteTo: func(w io.Writer) (int64, error) {
					rc, err := c.raw.open(ti)
					if err != nil {
						return 0, err
					}
					defer rc.Close()
					bp := copyBufs.Get().(*[]byte)
					defer copyBufs.Put(bp)
					n, err := io.CopyBuffer(w, io.LimitReader(rc, ti.Size), *bp)
					c.bytesIn.Add(n)
					if err == nil && n != ti.Size {
						err = &format.FormatError{File: ti.File, Tensor: ti.Name, Offset: ti.Offset + n, Msg: fmt.Sprintf("tensor data ends after %d of %d bytes", n, ti.Size)}
					}
					return n, err
				}}
			ts = append(ts, t)
			continue
		}
		n, err := format.CheckedElements(ti.Shape)
		if err != nil {
			return nil, fmt.Errorf("tensor %q: %w", ti.Name, err)
		}
		dsize, err := p.outDT.ByteSize(n)
		if err != nil {
			return nil, fmt.Errorf("tensor %q: %w", ti.Name, err)
		}
		j := &job{c: c, p: p}
		module := strings.TrimSuffix(p.outName, ".weight")
		var outs []format.Tensor
		switch {
		case p.target && p.layout == Cutlass:
			info, err := CutlassLayoutOf(p.outDT, p.rows, p.cols)
			if err != nil {
				return nil, fmt.Errorf("tensor %q: %w", ti.Name, err)
			}
			outs = []format.Tensor{
				{Name: module + ".packed", DType: p.outDT, Shape: info.ValuesShape, Size: info.ValuesSize},
				{Name: module + ".meta", DType: info.MetaDType, Shape: info.MetaShape, Size: info.MetaSize},
				{Name: module + ".shape", DType: format.I64, Shape: []int64{2, 1}, Size: 16},
			}
		case p.target && p.layout == Bitmask:
			info, err := BitmaskLayoutOf(p.outDT, p.rows, p.cols)
			if err != nil {
				return nil, fmt.Errorf("tensor %q: %w", ti.Name, err)
			}
			outs = []format.Tensor{
				{Name: module + ".shape", DType: format.I64, Shape: []int64{2, 1}, Size: 16},
				{Name: module + ".compressed", DType: p.outDT, Shape: info.CompressedShape, Size: info.CompressedSize},
				{Name: module + ".bitmask", DType: format.U8, Shape: info.BitmaskShape, Size: info.BitmaskSize},
			}
		default:
			outs = []format.Tensor{{Name: p.outName, DType: p.outDT, Shape: ti.Shape, Size: dsize}}
		}
		j.left.Store(int32(len(outs)))
		for i := range outs {
			j.sizes = append(j.sizes, outs[i].Size)
			outs[i].WriteTo = j.writer(i)
		}
		if p.target {
			p.pruned = &Pruned{Weight: ti.Name, Rows: p.rows, Cols: p.cols, DType: p.outDT.String(), Layout: p.layout, Reason: p.reason}
			if p.outName != ti.Name {
				p.pruned.Name = p.outName
			}
			for _, o := range outs {
				p.pruned.Tensors = append(p.pruned.Tensors, o.Name)
			}
		}
		ts = append(ts, outs...)
	}
	return ts, nil
}

// compute produces the output bytes of one tensor.
func (c *converter) compute(p *plan) ([][]byte, error) {
	if err := c.ctx.Err(); err != nil {
		return nil, err
	}
	if c.fastMagnitude(p) {
		return c.computeMagnitude(p)
	}
	ti := p.in
	raw, err := c.raw.readInto(ti, c.bufs.get(int(ti.Size)))
	if err != nil {
		return nil, err
	}
	c.bytesIn.Add(int64(len(raw)))
	n := int(ti.NumElements())
	out := raw
	var m *mask.Mask
	if p.prune || p.outDT != ti.DType {
		weightsChanged := false
		w := make([]float32, n)
		if err := format.ToFloat32(ti.DType, raw, w); err != nil {
			return nil, fmt.Errorf("tensor %q: %w", ti.Name, err)
		}
		if p.prune {
			var nw []float32
			m, nw, err = c.opts.Method.Mask(c.ctx, ti.Name, w, p.rows, p.cols, c.pattern)
			if err != nil {
				return nil, fmt.Errorf("tensor %q: %s mask: %w", ti.Name, c.opts.Method.Name(), err)
			}
			if m == nil || m.Rows != p.rows || m.Cols != p.cols {
				return nil, fmt.Errorf("tensor %q: %s mask has the wrong shape", ti.Name, c.opts.Method.Name())
			}
			if err := m.Check(c.pattern); err != nil {
				return nil, fmt.Errorf("tensor %q: %s mask: %w", ti.Name, c.opts.Method.Name(), err)
			}
			if nw != nil {
				if len(nw) != n {
					return nil, fmt.Errorf("tensor %q: %s returned %d weights, want %d", ti.Name, c.opts.Method.Name(), len(nw), n)
				}
				w, weightsChanged = nw, true
			}
			if c.masks != nil {
				c.masksMu.Lock()
				c.masks[ti.Name] = m
				c.masksMu.Unlock()
			}
		}
		if m != nil && p.outDT == ti.DType && !weightsChanged {
			// mask the stored bytes in place: kept values stay bit-exact
			w = nil
		} else {
			c.bufs.put(raw) // decoded into w
			raw = nil
			sz, err := p.outDT.ByteSize(int64(n))
			if err != nil {
				return nil, err
			}
			out = c.bufs.get(int(sz)) // FromFloat32 writes every byte
			if err := format.FromFloat32(p.outDT, w, out); err != nil {
				return nil, fmt.Errorf("tensor %q: %w", ti.Name, err)
			}
		}
		if m != nil {
			if err := ApplyMask(p.outDT, out, m); err != nil {
				return nil, fmt.Errorf("tensor %q: %w", ti.Name, err)
			}
		}
	}
	// pattern required by the layout, checked in the input's row order
	if p.target && p.layout != Dense && m == nil {
		pat := c.pattern
		if ok, row, group := IsPattern(p.outDT, p.rows, p.cols, out, pat); !ok {
			return nil, fmt.Errorf("%s: tensor %q: at byte %d: %w: row %d, group %d (columns %d-%d) has more than %d nonzeros of %d (--layout %s); give --method or --mask to choose a mask",
				ti.File, ti.Name, ti.Offset, ErrNotSparse, row, group, group*pat.M, group*pat.M+pat.M-1, pat.N, pat.M, p.layout)
		}
	}
	if p.heads != 0 {
		rows := int(ti.NumElements())
		if len(ti.Shape) >= 1 {
			rows = int(ti.Shape[0])
		}
		perm := c.bufs.get(len(out)) // a permutation of whole rows: every byte written
		if p.heads > 0 {
			err = llama.Permute(perm, out, rows, p.heads)
		} else {
			err = llama.Unpermute(perm, out, rows, -p.heads)
		}
		if err != nil {
			return nil, fmt.Errorf("tensor %q: %w", ti.Name, err)
		}
		c.bufs.put(out)
		out = perm
	}
	if !p.target {
		return [][]byte{out}, nil
	}
	if p.pruned != nil {
		p.pruned.Density = density(p.outDT, out, m)
	}
	switch p.layout {
	case Cutlass:
		vals, meta, err := PackCutlass(p.outDT, p.rows, p.cols, out)
		if err != nil {
			return nil, fmt.Errorf("tensor %q: %w", ti.Name, err)
		}
		return [][]byte{vals, meta, shapeTensorBytes(p.rows, p.cols)}, nil
	case Bitmask:
		comp, bm, err := PackBitmask(p.outDT, p.rows, p.cols, out)
		if err != nil {
			return nil, fmt.Errorf("tensor %q: %w", ti.Name, err)
		}
		return [][]byte{shapeTensorBytes(p.rows, p.cols), comp, bm}, nil
	}
	return [][]byte{out}, nil
}

func shapeTensorBytes(rows, cols int) []byte {
	b := make([]byte, 16)
	binary.LittleEndian.PutUint64(b, uint64(rows))
	binary.LittleEndian.PutUint64(b[8:], uint64(cols))
	return b
}

// density is the mask's kept fraction, or the nonzero fraction of dense bytes.
func density(dt format.DType, b []byte, m *mask.Mask) float64 {
	if m != nil {
		return m.Density()
	}
	tr, _ := dt.Trait()
	es := int(tr.TypeSize)
	if es == 0 || len(b) == 0 {
		return 0
	}
	nz := 0
	for i := 0; i+es <= len(b); i += es {
		v := b[i : i+es]
		zero := true
		for k, x := range v {
			if k == es-1 && (dt == format.F16 || dt == format.BF16 || dt == format.F32 || dt == format.F64) {
				x &= 0x7f // -0 is zero
			}
			if x != 0 {
				zero = false
				break
			}
		}
		if !zero {
			nz++
		}
	}
	return float64(nz) / float64(len(b)/es)
}

func (c *converter) jobs() int {
	// zstd shards decode forward only: read them in order, one tensor at a time
	for _, f := range c.ck.Files {
		if strings.HasSuffix(f, ".zst") {
			return 1
		}
	}
	if c.opts.Jobs > 0 {
		return c.opts.Jobs
	}
	return runtime.NumCPU()
}

// hashingTensors wraps WriteTo to hash each tensor's bytes (for GGUF output,
// whose writer reports no digests).
func hashingTensors(ts []format.Tensor) ([]format.Tensor, []hash.Hash) {
	hs := make([]hash.Hash, len(ts))
	out := make([]format.Tensor, len(ts))
	for i, t := range ts {
		h := sha256.New()
		hs[i] = h
		inner := t.WriteTo
		t.WriteTo = func(w io.Writer) (int64, error) { return inner(io.MultiWriter(w, h)) }
		out[i] = t
	}
	return out, hs
}

func (c *converter) writeGGUF(ts []format.Tensor, pr func(int64, int64)) ([]File, []safetensors.TensorResult, error) {
	var kvs []gguf.KV
	var order []string
	switch {
	case c.ck.GGUF != nil:
		kvs = slices.Clone(c.ck.GGUF.KV())
	default:
		var warns []string
		var err error
		kvs, _, order, warns, err = llama.GGUFFromHF(c.ck.readFile)
		if err != nil {
			return nil, nil, err
		}
		for _, w := range warns {
			c.warn("%s", w)
		}
	}
	if c.opts.DType != "" && c.opts.DType != "keep" {
		ft := map[string]uint32{"f32": 0, "f16": 1, "bf16": 32}[strings.ToLower(c.opts.DType)]
		if i := indexKV(kvs, "general.file_type"); i >= 0 {
			kvs[i].Value = gguf.MustValue(ft)
		} else {
			kvs = append(kvs, gguf.KV{Key: "general.file_type", Value: gguf.MustValue(ft)})
		}
	}
	if order != nil {
		pos := map[string]int{}
		for i, n := range order {
			pos[n] = i
		}
		slices.SortStableFunc(ts, func(a, b format.Tensor) int {
			pa, oka := pos[a.Name]
			pb, okb := pos[b.Name]
			switch {
			case oka && okb:
				return pa - pb
			case oka:
				return -1
			case okb:
				return 1
			}
			return 0
		})
	}
	if _, err := os.Lstat(c.out); err == nil && !c.opts.Overwrite {
		return nil, nil, fmt.Errorf("%w: %w: %s", ErrConvert, format.ErrExists, c.out)
	}
	sparse := c.sparse()
	ht, hs := ts, []hash.Hash(nil)
	if sparse { // digests only for the manifest
		ht, hs = hashingTensors(ts)
	}
	if err := gguf.Write(c.ctx, c.out, kvs, ht, gguf.WriteOptions{Jobs: c.jobs(), Progress: pr}); err != nil {
		return nil, nil, err
	}
	committed := false
	defer func() {
		if !committed {
			os.Remove(c.out)
		}
	}()
	var f File
	if sparse {
		var err error
		if f, err = HashFile(c.out); err != nil {
			return nil, nil, err
		}
	} else if st, err := os.Stat(c.out); err == nil {
		f = File{Name: filepath.Base(c.out), Size: st.Size()}
	}
	trs := make([]safetensors.TensorResult, len(ts))
	for i, t := range ts {
		trs[i] = safetensors.TensorResult{Name: t.Name, File: f.Name, Size: t.Size}
		if hs != nil {
			trs[i].SHA256 = hex.EncodeToString(hs[i].Sum(nil))
		}
	}
	files := []File{f}
	if sparse {
		man, err := c.manifest(files, ts, trs)
		if err != nil {
			return nil, nil, err
		}
		if err := writeJSONAtomic(c.out+"."+ManifestName, man); err != nil {
			return nil, nil, err
		}
	}
	if err := c.saveMask(); err != nil {
		return nil, nil, err
	}
	committed = true
	return files, trs, nil
}

func indexKV(kvs []gguf.KV, key string) int {
	for i, kv := range kvs {
		if kv.Key == key {
			return i
		}
	}
	return -1
}

func writeJSONAtomic(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(path, append(b, '\n'))
}

func writeFileAtomic(path string, b []byte) error {
	f, err := format.CreateAtomic(path)
	if err != nil {
		return err
	}
	defer f.Abort()
	if _, err := f.Write(b); err != nil {
		return err
	}
	return f.Commit()
}

func (c *converter) saveMask() error {
	if c.opts.SaveMask == "" {
		return nil
	}
	meta := map[string]string{"method": c.opts.Method.Name(), "pattern": c.pattern.String(), "source": c.ck.Path}
	return mask.WriteFile(c.opts.SaveMask, c.masks, meta)
}

func (c *converter) writeSafetensors(ts []format.Tensor, pr func(int64, int64)) ([]File, []safetensors.TensorResult, error) {
	// digests are for the manifest only: a plain conversion hashes nothing
	wo := safetensors.WriteOptions{MaxShardSize: c.opts.MaxShardSize, Jobs: c.jobs(), Compress: c.opts.Compress, Progress: pr, NoHash: !c.sparse()}
	if c.ck.Dir != nil {
		wo.Metadata = c.ck.Dir.Metadata()
	} else if f, ok := c.src.(*safetensors.File); ok {
		wo.Metadata = f.Metadata()
	}
	single := strings.HasSuffix(c.out, ".safetensors") || strings.HasSuffix(c.out, ".safetensors.zst")
	if single {
		if _, err := os.Lstat(c.out); err == nil && !c.opts.Overwrite {
			return nil, nil, fmt.Errorf("%w: %w: %s", ErrConvert, format.ErrExists, c.out)
		}
		wr, err := safetensors.WriteFile(c.ctx, c.out, ts, wo)
		if err != nil {
			return nil, nil, err
		}
		files := fileResults(wr)
		ok := false
		defer func() {
			if !ok {
				for _, f := range wr.Files {
					os.Remove(filepath.Join(filepath.Dir(c.out), f.Name))
				}
			}
		}()
		if c.sparse() {
			m, err := c.manifest(files, ts, wr.Tensors)
			if err != nil {
				return nil, nil, err
			}
			if err := writeJSONAtomic(c.out+"."+ManifestName, m); err != nil {
				return nil, nil, err
			}
		}
		if err := c.saveMask(); err != nil {
			return nil, nil, err
		}
		ok = true
		return files, wr.Tensors, nil
	}
	tmp, commit, abort, err := format.AtomicDir(c.out, format.Inputs(c.ck.Path), format.Overwrite(c.opts.Overwrite))
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrConvert, err)
	}
	defer abort()
	wr, err := safetensors.WriteDir(c.ctx, tmp, ts, wo)
	if err != nil {
		return nil, nil, err
	}
	files := fileResults(wr)
	// side files: config.json, tokenizer and everything else
	side := map[string][]byte{}
	switch {
	case c.ck.Dir != nil:
		if err := c.ck.Dir.CopyOtherFiles(tmp); err != nil {
			return nil, nil, err
		}
		// the input's manifest describes the input, not this output
		if err := os.Remove(filepath.Join(tmp, ManifestName)); err != nil && !os.IsNotExist(err) {
			return nil, nil, err
		}
		if c.ck.Config != nil {
			side[llama.ConfigFile] = c.ck.Config
		}
	case c.ck.GGUF != nil:
		var names []string
		for _, p := range c.plans {
			names = append(names, p.in.Name)
		}
		tdt := map[format.DType]string{format.F32: "float32", format.F16: "float16", format.BF16: "bfloat16"}
		dt := ""
		for _, p := range c.plans {
			if len(p.in.Shape) == 2 {
				dt = tdt[p.outDT]
				break
			}
		}
		fs, _, err := llama.HFFromGGUF(c.ck.GGUF.KV(), names, dt)
		if err != nil {
			return nil, nil, err
		}
		side = fs
	}
	if c.ck.Sparse == Bitmask && c.layout != Bitmask {
		if cj, ok := side[llama.ConfigFile]; ok {
			nc, err := dropSparsityConfig(cj)
			if err != nil {
				return nil, nil, err
			}
			side[llama.ConfigFile] = nc
		}
	}
	if c.layout == Bitmask && c.sparse() {
		if cj, ok := side[llama.ConfigFile]; ok {
			nc, err := c.bitmaskConfig(cj)
			if err != nil {
				return nil, nil, err
			}
			side[llama.ConfigFile] = nc
		} else {
			c.warn("no config.json: the compressed-tensors sparsity_config could not be written")
		}
	}
	for name, b := range side {
		if err := writeFileAtomic(filepath.Join(tmp, name), b); err != nil {
			return nil, nil, err
		}
	}
	if c.sparse() {
		for _, name := range slices.Sorted(mapsKeys(side)) {
			f, err := HashFile(filepath.Join(tmp, name))
			if err != nil {
				return nil, nil, err
			}
			f.Name = name
			files = append(files, f)
		}
		m, err := c.manifest(files, ts, wr.Tensors)
		if err != nil {
			return nil, nil, err
		}
		if err := writeJSONAtomic(filepath.Join(tmp, ManifestName), m); err != nil {
			return nil, nil, err
		}
	}
	if err := c.ctx.Err(); err != nil {
		return nil, nil, err
	}
	if err := c.saveMask(); err != nil {
		return nil, nil, err
	}
	if err := commit(); err != nil {
		if c.opts.SaveMask != "" {
			os.Remove(c.opts.SaveMask)
		}
		return nil, nil, err
	}
	return files, wr.Tensors, nil
}

func mapsKeys(m map[string][]byte) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

func fileResults(wr *safetensors.WriteResult) []File {
	fs := make([]File, len(wr.Files))
	for i, f := range wr.Files {
		fs[i] = File{Name: f.Name, Size: f.Size, SHA256: f.SHA256}
	}
	return fs
}

// manifest fills the manifest once the output is written.
func (c *converter) manifest(files []File, ts []format.Tensor, trs []safetensors.TensorResult) (*Manifest, error) {
	tg, ig := c.targets.Patterns()
	m := &Manifest{Format: ManifestFormat, Tool: c.opts.Tool, Layout: c.layout, Pattern: c.pattern.String(),
		Method: Method{Name: "none"}, Targets: tg, Ignore: ig, OutputFormat: c.to, DType: c.opts.DType, Compress: c.opts.Compress,
		Files: files, Warnings: c.warnings}
	if m.DType == "" {
		m.DType = "keep"
	}
	if m.Ignore == nil {
		m.Ignore = []string{}
	}
	if ms := c.opts.Method; ms != nil {
		m.Method = Method{Name: ms.Name(), Settings: ms.Settings(), WeightsUpdated: ms.Name() == "sparsegpt"}
	}
	var in Input
	var err error
	if c.inputDone != nil {
		<-c.inputDone
		in, err = c.input, c.inputErr
	} else {
		in, err = c.ck.identity(c.ctx)
	}
	if err != nil {
		return nil, err
	}
	in.Sparse = c.sparseIn
	m.Input = in
	byName := map[string]format.Tensor{}
	for _, t := range ts {
		byName[t.Name] = t
	}
	for _, tr := range trs {
		t := byName[tr.Name]
		m.Tensors = append(m.Tensors, Tensor{Name: tr.Name, File: tr.File, DType: t.DType.String(), Shape: t.Shape, SHA256: tr.SHA256, Size: tr.Size})
	}
	m.Pruned = []Pruned{}
	for _, p := range c.plans {
		if p.pruned != nil {
			m.Pruned = append(m.Pruned, *p.pruned)
		}
	}
	c.written = m
	return m, nil
}

// bitmaskConfig adds compressed-tensors' sparsity_config to config.json
// (sparse-checkpoint-formats §2, §5.1): targets ["Linear"] with ignore
// ["lm_head"] when every Linear of the blocks is packed, else the packed
// modules by exact path.
func (c *converter) bitmaskConfig(cj []byte) ([]byte, error) {
	var raw map[string]any
	if err := decodeJSONNumber(cj, &raw); err != nil {
		return nil, fmt.Errorf("config.json: %w", err)
	}
	var packed []string
	linear := 0
	var total, zeros float64
	for _, p := range c.plans {
		total += float64(p.in.NumElements())
		if strings.HasSuffix(p.outName, ".weight") && len(p.in.Shape) == 2 && !NeverPruned(p.in.Name, p.in.Shape) {
			linear++
		}
		if p.pruned != nil && p.layout == Bitmask {
			packed = append(packed, strings.TrimSuffix(p.outName, ".weight"))
			zeros += float64(p.rows*p.cols) * (1 - p.pruned.Density)
		}
	}
	c.warnFusedMismatch(packed)
	targets, ignore := packed, []string{}
	if len(packed) == linear {
		targets, ignore = []string{"Linear"}, []string{"lm_head"}
	}
	gs := 0.0
	if total > 0 {
		gs = math.Round(zeros/total*1e4) / 1e4
	}
	qc := map[string]any{}
	if old, ok := raw["quantization_config"].(map[string]any); ok {
		qc = old
	}
	qc["quant_method"] = "compressed-tensors"
	qc["sparsity_config"] = map[string]any{
		"format": "sparse-24-bitmask", "global_sparsity": gs, "ignore": ignore,
		"registry_requires_subclass": false, "sparsity_structure": "2:4", "targets": targets,
	}
	if _, ok := qc["transform_config"]; !ok {
		qc["transform_config"] = map[string]any{}
	}
	qc["version"] = "0.14.0.1"
	raw["quantization_config"] = qc
	b, err := json.MarshalIndent(raw, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

func decodeJSONNumber(b []byte, v any) error {
	d := json.NewDecoder(strings.NewReader(string(b)))
	d.UseNumber()
	return d.Decode(v)
}

// dropSparsityConfig removes quantization_config.sparsity_config (and a
// quantization_config left with nothing else), so that engines that refuse
// any sparsity_config load the expanded dense checkpoint.
func dropSparsityConfig(cj []byte) ([]byte, error) {
	var raw map[string]any
	if err := decodeJSONNumber(cj, &raw); err != nil {
		return nil, fmt.Errorf("config.json: %w", err)
	}
	qc, ok := raw["quantization_config"].(map[string]any)
	if !ok {
		return cj, nil
	}
	delete(qc, "sparsity_config")
	rest := 0
	for k, v := range qc {
		switch k {
		case "quant_method", "version", "transform_config", "config_groups":
			if m, ok := v.(map[string]any); ok && len(m) > 0 {
				rest++
			}
		default:
			rest++
		}
	}
	if rest == 0 {
		delete(raw, "quantization_config")
	}
	b, err := json.MarshalIndent(raw, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// warnFusedMismatch warns when vLLM's fused modules (q/k/v, gate/up) are
// packed for some members only: vLLM loads a fused layer sparse only when
// every member is (sparse-checkpoint-formats §3).
func (c *converter) warnFusedMismatch(packed []string) {
	set := map[string]bool{}
	for _, m := range packed {
		set[m] = true
	}
	for _, m := range packed {
		for _, group := range [][]string{{"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"}, {"mlp.gate_proj", "mlp.up_proj"}} {
			for _, member := range group {
				prefix, ok := strings.CutSuffix(m, member)
				if !ok {
					continue
				}
				for _, other := range group {
					if !set[prefix+other] {
						c.warn("%s is packed but %s is not: vLLM fuses them and loads the fused layer sparse only when all are", m, prefix+other)
						return
					}
				}
			}
		}
	}
}

// bufPool recycles a conversion's large output buffers (packed values, meta,
// dense weights): once written they serve the next tensor, so that the heap
// stays about jobs × (tensor + packed output) instead of growing with the
// garbage of every tensor until the collector runs. Buffers handed out are
// not cleared: callers overwrite every byte.
type bufPool struct {
	mu   sync.Mutex
	free [][]byte
	max  int // buffers kept at most
}

// minPooled is the smallest buffer worth recycling.
const minPooled = 1 << 20

// get returns a buffer of n bytes: the smallest free one that fits, else new.
func (p *bufPool) get(n int) []byte {
	if n >= minPooled {
		p.mu.Lock()
		best := -1
		for i, b := range p.free {
			if cap(b) >= n && (best < 0 || cap(b) < cap(p.free[best])) {
				best = i
			}
		}
		if best >= 0 {
			b := p.free[best]
			p.free = slices.Delete(p.free, best, best+1)
			p.mu.Unlock()
			return b[:n]
		}
		p.mu.Unlock()
	}
	return make([]byte, n)
}

// put gives b back; the caller no longer uses it. Beyond max buffers the
// smallest is dropped.
func (p *bufPool) put(b []byte) {
	if cap(b) < minPooled {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.free = append(p.free, b)
	if len(p.free) > p.max {
		small := 0
		for i, f := range p.free {
			if cap(f) < cap(p.free[small]) {
				small = i
			}
		}
		p.free = slices.Delete(p.free, small, small+1)
	}
}

// magnitudeBlockBytes is about the input bytes one block of rows holds on the
// streaming magnitude path.
var magnitudeBlockBytes = 4 << 20

// blockBufs are the row-block buffers of the streaming magnitude path.
var blockBufs = sync.Pool{New: func() any { return new([]byte) }}

// fastMagnitude reports whether p takes the streaming magnitude path: the
// magnitude method on a 16- or 32-bit float weight kept in its dtype, rows in
// the input's order, masks not saved. That path computes the mask from the
// stored bits (|x| orders like its bits with the sign cleared), zeroes the
// pruned values in place and packs the weight block by block: no float32 copy,
// no mask, and for cutlass no dense copy of the whole weight. Its output is
// bit-identical with mask.Magnitude + ApplyMask + PackCutlass.
func (c *converter) fastMagnitude(p *plan) bool {
	if _, ok := c.opts.Method.(magnitudeSource); !ok || !p.prune || c.masks != nil || p.heads != 0 || p.outDT != p.in.DType {
		return false
	}
	switch p.outDT {
	case format.BF16, format.F16, format.F32:
	default:
		return false
	}
	pat := c.pattern
	return len(p.in.Shape) == 2 && p.rows > 0 && p.cols > 0 && pat.N > 0 && pat.M > pat.N && pat.M <= 64 &&
		p.cols%pat.M == 0 && p.in.Size == int64(p.rows)*int64(p.cols)*int64(elemBytes(p.outDT))
}

func elemBytes(dt format.DType) int {
	if dt == format.F32 {
		return 4
	}
	return 2
}

// computeMagnitude is compute for fastMagnitude plans.
func (c *converter) computeMagnitude(p *plan) ([][]byte, error) {
	ti := p.in
	es := elemBytes(p.outDT)
	rowBytes := p.cols * es
	rc, err := c.raw.open(ti)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	read := func(b []byte) error {
		if _, err := io.ReadFull(rc, b); err != nil {
			return &format.FormatError{File: ti.File, Tensor: ti.Name, Offset: ti.Offset, Msg: fmt.Sprintf("reading %d bytes: %v", ti.Size, err)}
		}
		c.bytesIn.Add(int64(len(b)))
		return nil
	}
	// prune rows [lo, lo+len(b)/rowBytes) in place
	prune := func(b []byte, lo int) error {
		if err := c.ctx.Err(); err != nil {
			return err
		}
		if r, col, ok := magnitudeRows(p.outDT, b, p.cols, c.pattern); !ok {
			v := make([]float32, 1)
			_ = format.ToFloat32(p.outDT, b[(r*p.cols+col)*es:(r*p.cols+col+1)*es], v)
			return fmt.Errorf("tensor %q: %s mask: %w: weight [%d, %d] is %v", ti.Name, c.opts.Method.Name(), mask.ErrInput, lo+r, col, v[0])
		}
		return nil
	}
	n := int64(p.rows) * int64(p.cols)
	p.pruned.Density = float64(n/int64(c.pattern.M)*int64(c.pattern.N)) / float64(n)
	if p.layout != Cutlass {
		out := c.bufs.get(int(ti.Size))
		if err := read(out); err != nil {
			return nil, err
		}
		per := max(1, magnitudeBlockBytes/rowBytes)
		for lo := 0; lo < p.rows; lo += per {
			hi := min(lo+per, p.rows)
			if err := prune(out[lo*rowBytes:hi*rowBytes], lo); err != nil {
				return nil, err
			}
		}
		if p.layout == Bitmask {
			comp, bm, err := PackBitmask(p.outDT, p.rows, p.cols, out)
			c.bufs.put(out)
			if err != nil {
				return nil, fmt.Errorf("tensor %q: %w", ti.Name, err)
			}
			return [][]byte{shapeTensorBytes(p.rows, p.cols), comp, bm}, nil
		}
		return [][]byte{out}, nil
	}
	info, err := CutlassLayoutOf(p.outDT, p.rows, p.cols)
	if err != nil {
		return nil, fmt.Errorf("tensor %q: %w", ti.Name, err)
	}
	const align = 32 // CUTLASS row tile of 16-bit meta: blocks shift its reordering by whole tiles
	vals := c.bufs.get(int(info.ValuesSize))
	meta := c.bufs.get(int(info.MetaSize))
	per := max(align, magnitudeBlockBytes/rowBytes/align*align)
	bp := blockBufs.Get().(*[]byte)
	defer blockBufs.Put(bp)
	if need := min(per, p.rows) * rowBytes; cap(*bp) < need {
		*bp = make([]byte, need)
	}
	valRow := int(info.ValuesSize) / p.rows
	metaRow := int(info.MetaSize) / p.rows
	var bmeta []byte
	for lo := 0; lo < p.rows; lo += per {
		hi := min(lo+per, p.rows)
		br := hi - lo
		blk := (*bp)[:br*rowBytes]
		if err := read(blk); err != nil {
			return nil, err
		}
		if err := prune(blk, lo); err != nil {
			return nil, err
		}
		if cap(bmeta) < br*metaRow {
			bmeta = make([]byte, br*metaRow)
		}
		bm := bmeta[:br*metaRow]
		if err := PackCutlassInto(p.outDT, br, p.cols, blk, vals[lo*valRow:hi*valRow], bm); err != nil {
			return nil, fmt.Errorf("tensor %q: %w", ti.Name, err)
		}
		// the block's meta panels (2·br words each, one per pair of meta
		// columns) go to the whole matrix's panels (2·rows words), shifted by
		// the block's first row: metaBase(lo+r) = metaBase(r) + 2·lo.
		panel := 2 * br * 2
		for k := 0; k*panel < len(bm); k++ {
			copy(meta[(k*2*p.rows+2*lo)*2:], bm[k*panel:(k+1)*panel])
		}
	}
	return [][]byte{vals, meta, shapeTensorBytes(p.rows, p.cols)}, nil
}

// magnitudeRows applies the magnitude mask to whole rows of cols elements of
// dt in b, in place: in every group of p.M columns it keeps the p.N entries of
// largest |x| (ties: the lower column), and sets every other entry, and every
// kept ±0, to +0, exactly as mask.Magnitude followed by ApplyMask. On a NaN or
// Inf it returns the first one's row (in b) and column, b then partly pruned.
func magnitudeRows(dt format.DType, b []byte, cols int, p mask.Pattern) (row, col int, ok bool) {
	switch dt {
	case format.BF16, format.F16:
		inf := uint16(0x7f80)
		if dt == format.F16 {
			inf = 0x7c00
		}
		if p.N == 2 && p.M == 4 {
			if i := prune24x16(b, inf); i >= 0 {
				return i / cols, i % cols, false
			}
			return 0, 0, true
		}
		for i := 0; i+2 <= len(b); i += 2 {
			if le.Uint16(b[i:])&inf == inf {
				return i / 2 / cols, i / 2 % cols, false
			}
		}
		var keys [64]uint32
		for g := 0; g+2*p.M <= len(b); g += 2 * p.M {
			for j := 0; j < p.M; j++ {
				keys[j] = uint32(le.Uint16(b[g+2*j:]) & 0x7fff)
			}
			for j := 0; j < p.M; j++ {
				if keys[j] == 0 || !topN(keys[:p.M], j, p.N) {
					le.PutUint16(b[g+2*j:], 0)
				}
			}
		}
	case format.F32:
		for i := 0; i+4 <= len(b); i += 4 {
			if le.Uint32(b[i:])&0x7f800000 == 0x7f800000 {
				return i / 4 / cols, i / 4 % cols, false
			}
		}
		var keys [64]uint32
		for g := 0; g+4*p.M <= len(b); g += 4 * p.M {
			for j := 0; j < p.M; j++ {
				keys[j] = le.Uint32(b[g+4*j:]) & 0x7fffffff
			}
			for j := 0; j < p.M; j++ {
				if keys[j] == 0 || !topN(keys[:p.M], j, p.N) {
					le.PutUint32(b[g+4*j:], 0)
				}
			}
		}
	}
	return 0, 0, true
}

// topN reports whether keys[j] is among the n largest of keys, ties going to
// the lower index: its rank in (key descending, index ascending) order is < n.
func topN(keys []uint32, j, n int) bool {
	k, rank := keys[j], 0
	for i, x := range keys {
		if x > k || (x == k && i < j) {
			rank++
		}
	}
	return rank < n
}

// prune24x16 is magnitudeRows' 2:4 case for 16-bit floats, one 64-bit load
// per group and no data-dependent branch: the six pairwise comparisons of
// |x| (ties: the lower index wins) index keep24, the two winners, and the
// kept ±0 lanes are cleared too. inf is the exponent mask of one lane; on a
// NaN or Inf it returns the element's index (b unchanged from that group on),
// else -1.
func prune24x16(b []byte, inf uint16) int {
	infs := uint64(inf) * 0x0001000100010001
	for g := 0; g+8 <= len(b); g += 8 {
		x := le.Uint64(b[g:])
		if y := x&infs ^ infs; (y-0x0001000100010001)&^y&0x8000800080008000 != 0 {
			for j := 0; j < 4; j++ {
				if uint16(x>>(16*j))&inf == inf {
					return g/2 + j
				}
			}
		}
		a0, a1, a2, a3 := uint32(x)&0x7fff, uint32(x>>16)&0x7fff, uint32(x>>32)&0x7fff, uint32(x>>48)&0x7fff
		idx := b2u(a0 >= a1) | b2u(a0 >= a2)<<1 | b2u(a0 >= a3)<<2 | b2u(a1 >= a2)<<3 | b2u(a1 >= a3)<<4 | b2u(a2 >= a3)<<5
		le.PutUint64(b[g:], x&lanes16[mask.Keep24(uint8(idx))&uint8(flags16(x))])
	}
	return -1
}

// lanes16 maps 4 lane bits to the 64-bit mask of those 16-bit lanes.
var lanes16 = func() (t [16]uint64) {
	for k := range t {
		for i := 0; i < 4; i++ {
			if k>>i&1 == 1 {
				t[k] |= 0xffff << (16 * i)
			}
		}
	}
	return t
}()

func b2u(b bool) uint32 {
	if b {
		return 1
	}
	return 0
}
