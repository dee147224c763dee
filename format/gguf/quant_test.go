package gguf_test

import (
	"context"
	"encoding/binary"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/sparsify/sparsify/format"
	"github.com/sparsify/sparsify/format/gguf"
)

// Hand-built blocks, each with the values its definition gives (see
// ggml-common.h). All scales are short binary fractions, so the expected
// values are exact.

func half(v float32) uint16 {
	// Exact for the normal values used here: sign, 5-bit exponent, 10-bit mantissa.
	b := math.Float32bits(v)
	sign := uint16(b>>16) & 0x8000
	exp := int(b>>23&0xff) - 127 + 15
	return sign | uint16(exp)<<10 | uint16(b>>13&0x3ff)
}

// q8_0Rows: 2 blocks, d = 0.25 and -2, quants i-16.
func q8_0Rows() ([]byte, []float32) {
	var raw []byte
	var want []float32
	for blk, d := range []float32{0.25, -2} {
		raw = binary.LittleEndian.AppendUint16(raw, half(d))
		for i := 0; i < 32; i++ {
			q := int8(i - 16 + blk)
			raw = append(raw, byte(q))
			want = append(want, float32(q)*d)
		}
	}
	return raw, want
}

// q4_0Rows: 2 blocks; nibble pattern j%16 (low) and 15-j%16 (high), d = 0.5, 1.5.
func q4_0Rows() ([]byte, []float32) {
	var raw []byte
	var want []float32
	for _, d := range []float32{0.5, 1.5} {
		raw = binary.LittleEndian.AppendUint16(raw, half(d))
		lo, hi := make([]float32, 16), make([]float32, 16)
		for j := 0; j < 16; j++ {
			l, h := j%16, 15-j%16
			raw = append(raw, byte(l|h<<4))
			lo[j], hi[j] = float32(l-8)*d, float32(h-8)*d
		}
		want = append(append(want, lo...), hi...)
	}
	return raw, want
}

// q4_KBlock: d = 0.5, dmin = 0.25; sub-block j has scale 2j+1 and min j
// (sub-blocks 4..7 use the split 6-bit packing); quant of element e = e%16.
func q4_KBlock() ([]byte, []float32) {
	raw := make([]byte, 144)
	binary.LittleEndian.PutUint16(raw[0:], half(0.5))
	binary.LittleEndian.PutUint16(raw[2:], half(0.25))
	sc := raw[4:16]
	for j := 0; j < 8; j++ {
		s, m := byte(2*j+1), byte(j)
		if j < 4 {
			sc[j], sc[j+4] = s, m
		} else {
			sc[j+4] = s&0xF | (m&0xF)<<4
			sc[j-4] |= (s >> 4) << 6
			sc[j] |= (m >> 4) << 6
		}
	}
	want := make([]float32, 256)
	for g := 0; g < 4; g++ {
		for l := 0; l < 32; l++ {
			a, b := 64*g+l, 64*g+l+32
			raw[16+32*g+l] = byte(a%16 | (b%16)<<4)
		}
	}
	for e := range want {
		j := e / 32
		want[e] = 0.5*float32(2*j+1)*float32(e%16) - 0.25*float32(j)
	}
	return raw, want
}

// q6_KBlock: d = 0.125, scale of sub-block s = s-8 (int8), 6-bit quant of
// element e = (7e)%64, value quant-32.
func q6_KBlock() ([]byte, []float32) {
	raw := make([]byte, 210)
	ql, qh, sc := raw[0:128], raw[128:192], raw[192:208]
	binary.LittleEndian.PutUint16(raw[208:], half(0.125))
	for s := 0; s < 16; s++ {
		sc[s] = byte(int8(s - 8))
	}
	L := func(e int) int { return (7 * e) % 64 }
	for n := 0; n < 2; n++ {
		for l := 0; l < 32; l++ {
			e := 128*n + l
			ql[64*n+l] = byte(L(e)&0xF | (L(e+64)&0xF)<<4)
			ql[64*n+l+32] = byte(L(e+32)&0xF | (L(e+96)&0xF)<<4)
			qh[32*n+l] = byte(L(e)>>4 | (L(e+32)>>4)<<2 | (L(e+64)>>4)<<4 | (L(e+96)>>4)<<6)
		}
	}
	want := make([]float32, 256)
	for e := range want {
		want[e] = 0.125 * float32(e/16-8) * float32(L(e)-32)
	}
	return raw, want
}

// TestQuantizedGGUF writes a GGUF of hand-built Q8_0, Q4_0, Q4_K and Q6_K
// tensors, reads it back and dequantizes each to the values the block
// definitions give.
func TestQuantizedGGUF(t *testing.T) {
	type qt struct {
		name  string
		dt    format.DType
		shape []int64
		raw   []byte
		want  []float32
	}
	var qs []qt
	raw, want := q8_0Rows()
	qs = append(qs, qt{"blk.0.attn_q.weight", format.Q8_0, []int64{2, 32}, raw, want})
	raw, want = q4_0Rows()
	qs = append(qs, qt{"blk.0.attn_k.weight", format.Q4_0, []int64{1, 64}, raw, want})
	raw, want = q4_KBlock()
	qs = append(qs, qt{"blk.0.ffn_up.weight", format.Q4_K, []int64{1, 256}, raw, want})
	raw, want = q6_KBlock()
	qs = append(qs, qt{"output.weight", format.Q6_K, []int64{256}, raw, want})

	var ts []format.Tensor
	for _, q := range qs {
		ts = append(ts, bytesTensor(q.name, q.dt, q.shape, q.raw))
	}
	path := filepath.Join(t.TempDir(), "q.gguf")
	var calls int
	var last int64
	opts := gguf.WriteOptions{Jobs: 2, Progress: func(done, total int64) {
		calls++
		if done < last || done > total {
			t.Errorf("progress %d/%d after %d", done, total, last)
		}
		last = done
	}}
	kv := []gguf.KV{{Key: "general.architecture", Value: gguf.MustValue("llama")}}
	if err := gguf.Write(context.Background(), path, kv, ts, opts); err != nil {
		t.Fatal(err)
	}
	if calls != len(qs) || last != int64(34*2+18*2+144+210) {
		t.Errorf("progress: %d calls, last %d", calls, last)
	}
	ents, _ := os.ReadDir(filepath.Dir(path))
	if len(ents) != 1 {
		t.Errorf("directory holds %d entries, want only the output", len(ents))
	}
	f, err := gguf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, q := range qs {
		b, ti, err := format.ReadAll(f, q.name)
		if err != nil {
			t.Fatal(err)
		}
		if typ, _ := f.GGMLType(q.name); ti.DType != q.dt || typ.String() != q.dt.String() {
			t.Errorf("%s: dtype %v, ggml type %v", q.name, ti.DType, typ)
		}
		got := make([]float32, ti.NumElements())
		if err := format.Dequantize(ti.DType, b, got); err != nil {
			t.Fatal(err)
		}
		for i := range q.want {
			if got[i] != q.want[i] {
				t.Fatalf("%s element %d: %v, want %v", q.name, i, got[i], q.want[i])
			}
		}
	}
}
