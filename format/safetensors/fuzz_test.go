package safetensors

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/klauspost/compress/zstd"

	"github.com/sparsify/sparsify/format"
)

// FuzzOpen opens arbitrary bytes as a safetensors file (as a .zst file when
// they start with the zstd magic) and checks that nothing panics and that
// whatever opens round-trips through the writer.
//
//	go test -run=^$ -fuzz=FuzzOpen -fuzztime=5m -fuzzminimizetime=0 ./format/safetensors/
//
// (-fuzzminimizetime=0: on the 2-core development VM the fuzzing engine
// stalls for good as soon as it starts minimising an input.)
func FuzzOpen(f *testing.F) {
	ts, _ := sampleTensors(11)
	dir := f.TempDir()
	for i, comp := range []string{"", "zstd"} {
		p := filepath.Join(dir, "seed"+string(rune('a'+i))+".safetensors")
		res, err := WriteFile(context.Background(), p, ts[:5], WriteOptions{Compress: comp, Metadata: map[string]string{"k": "v"}})
		if err != nil {
			f.Fatal(err)
		}
		b, err := os.ReadFile(filepath.Join(dir, res.Files[0].Name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
		for _, cut := range []int{0, 7, 8, 20, len(b) / 2, len(b) - 1} {
			f.Add(b[:cut])
		}
		g := bytes.Clone(b)
		g[len(g)/3] ^= 0x5a
		f.Add(g)
	}
	{ // a streamed .zst without seek table, as the zstd tool writes
		b, _ := os.ReadFile(filepath.Join(dir, "seeda.safetensors"))
		var zb bytes.Buffer
		enc, _ := zstd.NewWriter(&zb, zstd.WithWindowSize(1<<10))
		enc.Write(b)
		enc.Close()
		f.Add(zb.Bytes())
		f.Add(zb.Bytes()[:zb.Len()-7])
	}
	f.Add([]byte("\x02\x00\x00\x00\x00\x00\x00\x00{}"))
	f.Add([]byte("\x10\x00\x00\x00\x00\x00\x00\x00{\"__metadata__\":{}}"))
	f.Add([]byte("\xff\xff\xff\xff\xff\xff\xff\xff"))
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		name := "f.safetensors"
		if bytes.HasPrefix(data, []byte(ZstdMagic)) {
			name += ".zst"
		}
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		src, err := Open(p)
		if err != nil {
			return
		}
		defer src.Close()
		want := map[string][]byte{}
		var tensors []format.Tensor
		for _, ti := range src.Tensors() {
			b, _, err := format.ReadAll(src, ti.Name)
			if err != nil {
				if name == "f.safetensors" {
					t.Fatalf("validated plain file fails to read %s: %v", ti.Name, err)
				}
				return // truncated compressed stream: found on read
			}
			want[ti.Name] = b
			tensors = append(tensors, format.Passthrough(src, ti))
		}
		out := filepath.Join(dir, "out.safetensors")
		meta := src.Metadata()
		if err := writeUnsynced(out, tensors, WriteOptions{Metadata: meta, Jobs: 2}); err != nil {
			t.Fatalf("rewrite: %v", err)
		}
		back, err := Open(out)
		if err != nil {
			t.Fatalf("reopen: %v", err)
		}
		defer back.Close()
		meta["format"] = "pt"
		if !reflect.DeepEqual(back.Metadata(), meta) {
			t.Fatalf("metadata %v, want %v", back.Metadata(), meta)
		}
		a, b := src.Tensors(), back.Tensors()
		if len(a) != len(b) {
			t.Fatalf("%d tensors, want %d", len(b), len(a))
		}
		for i := range a {
			if a[i].Name != b[i].Name || a[i].DType != b[i].DType || !reflect.DeepEqual(a[i].Shape, b[i].Shape) || a[i].Size != b[i].Size {
				t.Fatalf("tensor %d: %+v, want %+v", i, b[i], a[i])
			}
			got, _, err := format.ReadAll(back, b[i].Name)
			if err != nil || !bytes.Equal(got, want[a[i].Name]) {
				t.Fatalf("tensor %s bytes differ (%v)", a[i].Name, err)
			}
		}
	})
}

// writeUnsynced is WriteFile without the atomic rename and fsyncs, which
// dominate a fuzz iteration's time.
func writeUnsynced(path string, ts []format.Tensor, opts WriteOptions) error {
	meta, err := opts.metadata()
	if err != nil {
		return err
	}
	if _, err := checkTensors(ts); err != nil {
		return err
	}
	hdr, trs, err := layout(meta, ts, filepath.Base(path))
	if err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = writeBody(context.Background(), f, hdr, ts, trs, &opts, nil)
	return err
}

// FuzzHeader parses arbitrary header JSON directly (fast) and checks that a
// header that parses re-encodes to one that parses to the same tensors.
//
//	go test -run=^$ -fuzz=FuzzHeader -fuzztime=1m -fuzzminimizetime=0 ./format/safetensors/
func FuzzHeader(f *testing.F) {
	f.Add([]byte(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}`), int64(8))
	f.Add([]byte(`{"__metadata__":{"format":"pt"},"b":{"dtype":"BF16","shape":[],"data_offsets":[0,2]},"a":{"dtype":"U8","shape":[0],"data_offsets":[2,2]}}`), int64(2))
	f.Add([]byte(`{"a":{"dtype":"F8_E4M3","shape":[1,1],"data_offsets":[0,1],"x":[{}]}}`), int64(-1))
	f.Fuzz(func(t *testing.T, hdr []byte, dataLen int64) {
		h, err := parseHeader("x", hdr, dataLen)
		if err != nil {
			return
		}
		enc, err := encodeHeader(h.meta, h.tensors)
		if err != nil {
			t.Fatal(err)
		}
		h2, err := parseHeader("y", enc[8:], h.dataLen)
		if err != nil {
			t.Fatalf("re-encoded header fails: %v\n%s", err, enc[8:])
		}
		if !reflect.DeepEqual(h.tensors, h2.tensors) || len(h.meta) != len(h2.meta) {
			t.Fatalf("re-encoded header differs:\n%+v\n%+v", h, h2)
		}
		for k, v := range h.meta {
			if h2.meta[k] != v {
				t.Fatalf("metadata %q: %q vs %q", k, v, h2.meta[k])
			}
		}
	})
}
