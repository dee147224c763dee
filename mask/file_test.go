package mask

import (
	"bytes"
	"encoding/binary"
	"errors"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/sparsify/sparsify/format"
)

func sampleMasks(t testing.TB) map[string]*Mask {
	w := []float32{1, 2, 3, 4, -5, 6, -7, 0.5, 9, 1, 2, 3}
	a, err := Magnitude(w, 3, 4, Pattern24)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Magnitude(w, 1, 12, Pattern{1, 4})
	if err != nil {
		t.Fatal(err)
	}
	return map[string]*Mask{"blk.0.ffn_up.weight": a, "model.layers.0.mlp.up_proj.weight": b}
}

func TestFileRoundTrip(t *testing.T) {
	masks := sampleMasks(t)
	path := filepath.Join(t.TempDir(), "m.safetensors")
	meta := map[string]string{"method": "magnitude", "pattern": "2:4"}
	if err := WriteFile(path, masks, meta); err != nil {
		t.Fatal(err)
	}
	got, gotMeta, err := ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	wantMeta := maps.Clone(meta)
	wantMeta["format"] = "pt" // added by the safetensors writer, as Python's does
	if !maps.Equal(wantMeta, gotMeta) {
		t.Fatalf("metadata %v, want %v", gotMeta, wantMeta)
	}
	if err := WriteFile(path, masks, map[string]string{"format": "np"}); err == nil {
		t.Fatal("WriteFile accepted a reserved \"format\" metadata value")
	}
	if len(got) != len(masks) {
		t.Fatalf("%d masks, want %d", len(got), len(masks))
	}
	for name, m := range masks {
		g := got[name]
		if g == nil || g.Rows != m.Rows || g.Cols != m.Cols || !slices.Equal(g.Keep, m.Keep) {
			t.Fatalf("%s differs after round trip", name)
		}
	}
	// header length is a multiple of 8 and the file is exactly header+data.
	raw, _ := os.ReadFile(path)
	hn := binary.LittleEndian.Uint64(raw[:8])
	if hn%8 != 0 || int(8+hn)+3*4+12 != len(raw) {
		t.Fatalf("header %d, file %d bytes", hn, len(raw))
	}
	// no temporary files left behind.
	ents, _ := os.ReadDir(filepath.Dir(path))
	if len(ents) != 1 {
		t.Fatalf("%d entries in output dir, want 1", len(ents))
	}
}

// stFile builds a safetensors file by hand.
func stFile(header string, data []byte) []byte {
	for len(header)%8 != 0 {
		header += " "
	}
	var b bytes.Buffer
	binary.Write(&b, binary.LittleEndian, uint64(len(header)))
	b.WriteString(header)
	b.Write(data)
	return b.Bytes()
}

func TestReadFileBoolAndErrors(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	// as the earlier private writer laid files out: no "format" key, BOOL accepted
	p := write("bool.safetensors", stFile(`{"__metadata__":{"method":"magnitude"},"w":{"dtype":"BOOL","shape":[1,4],"data_offsets":[0,4]}}`, []byte{1, 0, 0, 1}))
	ms, meta, err := ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if !maps.Equal(meta, map[string]string{"method": "magnitude"}) {
		t.Fatalf("metadata %v", meta)
	}
	if got := keepString(ms["w"]); got != "1001" {
		t.Fatalf("bool mask %s", got)
	}
	bad := []struct {
		name, header string
		data         []byte
		want         string
	}{
		{"value", `{"w":{"dtype":"U8","shape":[1,4],"data_offsets":[0,4]}}`, []byte{1, 0, 2, 1}, "at byte"},
		{"dtype", `{"w":{"dtype":"F32","shape":[1,1],"data_offsets":[0,4]}}`, []byte{0, 0, 0, 0}, "U8 or BOOL"},
		{"rank", `{"w":{"dtype":"U8","shape":[4],"data_offsets":[0,4]}}`, []byte{0, 0, 0, 0}, "2-D"},
		{"offsets", `{"w":{"dtype":"U8","shape":[1,8],"data_offsets":[0,8]}}`, []byte{0, 0, 0, 0}, "past the end"},
		{"shape", `{"w":{"dtype":"U8","shape":[2,4],"data_offsets":[0,4]}}`, []byte{0, 0, 0, 0}, "needs 8 bytes"},
		{"overflow", `{"w":{"dtype":"U8","shape":[4611686018427387904,4],"data_offsets":[0,4]}}`, []byte{0, 0, 0, 0}, "overflows"},
		{"json", `{"w":`, nil, "JSON"},
		{"overlap", `{"a":{"dtype":"U8","shape":[1,4],"data_offsets":[0,4]},"b":{"dtype":"U8","shape":[1,4],"data_offsets":[2,6]}}`, []byte{0, 0, 0, 0, 0, 0}, "overlap"},
		{"gap", `{"a":{"dtype":"U8","shape":[1,2],"data_offsets":[2,4]}}`, []byte{0, 0, 0, 0}, "gap"},
		{"trailing", `{"a":{"dtype":"U8","shape":[1,2],"data_offsets":[0,2]}}`, []byte{0, 0, 0, 0}, "not covered"},
		{"unknown dtype", `{"a":{"dtype":"X9","shape":[1,2],"data_offsets":[0,2]}}`, []byte{0, 0}, "dtype"},
	}
	for _, c := range bad {
		p := write(c.name+".safetensors", stFile(c.header, c.data))
		_, _, err := ReadFile(p)
		if !errors.Is(err, format.ErrFormat) || !errors.Is(err, ErrMaskFile) || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), p) {
			t.Errorf("%s: err %v, want format error mentioning %q and the path", c.name, err, c.want)
		}
	}
	var fe *format.FormatError
	_, _, err = ReadFile(filepath.Join(dir, "value.safetensors"))
	if !errors.As(err, &fe) || fe.Tensor != "w" || fe.Offset != 8+56+2 { // 56-byte header (already a multiple of 8)
		t.Errorf("value error %v, want tensor w at byte 66", err)
	}
	long := make([]byte, 16)
	binary.LittleEndian.PutUint64(long, 1<<40)
	if _, _, err := ReadFile(write("long.safetensors", long)); !errors.Is(err, format.ErrFormat) {
		t.Errorf("huge header: %v", err)
	}
}

func FuzzReadMasks(f *testing.F) {
	path := filepath.Join(f.TempDir(), "seed.safetensors")
	if err := WriteFile(path, sampleMasks(f), map[string]string{"method": "magnitude"}); err != nil {
		f.Fatal(err)
	}
	seed, _ := os.ReadFile(path)
	f.Add(seed)
	f.Add(stFile(`{"w":{"dtype":"BOOL","shape":[1,4],"data_offsets":[0,4]}}`, []byte{1, 0, 0, 1}))
	f.Add([]byte{})
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, b []byte) {
		in := filepath.Join(dir, "in.safetensors") // one fuzz worker per process: no sharing
		if err := os.WriteFile(in, b, 0o644); err != nil {
			t.Fatal(err)
		}
		masks, _, err := ReadFile(in)
		if err != nil {
			if !errors.Is(err, format.ErrFormat) || !errors.Is(err, ErrMaskFile) {
				t.Fatalf("error wraps neither format.ErrFormat nor ErrMaskFile: %v", err)
			}
			return
		}
		out := filepath.Join(t.TempDir(), "out.safetensors")
		if err := WriteFile(out, masks, nil); err != nil {
			t.Fatal(err)
		}
		again, _, err := ReadFile(out)
		if err != nil {
			t.Fatalf("rewritten file unreadable: %v", err)
		}
		for name, m := range masks {
			if g := again[name]; g == nil || !slices.Equal(g.Keep, m.Keep) || g.Rows != m.Rows {
				t.Fatalf("%s changed in round trip", name)
			}
		}
	})
}
