package gguf

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/sparsify/sparsify/format"
	"github.com/sparsify/sparsify/internal/testutil"
)

// zeroTail serves head and then zeros up to size, so that a header can be
// parsed with its (possibly large) data section without allocating it.
type zeroTail struct {
	head []byte
	size int64
}

func (z zeroTail) ReadAt(p []byte, off int64) (int, error) {
	if off >= z.size {
		return 0, io.EOF
	}
	n := 0
	for n < len(p) && off+int64(n) < z.size {
		i := off + int64(n)
		if i < int64(len(z.head)) {
			n += copy(p[n:], z.head[i:])
			continue
		}
		k := min(int64(len(p)-n), z.size-i)
		clear(p[n : n+int(k)])
		n += int(k)
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func seedFile(t testing.TB, kv []KV, ts []format.Tensor) []byte {
	h, _, total, err := encodeHeader(kv, ts)
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, total)
	copy(b, h)
	return b
}

func fuzzSeeds(t testing.TB) [][]byte {
	m := MustValue
	kv := []KV{
		{"general.architecture", m("llama")},
		{"general.alignment", m(uint32(64))},
		{"f", m(float32(0.5))},
		{"b", m(true)},
		{"a", m([]string{"x", "yz"})},
		{"n", m([]Value{m([]int32{1, 2}), m([]Value{m([]uint8{3})})})},
	}
	ts := []format.Tensor{
		{Name: "w", DType: format.F32, Shape: []int64{2, 4}, Size: 32},
		{Name: "q", DType: format.Q4_0, Shape: []int64{32}, Size: 18},
		{Name: "k", DType: format.Q6_K, Shape: []int64{256}, Size: 210},
	}
	small := seedFile(t, kv, ts)
	seeds := [][]byte{small, seedFile(t, nil, nil), seedFile(t, kv[:1], ts[:1])}
	bad := bytes.Clone(small)
	copy(bad, "GGML")
	seeds = append(seeds, bad)
	// Huge lengths in place of the first key length and the first array length.
	huge := bytes.Clone(small)
	binary.LittleEndian.PutUint64(huge[24:], 1<<62)
	seeds = append(seeds, huge)
	if i := bytes.Index(small, []byte("yz")); i > 0 {
		h := bytes.Clone(small)
		binary.LittleEndian.PutUint64(h[i-8-1-8-8:], 1<<40) // count of ["x" "yz"]
		seeds = append(seeds, h)
	}
	v1 := bytes.Clone(small)
	v1[4] = 1
	seeds = append(seeds, v1)
	// The real model's header (14 KB), without its tensor data.
	if path := filepath.Join(testutil.SharedDataDir(), "stories260K.gguf"); path != "" {
		if b, err := os.ReadFile(path); err == nil {
			if g, err := NewReader(bytes.NewReader(b), int64(len(b)), path); err == nil {
				seeds = append(seeds, b[:g.DataOffset()])
			}
		}
	}
	return seeds
}

func FuzzOpen(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		checkParse(t, bytes.NewReader(data), int64(len(data)), len(data))
		// The same header followed by a zero data section of any declared size.
		checkParse(t, zeroTail{data, int64(len(data)) + 1<<20}, int64(len(data))+1<<20, len(data))
	})
}

func checkParse(t *testing.T, r io.ReaderAt, size int64, inputLen int) {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	before := ms.TotalAlloc
	g, err := NewReader(r, size, "fuzz.gguf")
	runtime.ReadMemStats(&ms)
	// Go values of the metadata take at most a few times the file bytes they
	// come from (a nested empty array: 12 bytes on disk, 48 in Go); the
	// 128 KiB are the read buffers.
	if alloc := ms.TotalAlloc - before; alloc > 1<<20+8*uint64(size) {
		t.Fatalf("allocated %d bytes for a %d-byte file (%d-byte input)", alloc, size, inputLen)
	}
	if err != nil {
		var fe *format.FormatError
		if !errors.As(err, &fe) || !errors.Is(err, format.ErrFormat) {
			t.Fatalf("error is not a FormatError: %v", err)
		}
		return
	}
	var ts []format.Tensor
	for _, ti := range g.Tensors() {
		if ti.Offset < g.DataOffset() || ti.Offset+ti.Size > size || ti.Offset%g.Alignment() != 0 {
			t.Fatalf("tensor %q out of bounds: %+v", ti.Name, ti)
		}
		if ti.Size > 0 {
			rc, err := g.Open(ti.Name)
			if err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, min(ti.Size, 64))
			if _, err := io.ReadFull(rc, buf); err != nil {
				t.Fatal(err)
			}
		}
		ts = append(ts, format.Tensor{Name: ti.Name, DType: ti.DType, Shape: ti.Shape, Size: ti.Size})
	}
	// What we read, we can write, and reading that back writes the same bytes.
	h1, _, total, err := encodeHeader(g.KV(), ts)
	if err != nil {
		t.Fatalf("re-encoding a parsed header: %v", err)
	}
	g2, err := NewReader(zeroTail{h1, total}, total, "re.gguf")
	if err != nil {
		t.Fatalf("re-reading a written header: %v", err)
	}
	var ts2 []format.Tensor
	for _, ti := range g2.Tensors() {
		ts2 = append(ts2, format.Tensor{Name: ti.Name, DType: ti.DType, Shape: ti.Shape, Size: ti.Size})
	}
	h2, _, _, err := encodeHeader(g2.KV(), ts2)
	if err != nil || !bytes.Equal(h1, h2) {
		t.Fatalf("header does not round-trip (%v)", err)
	}
}
