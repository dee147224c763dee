package format_test

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/sparsify/sparsify/format"
)

// The tests below are an independent quantizer: they choose integer quants
// and scales, pack them into bytes following each block struct of llama.cpp's
// ggml-common.h (and the packing of its quantize_row_*_ref), and compute the
// expected floats from the dequantization formula in float64. Scales are
// multiples of 2^-10 with at most 11 significant bits, so every intermediate
// is exact in float32 and the comparison can demand bit equality.

// dqTestHalf encodes v as IEEE binary16; v must be exactly representable (normal).
func dqTestHalf(t *testing.T, v float64) uint16 {
	if v == 0 {
		return 0
	}
	var sign uint16
	if v < 0 {
		sign, v = 0x8000, -v
	}
	frac, exp := math.Frexp(v) // v = frac·2^exp, frac in [0.5, 1)
	mant := frac * 2048        // 11 significant bits
	if mant != math.Trunc(mant) || exp-1 < -14 || exp-1 > 15 {
		t.Fatalf("%v is not a normal half", v)
	}
	return sign | uint16(exp-1+15)<<10 | uint16(mant)&0x3ff
}

// dqTestHalfValue decodes binary16 bits, independently of format.F16ToF32.
func dqTestHalfValue(h uint16) float64 {
	e, m := int(h>>10)&0x1f, float64(h&0x3ff)
	var v float64
	if e == 0 {
		v = math.Ldexp(m, -24)
	} else {
		v = math.Ldexp(1024+m, e-25)
	}
	if h&0x8000 != 0 {
		v = -v
	}
	return v
}

// dqScale is a random scale j/1024 (|j| < 2048), exactly a half.
func dqScale(r *rand.Rand, signed bool) float64 {
	j := float64(1 + r.IntN(2047))
	if signed && r.IntN(2) == 0 {
		j = -j
	}
	return j / 1024
}

func put16(b []byte, h uint16) { binary.LittleEndian.PutUint16(b, h) }

type dqCase struct {
	raw  []byte
	want []float64
}

func buildQ4_0(t *testing.T, r *rand.Rand) dqCase {
	b := make([]byte, 18)
	d := dqScale(r, true)
	put16(b, dqTestHalf(t, d))
	L := make([]int, 32)
	for i := range L {
		L[i] = r.IntN(16)
	}
	want := make([]float64, 32)
	for j := 0; j < 16; j++ {
		b[2+j] = byte(L[j] | L[j+16]<<4)
	}
	for i := range L {
		want[i] = float64(L[i]-8) * d
	}
	return dqCase{b, want}
}

func buildQ4_1(t *testing.T, r *rand.Rand) dqCase {
	b := make([]byte, 20)
	d, m := dqScale(r, true), dqScale(r, true)
	put16(b, dqTestHalf(t, d))
	put16(b[2:], dqTestHalf(t, m))
	L := make([]int, 32)
	for i := range L {
		L[i] = r.IntN(16)
	}
	for j := 0; j < 16; j++ {
		b[4+j] = byte(L[j] | L[j+16]<<4)
	}
	want := make([]float64, 32)
	for i := range L {
		want[i] = float64(L[i])*d + m
	}
	return dqCase{b, want}
}

// packQ5 writes 32 5-bit values as qh (u32, bit i = bit 4 of element i) and qs.
func packQ5(qh, qs []byte, L []int) {
	var h uint32
	for i, l := range L {
		h |= uint32(l>>4) << i
	}
	binary.LittleEndian.PutUint32(qh, h)
	for j := 0; j < 16; j++ {
		qs[j] = byte(L[j]&0xF | (L[j+16]&0xF)<<4)
	}
}

func buildQ5_0(t *testing.T, r *rand.Rand) dqCase {
	b := make([]byte, 22)
	d := dqScale(r, true)
	put16(b, dqTestHalf(t, d))
	L := make([]int, 32)
	for i := range L {
		L[i] = r.IntN(32)
	}
	packQ5(b[2:6], b[6:22], L)
	want := make([]float64, 32)
	for i := range L {
		want[i] = float64(L[i]-16) * d
	}
	return dqCase{b, want}
}

func buildQ5_1(t *testing.T, r *rand.Rand) dqCase {
	b := make([]byte, 24)
	d, m := dqScale(r, true), dqScale(r, true)
	put16(b, dqTestHalf(t, d))
	put16(b[2:], dqTestHalf(t, m))
	L := make([]int, 32)
	for i := range L {
		L[i] = r.IntN(32)
	}
	packQ5(b[4:8], b[8:24], L)
	want := make([]float64, 32)
	for i := range L {
		want[i] = float64(L[i])*d + m
	}
	return dqCase{b, want}
}

func buildQ8_0(t *testing.T, r *rand.Rand) dqCase {
	b := make([]byte, 34)
	d := dqScale(r, true)
	put16(b, dqTestHalf(t, d))
	want := make([]float64, 32)
	for i := range want {
		q := r.IntN(256) - 128
		b[2+i] = byte(int8(q))
		want[i] = float64(q) * d
	}
	return dqCase{b, want}
}

func buildQ8_1(t *testing.T, r *rand.Rand) dqCase {
	c := buildQ8_0(t, r)
	b := make([]byte, 36)
	copy(b, c.raw[:2])
	put16(b[2:], dqTestHalf(t, 0.5)) // the stored sum plays no part
	copy(b[4:], c.raw[2:])
	return dqCase{b, c.want}
}

// packPlanes2 stores 2-bit values of 256 elements as llama.cpp's Q2_K/Q3_K qs:
// element 128n + 32p + l sits in byte 32n + l at bit 2p.
func packPlanes2(qs []byte, L []int) {
	for e, l := range L {
		n, p, k := e/128, (e%128)/32, e%32
		qs[32*n+k] |= byte(l&3) << (2 * p)
	}
}

func buildQ2K(t *testing.T, r *rand.Rand) dqCase {
	b := make([]byte, 84)
	d, dmin := dqScale(r, false), dqScale(r, false)
	put16(b[80:], dqTestHalf(t, d))
	put16(b[82:], dqTestHalf(t, dmin))
	sc, mn := make([]int, 16), make([]int, 16)
	for j := range sc {
		sc[j], mn[j] = r.IntN(16), r.IntN(16)
		b[j] = byte(sc[j] | mn[j]<<4)
	}
	L := make([]int, 256)
	for i := range L {
		L[i] = r.IntN(4)
	}
	packPlanes2(b[16:80], L)
	want := make([]float64, 256)
	for e := range L {
		want[e] = d*float64(sc[e/16])*float64(L[e]) - dmin*float64(mn[e/16])
	}
	return dqCase{b, want}
}

func buildQ3K(t *testing.T, r *rand.Rand) dqCase {
	b := make([]byte, 110)
	hmask, qs, scales := b[0:32], b[32:96], b[96:108]
	d := dqScale(r, true)
	put16(b[108:], dqTestHalf(t, d))
	Ls := make([]int, 16) // 6-bit scales, value Ls-32
	for j := range Ls {
		Ls[j] = r.IntN(64)
		if j < 8 {
			scales[j] = byte(Ls[j] & 0xF)
		} else {
			scales[j-8] |= byte(Ls[j]&0xF) << 4
		}
		scales[8+j%4] |= byte(Ls[j]>>4) << (2 * (j / 4))
	}
	L := make([]int, 256) // value L-4
	low := make([]int, 256)
	for e := range L {
		L[e] = r.IntN(8)
		low[e] = L[e]
		if L[e] > 3 {
			hmask[e%32] |= 1 << (e / 32)
			low[e] -= 4
		}
	}
	packPlanes2(qs, low)
	want := make([]float64, 256)
	for e := range L {
		want[e] = d * float64(Ls[e/16]-32) * float64(L[e]-4)
	}
	return dqCase{b, want}
}

// packScaleMinK4 packs eight 6-bit scales and mins as Q4_K/Q5_K's scales[12].
func packScaleMinK4(dst []byte, ls, lm []int) {
	for j := 0; j < 8; j++ {
		if j < 4 {
			dst[j] = byte(ls[j])
			dst[j+4] = byte(lm[j])
		} else {
			dst[j+4] = byte(ls[j]&0xF | (lm[j]&0xF)<<4)
			dst[j-4] |= byte(ls[j]>>4) << 6
			dst[j] |= byte(lm[j]>>4) << 6
		}
	}
}

func buildQ4K(t *testing.T, r *rand.Rand) dqCase {
	b := make([]byte, 144)
	d, dmin := dqScale(r, false), dqScale(r, false)
	put16(b[0:], dqTestHalf(t, d))
	put16(b[2:], dqTestHalf(t, dmin))
	ls, lm := make([]int, 8), make([]int, 8)
	for j := range ls {
		ls[j], lm[j] = r.IntN(64), r.IntN(64)
	}
	packScaleMinK4(b[4:16], ls, lm)
	L := make([]int, 256)
	for i := range L {
		L[i] = r.IntN(16)
	}
	for g := 0; g < 4; g++ {
		for l := 0; l < 32; l++ {
			b[16+32*g+l] = byte(L[64*g+l] | L[64*g+l+32]<<4)
		}
	}
	want := make([]float64, 256)
	for e := range L {
		want[e] = d*float64(ls[e/32])*float64(L[e]) - dmin*float64(lm[e/32])
	}
	return dqCase{b, want}
}

func buildQ5K(t *testing.T, r *rand.Rand) dqCase {
	b := make([]byte, 176)
	d, dmin := dqScale(r, false), dqScale(r, false)
	put16(b[0:], dqTestHalf(t, d))
	put16(b[2:], dqTestHalf(t, dmin))
	ls, lm := make([]int, 8), make([]int, 8)
	for j := range ls {
		ls[j], lm[j] = r.IntN(64), r.IntN(64)
	}
	packScaleMinK4(b[4:16], ls, lm)
	qh, ql := b[16:48], b[48:176]
	L := make([]int, 256)
	for i := range L {
		L[i] = r.IntN(32)
	}
	m1, m2 := byte(1), byte(2)
	for g := 0; g < 4; g++ {
		for l := 0; l < 32; l++ {
			l1, l2 := L[64*g+l], L[64*g+l+32]
			if l1 > 15 {
				l1 -= 16
				qh[l] |= m1
			}
			if l2 > 15 {
				l2 -= 16
				qh[l] |= m2
			}
			ql[32*g+l] = byte(l1 | l2<<4)
		}
		m1 <<= 2
		m2 <<= 2
	}
	want := make([]float64, 256)
	for e := range L {
		want[e] = d*float64(ls[e/32])*float64(L[e]) - dmin*float64(lm[e/32])
	}
	return dqCase{b, want}
}

func buildQ6K(t *testing.T, r *rand.Rand) dqCase {
	b := make([]byte, 210)
	ql, qh, sc := b[0:128], b[128:192], b[192:208]
	d := dqScale(r, true)
	put16(b[208:], dqTestHalf(t, d))
	s := make([]int, 16)
	for j := range s {
		s[j] = r.IntN(256) - 128
		sc[j] = byte(int8(s[j]))
	}
	L := make([]int, 256) // value L-32
	for i := range L {
		L[i] = r.IntN(64)
	}
	for n := 0; n < 2; n++ {
		j := 128 * n
		for l := 0; l < 32; l++ {
			ql[64*n+l] = byte(L[j+l]&0xF | (L[j+l+64]&0xF)<<4)
			ql[64*n+l+32] = byte(L[j+l+32]&0xF | (L[j+l+96]&0xF)<<4)
			qh[32*n+l] = byte(L[j+l]>>4 | (L[j+l+32]>>4)<<2 | (L[j+l+64]>>4)<<4 | (L[j+l+96]>>4)<<6)
		}
	}
	want := make([]float64, 256)
	for e := range L {
		want[e] = d * float64(s[e/16]) * float64(L[e]-32)
	}
	return dqCase{b, want}
}

func buildQ8K(t *testing.T, r *rand.Rand) dqCase {
	b := make([]byte, 292)
	d := float32(r.NormFloat64())
	binary.LittleEndian.PutUint32(b, math.Float32bits(d))
	want := make([]float64, 256)
	for i := range want {
		q := r.IntN(256) - 128
		b[4+i] = byte(int8(q))
		want[i] = float64(d) * float64(q) // one rounding: float32(want) is the float32 product
	}
	for j := 0; j < 16; j++ { // bsums: unused by dequantization; fill with noise
		binary.LittleEndian.PutUint16(b[260+2*j:], uint16(r.Uint32()))
	}
	return dqCase{b, want}
}

var dqBuilders = []struct {
	dt    format.DType
	build func(*testing.T, *rand.Rand) dqCase
}{
	{format.Q4_0, buildQ4_0}, {format.Q4_1, buildQ4_1}, {format.Q5_0, buildQ5_0}, {format.Q5_1, buildQ5_1},
	{format.Q8_0, buildQ8_0}, {format.Q8_1, buildQ8_1}, {format.Q2_K, buildQ2K}, {format.Q3_K, buildQ3K},
	{format.Q4_K, buildQ4K}, {format.Q5_K, buildQ5K}, {format.Q6_K, buildQ6K}, {format.Q8_K, buildQ8K},
}

func TestDequantizeHandBuiltBlocks(t *testing.T) {
	for _, c := range dqBuilders {
		t.Run(c.dt.String(), func(t *testing.T) {
			r := rand.New(rand.NewPCG(uint64(c.dt), 7))
			for trial := 0; trial < 20; trial++ {
				// Several blocks per call, so block offsets are exercised too.
				var raw []byte
				var want []float64
				for range 1 + trial%3 {
					bc := c.build(t, r)
					raw = append(raw, bc.raw...)
					want = append(want, bc.want...)
				}
				got := make([]float32, len(want))
				if err := format.Dequantize(c.dt, raw, got); err != nil {
					t.Fatal(err)
				}
				for i := range want {
					if w := float32(want[i]); math.Float32bits(got[i]) != math.Float32bits(w) {
						t.Fatalf("trial %d element %d: got %v, want %v", trial, i, got[i], w)
					}
				}
			}
		})
	}
}

// TestDequantizeAnyHalfScale uses arbitrary half bit patterns (subnormals
// included) for the types whose value is one product q·d, where a single
// float32 rounding of the exact product is the reference.
func TestDequantizeAnyHalfScale(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for trial := 0; trial < 200; trial++ {
		h := uint16(r.Uint32())
		if h&0x7c00 == 0x7c00 { // inf/NaN scales: skip
			continue
		}
		d := dqTestHalfValue(h)
		q8 := make([]byte, 34)
		q4 := make([]byte, 18)
		put16(q8, h)
		put16(q4, h)
		want8 := make([]float64, 32)
		want4 := make([]float64, 32)
		for i := 0; i < 32; i++ {
			q := r.IntN(256) - 128
			q8[2+i] = byte(int8(q))
			want8[i] = float64(q) * d
		}
		for j := 0; j < 16; j++ {
			lo, hi := r.IntN(16), r.IntN(16)
			q4[2+j] = byte(lo | hi<<4)
			want4[j], want4[j+16] = float64(lo-8)*d, float64(hi-8)*d
		}
		for _, c := range []struct {
			dt   format.DType
			raw  []byte
			want []float64
		}{{format.Q8_0, q8, want8}, {format.Q4_0, q4, want4}} {
			got := make([]float32, 32)
			if err := format.Dequantize(c.dt, c.raw, got); err != nil {
				t.Fatal(err)
			}
			for i, w := range c.want {
				if got[i] != float32(w) {
					t.Fatalf("%v scale %#04x element %d: got %v, want %v", c.dt, h, i, got[i], float32(w))
				}
			}
		}
	}
}

// TestDequantizeKnownBlock pins one Q8_0 and one Q4_K block written out byte
// by byte, as a reader of the block definitions would.
func TestDequantizeKnownBlock(t *testing.T) {
	// Q8_0: d = 0.5 (0x3800), qs = 0, 1, -1, 2, -2, ..., last -128.
	q8 := []byte{0x00, 0x38}
	for i := 0; i < 32; i++ {
		v := int8((i + 1) / 2)
		if i%2 == 0 {
			v = -v
		}
		q8 = append(q8, byte(v))
	}
	q8[33] = 0x80
	got := make([]float32, 32)
	if err := format.Dequantize(format.Q8_0, q8, got); err != nil {
		t.Fatal(err)
	}
	if got[0] != 0 || got[1] != 0.5 || got[2] != -0.5 || got[3] != 1 || got[31] != -64 {
		t.Errorf("Q8_0: %v", got)
	}
	// Q4_K: d = 1 (0x3c00), dmin = 0.25 (0x3400); sub-block 0: scale 3, min 2;
	// sub-block 4: scale 63 (0xF low + 0b11 from scales[0] bits 6-7), min 0.
	// qs[0] = 0x5A: element 0 has nibble 10, element 32 (sub-block 1) nibble 5.
	q4k := make([]byte, 144)
	q4k[0], q4k[1], q4k[2], q4k[3] = 0x00, 0x3c, 0x00, 0x34
	q4k[4+0] = 3 | 3<<6 // scale 0 = 3, top bits of scale 4 = 3
	q4k[4+4] = 2        // min 0 = 2
	q4k[4+8] = 0x0F     // scale 4 low nibble 15, min 4 low nibble 0
	q4k[16] = 0x5A
	q4k[16+64] = 0x07 // element 128 (sub-block 4), nibble 7
	y := make([]float32, 256)
	if err := format.Dequantize(format.Q4_K, q4k, y); err != nil {
		t.Fatal(err)
	}
	if y[0] != 1*3*10-0.25*2 || y[1] != -0.5 || y[32] != 0 || y[128] != 63*7 {
		t.Errorf("Q4_K: y[0]=%v y[1]=%v y[32]=%v y[128]=%v", y[0], y[1], y[32], y[128])
	}
}

func TestDequantizeErrors(t *testing.T) {
	cases := []struct {
		dt   format.DType
		raw  int
		n    int
		want error
	}{
		{format.Q8_0, 33, 32, format.ErrFormat},   // short input
		{format.Q8_0, 35, 32, format.ErrFormat},   // long input
		{format.Q8_0, 34, 31, format.ErrFormat},   // not whole blocks
		{format.Q4_K, 144, 128, format.ErrFormat}, // half a super-block
		{format.Q6_K, 0, 256, format.ErrFormat},
		{format.F32, 4, 1, format.ErrUnsupported},
		{format.Invalid, 4, 1, format.ErrUnsupported},
	}
	for _, c := range cases {
		err := format.Dequantize(c.dt, make([]byte, c.raw), make([]float32, c.n))
		if !errors.Is(err, c.want) {
			t.Errorf("%v, %d bytes, %d elements: %v, want %v", c.dt, c.raw, c.n, err, c.want)
		}
	}
	if err := format.Dequantize(format.Q8_0, nil, nil); err != nil {
		t.Errorf("empty input: %v", err)
	}
}

// BenchmarkDequantize measures throughput in stored bytes per second and
// elements per second.
// Reproduce: GOEXPERIMENT=simd go test -run=^$ -bench=Dequantize -benchtime=1s ./format/
func BenchmarkDequantize(b *testing.B) {
	const n = 1 << 20
	for _, dt := range []format.DType{format.Q8_0, format.Q4_0, format.Q4_1, format.Q5_0, format.Q5_1,
		format.Q2_K, format.Q3_K, format.Q4_K, format.Q5_K, format.Q6_K, format.Q8_K} {
		b.Run(dt.String(), func(b *testing.B) {
			size, _ := dt.ByteSize(n)
			raw := make([]byte, size)
			r := rand.New(rand.NewPCG(1, 1))
			for i := range raw {
				raw[i] = byte(r.Uint32())
			}
			// Keep the half scales finite so the numbers are representative.
			tr, _ := dt.Trait()
			for i := 0; i < len(raw); i += int(tr.TypeSize) {
				for _, off := range dqHalfOffsets(dt) {
					put16(raw[i+off:], 0x2c00|uint16(r.Uint32())&0x3ff)
				}
			}
			dst := make([]float32, n)
			b.SetBytes(size)
			b.ResetTimer()
			for b.Loop() {
				if err := format.Dequantize(dt, raw, dst); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds()/1e6, "Melem/s")
		})
	}
}

func dqHalfOffsets(dt format.DType) []int {
	switch dt {
	case format.Q4_0, format.Q5_0, format.Q8_0:
		return []int{0}
	case format.Q4_1, format.Q5_1, format.Q4_K, format.Q5_K:
		return []int{0, 2}
	case format.Q2_K:
		return []int{80, 82}
	case format.Q3_K:
		return []int{108}
	case format.Q6_K:
		return []int{208}
	}
	return nil
}

func ExampleDequantize() {
	// One Q8_0 block: scale 0.25 as a little-endian half, then 32 int8 quants.
	block := make([]byte, 34)
	block[0], block[1] = 0x00, 0x34
	block[2], block[3] = 4, 0xFE // 4, -2
	out := make([]float32, 32)
	if err := format.Dequantize(format.Q8_0, block, out); err != nil {
		panic(err)
	}
	fmt.Println(out[:3])
	// Output: [1 -0.5 0]
}
