package pack

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/sparsify/sparsify/format"
	"github.com/sparsify/sparsify/format/gguf"
	"github.com/sparsify/sparsify/format/llama"
	"github.com/sparsify/sparsify/format/safetensors"
	"github.com/sparsify/sparsify/internal/synth"
	"github.com/sparsify/sparsify/internal/testutil"
	"github.com/sparsify/sparsify/mask"
)

// tensorsOf reads every tensor of a checkpoint: name → bytes.
func tensorsOf(t *testing.T, path string) (map[string][]byte, map[string]format.TensorInfo) {
	t.Helper()
	ck, err := OpenCheckpoint(path)
	if err != nil {
		t.Fatal(err)
	}
	defer ck.Close()
	bs, infos := map[string][]byte{}, map[string]format.TensorInfo{}
	for _, ti := range ck.Source.Tensors() {
		b, _, err := format.ReadAll(ck.Source, ti.Name)
		if err != nil {
			t.Fatal(err)
		}
		bs[ti.Name], infos[ti.Name] = b, ti
	}
	return bs, infos
}

func mustConvert(t *testing.T, in, out string, opts Options) *Result {
	t.Helper()
	r, err := Convert(context.Background(), in, out, opts)
	if err != nil {
		t.Fatalf("Convert(%s → %s): %v", in, out, err)
	}
	return r
}

func TestRoundTripHFGGUFHF(t *testing.T) {
	for _, dt := range []format.DType{format.F32, format.F16, format.BF16} {
		t.Run(dt.String(), func(t *testing.T) {
			dir := t.TempDir()
			cfg := synth.Tiny()
			cfg.DType = dt
			hf := filepath.Join(dir, "hf")
			if err := synth.WriteHF(hf, cfg, 3); err != nil {
				t.Fatal(err)
			}
			mustConvert(t, hf, filepath.Join(dir, "m.gguf"), Options{To: "gguf"})
			r := mustConvert(t, filepath.Join(dir, "m.gguf"), filepath.Join(dir, "back"), Options{To: "safetensors"})
			if r.Manifest != nil {
				t.Error("plain conversion wrote a manifest")
			}
			a, ai := tensorsOf(t, hf)
			b, bi := tensorsOf(t, filepath.Join(dir, "back"))
			if len(a) != len(b) {
				t.Fatalf("%d tensors, back %d", len(a), len(b))
			}
			for n, x := range a {
				if !bytes.Equal(x, b[n]) || ai[n].DType != bi[n].DType || !reflect.DeepEqual(ai[n].Shape, bi[n].Shape) {
					t.Errorf("%s differs after HF → GGUF → HF", n)
				}
			}
			// the GGUF holds llama.cpp names and permuted q
			g, gi := tensorsOf(t, filepath.Join(dir, "m.gguf"))
			q := a["model.layers.1.self_attn.q_proj.weight"]
			perm := make([]byte, len(q))
			if err := llama.Permute(perm, q, cfg.Hidden, cfg.Heads); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(g["blk.1.attn_q.weight"], perm) || gi["blk.1.attn_q.weight"].DType != dt {
				t.Error("GGUF q is not the llama.cpp permutation of HF q")
			}
		})
	}
}

func TestStoriesRoundTrip(t *testing.T) {
	in := testutil.SharedData(t, "stories260K.gguf")
	dir := t.TempDir()
	mustConvert(t, in, filepath.Join(dir, "hf"), Options{To: "safetensors"})
	for _, f := range []string{"config.json", llama.TokenizerFile, llama.MetadataFile, "model.safetensors"} {
		if _, err := os.Stat(filepath.Join(dir, "hf", f)); err != nil {
			t.Errorf("missing %s: %v", f, err)
		}
	}
	mustConvert(t, filepath.Join(dir, "hf"), filepath.Join(dir, "back.gguf"), Options{To: "gguf"})
	g0, err := gguf.Open(in)
	if err != nil {
		t.Fatal(err)
	}
	defer g0.Close()
	g1, err := gguf.Open(filepath.Join(dir, "back.gguf"))
	if err != nil {
		t.Fatal(err)
	}
	defer g1.Close()
	if !reflect.DeepEqual(g0.KV(), g1.KV()) {
		t.Error("metadata differs after GGUF → HF → GGUF")
	}
	t0, t1 := g0.Tensors(), g1.Tensors()
	if len(t0) != len(t1) {
		t.Fatalf("%d tensors, back %d", len(t0), len(t1))
	}
	for i := range t0 {
		if t0[i].Name != t1[i].Name || !reflect.DeepEqual(t0[i].Shape, t1[i].Shape) || t0[i].DType != t1[i].DType {
			t.Errorf("tensor %d: %v vs %v", i, t0[i], t1[i])
		}
		a, _, _ := format.ReadAll(g0, t0[i].Name)
		b, _, _ := format.ReadAll(g1, t1[i].Name)
		if !bytes.Equal(a, b) {
			t.Errorf("%s: bytes differ", t0[i].Name)
		}
	}
	b0, _ := os.ReadFile(in)
	b1, _ := os.ReadFile(filepath.Join(dir, "back.gguf"))
	if !bytes.Equal(b0, b1) { // same metadata, order, alignment: llama.cpp's bytes
		t.Errorf("GGUF → HF → GGUF is not byte-identical (%d vs %d bytes)", len(b0), len(b1))
	}
}

// magnitudeMasked returns the stories weights in bf16, magnitude-masked (for targets).
func TestStoriesCutlassThenDense(t *testing.T) {
	in := testutil.SharedData(t, "stories260K.gguf")
	dir := t.TempDir()
	out := filepath.Join(dir, "out")
	var log bytes.Buffer
	r := mustConvert(t, in, out, Options{To: "safetensors", DType: "bf16", Method: Magnitude(), Layout: Cutlass, Log: &log})
	if r.Manifest == nil || r.Pruned != 35 || r.Dense != 15 {
		t.Fatalf("pruned %d, stored dense %d, manifest %v", r.Pruned, r.Dense, r.Manifest != nil)
	}
	if !strings.Contains(log.String(), "stored masked-dense") {
		t.Errorf("no warning for the shapes cutlass cannot hold: %q", log.String())
	}
	m, err := ReadManifest(filepath.Join(out, ManifestName))
	if err != nil {
		t.Fatal(err)
	}
	if m.Layout != Cutlass || m.Method.Name != "magnitude" || m.Input.Format != "gguf" || len(m.Input.Files) != 1 || len(m.Pruned) != 35 {
		t.Errorf("manifest %+v", m)
	}
	for _, p := range m.Pruned {
		if strings.Contains(p.Weight, "ffn_gate") && (p.Layout != Dense || p.Reason == "") {
			t.Errorf("%s: layout %s reason %q", p.Weight, p.Layout, p.Reason)
		}
		if strings.Contains(p.Weight, "attn_q") && (p.Layout != Cutlass || len(p.Tensors) != 3) {
			t.Errorf("%s: %+v", p.Weight, p)
		}
	}
	packed, infos := tensorsOf(t, out) // expanded view
	if _, ok := infos["model.layers.0.self_attn.q_proj.weight"]; !ok {
		t.Fatal("expanded view lacks q_proj.weight")
	}
	dense := filepath.Join(dir, "dense")
	mustConvert(t, out, dense, Options{Layout: Dense})
	got, _ := tensorsOf(t, dense)
	// expected: stories → bf16 → magnitude mask → +0 → HF order
	want := expectedMasked(t, in)
	for n, w := range want {
		if !bytes.Equal(got[n], w) {
			t.Errorf("%s: dense expansion differs from the magnitude-masked original", n)
		}
		if !bytes.Equal(packed[n], w) {
			t.Errorf("%s: expanded view differs", n)
		}
	}
	if _, err := os.Stat(filepath.Join(dense, ManifestName)); err != nil {
		t.Error("expanding a sparse checkpoint wrote no manifest")
	}
	raw, _ := os.ReadFile(filepath.Join(out, "config.json"))
	raw2, _ := os.ReadFile(filepath.Join(dense, "config.json"))
	if !bytes.Equal(raw, raw2) || bytes.Contains(raw, []byte("sparsity_config")) {
		t.Error("config.json changed for cutlass/dense")
	}
}

// expectedMasked computes the magnitude-masked BF16 weights of a GGUF in HF naming/row order.
func expectedMasked(t *testing.T, in string) map[string][]byte {
	t.Helper()
	g, err := gguf.Open(in)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	cfg, _ := llama.FromGGUF(g.KV())
	tg, _ := NewTargets(nil, nil)
	out := map[string][]byte{}
	for _, ti := range g.Tensors() {
		raw, _, _ := format.ReadAll(g, ti.Name)
		w := make([]float32, ti.NumElements())
		if err := format.ToFloat32(ti.DType, raw, w); err != nil {
			t.Fatal(err)
		}
		b := make([]byte, 2*len(w))
		if tg.Match(ti.Name, ti.Shape) {
			m, err := mask.Magnitude(w, int(ti.Shape[0]), int(ti.Shape[1]), mask.Pattern24)
			if err != nil {
				t.Fatal(err)
			}
			w = m.Apply(w)
		}
		if len(ti.Shape) < 2 {
			continue
		}
		if err := format.FromFloat32(format.BF16, w, b); err != nil {
			t.Fatal(err)
		}
		if h := llama.PermuteHeads("llama", ti.Name, cfg.NumHeads, cfg.NumKVHeads); h > 0 {
			p := make([]byte, len(b))
			_ = llama.Unpermute(p, b, int(ti.Shape[0]), h)
			b = p
		}
		hn, _ := llama.ToHF(ti.Name)
		out[hn] = b
	}
	return out
}

func TestBitmaskConfigAndExpand(t *testing.T) {
	dir := t.TempDir()
	cfg := synth.Tiny()
	cfg.Sparse24 = true
	hf := filepath.Join(dir, "hf")
	if err := synth.WriteHF(hf, cfg, 5); err != nil {
		t.Fatal(err)
	}
	bm := filepath.Join(dir, "bm")
	r := mustConvert(t, hf, bm, Options{Layout: Bitmask, Compress: ""})
	if r.Pruned != 14 {
		t.Errorf("pruned %d, want 14", r.Pruned)
	}
	cj, _ := os.ReadFile(filepath.Join(bm, "config.json"))
	var c map[string]any
	if err := json.Unmarshal(cj, &c); err != nil {
		t.Fatal(err)
	}
	qc, _ := c["quantization_config"].(map[string]any)
	sc, _ := qc["sparsity_config"].(map[string]any)
	if qc["quant_method"] != "compressed-tensors" || qc["version"] != "0.14.0.1" || sc["format"] != "sparse-24-bitmask" ||
		sc["sparsity_structure"] != "2:4" || !reflect.DeepEqual(sc["targets"], []any{"Linear"}) || !reflect.DeepEqual(sc["ignore"], []any{"lm_head"}) ||
		sc["registry_requires_subclass"] != false {
		t.Errorf("quantization_config %v", qc)
	}
	_, infos := tensorsOf(t, hf)
	st, _ := OpenCheckpoint(bm)
	names := map[string]format.TensorInfo{}
	for _, ti := range st.Source.(interface{ Unwrap() format.Source }).Unwrap().Tensors() {
		names[ti.Name] = ti
	}
	st.Close()
	if ti, ok := names["model.layers.0.mlp.down_proj.shape"]; !ok || ti.DType != format.I64 || !reflect.DeepEqual(ti.Shape, []int64{2, 1}) {
		t.Errorf("shape tensor %v", ti)
	}
	if _, ok := names["model.layers.0.mlp.down_proj.weight"]; ok {
		t.Error("bitmask output kept P.weight")
	}
	if ti := names["model.layers.0.mlp.down_proj.bitmask"]; ti.DType != format.U8 || !reflect.DeepEqual(ti.Shape, []int64{64, 16}) {
		t.Errorf("bitmask %v", ti)
	}
	dense := filepath.Join(dir, "dense")
	mustConvert(t, bm, dense, Options{Layout: Dense})
	a, _ := tensorsOf(t, hf)
	b, _ := tensorsOf(t, dense)
	for n := range infos {
		if !bytes.Equal(a[n], b[n]) {
			t.Errorf("%s differs after bitmask → dense", n)
		}
	}
	cj, _ = os.ReadFile(filepath.Join(dense, "config.json"))
	if bytes.Contains(cj, []byte("sparsity_config")) || bytes.Contains(cj, []byte("quantization_config")) {
		t.Errorf("expanded config.json keeps the sparsity config: %s", cj)
	}
}

func TestRefusals(t *testing.T) {
	dir := t.TempDir()
	cfg := synth.Tiny()
	hf := filepath.Join(dir, "hf")
	if err := synth.WriteHF(hf, cfg, 5); err != nil {
		t.Fatal(err)
	}
	f32 := synth.Tiny()
	f32.DType = format.F32
	hf32 := filepath.Join(dir, "hf32")
	if err := synth.WriteHF(hf32, f32, 5); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	// dense input, cutlass, no method: refused naming tensor, row, group
	_, err := Convert(ctx, hf, filepath.Join(dir, "o1"), Options{Layout: Cutlass})
	if !errors.Is(err, ErrNotSparse) || !errors.Is(err, mask.ErrPattern) || !strings.Contains(err.Error(), "row 0, group 0") || !strings.Contains(err.Error(), "model.layers.") {
		t.Errorf("non-2:4 input: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "o1")); !os.IsNotExist(err) {
		t.Error("failed conversion left output")
	}
	_, err = Convert(ctx, hf32, filepath.Join(dir, "o2"), Options{Layout: Cutlass, Method: Magnitude()})
	if !errors.Is(err, ErrConvert) || !strings.Contains(err.Error(), "--dtype f16|bf16") || !strings.Contains(err.Error(), "--pattern 1:2") {
		t.Errorf("F32 cutlass 2:4: %v", err)
	}
	if _, err := Convert(ctx, hf32, filepath.Join(dir, "o3"), Options{Layout: Cutlass, Method: Magnitude(), Pattern: mask.Pattern{N: 1, M: 2}}); err != nil {
		t.Errorf("F32 cutlass 1:2: %v", err)
	}
	if _, err := Convert(ctx, hf, filepath.Join(hf, "sub"), Options{}); !errors.Is(err, format.ErrInputOutput) {
		t.Errorf("output inside input: %v", err)
	}
	if _, err := Convert(ctx, hf, hf, Options{}); !errors.Is(err, format.ErrInputOutput) {
		t.Errorf("output = input: %v", err)
	}
	if _, err := Convert(ctx, hf, filepath.Join(dir, "x.gguf"), Options{To: "gguf", Layout: Cutlass, Method: Magnitude()}); !errors.Is(err, ErrConvert) {
		t.Errorf("cutlass to gguf: %v", err)
	}
	// cancelled context: no output
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := Convert(cctx, hf, filepath.Join(dir, "o4"), Options{Method: Magnitude()}); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
	if _, err := Convert(cctx, hf, filepath.Join(dir, "o5.gguf"), Options{To: "gguf"}); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled gguf: %v", err)
	}
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if e.Name() != "hf" && e.Name() != "hf32" && e.Name() != "o3" {
			t.Errorf("left behind: %s", e.Name())
		}
	}
	// strict: a shape cutlass cannot hold is an error
	odd := synth.Tiny()
	odd.FFN = 96
	hodd := filepath.Join(dir, "odd")
	if err := synth.WriteHF(hodd, odd, 1); err != nil {
		t.Fatal(err)
	}
	if _, err := Convert(ctx, hodd, filepath.Join(dir, "o6"), Options{Layout: Cutlass, Method: Magnitude(), Strict: true}); !errors.Is(err, ErrShape) {
		t.Errorf("strict: %v", err)
	}
}

func TestSaveMaskAndMaskFile(t *testing.T) {
	dir := t.TempDir()
	hf := filepath.Join(dir, "hf")
	if err := synth.WriteHF(hf, synth.Tiny(), 9); err != nil {
		t.Fatal(err)
	}
	mf := filepath.Join(dir, "masks.safetensors")
	mustConvert(t, hf, filepath.Join(dir, "a"), Options{Method: Magnitude(), SaveMask: mf, Layout: Cutlass})
	src, err := MaskFile(mf)
	if err != nil {
		t.Fatal(err)
	}
	mustConvert(t, hf, filepath.Join(dir, "b"), Options{Method: src, Layout: Cutlass})
	a, _ := tensorsOf(t, filepath.Join(dir, "a"))
	b, _ := tensorsOf(t, filepath.Join(dir, "b"))
	for n := range a {
		if !bytes.Equal(a[n], b[n]) {
			t.Errorf("%s: --mask of the saved masks differs from magnitude", n)
		}
	}
	m, err := ReadManifest(filepath.Join(dir, "b", ManifestName))
	if err != nil || m.Method.Name != "mask-file" {
		t.Errorf("manifest %v %v", m, err)
	}
}

func TestTargets(t *testing.T) {
	tg, err := NewTargets(nil, []string{`layers\.1\.`})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name  string
		shape []int64
		want  bool
	}{
		{"model.layers.0.mlp.up_proj.weight", []int64{8, 8}, true},
		{"blk.0.ffn_up.weight", []int64{8, 8}, true},
		{"blk.1.ffn_up.weight", []int64{8, 8}, false}, // ignore matches its HF name
		{"model.layers.0.mlp.up_proj.bias", []int64{8}, false},
		{"model.embed_tokens.weight", []int64{8, 8}, false},
		{"output.weight", []int64{8, 8}, false},
		{"lm_head.weight", []int64{8, 8}, false},
		{"model.layers.0.input_layernorm.weight", []int64{8}, false},
	}
	for _, c := range cases {
		if got := tg.Match(c.name, c.shape); got != c.want {
			t.Errorf("Match(%q) = %v", c.name, got)
		}
	}
	all, _ := NewTargets([]string{"."}, nil)
	if all.Match("lm_head.weight", []int64{8, 8}) || all.Match("model.norm.weight", []int64{8, 8}) {
		t.Error("never-pruned tensors selected by a catch-all")
	}
	if _, err := NewTargets([]string{"("}, nil); err == nil {
		t.Error("bad regexp accepted")
	}
}

func TestQwen2AndGGUFManifest(t *testing.T) {
	dir := t.TempDir()
	cfg := synth.Tiny()
	cfg.Arch = "qwen2"
	hf := filepath.Join(dir, "hf")
	if err := synth.WriteHF(hf, cfg, 4); err != nil {
		t.Fatal(err)
	}
	g := filepath.Join(dir, "q.gguf")
	mustConvert(t, hf, g, Options{})
	gt, _ := tensorsOf(t, g)
	ht, _ := tensorsOf(t, hf)
	// qwen2: no permutation, biases mapped
	if !bytes.Equal(gt["blk.0.attn_q.weight"], ht["model.layers.0.self_attn.q_proj.weight"]) || !bytes.Equal(gt["blk.1.attn_k.bias"], ht["model.layers.1.self_attn.k_proj.bias"]) {
		t.Error("qwen2 q/k changed or biases lost")
	}
	gf, err := gguf.Open(g)
	if err != nil {
		t.Fatal(err)
	}
	if gf.Architecture() != "qwen2" {
		t.Errorf("architecture %q", gf.Architecture())
	}
	gf.Close()
	back := filepath.Join(dir, "back")
	mustConvert(t, g, back+"/", Options{})
	bt, _ := tensorsOf(t, back)
	for n, b := range ht {
		if !bytes.Equal(bt[n], b) {
			t.Errorf("%s differs after qwen2 HF → GGUF → HF", n)
		}
	}
	// a pruned GGUF (dense layout) gets OUT.sparsify.json
	pg := filepath.Join(dir, "pruned.gguf")
	r := mustConvert(t, g, pg, Options{Method: Magnitude(), DType: "f16"})
	m, err := ReadManifest(pg + "." + ManifestName)
	if err != nil || r.Pruned != 14 || len(m.Pruned) != 14 || m.OutputFormat != "gguf" || len(m.Files) != 1 || len(m.Tensors) != len(gt) {
		t.Fatalf("manifest %+v, %v", m, err)
	}
	h, err := HashFile(pg)
	if err != nil || h.SHA256 != m.Files[0].SHA256 {
		t.Error("manifest file hash does not match the file")
	}
	pt, _ := tensorsOf(t, pg)
	for _, tm := range m.Tensors {
		sum := sha256Hex(pt[tm.Name])
		if sum != tm.SHA256 {
			t.Errorf("%s: manifest sha256 does not match", tm.Name)
		}
	}
	gp, _ := gguf.Open(pg)
	defer gp.Close()
	if v, ok := gp.Uint("general.file_type"); !ok || v != 1 {
		t.Errorf("general.file_type %d %v, want 1 (F16)", v, ok)
	}
	ti, _ := format.Lookup(gp, "blk.0.attn_norm.weight")
	if ti.DType != format.F32 {
		t.Errorf("1-D norm is %v in an f16 GGUF, want F32", ti.DType)
	}
}

func TestZstdOutputReadBack(t *testing.T) {
	dir := t.TempDir()
	hf := filepath.Join(dir, "hf")
	if err := synth.WriteHF(hf, synth.Tiny(), 8); err != nil {
		t.Fatal(err)
	}
	z := filepath.Join(dir, "z")
	mustConvert(t, hf, z, Options{Method: Magnitude(), Layout: Cutlass, Compress: "zstd", MaxShardSize: 100_000})
	ents, _ := os.ReadDir(z)
	nz := 0
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), ".safetensors.zst") {
			nz++
		}
	}
	if nz < 2 {
		t.Errorf("want several .zst shards, got %v", ents)
	}
	plain := filepath.Join(dir, "plain")
	mustConvert(t, hf, plain, Options{Method: Magnitude(), Layout: Cutlass})
	a, _ := tensorsOf(t, z)
	b, _ := tensorsOf(t, plain)
	if len(a) != len(b) {
		t.Fatalf("%d vs %d tensors", len(a), len(b))
	}
	for n := range b {
		if !bytes.Equal(a[n], b[n]) {
			t.Errorf("%s: zstd output reads back differently", n)
		}
	}
	m, err := ReadManifest(filepath.Join(z, ManifestName))
	if err != nil || m.Compress != "zstd" {
		t.Errorf("manifest %v %v", m, err)
	}
}

// TestQuantizedInput: a GGUF holding Q8_0 weights converts to safetensors
// with the weights dequantized to F32 (exactly format.Dequantize's values),
// and prunes from the dequantized values.
func TestQuantizedInput(t *testing.T) {
	dir := t.TempDir()
	cfg := synth.Tiny()
	cfg.DType = format.F32
	src := filepath.Join(dir, "f32.gguf")
	if err := synth.WriteGGUF(src, cfg, 2); err != nil {
		t.Fatal(err)
	}
	g, err := gguf.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	// rewrite ffn_up of block 0 as Q8_0 blocks (scale 1/64, q = i%7-3)
	var ts []format.Tensor
	qname := "blk.0.ffn_up.weight"
	var qraw []byte
	for _, ti := range g.Tensors() {
		if ti.Name != qname {
			ts = append(ts, format.Passthrough(g, ti))
			continue
		}
		n := ti.NumElements()
		for b := int64(0); b < n/32; b++ {
			qraw = append(qraw, 0x00, 0x24) // F16 1/64 = 0x2400
			for i := 0; i < 32; i++ {
				qraw = append(qraw, byte(int8((int(b)+i)%7-3)))
			}
		}
		raw := qraw
		ts = append(ts, format.Tensor{Name: ti.Name, DType: format.Q8_0, Shape: ti.Shape, Size: int64(len(raw)),
			WriteTo: func(w io.Writer) (int64, error) { n, err := w.Write(raw); return int64(n), err }})
	}
	q := filepath.Join(dir, "q.gguf")
	if err := gguf.Write(context.Background(), q, g.KV(), ts, gguf.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	g.Close()
	want := make([]float32, len(qraw)/34*32)
	if err := format.Dequantize(format.Q8_0, qraw, want); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "hf")
	mustConvert(t, q, out, Options{To: "safetensors"})
	b, infos := tensorsOf(t, out)
	ti := infos["model.layers.0.mlp.up_proj.weight"]
	if ti.DType != format.F32 {
		t.Fatalf("dequantized dtype %v", ti.DType)
	}
	got := make([]float32, len(want))
	_ = format.ToFloat32(format.F32, b[ti.Name], got)
	if !reflect.DeepEqual(got, want) || want[1] != float32(-2)/64 {
		t.Error("Q8_0 weights not dequantized exactly")
	}
	// pruning a quantized weight works on its dequantized values
	r := mustConvert(t, q, filepath.Join(dir, "p"), Options{To: "safetensors", Method: Magnitude(), DType: "bf16", Layout: Cutlass})
	if r.Pruned != 14 {
		t.Errorf("pruned %d", r.Pruned)
	}
}

// slowMagnitude is Magnitude behind another type, so that Convert takes the
// general path (float32 copy, mask.Magnitude, ApplyMask, whole-tensor packing).
type slowMagnitude struct{ MaskSource }

// TestMagnitudeRowsMatchesMask checks the bit-pattern magnitude selection
// against mask.Magnitude + ApplyMask on values with many ties and ±0.
func TestMagnitudeRowsMatchesMask(t *testing.T) {
	vals := []float32{0, float32(math.Copysign(0, -1)), 1, -1, 0.5, -0.5, 2, 3e-41, -3e-41, 1e-7}
	for _, dt := range []format.DType{format.BF16, format.F16, format.F32} {
		for _, pat := range []mask.Pattern{mask.Pattern24, {N: 1, M: 2}, {N: 4, M: 8}, {N: 3, M: 16}} {
			rows, cols := 7, 48
			w := make([]float32, rows*cols)
			for i := range w {
				w[i] = vals[(i*7+i/5+i*i/3)%len(vals)]
			}
			es := elemBytes(dt)
			b := make([]byte, len(w)*es)
			if err := format.FromFloat32(dt, w, b); err != nil {
				t.Fatal(err)
			}
			ref := bytes.Clone(b)
			wf := make([]float32, len(w))
			_ = format.ToFloat32(dt, ref, wf)
			m, err := mask.Magnitude(wf, rows, cols, pat)
			if err != nil {
				t.Fatal(err)
			}
			if err := ApplyMask(dt, ref, m); err != nil {
				t.Fatal(err)
			}
			if _, _, ok := magnitudeRows(dt, b, cols, pat); !ok {
				t.Fatalf("%v %v: reported a non-finite weight", dt, pat)
			}
			if !bytes.Equal(b, ref) {
				t.Errorf("%v %v: magnitudeRows differs from mask.Magnitude + ApplyMask", dt, pat)
			}
			// a NaN, then an Inf earlier: the first in row order is reported
			w[3*cols+5] = float32(math.NaN())
			w[2*cols+9] = float32(math.Inf(-1))
			_ = format.FromFloat32(dt, w, b)
			if r, c, ok := magnitudeRows(dt, b, cols, pat); ok || r != 2 || c != 9 {
				t.Errorf("%v %v: non-finite at [%d, %d] ok=%v, want [2, 9]", dt, pat, r, c, ok)
			}
		}
	}
}

// TestFastMagnitudeBitIdentical converts with the streaming magnitude path
// (in blocks of 32 rows, or 1 row for dense) and with the general path, and
// requires identical tensors and manifests.
func TestFastMagnitudeBitIdentical(t *testing.T) {
	defer func(n int) { magnitudeBlockBytes = n }(magnitudeBlockBytes)
	magnitudeBlockBytes = 1
	cases := []struct {
		dt     format.DType
		layout Layout
		pat    mask.Pattern
	}{
		{format.BF16, Cutlass, mask.Pattern24}, {format.F16, Cutlass, mask.Pattern24}, {format.BF16, Cutlass, mask.Pattern{N: 1, M: 2}},
		{format.F32, Cutlass, mask.Pattern{N: 1, M: 2}}, {format.BF16, Bitmask, mask.Pattern24}, {format.BF16, Dense, mask.Pattern24},
		{format.F32, Dense, mask.Pattern{N: 4, M: 8}}, {format.F16, Dense, mask.Pattern{N: 1, M: 2}},
	}
	for _, tc := range cases {
		t.Run(fmt.Sprintf("%v-%s-%v", tc.dt, tc.layout, tc.pat), func(t *testing.T) {
			dir := t.TempDir()
			cfg := synth.Tiny()
			cfg.DType = tc.dt
			in := filepath.Join(dir, "in")
			if err := synth.WriteHF(in, cfg, 5); err != nil {
				t.Fatal(err)
			}
			fast, slow := filepath.Join(dir, "fast"), filepath.Join(dir, "slow")
			rf := mustConvert(t, in, fast, Options{Method: Magnitude(), Layout: tc.layout, Pattern: tc.pat, Jobs: 2})
			rs := mustConvert(t, in, slow, Options{Method: slowMagnitude{Magnitude()}, Layout: tc.layout, Pattern: tc.pat, Jobs: 2})
			if rf.Pruned == 0 || rf.Pruned != rs.Pruned || rf.Dense != rs.Dense {
				t.Fatalf("pruned %d/%d, dense %d/%d", rf.Pruned, rs.Pruned, rf.Dense, rs.Dense)
			}
			if !reflect.DeepEqual(rf.Manifest.Tensors, rs.Manifest.Tensors) || !reflect.DeepEqual(rf.Manifest.Pruned, rs.Manifest.Pruned) {
				t.Errorf("manifests differ:\n%+v\n%+v", rf.Manifest.Pruned, rs.Manifest.Pruned)
			}
			for _, f := range rf.Manifest.Files { // digests taken while writing
				h, err := HashFile(filepath.Join(fast, f.Name))
				if err != nil || h.SHA256 != f.SHA256 || h.Size != f.Size {
					t.Errorf("%s: manifest says %s %d, file is %s %d (%v)", f.Name, f.SHA256, f.Size, h.SHA256, h.Size, err)
				}
			}
			sf, err := safetensors.Open(filepath.Join(fast, "model.safetensors"))
			if err != nil {
				t.Fatal(err)
			}
			for _, mt := range rf.Manifest.Tensors {
				if b, _, err := format.ReadAll(sf, mt.Name); err != nil || sha256Hex(b) != mt.SHA256 {
					t.Errorf("%s: manifest digest differs from the tensor's (%v)", mt.Name, err)
				}
			}
			sf.Close()
			a, _ := os.ReadFile(filepath.Join(fast, "model.safetensors"))
			b, _ := os.ReadFile(filepath.Join(slow, "model.safetensors"))
			if len(a) == 0 || !bytes.Equal(a, b) {
				t.Error("model.safetensors differs between the streaming and the general path")
			}
		})
	}
}

// TestFastMagnitudeNaN: both paths name the same weight and element.
func TestFastMagnitudeNaN(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "w.safetensors")
	rows, cols := 64, 64
	w := make([]float32, rows*cols)
	for i := range w {
		w[i] = float32(i%13) - 6
	}
	w[40*cols+17] = float32(math.NaN())
	b := make([]byte, 2*len(w))
	_ = format.FromFloat32(format.BF16, w, b)
	ts := []format.Tensor{{Name: "model.layers.0.mlp.up_proj.weight", DType: format.BF16, Shape: []int64{int64(rows), int64(cols)}, Size: int64(len(b)),
		WriteTo: func(wr io.Writer) (int64, error) { n, err := wr.Write(b); return int64(n), err }}}
	if _, err := safetensors.WriteFile(context.Background(), in, ts, safetensors.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, layout := range []Layout{Cutlass, Dense} {
		_, ef := Convert(context.Background(), in, filepath.Join(dir, "f.safetensors"), Options{Method: Magnitude(), Layout: layout})
		_, es := Convert(context.Background(), in, filepath.Join(dir, "s.safetensors"), Options{Method: slowMagnitude{Magnitude()}, Layout: layout})
		if ef == nil || es == nil || ef.Error() != es.Error() || !errors.Is(ef, mask.ErrInput) || !strings.Contains(ef.Error(), "[40, 17]") {
			t.Errorf("%s: fast %v\nslow %v", layout, ef, es)
		}
	}
}
