// Package verify checks a sparse checkpoint written by sparsify (or a
// compressed-tensors sparse-24-bitmask one): structure of every packed
// tensor, integrity against the sparsify.json manifest, bit-exact round trip,
// equality with the dense original (--against), config.json consistency, and
// GEMM equivalence of the packed layout with the dense weights.
//
// Checkpoint is the entry point; sparsify verify is a thin command over it.
package verify

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/sparsify/sparsify/format"
	"github.com/sparsify/sparsify/format/gguf"
	"github.com/sparsify/sparsify/format/safetensors"
	"github.com/sparsify/sparsify/mask"
	"github.com/sparsify/sparsify/pack"
)

// Check names, as they appear in reports.
const (
	CheckOpen      = "open"      // the checkpoint could be opened
	CheckManifest  = "manifest"  // sparsify.json agrees with the tensors present
	CheckIntegrity = "integrity" // file and tensor sha256 as in sparsify.json
	CheckStructure = "structure" // shapes, dtypes, meta nibbles, bitmask popcounts, P.shape
	CheckConfig    = "config"    // config.json sparsity_config iff bitmask, and consistent
	CheckRoundTrip = "roundtrip" // unpack is N:M, +0 zeros, re-packs to the same bytes
	CheckAgainst   = "against"   // equal to the dense original (kept bits, pruned slots, untouched tensors)
	CheckGEMM      = "gemm"      // Y_sparse (packed layout) == Y_dense within tolerance
)

// Options configure Checkpoint. The zero value runs every check that needs no
// original, with 64 tokens and seed 0 on the CPU.
type Options struct {
	Against    string      // dense original checkpoint ("" to skip that check)
	GEMMTokens int         // activation rows of the GEMM check; 0: 64; <0: skip the GEMM check
	Seed       uint64      // activations are uniform in [-1, 1) from this seed
	Backend    GEMMBackend // nil: CPU (package kernel)
	// Progress receives one line per tensor on long runs (nil: none).
	Progress io.Writer
}

// Violation is one thing found wrong.
type Violation struct {
	Check  string `json:"check"`
	Tensor string `json:"tensor,omitempty"`
	File   string `json:"file,omitempty"`
	Msg    string `json:"message"`
}

func (v Violation) String() string {
	s := v.Check + ": "
	if v.File != "" {
		s += v.File + ": "
	}
	if v.Tensor != "" {
		s += fmt.Sprintf("tensor %q: ", v.Tensor)
	}
	return s + v.Msg
}

// TensorReport is the outcome for one weight (a packed group counts as its
// P.weight) or one other tensor.
type TensorReport struct {
	Name    string            `json:"name"`
	Layout  pack.Layout       `json:"layout,omitempty"` // "" for tensors that are not pruned
	DType   string            `json:"dtype"`
	Shape   []int64           `json:"shape"`
	Stored  []string          `json:"stored"` // tensor names on disk
	Pruned  bool              `json:"pruned"`
	Density float64           `json:"density,omitempty"` // fraction of nonzero weights (pruned only)
	Checks  map[string]string `json:"checks"`            // check -> ok | fail | skip
	GEMM    *GEMMResult       `json:"gemm,omitempty"`
	// MaxAbsChange is the largest |kept − original| when the manifest says the
	// method updates weights (SparseGPT).
	MaxAbsChange *float64    `json:"max_abs_change,omitempty"`
	Notes        []string    `json:"notes,omitempty"`
	Violations   []Violation `json:"violations,omitempty"`
}

// OK reports whether the tensor passed every check run on it.
func (t *TensorReport) OK() bool { return len(t.Violations) == 0 }

func (t *TensorReport) pass(check string) {
	if _, ok := t.Checks[check]; !ok {
		t.Checks[check] = "ok"
	}
}

func (t *TensorReport) fail(check, file, msg string, a ...any) {
	t.Checks[check] = "fail"
	t.Violations = append(t.Violations, Violation{Check: check, Tensor: t.Name, File: file, Msg: fmt.Sprintf(msg, a...)})
}

// Report is what Checkpoint found.
type Report struct {
	Path           string          `json:"path"`
	Against        string          `json:"against,omitempty"`
	Manifest       string          `json:"manifest,omitempty"` // path of sparsify.json, "" when absent
	Layout         pack.Layout     `json:"layout"`
	Pattern        string          `json:"pattern"`
	Method         string          `json:"method,omitempty"`
	WeightsUpdated bool            `json:"weights_updated,omitempty"`
	Tolerance      string          `json:"gemm_tolerance"`
	Tensors        []*TensorReport `json:"tensors"`
	Violations     []Violation     `json:"violations,omitempty"` // checkpoint-level
	Notes          []string        `json:"notes,omitempty"`
	Summary        Summary         `json:"summary"`
}

// Summary counts the results.
type Summary struct {
	Tensors    int     `json:"tensors"`
	Pruned     int     `json:"pruned"`
	GEMM       int     `json:"gemm_checked"`
	Failed     int     `json:"tensors_failed"`
	Violations int     `json:"violations"`
	Seconds    float64 `json:"seconds"`
	OK         bool    `json:"ok"`
}

// OK reports whether nothing was found wrong.
func (r *Report) OK() bool { return r.Summary.OK }

// AllViolations lists every violation, checkpoint-level first.
func (r *Report) AllViolations() []Violation {
	vs := append([]Violation(nil), r.Violations...)
	for _, t := range r.Tensors {
		vs = append(vs, t.Violations...)
	}
	return vs
}

func (r *Report) violate(check, file, tensor, msg string, a ...any) {
	r.Violations = append(r.Violations, Violation{Check: check, File: file, Tensor: tensor, Msg: fmt.Sprintf(msg, a...)})
}

// ErrUnreadable wraps errors for input that could not be read at all (exit 2).
var ErrUnreadable = errors.New("verify: unreadable input")

// ManifestPath returns where the manifest of a checkpoint lives: DIR/sparsify.json
// for a directory, FILE.sparsify.json for a single file.
func ManifestPath(path string) string {
	if st, err := os.Stat(path); err == nil && st.IsDir() {
		return filepath.Join(path, pack.ManifestName)
	}
	return path + "." + pack.ManifestName
}

// Checkpoint verifies the checkpoint at path (a directory, a .safetensors(.zst)
// file or a GGUF file). It returns an error wrapping ErrUnreadable only when
// nothing could be checked (path or --against missing or unparseable and no
// manifest to check against); everything found wrong is in the Report.
func Checkpoint(ctx context.Context, path string, opts Options) (*Report, error) {
	start := time.Now()
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnreadable, err)
	}
	if opts.Backend == nil {
		opts.Backend = CPU{}
	}
	if opts.GEMMTokens == 0 {
		opts.GEMMTokens = 64
	}
	v := &verifier{ctx: ctx, opts: opts, rep: &Report{Path: path, Against: opts.Against, Tolerance: GEMMTolerance, Pattern: "2:4"}}
	err := v.run(path)
	if err != nil {
		return nil, err
	}
	v.rep.finish(time.Since(start))
	return v.rep, nil
}

func (r *Report) finish(d time.Duration) {
	s := Summary{Tensors: len(r.Tensors), Violations: len(r.Violations), Seconds: math.Round(d.Seconds()*100) / 100}
	for _, t := range r.Tensors {
		if t.Pruned {
			s.Pruned++
		}
		if t.GEMM != nil {
			s.GEMM++
		}
		if !t.OK() {
			s.Failed++
		}
		s.Violations += len(t.Violations)
	}
	s.OK = s.Violations == 0
	r.Summary = s
}

type verifier struct {
	ctx      context.Context
	opts     Options
	rep      *Report
	man      *pack.Manifest
	base     string // directory the manifest's file names are relative to
	ck       *rawCheckpoint
	src      format.Source
	pattern  mask.Pattern
	byName   map[string]*TensorReport
	pruned   map[string]pack.Pruned // by output weight name
	lastProg time.Time
	done     int
	total    int
}

func (v *verifier) progress(name string) {
	v.done++
	if v.opts.Progress == nil {
		return
	}
	if time.Since(v.lastProg) < time.Second && v.done != v.total {
		return
	}
	v.lastProg = time.Now()
	fmt.Fprintf(v.opts.Progress, "verify: %d/%d %s\n", v.done, v.total, name)
}

func (v *verifier) run(path string) error {
	rep := v.rep
	st, _ := os.Stat(path)
	v.base = filepath.Dir(path)
	if st.IsDir() {
		v.base = path
	}
	// 1. Manifest and file integrity (before opening: a truncated shard still
	// gets reported against its recorded hash).
	mp := ManifestPath(path)
	if _, err := os.Stat(mp); err == nil {
		rep.Manifest = mp
		m, err := pack.ReadManifest(mp)
		if err != nil {
			rep.violate(CheckManifest, filepath.Base(mp), "", "unreadable: %v", err)
		} else {
			v.man = m
			rep.Layout, rep.Pattern = m.Layout, m.Pattern
			rep.Method, rep.WeightsUpdated = m.Method.Name, m.Method.WeightsUpdated
			v.checkFiles()
		}
	} else {
		rep.Notes = append(rep.Notes, "no "+pack.ManifestName+": integrity and manifest checks skipped")
	}
	if err := v.ctx.Err(); err != nil {
		return err
	}
	// 2. Open.
	ck, err := openRaw(path)
	if err != nil {
		if rep.Manifest == "" {
			return fmt.Errorf("%w: %w", ErrUnreadable, err)
		}
		rep.violate(CheckOpen, "", "", "cannot open the checkpoint: %v", err)
		v.explainOpenFailure()
		return nil
	}
	defer ck.Close()
	v.ck, v.src = ck, ck.src
	v.pattern = mask.Pattern24
	if rep.Pattern != "" {
		if p, err := mask.ParsePattern(rep.Pattern); err == nil {
			v.pattern = p
		} else {
			rep.violate(CheckManifest, "", "", "pattern %q: %v", rep.Pattern, err)
		}
	}
	// 3. Tensors: packed groups, pruned dense weights, everything else.
	groups, gerrs := pack.FindPackedAll(v.src.Tensors())
	for _, e := range gerrs {
		rep.violate(CheckStructure, "", tensorOf(e), "%v", e)
	}
	if rep.Layout == "" {
		rep.Layout = pack.Dense
		for _, g := range groups {
			rep.Layout = g.Layout
		}
	}
	v.buildReports(groups)
	if v.man == nil && len(groups) == 0 {
		rep.Notes = append(rep.Notes, "no packed weights and no "+pack.ManifestName+": only config.json (and --against) could be checked")
	}
	if v.man != nil {
		v.checkManifestTensors(groups)
	}
	v.checkConfig(groups)

	var orig *original
	if v.opts.Against != "" {
		orig, err = openOriginal(v.opts.Against)
		if err != nil {
			return fmt.Errorf("%w: --against: %w", ErrUnreadable, err)
		}
		defer orig.close()
	}
	v.total = len(rep.Tensors)
	rng := rand.New(rand.NewPCG(v.opts.Seed, 0x5eed))
	gi := map[string]pack.PackedWeight{}
	for _, g := range groups {
		gi[g.Weight()] = g
	}
	for _, t := range rep.Tensors {
		if err := v.ctx.Err(); err != nil {
			return err
		}
		var dense []byte
		var dt format.DType
		if g, ok := gi[t.Name]; ok {
			dense, dt = v.checkPacked(t, g, rng)
		} else if t.Pruned {
			dense, dt = v.checkPrunedDense(t)
		}
		if orig != nil {
			v.checkAgainst(t, orig, dense, dt)
		}
		v.progress(t.Name)
	}
	if orig != nil {
		v.checkOriginalCovered(orig)
	}
	return nil
}

// tensorOf extracts a quoted tensor name from an error message, for reports.
func tensorOf(err error) string {
	var fe *format.FormatError
	if errors.As(err, &fe) && fe.Tensor != "" {
		return fe.Tensor
	}
	s := err.Error()
	if i := strings.Index(s, "tensor \""); i >= 0 {
		rest := s[i+len("tensor \""):]
		if j := strings.IndexByte(rest, '"'); j >= 0 {
			return rest[:j]
		}
	}
	return ""
}

// buildReports makes one TensorReport per weight or tensor, in storage order.
func (v *verifier) buildReports(groups []pack.PackedWeight) {
	v.byName = map[string]*TensorReport{}
	v.pruned = map[string]pack.Pruned{}
	if v.man != nil {
		for _, p := range v.man.Pruned {
			name := p.Weight
			if p.Name != "" {
				name = p.Name
			}
			v.pruned[name] = p
		}
	}
	member := map[string]pack.PackedWeight{}
	for _, g := range groups {
		member[g.Values.Name], member[g.Meta.Name], member[g.Shape.Name] = g, g, g
	}
	for _, ti := range v.src.Tensors() {
		name := ti.Name
		if g, ok := member[ti.Name]; ok {
			name = g.Weight()
		}
		t, ok := v.byName[name]
		if !ok {
			t = &TensorReport{Name: name, DType: ti.DType.String(), Shape: ti.Shape, Checks: map[string]string{}}
			v.byName[name] = t
			v.rep.Tensors = append(v.rep.Tensors, t)
		}
		t.Stored = append(t.Stored, ti.Name)
		if g, ok := member[ti.Name]; ok {
			t.Layout, t.Pruned = g.Layout, true
			t.DType = g.Values.DType.String()
		}
	}
	for name, p := range v.pruned {
		t, ok := v.byName[name]
		if !ok {
			continue // reported by checkManifestTensors
		}
		t.Pruned = true
		if t.Layout == "" {
			t.Layout = pack.Dense
			if p.Layout != "" && p.Layout != pack.Dense {
				t.fail(CheckManifest, "", "manifest says layout %s, but the checkpoint holds a dense %q", p.Layout, name)
			}
		} else if p.Layout != "" && p.Layout != t.Layout {
			t.fail(CheckManifest, "", "manifest says layout %s, stored as %s", p.Layout, t.Layout)
		}
		if p.Reason != "" {
			t.Notes = append(t.Notes, "stored dense: "+p.Reason)
		}
	}
}

// checkFiles compares every file the manifest lists with its size and sha256.
func (v *verifier) checkFiles() {
	byFile := map[string][]string{}
	for _, t := range v.man.Tensors {
		byFile[t.File] = append(byFile[t.File], t.Name)
	}
	for _, f := range v.man.Files {
		if err := v.ctx.Err(); err != nil {
			return
		}
		if !filepath.IsLocal(filepath.FromSlash(f.Name)) {
			v.rep.violate(CheckManifest, f.Name, "", "file name is not local to the checkpoint")
			continue
		}
		p := filepath.Join(v.base, filepath.FromSlash(f.Name))
		got, err := pack.HashFile(p)
		what := ""
		if n := byFile[f.Name]; len(n) > 0 {
			what = fmt.Sprintf(" (holds %s)", listNames(n, 6))
		}
		switch {
		case err != nil:
			v.rep.violate(CheckIntegrity, f.Name, "", "missing or unreadable%s: %v", what, err)
		case got.Size != f.Size:
			v.rep.violate(CheckIntegrity, f.Name, "", "size %d bytes, manifest says %d%s", got.Size, f.Size, what)
		case got.SHA256 != f.SHA256:
			v.rep.violate(CheckIntegrity, f.Name, "", "sha256 %s, manifest says %s%s", short(got.SHA256), short(f.SHA256), what)
		}
	}
}

func short(h string) string {
	if len(h) > 16 {
		return h[:16] + "…"
	}
	return h
}

func listNames(n []string, max int) string {
	q := make([]string, 0, max+1)
	for i, s := range n {
		if i == max {
			q = append(q, fmt.Sprintf("and %d more", len(n)-max))
			break
		}
		q = append(q, fmt.Sprintf("%q", s))
	}
	return strings.Join(q, ", ")
}

// checkManifestTensors: every tensor the manifest lists is present with its
// dtype, shape and sha256; nothing unlisted is present; pruned entries name
// tensors that exist.
func (v *verifier) checkManifestTensors(groups []pack.PackedWeight) {
	present := map[string]format.TensorInfo{}
	for _, ti := range v.src.Tensors() {
		present[ti.Name] = ti
	}
	listed := map[string]bool{}
	owner := func(name string) *TensorReport {
		for _, t := range v.rep.Tensors {
			for _, s := range t.Stored {
				if s == name {
					return t
				}
			}
		}
		return nil
	}
	for _, mt := range v.man.Tensors {
		if err := v.ctx.Err(); err != nil {
			return
		}
		listed[mt.Name] = true
		ti, ok := present[mt.Name]
		if !ok {
			v.rep.violate(CheckManifest, mt.File, mt.Name, "listed in %s but missing from the checkpoint", pack.ManifestName)
			continue
		}
		t := owner(mt.Name)
		if t == nil { // every stored tensor has a report; defensive
			continue
		}
		if ti.DType.String() != mt.DType || !slices.Equal(ti.Shape, mt.Shape) {
			t.fail(CheckManifest, ti.File, "tensor %q is %v %v, manifest says %s %v", mt.Name, ti.DType, ti.Shape, mt.DType, mt.Shape)
			continue
		}
		sum, err := hashTensor(v.src, mt.Name)
		switch {
		case err != nil:
			t.fail(CheckIntegrity, ti.File, "tensor %q: reading: %v", mt.Name, err)
		case sum != mt.SHA256:
			t.fail(CheckIntegrity, ti.File, "tensor %q: sha256 %s, manifest says %s", mt.Name, short(sum), short(mt.SHA256))
		default:
			t.pass(CheckIntegrity)
		}
	}
	for _, ti := range v.src.Tensors() {
		if !listed[ti.Name] {
			if t := owner(ti.Name); t != nil {
				t.fail(CheckManifest, ti.File, "tensor %q is not listed in %s", ti.Name, pack.ManifestName)
			}
		}
	}
	for name, p := range v.pruned {
		for _, s := range p.Tensors {
			if _, ok := present[s]; !ok {
				v.rep.violate(CheckManifest, "", s, "pruned weight %q: tensor missing", name)
			}
		}
	}
	for _, g := range groups {
		if _, ok := v.pruned[g.Weight()]; !ok {
			if t := v.byName[g.Weight()]; t != nil {
				t.fail(CheckManifest, g.Values.File, "packed weight not listed among the manifest's pruned weights")
			}
		}
	}
}

func hashTensor(src format.Source, name string) (string, error) {
	rc, err := src.Open(name)
	if err != nil {
		return "", err
	}
	defer rc.Close()
	h := sha256.New()
	if _, err := io.Copy(h, rc); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// checkPacked runs structure, round-trip and GEMM checks on one packed
// weight; it returns the unpacked dense bytes (nil when they could not be made).
func (v *verifier) checkPacked(t *TensorReport, g pack.PackedWeight, rng *rand.Rand) ([]byte, format.DType) {
	dt := g.Values.DType
	rows, cols, err := pack.ReadShape(v.src, g.Shape)
	if err != nil {
		t.fail(CheckStructure, g.Shape.File, "%v", err)
		return nil, dt
	}
	t.Shape = []int64{int64(rows), int64(cols)}
	if p, ok := v.pruned[t.Name]; ok && (p.Rows != rows || p.Cols != cols || (p.DType != "" && p.DType != dt.String())) {
		t.fail(CheckManifest, g.Shape.File, "%s holds %v [%d, %d], manifest says %s [%d, %d]", g.Shape.Name, dt, rows, cols, p.DType, p.Rows, p.Cols)
	}
	if err := g.CheckHeaders(rows, cols); err != nil {
		t.fail(CheckStructure, g.Values.File, "%v", err)
		return nil, dt
	}
	vals, _, err := format.ReadAll(v.src, g.Values.Name)
	if err != nil {
		t.fail(CheckStructure, g.Values.File, "%v", err)
		return nil, dt
	}
	meta, _, err := format.ReadAll(v.src, g.Meta.Name)
	if err != nil {
		t.fail(CheckStructure, g.Meta.File, "%v", err)
		return nil, dt
	}
	var dense []byte
	if g.Layout == pack.Cutlass {
		if err = pack.CheckCutlass(dt, rows, cols, vals, meta); err == nil {
			dense, err = pack.UnpackCutlass(dt, rows, cols, vals, meta)
		}
	} else {
		if err = pack.CheckBitmask(dt, rows, cols, vals, meta); err == nil {
			dense, err = pack.UnpackBitmask(dt, rows, cols, vals, meta)
		}
		if cols%32 != 0 || rows%16 != 0 {
			t.Notes = append(t.Notes, fmt.Sprintf("vLLM's CUTLASS 2:4 GEMM needs in_features%%32 == 0 and out_features%%16 == 0 (per tensor-parallel rank); [%d, %d] does not load there", rows, cols))
		}
	}
	if err != nil {
		t.fail(CheckStructure, g.Meta.File, "%s: %v", g.Meta.Name, err)
		return nil, dt
	}
	t.pass(CheckStructure)
	// Round trip: the dense weights follow the pattern, hold no -0.0, and
	// re-pack to exactly the stored bytes.
	v.roundTrip(t, g, dt, rows, cols, dense, vals, meta)
	t.Density = density(dt, dense)
	// GEMM equivalence.
	if v.opts.GEMMTokens > 0 {
		v.gemm(t, g, dt, rows, cols, dense, vals, meta, rng)
	}
	return dense, dt
}

func (v *verifier) roundTrip(t *TensorReport, g pack.PackedWeight, dt format.DType, rows, cols int, dense, vals, meta []byte) {
	pat := v.pattern
	if g.Layout == pack.Cutlass && dt == format.F32 {
		pat = mask.Pattern{N: 1, M: 2}
	}
	if ok, r, q := pack.IsPattern(dt, rows, cols, dense, pat); !ok {
		t.fail(CheckRoundTrip, g.Values.File, "unpacked weight breaks %v at row %d group %d", pat, r, q)
		return
	}
	if r, c, ok := negZero(dt, dense, cols); ok {
		t.fail(CheckRoundTrip, g.Values.File, "-0.0 at row %d col %d (zeros must be +0)", r, c)
		return
	}
	var v2, m2 []byte
	var err error
	if g.Layout == pack.Cutlass {
		v2, m2, err = pack.PackCutlass(dt, rows, cols, dense)
	} else {
		v2, m2, err = pack.PackBitmask(dt, rows, cols, dense)
	}
	if err != nil {
		t.fail(CheckRoundTrip, g.Values.File, "re-pack: %v", err)
		return
	}
	if i := firstDiff(v2, vals); i >= 0 {
		t.fail(CheckRoundTrip, g.Values.File, "%s does not re-pack to the stored bytes (first difference at byte %d)", g.Values.Name, i)
		return
	}
	if i := firstDiff(m2, meta); i >= 0 {
		t.fail(CheckRoundTrip, g.Meta.File, "%s does not re-pack to the stored bytes (first difference at byte %d)", g.Meta.Name, i)
		return
	}
	t.pass(CheckRoundTrip)
}

func firstDiff(a, b []byte) int {
	n := min(len(a), len(b))
	for i := 0; i < n; i++ {
		if a[i] != b[i] {
			return i
		}
	}
	if len(a) != len(b) {
		return n
	}
	return -1
}

// negZero finds the first -0.0 of a float matrix.
func negZero(dt format.DType, b []byte, cols int) (row, col int, found bool) {
	var size int
	var neg uint64
	switch dt {
	case format.F16, format.BF16:
		size, neg = 2, 0x8000
	case format.F32:
		size, neg = 4, 0x80000000
	case format.F8E4M3, format.F8E5M2:
		size, neg = 1, 0x80
	default:
		return 0, 0, false
	}
	for i := 0; i+size <= len(b); i += size {
		var x uint64
		for j := 0; j < size; j++ {
			x |= uint64(b[i+j]) << (8 * j)
		}
		if x == neg {
			e := i / size
			return e / cols, e % cols, true
		}
	}
	return 0, 0, false
}

// density is the fraction of elements that are not ±0.
func density(dt format.DType, b []byte) float64 {
	tr, ok := dt.Trait()
	if !ok || tr.TypeSize == 0 || len(b) == 0 || tr.Quantized {
		return 0
	}
	size := int(tr.TypeSize)
	signless := tr.Float && dt != format.I8 && dt != format.U8 && dt != format.I16 && dt != format.U16 && dt != format.I32 && dt != format.U32 && dt != format.I64 && dt != format.U64
	nz := 0
	for i := 0; i+size <= len(b); i += size {
		for j := 0; j < size; j++ {
			x := b[i+j]
			if signless && j == size-1 {
				x &= 0x7F
			}
			if x != 0 {
				nz++
				break
			}
		}
	}
	return float64(nz) / float64(len(b)/size)
}

func (v *verifier) gemm(t *TensorReport, g pack.PackedWeight, dt format.DType, rows, cols int, dense, vals, meta []byte, rng *rand.Rand) {
	fv := make([]float32, rows*cols/2)
	if err := format.ToFloat32(dt, vals, fv); err != nil {
		t.Checks[CheckGEMM] = "skip"
		t.Notes = append(t.Notes, fmt.Sprintf("GEMM skipped: %v", err))
		return
	}
	fd := make([]float32, rows*cols)
	if err := format.ToFloat32(dt, dense, fd); err != nil {
		t.Checks[CheckGEMM] = "skip"
		t.Notes = append(t.Notes, fmt.Sprintf("GEMM skipped: %v", err))
		return
	}
	tokens := v.opts.GEMMTokens
	x := make([]float32, tokens*cols)
	for i := range x {
		x[i] = float32(rng.Float64()*2 - 1)
	}
	sw := &SparseWeight{Layout: g.Layout, DType: dt, Rows: rows, Cols: cols, Values: fv, Meta: meta}
	res, err := gemmCheck(v.opts.Backend, sw, fd, x, tokens)
	if err != nil {
		t.fail(CheckGEMM, g.Values.File, "%v", err)
		return
	}
	t.GEMM = res
	if !res.OK {
		t.fail(CheckGEMM, g.Values.File, "Y_sparse differs from Y_dense: %s", res.Detail)
		return
	}
	t.pass(CheckGEMM)
}

// checkPrunedDense checks a pruned weight stored as masked dense P.weight.
func (v *verifier) checkPrunedDense(t *TensorReport) ([]byte, format.DType) {
	ti, ok := format.Lookup(v.src, t.Name)
	if !ok {
		return nil, 0
	}
	if len(ti.Shape) != 2 {
		t.fail(CheckStructure, ti.File, "pruned weight has shape %v, want 2-D", ti.Shape)
		return nil, ti.DType
	}
	if p, ok := v.pruned[t.Name]; ok && (int64(p.Rows) != ti.Shape[0] || int64(p.Cols) != ti.Shape[1]) {
		t.fail(CheckManifest, ti.File, "shape %v, manifest says [%d, %d]", ti.Shape, p.Rows, p.Cols)
	}
	b, _, err := format.ReadAll(v.src, t.Name)
	if err != nil {
		t.fail(CheckStructure, ti.File, "%v", err)
		return nil, ti.DType
	}
	rows, cols := int(ti.Shape[0]), int(ti.Shape[1])
	t.pass(CheckStructure)
	if ok, r, q := pack.IsPattern(ti.DType, rows, cols, b, v.pattern); !ok {
		t.fail(CheckRoundTrip, ti.File, "masked dense weight breaks %v at row %d group %d", v.pattern, r, q)
	} else if r, c, ok := negZero(ti.DType, b, cols); ok {
		t.fail(CheckRoundTrip, ti.File, "-0.0 at row %d col %d (pruned slots must be +0)", r, c)
	} else {
		t.pass(CheckRoundTrip)
	}
	t.Density = density(ti.DType, b)
	return b, ti.DType
}

// explainOpenFailure names the tensors of a truncated safetensors shard.
func (v *verifier) explainOpenFailure() {
	if v.man == nil {
		return
	}
	seen := map[string]bool{}
	for _, mt := range v.man.Tensors {
		if seen[mt.File] {
			continue
		}
		seen[mt.File] = true
		p := filepath.Join(v.base, filepath.FromSlash(mt.File))
		for _, tr := range truncatedTensors(p) {
			v.rep.violate(CheckIntegrity, mt.File, tr.name, "truncated: data ends at byte %d, file has %d", tr.end, tr.size)
		}
	}
}

type truncated struct {
	name      string
	end, size int64
}

// sortedKeys returns the keys of a map, sorted.
func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// rawCheckpoint is the checkpoint under test as stored: packed tensors are
// not expanded (pack.OpenCheckpoint expands them, and refuses incomplete
// groups, which verify must report instead).
type rawCheckpoint struct {
	Kind   string // pack.KindSafetensors or pack.KindGGUF
	src    format.Source
	Dir    *safetensors.Dir
	Config []byte
}

func (c *rawCheckpoint) Close() error { return c.src.Close() }

func openRaw(path string) (*rawCheckpoint, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if st.IsDir() {
		d, err := safetensors.OpenDir(path)
		if err != nil {
			return nil, err
		}
		return &rawCheckpoint{Kind: pack.KindSafetensors, src: d, Dir: d, Config: d.Config()}, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	magic := make([]byte, 4)
	_, _ = io.ReadFull(f, magic)
	f.Close()
	if string(magic) == gguf.Magic {
		g, err := gguf.Open(path)
		if err != nil {
			return nil, err
		}
		return &rawCheckpoint{Kind: pack.KindGGUF, src: g}, nil
	}
	sf, err := safetensors.Open(path)
	if err != nil {
		return nil, err
	}
	return &rawCheckpoint{Kind: pack.KindSafetensors, src: sf}, nil
}
