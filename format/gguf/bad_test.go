package gguf_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sparsify/sparsify/format"
	"github.com/sparsify/sparsify/format/gguf"
)

// builder writes GGUF bytes field by field, so tests can forge any header.
type builder struct{ bytes.Buffer }

func (b *builder) u8(v uint8) *builder   { b.WriteByte(v); return b }
func (b *builder) u32(v uint32) *builder { binary.Write(b, binary.LittleEndian, v); return b }
func (b *builder) u64(v uint64) *builder { binary.Write(b, binary.LittleEndian, v); return b }
func (b *builder) str(s string) *builder { b.u64(uint64(len(s))); b.WriteString(s); return b }
func (b *builder) pad(align int) *builder {
	for b.Len()%align != 0 {
		b.WriteByte(0)
	}
	return b
}

// head starts a v3 file with nt tensors and nkv metadata entries.
func head(nt, nkv uint64) *builder {
	b := &builder{}
	b.WriteString("GGUF")
	return b.u32(3).u64(nt).u64(nkv)
}

// tensor appends one tensor info (dims fastest first).
func (b *builder) tensor(name string, typ uint32, off uint64, ne ...uint64) *builder {
	b.str(name).u32(uint32(len(ne)))
	for _, e := range ne {
		b.u64(e)
	}
	return b.u32(typ).u64(off)
}

// oneF32 is a valid file: one F32 tensor of 8 elements.
func oneF32() []byte {
	b := head(1, 1)
	b.str("general.architecture").u32(uint32(gguf.TypeString)).str("llama")
	b.tensor("w", 0, 0, 8).pad(32)
	b.Write(make([]byte, 32))
	return b.Bytes()
}

func parse(b []byte) (*gguf.File, error) {
	return gguf.NewReader(bytes.NewReader(b), int64(len(b)), "bad.gguf")
}

func TestValidMinimal(t *testing.T) {
	f, err := parse(oneF32())
	if err != nil {
		t.Fatal(err)
	}
	if ti := f.Tensors()[0]; ti.Offset != f.DataOffset() || ti.Size != 32 || f.DataOffset() != 128 {
		t.Errorf("%+v, data at %d", ti, f.DataOffset())
	}
}

func TestBadInput(t *testing.T) {
	huge := uint64(1) << 62
	cases := []struct {
		name string
		data []byte
		is   error  // sentinel the error must match
		msg  string // substring of the message
	}{
		{"empty", nil, format.ErrFormat, "truncated"},
		{"bad magic", append([]byte("GGUX"), oneF32()[4:]...), format.ErrFormat, "bad magic"},
		{"v1", func() []byte { b := oneF32(); b[4] = 1; return b }(), format.ErrUnsupported, "unsupported GGUF version 1"},
		{"v4", func() []byte { b := oneF32(); b[4] = 4; return b }(), format.ErrUnsupported, "version 4"},
		{"big-endian", func() []byte { b := oneF32(); copy(b[4:], []byte{0, 0, 0, 3}); return b }(), format.ErrUnsupported, "big-endian"},
		{"huge kv count", head(0, huge).Bytes(), format.ErrFormat, "metadata count"},
		{"huge tensor count", head(huge, 0).Bytes(), format.ErrFormat, "tensor count"},
		{"huge key length", head(0, 1).u64(huge).u32(8).u64(0).Bytes(), format.ErrFormat, "key length"},
		{"huge string length", head(0, 1).str("k").u32(uint32(gguf.TypeString)).u64(huge).Bytes(), format.ErrFormat, "string length"},
		{"huge array length", head(0, 1).str("k").u32(uint32(gguf.TypeArray)).u32(uint32(gguf.TypeUint8)).u64(huge).Bytes(), format.ErrFormat, "array length"},
		{"huge nested array length", head(0, 1).str("k").u32(uint32(gguf.TypeArray)).u32(uint32(gguf.TypeArray)).u64(1).u32(uint32(gguf.TypeString)).u64(huge).Bytes(), format.ErrFormat, "array length"},
		{"array of strings too long for file", head(0, 1).str("k").u32(uint32(gguf.TypeArray)).u32(uint32(gguf.TypeString)).u64(1000).u64(0).Bytes(), format.ErrFormat, "array length"},
		{"bad value type", head(0, 1).str("k").u32(13).u32(0).Bytes(), format.ErrFormat, "value type"},
		{"bad element type", head(0, 1).str("k").u32(uint32(gguf.TypeArray)).u32(99).u64(0).Bytes(), format.ErrFormat, "element type"},
		{"deep nesting", func() []byte {
			b := head(0, 1).str("k").u32(uint32(gguf.TypeArray))
			for range 40 {
				b.u32(uint32(gguf.TypeArray)).u64(1)
			}
			return b.u32(0).u64(0).Bytes()
		}(), format.ErrFormat, "nested"},
		{"duplicate key", head(0, 2).str("k").u32(0).u8(1).str("k").u32(0).u8(2).Bytes(), format.ErrFormat, "duplicate metadata key"},
		{"bad bool", head(0, 1).str("k").u32(uint32(gguf.TypeBool)).u8(2).Bytes(), format.ErrFormat, "invalid bool byte 2"},
		{"bad bool in array", head(0, 1).str("k").u32(uint32(gguf.TypeArray)).u32(uint32(gguf.TypeBool)).u64(3).u8(1).u8(0).u8(7).Bytes(), format.ErrFormat, "at byte 51 (0x33): metadata \"k\": invalid bool byte 7"},
		{"bad alignment", head(0, 1).str("general.alignment").u32(uint32(gguf.TypeUint32)).u32(48).Bytes(), format.ErrFormat, "alignment"},
		{"alignment of wrong type", head(0, 1).str("general.alignment").u32(uint32(gguf.TypeString)).str("32").Bytes(), format.ErrFormat, "alignment"},
		{"tensor past EOF", head(1, 0).tensor("w", 0, 0, 64).pad(32).Bytes(), format.ErrFormat, "past the end"},
		{"tensor offset past EOF", append(head(1, 0).tensor("w", 0, 1<<40, 8).pad(32).Bytes(), make([]byte, 32)...), format.ErrFormat, "past the end"},
		{"offset overflow", append(head(1, 0).tensor("w", 0, ^uint64(0)-31, 8).pad(32).Bytes(), make([]byte, 32)...), format.ErrFormat, ""},
		{"misaligned data", append(head(1, 0).tensor("w", 0, 4, 8).pad(32).Bytes(), make([]byte, 64)...), format.ErrFormat, "misaligned"},
		{"unknown ggml type", append(head(1, 0).tensor("w", 200, 0, 8).pad(32).Bytes(), make([]byte, 32)...), format.ErrUnsupported, "unknown ggml type 200"},
		{"unsupported ggml type", append(head(1, 0).tensor("w", 16, 0, 256).pad(32).Bytes(), make([]byte, 1024)...), format.ErrUnsupported, "IQ2_XXS"},
		{"too many dims", append(head(1, 0).tensor("w", 0, 0, 1, 1, 1, 1, 8).pad(32).Bytes(), make([]byte, 32)...), format.ErrFormat, "dimensions"},
		{"zero dim", append(head(1, 0).tensor("w", 0, 0, 8, 0).pad(32).Bytes(), make([]byte, 32)...), format.ErrFormat, "dimension"},
		{"dim overflow", append(head(1, 0).tensor("w", 0, 0, 1<<40, 1<<40).pad(32).Bytes(), make([]byte, 32)...), format.ErrFormat, "overflow"},
		{"dim over int64", append(head(1, 0).tensor("w", 0, 0, 1<<63).pad(32).Bytes(), make([]byte, 32)...), format.ErrFormat, "dimension"},
		{"size overflow", append(head(1, 0).tensor("w", 28, 0, 1<<31, 1<<31).pad(32).Bytes(), make([]byte, 32)...), format.ErrFormat, ""},
		{"row not whole blocks", append(head(1, 0).tensor("w", 8, 0, 16, 2).pad(32).Bytes(), make([]byte, 64)...), format.ErrFormat, "block size"},
		{"overlap", append(head(2, 0).tensor("a", 0, 0, 16).tensor("b", 0, 32, 16).pad(32).Bytes(), make([]byte, 96)...), format.ErrFormat, "overlaps"},
		{"long tensor name", append(head(1, 0).tensor(strings.Repeat("x", 64), 0, 0, 8).pad(32).Bytes(), make([]byte, 32)...), format.ErrFormat, "tensor name length 64"},
		{"empty tensor name", append(head(1, 0).tensor("", 0, 0, 8).pad(32).Bytes(), make([]byte, 32)...), format.ErrFormat, "empty tensor name"},
		{"duplicate tensor", append(head(2, 0).tensor("a", 0, 0, 8).tensor("a", 0, 32, 8).pad(32).Bytes(), make([]byte, 64)...), format.ErrFormat, "duplicate"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := parse(c.data)
			if err == nil {
				t.Fatal("no error")
			}
			if !errors.Is(err, c.is) {
				t.Errorf("%v: not %v", err, c.is)
			}
			var fe *format.FormatError
			if !errors.As(err, &fe) || fe.File != "bad.gguf" {
				t.Errorf("%v: not a *format.FormatError naming the file", err)
			}
			if !strings.Contains(err.Error(), c.msg) {
				t.Errorf("%q does not mention %q", err, c.msg)
			}
		})
	}
}

func TestBadInputNamesTensorAndOffset(t *testing.T) {
	b := head(1, 0).tensor("blk.0.attn_q.weight", 0, 4, 8).pad(32).Bytes()
	b = append(b, make([]byte, 64)...)
	_, err := parse(b)
	var fe *format.FormatError
	if !errors.As(err, &fe) || fe.Tensor != "blk.0.attn_q.weight" || fe.Offset != 24 {
		t.Fatalf("%#v", err)
	}
	if !strings.Contains(err.Error(), `tensor "blk.0.attn_q.weight"`) || !strings.Contains(err.Error(), "at byte 24") {
		t.Errorf("message %q", err)
	}
}

// TestTruncated cuts a valid file at every length: each prefix is an error,
// never a panic.
func TestTruncated(t *testing.T) {
	full := oneF32()
	if _, err := parse(full); err != nil {
		t.Fatal(err)
	}
	for n := 0; n < len(full); n++ {
		_, err := parse(full[:n])
		if !errors.Is(err, format.ErrFormat) {
			t.Fatalf("prefix of %d bytes: %v", n, err)
		}
	}
	// Through Open, from disk.
	path := filepath.Join(t.TempDir(), "t.gguf")
	if err := os.WriteFile(path, full[:50], 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := gguf.Open(path)
	var fe *format.FormatError
	if !errors.As(err, &fe) || fe.File != path || !strings.Contains(err.Error(), "truncated") {
		t.Errorf("%v", err)
	}
}

func TestBadMetadataNamesKey(t *testing.T) {
	b := head(0, 1).str("tokenizer.ggml.tokens").u32(uint32(gguf.TypeArray)).u32(uint32(gguf.TypeString)).u64(2).str("a").u64(1 << 50).Bytes()
	_, err := parse(b)
	var fe *format.FormatError
	if !errors.As(err, &fe) || fe.Offset != 24+8+21+4+4+8+9 {
		t.Fatalf("%v", err)
	}
	if !strings.HasPrefix(err.Error(), `bad.gguf: at byte 78 (0x4e): metadata "tokenizer.ggml.tokens": `) {
		t.Errorf("message %q", err)
	}
}
