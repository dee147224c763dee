package safetensors

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/klauspost/compress/zstd"

	"github.com/sparsify/sparsify/format"
)

// bytesTensor is a format.Tensor whose bytes are data.
func bytesTensor(name string, dt format.DType, shape []int64, data []byte) format.Tensor {
	return format.Tensor{Name: name, DType: dt, Shape: shape, Size: int64(len(data)),
		WriteTo: func(w io.Writer) (int64, error) {
			n, err := w.Write(data)
			return int64(n), err
		}}
}

func randBytes(rng *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

// sampleTensors covers every dtype, a scalar and an empty tensor.
func sampleTensors(seed uint64) ([]format.Tensor, map[string][]byte) {
	rng := rand.New(rand.NewPCG(seed, 7))
	var ts []format.Tensor
	data := map[string][]byte{}
	dts := []format.DType{format.F64, format.F32, format.F16, format.BF16, format.I64, format.I32, format.I16,
		format.I8, format.U64, format.U32, format.U16, format.U8, format.Bool, format.F8E4M3, format.F8E5M2}
	for i, dt := range dts {
		shape := []int64{int64(1 + i%3), int64(2 + i)}
		n, _ := dt.ByteSize(shape[0] * shape[1])
		b := randBytes(rng, int(n))
		name := fmt.Sprintf("model.layers.%d.%s.weight", i, strings.ToLower(dt.String()))
		ts = append(ts, bytesTensor(name, dt, shape, b))
		data[name] = b
	}
	ts = append(ts, bytesTensor("scalar", format.F32, []int64{}, []byte{0, 0, 0x80, 0x3f}))
	data["scalar"] = []byte{0, 0, 0x80, 0x3f}
	ts = append(ts, bytesTensor("empty", format.F16, []int64{0, 5}, nil))
	data["empty"] = []byte{}
	return ts, data
}

func sha(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }

func readAllSource(t *testing.T, src format.Source) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	for _, ti := range src.Tensors() {
		b, _, err := format.ReadAll(src, ti.Name)
		if err != nil {
			t.Fatalf("read %s: %v", ti.Name, err)
		}
		out[ti.Name] = b
	}
	return out
}

func TestWriteFileRoundTrip(t *testing.T) {
	for _, comp := range []string{"", "zstd"} {
		t.Run("compress="+comp, func(t *testing.T) {
			ts, data := sampleTensors(1)
			path := filepath.Join(t.TempDir(), "x.safetensors")
			var lastDone, lastTotal int64
			res, err := WriteFile(context.Background(), path, ts, WriteOptions{
				Metadata: map[string]string{"format": "tf", "note": `a "quoted" <value>`},
				Compress: comp, Jobs: 3,
				Progress: func(d, tot int64) { lastDone, lastTotal = d, tot },
			})
			if err != nil {
				t.Fatal(err)
			}
			if comp == "zstd" {
				path += ".zst"
			}
			var total int64
			for _, b := range data {
				total += int64(len(b))
			}
			if lastDone != total || lastTotal != total {
				t.Errorf("progress ended at %d/%d, want %d", lastDone, lastTotal, total)
			}
			disk, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Files) != 1 || res.Files[0].Name != filepath.Base(path) || res.Files[0].Size != int64(len(disk)) || res.Files[0].SHA256 != sha(disk) {
				t.Errorf("file result %+v; disk %d bytes sha %s", res.Files, len(disk), sha(disk))
			}
			f, err := Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if got := f.Metadata(); !reflect.DeepEqual(got, map[string]string{"format": "pt", "note": `a "quoted" <value>`}) {
				t.Errorf("metadata %v", got)
			}
			infos := f.Tensors()
			if len(infos) != len(ts) {
				t.Fatalf("%d tensors, want %d", len(infos), len(ts))
			}
			for i, ti := range infos {
				if ti.Name != ts[i].Name || ti.DType != ts[i].DType || !reflect.DeepEqual(ti.Shape, ts[i].Shape) || ti.Size != ts[i].Size || ti.File != path {
					t.Errorf("tensor %d: %+v, want %+v", i, ti, ts[i])
				}
				r := res.Tensors[i]
				if r.Name != ti.Name || r.Offset != ti.Offset || r.Size != ti.Size || r.SHA256 != sha(data[ti.Name]) || r.File != filepath.Base(path) {
					t.Errorf("tensor result %+v vs info %+v", r, ti)
				}
				if comp == "" && !bytes.Equal(disk[ti.Offset:ti.Offset+ti.Size], data[ti.Name]) {
					t.Errorf("%s: bytes at offset %d differ", ti.Name, ti.Offset)
				}
			}
			got := readAllSource(t, f)
			for name, b := range data {
				if !bytes.Equal(got[name], b) {
					t.Errorf("%s: read bytes differ", name)
				}
			}
			if comp == "" {
				b, err := f.Bytes(ts[1].Name)
				if err != nil || !bytes.Equal(b, data[ts[1].Name]) {
					t.Errorf("Bytes: %v", err)
				}
			} else if _, err := f.Bytes(ts[1].Name); !errors.Is(err, format.ErrUnsupported) {
				t.Errorf("Bytes on .zst: %v", err)
			}
			if _, err := f.Open("nope"); !errors.Is(err, format.ErrNotFound) {
				t.Errorf("missing tensor: %v", err)
			}
		})
	}
}

// The container example of /work/shared/spec/sparse-checkpoint-formats.md §4.2,
// byte for byte as the Python writers produce it.
func TestHeaderMatchesReferenceLayout(t *testing.T) {
	shapeB, _ := hex.DecodeString("02000000000000000800000000000000")
	comp, _ := hex.DecodeString("003f80bf0040803e0000404000000000")
	ts := []format.Tensor{
		bytesTensor("model.layers.0.mlp.down_proj.shape", format.I64, []int64{2, 1}, shapeB),
		bytesTensor("model.layers.0.mlp.down_proj.compressed", format.BF16, []int64{2, 4}, comp),
		bytesTensor("model.layers.0.mlp.down_proj.bitmask", format.U8, []int64{2, 1}, []byte{0x69, 0x35}),
	}
	// given in another order, SortCanonical restores the Python writer's
	ts = []format.Tensor{ts[2], ts[1], ts[0]}
	SortCanonical(ts)
	path := filepath.Join(t.TempDir(), "m.safetensors")
	if _, err := WriteFile(context.Background(), path, ts, WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	wantHdr := `{"__metadata__":{"format":"pt"},"model.layers.0.mlp.down_proj.shape":{"dtype":"I64","shape":[2,1],"data_offsets":[0,16]},"model.layers.0.mlp.down_proj.compressed":{"dtype":"BF16","shape":[2,4],"data_offsets":[16,32]},"model.layers.0.mlp.down_proj.bitmask":{"dtype":"U8","shape":[2,1],"data_offsets":[32,34]}}    `
	if len(b) != 354 {
		t.Fatalf("file is %d bytes, want 354", len(b))
	}
	if !bytes.Equal(b[:8], []byte{0x38, 1, 0, 0, 0, 0, 0, 0}) {
		t.Errorf("length prefix % x", b[:8])
	}
	if string(b[8:320]) != wantHdr {
		t.Errorf("header\n%s\nwant\n%s", b[8:320], wantHdr)
	}
}

func TestWriteDirSharded(t *testing.T) {
	for _, comp := range []string{"", "zstd"} {
		t.Run("compress="+comp, func(t *testing.T) {
			ts, data := sampleTensors(2)
			dir := filepath.Join(t.TempDir(), "out")
			res, err := WriteDir(context.Background(), dir, ts, WriteOptions{MaxShardSize: 100, Compress: comp, Jobs: 2})
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Files) < 3 || res.Files[len(res.Files)-1].Name != IndexName {
				t.Fatalf("files %+v", res.Files)
			}
			n := len(res.Files) - 1
			suffix := map[string]string{"": "", "zstd": ".zst"}[comp]
			for k, fr := range res.Files[:n] {
				want := fmt.Sprintf("model-%05d-of-%05d.safetensors%s", k+1, n, suffix)
				if fr.Name != want {
					t.Errorf("shard %d named %s, want %s", k, fr.Name, want)
				}
				b, _ := os.ReadFile(filepath.Join(dir, fr.Name))
				if sha(b) != fr.SHA256 {
					t.Errorf("%s: sha mismatch", fr.Name)
				}
			}
			// shard sizes respect the bound unless a single tensor exceeds it
			os.WriteFile(filepath.Join(dir, "config.json"), []byte(`{"model_type":"llama"}`), 0o644)
			os.WriteFile(filepath.Join(dir, "tokenizer.json"), []byte(`{}`), 0o644)
			os.MkdirAll(filepath.Join(dir, "sub"), 0o755)
			os.WriteFile(filepath.Join(dir, "sub", "extra.txt"), []byte(`x`), 0o644)
			d, err := OpenDir(dir)
			if err != nil {
				t.Fatal(err)
			}
			defer d.Close()
			if len(d.Shards()) != n {
				t.Errorf("%d shards opened, want %d", len(d.Shards()), n)
			}
			for _, sh := range d.Shards() {
				var sz int64
				for _, ti := range sh.Tensors() {
					sz += ti.Size
				}
				if sz > 100 && len(sh.Tensors()) > 1 {
					t.Errorf("%s holds %d bytes in %d tensors", sh.Path(), sz, len(sh.Tensors()))
				}
			}
			if string(d.Config()) != `{"model_type":"llama"}` {
				t.Errorf("config %q", d.Config())
			}
			if !reflect.DeepEqual(d.OtherFiles(), []string{"sub/extra.txt", "tokenizer.json"}) {
				t.Errorf("other files %v", d.OtherFiles())
			}
			if d.Metadata()["format"] != "pt" {
				t.Errorf("metadata %v", d.Metadata())
			}
			got := readAllSource(t, d)
			if len(got) != len(data) {
				t.Errorf("%d tensors, want %d", len(got), len(data))
			}
			for i, ti := range d.Tensors() {
				if ti.Name != ts[i].Name || !bytes.Equal(got[ti.Name], data[ti.Name]) {
					t.Errorf("tensor %d %s differs", i, ti.Name)
				}
			}
			if comp == "zstd" { // an index naming the uncompressed shards still finds the .zst files
				b, _ := os.ReadFile(filepath.Join(dir, IndexName))
				os.WriteFile(filepath.Join(dir, IndexName), bytes.ReplaceAll(b, []byte(".zst"), nil), 0o644)
				d2, err := OpenDir(dir)
				if err != nil {
					t.Fatal(err)
				}
				if len(d2.Tensors()) != len(ts) {
					t.Errorf("%d tensors via the plain-name index", len(d2.Tensors()))
				}
				d2.Close()
			}
			cp := t.TempDir()
			if err := d.CopyOtherFiles(cp); err != nil {
				t.Fatal(err)
			}
			if b, _ := os.ReadFile(filepath.Join(cp, "sub", "extra.txt")); string(b) != "x" {
				t.Errorf("copied extra.txt = %q", b)
			}
		})
	}
}

func TestWriteDirSingle(t *testing.T) {
	ts, _ := sampleTensors(3)
	dir := t.TempDir()
	res, err := WriteDir(context.Background(), dir, ts, WriteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Files) != 1 || res.Files[0].Name != SingleName {
		t.Fatalf("files %+v", res.Files)
	}
	if _, err := os.Stat(filepath.Join(dir, IndexName)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("index written for one shard")
	}
	d, err := OpenDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if len(d.Tensors()) != len(ts) || d.Config() != nil {
		t.Errorf("%d tensors, config %q", len(d.Tensors()), d.Config())
	}
}

func TestZstdAccessPatterns(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	var ts []format.Tensor
	data := map[string][]byte{}
	for i := range 12 {
		b := randBytes(rng, 4096*(1+i%3))
		name := fmt.Sprintf("t%02d", i)
		ts = append(ts, bytesTensor(name, format.U8, []int64{int64(len(b))}, b))
		data[name] = b
	}
	for _, kind := range []string{"seekable", "stream"} {
		t.Run(kind, func(t *testing.T) { testZstdAccess(t, kind, ts, data) })
	}
}

func testZstdAccess(t *testing.T, kind string, ts []format.Tensor, data map[string][]byte) {
	dir := t.TempDir()
	path := filepath.Join(dir, "z.safetensors.zst")
	if kind == "seekable" {
		if _, err := WriteFile(context.Background(), path, ts, WriteOptions{Compress: "zstd"}); err != nil {
			t.Fatal(err)
		}
	} else { // what the zstd tool makes of a plain file: one stream, no seek table
		plain := filepath.Join(dir, "p.safetensors")
		if _, err := WriteFile(context.Background(), plain, ts, WriteOptions{}); err != nil {
			t.Fatal(err)
		}
		raw, _ := os.ReadFile(plain)
		var zb bytes.Buffer
		enc, _ := zstd.NewWriter(&zb, zstd.WithWindowSize(1<<10))
		enc.Write(raw)
		enc.Close()
		os.WriteFile(path, zb.Bytes(), 0o644)
	}
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if (f.zs != nil) != (kind == "seekable") {
		t.Fatalf("%s file opened with seekable=%v", kind, f.zs != nil)
	}
	check := func(name string) error {
		b, _, err := format.ReadAll(f, name)
		if err != nil {
			return err
		}
		if !bytes.Equal(b, data[name]) {
			return fmt.Errorf("%s differs", name)
		}
		return nil
	}
	// reverse order, then concurrently, then partially read readers
	for i := len(ts) - 1; i >= 0; i-- {
		if err := check(ts[i].Name); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	errs := make(chan error, len(ts))
	for _, tt := range ts {
		wg.Add(1)
		go func() { defer wg.Done(); errs <- check(tt.Name) }()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	rc, _ := f.Open("t03")
	io.ReadFull(rc, make([]byte, 10))
	rc.Close()
	if err := check("t03"); err != nil {
		t.Fatal(err)
	}
	if err := check("t04"); err != nil {
		t.Fatal(err)
	}
}

func TestWriteFailureLeavesNothing(t *testing.T) {
	ts, _ := sampleTensors(4)
	cases := map[string]func([]format.Tensor) ([]format.Tensor, context.Context){
		"short WriteTo": func(ts []format.Tensor) ([]format.Tensor, context.Context) {
			bad := ts[3]
			bad.WriteTo = func(w io.Writer) (int64, error) { n, err := w.Write(make([]byte, bad.Size-1)); return int64(n), err }
			return append(append([]format.Tensor{}, ts[:3]...), bad), context.Background()
		},
		"WriteTo error": func(ts []format.Tensor) ([]format.Tensor, context.Context) {
			bad := ts[2]
			bad.WriteTo = func(w io.Writer) (int64, error) { return 0, errors.New("boom") }
			return append(append([]format.Tensor{}, ts...), bad), context.Background() // also duplicate → caught first
		},
		"long WriteTo": func(ts []format.Tensor) ([]format.Tensor, context.Context) {
			bad := ts[1]
			bad.WriteTo = func(w io.Writer) (int64, error) { n, err := w.Write(make([]byte, bad.Size+1)); return int64(n), err }
			return []format.Tensor{ts[0], bad}, context.Background()
		},
		"cancelled": func(ts []format.Tensor) ([]format.Tensor, context.Context) {
			ctx, cancel := context.WithCancel(context.Background())
			bad := ts[1]
			orig := bad.WriteTo
			bad.WriteTo = func(w io.Writer) (int64, error) { cancel(); return orig(w) }
			return []format.Tensor{ts[0], bad, ts[2]}, ctx
		},
	}
	for name, mk := range cases {
		for _, comp := range []string{"", "zstd"} {
			t.Run(name+"/"+comp, func(t *testing.T) {
				dir := t.TempDir()
				tss, ctx := mk(ts)
				_, err := WriteDir(ctx, dir, tss, WriteOptions{Compress: comp, MaxShardSize: 1 << 20})
				if err == nil {
					t.Fatal("write succeeded")
				}
				if name == "cancelled" && !errors.Is(err, context.Canceled) {
					t.Errorf("error %v, want context.Canceled", err)
				}
				if es, _ := os.ReadDir(dir); len(es) != 0 {
					t.Errorf("left %v after %v", es, err)
				}
			})
		}
	}
	// a bad tensor description is refused before anything is created
	bad := ts[0]
	bad.Size++
	if _, err := WriteFile(context.Background(), filepath.Join(t.TempDir(), "x"), []format.Tensor{bad}, WriteOptions{}); err == nil || !strings.Contains(err.Error(), bad.Name) {
		t.Errorf("size mismatch: %v", err)
	}
	q := bytesTensor("q", format.Q8_0, []int64{32}, make([]byte, 34))
	if _, err := WriteFile(context.Background(), filepath.Join(t.TempDir(), "x"), []format.Tensor{q}, WriteOptions{}); !errors.Is(err, format.ErrUnsupported) {
		t.Errorf("quantized dtype: %v", err)
	}
}

// rawFile writes an 8-byte length, hdr and data.
func rawFile(t testing.TB, dir, hdr string, data []byte) string {
	var b bytes.Buffer
	binary.Write(&b, binary.LittleEndian, uint64(len(hdr)))
	b.WriteString(hdr)
	b.Write(data)
	p := filepath.Join(dir, "bad.safetensors")
	if err := os.WriteFile(p, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestBadInput(t *testing.T) {
	ok := `{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"U8","shape":[4],"data_offsets":[8,12]}}`
	cases := []struct {
		name    string
		file    func(dir string) string
		is      error
		tensor  string // expected in the message
		offset  int64  // expected FormatError.Offset (-2: don't check)
		message string
	}{
		{"truncated file", func(d string) string { p := filepath.Join(d, "t"); os.WriteFile(p, []byte{1, 2, 3}, 0o644); return p },
			format.ErrFormat, "", 0, "too short"},
		{"truncated data", func(d string) string { return rawFile(t, d, ok, make([]byte, 11)) },
			format.ErrFormat, "b", -2, "past the end"},
		{"header longer than file", func(d string) string {
			p := rawFile(t, d, ok, make([]byte, 12))
			b, _ := os.ReadFile(p)
			binary.LittleEndian.PutUint64(b, uint64(len(b)))
			os.WriteFile(p, b, 0o644)
			return p
		}, format.ErrFormat, "", 0, "exceeds the"},
		{"header over cap", func(d string) string {
			p := filepath.Join(d, "cap")
			b := make([]byte, 16)
			binary.LittleEndian.PutUint64(b, MaxHeaderSize+1)
			os.WriteFile(p, b, 0o644)
			return p
		}, format.ErrFormat, "", 0, "limit"},
		{"non-UTF-8 header", func(d string) string { return rawFile(t, d, "{\"a\xff\":{}}", nil) }, format.ErrFormat, "", 8 + 3, "UTF-8"},
		{"invalid JSON", func(d string) string { return rawFile(t, d, `{"a":{"dtype":"F32",}}`, nil) }, format.ErrFormat, "", -2, "invalid JSON"},
		{"not an object", func(d string) string { return rawFile(t, d, `[1,2]`, nil) }, format.ErrFormat, "", 8, "not a JSON object"},
		{"trailing garbage", func(d string) string { return rawFile(t, d, `{} {}`, nil) }, format.ErrFormat, "", -2, "trailing"},
		{"overlapping offsets", func(d string) string {
			return rawFile(t, d, `{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"U8","shape":[4],"data_offsets":[4,8]}}`, make([]byte, 8))
		}, format.ErrFormat, "b", -2, "overlap"},
		{"out-of-order offsets", func(d string) string {
			return rawFile(t, d, `{"a":{"dtype":"U8","shape":[0],"data_offsets":[8,0]}}`, make([]byte, 8))
		}, format.ErrFormat, "a", -2, "out of order"},
		{"gap", func(d string) string {
			return rawFile(t, d, `{"a":{"dtype":"U8","shape":[4],"data_offsets":[4,8]}}`, make([]byte, 8))
		}, format.ErrFormat, "a", -2, "gap"},
		{"out of bounds", func(d string) string {
			return rawFile(t, d, `{"a":{"dtype":"U8","shape":[8],"data_offsets":[0,8]},"b":{"dtype":"U8","shape":[1000],"data_offsets":[8,1008]}}`, make([]byte, 8))
		}, format.ErrFormat, "b", -2, "past the end"},
		{"uncovered trailing bytes", func(d string) string { return rawFile(t, d, ok, make([]byte, 20)) }, format.ErrFormat, "", -2, "not covered"},
		{"shape × dtype mismatch", func(d string) string {
			return rawFile(t, d, `{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}`, make([]byte, 8))
		}, format.ErrFormat, "a", -2, "needs 12 bytes"},
		{"dimension overflow", func(d string) string {
			return rawFile(t, d, `{"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8]}}`, make([]byte, 8))
		}, format.ErrFormat, "a", -2, "overflow"},
		{"byte size overflow", func(d string) string {
			return rawFile(t, d, `{"a":{"dtype":"F64","shape":[4611686018427387903],"data_offsets":[0,8]}}`, make([]byte, 8))
		}, format.ErrFormat, "a", -2, "overflow"},
		{"huge number", func(d string) string {
			return rawFile(t, d, `{"a":{"dtype":"F32","shape":[99999999999999999999],"data_offsets":[0,8]}}`, make([]byte, 8))
		}, format.ErrFormat, "a", -2, "64-bit"},
		{"negative dimension", func(d string) string {
			return rawFile(t, d, `{"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}}`, make([]byte, 8))
		}, format.ErrFormat, "a", -2, "non-negative"},
		{"unknown dtype", func(d string) string {
			return rawFile(t, d, `{"a":{"dtype":"F4","shape":[2],"data_offsets":[0,1]}}`, make([]byte, 1))
		}, format.ErrUnsupported, "a", 8 + 14, `dtype "F4"`},
		{"GGML dtype", func(d string) string {
			return rawFile(t, d, `{"a":{"dtype":"Q8_0","shape":[32],"data_offsets":[0,34]}}`, make([]byte, 34))
		}, format.ErrUnsupported, "a", -2, `dtype "Q8_0"`},
		{"missing field", func(d string) string {
			return rawFile(t, d, `{"a":{"dtype":"F32","shape":[2]}}`, nil)
		}, format.ErrFormat, "a", -2, "missing data_offsets"},
		{"duplicate tensor", func(d string) string {
			return rawFile(t, d, `{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"a":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}`, make([]byte, 2))
		}, format.ErrFormat, "a", -2, "duplicate"},
		{"metadata not strings", func(d string) string {
			return rawFile(t, d, `{"__metadata__":{"x":1}}`, nil)
		}, format.ErrFormat, "", -2, "not a string"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := c.file(t.TempDir())
			f, err := Open(p)
			if err == nil {
				f.Close()
				t.Fatal("opened")
			}
			if !errors.Is(err, c.is) {
				t.Errorf("error %v does not wrap %v", err, c.is)
			}
			var fe *format.FormatError
			if !errors.As(err, &fe) {
				t.Fatalf("error %T %v is not a FormatError", err, err)
			}
			msg := err.Error()
			if !strings.Contains(msg, p) || !strings.Contains(msg, "at byte") || !strings.Contains(msg, c.message) {
				t.Errorf("message %q lacks file, offset or %q", msg, c.message)
			}
			if c.tensor != "" && fe.Tensor != c.tensor {
				t.Errorf("tensor %q, want %q (%v)", fe.Tensor, c.tensor, err)
			}
			if c.offset != -2 && fe.Offset != c.offset {
				t.Errorf("offset %d, want %d (%v)", fe.Offset, c.offset, err)
			}
		})
	}
}

func TestBadZstdAndDir(t *testing.T) {
	ts, _ := sampleTensors(9)
	dir := t.TempDir()
	res, err := WriteDir(context.Background(), dir, ts, WriteOptions{MaxShardSize: 64, Compress: "zstd"})
	if err != nil {
		t.Fatal(err)
	}
	// truncated compressed shard: the open (header) or the read fails cleanly
	shard := filepath.Join(dir, res.Files[1].Name)
	b, _ := os.ReadFile(shard)
	os.WriteFile(shard, b[:len(b)/2], 0o644)
	if d, err := OpenDir(dir); err == nil {
		var rerr error
		for _, ti := range d.Tensors() {
			if _, _, rerr = format.ReadAll(d, ti.Name); rerr != nil {
				break
			}
		}
		d.Close()
		if !errors.Is(rerr, format.ErrFormat) || !strings.Contains(rerr.Error(), res.Files[1].Name) {
			t.Errorf("truncated shard read: %v", rerr)
		}
	} else if !errors.Is(err, format.ErrFormat) {
		t.Errorf("truncated shard open: %v", err)
	}
	// missing shard named by the index
	os.Remove(shard)
	_, err = OpenDir(dir)
	if !errors.Is(err, format.ErrFormat) || !strings.Contains(err.Error(), res.Files[1].Name) || !strings.Contains(err.Error(), "missing") {
		t.Errorf("missing shard: %v", err)
	}
	// garbage .zst
	p := filepath.Join(t.TempDir(), "g.safetensors.zst")
	os.WriteFile(p, []byte(ZstdMagic+"\x00junk after the magic"), 0o644)
	if _, err := Open(p); !errors.Is(err, format.ErrFormat) || !strings.Contains(err.Error(), p) {
		t.Errorf("garbage zst: %v", err)
	}
	// directories without checkpoints or with several
	empty := t.TempDir()
	if _, err := OpenDir(empty); !errors.Is(err, format.ErrFormat) {
		t.Errorf("empty dir: %v", err)
	}
	two := t.TempDir()
	WriteFile(context.Background(), filepath.Join(two, "a.safetensors"), ts[:1], WriteOptions{})
	WriteFile(context.Background(), filepath.Join(two, "b.safetensors"), ts[1:2], WriteOptions{})
	if _, err := OpenDir(two); !errors.Is(err, format.ErrFormat) {
		t.Errorf("two files, no index: %v", err)
	}
	os.WriteFile(filepath.Join(two, IndexName), []byte(`{"weight_map":{"x":"../a.safetensors"}}`), 0o644)
	if _, err := OpenDir(two); !errors.Is(err, format.ErrFormat) {
		t.Errorf("index escaping the dir: %v", err)
	}
	os.WriteFile(filepath.Join(two, IndexName), []byte(`{"weight_map":{"nothere":"a.safetensors"}}`), 0o644)
	if _, err := OpenDir(two); !errors.Is(err, format.ErrFormat) || !strings.Contains(err.Error(), "nothere") {
		t.Errorf("index naming a tensor its shard lacks: %v", err)
	}
}

func TestClosed(t *testing.T) {
	ts, _ := sampleTensors(10)
	p := filepath.Join(t.TempDir(), "c.safetensors")
	WriteFile(context.Background(), p, ts, WriteOptions{})
	f, err := Open(p)
	if err != nil {
		t.Fatal(err)
	}
	rc, _ := f.Open(ts[0].Name)
	f.Close()
	if _, err := io.ReadAll(rc); !errors.Is(err, ErrClosed) {
		t.Errorf("read after close: %v", err)
	}
	if _, err := f.Open(ts[0].Name); !errors.Is(err, ErrClosed) {
		t.Errorf("open after close: %v", err)
	}
}

func TestSortCanonical(t *testing.T) {
	mk := func(name string, dt format.DType) format.Tensor { return format.Tensor{Name: name, DType: dt} }
	ts := []format.Tensor{mk("b", format.U8), mk("a", format.BF16), mk("z", format.F32), mk("c", format.F8E4M3),
		mk("a", format.U8), mk("s", format.I64), mk("h", format.F16), mk("i", format.I8), mk("o", format.Bool)}
	SortCanonical(ts)
	var got []string
	for _, x := range ts {
		got = append(got, x.DType.String()+":"+x.Name)
	}
	want := []string{"I64:s", "F32:z", "BF16:a", "F16:h", "F8_E4M3:c", "I8:i", "U8:a", "U8:b", "BOOL:o"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("order %v, want %v", got, want)
	}
}

// A Hugging Face cache snapshot: every file is a symbolic link to a blob.
func TestOpenDirSymlinks(t *testing.T) {
	ts, data := sampleTensors(12)
	root := t.TempDir()
	blobs, snap := filepath.Join(root, "blobs"), filepath.Join(root, "snap")
	if _, err := WriteDir(context.Background(), blobs, ts, WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(blobs, "cfg"), []byte(`{"a":1}`), 0o644)
	os.WriteFile(filepath.Join(blobs, "tok"), []byte(`{}`), 0o644)
	os.Mkdir(snap, 0o755)
	for link, target := range map[string]string{SingleName: SingleName, "config.json": "cfg", "tokenizer.json": "tok"} {
		if err := os.Symlink(filepath.Join("..", "blobs", target), filepath.Join(snap, link)); err != nil {
			t.Fatal(err)
		}
	}
	os.Symlink("nowhere", filepath.Join(snap, "dangling"))
	d, err := OpenDir(snap)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if string(d.Config()) != `{"a":1}` || !reflect.DeepEqual(d.OtherFiles(), []string{"tokenizer.json"}) {
		t.Errorf("config %q, other %v", d.Config(), d.OtherFiles())
	}
	got := readAllSource(t, d)
	for name, b := range data {
		if !bytes.Equal(got[name], b) {
			t.Errorf("%s differs", name)
		}
	}
}

func TestSeekTableCorruption(t *testing.T) {
	ts, data := sampleTensors(13)
	dir := t.TempDir()
	path := filepath.Join(dir, "s.safetensors.zst")
	if _, err := WriteFile(context.Background(), path, ts, WriteOptions{Compress: "zstd"}); err != nil {
		t.Fatal(err)
	}
	orig, _ := os.ReadFile(path)
	n := len(orig)
	cases := map[string]func(b []byte){
		"frame count too large": func(b []byte) { binary.LittleEndian.PutUint32(b[n-9:], 1000) },
		"reserved bits":         func(b []byte) { b[n-5] = 0x04 },
		"bad skippable header":  func(b []byte) { b[n-9-8-8] ^= 0xff },
		"wrong sizes":           func(b []byte) { binary.LittleEndian.PutUint32(b[n-9-8:], 12345) },
	}
	for name, corrupt := range cases {
		t.Run(name, func(t *testing.T) {
			b := bytes.Clone(orig)
			corrupt(b)
			p := filepath.Join(t.TempDir(), "c.safetensors.zst")
			os.WriteFile(p, b, 0o644)
			f, err := Open(p)
			if err == nil {
				// a changed size may be caught only when the frame is decoded
				for _, ti := range f.Tensors() {
					if _, _, err = format.ReadAll(f, ti.Name); err != nil {
						break
					}
				}
				f.Close()
			}
			if !errors.Is(err, format.ErrFormat) || !strings.Contains(err.Error(), p) {
				t.Errorf("%v", err)
			}
		})
	}
	// without its seek table the file still reads, as a stream
	p := filepath.Join(dir, "cut.safetensors.zst")
	os.WriteFile(p, orig[:n-9], 0o644)
	f, err := Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got := readAllSource(t, f)
	for name, b := range data {
		if !bytes.Equal(got[name], b) {
			t.Errorf("%s differs", name)
		}
	}
}

// rssFile is the file-backed part of the process's resident set (Linux).
func rssFile(t *testing.T) int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Skip("no /proc/self/status")
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "RssFile:"); ok {
			var kb int64
			fmt.Sscanf(strings.TrimSpace(v), "%d kB", &kb)
			return kb << 10
		}
	}
	t.Skip("no RssFile in /proc/self/status")
	return 0
}

// Reading every tensor through Open must not leave the mapped checkpoint resident.
func TestReadKeepsRSSBounded(t *testing.T) {
	const n, size = 12, 4 << 20
	data := make([]byte, size)
	for i := range data {
		data[i] = byte(i * 7)
	}
	var ts []format.Tensor
	for i := range n {
		ts = append(ts, bytesTensor(fmt.Sprint("t", i), format.U8, []int64{size}, data))
	}
	p := filepath.Join(t.TempDir(), "big.safetensors")
	if _, err := WriteFile(context.Background(), p, ts, WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	f, err := Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if f.data == nil {
		t.Skip("file not mapped")
	}
	before := rssFile(t)
	buf := make([]byte, 1<<20)
	for _, ti := range f.Tensors() {
		rc, _ := f.Open(ti.Name)
		if m, err := io.CopyBuffer(io.Discard, struct{ io.Reader }{rc}, buf); err != nil || m != ti.Size {
			t.Fatal(m, err)
		}
		rc.Close()
	}
	if grew := rssFile(t) - before; grew > 2*size {
		t.Errorf("file-backed RSS grew by %d MiB reading a %d MiB checkpoint", grew>>20, n*size>>20)
	}
}

func TestNoHash(t *testing.T) {
	ts, data := sampleTensors(14)
	for _, comp := range []string{"", "zstd"} {
		dir := t.TempDir()
		res, err := WriteDir(context.Background(), dir, ts, WriteOptions{NoHash: true, Compress: comp, MaxShardSize: 200})
		if err != nil {
			t.Fatal(err)
		}
		for _, fr := range res.Files {
			if fr.SHA256 != "" && fr.Name != IndexName {
				t.Errorf("%s: hash %q under NoHash", fr.Name, fr.SHA256)
			}
		}
		for _, tr := range res.Tensors {
			if tr.SHA256 != "" {
				t.Errorf("%s: hash under NoHash", tr.Name)
			}
		}
		d, err := OpenDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		got := readAllSource(t, d)
		d.Close()
		for name, b := range data {
			if !bytes.Equal(got[name], b) {
				t.Errorf("%s differs", name)
			}
		}
	}
}
