package verify

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"encoding/xml"
	"errors"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sparsify/sparsify/format"
	"github.com/sparsify/sparsify/format/safetensors"
	"github.com/sparsify/sparsify/mask"
	"github.com/sparsify/sparsify/pack"
)

// magnitude is a pack.MaskSource keeping the 2 largest |w| of every group.
type magnitude struct{}

func (magnitude) Name() string             { return "magnitude" }
func (magnitude) Settings() map[string]any { return nil }
func (magnitude) Mask(_ context.Context, _ string, w []float32, rows, cols int, p mask.Pattern) (*mask.Mask, []float32, error) {
	m, err := mask.Magnitude(w, rows, cols, p)
	return m, nil, err
}

const testConfig = `{"architectures":["LlamaForCausalLM"],"model_type":"llama","hidden_size":64,"intermediate_size":128,
"num_hidden_layers":2,"num_attention_heads":4,"num_key_value_heads":4,"vocab_size":256,"rms_norm_eps":1e-05,
"max_position_embeddings":128,"torch_dtype":"bfloat16"}`

// writeDense writes a small LLaMA-shaped BF16 checkpoint (every linear fits
// the cutlass layout) into a new directory and returns it.
func writeDense(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "dense")
	rng := rand.New(rand.NewPCG(1, 1))
	var ts []format.Tensor
	add := func(name string, shape ...int64) {
		n := int64(1)
		for _, d := range shape {
			n *= d
		}
		f := make([]float32, n)
		for i := range f {
			f[i] = float32(rng.NormFloat64() * 0.05)
		}
		b := make([]byte, 2*n)
		if err := format.FromFloat32(format.BF16, f, b); err != nil {
			t.Fatal(err)
		}
		ts = append(ts, format.Tensor{Name: name, DType: format.BF16, Shape: shape, Size: int64(len(b)),
			WriteTo: func(w io.Writer) (int64, error) { n, err := w.Write(b); return int64(n), err }})
	}
	add("model.embed_tokens.weight", 256, 64)
	for l := 0; l < 2; l++ {
		p := "model.layers." + string(rune('0'+l)) + "."
		for _, m := range []string{"q", "k", "v", "o"} {
			add(p+"self_attn."+m+"_proj.weight", 64, 64)
		}
		add(p+"mlp.gate_proj.weight", 128, 64)
		add(p+"mlp.up_proj.weight", 128, 64)
		add(p+"mlp.down_proj.weight", 64, 128)
		add(p+"input_layernorm.weight", 64)
		add(p+"post_attention_layernorm.weight", 64)
	}
	add("model.norm.weight", 64)
	add("lm_head.weight", 256, 64)
	if _, err := safetensors.WriteDir(context.Background(), dir, ts, safetensors.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(testConfig), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

const ignored = "model.layers.1.mlp.down_proj.weight"

// convert makes a sparse checkpoint of dense with the given layout; the
// layer-1 down_proj is ignored (left dense and unpruned).
func convert(t *testing.T, dense string, layout pack.Layout) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), string(layout))
	_, err := pack.Convert(context.Background(), dense, out, pack.Options{
		Method: magnitude{}, Layout: layout, Ignore: []string{`layers\.1\.mlp\.down_proj`}, Tool: "sparsify test",
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func run(t *testing.T, path string, o Options) *Report {
	t.Helper()
	if o.GEMMTokens == 0 {
		o.GEMMTokens = 8
	}
	r, err := Checkpoint(context.Background(), path, o)
	if err != nil {
		t.Fatalf("Checkpoint: %v", err)
	}
	return r
}

func TestGoodCheckpoints(t *testing.T) {
	dense := writeDense(t)
	for _, layout := range []pack.Layout{pack.Cutlass, pack.Bitmask, pack.Dense} {
		t.Run(string(layout), func(t *testing.T) {
			out := convert(t, dense, layout)
			r := run(t, out, Options{Against: dense})
			if !r.OK() {
				var b bytes.Buffer
				r.WriteTable(&b)
				t.Fatalf("good checkpoint failed:\n%s", b.String())
			}
			if r.Summary.Pruned != 13 || r.Layout != layout {
				t.Errorf("pruned %d layout %s, want 13 %s", r.Summary.Pruned, r.Layout, layout)
			}
			if layout != pack.Dense && r.Summary.GEMM != 13 {
				t.Errorf("GEMM checked %d weights, want 13", r.Summary.GEMM)
			}
			for _, tr := range r.Tensors {
				if tr.Pruned && tr.Checks[CheckAgainst] != "ok" {
					t.Errorf("%s: against %q", tr.Name, tr.Checks[CheckAgainst])
				}
			}
			// The outputs: table, JSON and JUnit parse and agree.
			var tb, jb, xb bytes.Buffer
			if err := r.WriteTable(&tb); err != nil || !strings.Contains(tb.String(), ": OK") {
				t.Errorf("table: %v\n%s", err, tb.String())
			}
			if err := r.WriteJSON(&jb); err != nil {
				t.Fatal(err)
			}
			var back Report
			if err := json.Unmarshal(jb.Bytes(), &back); err != nil || !back.Summary.OK || len(back.Tensors) != len(r.Tensors) {
				t.Errorf("json round trip: %v", err)
			}
			if err := r.WriteJUnit(&xb); err != nil {
				t.Fatal(err)
			}
			var ju junitSuites
			if err := xml.Unmarshal(xb.Bytes(), &ju); err != nil || ju.Failures != 0 || ju.Tests != len(r.Tensors)+1 {
				t.Errorf("junit: %v, %d tests %d failures", err, ju.Tests, ju.Failures)
			}
		})
	}
}

// tensorAt returns the absolute file offset and size of a tensor of a
// safetensors shard of dir.
func tensorAt(t *testing.T, dir, name string) (string, int64, int64) {
	t.Helper()
	d, err := safetensors.OpenDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	ti, ok := format.Lookup(d, name)
	if !ok {
		t.Fatalf("no tensor %q", name)
	}
	return ti.File, ti.Offset, ti.Size
}

func patch(t *testing.T, file string, off int64, f func(b []byte)) {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	f(b[off:])
	if err := os.WriteFile(file, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func copyDir(t *testing.T, src string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), filepath.Base(src))
	if err := os.CopyFS(dst, os.DirFS(src)); err != nil {
		t.Fatal(err)
	}
	return dst
}

// rewriteWithout rewrites the single shard of dir without the named tensor.
func rewriteWithout(t *testing.T, dir, drop string) {
	t.Helper()
	file, _, _ := tensorAt(t, dir, drop)
	sf, err := safetensors.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	var ts []format.Tensor
	for _, ti := range sf.Tensors() {
		if ti.Name != drop {
			ts = append(ts, format.Passthrough(sf, ti))
		}
	}
	tmp := file + ".new.safetensors"
	if _, err := safetensors.WriteFile(context.Background(), tmp, ts, safetensors.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	sf.Close()
	if err := os.Rename(tmp, file); err != nil {
		t.Fatal(err)
	}
}

// TestCorruption is the corruption suite: each damage is caught (exit 1:
// Report not OK) with a violation naming the tensor (or file).
func TestCorruption(t *testing.T) {
	dense := writeDense(t)
	good := map[pack.Layout]string{pack.Cutlass: convert(t, dense, pack.Cutlass), pack.Bitmask: convert(t, dense, pack.Bitmask)}
	const q = "model.layers.0.self_attn.q_proj"
	for _, c := range []struct {
		name   string
		layout pack.Layout
		damage func(t *testing.T, dir string)
		want   string // tensor or file a violation must name
		check  string // a check that must fail ("" any)
		// noManifest also deletes sparsify.json: the damage must then be
		// caught by the structural / --against checks alone.
		noManifest, against bool
	}{
		{name: "flip bit in values", layout: pack.Cutlass, want: q + ".packed", check: CheckIntegrity, damage: func(t *testing.T, d string) {
			f, off, _ := tensorAt(t, d, q+".packed")
			patch(t, f, off+10, func(b []byte) { b[0] ^= 0x04 })
		}},
		{name: "flip bit in values, no manifest, against", layout: pack.Cutlass, want: q + ".weight", check: CheckAgainst, noManifest: true, against: true, damage: func(t *testing.T, d string) {
			f, off, _ := tensorAt(t, d, q+".packed")
			patch(t, f, off+10, func(b []byte) { b[0] ^= 0x04 })
		}},
		{name: "flip bit in metadata", layout: pack.Cutlass, want: q + ".meta", check: CheckIntegrity, damage: func(t *testing.T, d string) {
			f, off, _ := tensorAt(t, d, q+".meta")
			patch(t, f, off+6, func(b []byte) { b[0] ^= 0x01 })
		}},
		{name: "flip bit in bitmask", layout: pack.Bitmask, want: q + ".bitmask", check: CheckIntegrity, damage: func(t *testing.T, d string) {
			f, off, _ := tensorAt(t, d, q+".bitmask")
			patch(t, f, off+3, func(b []byte) { b[0] ^= 0x10 })
		}},
		{name: "flip bit in bitmask, no manifest", layout: pack.Bitmask, want: q + ".bitmask", check: CheckStructure, noManifest: true, damage: func(t *testing.T, d string) {
			f, off, _ := tensorAt(t, d, q+".bitmask")
			patch(t, f, off+3, func(b []byte) { b[0] ^= 0x10 })
		}},
		{name: "invalid nibble", layout: pack.Cutlass, want: q + ".meta", check: CheckStructure, noManifest: true, damage: func(t *testing.T, d string) {
			f, off, _ := tensorAt(t, d, q+".meta")
			patch(t, f, off+8, func(b []byte) { b[0] = b[0]&0xF0 | 0x5 })
		}},
		{name: "truncate shard", layout: pack.Cutlass, want: "lm_head.weight", check: CheckIntegrity, damage: func(t *testing.T, d string) {
			f, _, _ := tensorAt(t, d, q+".packed")
			st, _ := os.Stat(f)
			if err := os.Truncate(f, st.Size()-100); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "drop a tensor", layout: pack.Cutlass, want: q + ".meta", check: CheckManifest, damage: func(t *testing.T, d string) {
			rewriteWithout(t, d, q+".meta")
		}},
		{name: "drop a tensor, no manifest", layout: pack.Cutlass, want: q + ".meta", check: CheckStructure, noManifest: true, damage: func(t *testing.T, d string) {
			rewriteWithout(t, d, q+".meta")
		}},
		{name: "edit config.json", layout: pack.Bitmask, want: "config.json", check: CheckIntegrity, damage: func(t *testing.T, d string) {
			b, _ := os.ReadFile(filepath.Join(d, "config.json"))
			os.WriteFile(filepath.Join(d, "config.json"), bytes.Replace(b, []byte(`"sparse-24-bitmask"`), []byte(`"dense"`), 1), 0o644)
		}},
		{name: "edit config.json, no manifest", layout: pack.Bitmask, want: "config.json", check: CheckConfig, noManifest: true, damage: func(t *testing.T, d string) {
			b, _ := os.ReadFile(filepath.Join(d, "config.json"))
			os.WriteFile(filepath.Join(d, "config.json"), bytes.Replace(b, []byte(`"2:4"`), []byte(`"2:8"`), 1), 0o644)
		}},
		{name: "sparsity_config on cutlass, no manifest", layout: pack.Cutlass, want: "config.json", check: CheckConfig, noManifest: true, damage: func(t *testing.T, d string) {
			os.WriteFile(filepath.Join(d, "config.json"), []byte(`{"model_type":"llama","quantization_config":{"quant_method":"compressed-tensors","sparsity_config":{"format":"dense","targets":["Linear"]}}}`), 0o644)
		}},
		{name: "kept value one ulp", layout: pack.Cutlass, want: q + ".packed", check: CheckIntegrity, damage: func(t *testing.T, d string) {
			f, off, _ := tensorAt(t, d, q+".packed")
			patch(t, f, off, func(b []byte) { binary.LittleEndian.PutUint16(b, binary.LittleEndian.Uint16(b)+1) })
		}},
		{name: "kept value one ulp, no manifest, against", layout: pack.Cutlass, want: q + ".weight", check: CheckAgainst, noManifest: true, against: true, damage: func(t *testing.T, d string) {
			f, off, _ := tensorAt(t, d, q+".packed")
			patch(t, f, off, func(b []byte) { binary.LittleEndian.PutUint16(b, binary.LittleEndian.Uint16(b)+1) })
		}},
		{name: "prune an ignored tensor", layout: pack.Cutlass, want: ignored, check: CheckIntegrity, damage: func(t *testing.T, d string) {
			f, off, size := tensorAt(t, d, ignored)
			patch(t, f, off, func(b []byte) {
				for i := int64(0); i < size/8; i++ { // zero elements 2,3 of every group of 4
					clear(b[8*i+4 : 8*i+8])
				}
			})
		}},
		{name: "prune lm_head (never a target), no manifest, against", layout: pack.Cutlass, want: "lm_head.weight", check: CheckAgainst, noManifest: true, against: true, damage: func(t *testing.T, d string) {
			f, off, size := tensorAt(t, d, "lm_head.weight")
			patch(t, f, off, func(b []byte) {
				for i := int64(0); i < size/8; i++ {
					clear(b[8*i+4 : 8*i+8])
				}
			})
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			d := copyDir(t, good[c.layout])
			if c.noManifest {
				os.Remove(filepath.Join(d, pack.ManifestName))
			}
			c.damage(t, d)
			o := Options{}
			if c.against {
				o.Against = dense
			}
			r := run(t, d, o)
			if r.OK() {
				t.Fatal("damage not caught")
			}
			found := false
			for _, v := range r.AllViolations() {
				if (v.Tensor == c.want || v.File == c.want || strings.Contains(v.Msg, c.want)) && (c.check == "" || v.Check == c.check) {
					found = true
				}
			}
			if !found {
				t.Errorf("no %s violation naming %q among:", c.check, c.want)
				for _, v := range r.AllViolations() {
					t.Logf("  %s", v)
				}
			}
		})
	}
}

func TestUnreadable(t *testing.T) {
	_, err := Checkpoint(context.Background(), filepath.Join(t.TempDir(), "missing"), Options{})
	if !errors.Is(err, ErrUnreadable) {
		t.Errorf("missing path: %v", err)
	}
	bad := filepath.Join(t.TempDir(), "bad.safetensors")
	os.WriteFile(bad, []byte("not a checkpoint at all"), 0o644)
	if _, err := Checkpoint(context.Background(), bad, Options{}); !errors.Is(err, ErrUnreadable) {
		t.Errorf("garbage file: %v", err)
	}
	dense := writeDense(t)
	if _, err := Checkpoint(context.Background(), dense, Options{Against: bad}); !errors.Is(err, ErrUnreadable) {
		t.Errorf("garbage --against: %v", err)
	}
}

// wrongBackend computes the dense side correctly and the sparse side off by a
// relative 1e-3: the GEMM check must fail.
type wrongBackend struct{ CPU }

func (wrongBackend) Name() string { return "wrong" }
func (wrongBackend) SparseMatMulT(y, x []float32, w *SparseWeight, m int) error {
	if err := ReferenceSparseMatMulT(y, x, w, m); err != nil {
		return err
	}
	y[len(y)/2] *= 1.001
	return nil
}

func TestGEMMBackendPlugs(t *testing.T) {
	out := convert(t, writeDense(t), pack.Cutlass)
	r := run(t, out, Options{Backend: wrongBackend{}})
	if r.OK() || r.Summary.Failed != 13 {
		t.Fatalf("wrong sparse GEMM: ok=%v failed=%d, want 13 GEMM failures", r.OK(), r.Summary.Failed)
	}
	for _, v := range r.AllViolations() {
		if v.Check != CheckGEMM {
			t.Errorf("unexpected violation %s", v)
		}
	}
}

// TestReferenceGEMMVectors runs the reference loop over the packed layout of
// the spec's vectors V1, V3, V4 against their exact gemm_C.
func TestReferenceGEMMVectors(t *testing.T) {
	b, err := os.ReadFile("../pack/testdata/nvidia-24-layout-vectors.json")
	if err != nil {
		t.Fatal(err)
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"V1", "V3", "V4"} {
		var v struct {
			DType string   `json:"dtype"`
			M     int      `json:"m"`
			K     int      `json:"k"`
			Dense []string `json:"dense"`
			GemmC []int64  `json:"gemm_C"`
		}
		if err := json.Unmarshal(raw[name], &v); err != nil {
			t.Fatal(err)
		}
		dt := map[string]format.DType{"float16": format.F16, "int8": format.I8, "float32": format.F32}[v.DType]
		tr, _ := dt.Trait()
		es := int(tr.TypeSize)
		dense := make([]byte, 0, len(v.Dense)*es)
		for _, h := range v.Dense {
			var x uint64
			for _, ch := range h {
				x = x<<4 | uint64(strings.IndexRune("0123456789ABCDEF", ch))
			}
			for i := 0; i < es; i++ {
				dense = append(dense, byte(x>>(8*i)))
			}
		}
		vals, meta, err := pack.PackCutlass(dt, v.M, v.K, dense)
		if err != nil {
			t.Fatal(err)
		}
		fv := make([]float32, v.M*v.K/2)
		if err := format.ToFloat32(dt, vals, fv); err != nil {
			t.Fatal(err)
		}
		// y = x · Wᵀ with x = Bdᵀ: x[n][kk] = Bd[kk][n] = ((kk*8+n)%7)-3.
		x := make([]float32, 8*v.K)
		for n := 0; n < 8; n++ {
			for kk := 0; kk < v.K; kk++ {
				x[n*v.K+kk] = float32((kk*8+n)%7 - 3)
			}
		}
		y := make([]float32, 8*v.M)
		sw := &SparseWeight{Layout: pack.Cutlass, DType: dt, Rows: v.M, Cols: v.K, Values: fv, Meta: meta}
		if err := ReferenceSparseMatMulT(y, x, sw, 8); err != nil {
			t.Fatal(err)
		}
		for r := 0; r < v.M; r++ {
			for n := 0; n < 8; n++ {
				if got := y[n*v.M+r]; got != float32(v.GemmC[r*8+n]) {
					t.Fatalf("%s: C[%d][%d] = %v, want %d", name, r, n, got, v.GemmC[r*8+n])
				}
			}
		}
	}
}

func TestGamma(t *testing.T) {
	if g, nu := gamma(4096), 4096.0/(1<<24); math.Abs(g-nu/(1-nu)) > 1e-15 || g <= nu {
		t.Errorf("gamma(4096) = %g", g)
	}
}

// TestLLaMAShapes packs and verifies 4096×4096 and 11008×4096 (and its
// transpose) BF16 matrices in the cutlass and bitmask layouts, with --against.
// Skipped with -short (about 250 MB of weights).
func TestLLaMAShapes(t *testing.T) {
	if testing.Short() {
		t.Skip("large synthetic checkpoint; run without -short")
	}
	dir := filepath.Join(t.TempDir(), "dense")
	rng := rand.New(rand.NewPCG(2, 2))
	var ts []format.Tensor
	for _, s := range []struct {
		name       string
		rows, cols int64
	}{
		{"model.layers.0.self_attn.q_proj.weight", 4096, 4096},
		{"model.layers.0.mlp.gate_proj.weight", 11008, 4096},
		{"model.layers.0.mlp.down_proj.weight", 4096, 11008},
	} {
		f := make([]float32, s.rows*s.cols)
		for i := range f {
			f[i] = float32(rng.NormFloat64() * 0.02)
		}
		b := make([]byte, 2*len(f))
		if err := format.FromFloat32(format.BF16, f, b); err != nil {
			t.Fatal(err)
		}
		ts = append(ts, format.Tensor{Name: s.name, DType: format.BF16, Shape: []int64{s.rows, s.cols}, Size: int64(len(b)),
			WriteTo: func(w io.Writer) (int64, error) { n, err := w.Write(b); return int64(n), err }})
	}
	if _, err := safetensors.WriteDir(context.Background(), dir, ts, safetensors.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	ts = nil
	for _, layout := range []pack.Layout{pack.Cutlass, pack.Bitmask} {
		out := filepath.Join(t.TempDir(), string(layout))
		if _, err := pack.Convert(context.Background(), dir, out, pack.Options{Method: magnitude{}, Layout: layout}); err != nil {
			t.Fatal(err)
		}
		r, err := Checkpoint(context.Background(), out, Options{Against: dir, GEMMTokens: 16})
		if err != nil {
			t.Fatal(err)
		}
		if !r.OK() || r.Summary.GEMM != 3 {
			var b bytes.Buffer
			r.WriteTable(&b)
			t.Fatalf("LLaMA shapes, %s:\n%s", layout, b.String())
		}
		for _, tr := range r.Tensors {
			t.Logf("%s %s: gemm worst |Δ|/tol %.3g, sparse side %s", layout, tr.Name, tr.GEMM.WorstRatio, tr.GEMM.Sparse)
		}
		t.Logf("%s verified in %.1fs", layout, r.Summary.Seconds)
		os.RemoveAll(out)
	}
}

// TestKeptWeightZeroed: with a magnitude manifest, a kept value set to +0 is
// caught by --against even when the manifest's hashes are made to agree.
func TestKeptWeightZeroed(t *testing.T) {
	dense := writeDense(t)
	d := copyDir(t, convert(t, dense, pack.Dense))
	const w = "model.layers.0.self_attn.q_proj.weight"
	f, off, _ := tensorAt(t, d, w)
	patch(t, f, off, func(b []byte) {
		for i := 0; i < 8; i += 2 { // the first kept value of group 0
			if b[i]|b[i+1]&0x7F != 0 {
				b[i], b[i+1] = 0, 0
				return
			}
		}
	})
	// Re-record the hashes so that only --against can notice.
	man, err := pack.ReadManifest(filepath.Join(d, pack.ManifestName))
	if err != nil {
		t.Fatal(err)
	}
	for i, fl := range man.Files {
		h, _ := pack.HashFile(filepath.Join(d, fl.Name))
		man.Files[i].SHA256, man.Files[i].Size = h.SHA256, h.Size
	}
	src, _ := safetensors.OpenDir(d)
	for i, mt := range man.Tensors {
		man.Tensors[i].SHA256, _ = hashTensor(src, mt.Name)
	}
	src.Close()
	b, _ := json.Marshal(man)
	os.WriteFile(filepath.Join(d, pack.ManifestName), b, 0o644)
	if r := run(t, d, Options{}); !r.OK() {
		t.Fatalf("without --against the edit is undetectable by design, got %v", r.AllViolations())
	}
	r := run(t, d, Options{Against: dense})
	found := false
	for _, v := range r.AllViolations() {
		if v.Tensor == w && v.Check == CheckAgainst && strings.Contains(v.Msg, "group 0") {
			found = true
		}
	}
	if r.OK() || !found {
		t.Fatalf("zeroed kept weight not caught: %v", r.AllViolations())
	}
}
