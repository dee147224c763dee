package gguf_test

import (
	"encoding/binary"
	"math"
	"slices"
	"testing"

	"github.com/sparsify/sparsify/format"
	"github.com/sparsify/sparsify/format/gguf"
	"github.com/sparsify/sparsify/internal/testutil"
)

func TestOpenStories260K(t *testing.T) {
	path := testutil.SharedData(t, "stories260K.gguf")
	f, err := gguf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if f.Version() != 3 || f.Alignment() != 32 || f.Architecture() != "llama" {
		t.Errorf("version %d alignment %d arch %q", f.Version(), f.Alignment(), f.Architecture())
	}
	if n, ok := f.Uint("llama.embedding_length"); !ok || n != 64 {
		t.Errorf("embedding_length = %d, %v", n, ok)
	}
	if n, ok := f.Uint("llama.block_count"); !ok || n != 5 {
		t.Errorf("block_count = %d, %v", n, ok)
	}
	if eps, ok := f.Float("llama.attention.layer_norm_rms_epsilon"); !ok || float32(eps) != 1e-5 {
		t.Errorf("rms eps = %v, %v", eps, ok)
	}
	toks, ok := f.Strings("tokenizer.ggml.tokens")
	if !ok || len(toks) != 512 || toks[0] != "<unk>" || toks[1] != "<s>" || toks[3] != "<0x00>" {
		t.Errorf("tokens: %d %q", len(toks), toks[:min(4, len(toks))])
	}
	if sc, ok := f.Float32s("tokenizer.ggml.scores"); !ok || len(sc) != 512 {
		t.Errorf("scores: %d %v", len(sc), ok)
	}
	if tt, ok := f.Int32s("tokenizer.ggml.token_type"); !ok || len(tt) != 512 || tt[0] != 2 || tt[3] != 6 {
		t.Errorf("token_type: %v", tt[:min(4, len(tt))])
	}
	if m, ok := f.String("tokenizer.ggml.model"); !ok || m != "llama" {
		t.Errorf("tokenizer model %q", m)
	}
	if _, ok := f.String("llama.block_count"); ok {
		t.Error("String accepted a uint32 value")
	}
	if v, _ := f.Lookup("llama.block_count"); v.Type != gguf.TypeUint32 {
		t.Errorf("block_count type %v", v.Type)
	}

	ts := f.Tensors()
	if len(ts) != 48 {
		t.Fatalf("%d tensors, want 48", len(ts))
	}
	var params int64
	for _, ti := range ts {
		if ti.DType != format.F32 {
			t.Errorf("%s: dtype %v", ti.Name, ti.DType)
		}
		if ti.Offset%32 != 0 || ti.Offset < f.DataOffset() || ti.File != path {
			t.Errorf("%s: offset %d file %q", ti.Name, ti.Offset, ti.File)
		}
		params += ti.NumElements()
	}
	if params != 260032+512*64 { // the GGUF stores output.weight separately
		t.Errorf("%d parameters", params)
	}
	k, ok := format.Lookup(f, "blk.0.attn_k.weight")
	if !ok || !slices.Equal(k.Shape, []int64{32, 64}) || k.Size != 32*64*4 {
		t.Errorf("attn_k: %+v", k)
	}
	down, _ := format.Lookup(f, "blk.0.ffn_down.weight")
	if !slices.Equal(down.Shape, []int64{64, 172}) {
		t.Errorf("ffn_down shape %v, want [64 172]", down.Shape)
	}
	// output.weight equals token_embd.weight in this model (tied in llama2.c).
	a, _, err := format.ReadAll(f, "token_embd.weight")
	if err != nil {
		t.Fatal(err)
	}
	b, _, err := format.ReadAll(f, "output.weight")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(a, b) {
		t.Error("output.weight differs from token_embd.weight")
	}
	nonzero := 0
	for i := 0; i < len(a); i += 4 {
		x := math.Float32frombits(binary.LittleEndian.Uint32(a[i:]))
		if math.IsNaN(float64(x)) || math.Abs(float64(x)) > 100 {
			t.Fatalf("implausible weight %v", x)
		}
		if x != 0 {
			nonzero++
		}
	}
	if nonzero < len(a)/8 {
		t.Errorf("only %d nonzero embedding weights", nonzero)
	}
	if _, err := f.Open("nope"); err == nil {
		t.Error("Open of a missing tensor succeeded")
	}
}
