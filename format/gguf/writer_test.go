package gguf_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/sparsify/sparsify/format"
	"github.com/sparsify/sparsify/format/gguf"
	"github.com/sparsify/sparsify/internal/testutil"
)

// allKV holds one value of every metadata type, arrays of every element type
// and nested arrays.
func allKV() []gguf.KV {
	m := gguf.MustValue
	return []gguf.KV{
		{"general.architecture", m("llama")},
		{"u8", m(uint8(200))},
		{"i8", m(int8(-7))},
		{"u16", m(uint16(65000))},
		{"i16", m(int16(-30000))},
		{"u32", m(uint32(4000000000))},
		{"i32", m(int32(-2000000000))},
		{"f32", m(float32(1e-5))},
		{"bool", m(true)},
		{"empty string", m("")},
		{"u64", m(uint64(1) << 63)},
		{"i64", m(int64(-1) << 62)},
		{"f64", m(3.141592653589793)},
		{"a.u8", m([]uint8{1, 2, 255})},
		{"a.i8", m([]int8{-1, 0, 1})},
		{"a.u16", m([]uint16{1, 65535})},
		{"a.i16", m([]int16{-2, 2})},
		{"a.u32", m([]uint32{7})},
		{"a.i32", m([]int32{-1, 3, 5})},
		{"a.f32", m([]float32{0.5, -2, 1e30})},
		{"a.bool", m([]bool{true, false, true})},
		{"a.string", m([]string{"a", "", "ü ✓"})},
		{"a.u64", m([]uint64{1 << 40})},
		{"a.i64", m([]int64{-1 << 40})},
		{"a.f64", m([]float64{1.5, -0.25})},
		{"a.empty", m([]int32{})},
		{"a.nested", m([]gguf.Value{m([]string{"x", "y"}), m([]uint8{}), m([]gguf.Value{m([]float32{1})})})},
	}
}

func randBytes(r *rand.Rand, n int64) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func bytesTensor(name string, dt format.DType, shape []int64, data []byte) format.Tensor {
	return format.Tensor{Name: name, DType: dt, Shape: shape, Size: int64(len(data)),
		WriteTo: func(w io.Writer) (int64, error) {
			n, err := w.Write(data)
			return int64(n), err
		}}
}

func TestRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	type spec struct {
		name  string
		dt    format.DType
		shape []int64
	}
	specs := []spec{
		{"f32", format.F32, []int64{3, 5}},
		{"f16", format.F16, []int64{7}},
		{"bf16", format.BF16, []int64{2, 3, 4}},
		{"f64", format.F64, []int64{1, 1, 1, 2}},
		{"i8", format.I8, []int64{9}},
		{"i32", format.I32, []int64{2, 2}},
		{"q8_0", format.Q8_0, []int64{3, 64}},
		{"q4_0", format.Q4_0, []int64{32}},
		{"q4_k", format.Q4_K, []int64{2, 256}},
		{"q6_k", format.Q6_K, []int64{256}},
		{"q2_k", format.Q2_K, []int64{512}},
	}
	var ts []format.Tensor
	data := map[string][]byte{}
	for _, s := range specs {
		n, _ := format.CheckedElements(s.shape)
		size, err := s.dt.ByteSize(n)
		if err != nil {
			t.Fatal(err)
		}
		data[s.name] = randBytes(r, size)
		ts = append(ts, bytesTensor(s.name, s.dt, s.shape, data[s.name]))
	}
	for _, align := range []uint32{0, 64} {
		kv := allKV()
		if align != 0 {
			kv = append(kv, gguf.KV{Key: "general.alignment", Value: gguf.MustValue(align)})
		}
		path := filepath.Join(t.TempDir(), "m.gguf")
		if err := gguf.Write(context.Background(), path, kv, ts, gguf.WriteOptions{Jobs: 3}); err != nil {
			t.Fatal(err)
		}
		f, err := gguf.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(f.KV(), kv) {
			t.Errorf("metadata differs:\n got %v\nwant %v", f.KV(), kv)
		}
		want := int64(32)
		if align != 0 {
			want = int64(align)
		}
		if f.Alignment() != want || f.DataOffset()%want != 0 {
			t.Errorf("alignment %d data offset %d", f.Alignment(), f.DataOffset())
		}
		got := f.Tensors()
		if len(got) != len(specs) {
			t.Fatalf("%d tensors", len(got))
		}
		for i, s := range specs {
			ti := got[i]
			if ti.Name != s.name || ti.DType != s.dt || !slices.Equal(ti.Shape, s.shape) || ti.Offset%want != 0 {
				t.Errorf("tensor %d: %+v, want %+v", i, ti, s)
			}
			b, _, err := format.ReadAll(f, s.name)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(b, data[s.name]) {
				t.Errorf("%s: bytes differ", s.name)
			}
		}
		f.Close()
	}
}

// TestReverseShape checks the dims on disk are fastest first.
func TestReverseShape(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.gguf")
	ts := []format.Tensor{bytesTensor("w", format.F32, []int64{2, 3}, make([]byte, 24))}
	if err := gguf.Write(context.Background(), path, nil, ts, gguf.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// magic 4, version 4, counts 16, name 8+1, n_dims 4, then ne[0], ne[1].
	le := func(o int) uint64 {
		var x uint64
		for i := 7; i >= 0; i-- {
			x = x<<8 | uint64(b[o+i])
		}
		return x
	}
	if le(37) != 3 || le(45) != 2 {
		t.Errorf("dims on disk %d, %d, want 3, 2", le(37), le(45))
	}
	if len(b) != 96+32 { // 65-byte header padded to 96, 24 data bytes padded to 32
		t.Errorf("file is %d bytes, want 128", len(b))
	}
}

func TestRoundTripStories260K(t *testing.T) {
	path := testutil.SharedData(t, "stories260K.gguf")
	src, err := gguf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	var ts []format.Tensor
	for _, ti := range src.Tensors() {
		ts = append(ts, format.Passthrough(src, ti))
	}
	out := filepath.Join(t.TempDir(), "copy.gguf")
	if err := gguf.Write(context.Background(), out, src.KV(), ts, gguf.WriteOptions{Jobs: 2}); err != nil {
		t.Fatal(err)
	}
	dst, err := gguf.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	if !reflect.DeepEqual(dst.KV(), src.KV()) {
		t.Error("metadata differs")
	}
	if !reflect.DeepEqual(dst.Tensors()[0].Shape, src.Tensors()[0].Shape) || len(dst.Tensors()) != len(src.Tensors()) {
		t.Error("tensor infos differ")
	}
	for i, ti := range src.Tensors() {
		d := dst.Tensors()[i]
		if d.Name != ti.Name || d.DType != ti.DType || !slices.Equal(d.Shape, ti.Shape) || d.Size != ti.Size {
			t.Errorf("tensor %d: %+v vs %+v", i, d, ti)
		}
		a, _, _ := format.ReadAll(src, ti.Name)
		b, _, _ := format.ReadAll(dst, ti.Name)
		if !bytes.Equal(a, b) {
			t.Errorf("%s: bytes differ", ti.Name)
		}
	}
	// llama.cpp's writer lays files out as ours does: the copy is byte-identical.
	a, _ := os.ReadFile(path)
	b, _ := os.ReadFile(out)
	if !bytes.Equal(a, b) {
		t.Errorf("files differ (%d vs %d bytes)", len(a), len(b))
	}
}

func TestWriteLeavesNothingOnError(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "out.gguf")
	boom := errors.New("boom")
	good := bytesTensor("a", format.F32, []int64{4}, make([]byte, 16))
	cases := map[string]struct {
		ctx context.Context
		kv  []gguf.KV
		ts  []format.Tensor
		is  error
	}{
		"writer error": {ts: []format.Tensor{good, {Name: "b", DType: format.F32, Shape: []int64{4}, Size: 16,
			WriteTo: func(io.Writer) (int64, error) { return 0, boom }}}, is: boom},
		"short": {ts: []format.Tensor{{Name: "b", DType: format.F32, Shape: []int64{4}, Size: 16,
			WriteTo: func(w io.Writer) (int64, error) { n, err := w.Write(make([]byte, 12)); return int64(n), err }}}},
		"long": {ts: []format.Tensor{{Name: "b", DType: format.F32, Shape: []int64{4}, Size: 16,
			WriteTo: func(w io.Writer) (int64, error) { n, err := w.Write(make([]byte, 20)); return int64(n), err }}}},
		"size mismatch":  {ts: []format.Tensor{bytesTensor("b", format.F32, []int64{5}, make([]byte, 16))}, is: format.ErrFormat},
		"bad block":      {ts: []format.Tensor{bytesTensor("b", format.Q8_0, []int64{2, 16}, make([]byte, 34))}, is: format.ErrFormat},
		"dtype":          {ts: []format.Tensor{bytesTensor("b", format.U16, []int64{8}, make([]byte, 16))}, is: format.ErrUnsupported},
		"duplicate name": {ts: []format.Tensor{good, good}},
		"long name":      {ts: []format.Tensor{bytesTensor(strings.Repeat("n", 64), format.F32, []int64{4}, make([]byte, 16))}, is: format.ErrFormat},
		"zero dim":       {ts: []format.Tensor{bytesTensor("z", format.F32, []int64{0, 4}, nil)}, is: format.ErrFormat},
		"five dims":      {ts: []format.Tensor{bytesTensor("f", format.F32, []int64{1, 1, 1, 1, 4}, make([]byte, 16))}},
		"nil WriteTo":    {ts: []format.Tensor{{Name: "b", DType: format.F32, Shape: []int64{4}, Size: 16}}},
		"duplicate key":  {kv: []gguf.KV{{"k", gguf.MustValue("a")}, {"k", gguf.MustValue("b")}}},
		"bad value":      {kv: []gguf.KV{{"k", gguf.Value{Type: gguf.TypeUint32, Data: "x"}}}},
		"bad alignment":  {kv: []gguf.KV{{"general.alignment", gguf.MustValue(uint32(48))}}},
		"cancelled": {ctx: func() context.Context {
			c, cancel := context.WithCancel(context.Background())
			cancel()
			return c
		}(), ts: []format.Tensor{good}, is: context.Canceled},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			ctx := c.ctx
			if ctx == nil {
				ctx = context.Background()
			}
			err := gguf.Write(ctx, path, c.kv, c.ts, gguf.WriteOptions{})
			if err == nil {
				t.Fatal("no error")
			}
			if c.is != nil && !errors.Is(err, c.is) {
				t.Errorf("error %v is not %v", err, c.is)
			}
			ents, _ := os.ReadDir(dir)
			if len(ents) != 0 {
				t.Errorf("left %v behind", ents[0].Name())
			}
		})
	}
}

// TestWriteCancelledMidway cancels the context while a tensor is being written.
func TestWriteCancelledMidway(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	slow := format.Tensor{Name: "w", DType: format.F32, Shape: []int64{1 << 20}, Size: 4 << 20,
		WriteTo: func(w io.Writer) (int64, error) {
			var n int64
			buf := make([]byte, 64<<10)
			for n < 4<<20 {
				if n == 1<<20 {
					cancel()
				}
				k, err := w.Write(buf)
				n += int64(k)
				if err != nil {
					return n, err
				}
			}
			return n, nil
		}}
	err := gguf.Write(ctx, filepath.Join(dir, "out.gguf"), nil, []format.Tensor{slow}, gguf.WriteOptions{})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("error %v, want context.Canceled", err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("left %s behind", ents[0].Name())
	}
}

func TestOpenDirectory(t *testing.T) {
	if _, err := gguf.Open(t.TempDir()); err == nil {
		t.Error("opened a directory")
	}
	if _, err := gguf.Open(filepath.Join(t.TempDir(), "missing.gguf")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
}
