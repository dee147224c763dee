package detect

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/sparsify/sparsify/format"
	"github.com/sparsify/sparsify/format/gguf"
	"github.com/sparsify/sparsify/format/safetensors"
	"github.com/sparsify/sparsify/internal/testutil"
)

func tensor() format.Tensor {
	data := []byte{0, 0, 0x80, 0x3f, 0, 0, 0, 0x40}
	return format.Tensor{Name: "w", DType: format.F32, Shape: []int64{2}, Size: 8,
		WriteTo: func(w io.Writer) (int64, error) { n, err := w.Write(data); return int64(n), err }}
}

func TestOpen(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	ts := []format.Tensor{tensor()}
	st := filepath.Join(dir, "a.safetensors")
	if _, err := safetensors.WriteFile(ctx, st, ts, safetensors.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	// content decides, not the name
	noext := filepath.Join(dir, "weights.bin")
	b, _ := os.ReadFile(st)
	os.WriteFile(noext, b, 0o644)
	if _, err := safetensors.WriteFile(ctx, filepath.Join(dir, "z.safetensors"), ts, safetensors.WriteOptions{Compress: "zstd"}); err != nil {
		t.Fatal(err)
	}
	hf := filepath.Join(dir, "hf")
	if _, err := safetensors.WriteDir(ctx, hf, ts, safetensors.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	gg := filepath.Join(dir, "m.gguf")
	if err := gguf.Write(ctx, gg, nil, ts, gguf.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		path string
		kind Kind
		typ  string
	}{
		{st, Safetensors, "*safetensors.File"},
		{noext, Safetensors, "*safetensors.File"},
		{filepath.Join(dir, "z.safetensors.zst"), SafetensorsZstd, "*safetensors.File"},
		{hf, SafetensorsDir, "*safetensors.Dir"},
		{gg, GGUF, "*gguf.File"},
	}
	sharded := filepath.Join(dir, "sharded")
	if _, err := safetensors.WriteDir(ctx, sharded, []format.Tensor{tensor(), func() format.Tensor { x := tensor(); x.Name = "v"; return x }()},
		safetensors.WriteOptions{MaxShardSize: 8}); err != nil {
		t.Fatal(err)
	}
	cases = append(cases, struct {
		path string
		kind Kind
		typ  string
	}{filepath.Join(sharded, safetensors.IndexName), SafetensorsDir, "*safetensors.Dir"})
	for _, c := range cases {
		k, err := Detect(c.path)
		if err != nil || k != c.kind {
			t.Errorf("Detect(%s) = %q, %v; want %q", c.path, k, err, c.kind)
		}
		src, err := Open(c.path)
		if err != nil {
			t.Fatalf("Open(%s): %v", c.path, err)
		}
		if got := typeName(src); got != c.typ {
			t.Errorf("Open(%s) is %s, want %s", c.path, got, c.typ)
		}
		raw, ti, err := format.ReadAll(src, "w")
		if err != nil || ti.DType != format.F32 || len(raw) != 8 || raw[3] != 0x3f {
			t.Errorf("%s: tensor w = % x %+v %v", c.path, raw, ti, err)
		}
		src.Close()
	}
}

func typeName(v any) string {
	switch v.(type) {
	case *safetensors.File:
		return "*safetensors.File"
	case *safetensors.Dir:
		return "*safetensors.Dir"
	case *gguf.File:
		return "*gguf.File"
	}
	return "?"
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	junk := filepath.Join(dir, "notes.txt")
	os.WriteFile(junk, []byte("hello, world"), 0o644)
	src, err := Open(junk)
	if src != nil || !errors.Is(err, format.ErrFormat) || !strings.Contains(err.Error(), junk) {
		t.Errorf("junk: %v %v", src, err)
	}
	// a bad file with a known extension gets its format's own error
	bad := filepath.Join(dir, "bad.gguf")
	os.WriteFile(bad, []byte("GGUX\x03\x00\x00\x00"), 0o644)
	if _, err := Open(bad); !errors.Is(err, format.ErrFormat) || !strings.Contains(err.Error(), "magic") {
		t.Errorf("bad gguf: %v", err)
	}
	if _, err := Open(filepath.Join(dir, "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing: %v", err)
	}
	empty := filepath.Join(dir, "empty.safetensors")
	os.WriteFile(empty, nil, 0o644)
	if src, err := Open(empty); src != nil || !errors.Is(err, format.ErrFormat) {
		t.Errorf("empty: %v %v", src, err)
	}
}

func TestSharedGGUF(t *testing.T) {
	p := testutil.SharedData(t, "stories260K.gguf")
	if k, err := Detect(p); err != nil || k != GGUF {
		t.Fatalf("Detect = %q, %v", k, err)
	}
	src, err := Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	if len(src.Tensors()) == 0 {
		t.Fatal("no tensors")
	}
	// every tensor passes through a sharded safetensors directory byte for byte
	var ts []format.Tensor
	for _, ti := range src.Tensors() {
		ts = append(ts, format.Passthrough(src, ti))
	}
	out := filepath.Join(t.TempDir(), "hf")
	res, err := safetensors.WriteDir(context.Background(), out, ts, safetensors.WriteOptions{MaxShardSize: 300 << 10})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Files) < 3 {
		t.Errorf("expected several shards, got %d files", len(res.Files))
	}
	back, err := Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer back.Close()
	if len(back.Tensors()) != len(ts) {
		t.Fatalf("%d tensors back, want %d", len(back.Tensors()), len(ts))
	}
	for i, ti := range back.Tensors() {
		want, _, err := format.ReadAll(src, ti.Name)
		if err != nil {
			t.Fatal(err)
		}
		got, _, err := format.ReadAll(back, ti.Name)
		if err != nil || !bytes.Equal(got, want) || ti.Name != ts[i].Name || !slices.Equal(ti.Shape, ts[i].Shape) {
			t.Fatalf("%s differs after the round trip (%v)", ti.Name, err)
		}
	}
}
