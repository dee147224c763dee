package safetensors

import (
	"bytes"
	"context"
	"fmt"
	"runtime"
	"time"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/sparsify/sparsify/format"
)

var zstdMagic = []byte{0x28, 0xb5, 0x2f, 0xfd}

// FuzzOpen opens arbitrary bytes as a safetensors file (as a .zst file when
// they start with the zstd magic) and checks that nothing panics and that
// whatever opens round-trips through the writer.
//
//	go test -run=^$ -fuzz=FuzzOpen -fuzztime=5m ./format/safetensors/
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
	f.Add([]byte("\x02\x00\x00\x00\x00\x00\x00\x00{}"))
	f.Add([]byte("\x10\x00\x00\x00\x00\x00\x00\x00{\"__metadata__\":{}}"))
	f.Add([]byte("\xff\xff\xff\xff\xff\xff\xff\xff"))
	f.Fuzz(func(t *testing.T, data []byte) {
		wd := time.AfterFunc(3*time.Second, func() {
			buf := make([]byte, 1<<20)
			n := runtime.Stack(buf, true)
			os.WriteFile(fmt.Sprintf("/tmp/fuzzstack-%d", os.Getpid()), append(buf[:n], data...), 0o644)
		})
		defer wd.Stop()
		dir := t.TempDir()
		name := "f.safetensors"
		if bytes.HasPrefix(data, zstdMagic) {
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
