package verify

import (
	"fmt"
	"math"
	"slices"

	"github.com/sparsify/sparsify/format"
	"github.com/sparsify/sparsify/format/llama"
	"github.com/sparsify/sparsify/pack"
)

// original is the dense checkpoint a sparse one was made from, seen through
// pack.OpenExpanded (so a packed original compares as its dense weights).
type original struct {
	ck   *pack.Checkpoint
	src  format.Source
	seen map[string]bool // original tensors matched by some output tensor
}

func openOriginal(path string) (*original, error) {
	ck, err := pack.OpenCheckpoint(path)
	if err != nil {
		return nil, err
	}
	src, err := pack.OpenExpanded(ck.Source)
	if err != nil {
		ck.Close()
		return nil, err
	}
	return &original{ck: ck, src: src, seen: map[string]bool{}}, nil
}

func (o *original) close() { o.ck.Close() }

// origName maps an output tensor name to the original's: the manifest's
// record for pruned weights, else the same name, else its HF/GGUF counterpart.
func (v *verifier) origName(o *original, name string) (string, bool) {
	cands := []string{name}
	if p, ok := v.pruned[name]; ok && p.Weight != name {
		cands = []string{p.Weight, name}
	}
	for _, c := range cands {
		if _, ok := format.Lookup(o.src, c); ok {
			return c, true
		}
	}
	for _, c := range cands {
		for _, f := range []func(string) (string, bool){llama.ToGGUF, llama.ToHF} {
			if n, ok := f(c); ok {
				if _, ok := format.Lookup(o.src, n); ok {
					return n, true
				}
			}
		}
	}
	return "", false
}

// expected returns the original's bytes of oname as the conversion would have
// written them: converted to dt (via float32, as convert does) and with the
// q/k row permutation applied when the container changed (GGUF ↔ HF).
func (v *verifier) expected(o *original, oname string, dt format.DType) ([]byte, []int64, error) {
	raw, ti, err := format.ReadAll(o.src, oname)
	if err != nil {
		return nil, nil, err
	}
	out := raw
	if ti.DType != dt {
		n := int(ti.NumElements())
		f := make([]float32, n)
		if err := format.ToFloat32(ti.DType, raw, f); err != nil {
			return nil, nil, err
		}
		sz, err := dt.ByteSize(int64(n))
		if err != nil {
			return nil, nil, err
		}
		out = make([]byte, sz)
		if err := format.FromFloat32(dt, f, out); err != nil {
			return nil, nil, err
		}
	}
	if o.ck.Kind != v.ck.Kind && len(ti.Shape) >= 1 {
		cfg := o.ck.Arch
		if h := llama.PermuteHeads(cfg.Arch, oname, cfg.NumHeads, cfg.NumKVHeads); h > 0 {
			perm := make([]byte, len(out))
			if o.ck.Kind == pack.KindGGUF {
				err = llama.Unpermute(perm, out, int(ti.Shape[0]), h)
			} else {
				err = llama.Permute(perm, out, int(ti.Shape[0]), h)
			}
			if err != nil {
				return nil, nil, err
			}
			out = perm
		}
	}
	return out, ti.Shape, nil
}

// checkAgainst compares one output tensor with the original. dense is the
// (unpacked) weight for pruned weights, nil for other tensors.
func (v *verifier) checkAgainst(t *TensorReport, o *original, dense []byte, dt format.DType) {
	oname, ok := v.origName(o, t.Name)
	if !ok {
		t.fail(CheckAgainst, "", "no counterpart in the original %s", v.opts.Against)
		return
	}
	o.seen[oname] = true
	if dense == nil {
		if t.Pruned {
			return // structure failed; already reported
		}
		b, ti, err := format.ReadAll(v.src, t.Name)
		if err != nil {
			t.fail(CheckAgainst, ti.File, "%v", err)
			return
		}
		dense, dt = b, ti.DType
	}
	want, shape, err := v.expected(o, oname, dt)
	if err != nil {
		t.fail(CheckAgainst, "", "original %q: %v", oname, err)
		return
	}
	if !slices.Equal(shape, t.Shape) {
		t.fail(CheckAgainst, "", "shape %v, original %q has %v", t.Shape, oname, shape)
		return
	}
	if len(want) != len(dense) {
		t.fail(CheckAgainst, "", "%d bytes, original %q gives %d", len(dense), oname, len(want))
		return
	}
	cols := 1
	if len(shape) >= 1 {
		cols = int(shape[len(shape)-1])
	}
	if !t.Pruned && v.man == nil && firstDiff(dense, want) >= 0 && len(shape) == 2 && v.defaultTarget(t.Name, shape) {
		// No manifest says which weights were pruned: a default target
		// stored masked-dense is one; it must still be a valid mask of the
		// original (checked below).
		if ok, _, _ := pack.IsPattern(dt, int(shape[0]), int(shape[1]), dense, v.pattern); ok {
			t.Pruned, t.Layout = true, pack.Dense
			t.Density = density(dt, dense)
			t.Notes = append(t.Notes, "no manifest: a default pruning target stored masked-dense; compared as pruned")
		}
	}
	if !t.Pruned {
		if i := firstDiff(dense, want); i >= 0 {
			e := elemIndex(dt, i)
			t.fail(CheckAgainst, "", "not a pruning target but differs from the original %q at row %d col %d (was it modified or pruned?)", oname, e/cols, e%cols)
			return
		}
		t.pass(CheckAgainst)
		return
	}
	v.comparePruned(t, oname, dt, cols, dense, want)
}

func elemIndex(dt format.DType, byteIndex int) int {
	tr, ok := dt.Trait()
	if !ok || tr.TypeSize == 0 || tr.BlockSize != 1 {
		return byteIndex
	}
	return byteIndex / int(tr.TypeSize)
}

// comparePruned: every nonzero stored value equals the original bit for bit
// (or, for weight-updating methods, the largest change is reported); every
// group keeps min(N, nonzeros of the original group) values, so no kept
// weight was zeroed and the pruned positions are exactly the mask's.
func (v *verifier) comparePruned(t *TensorReport, oname string, dt format.DType, cols int, got, want []byte) {
	tr, ok := dt.Trait()
	if !ok || tr.Quantized || tr.TypeSize > 4 {
		t.Checks[CheckAgainst] = "skip"
		t.Notes = append(t.Notes, fmt.Sprintf("against: dtype %v not compared", dt))
		return
	}
	size := int(tr.TypeSize)
	nz := nonzeroMask(dt)
	load := func(b []byte, i int) uint32 {
		var x uint32
		for j := 0; j < size; j++ {
			x |= uint32(b[i*size+j]) << (8 * j)
		}
		return x
	}
	n := len(got) / size
	p := v.pattern
	if t.Layout == pack.Cutlass && dt == format.F32 {
		p.N, p.M = 1, 2
	}
	updated := v.rep.WeightsUpdated
	// How many values each group must keep, given the original's nonzeros:
	// magnitude keeps min(N, nonzeros) (a zero never outranks a nonzero);
	// "none" (input already sparse) keeps every nonzero. Other methods score
	// by more than |w| (activations, learned logits) and may keep a zero over
	// a nonzero, so only the pattern and the kept bits are checked for them.
	var wantKept func(nz int) int
	switch v.rep.Method {
	case "magnitude":
		wantKept = func(nz int) int { return min(p.N, nz) }
	case "none":
		wantKept = func(nz int) int { return nz }
	}
	var gotF, wantF []float32
	if updated {
		gotF, wantF = make([]float32, n), make([]float32, n)
		if format.ToFloat32(dt, got, gotF) != nil || format.ToFloat32(dt, want, wantF) != nil {
			updated = false
		}
	}
	maxChange := 0.0
	for g := 0; g+p.M <= n; g += p.M {
		keptGot, nzWant := 0, 0
		for i := g; i < g+p.M; i++ {
			a, b := load(got, i), load(want, i)
			if b&nz != 0 {
				nzWant++
			}
			if a&nz == 0 {
				continue
			}
			keptGot++
			if updated {
				maxChange = math.Max(maxChange, math.Abs(float64(gotF[i])-float64(wantF[i])))
				continue
			}
			if a != b {
				t.fail(CheckAgainst, "", "kept value at row %d col %d is %#x, original %q has %#x (kept values must be bit-identical)", i/cols, i%cols, a, oname, b)
				return
			}
		}
		if !updated && wantKept != nil && keptGot != wantKept(nzWant) {
			t.fail(CheckAgainst, "", "row %d group %d keeps %d values but the original has %d nonzeros: want %d kept (a kept weight was zeroed, or the mask is not %s's)", g/cols, (g%cols)/p.M, keptGot, nzWant, wantKept(nzWant), v.rep.Method)
			return
		}
	}
	if wantKept == nil && !updated {
		m := v.rep.Method
		if m == "" {
			m = "unknown (no manifest)"
		}
		t.Notes = append(t.Notes, fmt.Sprintf("against: mask method %s: pruned positions checked for the pattern only", m))
	}
	if updated {
		t.MaxAbsChange = &maxChange
		t.Notes = append(t.Notes, fmt.Sprintf("weights updated by %s: max |kept - original| = %.3g", v.rep.Method, maxChange))
	}
	t.pass(CheckAgainst)
}

// nonzeroMask is the bits that make an element nonzero (sign excluded for floats).
func nonzeroMask(dt format.DType) uint32 {
	switch dt {
	case format.F16, format.BF16:
		return 0x7FFF
	case format.F32:
		return 0x7FFFFFFF
	case format.F8E4M3, format.F8E5M2:
		return 0x7F
	}
	return 0xFFFFFFFF
}

// checkOriginalCovered reports original tensors with no counterpart.
func (v *verifier) checkOriginalCovered(o *original) {
	for _, ti := range o.src.Tensors() {
		if !o.seen[ti.Name] {
			v.rep.violate(CheckAgainst, "", ti.Name, "tensor of the original %s is missing from the checkpoint", v.opts.Against)
		}
	}
}

// defaultTarget reports whether name is one of the weights convert prunes by
// default (the 2-D linear weights of the transformer blocks).
func (v *verifier) defaultTarget(name string, shape []int64) bool {
	tg, err := pack.NewTargets(nil, nil)
	return err == nil && tg.Match(name, shape)
}
